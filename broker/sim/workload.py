"""The queue workload of `logquake test`, run against a simulated cluster under a seeded fault schedule.

One seed decides everything: the world (broker.io.sim.SimWorld), the fault
schedule, and every choice of every client. The history comes out in the
standard format (docs/DESIGN.md, "The history"; the op shapes of
workloads/queue.py) so that the harness judges it with the same queue checker
as a real run, under at-least-once (acks=all producers; with
`SimOptions.idempotent`, at-least-once with the idempotent producer) or, with
`SimOptions.delivery == "exactly-once"`, under exactly-once:

- producer processes (a think time of 0 to 40 ms between ops): `send` ops `[["send", key, value]]`, completed as
  `[["send", key, [offset, value]]]` (ok: acknowledged under acks=all), `fail`
  (the leader refused it before appending: UNKNOWN_TOPIC_OR_PARTITION,
  NOT_ENOUGH_REPLICAS) or `info` (anything else: no answer, a timeout,
  NOT_LEADER_OR_FOLLOWER, which may come after the append). One attempt per op: a retry
  is the next op, with a new value. With `idempotent` the producer takes a
  producer id (InitProducerId) and numbers its batches per partition; a send
  is tried again, the same batch, until acknowledged or given up after
  DELIVERY_TIMEOUT_S, and the leader must deduplicate the tries;
- exactly-once: each producer slot is a transactional producer
  (broker.sim.transactions, transactional.id `logquake-sim-<slot>`) and
  writes `txn` ops of 1 to 3 sends, `[["send", key, value], ...]`, invoked
  with `"abort": true` for the tenth it aborts on purpose; ok as
  `[["send", key, [offset, value]], ...]` once EndTxn(commit) succeeded,
  `fail` with the invoked value when no commit was ever sent (aborted on
  purpose, or ended by an epoch bump after a failure: nothing of it can be
  committed), `info` when a commit was sent and not confirmed; the broker
  gets a few `__transaction_state` partitions and a 1 s timeout sweep
  (transactions.PROPERTIES; --override wins);
- consumer processes: first an `assign` of every key, then `poll` ops
  `[["poll", {key: [[offset, value], ...]}]]` with `"high-watermarks"`, each a
  Fetch from the partition's leader at the process's position per key (assign
  style, no group); a key whose fetch failed reads nothing in that poll;
  under exactly-once the fetches are read_committed (isolation_level 1, up
  to the last stable offset) and the client drops control batches and
  aborted transactions itself (`transactions.committed_records`, KIP-98's
  consumer algorithm), its position moving past them;
- after the last fault is healed and the cluster has settled, one fresh
  process does the final reads: `assign` every key with `"final": true`, then a
  `poll` (final) that asks ListOffsets for every partition's high watermark
  (`"listed-high-watermarks"`) and fetches from offset 0 up to it, recording
  `"final-read-short"` for a key it could not finish; under exactly-once it
  reads read_committed up to those high watermarks, waiting while a
  transaction holds the last stable offset below them, and stops after
  FINAL_READ_STALL_S without progress, recording for the short keys the
  last stable offsets (ListOffsets, isolation_level 1), the seconds stalled
  and the transaction timeout, from which the checker judges
  `hanging-transaction`;
- nemesis ops (`"process": "nemesis"`): `kill`/`start` (a crash of a node's
  machine and its restart from its simulated disk; the crash tears what the
  node wrote since each file's last fsync: a prefix of those writes survives,
  the last one possibly cut inside, broker.io.sim_disk's `torn_writes`) and
  `start-partition`/`stop-partition` (one node cut off from the other nodes,
  both ways; clients still reach every node; a `link` fault cuts two nodes
  from each other only, and `clients` one node from the clients).

Fault model of the schedule: at most one fault at a time; with the default
kinds (FAULTS: crash, partition) a majority of the nodes is always up and
connected; `power` (not a default: see `_fault`) crashes every node at once, as
a power cut of the whole cluster, and restarts them; `link` (not a default
either) cuts two nodes from each other only, a partial partition; `leader`
(not a default) is a partition of a node that leads a partition of the
workload's topics when the fault starts (`leader_fault_partitions`; in
broker.sim.offsets, a group coordinator), recorded as the partition it is;
each fault starts after a quiet gap of
1 to 3 virtual seconds and lasts 3 to 8, a partition twice as often as a crash
(GAP_S, HOLD_S, FAULT_WEIGHTS); the last one is healed before the run's
duration ends. An explicit schedule (`SimOptions.schedule`, a tuple of
`Fault`s: what tests/broker/test_sim_schedules.py draws with Hypothesis, so
that a failing schedule shrinks) replaces the drawn one: its faults, one at a
time, each at its time or when the one before healed, healed before the final
reads even if they outlast the workload. The faults as applied, drawn or
given, come out in the summary (`schedule`, with `schedule_end_s`, when the
drawn nemesis last woke up); given back as a schedule (with
`SimOptions.schedule_end_s`) they replay the seed's history byte for byte,
each fault starting on the nanosecond it was recorded at. What is not simulated here: pauses, disk faults (EIO,
stalls), clock skew, slow links, polls inside transactions, consumer
groups and transactional offset commits (the runtime supports some of these;
the queue workload does not drive them; broker.sim.pipeline's workload drives
consumer groups and transactional offset commits, and broker.sim.offsets plain
offset commits, on `SimulationBase`).

`time` in the history is virtual nanoseconds since the world started, so two
runs of one seed write the same bytes.

Thread-safety: none; everything runs on the world's loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
import random
from dataclasses import dataclass, field

from broker.coordinator.group_records import iter_records
from broker.io.sim import SimWorld
from broker.protocol.client import ClientError
from broker.protocol.records import build_batch
from broker.sim.cluster import SimClient, SimCluster, host_of
from broker.sim.invariants import InvariantChecker
from broker.sim.schedule import SCHEDULED_KINDS, Fault, fault_problem
from broker.sim.transactions import (ABORT_SHARE, SENDS_PER_TXN, TRANSACTION_TIMEOUT_S, TransactionalProducer,
                                     committed_records)
from broker.sim.transactions import PROPERTIES as TRANSACTION_PROPERTIES
from broker.sim.transactions import schema as _schema

TOPIC = "logquake-queue"
# every fault the schedule can draw; a drawn `leader` fault is recorded as its partition, so a given schedule holds
# only the others (broker.sim.schedule: the Fault record, its rules and the reader of schedule files)
KINDS = (*SCHEDULED_KINDS, "leader")
FAULTS = ("crash", "partition")  # the default: one node at a time, a majority always up
# produce errors that certainly wrote nothing (checked before the append): the op fails. Not NOT_LEADER_OR_FOLLOWER
# (6): the leader also answers it to an acks=all produce it had appended when it loses the leadership while waiting
# for the ISR (broker.replication.manager, as Kafka's DelayedProduce), and the record may be committed by the new
# leader (100 seeds of the correct broker, 20000..20099: 5 INVALID with G1a, each a send answered 6 and read later)
NOT_WRITTEN = {3, 19}  # UNKNOWN_TOPIC_OR_PARTITION, NOT_ENOUGH_REPLICAS
OP_TIMEOUT_S = 10.0
# the idempotent producer (SimOptions.idempotent): how long one send is retried, and the pause between tries
DELIVERY_TIMEOUT_S = 30.0
RETRY_BACKOFF_S = 0.1
# how long the leader may wait for the ISR before answering REQUEST_TIMED_OUT: shorter than the 3 s in which a cut-off
# follower is fenced and dropped from the ISR, so a partition leaves written batches to be tried again (what
# deduplication is for: with 5 s, as the plain producer waits, no try of 1,240 was a retry of a written batch)
IDEMPOTENT_ACK_TIMEOUT_S = 2.0
# answers after which the producer id cannot go on: OUT_OF_ORDER_SEQUENCE_NUMBER, DUPLICATE_SEQUENCE_NUMBER,
# INVALID_PRODUCER_EPOCH, UNKNOWN_PRODUCER_ID
SEQUENCE_BROKEN = {45, 46, 47, 59}
# The drawn schedule: a quiet gap, then one fault held HOLD_S (long enough for a cut-off or crashed leader to be
# replaced: broker.session.timeout.ms is 3 s here), a partition twice as often as a crash. Measured with three
# replication bugs on seeds 8000..8019 (30 s): with gaps of 2 to 6 s, holds of 3 to 10 s and even odds, about 2.5
# faults a run, every seed with a partition caught ack.before.replication and skip.truncation (16 of 16) and the 4
# seeds with none were missed (fenced.leader.acks: 13 of 20, again every miss but one had at most one partition);
# a crash is what recovery bugs need, a partition is what a leader that acknowledges or keeps what it should not needs.
GAP_S = (1.0, 3.0)
HOLD_S = (3.0, 8.0)
FAULT_WEIGHTS = {"crash": 1, "partition": 2, "clients": 1, "power": 3, "link": 2, "leader": 2}  # power, when asked for, half the faults
FINAL_READ_TIMEOUT_S = 60.0
DELIVERIES = ("at-least-once", "exactly-once")  # the client settings of workloads/queue.py the simulation runs
READ_UNCOMMITTED, READ_COMMITTED = 0, 1
# a read_committed final read stuck below a listed high watermark gives up after going this long without progress:
# two transaction timeouts and then some, so an open transaction the coordinator should have aborted by its timeout
# is judged `hanging-transaction` by the checker (which asks for at least two)
FINAL_READ_STALL_S = 2 * TRANSACTION_TIMEOUT_S + 5.0


def metadata_request(topic: str):
    m = _schema("metadata", 12)
    return m.MetadataRequest(topics=(m.MetadataRequestTopic(topic_id=None, name=topic),), allow_auto_topic_creation=False,
                             include_topic_authorized_operations=False)


def create_topic_request(topic: str, partitions: int, replication_factor: int, configs: dict[str, str]):
    m = _schema("create_topics", 7)
    creatable = m.CreatableTopic(name=topic, num_partitions=partitions, replication_factor=replication_factor,
                                 assignments=(), configs=tuple(m.CreatableTopicConfig(name=k, value=v)
                                                               for k, v in configs.items()))
    return m.CreateTopicsRequest(topics=(creatable,), timeout=datetime.timedelta(seconds=10), validate_only=False)


def produce_request(topic: str, partition: int, records: bytes, timeout_s: float = OP_TIMEOUT_S / 2,
                    transactional_id: str | None = None):
    m = _schema("produce", 9)
    data = m.TopicProduceData(name=topic, partition_data=(m.PartitionProduceData(index=partition, records=records),))
    return m.ProduceRequest(transactional_id=transactional_id, acks=-1, timeout=datetime.timedelta(seconds=timeout_s),
                            topic_data=(data,))


def init_producer_id_request():
    m = _schema("init_producer_id", 4)
    return m.InitProducerIdRequest(transactional_id=None, transaction_timeout=datetime.timedelta(seconds=60),
                                   producer_id=-1, producer_epoch=-1)


def fetch_request(topic: str, partition: int, offset: int, isolation_level: int = READ_UNCOMMITTED):
    m = _schema("fetch", 11)
    wanted = m.FetchPartition(partition=partition, current_leader_epoch=-1, fetch_offset=offset, log_start_offset=-1,
                              partition_max_bytes=1 << 20)
    return m.FetchRequest(replica_id=-1, max_wait=datetime.timedelta(milliseconds=0), min_bytes=1, max_bytes=1 << 20,
                          isolation_level=isolation_level, session_id=0, session_epoch=-1,
                          topics=(m.FetchTopic(topic=topic, partitions=(wanted,)),), forgotten_topics_data=(),
                          rack_id="")


def list_offsets_request(topic: str, partition: int, isolation_level: int = READ_UNCOMMITTED):
    m = _schema("list_offsets", 6)
    wanted = m.ListOffsetsPartition(partition_index=partition, current_leader_epoch=-1, timestamp=-1)
    return m.ListOffsetsRequest(replica_id=-1, isolation_level=isolation_level,
                                topics=(m.ListOffsetsTopic(name=topic, partitions=(wanted,)),))


@dataclass
class SimOptions:
    seed: int
    nodes: int = 3
    duration_s: float = 30.0
    faults: tuple[str, ...] = FAULTS
    keys: int = 3
    producers: int = 2
    consumers: int = 2
    properties: dict[str, str] = field(default_factory=dict)
    invariants: bool = True  # check broker.sim.invariants after every step (off: only to measure their cost)
    schedule: tuple[Fault, ...] | None = None  # the faults, instead of drawing them from the seed
    # with a schedule: when its nemesis last wakes up after its faults (the drawn nemesis wakes once more to find no
    # room for another fault; a schedule recorded from a drawn run carries that time, and replays it byte for byte)
    schedule_end_s: float | None = None
    idempotent: bool = False  # producers with a producer id and sequences, retrying a send with its batch
    delivery: str = "at-least-once"  # or exactly-once: transactional producers, read_committed consumers

    def __post_init__(self):
        if self.delivery not in DELIVERIES:
            raise ValueError(f"delivery {self.delivery!r} is not simulated; expected one of {', '.join(DELIVERIES)}")
        if self.idempotent and self.delivery != "at-least-once":
            raise ValueError("idempotent goes with delivery at-least-once (exactly-once producers are idempotent "
                             "already)")
        unknown = [f for f in self.faults if f not in KINDS]
        if unknown:
            raise ValueError(f"faults {unknown} are not simulated; expected some of {', '.join(KINDS)}")
        if "link" in self.faults and self.nodes < 2:
            raise ValueError("a link fault cuts one node from another: it needs at least 2 nodes")
        if self.nodes < 1 or self.duration_s <= 0 or self.keys < 1:
            raise ValueError(f"nodes, duration and keys must be positive, got {self.nodes}, {self.duration_s}, "
                             f"{self.keys}")
        for fault in self.schedule or ():
            problem = fault_problem(fault, self.nodes)
            if problem:
                raise ValueError(f"{fault}: {problem}")  # the wording of a schedule file's faults too


class ProducerIdentity:
    """An idempotent producer's id, epoch and next sequence per partition (key); `reset` drops them all."""

    def __init__(self):
        self.producer_id: int | None = None
        self.epoch = -1
        self.sequences: dict[int, int] = {}

    def reset(self) -> None:
        self.producer_id, self.epoch, self.sequences = None, -1, {}


