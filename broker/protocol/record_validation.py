"""Validate the records inside a v2 batch before the leader appends it.

`records.py` checks a batch's header and CRC; a batch can pass both and still
lie about its body (records_count 2^31-1, a count that disagrees with
last_offset_delta, random bytes where records should be, garbage for its codec,
codec ids 5-7). Appended, such a batch stops every consumer of the partition at
its offset for ever. Kafka's leader refuses it: `LogValidator`
(storage/src/main/java/org/apache/kafka/storage/internals/log/LogValidator.java,
`validateBatch` and `validateRecord`) decompresses and walks every record, and
`DefaultRecord.readFrom` / `DefaultRecordBatch` check the lengths; the record
layout is the protocol guide's "Record Batch" / "Record" section. This module
applies those rules, written from the specification, not copied:

- codec: the attributes' low three bits are 0 none, 1 gzip, 2 snappy (raw, or
  the xerial framing Java producers write), 3 lz4 (frame format), 4 zstd;
  5-7 are refused, and so is a compressed body that does not decompress whole;
- timestamp type: a client may not send a LogAppendTime batch (Kafka answers
  INVALID_TIMESTAMP, "Producer should not set timestamp type to LogAppendTime");
- timestamp skew (KIP-937, `check_timestamps`): the batch's first and largest
  timestamps must lie within [now - log.message.timestamp.before.max.ms,
  now + log.message.timestamp.after.max.ms], else INVALID_TIMESTAMP. Time-based
  segment rolls follow record timestamps, so without a bound a producer whose
  timestamps jump ahead makes a segment (and a file descriptor) per batch.
  Kafka checks every record's timestamp; the header's two bound the ones that
  drive rolls and time indexes, and a record below the first is not checked;
- counts: records_count >= 1 and records_count == last_offset_delta + 1, and
  exactly records_count records fill the (decompressed) body, no bytes after;
- each record: its length varint covers exactly its fields; offset deltas run
  0, 1, ..., n-1 in order; key and value lengths are -1 (null) or fit in the
  record; a header count >= 0, every header key non-null and every header value
  -1 or a length that fits; varints at most 5 bytes (varlong timestamp delta 10).

Bounded memory against decompression bombs: decompression stops as soon as its
output passes `max_uncompressed_bytes` and the batch is refused. The handler
passes UNCOMPRESSED_FACTOR (16) times the partition's `max.message.bytes`
(broker `message.max.bytes` unless the topic sets it): a batch the operator
allows on disk may expand sixteen times in memory while it is checked, no more.
zstd frames may also not ask for a window above ZSTD_WINDOW_BYTES_MAX.

Errors: `RecordValidationError.error` names the Kafka error the leader answers:
"corrupt_message" when the bytes cannot be decoded at all (unknown codec,
undecompressable body), "invalid_record" when the records lie (Produce v8+;
the handler answers CORRUPT_MESSAGE to older versions, which have no
INVALID_RECORD, KIP-467), "invalid_timestamp" for a LogAppendTime batch. The
message names the batch or record and what is wrong.

Output is bounded before it is made: gzip and lz4 decompress with a maximum
output length, a raw snappy block's declared length and a zstd frame's declared
content size are checked before decompressing (a zstd frame without one is
decompressed with the bound as its maximum output). Only the first zstd frame
is read, as Kafka's producers write one.

Cost on the hot path: a batch whose records all look like its first (same key
and value lengths, no headers, one-byte timestamp deltas: what a producer
sends in a burst of same-size messages) is checked by `_uniform_records` with
extended slices in C, about 10 ns a record; any other batch takes the Python
walk, one pass with no object per record, about 1.3 us a record (measured on
8,000-record batches of 100-byte values).

Thread-safety: pure functions.
"""

from __future__ import annotations

import functools
import zlib

import cramjam
import lz4.frame
import zstandard

