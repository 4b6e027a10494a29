"""Fetch responses, encoded by hand so that record bytes are never copied.

kio would need the records of every partition as one `bytes` object and would
copy them into its output buffer; here the response is a list of small header
chunks interleaved with the record buffers exactly as the log returned them
(bytes or memoryviews), ready for a vectored socket write. A round-trip test
against kio's FetchResponse classes (tests/broker/test_protocol.py) keeps the two
in agreement.

Layout (Kafka's FetchResponse.json, versions 4-16):
throttle_time_ms int32; [v7+] error_code int16, session_id int32;
responses: [topic string (<=v12) | topic_id uuid (v13+),
  partitions: [partition_index int32, error_code int16, high_watermark int64,
    last_stable_offset int64, [v5+] log_start_offset int64,
    aborted_transactions nullable [producer_id int64, first_offset int64],
    [v11+] preferred_read_replica int32, records nullable bytes, [v12+] tags]
  [v12+] tags]; [v12+] tags.
From v12 the message is flexible (KIP-482): arrays and bytes carry
unsigned-varint length+1 prefixes and every struct ends with tagged fields.

Thread-safety: pure functions.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass

from broker.protocol.produce import write_current_leader_tag, write_node_endpoints_tag
from broker.protocol.wire import write_unsigned_varint

_I32 = struct.Struct(">i")
_TOP_V7 = struct.Struct(">ihi")
_PARTITION_V4 = struct.Struct(">ihqq")  # partition_index, error_code, high_watermark, last_stable_offset
_PARTITION_V5 = struct.Struct(">ihqqq")  # ... + log_start_offset
_I16 = struct.Struct(">h")
_ABORTED = struct.Struct(">qq")  # producer_id, first_offset

MIN_VERSION = 4
MAX_VERSION = 16
MAX_SESSION_EPOCH = 2**31 - 1


def next_session_epoch(epoch: int) -> int:
    """The fetch session epoch after `epoch` (KIP-227): it wraps from int32's maximum to 1, never to 0 or -1,
    which mean "new session" and "no session"."""
    return 1 if epoch < 0 or epoch >= MAX_SESSION_EPOCH else epoch + 1


@dataclass(slots=True)
class FetchPartitionResult:
    partition_index: int
    error_code: int = 0
    high_watermark: int = -1
    last_stable_offset: int = -1
    log_start_offset: int = -1
    records: object = b""  # bytes-like: whole batches, passed through untouched
    current_leader: tuple[int, int] | None = None  # (leader id, leader epoch): v12+ hint with NOT_LEADER_OR_FOLLOWER
    # (producer id, first offset) of aborted transactions overlapping the records (read_committed, KIP-98)
    aborted_transactions: list[tuple[int, int]] | None = None


@dataclass(slots=True)
class FetchTopicResult:
    topic: str  # used up to v12
    topic_id: uuid.UUID  # used from v13
    partitions: list[FetchPartitionResult]


def encode_fetch_response(
    version: int,
    topics: list[FetchTopicResult],
    *,
    throttle_time_ms: int = 0,
    error_code: int = 0,
    session_id: int = 0,
    node_endpoints: list[tuple[int, str, int, str | None]] | None = None,
) -> list:
    """Return the response body as a list of buffers (the records are the log's own buffers).

    From v12 a partition's `current_leader` goes in as tagged field 1 (KIP-595),
    and from v16 `node_endpoints` as the response's tagged field 0 (KIP-951).
    """
    if not MIN_VERSION <= version <= MAX_VERSION:
        raise ValueError(f"Fetch response version {version} is not encodable here; expected {MIN_VERSION}..{MAX_VERSION}")
    flexible = version >= 12
    chunks: list = []
    head = bytearray(_I32.pack(throttle_time_ms))
    if version >= 7:
        head += _I16.pack(error_code) + _I32.pack(session_id)
    _array_length(len(topics), flexible, head)
    for topic in topics:
        if version >= 13:
            head += topic.topic_id.bytes
        else:
            raw = topic.topic.encode("utf-8")
            if flexible:
                write_unsigned_varint(len(raw) + 1, head)
            else:
                head += _I16.pack(len(raw))
            head += raw
        _array_length(len(topic.partitions), flexible, head)
        for part in topic.partitions:
            if version >= 5:
                head += _PARTITION_V5.pack(
                    part.partition_index,
                    part.error_code,
                    part.high_watermark,
                    part.last_stable_offset,
                    part.log_start_offset,
                )
            else:
                head += _PARTITION_V4.pack(
                    part.partition_index, part.error_code, part.high_watermark, part.last_stable_offset
                )
            # aborted_transactions: empty rather than null when there are none (clients accept both)
            aborted = part.aborted_transactions or ()
            _array_length(len(aborted), flexible, head)
            for producer_id, first_offset in aborted:
                head += _ABORTED.pack(producer_id, first_offset)
                if flexible:
                    head.append(0)  # aborted transaction tagged fields
            if version >= 11:
                head += _I32.pack(-1)  # preferred_read_replica: none
            records = part.records
            size = 0 if records is None else len(records)
            if flexible:
                write_unsigned_varint(size + 1, head)
            else:
                head += _I32.pack(size)
            if size:
                chunks.append(head)
                chunks.append(records)
                head = bytearray()
            if flexible and part.current_leader is not None:
                write_current_leader_tag(1, part.current_leader, head)
            elif flexible:
                head.append(0)  # partition tagged fields
        if flexible:
            head.append(0)  # topic tagged fields
    if version >= 16 and node_endpoints:
        write_node_endpoints_tag(0, node_endpoints, head)
    elif flexible:
        head.append(0)  # response tagged fields
    chunks.append(head)
    return chunks


def _array_length(count: int, flexible: bool, out: bytearray) -> None:
    if flexible:
        write_unsigned_varint(count + 1, out)
    else:
        out += _I32.pack(count)
