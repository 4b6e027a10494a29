"""The transaction coordinator service with a fake state log, fake marker sender and fake wall clock."""

from __future__ import annotations

import asyncio
import itertools

from kio.schema.errors import ErrorCode

from broker.coordinator.txn_coordinator import TransactionCoordinator, TxnStateLogError
from broker.coordinator.txn_state import TxnState, partition_for

PARTITIONS = 3


class FakeStateLog:
    def __init__(self):
        self.records = {p: [] for p in range(PARTITIONS)}
        self.failures = 0

    async def append(self, partition, records):
        if self.failures:
            self.failures -= 1
            raise TxnStateLogError(ErrorCode.not_enough_replicas, "ISR too small")
        self.records[partition].extend(records)


class FakeSender:
    def __init__(self):
        self.calls = []
        self.failing = {}  # (topic, partition) -> rounds still failing

    async def write_markers(self, job, coordinator_epoch):
        self.calls.append((job, coordinator_epoch))
        results = {}
        for tp in job.partitions:
            if self.failing.get(tp, 0) > 0:
                self.failing[tp] -= 1
                results[tp] = ErrorCode.not_leader_or_follower
            else:
                results[tp] = ErrorCode.none
        return results


class Clock:
    def __init__(self):
        self.now_ms = 0

    def __call__(self):
        return self.now_ms


def coordinator(end_txn_wait_ms: int = 5_000):
    ids = itertools.count(1)
    state_log, sender, clock = FakeStateLog(), FakeSender(), Clock()
    coord = TransactionCoordinator(clock, state_log, sender, lambda: next(ids), PARTITIONS, retry_backoff_ms=1,
                                   end_txn_wait_ms=end_txn_wait_ms, sleep=asyncio.sleep)
    for p in range(PARTITIONS):
        coord.on_become_leader(p, coordinator_epoch=7, records=[])
    return coord, state_log, sender, clock


async def settle(coord):
    await asyncio.gather(*coord.marker_tasks.values())


def test_commit_writes_markers_then_completes_and_logs_everything():
    async def scenario():
        coord, state_log, sender, _ = coordinator()
        init = await coord.init_producer_id("t", 10_000)
        assert init.error == ErrorCode.none
        await coord.add_partitions("t", init.producer_id, 0, [("out", 0), ("out", 1)])
        sender.failing[("out", 1)] = 2  # its leader is moving: retried until written
        end = await coord.end_txn("t", init.producer_id, 0, commit=True)
        assert end.error == ErrorCode.none
        await settle(coord)
        assert [len(job.partitions) for job, _ in sender.calls] == [2, 1, 1]
        assert {epoch for _, epoch in sender.calls} == {7}
        states = [r.state for r in state_log.records[partition_for("t", PARTITIONS)]]
        assert states == [TxnState.EMPTY, TxnState.ONGOING, TxnState.PREPARE_COMMIT, TxnState.COMPLETE_COMMIT]
        await coord.close()

    asyncio.run(scenario())


def test_failed_append_changes_nothing():
    async def scenario():
        coord, state_log, _, _ = coordinator()
        init = await coord.init_producer_id("t", 10_000)
        state_log.failures = 1
        failed = await coord.add_partitions("t", init.producer_id, 0, [("out", 0)])
        assert failed.error == ErrorCode.not_enough_replicas
        _, machine = coord._machine("t")
        assert machine.transactions["t"].state == TxnState.EMPTY and not machine.transactions["t"].partitions
        state_log.failures = 1
        assert (await coord.init_producer_id("u", 10_000)).error == ErrorCode.not_enough_replicas
        assert "u" not in coord._machine("u")[1].transactions

    asyncio.run(scenario())


