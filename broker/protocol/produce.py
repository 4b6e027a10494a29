"""Produce requests and responses, coded by hand (versions 3-11) for the hot path.

Decoding with kio would copy every partition's record batch into a new bytes
object and build a dozen frozen objects per request; here the records come
out as memoryview slices of the request buffer (no copy), and the response is
packed with a few struct calls. Round-trip tests against kio's ProduceRequest
and ProduceResponse classes (tests/broker/test_protocol.py) keep the two in
agreement. The decoded objects use kio's attribute names (`topic_data`,
`partition_data`, `index`, `records`, `acks`, `transactional_id`), so handlers
can take either.

Layout (Kafka's ProduceRequest.json / ProduceResponse.json; flexible from v9,
KIP-482):
request:  transactional_id nullable string, acks int16, timeout_ms int32,
          topic_data [name string, partition_data [index int32, records nullable bytes, tags], tags], tags
response: responses [name string, partition_responses [index int32, error_code int16,
          base_offset int64, log_append_time_ms int64, [v5+] log_start_offset int64,
          [v8+] record_errors [batch_index int32, message nullable string],
          [v8+] error_message nullable string, tags], tags], throttle_time_ms int32, tags

Thread-safety: pure functions.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from broker.protocol.wire import MalformedRequestError, read_unsigned_varint, skip_tagged_fields, write_unsigned_varint

MIN_VERSION = 3
MAX_VERSION = 11
FLEXIBLE_FROM = 9

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_ACKS_TIMEOUT = struct.Struct(">hi")
_PARTITION_V3 = struct.Struct(">ihqq")  # index, error_code, base_offset, log_append_time_ms
_PARTITION_V5 = struct.Struct(">ihqqq")  # ... + log_start_offset


@dataclass(slots=True)
class PartitionProduceData:
    index: int
    records: memoryview | None


@dataclass(slots=True)
class TopicProduceData:
    name: str
    partition_data: list[PartitionProduceData]


@dataclass(slots=True)
class ProduceRequestData:
    transactional_id: str | None
    acks: int
    timeout_ms: int
    topic_data: list[TopicProduceData]


@dataclass(slots=True)
class PartitionProduceResult:
    index: int
    error_code: int
    base_offset: int = -1
    log_start_offset: int = -1
    error_message: str | None = None
    current_leader: tuple[int, int] | None = None  # (leader id, leader epoch): v10+ hint with NOT_LEADER_OR_FOLLOWER (KIP-951)


class _Reader:
    __slots__ = ("buf", "pos", "end", "flexible")

    def __init__(self, buf, pos: int, flexible: bool):
        self.buf = buf
        self.pos = pos
        self.end = len(buf)
        self.flexible = flexible

    def need(self, size: int, what: str) -> None:
        if size < 0 or self.pos + size > self.end:
            raise MalformedRequestError(f"Produce request: {what} needs {size} bytes at byte {self.pos}, {self.end - self.pos} left")

    def length(self, what: str, legacy: struct.Struct) -> int:
        """A length prefix: compact (uvarint n+1) when flexible, else int16/int32; -1 is null."""
        if self.flexible:
            raw, self.pos = read_unsigned_varint(self.buf, self.pos)
            return raw - 1
        self.need(legacy.size, what)
        (value,) = legacy.unpack_from(self.buf, self.pos)
        self.pos += legacy.size
        if value < -1:
            raise MalformedRequestError(f"Produce request: {what} length {value} is negative")
        return value

    def string(self, what: str, nullable: bool) -> str | None:
        size = self.length(what, _I16)
        if size == -1:
            if nullable:
                return None
            raise MalformedRequestError(f"Produce request: {what} is null but may not be")
        self.need(size, what)
        raw = self.buf[self.pos : self.pos + size]
        self.pos += size
        try:
            return bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedRequestError(f"Produce request: {what} is not UTF-8 ({exc})") from None

    def array_count(self, what: str) -> int:
        count = self.length(what, _I32)
        if count == -1:
            raise MalformedRequestError(f"Produce request: {what} array is null")
        self.need(count, what)  # at least one byte per element
        return count

    def tags(self) -> None:
        if self.flexible:
            self.pos = skip_tagged_fields(self.buf, self.pos)


def decode_produce_request(buf, pos: int, version: int) -> ProduceRequestData:
    """Decode a Produce body at `pos` (bytes after it are ignored)."""
    if not MIN_VERSION <= version <= MAX_VERSION:
        raise MalformedRequestError(f"Produce v{version} is not decodable here; expected {MIN_VERSION}..{MAX_VERSION}")
    view = memoryview(buf)
    reader = _Reader(view, pos, version >= FLEXIBLE_FROM)
    transactional_id = reader.string("transactional_id", nullable=True)
    reader.need(_ACKS_TIMEOUT.size, "acks and timeout")
    acks, timeout_ms = _ACKS_TIMEOUT.unpack_from(view, reader.pos)
    reader.pos += _ACKS_TIMEOUT.size
    topics = []
    for _ in range(reader.array_count("topic_data")):
        name = reader.string("topic name", nullable=False)
        partitions = []
        for _ in range(reader.array_count("partition_data")):
            reader.need(4, "partition index")
            (index,) = _I32.unpack_from(view, reader.pos)
            reader.pos += 4
            size = reader.length("records", _I32)
            if size == -1:
                records = None
            else:
                reader.need(size, "records")
                records = view[reader.pos : reader.pos + size]
                reader.pos += size
            reader.tags()
            partitions.append(PartitionProduceData(index, records))
        reader.tags()
        topics.append(TopicProduceData(name, partitions))
    reader.tags()
    # bytes after the body are ignored, as Kafka does (see apis.decode_request)
    return ProduceRequestData(transactional_id, acks, timeout_ms, topics)


def encode_produce_response(
    version: int,
    topics: list[tuple[str, list[PartitionProduceResult]]],
    throttle_time_ms: int = 0,
    node_endpoints: list[tuple[int, str, int, str | None]] | None = None,
) -> bytes:
    """Encode a Produce response; from v10 `current_leader` hints and `node_endpoints` (node id, host,
    port, rack) of the leaders they name go in as tagged fields (KIP-951)."""
    if not MIN_VERSION <= version <= MAX_VERSION:
        raise ValueError(f"Produce response version {version} is not encodable here; expected {MIN_VERSION}..{MAX_VERSION}")
    flexible = version >= FLEXIBLE_FROM
    out = bytearray()
    _count(len(topics), flexible, out)
    for name, partitions in topics:
        _string(name, flexible, out)
        _count(len(partitions), flexible, out)
        for part in partitions:
            if version >= 5:
                out += _PARTITION_V5.pack(part.index, part.error_code, part.base_offset, -1, part.log_start_offset)
            else:
                out += _PARTITION_V3.pack(part.index, part.error_code, part.base_offset, -1)
            if version >= 8:
                _count(0, flexible, out)  # record_errors
                _string(part.error_message, flexible, out)
            if version >= 10 and part.current_leader is not None:
                write_current_leader_tag(0, part.current_leader, out)
            elif flexible:
                out.append(0)
        if flexible:
            out.append(0)
    out += _I32.pack(throttle_time_ms)
    if version >= 10 and node_endpoints:
        write_node_endpoints_tag(0, node_endpoints, out)
    elif flexible:
        out.append(0)
    return bytes(out)


_LEADER_ID_AND_EPOCH = struct.Struct(">ii")


def write_current_leader_tag(tag: int, current_leader: tuple[int, int], out: bytearray) -> None:
    """A tagged-field section holding one LeaderIdAndEpoch struct (leader id, leader epoch, no tags)."""
    out.append(1)  # one tagged field
    write_unsigned_varint(tag, out)
    write_unsigned_varint(_LEADER_ID_AND_EPOCH.size + 1, out)
    out += _LEADER_ID_AND_EPOCH.pack(*current_leader)
    out.append(0)


def write_node_endpoints_tag(tag: int, node_endpoints: list[tuple[int, str, int, str | None]], out: bytearray) -> None:
    """A tagged-field section holding one compact array of NodeEndpoint (node id, host, port, rack)."""
    body = bytearray()
    write_unsigned_varint(len(node_endpoints) + 1, body)
    for node_id, host, port, rack in node_endpoints:
        body += _I32.pack(node_id)
        _string(host, True, body)
        body += _I32.pack(port)
        _string(rack, True, body)
        body.append(0)
    out.append(1)
    write_unsigned_varint(tag, out)
    write_unsigned_varint(len(body), out)
    out += body


def _count(count: int, flexible: bool, out: bytearray) -> None:
    if flexible:
        write_unsigned_varint(count + 1, out)
    else:
        out += _I32.pack(count)


def _string(value: str | None, flexible: bool, out: bytearray) -> None:
    if value is None:
        if flexible:
            out.append(0)
        else:
            out += _I16.pack(-1)
        return
    raw = value.encode("utf-8")
    if flexible:
        write_unsigned_varint(len(raw) + 1, out)
    else:
        out += _I16.pack(len(raw))
    out += raw
