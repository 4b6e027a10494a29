"""The pipeline workload (read-process-write, exactly once) against a simulated cluster under a seeded fault schedule.

What `logquake sim --workload pipeline` runs: Kafka's consume-transform-produce
pattern (KIP-98 transactions with KIP-447's group fencing), as
workloads/pipeline.py drives it with real clients, here spoken over the
broker's own protocol client (`SimClient`) and codecs. The history has the op
shapes of checkers/pipeline/checker.py, which judges it:

- one feeder (process 0): an idempotent producer (acks=all, retries with the
  same batch, broker.sim.workload's `_send_idempotent`) writing unique values,
  one per `send` op `[["send", partition, value]]`, to the input topic
  `logquake-pipeline-in` (3 partitions, replication factor 3,
  min.insync.replicas 2), a think time of 10 to 50 ms between ops;
- 2 or 3 processors (drawn from the seed, 3 in three seeds of four;
  processes 1..N), each a member of
  the group `logquake-pipeline` (FindCoordinator, JoinGroup with the consumer
  protocol and MEMBER_ID_REQUIRED, SyncGroup where the leader assigns the
  input partitions, a heartbeat task every HEARTBEAT_S, a rejoin after
  REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION or UNKNOWN_MEMBER_ID, OffsetFetch
  with require_stable for its start positions) and a transactional producer
  (broker.sim.transactions.TransactionalProducer, transactional.id
  `logquake-sim-pipeline-<slot>`). A `process` op is one transaction: a
  read_committed fetch of its partitions from its positions (at most BATCH
  records a partition), AddPartitionsToTxn and one batch per output
  partition of `logquake-pipeline-out` (value mod 3), AddOffsetsToTxn and
  TxnOffsetCommit of the next offsets with its generation id and member id
  (KIP-447), EndTxn(commit); completed `{"consumed", "produced", "offsets"}`
  as `ok` (committed), `fail` (no commit was sent: aborted, fenced, crashed)
  or `info` (a commit sent and not confirmed; the processor then rejoins and
  starts from the group's committed offsets). After `fail` its positions
  are the group's committed offsets again (OffsetFetch, require_stable).
- processor faults (one about every FAULT_INTERVAL_S while processors have
  records, the kinds in rounds, each a random order with its pause first;
  carried by the next `process` op that has records, and by the one after
  it when that transaction failed before its offsets, where the fault was
  to land): `{"abort": true}` (abort after the offsets were added; then,
  as after every failed transaction, the positions are reset to the
  group's committed offsets, as Kafka's exactly-once processors do),
  `{"crash": "after-produce" | "after-offsets"}` (the processor vanishes
  mid-transaction, heartbeats and all; a new one, a new process and a new
  member, takes over its transactional.id at once, and its InitProducerId
  aborts the open transaction), `{"pause_s": S}` (after its writes, before
  its offsets, the processor and its heartbeats stop for PAUSE_S[0], longer
  than the session timeout, then until another processor committed past the
  paused one's first offset of one of its partitions, at most S, shorter
  than the transaction timeout; the completion says `paused-s`: the group
  gave its partitions away, and the paused one comes back a zombie whose
  TxnOffsetCommit must be refused by its generation, KIP-447), `leave` ops
  (LeaveGroup, then a join as a new member) and `rejoin` ops (JoinGroup
  again with the member id kept, as a Kafka consumer's enforceRebalance:
  every member rejoins and keeps its id). Besides, ABORT_SHARE of the other
  transactions abort on purpose. The leader's assignor rotates the
  partitions with the generation, so every rebalance moves partitions
  between members;
- after the faults (broker.sim.workload's nemesis, schedule and `_fault`,
  shared through `SimulationBase`) and the heal, the processors leave the
  group; a fresh processor (process concurrency * 1000) drains: one
  `process` op `{"final": true, "drain": true}` carrying every transaction
  it ran, until the group's committed offsets reach the input's ends; then
  `read-output` (read_committed, every output partition from 0 to its last
  stable offset, once that reached the high watermark; `info` with the last
  stable offsets, high watermarks, seconds waited and the transaction timeout
  when one stayed below for OPEN_TRANSACTIONS_WAIT_S) and `committed-offsets`
  (OffsetFetch of every input partition).

The broker gets transactions' settings (broker.sim.transactions.PROPERTIES),
4 `__consumer_offsets` partitions, a group minimum session timeout of 1 s and
an initial rebalance delay of 0.5 s (PROPERTIES; --override wins).

Not covered: plain OffsetCommit (the processors commit offsets only in their
transactions, as an exactly-once pipeline must), so
logquake.debug.commit.before.replication, which only makes OffsetCommit answer
before its record is replicated, is not reachable from here (broker.sim.offsets
commits plainly, and reaches it).

Determinism: every draw from `random.Random`s named by the seed; no real time;
no iteration over sets.

Thread-safety: none; everything runs on the world's loop.
Sources: KIP-98, KIP-447 (the processor's fencing by generation), Kafka's
consumer protocol (ConsumerProtocolSubscription / ConsumerProtocolAssignment
version 0) and its transactions_test system test (copy, then compare).
"""

