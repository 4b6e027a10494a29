"""A partition that never lands makes the run UNKNOWN, end to end: the planted harness bug
LOGQUAKE_DEBUG_PROXY_IGNORE_CUTS makes the local fault proxy ignore every cut it is asked for; the probe
finds the cut links still answering, and the verdict and the report say which faults did not land."""

import json
import os
import random

import pytest

from tests.e2e.conftest import run_logquake

pytestmark = pytest.mark.e2e

PARTITION_ONLY = """
[[event]]
at_s = 2
package = "partition"
f = "start-partition"
shape = "isolate-one"
[[event]]
at_s = 6
package = "partition"
f = "stop-partition"
"""


def test_a_partition_the_proxy_ignores_makes_the_run_unknown_and_is_named(tmp_path):
    schedule = tmp_path / "schedule.toml"
    schedule.write_text(PARTITION_ONLY)
    store = tmp_path / "store"
    seed = random.randrange(1 << 30)
    out = run_logquake(["test", "--schedule", str(schedule), "--time-limit", "8", "--seed", str(seed),
                        "--store", str(store)], timeout_s=300,
                       env={**os.environ, "LOGQUAKE_DEBUG_PROXY_IGNORE_CUTS": "true"})
    assert out.returncode == 2, f"seed {seed}\n{out.stdout}\n{out.stderr[-3000:]}"
    assert "verdict: UNKNOWN" in out.stdout
    assert "faults of kind partition never landed" in out.stdout and "answered across the cut" in out.stdout
    run = (store / "latest").resolve()
    results = json.loads((run / "results.json").read_text())
    assert results["valid"] == "unknown" and results["reason"] == "faults-not-landed"
    assert results["faults"]["never_landed"] == ["partition"]
    assert results["faults"]["unconfirmed"][0]["f"] == "start-partition"
    assert "Probe: did NOT land" in (run / "report.html").read_text()