class HistoryRecorder:
    """Ops as the standard JSONL history lines, indexed in order, timed on the virtual clock."""

    def __init__(self, world: SimWorld):
        self.world = world
        self.lines: list[str] = []

    def record(self, process, type_: str, f: str, value, **extra) -> None:
        op = {"index": len(self.lines), "time": self.world.loop.time_ns(), "process": process, "type": type_, "f": f,
              "value": value, **extra}
        # the separators of checkers.history's JsonlWriter
        self.lines.append(json.dumps(op, separators=(", ", ": "), allow_nan=False))

    def text(self) -> str:
        return "".join(line + "\n" for line in self.lines)


class Leaders:
    """A client's view of who leads each partition: the answer with the highest leader epoch (KIP-320)."""

    def __init__(self, client: SimClient, node_ids: list[int], topic: str = TOPIC):
        self.client = client
        self.node_ids = node_ids
        self.topic = topic
        self.leader: dict[int, tuple[int, int]] = {}  # partition -> (leader epoch, leader id)

    async def refresh(self) -> None:
        for node_id in self.node_ids:
            try:
                answer = await self.client.request(node_id, metadata_request(self.topic), timeout_s=2.0)
            except ClientError:
                continue
            for topic in answer.topics:
                if topic.error_code != 0:
                    continue
                for partition in topic.partitions:
                    if partition.error_code != 0 or partition.leader_id < 0:
                        continue
                    known = self.leader.get(partition.partition_index)
                    if known is None or partition.leader_epoch >= known[0]:
                        self.leader[partition.partition_index] = (partition.leader_epoch, partition.leader_id)

    async def of(self, key: int) -> int | None:
        if key not in self.leader:
            await self.refresh()
        known = self.leader.get(key)
        return known[1] if known else None

    def forget(self, key: int) -> None:
        self.leader.pop(key, None)


