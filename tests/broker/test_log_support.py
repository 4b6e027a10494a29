"""Shared helpers for the log tests: a fake clock, an fsync-counting disk, batch builders.

No tests live here; pytest collects the module and finds none.
"""

from __future__ import annotations

import os
import struct

from broker.io import RealDisk, Runtime
from broker.log.config import LogConfig
from broker.log.log import PartitionLog
from broker.protocol.records import build_batch, iter_batches

START_WALL_MS = 1_700_000_000_000


class FakeClock:
    """A Clock whose time moves only when the test says so."""

    def __init__(self, wall_ms: int = START_WALL_MS):
        self.now_ms = wall_ms
        self.monotonic_now_ns = 10**12

    def wall_ms(self) -> int:
        return self.now_ms

    def monotonic_ns(self) -> int:
        return self.monotonic_now_ns

    def monotonic_ms(self) -> int:
        return self.monotonic_now_ns // 1_000_000

    async def sleep(self, seconds: float) -> None:
        self.advance(int(seconds * 1000))

    def advance(self, ms: int) -> None:
        self.now_ms += ms
        self.monotonic_now_ns += ms * 1_000_000


class _CountingFile:
    def __init__(self, inner, disk: "CountingDisk"):
        self._inner = inner
        self._disk = disk

    def fsync(self) -> None:
        self._disk.file_fsyncs.append(self._inner.path)
        self._inner.fsync()

    def write(self, data) -> int:
        self._disk.writes += 1
        return self._inner.write(data)

    def __getattr__(self, name):
        return getattr(self._inner, name)


class CountingDisk(RealDisk):
    """The real disk, counting fsyncs (by path) and writes."""

    def __init__(self) -> None:
        self.file_fsyncs: list[str] = []
        self.dir_fsyncs: list[str] = []
        self.writes = 0

    def open(self, path: str, mode: str):
        return _CountingFile(super().open(path, mode), self)

    def fsync_dir(self, path: str) -> None:
        self.dir_fsyncs.append(path)
        super().fsync_dir(path)

    def log_fsyncs(self) -> int:
        return sum(1 for path in self.file_fsyncs if path.endswith(".log"))


def runtime(clock: FakeClock | None = None, disk=None) -> Runtime:
    """A real runtime (real files) whose clock is fake, so record timestamps near START_WALL_MS are fresh."""
    rt = Runtime.real(seed=0)
    rt.clock = clock if clock is not None else FakeClock()
    if disk is not None:
        rt.disk = disk
    return rt


def make_batch(count: int = 1, timestamp_ms: int = START_WALL_MS, value_bytes: int = 20, tag: int = 0) -> bytes:
    """An uncompressed batch of `count` records whose values encode (tag, index)."""
    records = []
    for index in range(count):
        value = struct.pack(">ii", tag, index) + b"v" * max(value_bytes - 8, 0)
        records.append((None, value))
    return build_batch(records, base_timestamp=timestamp_ms)


def stored_form(batch: bytes, base_offset: int, leader_epoch: int) -> bytes:
    """What the log must store for `batch`: the same bytes with base offset and leader epoch patched."""
    patched = bytearray(batch)
    struct.pack_into(">q", patched, 0, base_offset)
    struct.pack_into(">i", patched, 12, leader_epoch)
    return bytes(patched)


def headers_of(data) -> list:
    """Headers of the whole batches in `data`, CRCs validated."""
    return [header for _, header in iter_batches(data, validate_crc=True)]


def open_log(path, config: LogConfig | None = None, rt: Runtime | None = None, recover: bool = False) -> PartitionLog:
    return PartitionLog.open(str(path), config or LogConfig(), rt or runtime(), recover=recover)


def segment_files(path, suffix: str = ".log") -> list[str]:
    return sorted(name for name in os.listdir(path) if name.endswith(suffix))
