"""Transaction markers: the commit/abort control batches written into each partition of a transaction (KIP-98).

A marker is a v2 batch with the control (0x20) and transactional (0x10)
attribute bits, written as the producer's id and epoch with no sequence, holding
one record whose key is `version int16 (0) | type int16 (0 abort, 1 commit)` and
whose value is `version int16 (0) | coordinator epoch int32`. Consumers skip
control batches; read_committed consumers use abort markers (with Fetch's
`aborted_transactions`) to drop the aborted records before them.

Pure functions; thread-safe.
Sources: KIP-98, Kafka's EndTransactionMarker / ControlRecordType (format, not code).
"""

from __future__ import annotations

import struct

from broker.protocol.records import BATCH_HEADER_SIZE, build_batch, parse_header

CONTROL_ATTRIBUTES = 0x20 | 0x10
ABORT, COMMIT = 0, 1


def build_marker_batch(producer_id: int, producer_epoch: int, commit: bool, coordinator_epoch: int,
                       timestamp_ms: int) -> bytes:
    """A control batch ending `producer_id`'s transaction (base offset 0; the log assigns the real one)."""
    key = struct.pack(">hh", 0, COMMIT if commit else ABORT)
    value = struct.pack(">hi", 0, coordinator_epoch)
    return build_batch([(key, value)], base_timestamp=timestamp_ms, producer_id=producer_id,
                       producer_epoch=producer_epoch, attributes=CONTROL_ATTRIBUTES)


def marker_commit(batch: bytes) -> bool | None:
    """True for a commit marker, False for an abort marker, None for any other batch (or an unknown control type)."""
    info = marker_info(batch)
    return None if info is None else info[0]


def marker_info(batch: bytes) -> tuple[bool, int] | None:
    """(commit, coordinator epoch) of a commit/abort marker batch; None for any other batch.

    The coordinator epoch is -1 when the marker's value is too short to hold one.
    """
    header = parse_header(batch, 0)
    if not header.is_control or header.compression != 0 or header.records_count < 1:
        return None
    position = BATCH_HEADER_SIZE
    _, position = _read_varint(batch, position)  # record length
    position += 1  # record attributes
    _, position = _read_varint(batch, position)  # timestamp delta
    _, position = _read_varint(batch, position)  # offset delta
    key_length, position = _read_varint(batch, position)
    if key_length < 4:
        return None
    _, control_type = struct.unpack_from(">hh", batch, position)
    commit = {COMMIT: True, ABORT: False}.get(control_type)
    if commit is None:
        return None
    position += key_length
    value_length, position = _read_varint(batch, position)
    coordinator_epoch = struct.unpack_from(">i", batch, position + 2)[0] if value_length >= 6 else -1
    return commit, coordinator_epoch


def _read_varint(buf: bytes, position: int) -> tuple[int, int]:
    shift = 0
    raw = 0
    while True:
        byte = buf[position]
        position += 1
        raw |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (raw >> 1) ^ -(raw & 1), position
        shift += 7