def test_not_coordinator_after_resign_and_replay_completes_prepared():
    async def scenario():
        coord, state_log, sender, _ = coordinator()
        partition = partition_for("t", PARTITIONS)
        init = await coord.init_producer_id("t", 10_000)
        await coord.add_partitions("t", init.producer_id, 0, [("out", 0)])
        sender.failing[("out", 0)] = 10**9  # never written before the failover
        await coord.end_txn("t", init.producer_id, 0, commit=False)
        coord.on_resign(partition)
        await settle(coord)
        assert (await coord.end_txn("t", init.producer_id, 0, commit=False)).error == ErrorCode.not_coordinator
        # A new coordinator replays the log and finishes the abort.
        successor, _, successor_sender, _ = coordinator()
        successor.on_resign(partition)
        successor_log = successor.state_log
        successor.on_become_leader(partition, coordinator_epoch=8, records=list(state_log.records[partition]))
        await settle(successor)
        (job, epoch), = successor_sender.calls
        assert (job.commit, job.partitions, epoch) == (False, (("out", 0),), 8)
        assert successor_log.records[partition][-1].state == TxnState.COMPLETE_ABORT
        await coord.close()

    asyncio.run(scenario())


def test_timeout_abort_fences_and_sends_abort_markers():
    async def scenario():
        coord, _, sender, clock = coordinator()
        init = await coord.init_producer_id("t", 1_000)
        await coord.add_partitions("t", init.producer_id, 0, [("out", 0)])
        clock.now_ms = 500
        assert await coord.expire_once() == 0
        clock.now_ms = 1_001
        assert await coord.expire_once() == 1
        await settle(coord)
        (job, _), = sender.calls
        assert (job.commit, job.producer_epoch) == (False, 1)
        fenced = await coord.end_txn("t", init.producer_id, 0, commit=True)
        assert fenced.error == ErrorCode.producer_fenced

    asyncio.run(scenario())


def test_leadership_bounce_with_markers_in_flight_restarts_them_once():
    async def scenario():
        coord, state_log, sender, _ = coordinator(end_txn_wait_ms=0)  # EndTxn answers with markers in flight
        partition = partition_for("t", PARTITIONS)
        init = await coord.init_producer_id("t", 10_000)
        await coord.add_partitions("t", init.producer_id, 0, [("out", 0)])
        sender.failing[("out", 0)] = 3  # still being retried when leadership moves away and back
        await coord.end_txn("t", init.producer_id, 0, commit=True)
        await asyncio.sleep(0)
        coord.on_resign(partition)
        assert "t" not in coord.marker_tasks  # cancelled with the leadership
        coord.on_become_leader(partition, coordinator_epoch=8, records=list(state_log.records[partition]))
        await settle(coord)
        assert state_log.records[partition][-1].state == TxnState.COMPLETE_COMMIT
        assert sender.calls[-1][1] == 8
        await coord.close()

    asyncio.run(scenario())


def test_end_txn_answers_after_the_markers_or_after_its_wait():
    async def scenario():
        coord, state_log, sender, _ = coordinator(end_txn_wait_ms=5_000)
        partition = partition_for("t", PARTITIONS)
        init = await coord.init_producer_id("t", 10_000)
        await coord.add_partitions("t", init.producer_id, 0, [("out", 0)])
        sender.failing[("out", 0)] = 2
        outcome = await coord.end_txn("t", init.producer_id, 0, commit=True)
        assert outcome.error == ErrorCode.none
        # answered only once the markers were written and Complete logged
        assert state_log.records[partition][-1].state == TxnState.COMPLETE_COMMIT
        # a marker that cannot be written holds the answer no longer than the wait
        short, state_log, sender, _ = coordinator(end_txn_wait_ms=50)
        init = await short.init_producer_id("t", 10_000)
        await short.add_partitions("t", init.producer_id, 0, [("out", 0)])
        sender.failing[("out", 0)] = 10**9
        outcome = await short.end_txn("t", init.producer_id, 0, commit=True)
        assert outcome.error == ErrorCode.none
        assert state_log.records[partition][-1].state == TxnState.PREPARE_COMMIT
        assert not short.marker_tasks["t"].done()  # still retrying in the background
        await short.close()
        await coord.close()

    asyncio.run(scenario())


