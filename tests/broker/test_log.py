"""PartitionLog on real files: offsets, reads, rolling, retention, flush policy, timestamps, truncation."""

from __future__ import annotations

import errno
import os
import struct

import pytest

from broker.io import RealDisk

from broker.log.config import LogConfig
from broker.log.log import CHECKPOINT_FILE, AppendResult, OffsetOutOfRangeError
from broker.protocol.records import iter_batches
from tests.broker.test_log_support import (
    START_WALL_MS,
    CountingDisk,
    FakeClock,
    headers_of,
    make_batch,
    open_log,
    runtime,
    segment_files,
    stored_form,
)


def fill(log, batch_sizes, leader_epoch=3, timestamp_ms=START_WALL_MS):
    """Append one batch per entry of `batch_sizes` (record counts); return [(base_offset, stored bytes)]."""
    stored = []
    for number, count in enumerate(batch_sizes):
        batch = make_batch(count, timestamp_ms=timestamp_ms + number, tag=number)
        result = log.append(batch, leader_epoch)
        stored.append((result.base_offset, stored_form(batch, result.base_offset, leader_epoch)))
    return stored


def test_append_assigns_offsets_and_patches_base_offset_and_leader_epoch(tmp_path):
    log = open_log(tmp_path / "t-0")
    batch = make_batch(5)
    first = log.append(batch, leader_epoch=7)
    second = log.append(bytearray(make_batch(3)), leader_epoch=8)
    assert first == AppendResult(0, 4, START_WALL_MS, 5, -1)
    assert (second.base_offset, second.last_offset, second.record_count) == (5, 7, 3)
    assert log.log_end_offset == 8
    data = log.read(0, 1 << 20)
    headers = headers_of(data)
    assert [(h.base_offset, h.last_offset, h.partition_leader_epoch) for h in headers] == [(0, 4, 7), (5, 7, 8)]
    assert data[: len(batch)] == stored_form(batch, 0, 7)
    log.close()


def test_append_of_several_batches_is_one_disk_write_and_updates_headers(tmp_path):
    disk = CountingDisk()
    log = open_log(tmp_path / "t-0", rt=runtime(disk=disk))
    log.append(make_batch(2), 0)
    request = make_batch(3, tag=1) + make_batch(4, tag=2) + make_batch(1, tag=3)
    headers = list(iter_batches(request))
    writes_before = disk.writes
    result = log.append(memoryview(request), 1, headers)
    assert disk.writes - writes_before == 1
    assert (result.base_offset, result.last_offset, result.record_count) == (2, 9, 8)
    assert [(h.base_offset, h.partition_leader_epoch) for _, h in headers] == [(2, 1), (5, 1), (9, 1)]
    assert [h.base_offset for h in headers_of(log.read(2, 1 << 20))] == [2, 5, 9]
    log.close()


def test_append_rejects_empty_and_partial_input(tmp_path):
    log = open_log(tmp_path / "t-0")
    with pytest.raises(ValueError, match="at least one record batch"):
        log.append(b"", 0)
    batch = make_batch(2)
    headers = list(iter_batches(batch))
    with pytest.raises(ValueError, match="whole batches"):
        log.append(batch + b"\x00" * 5, 0, headers)
    assert log.log_end_offset == 0
    log.close()


def test_reads_across_many_segments_return_the_batch_holding_each_offset(tmp_path):
    config = LogConfig(segment_bytes=1500, index_interval_bytes=200)
    log = open_log(tmp_path / "t-0", config)
    stored = fill(log, [(n % 4) + 1 for n in range(120)])
    assert log.segment_count > 10
    bases = [int(name[:20]) for name in segment_files(tmp_path / "t-0")]
    assert bases == log.segment_base_offsets
    assert all(size <= 1500 for size in (os.path.getsize(tmp_path / "t-0" / n) for n in segment_files(tmp_path / "t-0")))
    for base_offset, data in stored:
        last_offset = headers_of(data)[0].last_offset
        for offset in range(base_offset, last_offset + 1):
            got = log.read(offset, 1)
            assert got == data, f"read({offset}) did not return the batch at {base_offset}"
    log.close()


