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

The state is not persisted on its own: it is rebuilt at start by replaying the
batch headers of the log (`rebuild`), so it survives restarts exactly as far as
the log does.

Thread-safety: none; the event loop is the only caller.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from broker.protocol.records import BatchHeader

CACHED_BATCHES = 5
DUPLICATE = "duplicate"
OK = "ok"
OUT_OF_ORDER = "out_of_order_sequence_number"
INVALID_EPOCH = "invalid_producer_epoch"


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


class ProducerStateTable:
    def __init__(self) -> None:
        self.producers: dict[int, ProducerEntry] = {}

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
                return DUPLICATE, cached
        if not entry.batches:
            return (OK, None) if first == 0 else (OUT_OF_ORDER, None)
        expected = (entry.batches[-1].last_sequence + 1) & 0x7FFFFFFF
        return (OK, None) if first == expected else (OUT_OF_ORDER, None)

    def record(self, header: BatchHeader, base_offset: int) -> None:
        """Remember an appended batch (`base_offset` is the offset the log assigned)."""
        entry = self.producers.get(header.producer_id)
        if entry is None or header.producer_epoch != entry.epoch:
            entry = ProducerEntry(header.producer_epoch)
            self.producers[header.producer_id] = entry
        entry.batches.append(
            BatchMetadata(header.base_sequence, header.last_sequence, base_offset, base_offset + header.last_offset_delta)
        )

    def rebuild(self, headers) -> int:
        """Replay stored batch headers (oldest first); return how many idempotent batches were seen."""
        count = 0
        for header in headers:
            if header.producer_id >= 0 and header.base_sequence >= 0 and not header.is_control:
                self.record(header, header.base_offset)
                count += 1
        return count