from __future__ import annotations

import asyncio
import datetime
import random
import struct

from broker.protocol.client import ClientError
from broker.sim.transactions import COORDINATOR_RETRIABLE, REQUEST_TIMEOUT_S, committed_records
from broker.sim.transactions import PROPERTIES as TRANSACTION_PROPERTIES
from broker.sim.transactions import TransactionalProducer
from broker.sim.transactions import schema as _schema
from broker.sim.workload import (IDEMPOTENT_ACK_TIMEOUT_S, NOT_WRITTEN, READ_COMMITTED, READ_UNCOMMITTED, Leaders,
                                 ProducerIdentity, SimOptions, SimulationBase, fetch_request,
                                 metadata_request, produce_request)

INPUT_TOPIC = "logquake-pipeline-in"
OUTPUT_TOPIC = "logquake-pipeline-out"
GROUP = "logquake-pipeline"
PARTITIONS = 3
OUTPUT_PARTITIONS = 3
PROCESSORS = (2, 3, 3, 3)  # drawn: three processors in three seeds of four (a follower keeps a role in rebalances)
BATCH = 20  # records a partition per transaction, at most
SESSION_TIMEOUT_S = 3.0
HEARTBEAT_S = 0.5
# a member that has not rejoined a rebalance within this (one busy in a transaction a fault slowed down) is dropped
# and its commits are fenced, so the rebalance that moves a paused processor's partitions is not held back long
REBALANCE_TIMEOUT_S = 6.0
JOIN_TIMEOUT_S = 30.0  # how long one join (JoinGroup, SyncGroup, OffsetFetch) is tried before giving up for a while
# a pause lasts at least the first (longer than the session, 3 s), then until another processor committed past the
# first offset the paused one holds of one of its partitions (the workload's own record of committed transactions), at
# most the second: well before the transaction timeout (20 s), so that the zombie's own requests reach the coordinators
# and are fenced by its generation. A pause of fixed length overlapping a broker fault often ended before anybody had
# taken the partitions over (6 seeds of unfenced.txn.offsets: 3 caught with 5.5 to 8 s)
PAUSE_S = (5.0, 14.0)
# the processors' transaction.timeout.ms: longer than the queue workload's 10 s, so that a zombie back from its pause
# still finds its transaction open after a fault slowed it down, and is fenced by its generation (KIP-447) rather than
# by the coordinator's timeout
TRANSACTION_TIMEOUT_S = 20.0
FAULT_INTERVAL_S = 1.0  # one processor fault about this often (0.5x to 1.5x) while processors have records
ABORT_SHARE = 0.05  # besides the faults' aborts, the share of transactions aborted on purpose
PROCESSOR_FAULTS = ("abort", "crash", "leave", "pause", "rejoin", "rejoin")  # rejoin twice: rebalances members survive
DRAIN_IDLE_S = 40.0  # the final drain gives up after this long without progress
OPEN_TRANSACTIONS_WAIT_S = 2 * TRANSACTION_TIMEOUT_S + 5.0
PROPERTIES = {**TRANSACTION_PROPERTIES, "offsets.topic.num.partitions": "4", "group.min.session.timeout.ms": "1000",
              "group.initial.rebalance.delay.ms": "500"}
# error codes
NONE, UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION, REBALANCE_IN_PROGRESS = 0, 25, 22, 27
MEMBER_ID_REQUIRED, UNSTABLE_OFFSET_COMMIT = 79, 88
GROUP_COORDINATOR_ERRORS = {14, 15, 16}  # COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR
REJOIN = {UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION, REBALANCE_IN_PROGRESS}


class Crashed(Exception):
    """A processor fault: the processor vanishes mid-transaction (raised through the transaction)."""


# ---- the consumer protocol's metadata (version 0), as Kafka's consumers write it -------------------------------

def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">h", len(data)) + data


def subscription(topics: list[str]) -> bytes:
    return struct.pack(">hi", 0, len(topics)) + b"".join(_string(t) for t in topics) + struct.pack(">i", -1)


def assignment(topic: str, partitions: list[int]) -> bytes:
    body = struct.pack(">hi", 0, 1) + _string(topic) + struct.pack(">i", len(partitions))
    return body + b"".join(struct.pack(">i", p) for p in partitions) + struct.pack(">i", -1)


