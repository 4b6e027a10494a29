"""faultfs: a pass-through FUSE file system that can stall, fail, and forget un-fsynced writes.

It is mounted as a node's `log.dirs` by `nodecontrol.launch`, and controlled at
run time over a Unix socket, so the disk nemesis can fault a node's disk
without knowing anything about the broker:

    python3 -m nodecontrol.faultfs serve BACKING_DIR MOUNT_DIR CONTROL_SOCKET
    python3 -m nodecontrol.faultfs ctl CONTROL_SOCKET {pause,resume,fail-writes,fail-fsync,lazy,tear,heal,status}

Fault model (modes combine; `heal` ends them all):

- `pause`: every file-system call blocks until `resume` (or `heal`): a stalled
  disk. The caller sees no error, only time passing.
- `fail-writes`: calls that change data or metadata (write, create, mkdir,
  rename, unlink, truncate, fsync, ...) fail with EIO; reads still work.
- `fail-fsync`: only fsync/fdatasync (of files and directories) fail with EIO.
- `lazy`: as in LazyFS (Ramos et al., "When Amnesia Strikes: Understanding and
  Reproducing Data Loss Bugs with Fault Injection", VLDB 2024), data written with
  `write` is held in this process's memory instead of reaching the backing
  directory; reads and sizes see it; `fsync`/`fdatasync` of a file writes that
  file's pending data to the backing directory and fsyncs it there. If this
  process dies (SIGKILL of the node), the pending data dies with it: exactly
  what a power loss does to a page cache. Leaving lazy mode (`heal`) and a
  clean unmount write every pending byte first, since neither is a crash.
  `tear` is the power cut that ends lazy mode badly: every later call stalls
  (the machine is gone; the node is killed next), and of each file's pending
  writes a random prefix reaches the backing directory in the order they were
  made, the last of them possibly cut inside (a torn write, as LazyFS's
  "torn-op" fault and broker.io.sim_disk's `torn_writes` make it); the rest is
  lost. Its status says how many bytes were kept and lost, and how many writes
  were torn.
  Only file data is held: namespace operations (create, rename, unlink,
  truncate, mkdir) reach the backing directory at once, so after a crash a
  file can exist with a shorter length than written; that is one of the states
  ext4 in `data=ordered` can leave too.

Pending data is kept per backing inode (not per path), so a rename or a second
open of the same file sees it, and an fsync through any descriptor flushes it.

BACKING_DIR may equal MOUNT_DIR: the backing directory is opened before the
mount covers it, and every call works relative to that descriptor, so after an
unmount the data is visible at the same path.

Thread-safety: libfuse calls the operations from several threads at once; one
lock guards the mode flags and the pending-write table, and blocking for a pause
happens on a condition variable outside any I/O.
"""

from __future__ import annotations

import contextlib
import argparse
import errno
import json
import os
import random
import socket
import stat
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

MODES = ("pause", "fail-writes", "fail-fsync", "lazy")
VERBS = ("pause", "resume", "fail-writes", "fail-fsync", "lazy", "tear", "heal", "status")
CTL_TIMEOUT_S = 10.0


class FaultFsError(RuntimeError):
    """A control request that could not be carried out; the message says why."""


@dataclass
class _Pending:
    """Un-fsynced writes of one backing inode, in arrival order (later writes win on overlap)."""

    fd: int  # our own descriptor to the backing file, kept until the data is flushed
    writes: list[tuple[int, bytes]] = field(default_factory=list)
    size: int = 0  # the file's size as the writer sees it

    def overlay(self, offset: int, data: bytes, size: int) -> bytes:
        """`data` read from the backing file at `offset`, with pending writes laid over, `size` bytes at most."""
        end = min(offset + size, self.size)
        if end <= offset:
            return b""
        buf = bytearray(data[: end - offset].ljust(end - offset, b"\0"))
        for w_offset, w_data in self.writes:
            lo, hi = max(offset, w_offset), min(end, w_offset + len(w_data))
            if lo < hi:
                buf[lo - offset:hi - offset] = w_data[lo - w_offset:hi - w_offset]
        return bytes(buf)


def _mfusepy():
    """Import the binding late, so `ctl` works on hosts without libfuse."""
    import mfusepy

    return mfusepy


