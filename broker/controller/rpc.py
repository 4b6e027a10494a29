"""Internal RPCs between nodes: Raft messages and requests to the active controller.

Both travel as Kafka-framed requests (broker.protocol.client) with api keys
above 30000, which are never advertised in ApiVersions:

- `RAFT` (30000) v0: a batch of Raft messages for the receiving node,
  `count u32 | (length u32 | message)*` (each message in broker.raft.messages'
  codec); the response body is empty (replies travel as Raft messages of
  their own, in requests the other way).
- `CONTROLLER` (30001) v0: one request to the active controller, a JSON object
  `{"op": <operation>, ...arguments}`; the response is a JSON object
  `{"error_code": int, "error_message": str|null, "leader_id": int|null, ...result}`.
  A node that is not the active controller answers NOT_CONTROLLER (41) with the
  leader it knows of, so the sender can retry there.

Operations: register_broker, broker_heartbeat, controlled_shutdown,
alter_partition, create_topics, delete_topics, allocate_producer_ids.

Thread-safety: pure functions.
"""

from __future__ import annotations

import json
import struct
import uuid

from broker.raft import RaftMessage

RAFT = 30000
CONTROLLER = 30001
INTERNAL_API_KEYS = (RAFT, CONTROLLER)
_COUNT = struct.Struct(">I")


class InternalRequestError(ValueError):
    """Bytes that are not a well-formed internal request."""


def encode_raft_batch(messages) -> bytes:
    out = bytearray(_COUNT.pack(len(messages)))
    for message in messages:
        encoded = message.encode()
        out += _COUNT.pack(len(encoded))
        out += encoded
    return bytes(out)


def decode_raft_batch(data) -> list[RaftMessage]:
    raw = memoryview(bytes(data))
    if len(raw) < _COUNT.size:
        raise InternalRequestError(f"Raft batch of {len(raw)} bytes is shorter than its count (4 bytes)")
    (count,) = _COUNT.unpack_from(raw, 0)
    position = _COUNT.size
    messages = []
    for number in range(count):
        if position + _COUNT.size > len(raw):
            raise InternalRequestError(f"Raft batch ends before message {number} of {count}")
        (length,) = _COUNT.unpack_from(raw, position)
        position += _COUNT.size
        if position + length > len(raw):
            raise InternalRequestError(f"Raft message {number} of {length} bytes runs past the batch end ({len(raw)} bytes)")
        messages.append(RaftMessage.decode(raw[position : position + length]))
        position += length
    if position != len(raw):
        raise InternalRequestError(f"Raft batch has {len(raw) - position} bytes after its {count} messages")
    return messages


def _default(value):
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def encode_json(value: dict) -> bytes:
    return json.dumps(value, default=_default, separators=(",", ":")).encode("utf-8")


def decode_json(data) -> dict:
    try:
        value = json.loads(bytes(data).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InternalRequestError(f"internal request body is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InternalRequestError(f"internal request body is {type(value).__name__}; accepted: a JSON object")
    return value