def _records(raw) -> list[list[int]]:
    out = []
    for header, entries in iter_records(bytes(raw or b"")):
        for delta, (_, value) in enumerate(entries):
            out.append([header.base_offset + delta, int(value)])
    return out


class SimulationBase:
    """What every simulated workload shares: the world, the cluster of the real broker, the history, the per-step
    invariants, the fault schedule (drawn from the seed or given: `nemesis`, `_fault`) and the faults as applied
    (`applied`, `schedule_end_s`: the summary's `schedule`), the clients, topic creation and settling after the
    heal. A workload (QueueSimulation here, broker.sim.pipeline's PipelineSimulation) adds its workers, its final
    reads and `run`."""

    def __init__(self, options: SimOptions, properties: dict[str, str]):
        self.o = options
        self.world = SimWorld(options.seed, torn_writes=True)
        self.cluster = SimCluster(self.world, options.nodes, properties)
        self.history = HistoryRecorder(self.world)
        self.invariants = InvariantChecker(self.cluster)
        if options.invariants:
            self.world.loop.step_hook = self.invariants.check
        self.fault_rng = random.Random(f"{options.seed}/faults")
        self.next_value = 0
        self.deadline_s = 0.0
        self.start_ns = 0  # virtual time when the workload started: a fault's at_s counts from here
        self.applied: list[Fault] = []  # the faults as applied, drawn or scheduled: the summary's `schedule`
        self.schedule_end_s = options.schedule_end_s  # when the nemesis last woke up (the summary's `schedule_end_s`)
        self.clients: list[SimClient] = []

    def unique_value(self) -> int:
        self.next_value += 1
        return self.next_value

    def client(self, name: str) -> SimClient:
        client = SimClient(self.world, name)
        self.clients.append(client)
        return client

    # ---- setup -----------------------------------------------------------------------------

    async def start_cluster(self) -> None:
        """Every node started, registered and unfenced on every node."""
        cluster = self.cluster
        for node_id in cluster.node_ids:
            await cluster.start(node_id)
        await cluster.wait_for(lambda: all(cluster.registered_brokers(n) == cluster.node_ids for n in cluster.nodes),
                               "every broker registered and unfenced on every node", timeout_s=60.0)

    async def create_topic(self, admin: SimClient, topic: str, partitions: int) -> None:
        """`topic` with `partitions` partitions (replication factor 3, min.insync.replicas 2, or what the cluster
        has), asked of the first node until made; then until every partition has a leader."""
        cluster = self.cluster
        replication = min(3, self.o.nodes)
        configs = {"min.insync.replicas": str(min(2, replication))}
        loop = self.world.loop
        deadline = loop.time() + 60.0
        last_error = "no answer yet"
        while True:
            try:
                answer = await admin.request(cluster.node_ids[0], create_topic_request(topic, partitions, replication,
                                                                                     configs))
                if answer.topics[0].error_code in (0, 36):  # 36: TOPIC_ALREADY_EXISTS (an earlier try landed)
                    break
            except ClientError as exc:  # the controller is not reachable yet: asked again below
                last_error = str(exc)
            assert loop.time() < deadline, f"seed {self.o.seed}: the topic could not be created ({last_error})"
            await self.world.sleep(0.5)
        leaders = Leaders(admin, cluster.node_ids, topic)
        while len(leaders.leader) < partitions:
            assert loop.time() < deadline, f"seed {self.o.seed}: no leader for every partition: {leaders.leader}"
            await leaders.refresh()
            await self.world.sleep(0.2)


    # ---- the idempotent producer ----------------------------------------------------------

    async def _send_idempotent(self, client: SimClient, leaders: Leaders, producer: "ProducerIdentity", key: int,
                               value: int, topic: str = TOPIC):
        """One send of the idempotent producer: its batch carries the producer id, epoch and the partition's next
        sequence, and is sent again, the same bytes, until it is acknowledged, refused for good or DELIVERY_TIMEOUT_S
        has passed (Kafka's producer with enable.idempotence: retries that the leader deduplicates by sequence).

        ok with the offset; `fail` when no try can have written it (every answer was one of NOT_WRITTEN, or no
        leader); `info` otherwise. After `info` or a broken sequence the producer takes a new producer id, so a batch
        it gave up on can never be confused with a later one (as KIP-360's epoch bump does)."""
        invoked = [["send", key, value]]
        loop = self.world.loop
        if producer.producer_id is None and not await self._init_producer_id(client, producer):
            return "fail", invoked, ["no-producer-id", "no node gave a producer id"]
        sequence = producer.sequences.get(key, 0)
        batch = build_batch([(None, str(value).encode())], base_timestamp=client.runtime.clock.wall_ms(),
                            producer_id=producer.producer_id, producer_epoch=producer.epoch, base_sequence=sequence)
        give_up_at = loop.time() + DELIVERY_TIMEOUT_S
        maybe_written = False
        error = ["no-leader", "no node named a leader for the partition"]
        while True:
            leader = await leaders.of(key)
            if leader is not None:
                try:
                    answer = await client.request(leader, produce_request(topic, key, batch, IDEMPOTENT_ACK_TIMEOUT_S),
                                                  timeout_s=OP_TIMEOUT_S)
                except ClientError as exc:
                    leaders.forget(key)
                    maybe_written, error = True, ["no-answer", str(exc)]
                else:
                    partition = answer.responses[0].partition_responses[0]
                    code = int(partition.error_code)
                    if code == 0:
                        producer.sequences[key] = sequence + 1
                        return "ok", [["send", key, [partition.base_offset, value]]], None
                    error = ["error-code", code]
                    if code not in NOT_WRITTEN:
                        maybe_written = True
                    if code in SEQUENCE_BROKEN:
                        break
                    leaders.forget(key)
            if loop.time() >= give_up_at:
                break
            await self.world.sleep(RETRY_BACKOFF_S)
        producer.reset()
        return ("info" if maybe_written else "fail"), invoked, error

    async def _init_producer_id(self, client: SimClient, producer: "ProducerIdentity") -> bool:
        """InitProducerId (no transactional id) from the first node that gives one, trying for OP_TIMEOUT_S."""
        loop = self.world.loop
        deadline = loop.time() + OP_TIMEOUT_S
        while loop.time() < deadline:
            for node_id in self.cluster.node_ids:
                try:
                    answer = await client.request(node_id, init_producer_id_request(), timeout_s=OP_TIMEOUT_S / 2)
                except ClientError:
                    continue
                if answer.error_code == 0:
                    producer.producer_id, producer.epoch = int(answer.producer_id), int(answer.producer_epoch)
                    return True
            await self.world.sleep(RETRY_BACKOFF_S)
        return False

    # ---- faults ----------------------------------------------------------------------------

    async def nemesis(self) -> None:
        """At most one fault at a time, each healed before the next; the last healed before the deadline.

        With `SimOptions.schedule` the faults are that schedule's instead of the seed's draws."""
        if self.o.schedule is not None:
            await self._scheduled_faults()
            return
        rng, loop = self.fault_rng, self.world.loop
        kinds = sorted(self.o.faults)
        weights = [FAULT_WEIGHTS[kind] for kind in kinds]
        while True:
            await self.world.sleep(rng.uniform(*GAP_S))
            hold_s = rng.uniform(*HOLD_S)
            if not kinds or loop.time() + hold_s >= self.deadline_s:
                self.schedule_end_s = (loop.time_ns() - self.start_ns) / 1e9
                return
            kind = rng.choices(kinds, weights)[0]
            victim = rng.choice(self.cluster.node_ids)
            # the other end of a link is drawn only for a link: the draws of every other schedule stay as they were
            peer = rng.choice([n for n in self.cluster.node_ids if n != victim]) if kind == "link" else 0
            if kind == "leader":  # likewise drawn only for this kind
                kind, victim = "partition", self._leader_of_a_partition(rng, victim)
            await self._fault(kind, victim, hold_s, peer)

    def _leader_of_a_partition(self, rng: random.Random, otherwise: int) -> int:
        """The node that leads a partition drawn from `leader_fault_partitions`, as the active controller's metadata
        has it (the nemesis sees what a Jepsen nemesis asks the cluster); `otherwise` when no controller or leader is
        known."""
        controller = self.cluster.controller_id()
        if controller is None:
            return otherwise
        image = self.cluster.nodes[controller].cluster.quorum.image
        partitions = [(name, index) for name, index in self.leader_fault_partitions(image)
                      if name in image.topics and index in image.topics[name].partitions]
        if not partitions:
            return otherwise
        name, index = rng.choice(partitions)
        leader = image.topics[name].partitions[index].leader
        return leader if leader in self.cluster.node_ids else otherwise

    def leader_fault_partitions(self, image) -> list[tuple[str, int]]:
        """The partitions whose leader a `leader` fault cuts off, in a fixed order: every partition of the workload's
        topics (all but the internal `__` ones). A workload whose writes go elsewhere (broker.sim.offsets: the group
        coordinators, leaders of `__consumer_offsets`) names its own."""
        return [(name, index) for name in sorted(image.topics) if not name.startswith("__")
                for index in sorted(image.topics[name].partitions)]

    async def _scheduled_faults(self) -> None:
        """`SimOptions.schedule`, in order of start: each fault at its time after the workload started, or when the
        one before it healed if that is later (one fault at a time, as the drawn schedule)."""
        for fault in sorted(self.o.schedule, key=lambda f: (f.at_s, f.kind, f.node, f.hold_s, f.peer)):
            await self._sleep_until(fault.at_s)
            await self._fault(fault.kind, fault.node, fault.hold_s, fault.other_end(self.o.nodes))
        if self.o.schedule_end_s is not None:
            await self._sleep_until(self.o.schedule_end_s)

    async def _sleep_until(self, at_s: float) -> None:
        """Sleep until `at_s` after the workload started, to the nanosecond (at once if that is past).

        Half a nanosecond short: the loop rounds a sleep up to whole nanoseconds, so this wakes up on the nanosecond
        `at_s` names, as the drawn fault it was recorded from did (a recorded schedule replays its seed's history
        byte for byte)."""
        wait_ns = self.start_ns + round(at_s * 1e9) - self.world.loop.time_ns()
        if wait_ns > 0:
            await self.world.sleep((wait_ns - 0.5) / 1e9)

    async def _fault(self, kind: str, victim: int, hold_s: float, peer: int = 0) -> None:
        """Apply one fault to `victim` for `hold_s` virtual seconds, then heal it; nemesis ops in the history.

        A `link` fault cuts `victim` from `peer` alone, both ways: a partial partition, where each node still reaches
        some of the others (a leader that reaches the controller and the coordinator but not a follower in its ISR,
        so that acks=all writes and transaction markers wait and time out; a broker cut from the active controller
        alone, fenced while it still serves clients and fetches).

        A `power` fault takes every node down at once (`victim` is ignored) and restarts them all: the one crash that
        tells a broker that fsyncs what it acknowledges from one that does not (with fewer nodes down, the survivors'
        copies cover both)."""
        self.applied.append(Fault(at_s=(self.world.loop.time_ns() - self.start_ns) / 1e9, kind=kind, node=victim,
                                  hold_s=hold_s, peer=peer).as_applied(self.o.nodes))
        if kind == "power":
            victims = list(self.cluster.node_ids)
            self.history.record("nemesis", "info", "kill", victims)
            for node_id in victims:
                self.cluster.crash(node_id)
            self.history.record("nemesis", "info", "kill", {"killed": victims})
            await self.world.sleep(hold_s)
            self.history.record("nemesis", "info", "start", victims)
            for node_id in victims:
                await self.cluster.restart(node_id)
            self.history.record("nemesis", "info", "start", {"started": victims})
        elif kind == "clients":
            # the victim stays in the cluster, but every client's connection to it is reset and none reconnects
            # until the heal: answers to requests in flight are lost (a dropped connection, a load balancer's reset)
            clients = sorted(client.host for client in self.clients)
            await self._cut(victim, clients, {client: [victim] for client in clients}, clients, hold_s, reset=True)
        elif kind == "crash":
            self.history.record("nemesis", "info", "kill", [victim])
            self.cluster.crash(victim)
            self.history.record("nemesis", "info", "kill", {"killed": [victim]})
            await self.world.sleep(hold_s)
            self.history.record("nemesis", "info", "start", [victim])
            await self.cluster.restart(victim)
            self.history.record("nemesis", "info", "start", {"started": [victim]})
        else:
            others = [peer] if kind == "link" else [n for n in self.cluster.node_ids if n != victim]
            await self._cut(victim, others, {str(n): [victim] for n in others}, [host_of(n) for n in others], hold_s)

    async def _cut(self, victim: int, peers: list, back: dict, hosts: list[str], hold_s: float,
                   reset: bool = False) -> None:
        """Cut `victim` from `hosts` both ways for `hold_s`, then heal; the grudge (victim -> peers, and `back`)
        as start-partition/stop-partition nemesis ops."""
        grudge = {str(victim): peers, **back}
        self.history.record("nemesis", "info", "start-partition", grudge)
        self.world.network.partition([host_of(victim)], hosts, reset=reset)
        self.history.record("nemesis", "info", "start-partition", {"partitioned": grudge})
        await self.world.sleep(hold_s)
        self.history.record("nemesis", "info", "stop-partition", None)
        self.world.network.heal()
        self.history.record("nemesis", "info", "stop-partition", "healed")

    # ---- after the faults ------------------------------------------------------------------

    async def fetch_partition(self, client: SimClient, leaders: Leaders, topic: str, partition: int, offset: int,
                              isolation: int, timeout_s: float | None = None):
        """One Fetch of `topic`-`partition` from `offset`, asked of its leader: the response's partition, or None
        (no leader known, no answer, an error code; the leader is then forgotten, to be found again)."""
        leader = await leaders.of(partition)
        if leader is None:
            return None
        try:
            answer = await client.request(leader, fetch_request(topic, partition, offset, isolation),
                                          **({} if timeout_s is None else {"timeout_s": timeout_s}))
        except ClientError:
            answer = None
        result = answer.responses[0].partitions[0] if answer is not None else None
        if result is None or result.error_code != 0:
            leaders.forget(partition)
            return None
        return result

    async def list_ends(self, client: SimClient, leaders: Leaders, topic: str, partitions: list[int], isolation: int,
                        give_up: float) -> dict[int, int]:
        """ListOffsets of each partition of `topic` from its leader (the high watermark, or with READ_COMMITTED the
        last stable offset), each tried again every 0.2 s until virtual time `give_up`; a partition that never
        answered is missing from the result."""
        ends: dict[int, int] = {}
        for partition in partitions:
            while partition not in ends and self.world.loop.time() < give_up:
                leader = await leaders.of(partition)
                try:
                    answer = await client.request(leader, list_offsets_request(topic, partition, isolation)) \
                        if leader is not None else None
                except ClientError:
                    answer = None
                part = answer.topics[0].partitions[0] if answer is not None else None
                if part is not None and part.error_code == 0:
                    ends[partition] = int(part.offset)
                else:
                    leaders.forget(partition)
                    await self.world.sleep(0.2)
        return ends

    async def heal_all(self) -> None:
        """After the workload: the network healed, every node that is down restarted, the cluster settled."""
        self.world.network.heal()
        for node_id in self.cluster.node_ids:
            if node_id not in self.cluster.nodes:
                await self.cluster.restart(node_id)
        await self.settle()

    async def settle(self) -> None:
        """Every node registered and unfenced on every node; the final reads then retry until leaders answer."""
        cluster = self.cluster
        await cluster.wait_for(lambda: all(cluster.registered_brokers(n) == cluster.node_ids for n in cluster.nodes),
                               "every broker registered again after healing", timeout_s=60.0)


