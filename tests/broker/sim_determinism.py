"""Shared by the simulated workloads' tests: fresh random seeds (printed, for replay), and the check that one seed
gives one history byte for byte, in this process and in a child interpreter (`python -m broker.sim`), while another
seed gives another."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import random
import subprocess
import sys

from broker.sim.workload import SimOptions, simulate

ROOT = pathlib.Path(__file__).resolve().parents[2]


def fresh_seeds(count: int) -> list[int]:
    first = random.SystemRandom().randrange(1 << 30)
    print(f"seeds {first}..{first + count - 1}")
    return list(range(first, first + count))


def assert_one_history_per_seed(tmp_path: pathlib.Path, simulation, workload: str) -> None:
    text, _ = simulate(SimOptions(seed=4, duration_s=12.0), simulation)
    digest = hashlib.sha256(text.encode()).hexdigest()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTHONHASHSEED", None)
    child = subprocess.run([sys.executable, "-m", "broker.sim", "--seed", "4", "--duration-s", "12", "--workload",
                            workload, "--history", str(tmp_path / "h.jsonl")], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stderr[-3000:]
    assert json.loads(child.stdout.strip().splitlines()[-1])["history_sha256"] == digest
    assert hashlib.sha256((tmp_path / "h.jsonl").read_bytes()).hexdigest() == digest
    different, _ = simulate(SimOptions(seed=5, duration_s=12.0), simulation)
    assert hashlib.sha256(different.encode()).hexdigest() != digest
