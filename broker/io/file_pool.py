"""A bound on the file descriptors the broker's files hold: a `Disk` whose files close and reopen on demand.

Every partition's segments keep their `.log` file open, so descriptors used to
grow with partitions and segments until the process hit its limit (ulimit -n):
the node then served nothing and could not even restart (issue 17). Here at most
`max_open_files` files are open at once; a file past the bound is closed, least
recently used first, and reopened, at the position it had, on its next use.
The broker code above sees an ordinary `DiskFile`.

Invariants: a closed-for-room file loses nothing (writes are unbuffered and went
to the OS; fsync on a reopened descriptor flushes the file, as POSIX fsync is per
file); reopening never truncates (`wb` and `xb` files reopen as `r+b`); at most
`max_open_files` pooled files hold a descriptor. When the OS itself refuses a
descriptor (EMFILE/ENFILE: sockets, other processes' files), the pool closes its
least recently used files and tries once more before the error reaches the
caller, which answers it as any storage error.

Thread-safety: none; the broker uses its disk from one event loop.
"""

from __future__ import annotations

import errno
import logging
from collections import OrderedDict

from broker.io.disk import Disk, DiskFile

log = logging.getLogger("broker.io")

_REOPEN_MODE = {"rb": "rb", "r+b": "r+b", "wb": "r+b", "xb": "r+b", "ab": "ab"}
_OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE)


class PooledFile:
    """A `DiskFile` that may be closed by its pool between uses and reopens itself, at its position."""

    __slots__ = ("pool", "path", "mode", "_file", "_position", "closed")

    def __init__(self, pool: "FilePool", path: str, mode: str, file: DiskFile):
        self.pool = pool
        self.path = path
        self.mode = _REOPEN_MODE[mode]
        self._file: DiskFile | None = file
        self._position = 0
        self.closed = False

    def _open(self) -> DiskFile:
        if self._file is None:
            assert not self.closed, f"{self.path} used after close"
            file = self.pool.open_descriptor(self.path, self.mode)
            if self.mode != "ab":
                file.seek(self._position)
            self._file = file
        self.pool.touch(self)
        return self._file

    def release(self) -> None:
        """Close the descriptor (the pool needs room); the next use reopens it."""
        if self._file is not None:
            self._position = self._file.tell()
            self._file.close()
            self._file = None

    def read(self, size: int = -1) -> bytes:
        return self._open().read(size)

    def pread(self, size: int, offset: int) -> bytes:
        return self._open().pread(size, offset)

    def write(self, data) -> int:
        return self._open().write(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._open().seek(offset, whence)

    def tell(self) -> int:
        return self._open().tell()

    def truncate(self, size: int) -> None:
        self._open().truncate(size)

    def size(self) -> int:
        return self._open().size()

    def fsync(self) -> None:
        self._open().fsync()

    def close(self) -> None:
        self.closed = True
        self.pool.forget(self)
        if self._file is not None:
            self._file.close()
            self._file = None


class FilePool:
    """The least recently used order of the open pooled files."""

    def __init__(self, disk: Disk, max_open_files: int):
        if max_open_files < 1:
            raise ValueError(f"max_open_files must be >= 1, got {max_open_files}")
        self.disk = disk
        self.max_open_files = max_open_files
        self._open: OrderedDict[PooledFile, None] = OrderedDict()
        self.reopened = 0  # descriptors opened again after being closed for room (a measure of churn)

    def touch(self, file: PooledFile) -> None:
        if file in self._open:
            self._open.move_to_end(file)
            return
        self._open[file] = None
        self._make_room(self.max_open_files)

    def forget(self, file: PooledFile) -> None:
        self._open.pop(file, None)

    def _make_room(self, keep: int) -> None:
        while len(self._open) > keep:
            oldest, _ = self._open.popitem(last=False)
            oldest.release()

    def open_descriptor(self, path: str, mode: str) -> DiskFile:
        """Open `path`; when the OS has no descriptor left, close half of ours and try once more."""
        self.reopened += 1
        try:
            return self.disk.open(path, mode)
        except OSError as exc:
            if exc.errno not in _OUT_OF_DESCRIPTORS or not self._open:
                raise
            log.warning("no file descriptor left opening %s; closing %d idle files and trying again",
                        path, (len(self._open) + 1) // 2)
            self._make_room(len(self._open) // 2)
            return self.disk.open(path, mode)


class PooledDisk:
    """A `Disk` whose files hold at most `max_open_files` descriptors between them (see the module docstring)."""

    def __init__(self, disk: Disk, max_open_files: int):
        self.disk = disk
        self.pool = FilePool(disk, max_open_files)

    def open(self, path: str, mode: str) -> PooledFile:
        if mode not in _REOPEN_MODE:
            raise ValueError(f"mode must be one of rb, r+b, wb, ab, xb, not {mode!r}")
        file = PooledFile(self.pool, path, mode, self.pool.open_descriptor(path, mode))
        self.pool.reopened -= 1  # a first open is not a reopen
        self.pool.touch(file)
        return file

    def __getattr__(self, name: str):
        # exists, listdir, makedirs, remove, rename, size, fsync_dir, rmtree: the wrapped disk's own
        return getattr(self.disk, name)
