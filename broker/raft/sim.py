"""A deterministic in-memory cluster simulator for the Raft core (test support
that ships with the library, like trio's fake network).

`Simulator` runs N real `RaftNode`s in one process under a seeded scheduler.
Everything random (which node crashes, which message is lost, each delay, the
order of deliveries, the nodes' election timeouts) comes from one seed, so a
seed replays exactly: `python -m broker.raft.sim --seed 17 --nodes 5`.

Fault model (stated first, TigerBeetle style):
- network: a message may be dropped, duplicated, delayed by 0..`delay_ticks_max`
  ticks and so reordered; partitions cut links, symmetric (two sides, or one
  node isolated) or one-way; a message in flight across a cut link or to a
  crashed node is lost;
- nodes: a crash loses everything not persisted; the node restarts from its
  simulated disk (term, vote, commit index, log as of the last processed Ready)
  with an empty state machine that re-applies the log; a node may miss ticks
  (a paused process, a slow clock);
- a crash may also strike while a Ready is being persisted: then only a
  prefix of its writes, in the order core.py documents (term and vote,
  truncation, entries one by one, commit index), reaches the disk, and none of
  its messages leave;
- otherwise the disk is perfect: what was written survives (disk corruption
  belongs to broker/io's simulated disk, not here).
The caller side follows `broker.raft.core`'s contract: each Ready is persisted,
then its messages are sent, then its committed entries applied, then advanced.

Checked after every step (each tick, delivery, proposal, crash or restart);
a violation raises `SimulationError` (an AssertionError) naming the seed:
- election safety: at most one leader per term, ever;
- log matching: two logs (of any nodes, at any times) holding an entry with the
  same index and term hold identical prefixes up to it (checked by a digest
  chained over the prefix, keyed by index and term);
- leader completeness: every leader of a term >= the term in which an entry
  was first seen committed holds that entry;
- state machine safety: every node applies, at each index, the entry recorded
  as committed there, in index order;
- committed entries are never lost: an entry is on a majority of disks when
  first seen committed, and no disk ever truncates a committed entry;
- each node's in-memory log and hard state equal what it persisted.
Liveness (`check_liveness`): once faults stop (all links healed, all nodes up,
no loss), a leader is elected and a new proposal is committed and applied on
every node within a bounded number of ticks.

Thread-safety: none; one simulator per thread.

Sources: the invariants are Raft's Figure 3 properties (Ongaro & Ousterhout,
USENIX ATC 2014); the approach is FoundationDB's and TigerBeetle's (VOPR)
deterministic simulation testing.
"""

from __future__ import annotations

import argparse
import heapq
import random
import sys
from collections import deque
from dataclasses import dataclass, field

from broker.raft.core import NotLeader, PersistentState, Proposed, ProposeResult, RaftConfig, RaftNode, Ready, Role
from broker.raft.messages import LogEntry, RaftMessage

__all__ = ["FaultModel", "SimulationError", "SimulationReport", "Simulator", "config_for_seed", "run_simulation", "SIM_CONFIG"]

# Small timeouts keep simulations short; small batches and a small pipeline make
# the replication paths (batching, back-pressure, probing) run often.
SIM_CONFIG = RaftConfig(
    election_timeout_ticks_min=10,
    election_timeout_ticks_max=20,
    heartbeat_ticks=2,
    max_entries_per_append=4,
    max_inflight_appends=4,
)


class SimulationError(AssertionError):
    """An invariant broke (or liveness failed) in a simulation; the message names
    the seed to replay and the last events."""