def parse_assignment(data: bytes, topic: str) -> list[int]:
    """The partitions of `topic` in a ConsumerProtocolAssignment; [] for an empty one."""
    data = bytes(data or b"")
    if len(data) < 6:
        return []
    position = 2
    (count,) = struct.unpack_from(">i", data, position)
    position += 4
    out: list[int] = []
    for _ in range(count):
        (length,) = struct.unpack_from(">h", data, position)
        name = data[position + 2:position + 2 + length].decode()
        position += 2 + length
        (n,) = struct.unpack_from(">i", data, position)
        position += 4
        parts = list(struct.unpack_from(f">{n}i", data, position))
        position += 4 * n
        if name == topic:
            out.extend(parts)
    return sorted(out)


# ---- requests ------------------------------------------------------------------------------------------------

def find_group_coordinator_request(*groups: str):
    """FindCoordinator (key type 0: groups) for each of `groups` at once (v4, KIP-699)."""
    m = _schema("find_coordinator", 4)
    return m.FindCoordinatorRequest(key_type=0, coordinator_keys=groups)


def join_group_request(member_id: str):
    m = _schema("join_group", 5)
    return m.JoinGroupRequest(group_id=GROUP, session_timeout=datetime.timedelta(seconds=SESSION_TIMEOUT_S),
                              rebalance_timeout=datetime.timedelta(seconds=REBALANCE_TIMEOUT_S), member_id=member_id,
                              group_instance_id=None, protocol_type="consumer",
                              protocols=(m.JoinGroupRequestProtocol(name="range",
                                                                    metadata=subscription([INPUT_TOPIC])),))


def sync_group_request(generation: int, member_id: str, assignments: dict[str, bytes]):
    m = _schema("sync_group", 3)
    return m.SyncGroupRequest(group_id=GROUP, generation_id=generation, member_id=member_id, group_instance_id=None,
                              assignments=tuple(m.SyncGroupRequestAssignment(member_id=k, assignment=v)
                                                for k, v in sorted(assignments.items())))


def heartbeat_request(generation: int, member_id: str):
    m = _schema("heartbeat", 3)
    return m.HeartbeatRequest(group_id=GROUP, generation_id=generation, member_id=member_id, group_instance_id=None)


def leave_group_request(member_id: str):
    m = _schema("leave_group", 3)
    return m.LeaveGroupRequest(group_id=GROUP, members=(m.MemberIdentity(member_id=member_id, group_instance_id=None),))


def offset_fetch_request(partitions: list[int]):
    m = _schema("offset_fetch", 7)
    return m.OffsetFetchRequest(group_id=GROUP, require_stable=True, topics=(
        m.OffsetFetchRequestTopic(name=INPUT_TOPIC, partition_indexes=tuple(partitions)),))


def add_offsets_request(transactional_id: str, producer_id: int, epoch: int):
    m = _schema("add_offsets_to_txn", 3)
    return m.AddOffsetsToTxnRequest(transactional_id=transactional_id, producer_id=producer_id, producer_epoch=epoch,
                                    group_id=GROUP)


def txn_offset_commit_request(transactional_id: str, producer_id: int, epoch: int, generation: int, member_id: str,
                              offsets: dict[int, int]):
    m = _schema("txn_offset_commit", 3)
    parts = tuple(m.TxnOffsetCommitRequestPartition(partition_index=p, committed_offset=o, committed_leader_epoch=-1,
                                                    committed_metadata="") for p, o in sorted(offsets.items()))
    return m.TxnOffsetCommitRequest(transactional_id=transactional_id, group_id=GROUP, producer_id=producer_id,
                                    producer_epoch=epoch, generation_id=generation, member_id=member_id,
                                    group_instance_id=None,
                                    topics=(m.TxnOffsetCommitRequestTopic(name=INPUT_TOPIC, partitions=parts),))


def rotating_assignment(members: list[str], generation: int, partitions: int = PARTITIONS) -> dict[str, bytes]:
    """The leader's assignor: partition p to the sorted members' ((p + generation) mod n)th, so that every rebalance
    moves partitions from member to member."""
    ordered = sorted(members)
    owned: dict[str, list[int]] = {m: [] for m in ordered}
    for p in range(partitions):
        owned[ordered[(p + generation) % len(ordered)]].append(p)
    return {m: assignment(INPUT_TOPIC, parts) for m, parts in owned.items()}


