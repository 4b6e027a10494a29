"""The transaction coordinator service: the state machine of `txn_state` plus its log and its markers (KIP-98).

For each `__transaction_state` partition this broker leads it keeps a
`TransactionStateMachine`, rebuilt from the partition's records in
`on_become_leader` (which also re-sends the markers of every transaction left in
PrepareCommit/PrepareAbort). Every request runs the state machine, appends the
records it emitted through `TxnStateLog.append` (acks=all) and only then answers;
if the append fails, the transaction's in-memory entry is put back as it was and
the client gets COORDINATOR_NOT_AVAILABLE / NOT_COORDINATOR, so memory never runs
ahead of the log. Marker jobs run as tasks that call `MarkerSender.write_markers`
(WriteTxnMarkers to each partition leader) until every partition answered, with
`retry_backoff_ms` between rounds, then log the Complete state. `expire_once`
aborts transactions older than their `transaction.timeout.ms`.
`partial_commit_markers` plants a bug (logquake.debug.partial.commit.markers):
a marker a partition refused is not sent again, so that partition's part of
the transaction stays open until the producer's next marker ends it with the
next transaction's outcome.
`epoch_bump_unfenced` plants one (logquake.debug.epoch.bump.unfenced), passed to
each partition's state machine: InitProducerId bumps an Ongoing transaction's
epoch without aborting it.

Invariants: a request for a transactional id whose partition this node does
not lead gets NOT_COORDINATOR; one marker task per transaction at a time;
tasks of a partition this node resigned are cancelled (a leadership that
comes back replays the log and starts them again).

Thread-safety: none; the event loop is the only caller.
Sources: KIP-98, KIP-447, KIP-588; Kafka's TransactionCoordinator and
TransactionMarkerChannelManager (behaviour, not code).

`broker.coordinator.txn_handlers` routes the transaction APIs here.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from typing import Protocol

from kio.schema.errors import ErrorCode

from broker.coordinator.txn_state import MarkerJob, Outcome, TransactionStateMachine, TxnRecord, partition_for

log = logging.getLogger(__name__)

TRANSACTION_STATE_TOPIC = "__transaction_state"


class TxnStateLogError(Exception):
    """The state records could not be appended (not leader any more, not enough replicas, timeout)."""

    def __init__(self, error: ErrorCode, message: str):
        super().__init__(message)
        self.error = error


class TxnStateLog(Protocol):
    async def append(self, partition: int, records: list[TxnRecord]) -> None:
        """Append with acks=all; raise TxnStateLogError when the records are not committed."""


class MarkerSender(Protocol):
    async def write_markers(self, job: MarkerJob, coordinator_epoch: int) -> dict[tuple[str, int], ErrorCode]:
        """Write the job's control batch into each partition; the error per partition (NONE when written)."""


