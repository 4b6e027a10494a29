"""`logquake test --delivery exactly-once`: transactional producers and read_committed consumers.

A tenth of the workload's transactions are aborted on purpose, so each run
checks that aborted sends never reach a read_committed reader (G1a), besides
duplicates and lost writes, under the default faults. The planted bug serves
read_committed fetches as read_uncommitted; the same run must then report G1a.
Each client library runs through its own transactional API (confluent-kafka,
kafka-python, aiokafka).
"""

import json

import pytest

from tests.e2e.conftest import run_logquake
from tests.e2e.detection import caught, fresh_seed

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


CLIENTS = ["confluent", "kafka-python", "aiokafka"]


@pytest.mark.parametrize("client", CLIENTS)
def test_exactly_once_under_kill_and_partition_is_valid(tmp_path, client):
    seed = fresh_seed()
    out = run_logquake(["test", "--nodes", "3", "--delivery", "exactly-once", "--client", client,
                        "--nemesis", "kill,partition",
                        "--nemesis-interval", "6", "--time-limit", "30", "--seed", str(seed), "--store", str(tmp_path), "--quiet"],
                       timeout_s=400)
    assert out.returncode == 0, f"seed {seed}: " + out.stdout + out.stderr[-3000:]
    run = (tmp_path / "latest").resolve()
    results = json.loads((run / "results.json").read_text())["workload"]
    assert results["delivery"] == "exactly-once" and results["valid"] is True
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    committed = [op for op in history if op["f"] == "txn" and op["type"] == "ok"]
    aborted = [op for op in history if op["f"] == "txn" and op["type"] == "fail"]
    assert len(committed) > 100, results["stats"]
    assert aborted, "no transaction was aborted, so invisibility of aborted sends was not tested"
    assert {op["f"] for op in history if op["process"] == "nemesis"} >= {"kill", "start"}
    assert json.loads((run / "test.json").read_text())["options"]["client"] == client
    # the final read reads every key again at read_uncommitted, to place the markers (missing-marker)
    [final] = [op for op in history if "listed-high-watermarks" in op]
    assert set(final["read-uncommitted-range"]) == set(final["listed-high-watermarks"]), final.keys()
    for key, (low, high) in final["read-uncommitted-range"].items():
        offsets = [offset for offset, _ in final["read-uncommitted-log"][key]]
        assert offsets == sorted(set(offsets)) and all(low <= o < high for o in offsets), (key, low, high)
        assert len(offsets) < high - low  # the markers lie between the records


@pytest.mark.parametrize("client", CLIENTS)
def test_serving_read_committed_as_read_uncommitted_shows_aborted_reads(tmp_path, client):
    workload = caught(tmp_path, ["--delivery", "exactly-once", "--client", client, "--time-limit", "20", "--nemesis", "none",
                                 "--broker-override", "logquake.debug.read.uncommitted=true"],
                      {"G1a"})
    assert workload["anomalies"]["G1a"]
