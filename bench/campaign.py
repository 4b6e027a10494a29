"""What a campaign costs beyond its runs: the bookkeeping per run, and the start of each run's process.

1. Bookkeeping: a simulated campaign of `--runs` runs (500 by default) whose results are written by
   hand (no broker): after each run the journal gets its start and end lines and summary.json,
   junit.xml and index.html are rewritten, as `logquake campaign run` does. Printed: the mean and the
   largest time per run, and a check that the journal and the summary agree with what was simulated.
2. Process start: `logquake test` runs in a child process per run; the time from spawning
   `python -m harness.cli test --help` to its exit stands for what each run pays before its own work.

    python3 bench/campaign.py [--runs 500]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.campaign import Journal, summarize, write_outputs  # noqa: E402


def bookkeeping(runs: int) -> None:
    rng = random.Random(1)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "campaigns" / "bench" / "20261205T000000Z"
        directory.mkdir(parents=True)
        jobs = [{"job": f"cell-{i % 25}#{i}", "cell": f"cell-{i % 25}", "seed": i} for i in range(runs)]
        plan = {"name": "bench", "campaign_file": "bench.toml", "started_at": "2026-12-05T00:00:00.000000Z",
                "version": "0", "commit": "0" * 40, "budget_s": None,
                "cells": [{"id": f"cell-{c}", "params": {"nemesis": f"mix-{c % 4}", "delivery": f"mode-{c % 3}"},
                           "spec": {}} for c in range(25)], "jobs": jobs}
        (directory / "plan.json").write_text(json.dumps(plan))
        journal = Journal(directory / "journal.jsonl")
        expected = {}
        times = []
        for job in jobs:
            verdict = rng.choice(["valid"] * 8 + ["invalid", "unknown"])
            run_dir = Path(tmp) / "runs" / str(job["seed"])
            run_dir.mkdir(parents=True)
            anomalies = {"lost-write": rng.randint(1, 9)} if verdict == "invalid" else {}
            started = time.perf_counter()
            journal.append({"event": "start", "job": job["job"], "cell": job["cell"], "seed": job["seed"], "attempt": 1})
            journal.append({"event": "end", "job": job["job"], "cell": job["cell"], "seed": job["seed"], "attempt": 1,
                            "verdict": verdict, "duration_s": 60.0, "run_dir": str(run_dir), "exit_code": 0,
                            "anomalies": anomalies, "reason": ""})
            write_outputs(directory)
            times.append(time.perf_counter() - started)
            expected[job["job"]] = (verdict, anomalies)
        summary = summarize(directory)
        agree = all((j["verdict"], j["anomalies"]) == expected[j["job"]] for j in summary["jobs"])
        ends = sum(1 for line in (directory / "journal.jsonl").read_text().splitlines() if '"end"' in line)
        print(f"bookkeeping, {runs} runs: mean {1000 * sum(times) / len(times):.1f} ms per run, "
              f"largest {1000 * max(times):.1f} ms (the last runs rewrite the largest outputs)")
        print(f"  journal end lines {ends} (expected {runs}); summary agrees with the simulated verdicts: {agree}; "
              f"totals {summary['totals']}")


def process_start(repeats: int = 5) -> None:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "harness.cli", "test", "--help"], cwd=ROOT, capture_output=True,
                       check=True)
        samples.append(time.perf_counter() - started)
    samples.sort()
    print(f"process start of logquake test: median {samples[len(samples) // 2]:.2f} s over {repeats} "
          f"(min {samples[0]:.2f} s, max {samples[-1]:.2f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=500)
    args = parser.parse_args()
    bookkeeping(args.runs)
    process_start()


if __name__ == "__main__":
    main()
