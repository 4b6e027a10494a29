"""A length check that runs before kio decodes a request body.

kio's native decoder trusts array lengths: an array that claims 2^31 elements
makes it try to reserve that much memory, and a failed allocation aborts the
whole process. This module walks the same schema (kio's generated dataclasses
and their `kafka_type` metadata, with the flexible/non-flexible encodings of
KIP-482 and nullable structs of KIP-893) without building anything, and
refuses any length that claims more elements or bytes than the request has
left. Only then does kio decode, so a hostile or corrupt request costs at most
its own size.

Invariant: if `check_body` accepts a body, every array and byte string in it
fits in the body, so decoding allocates O(len(body)).

Thread-safety: pure functions; the per-class plans are cached.
"""

from __future__ import annotations

import dataclasses
import struct
from functools import lru_cache

from kio.serial._introspect import EntityField, EntityTupleField, PrimitiveTupleField, classify_field, is_optional

from broker.protocol.wire import MalformedRequestError, read_unsigned_varint

FIXED_SIZES = {
    "int8": 1, "uint8": 1, "bool": 1,
    "int16": 2, "uint16": 2, "error_code": 2,
    "int32": 4, "uint32": 4, "timedelta_i32": 4,
    "int64": 8, "uint64": 8, "float64": 8, "timedelta_i64": 8, "datetime_i64": 8,
    "uuid": 16,
}
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")

# plan entry kinds
_FIXED, _STRING, _BYTES, _VARINT, _ENTITY, _ENTITY_ARRAY, _PRIMITIVE_ARRAY = range(7)


@lru_cache(maxsize=None)
def _plan(cls) -> tuple[tuple, dict]:
    """(ordered field steps, {tag: step}) for an entity class."""
    steps = []
    tagged = {}
    for field in dataclasses.fields(cls):
        kind = classify_field(field)
        if isinstance(kind, EntityTupleField):
            step = (_ENTITY_ARRAY, kind.type_, field.name)
        elif isinstance(kind, EntityField):
            step = (_ENTITY, kind.type_, is_optional(field), field.name)
        else:
            kafka_type = field.metadata["kafka_type"]
            element = _primitive_step(kafka_type, field.name)
            step = (_PRIMITIVE_ARRAY, element, field.name) if isinstance(kind, PrimitiveTupleField) else element
        tag = field.metadata.get("tag")
        if tag is None:
            steps.append(step)
        else:
            tagged[tag] = step
    return tuple(steps), tagged


def _primitive_step(kafka_type: str, name: str) -> tuple:
    if kafka_type in FIXED_SIZES:
        return (_FIXED, FIXED_SIZES[kafka_type], name)
    if kafka_type == "string":
        return (_STRING, 0, name)
    if kafka_type in ("bytes", "records"):
        return (_BYTES, 0, name)
    if kafka_type in ("uvarint", "varint", "uvarlong", "varlong"):
        return (_VARINT, 0, name)
    raise AssertionError(f"guard does not know kafka_type {kafka_type!r} of field {name!r}")


def check_body(cls, buf, pos: int) -> int:
    """Walk a body of entity class `cls` at `pos`; return the end position or raise MalformedRequestError."""
    return _walk_entity(cls, buf, pos, len(buf))


def _need(pos: int, size: int, end: int, what: str) -> None:
    if size < 0 or pos + size > end:
        raise MalformedRequestError(f"{what}: {size} bytes claimed at byte {pos}, only {end - pos} left")


def _walk_entity(cls, buf, pos: int, end: int) -> int:
    flexible = cls.__flexible__
    steps, tagged = _plan(cls)
    for step in steps:
        pos = _walk_step(step, flexible, buf, pos, end)
    if flexible:
        count, pos = read_unsigned_varint(buf, pos)
        _need(pos, count, end, f"{cls.__name__} tagged field count {count}")
        for _ in range(count):
            tag, pos = read_unsigned_varint(buf, pos)
            size, pos = read_unsigned_varint(buf, pos)
            _need(pos, size, end, f"{cls.__name__} tagged field {tag}")
            step = tagged.get(tag)
            if step is not None:
                inner_end = _walk_step(step, True, buf, pos, pos + size)
                if inner_end != pos + size:
                    raise MalformedRequestError(f"{cls.__name__} tagged field {tag} is {size} bytes but its content is {inner_end - pos}")
            pos += size
    if pos > end:
        raise MalformedRequestError(f"{cls.__name__} runs past the end of its buffer")
    return pos


def _array_count(flexible: bool, buf, pos: int, end: int, what: str) -> tuple[int, int]:
    if flexible:
        raw, pos = read_unsigned_varint(buf, pos)
        count = raw - 1
    else:
        _need(pos, 4, end, what)
        (count,) = _I32.unpack_from(buf, pos)
        pos += 4
    if count < -1:
        raise MalformedRequestError(f"{what}: array length {count} at byte {pos} is negative")
    # every element takes at least one byte, so a longer array cannot fit
    _need(pos, max(count, 0), end, f"{what} ({count} elements)")
    return count, pos


def _walk_step(step: tuple, flexible: bool, buf, pos: int, end: int) -> int:
    kind = step[0]
    if kind == _FIXED:
        _need(pos, step[1], end, step[2])
        return pos + step[1]
    if kind == _STRING or kind == _BYTES:
        if flexible:
            raw, pos = read_unsigned_varint(buf, pos)
            size = raw - 1
        elif kind == _STRING:
            _need(pos, 2, end, step[2])
            (size,) = _I16.unpack_from(buf, pos)
            pos += 2
        else:
            _need(pos, 4, end, step[2])
            (size,) = _I32.unpack_from(buf, pos)
            pos += 4
        if size == -1:
            return pos
        _need(pos, size, end, step[2])
        return pos + size
    if kind == _VARINT:
        _, pos = read_unsigned_varint(buf, pos)
        return pos
    if kind == _ENTITY:
        if step[2]:  # KIP-893 nullable struct: int8 marker, -1 for null
            _need(pos, 1, end, step[3])
            marker = buf[pos]
            pos += 1
            if marker == 0xFF:
                return pos
        return _walk_entity(step[1], buf, pos, end)
    if kind == _ENTITY_ARRAY:
        count, pos = _array_count(flexible, buf, pos, end, step[2])
        for _ in range(count):
            pos = _walk_entity(step[1], buf, pos, end)
        return pos
    if kind == _PRIMITIVE_ARRAY:
        count, pos = _array_count(flexible, buf, pos, end, step[2])
        for _ in range(count):
            pos = _walk_step(step[1], flexible, buf, pos, end)
        return pos
    raise AssertionError(f"unknown guard step {step!r}")