def test_read_returns_whole_batches_up_to_max_bytes_but_at_least_one(tmp_path):
    log = open_log(tmp_path / "t-0", LogConfig(index_interval_bytes=0))
    stored = fill(log, [10, 1, 1, 1, 1, 10])
    sizes = [len(data) for _, data in stored]
    assert log.read(0, 0) == stored[0][1]  # bigger than max_bytes, still returned whole
    assert log.read(0, sizes[0] + sizes[1] + sizes[2]) == b"".join(d for _, d in stored[:3])
    assert log.read(0, sizes[0] + sizes[1] + sizes[2] - 1) == b"".join(d for _, d in stored[:2])
    assert log.read(10, sizes[1] + sizes[2] + sizes[3] + sizes[4] + 5) == b"".join(d for _, d in stored[1:5])
    assert log.read(0, 1 << 30) == b"".join(d for _, d in stored)
    log.close()


def test_read_never_returns_offsets_at_or_beyond_max_offset(tmp_path):
    log = open_log(tmp_path / "t-0", LogConfig(index_interval_bytes=0))
    stored = fill(log, [5, 5, 5, 5])  # batches 0-4, 5-9, 10-14, 15-19
    everything = b"".join(d for _, d in stored)
    assert log.read(0, 1 << 20, max_offset=10) == everything[: len(stored[0][1]) * 2]
    assert log.read(0, 1 << 20, max_offset=20) == everything
    assert log.read(0, 1 << 20, max_offset=12) == everything[: len(stored[0][1]) * 2]  # the straddling batch waits
    assert log.read(3, 1 << 20, max_offset=4) == b""
    assert log.read(10, 1 << 20, max_offset=10) == b""
    assert log.read(7, 0, max_offset=10) == stored[1][1]
    log.close()


def test_read_outside_the_log_raises_offset_out_of_range(tmp_path):
    log = open_log(tmp_path / "t-0", LogConfig(segment_bytes=300))
    fill(log, [1] * 10)
    assert log.read(log.log_end_offset, 100) == b""
    with pytest.raises(OffsetOutOfRangeError, match="offset 11 is out of range"):
        log.read(11, 100)
    log.delete_records_before(4)
    with pytest.raises(OffsetOutOfRangeError, match=r"offset 3 is out of range: the log holds \[4, 10\)"):
        log.read(3, 100)
    assert headers_of(log.read(4, 1))[0].base_offset == 4
    log.close()


def test_segments_roll_when_full_and_offsets_continue(tmp_path):
    batch = make_batch(3)
    config = LogConfig(segment_bytes=len(batch) * 4)
    log = open_log(tmp_path / "t-0", config)
    for _ in range(10):
        log.append(batch, 0)
    assert log.segment_base_offsets == [0, 12, 24]
    assert segment_files(tmp_path / "t-0") == [f"{base:020d}.log" for base in (0, 12, 24)]
    assert segment_files(tmp_path / "t-0", ".index") == [f"{base:020d}.index" for base in (0, 12, 24)]
    assert segment_files(tmp_path / "t-0", ".timeindex") == [f"{base:020d}.timeindex" for base in (0, 12, 24)]
    log.close()


def test_a_segment_rolls_when_its_offset_index_is_full(tmp_path):
    config = LogConfig(index_interval_bytes=0, segment_index_bytes=8 * 3)
    log = open_log(tmp_path / "t-0", config)
    fill(log, [1] * 12)
    assert log.segment_count > 2
    for name in segment_files(tmp_path / "t-0", ".index"):
        assert os.path.getsize(tmp_path / "t-0" / name) <= 8 * 3
    assert [h.base_offset for h in log.iter_batch_headers()] == list(range(12))
    log.close()


def test_a_segment_rolls_when_record_timestamps_span_more_than_roll_ms(tmp_path):
    clock = FakeClock()
    log = open_log(tmp_path / "t-0", LogConfig(roll_ms=60_000), runtime(clock))
    log.append(make_batch(1, timestamp_ms=START_WALL_MS), 0)
    log.append(make_batch(1, timestamp_ms=START_WALL_MS + 60_000), 0)
    assert log.segment_count == 1
    log.append(make_batch(1, timestamp_ms=START_WALL_MS + 60_001), 0)
    assert log.segment_base_offsets == [0, 2]
    log.close()


