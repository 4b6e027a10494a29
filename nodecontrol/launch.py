"""The node launcher: runs one broker under a faulty disk and a fakeable clock.

    python3 -m nodecontrol.launch [--faultfs BACKING_DIR:MOUNT_DIR:CONTROL_SOCKET]
                                   [--faketime OFFSET_FILE] [--pid-file PATH] -- BROKER_ARGV...

Every backend starts a node through this launcher when the run wants disk or
clock faults (the local backend runs it on this machine, Docker inside the
container, SSH on the host). It:

1. removes a stale FUSE mount at MOUNT_DIR (`fusermount3 -u -z`) left by a
   launcher that was SIGKILLed, then mounts `nodecontrol.faultfs` there (as a child
   process: `python3 -m nodecontrol.faultfs serve ...`) and waits for the mount;
2. with `--faketime`, starts the broker with libfaketime preloaded
   (`LD_PRELOAD`, `FAKETIME_TIMESTAMP_FILE=OFFSET_FILE`, `FAKETIME_NO_CACHE=1`),
   so rewriting OFFSET_FILE (e.g. `+2.5`, `-10`) moves the broker's clock at
   once. Only the broker gets these variables; the FUSE process keeps the true
   time.
3. runs the broker as its child, writes the broker's pid to `--pid-file`,
   forwards SIGTERM/SIGINT/SIGHUP to it, and when it exits, unmounts and exits
   with the broker's status.

Which clocks move: only the wall clock (`CLOCK_REALTIME`: Python's `time.time`,
so record timestamps, time indexes and time-based retention).
`FAKETIME_DONT_FAKE_MONOTONIC=1` is set deliberately: a monotonic clock never
jumps on a real machine (NTP slews and steps `CLOCK_REALTIME` only), and a
broker that measures timeouts with it, as Kafka and ours do, is right to trust
it. A broker that measures timeouts with the wall clock feels the skew in its
timeouts too, which is the bug this fault exists to find. Faking the monotonic
clock as well is not offered: with libfaketime 0.9.10 (Debian 12) it makes
`CLOCK_MONOTONIC` read like the epoch and hangs timed condition waits (Python's
`threading.Event.wait`), measured here.

Known limit (libfaketime 0.9.10, upstream issue wolfcw/libfaketime#426): with
the monotonic clock left true, `clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME)`
fails with EINVAL, which is what Python 3.11's `time.sleep` calls. Our broker
never calls `time.sleep` (it sleeps through asyncio, i.e. epoll timeouts, and
waits on conditions, both unaffected); a broker that does cannot run under
`--faketime` with this libfaketime.

Crash semantics: the launcher, the FUSE process and the broker share one process
group. Killing the group (the local backend's `kill`, `docker kill`) kills the
FUSE process too, so writes it held in lazy mode are lost, which is the
lose-unfsynced fault; the stale mount is cleaned by the next start. Both
children also get SIGKILL from the kernel if the launcher dies alone
(PR_SET_PDEATHSIG), so nothing outlives it.

This module imports no broker code and no nemesis code (it starts faultfs as a
program), as the import-linter contracts require.

Thread-safety: a single-threaded program; signal handlers only forward signals.
"""

from __future__ import annotations

import contextlib
import argparse
import ctypes
import glob
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

MOUNT_TIMEOUT_S = 15.0
UNMOUNT_TIMEOUT_S = 10.0
LIBFAKETIME_GLOBS = ("/usr/lib/*/faketime/libfaketimeMT.so.1", "/usr/lib/faketime/libfaketimeMT.so.1",
                     "/usr/local/lib/faketime/libfaketimeMT.so.1")
_PR_SET_PDEATHSIG = 1


class LaunchError(RuntimeError):
    """The node could not be launched; the message names the input and what was wrong."""


def find_libfaketime() -> str:
    """The multi-threaded libfaketime (the broker runs threads), from Debian's `libfaketime` package."""
    for pattern in LIBFAKETIME_GLOBS:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    raise LaunchError(f"libfaketimeMT.so.1 not found in {', '.join(LIBFAKETIME_GLOBS)}; install Debian's "
                      "libfaketime package (apt-get install libfaketime)")


def parse_faultfs(spec: str) -> tuple[str, str, str]:
    parts = spec.split(":")
    if len(parts) != 3 or not all(parts):
        raise LaunchError(f"--faultfs {spec!r}: expected BACKING_DIR:MOUNT_DIR:CONTROL_SOCKET, three non-empty paths")
    return parts[0], parts[1], parts[2]


def fuse_mounts() -> dict[str, str]:
    """Mount point -> file system type, for FUSE mounts (from /proc/self/mounts; octal escapes decoded)."""
    mounts = {}
    try:
        text = Path("/proc/self/mounts").read_text()
    except OSError:
        return mounts
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2].startswith("fuse"):
            point = fields[1].encode().decode("unicode_escape")
            mounts[point] = fields[0]
    return mounts


def unmount(mount_dir: str, lazy: bool = False) -> bool:
    """`fusermount3 -u` (with `-z` when lazy); True when the mount is gone."""
    path = os.path.realpath(mount_dir)
    if path not in fuse_mounts():
        return True
    command = ["fusermount3", "-u"] + (["-z"] if lazy else []) + [path]
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        subprocess.run(command, capture_output=True, timeout=UNMOUNT_TIMEOUT_S)
    return path not in fuse_mounts()


