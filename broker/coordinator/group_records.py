"""The records of the internal `__consumer_offsets` topic: this broker's own compact encoding.

Kafka's byte format is not reproduced (not required); the layout here is:

- key: one kind byte, then UTF-8 JSON.
  - b"O" + ["group", "topic", partition]: a committed offset;
  - b"G" + "group": a group's metadata after a completed rebalance.
- value: UTF-8 JSON, or null (a tombstone: the offset or group is deleted).
  - offset: {"offset": int, "leader_epoch": int, "metadata": str|null, "commit_ms": int};
  - group: {"protocol_type", "generation", "protocol", "leader", "members": [
    {"member_id", "group_instance_id", "client_id", "client_host", "session_timeout_ms",
     "rebalance_timeout_ms", "subscription" (base64), "assignment" (base64)}]}.

Records are written as normal uncompressed v2 batches (`build_batch`), so a
follower replicates them like any other partition, and a new leader replays the
partition from its log start (`iter_records`): later records win, tombstones
delete. Transactional batches (TxnOffsetCommit, KIP-98) carry a producer id and
stay pending until a COMMIT/ABORT control batch of that producer follows.

Thread-safety: pure functions.
"""

from __future__ import annotations

import json
import struct

from broker.protocol.records import iter_batches

OFFSET_KIND = b"O"
GROUP_KIND = b"G"
CONTROL_ABORT = 0
CONTROL_COMMIT = 1


def offset_key(group_id: str, topic: str, partition: int) -> bytes:
    return OFFSET_KIND + json.dumps([group_id, topic, partition]).encode()


def group_key(group_id: str) -> bytes:
    return GROUP_KIND + json.dumps(group_id).encode()


def encode_value(value: dict | None) -> bytes | None:
    return None if value is None else json.dumps(value, separators=(",", ":")).encode()


def decode_key(key: bytes) -> tuple[str, object]:
    """("offset", (group, topic, partition)) or ("group", group_id); ValueError on anything else."""
    kind, body = key[:1], key[1:]
    if kind == OFFSET_KIND:
        group_id, topic, partition = json.loads(body)
        return "offset", (group_id, topic, int(partition))
    if kind == GROUP_KIND:
        return "group", json.loads(body)
    raise ValueError(f"__consumer_offsets record key starts with {kind!r}; accepted: b'O' (offset), b'G' (group)")


def decode_value(value: bytes | None) -> dict | None:
    return None if value is None else json.loads(value)


def _read_varint(buf, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7


def _records_of(buf, pos: int, header) -> list[tuple[bytes | None, bytes | None]]:
    """(key, value) pairs of one uncompressed v2 batch at `pos` (headers are skipped)."""
    if header.compression != 0:
        raise ValueError(f"__consumer_offsets batch at offset {header.base_offset} is compressed ({header.compression}); "
                         "the coordinator writes only uncompressed batches")
    cursor = pos + 61
    out = []
    for _ in range(header.records_count):
        length, cursor = _read_varint(buf, cursor)
        end = cursor + length
        cursor += 1  # attributes
        _, cursor = _read_varint(buf, cursor)  # timestamp delta
        _, cursor = _read_varint(buf, cursor)  # offset delta
        key_len, cursor = _read_varint(buf, cursor)
        key = None if key_len < 0 else bytes(buf[cursor:cursor + key_len])
        cursor += max(key_len, 0)
        value_len, cursor = _read_varint(buf, cursor)
        value = None if value_len < 0 else bytes(buf[cursor:cursor + value_len])
        out.append((key, value))
        cursor = end
    return out


def iter_records(buf):
    """Yield (batch header, [(key, value)]) for every batch in `buf` (whole v2 batches)."""
    for pos, header in iter_batches(buf):
        yield header, _records_of(buf, pos, header)


def control_type(key: bytes) -> int:
    """COMMIT (1) or ABORT (0) from a control record's key (version int16, type int16)."""
    _version, kind = struct.unpack(">hh", key[:4])
    return kind
