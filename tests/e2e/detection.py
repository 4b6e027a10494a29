"""Detection checks with fresh random seeds, as the standards ask: a test that shows the harness
catches a planted bug must not pick the seeds it passes on.

Each run draws its seed from the operating system's randomness, prints it (pytest shows it with a
failure) and names it in the failure message, so a red run can be replayed with
`logquake test --seed S ...`. Where one run is not enough, a test asks for `caught_in` of `runs` runs.
"""

import json
import random

import pytest

from tests.e2e.conftest import run_logquake

_SYSTEM = random.SystemRandom()


def fresh_seed() -> int:
    seed = _SYSTEM.randrange(1, 2**31)
    print(f"seed {seed}")
    return seed


def fault_test(store, *args, seed, backend="local"):
    """One `logquake test` on 3 nodes; returns its exit code and results.json's workload section."""
    out = run_logquake(["test", "--backend", backend, "--nodes", "3", "--seed", str(seed), "--store", str(store),
                        "--quiet", *args], timeout_s=400)
    assert out.returncode in (0, 1), f"seed {seed}: exit {out.returncode}\n{out.stdout}\n{out.stderr[-3000:]}"
    results = json.loads(((store / "latest").resolve() / "results.json").read_text())
    return out.returncode, results["workload"]


def caught(tmp_path, args, expected, runs=2, caught_in=1, backend="local"):
    """Run `runs` fault tests with fresh seeds; at least `caught_in` must be INVALID with one of `expected`.

    Stops as soon as the rate is reached (or can no longer be reached); returns the workload section of the
    first run that caught the bug."""
    tried, first, hits = [], None, 0
    for i in range(runs):
        seed = fresh_seed()
        code, workload = fault_test(tmp_path / f"store-{i}-{seed}", *args, seed=seed, backend=backend)
        found = set(workload["anomaly_types"])
        hit = code == 1 and bool(found & expected)
        tried.append((seed, sorted(found)))
        if hit:
            hits += 1
            first = first or workload
        if hits >= caught_in:
            return first
        if hits + (runs - i - 1) < caught_in:
            break
    pytest.fail(f"{backend}: fewer than {caught_in} of {runs} runs reported any of {sorted(expected)}; "
                f"seed and anomalies of each run (replay: logquake test --backend {backend} --nodes 3 --seed S "
                f"{' '.join(args)}): {tried}")
