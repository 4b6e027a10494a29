"""Disk and clock faults leave nothing behind: not after SIGINT, and not after the harness is SIGKILLed
(the next local cluster's start reaps the dead run's FUSE mounts, processes and directory)."""

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from harness.backends.local import RUN_ROOT, reap_stale_runs
from nodecontrol.launch import fuse_mounts
from tests.e2e.conftest import leftovers_of

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ARGS = ["--nodes", "3", "--nemesis", "disk,clock,packet,kill", "--nemesis-interval", "3", "--time-limit", "40",
        "--rate", "50", "--concurrency", "2", "--quiet"]


def _mounts_of(pid: int) -> list[str]:
    return [m for m in fuse_mounts() if m.startswith(str(RUN_ROOT / f"run-{pid}-"))]


def _start(store):
    return subprocess.Popen([sys.executable, "-m", "harness.cli", "test", *ARGS, "--store", str(store)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_mounts(proc, count, timeout_s=90):
    deadline = time.monotonic() + timeout_s
    while len(_mounts_of(proc.pid)) < count:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"fewer than {count} faultfs mounts after {timeout_s} s"
        time.sleep(0.1)


def test_sigint_during_disk_and_clock_faults_leaves_no_mount_or_faketime_file(tmp_path):
    proc = _start(tmp_path / "store")
    try:
        _wait_for_mounts(proc, 3)
        time.sleep(random.uniform(2, 10))
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 2, out + err  # UNKNOWN: interrupted, so no verdict
    assert _mounts_of(proc.pid) == []
    assert list(RUN_ROOT.glob(f"run-{proc.pid}-*/*/faketime")) == []
    assert leftovers_of(proc.pid) == {"processes": [], "dirs": []}, out + err
    nemesis_fs = {json.loads(line)["f"] for line in
                  (tmp_path / "store" / "latest" / "history.jsonl").read_text().splitlines()
                  if json.loads(line)["process"] == "nemesis"}
    assert "heal" in nemesis_fs


def test_a_killed_harness_leaves_mounts_that_the_next_start_removes(tmp_path):
    proc = _start(tmp_path / "store")
    try:
        _wait_for_mounts(proc, 3)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        assert len(_mounts_of(proc.pid)) == 3  # the nodes outlive their harness, mounts and all
        reaped = reap_stale_runs()
        assert any(f"run-{proc.pid}-" in r for r in reaped)
        assert _mounts_of(proc.pid) == []
        deadline = time.monotonic() + 10
        while leftovers_of(proc.pid)["processes"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert leftovers_of(proc.pid) == {"processes": [], "dirs": []}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for run_dir in RUN_ROOT.glob(f"run-{proc.pid}-*"):
            for pid_file in run_dir.glob("*/node.pid"):
                with contextlib.suppress(OSError, ValueError):
                    os.killpg(int(pid_file.read_text()), signal.SIGKILL)
        reap_stale_runs()
