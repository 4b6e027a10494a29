"""Topic administration of a broker node: topic configs, creating and deleting topics, DescribeConfigs.

`TopicAdmin` owns the topic-level configs (Kafka's names, which of them map
to a `LogConfig` field, their validation and their effective values with
their source), the creation and deletion of a topic's metadata and logs on
this node (`create_topic`, `delete_topic`, also used by Metadata's
auto-creation and the coordinators' internal topics), and the APIs
DescribeConfigs and, on a single node, CreateTopics and DeleteTopics
(registered through broker.server.router; a cluster node answers those two
through the controller, broker.server.cluster, with the validation here).

A topic's logs are created before its metadata is saved, so a creation that
fails half-way (no descriptors left, a full disk) leaves no topic whose
partitions are missing; logs whose topic is gone (`orphan_topics`) are
removed when a topic of that name is created again (issue 17).

Thread-safety: none; everything runs on the broker's event loop.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid

from kio.schema.errors import ErrorCode

from broker.controller.controller import MAX_PARTITIONS_PER_REQUEST, TOO_MANY_PARTITIONS_MESSAGE
from broker.log.config import LogConfig
from broker.protocol import apis
from broker.replication.leader_append import PartitionState
from broker.replication.producer_state import ProducerStateTable
from broker.server.config import LONG_MAX, SENSITIVE_PROPERTIES, BrokerConfig
from broker.server.topics import TopicInfo, TopicStore, topic_name_problem

log = logging.getLogger("broker.server")

RESOURCE_TOPIC = 2
RESOURCE_BROKER = 4
CONFIG_SOURCE_TOPIC = 1
CONFIG_SOURCE_STATIC_BROKER = 4
CONFIG_SOURCE_DEFAULT = 5

# Topic-level configs (Kafka's names) -> (LogConfig field or None, broker property giving the default).
TOPIC_CONFIGS: dict[str, tuple[str | None, str]] = {
    "segment.bytes": ("segment_bytes", "log.segment.bytes"),
    "segment.ms": ("roll_ms", "log.roll.ms"),
    "retention.ms": ("retention_ms", "log.retention.ms"),
    "retention.bytes": ("retention_bytes", "log.retention.bytes"),
    "flush.messages": ("flush_interval_messages", "log.flush.interval.messages"),
    "flush.ms": ("flush_interval_ms", "log.flush.interval.ms"),
    "index.interval.bytes": ("index_interval_bytes", "log.index.interval.bytes"),
    "max.message.bytes": (None, "message.max.bytes"),
    "cleanup.policy": (None, ""),
    "min.insync.replicas": (None, "min.insync.replicas"),
    "unclean.leader.election.enable": (None, "unclean.leader.election.enable"),
    "compression.type": (None, ""),
    "message.timestamp.before.max.ms": (None, "log.message.timestamp.before.max.ms"),  # KIP-937
    "message.timestamp.after.max.ms": (None, "log.message.timestamp.after.max.ms"),
}
# Topic configs whose smallest value is not -1 (Kafka's ranges)
TOPIC_CONFIG_MINIMUMS = {"max.message.bytes": 0, "message.timestamp.before.max.ms": 0, "message.timestamp.after.max.ms": 0}
FIXED_TOPIC_CONFIG_VALUES = {
    "cleanup.policy": ("delete",),
    "min.insync.replicas": ("1",),
    "unclean.leader.election.enable": ("false", "true"),
    "compression.type": ("producer",),
}
FIXED_TOPIC_CONFIG_DEFAULTS = {
    "cleanup.policy": "delete",
    "min.insync.replicas": "1",
    "unclean.leader.election.enable": "false",
    "compression.type": "producer",
}


class TopicConfigError(ValueError):
    """A topic config that is unknown, null, out of range or not supported; the message says which."""


class TopicStorageError(RuntimeError):
    """A topic whose logs could not be created (e.g. no file descriptor left): nothing of it was kept."""


class TopicAdmin:
    """`partitions` is the leader append path's table of the partitions this node serves (a created topic's
    partitions join it, a deleted one's leave it)."""

    def __init__(self, config: BrokerConfig, storage, topics: TopicStore, partitions: dict[tuple[str, int], PartitionState]):
        self.config = config
        self.storage = storage
        self.topics = topics
        self.partitions = partitions
        self.orphan_topics: set[str] = set()  # logs on disk whose topic is not in the topic table

    def apis(self, single_node: bool) -> dict:
        """The APIs this part answers (broker.server.router); a cluster node creates and deletes topics
        through the controller."""
        table = {apis.DESCRIBE_CONFIGS: self.describe_configs}
        if single_node:
            table.update({apis.CREATE_TOPICS: self.create_topics, apis.DELETE_TOPICS: self.delete_topics})
        return table

    def topic_log_config(self, topic_configs: dict[str, str]) -> LogConfig:
        overrides = {}
        for name, value in topic_configs.items():
            field_name = TOPIC_CONFIGS[name][0]
            if field_name is not None:
                number = int(value)
                # Kafka spells "never" as Long.MAX_VALUE; LogConfig spells it None.
                if field_name in ("flush_interval_messages", "flush_interval_ms") and number == LONG_MAX:
                    number = None
                overrides[field_name] = number
        return dataclasses.replace(self.config.log_config, **overrides)

    def validate_topic_configs(self, configs: dict[str, str | None]) -> dict[str, str]:
        result = {}
        for name, value in configs.items():
            if name not in TOPIC_CONFIGS:
                raise TopicConfigError(f"unknown topic config {name}={value!r}; accepted: {', '.join(sorted(TOPIC_CONFIGS))}")
            if value is None:
                raise TopicConfigError(f"topic config {name} has a null value; expected a value")
            fixed = FIXED_TOPIC_CONFIG_VALUES.get(name)
            if fixed is not None:
                if value.lower() not in fixed:
                    raise TopicConfigError(
                        f"topic config {name}={value!r} is not supported yet; accepted: {', '.join(fixed)}"
                    )
            else:
                try:
                    number = int(value)
                except ValueError:
                    raise TopicConfigError(f"topic config {name}={value!r} is not an integer") from None
                minimum = TOPIC_CONFIG_MINIMUMS.get(name, -1)
                if number < minimum:
                    raise TopicConfigError(f"topic config {name}={value!r} is out of range; expected an integer >= {minimum}")
            result[name] = value
        try:
            self.topic_log_config(result)
        except ValueError as exc:
            raise TopicConfigError(f"topic configs {result} rejected: {exc}") from None
        return result

    def topic_config_value(self, info: TopicInfo | None, name: str) -> tuple[str | None, int]:
        if info is not None and name in info.configs:
            return info.configs[name], CONFIG_SOURCE_TOPIC
        broker_property = TOPIC_CONFIGS[name][1]
        if not broker_property:
            return FIXED_TOPIC_CONFIG_DEFAULTS[name], CONFIG_SOURCE_DEFAULT
        value, source = self.config.entries[broker_property]
        return value, CONFIG_SOURCE_STATIC_BROKER if source == "static" else CONFIG_SOURCE_DEFAULT

    def partition_limit_problem(self, partitions: int) -> tuple[ErrorCode, str | None]:
        """POLICY_VIOLATION when `partitions` more would pass max.broker.partitions (KIP-578), else no error."""
        held = sum(info.partitions for info in self.topics.by_name.values())
        if held + partitions > self.config.max_broker_partitions:
            return ErrorCode.policy_violation, (f"{partitions} partitions x 1 replicas would give broker {self.config.node_id} "
                                                f"{held + partitions} partition replicas, above "
                                                f"max.broker.partitions={self.config.max_broker_partitions}")
        return ErrorCode.none, None

    def create_topic(self, name: str, partitions: int, configs: dict[str, str]) -> TopicInfo:
        if name in self.orphan_topics:
            # Logs left by an earlier topic of this name (a crash between deleting its
            # metadata and its logs): they must not leak into the new topic.
            log.warning("removing leftover logs of a deleted topic named %s before creating it again", name)
            self.storage.delete_topic(name)
            self.orphan_topics.discard(name)
        # The logs first, the topic's metadata only once they all exist, so that a creation that fails half-way
        # (no descriptors left, a full disk) leaves no topic with partitions that are not there (issue 17).
        log_config = self.topic_log_config(configs)
        logs = []
        try:
            for partition in range(partitions):
                logs.append(self.storage.create(name, partition, log_config))
            info = self.topics.create(name, partitions, configs)
        except OSError as exc:
            for partition_log in logs:
                partition_log.close(flush=False)  # their descriptors first: removing the directories needs some
            try:
                self.storage.delete_topic(name)
            except OSError as cleanup:
                log.warning("could not remove the partial logs of topic %s: %s; they are removed at its next creation",
                            name, cleanup)
                self.orphan_topics.add(name)
            raise TopicStorageError(f"topic {name} was not created: {exc}") from exc
        for partition, partition_log in enumerate(logs):
            self.partitions[(name, partition)] = PartitionState(partition_log, ProducerStateTable())
        log.info("created topic %s (id %s) with %d partitions, configs %s", name, info.topic_id, partitions, configs)
        return info

    def delete_topic(self, name: str) -> None:
        """Delete the topic's metadata, then its logs; TopicStorageError if the metadata could not be saved (a full
        disk), when nothing changed. Logs that cannot be removed are left for the topic's next creation."""
        try:
            info = self.topics.delete(name)
        except OSError as exc:
            raise TopicStorageError(f"topic {name} was not deleted: {exc}") from exc
        for partition in range(info.partitions):
            self.partitions.pop((name, partition), None)
        try:
            self.storage.delete_topic(name)
        except OSError as exc:
            log.warning("could not remove the logs of deleted topic %s: %s; they are removed at its next creation", name, exc)
            self.orphan_topics.add(name)
        log.info("deleted topic %s (id %s)", name, info.topic_id)

    # ---- CreateTopics / DeleteTopics ------------------------------------------

    def create_topics(self, header, request):
        module = apis.response_module(apis.CREATE_TOPICS, header.api_version)
        results = []
        requested = sum(len(t.assignments) if t.assignments else max(0, t.num_partitions) if t.num_partitions != -1
                        else self.config.num_partitions for t in request.topics)
        for topic in request.topics:
            error, message, info, partitions, configs = ErrorCode.none, None, None, -1, {}
            problem = topic_name_problem(topic.name)
            partitions = topic.num_partitions if topic.num_partitions != -1 else self.config.num_partitions
            replication_factor = topic.replication_factor if topic.replication_factor != -1 else self.config.default_replication_factor
            if topic.assignments:
                partitions = len(topic.assignments)
            if problem is not None:
                error, message = ErrorCode.invalid_topic_exception, problem
            elif topic.name in self.topics.by_name:
                error, message = ErrorCode.topic_already_exists, f"topic {topic.name!r} already exists"
            elif partitions <= 0:
                error, message = ErrorCode.invalid_partitions, f"num_partitions={topic.num_partitions} is invalid; expected >= 1 or -1 (the default)"
            elif replication_factor != 1:
                error, message = ErrorCode.invalid_replication_factor, (
                    f"replication_factor={topic.replication_factor}: replication is not implemented yet, only 1 is accepted"
                )
            elif any(tuple(a.broker_ids) != (self.config.node_id,) for a in topic.assignments):
                error, message = ErrorCode.invalid_replica_assignment, f"every partition must be assigned to node {self.config.node_id} alone"
            else:
                try:
                    configs = self.validate_topic_configs({c.name: c.value for c in topic.configs})
                except TopicConfigError as exc:
                    error, message = ErrorCode.invalid_config, str(exc)
            if error == ErrorCode.none and requested > MAX_PARTITIONS_PER_REQUEST:
                error, message = ErrorCode.policy_violation, TOO_MANY_PARTITIONS_MESSAGE
            elif error == ErrorCode.none:
                error, message = self.partition_limit_problem(partitions)
            if error == ErrorCode.none and not request.validate_only:
                try:
                    info = self.create_topic(topic.name, partitions, configs)
                except TopicStorageError as exc:
                    error, message = ErrorCode.unknown_server_error, str(exc)
                    log.warning("CreateTopics %s failed: %s", topic.name, exc)
            elif error != ErrorCode.none:
                log.info("CreateTopics %s refused: %s (%s)", topic.name, error.name, message)
            config_entries = ()
            if error == ErrorCode.none and hasattr(module, "CreatableTopicConfigs"):
                # v5+ echoes the topic's effective configs (KIP-525).
                entries = []
                for name in sorted(TOPIC_CONFIGS):
                    if info is not None:
                        value, source = self.topic_config_value(info, name)
                    elif name in configs:
                        value, source = configs[name], CONFIG_SOURCE_TOPIC
                    else:
                        continue
                    entries.append(apis.build_entity(module, "CreatableTopicConfigs", name=name, value=value, read_only=False,
                                          config_source=source, is_sensitive=False))
                config_entries = tuple(entries)
            results.append(
                apis.build_entity(
                    module,
                    "CreatableTopicResult",
                    name=topic.name,
                    topic_id=info.topic_id if info is not None else uuid.UUID(int=0),
                    error_code=error,
                    error_message=message,
                    topic_config_error_code=0,
                    num_partitions=partitions if error == ErrorCode.none else -1,
                    replication_factor=1 if error == ErrorCode.none else -1,
                    configs=config_entries,
                )
            )
        return apis.build_entity(module, "CreateTopicsResponse", throttle_time=apis.ZERO_MS, topics=tuple(results))

    def delete_topics(self, header, request):
        module = apis.response_module(apis.DELETE_TOPICS, header.api_version)
        if header.api_version >= 6:
            wanted = [(t.name, t.topic_id) for t in request.topics]
        else:
            wanted = [(name, None) for name in request.topic_names]
        results = []
        for name, topic_id in wanted:
            error, message = ErrorCode.none, None
            if name is None and topic_id is not None:
                info = self.topics.by_id.get(topic_id)
                if info is None:
                    error, message = ErrorCode.unknown_topic_id, f"no topic has id {topic_id}"
            else:
                info = self.topics.by_name.get(name)
                if info is None:
                    error, message = ErrorCode.unknown_topic_or_partition, f"no topic is named {name!r}"
            if info is not None:
                try:
                    self.delete_topic(info.name)
                except TopicStorageError as exc:
                    log.warning("DeleteTopics %s failed: %s", info.name, exc)
                    error, message = ErrorCode.unknown_server_error, str(exc)
            results.append(
                apis.build_entity(
                    module,
                    "DeletableTopicResult",
                    name=info.name if info is not None else name,
                    topic_id=info.topic_id if info is not None else (topic_id or uuid.UUID(int=0)),
                    error_code=error,
                    error_message=message,
                )
            )
        return apis.build_entity(module, "DeleteTopicsResponse", throttle_time=apis.ZERO_MS, responses=tuple(results))

    # ---- DescribeConfigs --------------------------------------------------------

    def describe_configs(self, header, request):
        module = apis.response_module(apis.DESCRIBE_CONFIGS, header.api_version)
        results = []
        for resource in request.resources:
            keys = set(resource.configuration_keys) if resource.configuration_keys is not None else None
            error, message, entries = ErrorCode.none, None, []
            if resource.resource_type == RESOURCE_TOPIC:
                info = self.topics.by_name.get(resource.resource_name)
                if info is None:
                    error, message = ErrorCode.unknown_topic_or_partition, f"no topic is named {resource.resource_name!r}"
                else:
                    for name in sorted(TOPIC_CONFIGS):
                        value, source = self.topic_config_value(info, name)
                        entries.append((name, value, source))
            elif resource.resource_type == RESOURCE_BROKER:
                if resource.resource_name not in ("", str(self.config.node_id)):
                    error, message = ErrorCode.invalid_request, (
                        f"broker resource {resource.resource_name!r} is not this node ({self.config.node_id})"
                    )
                else:
                    for name, (value, source) in sorted(self.config.effective().items()):
                        if name in SENSITIVE_PROPERTIES:
                            value = None  # a secret: Kafka answers is_sensitive with no value
                        entries.append((name, value, CONFIG_SOURCE_STATIC_BROKER if source == "static" else CONFIG_SOURCE_DEFAULT))
            else:
                error, message = ErrorCode.invalid_request, (
                    f"resource type {resource.resource_type} is not served; expected 2 (topic) or 4 (broker)"
                )
            configs = tuple(
                apis.build_entity(
                    module,
                    "DescribeConfigsResourceResult",
                    name=name,
                    value=value,
                    read_only=resource.resource_type == RESOURCE_BROKER,
                    config_source=source,
                    is_sensitive=name in SENSITIVE_PROPERTIES,
                    synonyms=(),
                    config_type=0,
                    documentation=None,
                )
                for name, value, source in entries
                if keys is None or name in keys
            )
            results.append(
                apis.build_entity(
                    module,
                    "DescribeConfigsResult",
                    error_code=error,
                    error_message=message,
                    resource_type=resource.resource_type,
                    resource_name=resource.resource_name,
                    configs=configs,
                )
            )
        return apis.build_entity(module, "DescribeConfigsResponse", throttle_time=apis.ZERO_MS, results=tuple(results))