def test_debug_partial_commit_markers_drops_a_partition_whose_marker_was_refused():
    async def scenario(planted):
        coord, state_log, sender, _ = coordinator()
        coord.partial_commit_markers = planted  # what logquake.debug.partial.commit.markers sets
        init = await coord.init_producer_id("t", 10_000)
        await coord.add_partitions("t", init.producer_id, 0, [("out", 0), ("out", 1)])
        sender.failing[("out", 1)] = 1  # its leader is moving: the first marker is refused
        assert (await coord.end_txn("t", init.producer_id, 0, commit=True)).error == ErrorCode.none
        await settle(coord)
        await coord.close()
        return [sorted(job.partitions) for job, _ in sender.calls]

    # correct: the refused marker is sent again; planted: never, so out-1's part of the transaction stays open
    assert asyncio.run(scenario(False)) == [[("out", 0), ("out", 1)], [("out", 1)]]
    assert asyncio.run(scenario(True)) == [[("out", 0), ("out", 1)]]


class GatedStateLog(FakeStateLog):
    """The first append of a Complete state waits for `release`, then fails (an ISR that cannot catch up)."""

    def __init__(self):
        super().__init__()
        self.held = asyncio.Event()
        self.release = asyncio.Event()
        self.gated = True

    async def append(self, partition, records):
        if self.gated and any(r.state == TxnState.COMPLETE_COMMIT for r in records):
            self.gated = False
            self.held.set()
            await self.release.wait()
            raise TxnStateLogError(ErrorCode.request_timed_out, "not replicated")
        await super().append(partition, records)


def test_a_transaction_begun_while_the_last_ones_completion_is_being_logged_still_gets_its_markers():
    # Found by a lagging-follower kill on the correct broker (exactly-once queue, seed 294485047): EndTxn answered
    # OK but no marker was ever written, so read_committed readers stopped at the transaction for good. The
    # completion record of the previous transaction was in flight (its ISR held back by a killed follower) when
    # the producer began the next one; the completion then failed, and putting the transaction back as it was
    # before the completion wiped the new transaction's partitions, so its EndTxn found nothing to mark.
    async def scenario():
        ids = itertools.count(1)
        state_log, sender = GatedStateLog(), FakeSender()
        coord = TransactionCoordinator(Clock(), state_log, sender, lambda: next(ids), PARTITIONS, retry_backoff_ms=1,
                                       end_txn_wait_ms=0, sleep=asyncio.sleep)
        for p in range(PARTITIONS):
            coord.on_become_leader(p, coordinator_epoch=7, records=[])
        init = await coord.init_producer_id("t", 10_000)
        await coord.add_partitions("t", init.producer_id, 0, [("out", 0)])
        assert (await coord.end_txn("t", init.producer_id, 0, commit=True)).error == ErrorCode.none
        await state_log.held.wait()  # markers written; the Complete record is in flight
        # the producer's next transaction: retried until the coordinator takes it
        while (added := await coord.add_partitions("t", init.producer_id, 0, [("out", 1)])).error != ErrorCode.none:
            assert added.error == ErrorCode.concurrent_transactions, added.error
            state_log.release.set()
            await asyncio.sleep(0.01)
        end = await coord.end_txn("t", init.producer_id, 0, commit=True)
        assert end.error == ErrorCode.none
        await settle(coord)
        marked = [tp for job, _ in sender.calls for tp in job.partitions]
        assert ("out", 1) in marked, f"the second transaction's partition got no marker: {sender.calls}"
        states = [r.state for r in state_log.records[partition_for("t", PARTITIONS)]]
        assert states[-1] == TxnState.COMPLETE_COMMIT and states.count(TxnState.COMPLETE_COMMIT) == 2, states
        await coord.close()

    asyncio.run(asyncio.wait_for(scenario(), 10))