def test_maintain_rolls_an_old_active_segment_by_the_clock(tmp_path):
    clock = FakeClock()
    log = open_log(tmp_path / "t-0", LogConfig(roll_ms=60_000), runtime(clock))
    log.maintain()
    log.append(make_batch(2), 0)
    clock.advance(60_000)
    log.maintain()
    assert log.segment_count == 1
    clock.advance(1)
    log.maintain()
    assert log.segment_base_offsets == [0, 2]
    clock.advance(120_000)
    log.maintain()  # the new active segment is empty: nothing to roll
    assert log.segment_base_offsets == [0, 2]
    log.append(make_batch(1), 0)
    clock.advance(60_000)
    log.maintain()  # it ages from its first batch, not from the roll that created it
    assert log.segment_base_offsets == [0, 2]
    clock.advance(1)
    log.maintain()
    assert log.segment_base_offsets == [0, 2, 3]
    log.close()


def test_retention_by_size_deletes_whole_old_segments_and_moves_log_start_offset(tmp_path):
    batch = make_batch(2)
    config = LogConfig(segment_bytes=len(batch) * 2, retention_bytes=len(batch) * 5)
    log = open_log(tmp_path / "t-0", config)
    for _ in range(10):
        log.append(batch, 0)
    assert log.segment_base_offsets == [0, 4, 8, 12, 16]
    log.maintain()
    # 10 batches; keeping >= 5 batches means deleting the two oldest segments (4 batches).
    assert log.segment_base_offsets == [8, 12, 16]
    assert log.log_start_offset == 8
    assert segment_files(tmp_path / "t-0") == [f"{b:020d}.log" for b in (8, 12, 16)]
    assert log.size_bytes == len(batch) * 6
    with pytest.raises(OffsetOutOfRangeError):
        log.read(7, 100)
    assert headers_of(log.read(8, 1))[0].base_offset == 8
    log.close()


def test_retention_by_size_never_deletes_the_active_segment(tmp_path):
    batch = make_batch(2)
    log = open_log(tmp_path / "t-0", LogConfig(segment_bytes=len(batch) * 2, retention_bytes=0))
    for _ in range(5):
        log.append(batch, 0)
    log.maintain()
    assert log.segment_base_offsets == [8]
    assert log.log_start_offset == 8
    assert log.log_end_offset == 10
    log.close()


def test_retention_by_time_deletes_expired_segments(tmp_path):
    clock = FakeClock()
    batch_bytes = len(make_batch(1))
    config = LogConfig(segment_bytes=batch_bytes * 2, retention_ms=1000)
    log = open_log(tmp_path / "t-0", config, runtime(clock))
    for number in range(6):
        log.append(make_batch(1, timestamp_ms=START_WALL_MS + number * 100), 0)
    assert log.segment_base_offsets == [0, 2, 4]
    clock.advance(1150)  # segment 0 (largest ts +100) expired, segment 2 (largest +300) not yet
    log.maintain()
    assert log.segment_base_offsets == [2, 4]
    assert log.log_start_offset == 2
    assert not (tmp_path / "t-0" / f"{0:020d}.log").exists()
    log.close()


def test_when_everything_expired_the_log_rolls_first_and_keeps_its_end_offset(tmp_path):
    clock = FakeClock()
    log = open_log(tmp_path / "t-0", LogConfig(retention_ms=1000), runtime(clock))
    fill(log, [3, 3])
    clock.advance(10_000)
    log.maintain()
    assert (log.log_start_offset, log.log_end_offset) == (6, 6)
    assert log.segment_base_offsets == [6]
    assert log.read(6, 100) == b""
    assert log.append(make_batch(1, timestamp_ms=clock.now_ms), 0).base_offset == 6
    log.close()
    reopened = open_log(tmp_path / "t-0", LogConfig(retention_ms=1000), runtime(clock))
    assert (reopened.log_start_offset, reopened.log_end_offset) == (6, 7)
    reopened.close()


def test_close_and_reopen_keeps_everything(tmp_path):
    config = LogConfig(segment_bytes=2000, index_interval_bytes=100)
    log = open_log(tmp_path / "t-0", config)
    stored = fill(log, [(n % 5) + 1 for n in range(80)])
    log.delete_records_before(5)
    end = log.log_end_offset
    everything = [log.read(base, 1) for base, _ in stored if base >= 5]
    log.close()
    reopened = open_log(tmp_path / "t-0", config)
    assert (reopened.log_start_offset, reopened.log_end_offset, reopened.recovery_point) == (5, end, end)
    assert [reopened.read(base, 1) for base, _ in stored if base >= 5] == everything
    assert reopened.append(make_batch(2), 9).base_offset == end
    assert reopened.offset_for_timestamp(START_WALL_MS + 79) == (stored[79][0], START_WALL_MS + 79)
    reopened.close()


