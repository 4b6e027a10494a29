"""The transaction coordinator's state machine, one entry per `transactional.id` (KIP-98, KIP-447).

This module is pure: no I/O, no network, no clock of its own (times come in as
`now_ms` arguments, the wall clock in milliseconds, because transaction start
times are persisted and outlive the process that took them). The server layer
persists every `TxnRecord` this machine emits into `__transaction_state` (acks=all)
before answering the client, sends the `MarkerJob`s it emits as WriteTxnMarkers to
the partition leaders, and calls `markers_written` when every marker is on disk.

States and transitions (Kafka's `TransactionState`):

    Empty --AddPartitions/AddOffsets--> Ongoing --EndTxn(commit)--> PrepareCommit --markers--> CompleteCommit
                                           |---EndTxn(abort) / timeout / InitProducerId--> PrepareAbort --markers--> CompleteAbort
    Complete*/Empty --AddPartitions--> Ongoing;  Complete*/Empty --InitProducerId--> Empty (epoch + 1)

Invariants:
- a transaction in PrepareCommit/PrepareAbort has exactly one outstanding
  `MarkerJob`; every request for that id meanwhile gets CONCURRENT_TRANSACTIONS
  (the client retries), except a retried EndTxn of the same outcome;
- the epoch only grows (until it would pass 32766, when a new producer id is
  allocated at epoch 0); a request with an older epoch is fenced (PRODUCER_FENCED,
  which `fenced_error` maps to INVALID_PRODUCER_EPOCH for old request versions);
- InitProducerId on an Ongoing transaction, and the transaction timeout, bump the
  epoch before aborting, so the old producer can no longer write to the
  transaction being aborted (`epoch_bump_unfenced` plants a bug,
  logquake.debug.epoch.bump.unfenced: InitProducerId skips the abort);
- replaying the emitted records (`load`) gives back the same state; a
  transaction left in a Prepare state is completed again (`pending_markers`).

State record encoding (value of a `__transaction_state` record whose key is the
UTF-8 transactional id), all big-endian:
    version int16 (0) | producer_id int64 | producer_epoch int16 | timeout_ms int32 |
    state int8 (TxnState value) | start_ms int64 | last_update_ms int64 |
    partition count int32 | per partition: topic length int16, topic UTF-8, partition int32

Thread-safety: none; the event loop is the only caller.
Sources: KIP-98 (exactly-once delivery and transactional messaging), KIP-447
(producer scalability: group metadata in TxnOffsetCommit), KIP-588 (PRODUCER_FENCED),
Kafka's TransactionCoordinator / TransactionMetadata (behaviour, not code).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field

from kio.schema.errors import ErrorCode

MAX_PRODUCER_EPOCH = 32766  # Short.MaxValue - 1: the epoch a bump may reach
DEFAULT_MAX_TIMEOUT_MS = 900_000  # transaction.max.timeout.ms
RECORD_VERSION = 0


class TxnState(enum.IntEnum):
    EMPTY = 0
    ONGOING = 1
    PREPARE_COMMIT = 2
    PREPARE_ABORT = 3
    COMPLETE_COMMIT = 4
    COMPLETE_ABORT = 5


# The names ListTransactions and DescribeTransactions report (Kafka's TransactionState.name).
STATE_NAMES = {
    TxnState.EMPTY: "Empty",
    TxnState.ONGOING: "Ongoing",
    TxnState.PREPARE_COMMIT: "PrepareCommit",
    TxnState.PREPARE_ABORT: "PrepareAbort",
    TxnState.COMPLETE_COMMIT: "CompleteCommit",
    TxnState.COMPLETE_ABORT: "CompleteAbort",
}
# Kafka's other states, accepted in ListTransactions filters though no transaction here is ever in them
OTHER_STATE_NAMES = ("Dead", "PrepareEpochFence")

PREPARING = (TxnState.PREPARE_COMMIT, TxnState.PREPARE_ABORT)
COMPLETE = (TxnState.COMPLETE_COMMIT, TxnState.COMPLETE_ABORT, TxnState.EMPTY)


@dataclass(slots=True)
class TxnMetadata:
    transactional_id: str
    producer_id: int
    producer_epoch: int
    timeout_ms: int
    state: TxnState = TxnState.EMPTY
    partitions: set[tuple[str, int]] = field(default_factory=set)
    start_ms: int = -1
    last_update_ms: int = -1


@dataclass(frozen=True, slots=True)
class TxnRecord:
    """One state change to append to `__transaction_state` (key: transactional id)."""

    transactional_id: str
    producer_id: int
    producer_epoch: int
    timeout_ms: int
    state: TxnState
    partitions: tuple[tuple[str, int], ...]
    start_ms: int
    last_update_ms: int

    def encode_value(self) -> bytes:
        parts = [struct.pack(">hqhibqqi", RECORD_VERSION, self.producer_id, self.producer_epoch, self.timeout_ms,
                             int(self.state), self.start_ms, self.last_update_ms, len(self.partitions))]
        for topic, partition in self.partitions:
            name = topic.encode()
            parts.append(struct.pack(">h", len(name)) + name + struct.pack(">i", partition))
        return b"".join(parts)

    @classmethod
    def decode(cls, key: bytes, value: bytes) -> TxnRecord:
        head = struct.Struct(">hqhibqqi")
        version, producer_id, epoch, timeout_ms, state, start_ms, update_ms, count = head.unpack_from(value, 0)
        if version != RECORD_VERSION:
            raise ValueError(f"transaction state record version {version} unknown; this broker reads version {RECORD_VERSION}")
        position = head.size
        partitions = []
        for _ in range(count):
            (length,) = struct.unpack_from(">h", value, position)
            topic = value[position + 2:position + 2 + length].decode()
            (partition,) = struct.unpack_from(">i", value, position + 2 + length)
            partitions.append((topic, partition))
            position += 2 + length + 4
        return cls(key.decode(), producer_id, epoch, timeout_ms, TxnState(state), tuple(sorted(partitions)),
                   start_ms, update_ms)


@dataclass(frozen=True, slots=True)
class MarkerJob:
    """Write a commit or abort control batch, as (producer_id, producer_epoch), into every partition."""

    transactional_id: str
    producer_id: int
    producer_epoch: int
    commit: bool
    partitions: tuple[tuple[str, int], ...]


@dataclass(slots=True)
class Outcome:
    """What a request did: its error code, the producer id/epoch to answer, and the side effects to carry out."""

    error: ErrorCode
    producer_id: int = -1
    producer_epoch: int = -1
    records: list[TxnRecord] = field(default_factory=list)
    markers: list[MarkerJob] = field(default_factory=list)


def java_string_hash(text: str) -> int:
    """Java's String.hashCode over UTF-16 code units, as a signed int32."""
    value = 0
    encoded = text.encode("utf-16-be")
    for index in range(0, len(encoded), 2):
        value = (31 * value + ((encoded[index] << 8) | encoded[index + 1])) & 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def partition_for(transactional_id: str, partition_count: int) -> int:
    """The `__transaction_state` partition whose leader coordinates this id (Kafka's Utils.abs(hashCode) % N)."""
    if partition_count <= 0:
        raise ValueError(f"partition_count={partition_count!r}: must be a positive number of partitions")
    code = java_string_hash(transactional_id)
    return (0 if code == -(1 << 31) else abs(code)) % partition_count


