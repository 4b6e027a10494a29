"""Transactional producers and read_committed reads for the simulated queue workload (KIP-98).

`SimOptions.delivery == "exactly-once"` (broker.sim.workload) runs the queue
workload as `logquake test --delivery exactly-once` does: producers write in
transactions and consumers read read_committed. This module is the client
side of that, spoken over the broker's own protocol client (`SimClient`):

- `TransactionalProducer`: one transactional.id per producer slot
  (`logquake-sim-<slot>`). It finds its transaction coordinator
  (FindCoordinator, key_type 1) and takes a producer id and epoch with
  InitProducerId and the id. A `txn` op is AddPartitionsToTxn for the keys it
  writes, one Produce per key of a transactional batch (attribute bit 0x10,
  the producer id, epoch and the partition's next sequence) to the key's
  leader, then EndTxn: commit, or abort when the workload asked for it (a
  tenth of the ops, ABORT_SHARE, drawn from the seed's workload rng).
  Coordinator answers that ask for patience (COORDINATOR_NOT_AVAILABLE,
  COORDINATOR_LOAD_IN_PROGRESS, NOT_COORDINATOR, CONCURRENT_TRANSACTIONS, no
  answer) are asked again, from the coordinator found again where it moved,
  for up to COORDINATOR_DEADLINE_S; a Produce refused before the append
  (NOT_WRITTEN) is sent again, the same batch, to the leader found again.
  Any other failure (a Produce without an answer or answered after its
  append, a coordinator that refuses or never answers) ends the transaction
  by bumping the epoch: InitProducerId again with the same id, which aborts
  the open transaction and fences the old epoch at its partitions (KIP-360;
  the correct coordinator aborts before it bumps), and sequences start again
  at 0.
- Outcomes, Jepsen's rules: `ok` when EndTxn(commit) was answered without an
  error (the offsets of every send, from the Produce answers); `fail` when no
  EndTxn(commit) was ever sent for the transaction, whatever else happened:
  only a commit request makes the coordinator commit, and a transaction it
  never got one for is aborted (by EndTxn(abort), by the epoch bump, or by
  its transaction.timeout.ms), so none of its sends can be visible to
  read_committed readers; `info` when a commit was sent and not answered
  with success. The invocation carries `"abort": true` when the workload
  aborts on purpose, and a failed txn is completed with the invoked value,
  so the checker knows the values of aborted transactions (G1a when one is
  read), as workloads/queue.py records them.
- `committed_records`: what a read_committed Kafka consumer hands the
  application from one partition of a Fetch response, by KIP-98's consumer
  algorithm: the response lists the aborted transactions (producer id, first
  offset) that overlap the records; walking the batches in offset order, an
  aborted transaction's range opens for its producer id once a batch reaches
  its first offset, a transactional data batch of a producer id with an open
  range is dropped, the producer's abort marker closes the range, and
  control batches (commit and abort markers) are never handed out. Returns
  the records and the offset after the last batch, the position a consumer
  moves to even when every batch was dropped.

Determinism: no clock but the world's, no randomness here (the caller draws);
the transactional id, not the process, names a producer, so a producer
replaced after `info` bumps the epoch of its predecessor's id.

Thread-safety: none; everything runs on the world's loop.
Sources: KIP-98 (Exactly Once Delivery and Transactional Messaging: the
producer's requests and the consumer's aborted-transaction filtering),
KIP-360 (epoch bumps of a producer that lost track of its sequences).
"""

from __future__ import annotations

import datetime
import functools
import importlib

from broker.coordinator.group_records import control_type, iter_records
from broker.protocol.client import ClientError
from broker.protocol.records import build_batch

