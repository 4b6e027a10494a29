"""A simulated disk: one node's files in memory, and what of them survives a crash.

`SimStorage` is one node's storage device; it outlives the node's processes.
`SimStorage.disk()` is one process's view of it, a `broker.io.disk.Disk`; a
crash (`SimStorage.crash()`) revokes that view and rolls the device back to
what was durable.

Fault model (stated first):
- the file system is a tree of directories and files, as POSIX: a directory
  holds names of files and directories; `rename` moves a name (a directory
  with its whole subtree); `remove`, `rmtree` drop names;
- every change lives first in the page cache, which is what reads see. Two
  kinds of change are durable only when synced:
  - a file's contents and size (`write`, `truncate`, and the truncation of
    `open(..., "wb")`): durable at the file's next successful `fsync`;
  - a directory's entries (names created by `open` or `makedirs`, moved by
    `rename`, dropped by `remove` or `rmtree`), in one of two modes:
    `directories="posix"` (the default, what POSIX promises): durable at the
    next `fsync_dir` of *that* directory; a new directory's own name is durable
    only when its parent is synced (syncing a directory makes its entries
    durable, not its ancestors'); `directories="journaled"` (what ext4 and XFS
    do in practice: metadata changes go through a journal that commits them in
    order): every directory change made before any successful `fsync` or
    `fsync_dir` on the device is durable after it (not other files' data);
- a process that ends (`process_exit()`: a clean exit or kill -9) loses
  nothing: the page cache outlives it. A crash of the node (`crash()`, power
  loss or a kernel panic) keeps only what was durable: the tree is rebuilt from the
  root through durable entries only (a file or directory whose name was never
  made durable is gone, whatever was synced inside it), and each surviving
  file holds its contents as of its last successful fsync;
- `torn_writes=True`: instead, the writes since a file's last fsync reach the
  platter in the order made and the crash cuts them at a random point: a
  prefix of them survives, the last one possibly only its first bytes (a torn
  write);
- `write_error_probability`, `fsync_error_probability`: a write or fsync fails
  with EIO (drawn from the seed). A failed write changes nothing. A failed
  fsync makes nothing durable and forgets the pending writes' durability for
  good, as Linux does ("fsyncgate"): reads still see them, a later fsync does
  not persist them, a crash loses them;
- a crashed process's view is revoked: its open files and the view itself
  raise OSError(EIO) from then on, and change nothing;
- not modelled: bit rot and misdirected writes, full disks (ENOSPC), stalls
  (a slow disk is not simulated in time: disk calls take no virtual time),
  file permissions, hard links.

The root directory "/" always exists and is durable; a node's log directories
are made (durably) by the simulation before the node starts, as an operator
would.

Thread-safety: none; one loop.
"""

from __future__ import annotations

import errno
import posixpath
import random

__all__ = ["SimStorage", "SimDisk", "SimFile"]


class _File:
    __slots__ = ("data", "durable", "pending")

    def __init__(self):
        self.data = bytearray()  # the page cache: what reads see
        self.durable = b""  # what survives a crash
        self.pending: list[tuple[str, int, bytes]] = []  # ("write", offset, bytes) | ("truncate", size, b"") since the last fsync


class _Directory:
    __slots__ = ("children", "durable_children")

    def __init__(self):
        self.children: dict[str, _File | _Directory] = {}
        self.durable_children: dict[str, _File | _Directory] = {}


def _apply(content: bytearray, op: tuple[str, int, bytes]) -> None:
    kind, position, payload = op
    if kind == "truncate":
        del content[position:]
        content.extend(bytes(position - len(content)))
    else:
        if position > len(content):
            content.extend(bytes(position - len(content)))
        content[position:position + len(payload)] = payload


