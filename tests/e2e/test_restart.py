"""`--nemesis restart`: graceful stops (SIGTERM, the broker's controlled shutdown) and starts of real broker
processes, as in a rolling restart. Our broker keeps every acknowledged write through them, and each stop is
confirmed by its probe (the processes gone, the port silent) before the history records it."""

import pytest

from checkers.history import History
from tests.e2e.detection import fault_test, fresh_seed

pytestmark = pytest.mark.e2e


def test_rolling_restarts_of_a_correct_broker_lose_nothing_and_every_stop_is_confirmed(tmp_path):
    seed = fresh_seed()
    code, workload = fault_test(tmp_path / "store", "--nemesis", "restart", "--nemesis-interval", "6",
                                "--time-limit", "30", seed=seed)
    assert code == 0 and workload["valid"] is True, f"seed {seed}: {workload['anomaly_types']}"
    assert workload["stats"]["data_ops"]["ok"] > 200
    history = History.load(str((tmp_path / "store" / "latest").resolve() / "history.jsonl"))
    stops = [op for op in history if op.process == "nemesis" and op.f == "shutdown" and op.type == "info"
             and isinstance(op.value, dict) and "stopped" in op.value]
    assert stops, f"seed {seed}: no graceful stop in 30 s"
    assert all(op.value["probe"]["confirmed"] is True for op in stops), [op.value for op in stops]
    starts = [op for op in history if op.process == "nemesis" and op.f == "start" and isinstance(op.value, dict)
              and op.value.get("started")]
    assert starts, f"seed {seed}: nothing was started again"
