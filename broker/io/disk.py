"""The disk interface.

All broker file access goes through a `Disk`. A `DiskFile` is an unbuffered
binary file: `write` hands bytes to the OS (they survive a process crash but not
a power loss); only `fsync` makes them durable. `fsync_dir` makes a rename or a
new file name durable. A simulated disk may lose everything written since the
last fsync when it "crashes", which is exactly the fault model the log recovery
code must survive.
"""

from __future__ import annotations

import os
from typing import Protocol


class DiskFile(Protocol):
    def read(self, size: int = -1) -> bytes: ...

    def pread(self, size: int, offset: int) -> bytes: ...

    def write(self, data: bytes | bytearray | memoryview) -> int: ...

    def seek(self, offset: int, whence: int = 0) -> int: ...

    def tell(self) -> int: ...

    def truncate(self, size: int) -> None: ...

    def size(self) -> int: ...

    def fsync(self) -> None: ...

    def close(self) -> None: ...


class Disk(Protocol):
    def open(self, path: str, mode: str) -> DiskFile:
        """Open `path`; `mode` is one of 'rb', 'r+b', 'wb', 'ab', 'xb'."""
        ...

    def exists(self, path: str) -> bool: ...

    def listdir(self, path: str) -> list[str]: ...

    def makedirs(self, path: str) -> None: ...

    def remove(self, path: str) -> None: ...

    def rename(self, src: str, dst: str) -> None: ...

    def size(self, path: str) -> int: ...

    def fsync_dir(self, path: str) -> None: ...

    def rmtree(self, path: str) -> None: ...


class RealFile:
    """An unbuffered OS file."""

    __slots__ = ("_f", "_fd", "path")

    def __init__(self, path: str, mode: str):
        self.path = path
        self._f = open(path, mode, buffering=0)  # noqa: SIM115 (closed by close())
        self._fd = self._f.fileno()

    def read(self, size: int = -1) -> bytes:
        return self._f.read(size) if size >= 0 else self._f.readall()

    def pread(self, size: int, offset: int) -> bytes:
        return os.pread(self._fd, size, offset)

    def write(self, data) -> int:
        view = memoryview(data)
        written = 0
        while written < len(view):
            written += self._f.write(view[written:])
        return written

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def truncate(self, size: int) -> None:
        self._f.truncate(size)

    def size(self) -> int:
        return os.fstat(self._fd).st_size

    def fsync(self) -> None:
        os.fsync(self._fd)

    def close(self) -> None:
        self._f.close()


def read_text_file(path: str) -> str:
    """A whole UTF-8 text file (the node's properties, read before its runtime exists); OSError if unreadable."""
    handle = RealFile(path, "rb")
    try:
        return handle.read().decode("utf-8", errors="replace")
    finally:
        handle.close()


class RealDisk:
    """The local file system."""

    def open(self, path: str, mode: str) -> RealFile:
        if mode not in ("rb", "r+b", "wb", "ab", "xb"):
            raise ValueError(f"mode must be one of rb, r+b, wb, ab, xb, not {mode!r}")
        return RealFile(path, mode)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def listdir(self, path: str) -> list[str]:
        return sorted(os.listdir(path))

    def makedirs(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)

    def remove(self, path: str) -> None:
        os.remove(path)

    def rename(self, src: str, dst: str) -> None:
        os.replace(src, dst)

    def size(self, path: str) -> int:
        return os.path.getsize(path)

    def fsync_dir(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def rmtree(self, path: str) -> None:
        import shutil

        shutil.rmtree(path, ignore_errors=False)
