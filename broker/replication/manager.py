"""`ReplicaManager`: this node's replicas, as leader or follower, driven by the metadata image.

It implements `MetadataListener`. For every partition whose `replicas` name
this node it:
- becomes leader (image leader == this node, new leader epoch): records the
  epoch's start offset (the LEO) in the leader epoch cache, starts a fresh
  `LeaderState` (follower progress unknown, ISR members taken as caught up
  now), stops fetching the partition, and tells the server
  (`PartitionLifecycle.on_become_leader`, where idempotent-producer state is
  rebuilt from the log);
- becomes follower (another leader or none, new leader epoch): stops serving
  clients, fails acks=all waiters, and hands the partition to the fetcher of
  the new leader, which truncates (KIP-101/279) before fetching;
- applies a committed ISR change of the same leader epoch;
- stops replicas no longer assigned here; the log is deleted when the topic is.

A partition whose log cannot be read while it takes its role (a damaged
segment, a failing disk: CorruptRecordError or OSError) is left neither
leading nor following, with one ERROR line, and the image's other partitions
are applied all the same; the next image tries it again. (Kafka takes the log
directory offline and lets the controller move its leaderships; this node has
one log directory for all its partitions, so it keeps serving the others.)

Leader side: `record_follower_fetch` feeds `LeaderState` (see
`broker.replication.partition` for the HW and ISR rules, KIP-497's maximal
ISR), proposes ISR expansions at once and ISR shrinks from a periodic check
(every replica.lag.time.max.ms / 2, as Kafka), through
`ControllerChannel.alter_partition`, one change in flight per partition.
acks=all waits in a purgatory (`wait_for_high_watermark`) woken when the HW
moves; a role change wakes it too (the request then answers
NOT_LEADER_OR_FOLLOWER).

HW persistence: every replica's HW is written every
replica.high.watermark.checkpoint.interval.ms (5 s) and at stop to
`replication-offset-checkpoint` in its log directory (Kafka's text format:
version 0, count, then "topic partition hw" lines; replaced atomically), and
read back when the replica is created, capped by the log end offset. A
restarted node that becomes leader thus exposes what was committed before
instead of hiding everything until its followers fetched again. A stale
checkpoint only makes the HW lower, never higher than the true one, since the
HW only grows while the log holds it.

Debug switches (planted bugs for the harness to find; all off by default):
`ack_before_replication` (acks=all answers after the local append),
`read_above_hwm` (the server lets consumers read to the LEO), `skip_truncation`
(followers never truncate on a leader change), `skip_dedup` (the server
skips idempotent sequence checks), `hwm_past_isr` (the HW follows the fastest
ISR follower, not the slowest: `LeaderState.maybe_advance_high_watermark`) and
`fenced_leader_acks` (acks=all waiters of a leader that lost its leadership
are answered OK instead of NOT_LEADER_OR_FOLLOWER) and `stale_epoch_fetch`
(the server's Fetch serves a current_leader_epoch older than the leader's
instead of answering FENCED_LEADER_EPOCH).

Thread-safety: none; everything runs on the broker's event loop.

Sources: Apache Kafka `ReplicaManager`, `Partition`, `DelayedProduce`
(purgatory), `ReplicaFetcherManager`; KIP-101, KIP-279, KIP-497, KIP-631.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from typing import Callable, Mapping, Protocol

from broker.io import Runtime
from broker.log.config import LogConfig
from broker.metadata.errors import ControllerError
from broker.metadata.image import NO_LEADER, MetadataImage, PartitionState
from broker.protocol.records import CorruptRecordError
from broker.replication.epochs import LeaderEpochCache
from broker.replication.partition import LeaderState

log = logging.getLogger("broker.replication")

LEADER = "leader"
FOLLOWER = "follower"
OK = "ok"
NOT_ENOUGH_REPLICAS_AFTER_APPEND = "not_enough_replicas_after_append"
REQUEST_TIMED_OUT = "request_timed_out"
NOT_LEADER = "not_leader_or_follower"


@dataclass(frozen=True)
class ReplicationSettings:
    replica_lag_time_max_ms: int = 30_000
    min_insync_replicas: int = 1
    replica_fetch_wait_max_ms: int = 500
    replica_fetch_max_bytes: int = 1 << 20
    replica_fetch_response_max_bytes: int = 10 << 20
    replica_fetch_backoff_ms: int = 1000
    request_timeout_ms: int = 30_000
    high_watermark_checkpoint_interval_ms: int = 5000
    ack_before_replication: bool = False
    read_above_hwm: bool = False
    skip_truncation: bool = False
    skip_dedup: bool = False
    hwm_past_isr: bool = False
    fenced_leader_acks: bool = False
    stale_epoch_fetch: bool = False


class PartitionLifecycle(Protocol):
    """The server's side of role changes (it owns request handling and producer state)."""

    def on_become_leader(self, topic: str, partition: int, partition_log) -> None: ...

    def on_become_follower(self, topic: str, partition: int, partition_log) -> None: ...

    def on_stopped(self, topic: str, partition: int) -> None: ...

    def on_high_watermark(self) -> None: ...


