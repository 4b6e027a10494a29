"""Unit tests of the transaction coordinator's state machine (broker/coordinator/txn_state.py), with a fake clock."""

from __future__ import annotations

import itertools

import pytest
from kio.schema.errors import ErrorCode

from broker.coordinator.txn_state import (
    MAX_PRODUCER_EPOCH,
    TransactionStateMachine,
    TxnRecord,
    TxnState,
    fenced_error,
    java_string_hash,
    partition_for,
)

TP = ("out", 0)


def machine() -> TransactionStateMachine:
    ids = itertools.count(1000)
    return TransactionStateMachine(lambda: next(ids), max_timeout_ms=60_000)


def test_java_string_hash_matches_java():
    # Values computed by java.lang.String.hashCode.
    assert java_string_hash("") == 0
    assert java_string_hash("a") == 97
    assert java_string_hash("hello") == 99162322
    assert java_string_hash("polygenelubricants") == -(1 << 31)
    assert partition_for("polygenelubricants", 50) == 0
    assert partition_for("hello", 50) == 99162322 % 50


def test_partition_for_rejects_bad_count():
    with pytest.raises(ValueError, match="partition_count=0"):
        partition_for("t", 0)


def test_init_producer_id_new_then_bump_fences_old_epoch():
    m = machine()
    first = m.init_producer_id("t", 10_000, now_ms=0)
    assert (first.error, first.producer_id, first.producer_epoch) == (ErrorCode.none, 1000, 0)
    second = m.init_producer_id("t", 10_000, now_ms=1)
    assert (second.error, second.producer_id, second.producer_epoch) == (ErrorCode.none, 1000, 1)
    stale = m.add_partitions("t", 1000, 0, [TP], now_ms=2)
    assert stale.error == ErrorCode.producer_fenced and not stale.records
    assert m.transactions["t"].state == TxnState.EMPTY
    assert m.end_txn("t", 1000, 0, True, now_ms=3).error == ErrorCode.producer_fenced


def test_invalid_timeout_rejected():
    m = machine()
    assert m.init_producer_id("t", 0, now_ms=0).error == ErrorCode.invalid_transaction_timeout
    assert m.init_producer_id("t", 60_001, now_ms=0).error == ErrorCode.invalid_transaction_timeout
    assert "t" not in m.transactions


def test_commit_two_phases_and_concurrent_transactions():
    m = machine()
    init = m.init_producer_id("t", 10_000, now_ms=0)
    pid, epoch = init.producer_id, init.producer_epoch
    added = m.add_partitions("t", pid, epoch, [TP, ("out", 1)], now_ms=1)
    assert added.error == ErrorCode.none and added.records[-1].state == TxnState.ONGOING
    assert m.add_partitions("t", pid, epoch, [TP], now_ms=2).records == []  # already in the transaction
    end = m.end_txn("t", pid, epoch, True, now_ms=3)
    assert end.error == ErrorCode.none
    assert end.records[-1].state == TxnState.PREPARE_COMMIT
    (job,) = end.markers
    assert (job.commit, job.partitions, job.producer_epoch) == (True, (("out", 0), ("out", 1)), 0)
    # While the markers are outstanding, the next transaction and a new producer must wait.
    assert m.add_partitions("t", pid, epoch, [TP], now_ms=4).error == ErrorCode.concurrent_transactions
    assert m.init_producer_id("t", 10_000, now_ms=4).error == ErrorCode.concurrent_transactions
    assert m.end_txn("t", pid, epoch, True, now_ms=4).error == ErrorCode.concurrent_transactions
    assert m.end_txn("t", pid, epoch, False, now_ms=4).error == ErrorCode.invalid_txn_state
    done = m.markers_written("t", pid, epoch, now_ms=5)
    assert done.records[-1].state == TxnState.COMPLETE_COMMIT and done.records[-1].partitions == ()
    assert m.end_txn("t", pid, epoch, True, now_ms=6).error == ErrorCode.none  # retried EndTxn
    assert m.end_txn("t", pid, epoch, False, now_ms=6).error == ErrorCode.invalid_txn_state
    again = m.add_partitions("t", pid, epoch, [("other", 3)], now_ms=7)
    assert again.records[-1].partitions == (("other", 3),) and again.records[-1].start_ms == 7


def test_end_txn_unknown_transactional_id_changes_nothing():
    m = machine()
    outcome = m.end_txn("nobody", 5, 0, True, now_ms=0)
    assert outcome.error == ErrorCode.invalid_producer_id_mapping
    assert (outcome.records, outcome.markers, m.transactions) == ([], [], {})


def test_end_txn_without_partitions_is_invalid_state():
    m = machine()
    init = m.init_producer_id("t", 10_000, now_ms=0)
    assert m.end_txn("t", init.producer_id, 0, True, now_ms=1).error == ErrorCode.invalid_txn_state