def test_flush_interval_messages_one_fsyncs_every_append(tmp_path):
    disk = CountingDisk()
    log = open_log(tmp_path / "t-0", LogConfig(flush_interval_messages=1), runtime(disk=disk))
    before = disk.log_fsyncs()
    for number in range(5):
        log.append(make_batch(2), 0)
        assert disk.log_fsyncs() - before == number + 1
        assert log.recovery_point == log.log_end_offset
    log.close()


def test_without_a_flush_policy_appends_do_not_fsync(tmp_path):
    disk = CountingDisk()
    log = open_log(tmp_path / "t-0", LogConfig(flush_interval_messages=None), runtime(disk=disk))
    before = len(disk.file_fsyncs)
    for _ in range(5):
        log.append(make_batch(2), 0)
    assert len(disk.file_fsyncs) == before
    assert log.recovery_point == 0
    log.flush()
    assert disk.log_fsyncs() == 1
    assert log.recovery_point == 10
    log.close()


def test_a_flush_per_append_costs_one_fsync_between_checkpoints(tmp_path):
    clock = FakeClock()
    disk = CountingDisk()
    config = LogConfig(flush_interval_messages=1, flush_offset_checkpoint_interval_ms=1000)
    log = open_log(tmp_path / "t-0", config, runtime(clock, disk))
    before = len(disk.file_fsyncs)
    for _ in range(5):
        log.append(make_batch(1), 0)
    assert len(disk.file_fsyncs) - before == 5  # the five .log fsyncs, no checkpoint yet
    assert not (tmp_path / "t-0" / CHECKPOINT_FILE).exists()  # a new log writes none until one is due
    clock.advance(1000)
    log.maintain()  # the checkpoint is due: maintain writes it
    assert (tmp_path / "t-0" / CHECKPOINT_FILE).read_text() == "0\nrecovery-point 5\nlog-start-offset 0\n"
    log.append(make_batch(1), 0)
    clock.advance(1000)
    log.append(make_batch(1), 0)  # due again: this flush writes it
    assert (tmp_path / "t-0" / CHECKPOINT_FILE).read_text() == "0\nrecovery-point 7\nlog-start-offset 0\n"
    log.close()


def test_flush_interval_messages_counts_messages_not_appends(tmp_path):
    disk = CountingDisk()
    log = open_log(tmp_path / "t-0", LogConfig(flush_interval_messages=5), runtime(disk=disk))
    log.append(make_batch(2), 0)
    log.append(make_batch(2), 0)
    assert disk.log_fsyncs() == 0
    log.append(make_batch(1), 0)
    assert disk.log_fsyncs() == 1
    log.close()


def test_flush_interval_ms_flushes_from_maintain(tmp_path):
    clock = FakeClock()
    disk = CountingDisk()
    log = open_log(tmp_path / "t-0", LogConfig(flush_interval_ms=500), runtime(clock, disk))
    log.append(make_batch(2), 0)
    clock.advance(499)
    log.maintain()
    assert disk.log_fsyncs() == 0
    clock.advance(1)
    log.maintain()
    assert disk.log_fsyncs() == 1
    assert log.recovery_point == 2
    log.close()


