"""bench/check_memory.py at a tiny size, so that the benchmark cannot rot: its histories are what it says
(the valid one valid, the other full of anomalies, about the size asked for) and its report is complete."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "check_memory.py"


def _bench_module():
    spec = importlib.util.spec_from_file_location("check_memory_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_generated_histories_have_the_size_asked_and_are_deterministic(tmp_path):
    bench = _bench_module()
    for anomalies in (False, True):
        first, second = tmp_path / f"a{anomalies}.jsonl", tmp_path / f"b{anomalies}.jsonl"
        ops = bench.write_history(str(first), 0.3, anomalies)
        bench.write_history(str(second), 0.3, anomalies)
        assert first.read_bytes() == second.read_bytes()
        assert 270_000 < first.stat().st_size < 330_000
        assert ops == len(first.read_text().splitlines())


def test_the_benchmark_runs_at_a_tiny_size_and_reports_each_history(tmp_path):
    run = subprocess.run([sys.executable, str(BENCH), "--size-mb", "0.5", "--keep", str(tmp_path)],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    reports = re.findall(r"  logquake check: exit (\d+), [\d.]+ s \([\d.]+x the baseline\), peak RSS ([\d,]+) MiB",
                         run.stdout)
    assert [code for code, _ in reports] == ["0", "1"], run.stdout  # valid, then INVALID
    assert all(0 < int(rss.replace(",", "")) < 2048 for _, rss in reports)
    assert run.stdout.count("  baseline (json.loads per line, nothing kept): ") == 2
    valid = json.loads((tmp_path / "valid-results" / "results.json").read_text())
    assert valid["valid"] is True
    (anomalies,) = json.loads((tmp_path / "anomalies-results" / "results.json").read_text())["files"].values()
    assert {"duplicate", "lost-write"} <= set(anomalies["anomaly_types"])
    # more duplicates than the 100 witnesses kept: the count stays exact, the rest are said to be omitted
    duplicates = anomalies["stats"]["anomaly_counts"]["duplicate"]
    assert duplicates > 100 and len(anomalies["anomalies"]["duplicate"]) == 100
    assert anomalies["stats"]["witnesses_omitted"]["duplicate"] == duplicates - 100


def test_a_size_that_is_not_positive_is_refused():
    run = subprocess.run([sys.executable, str(BENCH), "--size-mb", "0"], capture_output=True, text=True, timeout=60,
                         cwd=ROOT)
    assert run.returncode == 2 and "--size-mb 0.0 must be positive" in run.stderr
