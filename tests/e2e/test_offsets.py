"""`logquake test --workload offsets`: consumer-group offset commits under the default broker faults.

On the correct broker every acknowledged commit survives the partitions, kills and pauses (VALID); with
`logquake.debug.commit.before.replication` (OffsetCommit answered before its record is replicated) a
coordinator cut off from its followers, or killed while one lagged, loses commits it acknowledged, and
the final read finds groups back at an older offset (`lost-commit`). Fresh seeds each run
(tests/e2e/detection.py); `logquake scorecard` measured the rate this test relies on (README).
"""

import json

import pytest

from checkers.history import History
from tests.e2e.detection import caught, fault_test, fresh_seed

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_offset_commits_on_a_correct_broker_survive_the_default_faults(tmp_path):
    seed = fresh_seed()
    code, workload = fault_test(tmp_path / "store", "--workload", "offsets", "--time-limit", "40", seed=seed)
    assert code == 0 and workload["valid"] is True, f"seed {seed}: {json.dumps(workload)[:3000]}"
    stats = workload["stats"]
    assert stats["commits"]["ok"] > 500 and stats["groups_judged"] == stats["groups"] > 20, stats
    assert [p["status"] for p in workload["promises"]] == ["held", "held"]
    history = History.load(str((tmp_path / "store" / "latest").resolve() / "history.jsonl"))
    assert {op.f for op in history if op.process == "nemesis"} & {"kill", "start-partition", "pause"}


def test_acknowledging_a_commit_before_replication_loses_it(tmp_path):
    workload = caught(tmp_path, ["--workload", "offsets", "--time-limit", "60",
                                 "--broker-override", "logquake.debug.commit.before.replication=true"],
                      {"lost-commit"})
    witness = workload["anomalies"]["lost-commit"][0]
    assert "an acknowledged commit was lost" in witness["explanation"]
