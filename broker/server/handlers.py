"""Request handling for one broker node: one method per Kafka API.

`RequestHandlers` turns decoded requests into responses. It owns the node's
topic table, producer id allocator and per-partition producer state, and talks
to storage through the `LogManager` / `PartitionLog` API; handing it a
`NullLogManager` instead yields the "null broker" (same protocol path, no log).

Semantics kept (Kafka's; DESIGN.md "Broker semantics"):
- single node (no `replica_manager`): every partition's leader is this node,
  leader epoch 0, the ISR is this node, and the high watermark equals the log
  end offset once an append returns; acks=-1 therefore answers like acks=1;
  acks=0 gets no response at all (the connection layer sends nothing back);
- cluster mode (a `ReplicaManager` attached, see broker.replication): only a
  partition's leader serves Produce, Fetch, ListOffsets and
  OffsetForLeaderEpoch (others answer NOT_LEADER_OR_FOLLOWER with the current
  leader and its endpoint where the version carries them, KIP-951; so does a
  node that does not host a partition the metadata knows, while one the
  metadata does not know gets UNKNOWN_TOPIC_OR_PARTITION); a request
  naming an older leader epoch gets FENCED_LEADER_EPOCH, a newer one
  UNKNOWN_LEADER_EPOCH; acks=-1 is refused with NOT_ENOUGH_REPLICAS when the
  ISR is smaller than min.insync.replicas, otherwise it answers once the high
  watermark passed the batch (a retried duplicate waits for its original), or
  with NOT_ENOUGH_REPLICAS_AFTER_APPEND / REQUEST_TIMED_OUT /
  NOT_LEADER_OR_FOLLOWER; followers (replica_id >= 0) read to the log end and
  report their progress, consumers read to the high watermark, and a fetch
  offset between the two answers empty rather than OFFSET_OUT_OF_RANGE;
  ListOffsets "latest" is the high watermark;
- Produce v3+ must carry exactly one v2 record batch per partition (Kafka's
  rule since KIP-98); its CRC is checked (CORRUPT_MESSAGE), its size against
  message.max.bytes / max.message.bytes (MESSAGE_TOO_LARGE), and its records
  are decompressed (bounded) and walked before the append, as Kafka's
  LogValidator does (`broker.protocol.record_validation`: CORRUPT_MESSAGE,
  INVALID_RECORD from Produce v8, else CORRUPT_MESSAGE, INVALID_TIMESTAMP);
  followers copy the leader's bytes unchecked; an append the disk refuses (a
  full disk, any OSError of the log dir) leaves the log as it was and is
  answered KAFKA_STORAGE_ERROR for that partition, append by append, so the
  partition takes records again once space is freed (see broker.log.log for
  why not Kafka's offline log dir); idempotent batches
  go through the producer state (see `producer_state`), rebuilt on becoming
  leader and at start from the newest `<offset>.snapshot` plus the log after it
  (snapshots written at a clean stop and after a rebuild, deleted on becoming a
  follower); stored record bytes are never parsed again, only the 61-byte batch
  header (and a control batch's first record key when replaying markers);
- Fetch long-polls: it answers when min_bytes are available, on an error, or
  after max_wait_ms, and is woken by every append; every partition reports its
  last_stable_offset (the first offset of the oldest open transaction, never
  above the high watermark, KIP-98); isolation_level=1 (read_committed) reads
  up to it and gets the aborted transactions overlapping the records, level 0
  reads up to the high watermark; aborted_transactions is a list, never null;
  control batches are returned (clients skip them); a fetch offset outside
  [log_start_offset, high_watermark] gets OFFSET_OUT_OF_RANGE; each partition
  reads at most min(partition_max_bytes, what is left of max_bytes), but the
  first partition with data gets at least one whole batch (KIP-74), so a
  negative max_bytes counts as 0; a negative partition_max_bytes gets
  UNKNOWN_SERVER_ERROR for that partition, as in Kafka; topics are named
  up to v12 and addressed by topic id from v13 (KIP-516); ListOffsets "latest"
  is the last stable offset for isolation_level=1;
- transactions (KIP-98, KIP-447): Produce accepts transactional batches (the
  producer state remembers the first offset of each open transaction, whether
  or not the coordinator added the partition, as Kafka before KIP-890 did);
  control batches come only from WriteTxnMarkers (`append_marker`); the
  transaction APIs themselves are served by
  `broker.coordinator.txn_handlers.TxnApis`, which installs its handlers here.
  Consumer groups (FindCoordinator for groups and the group APIs) are served by
  `broker.coordinator.group_handlers.GroupApis`, which installs its handlers here.

Thread-safety: none; everything runs on the broker's event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import uuid

from kio.schema.errors import ErrorCode

from broker.controller.controller import MAX_PARTITIONS_PER_REQUEST, TOO_MANY_PARTITIONS_MESSAGE
from broker.coordinator.group_handlers import GroupApis
from broker.coordinator.txn_handlers import TxnApis
from broker.io import Runtime
from broker.log.config import LogConfig
from broker.log.log import OffsetOutOfRangeError
from broker.protocol import apis
from broker.protocol.produce import PartitionProduceResult, encode_produce_response
from broker.protocol.fetch import FetchPartitionResult, FetchTopicResult, encode_fetch_response
from broker.replication import manager as replication
from broker.server.config import LONG_MAX, SENSITIVE_PROPERTIES, BrokerConfig, debug_switch, planted_bugs
from broker.server.fetch_sessions import UNKNOWN, FetchSessionCache
from broker.server.producer_ids import ProducerIdAllocator, ProducerIdsUnavailableError
from broker.server.listeners import advertised_versions
from broker.replication.leader_append import SINGLE_NODE_EPOCH, WAIT_ERRORS, LeaderAppend, PartitionState
from broker.replication.producer_state import ProducerStateTable
from broker.server.topics import TopicInfo, TopicStore, topic_name_problem

log = logging.getLogger("broker.server")

ZERO_MS = datetime.timedelta(0)
AUTHORIZED_OPERATIONS_OMITTED = -(2**31)
LEADER_EPOCH = SINGLE_NODE_EPOCH
EARLIEST_TIMESTAMP = -2
LATEST_TIMESTAMP = -1
RESOURCE_TOPIC = 2
RESOURCE_BROKER = 4
CONFIG_SOURCE_TOPIC = 1
CONFIG_SOURCE_STATIC_BROKER = 4
CONFIG_SOURCE_DEFAULT = 5
READ_COMMITTED = 1

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
    pass


class TopicStorageError(RuntimeError):
    """A topic whose logs could not be created (e.g. no file descriptor left): nothing of it was kept."""


class CloseConnection(Exception):
    """The request cannot be answered; the message says why, and the connection is closed."""


_build = apis.build_entity
_response_module = apis.response_module


def _fetch_replica_id(request, version: int) -> int:
    """The fetching replica's node id (-1 for a consumer); from v15 it sits in replica_state (KIP-903)."""
    if version >= 15:
        return request.replica_state.replica_id
    return getattr(request, "replica_id", -1)


