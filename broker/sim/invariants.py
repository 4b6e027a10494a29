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

Cost (what runs when): every step reads each leader's HW and each verified
log's end offset, a few microseconds; a leader whose HW moved is checked at
once (`single-leader-per-epoch`, `leader-hw-monotonic`, `isr-holds-hw`); the
batch-by-batch comparisons of `committed-records-kept`, which read the logs,
run at most once per `compare_after_ms` (100) of virtual time after a HW
moved, on the state then. bench/sim_speed.py measures what it all costs.

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
  epoch (a bumped epoch fences the older ones, KIP-360/KIP-98). It can fail
  only under `SimOptions.delivery == "exactly-once"`, whose transactional
  producers bump their epoch after a failure (broker.sim.transactions); the
  idempotent producers of `SimOptions.idempotent` take a new producer id
  instead, and plain producers write no producer id.
- `markers-written`: a transaction coordinator moves a transaction from
  PrepareCommit or PrepareAbort to CompleteCommit or CompleteAbort only once
  its marker is written and replicated on every partition of it (KIP-98), so
  at that moment no partition's leader still counts the producer's
  transaction open (`ProducerStateTable.ongoing`). Each node's coordinator is
  read when a `__transaction_state` leader's HW moves (every state change
  moves it): a transaction seen preparing, with its partitions, and later
  complete at the same producer id and epoch is checked then, before the
  producer can have begun its next transaction (the coordinator holds it
  until the completion is logged). A transaction that prepared and completed
  between two such reads is not checked.
- `logs-readable`: every batch the comparisons above read from a replica's
  log (from where they last stopped up to the HW or the claim) reads back:
  its header is sane and whole. Recovery cuts a log at its first unreadable
  byte, so a log that cannot be read was left damaged (a torn write kept, as
  `logquake.debug.keep.torn.tail` plants). Reported once per node, partition
  and incarnation.

Blind spots, stated: a log truncated and appended again between two
comparisons, to at least its verified end, is only caught by the comparison
of the batches above that end; a leader that crashes within
`compare_after_ms` of advancing its HW is not read for those records (the
next leader's are taken as committed; the queue checker still sees a lost
write); batches below the log start offset (retention, DeleteRecords) are not
compared; a crashed node is not looked at until it restarts; a partition
newly assigned to a running node is watched within `compare_after_ms`.

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

from broker.coordinator.txn_coordinator import TRANSACTION_STATE_TOPIC
from broker.coordinator.txn_state import PREPARING, TxnState
from broker.protocol.records import CorruptRecordError

