"""`logquake test --workload pipeline`: read-process-write with transactions, under broker and processor faults.

On the correct broker a run is VALID under the default broker faults (partition, kill, pause) together with
processor kills, pauses (zombies), aborts and group churn; each planted coordinator bug that breaks the
pipeline's exactly-once promise is caught with fresh seeds by the processor faults alone (`--nemesis none`:
2 of 2 runs of 60 s each when measured; `logquake scorecard` measures them under the default broker faults too).
"""

import json

import pytest

from tests.e2e.detection import caught, fault_test, fresh_seed

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_the_pipeline_on_a_correct_broker_is_valid_under_broker_and_processor_faults(tmp_path):
    seed = fresh_seed()
    code, workload = fault_test(tmp_path / "store", "--workload", "pipeline", "--time-limit", "60", seed=seed)
    assert code == 0 and workload["valid"] is True, f"seed {seed}: {json.dumps(workload)[:3000]}"
    stats = workload["stats"]
    assert stats["acknowledged_inputs"] > 50 and stats["unprocessed"] == 0, stats
    assert stats["output_records"] >= stats["acknowledged_inputs"], stats
    faults = stats["processor_faults"]
    assert faults["kills"] >= 1 and faults["pauses"] >= 1 and faults["aborts on purpose"] + faults["leaves"] >= 1, faults
    assert [p["status"] for p in workload["promises"]] == ["held"] * 4
    run = (tmp_path / "store" / "latest").resolve()
    assert '<section id="processor-faults">' in (run / "report.html").read_text()  # the report shows them


def test_committing_an_aborted_transactions_offsets_loses_input(tmp_path):
    workload = caught(tmp_path, ["--workload", "pipeline", "--time-limit", "60", "--nemesis", "none",
                                 "--broker-override", "logquake.debug.aborted.offsets.visible=true"],
                      {"lost-input"})
    broken = [p for p in workload["promises"] if p["status"] == "broken"]
    assert broken[0]["id"] == "exactly-once" and "lost-input" in broken[0]["anomalies"], broken


def test_a_zombie_whose_offsets_are_not_fenced_duplicates_output(tmp_path):
    workload = caught(tmp_path, ["--workload", "pipeline", "--time-limit", "60", "--nemesis", "none",
                                 "--broker-override", "logquake.debug.unfenced.txn.offsets=true"],
                      {"duplicate-output", "double-commit"})
    assert workload["stats"]["processor_faults"]["pauses"] >= 1


# aiokafka's offsets carry no group metadata, so it cannot fence a paused processor: the workload refuses the
# pause fault on it (tests/workloads/test_pipeline_clients.py), and it runs the other processor faults
PYTHON_CLIENTS = [("kafka-python", "crash,pause,abort,leave"), ("aiokafka", "crash,abort,leave")]


@pytest.mark.parametrize("client, processor_faults", PYTHON_CLIENTS, ids=[c for c, _ in PYTHON_CLIENTS])
def test_the_pipeline_on_each_python_client_is_valid_under_processor_faults(tmp_path, client, processor_faults):
    seed = fresh_seed()
    code, workload = fault_test(tmp_path / "store", "--workload", "pipeline", "--client", client, "--processor-faults",
                                processor_faults, "--time-limit", "60", "--nemesis", "none", seed=seed)
    assert code == 0 and workload["valid"] is True, f"{client} seed {seed}: {json.dumps(workload)[:3000]}"
    stats = workload["stats"]
    assert stats["acknowledged_inputs"] > 50 and stats["unprocessed"] == 0, stats
    faults = stats["processor_faults"]
    assert faults["kills"] >= 1 and faults["aborts on purpose"] + faults["leaves"] >= 1, faults
    if "pause" in processor_faults:
        assert faults["pauses"] >= 1, faults
    assert [p["status"] for p in workload["promises"]] == ["held"] * 4
    run = (tmp_path / "store" / "latest").resolve()
    assert json.loads((run / "test.json").read_text())["options"]["client"] == client


@pytest.mark.parametrize("client, processor_faults", PYTHON_CLIENTS, ids=[c for c, _ in PYTHON_CLIENTS])
def test_serving_read_committed_as_read_uncommitted_shows_in_the_pipelines_output(tmp_path, client, processor_faults):
    # an aborted transaction's output is read back: alone (aborted-output), or beside the copy of its input
    # that a later transaction committed (duplicate-output)
    caught(tmp_path, ["--workload", "pipeline", "--client", client, "--processor-faults", processor_faults,
                      "--time-limit", "30", "--nemesis", "none",
                      "--broker-override", "logquake.debug.read.uncommitted=true"],
           {"aborted-output", "duplicate-output"})
