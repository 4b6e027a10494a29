"""Real campaigns: outputs that agree with the runs, a SIGINT in the third run and a resume, and trends."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import junitparser
import pytest

from harness.backends.local import RUN_ROOT
from tests.e2e.conftest import run_logquake

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MATRIX = """
name = "{name}"
time_limit = {time_limit}
rate = 60
concurrency = 2
nemesis_interval = 3
[axes]
delivery = ["at-least-once", "at-most-once"]
nemesis = ["kill", "pause"]
nodes = [1]
"""


def _campaign_dir(store: Path, name: str) -> Path:
    found = sorted((store / "campaigns" / name).glob("*"))
    assert len(found) == 1, found
    return found[0]


def test_the_smoke_campaign_writes_summary_junit_and_index_that_agree_with_its_runs(tmp_path):
    path = Path(__file__).resolve().parents[2] / "campaigns" / "smoke.toml"
    store = tmp_path / "store"
    out = run_logquake(["campaign", "run", str(path), "--store", str(store)], timeout_s=900)
    directory = _campaign_dir(store, "smoke")
    summary = json.loads((directory / "summary.json").read_text())
    assert len(summary["jobs"]) == 4 and summary["finished"], out.stdout
    worst = 1 if summary["totals"]["invalid"] else 2 if summary["totals"]["unknown"] else 0
    assert out.returncode == worst, out.stdout + out.stderr
    cases = {case.name: case for suite in junitparser.JUnitXml.fromfile(str(directory / "junit.xml")) for case in suite}
    page = (directory / "index.html").read_text()
    for job in summary["jobs"]:
        results = json.loads((Path(job["run_dir"]) / "results.json").read_text())
        expected = {True: "valid", False: "invalid"}.get(results["valid"], "unknown")
        assert job["verdict"] == expected, job
        assert job["anomalies"] == results["workload"]["stats"]["anomaly_counts"]
        case = cases[f"{job['cell']} seed {job['seed']}"]
        assert [type(r).__name__ for r in case.result] == {"valid": [], "invalid": ["Failure"]}.get(expected, ["Error"])
        assert os.path.relpath(job["report"], directory) in page
        assert Path(job["report"]).is_file()
    assert {j["params"]["delivery"] for j in summary["jobs"]} == {"at-least-once", "exactly-once"}
    assert len({j["params"]["nemesis"] for j in summary["jobs"]}) == 2
    assert "campaign smoke: " in out.stdout and "[4/4 done, 0 running]" in out.stdout


def _events(directory: Path) -> list[dict]:
    path = directory / "journal.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_sigint_in_the_third_run_then_resume_runs_each_job_once_more_only_where_needed(tmp_path):
    path = tmp_path / "matrix.toml"
    path.write_text(MATRIX.format(name="resume", time_limit=10))
    store = tmp_path / "store"
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "campaign", "run", str(path), "--store", str(store)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    directory = None
    while time.monotonic() < deadline:
        found = list((store / "campaigns" / "resume").glob("*")) if (store / "campaigns" / "resume").is_dir() else []
        if found and sum(e["event"] == "start" for e in _events(found[0])) == 3:
            directory = found[0]
            break
        time.sleep(0.2)
    assert directory is not None, "the third run never started"
    time.sleep(4)  # into the third run's workload
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert f"resume it with: logquake campaign run --resume {directory}" in out
    third = [e for e in _events(directory) if e["event"] == "start"][2]
    ends = [e for e in _events(directory) if e["event"] == "end" and e["job"] == third["job"]]
    assert [e["verdict"] for e in ends] == ["interrupted"]
    resumed = run_logquake(["campaign", "run", "--resume", str(directory)], timeout_s=400)
    assert resumed.returncode in (0, 1, 2), resumed.stdout + resumed.stderr
    events = _events(directory)
    finals = [e for e in events if e["event"] == "end" and e["verdict"] in ("valid", "invalid", "unknown")]
    assert sorted(e["job"] for e in finals) == sorted(j["job"] for j in json.loads((directory / "plan.json").read_text())["jobs"])
    third_attempts = [e for e in events if e["event"] == "end" and e["job"] == third["job"]]
    assert [e["verdict"] for e in third_attempts][0] == "interrupted" and len(third_attempts) == 2
    # nothing of the interrupted run is left: its processes, its run directory, its nodes
    pids = [e["pid"] for e in events if e["event"] == "start"]
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or b"harness.cli" not in Path(f"/proc/{pid}/cmdline").read_bytes()
        assert list(RUN_ROOT.glob(f"run-{pid}-*")) == [], pid
    summary = json.loads((directory / "summary.json").read_text())
    assert summary["finished"] and summary["totals"]["not_run"] == 0
    assert [len(j["attempts"]) for j in summary["jobs"]].count(2) == 1


def test_trends_name_a_cell_that_regressed_with_the_commits_on_both_sides(tmp_path):
    # nights 1 and 2 on one commit; night 3 switches a planted bug on (read_committed served as
    # read_uncommitted: the exactly-once workload's deliberate aborts become visible), and its plan is
    # marked with a second commit, as a night after a new commit would be
    store = tmp_path / "store"
    base = ('name = "trend"\ntime_limit = 5\nrate = 80\nconcurrency = 2\n[axes]\ndelivery = ["exactly-once"]\n'
            'nemesis = ["none"]\nnodes = [1]\n')
    good, bad = tmp_path / "good.toml", tmp_path / "bad.toml"
    good.write_text(base)
    bad.write_text(base + 'broker_override = [{"logquake.debug.read.uncommitted" = "true"}]\n')
    for path in (good, good, bad):
        out = run_logquake(["campaign", "run", str(path), "--store", str(store), "--new"], timeout_s=300)
        assert out.returncode in (0, 1), out.stdout + out.stderr
        time.sleep(1.1)  # campaign directories are named by the second they start
    nights = sorted((store / "campaigns" / "trend").glob("*"))
    plan = json.loads((nights[2] / "plan.json").read_text())
    first_commit = plan["commit"]
    plan["commit"] = "b" * 40
    (nights[2] / "plan.json").write_text(json.dumps(plan))
    out = run_logquake(["campaign", "trends", str(store), "--name", "trend"], timeout_s=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "regressed: default on night 3" in out.stdout, out.stdout
    assert f"{(first_commit or '?')[:12]} -> {'b' * 12}" in out.stdout
    page = (store / "campaigns" / "trend" / "trends.html").read_text()
    assert 'data-cell="default" data-status="regressed"' in page