TRANSACTIONAL = 0x10  # the batch attribute bit of a transactional batch
ABORT_SHARE = 0.1  # the share of transactions the workload aborts on purpose (as workloads/queue.py)
SENDS_PER_TXN = (1, 3)
TRANSACTION_TIMEOUT_S = 10.0  # the producers' transaction.timeout.ms, as the real workload's (at least 10 s)
COORDINATOR_DEADLINE_S = 10.0  # how long one coordinator step is asked again
REQUEST_TIMEOUT_S = 10.0  # one request (EndTxn may wait up to 5 s for its markers)
RETRY_BACKOFF_S = 0.1
# broker settings under exactly-once (the operator's --broker-override wins): a few __transaction_state partitions
# instead of 50 (a simulated cluster replicates every one of them), and timed-out transactions aborted every second
PROPERTIES = {"transaction.state.log.num.partitions": "4",
              "transaction.abort.timed.out.transaction.cleanup.interval.ms": "1000"}
# coordinator answers that ask the client to try again (the coordinator moving, loading, or finishing markers)
COORDINATOR_NOT_AVAILABLE, COORDINATOR_LOAD_IN_PROGRESS, NOT_COORDINATOR, CONCURRENT_TRANSACTIONS = 15, 14, 16, 51
COORDINATOR_RETRIABLE = {COORDINATOR_NOT_AVAILABLE, COORDINATOR_LOAD_IN_PROGRESS, NOT_COORDINATOR,
                         CONCURRENT_TRANSACTIONS}
ABORT = 0  # a control record's type (group_records.control_type): 0 abort, 1 commit


@functools.cache
def schema(api: str, version: int):
    """The kio request module of `api` at `version`."""
    return importlib.import_module(f"kio.schema.{api}.v{version}.request")


def find_coordinator_request(transactional_id: str):
    m = schema("find_coordinator", 4)
    return m.FindCoordinatorRequest(key_type=1, coordinator_keys=(transactional_id,))


def init_transactional_id_request(transactional_id: str, timeout_s: float = TRANSACTION_TIMEOUT_S):
    m = schema("init_producer_id", 4)
    return m.InitProducerIdRequest(transactional_id=transactional_id,
                                   transaction_timeout=datetime.timedelta(seconds=timeout_s),
                                   producer_id=-1, producer_epoch=-1)


def add_partitions_request(transactional_id: str, producer_id: int, epoch: int, topic: str, partitions: list[int]):
    m = schema("add_partitions_to_txn", 3)
    return m.AddPartitionsToTxnRequest(v3_and_below_transactional_id=transactional_id,
                                       v3_and_below_producer_id=producer_id, v3_and_below_producer_epoch=epoch,
                                       v3_and_below_topics=(m.AddPartitionsToTxnTopic(name=topic,
                                                                                      partitions=tuple(partitions)),))


def end_txn_request(transactional_id: str, producer_id: int, epoch: int, commit: bool):
    m = schema("end_txn", 3)
    return m.EndTxnRequest(transactional_id=transactional_id, producer_id=producer_id, producer_epoch=epoch,
                           committed=commit)


def _error_code(answer) -> int:
    """The error of a coordinator answer: FindCoordinator v4, AddPartitionsToTxn v3 (the first partition that
    failed), InitProducerId and EndTxn."""
    if hasattr(answer, "coordinators"):
        return int(answer.coordinators[0].error_code)
    if hasattr(answer, "results_by_topic_v3_and_below"):
        codes = [int(p.partition_error_code) for t in answer.results_by_topic_v3_and_below
                 for p in t.results_by_partition]
        return next((code for code in codes if code != 0), 0)
    return int(answer.error_code)


def committed_records(raw, aborted_transactions) -> tuple[list[list[int]], int | None]:
    """([offset, value] of the records a read_committed consumer hands out, the offset after the last batch).

    KIP-98's consumer algorithm (see the module docstring): `aborted_transactions` are the fetch response's
    (producer_id, first_offset) entries; None or empty means nothing in these batches was aborted."""
    buf = bytes(raw or b"")
    pending = sorted((int(t.first_offset), int(t.producer_id)) for t in (aborted_transactions or ()))
    open_ranges: set[int] = set()  # producer ids inside an aborted transaction's range
    out: list[list[int]] = []
    next_offset = None
    for header, entries in iter_records(buf):
        next_offset = header.next_offset
        while pending and pending[0][0] <= header.last_offset:
            open_ranges.add(pending.pop(0)[1])
        if header.is_control:
            if header.producer_id in open_ranges and entries and entries[0][0] is not None \
                    and control_type(entries[0][0]) == ABORT:
                open_ranges.discard(header.producer_id)
            continue
        if header.is_transactional and header.producer_id in open_ranges:
            continue
        for delta, (_, value) in enumerate(entries):
            out.append([header.base_offset + delta, int(value)])
    return out, next_offset


