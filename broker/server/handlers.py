"""Request handling for one broker node: Produce, Metadata, ApiVersions, InitProducerId, and the node's parts.

`RequestHandlers` assembles the parts that answer a node's requests and owns
what they share: the node's topic table, producer id allocator, the leader
append path (`broker.replication.leader_append`, per-partition producer
state), the wake-up of long-polling fetches and the leadership lookups (the
error for a partition this node does not host, KIP-951 leader hints). It talks
to storage through the `LogManager` / `PartitionLog` API; handing it a
`NullLogManager` instead yields the "null broker" (same protocol path, no log).
Its parts, each registered through `broker.server.router`:
- `broker.server.fetch.FetchApis`: Fetch (long polls, fetch sessions);
- `broker.server.partition_queries.PartitionQueries`: ListOffsets,
  OffsetForLeaderEpoch, DescribeProducers;
- `broker.server.topic_admin.TopicAdmin`: topic configs, creating and
  deleting topics, DescribeConfigs, and on a single node CreateTopics and
  DeleteTopics;
- `broker.coordinator.group_handlers.GroupApis` (FindCoordinator for groups
  and the group APIs) and `broker.coordinator.txn_handlers.TxnApis` (the
  transaction APIs).

Semantics kept (Kafka's; DESIGN.md "Broker semantics"), here and in the parts:
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
- Fetch: see broker.server.fetch;
- transactions (KIP-98, KIP-447): Produce accepts transactional batches (the
  producer state remembers the first offset of each open transaction, whether
  or not the coordinator added the partition, as Kafka before KIP-890 did);
  control batches come only from WriteTxnMarkers (`append_marker`).

Thread-safety: none; everything runs on the broker's event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import uuid

from kio.schema.errors import ErrorCode

from broker.coordinator.group_handlers import GroupApis
from broker.coordinator.txn_handlers import TxnApis
from broker.io import Runtime
from broker.protocol import apis
from broker.protocol.produce import PartitionProduceResult, encode_produce_response
from broker.replication import manager as replication
from broker.replication.leader_append import SINGLE_NODE_EPOCH, WAIT_ERRORS, LeaderAppend, PartitionState
from broker.server.config import BrokerConfig, debug_switch, planted_bugs
from broker.server.fetch import FetchApis
from broker.server.listeners import advertised_versions
from broker.server.partition_queries import PartitionQueries
from broker.server.producer_ids import ProducerIdAllocator, ProducerIdsUnavailableError
from broker.server.topic_admin import TopicAdmin, TopicStorageError
from broker.server.topics import TopicStore, topic_name_problem

log = logging.getLogger("broker.server")

ZERO_MS = datetime.timedelta(0)
AUTHORIZED_OPERATIONS_OMITTED = -(2**31)
LEADER_EPOCH = SINGLE_NODE_EPOCH


class CloseConnection(Exception):
    """The request cannot be answered; the message says why, and the connection is closed."""


_build = apis.build_entity
_response_module = apis.response_module


class RequestHandlers:
    def __init__(self, config: BrokerConfig, runtime: Runtime, storage, topics: TopicStore, producer_ids: ProducerIdAllocator):
        self.config = config
        self.runtime = runtime
        self.storage = storage
        self.topics = topics
        self.producer_ids = producer_ids
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
        # the parts of the node's APIs that live in modules of their own (registered by broker.server.router)
        self.topic_admin = TopicAdmin(config, storage, topics, self.leader.partitions)
        self.fetch_apis = FetchApis(self)
        self.partition_queries = PartitionQueries(self)
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

    def apis(self, single_node: bool) -> dict:
        """The APIs these handlers answer (broker.server.router); a cluster node answers the
        metadata and producer-id APIs itself, through the controller. Fetch (`fetch_apis`), the
        partition queries (`partition_queries`) and topic administration (`topic_admin`) register
        their own."""
        table = {apis.PRODUCE: self.produce, apis.API_VERSIONS: self.api_versions}
        if single_node:
            table.update({apis.METADATA: self.metadata, apis.INIT_PRODUCER_ID: self.init_producer_id})
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
                self.topic_admin.orphan_topics.add(topic)
                log.warning(
                    "log directory for %s-%d belongs to no known topic; it is left alone unless a topic of that name is created",
                    topic, partition,
                )
        for info in self.topics.by_name.values():
            log_config = self.topic_admin.topic_log_config(info.configs)
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
                        error, message = self.topic_admin.partition_limit_problem(self.config.num_partitions)
                        if error == ErrorCode.none:
                            try:
                                info = self.topic_admin.create_topic(name, self.config.num_partitions, {})
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

    def produce(self, header, request, denied=()):
        """`denied`: (topic, [PartitionProduceResult]) the authorizer refused (broker.server.authorization), answered
        beside this request's own results (and, with acks=0, closing the connection as any failed partition does)."""
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
        topic_results.extend(denied)
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
