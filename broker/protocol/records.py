"""Kafka v2 record batches (magic 2), read at the header level only.

The broker stores batches exactly as clients send them. It parses the 61-byte
batch header to validate and index a batch, and patches only the two header
fields that lie outside the CRC: `base_offset` and `partition_leader_epoch`.
Record bodies, compressed or not, pass through untouched.

Layout (Kafka protocol guide, "Record Batch"; KIP-98 for the producer fields)::

    base_offset            int64   0   (not covered by the CRC)
    batch_length           int32   8   (bytes after this field)
    partition_leader_epoch int32  12   (not covered by the CRC)
    magic                  int8   16   (must be 2)
    crc                    uint32 17   (CRC-32C of everything from attributes on)
    attributes             int16  21
    last_offset_delta      int32  23
    base_timestamp         int64  27
    max_timestamp          int64  35
    producer_id            int64  43
    producer_epoch         int16  51
    base_sequence          int32  53
    records_count          int32  57

Thread-safety: pure functions over buffers.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Iterator

import crc32c as _crc32c

BATCH_HEADER_SIZE = 61
LOG_OVERHEAD = 12  # base_offset + batch_length: the bytes not counted in batch_length
CRC_START = 21  # the CRC covers attributes .. end of batch

_HEADER = struct.Struct(">qiibIhiqqqhii")
_INT64 = struct.Struct(">q")
_INT32 = struct.Struct(">i")

COMPRESSION_NAMES = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}


class CorruptRecordError(ValueError):
    """A batch that cannot be what a client meant: bad length, magic or CRC."""


@dataclass(slots=True)
class BatchHeader:
    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records_count: int

    @property
    def size(self) -> int:
        """Bytes the whole batch occupies, header included."""
        return self.batch_length + LOG_OVERHEAD

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.last_offset_delta + 1

    @property
    def compression(self) -> int:
        return self.attributes & 0x07

    @property
    def timestamp_type(self) -> int:
        """0 CreateTime, 1 LogAppendTime."""
        return (self.attributes >> 3) & 1

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & 0x10)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & 0x20)

    @property
    def has_producer_id(self) -> bool:
        return self.producer_id >= 0

    @property
    def last_sequence(self) -> int:
        if self.base_sequence < 0:
            return -1
        return (self.base_sequence + self.last_offset_delta) & 0x7FFFFFFF


def parse_header(buf, pos: int = 0) -> BatchHeader:
    """Parse the batch header at `pos`; raise CorruptRecordError if it cannot be one."""
    if len(buf) - pos < BATCH_HEADER_SIZE:
        raise CorruptRecordError(
            f"truncated batch header at byte {pos}: {len(buf) - pos} bytes left, {BATCH_HEADER_SIZE} needed"
        )
    header = BatchHeader(*_HEADER.unpack_from(buf, pos))
    if header.magic != 2:
        raise CorruptRecordError(f"unsupported record batch magic {header.magic} at byte {pos} (only magic 2 is accepted)")
    if header.batch_length < BATCH_HEADER_SIZE - LOG_OVERHEAD:
        raise CorruptRecordError(f"batch length {header.batch_length} at byte {pos} is smaller than a batch header")
    if header.last_offset_delta < 0 or header.records_count < 0:
        raise CorruptRecordError(
            f"negative last_offset_delta ({header.last_offset_delta}) or records_count ({header.records_count}) at byte {pos}"
        )
    return header


def compute_crc(buf, pos: int, header: BatchHeader) -> int:
    view = memoryview(buf)
    return _crc32c.crc32c(view[pos + CRC_START : pos + header.size])


def crc_is_valid(buf, pos: int, header: BatchHeader) -> bool:
    return compute_crc(buf, pos, header) == header.crc


def iter_batches(buf, validate_crc: bool = False) -> Iterator[tuple[int, BatchHeader]]:
    """Yield (position, header) for each whole batch in `buf`.

    Raises CorruptRecordError on a truncated batch, a bad header, or (with
    `validate_crc`) a CRC mismatch, naming the byte position.
    """
    pos = 0
    end = len(buf)
    while pos < end:
        header = parse_header(buf, pos)
        if pos + header.size > end:
            raise CorruptRecordError(
                f"truncated batch at byte {pos}: it claims {header.size} bytes, {end - pos} remain"
            )
        if validate_crc and not crc_is_valid(buf, pos, header):
            raise CorruptRecordError(
                f"CRC mismatch in batch at byte {pos}: stored {header.crc:#010x}, computed {compute_crc(buf, pos, header):#010x}"
            )
        yield pos, header
        pos += header.size


def patch_base_offset(buf: bytearray | memoryview, pos: int, base_offset: int) -> None:
    _INT64.pack_into(buf, pos, base_offset)


def patch_partition_leader_epoch(buf: bytearray | memoryview, pos: int, epoch: int) -> None:
    _INT32.pack_into(buf, pos + 12, epoch)


def build_batch(
    records: list[tuple[bytes | None, bytes | None]],
    *,
    base_offset: int = 0,
    base_timestamp: int = 0,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    attributes: int = 0,
    partition_leader_epoch: int = -1,
) -> bytes:
    """Build an uncompressed v2 batch of (key, value) records.

    Used for control batches the broker writes itself and by tests; clients
    build their own batches.
    """
    body = bytearray()
    for delta, (key, value) in enumerate(records):
        rec = bytearray()
        rec += b"\x00"  # record attributes
        rec += _varint(0)  # timestamp delta
        rec += _varint(delta)  # offset delta
        rec += _varint(-1) if key is None else _varint(len(key)) + key
        rec += _varint(-1) if value is None else _varint(len(value)) + value
        rec += _varint(0)  # header count
        body += _varint(len(rec)) + rec
    count = len(records)
    last_offset_delta = max(count - 1, 0)
    after_crc = struct.pack(
        ">hiqqqhii",
        attributes,
        last_offset_delta,
        base_timestamp,
        base_timestamp,
        producer_id,
        producer_epoch,
        base_sequence,
        count,
    ) + bytes(body)
    crc = _crc32c.crc32c(after_crc)
    batch_length = 4 + 1 + 4 + len(after_crc)
    return struct.pack(">qiibI", base_offset, batch_length, partition_leader_epoch, 2, crc) + after_crc


def _varint(value: int) -> bytes:
    zigzag = (value << 1) ^ (value >> 63)
    out = bytearray()
    while True:
        byte = zigzag & 0x7F
        zigzag >>= 7
        if zigzag:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)
