"""Record batches with a well-formed header and a right CRC around a body that lies, for the leader's
record validation tests (test_record_validation*, test_fuzz): each codec's compressor, and records
whose lengths, offset deltas and headers can be made to lie."""

from __future__ import annotations

import gzip
import struct
import time

import crc32c
import cramjam
import lz4.frame
import zstandard

from broker.protocol.records import BATCH_HEADER_SIZE, build_batch

CODEC_IDS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


def compress(codec: int, body: bytes) -> bytes:
    if codec == 1:
        return gzip.compress(body)
    if codec == 2:
        return bytes(cramjam.snappy.compress_raw(body))
    if codec == 3:
        return lz4.frame.compress(body)
    if codec == 4:
        return zstandard.ZstdCompressor().compress(body)
    return body


def xerial_snappy(body: bytes, block: int = 1000) -> bytes:
    """Snappy as Java producers frame it (xerial): a 16-byte header, then int32-length-prefixed raw blocks."""
    out = bytearray(b"\x82SNAPPY\x00" + struct.pack(">ii", 1, 1))
    for start in range(0, len(body), block):
        raw = bytes(cramjam.snappy.compress_raw(body[start : start + block]))
        out += struct.pack(">i", len(raw)) + raw
    return bytes(out)


def records_of(pairs) -> bytes:
    """The record bytes (after the 61-byte header) of an honest uncompressed batch."""
    return build_batch(pairs)[BATCH_HEADER_SIZE:]


def lying_batch(body: bytes, count: int, last_offset_delta: int | None = None, attributes: int = 0) -> bytes:
    """A batch whose header is well formed and whose CRC is right, around whatever `body` is."""
    last = count - 1 if last_offset_delta is None else last_offset_delta
    now_ms = time.time_ns() // 1_000_000  # an old timestamp would be expired by time retention
    after_crc = struct.pack(">hiqqqhii", attributes, last, now_ms, now_ms, -1, -1, -1, count) + body
    return struct.pack(">qiibI", 0, 9 + len(after_crc), -1, 2, crc32c.crc32c(after_crc)) + after_crc


def varint(value: int) -> bytes:
    zigzag = (value << 1) ^ (value >> 63)
    out = bytearray()
    while True:
        if zigzag >> 7:
            out.append(zigzag & 0x7F | 0x80)
            zigzag >>= 7
        else:
            out.append(zigzag)
            return bytes(out)


def record(offset_delta: int, key: bytes | None, value: bytes | None, headers: bytes = b"\x00", key_length=None,
           value_length=None) -> bytes:
    """One record's bytes; lengths may be given to lie."""
    body = b"\x00" + varint(0) + varint(offset_delta)
    body += varint(-1 if key is None else len(key) if key_length is None else key_length) + (key or b"")
    body += varint(-1 if value is None else len(value) if value_length is None else value_length) + (value or b"")
    body += headers
    return varint(len(body)) + body


GOOD = records_of([(b"k0", b"v0"), (None, b"v1"), (b"k2", None)])

# name -> (make: () -> (body, records_count, last_offset_delta or None), a fragment of the refusal)
LIES = {
    "count 2^31-1": (lambda: (GOOD, 2**31 - 1, None), "cannot fit"),
    "count above the records present": (lambda: (GOOD, 4, None), "runs past the end"),
    "count below the records present": (lambda: (GOOD, 2, None), "bytes follow the last"),
    "count != last_offset_delta+1": (lambda: (GOOD, 3, 5), "does not match last_offset_delta"),
    "zero records": (lambda: (b"", 0, 0), "at least one record"),
    "random bytes": (lambda: (bytes(range(7, 250)), 3, None), "record 0"),
    "offset deltas out of order": (lambda: (record(1, None, b"a") + record(0, None, b"b"), 2, None), "offset delta 1; expected 0"),
    "offset deltas skip": (lambda: (record(0, None, b"a") + record(2, None, b"b"), 2, None), "offset delta 2; expected 1"),
    "key longer than the record": (lambda: (record(0, b"k", b"v", key_length=40), 1, None), "record 0"),
    "value longer than the record": (lambda: (record(0, b"k", b"v", value_length=60), 1, None), "record 0"),
    "key length -2": (lambda: (record(0, b"", b"v", key_length=-2), 1, None), "key length -2"),
    "value length -7": (lambda: (record(0, b"k", b"", value_length=-7), 1, None), "value length -7"),
    "record length too long": (lambda: (varint(40) + record(0, None, b"abc")[1:] + b"\x00" * 31, 1, None),
                               "length says 40"),
    "record length past the body": (lambda: (varint(1000) + record(0, None, b"abc")[1:], 1, None), "claims 1000 bytes"),
    "header count 2^30": (lambda: (record(0, None, b"v", headers=varint(2**30)), 1, None), "header count"),
    "header count -1": (lambda: (record(0, None, b"v", headers=varint(-1)), 1, None), "header count -1"),
    "null header key": (lambda: (record(0, None, b"v", headers=varint(1) + varint(-1) + varint(-1) + b"\x00" * 4), 1, None),
                        "may not be null"),
    "header value past the record": (lambda: (record(0, None, b"v", headers=varint(1) + varint(1) + b"h" + varint(90)), 1, None),
                                     "runs past"),
    "varint of 6 bytes": (lambda: (b"\x80\x80\x80\x80\x80\x01" + b"\x00" * 10, 1, None), "longer than 5 bytes"),
    "trailing bytes": (lambda: (GOOD + b"\x00\x00", 3, None), "bytes follow the last"),
}
