"""Leader-side replication state of one partition: follower progress, high watermark, ISR changes.

`LeaderState` is pure bookkeeping (no I/O, time passed in as `now_ms`), so the
rules below are unit-tested with a fake clock; `ReplicaManager` feeds it
follower fetches and carries out the ISR changes it proposes through the
controller.

Rules (Apache Kafka's `Partition`, with KIP-497's AlterPartition):
- Follower progress: a Fetch from follower F at `fetch_offset` sets F's log end
  offset (LEO). F's `last_caught_up_ms` becomes the fetch time when it fetched
  from the leader's LEO, or the time of F's previous fetch when it has now
  reached the LEO the leader had then (it was caught up as of that moment).
- High watermark (HW): the minimum LEO over the leader and the *maximal ISR*,
  and it never decreases. The maximal ISR is the committed ISR plus a pending
  expansion (the new member already counts, since its ISR entry may be
  committed any moment and the HW must not then be above its LEO) and, for a
  pending shrink, still the old, larger ISR: a shrink takes effect for the HW
  only once the controller committed it. This is Kafka's `maximalIsr`.
- ISR shrink: an ISR follower is out of sync when its LEO differs from the
  leader's and it has not been caught up for more than replica.lag.time.max.ms.
- ISR expansion: a follower outside the ISR joins when its LEO reaches the HW
  and the start offset of the leader's current epoch (so a new member holds
  everything the current leader wrote before it could have diverged).
- At most one ISR change is in flight; the committed ISR is the controller's.
- acks=all completes when HW > the batch's last offset; it then fails with
  NOT_ENOUGH_REPLICAS_AFTER_APPEND if the maximal ISR is smaller than
  min.insync.replicas (the data is on fewer replicas than asked).

Thread-safety: none; used from the broker's event loop.

Sources: Apache Kafka `Partition.scala` (updateFollowerFetchState,
maybeIncrementLeaderHW, getOutOfSyncReplicas, isFollowerInSync,
checkEnoughReplicasReachOffset), `Replica.scala`; KIP-497 (AlterIsr), KIP-392.
"""

from __future__ import annotations

from dataclasses import dataclass, field

UNKNOWN_OFFSET = -1


@dataclass(slots=True)
class FollowerState:
    """What the leader knows of one follower."""

    replica_id: int
    log_end_offset: int = UNKNOWN_OFFSET
    last_caught_up_ms: int = 0
    last_fetch_leader_log_end_offset: int = UNKNOWN_OFFSET
    last_fetch_ms: int = 0