class FaultFs:
    """The operations (mfusepy's high-level API, libfuse 3). Paths arrive as '/a/b', relative to the mount."""

    use_ns = True

    def __init__(self, backing_dir: str):
        self.backing_fd = os.open(backing_dir, os.O_RDONLY | os.O_DIRECTORY)
        self._lock = threading.Lock()
        self._unpaused = threading.Condition(self._lock)
        self.modes: set[str] = set()
        self.pending: dict[int, _Pending] = {}
        self.counts = {"blocked": 0, "failed": 0, "held_bytes": 0, "flushed_bytes": 0}

    # ----- control ---------------------------------------------------------------------

    def control(self, verb: str) -> dict:
        if verb not in VERBS:
            raise FaultFsError(f"unknown verb {verb!r}; accepted: {', '.join(VERBS)}")
        to_flush = []
        to_tear: dict[int, _Pending] = {}
        with self._lock:
            if verb in ("pause", "fail-writes", "fail-fsync", "lazy"):
                self.modes.add(verb)
            elif verb == "resume":
                self.modes.discard("pause")
            elif verb == "tear":
                self.modes.add("pause")  # from now on every call stalls: the power is off
                to_tear, self.pending = self.pending, {}
            elif verb == "heal":
                if "lazy" in self.modes:
                    to_flush = list(self.pending)
                self.modes.clear()
            self._unpaused.notify_all()
        for ino in to_flush:
            self._flush(ino)
        torn = self._tear(to_tear) if verb == "tear" else None
        status = self.status()
        if torn is not None:
            status["tear"] = torn
        return status

    def _tear(self, pending_by_inode: dict[int, _Pending]) -> dict:
        """Write a random prefix of each file's pending writes, the last one possibly cut (see `tear` above)."""
        rng = random.SystemRandom()
        kept = lost = torn = 0
        for pending in pending_by_inode.values():
            try:
                survivors = rng.randrange(len(pending.writes) + 1)
                for number, (offset, data) in enumerate(pending.writes):
                    if number < survivors:
                        os.pwrite(pending.fd, data, offset)
                        kept += len(data)
                    elif number == survivors:
                        cut = rng.randrange(len(data) + 1)
                        if cut:
                            os.pwrite(pending.fd, data[:cut], offset)
                        kept, lost, torn = kept + cut, lost + len(data) - cut, torn + (0 < cut < len(data))
                    else:
                        lost += len(data)
                os.fsync(pending.fd)
            finally:
                os.close(pending.fd)
        return {"files": len(pending_by_inode), "kept_bytes": kept, "lost_bytes": lost, "torn_writes": torn}

    def status(self) -> dict:
        with self._lock:
            return {"modes": sorted(self.modes), "pending_files": len(self.pending),
                    "pending_bytes": sum(len(d) for p in self.pending.values() for _, d in p.writes), **self.counts}

    # ----- fault gates -------------------------------------------------------------------

    def _gate(self, kind: str) -> None:
        """Block while paused; fail with EIO if the mode says this kind of call fails."""
        mf = _mfusepy()
        with self._lock:
            if "pause" in self.modes:
                self.counts["blocked"] += 1
                while "pause" in self.modes:
                    self._unpaused.wait()
            if kind == "write" and "fail-writes" in self.modes or \
                    kind == "fsync" and ("fail-writes" in self.modes or "fail-fsync" in self.modes):
                self.counts["failed"] += 1
                raise mf.FuseOSError(errno.EIO)

    @staticmethod
    def _rel(path: str) -> str:
        rel = path.lstrip("/")
        return rel or "."

    def _lazy(self) -> bool:
        with self._lock:
            return "lazy" in self.modes

    def _flush(self, ino: int) -> None:
        with self._lock:
            pending = self.pending.pop(ino, None)
        if pending is None:
            return
        try:
            for offset, data in pending.writes:
                os.pwrite(pending.fd, data, offset)
                self.counts["flushed_bytes"] += len(data)
            os.fsync(pending.fd)
        finally:
            os.close(pending.fd)

    def flush_all(self) -> None:
        with self._lock:
            inos = list(self.pending)
        for ino in inos:
            self._flush(ino)

    # ----- metadata --------------------------------------------------------------------------

    def getattr(self, path, fh=None):
        self._gate("read")
        try:
            st = os.fstat(fh) if fh is not None else os.stat(self._rel(path), dir_fd=self.backing_fd,
                                                                 follow_symlinks=False)
        except OSError as e:
            raise _mfusepy().FuseOSError(e.errno) from None
        attrs = {key: getattr(st, key) for key in ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size",
                                                   "st_atime_ns", "st_mtime_ns", "st_ctime_ns", "st_ino")}
        attrs["st_atime"], attrs["st_mtime"], attrs["st_ctime"] = (attrs.pop("st_atime_ns"), attrs.pop("st_mtime_ns"),
                                                                   attrs.pop("st_ctime_ns"))
        attrs["st_blocks"] = st.st_blocks
        with self._lock:
            pending = self.pending.get(st.st_ino)
            if pending is not None and stat.S_ISREG(st.st_mode):
                attrs["st_size"] = pending.size
        return attrs

    def readdir(self, path, fh):
        self._gate("read")
        fd = os.open(self._rel(path), os.O_RDONLY | os.O_DIRECTORY, dir_fd=self.backing_fd)
        try:
            return [".", ".."] + os.listdir(fd)
        finally:
            os.close(fd)

    def readlink(self, path):
        self._gate("read")
        return os.readlink(self._rel(path), dir_fd=self.backing_fd)

    def statfs(self, path):
        st = os.statvfs(self.backing_fd)
        return {key: getattr(st, key) for key in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail",
                                                  "f_files", "f_ffree", "f_favail", "f_flag", "f_namemax")}

    def access(self, path, amode):
        self._gate("read")
        if not os.access(self._rel(path), amode, dir_fd=self.backing_fd):
            raise _mfusepy().FuseOSError(errno.EACCES)
        return 0

    # ----- namespace changes (never held back, see the module docstring) -------------------------

    def mkdir(self, path, mode):
        self._gate("write")
        os.mkdir(self._rel(path), mode, dir_fd=self.backing_fd)
        return 0

    def rmdir(self, path):
        self._gate("write")
        os.rmdir(self._rel(path), dir_fd=self.backing_fd)
        return 0

    def unlink(self, path):
        self._gate("write")
        rel = self._rel(path)
        st = os.stat(rel, dir_fd=self.backing_fd, follow_symlinks=False)
        os.unlink(rel, dir_fd=self.backing_fd)
        if st.st_nlink <= 1:
            with self._lock:
                pending = self.pending.pop(st.st_ino, None)
            if pending is not None:
                os.close(pending.fd)
        return 0

    def rename(self, old, new):
        self._gate("write")
        os.rename(self._rel(old), self._rel(new), src_dir_fd=self.backing_fd, dst_dir_fd=self.backing_fd)
        return 0

    def symlink(self, target, source):
        self._gate("write")
        os.symlink(source, self._rel(target), dir_fd=self.backing_fd)
        return 0

    def link(self, target, source):
        self._gate("write")
        os.link(self._rel(source), self._rel(target), src_dir_fd=self.backing_fd, dst_dir_fd=self.backing_fd)
        return 0

    def chmod(self, path, mode):
        self._gate("write")
        os.chmod(self._rel(path), mode, dir_fd=self.backing_fd)
        return 0

    def chown(self, path, uid, gid):
        self._gate("write")
        os.chown(self._rel(path), uid, gid, dir_fd=self.backing_fd, follow_symlinks=False)
        return 0

    def utimens(self, path, times=None):
        self._gate("write")
        os.utime(self._rel(path), ns=times, dir_fd=self.backing_fd) if times else \
            os.utime(self._rel(path), dir_fd=self.backing_fd)
        return 0

    def truncate(self, path, length, fh=None):
        self._gate("write")
        fd = fh if fh is not None else os.open(self._rel(path), os.O_WRONLY, dir_fd=self.backing_fd)
        try:
            ino = os.fstat(fd).st_ino
            with self._lock:
                pending = self.pending.get(ino)
                if pending is not None:
                    pending.writes = [(o, d[: max(0, length - o)]) for o, d in pending.writes if o < length]
                    pending.size = length
            os.ftruncate(fd, length)
        finally:
            if fh is None:
                os.close(fd)
        return 0

    # ----- file data ---------------------------------------------------------------------------

    def open(self, path, flags):
        self._gate("write" if flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC) else "read")
        # O_APPEND is the kernel's business: it passes the file's end as the offset of each write
        return os.open(self._rel(path), flags & ~os.O_APPEND, dir_fd=self.backing_fd)

    def create(self, path, mode, fi=None):
        self._gate("write")
        return os.open(self._rel(path), os.O_RDWR | os.O_CREAT | os.O_TRUNC, mode, dir_fd=self.backing_fd)

    def read(self, path, size, offset, fh):
        self._gate("read")
        data = os.pread(fh, size, offset)
        ino = os.fstat(fh).st_ino
        with self._lock:
            pending = self.pending.get(ino)
            if pending is not None:
                return pending.overlay(offset, data, size)
        return data

    def write(self, path, data, offset, fh):
        self._gate("write")
        if not self._lazy():
            return os.pwrite(fh, data, offset)
        st = os.fstat(fh)
        with self._lock:
            pending = self.pending.get(st.st_ino)
            if pending is None:
                pending = self.pending[st.st_ino] = _Pending(os.dup(fh), size=st.st_size)
            pending.writes.append((offset, bytes(data)))
            pending.size = max(pending.size, offset + len(data))
            self.counts["held_bytes"] += len(data)
        return len(data)

    def fsync(self, path, datasync, fh):
        self._gate("fsync")
        self._flush(os.fstat(fh).st_ino)
        os.fdatasync(fh) if datasync else os.fsync(fh)
        return 0

    def fsyncdir(self, path, datasync, fh):
        self._gate("fsync")
        fd = os.open(self._rel(path), os.O_RDONLY | os.O_DIRECTORY, dir_fd=self.backing_fd)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return 0

    def flush(self, path, fh):
        return 0

    def release(self, path, fh):
        os.close(fh)
        return 0

    def opendir(self, path):
        self._gate("read")
        return 0

    def releasedir(self, path, fh):
        return 0

    def destroy(self, path):
        # a clean unmount is not a crash: what the page cache held reaches the disk
        self.flush_all()


