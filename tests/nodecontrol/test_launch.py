"""nodecontrol.launch: faketime for the broker only, faultfs mounted and removed, signals forwarded, stale mounts."""

import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest

from nodecontrol.launch import LaunchError, fuse_mounts, parse_faultfs, unmount_under

LAUNCH = [sys.executable, "-m", "nodecontrol.launch"]


def _wait_for(predicate, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        time.sleep(0.02)


def test_the_child_sees_the_offset_file_at_once_and_a_true_monotonic_clock(tmp_path):
    offset = tmp_path / "faketime"
    offset.write_text("+3600\n")
    ready, go = tmp_path / "ready", tmp_path / "go"
    child = ("import time, os, pathlib\n"
             "a = time.time(); m = time.monotonic()\n"
             f"pathlib.Path({str(ready)!r}).write_text('')\n"
             "import threading\n"
             f"while not os.path.exists({str(go)!r}): threading.Event().wait(0.01)\n"
             "print(a, m, time.time(), os.environ.get('FAKETIME_DONT_FAKE_MONOTONIC'))\n")
    before_wall, before_mono = time.time(), time.monotonic()
    proc = subprocess.Popen(LAUNCH + ["--faketime", str(offset), "--", sys.executable, "-c", child],
                            stdout=subprocess.PIPE, text=True)
    try:
        _wait_for(ready.exists, 20, "the child to start")
        offset.write_text("-120.5\n")
        go.write_text("")
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    first, mono, second, flag = out.split()
    after_wall, after_mono = time.time(), time.monotonic()
    assert before_wall + 3600 - 1 < float(first) < after_wall + 3600 + 1
    assert before_wall - 120.5 - 1 < float(second) < after_wall - 120.5 + 1
    assert before_mono <= float(mono) <= after_mono
    assert flag == "1"
    assert proc.returncode == 0


def test_a_missing_offset_file_starts_at_zero(tmp_path):
    offset = tmp_path / "sub" / "faketime"
    out = subprocess.run(LAUNCH + ["--faketime", str(offset), "--", sys.executable, "-c", "import time; print(time.time())"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert abs(float(out.stdout) - time.time()) < 5
    assert offset.read_text() == "+0\n"


def test_faultfs_is_mounted_for_the_broker_and_removed_after_it_exits(tmp_path):
    data, sock, pid_file = tmp_path / "data", tmp_path / "fs.sock", tmp_path / "broker.pid"
    child = ("import os, sys\n"
             f"assert {str(data)!r} in [l.split()[1] for l in open('/proc/self/mounts') if l.startswith('faultfs ')]\n"
             f"open({str(data / 'segment')!r}, 'w').write('records')\n"
             f"assert open({str(pid_file)!r}).read() == str(os.getpid())\n"
             "sys.exit(7)\n")
    out = subprocess.run(LAUNCH + ["--faultfs", f"{data}:{data}:{sock}", "--pid-file", str(pid_file), "--",
                                   sys.executable, "-c", child], capture_output=True, text=True, timeout=60)
    assert out.returncode == 7, out.stderr
    assert str(data) not in fuse_mounts()
    assert (data / "segment").read_text() == "records"
    assert not sock.exists()


def test_sigterm_is_forwarded_to_the_broker_and_the_disk_stays_until_it_exits(tmp_path):
    data, sock = tmp_path / "data", tmp_path / "fs.sock"
    ready = tmp_path / "ready"
    child = ("import signal, sys, time, pathlib\n"
             "def stop(signum, frame):\n"
             f"    open({str(data / 'clean-shutdown')!r}, 'w').write('ok')\n"
             "    sys.exit(0)\n"
             "signal.signal(signal.SIGTERM, stop)\n"
             f"pathlib.Path({str(ready)!r}).write_text('')\n"
             "while True: signal.pause()\n")
    proc = subprocess.Popen(LAUNCH + ["--faultfs", f"{data}:{data}:{sock}", "--", sys.executable, "-c", child],
                            start_new_session=True)
    try:
        _wait_for(ready.exists, 30, "the broker to start")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        unmount_under(str(tmp_path))
    assert (data / "clean-shutdown").read_text() == "ok"
    assert str(data) not in fuse_mounts()


def test_a_killed_launcher_leaves_a_dead_mount_that_the_next_start_removes(tmp_path):
    data, sock, ready = tmp_path / "data", tmp_path / "fs.sock", tmp_path / "ready"
    child = (f"import pathlib, signal; pathlib.Path({str(ready)!r}).write_text(''); signal.pause()")
    proc = subprocess.Popen(LAUNCH + ["--faultfs", f"{data}:{data}:{sock}", "--", sys.executable, "-c", child],
                            start_new_session=True)
    try:
        _wait_for(ready.exists, 30, "the broker to start")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        assert str(data) in fuse_mounts()  # the FUSE process is dead, its mount is not
        with pytest.raises(OSError):
            os.listdir(data)
        out = subprocess.run(LAUNCH + ["--faultfs", f"{data}:{data}:{sock}", "--", sys.executable, "-c",
                                       f"import os; print(sorted(os.listdir({str(data)!r})))"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "[]"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        unmount_under(str(tmp_path))
    assert str(data) not in fuse_mounts()


def test_bad_arguments_are_named():
    with pytest.raises(LaunchError, match=r"--faultfs 'a:b': expected BACKING_DIR:MOUNT_DIR:CONTROL_SOCKET"):
        parse_faultfs("a:b")
    out = subprocess.run(LAUNCH + ["--faultfs", "a::c", "--", "true"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "--faultfs 'a::c'" in out.stderr
    out = subprocess.run(LAUNCH + ["--faketime", "x"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "expected `-- BROKER_ARGV...`" in out.stderr
    out = subprocess.run(LAUNCH + ["--", "/nonexistent/broker"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "could not start the broker ['/nonexistent/broker']" in out.stderr


def test_timed_waits_and_asyncio_sleeps_keep_working_under_faketime(tmp_path):
    """What our broker relies on under libfaketime with a true monotonic clock (see the launcher's docstring)."""
    offset = tmp_path / "faketime"
    offset.write_text("-300\n")
    child = ("import asyncio, queue, threading, time\n"
             "t = time.monotonic(); threading.Event().wait(0.2); a = time.monotonic() - t\n"
             "t = time.monotonic(); asyncio.run(asyncio.sleep(0.2)); b = time.monotonic() - t\n"
             "t = time.monotonic()\n"
             "try:\n    queue.Queue().get(timeout=0.2)\nexcept queue.Empty:\n    pass\n"
             "c = time.monotonic() - t\n"
             "print(a, b, c)\n")
    out = subprocess.run(LAUNCH + ["--faketime", str(offset), "--", sys.executable, "-c", child],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert all(0.19 < float(x) < 2.0 for x in out.stdout.split()), out.stdout
