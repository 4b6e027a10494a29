"""Cluster-mode wiring of one combined node: quorum, controller, broker lifecycle, metadata-driven handlers.

`ClusterNode` is built by `broker.server.node` when `controller.quorum.voters`
is set. It assembles this node's `MetadataQuorum` (Raft over the same listener
as clients, internal api keys 30000+), the `QuorumController` (active on the
Raft leader only), the broker's channel to the active controller, its
registration and heartbeats, and the `ReplicaManager` of the replication layer;
and it swaps the request handlers whose answers come from the cluster metadata:

- Metadata: brokers are the registered, unfenced brokers; each partition
  reports its leader, leader epoch, replicas, ISR and fenced replicas as
  offline; a partition without a leader gets LEADER_NOT_AVAILABLE;
  controller_id is the active controller (the Raft leader) when it is a
  listed broker, else this node (which forwards admin requests); topic ids come
  from the metadata log, so every node reports the same ones; a missing topic
  is auto-created through the controller (the first answer may be
  LEADER_NOT_AVAILABLE while it is being created, as in Kafka);
- CreateTopics / DeleteTopics are validated here and forwarded to the active
  controller; the answer waits until this node has applied the change, so a
  client's next request to this node sees it. Clients never see NOT_CONTROLLER;
- InitProducerId draws ids from controller-allocated blocks;
- consumer groups and transactions: the internal `__consumer_offsets` and
  `__transaction_state` topics are created through the controller
  (`create_internal_topic`), and the ReplicaManager's partition lifecycle also
  tells the group and transaction coordinators which of their partitions this
  node leads (`GroupAwareLifecycle` in broker.coordinator.group_handlers,
  `TxnAwareLifecycle` in broker.coordinator.txn_handlers); InitProducerId with a
  transactional.id goes to the transaction coordinator.

Security between nodes: when the inter-broker listener is SSL or SASL_SSL, the
runtime's network is wrapped so that every outgoing connection speaks TLS
(broker.io.tls.TlsClientNetwork, verifying the peer against the truststore and
presenting the node's certificate); when it is SASL_*, every pool
authenticates its new connections (broker.server.sasl_client). Every outgoing
connection of a node goes to a peer's inter-broker listener, so the one
setting covers Raft, controller RPCs, replication and transaction markers.

Two listeners (broker.server.config): a broker registers one endpoint, the
advertised address of its client listener, so every answer that names brokers
(Metadata, FindCoordinator, KIP-951 leader hints) gives clients addresses they
can reach. Brokers reach each other on the inter-broker listener, whose
address is the broker's controller.quorum.voters entry: this node's outgoing
connections to a registered client endpoint are routed to that broker's voter
address (`InterBrokerRoutes`). Metadata asked on the inter-broker listener
answers with the voter addresses. With one listener both are the same address
and nothing is routed.

The in-memory `TopicStore` of the handlers is kept equal to the image's topics
(a listener), so the handlers that read it (Produce, Fetch, ListOffsets,
DescribeConfigs) need no cluster-specific code of their own.

Shutdown (SIGTERM): controlled shutdown first (the controller moves this
broker's leaderships away and fences it), then Raft leadership is handed to a
peer if this node holds it, then the listener stops.

Thread-safety: everything runs on the broker's event loop.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import replace

from kio.schema.errors import ErrorCode

from broker.controller.channel import BrokerLifecycle, ClusterProducerIds, QuorumControllerChannel
from broker.controller.controller import ControllerSettings, QuorumController
from broker.controller.quorum import MetadataQuorum
from broker.controller.rpc import CONTROLLER, RAFT
from broker.coordinator.group_handlers import GroupAwareLifecycle
from broker.coordinator.txn_handlers import TxnAwareLifecycle
from broker.controller.storage import DIRECTORY_NAME, QuorumStorage
from broker.metadata.errors import ControllerError
from broker.metadata.image import NO_LEADER, MetadataImage
from broker.protocol import apis
from broker.protocol.client import ConnectionPool
from broker.server.handlers import AUTHORIZED_OPERATIONS_OMITTED, ZERO_MS, _build, _response_module
from broker.io.tls import TlsClientNetwork
from broker.server.listeners import CONNECTION_LISTENER, inter_broker_tls_context
from broker.server.sasl_client import inter_broker_authenticator
from broker.server.topic_admin import CONFIG_SOURCE_TOPIC, TOPIC_CONFIGS, TopicConfigError
from broker.server.topics import TopicInfo, topic_name_problem

log = logging.getLogger("broker.server")

APPLY_WAIT_S = 5.0
SHUTDOWN_TIMEOUT_S = 5.0


class ClusterNode:
    def __init__(self, config, runtime, handlers):
        self.config = config
        self.runtime = runtime
        self.handlers = handlers
        voters = config.controller_quorum_voters
        self.cluster_id = "logquake-" + "-".join(str(v) for v in sorted(voters))
        self.two_listeners = config.client_listener_name != config.inter_broker_listener_name
        tls = inter_broker_tls_context(config)
        if tls is not None:  # below the routes: the name verified is the peer's inter-broker address
            runtime.network = TlsClientNetwork(runtime.network, tls)
        if self.two_listeners:
            handlers.advertised = config.advertised_listener(config.client_listener_name)
            runtime.network = InterBrokerRoutes(runtime.network, lambda: self.quorum.image, voters)
        handlers.cluster_id = self.cluster_id
        # One pool per traffic kind: a connection serves its requests one at a time,
        # so a controller request waiting for a commit (or a long-poll replica fetch)
        # must never hold back the Raft messages that commit needs.
        client_id = f"logquake-node-{config.node_id}"
        authenticate = inter_broker_authenticator(config, runtime)  # None unless the inter-broker listener is SASL
        self.raft_pool = ConnectionPool(runtime, client_id, config.outbound_address, authenticate)
        self.pool = ConnectionPool(runtime, client_id, config.outbound_address, authenticate)
        self.replication_pool = ConnectionPool(runtime, client_id, config.outbound_address, authenticate)
        # the transaction coordinator's markers go to peers too
        handlers.txn_apis.marker_sender.pool = ConnectionPool(
            runtime, f"logquake-txn-markers-{config.node_id}", config.outbound_address, authenticate)
        storage = QuorumStorage(runtime.disk, f"{config.log_dirs[0]}/{DIRECTORY_NAME}")
        self.quorum = MetadataQuorum(
            config.node_id, voters, storage, runtime, self.raft_pool,
            election_timeout_ms=config.controller_quorum_election_timeout_ms,
            request_timeout_ms=config.controller_quorum_fetch_timeout_ms,
        )
        self.controller = QuorumController(self.quorum, runtime, ControllerSettings(
            session_timeout_ms=config.broker_session_timeout_ms,
            min_insync_replicas=config.min_insync_replicas,
            unclean_leader_election_enable=config.unclean_leader_election_enable,
            max_broker_partitions=config.max_broker_partitions,
        ))
        self.channel = QuorumControllerChannel(config.node_id, self.quorum, self.controller, self.pool, voters, runtime)
        self.lifecycle: BrokerLifecycle | None = None
        self.replica_manager = None
        self._applied = asyncio.Event()
        handlers.producer_ids = ClusterProducerIds(self.channel)
        handlers.group_apis.create_topic = self.create_internal_topic
        handlers.txn_apis.create_topic = self.create_internal_topic
        self.quorum.listeners.append(self)

    def apis(self) -> dict:
        """The APIs a cluster node answers through the controller (broker.server.router)."""
        return {
            apis.METADATA: self.metadata,
            apis.CREATE_TOPICS: self.create_topics,
            apis.DELETE_TOPICS: self.delete_topics,
            apis.INIT_PRODUCER_ID: self.init_producer_id,
        }

    # ---- lifecycle ------------------------------------------------------------------

    def start(self, server) -> None:
        server.internal_handlers[RAFT] = self.quorum.handle_raft_request
        server.internal_handlers[CONTROLLER] = self.channel.handle_request
        self.replica_manager = self._build_replica_manager()
        advertised = self.handlers.advertised
        self.lifecycle = BrokerLifecycle(
            self.channel, self.quorum, self.runtime, advertised.host or "localhost", advertised.port,
            self.config.broker_heartbeat_interval_ms,
        )
        if self.replica_manager is not None:
            # A restarted node replays its metadata log from the start: until the image holds
            # this process's own registration, its leaderships there are stale, and acting on
            # them could acknowledge writes at an old epoch that are later truncated.
            self.replica_manager.incarnation_id = self.lifecycle.incarnation_id
        self.quorum.start()
        if self.replica_manager is not None:
            self.replica_manager.start()
        self.lifecycle.start()

    def _build_replica_manager(self):
        if not hasattr(self.handlers, "on_become_leader"):
            log.warning("the request handlers do not implement partition lifecycle; running without replication")
            return None
        from broker.replication.manager import ReplicaManager, ReplicationSettings

        settings = ReplicationSettings(
            replica_lag_time_max_ms=self.config.replica_lag_time_max_ms,
            replica_fetch_backoff_ms=self.config.replica_fetch_backoff_ms,
            min_insync_replicas=self.config.min_insync_replicas,
        )
        manager = ReplicaManager(
            self.config.node_id, self.runtime, self.handlers.storage, self.channel, self.replication_pool, settings,
            TxnAwareLifecycle(GroupAwareLifecycle(self.handlers, self.handlers.group_apis), self.handlers.txn_apis),
            self.handlers.topic_admin.topic_log_config,
        )
        self.handlers.replica_manager = manager
        self.quorum.listeners.append(manager)
        return manager

    async def shutdown(self) -> None:
        """Controlled shutdown: leaderships move away before the listener closes."""
        if self.lifecycle is not None:
            await self.lifecycle.controlled_shutdown(SHUTDOWN_TIMEOUT_S)
        target = self.quorum.transfer_leadership()
        if target is not None:
            log.info("handing the controller leadership to node %d before exiting", target)
            deadline_ns = self.runtime.clock.monotonic_ns() + int(self.config.controller_quorum_election_timeout_ms * 2e6)
            while self.quorum.is_leader and self.runtime.clock.monotonic_ns() < deadline_ns:
                await self.runtime.clock.sleep(0.02)

    async def close(self) -> None:
        await self.handlers.txn_apis.stop()
        await self.handlers.group_apis.stop()
        if self.replica_manager is not None:
            await self.replica_manager.stop()
        await self.controller.stop()
        await self.quorum.stop()
        for pool in (self.pool, self.raft_pool, self.replication_pool):
            await pool.close_all()

    # ---- the topic table follows the image ------------------------------------------------

    def on_metadata(self, old: MetadataImage, new: MetadataImage) -> None:
        topics = self.handlers.topics
        if old.topics is not new.topics:
            by_name = {}
            for name, state in new.topics.items():
                info = topics.by_name.get(name)
                if info is None or info.topic_id != state.topic_id or info.partitions != len(state.partitions) or info.configs != dict(state.configs):
                    info = TopicInfo(name, state.topic_id, len(state.partitions), dict(state.configs))
                by_name[name] = info
            topics.by_name.clear()
            topics.by_name.update(by_name)
            topics.by_id.clear()
            topics.by_id.update({info.topic_id: info for info in by_name.values()})
        self._applied.set()

    async def wait_applied(self, offset: int, timeout_s: float = APPLY_WAIT_S) -> bool:
        deadline_ns = self.runtime.clock.monotonic_ns() + int(timeout_s * 1e9)
        while self.quorum.image.offset < offset:
            remaining_s = (deadline_ns - self.runtime.clock.monotonic_ns()) / 1e9
            if remaining_s <= 0:
                return False
            self._applied.clear()
            try:
                await asyncio.wait_for(self._applied.wait(), remaining_s)
            except asyncio.TimeoutError:
                return False
        return True

    # ---- Metadata ----------------------------------------------------------------------------

    async def metadata(self, header, request):
        version = header.api_version
        module = _response_module(apis.METADATA, version)
        image = self.quorum.image
        requested = request.topics
        allow_auto_create = getattr(request, "allow_auto_topic_creation", True)
        if requested is None or (version == 0 and len(requested) == 0):
            wanted = [(name, None) for name in sorted(image.topics)]
        else:
            wanted = [(t.name, getattr(t, "topic_id", None)) for t in requested]
        if self.replica_manager is not None and not self.replica_manager.caught_up:
            # A restarted node replays its metadata log first: its image names leaders and epochs that may be long
            # gone, and a client that believed them could go back to a deposed leader (KIP-320 clients reset their
            # position on such answers). Kafka serves no client until its metadata caught up; this answers
            # LEADER_NOT_AVAILABLE, which every client retries, until the image holds this process's registration.
            return self._not_caught_up(module, wanted)
        to_create = []
        for name, topic_id in wanted:
            if (name is not None and name not in image.topics and topic_name_problem(name) is None
                    and self.config.auto_create_topics_enable and allow_auto_create):
                to_create.append(name)
        refused: dict[str, ErrorCode] = {}
        if to_create:
            refused = await self._auto_create(to_create)
            image = self.quorum.image
        topic_results = []
        for name, topic_id in wanted:
            error = ErrorCode.none
            state = None
            if name is None and topic_id is not None and topic_id.int != 0:
                state = image.topic_by_id(topic_id)
                if state is None:
                    error = ErrorCode.unknown_topic_id
            else:
                state = image.topics.get(name)
                if state is None:
                    if topic_name_problem(name) is not None:
                        error = ErrorCode.invalid_topic_exception
                    elif name in refused:
                        error = refused[name]  # e.g. POLICY_VIOLATION: max.broker.partitions
                    elif name in to_create:
                        error = ErrorCode.leader_not_available
                    else:
                        error = ErrorCode.unknown_topic_or_partition
            partitions = ()
            if state is not None:
                partitions = tuple(
                    _build(
                        module,
                        "MetadataResponsePartition",
                        error_code=ErrorCode.none if p.leader != NO_LEADER else ErrorCode.leader_not_available,
                        partition_index=p.partition,
                        leader_id=p.leader,
                        leader_epoch=p.leader_epoch,
                        replica_nodes=tuple(p.replicas),
                        isr_nodes=tuple(p.isr),
                        offline_replicas=tuple(r for r in p.replicas if not image.is_live(r)),
                    )
                    for p in sorted(state.partitions.values(), key=lambda p: p.partition)
                )
            topic_results.append(
                _build(
                    module,
                    "MetadataResponseTopic",
                    error_code=error,
                    name=state.name if state is not None else name,
                    topic_id=state.topic_id if state is not None else uuid.UUID(int=0),
                    is_internal=(state.name if state is not None else name) in ("__consumer_offsets", "__transaction_state"),  # Kafka marks them internal
                    partitions=partitions,
                    topic_authorized_operations=AUTHORIZED_OPERATIONS_OMITTED,
                )
            )
        brokers = [b for b in sorted(image.brokers.values(), key=lambda b: b.broker_id) if not b.fenced]
        own = self.handlers.advertised
        if self.two_listeners and CONNECTION_LISTENER.get() == self.config.inter_broker_listener_name:
            voters = self.config.controller_quorum_voters
            brokers = [replace(b, host=voters[b.broker_id][0], port=voters[b.broker_id][1]) for b in brokers
                       if b.broker_id in voters]
            own = self.config.advertised_listener(self.config.inter_broker_listener_name)
        broker_entries = tuple(
            _build(module, "MetadataResponseBroker", node_id=b.broker_id, host=b.host, port=b.port, rack=b.rack)
            for b in brokers
        )
        if not broker_entries:
            # Before any broker is unfenced, name this node so that clients keep asking it.
            broker_entries = (_build(module, "MetadataResponseBroker", node_id=self.config.node_id,
                                     host=own.host or "localhost", port=own.port, rack=None),)
        # Every node forwards admin requests to the active controller, so naming this node
        # is always safe; naming -1 would make librdkafka's AdminClient wait for a
        # controller until its metadata refresh (minutes), as it did right after start-up.
        listed = {entry.node_id for entry in broker_entries}
        controller_id = self.quorum.leader_id
        if controller_id is None or controller_id not in listed:
            controller_id = self.config.node_id
        return _build(
            module,
            "MetadataResponse",
            throttle_time=ZERO_MS,
            brokers=broker_entries,
            cluster_id=self.cluster_id,
            controller_id=controller_id,
            topics=tuple(topic_results),
            cluster_authorized_operations=AUTHORIZED_OPERATIONS_OMITTED,
        )

    def _not_caught_up(self, module, wanted):
        topics = tuple(_build(module, "MetadataResponseTopic", error_code=ErrorCode.leader_not_available, name=name,
                              topic_id=topic_id or uuid.UUID(int=0), is_internal=False, partitions=(),
                              topic_authorized_operations=AUTHORIZED_OPERATIONS_OMITTED) for name, topic_id in wanted)
        own = self.handlers.advertised
        return _build(module, "MetadataResponse", throttle_time=ZERO_MS, cluster_id=self.cluster_id,
                      brokers=(_build(module, "MetadataResponseBroker", node_id=self.config.node_id,
                                      host=own.host or "localhost", port=own.port, rack=None),),
                      controller_id=self.config.node_id, topics=topics,
                      cluster_authorized_operations=AUTHORIZED_OPERATIONS_OMITTED)

    async def _auto_create(self, names: list[str]) -> dict[str, ErrorCode]:
        """Create `names` through the controller; return the topics it refused, with their error codes."""
        request = {"op": "create_topics", "validate_only": False, "topics": [
            {"name": name, "num_partitions": self.config.num_partitions,
             "replication_factor": self.config.default_replication_factor, "assignments": None, "configs": {}}
            for name in names
        ]}
        try:
            answer = await self.channel.call(request)
        except ControllerError as exc:
            log.info("auto-creating topics %s failed: %s", names, exc)
            return {}
        refused = {}
        for result in answer.get("topics", []):
            if result["error_code"] not in (0, 36):  # 36: created meanwhile by someone else
                log.info("auto-creating topic %s refused: %s", result["name"], result["error_message"])
                refused[result["name"]] = ErrorCode(result["error_code"])
        await self.wait_applied(int(answer.get("metadata_offset", 0)))
        return refused

    async def create_internal_topic(self, name: str, partitions: int, replication_factor: int) -> None:
        """Create an internal topic (e.g. __consumer_offsets) through the controller; "already exists" is fine."""
        request = {"op": "create_topics", "validate_only": False, "topics": [
            {"name": name, "num_partitions": partitions, "replication_factor": replication_factor,
             "assignments": None, "configs": {}}]}
        try:
            answer = await self.channel.call(request)
        except ControllerError as exc:
            log.info("creating internal topic %s failed: %s", name, exc)
            return
        for result in answer.get("topics", []):
            if result["error_code"] not in (0, 36):  # 36: created meanwhile by another node
                log.warning("creating internal topic %s refused: %s", name, result["error_message"])
        await self.wait_applied(int(answer.get("metadata_offset", 0)))

    # ---- CreateTopics / DeleteTopics ------------------------------------------------------------

    def _validate_configs(self, configs: dict) -> dict[str, str]:
        # min.insync.replicas is an integer >= 1 in a cluster (the one-node topic administration accepts only 1)
        rest = {k: v for k, v in configs.items() if k != "min.insync.replicas"}
        validated = self.handlers.topic_admin.validate_topic_configs(rest)
        if "min.insync.replicas" in configs:
            value = configs["min.insync.replicas"]
            try:
                number = int(value)
            except (TypeError, ValueError):
                raise TopicConfigError(f"topic config min.insync.replicas={value!r} is not an integer") from None
            if number < 1:
                raise TopicConfigError(f"topic config min.insync.replicas={value!r} is out of range; expected an integer >= 1")
            validated["min.insync.replicas"] = str(number)
        return validated

    async def create_topics(self, header, request):
        module = _response_module(apis.CREATE_TOPICS, header.api_version)
        forwarded, local_errors = [], {}
        for topic in request.topics:
            problem = topic_name_problem(topic.name)
            if problem is not None:
                local_errors[topic.name] = (ErrorCode.invalid_topic_exception, problem)
                continue
            try:
                configs = self._validate_configs({c.name: c.value for c in topic.configs})
            except TopicConfigError as exc:
                local_errors[topic.name] = (ErrorCode.invalid_config, str(exc))
                continue
            assignments = None
            if topic.assignments:
                assignments = {str(a.partition_index): [int(b) for b in a.broker_ids] for a in topic.assignments}
                if sorted(int(k) for k in assignments) != list(range(len(assignments))):
                    local_errors[topic.name] = (ErrorCode.invalid_replica_assignment,
                                                f"assigned partitions {sorted(assignments)} must be 0..{len(assignments) - 1}")
                    continue
            forwarded.append({
                "name": topic.name,
                "num_partitions": topic.num_partitions if topic.num_partitions != -1 else self.config.num_partitions,
                "replication_factor": topic.replication_factor if topic.replication_factor != -1 else self.config.default_replication_factor,
                "assignments": assignments,
                "configs": configs,
            })
        answers = {}
        if forwarded:
            try:
                answer = await self.channel.call(
                    {"op": "create_topics", "validate_only": bool(request.validate_only), "topics": forwarded}
                )
                answers = {r["name"]: r for r in answer.get("topics", [])}
                if answer.get("error_code"):
                    for topic in forwarded:
                        local_errors[topic["name"]] = (ErrorCode(answer["error_code"]), answer.get("error_message"))
                else:
                    await self.wait_applied(int(answer.get("metadata_offset", 0)))
            except ControllerError as exc:
                for topic in forwarded:
                    local_errors[topic["name"]] = (ErrorCode.request_timed_out, str(exc))
        configs_by_name = {t["name"]: t["configs"] for t in forwarded}
        results = []
        for topic in request.topics:
            if topic.name in local_errors:
                error, message = local_errors[topic.name]
                result = {"topic_id": None, "num_partitions": -1, "replication_factor": -1}
            else:
                result = answers.get(topic.name, {"error_code": ErrorCode.unknown_server_error.value,
                                                  "error_message": "the controller did not answer for this topic",
                                                  "topic_id": None, "num_partitions": -1, "replication_factor": -1})
                error, message = ErrorCode(result["error_code"]), result.get("error_message")
            if error != ErrorCode.none:
                log.info("CreateTopics %s refused: %s (%s)", topic.name, error.name, message)
            topic_id = uuid.UUID(result["topic_id"]) if result.get("topic_id") else uuid.UUID(int=0)
            config_entries = ()
            if error == ErrorCode.none and hasattr(module, "CreatableTopicConfigs"):
                info = TopicInfo(topic.name, topic_id, result["num_partitions"], configs_by_name.get(topic.name, {}))
                entries = []
                for name in sorted(TOPIC_CONFIGS):
                    if name in info.configs:
                        value, source = info.configs[name], CONFIG_SOURCE_TOPIC
                    else:
                        value, source = self.handlers.topic_admin.topic_config_value(info, name)
                    entries.append(_build(module, "CreatableTopicConfigs", name=name, value=value, read_only=False,
                                          config_source=source, is_sensitive=False))
                config_entries = tuple(entries)
            results.append(_build(
                module,
                "CreatableTopicResult",
                name=topic.name,
                topic_id=topic_id,
                error_code=error,
                error_message=message,
                topic_config_error_code=0,
                num_partitions=result["num_partitions"] if error == ErrorCode.none else -1,
                replication_factor=result["replication_factor"] if error == ErrorCode.none else -1,
                configs=config_entries,
            ))
        return _build(module, "CreateTopicsResponse", throttle_time=ZERO_MS, topics=tuple(results))

    async def delete_topics(self, header, request):
        module = _response_module(apis.DELETE_TOPICS, header.api_version)
        if header.api_version >= 6:
            wanted = [(t.name, t.topic_id) for t in request.topics]
        else:
            wanted = [(name, None) for name in request.topic_names]
        topics = [{"name": name, "topic_id": str(topic_id) if name is None and topic_id is not None else None}
                  for name, topic_id in wanted]
        try:
            answer = await self.channel.call({"op": "delete_topics", "topics": topics})
            if answer.get("error_code"):
                raise ControllerError(answer.get("error_message") or "controller error", answer["error_code"])
            await self.wait_applied(int(answer.get("metadata_offset", 0)))
            answers = answer["topics"]
        except ControllerError as exc:
            answers = [{"name": t["name"], "topic_id": t["topic_id"], "error_code": ErrorCode.request_timed_out.value,
                        "error_message": str(exc)} for t in topics]
        results = []
        for (name, topic_id), result in zip(wanted, answers):
            results.append(_build(
                module,
                "DeletableTopicResult",
                name=result.get("name") if result.get("name") is not None else name,
                topic_id=uuid.UUID(result["topic_id"]) if result.get("topic_id") else (topic_id or uuid.UUID(int=0)),
                error_code=ErrorCode(result["error_code"]),
                error_message=result.get("error_message"),
            ))
        return _build(module, "DeleteTopicsResponse", throttle_time=ZERO_MS, responses=tuple(results))

    # ---- InitProducerId -------------------------------------------------------------------------

    async def init_producer_id(self, header, request):
        module = _response_module(apis.INIT_PRODUCER_ID, header.api_version)
        if request.transactional_id is not None:
            return await self.handlers.txn_apis.init_producer_id(header, request)
        try:
            producer_id = await self.handlers.producer_ids.allocate()
            error = ErrorCode.none
        except ControllerError as exc:
            log.info("InitProducerId: no producer id block from the controller: %s", exc)
            producer_id, error = -1, ErrorCode.coordinator_not_available
        return _build(module, "InitProducerIdResponse", throttle_time=ZERO_MS,
                      error_code=error, producer_id=producer_id, producer_epoch=0 if producer_id >= 0 else -1)


class InterBrokerRoutes:
    """This node's network, with connections to a broker's registered (client) endpoint sent to its voter address.

    Brokers register the address clients reach them by; replication, transaction
    markers and controller RPCs must use the inter-broker listener instead, which
    for a combined node is its controller.quorum.voters address. Routing here,
    below every connection pool, keeps those layers unaware of listeners.
    """

    def __init__(self, network, image_of, voters: dict[int, tuple[str, int]]):
        self.network = network
        self.image_of = image_of
        self.voters = voters

    async def start_server(self, handler, host: str, port: int):
        return await self.network.start_server(handler, host, port)

    def route(self, host: str, port: int) -> tuple[str, int]:
        for broker in self.image_of().brokers.values():
            if broker.host == host and broker.port == port and broker.broker_id in self.voters:
                return self.voters[broker.broker_id]
        return host, port

    async def open_connection(self, host: str, port: int, local_host: str | None = None):
        host, port = self.route(host, port)
        return await self.network.open_connection(host, port, local_host=local_host)