# ----- the control socket -------------------------------------------------------------------------

def serve_control(fs: FaultFs, socket_path: str) -> socket.socket:
    """Answer one JSON line per connection on a Unix socket, from a daemon thread."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(socket_path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(socket_path)
    server.listen(8)

    def loop():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                try:
                    verb = conn.makefile("r").readline().strip()
                    reply = {"ok": True, "status": fs.control(verb)}
                except (FaultFsError, OSError) as e:
                    reply = {"ok": False, "error": str(e)}
                with contextlib.suppress(OSError):
                    conn.sendall((json.dumps(reply) + "\n").encode())

    threading.Thread(target=loop, name="faultfs-control", daemon=True).start()
    return server


def _connect(sock: socket.socket, socket_path: str, timeout_s: float) -> None:
    """Connect, asking again while the socket refuses: a faultfs that just started may have bound its
    socket (the path exists) but not yet be listening."""
    deadline = time.monotonic() + min(timeout_s, 2.0)
    while True:
        try:
            sock.connect(socket_path)
            return
        except ConnectionRefusedError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.02)


def ctl(socket_path: str, verb: str, timeout_s: float = CTL_TIMEOUT_S) -> dict:
    """Send one verb to a running faultfs; return its status; FaultFsError says what went wrong."""
    if verb not in VERBS:
        raise FaultFsError(f"unknown verb {verb!r}; accepted: {', '.join(VERBS)}")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout_s)
            _connect(s, socket_path, timeout_s)
            s.sendall(verb.encode() + b"\n")
            line = s.makefile("r").readline()
    except FileNotFoundError:
        raise FaultFsError(f"no faultfs control socket at {socket_path} (is the node running under "
                           "nodecontrol.launch --faultfs?)") from None
    except OSError as e:
        raise FaultFsError(f"faultfs control socket {socket_path}: {e}") from None
    if not line:
        raise FaultFsError(f"faultfs at {socket_path} closed the connection without answering {verb!r}")
    reply = json.loads(line)
    if not reply.get("ok"):
        raise FaultFsError(f"faultfs at {socket_path} refused {verb!r}: {reply.get('error')}")
    return reply["status"]


def mount(backing_dir: str, mount_dir: str, socket_path: str) -> None:
    """Mount in the foreground until unmounted (fusermount3 -u) or signalled; libfuse runs the operations."""
    mf = _mfusepy()
    Path(backing_dir).mkdir(parents=True, exist_ok=True)
    Path(mount_dir).mkdir(parents=True, exist_ok=True)
    fs = FaultFs(backing_dir)
    server = serve_control(fs, socket_path)
    try:
        # allow_other is not needed (the broker runs as the same user); default_permissions
        # makes the kernel check modes, as a real file system would
        mf.FUSE(fs, mount_dir, foreground=True, nothreads=False, default_permissions=True, fsname="faultfs")
    finally:
        server.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(socket_path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m nodecontrol.faultfs", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="mount BACKING_DIR at MOUNT_DIR in the foreground")
    s.add_argument("backing_dir")
    s.add_argument("mount_dir")
    s.add_argument("control_socket")
    c = sub.add_parser("ctl", help="control a mounted faultfs")
    c.add_argument("control_socket")
    c.add_argument("verb", choices=VERBS)
    args = p.parse_args(argv)
    if args.command == "serve":
        mount(args.backing_dir, args.mount_dir, args.control_socket)
        return 0
    try:
        print(json.dumps(ctl(args.control_socket, args.verb)))
    except FaultFsError as e:
        print(f"faultfs ctl: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