def unmount_under(root: str) -> list[str]:
    """Lazily unmount every FUSE mount at or under `root` (the leftovers of a killed run); returns them."""
    root = os.path.realpath(root)
    gone = []
    for point in sorted(fuse_mounts(), reverse=True):
        if point == root or point.startswith(root.rstrip("/") + "/"):
            unmount(point, lazy=True)
            gone.append(point)
    return gone


def _die_with_parent() -> None:
    """Run in the child before exec: SIGKILL it if the launcher dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # no prctl here: the launcher's own signal handling still stops the child


def start_faultfs(backing_dir: str, mount_dir: str, control_socket: str) -> subprocess.Popen:
    """Clean a stale mount, start the FUSE process and wait until MOUNT_DIR is mounted."""
    if not unmount(mount_dir) and not unmount(mount_dir, lazy=True):
        raise LaunchError(f"--faultfs: a stale FUSE mount at {mount_dir} could not be removed")
    Path(backing_dir).mkdir(parents=True, exist_ok=True)
    Path(mount_dir).mkdir(parents=True, exist_ok=True)
    Path(control_socket).parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(control_socket)
    proc = subprocess.Popen([sys.executable, "-m", "nodecontrol.faultfs", "serve", backing_dir, mount_dir, control_socket],
                            stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
    deadline = time.monotonic() + MOUNT_TIMEOUT_S
    target = os.path.realpath(mount_dir)
    while not (target in fuse_mounts() and os.path.exists(control_socket)):
        if proc.poll() is not None:
            raise LaunchError(f"--faultfs: the FUSE process exited with status {proc.returncode} before mounting "
                              f"{mount_dir} (is /dev/fuse there, and fuse3 installed?)")
        if time.monotonic() > deadline:
            proc.kill()
            raise LaunchError(f"--faultfs: {mount_dir} was not mounted within {MOUNT_TIMEOUT_S} s")
        time.sleep(0.02)
    return proc


def stop_faultfs(proc: subprocess.Popen, mount_dir: str) -> None:
    """Unmount (the FUSE process then exits by itself), falling back to a lazy unmount and SIGKILL."""
    if not unmount(mount_dir):
        unmount(mount_dir, lazy=True)
    try:
        proc.wait(UNMOUNT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def faketime_env(offset_file: str, libfaketime: str | None = None) -> dict[str, str]:
    """The variables that put the broker's wall clock under OFFSET_FILE's control (see the module docstring)."""
    path = Path(offset_file)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("+0\n")
    lib = libfaketime or find_libfaketime()
    preload = os.environ.get("LD_PRELOAD")
    return {
        "LD_PRELOAD": f"{lib}:{preload}" if preload else lib,
        "FAKETIME_TIMESTAMP_FILE": str(path.resolve()),
        "FAKETIME_NO_CACHE": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }


def launch(broker_argv: list[str], faultfs: str | None = None, faketime: str | None = None,
           pid_file: str | None = None) -> int:
    """Run the broker under the requested faults; return its exit status (128+N for signal N)."""
    if not broker_argv:
        raise LaunchError("no broker command given after --")
    fs_proc = None
    mount_dir = None
    env = dict(os.environ)
    if faketime:
        env.update(faketime_env(faketime))
    forwarded: list[int] = []
    broker: subprocess.Popen | None = None

    def forward(signum, frame):
        forwarded.append(signum)
        if broker is not None and broker.poll() is None:
            broker.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    try:
        if faultfs:
            backing_dir, mount_dir, control_socket = parse_faultfs(faultfs)
            fs_proc = start_faultfs(backing_dir, mount_dir, control_socket)
        if forwarded:
            return 128 + forwarded[0]
        try:
            broker = subprocess.Popen(broker_argv, env=env, preexec_fn=_die_with_parent)
        except OSError as e:
            raise LaunchError(f"could not start the broker {broker_argv}: {e}") from None
        if pid_file:
            Path(pid_file).write_text(str(broker.pid))
        while True:
            try:
                status = broker.wait()
                break
            except InterruptedError:
                continue
        return status if status >= 0 else 128 - status
    finally:
        if broker is not None and broker.poll() is None:
            broker.kill()
            broker.wait()
        if fs_proc is not None and mount_dir is not None:
            stop_faultfs(fs_proc, mount_dir)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        print("nodecontrol.launch: expected `-- BROKER_ARGV...` after the options", file=sys.stderr)
        return 2
    split = argv.index("--")
    p = argparse.ArgumentParser(prog="python3 -m nodecontrol.launch", description=__doc__.split("\n\n")[0])
    p.add_argument("--faultfs", metavar="BACKING_DIR:MOUNT_DIR:CONTROL_SOCKET",
                   help="mount nodecontrol.faultfs at MOUNT_DIR (the broker's log.dirs), data in BACKING_DIR")
    p.add_argument("--faketime", metavar="OFFSET_FILE", help="libfaketime offset file (created as +0 if missing)")
    p.add_argument("--pid-file", metavar="PATH", help="where to write the broker's pid")
    args = p.parse_args(argv[:split])
    try:
        return launch(argv[split + 1:], args.faultfs, args.faketime, args.pid_file)
    except LaunchError as e:
        print(f"nodecontrol.launch: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
