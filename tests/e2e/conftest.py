"""Helpers for end-to-end runs of `logquake test` as a real subprocess."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.backends.local import RUN_ROOT


def run_logquake(args, timeout_s=600, **kwargs):
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                          timeout=timeout_s, **kwargs)


def leftovers_of(pid: int) -> dict:
    """Processes and run directories a harness process `pid` left behind."""
    tag = f"run-{pid}-"
    procs = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if tag in cmdline:
            procs.append((int(entry.name), cmdline))
    dirs = sorted(str(p) for p in RUN_ROOT.glob(f"{tag}*")) if RUN_ROOT.is_dir() else []
    return {"processes": procs, "dirs": dirs}


@pytest.fixture
def store(tmp_path):
    return tmp_path / "store"
