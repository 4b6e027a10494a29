"""The descriptor-bounded disk (broker.io.file_pool): files close for room and reopen at their position."""

from __future__ import annotations

import errno
import os

import pytest

from broker.io.disk import RealDisk
from broker.io.file_pool import PooledDisk


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_at_most_max_open_files_descriptors_and_nothing_lost(tmp_path):
    disk = PooledDisk(RealDisk(), 3)
    before = _open_descriptors()
    files = []
    for n in range(20):
        path = str(tmp_path / f"f{n}")
        disk.open(path, "wb").close()
        files.append(disk.open(path, "r+b"))
        files[-1].write(b"first-%d;" % n)
        assert _open_descriptors() - before <= 3
    for n, file in enumerate(files):  # every file reopens where it was
        file.write(b"second-%d" % n)
        assert file.tell() == len(b"first-%d;second-%d" % (n, n))
        assert file.pread(100, 0) == b"first-%d;second-%d" % (n, n)
        file.fsync()
    assert _open_descriptors() - before <= 3
    assert disk.pool.reopened >= 17
    for file in files:
        file.close()
    assert _open_descriptors() == before
    assert (tmp_path / "f7").read_bytes() == b"first-7;second-7"


def test_a_wb_file_reopens_without_truncation(tmp_path):
    disk = PooledDisk(RealDisk(), 1)
    first = disk.open(str(tmp_path / "a"), "wb")
    first.write(b"kept")
    other = disk.open(str(tmp_path / "b"), "wb")  # closes `first` for room
    first.write(b"+more")
    assert first.pread(20, 0) == b"kept+more"
    first.close()
    other.close()


class _Exhausted(RealDisk):
    """A real disk on which the OS refuses the next `refusals` descriptors with EMFILE."""

    def __init__(self):
        self.refusals = 0

    def open(self, path, mode):
        if self.refusals:
            self.refusals -= 1
            raise OSError(errno.EMFILE, "Too many open files", path)
        return super().open(path, mode)


def test_out_of_descriptors_closes_idle_files_and_tries_again(tmp_path):
    inner = _Exhausted()
    disk = PooledDisk(inner, 10)
    files = [disk.open(str(tmp_path / f"f{n}"), "wb") for n in range(6)]
    inner.refusals = 1
    extra = disk.open(str(tmp_path / "extra"), "wb")  # one EMFILE: idle files close, the retry succeeds
    extra.write(b"x")
    inner.refusals = 2
    with pytest.raises(OSError) as raised:  # the OS still refuses: the caller gets the error
        disk.open(str(tmp_path / "refused"), "wb")
    assert raised.value.errno == errno.EMFILE
    for file in [*files, extra]:
        file.write(b"y")
        file.close()
    assert (tmp_path / "extra").read_bytes() == b"xy"