def test_init_producer_id_aborts_open_transaction_with_bumped_epoch():
    m = machine()
    init = m.init_producer_id("t", 10_000, now_ms=0)
    m.add_partitions("t", init.producer_id, 0, [TP], now_ms=1)
    retry = m.init_producer_id("t", 10_000, now_ms=2)
    assert retry.error == ErrorCode.concurrent_transactions
    (job,) = retry.markers
    assert (job.commit, job.producer_epoch) == (False, 1)
    # The old producer is fenced from the transaction being aborted.
    assert m.end_txn("t", init.producer_id, 0, True, now_ms=3).error == ErrorCode.producer_fenced
    m.markers_written("t", job.producer_id, job.producer_epoch, now_ms=4)
    fresh = m.init_producer_id("t", 10_000, now_ms=5)
    assert (fresh.error, fresh.producer_epoch) == (ErrorCode.none, 2)


@pytest.mark.parametrize("planted", [False, True])
def test_debug_epoch_bump_unfenced_leaves_the_old_epochs_transaction_open(planted):
    m = machine()
    m.epoch_bump_unfenced = planted  # what logquake.debug.epoch.bump.unfenced sets (through the coordinator)
    crashed = m.init_producer_id("t", 10_000, now_ms=0)
    m.add_partitions("t", crashed.producer_id, 0, [TP], now_ms=1)  # it wrote to TP, then crashed
    restarted = m.init_producer_id("t", 10_000, now_ms=2)  # its replacement, same transactional.id
    if planted:
        # bumped and answered at once: no abort marker ever tells TP that epoch 0 is fenced, and TP's open
        # records of epoch 0 are ended by the new epoch's next marker (a commit makes them visible)
        assert (restarted.error, restarted.producer_epoch, restarted.markers) == (ErrorCode.none, 1, [])
        assert m.transactions["t"].state == TxnState.EMPTY
        assert m.pending_markers() == [] and m.expire(now_ms=10**9).markers == []
    else:
        assert restarted.error == ErrorCode.concurrent_transactions
        assert [(job.commit, job.producer_epoch, job.partitions) for job in restarted.markers] == [(False, 1, (TP,))]


def test_timeout_aborts_abandoned_transaction():
    m = machine()
    init = m.init_producer_id("t", 1_000, now_ms=0)
    m.add_partitions("t", init.producer_id, 0, [TP], now_ms=100)
    assert m.expire(now_ms=1_100).markers == []  # exactly at the timeout: not yet
    expired = m.expire(now_ms=1_101)
    (job,) = expired.markers
    assert (job.commit, job.producer_epoch, job.partitions) == (False, 1, (TP,))
    assert m.transactions["t"].state == TxnState.PREPARE_ABORT
    assert m.end_txn("t", init.producer_id, 0, True, now_ms=1_200).error == ErrorCode.producer_fenced
    assert m.expire(now_ms=10_000).markers == []  # already aborting


def test_epoch_exhaustion_allocates_new_producer_id():
    m = machine()
    m.init_producer_id("t", 10_000, now_ms=0)
    m.transactions["t"].producer_epoch = MAX_PRODUCER_EPOCH
    bumped = m.init_producer_id("t", 10_000, now_ms=1)
    assert (bumped.producer_id, bumped.producer_epoch) == (1001, 0)


def test_records_round_trip_and_replay_resends_prepared_markers():
    m = machine()
    log = []
    init = m.init_producer_id("t", 10_000, now_ms=0)
    log += init.records
    log += m.add_partitions("t", init.producer_id, 0, [TP, ("ünïcode", 7)], now_ms=1).records
    log += m.end_txn("t", init.producer_id, 0, False, now_ms=2).records
    encoded = [(r.transactional_id.encode(), r.encode_value()) for r in log]
    decoded = [TxnRecord.decode(key, value) for key, value in encoded]
    assert decoded == log
    successor = machine()
    successor.load(decoded)
    (job,) = successor.pending_markers()
    assert (job.commit, job.partitions) == (False, tuple(sorted([TP, ("ünïcode", 7)])))
    assert successor.transactions["t"] == m.transactions["t"]


def test_decode_rejects_unknown_version():
    value = bytearray(TxnRecord("t", 1, 0, 1, TxnState.EMPTY, (), -1, 0).encode_value())
    value[1] = 9
    with pytest.raises(ValueError, match="version 9"):
        TxnRecord.decode(b"t", bytes(value))


def test_fenced_error_by_version():
    assert fenced_error(True) == ErrorCode.producer_fenced
    assert fenced_error(False) == ErrorCode.invalid_producer_epoch