from broker.protocol.records import BATCH_HEADER_SIZE, COMPRESSION_NAMES, BatchHeader

UNCOMPRESSED_FACTOR = 16
ZSTD_WINDOW_BYTES_MAX = 1 << 24
MIN_RECORD_BYTES = 7  # length, attributes, timestamp delta, offset delta, key length, value length, header count

_XERIAL_MAGIC = b"\x82SNAPPY\x00"
_XERIAL_HEADER_BYTES = 16  # magic, version int32, compatible version int32


class RecordValidationError(ValueError):
    """A batch whose records cannot be what a client meant; `error` names the Kafka error to answer."""

    def __init__(self, error: str, message: str):
        super().__init__(message)
        self.error = error


def check_timestamps(header: BatchHeader, now_ms: int, before_max_ms: int, after_max_ms: int) -> None:
    """KIP-937: refuse (invalid_timestamp) a CreateTime batch whose first or largest timestamp is more than
    `before_max_ms` in the past or `after_max_ms` in the future of `now_ms` (a record without one, -1, passes)."""
    for timestamp in (header.base_timestamp, header.max_timestamp):
        if timestamp != -1 and (now_ms - timestamp > before_max_ms or timestamp - now_ms > after_max_ms):
            raise RecordValidationError("invalid_timestamp", (
                f"timestamp {timestamp} of the batch is out of range: it must lie within [{now_ms - before_max_ms}, "
                f"{now_ms + after_max_ms}] (log.message.timestamp.before.max.ms={before_max_ms}, "
                f"log.message.timestamp.after.max.ms={after_max_ms})"))


def max_uncompressed_bytes(max_message_bytes: int) -> int:
    """The decompression bound for a partition whose batches may be `max_message_bytes` long."""
    return UNCOMPRESSED_FACTOR * max_message_bytes


def validate_batch(buf, pos: int, header: BatchHeader, uncompressed_bytes_max: int) -> None:
    """Check the records of the batch at `pos` (header and CRC already checked); raise RecordValidationError."""
    codec = header.compression
    if codec not in COMPRESSION_NAMES:
        raise RecordValidationError("corrupt_message", f"unknown compression codec id {codec} in the batch attributes "
                                                       f"({header.attributes:#06x}); known ids are 0-4")
    if header.timestamp_type == 1:
        raise RecordValidationError("invalid_timestamp", "the batch has timestamp type LogAppendTime; a producer must "
                                                         "send CreateTime and leave LogAppendTime to the broker")
    count = header.records_count
    if count < 1:
        raise RecordValidationError("invalid_record", f"records_count is {count}; a batch holds at least one record")
    if header.last_offset_delta + 1 != count:
        raise RecordValidationError("invalid_record", f"records_count {count} does not match last_offset_delta "
                                                      f"{header.last_offset_delta} (+1 = {header.last_offset_delta + 1})")
    body = memoryview(buf)[pos + BATCH_HEADER_SIZE : pos + header.size]
    if codec:
        data = _decompress(codec, body, uncompressed_bytes_max)
    else:
        data = bytes(body)
    _walk_records(data, count, COMPRESSION_NAMES[codec])


# ---- decompression -------------------------------------------------------------


def _decompress(codec: int, body, limit: int) -> bytes:
    name = COMPRESSION_NAMES[codec]
    if not len(body):
        raise RecordValidationError("corrupt_message", f"the {name} body of the batch is empty: nothing to decompress")
    try:
        if codec == 1:
            data = _gunzip(body, limit)
        elif codec == 2:
            data = _unsnappy(body, limit)
        elif codec == 3:
            data = _unlz4(body, limit)
        else:
            data = _unzstd(body, limit)
    except (zlib.error, cramjam.DecompressionError, RuntimeError, zstandard.ZstdError, ValueError) as exc:
        if isinstance(exc, RecordValidationError):
            raise
        raise RecordValidationError("corrupt_message", f"the {name} body of the batch does not decompress: {exc}") from None
    if len(data) > limit:
        raise RecordValidationError("corrupt_message", f"the {name} body of the batch decompresses to more than {limit} "
                                                       f"bytes ({UNCOMPRESSED_FACTOR} x max.message.bytes)")
    return data


