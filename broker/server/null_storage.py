"""A storage layer that stores nothing: the "null broker" used as a benchmark baseline.

It has the shape of `LogManager` and `PartitionLog` (get/create/delete_topic/
maintain/close; append/read/offset_for_timestamp/iter_batch_headers), so the
very same request handlers and protocol layer run on top of it. Appends are
acknowledged with offsets that advance by the batch's record count; a fetch is
served from one cached batch (the first one produced to the partition) with its
base offset patched to the requested offset, so a consumer sees a plausible,
advancing log. Comparing the real broker with this one isolates the cost of
the log from the cost of the protocol and the event loop.

Thread-safety: none; the event loop is the only caller.
"""

from __future__ import annotations

from dataclasses import dataclass

from broker.protocol.records import iter_batches, patch_base_offset


@dataclass(slots=True)
class NullAppendResult:
    """The fields of `broker.log.log.AppendResult`, without depending on the log package."""

    base_offset: int
    last_offset: int
    max_timestamp: int
    record_count: int
    log_append_time_ms: int


class NullPartitionLog:
    def __init__(self) -> None:
        self.log_start_offset = 0
        self.log_end_offset = 0
        self.recovery_point = 0
        self._cached_batch: bytes | None = None
        self._cached_count = 0

    def append(self, records, leader_epoch: int, headers=None) -> NullAppendResult:
        if headers is None:
            headers = list(iter_batches(records))
        base_offset = self.log_end_offset
        count = 0
        max_timestamp = -1
        for pos, header in headers:
            count += header.last_offset_delta + 1
            max_timestamp = max(max_timestamp, header.max_timestamp)
            if self._cached_batch is None:
                self._cached_batch = bytes(memoryview(records)[pos : pos + header.size])
                self._cached_count = header.last_offset_delta + 1
        self.log_end_offset += count
        return NullAppendResult(base_offset, self.log_end_offset - 1, max_timestamp, count, -1)

    def read(self, offset: int, max_bytes: int, max_offset: int | None = None):
        if self._cached_batch is None or offset >= self.log_end_offset:
            return b""
        batch = bytearray(self._cached_batch)
        patch_base_offset(batch, 0, offset)
        # The cached batch may reach past what was produced; the virtual log then
        # grows to cover what it served, so the next fetch is not out of range.
        self.log_end_offset = max(self.log_end_offset, offset + self._cached_count)
        return batch

    def offset_for_timestamp(self, timestamp_ms: int):
        return None

    def iter_batch_headers(self, from_offset: int = 0):
        return iter(())

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class NullLogManager:
    def __init__(self) -> None:
        self.logs: dict[tuple[str, int], NullPartitionLog] = {}

    def load(self) -> dict[tuple[str, int], NullPartitionLog]:
        return dict(self.logs)

    def get(self, topic: str, partition: int) -> NullPartitionLog | None:
        return self.logs.get((topic, partition))

    def create(self, topic: str, partition: int, config=None) -> NullPartitionLog:
        log = self.logs.get((topic, partition))
        if log is None:
            log = self.logs[(topic, partition)] = NullPartitionLog()
        return log

    def delete_topic(self, topic: str) -> None:
        for key in [k for k in self.logs if k[0] == topic]:
            del self.logs[key]

    def maintain(self) -> None:
        pass

    def close(self, clean: bool = True) -> None:
        self.logs.clear()
