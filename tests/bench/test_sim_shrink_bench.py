"""bench/sim_shrink.py on one bug at a tiny size, so that the benchmark cannot rot: it finds a failing seed, shrinks
it, replays the shrunk command, and prints a row and a JSON summary that agree."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_one_bug_is_found_shrunk_and_replayed_and_the_row_and_the_json_agree():
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "sim_shrink.py"), "--bugs", "read.above.hwm",
                           "--duration", "6", "--budget", "60", "--replays", "2"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    row = json.loads(lines[-1])["rows"][0]
    assert row["bug"] == "read.above.hwm" and row["seed"] is not None, row
    assert row["anomaly"] == "read-above-watermark" and row["replays"] == 2 and row["byte_for_byte"] is True
    assert row["shrunk"]["events"] <= row["original"]["events"]
    printed = next(line for line in lines if line.startswith("read.above.hwm "))
    assert printed.split()[1:4] == [str(row["seed"]), str(row["original"]["events"]), str(row["shrunk"]["events"])]
    assert "(held)" in printed
