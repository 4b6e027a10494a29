"""Per-partition producer state for idempotent producers (KIP-98).

For each producer id the partition remembers the producer epoch and its last
five appended batches (first sequence, last sequence, base offset, last
offset), as Kafka's `ProducerStateManager` does (five is the most in-flight
requests an idempotent client may have). Checking a new batch:

- an epoch older than the known one: INVALID_PRODUCER_EPOCH;
- a newer epoch: the sequence must start again at 0;
- the same epoch: a batch whose (first, last) sequence matches a remembered one
  is a retry and gets the original offsets back without being appended; any
  other batch must start right after the last sequence (mod 2^31), otherwise
  OUT_OF_ORDER_SEQUENCE_NUMBER;
- an unknown producer must start at sequence 0.

One departure from Kafka: a transactional batch that matches a remembered
batch of a transaction already ended by a marker is not a retry (a client
ends a transaction only after every produce of it was answered) but a reuse
of its sequence numbers, and gets OUT_OF_ORDER_SEQUENCE_NUMBER instead of the
old offsets. librdkafka was seen to reuse them: a batch answered
NOT_ENOUGH_REPLICAS_AFTER_APPEND while its leader lost its ISR, its transaction
aborted, and the next transaction sent a new record under the same epoch and
sequence (our reading: librdkafka counts the batch as not written once a retry
is answered NOT_LEADER_OR_FOLLOWER, which it classes as not persisted, and
rewinds the sequence after the abort without bumping the epoch). Kafka answers those as
duplicates with the aborted batch's offset, so a committed transaction loses
them without an error (found by the pipeline workload; `logquake check` names
it `txn-output-missing`). The error instead makes librdkafka abort and bump
its epoch (KIP-360), and the records are written again.

The state is rebuilt at start by replaying the batch headers of the log
(`rebuild`), so it survives restarts exactly as far as the log does. A
snapshot (`write_snapshot`, `<offset>.snapshot` in the partition directory,
JSON: version, the offset it covers up to, producers with epoch and cached
batches, ongoing transactions, aborted transactions) lets a rebuild start at
that offset instead of the log start (`load_latest_snapshot`); a snapshot past
the log end (after truncation) is ignored.

Transactions (KIP-98): the first offset of each producer's open transaction is
kept (`ongoing`); a commit or abort marker (`apply_marker`) closes it, and an
abort is remembered as (producer id, first offset, last offset) in `aborted`,
the in-memory transaction index. A transaction whose marker the leader appended
stays unstable (`unreplicated`) until the high watermark passes the marker, as
in Kafka's ProducerStateManager: a read_committed consumer never reads past a
decision that a leader failover could still lose. The last stable offset is the
smallest first offset of an open or unreplicated transaction, never above the
high watermark; `aborted_overlapping` answers Fetch's `aborted_transactions`.
Transactional batches without sequence numbers (TxnOffsetCommit's batches,
written by the group coordinator into `__consumer_offsets`) open a transaction
too (`begin_unsequenced`) and are fenced by epoch only (`epoch_error`).

Thread-safety: none; the event loop is the only caller.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field

from broker.protocol.records import BatchHeader
from broker.io.persist import read_file, write_atomically

CACHED_BATCHES = 5
DUPLICATE = "duplicate"
OK = "ok"
OUT_OF_ORDER = "out_of_order_sequence_number"
INVALID_EPOCH = "invalid_producer_epoch"
SNAPSHOT_VERSION = 1
SNAPSHOT_SUFFIX = ".snapshot"


@dataclass(slots=True)
class BatchMetadata:
    first_sequence: int
    last_sequence: int
    base_offset: int
    last_offset: int


@dataclass(slots=True)
class ProducerEntry:
    epoch: int
    batches: deque = field(default_factory=lambda: deque(maxlen=CACHED_BATCHES))


@dataclass(frozen=True, slots=True)
class AbortedTxn:
    producer_id: int
    first_offset: int
    last_offset: int


class ProducerStateTable:
    def __init__(self) -> None:
        self.producers: dict[int, ProducerEntry] = {}
        self.ongoing: dict[int, int] = {}  # producer id -> first offset of its open transaction
        self.aborted: list[AbortedTxn] = []  # by last_offset, ascending (markers arrive in log order)
        # (first offset, marker offset) of transactions decided on this leader but not yet below the HW
        self.unreplicated: list[tuple[int, int]] = []
        # producer id -> the newest transaction coordinator epoch seen in its markers
        self.coordinator_epochs: dict[int, int] = {}

    def check(self, header: BatchHeader) -> tuple[str, BatchMetadata | None]:
        """Classify an incoming idempotent batch; for a duplicate, also return its original metadata."""
        entry = self.producers.get(header.producer_id)
        first = header.base_sequence
        if entry is None or header.producer_epoch > entry.epoch:
            return (OK, None) if first == 0 else (OUT_OF_ORDER, None)
        if header.producer_epoch < entry.epoch:
            return INVALID_EPOCH, None
        last = header.last_sequence
        for cached in entry.batches:
            if cached.first_sequence == first and cached.last_sequence == last:
                if header.is_transactional and not self._in_open_transaction(header.producer_id, cached):
                    # Sequences reused after the batch's transaction ended: not a retry (see the module docstring).
                    return OUT_OF_ORDER, cached
                return DUPLICATE, cached
        if not entry.batches:
            return (OK, None) if first == 0 else (OUT_OF_ORDER, None)
        expected = (entry.batches[-1].last_sequence + 1) & 0x7FFFFFFF
        return (OK, None) if first == expected else (OUT_OF_ORDER, None)

    def _in_open_transaction(self, producer_id: int, cached: BatchMetadata) -> bool:
        """Whether `cached` lies in the producer's open transaction (a marker has not ended it)."""
        first_offset = self.ongoing.get(producer_id)
        return first_offset is not None and cached.base_offset >= first_offset

    def record(self, header: BatchHeader, base_offset: int) -> None:
        """Remember an appended batch (`base_offset` is the offset the log assigned)."""
        entry = self.producers.get(header.producer_id)
        if entry is None or header.producer_epoch != entry.epoch:
            entry = ProducerEntry(header.producer_epoch)
            self.producers[header.producer_id] = entry
        entry.batches.append(
            BatchMetadata(header.base_sequence, header.last_sequence, base_offset, base_offset + header.last_offset_delta)
        )
        if header.is_transactional:
            self.ongoing.setdefault(header.producer_id, base_offset)

    def epoch_error(self, producer_id: int, producer_epoch: int) -> bool:
        """True when `producer_epoch` is older than the epoch this partition knows for the producer (fenced)."""
        entry = self.producers.get(producer_id)
        return entry is not None and producer_epoch < entry.epoch

    def begin_unsequenced(self, producer_id: int, producer_epoch: int, base_offset: int) -> None:
        """A transactional batch without sequence numbers (the group coordinator's TxnOffsetCommit) at `base_offset`."""
        entry = self.producers.get(producer_id)
        if entry is None or producer_epoch > entry.epoch:
            self.producers[producer_id] = ProducerEntry(producer_epoch)
        self.ongoing.setdefault(producer_id, base_offset)

    def marker_fenced(self, producer_id: int, coordinator_epoch: int) -> bool:
        """True when a marker from `coordinator_epoch` comes from a coordinator older than one already heard.

        A coordinator that lost its partition (killed, or cut off and still
        retrying) may deliver a marker late, after its successor finished the
        transaction and the producer began the next: appending it would end
        the wrong transaction. Kafka refuses it (TRANSACTION_COORDINATOR_FENCED).
        """
        return coordinator_epoch < self.coordinator_epochs.get(producer_id, -1)

    def apply_marker(self, producer_id: int, producer_epoch: int, offset: int, commit: bool,
                     replicated: bool = True, coordinator_epoch: int = -1) -> None:
        """A commit/abort control batch at `offset` ends the producer's open transaction (if any).

        `replicated` False (a leader's own append): the transaction stays unstable until
        the high watermark passes `offset` (see `last_stable_offset`).
        """
        if coordinator_epoch > self.coordinator_epochs.get(producer_id, -1):
            self.coordinator_epochs[producer_id] = coordinator_epoch
        entry = self.producers.get(producer_id)
        if entry is None or producer_epoch > entry.epoch:
            # The coordinator bumped the epoch (fencing); sequences start again at 0.
            self.producers[producer_id] = ProducerEntry(producer_epoch)
        first_offset = self.ongoing.pop(producer_id, None)
        if first_offset is not None and not replicated:
            self.unreplicated.append((first_offset, offset))
        if not commit and first_offset is not None:
            self.aborted.append(AbortedTxn(producer_id, first_offset, offset))

    def first_unstable_offset(self, high_watermark: int | None = None) -> int | None:
        if high_watermark is not None and self.unreplicated:
            self.unreplicated = [(first, marker) for first, marker in self.unreplicated if marker >= high_watermark]
        firsts = [first for first, _ in self.unreplicated]
        return min([*self.ongoing.values(), *firsts], default=None)

    def last_stable_offset(self, high_watermark: int) -> int:
        first = self.first_unstable_offset(high_watermark)
        return high_watermark if first is None else min(first, high_watermark)

    def aborted_overlapping(self, fetch_offset: int, upper_bound_offset: int) -> list[AbortedTxn]:
        """Aborted transactions with records in [fetch_offset, upper_bound_offset), as Fetch reports them."""
        return [txn for txn in self.aborted if txn.last_offset >= fetch_offset and txn.first_offset < upper_bound_offset]

    def rebuild(self, headers, control_commit=None, skip_aborts: bool = False) -> int:
        """Replay stored batch headers (oldest first); return how many idempotent batches were seen.

        `control_commit(header)` tells a control batch's kind (True commit, False abort,
        None neither); without it control batches are skipped. `skip_aborts` plants a bug
        (logquake.debug.abort.marker.lost): abort markers are passed over as if they were no
        markers, so a new leader keeps an aborted transaction open and leaves it out of `aborted`.
        """
        count = 0
        for header in headers:
            if header.is_control:
                kind = None if control_commit is None else control_commit(header)
                # control_commit may tell the coordinator epoch too: (commit, coordinator_epoch)
                commit, coordinator_epoch = kind if isinstance(kind, tuple) else (kind, -1)
                # skip_aborts (a planted bug): `if commit` where `commit is not None` was meant
                if (commit if skip_aborts else commit is not None) and header.producer_id >= 0:
                    self.apply_marker(header.producer_id, header.producer_epoch, header.base_offset, commit,
                                      coordinator_epoch=coordinator_epoch)
            elif header.producer_id >= 0 and header.base_sequence >= 0:
                self.record(header, header.base_offset)
                count += 1
            elif header.producer_id >= 0 and header.is_transactional:
                self.begin_unsequenced(header.producer_id, header.producer_epoch, header.base_offset)
        return count

    # -- snapshots ---------------------------------------------------------------------------------------

    def snapshot_bytes(self, next_offset: int) -> bytes:
        """The state after every batch below `next_offset`, as a snapshot file's contents."""
        value = {
            "version": SNAPSHOT_VERSION,
            "next_offset": next_offset,
            "producers": [
                {"producer_id": pid, "epoch": entry.epoch,
                 "batches": [[b.first_sequence, b.last_sequence, b.base_offset, b.last_offset] for b in entry.batches]}
                for pid, entry in sorted(self.producers.items())
            ],
            "ongoing": sorted([pid, first] for pid, first in self.ongoing.items()),
            "aborted": [[t.producer_id, t.first_offset, t.last_offset] for t in self.aborted],
            "coordinator_epochs": sorted([pid, epoch] for pid, epoch in self.coordinator_epochs.items()),
        }
        return json.dumps(value, sort_keys=True).encode("utf-8")

    @classmethod
    def from_snapshot_bytes(cls, raw: bytes) -> tuple[ProducerStateTable, int]:
        """Parse a snapshot; return the table and the offset replay continues from."""
        value = json.loads(raw.decode("utf-8"))
        if value.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"producer state snapshot version {value.get('version')!r} unknown; "
                             f"this broker reads version {SNAPSHOT_VERSION}")
        table = cls()
        for producer in value["producers"]:
            entry = ProducerEntry(producer["epoch"])
            for first, last, base, last_offset in producer["batches"]:
                entry.batches.append(BatchMetadata(first, last, base, last_offset))
            table.producers[producer["producer_id"]] = entry
        table.ongoing = {pid: first for pid, first in value["ongoing"]}
        table.aborted = [AbortedTxn(*triple) for triple in value["aborted"]]
        # absent from snapshots written before markers were fenced by coordinator epoch
        table.coordinator_epochs = {pid: epoch for pid, epoch in value.get("coordinator_epochs", [])}
        return table, value["next_offset"]

    def write_snapshot(self, disk, directory: str, next_offset: int) -> str:
        """Write `<next_offset>.snapshot` atomically into the partition directory; return its name."""
        name = f"{next_offset:020d}{SNAPSHOT_SUFFIX}"
        write_atomically(disk, directory, name, self.snapshot_bytes(next_offset))
        return name

    @classmethod
    def load_latest_snapshot(cls, disk, directory: str, log_end_offset: int) -> tuple[ProducerStateTable, int]:
        """The newest readable snapshot at or below `log_end_offset`, else an empty table from offset 0."""
        offsets = sorted(
            (int(name[: -len(SNAPSHOT_SUFFIX)]) for name in disk.listdir(directory)
             if name.endswith(SNAPSHOT_SUFFIX) and name[: -len(SNAPSHOT_SUFFIX)].isdigit()),
            reverse=True,
        )
        for offset in offsets:
            if offset > log_end_offset:
                continue  # written before a truncation: describes records the log no longer holds
            raw = read_file(disk, f"{directory}/{offset:020d}{SNAPSHOT_SUFFIX}")
            if raw is None:
                continue
            try:
                return cls.from_snapshot_bytes(raw)
            except (ValueError, KeyError, TypeError):
                continue  # a damaged snapshot only costs a longer replay
        return cls(), 0
