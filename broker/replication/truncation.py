"""Where a follower truncates its log when it starts following a new leader.

After a leader change a follower may hold records the new leader never had
(they were not committed: written by an old leader to a minority). Truncating
to the high watermark, as Kafka did before KIP-101, loses committed data in
some crash sequences and keeps divergent data in others; KIP-101 instead asks
the leader where the follower's latest epoch ends in the leader's log
(OffsetForLeaderEpoch) and cuts there. KIP-279 fixes the case where the leader
does not know the follower's latest epoch: the leader answers with the largest
epoch it has below it, the follower truncates to where *that* epoch ends in
its own log, and asks again until both name the same epoch.

`truncation_offset` is the decision, a pure function; the fetcher runs the
rounds. Its cases, for follower LEO `leo`, and the leader's answer
(`leader_epoch`, `leader_end_offset`):

1. `leader_end_offset` undefined (the leader knows none of our epochs, or we
   have none): truncate to our high watermark (the pre-KIP-101 rule; nothing
   better is known) and stop.
2. the leader answered for the epoch we asked: truncate to
   min(`leader_end_offset`, `leo`) and stop.
3. the leader answered for a smaller epoch L: look L up in our own cache.
   If we have L as well, truncate to min(our end of L, `leader_end_offset`) and
   stop. If we do not (our largest epoch below L is smaller), truncate to our
   end of that epoch (min with `leader_end_offset`) and ask again with what is
   then our latest epoch.

Thread-safety: pure.

Sources: KIP-101 (scenarios 1 and 2: data loss and divergence with HW
truncation), KIP-279 (multiple rounds), Apache Kafka
`AbstractFetcherThread.getOffsetTruncationState`.
"""

from __future__ import annotations

from dataclasses import dataclass

from broker.replication.epochs import UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET, LeaderEpochCache


@dataclass(frozen=True, slots=True)
class TruncationDecision:
    offset: int  # truncate the log to this offset (a no-op if it is >= the log end offset)
    completed: bool  # False: ask OffsetForLeaderEpoch again with the latest epoch left after truncating


def truncation_offset(
    requested_epoch: int,
    leader_epoch: int,
    leader_end_offset: int,
    cache: LeaderEpochCache,
    log_end_offset: int,
    high_watermark: int,
) -> TruncationDecision:
    if leader_end_offset == UNDEFINED_EPOCH_OFFSET:
        return TruncationDecision(min(high_watermark, log_end_offset), True)
    if leader_epoch == UNDEFINED_EPOCH or leader_epoch == requested_epoch:
        return TruncationDecision(min(leader_end_offset, log_end_offset), True)
    own_epoch, own_end_offset = cache.end_offset_for(leader_epoch, log_end_offset)
    if own_epoch == UNDEFINED_EPOCH:
        # We know no epoch at or below the leader's answer: the leader's end is all we have.
        return TruncationDecision(min(leader_end_offset, log_end_offset), True)
    if own_epoch == leader_epoch:
        return TruncationDecision(min(own_end_offset, leader_end_offset, log_end_offset), True)
    return TruncationDecision(min(own_end_offset, leader_end_offset, log_end_offset), False)


__all__ = ["TruncationDecision", "truncation_offset"]