def _truncated(name: str) -> RecordValidationError:
    return RecordValidationError("corrupt_message", f"the {name} body of the batch ends inside its compressed stream")


def _gunzip(body, limit: int) -> bytes:
    # a gzip stream may hold several members, as Java's GZIPInputStream reads them
    return _bounded_frames(body, limit, "gzip", lambda: zlib.decompressobj(wbits=31),
                           lambda inflater, data, size: inflater.decompress(data, size))


def _bounded_frames(body, limit: int, name: str, new_decompressor, decompress) -> bytes:
    """Decompress consecutive frames (members) with at most `limit` + 1 bytes of output in all."""
    out = bytearray()
    rest = bytes(body)
    while rest:
        decompressor = new_decompressor()
        out += decompress(decompressor, rest, limit + 1 - len(out))
        if len(out) > limit:
            return bytes(out)
        if not decompressor.eof:
            raise _truncated(name)
        rest = decompressor.unused_data
    return bytes(out)


def _unsnappy(body, limit: int) -> bytes:
    if bytes(body[: len(_XERIAL_MAGIC)]) != _XERIAL_MAGIC:
        return _unsnappy_block(body, limit)
    out = bytearray()  # xerial framing: a 16-byte header, then blocks of int32 length + raw snappy
    pos, end = _XERIAL_HEADER_BYTES, len(body)
    if end < pos:
        raise _truncated("snappy")
    while pos < end:
        if end - pos < 4:
            raise _truncated("snappy")
        size = int.from_bytes(body[pos : pos + 4], "big", signed=True)
        pos += 4
        if size < 0 or pos + size > end:
            raise _truncated("snappy")
        out += _unsnappy_block(body[pos : pos + size], limit - len(out))
        pos += size
    return bytes(out)


def _unsnappy_block(block, limit: int) -> bytes:
    declared = cramjam.snappy.decompress_raw_len(block)
    if declared > limit:  # checked before decompressing: a raw snappy block states its uncompressed length
        raise RecordValidationError("corrupt_message", f"the snappy body of the batch declares {declared} uncompressed "
                                                       f"bytes, more than the {limit} left under {UNCOMPRESSED_FACTOR} x max.message.bytes")
    return bytes(cramjam.snappy.decompress_raw(block))


def _unlz4(body, limit: int) -> bytes:
    return _bounded_frames(body, limit, "lz4", lz4.frame.LZ4FrameDecompressor,
                           lambda decompressor, data, size: decompressor.decompress(data, max_length=size))


def _unzstd(body, limit: int) -> bytes:
    data = bytes(body)
    declared = zstandard.get_frame_parameters(data).content_size
    if declared != zstandard.CONTENTSIZE_UNKNOWN and declared > limit:
        raise RecordValidationError("corrupt_message", f"the zstd body of the batch declares {declared} uncompressed "
                                                       f"bytes, more than {limit} ({UNCOMPRESSED_FACTOR} x max.message.bytes)")
    decompressor = zstandard.ZstdDecompressor(max_window_size=ZSTD_WINDOW_BYTES_MAX)
    # one frame, as Kafka's producers write it; without a declared size the output stops at the bound
    return decompressor.decompress(data, max_output_size=limit + 1)


# ---- the record walk -------------------------------------------------------------


