"""Metadata records: what the controller quorum commits, one record per Raft log entry batch item.

Each record is a frozen dataclass; `encode()` gives `version u8 (= 1)` followed
by compact JSON `{"type": <record type>, <fields>}` (metadata is small; being
readable in a hex dump beats speed here). `decode_record(data)` rebuilds any
record; `decode_record(r.encode()) == r`. UUIDs travel as their canonical
string, tuples as JSON arrays, and None as null.

A Raft entry carries a *batch* of records (`encode_batch` / `decode_batch`):
the controller commits the records that one decision produces atomically, as
KIP-631's controller does with its record batches.

The record types and their meaning follow KIP-631 (RegisterBrokerRecord,
FenceBrokerRecord, UnfenceBrokerRecord, TopicRecord, PartitionRecord,
PartitionChangeRecord, ConfigRecord, RemoveTopicRecord, ProducerIdsRecord) and
KIP-554 (UserScramCredentialRecord, RemoveUserScramCredentialRecord; bytes travel
as base64), plus our ScramBootstrapRecord (broker.metadata.scram), and KIP-801
(AccessControlEntryRecord, RemoveAccessControlEntryRecord: one ACL binding and
its id; enum fields hold Kafka's wire codes, broker.metadata.acls);
the encoding is our own. In `PartitionChangeRecord` a None field means
"unchanged".

Invariants checked by `decode_record` (bad input raises `MetadataRecordError`, a
ValueError naming what is wrong): known version and type, exactly the record's
fields, integers where integers belong.

Thread-safety: immutable values and pure functions.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import struct
import uuid
from dataclasses import dataclass
from typing import ClassVar

RECORD_VERSION = 1
BATCH_VERSION = 1
_LENGTH = struct.Struct(">I")


class MetadataRecordError(ValueError):
    """Bytes that are not a metadata record (or batch) of a known version."""


@dataclass(frozen=True)
class MetadataRecord:
    TYPE: ClassVar[str] = ""

    def encode(self) -> bytes:
        fields = {"type": self.TYPE}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, uuid.UUID):
                value = str(value)
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, bytes):
                value = base64.b64encode(value).decode("ascii")
            fields[f.name] = value
        return bytes([RECORD_VERSION]) + json.dumps(fields, separators=(",", ":"), sort_keys=True).encode("utf-8")

    @staticmethod
    def decode(data: bytes | bytearray | memoryview) -> "MetadataRecord":
        return decode_record(data)


@dataclass(frozen=True)
class RegisterBrokerRecord(MetadataRecord):
    TYPE: ClassVar[str] = "RegisterBroker"
    broker_id: int
    incarnation_id: uuid.UUID
    host: str
    port: int
    rack: str | None = None


@dataclass(frozen=True)
class FenceBrokerRecord(MetadataRecord):
    TYPE: ClassVar[str] = "FenceBroker"
    broker_id: int


@dataclass(frozen=True)
class UnfenceBrokerRecord(MetadataRecord):
    TYPE: ClassVar[str] = "UnfenceBroker"
    broker_id: int


@dataclass(frozen=True)
class TopicRecord(MetadataRecord):
    TYPE: ClassVar[str] = "Topic"
    name: str
    topic_id: uuid.UUID


@dataclass(frozen=True)
class PartitionRecord(MetadataRecord):
    TYPE: ClassVar[str] = "Partition"
    topic_id: uuid.UUID
    partition: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    leader: int
    leader_epoch: int
    partition_epoch: int


@dataclass(frozen=True)
class PartitionChangeRecord(MetadataRecord):
    TYPE: ClassVar[str] = "PartitionChange"
    topic_id: uuid.UUID
    partition: int
    leader: int | None
    isr: tuple[int, ...] | None
    leader_epoch: int
    partition_epoch: int


@dataclass(frozen=True)
class ConfigRecord(MetadataRecord):
    TYPE: ClassVar[str] = "Config"
    resource_type: int  # Kafka's ConfigResource type: 2 topic, 4 broker
    resource_name: str
    key: str
    value: str | None  # None removes the config


@dataclass(frozen=True)
class RemoveTopicRecord(MetadataRecord):
    TYPE: ClassVar[str] = "RemoveTopic"
    topic_id: uuid.UUID


@dataclass(frozen=True)
class ProducerIdsRecord(MetadataRecord):
    TYPE: ClassVar[str] = "ProducerIds"
    broker_id: int
    next_producer_id_block_start: int


@dataclass(frozen=True)
class UserScramCredentialRecord(MetadataRecord):
    """KRaft's UserScramCredentialRecord (KIP-554): a user's SCRAM credential for one mechanism, never the password.

    mechanism: 1 SCRAM-SHA-256, 2 SCRAM-SHA-512; salt, StoredKey and ServerKey as RFC 5802 section 3 defines them.
    """

    TYPE: ClassVar[str] = "UserScramCredential"
    name: str
    mechanism: int
    salt: bytes
    stored_key: bytes
    server_key: bytes
    iterations: int


@dataclass(frozen=True)
class RemoveUserScramCredentialRecord(MetadataRecord):
    TYPE: ClassVar[str] = "RemoveUserScramCredential"
    name: str
    mechanism: int


@dataclass(frozen=True)
class ScramBootstrapRecord(MetadataRecord):
    """From here on the log's SCRAM credentials replace the users file (broker.metadata.scram); `users` were copied."""

    TYPE: ClassVar[str] = "ScramBootstrap"
    users: int