def fenced_error(api_version_supports_producer_fenced: bool) -> ErrorCode:
    """PRODUCER_FENCED for clients that know it (KIP-588), INVALID_PRODUCER_EPOCH for older ones."""
    return ErrorCode.producer_fenced if api_version_supports_producer_fenced else ErrorCode.invalid_producer_epoch


class TransactionStateMachine:
    """All transactions of the `__transaction_state` partitions this broker leads."""

    def __init__(self, allocate_producer_id, max_timeout_ms: int = DEFAULT_MAX_TIMEOUT_MS,
                 epoch_bump_unfenced: bool = False) -> None:
        self.allocate_producer_id = allocate_producer_id
        self.max_timeout_ms = max_timeout_ms
        self.epoch_bump_unfenced = epoch_bump_unfenced  # a planted bug, see init_producer_id
        self.transactions: dict[str, TxnMetadata] = {}

    # -- persistence -------------------------------------------------------------------------------------

    def _record(self, meta: TxnMetadata) -> TxnRecord:
        return TxnRecord(meta.transactional_id, meta.producer_id, meta.producer_epoch, meta.timeout_ms, meta.state,
                         tuple(sorted(meta.partitions)), meta.start_ms, meta.last_update_ms)

    def load(self, records) -> None:
        """Replay state records (oldest first), e.g. on becoming leader of a `__transaction_state` partition."""
        for record in records:
            self.transactions[record.transactional_id] = TxnMetadata(
                record.transactional_id, record.producer_id, record.producer_epoch, record.timeout_ms, record.state,
                set(record.partitions), record.start_ms, record.last_update_ms)

    def pending_markers(self) -> list[MarkerJob]:
        """Marker jobs of transactions left in a Prepare state (to re-send after failover)."""
        return [self._marker_job(meta) for meta in self.transactions.values() if meta.state in PREPARING]

    def _marker_job(self, meta: TxnMetadata) -> MarkerJob:
        return MarkerJob(meta.transactional_id, meta.producer_id, meta.producer_epoch,
                         meta.state == TxnState.PREPARE_COMMIT, tuple(sorted(meta.partitions)))

    # -- requests ----------------------------------------------------------------------------------------

    def _bump(self, meta: TxnMetadata) -> None:
        if meta.producer_epoch >= MAX_PRODUCER_EPOCH:
            meta.producer_id = self.allocate_producer_id()
            meta.producer_epoch = 0
        else:
            meta.producer_epoch += 1

    def _prepare(self, meta: TxnMetadata, commit: bool, now_ms: int, outcome: Outcome) -> None:
        if not meta.partitions:
            # Nothing was written: no markers to send, the transaction completes at once.
            meta.state = TxnState.COMPLETE_COMMIT if commit else TxnState.COMPLETE_ABORT
        else:
            meta.state = TxnState.PREPARE_COMMIT if commit else TxnState.PREPARE_ABORT
            outcome.markers.append(self._marker_job(meta))
        meta.last_update_ms = now_ms
        outcome.records.append(self._record(meta))

    def init_producer_id(self, transactional_id: str, timeout_ms: int, now_ms: int) -> Outcome:
        """InitProducerId with a transactional.id: a new id at epoch 0, or the same id with the epoch bumped."""
        if not 0 < timeout_ms <= self.max_timeout_ms:
            return Outcome(ErrorCode.invalid_transaction_timeout)
        meta = self.transactions.get(transactional_id)
        if meta is None:
            meta = TxnMetadata(transactional_id, self.allocate_producer_id(), 0, timeout_ms, last_update_ms=now_ms)
            self.transactions[transactional_id] = meta
            return Outcome(ErrorCode.none, meta.producer_id, 0, [self._record(meta)])
        if meta.state in PREPARING:
            return Outcome(ErrorCode.concurrent_transactions)
        # epoch_bump_unfenced (logquake.debug.epoch.bump.unfenced, a planted bug): an Ongoing transaction is
        # bumped like a finished one, so its partitions never get the abort marker that fences the old epoch:
        # its records stay open there until the new epoch's next marker ends them with that transaction's outcome.
        if meta.state == TxnState.ONGOING and not self.epoch_bump_unfenced:
            # Fence the old producer first, then abort what it left open; the client retries
            # after CONCURRENT_TRANSACTIONS and then gets one more bump.
            self._bump(meta)
            outcome = Outcome(ErrorCode.concurrent_transactions)
            self._prepare(meta, False, now_ms, outcome)
            return outcome
        self._bump(meta)
        meta.state = TxnState.EMPTY
        meta.partitions = set()
        meta.timeout_ms = timeout_ms
        meta.start_ms = -1
        meta.last_update_ms = now_ms
        return Outcome(ErrorCode.none, meta.producer_id, meta.producer_epoch, [self._record(meta)])

    def _check_producer(self, transactional_id: str, producer_id: int, producer_epoch: int):
        meta = self.transactions.get(transactional_id)
        if meta is None or meta.producer_id != producer_id:
            return None, ErrorCode.invalid_producer_id_mapping
        if producer_epoch != meta.producer_epoch:
            return None, ErrorCode.producer_fenced
        return meta, ErrorCode.none

    def add_partitions(self, transactional_id: str, producer_id: int, producer_epoch: int, partitions,
                       now_ms: int) -> Outcome:
        """AddPartitionsToTxn (and AddOffsetsToTxn, with the group's `__consumer_offsets` partition)."""
        meta, error = self._check_producer(transactional_id, producer_id, producer_epoch)
        if meta is None:
            return Outcome(error)
        if meta.state in PREPARING:
            return Outcome(ErrorCode.concurrent_transactions)
        if not partitions:
            return Outcome(ErrorCode.none, meta.producer_id, meta.producer_epoch)
        new = set(partitions) - meta.partitions
        if meta.state != TxnState.ONGOING:
            meta.partitions = set()
            meta.start_ms = now_ms
            meta.state = TxnState.ONGOING
            new = set(partitions)
        if not new:
            return Outcome(ErrorCode.none, meta.producer_id, meta.producer_epoch)
        meta.partitions |= new
        meta.last_update_ms = now_ms
        return Outcome(ErrorCode.none, meta.producer_id, meta.producer_epoch, [self._record(meta)])

    def end_txn(self, transactional_id: str, producer_id: int, producer_epoch: int, commit: bool,
                now_ms: int) -> Outcome:
        """EndTxn: phase one (prepare, logged); the markers it emits are phase two."""
        meta, error = self._check_producer(transactional_id, producer_id, producer_epoch)
        if meta is None:
            return Outcome(error)
        state = meta.state
        if state == TxnState.ONGOING:
            outcome = Outcome(ErrorCode.none, meta.producer_id, meta.producer_epoch)
            self._prepare(meta, commit, now_ms, outcome)
            return outcome
        wanted = (TxnState.PREPARE_COMMIT, TxnState.COMPLETE_COMMIT) if commit else (TxnState.PREPARE_ABORT, TxnState.COMPLETE_ABORT)
        if state == wanted[0]:
            return Outcome(ErrorCode.concurrent_transactions)
        if state == wanted[1]:
            return Outcome(ErrorCode.none, meta.producer_id, meta.producer_epoch)  # a retry of a finished EndTxn
        return Outcome(ErrorCode.invalid_txn_state)

    def markers_written(self, transactional_id: str, producer_id: int, producer_epoch: int, now_ms: int) -> Outcome:
        """Every marker of the prepared transaction is written: it completes."""
        meta = self.transactions.get(transactional_id)
        assert meta is not None and meta.state in PREPARING, f"markers written for {transactional_id!r} not preparing"
        assert (meta.producer_id, meta.producer_epoch) == (producer_id, producer_epoch), "marker job outlived its epoch"
        meta.state = TxnState.COMPLETE_COMMIT if meta.state == TxnState.PREPARE_COMMIT else TxnState.COMPLETE_ABORT
        meta.partitions = set()
        meta.last_update_ms = now_ms
        return Outcome(ErrorCode.none, meta.producer_id, meta.producer_epoch, [self._record(meta)])

    def expire(self, now_ms: int) -> Outcome:
        """Abort every Ongoing transaction older than its `transaction.timeout.ms`, fencing its producer."""
        outcome = Outcome(ErrorCode.none)
        for meta in self.transactions.values():
            if meta.state == TxnState.ONGOING and now_ms - meta.start_ms > meta.timeout_ms:
                self._bump(meta)
                self._prepare(meta, False, now_ms, outcome)
        return outcome