def _walk_records(data: bytes, count: int, codec_name: str) -> None:
    """Walk `count` records filling `data` exactly (after the uniform fast path declined). Varints are
    compared in their zigzag form (2n for n >= 0, 1 for -1); one-byte ones are decoded inline."""
    end = len(data)
    if count * MIN_RECORD_BYTES > end:
        raise RecordValidationError("invalid_record", f"records_count {count} cannot fit in the {end} bytes of "
                                                      f"records ({codec_name}): a record takes at least {MIN_RECORD_BYTES}")
    if count <= UNIFORM_RECORDS_MAX and _uniform_records(data, count):
        return
    pos = 0
    index = 0
    try:
        for index in range(count):
            raw = data[pos]  # record length
            if raw < 0x80:
                pos += 1
            else:
                raw, pos = _zigzag(data, pos)
            if raw & 1 or raw < 2 * (MIN_RECORD_BYTES - 1):
                raise _record_error(index, f"length {(raw >> 1) ^ -(raw & 1)} is smaller than a record")
            length = raw >> 1
            record_end = pos + length
            if record_end > end:
                raise _record_error(index, f"claims {length} bytes but only {end - pos} remain")
            # record attributes (unused in v2), then the timestamp delta: any varlong
            if data[pos + 1] < 0x80:
                pos += 2
            else:
                _, pos = _varint(data, pos + 1, 10, "timestamp delta")
            raw = data[pos]  # offset delta
            if raw < 0x80:
                pos += 1
            else:
                raw, pos = _zigzag(data, pos)
            if raw != index << 1:
                raise _record_error(index, f"has offset delta {(raw >> 1) ^ -(raw & 1)}; expected {index} "
                                           "(deltas run 0..n-1 in order)")
            for field in _KEY_VALUE:
                raw = data[pos]
                if raw < 0x80:
                    pos += 1
                else:
                    raw, pos = _zigzag(data, pos)
                if not raw & 1:
                    pos += raw >> 1
                elif raw != 1:
                    raise _record_error(index, f"has {field} length {(raw >> 1) ^ -1}")
            if data[pos]:
                pos = _walk_headers(data, pos, record_end, index)
            else:
                pos += 1
            if pos != record_end:
                raise _record_error(index, f"fields take {length + pos - record_end} bytes but its length says {length}")
    except IndexError:
        raise _record_error(index, "runs past the end of the records") from None
    if pos != end:
        raise RecordValidationError("invalid_record", f"{end - pos} bytes follow the last of the {count} records "
                                                      f"({codec_name}); records_count is wrong or the body is padded")


_KEY_VALUE = ("key", "value")


def _zigzag(data: bytes, pos: int) -> tuple[int, int]:
    """The raw (still zigzag-encoded) value of a varint of at most 5 bytes at `pos`, and the position after it."""
    result = 0
    shift = 0
    for _ in range(5):
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
    raise RecordValidationError("invalid_record", f"a varint at byte {pos - 5} of the records is longer than 5 bytes")


def _uniform_records(data: bytes, count: int) -> bool:
    """True if `data` is exactly `count` records shaped like the first (same key and value lengths, no
    headers, one-byte timestamp deltas) with offset deltas 0..count-1: the common batch of a producer.
    Such records sit at computable positions (their size depends only on the size of the offset delta
    varint: 1 byte below 64, 2 below 8192, 3 below 2^20), so every fixed byte of every record is compared
    by extended slices (`data[at:end:size]`) in C instead of the Python walk. False means "walk it"."""
    try:
        _, pos = _zigzag(data, 0)  # the record length
        raw, pos = _zigzag(data, pos + 3)  # after attributes, timestamp delta and offset delta (checked below)
        key_length = (raw >> 1) ^ -(raw & 1)
        raw, pos = _zigzag(data, pos + max(key_length, 0))
        value_length = (raw >> 1) ^ -(raw & 1)
    except (IndexError, RecordValidationError):
        return False
    if key_length < -1 or value_length < -1:
        return False
    start = 0
    for offset_bytes, (size, fixed, timestamp_at, offset_at) in enumerate(_uniform_layout(key_length, value_length), 1):
        first, last = _OFFSET_SEGMENTS[offset_bytes - 1]
        n = min(count, last) - first
        if n <= 0:
            break
        end = start + n * size
        if end > len(data):
            return False
        for at, byte in fixed:
            if data[start + at : end : size] != byte * n:
                return False
        if not data[start + timestamp_at : end : size].isascii():  # every timestamp delta is one byte
            return False
        for j, expected in enumerate(_offset_delta_columns(offset_bytes)):
            if data[start + offset_at + j : end : size] != expected[:n]:
                return False
        start = end
    return start == len(data)