class Replica:
    """One partition hosted on this node."""

    def __init__(self, state: PartitionState, partition_log, epochs: LeaderEpochCache):
        self.topic = state.topic
        self.partition = state.partition
        self.topic_id = state.topic_id
        self.log = partition_log
        self.epochs = epochs
        self.state = state  # the latest image entry applied
        self.role = FOLLOWER
        self.leader_state: LeaderState | None = None
        self.follower_high_watermark = partition_log.log_start_offset
        self.min_insync_replicas = 1
        self.waiters: list[tuple[int, asyncio.Future]] = []

    @property
    def leader_epoch(self) -> int:
        return self.state.leader_epoch

    @property
    def high_watermark(self) -> int:
        if self.leader_state is not None:
            return self.leader_state.high_watermark
        return self.follower_high_watermark

    @property
    def isr(self) -> tuple[int, ...]:
        return self.leader_state.isr if self.leader_state is not None else self.state.isr

    def wake_waiters(self) -> None:
        waiters, self.waiters = self.waiters, []
        for _, future in waiters:
            if not future.done():
                future.set_result(None)

    def __repr__(self) -> str:
        return (f"Replica({self.topic}-{self.partition}, {self.role}, epoch {self.leader_epoch}, "
                f"LEO {self.log.log_end_offset}, HW {self.high_watermark}, ISR {self.isr})")


