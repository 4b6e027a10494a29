"""Unit tests of the replication rules: leader epoch cache, truncation (KIP-101/279), HW and ISR (fake clock)."""

from __future__ import annotations

import pytest

from broker.io import Runtime
from broker.protocol.records import BatchHeader
from broker.replication.epochs import (
    CHECKPOINT_FILE,
    UNDEFINED_EPOCH,
    UNDEFINED_EPOCH_OFFSET,
    EpochEntry,
    LeaderEpochCache,
    read_checkpoint,
)
from broker.replication.partition import LeaderState
from broker.replication.truncation import TruncationDecision, truncation_offset


def cache_of(*pairs) -> LeaderEpochCache:
    return LeaderEpochCache(Runtime.real(), None, [EpochEntry(e, o) for e, o in pairs])


def header(base_offset: int, last_offset_delta: int, epoch: int) -> BatchHeader:
    return BatchHeader(base_offset, 49, epoch, 2, 0, 0, last_offset_delta, 0, 0, -1, -1, -1, last_offset_delta + 1)


# ---------------------------------------------------------------- epoch cache


def test_end_offset_for_latest_epoch_is_the_log_end_offset():
    cache = cache_of((0, 0), (2, 10), (5, 30))
    assert cache.end_offset_for(5, 42) == (5, 42)


def test_end_offset_for_older_epoch_is_where_the_next_epoch_starts():
    cache = cache_of((0, 0), (2, 10), (5, 30))
    assert cache.end_offset_for(2, 42) == (2, 30)
    # epoch 3 was never seen here: answer for the largest known epoch below it (KIP-279)
    assert cache.end_offset_for(3, 42) == (2, 30)
    assert cache.end_offset_for(0, 42) == (0, 10)


def test_end_offset_for_unknown_epochs():
    cache = cache_of((2, 10), (5, 30))
    assert cache.end_offset_for(6, 42) == (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)
    assert cache.end_offset_for(UNDEFINED_EPOCH, 42) == (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)
    assert cache.end_offset_for(1, 42) == (1, 10)  # below every known epoch: it ended where the first known one starts
    assert cache_of().end_offset_for(0, 0) == (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)


def test_assign_ignores_repeats_and_drops_conflicting_entries():
    cache = cache_of((0, 0), (2, 10))
    cache.assign(2, 15)
    assert cache.entries == [EpochEntry(0, 0), EpochEntry(2, 10)]
    cache.assign(3, 8)  # starts below epoch 2's start: epoch 2's entry conflicts and goes
    assert cache.entries == [EpochEntry(0, 0), EpochEntry(3, 8)]
    with pytest.raises(ValueError, match="must both be >= 0"):
        cache.assign(-1, 3)


def test_truncate_from_end_and_start():
    cache = cache_of((0, 0), (2, 10), (5, 30))
    cache.truncate_from_end(30)
    assert cache.entries == [EpochEntry(0, 0), EpochEntry(2, 10)]
    cache.truncate_from_end(11)
    assert cache.entries == [EpochEntry(0, 0), EpochEntry(2, 10)]
    cache.truncate_from_start(12)
    assert cache.entries == [EpochEntry(2, 12)]
    cache.truncate_from_start(3)  # below the first entry: nothing to do
    assert cache.entries == [EpochEntry(2, 12)]


def test_checkpoint_round_trip_uses_kafkas_text_format(tmp_path):
    runtime = Runtime.real()
    cache = LeaderEpochCache.load(runtime, str(tmp_path))
    cache.assign(0, 0)
    cache.assign(3, 1044)
    assert (tmp_path / CHECKPOINT_FILE).read_text() == "0\n2\n0 0\n3 1044\n"
    assert not (tmp_path / (CHECKPOINT_FILE + ".tmp")).exists()
    again = LeaderEpochCache.load(runtime, str(tmp_path), batch_headers=[header(0, 0, 9)])
    assert again.entries == [EpochEntry(0, 0), EpochEntry(3, 1044)]  # the file wins over the headers


@pytest.mark.parametrize("damage", [b"0\n3\n0 0\n3 10", b"0\n2\n0 0\n3 1", b"\x00\x00\x00", b"1\n0\n", b"0\n2\n5 0\n3 10\n"])
def test_torn_or_damaged_checkpoint_is_rebuilt_from_batch_headers(tmp_path, damage):
    (tmp_path / CHECKPOINT_FILE).write_bytes(damage)
    runtime = Runtime.real()
    assert read_checkpoint(runtime, str(tmp_path)) is None
    headers = [header(0, 4, 0), header(5, 0, 0), header(6, 2, 2), header(9, 0, -1), header(10, 0, 7)]
    cache = LeaderEpochCache.load(runtime, str(tmp_path), batch_headers=headers)
    assert cache.entries == [EpochEntry(0, 0), EpochEntry(2, 6), EpochEntry(7, 10)]
    assert (tmp_path / CHECKPOINT_FILE).read_text() == "0\n3\n0 0\n2 6\n7 10\n"