def _by_topic_id(fetch_topic):
    return fetch_topic.topic_id


def _by_topic_name(fetch_topic):
    return fetch_topic.topic


def _topic_key_of(version: int):
    """How a Fetch request of this version names topics: by id from v13, by name before."""
    return _by_topic_id if version >= 13 else _by_topic_name


def negative_fetch_size_error(topic: str, fetch_partition) -> ErrorCode:
    """A Fetch partition asking for fewer than 0 bytes: Kafka's LogSegment.read refuses a negative size
    (IllegalArgumentException), which its ReplicaManager answers as UNKNOWN_SERVER_ERROR for that partition;
    we answer the same, and the connection stays open."""
    log.info("fetch of %s-%d refused: partition_max_bytes %d is negative", topic, fetch_partition.partition,
             fetch_partition.partition_max_bytes)
    return ErrorCode.unknown_server_error


class RequestHandlers:
    def __init__(self, config: BrokerConfig, runtime: Runtime, storage, topics: TopicStore, producer_ids: ProducerIdAllocator):
        self.config = config
        self.read_uncommitted_bug = debug_switch(config, "logquake.debug.read.uncommitted")
        self.runtime = runtime
        self.storage = storage
        self.topics = topics
        self.producer_ids = producer_ids
        self.orphan_topics: set[str] = set()  # logs on disk whose topic is not in the topic table
        self.cluster_id = f"logquake-{config.node_id}"
        self.advertised = config.advertised_listeners[0]
        self.stopping = False
        self._append_waiter: asyncio.Future | None = None
        # the leader append path: producer state and every append as a partition's leader (broker.replication)
        self.leader = LeaderAppend(runtime, config.node_id, max_message_bytes=self.max_message_bytes,
                                   timestamp_bounds=self.timestamp_bounds, unhosted_error=self.unhosted_error,
                                   wake_fetchers=self.wake_fetchers,
                                   skip_dedup=debug_switch(config, "logquake.debug.skip.dedup"),
                                   abort_marker_lost=debug_switch(config, "logquake.debug.abort.marker.lost"))
        # Set in cluster mode (see broker.replication.manager): who leads, HW, acks=all, followers.
        self._replica_manager = None
        self.group_apis = GroupApis(self)
        self.txn_apis = TxnApis(self)
        self.group_apis.coordinator.commit_before_replication = debug_switch(
            config, "logquake.debug.commit.before.replication")
        self.txn_apis.coordinator.partial_commit_markers = debug_switch(config, "logquake.debug.partial.commit.markers")
        self.txn_apis.coordinator.epoch_bump_unfenced = debug_switch(config, "logquake.debug.epoch.bump.unfenced")
        self.group_apis.coordinator.aborted_offsets_visible = debug_switch(config, "logquake.debug.aborted.offsets.visible")
        self.group_apis.coordinator.unfenced_txn_offsets = debug_switch(config, "logquake.debug.unfenced.txn.offsets")
        self.group_apis.coordinator.double_assignment = debug_switch(config, "logquake.debug.double.assignment")
        planted = planted_bugs(config)
        if planted:
            log.warning("planted bugs enabled on node %d: %s", config.node_id, ", ".join(planted))
        self.fetch_sessions = FetchSessionCache(runtime.random)  # followers' incremental fetches (KIP-227)

    def apis(self, single_node: bool) -> dict:
        """The APIs these handlers answer (broker.server.router); a cluster node answers the
        metadata and producer-id APIs itself, through the controller."""
        table = {
            apis.PRODUCE: self.produce,
            apis.FETCH: self.fetch,
            apis.LIST_OFFSETS: self.list_offsets,
            apis.API_VERSIONS: self.api_versions,
            apis.DESCRIBE_CONFIGS: self.describe_configs,
            apis.OFFSET_FOR_LEADER_EPOCH: self.offset_for_leader_epoch,
            apis.DESCRIBE_PRODUCERS: self.describe_producers,
        }
        if single_node:
            table.update({
                apis.METADATA: self.metadata,
                apis.CREATE_TOPICS: self.create_topics,
                apis.DELETE_TOPICS: self.delete_topics,
                apis.INIT_PRODUCER_ID: self.init_producer_id,
            })
        return table

    @property
    def partitions(self) -> dict[tuple[str, int], PartitionState]:
        """The partitions this node leads, with their producer state (owned by the leader append path)."""
        return self.leader.partitions

    @property
    def replica_manager(self):
        return self._replica_manager

    @replica_manager.setter
    def replica_manager(self, manager) -> None:
        """Attach the node's ReplicaManager; the planted-bug switches of this node's config are applied to it."""
        if manager is not None:
            switches = {
                "ack_before_replication": "logquake.debug.ack.before.replication",
                "read_above_hwm": "logquake.debug.read.above.hwm",
                "skip_truncation": "logquake.debug.skip.truncation",
                "skip_dedup": "logquake.debug.skip.dedup",
                "hwm_past_isr": "logquake.debug.hwm.past.isr",
                "fenced_leader_acks": "logquake.debug.fenced.leader.acks",
                "stale_epoch_fetch": "logquake.debug.stale.epoch.fetch",
            }
            enabled = {field: True for field, name in switches.items() if debug_switch(self.config, name)}
            if enabled:
                log.warning("planted replication bugs enabled on node %d: %s", self.config.node_id, ", ".join(sorted(enabled)))
                manager.settings = dataclasses.replace(manager.settings, **enabled)
        self._replica_manager = manager
        self.leader.replica_manager = manager

    # ---- lifecycle -------------------------------------------------------

    def load(self) -> None:
        """Load topics and logs, create missing partition logs, rebuild producer state from the logs."""
        self.topics.load()
        self.producer_ids.load()
        loaded = self.storage.load()
        for (topic, partition), partition_log in loaded.items():
            if topic not in self.topics.by_name:
                self.orphan_topics.add(topic)
                log.warning(
                    "log directory for %s-%d belongs to no known topic; it is left alone unless a topic of that name is created",
                    topic, partition,
                )
        for info in self.topics.by_name.values():
            log_config = self.topic_log_config(info.configs)
            for partition in range(info.partitions):
                partition_log = loaded.get((info.name, partition))
                if partition_log is None:
                    partition_log = self.storage.create(info.name, partition, log_config)
                else:
                    # logs are opened with the broker's defaults; the topic's own settings
                    # (retention, segment size, flush policy) apply again after a restart
                    partition_log.set_config(log_config)
                self.leader.serve(info.name, partition, partition_log)

    def close(self) -> None:
        self.stopping = True
        self.txn_apis.stop_nowait()
        self.wake_fetchers()
        self.leader.snapshot_producer_states()

    # ---- helpers -----------------------------------------------------------

    def wake_fetchers(self) -> None:
        waiter = self._append_waiter
        if waiter is not None:
            self._append_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def wait_for_append(self, timeout_s: float) -> None:
        if self._append_waiter is None:
            self._append_waiter = asyncio.get_running_loop().create_future()
        waiter = self._append_waiter
        sleeper = asyncio.ensure_future(self.runtime.clock.sleep(timeout_s))
        try:
            await asyncio.wait([waiter, sleeper], return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()

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

    def timestamp_bounds(self, topic: str) -> tuple[int, int]:
        """(before, after) max ms of a produced timestamp around now: the topic's, else the broker's (KIP-937)."""
        configs = self.topics.by_name[topic].configs if topic in self.topics.by_name else {}
        return (int(configs.get("message.timestamp.before.max.ms", self.config.log_message_timestamp_before_max_ms)),
                int(configs.get("message.timestamp.after.max.ms", self.config.log_message_timestamp_after_max_ms)))

    def max_message_bytes(self, topic: str) -> int:
        info = self.topics.by_name.get(topic)
        if info is not None and "max.message.bytes" in info.configs:
            return int(info.configs["max.message.bytes"])
        return self.config.message_max_bytes

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

    # ---- ApiVersions -------------------------------------------------------

    def api_versions(self, header, request):
        self.txn_apis.on_request()
        module = _response_module(apis.API_VERSIONS, header.api_version)
        return _build(
            module,
            "ApiVersionsResponse",
            error_code=ErrorCode.none,
            api_keys=self.api_version_entries(module),
            throttle_time=ZERO_MS,
        )

    def api_version_entries(self, module) -> tuple:
        # a client listener lists client APIs only (broker.server.listeners)
        return tuple(
            _build(module, "ApiVersion", api_key=key, min_version=low, max_version=high)
            for key, (low, high) in sorted(advertised_versions(self.config).items())
        )

    # ---- Metadata ------------------------------------------------------------

    def metadata(self, header, request):
        version = header.api_version
        module = _response_module(apis.METADATA, version)
        requested = request.topics
        allow_auto_create = getattr(request, "allow_auto_topic_creation", True)
        if requested is None or (version == 0 and len(requested) == 0):
            wanted = [(info.name, None) for info in sorted(self.topics.by_name.values(), key=lambda t: t.name)]
        else:
            wanted = [(t.name, getattr(t, "topic_id", None)) for t in requested]
        topic_results = []
        for name, topic_id in wanted:
            info = None
            error = ErrorCode.none
            if name is None and topic_id is not None and topic_id.int != 0:
                info = self.topics.by_id.get(topic_id)
                if info is None:
                    error = ErrorCode.unknown_topic_id
            else:
                info = self.topics.by_name.get(name)
                if info is None:
                    problem = topic_name_problem(name)
                    if problem is not None:
                        error = ErrorCode.invalid_topic_exception
                    elif self.config.auto_create_topics_enable and allow_auto_create:
                        error, message = self.partition_limit_problem(self.config.num_partitions)
                        if error == ErrorCode.none:
                            try:
                                info = self.create_topic(name, self.config.num_partitions, {})
                            except TopicStorageError as exc:
                                log.warning("auto-creating topic %s failed: %s", name, exc)
                                error = ErrorCode.unknown_server_error
                        else:
                            log.info("auto-creating topic %s refused: %s", name, message)
                    else:
                        error = ErrorCode.unknown_topic_or_partition
            partitions = ()
            if info is not None:
                partitions = tuple(
                    _build(
                        module,
                        "MetadataResponsePartition",
                        error_code=ErrorCode.none,
                        partition_index=p,
                        leader_id=self.config.node_id,
                        leader_epoch=LEADER_EPOCH,
                        replica_nodes=(self.config.node_id,),
                        isr_nodes=(self.config.node_id,),
                        offline_replicas=(),
                    )
                    for p in range(info.partitions)
                )
            topic_results.append(
                _build(
                    module,
                    "MetadataResponseTopic",
                    error_code=error,
                    name=info.name if info is not None else name,
                    topic_id=info.topic_id if info is not None else uuid.UUID(int=0),
                    is_internal=(info.name if info is not None else name) in ("__consumer_offsets", "__transaction_state"),  # Kafka marks them internal
                    partitions=partitions,
                    topic_authorized_operations=AUTHORIZED_OPERATIONS_OMITTED,
                )
            )
        broker = _build(
            module,
            "MetadataResponseBroker",
            node_id=self.config.node_id,
            host=self.advertised.host or "localhost",
            port=self.advertised.port,
            rack=None,
        )
        return _build(
            module,
            "MetadataResponse",
            throttle_time=ZERO_MS,
            brokers=(broker,),
            cluster_id=self.cluster_id,
            controller_id=self.config.node_id,
            topics=tuple(topic_results),
            cluster_authorized_operations=AUTHORIZED_OPERATIONS_OMITTED,
        )

    # ---- Produce ---------------------------------------------------------------

    def produce(self, header, request):
        acks = request.acks
        if acks not in (0, 1, -1):
            error_all = (ErrorCode.invalid_required_acks, f"acks={acks} is not accepted; expected 0, 1 or -1")
        else:
            error_all = None
        topic_results = []
        appended = False
        waiting = []  # (result, replica, required offset) of acks=all appends not yet replicated
        for topic_data in request.topic_data:
            partition_results = []
            for partition_data in topic_data.partition_data:
                required = None
                if error_all is not None:
                    error, message, base_offset, start = error_all[0], error_all[1], -1, -1
                else:
                    appended_batch = self.leader.append(topic_data.name, partition_data.index, partition_data.records, acks)
                    error, message = appended_batch.error, appended_batch.message
                    base_offset, start, required = appended_batch.base_offset, appended_batch.log_start_offset, appended_batch.waiting
                    appended |= error == ErrorCode.none
                    if error == ErrorCode.invalid_record and header.api_version < 8:
                        error = ErrorCode.corrupt_message  # INVALID_RECORD exists from Produce v8 (KIP-467)
                if error != ErrorCode.none:
                    log.info("produce to %s-%d refused: %s (%s)", topic_data.name, partition_data.index, error.name, message)
                result = PartitionProduceResult(partition_data.index, error.value, base_offset, start, message)
                if error == ErrorCode.not_leader_or_follower:
                    result.current_leader = self.leader_hint(topic_data.name, partition_data.index)
                partition_results.append(result)
                if required is not None:
                    waiting.append((result, *required))
            topic_results.append((topic_data.name, partition_results))
        if appended:
            self.wake_fetchers()
        if acks == 0:
            failed = [(name, p.index, p.error_code) for name, parts in topic_results for p in parts if p.error_code]
            if failed:
                # Kafka's way to tell an acks=0 producer that something failed: it gets no
                # response, so the connection is closed and the client sees the disconnect.
                raise CloseConnection(f"acks=0 produce failed for (topic, partition, error code) {failed[:5]}")
            return None
        if waiting:
            return self.await_replication(header.api_version, topic_results, waiting, request.timeout_ms)
        return [encode_produce_response(header.api_version, topic_results, node_endpoints=self.leader_endpoints(
            p.current_leader for _, parts in topic_results for p in parts))]

    def leader_hint(self, topic: str, partition: int) -> tuple[int, int] | None:
        """(leader id, leader epoch) of a partition this node hosts but does not lead (KIP-951's CurrentLeader)."""
        replica = self.replica_manager.hosted(topic, partition) if self.replica_manager is not None else None
        if replica is None or replica.state.leader < 0 or replica.state.leader == self.config.node_id:
            return None
        return replica.state.leader, replica.state.leader_epoch

    def leader_endpoints(self, hints) -> list[tuple[int, str, int, str | None]] | None:
        """NodeEndpoints for the leaders named in current-leader hints, so a client can reach them at once."""
        if self.replica_manager is None:
            return None
        brokers = self.replica_manager.image.brokers
        ids = sorted({hint[0] for hint in hints if hint is not None and hint[0] in brokers})
        return [(i, brokers[i].host, brokers[i].port, brokers[i].rack) for i in ids] or None

    async def await_replication(self, version: int, topic_results, waiting, timeout_ms: int):
        """acks=all: answer once the high watermark passed every appended batch (Kafka's DelayedProduce)."""
        manager = self.replica_manager
        verdicts = await asyncio.gather(
            *(manager.wait_for_high_watermark(replica, required, max(timeout_ms, 0)) for _, replica, required in waiting)
        )
        for (result, replica, required), verdict in zip(waiting, verdicts):
            if verdict == replication.OK:
                continue
            error = WAIT_ERRORS[verdict]
            result.error_code = error.value
            result.error_message = (
                f"offsets below {required} of {replica.topic}-{replica.partition} were not replicated to the ISR "
                f"{replica.isr} (min.insync.replicas={replica.min_insync_replicas}) within {timeout_ms} ms: {error.name}"
            )
            log.info("acks=all produce to %s-%d: %s", replica.topic, replica.partition, result.error_message)
        return [encode_produce_response(version, topic_results, node_endpoints=self.leader_endpoints(
            p.current_leader for _, parts in topic_results for p in parts))]

    # ---- Fetch -------------------------------------------------------------------

    async def fetch(self, header, request):
        self.txn_apis.on_request()
        version = header.api_version
        replica_id = _fetch_replica_id(request, version)
        session, full, error = self.fetch_sessions.resolve(request, replica_id if self.replica_manager else -1,
                                                           _topic_key_of(version))
        if error:
            return encode_fetch_response(version, [], error_code=error, session_id=0)
        if session is not None:
            return await self.fetch_in_session(request, version, replica_id, session, full)
        max_wait_s = max(request.max_wait.total_seconds(), 0.0)
        deadline_ns = self.runtime.clock.monotonic_ns() + int(max_wait_s * 1e9)
        first_pass = True
        while True:
            topics, total_bytes, has_error = self.read_fetch(request, version, first_pass)
            first_pass = False
            remaining_s = (deadline_ns - self.runtime.clock.monotonic_ns()) / 1e9
            if total_bytes >= request.min_bytes or has_error or remaining_s <= 0 or self.stopping:
                endpoints = self.leader_endpoints(p.current_leader for t in topics for p in t.partitions)
                return encode_fetch_response(version, topics, session_id=0, node_endpoints=endpoints)
            await self.wait_for_append(remaining_s)

    async def fetch_in_session(self, request, version: int, replica_id: int, session, full: bool):
        """A follower's fetch within its session (KIP-227; broker.server.fetch_sessions): the answer names
        every session partition when `full`, else only those with records, an error, or a new high
        watermark or log start offset."""
        max_wait_s = max(request.max_wait.total_seconds(), 0.0)
        deadline_ns = self.runtime.clock.monotonic_ns() + int(max_wait_s * 1e9)
        first_pass = True
        while True:
            topics, answered, total_bytes, has_error = self.read_session(session, request, version, replica_id,
                                                                         first_pass, full)
            first_pass = False
            remaining_s = (deadline_ns - self.runtime.clock.monotonic_ns()) / 1e9
            if total_bytes >= request.min_bytes or has_error or remaining_s <= 0 or self.stopping:
                for session_partition, result in answered:
                    session_partition.sent_high_watermark = result.high_watermark if not result.error_code else UNKNOWN
                    session_partition.sent_log_start_offset = result.log_start_offset
                endpoints = self.leader_endpoints(p.current_leader for t in topics for p in t.partitions)
                return encode_fetch_response(version, topics, session_id=session.session_id, node_endpoints=endpoints)
            await self.wait_for_append(remaining_s)

    def read_session(self, session, request, version: int, replica_id: int, first_pass: bool, full: bool):
        """One pass over a session's partitions: (topics, [(session partition, result)], bytes, any error)."""
        manager = self.replica_manager
        budget = request.max_bytes if request.max_bytes > 0 else 0
        missing_error = ErrorCode.unknown_topic_id if version >= 13 else ErrorCode.unknown_topic_or_partition
        total_bytes = 0
        has_error = False
        by_topic: dict[object, FetchTopicResult] = {}
        answered = []
        for session_partition in session.partitions.values():
            key = session_partition.topic_key
            if version >= 13:
                topic_state = manager.image.topic_by_id(key)
                name = topic_state.name if topic_state is not None else ""
            else:
                name = key
            if not full:
                replica = manager.hosted(name, session_partition.partition) if name else None
                if (replica is not None and replica.role == replication.LEADER
                        and session_partition.current_leader_epoch in (-1, replica.leader_epoch)
                        and session_partition.fetch_offset == replica.log.log_end_offset
                        and not session_partition.must_answer(replica.high_watermark, replica.log.log_start_offset)):
                    # nothing new for this follower here; it still counts as fetched (ISR, high watermark)
                    if first_pass:
                        manager.record_follower_fetch(replica, replica_id, session_partition.fetch_offset)
                    continue
            result = self.read_replica(manager, name, session_partition, replica_id, first_pass,
                                       max(budget - total_bytes, 0), total_bytes == 0, missing_error)
            has_error |= result.error_code != 0
            total_bytes += len(result.records)
            answered.append((session_partition, result))
            topic = by_topic.get(key)
            if topic is None:
                topic = by_topic[key] = FetchTopicResult(name, key if version >= 13 else uuid.UUID(int=0), [])
            topic.partitions.append(result)
        return list(by_topic.values()), answered, total_bytes, has_error

    def read_fetch(self, request, version: int, first_pass: bool = True) -> tuple[list[FetchTopicResult], int, bool]:
        budget = request.max_bytes if request.max_bytes > 0 else 0
        total_bytes = 0
        has_error = False
        results = []
        manager = self.replica_manager
        replica_id = _fetch_replica_id(request, version)
        # logquake.debug.read.uncommitted (a planted bug): read_committed is served as
        # read_uncommitted, so aborted and still-open transactions are visible.
        read_committed = (getattr(request, "isolation_level", 0) == READ_COMMITTED and replica_id < 0
                          and not self.read_uncommitted_bug)
        for fetch_topic in request.topics:
            if manager is not None:
                if version >= 13:
                    topic_state = manager.image.topic_by_id(fetch_topic.topic_id)
                    name = topic_state.name if topic_state is not None else ""
                else:
                    name = fetch_topic.topic
                partitions = []
                for fetch_partition in fetch_topic.partitions:
                    result = self.read_replica(manager, name, fetch_partition, replica_id, first_pass,
                                               max(budget - total_bytes, 0), total_bytes == 0,
                                               ErrorCode.unknown_topic_id if version >= 13 else ErrorCode.unknown_topic_or_partition,
                                               read_committed)
                    has_error |= result.error_code != 0
                    total_bytes += len(result.records)
                    partitions.append(result)
                results.append(FetchTopicResult(name, fetch_topic.topic_id if version >= 13 else uuid.UUID(int=0), partitions))
                continue
            if version >= 13:
                info = self.topics.by_id.get(fetch_topic.topic_id)
                name = info.name if info is not None else ""
                missing_error = ErrorCode.unknown_topic_id
            else:
                name = fetch_topic.topic
                info = self.topics.by_name.get(name)
                missing_error = ErrorCode.unknown_topic_or_partition
            partitions = []
            for fetch_partition in fetch_topic.partitions:
                index = fetch_partition.partition
                state = self.partitions.get((name, index)) if info is not None else None
                if state is None:
                    has_error = True
                    partitions.append(FetchPartitionResult(index, missing_error.value))
                    continue
                partition_log = state.log
                high_watermark = partition_log.log_end_offset
                stable = state.producers.last_stable_offset(high_watermark)
                upper = stable if read_committed else high_watermark
                start = partition_log.log_start_offset
                offset = fetch_partition.fetch_offset
                result = FetchPartitionResult(index, 0, high_watermark, stable, start, b"")
                if fetch_partition.partition_max_bytes < 0:
                    has_error = True
                    result.error_code = negative_fetch_size_error(name, fetch_partition).value
                elif offset < start or offset > high_watermark:
                    has_error = True
                    result.error_code = ErrorCode.offset_out_of_range.value
                elif offset < upper and (budget > total_bytes or total_bytes == 0):
                    limit = min(fetch_partition.partition_max_bytes, max(budget - total_bytes, 0))
                    try:
                        data = partition_log.read(offset, limit, upper)
                    except OffsetOutOfRangeError:
                        has_error = True
                        result.error_code = ErrorCode.offset_out_of_range.value
                        data = b""
                    # KIP-74: only the first partition with data may exceed the budget (one whole batch).
                    if total_bytes and total_bytes + len(data) > budget:
                        data = b""
                    result.records = data
                    total_bytes += len(data)
                    if read_committed and data:
                        result.aborted_transactions = self.aborted_in(state.producers, offset, upper)
                    if not state.producers.ongoing and not state.producers.unreplicated:
                        # (unchanged for a real log; the null broker's virtual log may grow on read)
                        result.high_watermark = result.last_stable_offset = partition_log.log_end_offset
                partitions.append(result)
            results.append(FetchTopicResult(name, fetch_topic.topic_id if version >= 13 else uuid.UUID(int=0), partitions))
        return results, total_bytes, has_error

    @staticmethod
    def aborted_in(producers: ProducerStateTable, fetch_offset: int, upper_offset: int) -> list[tuple[int, int]]:
        return [(txn.producer_id, txn.first_offset) for txn in producers.aborted_overlapping(fetch_offset, upper_offset)]

    def read_replica(self, manager, name: str, fetch_partition, replica_id: int, first_pass: bool, budget_left: int,
                     first_data: bool, missing_error: ErrorCode, read_committed: bool = False) -> FetchPartitionResult:
        """Fetch from a replicated partition this node leads.

        Followers (replica_id >= 0) read up to the log end offset and report
        their progress; consumers read up to the high watermark, read_committed
        consumers up to the last stable offset. A fetch offset above the HW but
        within the log answers empty, not OFFSET_OUT_OF_RANGE (a new leader's HW
        may trail what the old one exposed). `budget_left` bounds the read with
        partition_max_bytes, as Kafka takes the smaller of the two; `first_data`:
        no data was taken yet, so one batch may exceed both (KIP-74).
        """
        index = fetch_partition.partition
        replica = manager.hosted(name, index) if name else None
        if replica is None:
            return FetchPartitionResult(index, self.unhosted_error(name, index, missing_error).value)
        if replica.role != replication.LEADER:
            result = FetchPartitionResult(index, ErrorCode.not_leader_or_follower.value)
            result.current_leader = self.leader_hint(name, index)
            return result
        current_leader_epoch = getattr(fetch_partition, "current_leader_epoch", -1)
        # logquake.debug.stale.epoch.fetch (a planted bug): only a newer epoch is refused; a follower or
        # consumer that missed a leader change is served from its old position as if nothing had changed.
        if manager.settings.stale_epoch_fetch and current_leader_epoch < replica.leader_epoch:
            current_leader_epoch = -1
        if current_leader_epoch != -1 and current_leader_epoch != replica.leader_epoch:
            error = ErrorCode.fenced_leader_epoch if current_leader_epoch < replica.leader_epoch else ErrorCode.unknown_leader_epoch
            result = FetchPartitionResult(index, error.value)
            if error == ErrorCode.fenced_leader_epoch:
                result.current_leader = (self.config.node_id, replica.leader_epoch)
            return result
        if fetch_partition.partition_max_bytes < 0:
            return FetchPartitionResult(index, negative_fetch_size_error(name, fetch_partition).value)
        partition_log = replica.log
        offset = fetch_partition.fetch_offset
        if replica_id >= 0 and first_pass:
            manager.record_follower_fetch(replica, replica_id, offset)
        high_watermark = replica.high_watermark
        state = self.partitions.get((name, index))
        # logquake.debug.read.above.hwm (a planted bug): consumers see records not yet
        # replicated, read_committed ones too (their stable offset is then taken
        # against the log end offset, not the high watermark).
        consumer_limit = partition_log.log_end_offset if manager.settings.read_above_hwm else high_watermark
        stable = state.producers.last_stable_offset(consumer_limit) if state is not None else consumer_limit
        limit_offset = partition_log.log_end_offset if replica_id >= 0 else consumer_limit
        start = partition_log.log_start_offset
        result = FetchPartitionResult(index, 0, high_watermark, stable, start, b"")
        if offset < start or offset > partition_log.log_end_offset:
            result.error_code = ErrorCode.offset_out_of_range.value
            return result
        if read_committed:
            limit_offset = min(limit_offset, stable)
        if offset >= limit_offset or (budget_left == 0 and not first_data):
            return result
        data = partition_log.read(offset, min(fetch_partition.partition_max_bytes, budget_left), limit_offset)
        if not first_data and len(data) > budget_left:
            data = b""
        result.records = data
        if read_committed and data and state is not None:
            result.aborted_transactions = self.aborted_in(state.producers, offset, limit_offset)
        return result

    # ---- ListOffsets ------------------------------------------------------------

    def list_offsets(self, header, request):
        module = _response_module(apis.LIST_OFFSETS, header.api_version)
        read_committed = getattr(request, "isolation_level", 0) == READ_COMMITTED
        topic_results = []
        for topic in request.topics:
            partition_results = []
            for part in topic.partitions:
                error, timestamp, offset = ErrorCode.none, -1, -1
                state = self.partitions.get((topic.name, part.partition_index))
                leader_epoch = LEADER_EPOCH
                latest = state.log.log_end_offset if state is not None else -1
                lagging = False
                if self.replica_manager is not None:
                    # Only the leader answers; "latest" is the high watermark (read_uncommitted).
                    error, replica = self.replica_error(topic.name, part.partition_index, getattr(part, "current_leader_epoch", -1))
                    if replica is not None:
                        leader_epoch, latest = replica.leader_epoch, replica.high_watermark
                        # KIP-207: a new leader whose high watermark has not reached the start of its epoch may
                        # still be behind what the previous leader had committed: OFFSET_NOT_AVAILABLE (retriable)
                        # until it has, rather than a latest offset that goes backwards.
                        leader = replica.leader_state
                        lagging = leader is not None and leader.high_watermark < leader.epoch_start_offset
                if state is not None and read_committed:
                    latest = state.producers.last_stable_offset(latest)
                if error != ErrorCode.none:
                    pass
                elif state is None:
                    error = ErrorCode.unknown_topic_or_partition
                elif part.timestamp == LATEST_TIMESTAMP and lagging:
                    error = ErrorCode.offset_not_available
                elif part.timestamp == LATEST_TIMESTAMP:
                    offset = latest
                elif part.timestamp == EARLIEST_TIMESTAMP:
                    offset = state.log.log_start_offset
                elif part.timestamp < 0:
                    error = ErrorCode.invalid_request
                    log.info("ListOffsets for %s-%d with unsupported timestamp %d", topic.name, part.partition_index, part.timestamp)
                else:
                    found = state.log.offset_for_timestamp(part.timestamp)
                    if found is not None:
                        offset, timestamp = found
                partition_results.append(
                    _build(
                        module,
                        "ListOffsetsPartitionResponse",
                        partition_index=part.partition_index,
                        error_code=error,
                        timestamp=timestamp,
                        offset=offset,
                        leader_epoch=leader_epoch if error == ErrorCode.none else -1,
                    )
                )
            topic_results.append(_build(module, "ListOffsetsTopicResponse", name=topic.name, partitions=tuple(partition_results)))
        return _build(module, "ListOffsetsResponse", throttle_time=ZERO_MS, topics=tuple(topic_results))

    def unhosted_error(self, topic: str, partition: int, missing_error: ErrorCode) -> ErrorCode:
        """The error for a request about a partition this node does not host (cluster mode).

        Kafka's ReplicaManager.getPartitionOrError: a partition the metadata
        knows is NOT_LEADER_OR_FOLLOWER, which clients retry after refreshing
        their metadata; only a partition the metadata does not know gets
        `missing_error` (UNKNOWN_TOPIC_OR_PARTITION, or UNKNOWN_TOPIC_ID by id).
        A restarted node hosts nothing until its metadata reaches its own
        registration, while its recovered image still lists every topic:
        answering UNKNOWN_TOPIC_OR_PARTITION then made librdkafka's ListOffsets
        (get_watermark_offsets) fail at once instead of retrying, so a run's
        final reads failed right after a restart of every node.
        """
        if self.replica_manager.image.partition(topic, partition) is not None:
            return ErrorCode.not_leader_or_follower
        return missing_error

    def replica_error(self, topic: str, partition: int, current_leader_epoch: int):
        """(error, replica) for a request that only the partition's leader may answer."""
        replica = self.replica_manager.hosted(topic, partition)
        if replica is None:
            return self.unhosted_error(topic, partition, ErrorCode.unknown_topic_or_partition), None
        if replica.role != replication.LEADER:
            return ErrorCode.not_leader_or_follower, None
        if current_leader_epoch != -1 and current_leader_epoch < replica.leader_epoch:
            return ErrorCode.fenced_leader_epoch, None
        if current_leader_epoch > replica.leader_epoch:
            return ErrorCode.unknown_leader_epoch, None
        return ErrorCode.none, replica

    # ---- DescribeProducers (KIP-664) ---------------------------------------------

    def describe_producers(self, header, request):
        """The producers a partition's leader tracks: id, epoch, last sequence, the coordinator epoch of
        their last marker and the first offset of their open transaction (-1: none). No batch timestamps
        are kept, so last_timestamp is -1."""
        module = _response_module(apis.DESCRIBE_PRODUCERS, header.api_version)
        topics = []
        for topic in request.topics:
            partitions = []
            for index in topic.partition_indexes:
                if self.replica_manager is not None:
                    error = self.replica_error(topic.name, index, -1)[0]
                else:
                    error = ErrorCode.none if (topic.name, index) in self.partitions else ErrorCode.unknown_topic_or_partition
                state = self.partitions.get((topic.name, index)) if error == ErrorCode.none else None
                if state is None:
                    error = error if error != ErrorCode.none else ErrorCode.not_leader_or_follower
                    partitions.append(_build(module, "PartitionResponse", partition_index=index, error_code=error,
                                             error_message=error.name, active_producers=()))
                    continue
                table = state.producers
                producers = tuple(
                    _build(module, "ProducerState", producer_id=producer_id, producer_epoch=entry.epoch,
                           last_sequence=entry.batches[-1].last_sequence if entry.batches else -1, last_timestamp=-1,
                           coordinator_epoch=table.coordinator_epochs.get(producer_id, -1),
                           current_txn_start_offset=table.ongoing.get(producer_id, -1))
                    for producer_id, entry in sorted(table.producers.items()))
                partitions.append(_build(module, "PartitionResponse", partition_index=index, error_code=ErrorCode.none,
                                         error_message=None, active_producers=producers))
            topics.append(_build(module, "TopicResponse", name=topic.name, partitions=tuple(partitions)))
        return _build(module, "DescribeProducersResponse", throttle_time=ZERO_MS, topics=tuple(topics))

    # ---- OffsetForLeaderEpoch ----------------------------------------------------

    def offset_for_leader_epoch(self, header, request):
        """Where the requested leader epoch ends in this leader's log (KIP-101; KIP-279 names the epoch)."""
        module = _response_module(apis.OFFSET_FOR_LEADER_EPOCH, header.api_version)
        topic_results = []
        for topic in request.topics:
            partition_results = []
            for part in topic.partitions:
                epoch, end_offset = -1, -1
                if self.replica_manager is not None:
                    error, replica = self.replica_error(topic.topic, part.partition, part.current_leader_epoch)
                    if replica is not None and part.leader_epoch > replica.leader_epoch:
                        # The asker holds a record written at a later epoch than this leader's:
                        # this leader is deposed and does not know it yet. Kafka's answer here
                        # (no such epoch, -1/-1) makes a KIP-320 consumer that sent no current
                        # epoch, as librdkafka may, reset its position by auto.offset.reset,
                        # and a Docker run saw it re-read a partition from offset 0 so;
                        # "your epoch is newer than mine" sends it to refresh its metadata.
                        error, replica = ErrorCode.unknown_leader_epoch, None
                    if replica is not None:
                        epoch, end_offset = replica.epochs.end_offset_for(part.leader_epoch, replica.log.log_end_offset)
                else:
                    state = self.partitions.get((topic.topic, part.partition))
                    error = ErrorCode.unknown_topic_or_partition if state is None else ErrorCode.none
                    if state is not None and part.leader_epoch == LEADER_EPOCH:
                        epoch, end_offset = LEADER_EPOCH, state.log.log_end_offset
                partition_results.append(_build(module, "EpochEndOffset", error_code=error, partition=part.partition,
                                                leader_epoch=epoch, end_offset=end_offset))
            topic_results.append(_build(module, "OffsetForLeaderTopicResult", topic=topic.topic, partitions=tuple(partition_results)))
        return _build(module, "OffsetForLeaderEpochResponse", throttle_time=ZERO_MS, topics=tuple(topic_results))

    # ---- PartitionLifecycle (called by the ReplicaManager) -----------------------

    def on_become_leader(self, topic: str, partition: int, partition_log) -> None:
        """Serve the partition; rebuild its idempotent-producer state from the log (it moves with leadership)."""
        self.leader.serve(topic, partition, partition_log)

    def on_become_follower(self, topic: str, partition: int, partition_log) -> None:
        self.leader.stop_serving(topic, partition, partition_log)

    def on_stopped(self, topic: str, partition: int) -> None:
        self.partitions.pop((topic, partition), None)

    def on_high_watermark(self) -> None:
        self.wake_fetchers()

    # ---- CreateTopics / DeleteTopics ------------------------------------------

    def create_topics(self, header, request):
        module = _response_module(apis.CREATE_TOPICS, header.api_version)
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
                    entries.append(_build(module, "CreatableTopicConfigs", name=name, value=value, read_only=False,
                                          config_source=source, is_sensitive=False))
                config_entries = tuple(entries)
            results.append(
                _build(
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
        return _build(module, "CreateTopicsResponse", throttle_time=ZERO_MS, topics=tuple(results))

    def delete_topics(self, header, request):
        module = _response_module(apis.DELETE_TOPICS, header.api_version)
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
                _build(
                    module,
                    "DeletableTopicResult",
                    name=info.name if info is not None else name,
                    topic_id=info.topic_id if info is not None else (topic_id or uuid.UUID(int=0)),
                    error_code=error,
                    error_message=message,
                )
            )
        return _build(module, "DeleteTopicsResponse", throttle_time=ZERO_MS, responses=tuple(results))

    # ---- DescribeConfigs --------------------------------------------------------

    def describe_configs(self, header, request):
        module = _response_module(apis.DESCRIBE_CONFIGS, header.api_version)
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
                _build(
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
                _build(
                    module,
                    "DescribeConfigsResult",
                    error_code=error,
                    error_message=message,
                    resource_type=resource.resource_type,
                    resource_name=resource.resource_name,
                    configs=configs,
                )
            )
        return _build(module, "DescribeConfigsResponse", throttle_time=ZERO_MS, results=tuple(results))

    # ---- InitProducerId / FindCoordinator -------------------------------------

    def init_producer_id(self, header, request):
        module = _response_module(apis.INIT_PRODUCER_ID, header.api_version)
        if request.transactional_id is not None:
            return self.txn_apis.init_producer_id(header, request)  # a coroutine; the server awaits it
        # An idempotent producer without a transactional.id always gets a fresh id
        # (also when it asks to bump the epoch of its old one, KIP-360): a new id
        # starts a new sequence space, which is all the bump is for.
        try:
            producer_id, error = self.producer_ids.allocate(), ErrorCode.none
        except ProducerIdsUnavailableError as exc:  # a full disk; as cluster mode answers a controller without a block
            log.warning("InitProducerId: %s", exc)
            producer_id, error = -1, ErrorCode.coordinator_not_available
        return _build(module, "InitProducerIdResponse", throttle_time=ZERO_MS,
                      error_code=error, producer_id=producer_id, producer_epoch=0 if producer_id >= 0 else -1)
