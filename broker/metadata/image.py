"""The metadata image: the cluster's state built by applying committed metadata records.

Every node applies the records the controller quorum commits, in log order, to
a `MetadataImage`; two nodes that applied the same prefix of the metadata log
hold equal images. `apply(record)` never mutates: it returns a new image that
shares every map the record did not touch (copy-on-write), so a reader holding
an old image (a request in flight, a listener comparing old and new) sees a
consistent snapshot.

Semantics (KIP-631's records): a registered broker starts fenced until it is
unfenced; a re-registration (new incarnation) fences it again; a partition's
leader is -1 when it has none (offline); `PartitionChangeRecord` fields that are
None keep their value; removing a topic removes its partitions and configs.
`next_producer_id_block_start` is the first producer id not yet handed out
cluster-wide. `scram_credentials` are the SCRAM credentials of KIP-554's records
(salt, iterations, StoredKey, ServerKey per user and mechanism) and
`scram_bootstrapped` says whether they replaced the users file (broker.metadata.scram).
`acls` are the ACL bindings of KIP-801's records by id, in the order they were
created (broker.metadata.acls); the ids come in the records, so a replay builds
the same map.

Invariants (asserted; the controller validates before it proposes, so a broken
one means a controller bug): records refer to known topics and brokers; a
partition's leader is -1 or one of its replicas; its ISR is a subset of its
replicas; leader and partition epochs never decrease; an ACL id is added once
and removed only while present, and every ACL is one a CreateAcls may create.

Thread-safety: immutable values; safe to share between tasks.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from typing import Mapping, Protocol

from broker.metadata.acls import AclBinding, binding_error, binding_of
from broker.metadata.records import (
    AccessControlEntryRecord,
    ConfigRecord,
    FenceBrokerRecord,
    MetadataRecord,
    PartitionChangeRecord,
    PartitionRecord,
    ProducerIdsRecord,
    RegisterBrokerRecord,
    RemoveAccessControlEntryRecord,
    RemoveTopicRecord,
    RemoveUserScramCredentialRecord,
    ScramBootstrapRecord,
    TopicRecord,
    UnfenceBrokerRecord,
    UserScramCredentialRecord,
)
from broker.metadata.scram import MECHANISM_NAMES, ScramCredential

NO_LEADER = -1
RESOURCE_TOPIC = 2
RESOURCE_BROKER = 4


@dataclass(frozen=True)
class PartitionState:
    topic: str
    topic_id: uuid.UUID
    partition: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    leader: int  # NO_LEADER (-1) when offline
    leader_epoch: int
    partition_epoch: int


@dataclass(frozen=True)
class BrokerState:
    broker_id: int
    host: str
    port: int
    fenced: bool
    incarnation_id: uuid.UUID
    rack: str | None = None


@dataclass(frozen=True)
class TopicState:
    name: str
    topic_id: uuid.UUID
    partitions: Mapping[int, PartitionState] = field(default_factory=dict)
    configs: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MetadataImage:
    """An immutable snapshot of the cluster metadata after the record at log index `offset`."""

    offset: int = 0
    brokers: Mapping[int, BrokerState] = field(default_factory=dict)
    topics: Mapping[str, TopicState] = field(default_factory=dict)
    topic_names_by_id: Mapping[uuid.UUID, str] = field(default_factory=dict)
    broker_configs: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # resource name ("" = cluster default) -> configs
    next_producer_id_block_start: int = 0
    # SCRAM credentials (KIP-554): mechanism name -> user -> credential; until scram_bootstrapped the users
    # file authenticates instead (broker.metadata.scram)
    scram_credentials: Mapping[str, Mapping[str, ScramCredential]] = field(default_factory=dict)
    scram_bootstrapped: bool = False
    acls: Mapping[uuid.UUID, AclBinding] = field(default_factory=dict)  # ACL bindings by id (KIP-801)

    # ---- queries ------------------------------------------------------------

    def partition(self, topic: str, partition: int) -> PartitionState | None:
        state = self.topics.get(topic)
        return None if state is None else state.partitions.get(partition)

    def topic_by_id(self, topic_id: uuid.UUID) -> TopicState | None:
        name = self.topic_names_by_id.get(topic_id)
        return None if name is None else self.topics[name]

    def partition_by_id(self, topic_id: uuid.UUID, partition: int) -> PartitionState | None:
        topic = self.topic_by_id(topic_id)
        return None if topic is None else topic.partitions.get(partition)

    def unfenced_broker_ids(self) -> list[int]:
        return sorted(b.broker_id for b in self.brokers.values() if not b.fenced)

    def is_live(self, broker_id: int) -> bool:
        broker = self.brokers.get(broker_id)
        return broker is not None and not broker.fenced

    def partitions_of(self, broker_id: int):
        """Every partition that has `broker_id` among its replicas."""
        for topic in self.topics.values():
            for state in topic.partitions.values():
                if broker_id in state.replicas:
                    yield state

    # ---- applying records -----------------------------------------------------

    def with_offset(self, offset: int) -> "MetadataImage":
        assert offset >= self.offset, f"metadata offset would go back from {self.offset} to {offset}"
        return replace(self, offset=offset)

    def apply(self, record: MetadataRecord) -> "MetadataImage":
        """A new image with `record` applied (the offset is unchanged; see `with_offset`)."""
        handler = _APPLY.get(type(record))
        assert handler is not None, f"no way to apply metadata record {record!r}"
        return handler(self, record)

    def apply_all(self, records, offset: int) -> "MetadataImage":
        image = self
        for record in records:
            image = image.apply(record)
        return image.with_offset(offset)

    def _with_topic(self, topic: TopicState) -> "MetadataImage":
        topics = dict(self.topics)
        topics[topic.name] = topic
        return replace(self, topics=topics)

    def _with_partition(self, state: PartitionState) -> "MetadataImage":
        topic = self.topics[state.topic]
        partitions = dict(topic.partitions)
        partitions[state.partition] = state
        return self._with_topic(replace(topic, partitions=partitions))


def _register_broker(image: MetadataImage, record: RegisterBrokerRecord) -> MetadataImage:
    brokers = dict(image.brokers)
    brokers[record.broker_id] = BrokerState(record.broker_id, record.host, record.port, True, record.incarnation_id, record.rack)
    return replace(image, brokers=brokers)


def _set_fenced(image: MetadataImage, broker_id: int, fenced: bool) -> MetadataImage:
    broker = image.brokers.get(broker_id)
    assert broker is not None, f"fencing state change for unregistered broker {broker_id}"
    brokers = dict(image.brokers)
    brokers[broker_id] = replace(broker, fenced=fenced)
    return replace(image, brokers=brokers)


def _topic(image: MetadataImage, record: TopicRecord) -> MetadataImage:
    assert record.name not in image.topics, f"topic {record.name} created twice"
    assert record.topic_id not in image.topic_names_by_id, f"topic id {record.topic_id} reused"
    names = dict(image.topic_names_by_id)
    names[record.topic_id] = record.name
    image = replace(image, topic_names_by_id=names)
    return image._with_topic(TopicState(record.name, record.topic_id, {}, {}))


def _check_partition(state: PartitionState) -> None:
    assert state.leader == NO_LEADER or state.leader in state.replicas, f"leader not a replica: {state}"
    assert set(state.isr) <= set(state.replicas), f"ISR not a subset of the replicas: {state}"
    assert len(set(state.replicas)) == len(state.replicas), f"replicas repeat a broker: {state}"


def _partition(image: MetadataImage, record: PartitionRecord) -> MetadataImage:
    name = image.topic_names_by_id.get(record.topic_id)
    assert name is not None, f"partition record for unknown topic id {record.topic_id}"
    state = PartitionState(
        name, record.topic_id, record.partition, tuple(record.replicas), tuple(record.isr),
        record.leader, record.leader_epoch, record.partition_epoch,
    )
    _check_partition(state)
    return image._with_partition(state)


def _partition_change(image: MetadataImage, record: PartitionChangeRecord) -> MetadataImage:
    old = image.partition_by_id(record.topic_id, record.partition)
    assert old is not None, f"partition change for unknown partition {record.topic_id}-{record.partition}"
    assert record.leader_epoch >= old.leader_epoch, f"leader epoch goes back: {old} -> {record}"
    assert record.partition_epoch >= old.partition_epoch, f"partition epoch goes back: {old} -> {record}"
    new = replace(
        old,
        leader=old.leader if record.leader is None else record.leader,
        isr=old.isr if record.isr is None else tuple(record.isr),
        leader_epoch=record.leader_epoch,
        partition_epoch=record.partition_epoch,
    )
    _check_partition(new)
    return image._with_partition(new)


def _config(image: MetadataImage, record: ConfigRecord) -> MetadataImage:
    if record.resource_type == RESOURCE_TOPIC:
        topic = image.topics.get(record.resource_name)
        assert topic is not None, f"config for unknown topic {record.resource_name}"
        configs = dict(topic.configs)
        if record.value is None:
            configs.pop(record.key, None)
        else:
            configs[record.key] = record.value
        return image._with_topic(replace(topic, configs=configs))
    all_configs = dict(image.broker_configs)
    configs = dict(all_configs.get(record.resource_name, {}))
    if record.value is None:
        configs.pop(record.key, None)
    else:
        configs[record.key] = record.value
    all_configs[record.resource_name] = configs
    return replace(image, broker_configs=all_configs)


def _remove_topic(image: MetadataImage, record: RemoveTopicRecord) -> MetadataImage:
    name = image.topic_names_by_id.get(record.topic_id)
    assert name is not None, f"removal of unknown topic id {record.topic_id}"
    names = dict(image.topic_names_by_id)
    del names[record.topic_id]
    topics = dict(image.topics)
    del topics[name]
    return replace(image, topics=topics, topic_names_by_id=names)


def _producer_ids(image: MetadataImage, record: ProducerIdsRecord) -> MetadataImage:
    assert record.next_producer_id_block_start > image.next_producer_id_block_start, (
        f"producer id blocks go back: {image.next_producer_id_block_start} -> {record}"
    )
    return replace(image, next_producer_id_block_start=record.next_producer_id_block_start)


def _scram_credential(image: MetadataImage, record: UserScramCredentialRecord) -> MetadataImage:
    mechanism = MECHANISM_NAMES.get(record.mechanism)
    assert mechanism is not None, f"SCRAM credential of unknown mechanism: {record.name} {record.mechanism}"
    all_credentials = dict(image.scram_credentials)
    users = dict(all_credentials.get(mechanism, {}))
    users[record.name] = ScramCredential(record.salt, record.iterations, record.stored_key, record.server_key)
    all_credentials[mechanism] = users
    return replace(image, scram_credentials=all_credentials)


def _remove_scram_credential(image: MetadataImage, record: RemoveUserScramCredentialRecord) -> MetadataImage:
    mechanism = MECHANISM_NAMES.get(record.mechanism)
    assert record.name in image.scram_credentials.get(mechanism, {}), f"removal of unknown SCRAM credential {record}"
    all_credentials = dict(image.scram_credentials)
    users = dict(all_credentials[mechanism])
    del users[record.name]
    all_credentials[mechanism] = users
    return replace(image, scram_credentials=all_credentials)


def _acl_entry(image: MetadataImage, record: AccessControlEntryRecord) -> MetadataImage:
    assert record.id not in image.acls, f"ACL id {record.id} added twice"
    binding = binding_of(record)
    problem = binding_error(binding)
    assert problem is None, f"ACL record that no CreateAcls may write: {record} ({problem})"
    acls = dict(image.acls)
    acls[record.id] = binding
    return replace(image, acls=acls)


def _remove_acl(image: MetadataImage, record: RemoveAccessControlEntryRecord) -> MetadataImage:
    assert record.id in image.acls, f"removal of unknown ACL id {record.id}"
    acls = dict(image.acls)
    del acls[record.id]
    return replace(image, acls=acls)


_APPLY = {
    RegisterBrokerRecord: _register_broker,
    FenceBrokerRecord: lambda image, record: _set_fenced(image, record.broker_id, True),
    UnfenceBrokerRecord: lambda image, record: _set_fenced(image, record.broker_id, False),
    TopicRecord: _topic,
    PartitionRecord: _partition,
    PartitionChangeRecord: _partition_change,
    ConfigRecord: _config,
    RemoveTopicRecord: _remove_topic,
    ProducerIdsRecord: _producer_ids,
    UserScramCredentialRecord: _scram_credential,
    RemoveUserScramCredentialRecord: _remove_scram_credential,
    ScramBootstrapRecord: lambda image, record: replace(image, scram_bootstrapped=True),
    AccessControlEntryRecord: _acl_entry,
    RemoveAccessControlEntryRecord: _remove_acl,
}


class MetadataListener(Protocol):
    def on_metadata(self, old: MetadataImage, new: MetadataImage) -> None:
        """Called on the broker's event loop after each committed batch is applied."""
        ...