def test_offset_for_timestamp_finds_the_first_batch_at_or_after_a_timestamp(tmp_path):
    log = open_log(tmp_path / "t-0", LogConfig(segment_bytes=600, index_interval_bytes=50))
    # Timestamps go 0, 10, 20, ... with one batch out of order.
    timestamps = [START_WALL_MS + 10 * n for n in range(40)]
    timestamps[20] = START_WALL_MS + 5
    bases = []
    for number, timestamp in enumerate(timestamps):
        bases.append(log.append(make_batch(2, timestamp_ms=timestamp, tag=number), 0).base_offset)
    assert log.segment_count > 3
    assert log.offset_for_timestamp(START_WALL_MS - 100) == (0, START_WALL_MS)
    assert log.offset_for_timestamp(START_WALL_MS) == (0, START_WALL_MS)
    assert log.offset_for_timestamp(START_WALL_MS + 1) == (bases[1], START_WALL_MS + 10)
    assert log.offset_for_timestamp(START_WALL_MS + 200) == (bases[21], START_WALL_MS + 210)
    assert log.offset_for_timestamp(START_WALL_MS + 195) == (bases[21], START_WALL_MS + 210)
    assert log.offset_for_timestamp(START_WALL_MS + 390) == (bases[39], START_WALL_MS + 390)
    assert log.offset_for_timestamp(START_WALL_MS + 391) is None
    for target in range(START_WALL_MS - 5, START_WALL_MS + 400, 7):
        expected = next(((bases[n], ts) for n, ts in enumerate(timestamps) if ts >= target), None)
        assert log.offset_for_timestamp(target) == expected, target
    log.delete_records_before(bases[3] + 1)
    assert log.offset_for_timestamp(START_WALL_MS) == (bases[3] + 1, START_WALL_MS + 30)
    log.close()


def test_truncate_to_drops_everything_at_and_above_the_offset(tmp_path):
    config = LogConfig(segment_bytes=700, index_interval_bytes=100)
    log = open_log(tmp_path / "t-0", config)
    stored = fill(log, [2] * 40)  # batch n holds offsets 2n, 2n+1
    segments_before = log.segment_count
    log.truncate_to(30)
    assert log.log_end_offset == 30
    assert log.segment_count < segments_before
    assert [h.base_offset for h in log.iter_batch_headers()] == list(range(0, 30, 2))
    assert len(segment_files(tmp_path / "t-0")) == log.segment_count
    log.truncate_to(25)  # inside the batch 24-25: the whole batch goes
    assert log.log_end_offset == 24
    assert log.read(22, 1) == stored[11][1]
    assert log.read(24, 100) == b""
    assert log.append(make_batch(3), 5).base_offset == 24
    log.close()
    reopened = open_log(tmp_path / "t-0", config, recover=True)
    assert reopened.log_end_offset == 27
    assert [h.base_offset for h in reopened.iter_batch_headers(20)] == [20, 22, 24]
    reopened.truncate_to(100)  # beyond the end: nothing happens
    assert reopened.log_end_offset == 27
    reopened.close()


def test_truncate_below_log_start_offset_empties_the_log_and_restarts_there(tmp_path):
    log = open_log(tmp_path / "t-0", LogConfig(segment_bytes=300))
    fill(log, [1] * 10)
    log.delete_records_before(6)
    log.truncate_to(3)
    assert (log.log_start_offset, log.log_end_offset, log.segment_base_offsets) == (3, 3, [3])
    assert log.append(make_batch(1), 0).base_offset == 3
    log.close()


def test_append_as_follower_keeps_offsets_and_rejects_going_back(tmp_path):
    leader = open_log(tmp_path / "leader-0", LogConfig(segment_bytes=500))
    fill(leader, [3] * 10, leader_epoch=4)
    follower = open_log(tmp_path / "follower-0", LogConfig(segment_bytes=500))
    offset = 0
    while offset < leader.log_end_offset:
        data = leader.read(offset, 250)
        result = follower.append_as_follower(data)
        offset = result.last_offset + 1
    assert follower.log_end_offset == leader.log_end_offset
    assert follower.read(0, 1 << 20) == leader.read(0, 1 << 20)
    with pytest.raises(ValueError, match="base offset 0"):
        follower.append_as_follower(leader.read(0, 1))
    leader.close()
    follower.close()


def test_follower_append_after_a_gap_starts_the_segment_at_the_batch(tmp_path):
    follower = open_log(tmp_path / "t-0")
    batch = bytearray(make_batch(2))
    batch[0:8] = (100).to_bytes(8, "big")
    follower.append_as_follower(bytes(batch))
    assert follower.segment_base_offsets == [100]
    assert follower.log_end_offset == 102
    assert headers_of(follower.read(100, 1))[0].base_offset == 100
    follower.close()


