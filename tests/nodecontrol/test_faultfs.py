"""faultfs against a real FUSE mount: pass-through, pause, EIO, lazy writes lost at a SIGKILL or torn."""

import contextlib
import errno
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from nodecontrol.launch import fuse_mounts, unmount
from nodecontrol.faultfs import FaultFsError, _Pending, ctl

@pytest.fixture
def fs(tmp_path):
    """A mounted faultfs: (mount dir, backing dir, control socket, process); unmounted and reaped afterwards."""
    backing, mount, sock = tmp_path / "backing", tmp_path / "mnt", tmp_path / "ctl.sock"
    proc = subprocess.Popen([sys.executable, "-m", "nodecontrol.faultfs", "serve", str(backing), str(mount), str(sock)],
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while not (str(mount) in fuse_mounts() and sock.exists()):
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "faultfs did not mount within 10 s"
            time.sleep(0.02)
        yield mount, backing, sock, proc
    finally:
        if proc.poll() is None:
            with contextlib.suppress(FaultFsError):
                ctl(str(sock), "heal", timeout_s=2)
        if not unmount(str(mount)):
            unmount(str(mount), lazy=True)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        assert str(mount) not in fuse_mounts()


def test_pass_through_reads_writes_renames_and_truncates(fs):
    mount, backing, sock, _ = fs
    (mount / "d").mkdir()
    (mount / "d" / "a").write_bytes(b"hello world")
    assert (backing / "d" / "a").read_bytes() == b"hello world"
    with open(mount / "d" / "a", "ab") as f:
        f.write(b"!")
    os.rename(mount / "d" / "a", mount / "d" / "b")
    assert sorted(os.listdir(mount / "d")) == ["b"]
    os.truncate(mount / "d" / "b", 5)
    assert (mount / "d" / "b").read_bytes() == b"hello"
    assert (backing / "d" / "b").read_bytes() == b"hello"
    os.unlink(mount / "d" / "b")
    assert not (backing / "d" / "b").exists()
    assert ctl(str(sock), "status")["modes"] == []


def test_pause_blocks_every_call_until_resume(fs):
    mount, backing, sock, _ = fs
    ctl(str(sock), "pause")
    done = threading.Event()

    def writer():
        (mount / "f").write_bytes(b"x")
        done.set()

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    assert not done.wait(0.5), "a write finished while the disk was paused"
    assert ctl(str(sock), "status")["blocked"] >= 1
    ctl(str(sock), "resume")
    assert done.wait(5), "the write did not finish after resume"
    assert (backing / "f").read_bytes() == b"x"


def test_fail_writes_gives_eio_and_heal_ends_it(fs):
    mount, backing, sock, _ = fs
    fd = os.open(mount / "f", os.O_RDWR | os.O_CREAT)
    try:
        os.write(fd, b"before")
        ctl(str(sock), "fail-writes")
        with pytest.raises(OSError) as e:
            os.pwrite(fd, b"during", 0)
        assert e.value.errno == errno.EIO
        with pytest.raises(OSError) as e:
            os.fsync(fd)
        assert e.value.errno == errno.EIO
        assert os.pread(fd, 6, 0) == b"before"  # reads still work
        ctl(str(sock), "heal")
        os.pwrite(fd, b"after!", 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    assert (backing / "f").read_bytes() == b"after!"


def test_fail_fsync_fails_only_fsync(fs):
    mount, backing, sock, _ = fs
    ctl(str(sock), "fail-fsync")
    fd = os.open(mount / "f", os.O_RDWR | os.O_CREAT)
    try:
        os.write(fd, b"data")
        with pytest.raises(OSError) as e:
            os.fsync(fd)
        assert e.value.errno == errno.EIO
    finally:
        os.close(fd)
    assert (backing / "f").read_bytes() == b"data"


def _lazy_log(mount, sock) -> int:
    """Lazy mode, then a file `log` holding b"synced;", fsynced; its open descriptor."""
    ctl(str(sock), "lazy")
    fd = os.open(mount / "log", os.O_RDWR | os.O_CREAT)
    os.write(fd, b"synced;")
    os.fsync(fd)
    return fd


def test_lazy_then_sigkill_loses_unfsynced_bytes_and_keeps_fsynced_ones(fs):
    mount, backing, sock, proc = fs
    fd = _lazy_log(mount, sock)
    try:
        os.write(fd, b"not-synced")
        assert os.pread(fd, 100, 0) == b"synced;not-synced"  # reads see pending data
        assert os.fstat(fd).st_size == len(b"synced;not-synced")
        assert (backing / "log").read_bytes() == b"synced;"
        assert ctl(str(sock), "status")["pending_bytes"] == len(b"not-synced")
    finally:
        os.close(fd)
    proc.send_signal(signal.SIGKILL)
    proc.wait(5)
    assert unmount(str(mount), lazy=True)
    assert (backing / "log").read_bytes() == b"synced;"


def test_tear_keeps_a_prefix_of_the_pending_writes_and_stalls_every_later_call(fs):
    mount, backing, sock, proc = fs
    fd = _lazy_log(mount, sock)
    try:
        pending = [b"first-batch;", b"second-batch;", b"third-batch;"]
        for data in pending:
            os.write(fd, data)
        status = ctl(str(sock), "tear")
        tear = status["tear"]
        assert "pause" in status["modes"] and status["pending_bytes"] == 0
        assert tear["files"] == 1 and tear["kept_bytes"] + tear["lost_bytes"] == sum(map(len, pending))
        # what reached the disk: the synced part, then the pending writes in order, cut after `kept_bytes`
        assert (backing / "log").read_bytes() == b"synced;" + b"".join(pending)[:tear["kept_bytes"]]

        def read():
            with contextlib.suppress(OSError):  # ENOTCONN once the mount dies with the kill below
                os.pread(fd, 10, 0)

        stalled = threading.Thread(target=read, daemon=True)
        stalled.start()
        stalled.join(0.5)
        assert stalled.is_alive(), "a read after the tear should stall: the power is off"
    finally:
        proc.send_signal(signal.SIGKILL)  # the node is killed next, its mount with it
        proc.wait(5)
        unmount(str(mount), lazy=True)
        with contextlib.suppress(OSError):
            os.close(fd)
    assert (backing / "log").read_bytes() == b"synced;" + b"".join(pending)[:tear["kept_bytes"]]


def test_leaving_lazy_mode_writes_pending_data_out(fs):
    mount, backing, sock, _ = fs
    ctl(str(sock), "lazy")
    (mount / "a").write_bytes(b"pending")
    os.rename(mount / "a", mount / "b")  # pending data follows the inode, not the name
    assert (mount / "b").read_bytes() == b"pending"
    assert (backing / "b").read_bytes() == b""
    status = ctl(str(sock), "heal")
    assert status["modes"] == [] and status["pending_files"] == 0
    assert (backing / "b").read_bytes() == b"pending"


def test_ctl_names_a_missing_socket(tmp_path):
    out = subprocess.run([sys.executable, "-m", "nodecontrol.faultfs", "ctl", str(tmp_path / "none.sock"), "pause"],
                         capture_output=True, text=True)
    assert out.returncode == 1
    assert f"no faultfs control socket at {tmp_path / 'none.sock'}" in out.stderr
    with pytest.raises(FaultFsError, match="unknown verb 'explode'"):
        ctl(str(tmp_path / "none.sock"), "explode")


def test_pending_overlay_lays_later_writes_over_earlier_ones_and_backing_data():
    pending = _Pending(fd=-1, writes=[(2, b"AAAA"), (4, b"BB")], size=8)
    assert pending.overlay(0, b"0123", 100) == b"01AABB\0\0"
    assert pending.overlay(3, b"", 2) == b"AB"
    assert pending.overlay(8, b"", 4) == b""