class SimStorage:
    """One node's storage device (see the module docstring)."""

    def __init__(self, name: str, rng: random.Random, torn_writes: bool = False,
                 write_error_probability: float = 0.0, fsync_error_probability: float = 0.0,
                 directories: str = "posix"):
        if directories not in ("posix", "journaled"):
            raise ValueError(f"directories must be 'posix' or 'journaled', not {directories!r}")
        for what, value in (("write_error_probability", write_error_probability),
                            ("fsync_error_probability", fsync_error_probability)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{what} must be within 0..1, got {value}")
        self.name = name
        self.rng = rng
        self.directories = directories
        self.torn_writes = torn_writes
        self.write_error_probability = write_error_probability
        self.fsync_error_probability = fsync_error_probability
        self.root = _Directory()
        self.crashes = 0
        self.fsyncs = 0
        self._view: SimDisk | None = None

    def disk(self) -> "SimDisk":
        """A view for a newly started process (the previous one must have crashed or been closed)."""
        assert self._view is None or self._view.revoked, f"storage {self.name} already has a live process"
        self._view = SimDisk(self)
        return self._view

    def make_durable_dirs(self, path: str) -> None:
        """Create `path` and its ancestors, all durable (the operator's mkdir -p and sync before the first start)."""
        directory = self.root
        for part in _parts(path):
            child = directory.children.get(part)
            if child is None:
                child = directory.children[part] = _Directory()
            assert isinstance(child, _Directory), f"{path}: {part} is a file"
            directory.durable_children[part] = child
            directory = child

    def process_exit(self) -> None:
        """The process using this storage ended (cleanly or killed): its view is revoked; the page cache stays,
        as the operating system keeps what a process wrote after the process dies."""
        if self._view is not None:
            self._view.revoked = True
            self._view = None

    def crash(self) -> None:
        """Power loss for this node: revoke the live view; keep only what was durable (torn writes if enabled)."""
        self.process_exit()
        self.crashes += 1
        seen: set[int] = set()

        def restore(directory: _Directory) -> None:
            directory.children = dict(directory.durable_children)
            for name in sorted(directory.children):
                node = directory.children[name]
                if id(node) in seen:  # a file reachable under two names (renamed without the old name's sync)
                    continue
                seen.add(id(node))
                if isinstance(node, _Directory):
                    restore(node)
                else:
                    self._restore_file(node)

        restore(self.root)

    def _restore_file(self, file: _File) -> None:
        content = bytearray(file.durable)
        if self.torn_writes and file.pending:
            survivors = self.rng.randrange(len(file.pending) + 1)
            for op in file.pending[:survivors]:
                _apply(content, op)
            if survivors < len(file.pending) and file.pending[survivors][0] == "write":
                kind, position, payload = file.pending[survivors]
                _apply(content, (kind, position, payload[: self.rng.randrange(len(payload) + 1)]))
        file.data = content
        file.durable = bytes(content)
        file.pending = []

    # ---- for tests and invariants ------------------------------------------------

    def _commit_journal(self) -> None:
        """journaled mode: a sync commits every directory change made so far."""
        if self.directories != "journaled":
            return

        def commit(directory: _Directory) -> None:
            directory.durable_children = dict(directory.children)
            for child in directory.children.values():
                if isinstance(child, _Directory):
                    commit(child)

        commit(self.root)

    def paths(self) -> list[tuple[str, int | None]]:
        """(path, size) of every file and (path, None) of every directory now visible, sorted."""
        found: list[tuple[str, int | None]] = []

        def walk(directory: _Directory, prefix: str) -> None:
            for name in sorted(directory.children):
                node = directory.children[name]
                found.append((f"{prefix}/{name}", None if isinstance(node, _Directory) else len(node.data)))
                if isinstance(node, _Directory):
                    walk(node, f"{prefix}/{name}")

        walk(self.root, "")
        return found

    def read_file(self, path: str) -> bytes:
        """The page-cache contents of `path` (what a process would read now)."""
        node = self._lookup(path)
        assert isinstance(node, _File), f"{path} is not a file"
        return bytes(node.data)

    def _lookup(self, path: str):
        node = self.root
        for part in _parts(path):
            if not isinstance(node, _Directory) or part not in node.children:
                raise FileNotFoundError(errno.ENOENT, "no such file or directory", path)
            node = node.children[part]
        return node


def _parts(path: str) -> list[str]:
    normal = posixpath.normpath("/" + path)
    return [part for part in normal.split("/") if part]


class SimFile:
    """An open file of a `SimDisk` (unbuffered, as `broker.io.disk.RealFile`)."""

    __slots__ = ("disk", "path", "file", "position", "readable", "writable", "append", "closed")

    def __init__(self, disk: "SimDisk", path: str, file: _File, mode: str):
        self.disk = disk
        self.path = path
        self.file = file
        self.position = 0
        self.readable = mode in ("rb", "r+b")
        self.writable = mode != "rb"
        self.append = mode == "ab"
        self.closed = False

    def _check(self) -> None:
        assert not self.closed, f"{self.path} used after close"
        self.disk._check(self.path)

    def read(self, size: int = -1) -> bytes:
        self._check()
        if not self.readable:
            raise OSError(errno.EBADF, "file not open for reading", self.path)
        data = self.file.data
        end = len(data) if size < 0 else min(len(data), self.position + size)
        chunk = bytes(data[self.position:end])
        self.position = max(self.position, end)
        return chunk

    def pread(self, size: int, offset: int) -> bytes:
        self._check()
        return bytes(self.file.data[offset:offset + size])

    def write(self, data) -> int:
        self._check()
        if not self.writable:
            raise OSError(errno.EBADF, "file not open for writing", self.path)
        storage = self.disk.storage
        if storage.write_error_probability and storage.rng.random() < storage.write_error_probability:
            raise OSError(errno.EIO, "simulated write error", self.path)
        payload = bytes(data)
        if self.append:
            self.position = len(self.file.data)
        op = ("write", self.position, payload)
        _apply(self.file.data, op)
        self.file.pending.append(op)
        self.position += len(payload)
        return len(payload)

    def seek(self, offset: int, whence: int = 0) -> int:
        self._check()
        base = {0: 0, 1: self.position, 2: len(self.file.data)}[whence]
        if base + offset < 0:
            raise OSError(errno.EINVAL, "negative seek position", self.path)
        self.position = base + offset
        return self.position

    def tell(self) -> int:
        self._check()
        return self.position

    def truncate(self, size: int) -> None:
        self._check()
        if not self.writable:
            raise OSError(errno.EBADF, "file not open for writing", self.path)
        op = ("truncate", size, b"")
        _apply(self.file.data, op)
        self.file.pending.append(op)

    def size(self) -> int:
        self._check()
        return len(self.file.data)

    def fsync(self) -> None:
        self._check()
        storage = self.disk.storage
        file = self.file
        if storage.fsync_error_probability and storage.rng.random() < storage.fsync_error_probability:
            file.pending = []  # fsyncgate: the dirty pages are marked clean; they will never be written
            raise OSError(errno.EIO, "simulated fsync error", self.path)
        if file.pending:
            durable = bytearray(file.durable)
            for op in file.pending:
                _apply(durable, op)
            file.durable = bytes(durable)
            file.pending = []
        storage._commit_journal()
        storage.fsyncs += 1

    def close(self) -> None:
        self.closed = True


class SimDisk:
    """One process's view of a `SimStorage` (a `broker.io.disk.Disk`)."""

    def __init__(self, storage: SimStorage):
        self.storage = storage
        self.revoked = False

    def _check(self, path: str) -> None:
        if self.revoked:
            raise OSError(errno.EIO, f"the process using storage {self.storage.name} crashed", path)

    def _parent(self, path: str) -> tuple[_Directory, str]:
        parts = _parts(path)
        if not parts:
            raise OSError(errno.EINVAL, "the root has no parent", path)
        parent = self.storage._lookup("/".join(parts[:-1]))
        if not isinstance(parent, _Directory):
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", path)
        return parent, parts[-1]

    def open(self, path: str, mode: str) -> SimFile:
        self._check(path)
        if mode not in ("rb", "r+b", "wb", "ab", "xb"):
            raise ValueError(f"mode must be one of rb, r+b, wb, ab, xb, not {mode!r}")
        parent, name = self._parent(path)
        node = parent.children.get(name)
        if isinstance(node, _Directory):
            raise IsADirectoryError(errno.EISDIR, "is a directory", path)
        if node is None:
            if mode in ("rb", "r+b"):
                raise FileNotFoundError(errno.ENOENT, "no such file or directory", path)
            node = parent.children[name] = _File()
        elif mode == "xb":
            raise FileExistsError(errno.EEXIST, "file exists", path)
        elif mode == "wb" and node.data:
            op = ("truncate", 0, b"")
            _apply(node.data, op)
            node.pending.append(op)
        return SimFile(self, path, node, mode)

    def exists(self, path: str) -> bool:
        self._check(path)
        try:
            self.storage._lookup(path)
        except FileNotFoundError:
            return False
        return True

    def listdir(self, path: str) -> list[str]:
        self._check(path)
        node = self.storage._lookup(path)
        if not isinstance(node, _Directory):
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", path)
        return sorted(node.children)

    def makedirs(self, path: str) -> None:
        self._check(path)
        directory = self.storage.root
        for part in _parts(path):
            child = directory.children.get(part)
            if child is None:
                child = directory.children[part] = _Directory()
            elif not isinstance(child, _Directory):
                raise FileExistsError(errno.EEXIST, "a file is in the way", path)
            directory = child

    def remove(self, path: str) -> None:
        self._check(path)
        parent, name = self._parent(path)
        node = parent.children.get(name)
        if node is None:
            raise FileNotFoundError(errno.ENOENT, "no such file or directory", path)
        if isinstance(node, _Directory):
            raise IsADirectoryError(errno.EISDIR, "is a directory", path)
        del parent.children[name]

    def rename(self, src: str, dst: str) -> None:
        self._check(src)
        src_parent, src_name = self._parent(src)
        node = src_parent.children.get(src_name)
        if node is None:
            raise FileNotFoundError(errno.ENOENT, "no such file or directory", src)
        dst_parent, dst_name = self._parent(dst)
        existing = dst_parent.children.get(dst_name)
        if isinstance(existing, _Directory) and (not isinstance(node, _Directory) or existing.children):
            raise OSError(errno.ENOTEMPTY if existing.children else errno.EISDIR, "cannot replace that directory", dst)
        if isinstance(node, _Directory) and existing is not None and not isinstance(existing, _Directory):
            raise NotADirectoryError(errno.ENOTDIR, "cannot replace a file with a directory", dst)
        del src_parent.children[src_name]
        dst_parent.children[dst_name] = node

    def size(self, path: str) -> int:
        self._check(path)
        node = self.storage._lookup(path)
        if isinstance(node, _Directory):
            raise IsADirectoryError(errno.EISDIR, "is a directory", path)
        return len(node.data)

    def fsync_dir(self, path: str) -> None:
        self._check(path)
        node = self.storage._lookup(path)
        if not isinstance(node, _Directory):
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", path)
        storage = self.storage
        if storage.fsync_error_probability and storage.rng.random() < storage.fsync_error_probability:
            raise OSError(errno.EIO, "simulated fsync error", path)
        node.durable_children = dict(node.children)
        storage._commit_journal()
        storage.fsyncs += 1

    def rmtree(self, path: str) -> None:
        self._check(path)
        parent, name = self._parent(path)
        node = parent.children.get(name)
        if node is None:
            raise FileNotFoundError(errno.ENOENT, "no such file or directory", path)
        if not isinstance(node, _Directory):
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", path)
        # the subtree's own entries go too, so that a crash before the parent's sync finds it emptied (as rm -r does)
        def empty(directory: _Directory) -> None:
            for child in directory.children.values():
                if isinstance(child, _Directory):
                    empty(child)
            directory.children = {}

        empty(node)
        del parent.children[name]
