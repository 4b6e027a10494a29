"""The harness catches bugs planted in our broker, and passes the broker without them.

Each planted bug is a `logquake.debug.*` property, off by default, passed to
every node with `--broker-override`. A run of at most 120 s with the default
fault kinds (partition, kill, pause) on 3 nodes must report the bug's anomaly.
Faults come at random moments, so a bug that needs an unlucky interleaving may
slip through one run: each test tries a second seed before it fails, and says
which seeds it tried.
"""

import json

import pytest

from tests.e2e.conftest import run_logquake

pytestmark = pytest.mark.e2e


def fault_test(store, *args, seed, backend="local"):
    out = run_logquake(["test", "--backend", backend, "--nodes", "3", "--seed", str(seed), "--store", str(store), "--quiet", *args],
                       timeout_s=400)
    assert out.returncode in (0, 1), f"exit {out.returncode}\n{out.stdout}\n{out.stderr[-3000:]}"
    results = json.loads(((store / "latest").resolve() / "results.json").read_text())
    return out.returncode, results["workload"]


def caught(tmp_path, args, expected, seeds, backend="local"):
    tried = []
    for seed in seeds:
        code, workload = fault_test(tmp_path / f"store-{seed}", *args, seed=seed, backend=backend)
        found = set(workload["anomaly_types"])
        tried.append((seed, sorted(found)))
        if code == 1 and found & expected:
            return workload
    pytest.fail(f"none of the runs reported any of {sorted(expected)}: {tried}")


@pytest.mark.parametrize("seed", [21, 22, 23])
def test_at_least_once_on_a_correct_broker_is_valid(tmp_path, seed, backend):
    code, workload = fault_test(tmp_path, "--time-limit", "30", seed=seed, backend=backend)
    assert code == 0, workload["anomaly_types"]
    assert workload["stats"]["data_ops"]["ok"] > 200


def test_acking_before_replication_loses_acknowledged_writes(tmp_path, backend):
    caught(tmp_path, ["--time-limit", "60", "--broker-override", "logquake.debug.ack.before.replication=true"],
           {"lost-write", "unseen"}, seeds=[9, 31], backend=backend)


def test_reading_above_the_high_watermark_shows_reads_that_later_vanish(tmp_path, backend):
    caught(tmp_path, ["--time-limit", "60", "--nemesis-interval", "5", "--broker-override", "logquake.debug.read.above.hwm=true"],
           {"inconsistent-offsets", "nonmonotonic-poll", "poll-skip", "G1a", "lost-write"}, seeds=[9, 32], backend=backend)


def test_skipping_truncation_on_leader_change_makes_offsets_inconsistent(tmp_path, backend):
    caught(tmp_path, ["--time-limit", "90", "--nemesis-interval", "5",
                      "--broker-override", "logquake.debug.skip.truncation=true"],
           {"inconsistent-offsets"}, seeds=[10, 11], backend=backend)


def test_skipping_idempotent_dedup_duplicates_retried_sends(tmp_path, backend):
    workload = caught(tmp_path, ["--idempotent", "--time-limit", "60",
                                 "--broker-override", "logquake.debug.skip.dedup=true"],
                      {"duplicate"}, seeds=[8, 33], backend=backend)
    assert workload["delivery"] == "at-least-once-idempotent"


def test_an_idempotent_producer_on_a_correct_broker_writes_no_duplicates(tmp_path, backend):
    code, workload = fault_test(tmp_path, "--idempotent", "--time-limit", "45", seed=8, backend=backend)
    assert code == 0, workload["anomaly_types"]