class QueueSimulation(SimulationBase):
    """One seeded run: cluster up, topic made, workers and the fault schedule for `duration_s`, heal, final reads."""

    def __init__(self, options: SimOptions):
        self.transactional = options.delivery == "exactly-once"
        properties = {**TRANSACTION_PROPERTIES, **options.properties} if self.transactional else options.properties
        super().__init__(options, properties)
        self.rng = random.Random(f"{options.seed}/workload")
        self.concurrency = options.producers + options.consumers

    async def setup(self) -> None:
        await self.start_cluster()
        await self.create_topic(self.client("admin"), TOPIC, self.o.keys)

    # ---- workers ---------------------------------------------------------------------------

    async def producer(self, slot: int) -> None:
        client = self.client(f"producer{slot}")
        leaders = Leaders(client, self.cluster.node_ids)
        producer = ProducerIdentity()
        process = slot
        if self.transactional:
            await self._transactional_producer(client, leaders, slot)
            return
        while self.world.loop.time() < self.deadline_s:
            key = self.rng.randrange(self.o.keys)
            value = self.unique_value()
            self.history.record(process, "invoke", "send", [["send", key, value]])
            if self.o.idempotent:
                type_, result, error = await self._send_idempotent(client, leaders, producer, key, value)
            else:
                type_, result, error = await self._send(client, leaders, key, value)
            extra = {"error": error} if error is not None else {}
            self.history.record(process, type_, "send", result, **extra)
            if type_ == "info":
                process += self.concurrency
            # a think time, as a real workload's rate limit: about 50 sends a second per producer
            await self.world.sleep(0.1 if type_ == "fail" else self.rng.uniform(0.0, 0.04))

    async def _transactional_producer(self, client: SimClient, leaders: Leaders, slot: int) -> None:
        """Exactly-once: `txn` ops of 1 to 3 sends, a tenth aborted on purpose (broker.sim.transactions)."""
        producer = TransactionalProducer(self.world, client, leaders, self.cluster.node_ids, TOPIC,
                                         f"logquake-sim-{slot}", produce_request, NOT_WRITTEN,
                                         IDEMPOTENT_ACK_TIMEOUT_S)
        process = slot
        while self.world.loop.time() < self.deadline_s:
            sends = [["send", self.rng.randrange(self.o.keys), self.unique_value()]
                     for _ in range(self.rng.randint(*SENDS_PER_TXN))]
            abort = self.rng.random() < ABORT_SHARE
            self.history.record(process, "invoke", "txn", sends, **({"abort": True} if abort else {}))
            type_, result, error = await producer.transaction(sends, abort)
            extra = {"error": error} if error is not None else {}
            self.history.record(process, type_, "txn", result, **extra)
            if type_ == "info":
                process += self.concurrency
            await self.world.sleep(0.1 if type_ == "fail" and not abort else self.rng.uniform(0.0, 0.04))

    async def _send(self, client: SimClient, leaders: Leaders, key: int, value: int):
        invoked = [["send", key, value]]
        leader = await leaders.of(key)
        if leader is None:
            return "fail", invoked, ["no-leader", "no node named a leader for the partition"]
        batch = build_batch([(None, str(value).encode())], base_timestamp=client.runtime.clock.wall_ms())
        try:
            answer = await client.request(leader, produce_request(TOPIC, key, batch), timeout_s=OP_TIMEOUT_S)
        except ClientError as error:
            leaders.forget(key)
            return "info", invoked, ["no-answer", str(error)]
        partition = answer.responses[0].partition_responses[0]
        code = int(partition.error_code)
        if code == 0:
            return "ok", [["send", key, [partition.base_offset, value]]], None
        leaders.forget(key)
        return ("fail" if code in NOT_WRITTEN else "info"), invoked, ["error-code", code]

    async def consumer(self, slot: int) -> None:
        client = self.client(f"consumer{slot}")
        leaders = Leaders(client, self.cluster.node_ids)
        process = self.o.producers + slot
        keys = list(range(self.o.keys))
        self.history.record(process, "invoke", "assign", keys)
        self.history.record(process, "ok", "assign", keys)
        positions = {key: 0 for key in keys}
        while self.world.loop.time() < self.deadline_s:
            self.history.record(process, "invoke", "poll", [["poll"]])
            polled, watermarks = {}, {}
            for key in keys:
                read, high_watermark, positions[key] = await self._fetch(client, leaders, key, positions[key])
                if read:
                    polled[key] = read
                if high_watermark is not None and read:
                    watermarks[key] = high_watermark
            extra = {"high-watermarks": watermarks} if watermarks else {}
            self.history.record(process, "ok", "poll", [["poll", polled]], **extra)
            await self.world.sleep(0.05 + self.rng.random() * 0.2)

    async def _fetch(self, client: SimClient, leaders: Leaders, key: int, offset: int):
        """(records from `offset`, the response's high watermark, the next position); ([], None, offset) when the
        fetch failed. Under exactly-once the fetch is read_committed and the records are what a Kafka consumer hands
        out (`committed_records`: no control batches, no aborted transactions), and the next position is past the
        last batch fetched even when none of its records was handed out."""
        leader = await leaders.of(key)
        if leader is None:
            return [], None, offset
        isolation = READ_COMMITTED if self.transactional else READ_UNCOMMITTED
        try:
            answer = await client.request(leader, fetch_request(TOPIC, key, offset, isolation),
                                          timeout_s=OP_TIMEOUT_S / 2)
        except ClientError:
            leaders.forget(key)
            return [], None, offset
        partition = answer.responses[0].partitions[0]
        if partition.error_code != 0:
            leaders.forget(key)
            return [], None, offset
        if self.transactional:
            records, after = committed_records(partition.records, partition.aborted_transactions)
            read = [r for r in records if r[0] >= offset]
            return read, int(partition.high_watermark), max(offset, after if after is not None else offset)
        read = [r for r in _records(partition.records) if r[0] >= offset]
        return read, int(partition.high_watermark), read[-1][0] + 1 if read else offset

    # ---- final reads -----------------------------------------------------------------------

    async def final_reads(self) -> None:
        client = self.client("final")
        leaders = Leaders(client, self.cluster.node_ids)
        process = self.concurrency * 1000  # a fresh process, beyond any number the workers reach
        keys = list(range(self.o.keys))
        self.history.record(process, "invoke", "assign", keys, final=True)
        self.history.record(process, "ok", "assign", keys, final=True)
        self.history.record(process, "invoke", "poll", [["poll"]], final=True)
        loop = self.world.loop
        deadline = loop.time() + FINAL_READ_TIMEOUT_S
        listed = await self.list_ends(client, leaders, TOPIC, keys, READ_UNCOMMITTED, deadline)
        polled: dict[int, list] = {}
        positions = {key: 0 for key in keys}
        fetched: dict[int, int] = {}
        if self.transactional:
            stalled_s = await self._read_committed_to(client, leaders, listed, positions, polled, fetched, deadline)
        else:
            for key, high in listed.items():
                while positions[key] < high and loop.time() < deadline:
                    read, high_watermark, positions[key] = await self._fetch(client, leaders, key, positions[key])
                    if read:
                        polled.setdefault(key, []).extend(read)
                        fetched[key] = high_watermark
                    else:
                        await self.world.sleep(0.2)
        extra: dict = {}
        if fetched:
            extra["high-watermarks"] = fetched
        if listed:
            extra["listed-high-watermarks"] = listed
        short = {key: [positions[key], high] for key, high in listed.items() if positions[key] < high}
        short.update({key: "no high watermark listed" for key in keys if key not in listed})
        if short:
            extra["final-read-short"] = short
            if self.transactional:
                extra.update(await self._stuck_at(client, leaders, [k for k in short if k in listed], stalled_s))
        if self.transactional:
            extra.update(await self._read_uncommitted(client, leaders, [k for k in listed if k not in short], deadline))
        self.history.record(process, "ok", "poll", [["poll", polled]], final=True, **extra)

    async def _read_uncommitted(self, client: SimClient, leaders: Leaders, keys: list[int], deadline: float) -> dict:
        """After a read_committed final read that reached its targets on `keys`, those keys read again at
        read_uncommitted from offset 0 to the high watermark listed now, as workloads/queue.py records it: every
        data record, aborted ones too, under "read-uncommitted-log", and the range under "read-uncommitted-range";
        the offsets without a record are the markers, which the queue checker matches to the transactions
        (`missing-marker`). A key not read to its watermark by the deadline is left out."""
        ends = await self.list_ends(client, leaders, TOPIC, keys, READ_UNCOMMITTED, deadline)
        log: dict[int, list] = {}
        for key, high in ends.items():
            position, records = 0, []
            while position < high and self.world.loop.time() < deadline:
                partition = await self.fetch_partition(client, leaders, TOPIC, key, position, READ_UNCOMMITTED,
                                                       OP_TIMEOUT_S / 2)
                if partition is None:
                    await self.world.sleep(0.2)
                    continue
                before = position
                for header, entries in iter_records(bytes(partition.records or b"")):
                    if not header.is_control:
                        records += [[header.base_offset + delta, int(value)] for delta, (_, value) in enumerate(entries)
                                    if header.base_offset + delta >= position]
                    position = max(position, header.next_offset)
                if position == before:
                    await self.world.sleep(0.2)
            if position >= high:
                log[key] = records
        return {"read-uncommitted-log": log, "read-uncommitted-range": {key: [0, ends[key]] for key in log}} if log else {}

    async def _read_committed_to(self, client: SimClient, leaders: Leaders, listed: dict[int, int],
                                 positions: dict[int, int], polled: dict[int, list], fetched: dict[int, int],
                                 deadline: float) -> float:
        """The final reads under exactly-once: read_committed fetches of every key, round after round, until each
        reached the high watermark it listed, nothing moved for FINAL_READ_STALL_S (a transaction left open holds
        the last stable offset below it until its coordinator aborts it by its timeout), or the deadline; the
        seconds without progress when it stopped."""
        loop = self.world.loop
        last_progress = loop.time()
        while any(positions[key] < high for key, high in listed.items()) and loop.time() < deadline:
            moved = False
            for key, high in listed.items():
                if positions[key] >= high:
                    continue
                read, high_watermark, position = await self._fetch(client, leaders, key, positions[key])
                if read:
                    polled.setdefault(key, []).extend(read)
                    fetched[key] = high_watermark
                moved |= position > positions[key]
                positions[key] = position
            if moved:
                last_progress = loop.time()
            elif loop.time() - last_progress >= FINAL_READ_STALL_S:
                break
            else:
                await self.world.sleep(0.2)
        return loop.time() - last_progress

    async def _stuck_at(self, client: SimClient, leaders: Leaders, keys: list[int], stalled_s: float) -> dict:
        """What a read_committed final read that stopped short saw, as workloads/queue.py records it: each short
        key's last stable offset (ListOffsets, isolation_level 1), the seconds without progress and the transaction
        timeout; the queue checker judges `hanging-transaction` from them. Nothing when no offset could be had."""
        stable: dict[int, int] = {}
        for key in keys:
            leader = await leaders.of(key)
            try:
                answer = await client.request(leader, list_offsets_request(TOPIC, key, READ_COMMITTED)) \
                    if leader else None
            except ClientError:
                answer = None
            part = answer.topics[0].partitions[0] if answer is not None else None
            if part is not None and part.error_code == 0:
                stable[key] = int(part.offset)
        if not stable:
            return {}
        return {"last-stable-offsets": stable, "stalled-s": round(stalled_s, 1),
                "transaction-timeout-ms": int(TRANSACTION_TIMEOUT_S * 1000)}

    # ---- the run ---------------------------------------------------------------------------

    async def run(self) -> None:
        await self.setup()
        self.start_ns = self.world.loop.time_ns()
        self.deadline_s = self.world.loop.time() + self.o.duration_s
        workers = [self.producer(slot) for slot in range(self.o.producers)]
        workers += [self.consumer(slot) for slot in range(self.o.consumers)]
        await asyncio.gather(self.nemesis(), *workers)
        await self.heal_all()
        await self.final_reads()
        for client in self.clients:
            await client.close()


def simulate(options: SimOptions, workload=None) -> tuple[str, dict]:
    """Run one seed; (the history as JSONL text, a summary: virtual seconds, events, trace digest).

    `workload`: the simulation class (a SimulationBase with `run`), QueueSimulation when None."""
    simulation = (workload or QueueSimulation)(options)
    world = simulation.world
    try:
        world.run(simulation.run())
        simulation.invariants.finish()
    finally:
        world.loop.step_hook = None  # what close() runs is the teardown, not the cluster's behaviour
        world.close()
    return simulation.history.text(), {"seed": options.seed, "virtual_s": world.virtual_s, "events": world.trace.events,
                                       "trace_digest": world.trace.digest(), "ops": len(simulation.history.lines),
                                       "unhandled": list(world.loop.unhandled),
                                       "invariants": simulation.invariants.summary(),
                                       "schedule": [dataclasses.asdict(f) for f in simulation.applied],
                                       "schedule_end_s": simulation.schedule_end_s}