INVARIANTS: dict[str, str] = {
    "single-leader-per-epoch": "at most one node leads a partition at a given leader epoch",
    "leader-hw-monotonic": "the high watermark never goes backwards on a leader (one node, one epoch)",
    "isr-holds-hw": "when a leader advances the HW to h, every other maximal-ISR member had fetched from h or beyond",
    "committed-records-kept": "a record below the high watermark is never truncated or replaced on any replica",
    "fenced-producer-epoch": "a producer epoch older than one already written never writes again (exactly-once "
                             "runs only: their transactional producers bump epochs)",
    "logs-readable": "every replica's log reads back batch by batch up to the offsets compared",
    "markers-written": "when a coordinator completes a transaction, no partition of it still holds the "
                       "transaction open (its commit or abort marker is on the partition's leader)",
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

    def __init__(self, cluster, keep: int = 10, compare_after_ms: float = 100.0):
        self.cluster = cluster
        self.compare_after_ns = int(compare_after_ms * 1e6)
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
        self._verified: list[tuple[int, tuple[str, int], object, _ReplicaView]] = []  # (node, tp, log, its view)
        self._nodes: tuple = ()  # the running nodes when the replicas to watch were last listed
        self._rewatch_at_ns = 0  # when they are listed again (a replica created since is then watched)
        self._watch: list[tuple[int, int, tuple[str, int], object]] = []  # (node, incarnation, tp, replica)
        self._pending: dict[tuple[int, tuple[str, int]], tuple[int, object, object]] = {}  # leaders whose HW moved
        self._compare_at_ns = 0  # when the pending comparisons are due
        self._seen: dict[int, tuple[object, int]] = {}  # id(LeaderState) -> (it, the HW last checked)
        self._unreadable: set[tuple] = set()  # (node, tp, incarnation) whose log was found unreadable
        # (transactional id, producer id, epoch) -> its partitions, of a transaction a coordinator was seen preparing
        self._preparing: dict[tuple[str, int, int], tuple[tuple[str, int], ...]] = {}

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
        # Per step only what can change at any step is read: each leader's HW (compared with the HW last checked
        # for that LeaderState) and each verified log's end (compared with what was verified). The rest (the
        # other invariants, the comparison of batches) runs when a leader's HW moved, which is when a claim on a
        # replica's log can grow. The replicas to watch are listed again when the running nodes change (a crash,
        # a restart) and every `compare_after_ms` of virtual time (a partition newly assigned).
        self.checks += 1
        if self._pending and self.loop._now_ns >= self._compare_at_ns:
            self._compare_pending()
        nodes = tuple(self.cluster.nodes.values())
        if nodes != self._nodes or self.loop._now_ns >= self._rewatch_at_ns:
            self._rewatch(nodes)
        seen = self._seen
        for node_id, incarnation, key, replica in self._watch:
            state = replica.leader_state
            if state is not None:
                memo = seen.get(id(state))
                if memo is None or memo[0] is not state or memo[1] != state.high_watermark:
                    seen[id(state)] = (state, state.high_watermark)  # the state is kept: its id is not reused
                    self._check_leader(node_id, incarnation, key, replica, state)
        for node_id, key, partition_log, view in self._verified:
            if partition_log.log_end_offset < view.verified:
                self._truncated(node_id, key, partition_log, view)

    def _rewatch(self, nodes: tuple) -> None:
        self._nodes = nodes
        self._rewatch_at_ns = self.loop._now_ns + self.compare_after_ns
        self._watch = []
        for node_id, node in self.cluster.nodes.items():
            manager = node.cluster.replica_manager
            if manager is not None:
                self._watch.extend((node_id, node.incarnation, key, replica) for key, replica in manager.replicas.items())
        running = {(node_id, node.incarnation) for node_id, node in self.cluster.nodes.items()}
        self._views = {k: view for k, view in self._views.items() if (k[0], view.incarnation) in running}
        self._verified = [entry for entry in self._verified if self._views.get((entry[0], entry[1])) is entry[3]]

    def _truncated(self, node_id: int, key: tuple[str, int], partition_log, view: "_ReplicaView") -> None:
        topic, partition = key
        self.violate("committed-records-kept", f"{topic}-{partition}: node {node_id} truncated its log to "
                                               f"{partition_log.log_end_offset}, below offset {view.verified}, which "
                                               "was committed and held")
        view.verified = partition_log.log_end_offset

    def _claim(self, node_id: int, key: tuple[str, int], state, hw: int) -> None:
        """Compare with the committed log what the leader `node_id` counts as held: its own log below its HW, each
        other maximal-ISR member's below the lower of the HW and where it last fetched from."""
        self._verify(node_id, key, hw)
        for member in state.maximal_isr:
            follower = state.followers.get(member)
            if member != node_id and follower is not None and follower.log_end_offset > 0:
                self._verify(member, key, min(follower.log_end_offset, hw))

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
        if topic == TRANSACTION_STATE_TOPIC:
            self._check_transactions(node_id)
        committed = self._committed.get(key)
        if committed is None:
            committed = self._committed[key] = _Committed()
        committed.high_watermark = max(committed.high_watermark, hw)
        if not self._pending:
            self._compare_at_ns = self.loop._now_ns + self.compare_after_ns
        self._pending[(node_id, key)] = (incarnation, replica, state)

    def _check_transactions(self, node_id: int) -> None:
        """`markers-written`, for the transactions `node_id` coordinates (see the module docstring)."""
        node = self.cluster.nodes.get(node_id)
        coordinator = getattr(getattr(getattr(node, "handlers", None), "txn_apis", None), "coordinator", None)
        if coordinator is None:
            return
        for _partition, (_epoch, machine) in list(coordinator.owned.items()):
            for transactional_id, meta in machine.transactions.items():
                key = (transactional_id, meta.producer_id, meta.producer_epoch)
                if meta.state in PREPARING:
                    self._preparing[key] = tuple(sorted(meta.partitions))
                elif meta.state in (TxnState.COMPLETE_COMMIT, TxnState.COMPLETE_ABORT) and key in self._preparing:
                    for topic, partition in self._preparing.pop(key):
                        self._check_marker(transactional_id, meta, topic, partition)

    def _check_marker(self, transactional_id: str, meta, topic: str, partition: int) -> None:
        """The leader of `topic`-`partition` (the running node leading it at the highest leader epoch) no longer
        counts `meta`'s producer in an open transaction."""
        leading = []
        for node_id, node in self.cluster.nodes.items():
            manager = node.cluster.replica_manager
            replica = manager.replicas.get((topic, partition)) if manager is not None else None
            if replica is not None and replica.leader_state is not None:
                leading.append((replica.leader_state.leader_epoch, node_id, node))
        if not leading:
            return  # no leader now: the next one rebuilds its state from the log, which the other checks read
        _epoch, node_id, node = max(leading, key=lambda entry: entry[:2])
        state = node.handlers.leader.partitions.get((topic, partition))
        first = state.producers.ongoing.get(meta.producer_id) if state is not None else None
        if first is not None:
            what = "committed" if meta.state == TxnState.COMPLETE_COMMIT else "aborted"
            self.violate("markers-written", f"{topic}-{partition}: the coordinator {what} transaction "
                                            f"{transactional_id!r} (producer {meta.producer_id} epoch "
                                            f"{meta.producer_epoch}), but leader {node_id} still holds it open from "
                                            f"offset {first}: its marker is missing")

    def _compare_pending(self) -> None:
        """The batch comparisons of the leaders whose HW moved in the last `compare_after_ns` of virtual time, on
        the state then (the comparisons read the logs, the costly part: at most once per that period rather than
        at every step where a HW moved)."""
        pending, self._pending = self._pending, {}
        for (node_id, key), (incarnation, replica, state) in pending.items():
            node = self.cluster.nodes.get(node_id)
            if node is None or node.incarnation != incarnation:
                continue  # crashed within the instant: its log is gone with it; the next leader's HW reads it
            committed = self._committed[key]
            hw = state.high_watermark
            if hw > committed.end:
                self._commit(key, committed, replica.log, node_id, hw)
            if replica.leader_state is state:  # still leading as it did: what it counts as held is compared
                self._claim(node_id, key, state, hw)

    def finish(self) -> None:
        """Compare what the last instant left pending (the end of the run)."""
        if self._pending:
            self._compare_pending()

    def _commit(self, key: tuple[str, int], committed: _Committed, partition_log, node_id: int, hw: int) -> None:
        """Record the leader's batches from the committed end up to `hw`."""
        topic, partition = key
        for batch in self._readable(node_id, key, _batches_below(partition_log, committed.end, hw)):
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

    def _verify(self, node_id: int, key: tuple[str, int], claim: int) -> None:
        """Compare node `node_id`'s log of `key` with the committed log up to `claim` (and its log end)."""
        node = self.cluster.nodes.get(node_id)
        manager = node.cluster.replica_manager if node is not None else None
        replica = manager.replicas.get(key) if manager is not None else None
        if replica is None:
            return  # not running, or not hosting the partition (yet): nothing to compare
        partition_log = replica.log
        view = self._views.get((node_id, key))
        if view is None or view.incarnation != node.incarnation:
            view = self._views[(node_id, key)] = _ReplicaView(node.incarnation, partition_log.log_start_offset)
            self._verified.append((node_id, key, partition_log, view))
        if partition_log.log_end_offset < view.verified:
            self._truncated(node_id, key, partition_log, view)
            return
        committed = self._committed[key]
        target = min(partition_log.log_end_offset, claim, committed.high_watermark, committed.end)
        if target <= view.verified:
            return
        position = view.verified
        for batch in self._readable(node_id, key, _batches_below(partition_log, position, target)):
            expected = committed.batches.get(batch.base_offset)
            if expected != batch:
                topic, partition = key
                self.violate("committed-records-kept", f"{topic}-{partition}: node {node_id}, which a leader counted as "
                                                       f"holding the log up to {claim}, holds {batch} below the HW "
                                                       f"{committed.high_watermark} where {expected} was committed")
                view.verified = target  # reported once; compared again only above
                return
            position = batch.last_offset + 1
        view.verified = max(view.verified, min(position, target))

    def _readable(self, node_id: int, key: tuple[str, int], batches):
        """`batches`, up to a batch that cannot be read (a `logs-readable` violation, reported once per node,
        partition and incarnation)."""
        try:
            yield from batches
        except CorruptRecordError as exc:
            node = self.cluster.nodes.get(node_id)
            seen = (node_id, key, node.incarnation if node is not None else None)
            if seen not in self._unreadable:
                self._unreadable.add(seen)
                topic, partition = key
                self.violate("logs-readable", f"{topic}-{partition}: node {node_id}'s log cannot be read: {exc}")


def _batches_below(partition_log, start: int, end: int):
    """The batches of `partition_log` holding an offset in [start, end) (from its log start offset on)."""
    for header in partition_log.iter_batch_headers(max(start, partition_log.log_start_offset)):
        if header.base_offset >= end:
            return
        yield BatchId.of(header)


__all__ = ["BatchId", "INVARIANTS", "InvariantChecker"]
