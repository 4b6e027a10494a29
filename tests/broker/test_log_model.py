"""Random sequences of log operations compared with a simple in-memory model (Hypothesis stateful test).

The model is a list of stored batches (base offset, last offset, max timestamp,
bytes) plus log_start_offset and log_end_offset. Reads are checked exactly:
the model knows the segment boundaries from `segment_base_offsets`, so it can
compute which whole batches one read must return.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from broker.io import RealDisk
from broker.log.config import LogConfig
from broker.log.log import OffsetOutOfRangeError, PartitionLog
from tests.broker.test_log_support import START_WALL_MS, FakeClock, headers_of, make_batch, runtime, segment_files, stored_form


class _PowerLossFile:
    def __init__(self, inner, disk: "PowerLossDisk"):
        self._inner = inner
        self._disk = disk

    def fsync(self) -> None:
        self._disk.durable_bytes[self._inner.path] = self._inner.size()

    def __getattr__(self, name):
        return getattr(self._inner, name)


class PowerLossDisk(RealDisk):
    """Real files whose fsync only records how many bytes of each file are durable.

    `power_loss` then cuts every file back to a random point between its
    durable size and its current size (index files, never fsync'd, anywhere),
    which is what a machine crash may leave. Skipping real fsyncs also keeps
    the test fast.
    """

    def __init__(self) -> None:
        self.durable_bytes: dict[str, int] = {}

    def open(self, path: str, mode: str):
        if mode in ("wb", "xb"):
            self.durable_bytes[path] = 0
        return _PowerLossFile(super().open(path, mode), self)

    def fsync_dir(self, path: str) -> None:
        pass


@dataclass
class ModelBatch:
    base_offset: int
    last_offset: int
    max_timestamp: int
    data: bytes

    @property
    def next_offset(self) -> int:
        return self.last_offset + 1


class LogMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.mkdtemp(prefix="logmodel-")
        self.path = os.path.join(self.directory, "t-0")
        self.clock = FakeClock()
        self.disk = PowerLossDisk()
        self.log: PartitionLog | None = None
        self.batches: list[ModelBatch] = []
        self.log_start_offset = 0
        self.log_end_offset = 0
        self.tag = 0

    @initialize(
        segment_bytes=st.integers(200, 2000),
        index_interval_bytes=st.integers(0, 400),
        segment_index_bytes=st.sampled_from([24, 48, 10 * 1024 * 1024]),
        retention_bytes=st.sampled_from([-1, 600, 3000]),
    )
    def open(self, segment_bytes, index_interval_bytes, segment_index_bytes, retention_bytes):
        self.config = LogConfig(
            segment_bytes=segment_bytes,
            index_interval_bytes=index_interval_bytes,
            segment_index_bytes=segment_index_bytes,
            retention_bytes=retention_bytes,
            retention_ms=-1,
        )
        self.log = PartitionLog.open(self.path, self.config, runtime(self.clock, self.disk), recover=False)

    def teardown(self) -> None:
        if self.log is not None:
            self.log.close(flush=False)
        shutil.rmtree(self.directory, ignore_errors=True)

    # ------------------------------------------------------------------ rules

    @rule(
        record_counts=st.lists(st.integers(1, 6), min_size=1, max_size=3),
        timestamp_deltas=st.lists(st.integers(-50, 200), min_size=3, max_size=3),
        value_bytes=st.integers(8, 120),
        leader_epoch=st.integers(0, 5),
    )
    def append(self, record_counts, timestamp_deltas, value_bytes, leader_epoch):
        batches = []
        for count, delta in zip(record_counts, timestamp_deltas):
            self.tag += 1
            batches.append(make_batch(count, timestamp_ms=START_WALL_MS + delta, value_bytes=value_bytes, tag=self.tag))
        result = self.log.append(b"".join(batches), leader_epoch)
        assert result.base_offset == self.log_end_offset
        offset = self.log_end_offset
        for batch, delta, count in zip(batches, timestamp_deltas, record_counts):
            self.batches.append(ModelBatch(offset, offset + count - 1, START_WALL_MS + delta, stored_form(batch, offset, leader_epoch)))
            offset += count
        assert result.last_offset == offset - 1
        assert result.record_count == sum(record_counts)
        self.log_end_offset = offset

    @rule(data=st.data(), max_bytes=st.integers(0, 3000), bound=st.integers(-1, 30))
    def read(self, data, max_bytes, bound):
        offset = data.draw(st.integers(self.log_start_offset, self.log_end_offset), label="offset")
        max_offset = None if bound < 0 else self.log_start_offset + bound
        assert self.log.read(offset, max_bytes, max_offset) == self.expected_read(offset, max_bytes, max_offset)

    @rule(data=st.data())
    def read_out_of_range(self, data):
        offset = data.draw(st.sampled_from([self.log_start_offset - 1, self.log_end_offset + 1]), label="offset")
        if offset < 0:
            return
        try:
            self.log.read(offset, 100)
        except OffsetOutOfRangeError:
            return
        raise AssertionError(f"read({offset}) outside [{self.log_start_offset}, {self.log_end_offset}] did not raise")

    @rule()
    def roll(self):
        self.log.roll()

    @rule()
    def flush(self):
        self.log.flush()
        assert self.log.recovery_point == self.log_end_offset

    @rule()
    def reopen_clean(self):
        self.log.close()
        self.log = PartitionLog.open(self.path, self.config, runtime(self.clock, self.disk), recover=False)

    @rule(garbage=st.binary(min_size=0, max_size=200))
    def crash_and_recover(self, garbage):
        self.log.close(flush=False)
        last = segment_files(self.path)[-1]
        with open(os.path.join(self.path, last), "ab") as f:
            f.write(garbage)
        self.log = PartitionLog.open(self.path, self.config, runtime(self.clock, self.disk), recover=True)

    @rule(data=st.data(), garbage=st.binary(min_size=0, max_size=100))
    def power_loss(self, data, garbage):
        durable_offset = self.log.recovery_point
        self.log.close(flush=False)
        for name in sorted(os.listdir(self.path)):
            full = os.path.join(self.path, name)
            size = os.path.getsize(full)
            if name.endswith(".log"):
                durable = min(self.disk.durable_bytes.get(full, 0), size)
                cut = data.draw(st.integers(durable, size), label=f"keep bytes of {name}")
                extra = garbage if cut < size or name == segment_files(self.path)[-1] else b""
            elif name.endswith((".index", ".timeindex")):
                cut = data.draw(st.integers(0, size), label=f"keep bytes of {name}")
                extra = b""
            else:
                continue
            with open(full, "r+b") as f:
                f.truncate(cut)
                f.seek(cut)
                f.write(extra)
        self.log = PartitionLog.open(self.path, self.config, runtime(self.clock, self.disk), recover=True)
        assert self.log.log_end_offset >= durable_offset, "fsync'd data was lost"
        # Like Kafka, recovery keeps a later segment behind one that merely lost
        # its unflushed tail, so the survivors may have holes (offsets are never
        # reused); every survivor must be intact, every fsync'd batch a survivor.
        # (contents_match then compares the bytes of the visible ones.)
        by_base = {b.base_offset: b for b in self.batches}
        survivors = []
        for header in self.log.iter_batch_headers(0):
            batch = by_base[header.base_offset]
            assert header.last_offset == batch.last_offset, f"batch {batch.base_offset} changed"
            survivors.append(batch)
        for batch in self.batches:
            if self.log_start_offset <= batch.last_offset < durable_offset:
                assert batch in survivors, f"fsync'd batch {batch.base_offset}..{batch.last_offset} was lost"
        self.batches = survivors
        assert self.log.log_start_offset == self.log_start_offset  # its checkpoint is written at once, fsync'd
        self.log_end_offset = self.log.log_end_offset

    @rule(data=st.data())
    def truncate_to(self, data):
        offset = data.draw(st.integers(0, self.log_end_offset + 2), label="offset")
        self.segments_before_truncation = self.log.segment_base_offsets
        self.log.truncate_to(offset)
        if offset >= self.log_end_offset:
            return
        if offset < self.log_start_offset:
            self.batches = []
            self.log_start_offset = self.log_end_offset = offset
            return
        floor_base = max(base for base in self.segments_before_truncation if base <= offset)
        self.batches = [b for b in self.batches if b.last_offset < offset]
        # The log ends after the last batch kept, or at the start of the segment
        # holding `offset` if that segment keeps none.
        self.log_end_offset = max(floor_base, self.batches[-1].next_offset if self.batches else floor_base)
        self.log_start_offset = min(self.log_start_offset, self.log_end_offset)

    @rule(data=st.data())
    def delete_records_before(self, data):
        offset = data.draw(st.integers(self.log_start_offset, self.log_end_offset), label="offset")
        self.log.delete_records_before(offset)
        self.log_start_offset = offset

    @rule()
    def maintain(self):
        segments_before = self.log.segment_base_offsets
        size_before = self.log.size_bytes
        self.log.maintain()
        new_start = self.log.log_start_offset
        if new_start != self.log_start_offset:
            assert new_start in segments_before, (new_start, segments_before)
            assert self.config.retention_bytes >= 0
            assert size_before > self.config.retention_bytes
            assert self.log.size_bytes >= self.config.retention_bytes
            self.log_start_offset = new_start

    @rule(delta=st.integers(-100, 250))
    def offset_for_timestamp(self, delta):
        timestamp = START_WALL_MS + delta
        expected = next(
            (
                (max(b.base_offset, self.log_start_offset), b.max_timestamp)
                for b in self.batches
                if b.last_offset >= self.log_start_offset and b.max_timestamp >= timestamp
            ),
            None,
        )
        assert self.log.offset_for_timestamp(timestamp) == expected

    @rule(data=st.data())
    def iter_batch_headers(self, data):
        offset = data.draw(st.integers(self.log_start_offset, self.log_end_offset), label="offset")
        got = [(h.base_offset, h.last_offset) for h in self.log.iter_batch_headers(offset)]
        assert got == [(b.base_offset, b.last_offset) for b in self.batches if b.last_offset >= offset]

    # ------------------------------------------------------------------ model

    def expected_read(self, offset, max_bytes, max_offset):
        if offset == self.log_end_offset or (max_offset is not None and offset >= max_offset):
            return b""
        bases = self.log.segment_base_offsets

        def segment_of(batch):
            return max(base for base in bases if base <= batch.base_offset)

        candidates = [b for b in self.batches if b.last_offset >= offset]
        if not candidates or (max_offset is not None and candidates[0].last_offset >= max_offset):
            return b""
        first = candidates[0]
        chosen = [first]
        size = len(first.data)
        for batch in candidates[1:]:
            if segment_of(batch) != segment_of(first):
                break
            if max_offset is not None and batch.last_offset >= max_offset:
                break
            if size + len(batch.data) > max_bytes:
                break
            chosen.append(batch)
            size += len(batch.data)
        return b"".join(b.data for b in chosen)

    @invariant()
    def offsets_match(self):
        if self.log is None:
            return
        assert (self.log.log_start_offset, self.log.log_end_offset) == (self.log_start_offset, self.log_end_offset)
        assert self.log.log_start_offset <= self.log.recovery_point <= self.log.log_end_offset

    @invariant()
    def contents_match(self):
        if self.log is None:
            return
        visible = [b for b in self.batches if b.last_offset >= self.log_start_offset]
        got = []
        offset = self.log_start_offset
        while offset < self.log_end_offset:
            data = self.log.read(offset, 1 << 20)
            if not data:
                # Only a hole left by a power loss may end the log early.
                assert not [b for b in visible if b.last_offset >= offset], f"nothing read at {offset}"
                break
            got.append(data)
            offset = headers_of(data)[-1].next_offset
        assert b"".join(got) == b"".join(b.data for b in visible)
        assert segment_files(self.path) == [f"{base:020d}.log" for base in self.log.segment_base_offsets]


TestLogModel = LogMachine.TestCase
TestLogModel.settings = settings(
    max_examples=60,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


class TestLogModelLong(LogMachine.TestCase):
    """The same machine with many more and longer runs (CI's --all)."""

    pytestmark = pytest.mark.slow
    settings = settings(
        max_examples=500,
        stateful_step_count=50,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
