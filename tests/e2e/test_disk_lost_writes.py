"""The disk nemesis end to end (issue 6 acceptance, local backend).

With Kafka's default of no fsync (`log.flush.interval.messages` unset),
durability rests on replication; losing the un-fsynced tail on every replica at
once (lazy disks, then a power cut of every node: a prefix of the pending writes
reaches the disk, the last one possibly torn, then a kill) loses acknowledged writes, and the
checker must say so. With an fsync after every message the same schedule loses
nothing. Neither run may leave a FUSE mount or a faketime file behind.
"""

import json
import os

import pytest

import nemeses
from harness.backends.local import RUN_ROOT
from nodecontrol.launch import fuse_mounts
from harness.run_command import build_run
from harness.spec import RunSpec
from nemeses.disk import DiskPackage
from tests.e2e.detection import fresh_seed

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _run(store, overrides: dict[str, str], seed: int):
    spec = RunSpec(nemesis=("disk",), nodes=3, time_limit_s=20.0, rate=150.0, concurrency=4, seed=seed,
                   store=str(store), broker_overrides=overrides, nemesis_interval_s=14.0, replication_factor=3)
    run = build_run(spec)
    # every fault window: lazy disks on all three nodes, then a kill of all three (the crash loses the tail)
    run.nemesis = nemeses.Nemesis([DiskPackage(interval_s=14.0, duration_s=6.0, targets=["all"],
                                               shapes=["lose-unfsynced"])])
    outcome = run.run()
    results = json.loads((outcome.run_dir / "results.json").read_text())
    history = [json.loads(line) for line in (outcome.run_dir / "history.jsonl").read_text().splitlines()]
    return outcome, results, history


def _assert_nothing_left():
    # this process's runs only: the other xdist worker may have a disk fault of its own run mounted right now (CI
    # saw another harness's /tmp/logquake/run-26108-1-.../n3/logs here)
    own = RUN_ROOT / f"run-{os.getpid()}-"
    assert [m for m in fuse_mounts() if m.startswith(str(own))] == []
    assert list(RUN_ROOT.glob(f"run-{os.getpid()}-*/*/faketime")) == []


def _crashes(history):
    return [op for op in history if op["process"] == "nemesis" and op["f"] == "stop-disk"
            and isinstance(op["value"], dict) and op["value"].get("killed")]


def test_losing_unfsynced_writes_on_every_replica_loses_acknowledged_writes(tmp_path):
    outcome, results, history = _run(tmp_path / "store", {}, seed=fresh_seed())
    crashes = _crashes(history)
    assert crashes and crashes[0]["value"]["killed"] == ["n1", "n2", "n3"], crashes
    crash = crashes[0]["value"]
    assert all(isinstance(n, int) for name in ("unfsynced_bytes_held", "unfsynced_bytes_lost", "torn_writes")
               for n in crash[name].values()), crash
    # the power cut keeps a prefix of what each node held: some bytes reach the disk, the rest is lost
    assert all(crash["unfsynced_bytes_lost"][n] <= crash["unfsynced_bytes_held"][n] for n in crash["killed"]), crash
    assert sum(crash["unfsynced_bytes_held"].values()) > 0
    assert results["valid"] is False, json.dumps(results, indent=1)[:3000]
    # the loss shows as lost-write when no poll read the lost values before the crash, as
    # inconsistent-offsets when one did and the offsets were then reused by new writes, and as
    # watermark-regression when a client had seen a high watermark above what survived (committed data gone)
    shown = sorted(set(results["workload"]["anomalies"]) & {"lost-write", "inconsistent-offsets", "watermark-regression"})
    assert shown, sorted(results["workload"]["anomalies"])
    report = (outcome.run_dir / "report.html").read_text()
    assert "What the faults did" in report
    assert "log.flush.interval.messages was unset (Kafka&#x27;s default: no fsync" in report
    assert f"held {sum(crash['unfsynced_bytes_held'].values())} un-fsynced bytes" in report
    _assert_nothing_left()


def test_an_fsync_after_every_message_survives_the_same_faults(tmp_path):
    outcome, results, history = _run(tmp_path / "store", {"log.flush.interval.messages": "1"}, seed=fresh_seed())
    assert _crashes(history)
    assert results["valid"] is True, json.dumps(results.get("workload", {}).get("anomalies"), indent=1)[:3000]
    _assert_nothing_left()
