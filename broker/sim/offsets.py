"""The offsets workload (plain consumer-group offset commits) against a simulated cluster under a seeded fault schedule.

What `logquake sim --workload offsets` runs: the simulated twin of
workloads/offsets.py, whose ops it writes in the same shapes, so that
checkers/offsets.py judges both alike. Spoken over the broker's own protocol
client (`SimClient`) and codecs:

- COMMITTERS committers (processes 0..COMMITTERS-1), each committing offsets
  1, 2, ..., COMMITS_PER_GROUP of partition 0 of `logquake-offsets` for one
  consumer group at a time, waiting for each answer, a think time of
  THINK_S between commits (about the real harness's pace: 200 ops/s over 6
  workers), then moving to a new group. Groups are named
  `logquake-offsets-<n>`, n counting up over the run in the order they are
  taken (the real workload adds a run token; the simulated cluster is new
  every run). A commit is Kafka's "simple" commit, as
  `kafka-consumer-groups --reset-offsets` or an assign-based consumer makes
  it: OffsetCommit with generation -1, an empty member id and no group
  membership, to the group's coordinator (FindCoordinator, asking the nodes
  in an order drawn from the committer's rng);
- `offset-commit` ops, value `[group, offset]`: `ok` when an OffsetCommit
  of it was answered without error; asked again, to the coordinator found
  again, after NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE,
  COORDINATOR_LOAD_IN_PROGRESS or no answer, until COMMIT_TIMEOUT_S has
  passed; then `info` (error ["error-code", code] or ["no-answer", ...]) if
  any OffsetCommit was sent, else `fail` (["no-coordinator", ...]: no node
  named a coordinator, nothing was sent). Any other error answer ends the op
  `info` at once. Asking again is what Kafka's consumer does for a commit
  (ConsumerCoordinator.commitOffsetsSync: a retriable error marks the
  coordinator unknown and the commit is sent again until its timeout);
  workloads/offsets.py records what its AdminClient answers, after whatever
  retries librdkafka makes itself; the checker judges both the same way. An
  `info` op ends the committer's use of its group: it
  goes on as a new process (process + COMMITTERS, as the real harness
  replaces the process) with a new group; after `fail` it commits the next
  offset of the same group;
- after the last fault is healed and the cluster has settled, one fresh
  process (COMMITTERS * 1000) reads every group the run used:
  `offset-fetch` with `{"final": true}`, invoked with the list of groups,
  completed `ok` with a map of group to its committed offset of partition 0
  (None when it has none), from OffsetFetch to each group's coordinator
  (found with one FindCoordinator for all the groups not located yet),
  groups whose coordinator did not answer asked again every 0.5 s until
  FINAL_READ_S has passed; then `info` with the groups it did read.

What it checks (checkers.offsets): Kafka answers an OffsetCommit without
error only once its record is in the group's `__consumer_offsets` partition
on every in-sync replica (GroupMetadataManager.storeOffsets appends with
acks=-1, `offsets.commit.required.acks`, and waits up to
`offsets.commit.timeout.ms`; the offset enters the coordinator's cache only
then), so a later coordinator, after a crash, a partition or a leader change,
loads it: an acknowledged commit is durable (`lost-commit` when a group's
final offset is below one acknowledged, and is not the offset of a commit of
unknown outcome), and a group holds only offsets that were committed
(`unknown-commit`). An error answer is no proof that nothing was written:
Kafka maps a failed wait for the replicas to COORDINATOR_NOT_AVAILABLE
(REQUEST_TIMED_OUT, NOT_ENOUGH_REPLICAS) or NOT_COORDINATOR
(NOT_LEADER_OR_FOLLOWER) after the append, and that record may still be
replicated and loaded later, hence `info`. Offsets read during the run are
not judged (OffsetFetch from a coordinator that does not know yet that it
was deposed may answer an older offset, which Kafka allows).

Why short-lived groups: a lost commit is visible only while no later commit
of the same group overwrites it, so every group's last commits are the ones
the final read can judge, and a run ends hundreds of groups. What catches
logquake.debug.commit.before.replication (OffsetCommit answered, and served,
before its record is replicated): a coordinator partitioned from the other
nodes while clients still reach it acknowledges commits at once that no
replica gets; the group goes on committing there and ends, and after the
heal the new coordinator, the new leader of the partition, holds an older
offset or none. The correct broker answers none of those commits before its
followers have the record: each waits (up to the coordinator's 5 s, then
COORDINATOR_NOT_AVAILABLE, and the committer asks again, of the coordinator
found again) until the partition heals or another node coordinates the group,
or ends `info` after COMMIT_TIMEOUT_S. A partition of the coordinator that
heals before the controller has fenced it (3 s without heartbeats,
broker.session.timeout.ms here, more when the cut-off node was the controller)
and elected another leader loses nothing even with the bug: the old leader
keeps leading and its followers catch up.

Fault model: SimulationBase's (broker.sim.workload: at most one fault at a
time, by default crashes and partitions of one node; `leader`, here, is the
partition of the node that leads the `__consumer_offsets` partition of a
group a committer is using when the fault starts, which is the coordinator
the commits go to: `leader_fault_partitions`). The broker gets
OFFSETS_PARTITIONS `__consumer_offsets` partitions (PROPERTIES; --override
wins), instead of 50 that a simulated cluster would replicate each.

Not covered: commits of group members (generations, rebalances:
broker.sim.pipeline's processors commit in transactions), several partitions
per commit, OffsetDelete and group deletion, expiry of offsets.

Determinism: every draw from `random.Random`s named by the seed; no real time;
no iteration over sets. Thread-safety: none; everything runs on the world's loop.
Sources: Kafka's OffsetCommit/OffsetFetch (KafkaApis, GroupCoordinator,
GroupMetadataManager.storeOffsets and its error mapping), KIP-699 (FindCoordinator
for several keys); workloads/offsets.py and checkers/offsets.py.
"""