class TransactionCoordinator:
    def __init__(self, wall_ms, state_log: TxnStateLog, marker_sender: MarkerSender, allocate_producer_id,
                 partition_count: int, max_timeout_ms: int = 900_000, retry_backoff_ms: int = 100,
                 end_txn_wait_ms: int = 5_000, partial_commit_markers: bool = False, *, sleep) -> None:
        if partition_count <= 0:
            raise ValueError(f"transaction.state.log.num.partitions={partition_count!r}: must be a positive integer")
        self.wall_ms = wall_ms
        self.state_log = state_log
        self.marker_sender = marker_sender
        self.allocate_producer_id = allocate_producer_id
        self.partition_count = partition_count
        self.max_timeout_ms = max_timeout_ms
        self.retry_backoff_ms = retry_backoff_ms
        self.end_txn_wait_ms = end_txn_wait_ms
        self.partial_commit_markers = partial_commit_markers  # a planted bug, see _send_markers
        self.epoch_bump_unfenced = False  # a planted bug, see TransactionStateMachine.init_producer_id
        self.sleep = sleep  # the runtime clock's sleep (retry backoffs), so a simulated clock drives them
        self.owned: dict[int, tuple[int, TransactionStateMachine]] = {}  # partition -> (coordinator epoch, machine)
        self.marker_tasks: dict[str, asyncio.Task] = {}
        # ids whose state record is being appended: memory is ahead of the log until the append ends, and putting
        # an entry back after a failed append must not undo another request's change, so the others wait
        self.pending: set[str] = set()

    # -- leadership ---------------------------------------------------------------------------------------

    def on_become_leader(self, partition: int, coordinator_epoch: int, records) -> None:
        """Take over a `__transaction_state` partition: replay its records, finish what was being prepared."""
        machine = TransactionStateMachine(self.allocate_producer_id, self.max_timeout_ms, self.epoch_bump_unfenced)
        machine.load(records)
        self.owned[partition] = (coordinator_epoch, machine)
        for job in machine.pending_markers():
            self._start_markers(partition, job)

    def on_resign(self, partition: int) -> None:
        self.owned.pop(partition, None)
        # Marker tasks of this partition stop now: a later leadership of it starts its own from the log.
        for transactional_id in [t for t in self.marker_tasks if partition_for(t, self.partition_count) == partition]:
            self.marker_tasks.pop(transactional_id).cancel()

    def _machine(self, transactional_id: str):
        partition = partition_for(transactional_id, self.partition_count)
        owned = self.owned.get(partition)
        return partition, (None if owned is None else owned[1])

    def lookup(self, transactional_id: str):
        """The current `TxnMetadata` of an id this node coordinates, else None (read only)."""
        _, machine = self._machine(transactional_id)
        return None if machine is None else machine.transactions.get(transactional_id)

    def owns(self, transactional_id: str) -> bool:
        """Whether this node leads the `__transaction_state` partition of `transactional_id`."""
        return self._machine(transactional_id)[1] is not None

    def coordinated(self):
        """Every `TxnMetadata` of the `__transaction_state` partitions this node leads (read only)."""
        for _, machine in self.owned.values():
            yield from machine.transactions.values()

    # -- requests -----------------------------------------------------------------------------------------

    async def _run(self, transactional_id: str, step) -> Outcome:
        partition, machine = self._machine(transactional_id)
        if machine is None:
            return Outcome(ErrorCode.not_coordinator)
        if transactional_id in self.pending:
            return Outcome(ErrorCode.concurrent_transactions)  # its last change is being logged; the client retries
        saved = copy.deepcopy(machine.transactions.get(transactional_id))
        outcome = step(machine)
        if outcome.records:
            self.pending.add(transactional_id)
            try:
                await self.state_log.append(partition, outcome.records)
            except TxnStateLogError as exc:
                log.warning("transaction state for %r not logged (%s): %s", transactional_id, exc.error.name, exc)
                if saved is None:
                    machine.transactions.pop(transactional_id, None)
                else:
                    machine.transactions[transactional_id] = saved
                return Outcome(exc.error)
            finally:
                self.pending.discard(transactional_id)
        for job in outcome.markers:
            self._start_markers(partition, job)
        return outcome

    async def init_producer_id(self, transactional_id: str, timeout_ms: int) -> Outcome:
        return await self._run(transactional_id, lambda m: m.init_producer_id(transactional_id, timeout_ms, self.wall_ms()))

    async def add_partitions(self, transactional_id: str, producer_id: int, producer_epoch: int, partitions) -> Outcome:
        return await self._run(transactional_id, lambda m: m.add_partitions(
            transactional_id, producer_id, producer_epoch, list(partitions), self.wall_ms()))

    async def add_offsets(self, transactional_id: str, producer_id: int, producer_epoch: int,
                          offsets_topic: str, offsets_partition: int) -> Outcome:
        """AddOffsetsToTxn: the group's `__consumer_offsets` partition joins the transaction."""
        return await self.add_partitions(transactional_id, producer_id, producer_epoch, [(offsets_topic, offsets_partition)])

    async def end_txn(self, transactional_id: str, producer_id: int, producer_epoch: int, commit: bool) -> Outcome:
        """EndTxn: log PrepareCommit/PrepareAbort, start the markers, answer when they are done.

        Kafka answers as soon as the Prepare record is logged, which already
        decides the outcome. We also wait for the markers and the Complete
        record, up to `end_txn_wait_ms`: a producer's next AddPartitionsToTxn
        would otherwise meet CONCURRENT_TRANSACTIONS and back off (librdkafka
        waits 20 ms), which dominates the latency of short transactions. After
        the wait the answer is the same; the markers go on in the background.
        """
        outcome = await self._run(transactional_id, lambda m: m.end_txn(
            transactional_id, producer_id, producer_epoch, commit, self.wall_ms()))
        task = self.marker_tasks.get(transactional_id) if outcome.markers else None
        if task is not None and not task.done() and self.end_txn_wait_ms > 0:
            # shield: a timed-out wait must not cancel the marker task itself
            await asyncio.wait([asyncio.shield(task)], timeout=self.end_txn_wait_ms / 1000)
        return outcome

    async def expire_once(self) -> int:
        """Abort timed-out transactions on every owned partition; return how many were aborted."""
        aborted = 0
        for partition, (_, machine) in list(self.owned.items()):
            saved = copy.deepcopy(machine.transactions)
            outcome = machine.expire(self.wall_ms())
            if not outcome.records:
                continue
            expired = {record.transactional_id for record in outcome.records}
            if expired & self.pending:  # one of them is being changed by a request: its turn comes next round
                for transactional_id in expired:
                    machine.transactions[transactional_id] = saved[transactional_id]
                continue
            self.pending |= expired
            try:
                await self.state_log.append(partition, outcome.records)
            except TxnStateLogError as exc:
                log.warning("timeout aborts on %s-%d not logged: %s", TRANSACTION_STATE_TOPIC, partition, exc)
                for transactional_id in expired:  # only these: a request may have changed the others meanwhile
                    machine.transactions[transactional_id] = saved[transactional_id]
                continue
            finally:
                self.pending -= expired
            for job in outcome.markers:
                self._start_markers(partition, job)
            aborted += len(outcome.markers)
        return aborted

    # -- markers ------------------------------------------------------------------------------------------

    def _start_markers(self, partition: int, job: MarkerJob) -> None:
        previous = self.marker_tasks.get(job.transactional_id)
        assert previous is None or previous.done(), f"two marker jobs at once for {job.transactional_id!r}"
        task = asyncio.get_running_loop().create_task(self._send_markers(partition, job))
        task.add_done_callback(_report_failure)
        self.marker_tasks[job.transactional_id] = task

    async def _send_markers(self, partition: int, job: MarkerJob) -> None:
        remaining = set(job.partitions)
        while remaining:
            owned = self.owned.get(partition)
            if owned is None:
                return  # resigned: the next coordinator re-sends from the log
            coordinator_epoch = owned[0]
            pending = MarkerJob(job.transactional_id, job.producer_id, job.producer_epoch, job.commit, tuple(sorted(remaining)))
            results = await self.marker_sender.write_markers(pending, coordinator_epoch)
            # partial_commit_markers (logquake.debug.partial.commit.markers, a planted bug): every partition
            # that answered counts as done, errors too, so a marker refused by a moving leader is never sent again.
            remaining -= {tp for tp, error in results.items() if error == ErrorCode.none or self.partial_commit_markers}
            if remaining:
                await self.sleep(self.retry_backoff_ms / 1000)
        while True:
            owned = self.owned.get(partition)
            if owned is None:
                return
            machine = owned[1]
            saved = copy.deepcopy(machine.transactions.get(job.transactional_id))
            outcome = machine.markers_written(job.transactional_id, job.producer_id, job.producer_epoch, self.wall_ms())
            self.pending.add(job.transactional_id)
            try:
                await self.state_log.append(partition, outcome.records)
                return
            except TxnStateLogError as exc:
                # Back to the Prepare state (memory never runs ahead of the log), and try again.
                log.warning("completion of %r not logged: %s", job.transactional_id, exc)
                machine.transactions[job.transactional_id] = saved
            finally:
                self.pending.discard(job.transactional_id)
            await self.sleep(self.retry_backoff_ms / 1000)

    async def close(self) -> None:
        tasks = [task for task in self.marker_tasks.values() if not task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _report_failure(task: asyncio.Task) -> None:
    """A marker task that died of an exception leaves its transaction prepared until the next leadership: say so."""
    if not task.cancelled() and task.exception() is not None:
        log.error("transaction marker task failed; the transaction completes after the next coordinator failover",
                  exc_info=task.exception())
