"""bench/shrink.py on one bug at a tiny size, so that the benchmark of real-run shrinking cannot rot: it finds a
failing run, shrinks it, replays the shrunk command, and prints a row and a JSON summary that agree.

read.above.hwm is the bug: it shows without any fault (a consumer reads above the high watermark under load), so
a 5-second run finds it; the numbers it gives say nothing about real sizes (README has those)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.e2e
def test_one_bug_is_found_shrunk_and_replayed_and_the_row_and_the_json_agree():
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "shrink.py"), "--bugs", "read.above.hwm",
                           "--time-limit", "5", "--budget", "30s", "--tries", "1", "--replays", "1",
                           "--max-runs", "3"], capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    row = json.loads(lines[-1])["rows"][0]
    assert row["bug"] == "read.above.hwm" and row["seed"] is not None, row
    assert "error" not in row, row
    assert row["anomaly"] in ("read-above-watermark", "inconsistent-offsets", "nonmonotonic-poll", "poll-skip",
                              "lost-write", "G1a"), row
    assert row["shrunk"]["events"] <= row["original"]["events"] and 0 <= row["replays"] <= 1
    printed = next(line for line in lines if line.startswith("read.above.hwm "))
    assert printed.split()[1:4] == [str(row["seed"]), str(row["original"]["events"]), str(row["shrunk"]["events"])]
