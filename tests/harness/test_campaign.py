"""Campaign files, plans, summaries and their outputs (no broker: the runs' results are written by hand here;
tests/e2e/test_campaign.py runs real campaigns)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import junitparser
import pytest
import xmlschema

from harness.campaign import (CampaignError, Journal, analyze_trends, load_campaign, parse_budget, summarize,
                              write_outputs)
from tests.data import HISTORIES

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = HISTORIES.parent / "junit.xsd"


def _file(tmp_path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def test_the_shipped_campaigns_load():
    smoke = load_campaign(ROOT / "campaigns" / "smoke.toml")
    deliveries = {c.params["delivery"] for c in smoke.cells}
    mixes = {c.params["nemesis"] for c in smoke.cells}
    assert len(deliveries) >= 2 and len(mixes) >= 2 and len(smoke.cells) == len(deliveries) * len(mixes)
    nightly = load_campaign(ROOT / "campaigns" / "nightly.toml")
    assert {c.spec.workload for c in nightly.cells} == {"queue", "register", "offsets"}
    assert len(nightly.cells) == 22
    assert nightly.budget_s == 7200


def test_a_cell_that_cannot_run_is_refused_with_file_line_and_reason(tmp_path):
    # aiokafka has no retries setting, so it cannot run at-most-once
    path = _file(tmp_path, 'name = "x"\n\n[axes]\ndelivery = ["at-least-once", "at-most-once"]\n'
                           'client = ["confluent", "aiokafka"]\n')
    with pytest.raises(CampaignError) as e:
        load_campaign(path)
    assert re.match(rf"{re.escape(str(path))}:\d+: cell delivery=at-most-once,client=aiokafka cannot run:",
                    str(e.value)), str(e.value)
    # an exclude rule takes the combination out, and then the file loads
    path.write_text(path.read_text() + '\n[[exclude]]\ndelivery = "at-most-once"\nclient = "aiokafka"\n')
    assert len(load_campaign(path).cells) == 3


@pytest.mark.parametrize("text, message", [
    ('name = "x"\ntime_limt = 3\n', ":2: unknown setting 'time_limt'"),
    ('name = "x"\n[axes]\ndelivry = ["at-least-once"]\n', ":3: unknown axis 'delivry'"),
    ('name = "x"\n[axes]\nnodes = []\n', ":3: axis nodes must be a non-empty list"),
    ('name = "x y"\n', ":1: name must be a word"),
    ('name = "x"\nbudget = "soon"\n', ":2: budget 'soon' is not a duration"),
    ('name = "x"\nrepeat = 0\n', ":2: repeat must be a whole number of at least 1"),
    ('name = "x"\n[axes]\nnodes = [1]\n[[exclude]]\nclient = "confluent"\n', ":4: an exclude rule names 'client'"),
    ('name = "x"\n[axes]\nnodes = [0]\n', "cell default cannot run: --nodes must be at least 1"),
])
def test_bad_campaign_files_name_the_line(tmp_path, text, message):
    with pytest.raises(CampaignError, match=re.escape(message)):
        load_campaign(_file(tmp_path, text))


def test_budgets():
    assert [parse_budget(v, "f") for v in ("90s", "5m", "2h", 30, None)] == [90, 300, 7200, 30, None]


def _fake_campaign(tmp_path, verdicts: list[str], commit: str = "a" * 40, started: str = "2026-12-01T02:00:00.000000Z",
                   name: str = "nightly", unfinished_tail: int = 0) -> Path:
    """A campaign directory as run_campaign leaves it, with runs whose results.json are written by hand."""
    directory = tmp_path / "store" / "campaigns" / name / started.replace(":", "")
    directory.mkdir(parents=True)
    jobs = [{"job": f"nemesis=kill#{i}", "cell": "nemesis=kill" if i % 2 else "nemesis=pause", "seed": i}
            for i in range(len(verdicts) + unfinished_tail)]
    plan = {"name": name, "campaign_file": "/x/nightly.toml", "started_at": started, "version": "0.1.0",
            "commit": commit, "budget_s": None,
            "cells": [{"id": "nemesis=kill", "params": {"nemesis": "kill", "delivery": "at-least-once"}, "spec": {}},
                      {"id": "nemesis=pause", "params": {"nemesis": "pause", "delivery": "at-least-once"}, "spec": {}}],
            "jobs": jobs}
    (directory / "plan.json").write_text(json.dumps(plan))
    journal = Journal(directory / "journal.jsonl")
    for job, verdict in zip(jobs, verdicts):
        run_dir = tmp_path / "store" / "runs" / f"{started[:10]}-{job['seed']}"
        run_dir.mkdir(parents=True)
        anomalies = {"lost-write": 2} if verdict == "invalid" else {}
        (run_dir / "results.json").write_text(json.dumps({
            "valid": {"valid": True, "invalid": False}.get(verdict, "unknown"),
            "message": "final read did not complete" if verdict == "unknown" else "",
            "workload": {"stats": {"anomaly_counts": anomalies}}}))
        journal.append({"event": "start", "job": job["job"], "cell": job["cell"], "seed": job["seed"], "attempt": 1})
        journal.append({"event": "end", "job": job["job"], "cell": job["cell"], "seed": job["seed"], "attempt": 1,
                        "verdict": verdict, "duration_s": 40.0, "run_dir": str(run_dir), "exit_code": 0,
                        "anomalies": anomalies, "reason": "final read did not complete" if verdict == "unknown" else ""})
    return directory


def test_summary_junit_and_index_agree_with_the_runs(tmp_path):
    directory = _fake_campaign(tmp_path, ["valid", "invalid", "unknown"], unfinished_tail=1)
    summary = write_outputs(directory)
    assert summary["totals"] == {"valid": 1, "invalid": 1, "unknown": 1, "not_run": 1}
    on_disk = json.loads((directory / "summary.json").read_text())
    assert on_disk["jobs"][1]["anomaly_types"] == ["lost-write"] and on_disk["commit"] == "a" * 40
    # JUnit: a real reader and a schema
    xmlschema.XMLSchema(str(SCHEMA)).validate(str(directory / "junit.xml"))
    xml = junitparser.JUnitXml.fromfile(str(directory / "junit.xml"))
    cases = {case.name: case for suite in xml for case in suite}
    assert len(cases) == 4
    invalid = cases["nemesis=kill seed 1"]
    assert isinstance(invalid.result[0], junitparser.Failure)
    assert "lost-write" in invalid.result[0].message and "report.html" in invalid.result[0].message
    assert isinstance(cases["nemesis=pause seed 2"].result[0], junitparser.Error)
    assert "final read did not complete" in cases["nemesis=pause seed 2"].result[0].message
    assert isinstance(cases["nemesis=kill seed 3"].result[0], junitparser.Error)  # never run: not green
    assert cases["nemesis=pause seed 0"].result == [] and cases["nemesis=pause seed 0"].time == 40.0
    page = (directory / "index.html").read_text()
    assert page.count("data-row ") == 4 and 'data-verdict="invalid"' in page
    assert "../../../runs/2026-12-01-1/report.html" in page  # links relative to the campaign directory


def test_trends_name_the_regressed_cell_and_the_night_it_turned(tmp_path):
    nights = [_fake_campaign(tmp_path, ["valid", "valid"], commit="a" * 40, started="2026-12-01T02:00:00.000000Z"),
              _fake_campaign(tmp_path, ["valid", "valid"], commit="a" * 40, started="2026-12-02T02:00:00.000000Z"),
              _fake_campaign(tmp_path, ["valid", "invalid"], commit="b" * 40, started="2026-12-03T02:00:00.000000Z")]
    analysis = analyze_trends([summarize(d) for d in nights], "nightly")
    cells = {c["id"]: c for c in analysis["cells"]}
    assert cells["nemesis=kill"]["status"] == "regressed"
    assert cells["nemesis=kill"]["turned"] == {"night": 2, "started_at": "2026-12-03T02:00:00.000000Z",
                                               "last_valid_commit": "a" * 40, "first_invalid_commit": "b" * 40}
    assert cells["nemesis=pause"]["status"] == "valid"
    assert analysis["rate_by_fault"]["kill"] == [(0, 0.0), (1, 0.0), (2, 1.0)]


def test_both_verdicts_on_one_commit_is_flaky_not_a_regression(tmp_path):
    nights = [_fake_campaign(tmp_path, ["valid", "valid"], started="2026-12-01T02:00:00.000000Z"),
              _fake_campaign(tmp_path, ["valid", "invalid"], started="2026-12-02T02:00:00.000000Z")]
    cells = {c["id"]: c for c in analyze_trends([summarize(d) for d in nights], "nightly")["cells"]}
    assert cells["nemesis=kill"]["status"] == "flaky" and cells["nemesis=kill"]["flaky_commits"] == ["a" * 40]


@pytest.mark.slow
def test_the_campaign_pages_render_in_chromium_without_script_errors(tmp_path):
    from reports.campaign import trends_html
    from tests.reports.test_browser import _js_errors, _run_chromium

    nights = [_fake_campaign(tmp_path, ["valid", "valid"], started="2026-12-01T02:00:00.000000Z"),
              _fake_campaign(tmp_path, ["valid", "invalid"], commit="b" * 40, started="2026-12-02T02:00:00.000000Z")]
    write_outputs(nights[1])
    trends = tmp_path / "trends.html"
    trends.write_text(trends_html(analyze_trends([summarize(d) for d in nights], "nightly")))
    for page in (nights[1] / "index.html", trends):
        dom = _run_chromium(tmp_path, page.as_uri(), "--dump-dom").stdout
        assert 'data-ready="yes"' in dom, page
        assert _js_errors(dom).strip() == "", page
        shot = tmp_path / f"{page.stem}.png"
        _run_chromium(tmp_path, page.as_uri(), "--window-size=1400,900", f"--screenshot={shot}")
        assert shot.stat().st_size > 5000


def test_serve_links_every_campaign_and_draws_its_trends_on_request(tmp_path):
    from tests.reports.test_serve import fetch, serving

    _fake_campaign(tmp_path, ["valid", "valid"], started="2026-12-01T02:00:00.000000Z")
    _fake_campaign(tmp_path, ["valid", "invalid"], commit="b" * 40, started="2026-12-02T02:00:00.000000Z")
    with serving(tmp_path / "store") as (_, port):
        status, _, body = fetch(port, "/")
        assert status == 200 and b'href="campaigns/nightly/trends.html"' in body
        status, _, body = fetch(port, "/campaigns/nightly/trends.html")
        assert status == 200 and b'data-cell="nemesis=kill" data-status="regressed"' in body
        assert fetch(port, "/campaigns/nothing/trends.html")[0] == 404


def test_unknown_is_run_again_up_to_rerun_unknown_times_and_interrupted_runs_always_again():
    from harness.campaign import Attempt, needs_another_run

    def attempts(*verdicts):
        return [Attempt("j", "c", 1, i + 1, v, 1.0, None, None) for i, v in enumerate(verdicts)]

    assert needs_another_run(attempts(), 0) and needs_another_run(attempts("interrupted"), 0)
    assert not needs_another_run(attempts("valid"), 3) and not needs_another_run(attempts("invalid"), 3)
    assert not needs_another_run(attempts("unknown"), 0)
    assert needs_another_run(attempts("unknown"), 1) and not needs_another_run(attempts("unknown", "unknown"), 1)
    assert needs_another_run(attempts("interrupted", "unknown", "unknown"), 2)
    assert not needs_another_run(attempts("unknown", "valid"), 5)