class Processor:
    """One processor incarnation: a group member with a heartbeat task and a transactional producer."""

    def __init__(self, sim: "PipelineSimulation", name: str, transactional_id: str):
        self.sim = sim
        self.world = sim.world
        # a consumer, a producer and a heartbeat connection of their own, as Kafka's clients have: a broker serves
        # one connection's requests one at a time, so a heartbeat behind a JoinGroup or an EndTxn would wait
        self.client = sim.client(name)
        self.producer_client = sim.client(f"{name}-producer")
        self.heartbeat_client = sim.client(f"{name}-heartbeat")
        self.input_leaders = Leaders(self.client, sim.cluster.node_ids, INPUT_TOPIC)
        self.output_leaders = Leaders(self.producer_client, sim.cluster.node_ids, OUTPUT_TOPIC)
        self.producer = TransactionalProducer(self.world, self.producer_client, self.output_leaders,
                                              sim.cluster.node_ids,
                                              OUTPUT_TOPIC, transactional_id, produce_request, NOT_WRITTEN,
                                              IDEMPOTENT_ACK_TIMEOUT_S, TRANSACTION_TIMEOUT_S)
        self.coordinator: int | None = None
        self.member_id = ""
        self.generation = -1
        self.assigned: list[int] = []
        self.positions: dict[int, int] = {}
        self.needs_join = True
        self.joining = False
        self.alive = True
        self.paused_until = 0.0
        self.paused_s: float | None = None
        self.fault_applied = False  # the transaction's fault (pause, crash) took place: it reached its offsets
        self.heartbeats: asyncio.Task | None = None

    # ---- the group coordinator -------------------------------------------------------------

    async def _find_coordinator(self) -> bool:
        for node_id in self.sim.cluster.node_ids:
            try:
                answer = await self.client.request(node_id, find_group_coordinator_request(GROUP),
                                                   timeout_s=REQUEST_TIMEOUT_S / 2)
            except ClientError:
                continue
            found = answer.coordinators[0]
            if int(found.error_code) == 0 and found.node_id >= 0:
                self.coordinator = int(found.node_id)
                return True
        return False

    async def group_call(self, build, timeout_s: float = REQUEST_TIMEOUT_S, client=None):
        """One request to the group coordinator (found first when unknown) from `client` (the consumer's by
        default); None when there was no answer (the coordinator is forgotten)."""
        if self.coordinator is None and not await self._find_coordinator():
            return None
        try:
            return await (client or self.client).request(self.coordinator, build(), timeout_s=timeout_s)
        except ClientError:
            self.coordinator = None
            return None

    def _coordinator_error(self, code: int) -> None:
        if code in GROUP_COORDINATOR_ERRORS:
            self.coordinator = None

    async def heartbeat_loop(self) -> None:
        """Heartbeats every HEARTBEAT_S while the processor lives, is a member, is not paused and is not in a
        JoinGroup; an answer that ends the membership or starts a rebalance makes the processor rejoin at its next
        step."""
        loop = self.world.loop
        while self.alive:
            await self.world.sleep(HEARTBEAT_S)
            # on through a rebalance the processor has not rejoined yet (it finishes its transaction first), as
            # Kafka's heartbeat thread: only a member that stops heartbeating for a session expires
            if not self.alive or self.joining or not self.member_id or self.generation < 0 \
                    or loop.time() < self.paused_until:
                continue
            generation, member_id = self.generation, self.member_id
            answer = await self.group_call(lambda: heartbeat_request(generation, member_id), timeout_s=HEARTBEAT_S * 2,
                                           client=self.heartbeat_client)
            if answer is None or not self.alive or (generation, member_id) != (self.generation, self.member_id):
                continue
            code = int(answer.error_code)
            self._coordinator_error(code)
            if code in REJOIN:
                self.needs_join = True
                if code == UNKNOWN_MEMBER_ID:
                    self.member_id = ""

    async def join(self) -> bool:
        """JoinGroup (and the member id KIP-394 asks for), SyncGroup (the leader assigns), then the start positions
        from OffsetFetch (require_stable: a transaction committing offsets of these partitions is waited for)."""
        loop = self.world.loop
        give_up = loop.time() + JOIN_TIMEOUT_S
        self.joining = True
        try:
            while loop.time() < give_up and self.alive:
                self.joining = True
                self.assigned, self.positions = [], {}
                member_id = self.member_id
                answer = await self.group_call(lambda: join_group_request(member_id),
                                               timeout_s=REBALANCE_TIMEOUT_S + 5.0)
                if answer is None:
                    await self.world.sleep(0.2)
                    continue
                code = int(answer.error_code)
                if code == MEMBER_ID_REQUIRED:
                    self.member_id = answer.member_id
                    continue
                if code != NONE:
                    self._coordinator_error(code)
                    if code == UNKNOWN_MEMBER_ID:
                        self.member_id = ""
                    await self.world.sleep(0.1)
                    continue
                self.member_id, self.generation = answer.member_id, int(answer.generation_id)
                assignments: dict[str, bytes] = {}
                if answer.leader == self.member_id:
                    # the leader learns the subscribed topic's partitions (Metadata) before it assigns them, as a
                    # Kafka consumer leader does: the followers' SyncGroups usually arrive first
                    partitions = await self.partition_count()
                    assignments = rotating_assignment([m.member_id for m in answer.members], self.generation,
                                                      partitions)
                generation, member_id = self.generation, self.member_id
                synced = await self.group_call(lambda: sync_group_request(generation, member_id, assignments),
                                               timeout_s=REBALANCE_TIMEOUT_S + 5.0)
                if synced is None:
                    continue
                code = int(synced.error_code)
                if code != NONE:
                    self._coordinator_error(code)
                    if code == UNKNOWN_MEMBER_ID:
                        self.member_id = ""
                    continue
                self.needs_join = False
                self.joining = False  # heartbeats again while the start positions are fetched
                self.assigned = parse_assignment(synced.assignment, INPUT_TOPIC)
                if not self.assigned:
                    return True
                positions = await self.committed(self.assigned, give_up)
                if positions is None or self.needs_join:
                    continue
                self.positions = positions
                return True
            return False
        finally:
            self.joining = False

    async def partition_count(self) -> int:
        """The input topic's partition count from the first node that answers Metadata (PARTITIONS if none)."""
        for node_id in self.sim.cluster.node_ids:
            try:
                answer = await self.client.request(node_id, metadata_request(INPUT_TOPIC), timeout_s=2.0)
            except ClientError:
                continue
            for topic in answer.topics:
                if topic.error_code == 0 and topic.partitions:
                    return len(topic.partitions)
        return PARTITIONS

    async def committed(self, partitions: list[int], give_up: float) -> dict[int, int] | None:
        """The group's committed offsets of `partitions` (0 where none), waiting out pending transactional ones."""
        loop = self.world.loop
        while loop.time() < give_up and self.alive:
            answer = await self.group_call(lambda: offset_fetch_request(partitions))
            if answer is None:
                await self.world.sleep(0.2)
                continue
            code = int(answer.error_code)
            parts = [p for t in answer.topics for p in t.partitions]
            codes = [int(p.error_code) for p in parts]
            if code != NONE or any(codes) or len(parts) < len(partitions):
                self._coordinator_error(code or next((c for c in codes if c), 0))
                await self.world.sleep(0.1 if UNSTABLE_OFFSET_COMMIT in codes else 0.2)
                continue
            return {int(p.partition_index): max(int(p.committed_offset), 0) for p in parts}
        return None

    async def leave(self) -> None:
        member_id = self.member_id
        if member_id:
            await self.group_call(lambda: leave_group_request(member_id))
        self.member_id, self.generation, self.needs_join = "", -1, True
        self.assigned, self.positions = [], {}

    # ---- one transaction -----------------------------------------------------------------

    async def fetch(self) -> list[tuple[int, int, int]]:
        """Records (partition, offset, value) read_committed from each assigned partition's position, at most
        BATCH a partition."""
        out: list[tuple[int, int, int]] = []
        for partition in self.assigned:
            position = self.positions.get(partition, 0)
            leader = await self.input_leaders.of(partition)
            if leader is None:
                continue
            try:
                answer = await self.client.request(leader, fetch_request(INPUT_TOPIC, partition, position,
                                                                         READ_COMMITTED), timeout_s=REQUEST_TIMEOUT_S / 2)
            except ClientError:
                self.input_leaders.forget(partition)
                continue
            part = answer.responses[0].partitions[0]
            if part.error_code != 0:
                self.input_leaders.forget(partition)
                continue
            records, _ = committed_records(part.records, part.aborted_transactions)
            out.extend((partition, offset, value) for offset, value in
                       [r for r in records if r[0] >= position][:BATCH])
        return out

    async def transaction(self, records: list[tuple[int, int, int]], fault: dict) -> tuple[str, dict, list | None]:
        """One transaction over `records`: (type, the process op's value, error)."""
        consumed: dict[int, list] = {}
        for partition, offset, value in records:
            consumed.setdefault(partition, []).append([offset, value])
        offsets = {p: rows[-1][0] + 1 for p, rows in consumed.items()}
        produced = [[value % OUTPUT_PARTITIONS, value] for _, _, value in records]
        done = {"consumed": consumed, "produced": produced, "offsets": offsets}
        generation, member_id = self.generation, self.member_id
        producer = self.producer
        self.fault_applied, self.paused_s = False, None

        async def offsets_to_transaction() -> list:
            self.fault_applied = True
            if fault.get("pause_s"):
                await self.pause(fault["pause_s"], {p: rows[0][0] for p, rows in consumed.items()})
            if fault.get("crash") == "after-produce":
                raise Crashed()
            code, detail = await producer._call(lambda: add_offsets_request(producer.transactional_id,
                                                                            producer.producer_id, producer.epoch))
            if code != 0:
                return ["add-offsets", *detail]
            error = await self._txn_offset_commit(generation, member_id, offsets)
            if error:
                return error
            if fault.get("crash") == "after-offsets":
                raise Crashed()
            return []

        sends = [["send", out, value] for out, value in produced]
        type_, _, error = await producer.transaction(sends, bool(fault.get("abort")), offsets_to_transaction)
        return type_, done, error

    async def pause(self, longest_s: float, first: dict[int, int]) -> None:
        """Stop (no requests, no heartbeats) for PAUSE_S[0], then until another processor committed past `first` on
        one of these partitions, or `longest_s` in all."""
        loop = self.world.loop
        started = loop.time()
        self.paused_until = started + longest_s
        await self.world.sleep(PAUSE_S[0])
        while loop.time() < self.paused_until and not self.sim.committed_past(first):
            await self.world.sleep(0.1)
        self.paused_until = 0.0
        self.paused_s = round(loop.time() - started, 3)

    async def _txn_offset_commit(self, generation: int, member_id: str, offsets: dict[int, int]) -> list:
        """TxnOffsetCommit to the group coordinator, asked again while the coordinator moves; [] or the error."""
        producer = self.producer
        loop = self.world.loop
        give_up = loop.time() + REQUEST_TIMEOUT_S
        error: list = ["txn-offset-commit", "no answer"]
        while loop.time() < give_up:
            answer = await self.group_call(lambda: txn_offset_commit_request(
                producer.transactional_id, producer.producer_id, producer.epoch, generation, member_id, offsets),
                client=self.producer_client)
            if answer is not None:
                codes = [int(p.error_code) for t in answer.topics for p in t.partitions]
                code = next((c for c in codes if c), 0)
                if code == 0:
                    return []
                error = ["txn-offset-commit", "error-code", code]
                if code not in GROUP_COORDINATOR_ERRORS and code not in COORDINATOR_RETRIABLE:
                    if code in REJOIN:
                        self.needs_join = True
                    return error
                self.coordinator = None
            await self.world.sleep(0.1)
        return error

    async def after(self, type_: str, done: dict) -> None:
        """Positions after a transaction: past its records when committed; after `fail` the group's committed
        offsets (OffsetFetch, require_stable), as Kafka's exactly-once processors reset to the last committed
        positions after an abort; after `info` (unknown) a rejoin, which fetches them too."""
        if type_ == "ok":
            self.positions.update(done["offsets"])
        elif type_ == "info" or self.needs_join:
            self.needs_join = True
        elif self.assigned:
            positions = await self.committed(self.assigned, self.world.loop.time() + JOIN_TIMEOUT_S)
            if positions is None:
                self.needs_join = True
            else:
                self.positions = positions


