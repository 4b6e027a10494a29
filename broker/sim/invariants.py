"""Replication invariants of a simulated cluster, checked after every step of the scheduler.

`InvariantChecker.check()` runs once per iteration of the virtual-time loop
(broker.io.sim_loop's `step_hook`: after every callback of the previous
iteration ran, before the next ones run), so a violation is seen at the step
that made it, with the seed and the virtual time in its message. It only
reads the running nodes' objects (each node's `ReplicaManager`: its
`Replica`s, their `LeaderState` and their `PartitionLog`); it changes nothing
and the broker does not know it is watched. A violation is recorded (the run
goes on, so its history is still judged): `violations` holds the first
`keep` messages of each invariant and `counts` every one.

The invariants (`INVARIANTS` names them; "the HW" is a partition's high watermark):

- `single-leader-per-epoch`: at most one node ever leads a partition at a
  given leader epoch (at the same time or one after the other: an epoch names
  one leadership). A node that restarts and leads the same epoch again is the
  same leader.
- `leader-hw-monotonic`: while a node leads a partition at one leader epoch,
  the HW it holds never decreases. A new leadership (another epoch, or a new
  incarnation of the node after a crash) starts from its own HW, which may be
  lower than its predecessor's (as in Kafka, until followers fetch again).
- `isr-holds-hw`: whenever a leader's HW moves up to h, every member of its
  maximal ISR (the committed ISR plus a pending change, KIP-497) other than
  itself had fetched from offset h or beyond, as the leader recorded it
  (`FollowerState.log_end_offset`). This is the precise, in-flight-safe form
  of "every ISR member holds the log up to the HW": it is checked against
  what the leader believed when it advanced the HW, not against the
  follower's log at some later step, which a crash (power loss of unsynced
  data, the disk's fault model) may have shortened before the leader learnt
  of it. That the follower's records are the leader's is the next invariant.
- `committed-records-kept`: a record below the HW is never truncated or
  replaced on a replica that the leader counts as holding it. The checker
  keeps the committed log of each partition: the batch headers (base and
  last offset, leader epoch, CRC, producer id and epoch) below the highest HW
  any leader reached, read from that leader's log when its HW passed them; a
  later leader holding another batch there is a violation. Each step, every
  leader *claims* a prefix of its own log (up to its HW) and of each other
  member of its maximal ISR (up to the lower of its HW and the offset that
  member last fetched from, which is where a correct follower's log is the
  leader's, after its KIP-101 truncation); each running replica's log is then
  compared, batch by batch, with the committed log up to the lower of its
  claim and its log end offset (so a follower that kept a divergent tail and
  was counted in the HW is caught; a replica outside the ISR may still hold a
  divergent tail it has not truncated yet, as in Kafka). Once verified up to
  an offset, a replica's log end never drops below it again in the same
  incarnation. A crash resets this for the node: its restart recovers what
  was durable, and records it had not fsynced are the disk's fault model, not
  a truncation by the broker; what survives is compared again.
- `fenced-producer-epoch`: in each partition's committed log, a producer id
  never writes a batch with a lower producer epoch after one with a higher
  epoch (a bumped epoch fences the older ones, KIP-360/KIP-98). The simulated
  workload (broker.sim.workload) has no idempotent or transactional
  producers yet: its batches carry producer id -1 and are not checked, so
  this invariant holds vacuously until such producers are simulated; it is
  checked on whatever the state holds.

Blind spots, stated: a log truncated and appended again within one step, to
the same log end offset, is only caught by the comparison of the batches
above the verified offset; batches below the log start offset (retention,
DeleteRecords) are not compared; a crashed node is not looked at until it
restarts.

Sources: the invariants after every step of FoundationDB's simulation
(Will Wilson, "Testing Distributed Systems w/ Deterministic Simulation",
Strange Loop 2014) and TigerBeetle's VOPR, whose state checker compares every
replica's committed state with the cluster's after each tick
(`src/testing/cluster/state_checker.zig`); Kafka's replication properties as
in its TLA+ model (`kafka-specification`, `KafkaReplication.tla`:
LeaderInIsr, WeakIsr, StrongIsr, LeaderCompletenessInvariant); this
repository's `broker/raft/sim.py`, which does the same for the Raft core.

Thread-safety: none; runs on the simulation's loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field

INVARIANTS: dict[str, str] = {
    "single-leader-per-epoch": "at most one node leads a partition at a given leader epoch",
    "leader-hw-monotonic": "the high watermark never goes backwards on a leader (one node, one epoch)",
    "isr-holds-hw": "when a leader advances the HW to h, every other maximal-ISR member had fetched from h or beyond",
    "committed-records-kept": "a record below the high watermark is never truncated or replaced on any replica",
    "fenced-producer-epoch": "a producer epoch older than one already written never writes again (vacuous: the "
                             "simulated workload has no idempotent producers yet)",
}


@dataclass(frozen=True, slots=True)
class BatchId:
    """What identifies a batch in a log: two replicas holding the same batch agree on all of it."""

    base_offset: int
    last_offset: int
    leader_epoch: int
    crc: int
    producer_id: int
    producer_epoch: int

    @classmethod
    def of(cls, header) -> "BatchId":
        return cls(header.base_offset, header.last_offset, header.partition_leader_epoch, header.crc,
                   header.producer_id, header.producer_epoch)


@dataclass
class _Committed:
    """One partition's committed log as the checker knows it."""

    high_watermark: int = 0
    batches: dict[int, BatchId] = field(default_factory=dict)  # base offset -> batch
    end: int = 0  # every batch starting below this offset is recorded
    producer_epochs: dict[int, int] = field(default_factory=dict)  # producer id -> highest epoch written