@dataclass(slots=True)
class LeaderState:
    """The leader's view of a partition for one leader epoch (a new epoch builds a new one)."""

    local_id: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]  # as committed by the controller
    leader_epoch: int
    partition_epoch: int
    epoch_start_offset: int
    high_watermark: int
    followers: dict[int, FollowerState] = field(default_factory=dict)
    pending_isr: tuple[int, ...] | None = None  # an AlterPartition in flight

    @classmethod
    def elect(
        cls,
        local_id: int,
        replicas: tuple[int, ...],
        isr: tuple[int, ...],
        leader_epoch: int,
        partition_epoch: int,
        epoch_start_offset: int,
        high_watermark: int,
        now_ms: int,
    ) -> "LeaderState":
        """The state right after this node became leader: follower progress unknown.

        ISR members are taken as caught up as of now, so that the new leader does
        not drop them before they had a chance to fetch (Kafka does the same).
        """
        if local_id not in replicas:
            raise ValueError(f"node {local_id} leads a partition whose replicas {replicas} do not include it")
        followers = {
            replica: FollowerState(replica, last_caught_up_ms=now_ms if replica in isr else 0)
            for replica in replicas
            if replica != local_id
        }
        return cls(local_id, tuple(replicas), tuple(isr), leader_epoch, partition_epoch, epoch_start_offset,
                   high_watermark, followers)

    @property
    def maximal_isr(self) -> tuple[int, ...]:
        if self.pending_isr is None:
            return self.isr
        return tuple(sorted(set(self.isr) | set(self.pending_isr)))

    def update_follower(self, replica_id: int, fetch_offset: int, now_ms: int, leader_log_end_offset: int) -> None:
        follower = self.followers.get(replica_id)
        if follower is None:
            raise KeyError(f"replica {replica_id} is not a follower of this partition (replicas {self.replicas})")
        if fetch_offset >= leader_log_end_offset:
            follower.last_caught_up_ms = max(follower.last_caught_up_ms, now_ms)
        elif fetch_offset >= follower.last_fetch_leader_log_end_offset >= 0:
            follower.last_caught_up_ms = max(follower.last_caught_up_ms, follower.last_fetch_ms)
        follower.log_end_offset = fetch_offset
        follower.last_fetch_leader_log_end_offset = leader_log_end_offset
        follower.last_fetch_ms = now_ms

    def maybe_advance_high_watermark(self, leader_log_end_offset: int, past_isr: bool = False) -> bool:
        """Move the HW up to the minimum LEO of the maximal ISR; True if it moved.

        `past_isr` plants a bug (logquake.debug.hwm.past.isr): the HW follows the
        fastest ISR follower instead of the slowest, so it can pass what the others hold.
        """
        follower_leos = []
        for replica in self.maximal_isr:
            if replica == self.local_id:
                continue
            follower = self.followers.get(replica)
            follower_leos.append(follower.log_end_offset if follower is not None else UNKNOWN_OFFSET)
        if not follower_leos:
            candidate = leader_log_end_offset
        else:
            candidate = min(leader_log_end_offset, max(follower_leos) if past_isr else min(follower_leos))
        if candidate > self.high_watermark:
            self.high_watermark = candidate
            return True
        return False

    def out_of_sync_replicas(self, now_ms: int, leader_log_end_offset: int, lag_time_max_ms: int) -> tuple[int, ...]:
        out = []
        for replica in self.isr:
            if replica == self.local_id:
                continue
            follower = self.followers[replica]
            caught_up = follower.log_end_offset == leader_log_end_offset or now_ms - follower.last_caught_up_ms <= lag_time_max_ms
            if not caught_up:
                out.append(replica)
        return tuple(out)

    def proposed_shrink(self, now_ms: int, leader_log_end_offset: int, lag_time_max_ms: int) -> tuple[int, ...] | None:
        """The ISR to propose if some members fell behind (and no change is in flight), else None."""
        if self.pending_isr is not None:
            return None
        out = self.out_of_sync_replicas(now_ms, leader_log_end_offset, lag_time_max_ms)
        if not out:
            return None
        return tuple(r for r in self.isr if r not in out)

    def is_follower_in_sync(self, replica_id: int) -> bool:
        follower = self.followers.get(replica_id)
        if follower is None:
            return False
        return follower.log_end_offset >= self.high_watermark and follower.log_end_offset >= self.epoch_start_offset

    def proposed_expansion(self, replica_id: int) -> tuple[int, ...] | None:
        """The ISR to propose if `replica_id` just caught up (and no change is in flight), else None."""
        if self.pending_isr is not None or replica_id in self.isr or replica_id not in self.followers:
            return None
        if not self.is_follower_in_sync(replica_id):
            return None
        return tuple(sorted((*self.isr, replica_id)))

    def begin_isr_change(self, proposed: tuple[int, ...]) -> None:
        assert self.pending_isr is None, "one ISR change at a time"
        assert self.local_id in proposed, "the leader never removes itself from the ISR"
        self.pending_isr = tuple(proposed)

    def commit_isr(self, isr: tuple[int, ...], partition_epoch: int) -> None:
        """The controller committed an ISR (ours or one it decided); a pending change is settled."""
        self.isr = tuple(isr)
        self.partition_epoch = partition_epoch
        self.pending_isr = None

    def abort_isr_change(self) -> None:
        self.pending_isr = None

    def acks_all_verdict(self, required_offset: int, min_insync_replicas: int) -> str | None:
        """None while waiting; "ok" or "not_enough_replicas_after_append" once the HW passed `required_offset`."""
        if self.high_watermark < required_offset:
            return None
        if len(self.maximal_isr) < min_insync_replicas:
            return "not_enough_replicas_after_append"
        return "ok"


__all__ = ["FollowerState", "LeaderState", "UNKNOWN_OFFSET"]