class ReplicaManager:
    """This node's replicas (see the module docstring).

    Restart safety: a restarted node replays its metadata log from the start,
    so its first images are old: acting on them would make it lead at a dead
    epoch (accepting writes a newer leader never sees) or follow a dead
    leader. With `incarnation_id` set (the id this process registers with),
    images are only recorded until one contains this process's own
    registration: that record was committed after everything the node may
    have missed, so from then on the image is current (Kafka's brokers
    likewise wait to catch up with the metadata log before serving). Without
    it (tests, a fake controller) every image is acted on; images older than
    the log's latest leader epoch are ignored in any case.
    """

    def __init__(
        self,
        node_id: int,
        runtime: Runtime,
        storage,
        channel,
        pool,
        settings: ReplicationSettings,
        lifecycle: PartitionLifecycle,
        log_config_for: Callable[[Mapping[str, str]], LogConfig],
    ):
        from broker.replication.fetcher import FetcherManager

        self.node_id = node_id
        self.runtime = runtime
        self.storage = storage
        self.channel = channel
        self.settings = settings
        self.lifecycle = lifecycle
        self.log_config_for = log_config_for
        self.replicas: dict[tuple[str, int], Replica] = {}
        self.image = MetadataImage()
        self.fetchers = FetcherManager(self, pool)
        self._isr_task: asyncio.Task | None = None
        self._checkpoint_task: asyncio.Task | None = None
        self._checkpointed: dict[str, dict[tuple[str, int], int]] = {}  # log dir -> HWs read at start
        self._alter_tasks: set[asyncio.Task] = set()
        self._stopped = False
        # Set by the node before it registers: images are acted on only once they include
        # this process's own registration (see the class docstring).
        self.incarnation_id = None
        self._caught_up = False
        self._unservable_logged: set[tuple[tuple[str, int], str]] = set()  # see _cannot_serve

    @property
    def caught_up(self) -> bool:
        """Whether the images acted on are current (see the class docstring): until then this node's
        view of leaders and epochs is its replayed, possibly stale, past."""
        return self.incarnation_id is None or self._caught_up

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._isr_task is None:
            self._isr_task = asyncio.ensure_future(self._isr_expiration_loop())
            self._checkpoint_task = asyncio.ensure_future(self._checkpoint_loop())

    async def stop(self) -> None:
        self._stopped = True
        for task in (self._isr_task, self._checkpoint_task):
            if task is not None:
                task.cancel()
        try:
            self.checkpoint_high_watermarks()
        except OSError as exc:
            log.warning("could not checkpoint high watermarks at stop: %s", exc)
        for task in list(self._alter_tasks):
            task.cancel()
        for replica in self.replicas.values():
            replica.wake_waiters()
        await self.fetchers.stop()

    # ------------------------------------------------------------------ metadata

    def on_metadata(self, old: MetadataImage, new: MetadataImage) -> None:
        if self._stopped:
            return  # shutting down: no new fetchers, no new leaderships
        self.image = new
        if self.incarnation_id is not None and not self._caught_up:
            broker = new.brokers.get(self.node_id)
            if broker is None or broker.incarnation_id != self.incarnation_id:
                return  # still replaying metadata older than this process (see the class docstring)
            self._caught_up = True
            log.info("metadata reached this process's registration (offset %d); acting on partition assignments", new.offset)
        hosted = {(s.topic, s.partition): s for s in new.partitions_of(self.node_id)}
        for key in [key for key in self.replicas if key not in hosted]:
            replica = self.replicas[key]
            deleted = new.topic_by_id(replica.topic_id) is None
            self._stop_replica(replica, delete=deleted)
        for key, state in hosted.items():
            try:
                self._host(key, state, new)
            except (CorruptRecordError, OSError) as exc:
                self._cannot_serve(key, state, exc)
        self.fetchers.refresh_endpoints(new)

    def _host(self, key: tuple[str, int], state: PartitionState, new: MetadataImage) -> None:
        """Create or update this node's replica of one partition the image assigns it."""
        topic = new.topics[state.topic]
        min_isr = int(topic.configs.get("min.insync.replicas", self.settings.min_insync_replicas))
        replica = self.replicas.get(key)
        if replica is not None and replica.topic_id != state.topic_id:
            # The topic was deleted and re-created under the same name between two images.
            self._stop_replica(replica, delete=True)
            replica = None
        if replica is None:
            replica = self._create_replica(state, topic.configs)
            replica.min_insync_replicas = min_isr
            self._apply_state(replica, state, first=True)
        else:
            replica.min_insync_replicas = min_isr
            self._apply_state(replica, state, first=False)

    def _cannot_serve(self, key: tuple[str, int], state: PartitionState, exc: Exception) -> None:
        """A partition whose log cannot be read (a damaged segment, a failing disk) while taking its role: it
        neither leads nor follows here, and the image's other partitions go on (one damaged log must not hold
        back the metadata of every other); the next image tries again. Logged once per partition and reason."""
        replica = self.replicas.get(key)
        if replica is not None:
            self.fetchers.remove(replica)
            replica.leader_state = None
            replica.role = FOLLOWER
            replica.wake_waiters()
            try:  # what already took the leadership (the coordinators) lets it go
                self.lifecycle.on_become_follower(replica.topic, replica.partition, replica.log)
            except Exception:
                log.exception("%s-%d: letting go of the partition failed", replica.topic, replica.partition)
        reason = f"{type(exc).__name__}: {exc}"
        if (key, reason) not in self._unservable_logged:
            self._unservable_logged.add((key, reason))
            log.error("%s-%d: cannot take its role (leader %s, epoch %d): its log cannot be read (%s); this node "
                      "neither leads nor follows it for now", key[0], key[1], state.leader, state.leader_epoch, reason)

    def _create_replica(self, state: PartitionState, configs) -> Replica:
        partition_log = self.storage.get(state.topic, state.partition)
        if partition_log is None:
            partition_log = self.storage.create(state.topic, state.partition, self.log_config_for(configs))
        epochs = LeaderEpochCache.load(self.runtime, partition_log.directory, partition_log.iter_batch_headers(partition_log.log_start_offset))
        epochs.truncate_from_end(partition_log.log_end_offset)
        replica = Replica(state, partition_log, epochs)
        log_dir = _log_dir_of(partition_log.directory)
        if log_dir not in self._checkpointed:
            self._checkpointed[log_dir] = read_high_watermarks(self.runtime, log_dir)
        checkpointed = self._checkpointed[log_dir].get((state.topic, state.partition))
        if checkpointed is not None:
            replica.follower_high_watermark = max(partition_log.log_start_offset, min(checkpointed, partition_log.log_end_offset))
        self.replicas[(state.topic, state.partition)] = replica
        return replica

    def _apply_state(self, replica: Replica, state: PartitionState, first: bool) -> None:
        old = replica.state
        replica.state = state
        if state.leader_epoch < replica.epochs.latest_epoch:
            # The image is older than this log (a restarted node replaying its metadata log):
            # acting on it would make this node lead, or follow, at an epoch long gone, and
            # assigning that epoch would wipe newer epoch boundaries. Wait for a current image.
            if first or replica.role == LEADER or self.fetchers.is_fetching(replica):
                log.info("%s-%d: metadata names leader epoch %d, older than this log's epoch %d; waiting for newer metadata",
                         replica.topic, replica.partition, state.leader_epoch, replica.epochs.latest_epoch)
                self._become_follower(replica, replace(state, leader=NO_LEADER))
            return
        if state.leader == self.node_id:
            if first or replica.role != LEADER or state.leader_epoch != old.leader_epoch:
                self._become_leader(replica, state)
            elif replica.leader_state is not None and state.partition_epoch >= replica.leader_state.partition_epoch:
                replica.leader_state.commit_isr(state.isr, state.partition_epoch)
                self._after_isr_change(replica)
        elif (first or replica.role != FOLLOWER or state.leader_epoch != old.leader_epoch or state.leader != old.leader
              or (state.leader != NO_LEADER and not self.fetchers.is_fetching(replica))):
            self._become_follower(replica, state)

    def _become_leader(self, replica: Replica, state: PartitionState) -> None:
        self.fetchers.remove(replica)
        now_ms = self.runtime.clock.monotonic_ms()
        leo = replica.log.log_end_offset
        replica.epochs.assign(state.leader_epoch, leo)
        high_watermark = min(max(replica.follower_high_watermark, replica.log.log_start_offset), leo)
        replica.leader_state = LeaderState.elect(
            self.node_id, state.replicas, state.isr, state.leader_epoch, state.partition_epoch, leo, high_watermark, now_ms
        )
        replica.role = LEADER
        replica.wake_waiters()
        log.info("%s-%d: became leader at epoch %d (LEO %d, HW %d, ISR %s)",
                 replica.topic, replica.partition, state.leader_epoch, leo, high_watermark, state.isr)
        self.lifecycle.on_become_leader(replica.topic, replica.partition, replica.log)
        self._maybe_advance_high_watermark(replica)

    def _become_follower(self, replica: Replica, state: PartitionState) -> None:
        if replica.leader_state is not None:
            replica.follower_high_watermark = replica.leader_state.high_watermark
        replica.leader_state = None
        replica.role = FOLLOWER
        replica.wake_waiters()
        self.lifecycle.on_become_follower(replica.topic, replica.partition, replica.log)
        self.fetchers.remove(replica)
        if state.leader != NO_LEADER:
            self.fetchers.add(replica, state.leader)
        log.info("%s-%d: became follower of %s at epoch %d (LEO %d)", replica.topic, replica.partition,
                 state.leader if state.leader != NO_LEADER else "nobody (offline)", state.leader_epoch, replica.log.log_end_offset)

    def _stop_replica(self, replica: Replica, delete: bool) -> None:
        self.fetchers.remove(replica)
        replica.leader_state = None
        replica.role = FOLLOWER
        replica.wake_waiters()
        del self.replicas[(replica.topic, replica.partition)]
        self.lifecycle.on_stopped(replica.topic, replica.partition)
        if delete:
            self.storage.delete_partition(replica.topic, replica.partition)
            log.info("%s-%d: deleted with its topic", replica.topic, replica.partition)
        else:
            log.info("%s-%d: no longer assigned to this node; stopped", replica.topic, replica.partition)

    # ------------------------------------------------------------------ leader side

    def hosted(self, topic: str, partition: int) -> Replica | None:
        return self.replicas.get((topic, partition))

    def after_leader_append(self, replica: Replica) -> None:
        """The leader appended records; with a one-member ISR the HW moves at once."""
        self._maybe_advance_high_watermark(replica)

    def record_follower_fetch(self, replica: Replica, follower_id: int, fetch_offset: int) -> None:
        state = replica.leader_state
        if state is None or follower_id not in state.followers:
            return
        leo = replica.log.log_end_offset
        state.update_follower(follower_id, fetch_offset, self.runtime.clock.monotonic_ms(), leo)
        self._maybe_advance_high_watermark(replica)
        proposed = state.proposed_expansion(follower_id)
        if proposed is not None:
            log.info("%s-%d: follower %d caught up (LEO %d, HW %d); proposing ISR %s",
                     replica.topic, replica.partition, follower_id, fetch_offset, state.high_watermark, proposed)
            self._alter_isr(replica, state, proposed)

    def _maybe_advance_high_watermark(self, replica: Replica) -> None:
        state = replica.leader_state
        if state is not None and state.maybe_advance_high_watermark(replica.log.log_end_offset,
                                                                    past_isr=self.settings.hwm_past_isr):
            replica.wake_waiters()
            self.lifecycle.on_high_watermark()

    def _after_isr_change(self, replica: Replica) -> None:
        self._maybe_advance_high_watermark(replica)
        replica.wake_waiters()  # a shrink may turn waiting acks=all into NOT_ENOUGH_REPLICAS_AFTER_APPEND

    def check_isr_expiration(self) -> None:
        now_ms = self.runtime.clock.monotonic_ms()
        for replica in list(self.replicas.values()):
            # Retention and DeleteRecords move the log start offset without telling us;
            # the epoch covering the new start now starts there (Kafka's truncateFromStart).
            replica.epochs.truncate_from_start(replica.log.log_start_offset)
            state = replica.leader_state
            if state is None:
                continue
            proposed = state.proposed_shrink(now_ms, replica.log.log_end_offset, self.settings.replica_lag_time_max_ms)
            if proposed is not None:
                log.info("%s-%d: followers %s lag more than replica.lag.time.max.ms=%d; proposing ISR %s",
                         replica.topic, replica.partition,
                         state.out_of_sync_replicas(now_ms, replica.log.log_end_offset, self.settings.replica_lag_time_max_ms),
                         self.settings.replica_lag_time_max_ms, proposed)
                self._alter_isr(replica, state, proposed)

    async def _isr_expiration_loop(self) -> None:
        interval_s = self.settings.replica_lag_time_max_ms / 2000
        while not self._stopped:
            await self.runtime.clock.sleep(interval_s)
            try:
                self.check_isr_expiration()
            except Exception:
                log.exception("ISR expiration check failed; it runs again in %.1f s", interval_s)

    def _alter_isr(self, replica: Replica, state: LeaderState, proposed: tuple[int, ...]) -> None:
        state.begin_isr_change(proposed)
        task = asyncio.ensure_future(self._send_alter_partition(replica, state, proposed))
        self._alter_tasks.add(task)
        task.add_done_callback(self._alter_tasks.discard)

    async def _send_alter_partition(self, replica: Replica, state: LeaderState, proposed: tuple[int, ...]) -> None:
        try:
            committed = await self.channel.alter_partition(
                replica.topic_id, replica.partition, state.leader_epoch, proposed, state.partition_epoch
            )
        except ControllerError as exc:
            log.warning("%s-%d: AlterPartition to ISR %s refused: %s", replica.topic, replica.partition, proposed, exc)
            if state.pending_isr == proposed:
                state.abort_isr_change()
            return
        if replica.leader_state is not state or committed.leader_epoch != state.leader_epoch:
            return  # leadership moved meanwhile; the image decides
        if committed.partition_epoch >= state.partition_epoch:
            state.commit_isr(committed.isr, committed.partition_epoch)
            log.info("%s-%d: ISR is now %s (partition epoch %d)", replica.topic, replica.partition, committed.isr, committed.partition_epoch)
            self._after_isr_change(replica)

    async def wait_for_high_watermark(self, replica: Replica, required_offset: int, timeout_ms: int) -> str:
        """acks=all: wait until the HW reaches `required_offset` (the batch's last offset + 1).

        Returns OK, NOT_ENOUGH_REPLICAS_AFTER_APPEND, REQUEST_TIMED_OUT or NOT_LEADER.
        """
        if self.settings.ack_before_replication:
            return OK
        deadline_ns = self.runtime.clock.monotonic_ns() + timeout_ms * 1_000_000
        leader_epoch = replica.leader_epoch
        while True:
            state = replica.leader_state
            if state is None or replica.role != LEADER or state.leader_epoch != leader_epoch or self._stopped:
                # fenced_leader_acks (a planted bug): the local append is taken for a committed one,
                # though the new leader may never have it and truncate it away here.
                return OK if self.settings.fenced_leader_acks and not self._stopped else NOT_LEADER
            verdict = state.acks_all_verdict(required_offset, replica.min_insync_replicas)
            if verdict is not None:
                return OK if verdict == "ok" else NOT_ENOUGH_REPLICAS_AFTER_APPEND
            remaining_s = (deadline_ns - self.runtime.clock.monotonic_ns()) / 1e9
            if remaining_s <= 0:
                return REQUEST_TIMED_OUT
            future = asyncio.get_running_loop().create_future()
            replica.waiters.append((required_offset, future))
            sleeper = asyncio.ensure_future(self.runtime.clock.sleep(remaining_s))
            try:
                await asyncio.wait([future, sleeper], return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeper.cancel()

    # ------------------------------------------------------------------ HW checkpoint

    def checkpoint_high_watermarks(self) -> None:
        by_dir: dict[str, dict[tuple[str, int], int]] = {}
        for (topic, partition), replica in self.replicas.items():
            by_dir.setdefault(_log_dir_of(replica.log.directory), {})[(topic, partition)] = replica.high_watermark
        for log_dir, marks in by_dir.items():
            write_high_watermarks(self.runtime, log_dir, marks)

    async def _checkpoint_loop(self) -> None:
        interval_s = self.settings.high_watermark_checkpoint_interval_ms / 1000
        failing = False
        while not self._stopped:
            await self.runtime.clock.sleep(interval_s)
            try:
                self.checkpoint_high_watermarks()
            except OSError as exc:  # a full disk: only recovery work is lost; one line until it works again
                if not failing:
                    log.warning("high watermark checkpoint failed (%s); retrying every %.1f s", exc, interval_s)
                failing = True
            else:
                if failing:
                    log.info("high watermark checkpoint written again")
                failing = False

    # ------------------------------------------------------------------ follower side (called by the fetcher)

    def follower_appended(self, replica: Replica, headers) -> None:
        for _, header in headers:
            if header.partition_leader_epoch >= 0 and header.partition_leader_epoch > replica.epochs.latest_epoch:
                replica.epochs.assign(header.partition_leader_epoch, header.base_offset)

    def follower_truncate(self, replica: Replica, offset: int) -> None:
        if offset >= replica.log.log_end_offset:
            return
        log.info("%s-%d: truncating from LEO %d to %d (leader epoch %d, HW %d)", replica.topic, replica.partition,
                 replica.log.log_end_offset, offset, replica.leader_epoch, replica.follower_high_watermark)
        if offset < replica.follower_high_watermark:
            # records below the HW were committed: every ISR member has them and no clean election
            # picks a leader without them, so cutting them means an unclean election or a bug
            log.warning("%s-%d: truncating below the high watermark %d, to %d: committed records are removed",
                        replica.topic, replica.partition, replica.follower_high_watermark, offset)
        replica.log.truncate_to(offset)
        replica.epochs.truncate_from_end(replica.log.log_end_offset)
        replica.follower_high_watermark = min(replica.follower_high_watermark, replica.log.log_end_offset)

    def follower_truncate_fully(self, replica: Replica, start_offset: int) -> None:
        log.info("%s-%d: fetch offset %d is below the leader's log start offset %d; restarting the log there",
                 replica.topic, replica.partition, replica.log.log_end_offset, start_offset)
        replica.log.truncate_fully_and_start_at(start_offset)
        replica.epochs.clear()
        replica.follower_high_watermark = start_offset

    def follower_high_watermark(self, replica: Replica, leader_high_watermark: int) -> None:
        replica.follower_high_watermark = max(replica.log.log_start_offset, min(leader_high_watermark, replica.log.log_end_offset))


HIGH_WATERMARK_CHECKPOINT_FILE = "replication-offset-checkpoint"


def _log_dir_of(partition_directory: str) -> str:
    return partition_directory.rstrip("/").rpartition("/")[0] or "/"


def write_high_watermarks(runtime: Runtime, log_dir: str, marks: dict[tuple[str, int], int]) -> None:
    lines = ["0", str(len(marks))] + [f"{topic} {partition} {hw}" for (topic, partition), hw in sorted(marks.items())]
    disk = runtime.disk
    tmp_path = f"{log_dir}/{HIGH_WATERMARK_CHECKPOINT_FILE}.tmp"
    handle = disk.open(tmp_path, "wb")
    try:
        handle.write(("\n".join(lines) + "\n").encode("ascii"))
        handle.fsync()
    finally:
        handle.close()
    disk.rename(tmp_path, f"{log_dir}/{HIGH_WATERMARK_CHECKPOINT_FILE}")
    disk.fsync_dir(log_dir)


def read_high_watermarks(runtime: Runtime, log_dir: str) -> dict[tuple[str, int], int]:
    """The checkpointed HWs of `log_dir` ({} if none, or unreadable: the HWs are then relearnt)."""
    path = f"{log_dir}/{HIGH_WATERMARK_CHECKPOINT_FILE}"
    disk = runtime.disk
    if not disk.exists(path):
        return {}
    handle = disk.open(path, "rb")
    try:
        raw = handle.read()
    finally:
        handle.close()
    try:
        if not raw.endswith(b"\n"):
            raise ValueError("no final newline (a torn write)")
        lines = raw.decode("ascii").split("\n")[:-1]
        if lines[0] != "0" or int(lines[1]) != len(lines) - 2:
            raise ValueError(f"bad header {lines[:2]}")
        marks = {}
        for line in lines[2:]:
            topic, partition, hw = line.split(" ")
            marks[(topic, int(partition))] = int(hw)
        return marks
    except (ValueError, IndexError, UnicodeDecodeError) as exc:
        log.warning("%s is unreadable (%s); high watermarks will be relearnt from the leaders", path, exc)
        return {}


__all__ = [
    "HIGH_WATERMARK_CHECKPOINT_FILE", "read_high_watermarks", "write_high_watermarks",
    "LEADER", "FOLLOWER", "NOT_ENOUGH_REPLICAS_AFTER_APPEND", "NOT_LEADER", "OK", "REQUEST_TIMED_OUT",
    "PartitionLifecycle", "Replica", "ReplicaManager", "ReplicationSettings",
]
