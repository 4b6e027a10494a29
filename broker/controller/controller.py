"""The active controller: brokers, topics, partition leaders and ISR, producer id blocks.

Runs on every controller node but acts only while its `MetadataQuorum` says it
is the active controller (the Raft leader with a complete image). Every
decision reads the committed `MetadataImage`, produces metadata records, and
commits them through the quorum before answering; operations are serialised
(one at a time), and each starts only once every entry of the leader's log is
applied (`MetadataQuorum.wait_caught_up`), so a decision never contradicts an
earlier one whose commit was merely slow.
The decisions themselves are pure functions of the image (module level, tested
with fake clocks), as KIP-631's QuorumController separates its replay of
records from the logic that emits them.

Rules (Kafka's, KIP-631 / KIP-841 / KIP-497):
- brokers register (RegisterBrokerRecord, fenced) and heartbeat every
  `broker.heartbeat.interval.ms`; a registered broker that heartbeats after it
  has caught up with the metadata log as of its registration is unfenced; one
  silent for `broker.session.timeout.ms` is fenced; a re-registration with a
  new incarnation fences the old one first;
- fencing a broker (session expiry or controlled shutdown) removes it from the
  ISR of its partitions unless it is the last member (KIP-841: the ISR never
  becomes empty), and re-elects the leader of partitions it led;
- leader election: the first replica, in replica order, that is in the ISR
  and unfenced; if the ISR has no live member, the partition goes offline
  (leader -1) unless `unclean.leader.election.enable` (topic config, else the
  broker default) is true, in which case the first live replica becomes leader
  with an ISR of itself, and the log says which data may be lost;
- every leader change bumps `leader_epoch`; every change bumps `partition_epoch`;
- when a broker is unfenced, offline partitions it can lead get it as leader;
- AlterPartition (from the partition leader) is checked for the leader
  epoch (FENCED_LEADER_EPOCH) and partition epoch (INVALID_UPDATE_VERSION);
  the new ISR must contain the leader, lie within the replicas, and add no
  fenced broker (INELIGIBLE_REPLICA);
- CreateTopics places replicas round-robin over unfenced brokers from a random
  start (or takes explicit assignments), leader = first replica, ISR = all;
- producer ids are handed out in blocks recorded in the log, so they stay
  unique across controller failovers.

Thread-safety: none; everything runs on the broker's event loop.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import uuid
from dataclasses import dataclass

from broker.metadata.errors import (
    ControllerError,
    FencedLeaderEpochError,
    IneligibleReplicaError,
    InvalidRequestError,
    InvalidUpdateVersionError,
    NotControllerError,
    NotLeaderOrFollowerError,
    StaleBrokerEpochError,
    UnknownTopicOrPartitionError,
)
from broker.metadata.image import NO_LEADER, RESOURCE_TOPIC, MetadataImage, PartitionState
from broker.metadata.records import (
    ConfigRecord,
    FenceBrokerRecord,
    MetadataRecord,
    PartitionChangeRecord,
    PartitionRecord,
    ProducerIdsRecord,
    RegisterBrokerRecord,
    RemoveTopicRecord,
    TopicRecord,
    UnfenceBrokerRecord,
)

log = logging.getLogger("broker.controller")

PRODUCER_ID_BLOCK_SIZE = 1000
FENCE_CHECK_INTERVAL_S = 0.1

# Kafka error codes used in CreateTopics / DeleteTopics results
TOPIC_ALREADY_EXISTS = 36
INVALID_PARTITIONS = 37
INVALID_REPLICATION_FACTOR = 38
INVALID_REPLICA_ASSIGNMENT = 39
INVALID_CONFIG = 40
UNKNOWN_TOPIC_OR_PARTITION = 3
UNKNOWN_TOPIC_ID = 100
POLICY_VIOLATION = 44

# Kafka refuses a whole CreateTopics that would create more partitions than this (KAFKA-17870: the
# controller's MAX_RECORDS_PER_USER_OP), with POLICY_VIOLATION for every topic and this message.
MAX_PARTITIONS_PER_REQUEST = 10_000
TOO_MANY_PARTITIONS_MESSAGE = "Excessively large number of partitions per request."


@dataclass(frozen=True)
class ControllerSettings:
    session_timeout_ms: int = 9000
    min_insync_replicas: int = 1
    unclean_leader_election_enable: bool = False
    max_broker_partitions: int = 2**31 - 1  # replicas one broker may hold (KIP-578's max.broker.partitions)


# ---- pure decisions ------------------------------------------------------------------


def topic_unclean(image: MetadataImage, topic: str, settings: ControllerSettings) -> bool:
    value = image.topics[topic].configs.get("unclean.leader.election.enable")
    return settings.unclean_leader_election_enable if value is None else value.lower() == "true"


def choose_leader(state: PartitionState, live: set[int], unclean: bool) -> tuple[int, tuple[int, ...], bool]:
    """(leader, isr, unclean election happened) for `state` given the live (unfenced) brokers."""
    in_isr = [r for r in state.replicas if r in state.isr and r in live]
    if in_isr:
        return in_isr[0], state.isr, False
    if unclean:
        candidates = [r for r in state.replicas if r in live]
        if candidates:
            return candidates[0], (candidates[0],), True
    return NO_LEADER, state.isr, False


def partition_change(state: PartitionState, leader: int, isr: tuple[int, ...]) -> PartitionChangeRecord | None:
    """The record that moves `state` to (leader, isr), or None when nothing changes."""
    leader_changed = leader != state.leader
    isr_changed = tuple(isr) != tuple(state.isr)
    if not leader_changed and not isr_changed:
        return None
    return PartitionChangeRecord(
        state.topic_id,
        state.partition,
        leader if leader_changed else None,
        tuple(isr) if isr_changed else None,
        state.leader_epoch + (1 if leader_changed else 0),
        state.partition_epoch + 1,
    )


def _log_unclean(state: PartitionState, leader: int) -> None:
    log.warning(
        "UNCLEAN leader election for %s-%d: no member of the ISR %s is alive; replica %d becomes leader in epoch %d. "
        "Records acknowledged by the old ISR that replica %d does not have are lost.",
        state.topic, state.partition, list(state.isr), leader, state.leader_epoch + 1, leader,
    )


def fence_records(image: MetadataImage, broker_id: int, settings: ControllerSettings) -> list[MetadataRecord]:
    """Fence `broker_id`: drop it from ISRs (never emptying one) and move away its leaderships."""
    records: list[MetadataRecord] = [FenceBrokerRecord(broker_id)]
    live = set(image.unfenced_broker_ids()) - {broker_id}
    for state in list(image.partitions_of(broker_id)):
        isr = state.isr
        if broker_id in isr and len(isr) > 1:
            isr = tuple(r for r in isr if r != broker_id)
        leader = state.leader
        unclean_used = False
        if leader in (broker_id, NO_LEADER):
            leader, isr, unclean_used = choose_leader(
                PartitionState(state.topic, state.topic_id, state.partition, state.replicas, isr, state.leader,
                               state.leader_epoch, state.partition_epoch),
                live, topic_unclean(image, state.topic, settings),
            )
        if unclean_used:
            _log_unclean(state, leader)
        change = partition_change(state, leader, isr)
        if change is not None:
            records.append(change)
    return records


def unfence_records(image: MetadataImage, broker_id: int, settings: ControllerSettings) -> list[MetadataRecord]:
    """Unfence `broker_id` and give offline partitions it may lead a leader."""
    records: list[MetadataRecord] = [UnfenceBrokerRecord(broker_id)]
    live = set(image.unfenced_broker_ids()) | {broker_id}
    for state in list(image.partitions_of(broker_id)):
        if state.leader != NO_LEADER:
            continue
        leader, isr, unclean_used = choose_leader(state, live, topic_unclean(image, state.topic, settings))
        if unclean_used:
            _log_unclean(state, leader)
        change = partition_change(state, leader, isr)
        if change is not None:
            records.append(change)
    return records


def alter_partition_decision(
    image: MetadataImage, broker_id: int, topic_id: uuid.UUID, partition: int, leader_epoch: int,
    new_isr: tuple[int, ...], partition_epoch: int,
) -> tuple[list[MetadataRecord], PartitionState]:
    """Validate an AlterPartition request; return the records and the partition state they lead to."""
    state = image.partition_by_id(topic_id, partition)
    if state is None:
        raise UnknownTopicOrPartitionError(f"no partition {partition} of topic id {topic_id}")
    if state.leader != broker_id:
        raise NotLeaderOrFollowerError(
            f"broker {broker_id} is not the leader of {state.topic}-{partition} (leader: {state.leader})"
        )
    if leader_epoch != state.leader_epoch:
        raise FencedLeaderEpochError(
            f"AlterPartition for {state.topic}-{partition} with leader epoch {leader_epoch}; the current one is {state.leader_epoch}"
        )
    if partition_epoch != state.partition_epoch:
        raise InvalidUpdateVersionError(
            f"AlterPartition for {state.topic}-{partition} with partition epoch {partition_epoch}; "
            f"the current one is {state.partition_epoch}"
        )
    isr = tuple(new_isr)
    if len(set(isr)) != len(isr) or broker_id not in isr or not set(isr) <= set(state.replicas):
        raise InvalidRequestError(
            f"new ISR {list(isr)} for {state.topic}-{partition} must be distinct replicas of {list(state.replicas)} "
            f"including the leader {broker_id}"
        )
    for replica in isr:
        if replica not in state.isr and not image.is_live(replica):
            raise IneligibleReplicaError(f"broker {replica} is fenced or unregistered and cannot join the ISR of {state.topic}-{partition}")
    change = partition_change(state, state.leader, isr)
    if change is None:
        return [], state
    new_state = PartitionState(state.topic, state.topic_id, partition, state.replicas, isr, state.leader,
                               change.leader_epoch, change.partition_epoch)
    return [change], new_state


def placement(brokers: list[int], partitions: int, replication_factor: int, start: int) -> list[tuple[int, ...]]:
    """Round-robin replica placement: partition p gets brokers start+p, start+p+1, ... (mod n)."""
    n = len(brokers)
    return [tuple(brokers[(start + p + i) % n] for i in range(replication_factor)) for p in range(partitions)]


# ---- the controller ---------------------------------------------------------------------


class QuorumController:
    """Handles controller requests on the active controller; see the module docstring."""

    def __init__(self, quorum, runtime, settings: ControllerSettings):
        self.quorum = quorum
        self.runtime = runtime
        self.settings = settings
        self._lock = asyncio.Lock()
        # broker id -> (incarnation id, last heartbeat monotonic ns, metadata offset when registered)
        self._sessions: dict[int, tuple[uuid.UUID, int, int]] = {}
        self._shutting_down: set[int] = set()
        self._fence_task: asyncio.Task | None = None
        quorum.on_activate.append(self._activate)
        quorum.on_resign.append(self._resign)
        self.handlers = {
            "register_broker": self.register_broker,
            "broker_heartbeat": self.broker_heartbeat,
            "controlled_shutdown": self.controlled_shutdown,
            "alter_partition": self.alter_partition,
            "create_topics": self.create_topics,
            "delete_topics": self.delete_topics,
            "allocate_producer_ids": self.allocate_producer_ids,
        }

    @property
    def image(self) -> MetadataImage:
        return self.quorum.image

    def _activate(self) -> None:
        now_ns = self.runtime.clock.monotonic_ns()
        # A new active controller knows no heartbeat times: every broker gets a full session.
        self._sessions = {
            b.broker_id: (b.incarnation_id, now_ns, 0) for b in self.image.brokers.values()
        }
        self._shutting_down.clear()
        self._fence_task = asyncio.ensure_future(self._fence_expired_forever())

    def _resign(self) -> None:
        if self._fence_task is not None:
            self._fence_task.cancel()
            self._fence_task = None

    async def stop(self) -> None:
        self._resign()

    async def handle(self, request: dict) -> dict:
        """Run one controller operation; the answer carries error_code 0 or the Kafka error."""
        op = request.get("op")
        handler = self.handlers.get(op)
        if handler is None:
            return {"error_code": InvalidRequestError.error_code,
                    "error_message": f"unknown controller operation {op!r}; accepted: {', '.join(sorted(self.handlers))}"}
        try:
            async with self._lock:
                if not self.quorum.active:
                    raise NotControllerError(f"node {self.quorum.node_id} is not the active controller")
                await self.quorum.wait_caught_up()
                result = await handler(request)
        except ControllerError as exc:
            return {"error_code": exc.error_code, "error_message": str(exc), "leader_id": self.quorum.leader_id}
        except (KeyError, TypeError, ValueError) as exc:
            return {"error_code": InvalidRequestError.error_code,
                    "error_message": f"malformed {op} request: {type(exc).__name__}: {exc}"}
        result.setdefault("error_code", 0)
        return result

    # ---- brokers -------------------------------------------------------------------

    async def register_broker(self, request: dict) -> dict:
        broker_id = int(request["broker_id"])
        incarnation = uuid.UUID(request["incarnation_id"])
        host, port = str(request["host"]), int(request["port"])
        existing = self.image.brokers.get(broker_id)
        records: list[MetadataRecord] = []
        if existing is not None and existing.incarnation_id == incarnation:
            pass  # a retried registration
        else:
            if existing is not None and not existing.fenced:
                records += fence_records(self.image, broker_id, self.settings)
            records.append(RegisterBrokerRecord(broker_id, incarnation, host, port, request.get("rack")))
            log.info("broker %d registers (incarnation %s) at %s:%d", broker_id, incarnation, host, port)
        offset = await self.quorum.propose(records) if records else self.image.offset
        self._sessions[broker_id] = (incarnation, self.runtime.clock.monotonic_ns(), offset)
        self._shutting_down.discard(broker_id)
        return {"broker_epoch": offset}

    async def broker_heartbeat(self, request: dict) -> dict:
        broker_id = int(request["broker_id"])
        incarnation = uuid.UUID(request["incarnation_id"])
        metadata_offset = int(request.get("metadata_offset", 0))
        broker = self.image.brokers.get(broker_id)
        if broker is None or broker.incarnation_id != incarnation:
            raise StaleBrokerEpochError(f"broker {broker_id} incarnation {incarnation} is not registered; register again")
        session = self._sessions.get(broker_id)
        registered_offset = session[2] if session is not None else 0
        self._sessions[broker_id] = (incarnation, self.runtime.clock.monotonic_ns(), registered_offset)
        if broker.fenced and broker_id not in self._shutting_down and metadata_offset >= registered_offset:
            log.info("unfencing broker %d (caught up to metadata offset %d)", broker_id, metadata_offset)
            await self.quorum.propose(unfence_records(self.image, broker_id, self.settings))
        fenced = self.image.brokers[broker_id].fenced
        return {"fenced": fenced, "metadata_offset": self.image.offset}

    async def controlled_shutdown(self, request: dict) -> dict:
        broker_id = int(request["broker_id"])
        broker = self.image.brokers.get(broker_id)
        if broker is None:
            raise StaleBrokerEpochError(f"broker {broker_id} is not registered")
        self._shutting_down.add(broker_id)
        if not broker.fenced:
            log.info("controlled shutdown of broker %d: moving its leaderships away and fencing it", broker_id)
            await self.quorum.propose(fence_records(self.image, broker_id, self.settings))
        return {}

    async def _fence_expired_forever(self) -> None:
        timeout_ns = self.settings.session_timeout_ms * 1_000_000
        while True:
            await self.runtime.clock.sleep(FENCE_CHECK_INTERVAL_S)
            now_ns = self.runtime.clock.monotonic_ns()
            for broker_id in self.expired_brokers(now_ns, timeout_ns):
                try:
                    async with self._lock:
                        if not self.quorum.active:
                            continue
                        await self.quorum.wait_caught_up()
                        if not self.image.is_live(broker_id):
                            continue
                        log.warning("broker %d missed heartbeats for %d ms: fencing it", broker_id, self.settings.session_timeout_ms)
                        await self.quorum.propose(fence_records(self.image, broker_id, self.settings))
                except ControllerError as exc:
                    log.info("fencing broker %d failed (%s); retrying", broker_id, exc)

    def expired_brokers(self, now_ns: int, timeout_ns: int) -> list[int]:
        expired = []
        for broker_id in self.image.unfenced_broker_ids():
            session = self._sessions.get(broker_id)
            if session is None:
                self._sessions[broker_id] = (self.image.brokers[broker_id].incarnation_id, now_ns, 0)
            elif now_ns - session[1] > timeout_ns:
                expired.append(broker_id)
        return expired

    # ---- partitions -------------------------------------------------------------------

    async def alter_partition(self, request: dict) -> dict:
        records, state = alter_partition_decision(
            self.image, int(request["broker_id"]), uuid.UUID(request["topic_id"]), int(request["partition"]),
            int(request["leader_epoch"]), tuple(int(r) for r in request["new_isr"]), int(request["partition_epoch"]),
        )
        if records:
            log.info("ISR of %s-%d becomes %s (partition epoch %d)", state.topic, state.partition, list(state.isr), state.partition_epoch)
            await self.quorum.propose(records)
        return {"partition": partition_to_json(state)}

    # ---- topics -----------------------------------------------------------------------

    async def create_topics(self, request: dict) -> dict:
        results = []
        records: list[MetadataRecord] = []
        planned: set[str] = set()
        requested = sum(len(t.get("assignments") or ()) or max(0, int(t["num_partitions"])) for t in request["topics"])
        if requested > MAX_PARTITIONS_PER_REQUEST:
            log.info("CreateTopics of %d partitions refused: more than %d in one request", requested, MAX_PARTITIONS_PER_REQUEST)
            return {"topics": [{"name": t["name"], "error_code": POLICY_VIOLATION, "error_message": TOO_MANY_PARTITIONS_MESSAGE,
                                "topic_id": None, "num_partitions": -1, "replication_factor": -1} for t in request["topics"]],
                    "metadata_offset": self.image.offset}
        replicas_per_broker = self._replicas_per_broker()
        for topic in request["topics"]:
            result, topic_records = self._create_topic_records(topic, planned, replicas_per_broker)
            results.append(result)
            if result["error_code"] == 0:
                planned.add(topic["name"])
                records += topic_records
        offset = self.image.offset
        if records and not request.get("validate_only", False):
            offset = await self.quorum.propose(records)
        return {"topics": results, "metadata_offset": offset}

    def _replicas_per_broker(self) -> collections.Counter:
        counts: collections.Counter = collections.Counter()
        for state in self.image.topics.values():
            for partition in state.partitions.values():
                counts.update(partition.replicas)
        return counts

    def _create_topic_records(self, topic: dict, planned: set[str],
                              replicas_per_broker: collections.Counter) -> tuple[dict, list[MetadataRecord]]:
        """The records creating `topic`; `replicas_per_broker` counts the replicas each broker holds, with the
        topics planned before this one in the request, and grows by this topic's when it is accepted."""
        name = topic["name"]
        partitions = int(topic["num_partitions"])
        replication_factor = int(topic["replication_factor"])
        assignments = topic.get("assignments") or None
        configs = dict(topic.get("configs") or {})
        result = {"name": name, "error_code": 0, "error_message": None, "topic_id": None,
                  "num_partitions": -1, "replication_factor": -1}

        def refuse(code: int, message: str):
            result.update(error_code=code, error_message=message)
            log.info("CreateTopics %s refused: %s", name, message)
            return result, []

        if name in self.image.topics or name in planned:
            return refuse(TOPIC_ALREADY_EXISTS, f"topic {name!r} already exists")
        live = self.image.unfenced_broker_ids()
        if assignments:
            replica_lists = [tuple(int(b) for b in assignments[str(p)]) for p in range(len(assignments))]
            for p, replicas in enumerate(replica_lists):
                unknown = [b for b in replicas if b not in self.image.brokers]
                if not replicas or len(set(replicas)) != len(replicas) or unknown:
                    return refuse(INVALID_REPLICA_ASSIGNMENT,
                                  f"assignment {list(replicas)} of partition {p} must name distinct registered brokers "
                                  f"(registered: {sorted(self.image.brokers)})")
            if len({len(r) for r in replica_lists}) != 1:
                return refuse(INVALID_REPLICA_ASSIGNMENT, "every partition's assignment must have the same number of replicas")
            partitions, replication_factor = len(replica_lists), len(replica_lists[0])
        else:
            if partitions <= 0:
                return refuse(INVALID_PARTITIONS, f"num_partitions={partitions} is invalid; expected >= 1")
            if replication_factor <= 0:
                return refuse(INVALID_REPLICATION_FACTOR, f"replication_factor={replication_factor} is invalid; expected >= 1")
            if replication_factor > len(live):
                return refuse(INVALID_REPLICATION_FACTOR,
                              f"replication factor {replication_factor} is larger than the {len(live)} available (unfenced) brokers {live}")
            start = self.runtime.random.randrange(len(live))
            replica_lists = placement(live, partitions, replication_factor, start)
        added = collections.Counter(b for replicas in replica_lists for b in replicas)
        over = sorted(b for b, n in added.items() if replicas_per_broker[b] + n > self.settings.max_broker_partitions)
        if over:
            return refuse(POLICY_VIOLATION, f"{partitions} partitions x {replication_factor} replicas would give broker "
                          f"{over[0]} {replicas_per_broker[over[0]] + added[over[0]]} partition replicas, above "
                          f"max.broker.partitions={self.settings.max_broker_partitions}")
        min_insync = configs.get("min.insync.replicas")
        if min_insync is not None:
            try:
                min_insync_value = int(min_insync)
            except ValueError:
                return refuse(INVALID_CONFIG, f"min.insync.replicas={min_insync!r} is not an integer")
            if not 1 <= min_insync_value:
                return refuse(INVALID_CONFIG, f"min.insync.replicas={min_insync!r} must be >= 1")
        topic_id = self._new_topic_id()
        records: list[MetadataRecord] = [TopicRecord(name, topic_id)]
        records += [ConfigRecord(RESOURCE_TOPIC, name, key, value) for key, value in sorted(configs.items())]
        live_set = set(live)
        for p, replicas in enumerate(replica_lists):
            isr = tuple(r for r in replicas if r in live_set)
            if not isr:
                return refuse(INVALID_REPLICA_ASSIGNMENT, f"no broker of partition {p}'s assignment {list(replicas)} is unfenced")
            records.append(PartitionRecord(topic_id, p, replicas, isr, isr[0], 0, 0))
        replicas_per_broker.update(added)
        result.update(topic_id=str(topic_id), num_partitions=partitions, replication_factor=replication_factor)
        log.info("creating topic %s (id %s): %d partitions, replicas %s, configs %s",
                 name, topic_id, partitions, [list(r) for r in replica_lists], configs)
        return result, records

    def _new_topic_id(self) -> uuid.UUID:
        while True:
            candidate = uuid.UUID(int=self.runtime.random.getrandbits(128), version=4)
            if candidate not in self.image.topic_names_by_id:
                return candidate

    async def delete_topics(self, request: dict) -> dict:
        results = []
        records: list[MetadataRecord] = []
        for topic in request["topics"]:
            name, topic_id = topic.get("name"), topic.get("topic_id")
            state = None
            if name is None and topic_id is not None:
                state = self.image.topic_by_id(uuid.UUID(topic_id))
                error = UNKNOWN_TOPIC_ID if state is None else 0
                message = f"no topic has id {topic_id}" if state is None else None
            else:
                state = self.image.topics.get(name)
                error = UNKNOWN_TOPIC_OR_PARTITION if state is None else 0
                message = f"no topic is named {name!r}" if state is None else None
            if state is not None and any(isinstance(r, RemoveTopicRecord) and r.topic_id == state.topic_id for r in records):
                state = None
            if state is not None:
                records.append(RemoveTopicRecord(state.topic_id))
                log.info("deleting topic %s (id %s)", state.name, state.topic_id)
            results.append({"name": state.name if state else name, "topic_id": str(state.topic_id) if state else topic_id,
                            "error_code": error, "error_message": message})
        offset = self.image.offset
        if records:
            offset = await self.quorum.propose(records)
        return {"topics": results, "metadata_offset": offset}

    # ---- producer ids -------------------------------------------------------------------

    async def allocate_producer_ids(self, request: dict) -> dict:
        broker_id = int(request["broker_id"])
        start = self.image.next_producer_id_block_start
        await self.quorum.propose([ProducerIdsRecord(broker_id, start + PRODUCER_ID_BLOCK_SIZE)])
        return {"start": start, "length": PRODUCER_ID_BLOCK_SIZE}


def partition_to_json(state: PartitionState) -> dict:
    return {
        "topic": state.topic, "topic_id": str(state.topic_id), "partition": state.partition,
        "replicas": list(state.replicas), "isr": list(state.isr), "leader": state.leader,
        "leader_epoch": state.leader_epoch, "partition_epoch": state.partition_epoch,
    }


def partition_from_json(value: dict) -> PartitionState:
    return PartitionState(
        value["topic"], uuid.UUID(value["topic_id"]), int(value["partition"]), tuple(value["replicas"]),
        tuple(value["isr"]), int(value["leader"]), int(value["leader_epoch"]), int(value["partition_epoch"]),
    )