from __future__ import annotations

import asyncio
import random

from broker.coordinator.group import java_string_hash
from broker.protocol.client import ClientError
from broker.sim.cluster import SimClient
from broker.sim.pipeline import GROUP_COORDINATOR_ERRORS, find_group_coordinator_request
from broker.sim.transactions import schema as _schema
from broker.sim.workload import SimOptions, SimulationBase

TOPIC = "logquake-offsets"
GROUP_PREFIX = "logquake-offsets-"
OFFSETS_TOPIC = "__consumer_offsets"
OFFSETS_PARTITIONS = 4
PROPERTIES = {"offsets.topic.num.partitions": str(OFFSETS_PARTITIONS)}
COMMITTERS = 4
COMMITS_PER_GROUP = 20  # workloads/offsets.py's default commits_per_group
THINK_S = (0.015, 0.045)  # between two commits of a committer: the real harness's 200 ops/s over 6 workers
COMMIT_TIMEOUT_S = 10.0  # one commit op, its tries and all (workloads/offsets.py's op_timeout_s)
REQUEST_TIMEOUT_S = 7.0  # one OffsetCommit: longer than the coordinator's 5 s wait for its replicas
FIND_TIMEOUT_S = 2.0
FETCH_TIMEOUT_S = 4.0  # one OffsetFetch of the final read
RETRY_BACKOFF_S = 0.1
FINAL_READ_S = 120.0  # workloads/offsets.py's FINAL_READ_S
READY_GROUPS = 8  # setup commits for groups of their own, until each is acknowledged (the coordinators are up)
NONE = 0


def offset_commit_request(group: str, offset: int):
    """A "simple" commit of `offset` for partition 0 of TOPIC: generation -1, no member id (no membership)."""
    m = _schema("offset_commit", 8)
    partition = m.OffsetCommitRequestPartition(partition_index=0, committed_offset=offset, committed_leader_epoch=-1,
                                               committed_metadata="")
    return m.OffsetCommitRequest(group_id=group, generation_id_or_member_epoch=-1, member_id="",
                                 group_instance_id=None,
                                 topics=(m.OffsetCommitRequestTopic(name=TOPIC, partitions=(partition,)),))


def offset_fetch_request(group: str):
    m = _schema("offset_fetch", 7)
    return m.OffsetFetchRequest(group_id=group, require_stable=False,
                                topics=(m.OffsetFetchRequestTopic(name=TOPIC, partition_indexes=(0,)),))