@dataclass(frozen=True)
class AccessControlEntryRecord(MetadataRecord):
    """KRaft's AccessControlEntryRecord (KIP-801): one ACL binding, named by an id chosen by the controller.

    resource_type, pattern_type, operation and permission_type are Kafka's wire codes (broker.metadata.acls).
    """

    TYPE: ClassVar[str] = "AccessControlEntry"
    id: uuid.UUID
    resource_type: int
    resource_name: str
    pattern_type: int
    principal: str
    host: str
    operation: int
    permission_type: int


@dataclass(frozen=True)
class RemoveAccessControlEntryRecord(MetadataRecord):
    TYPE: ClassVar[str] = "RemoveAccessControlEntry"
    id: uuid.UUID


RECORD_TYPES: dict[str, type[MetadataRecord]] = {
    cls.TYPE: cls
    for cls in (
        RegisterBrokerRecord,
        FenceBrokerRecord,
        UnfenceBrokerRecord,
        TopicRecord,
        PartitionRecord,
        PartitionChangeRecord,
        ConfigRecord,
        RemoveTopicRecord,
        ProducerIdsRecord,
        UserScramCredentialRecord,
        RemoveUserScramCredentialRecord,
        ScramBootstrapRecord,
        AccessControlEntryRecord,
        RemoveAccessControlEntryRecord,
    )
}

_UUID_FIELDS = {"incarnation_id", "topic_id", "id"}
_TUPLE_FIELDS = {"replicas", "isr"}
_BYTES_FIELDS = {"salt", "stored_key", "server_key"}
_STR_FIELDS = {"host", "rack", "name", "resource_name", "key", "value", "principal"}


def _field_value(record_type: str, name: str, value):
    where = f"{record_type} record field {name}"
    if value is None:
        return None
    if name in _UUID_FIELDS:
        if not isinstance(value, str):
            raise MetadataRecordError(f"{where} is {value!r}; accepted: a UUID string")
        try:
            return uuid.UUID(value)
        except ValueError:
            raise MetadataRecordError(f"{where} is {value!r}; accepted: a UUID string") from None
    if name in _TUPLE_FIELDS:
        if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise MetadataRecordError(f"{where} is {value!r}; accepted: a list of integers")
        return tuple(value)
    if name in _BYTES_FIELDS:
        if not isinstance(value, str):
            raise MetadataRecordError(f"{where} is {value!r}; accepted: a base64 string")
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise MetadataRecordError(f"{where} is {value!r}; accepted: a base64 string") from None
    if name in _STR_FIELDS:
        if not isinstance(value, str):
            raise MetadataRecordError(f"{where} is {value!r}; accepted: a string")
        return value
    if not isinstance(value, int) or isinstance(value, bool):
        raise MetadataRecordError(f"{where} is {value!r}; accepted: an integer")
    return value


def decode_record(data: bytes | bytearray | memoryview) -> MetadataRecord:
    raw = bytes(data)
    if not raw:
        raise MetadataRecordError("an empty byte string is not a metadata record")
    if raw[0] != RECORD_VERSION:
        raise MetadataRecordError(f"metadata record version {raw[0]} is unknown; accepted: {RECORD_VERSION}")
    try:
        fields = json.loads(raw[1:].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MetadataRecordError(f"metadata record body is not JSON: {exc}") from None
    if not isinstance(fields, dict):
        raise MetadataRecordError(f"metadata record body is {type(fields).__name__}; accepted: a JSON object")
    record_type = fields.pop("type", None)
    cls = RECORD_TYPES.get(record_type)
    if cls is None:
        raise MetadataRecordError(f"metadata record type {record_type!r} is unknown; accepted: {', '.join(sorted(RECORD_TYPES))}")
    names = [f.name for f in dataclasses.fields(cls)]
    if set(fields) != set(names):
        raise MetadataRecordError(f"{record_type} record has fields {sorted(fields)}; accepted: exactly {sorted(names)}")
    return cls(**{name: _field_value(record_type, name, fields[name]) for name in names})


def encode_batch(records: list[MetadataRecord] | tuple[MetadataRecord, ...]) -> bytes:
    """`version u8 | count u32 | (length u32 | record)*`: the payload of one Raft entry."""
    out = bytearray([BATCH_VERSION])
    out += _LENGTH.pack(len(records))
    for record in records:
        encoded = record.encode()
        out += _LENGTH.pack(len(encoded))
        out += encoded
    return bytes(out)


def decode_batch(data: bytes | bytearray | memoryview) -> tuple[MetadataRecord, ...]:
    raw = memoryview(bytes(data))
    if len(raw) < 1 + _LENGTH.size:
        raise MetadataRecordError(f"metadata batch of {len(raw)} bytes is shorter than its header (5 bytes)")
    if raw[0] != BATCH_VERSION:
        raise MetadataRecordError(f"metadata batch version {raw[0]} is unknown; accepted: {BATCH_VERSION}")
    (count,) = _LENGTH.unpack_from(raw, 1)
    pos = 1 + _LENGTH.size
    records = []
    for number in range(count):
        if pos + _LENGTH.size > len(raw):
            raise MetadataRecordError(f"metadata batch ends before the length of record {number} of {count}")
        (length,) = _LENGTH.unpack_from(raw, pos)
        pos += _LENGTH.size
        if pos + length > len(raw):
            raise MetadataRecordError(f"record {number} of {length} bytes runs past the end of the batch ({len(raw)} bytes)")
        records.append(decode_record(raw[pos : pos + length]))
        pos += length
    if pos != len(raw):
        raise MetadataRecordError(f"metadata batch has {len(raw) - pos} bytes after its {count} records")
    return tuple(records)
