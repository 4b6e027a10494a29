"""A broker that serves records above its high watermark is caught with no fault at all.

`logquake.debug.read.above.hwm` lets consumers read up to the log end offset.
With `--nemesis none` nothing is ever lost or reordered, so only the
watermarks the clients recorded with each poll can show it:
`read-above-watermark`. The seed is random on purpose (a fault-free run must
catch it whatever the operations are) and named in every assertion message.
"""

import json
import random

import pytest

from tests.e2e.conftest import run_logquake

pytestmark = pytest.mark.e2e


def test_reads_above_the_high_watermark_are_caught_without_faults(tmp_path):
    seed = random.SystemRandom().randrange(1, 2**31)
    store = tmp_path / "store"
    out = run_logquake(["test", "--nodes", "3", "--nemesis", "none", "--time-limit", "15", "--seed", str(seed),
                        "--store", str(store), "--quiet",
                        "--broker-override", "logquake.debug.read.above.hwm=true"], timeout_s=120)
    assert out.returncode == 1, f"seed {seed}: exit {out.returncode}\n{out.stdout}\n{out.stderr[-3000:]}"
    workload = json.loads(((store / "latest").resolve() / "results.json").read_text())["workload"]
    assert "read-above-watermark" in workload["anomaly_types"], f"seed {seed}: {workload['anomaly_types']}"
    witness = workload["anomalies"]["read-above-watermark"][0]
    assert min(witness["offsets"]) >= witness["watermark"], f"seed {seed}: {witness}"
    assert "the broker served records it had not yet committed" in witness["explanation"], f"seed {seed}"
