"""The planted-bug scorecard: every planted bug of the broker is on it, and its figures come from the runs."""

from __future__ import annotations

import json

import pytest

from harness.scorecard import PLANTED_BUGS, scorecard_campaign, scorecard_of
from tests.e2e.conftest import run_logquake


def test_every_planted_bug_of_the_broker_is_on_the_scorecard():
    from broker.server.config import PROPERTIES  # tests may read the broker's table; the harness may not

    planted = {name for name, (_, _, what) in PROPERTIES.items() if name.startswith("logquake.debug.")
               and what.endswith("(bug)")}
    assert planted == {bug.prop for bug in PLANTED_BUGS}


def test_every_bug_and_its_control_share_settings_and_seeds():
    campaign = scorecard_campaign(list(PLANTED_BUGS), [5, 6], 60.0, "local", "store")
    bugs = [c for c in campaign.cells if c.id.startswith("bug=")]
    controls = {c.id: c for c in campaign.cells if c.id.startswith("control=")}
    assert len(bugs) == len(PLANTED_BUGS) and campaign.seeds == [5, 6]
    for bug, cell in zip(PLANTED_BUGS, bugs):
        assert cell.spec.broker_overrides == {**dict(bug.broker_overrides), bug.prop: "true"}
        assert cell.spec.nemesis == (bug.nemesis or ("partition", "kill", "pause"))
        [control] = [c for c in controls.values() if c.spec.broker_overrides == dict(bug.broker_overrides)
                     and (c.spec.workload, c.spec.delivery, c.spec.idempotent, c.spec.nemesis)
                     == (cell.spec.workload, cell.spec.delivery, cell.spec.idempotent, cell.spec.nemesis)]
        assert control.id.startswith(f"control={cell.spec.delivery_mode().name}")
    assert controls["control=at-least-once-disk-log.flush.interval.messages=1"].spec.nemesis == ("disk",)


def test_rates_count_unknown_runs_apart(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps({"valid": False, "workload": {"anomalies": {"G1a": [
        {"op_maps": [{"time": 7_500_000_000}, {"time": 9_000_000_000}]}]}}}))
    jobs = [{"cell": "bug=read.uncommitted", "seed": s, "verdict": v, "anomaly_types": ["G1a"] if v == "invalid" else [],
             "run_dir": str(run) if v == "invalid" else None, "report": None}
            for s, v in ((1, "invalid"), (2, "valid"), (3, "unknown"))]
    jobs.append({"cell": "control=exactly-once", "seed": 1, "verdict": "invalid", "anomaly_types": ["G1a"],
                 "run_dir": None, "report": None})
    card = scorecard_of({"started_at": "t", "directory": str(tmp_path), "jobs": jobs},
                        [b for b in PLANTED_BUGS if b.name == "read.uncommitted"])
    row = card["bugs"][0]
    assert (row["detected"], row["decided"], row["unknown"], row["rate"]) == (1, 2, 1, 0.5)
    assert row["median_first_anomaly_s"] == 7.5
    assert card["control"]["false_alarms"][0]["seed"] == 1


@pytest.mark.e2e
@pytest.mark.slow
def test_a_scorecard_of_the_aborted_read_bug_detects_it_and_keeps_the_control_valid(tmp_path):
    # read.uncommitted shows without faults (the workload aborts a tenth of its transactions on purpose),
    # so two random seeds are enough to expect it every time
    store = tmp_path / "store"
    out = run_logquake(["scorecard", "--bugs", "read.uncommitted", "--seeds", "2", "--time-limit", "6",
                        "--store", str(store)], timeout_s=600)
    assert out.returncode == 0, out.stdout + out.stderr
    directory = next((store / "campaigns" / "scorecard").glob("*"))
    card = json.loads((directory / "scorecard.json").read_text())
    row = card["bugs"][0]
    assert (row["bug"], row["detected"], row["decided"]) == ("read.uncommitted", 2, 2), row
    assert "G1a" in row["anomaly_types"] and row["median_first_anomaly_s"] is not None
    assert card["control"]["valid"] == 2 and not card["control"]["false_alarms"]
    page = (directory / "scorecard.html").read_text()
    assert 'data-bug="read.uncommitted"' in page and "2 of 2 (100%)" in page
