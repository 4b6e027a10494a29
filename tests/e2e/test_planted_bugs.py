"""The harness catches bugs planted in our broker, and passes the broker without them.

Each planted bug is a `logquake.debug.*` property, off by default, passed to
every node with `--broker-override`. A 60 s run with the default
fault mix (partition, kill, pause, one at a time) on 3 nodes must report the
bug's anomaly. Every run draws a fresh random seed (tests/e2e/detection.py),
printed and named in the failure message for replay; faults come at random
moments, so a test asks for one detection in two runs (three for the
deduplication bug, which needs a retried send whose first attempt was
stored), and fails when a bug slips through all of them (the scorecard
measures the rates these tests rely on).
"""

import pytest

from tests.e2e.detection import caught, fault_test, fresh_seed

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("run", [1, 2, 3])
def test_at_least_once_on_a_correct_broker_is_valid(tmp_path, run, backend):
    seed = fresh_seed()
    code, workload = fault_test(tmp_path, "--time-limit", "30", seed=seed, backend=backend)
    assert code == 0, f"seed {seed}: {workload['anomaly_types']}"
    assert workload["stats"]["data_ops"]["ok"] > 200


def test_acking_before_replication_loses_acknowledged_writes(tmp_path, backend):
    caught(tmp_path, ["--time-limit", "60", "--broker-override", "logquake.debug.ack.before.replication=true"],
           {"lost-write", "unseen"}, backend=backend)


def test_reading_above_the_high_watermark_shows_reads_that_later_vanish(tmp_path, backend):
    caught(tmp_path, ["--time-limit", "60", "--broker-override", "logquake.debug.read.above.hwm=true"],
           {"inconsistent-offsets", "nonmonotonic-poll", "poll-skip", "G1a", "lost-write"}, backend=backend)


def test_skipping_truncation_on_leader_change_makes_offsets_inconsistent(tmp_path):
    # Local only. A follower that skipped truncation shows its divergent tail only if its log end falls on a
    # batch boundary of the new leader's log; otherwise its fetches fail for good, it leaves the ISR and its
    # tail is never read. Docker's slower clients send larger batches: the scorecard caught the bug there in
    # 1 of 3 runs (3 of 3 locally), too low for a test that must not be flaky (issue 13 is open for it). Beside
    # other tests (CI's workers) runs are slower and batches larger: 0 of 2 once, so one of three must catch it.
    caught(tmp_path, ["--time-limit", "60", "--broker-override", "logquake.debug.skip.truncation=true"],
           {"inconsistent-offsets"}, runs=3)


def test_skipping_idempotent_dedup_duplicates_retried_sends(tmp_path, backend):
    workload = caught(tmp_path, ["--idempotent", "--time-limit", "60",
                                 "--broker-override", "logquake.debug.skip.dedup=true"],
                      {"duplicate"}, runs=3, backend=backend)  # caught in 2 of 3 runs in the scorecard
    assert workload["delivery"] == "at-least-once-idempotent"


def test_an_idempotent_producer_on_a_correct_broker_writes_no_duplicates(tmp_path, backend):
    seed = fresh_seed()
    code, workload = fault_test(tmp_path, "--idempotent", "--time-limit", "45", seed=seed, backend=backend)
    assert code == 0, f"seed {seed}: {workload['anomaly_types']}"