def offsets_partition(group: str, partitions: int = OFFSETS_PARTITIONS) -> int:
    """The `__consumer_offsets` partition of `group` (Kafka's rule, broker.coordinator.group's partition_for)."""
    return abs(java_string_hash(group)) % partitions


class Coordinators:
    """A client's view of each group's coordinator: FindCoordinator for the groups not located yet, asked of the nodes
    in an order drawn from `rng` (a Kafka client asks whichever broker it is connected to)."""

    def __init__(self, client: SimClient, node_ids: list[int], rng: random.Random):
        self.client = client
        self.node_ids = node_ids
        self.rng = rng
        self.known: dict[str, int] = {}

    async def locate(self, groups: list[str]) -> None:
        """Ask the nodes, one after another from a drawn one, until every group in `groups` is located or every node
        was asked; groups no node located stay unknown."""
        wanted = [g for g in groups if g not in self.known]
        first = self.rng.randrange(len(self.node_ids))
        for node_id in self.node_ids[first:] + self.node_ids[:first]:
            if not wanted:
                return
            try:
                answer = await self.client.request(node_id, find_group_coordinator_request(*wanted),
                                                   timeout_s=FIND_TIMEOUT_S)
            except ClientError:
                continue
            for found in answer.coordinators:
                if int(found.error_code) == NONE and found.node_id >= 0:
                    self.known[found.key] = int(found.node_id)
            wanted = [g for g in wanted if g not in self.known]

    async def of(self, group: str) -> int | None:
        if group not in self.known:
            await self.locate([group])
        return self.known.get(group)

    def forget(self, group: str) -> None:
        self.known.pop(group, None)