def test_delete_records_before_moves_log_start_offset_and_drops_whole_segments(tmp_path):
    batch = make_batch(2)
    log = open_log(tmp_path / "t-0", LogConfig(segment_bytes=len(batch) * 2))
    for _ in range(6):
        log.append(batch, 0)
    log.delete_records_before(9)
    assert log.log_start_offset == 9
    assert log.segment_base_offsets == [8]
    log.delete_records_before(3)  # never backwards
    assert log.log_start_offset == 9
    with pytest.raises(OffsetOutOfRangeError, match="cannot move the log start offset to 13"):
        log.delete_records_before(13)
    log.close()


def test_iter_batch_headers_from_an_offset(tmp_path):
    log = open_log(tmp_path / "t-0", LogConfig(segment_bytes=400, index_interval_bytes=64))
    fill(log, [3] * 20)
    assert [h.base_offset for h in log.iter_batch_headers()] == list(range(0, 60, 3))
    assert [h.base_offset for h in log.iter_batch_headers(31)] == list(range(30, 60, 3))
    assert list(log.iter_batch_headers(60)) == []
    log.close()


def test_a_closed_log_refuses_work(tmp_path):
    log = open_log(tmp_path / "t-0")
    log.close()
    with pytest.raises(ValueError, match="is closed"):
        log.append(make_batch(1), 0)
    with pytest.raises(ValueError, match="is closed"):
        log.read(0, 10)


def test_delete_removes_the_directory(tmp_path):
    log = open_log(tmp_path / "t-0")
    fill(log, [1, 2])
    log.delete()
    assert not (tmp_path / "t-0").exists()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("segment_bytes", 13, r"segment_bytes \(log.segment.bytes\) must be an integer in \[14, 2147483647\], not 13"),
        ("segment_bytes", 1 << 31, "segment_bytes"),
        ("retention_ms", -2, r"retention_ms \(log.retention.ms\) must be an integer >= 0, or -1 for no time limit, not -2"),
        ("retention_bytes", "big", "retention_bytes.*not 'big' \\(str\\)"),
        ("flush_interval_messages", 0, "flush_interval_messages.*None to never flush"),
        ("roll_ms", 0, "roll_ms"),
        ("index_interval_bytes", -1, "index_interval_bytes"),
        ("segment_index_bytes", 4, "segment_index_bytes"),
    ],
)
def test_log_config_rejects_bad_values_naming_them(field, value, message):
    with pytest.raises(ValueError, match=message):
        LogConfig(**{field: value})