def test_leftover_temporary_checkpoint_is_ignored(tmp_path):
    (tmp_path / CHECKPOINT_FILE).write_text("0\n1\n4 20\n")
    (tmp_path / (CHECKPOINT_FILE + ".tmp")).write_text("0\n1\n9")
    cache = LeaderEpochCache.load(Runtime.real(), str(tmp_path))
    assert cache.entries == [EpochEntry(4, 20)]
    assert not (tmp_path / (CHECKPOINT_FILE + ".tmp")).exists()


# ---------------------------------------------------------------- truncation (KIP-101 / KIP-279 scenarios)


def leader_answer(leader_cache: LeaderEpochCache, leader_leo: int, requested_epoch: int) -> tuple[int, int]:
    return leader_cache.end_offset_for(requested_epoch, leader_leo)


def test_kip101_scenario1_follower_keeps_a_committed_record_above_its_stale_hw():
    # Leader A and follower B both hold m1, m2 (epoch 0); B's HW is still 1 (HW reaches
    # followers one fetch late). B restarts. Truncating to its HW would lose m2, which A
    # had acknowledged; if A then died, m2 would be gone. With epochs B asks A where epoch 0 ends.
    leader = cache_of((0, 0))
    follower = cache_of((0, 0))
    epoch, end = leader_answer(leader, 2, follower.latest_epoch)
    assert truncation_offset(follower.latest_epoch, epoch, end, follower, log_end_offset=2, high_watermark=1) == TruncationDecision(2, True)


def test_kip101_scenario2_replicas_that_diverged_converge():
    # A (old leader) wrote m1, m2 at epoch 0; B got only m1. Both crash; B returns first,
    # leads epoch 1 and writes m3 at offset 1. A returns as follower with m2 at offset 1,
    # a record that was never committed: it must truncate to 1, then fetch m3.
    leader_b = cache_of((0, 0), (1, 1))
    follower_a = cache_of((0, 0))
    epoch, end = leader_answer(leader_b, 2, 0)
    assert (epoch, end) == (0, 1)
    decision = truncation_offset(0, epoch, end, follower_a, log_end_offset=2, high_watermark=2)
    assert decision == TruncationDecision(1, True)


def test_kip279_follower_with_an_epoch_the_leader_never_had():
    # follower epochs 0@0, 1@5, 2@8 (LEO 10); leader epochs 0@0, 3@6 (LEO 12): the leader
    # answers for epoch 0 (ends at 6); the follower's epoch 0 ends at 5, so it cuts there.
    leader = cache_of((0, 0), (3, 6))
    follower = cache_of((0, 0), (1, 5), (2, 8))
    epoch, end = leader_answer(leader, 12, 2)
    assert (epoch, end) == (0, 6)
    assert truncation_offset(2, epoch, end, follower, 10, 4) == TruncationDecision(5, True)


def test_kip279_multiple_rounds_until_both_name_the_same_epoch():
    leader = cache_of((0, 0), (1, 3), (3, 7))
    follower = cache_of((0, 0), (2, 5))
    leo = 8
    rounds = 0
    while True:
        rounds += 1
        requested = follower.latest_epoch
        epoch, end = leader_answer(leader, 9, requested)
        decision = truncation_offset(requested, epoch, end, follower, leo, 0)
        leo = min(leo, decision.offset)
        follower.truncate_from_end(leo)
        if decision.completed:
            break
        assert rounds < 5
    assert (rounds, leo) == (2, 3)  # the leader's epoch 0 ended at 3; the follower's records 3..4 diverged


def test_unknown_answers_fall_back_to_the_high_watermark_or_the_leaders_end():
    follower = cache_of((0, 0))
    assert truncation_offset(0, UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET, follower, 10, 7) == TruncationDecision(7, True)
    assert truncation_offset(0, UNDEFINED_EPOCH, 4, follower, 10, 7) == TruncationDecision(4, True)
    assert truncation_offset(3, 1, 20, cache_of((2, 0), (3, 5)), 10, 0) == TruncationDecision(0, True)


# ---------------------------------------------------------------- leader state: HW and ISR


def leader_state(now_ms=0, isr=(1, 2, 3), hw=0, epoch_start=0) -> LeaderState:
    return LeaderState.elect(1, (1, 2, 3), isr, 5, 7, epoch_start, hw, now_ms)


def test_hw_is_the_minimum_leo_of_the_isr_and_never_decreases():
    state = leader_state()
    assert not state.maybe_advance_high_watermark(10)  # followers' LEOs unknown
    state.update_follower(2, 6, 100, 10)
    assert not state.maybe_advance_high_watermark(10)
    state.update_follower(3, 4, 100, 10)
    assert state.maybe_advance_high_watermark(10) and state.high_watermark == 4
    state.update_follower(3, 2, 200, 10)  # a follower that went back (truncated): the HW stays
    assert not state.maybe_advance_high_watermark(10) and state.high_watermark == 4
    state.update_follower(3, 10, 300, 10)
    state.update_follower(2, 10, 300, 10)
    assert state.maybe_advance_high_watermark(10) and state.high_watermark == 10