@dataclass(frozen=True)
class FaultModel:
    """Probabilities per tick (nemesis, proposals) or per message (network)."""

    drop_probability: float = 0.05
    duplicate_probability: float = 0.03
    delay_ticks_max: int = 3
    crash_probability: float = 0.01
    leader_crash_probability: float = 0.02
    restart_probability: float = 0.15
    partition_probability: float = 0.03
    leader_isolation_probability: float = 0.02
    heal_probability: float = 0.08
    tick_skip_probability: float = 0.03
    torn_write_probability: float = 0.005
    propose_probability: float = 0.5

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if name == "delay_ticks_max":
                if not isinstance(value, int) or value < 0:
                    raise ValueError(f"FaultModel.delay_ticks_max is {value!r}; accepted: an integer >= 0")
            elif not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"FaultModel.{name} is {value!r}; accepted: a probability between 0 and 1")

    @classmethod
    def none(cls, delay_ticks_max: int = 0, propose_probability: float = 0.0) -> "FaultModel":
        """No faults at all; messages still take 0..delay_ticks_max ticks."""
        return cls(
            drop_probability=0.0,
            duplicate_probability=0.0,
            delay_ticks_max=delay_ticks_max,
            crash_probability=0.0,
            leader_crash_probability=0.0,
            restart_probability=0.0,
            partition_probability=0.0,
            leader_isolation_probability=0.0,
            heal_probability=0.0,
            tick_skip_probability=0.0,
            torn_write_probability=0.0,
            propose_probability=propose_probability,
        )


@dataclass
class _Disk:
    """One node's durable state, as the caller of RaftNode would keep it."""

    term: int = 0
    voted_for: int | None = None
    commit_index: int = 0
    entries: list[LogEntry] = field(default_factory=list)
    # digests[i] covers entries[0..i]: equal digests mean equal prefixes.
    digests: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class _Committed:
    term: int
    digest: int
    commit_term: int


@dataclass
class SimulationReport:
    """What one simulation did; `liveness_ticks` is how long recovery took."""

    seed: int
    node_count: int
    ticks: int = 0
    steps: int = 0
    messages_sent: int = 0
    messages_dropped: int = 0
    messages_duplicated: int = 0
    crashes: int = 0
    partitions: int = 0
    proposals_accepted: int = 0
    leader_terms: int = 0
    committed_entries: int = 0
    liveness_ticks: int | None = None