UNIFORM_RECORDS_MAX = 1 << 16
_OFFSET_SEGMENTS = ((0, 64), (64, 8192), (8192, UNIFORM_RECORDS_MAX))  # offset deltas whose varint takes 1, 2, 3 bytes


@functools.cache
def _offset_delta_columns(offset_bytes: int) -> tuple[bytes, ...]:
    """Byte j of the varints of the offset deltas in segment `offset_bytes`, one string per j."""
    first, last = _OFFSET_SEGMENTS[offset_bytes - 1]
    varints = [_varint_bytes(delta) for delta in range(first, last)]
    return tuple(bytes(varint[j] for varint in varints) for j in range(offset_bytes))


@functools.lru_cache(maxsize=256)
def _uniform_layout(key_length: int, value_length: int) -> list[tuple[int, list[tuple[int, bytes]], int, int]]:
    """For an offset delta varint of 1, 2 and 3 bytes: the whole size of a record with these key and value
    lengths and no headers, its fixed bytes (position, byte), and the positions of its timestamp and offset
    deltas."""
    layouts = []
    for offset_bytes in (1, 2, 3):
        tail = []  # (byte) after the offset delta
        for length in (key_length, value_length):
            tail += [bytes([b]) for b in _varint_bytes(length)] + [None] * max(length, 0)
        tail.append(b"\x00")  # header count
        prefix = _varint_bytes(2 + offset_bytes + len(tail))  # attributes, timestamp delta, offset delta, tail
        fixed = [(at, bytes([b])) for at, b in enumerate(prefix)]
        after_offset = len(prefix) + 2 + offset_bytes
        fixed += [(after_offset + at, b) for at, b in enumerate(tail) if b is not None]
        layouts.append((after_offset + len(tail), fixed, len(prefix) + 1, len(prefix) + 2))
    return layouts


def _varint_bytes(value: int) -> bytes:
    zigzag = (value << 1) ^ (value >> 63)
    out = bytearray()
    while zigzag >> 7:
        out.append(zigzag & 0x7F | 0x80)
        zigzag >>= 7
    out.append(zigzag)
    return bytes(out)


def _walk_headers(data: bytes, pos: int, record_end: int, index: int) -> int:
    count, pos = _varint(data, pos, 5, "header count")
    if count < 0 or count * 2 > record_end - pos:
        raise _record_error(index, f"has header count {count}, which does not fit in its {record_end - pos} remaining bytes")
    for number in range(count):
        size, pos = _varint(data, pos, 5, "header key length")
        if size < 0:
            raise _record_error(index, f"header {number} has key length {size}; a header key may not be null")
        pos += size
        size, pos = _varint(data, pos, 5, "header value length")
        if size < -1:
            raise _record_error(index, f"header {number} has value length {size}")
        if size > 0:
            pos += size
        if pos > record_end:
            raise _record_error(index, f"header {number} runs past the end of the record")
    return pos


def _varint(data: bytes, pos: int, max_bytes: int, what: str) -> tuple[int, int]:
    """A zigzag varint at `pos`: (value, position after it)."""
    result = 0
    shift = 0
    for _ in range(max_bytes):
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7
    raise RecordValidationError("invalid_record", f"the {what} varint at byte {pos - max_bytes} of the records is "
                                                  f"longer than {max_bytes} bytes")


def _record_error(index: int, what: str) -> RecordValidationError:
    return RecordValidationError("invalid_record", f"record {index} of the batch {what}")