class PipelineSimulation(SimulationBase):
    """One seeded run of the pipeline (see the module docstring)."""

    def __init__(self, options: SimOptions):
        super().__init__(options, {**PROPERTIES, **options.properties})
        self.rng = random.Random(f"{options.seed}/pipeline")
        self.processors = self.rng.choice(PROCESSORS)
        self.concurrency = 1 + self.processors
        self.processor_fault_rng = random.Random(f"{options.seed}/pipeline/processor-faults")
        self.next_fault_at: float | None = None
        self.round: list[str] = []
        self.tasks: list[asyncio.Task] = []
        self.committed: dict[int, int] = {}  # input partition -> the highest offset an ok transaction committed

    def committed_past(self, first: dict[int, int]) -> bool:
        return any(self.committed.get(p, 0) > offset for p, offset in first.items())

    async def setup(self) -> None:
        await self.start_cluster()
        admin = self.client("admin")
        await self.create_topic(admin, INPUT_TOPIC, PARTITIONS)
        await self.create_topic(admin, OUTPUT_TOPIC, OUTPUT_PARTITIONS)

    # ---- the feeder ------------------------------------------------------------------------

    async def feeder(self) -> None:
        client = self.client("feeder")
        leaders = Leaders(client, self.cluster.node_ids, INPUT_TOPIC)
        producer = ProducerIdentity()
        rng = random.Random(f"{self.o.seed}/pipeline/feeder")
        process = 0
        while self.world.loop.time() < self.deadline_s:
            partition = rng.randrange(PARTITIONS)
            value = self.unique_value()
            self.history.record(process, "invoke", "send", [["send", partition, value]])
            type_, result, error = await self._send_idempotent(client, leaders, producer, partition, value,
                                                               INPUT_TOPIC)
            self.history.record(process, type_, "send", result, **({"error": error} if error is not None else {}))
            if type_ == "info":
                process += self.concurrency
            await self.world.sleep(0.1 if type_ == "fail" else rng.uniform(0.01, 0.05))

    # ---- processors ------------------------------------------------------------------------

    def due_fault(self) -> str | None:
        """The processor fault the next transaction carries, if one is due (see the module docstring)."""
        rng, now = self.processor_fault_rng, self.world.loop.time()
        if self.next_fault_at is None:
            self.next_fault_at = now + FAULT_INTERVAL_S * rng.uniform(0.5, 1.5)
        if now < self.next_fault_at:
            return None
        if not self.round:
            # a round in a random order, its pause first (the last popped), while there is time for it
            others = [kind for kind in PROCESSOR_FAULTS if kind != "pause"]
            self.round = rng.sample(others, len(others)) + ["pause"]
        if self.round[-1] == "pause" and now + PAUSE_S[0] + 3.0 > self.deadline_s:
            # too late for a pause: the other processors stop at the deadline, nobody would take the paused one's
            # partitions; the next kind of the round goes first
            self.round.insert(0, self.round.pop())
            if self.round[-1] == "pause":
                self.round.pop()
                return None
        fault = self.round.pop()
        self.next_fault_at = now + FAULT_INTERVAL_S * rng.uniform(0.5, 1.5)
        return fault

    def start(self, name: str, transactional_id: str) -> Processor:
        processor = Processor(self, name, transactional_id)
        processor.heartbeats = asyncio.ensure_future(processor.heartbeat_loop())
        self.tasks.append(processor.heartbeats)
        return processor

    async def processor_slot(self, slot: int) -> None:
        """Processor incarnations of one transactional.id, one after another (a crash starts the next)."""
        rng = random.Random(f"{self.o.seed}/pipeline/processor/{slot}")
        transactional_id = f"logquake-sim-pipeline-{slot}"
        process, incarnation = 1 + slot, 0
        processor = self.start(f"processor{slot}", transactional_id)
        loop = self.world.loop
        while loop.time() < self.deadline_s:
            if processor.needs_join:
                if not await processor.join():
                    await self.world.sleep(0.5)
                continue
            if not processor.assigned:
                await self.world.sleep(0.1)
                continue
            records = await processor.fetch()
            if processor.needs_join:
                continue
            if not records:
                await self.world.sleep(rng.uniform(0.02, 0.1))
                continue
            kind = self.due_fault()
            if kind in ("leave", "rejoin"):
                # churn: LeaveGroup and a join as a new member, or a rebalance asked for with the member id kept
                # (JoinGroup again, as a Kafka consumer's enforceRebalance: every member rejoins and keeps its id)
                self.history.record(process, "invoke", kind, None)
                if kind == "leave":
                    await processor.leave()
                else:
                    processor.needs_join = True
                self.history.record(process, "ok", kind, None)
                continue
            fault: dict = {}
            if kind == "abort" or kind is None and rng.random() < ABORT_SHARE:
                fault = {"abort": True}
            elif kind == "crash":
                fault = {"crash": rng.choice(("after-produce", "after-offsets"))}
            elif kind == "pause":
                fault = {"pause_s": PAUSE_S[1]}
            self.history.record(process, "invoke", "process", None, **fault)
            try:
                type_, done, error = await processor.transaction(records, fault)
            except Crashed:
                # the processor vanishes: its transaction is open until the next incarnation takes the id over
                processor.alive = False
                consumed = {}
                for partition, offset, value in records:
                    consumed.setdefault(partition, []).append([offset, value])
                done = {"consumed": consumed, "produced": [[v % OUTPUT_PARTITIONS, v] for _, _, v in records],
                        "offsets": {p: rows[-1][0] + 1 for p, rows in consumed.items()}}
                self.history.record(process, "fail", "process", done,
                                    error=["crashed", "the processor crashed mid-transaction; no commit was sent"])
                process += self.concurrency
                incarnation += 1
                processor = self.start(f"processor{slot}-{incarnation}", transactional_id)
                await processor.producer.init()  # takes the id over: the crashed one's transaction is aborted
                continue
            extra = {"error": error} if error is not None else {}
            if fault.get("pause_s") and processor.paused_s is not None:
                extra["paused-s"] = processor.paused_s
            self.history.record(process, type_, "process", done, **extra)
            if type_ == "ok":
                for partition, offset in done["offsets"].items():
                    self.committed[partition] = max(self.committed.get(partition, 0), offset)
            if kind in ("pause", "crash") and not processor.fault_applied:
                # the transaction failed before its offsets, where the fault was to land: the next one carries it
                self.round.append(kind)
                self.next_fault_at = self.world.loop.time()
            await processor.after(type_, done)
            if type_ == "info":
                process += self.concurrency
            await self.world.sleep(rng.uniform(0.0, 0.03))
        await processor.leave()
        processor.alive = False

    # ---- final ops -------------------------------------------------------------------------

    async def _ends(self, client, topic: str, partitions: int, isolation: int, give_up: float) -> dict[int, int]:
        """ListOffsets of every partition of `topic` (the high watermark, or the last stable offset)."""
        return await self.list_ends(client, Leaders(client, self.cluster.node_ids, topic), topic,
                                    list(range(partitions)), isolation, give_up)

    async def drain(self, processor: Processor, process: int) -> None:
        """Transactions of one fresh processor until the group's committed offsets reach the input's ends."""
        loop = self.world.loop
        self.history.record(process, "invoke", "process", None, final=True, drain=True)
        total: dict = {"consumed": {}, "produced": [], "offsets": {}}
        ends = await self._ends(processor.client, INPUT_TOPIC, PARTITIONS, READ_UNCOMMITTED, loop.time() + 60.0)
        last_progress = loop.time()
        outcome, error = "ok", None
        while loop.time() - last_progress < DRAIN_IDLE_S:
            if processor.needs_join:
                await processor.join()
                continue
            if all(processor.positions.get(p, 0) >= end for p, end in ends.items()) \
                    and len(processor.assigned) == PARTITIONS:
                break
            records = await processor.fetch()
            if not records:
                await self.world.sleep(0.2)
                continue
            type_, done, err = await processor.transaction(records, {})
            await processor.after(type_, done)
            if type_ in ("ok", "info"):
                for partition, rows in done["consumed"].items():
                    total["consumed"].setdefault(partition, []).extend(rows)
                total["produced"].extend(done["produced"])
                total["offsets"].update(done["offsets"])
            if type_ == "info":
                outcome, error = "info", err
                break
            if type_ == "ok":
                last_progress = loop.time()
        self.history.record(process, outcome, "process", total, final=True, drain=True,
                            **({"error": error} if error is not None else {}))

    async def read_output(self, client, process: int) -> None:
        loop = self.world.loop
        self.history.record(process, "invoke", "read-output", None, final=True)
        started = loop.time()
        while True:
            stable = await self._ends(client, OUTPUT_TOPIC, OUTPUT_PARTITIONS, READ_COMMITTED, loop.time() + 30.0)
            high = await self._ends(client, OUTPUT_TOPIC, OUTPUT_PARTITIONS, READ_UNCOMMITTED, loop.time() + 30.0)
            waited = loop.time() - started
            if (stable == high and len(high) == OUTPUT_PARTITIONS) or waited > OPEN_TRANSACTIONS_WAIT_S:
                break
            await self.world.sleep(0.5)
        if stable != high or len(high) < OUTPUT_PARTITIONS:
            seen = {"last-stable-offsets": stable, "high-watermarks": high, "waited-s": round(waited, 1),
                    "transaction-timeout-ms": int(TRANSACTION_TIMEOUT_S * 1000)}
            self.history.record(process, "info", "read-output", seen, final=True,
                                error=["open-transactions", "a last stable offset stayed below its high watermark"])
            return
        leaders = Leaders(client, self.cluster.node_ids, OUTPUT_TOPIC)
        rows: dict[int, list] = {}
        give_up = loop.time() + 60.0
        for partition, end in sorted(stable.items()):
            rows[partition] = []
            position = 0
            while position < end and loop.time() < give_up:
                part = await self.fetch_partition(client, leaders, OUTPUT_TOPIC, partition, position, READ_COMMITTED)
                if part is None:
                    await self.world.sleep(0.2)
                    continue
                records, after = committed_records(part.records, part.aborted_transactions)
                rows[partition].extend(r for r in records if position <= r[0] < end)
                if after is None or after <= position:
                    await self.world.sleep(0.2)
                    continue
                position = after
            if position < end:
                self.history.record(process, "info", "read-output", None, final=True,
                                    error=["read-output", f"partition {partition} stopped at {position} of {end}"])
                return
        self.history.record(process, "ok", "read-output", rows, final=True)

    async def committed_offsets(self, processor: Processor, process: int) -> None:
        self.history.record(process, "invoke", "committed-offsets", None, final=True)
        offsets = await processor.committed(list(range(PARTITIONS)), self.world.loop.time() + 60.0)
        if offsets is None:
            self.history.record(process, "info", "committed-offsets", None, final=True,
                                error=["committed-offsets", "the group coordinator did not answer"])
        else:
            self.history.record(process, "ok", "committed-offsets", offsets, final=True)

    # ---- the run ---------------------------------------------------------------------------

    async def run(self) -> None:
        await self.setup()
        self.start_ns = self.world.loop.time_ns()
        self.deadline_s = self.world.loop.time() + self.o.duration_s
        workers = [self.feeder()] + [self.processor_slot(slot) for slot in range(self.processors)]
        await asyncio.gather(self.nemesis(), *workers)
        await self.heal_all()
        process = self.concurrency * 1000
        final = self.start("final", "logquake-sim-pipeline-final")
        await self.drain(final, process)
        await self.read_output(final.client, process)
        await self.committed_offsets(final, process)
        await final.leave()
        final.alive = False
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for client in self.clients:
            await client.close()