class OffsetsSimulation(SimulationBase):
    """One seeded run of the offsets workload (see the module docstring)."""

    def __init__(self, options: SimOptions):
        super().__init__(options, {**PROPERTIES, **options.properties})
        self.groups: list[str] = []  # every group handed out, in order: the final read's invocation
        self.current: dict[int, str] = {}  # committer slot -> the group it commits for now (the leader fault's aim)

    def new_group(self, slot: int) -> str:
        group = f"{GROUP_PREFIX}{len(self.groups)}"
        self.groups.append(group)
        self.current[slot] = group
        return group

    def leader_fault_partitions(self, image) -> list[tuple[str, int]]:
        """The `__consumer_offsets` partitions of the groups the committers use now (their coordinators), or every
        one of them before any group is in use."""
        partitions = sorted({offsets_partition(group) for group in self.current.values()}) \
            or list(range(OFFSETS_PARTITIONS))
        return [(OFFSETS_TOPIC, p) for p in partitions]

    async def setup(self) -> None:
        """The cluster, the topic the commits name, and the group coordinators answering: a commit acknowledged for
        each of READY_GROUPS groups of their own (outside the history), as workloads/offsets.py's setup waits."""
        await self.start_cluster()
        admin = self.client("admin")
        await self.create_topic(admin, TOPIC, 1)
        coordinators = Coordinators(admin, self.cluster.node_ids, random.Random(f"{self.o.seed}/offsets/setup"))
        loop = self.world.loop
        deadline = loop.time() + 60.0
        for g in range(READY_GROUPS):
            while True:
                type_, error = await self.commit(admin, coordinators, f"{GROUP_PREFIX}ready-{g}", 0)
                if type_ == "ok":
                    break
                assert loop.time() < deadline, f"seed {self.o.seed}: the group coordinators did not come up ({error})"
                await self.world.sleep(0.5)

    # ---- one commit ------------------------------------------------------------------------

    async def commit(self, client: SimClient, coordinators: Coordinators, group: str,
                     offset: int) -> tuple[str, list | None]:
        """(outcome, error) of one commit of `offset` for `group` (the module docstring says which outcome when)."""
        loop = self.world.loop
        give_up = loop.time() + COMMIT_TIMEOUT_S
        sent = False
        error: list = ["no-coordinator", "no node named a coordinator for the group"]
        while True:
            node = await coordinators.of(group)
            if node is not None:
                sent = True
                try:
                    answer = await client.request(node, offset_commit_request(group, offset),
                                                  timeout_s=max(0.1, min(REQUEST_TIMEOUT_S, give_up - loop.time())))
                except ClientError as exc:
                    coordinators.forget(group)
                    error = ["no-answer", str(exc)]
                else:
                    codes = [int(p.error_code) for t in answer.topics for p in t.partitions]
                    code = next((c for c in codes if c), NONE) if codes else -1
                    if code == NONE:
                        return "ok", None
                    error = ["error-code", code]
                    if code not in GROUP_COORDINATOR_ERRORS:
                        return "info", error
                    coordinators.forget(group)
            if loop.time() >= give_up:
                return ("info" if sent else "fail"), error
            await self.world.sleep(RETRY_BACKOFF_S)

    # ---- the committers --------------------------------------------------------------------

    async def committer(self, slot: int) -> None:
        client = self.client(f"committer{slot}")
        rng = random.Random(f"{self.o.seed}/offsets/committer/{slot}")
        coordinators = Coordinators(client, self.cluster.node_ids, rng)
        loop = self.world.loop
        process = slot
        while loop.time() < self.deadline_s:
            group = self.new_group(slot)
            offset = 1
            while offset <= COMMITS_PER_GROUP and loop.time() < self.deadline_s:
                self.history.record(process, "invoke", "offset-commit", [group, offset])
                type_, error = await self.commit(client, coordinators, group, offset)
                self.history.record(process, type_, "offset-commit", [group, offset],
                                    **({"error": error} if error is not None else {}))
                if type_ == "info":
                    process += COMMITTERS  # a new process, and a new group
                    break
                offset += 1
                await self.world.sleep(RETRY_BACKOFF_S if type_ == "fail" else rng.uniform(*THINK_S))
        self.current.pop(slot, None)

    # ---- the final read --------------------------------------------------------------------

    async def final_read(self) -> None:
        client = self.client("final")
        process = COMMITTERS * 1000  # a fresh process, beyond any number the committers reach
        groups = list(self.groups)
        self.history.record(process, "invoke", "offset-fetch", groups, final=True)
        coordinators = Coordinators(client, self.cluster.node_ids, random.Random(f"{self.o.seed}/offsets/final"))
        loop = self.world.loop
        deadline = loop.time() + FINAL_READ_S
        found: dict[str, int | None] = {}
        left = groups
        last_error: list | str = "no answer"
        while left and loop.time() < deadline:
            await coordinators.locate(left)
            retry = []
            for group in left:
                offset, error = await self._fetch(client, coordinators, group)
                if error is None:
                    found[group] = offset
                else:
                    retry.append(group)
                    last_error = error
            left = retry
            if left:
                await self.world.sleep(0.5)
        if left:
            self.history.record(process, "info", "offset-fetch", found, final=True,
                                error=["final-read-incomplete",
                                       f"{len(left)} of {len(groups)} groups unread: {last_error}"])
        else:
            self.history.record(process, "ok", "offset-fetch", found, final=True)

    async def _fetch(self, client: SimClient, coordinators: Coordinators, group: str) -> tuple[int | None, list | None]:
        """(the committed offset of partition 0 or None, None), or (None, the error) when the group's coordinator
        did not answer it (it is forgotten, to be located again)."""
        node = coordinators.known.get(group)
        if node is None:
            return None, ["no-coordinator", group]
        try:
            answer = await client.request(node, offset_fetch_request(group), timeout_s=FETCH_TIMEOUT_S)
        except ClientError as exc:
            coordinators.forget(group)
            return None, ["no-answer", str(exc)]
        parts = [p for t in answer.topics if t.name == TOPIC for p in t.partitions if p.partition_index == 0]
        code = int(answer.error_code) or next((int(p.error_code) for p in parts if p.error_code), NONE)
        if code != NONE or not parts:
            coordinators.forget(group)
            return None, ["error-code", code]
        offset = int(parts[0].committed_offset)
        return (offset if offset >= 0 else None), None

    # ---- the run ---------------------------------------------------------------------------

    async def run(self) -> None:
        await self.setup()
        self.start_ns = self.world.loop.time_ns()
        self.deadline_s = self.world.loop.time() + self.o.duration_s
        await asyncio.gather(self.nemesis(), *(self.committer(slot) for slot in range(COMMITTERS)))
        await self.heal_all()
        await self.final_read()
        for client in self.clients:
            await client.close()