class Simulator:
    """N Raft nodes, a faulty network and a nemesis, all driven by one seed.

    Drive it step by step (`tick`, `deliver_due`, `propose`, `crash`, ...) or a
    whole randomised round at a time (`run_round`).
    """

    def __init__(
        self,
        node_count: int,
        seed: int,
        config: RaftConfig = SIM_CONFIG,
        faults: FaultModel | None = None,
        initial_states: dict[int, PersistentState] | None = None,
        hold_messages: bool = False,
    ) -> None:
        if not isinstance(node_count, int) or node_count < 1:
            raise ValueError(f"node_count is {node_count!r}; accepted: an integer >= 1")
        initial_states = dict(initial_states or {})
        unknown = sorted(set(initial_states) - set(range(1, node_count + 1)))
        if unknown:
            raise ValueError(f"initial_states names nodes {unknown}; accepted: node ids 1 to {node_count}")
        self.seed = seed
        self.config = config
        self.faults = faults if faults is not None else FaultModel()
        self.rng = random.Random(seed)
        self.voters = list(range(1, node_count + 1))
        self.quorum = node_count // 2 + 1
        self.now_ticks = 0
        self.report = SimulationReport(seed=seed, node_count=node_count)
        self.nodes: dict[int, RaftNode | None] = {}
        self.disks: dict[int, _Disk] = {node_id: _Disk() for node_id in self.voters}
        self.applied: dict[int, list[LogEntry]] = {}
        self.blocked_links: set[tuple[int, int]] = set()
        self._in_flight: list[tuple[int, float, int, RaftMessage]] = []
        # With hold_messages, sent messages wait in `held` until a scripted test
        # delivers or drops them one by one (deliver_held, drop_held).
        self.hold_messages = hold_messages
        self.held: list[RaftMessage] = []
        # How to rerun this exact simulation, set by whoever scripted it.
        self.replay_command: str | None = None
        self._sequence = 0
        self._trace: deque[tuple] = deque(maxlen=80)
        # Global history for the invariants.
        self._leader_of_term: dict[int, int] = {}
        self._digest_of: dict[tuple[int, int], int] = {}
        self._committed: list[_Committed] = []
        self._seen_commit: dict[int, int] = {}
        self._was_leader: dict[int, bool] = {}
        for node_id, state in initial_states.items():
            disk = self.disks[node_id]
            disk.term, disk.voted_for, disk.commit_index = state.term, state.voted_for, state.commit_index
            self._append_to_disk(node_id, disk, state.entries)
        for node_id in self.voters:
            self._start_node(node_id)

    # --------------------------------------------------------------- lifecycle

    def _start_node(self, node_id: int) -> None:
        disk = self.disks[node_id]
        state = PersistentState(disk.term, disk.voted_for, disk.commit_index, tuple(disk.entries))
        node_rng = random.Random(self.rng.getrandbits(64))
        self.nodes[node_id] = RaftNode(node_id, self.voters, state, node_rng, self.config)
        self.applied[node_id] = []
        self._seen_commit[node_id] = 0
        self._was_leader[node_id] = False
        self._after_event(node_id)

    def crash(self, node_id: int) -> None:
        """Kill a node: everything it did not persist is gone."""
        if self.nodes[node_id] is None:
            raise ValueError(f"node {node_id} is already down; accepted: a running node")
        self._record("crash", node_id)
        self.report.crashes += 1
        self.nodes[node_id] = None

    def restart(self, node_id: int) -> None:
        """Start a crashed node again from its disk."""
        if self.nodes[node_id] is not None:
            raise ValueError(f"node {node_id} is running; accepted: a crashed node")
        self._record("restart", node_id)
        self._start_node(node_id)

    def partition(self, side_a: list[int], side_b: list[int]) -> None:
        """Cut every link between the two sides, both ways."""
        self._record("partition", (tuple(side_a), tuple(side_b)))
        self.report.partitions += 1
        for a in side_a:
            for b in side_b:
                self.blocked_links.add((a, b))
                self.blocked_links.add((b, a))

    def block(self, from_id: int, to_id: int) -> None:
        """Cut one direction of one link."""
        self._record("block", (from_id, to_id))
        self.report.partitions += 1
        self.blocked_links.add((from_id, to_id))

    def heal(self) -> None:
        self._record("heal", None)
        self.blocked_links.clear()

    # ------------------------------------------------------------------ inputs

    def tick(self, node_id: int) -> None:
        node = self._running(node_id)
        self._record("tick", node_id)
        node.tick()
        self._after_event(node_id)

    def tick_all(self) -> None:
        """One tick of logical time: every running node ticks once (in random
        order; some may miss it), then due messages are delivered."""
        self.now_ticks += 1
        self.report.ticks += 1
        order = [node_id for node_id, node in self.nodes.items() if node is not None]
        self.rng.shuffle(order)
        for node_id in order:
            if self.rng.random() < self.faults.tick_skip_probability or self.nodes[node_id] is None:
                continue  # a missed tick, or a node that crashed during this round
            self.tick(node_id)
        self.deliver_due()

    def deliver_due(self) -> None:
        """Deliver every message due by now, including ones sent meanwhile with
        no delay; ties are broken at random (reordering)."""
        while self._in_flight and self._in_flight[0][0] <= self.now_ticks:
            _, _, _, message = heapq.heappop(self._in_flight)
            self.deliver(message)

    def deliver(self, message: RaftMessage) -> None:
        node = self.nodes[message.to_id]
        if node is None or (message.from_id, message.to_id) in self.blocked_links:
            self._record("lost", message)
            self.report.messages_dropped += 1
            return
        self._record("deliver", message)
        node.step(message)
        self._after_event(message.to_id)

    def propose(self, node_id: int, data: bytes) -> ProposeResult:
        node = self._running(node_id)
        result = node.propose(data)
        self._record("propose", (node_id, data, result))
        if isinstance(result, Proposed):
            self.report.proposals_accepted += 1
        self._after_event(node_id)
        return result

    def leader(self) -> int | None:
        """The running node that is leader in the highest term, if any."""
        best: tuple[int, int] | None = None
        for node_id, node in self.nodes.items():
            if node is not None and node.role is Role.LEADER and (best is None or node.term > best[0]):
                best = (node.term, node_id)
        return None if best is None else best[1]

    def run_round(self) -> None:
        """One randomised tick: nemesis actions, maybe a client proposal, then
        `tick_all`."""
        faults = self.faults
        rng = self.rng
        running = [node_id for node_id, node in self.nodes.items() if node is not None]
        if running and rng.random() < faults.crash_probability:
            self.crash(rng.choice(running))
        # Faults aimed at the leader make elections, and the log repairs that
        # follow them, happen far more often than random faults would.
        leader_id = self.leader()
        if leader_id is not None and rng.random() < faults.leader_crash_probability:
            self.crash(leader_id)
            leader_id = None
        if leader_id is not None and rng.random() < faults.leader_isolation_probability:
            self.partition([leader_id], [n for n in self.voters if n != leader_id])
        for node_id in self.voters:
            if self.nodes[node_id] is None and rng.random() < faults.restart_probability:
                self.restart(node_id)
        if rng.random() < faults.partition_probability:
            self._random_partition()
        if self.blocked_links and rng.random() < faults.heal_probability:
            self.heal()
        if rng.random() < faults.propose_probability:
            self._client_proposal(f"v{self.now_ticks}-{rng.getrandbits(16)}".encode())
        self.tick_all()

    def _random_partition(self) -> None:
        nodes = list(self.voters)
        if len(nodes) < 2:
            return
        kind = self.rng.randrange(3)
        if kind == 0:
            self.rng.shuffle(nodes)
            cut = self.rng.randrange(1, len(nodes))
            self.partition(nodes[:cut], nodes[cut:])
        elif kind == 1:
            isolated = self.rng.choice(nodes)
            self.partition([isolated], [n for n in nodes if n != isolated])
        else:
            from_id, to_id = self.rng.sample(nodes, 2)
            self.block(from_id, to_id)

    def _client_proposal(self, data: bytes) -> ProposeResult | None:
        running = [node_id for node_id, node in self.nodes.items() if node is not None]
        if not running:
            return None
        # Clients also reach stale leaders (cut off, not yet stepped down): their
        # uncommitted entries are what later elections must overwrite correctly.
        leaders = [node_id for node_id in running if self.nodes[node_id].role is Role.LEADER]
        if leaders and self.rng.random() < 0.5:
            running = leaders
        result = self.propose(self.rng.choice(running), data)
        if isinstance(result, NotLeader) and result.leader_id is not None and self.nodes[result.leader_id] is not None:
            result = self.propose(result.leader_id, data)
        return result

    # -------------------------------------------------------------- the caller

    def _running(self, node_id: int) -> RaftNode:
        node = self.nodes.get(node_id)
        if node is None:
            raise ValueError(f"node {node_id} is not running; accepted: one of the running nodes")
        return node

    def campaign(self, node_id: int) -> None:
        """Make a node start an election now, as if its timer fired."""
        node = self._running(node_id)
        self._record("campaign", node_id)
        node.campaign()
        self._after_event(node_id)

    def deliver_held(self, predicate=lambda message: True) -> int:
        """Deliver the held messages that satisfy `predicate`, in the order sent
        (messages they cause are held in turn); returns how many."""
        chosen = [message for message in self.held if predicate(message)]
        self.held = [message for message in self.held if not predicate(message)]
        for message in chosen:
            self.deliver(message)
        return len(chosen)

    def drop_held(self, predicate=lambda message: True) -> int:
        """Lose the held messages that satisfy `predicate`; returns how many."""
        chosen = [message for message in self.held if predicate(message)]
        self.held = [message for message in self.held if not predicate(message)]
        for message in chosen:
            self._record("drop", message)
        self.report.messages_dropped += len(chosen)
        return len(chosen)

    def _send(self, message: RaftMessage) -> None:
        faults = self.faults
        rng = self.rng
        self.report.messages_sent += 1
        if self.hold_messages:
            self.held.append(message)
            return
        if rng.random() < faults.drop_probability:
            self._record("drop", message)
            self.report.messages_dropped += 1
            return
        copies = 1
        if rng.random() < faults.duplicate_probability:
            copies = 2
            self.report.messages_duplicated += 1
        for _ in range(copies):
            self._sequence += 1
            deliver_at = self.now_ticks + rng.randint(0, faults.delay_ticks_max)
            heapq.heappush(self._in_flight, (deliver_at, rng.random(), self._sequence, message))

    def _after_event(self, node_id: int) -> None:
        """Play the caller's part for every Ready, then check the invariants."""
        node = self.nodes[node_id]
        assert node is not None
        self.report.steps += 1
        disk = self.disks[node_id]
        while node.has_ready():
            ready = node.ready()
            torn = self.faults.torn_write_probability
            if torn and ready.must_sync and self.rng.random() < torn:
                self._persist_torn(node_id, disk, ready)
                return
            self._persist(node_id, disk, ready)
            for message in ready.messages:
                self._send(message)
            self._observe_commit(node_id, node, disk)
            self._apply(node_id, ready)
            node.advance(ready)
        self._check_node(node_id, node, disk)

    def _persist(self, node_id: int, disk: _Disk, ready: Ready) -> None:
        # The order core.py documents for a caller that cannot write a Ready
        # atomically: term and vote, then the log, then the commit index.
        hard_state = ready.hard_state
        if hard_state is not None:
            disk.term, disk.voted_for = hard_state.term, hard_state.voted_for
        if ready.truncate_from is not None:
            if not (ready.entries and ready.entries[0].index == ready.truncate_from):
                self._fail(
                    f"node {node_id}: truncate_from {ready.truncate_from} does not match the first entry of the Ready"
                )
            self._truncate_disk(node_id, disk, ready.truncate_from)
        self._append_to_disk(node_id, disk, ready.entries)
        if hard_state is not None:
            if hard_state.commit_index > len(disk.entries):
                self._fail(
                    f"node {node_id} persists commit index {hard_state.commit_index} beyond its log "
                    f"({len(disk.entries)} entries)"
                )
            disk.commit_index = hard_state.commit_index

    def _persist_torn(self, node_id: int, disk: _Disk, ready: Ready) -> None:
        """Crash in the middle of persisting `ready`: only a prefix of its writes
        (in the documented order) reaches the disk, nothing is sent or applied."""
        writes: list[tuple[str, object]] = []
        hard_state = ready.hard_state
        if hard_state is not None and (hard_state.term, hard_state.voted_for) != (disk.term, disk.voted_for):
            writes.append(("term and vote", hard_state))
        if ready.truncate_from is not None:
            writes.append(("truncate", ready.truncate_from))
        writes.extend(("append", entry) for entry in ready.entries)
        if hard_state is not None and hard_state.commit_index != disk.commit_index:
            writes.append(("commit", hard_state.commit_index))
        done = self.rng.randrange(len(writes))
        for kind, value in writes[:done]:
            if kind == "term and vote":
                disk.term, disk.voted_for = value.term, value.voted_for
            elif kind == "truncate":
                self._truncate_disk(node_id, disk, value)
            elif kind == "append":
                self._append_to_disk(node_id, disk, (value,))
            else:
                disk.commit_index = value
        self._record("crash while persisting", (node_id, f"{done} of {len(writes)} writes"))
        self.report.crashes += 1
        self.nodes[node_id] = None

    def _truncate_disk(self, node_id: int, disk: _Disk, start: int) -> None:
        for index in range(start, min(len(disk.entries), len(self._committed)) + 1):
            if self._committed[index - 1].digest == disk.digests[index - 1]:
                self._fail(
                    f"node {node_id} truncates committed entry {index} (term {disk.entries[index - 1].term}): "
                    "a committed entry is lost"
                )
        del disk.entries[start - 1 :]
        del disk.digests[start - 1 :]

    def _append_to_disk(self, node_id: int, disk: _Disk, entries: tuple[LogEntry, ...]) -> None:
        for entry in entries:
            if entry.index != len(disk.entries) + 1:
                self._fail(
                    f"node {node_id}: Ready entry {entry.index} does not continue the persisted log "
                    f"(last persisted {len(disk.entries)})"
                )
            previous = disk.digests[-1] if disk.digests else 0
            # Python's hash is salted per process; digests are only compared
            # within one run and never steer it, so replays stay exact.
            digest = hash((previous, entry.term, entry.entry_type, entry.data))
            key = (entry.index, entry.term)
            known = self._digest_of.setdefault(key, digest)
            if known != digest:
                self._fail(
                    f"log matching: node {node_id} holds an entry at index {entry.index}, term {entry.term} "
                    "whose content or preceding log differs from another copy of that entry"
                )
            disk.entries.append(entry)
            disk.digests.append(digest)

    def _observe_commit(self, node_id: int, node: RaftNode, disk: _Disk) -> None:
        seen = self._seen_commit[node_id]
        commit_index = node.commit_index
        for index in range(seen + 1, commit_index + 1):
            digest = disk.digests[index - 1]
            if index <= len(self._committed):
                record = self._committed[index - 1]
                if record.digest != digest:
                    self._fail(
                        f"state machine safety: node {node_id} has committed index {index} with term "
                        f"{disk.entries[index - 1].term}, but index {index} was committed with term {record.term}"
                    )
                continue
            if index != len(self._committed) + 1:
                self._fail(
                    f"node {node_id} commits index {index} before index {len(self._committed) + 1} was ever committed"
                )
            holders = sum(1 for d in self.disks.values() if len(d.digests) >= index and d.digests[index - 1] == digest)
            if holders < self.quorum:
                self._fail(
                    f"node {node_id} commits index {index}, which only {holders} of {len(self.voters)} disks hold"
                )
            record = _Committed(disk.entries[index - 1].term, digest, node.term)
            self._committed.append(record)
            self.report.committed_entries = len(self._committed)
            for other_id, other in self.nodes.items():
                if other is not None and other.role is Role.LEADER and other.term >= record.commit_term:
                    self._check_leader_holds(other_id, index, record)
        if commit_index > seen:
            self._seen_commit[node_id] = commit_index

    def _apply(self, node_id: int, ready: Ready) -> None:
        applied = self.applied[node_id]
        for entry in ready.committed_entries:
            if entry.index != len(applied) + 1:
                self._fail(
                    f"node {node_id} applies index {entry.index} after {len(applied)}: out of order"
                )
            record = self._committed[entry.index - 1] if entry.index <= len(self._committed) else None
            if not (record is not None and record.term == entry.term):
                self._fail(
                    f"state machine safety: node {node_id} applies index {entry.index} term {entry.term}, "
                    f"but the committed entry there is {record}"
                )
            applied.append(entry)

    def _check_node(self, node_id: int, node: RaftNode, disk: _Disk) -> None:
        last_index = node.last_index
        if last_index != len(disk.entries) or (last_index and node.term_at(last_index) != disk.entries[-1].term):
            self._fail(
                f"node {node_id}: in-memory log (last {node.last_index}) differs from its disk ({len(disk.entries)})"
            )
        if node.term != disk.term or node.voted_for != disk.voted_for or node.commit_index != disk.commit_index:
            self._fail(
                f"node {node_id}: hard state {node.hard_state} differs from its disk"
            )
        if node.role is Role.LEADER:
            leader = self._leader_of_term.setdefault(node.term, node_id)
            if leader != node_id:
                self._fail(
                    f"election safety: nodes {leader} and {node_id} are both leaders of term {node.term}"
                )
            if not self._was_leader[node_id]:
                self._was_leader[node_id] = True
                self.report.leader_terms = len(self._leader_of_term)
                for index, record in enumerate(self._committed, start=1):
                    if record.commit_term <= node.term:
                        self._check_leader_holds(node_id, index, record)
        else:
            self._was_leader[node_id] = False

    def _check_leader_holds(self, leader_id: int, index: int, record: _Committed) -> None:
        digests = self.disks[leader_id].digests
        if not (len(digests) >= index and digests[index - 1] == record.digest):
            self._fail(
                f"leader completeness: leader {leader_id} of term {self.nodes[leader_id].term} lacks entry {index} "
                f"(term {record.term}) committed in term {record.commit_term}"
            )

    def check_converged(self) -> None:
        """Every running node has applied every committed entry."""
        for node_id, node in self.nodes.items():
            if node is not None:
                if len(self.applied[node_id]) != len(self._committed):
                    self._fail(
                        f"node {node_id} applied {len(self.applied[node_id])} entries of {len(self._committed)} committed"
                    )

    # --------------------------------------------------------------- liveness

    def liveness_bound_ticks(self) -> int:
        """Ticks within which a healed cluster must elect a leader, commit a
        proposal and bring every node up to date: a few election rounds (split
        votes, a stale leader learning the new term), plus the slowest
        catch-up, one AppendEntries round trip per `max_entries_per_append`
        entries (probing and a pipeline of one allow no better)."""
        config = self.config
        round_trip_ticks = 2 * self.faults.delay_ticks_max + config.heartbeat_ticks + 1
        longest_log = max(len(disk.entries) for disk in self.disks.values())
        catch_up_ticks = (longest_log // config.max_entries_per_append + 2) * round_trip_ticks
        return 6 * config.election_timeout_ticks_max + catch_up_ticks

    def check_liveness(self, ticks_max: int) -> int:
        """Stop all faults, then require that within `ticks_max` ticks a leader
        commits a new proposal and every node applies everything committed.
        Returns the ticks it took."""
        self.heal()
        for node_id in self.voters:
            if self.nodes[node_id] is None:
                self.restart(node_id)
        self.faults = FaultModel.none(delay_ticks_max=self.faults.delay_ticks_max)
        marker = f"liveness-{self.seed}".encode()
        pending: Proposed | None = None
        committed = False
        for elapsed in range(1, ticks_max + 1):
            self.tick_all()
            if not committed:
                leader_id = self.leader()
                if pending is not None and pending.index <= len(self._committed):
                    committed = self._committed[pending.index - 1].term == pending.term
                    if not committed:
                        pending = None  # another entry was committed there: propose again
                elif pending is not None and leader_id is not None and self.nodes[leader_id].term != pending.term:
                    leader = self.nodes[leader_id]
                    if pending.index > leader.last_index or leader.term_at(pending.index) != pending.term:
                        pending = None  # the new leader does not have it, so it can never commit
                if pending is None and leader_id is not None:
                    result = self.propose(leader_id, marker)
                    if isinstance(result, Proposed):
                        pending = result
            if committed and all(
                len(self.applied[node_id]) == len(self._committed) for node_id in self.voters
            ):
                self.report.liveness_ticks = elapsed
                return elapsed
        leader_id = self.leader()
        raise SimulationError(
            self._failure_text(
                f"liveness: {ticks_max} ticks after the faults stopped, "
                + (f"leader {leader_id} of term {self.nodes[leader_id].term}" if leader_id else "no leader")
                + f", proposal {pending}, committed: {committed}, applied per node: "
                + str({n: len(a) for n, a in self.applied.items()})
                + f", committed entries: {len(self._committed)}; node states: "
                + "; ".join(
                    f"{n}: {node.role.value} term {node.term} last {node.last_index} commit {node.commit_index}"
                    for n, node in self.nodes.items()
                    if node is not None
                )
            )
        )

    # --------------------------------------------------------------- plumbing

    def _record(self, kind: str, detail: object) -> None:
        self._trace.append((self.now_ticks, kind, detail))

    def _fail(self, text: str) -> None:
        raise SimulationError(self._failure_text(text))

    def _failure_text(self, text: str) -> str:
        return f"{text}\n{self.replay_hint()}\nlast events:\n" + "\n".join(
            f"  t={tick} {kind} {detail}" for tick, kind, detail in self._trace
        )

    def replay_hint(self) -> str:
        text = f"seed {self.seed}, {len(self.voters)} nodes, {self.config}"
        if self.replay_command is not None:
            text += f"; replay with: {self.replay_command}"
        return text


def config_for_seed(seed: int) -> RaftConfig:
    """A RaftConfig drawn from the seed: safety must hold with PreVote and
    CheckQuorum on or off and whatever the batching and pipelining limits, and
    small limits (one entry per append, one append in flight) split a leader's
    catch-up into many steps, where ordering bugs hide."""
    rng = random.Random(f"raft-config-{seed}")
    return RaftConfig(
        election_timeout_ticks_min=10,
        election_timeout_ticks_max=20,
        heartbeat_ticks=rng.choice((1, 2, 3)),
        pre_vote=rng.random() < 0.75,
        check_quorum=rng.random() < 0.75,
        max_entries_per_append=rng.choice((1, 2, 4, 64)),
        max_inflight_appends=rng.choice((1, 4, 256)),
    )


def run_simulation(
    seed: int,
    node_count: int = 3,
    fault_ticks: int = 200,
    liveness_ticks_max: int | None = None,
    config: RaftConfig | None = None,
    faults: FaultModel | None = None,
) -> SimulationReport:
    """Run `fault_ticks` randomised rounds with faults, then the liveness check.
    Without `config`, `config_for_seed(seed)` is used. Without
    `liveness_ticks_max`, the bound is `liveness_bound_ticks` of the run.

    Any broken invariant, including an assertion inside a RaftNode, raises
    `SimulationError` whose message starts with the seed to replay.
    """
    if config is None:
        config = config_for_seed(seed)
    simulator = Simulator(node_count, seed, config, faults)
    if faults is None and config == config_for_seed(seed):
        simulator.replay_command = (
            f"python -m broker.raft.sim --seed {seed} --nodes {node_count} --fault-ticks {fault_ticks}"
            + ("" if liveness_ticks_max is None else f" --liveness-ticks-max {liveness_ticks_max}")
        )
    else:
        simulator.replay_command = (
            "python -c 'from broker.raft.sim import *; from broker.raft.core import RaftConfig; "
            f"print(run_simulation({seed}, {node_count}, {fault_ticks}, {liveness_ticks_max}, {config!r}, {faults!r}))'"
        )
    try:
        for _ in range(fault_ticks):
            simulator.run_round()
        if liveness_ticks_max is None:
            liveness_ticks_max = simulator.liveness_bound_ticks()
        simulator.check_liveness(liveness_ticks_max)
        simulator.check_converged()
    except SimulationError:
        raise
    except AssertionError as error:
        raise SimulationError(simulator._failure_text(f"a RaftNode invariant broke: {error}")) from error
    return simulator.report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Replay one seeded Raft simulation and print what it did.")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--fault-ticks", type=int, default=200)
    parser.add_argument("--liveness-ticks-max", type=int, default=None)
    arguments = parser.parse_args(argv)
    try:
        report = run_simulation(arguments.seed, arguments.nodes, arguments.fault_ticks, arguments.liveness_ticks_max)
    except SimulationError as error:
        print(error, file=sys.stderr)
        return 1
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