@dataclass
class _ReplicaView:
    """What the checker verified of one replica in one incarnation of its node."""

    incarnation: int
    verified: int  # the log below this offset matched the committed log


class InvariantChecker:
    """The invariants of the module docstring over `cluster` (a broker.sim.cluster.SimCluster)."""

    def __init__(self, cluster, keep: int = 10):
        self.cluster = cluster
        self.seed = cluster.world.seed
        self.loop = cluster.world.loop
        self.keep = keep
        self.checks = 0
        self.counts: dict[str, int] = {name: 0 for name in INVARIANTS}
        self.violations: list[str] = []
        self._leaders: dict[tuple[str, int, int], int] = {}  # (topic, partition, leader epoch) -> node
        self._leader_hw: dict[tuple[int, int, str, int, int], int] = {}  # (node, incarnation, tp, epoch) -> HW
        self._committed: dict[tuple[str, int], _Committed] = {}
        self._views: dict[tuple[int, tuple[str, int]], _ReplicaView] = {}
        self._seen: dict[int, tuple[object, int]] = {}  # id(LeaderState) -> (it, the HW last checked)

    # ---- reporting ---------------------------------------------------------------------

    def violate(self, name: str, detail: str) -> None:
        self.counts[name] += 1
        if self.counts[name] <= self.keep:
            self.violations.append(f"seed {self.seed}, virtual time {self.loop.time():.6f} s: {name}: {detail}")

    def summary(self) -> dict:
        return {"checked": list(INVARIANTS), "checks": self.checks, "violations": list(self.violations),
                "violation_counts": {name: n for name, n in self.counts.items() if n}}

    # ---- the check of one step ---------------------------------------------------------

    def check(self) -> None:
        # The fast path of a step that changed nothing these invariants look at (most steps): a leader whose HW
        # is the one last seen, a log whose end did not move below what was verified, nothing new claimed.
        self.checks += 1
        seen, views = self._seen, self._views
        logs = []
        claims: dict[tuple[int, tuple[str, int]], int] = {}  # (node, partition) -> the log below it is committed
        for node_id, node in self.cluster.nodes.items():
            manager = node.cluster.replica_manager
            if manager is None:
                continue
            incarnation = node.incarnation
            for key, replica in manager.replicas.items():
                state = replica.leader_state
                if state is not None:
                    hw = state.high_watermark
                    memo = seen.get(id(state))
                    if memo is None or memo[0] is not state or memo[1] != hw:
                        self._check_leader(node_id, incarnation, key, replica, state)
                        seen[id(state)] = (state, hw)  # the state is kept: its id is not reused
                    if hw > claims.get((node_id, key), 0):
                        claims[(node_id, key)] = hw
                    followers = state.followers
                    for member in (state.isr if state.pending_isr is None else state.maximal_isr):
                        if member != node_id and member in followers:
                            held = min(followers[member].log_end_offset, hw)
                            if held > claims.get((member, key), 0):
                                claims[(member, key)] = held
                logs.append((node_id, incarnation, key, replica.log))
        for node_id, incarnation, key, partition_log in logs:
            view = views.get((node_id, key))
            leo = partition_log.log_end_offset
            if (view is not None and view.incarnation == incarnation and view.verified <= leo
                    and min(leo, claims.get((node_id, key), 0)) <= view.verified):
                continue
            self._check_replica_log(node_id, incarnation, key, partition_log, claims.get((node_id, key), 0))

    def _check_leader(self, node_id: int, incarnation: int, key: tuple[str, int], replica, state) -> None:
        topic, partition = key
        epoch = state.leader_epoch
        leader = self._leaders.setdefault((topic, partition, epoch), node_id)
        if leader != node_id:
            self.violate("single-leader-per-epoch", f"{topic}-{partition}: node {node_id} leads leader epoch {epoch}, "
                                                    f"which node {leader} led")
        hw = state.high_watermark
        term = (node_id, incarnation, topic, partition, epoch)
        previous = self._leader_hw.get(term)
        if previous is not None and hw != previous:
            if hw < previous:
                self.violate("leader-hw-monotonic", f"{topic}-{partition}: leader {node_id} (epoch {epoch}) moved its "
                                                    f"HW back from {previous} to {hw}")
            else:
                lagging = {r: state.followers[r].log_end_offset if r in state.followers else None
                           for r in state.maximal_isr if r != node_id
                           and (r not in state.followers or state.followers[r].log_end_offset < hw)}
                if lagging:
                    self.violate("isr-holds-hw", f"{topic}-{partition}: leader {node_id} (epoch {epoch}) advanced the "
                                                 f"HW {previous} -> {hw} with maximal ISR {state.maximal_isr}, but it "
                                                 f"knew these members' log ends: {lagging}")
        self._leader_hw[term] = hw
        committed = self._committed.get(key)
        if committed is None:
            committed = self._committed[key] = _Committed()
        if hw > committed.end:
            self._commit(key, committed, replica.log, node_id, hw)
        committed.high_watermark = max(committed.high_watermark, hw)

    def _commit(self, key: tuple[str, int], committed: _Committed, partition_log, node_id: int, hw: int) -> None:
        """Record the leader's batches from the committed end up to `hw`."""
        topic, partition = key
        for batch in _batches_below(partition_log, committed.end, hw):
            known = committed.batches.get(batch.base_offset)
            if known is not None and known != batch:
                self.violate("committed-records-kept", f"{topic}-{partition}: leader {node_id} holds {batch} below "
                                                       f"the HW {hw} where {known} was committed")
                continue
            committed.batches[batch.base_offset] = batch
            committed.end = max(committed.end, batch.last_offset + 1)
            if batch.producer_id >= 0:
                highest = committed.producer_epochs.get(batch.producer_id, -1)
                if batch.producer_epoch < highest:
                    self.violate("fenced-producer-epoch", f"{topic}-{partition}: producer {batch.producer_id} wrote "
                                                          f"at epoch {batch.producer_epoch} (offset "
                                                          f"{batch.base_offset}) after epoch {highest}")
                else:
                    committed.producer_epochs[batch.producer_id] = batch.producer_epoch

    def _check_replica_log(self, node_id: int, incarnation: int, key: tuple[str, int], partition_log,
                           claim: int) -> None:
        topic, partition = key
        view_key = (node_id, key)
        view = self._views.get(view_key)
        if view is None or view.incarnation != incarnation:
            view = self._views[view_key] = _ReplicaView(incarnation, partition_log.log_start_offset)
        leo = partition_log.log_end_offset
        if leo < view.verified:
            self.violate("committed-records-kept", f"{topic}-{partition}: node {node_id} truncated its log to {leo}, "
                                                   f"below offset {view.verified}, which was committed and held")
            view.verified = leo
            return
        committed = self._committed.get(key)
        if committed is None:
            return
        target = min(leo, claim, committed.high_watermark, committed.end)
        if target <= view.verified:
            return
        position = view.verified
        for batch in _batches_below(partition_log, position, target):
            expected = committed.batches.get(batch.base_offset)
            if expected != batch:
                self.violate("committed-records-kept", f"{topic}-{partition}: node {node_id}, which a leader counted as "
                                                       f"holding the log up to {claim}, holds {batch} below the HW "
                                                       f"{committed.high_watermark} where {expected} was committed")
                view.verified = target  # reported once; compared again only above
                return
            position = batch.last_offset + 1
        view.verified = max(view.verified, min(position, target))


def _batches_below(partition_log, start: int, end: int):
    """The batches of `partition_log` holding an offset in [start, end) (from its log start offset on)."""
    for header in partition_log.iter_batch_headers(max(start, partition_log.log_start_offset)):
        if header.base_offset >= end:
            return
        yield BatchId.of(header)


__all__ = ["BatchId", "INVARIANTS", "InvariantChecker"]
