"""The register workload end to end: a correct broker under kills and partitions gives a linearizable history."""

import json
import random

import pytest

from checkers.history import History, op_counts
from tests.e2e.conftest import run_logquake

pytestmark = pytest.mark.e2e


def test_a_register_under_kills_and_partitions_is_linearizable(tmp_path):
    seed = random.randrange(1 << 30)
    store = tmp_path / "store"
    out = run_logquake(["test", "--workload", "register", "--nemesis", "kill,partition", "--nemesis-interval", "6",
                        "--time-limit", "25", "--seed", str(seed), "--store", str(store), "--quiet"], timeout_s=300)
    assert out.returncode == 0, f"seed {seed}\n{out.stdout}\n{out.stderr[-3000:]}"
    run = (store / "latest").resolve()
    results = json.loads((run / "results.json").read_text())
    assert results["workload"]["model"] == "register" and results["workload"]["valid"] is True
    assert [p["status"] for p in results["workload"]["promises"]] == ["held"]
    history = History.load(str(run / "history.jsonl"))
    counts = op_counts(history)
    reads = [op for op in history if op.f == "read" and op.type == "ok"]
    writes = [op for op in history if op.f == "write" and op.type == "ok"]
    assert counts["ok"] > 200 and len(reads) > 50 and len(writes) > 50, counts
    assert any(op.value is not None for op in reads)
    nemesis_fs = {op.f for op in history if op.process == "nemesis"}
    assert {"kill", "start-partition"} & nemesis_fs, nemesis_fs
    finals = [op for op in history if op.type == "invoke" and op.extra.get("final")]
    assert [op.f for op in finals] == ["read"] and history.completion(finals[0]).type == "ok"
    assert (run / "report.html").is_file()