class _FaultyFile:
    def __init__(self, inner, disk):
        self._inner = inner
        self._disk = disk

    def write(self, data) -> int:
        if self._disk.fail_next_write and self._inner.path.endswith(".log"):
            self._disk.fail_next_write = False
            self._inner.write(memoryview(data)[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device (injected)")
        return self._inner.write(data)

    def fsync(self) -> None:
        if self._disk.fail_next_fsync and self._inner.path.endswith(".log"):
            self._disk.fail_next_fsync = False
            raise OSError(errno.ENOSPC, "No space left on device (injected at fsync, as delayed allocation reports it)")
        self._inner.fsync()

    def __getattr__(self, name):
        return getattr(self._inner, name)


class FaultyDisk(RealDisk):
    """The real disk, failing the next write of a .log file half-way (`fail_next_write`) or its next fsync
    (`fail_next_fsync`, as a file system with delayed allocation reports a full disk)."""

    fail_next_write = False
    fail_next_fsync = False

    def open(self, path: str, mode: str):
        return _FaultyFile(super().open(path, mode), self)


def test_a_failed_write_leaves_no_partial_batch_behind(tmp_path):
    disk = FaultyDisk()
    log = open_log(tmp_path / "t-0", rt=runtime(disk=disk))
    first = make_batch(2, tag=1)
    log.append(first, 0)
    disk.fail_next_write = True
    with pytest.raises(OSError, match="No space left"):
        log.append(make_batch(3, tag=2), 0)
    assert log.log_end_offset == 2
    assert os.path.getsize(tmp_path / "t-0" / segment_files(tmp_path / "t-0")[0]) == len(first)
    third = make_batch(4, tag=3)
    assert log.append(third, 0).base_offset == 2
    assert log.read(0, 1 << 20) == stored_form(first, 0, 0) + stored_form(third, 2, 0)
    log.close()
    reopened = open_log(tmp_path / "t-0", recover=True)
    assert reopened.log_end_offset == 6
    reopened.close()


def test_an_append_whose_flush_fails_is_taken_back(tmp_path):
    """flush.messages=1 promises an fsync before the answer: when it fails the append did not happen, so a
    producer's retry (or the next batch) takes the same offsets and nothing unanswered stays in the log."""
    disk = FaultyDisk()
    log = open_log(tmp_path / "t-0", LogConfig(flush_interval_messages=1), rt=runtime(disk=disk))
    first = make_batch(2, tag=1)
    log.append(first, 0)
    disk.fail_next_fsync = True
    with pytest.raises(OSError, match="No space left"):
        log.append(make_batch(3, tag=2), 0)
    assert log.log_end_offset == 2
    assert log.read(0, 1 << 20) == stored_form(first, 0, 0)
    third = make_batch(4, tag=3)
    assert log.append(third, 0).base_offset == 2
    assert log.recovery_point == 6
    log.close()
    reopened = open_log(tmp_path / "t-0", recover=True)
    assert reopened.read(0, 1 << 20) == stored_form(first, 0, 0) + stored_form(third, 2, 0)
    reopened.close()


def test_index_files_use_kafkas_layout(tmp_path):
    # .index: (int32 last offset - base, int32 position) per indexed batch;
    # .timeindex: (int64 max timestamp so far, int32 its offset - base) when it grew.
    log = open_log(tmp_path / "t-0", LogConfig(index_interval_bytes=0))
    timestamps = [START_WALL_MS + 5, START_WALL_MS + 3, START_WALL_MS + 9]
    positions = []
    for number, timestamp in enumerate(timestamps):
        positions.append(log.size_bytes)
        log.append(make_batch(2, timestamp_ms=timestamp, tag=number), 0)
    log.close()
    index = (tmp_path / "t-0" / f"{0:020d}.index").read_bytes()
    time_index = (tmp_path / "t-0" / f"{0:020d}.timeindex").read_bytes()
    # The first batch of a segment is never indexed (position 0 is implied), as in Kafka.
    assert index == struct.pack(">ii", 3, positions[1]) + struct.pack(">ii", 5, positions[2])
    # Entries are added at index points: after batch 1 the largest timestamp is still
    # batch 0's (offset 1); batch 2 raises it (offset 5).
    assert time_index == struct.pack(">qi", START_WALL_MS + 5, 1) + struct.pack(">qi", START_WALL_MS + 9, 5)
    data = (tmp_path / "t-0" / f"{0:020d}.log").read_bytes()
    assert [h.base_offset for h in headers_of(data)] == [0, 2, 4]


def broker_log_config(**properties: str) -> LogConfig:
    """The LogConfig a broker with these properties gives its logs (the planted-bug switches travel in it)."""
    from broker.server.config import build_config

    return build_config({"node.id": "1", **properties}).log_config


@pytest.mark.parametrize("planted", [False, True])
def test_debug_skip_fsync_moves_the_recovery_point_without_fsyncing(tmp_path, planted):
    disk = CountingDisk()
    properties = {"log.flush.interval.messages": "1"}
    if planted:
        properties["logquake.debug.skip.fsync"] = "true"
    log = open_log(tmp_path / "t-0", broker_log_config(**properties), runtime(disk=disk))
    for _ in range(3):
        log.append(make_batch(2), 0)
    # both claim everything is flushed; only the correct log fsync'd it
    assert log.recovery_point == log.log_end_offset == 6
    assert disk.log_fsyncs() == (0 if planted else 3)
    log.close()


@pytest.mark.parametrize("planted", [False, True])
def test_debug_index_off_by_one_makes_a_read_skip_the_batches_before_the_next_index_entry(tmp_path, planted):
    properties = {"log.index.interval.bytes": "200"}  # batches of 115 bytes: an entry every second batch
    if planted:
        properties["logquake.debug.index.off.by.one"] = "true"
    log = open_log(tmp_path / "t-0", broker_log_config(**properties))
    fill(log, [2] * 9)
    first_batch = {offset: headers_of(log.read(offset, 1 << 20))[0].base_offset for offset in (0, 6, 7, 8, 16)}
    if planted:  # the scan starts at the entry at or above the offset: what lies before it is skipped
        assert first_batch == {0: 4, 6: 8, 7: 8, 8: 8, 16: 16}
    else:
        assert first_batch == {0: 0, 6: 6, 7: 6, 8: 8, 16: 16}
    log.close()
