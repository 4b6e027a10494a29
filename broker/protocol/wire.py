"""Kafka request/response framing and headers.

Every message on a Kafka connection is an int32 big-endian size followed by that
many bytes. A request body starts with a request header:

- v0: api_key int16, api_version int16, correlation_id int32
- v1: v0 + client_id (nullable int16-length string)
- v2: v1 + tagged fields (KIP-482, "flexible versions")

A request uses header v2 exactly when its (api_key, api_version) is a flexible
version; the only v0-header request Kafka still knows is ControlledShutdown v0,
which this broker does not serve, so every request is parsed as v1 or v2.
Responses start with response header v0 (correlation_id) or v1 (v0 + tagged
fields); ApiVersions responses always use v0 so that a client can read them
before it knows what the broker supports (KIP-511).

Sources: the Kafka protocol guide ("Common Request and Response Structure"),
KIP-482 (tagged fields), KIP-511 (ApiVersions fallback).

Thread-safety: pure functions over buffers.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")
_HEADER_FIXED = struct.Struct(">hhi")  # api_key, api_version, correlation_id
SIZE_PREFIX_BYTES = 4
MIN_REQUEST_BYTES = _HEADER_FIXED.size  # a request shorter than this cannot hold a header


class MalformedRequestError(ValueError):
    """Bytes that cannot be a request of the kind the header claims; the message says where."""


@dataclass(slots=True)
class RequestHeader:
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    size: int  # bytes the header occupies; the body starts here


def peek_header(buf) -> tuple[int, int, int]:
    """Return (api_key, api_version, correlation_id): the fields every header version shares."""
    if len(buf) < MIN_REQUEST_BYTES:
        raise MalformedRequestError(f"request of {len(buf)} bytes is shorter than a request header ({MIN_REQUEST_BYTES} bytes)")
    return _HEADER_FIXED.unpack_from(buf, 0)


def read_unsigned_varint(buf, pos: int) -> tuple[int, int]:
    """Return (value, next position) of the unsigned varint at `pos` (at most 5 bytes: a uint32)."""
    value = 0
    shift = 0
    end = len(buf)
    while True:
        if pos >= end:
            raise MalformedRequestError(f"truncated varint at byte {pos}")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 28:
            raise MalformedRequestError(f"varint longer than 5 bytes ending at byte {pos}")


def write_unsigned_varint(value: int, out: bytearray) -> None:
    if value < 0:
        raise ValueError(f"unsigned varint value must be >= 0, not {value}")
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def skip_tagged_fields(buf, pos: int) -> int:
    """Skip a tagged-field section (KIP-482); return the position after it."""
    count, pos = read_unsigned_varint(buf, pos)
    for _ in range(count):
        _tag, pos = read_unsigned_varint(buf, pos)
        size, pos = read_unsigned_varint(buf, pos)
        pos += size
        if pos > len(buf):
            raise MalformedRequestError(f"tagged field of {size} bytes runs past the end of the request ({len(buf)} bytes)")
    return pos


def parse_request_header(buf, flexible: bool) -> RequestHeader:
    """Parse header v1 (`flexible` False) or v2 (`flexible` True) at the start of `buf`."""
    api_key, api_version, correlation_id = peek_header(buf)
    pos = MIN_REQUEST_BYTES
    if len(buf) < pos + 2:
        raise MalformedRequestError("request header ends before its client_id length")
    (length,) = _INT16.unpack_from(buf, pos)
    pos += 2
    if length < -1:
        raise MalformedRequestError(f"client_id length {length} is negative (only -1 means null)")
    if length == -1:
        client_id = None
    else:
        if pos + length > len(buf):
            raise MalformedRequestError(f"client_id of {length} bytes runs past the end of the request ({len(buf)} bytes)")
        try:
            client_id = bytes(buf[pos : pos + length]).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedRequestError(f"client_id is not UTF-8: {exc}") from None
        pos += length
    if flexible:
        pos = skip_tagged_fields(buf, pos)
    return RequestHeader(api_key, api_version, correlation_id, client_id, pos)


def encode_request_header(header: RequestHeader, flexible: bool) -> bytes:
    """The inverse of parse_request_header (for clients in tests and tools)."""
    out = bytearray(_HEADER_FIXED.pack(header.api_key, header.api_version, header.correlation_id))
    if header.client_id is None:
        out += _INT16.pack(-1)
    else:
        raw = header.client_id.encode("utf-8")
        out += _INT16.pack(len(raw)) + raw
    if flexible:
        out.append(0)
    return bytes(out)


def response_header(correlation_id: int, flexible: bool) -> bytes:
    """Response header v1 (`flexible`) or v0."""
    return _INT32.pack(correlation_id) + (b"\x00" if flexible else b"")


def frame(chunks: list) -> list:
    """Prefix a message made of `chunks` (buffers) with its int32 size; no bytes are copied."""
    total = 0
    for chunk in chunks:
        total += len(chunk)
    return [_INT32.pack(total), *chunks]