def test_hw_ignores_followers_outside_the_isr():
    state = leader_state(isr=(1, 2))
    state.update_follower(2, 8, 100, 10)
    state.maybe_advance_high_watermark(10)
    assert state.high_watermark == 8


def test_isr_shrinks_only_after_the_lag_time_with_a_fake_clock():
    lag_ms = 1000
    state = leader_state(now_ms=0)
    state.update_follower(2, 10, 100, 10)  # caught up at 100
    state.update_follower(3, 10, 100, 10)
    # the leader appends to 20; follower 3 keeps fetching but stays at 10
    state.update_follower(2, 20, 600, 20)
    state.update_follower(3, 10, 600, 20)
    assert state.proposed_shrink(1100, 20, lag_ms) is None  # 3 last caught up at 100: 1000 ms, not more
    state.update_follower(2, 20, 1101, 20)
    assert state.proposed_shrink(1101, 20, lag_ms) == (1, 2)
    # a follower that reached the LEO the leader had at its previous fetch counts as caught up then
    state2 = leader_state(now_ms=0)
    state2.update_follower(2, 5, 500, 10)
    state2.update_follower(2, 10, 900, 20)  # reached 10 = the leader's LEO at its fetch at 500
    state2.update_follower(3, 20, 1400, 20)
    assert state2.followers[2].last_caught_up_ms == 500
    assert state2.proposed_shrink(1400, 20, lag_ms) is None
    assert state2.proposed_shrink(1501, 20, lag_ms) == (1, 3)


def test_a_follower_at_the_leaders_leo_is_never_out_of_sync():
    state = leader_state(now_ms=0)
    state.update_follower(2, 10, 0, 10)
    state.update_follower(3, 10, 0, 10)
    assert state.proposed_shrink(10_000, 10, 1000) is None


def test_isr_expands_when_a_follower_reaches_hw_and_the_epoch_start():
    state = leader_state(isr=(1, 2), epoch_start=12, hw=8)
    state.update_follower(2, 15, 100, 15)
    state.maybe_advance_high_watermark(15)
    assert state.high_watermark == 15
    state.update_follower(3, 11, 100, 15)
    assert state.proposed_expansion(3) is None
    state.update_follower(3, 15, 200, 15)
    assert state.proposed_expansion(3) == (1, 2, 3)
    state.begin_isr_change((1, 2, 3))
    assert state.proposed_expansion(3) is None  # one change in flight at a time
    assert state.proposed_shrink(10**9, 99, 1) is None


def test_pending_expansion_counts_for_hw_pending_shrink_does_not_reduce_it():
    state = leader_state(isr=(1, 2))
    state.update_follower(2, 10, 0, 10)
    state.update_follower(3, 6, 0, 10)
    state.begin_isr_change((1, 2, 3))
    state.maybe_advance_high_watermark(10)
    assert state.high_watermark == 6  # the joining member already holds the HW back
    state.commit_isr((1, 2, 3), 8)
    state.begin_isr_change((1, 2))  # shrink 3 away: until committed 3 still counts
    assert not state.maybe_advance_high_watermark(10)
    assert state.high_watermark == 6
    state.commit_isr((1, 2), 9)
    assert state.maybe_advance_high_watermark(10) and state.high_watermark == 10


def test_acks_all_verdict():
    state = leader_state(isr=(1, 2))
    assert state.acks_all_verdict(5, 2) is None
    state.update_follower(2, 5, 0, 5)
    state.maybe_advance_high_watermark(5)
    assert state.acks_all_verdict(5, 2) == "ok"
    state.commit_isr((1,), 8)
    assert state.acks_all_verdict(5, 2) == "not_enough_replicas_after_append"


def test_leader_must_be_a_replica():
    with pytest.raises(ValueError, match="do not include it"):
        LeaderState.elect(9, (1, 2), (1, 2), 0, 0, 0, 0, 0)


def test_high_watermark_checkpoint_round_trip_and_torn_file(tmp_path):
    from broker.replication.manager import HIGH_WATERMARK_CHECKPOINT_FILE, read_high_watermarks, write_high_watermarks

    runtime = Runtime.real()
    write_high_watermarks(runtime, str(tmp_path), {("a", 0): 5, ("b.c", 3): 17})
    assert (tmp_path / HIGH_WATERMARK_CHECKPOINT_FILE).read_text() == "0\n2\na 0 5\nb.c 3 17\n"
    assert read_high_watermarks(runtime, str(tmp_path)) == {("a", 0): 5, ("b.c", 3): 17}
    (tmp_path / HIGH_WATERMARK_CHECKPOINT_FILE).write_text("0\n2\na 0 5\nb.c 3 1")
    assert read_high_watermarks(runtime, str(tmp_path)) == {}
    assert read_high_watermarks(runtime, str(tmp_path / "missing")) == {}