class TransactionalProducer:
    """One producer slot's transactional client (see the module docstring)."""

    def __init__(self, world, client, leaders, node_ids: list[int], topic: str, transactional_id: str,
                 produce_request, not_written: set[int], ack_timeout_s: float,
                 transaction_timeout_s: float = TRANSACTION_TIMEOUT_S):
        self.world = world
        self.client = client
        self.leaders = leaders
        self.node_ids = node_ids
        self.topic = topic
        self.transactional_id = transactional_id
        self.produce_request = produce_request  # (topic, partition, batch, ack timeout, transactional id) -> request
        self.not_written = not_written  # Produce errors answered before any append
        self.ack_timeout_s = ack_timeout_s
        self.transaction_timeout_s = transaction_timeout_s  # transaction.timeout.ms, sent with InitProducerId
        self.coordinator: int | None = None
        self.producer_id: int | None = None
        self.epoch = -1
        self.sequences: dict[int, int] = {}

    # ---- coordinator ---------------------------------------------------------------------

    async def _find_coordinator(self) -> list:
        """Ask each node in turn for the coordinator of the id; the error of the last try, or [] when found."""
        error: list = ["no-coordinator", "no node named a coordinator"]
        for node_id in self.node_ids:
            try:
                answer = await self.client.request(node_id, find_coordinator_request(self.transactional_id),
                                                   timeout_s=REQUEST_TIMEOUT_S / 2)
            except ClientError as exc:
                error = ["no-answer", str(exc)]
                continue
            found = answer.coordinators[0]
            if int(found.error_code) == 0 and found.node_id >= 0:
                self.coordinator = int(found.node_id)
                return []
            error = ["error-code", int(found.error_code)]
        return error

    async def _call(self, build) -> tuple[int | None, list]:
        """Send `build()` to the coordinator until it answers something final or COORDINATOR_DEADLINE_S passed:
        (0, []) on success, (code, error) on a final error, (None, error) when it never answered finally."""
        loop = self.world.loop
        deadline = loop.time() + COORDINATOR_DEADLINE_S
        error: list = ["no-coordinator", "no node named a coordinator"]
        while True:
            if self.coordinator is None:
                error = await self._find_coordinator() or error
            if self.coordinator is not None:
                try:
                    answer = await self.client.request(self.coordinator, build(), timeout_s=REQUEST_TIMEOUT_S)
                except ClientError as exc:
                    self.coordinator, error = None, ["no-answer", str(exc)]
                else:
                    code = _error_code(answer)
                    if code == 0:
                        return 0, [answer]
                    error = ["error-code", code]
                    if code not in COORDINATOR_RETRIABLE:
                        return code, error
                    if code != CONCURRENT_TRANSACTIONS:
                        self.coordinator = None
            if loop.time() >= deadline:
                return None, error
            await self.world.sleep(RETRY_BACKOFF_S)

    async def init(self) -> list:
        """InitProducerId with the transactional id: a producer id and a new epoch ([] when taken, else the error).
        On an open transaction the coordinator aborts it first (answering CONCURRENT_TRANSACTIONS meanwhile)."""
        self.producer_id, self.epoch, self.sequences = None, -1, {}
        code, detail = await self._call(lambda: init_transactional_id_request(self.transactional_id,
                                                                              self.transaction_timeout_s))
        if code != 0:
            return detail
        answer = detail[0]
        self.producer_id, self.epoch = int(answer.producer_id), int(answer.producer_epoch)
        return []

    # ---- one transaction -----------------------------------------------------------------

    async def transaction(self, sends: list[list], abort: bool, before_end=None):
        """Run `sends` ([["send", key, value], ...]) in one transaction: (type, value, error) of the `txn` op.

        `before_end` (broker.sim.pipeline's processors: AddOffsetsToTxn and TxnOffsetCommit): awaited after the
        sends and before EndTxn, it returns [] to go on or an error, which ends the transaction as a failed send
        does (an epoch bump, `fail`)."""
        if self.producer_id is None:
            error = await self.init()
            if error:
                return "fail", sends, ["no-producer-id", *error]
        keys = sorted({key for _, key, _ in sends})
        code, detail = await self._call(lambda: add_partitions_request(
            self.transactional_id, self.producer_id, self.epoch, self.topic, keys))
        if code != 0:
            return "fail", sends, await self._bump(["add-partitions", *detail])
        offsets: dict[int, int] = {}
        for key in keys:
            offset, error = await self._produce(key, [value for _, k, value in sends if k == key])
            if offset is None:
                return "fail", sends, await self._bump(["produce", *error])
            offsets[key] = offset
        if before_end is not None:
            error = await before_end()
            if error:
                return "fail", sends, await self._bump(error)
        if abort:
            code, detail = await self._call(lambda: end_txn_request(self.transactional_id, self.producer_id,
                                                                    self.epoch, False))
            reason = ["aborted", "the workload aborts a tenth of its transactions on purpose"]
            if code != 0:
                return "fail", sends, await self._bump(reason + ["abort-failed", *detail])
            return "fail", sends, reason
        code, detail = await self._call(lambda: end_txn_request(self.transactional_id, self.producer_id, self.epoch,
                                                                True))
        if code != 0:
            return "info", sends, await self._bump(["commit", *detail])
        completed, seen = [], {key: 0 for key in keys}
        for _, key, value in sends:
            completed.append(["send", key, [offsets[key] + seen[key], value]])
            seen[key] += 1
        return "ok", completed, None

    async def _bump(self, error: list) -> list:
        """End the transaction by bumping the epoch (InitProducerId again: the coordinator aborts what is open);
        `error`, with the bump's own error when that failed too (the next op tries again)."""
        failed = await self.init()
        return error + (["epoch-bump-failed", *failed] if failed else [])

    async def _produce(self, key: int, values: list[int]) -> tuple[int | None, list]:
        """One transactional batch of `values` to `key`'s leader: (its base offset, []) or (None, error). A batch
        refused before the append is sent again to the leader found again, until COORDINATOR_DEADLINE_S; any other
        failure ends the attempt (the caller bumps the epoch: the batch may be in the log)."""
        loop = self.world.loop
        sequence = self.sequences.get(key, 0)
        batch = build_batch([(None, str(value).encode()) for value in values],
                            base_timestamp=self.client.runtime.clock.wall_ms(), producer_id=self.producer_id,
                            producer_epoch=self.epoch, base_sequence=sequence, attributes=TRANSACTIONAL)
        deadline = loop.time() + COORDINATOR_DEADLINE_S
        error: list = ["no-leader", "no node named a leader for the partition"]
        while True:
            leader = await self.leaders.of(key)
            if leader is not None:
                request = self.produce_request(self.topic, key, batch, self.ack_timeout_s, self.transactional_id)
                try:
                    answer = await self.client.request(leader, request, timeout_s=REQUEST_TIMEOUT_S)
                except ClientError as exc:
                    self.leaders.forget(key)
                    return None, ["no-answer", str(exc)]
                partition = answer.responses[0].partition_responses[0]
                code = int(partition.error_code)
                if code == 0:
                    self.sequences[key] = sequence + len(values)
                    return int(partition.base_offset), []
                self.leaders.forget(key)
                error = ["error-code", code]
                if code not in self.not_written:
                    return None, error
            if loop.time() >= deadline:
                return None, error
            await self.world.sleep(RETRY_BACKOFF_S)
