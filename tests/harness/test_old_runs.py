"""A run stored before format 2 (tests/data/runs) still re-checks, renders and rebuilds."""

from __future__ import annotations

import json
import shutil

from harness import check_command
from harness.run_command import build_run
from harness.spec import RunSpec
from tests.data import HISTORIES

OLD_RUN = HISTORIES.parent / "runs" / "format1-queue-idempotent-kill"


def _copy(tmp_path):
    run = tmp_path / "store" / "queue-at-least-once-idempotent-kill" / "20261205T040513.583"
    shutil.copytree(OLD_RUN, run)
    return run


def test_an_old_run_re_checks_under_its_own_delivery(tmp_path, capsys):
    run = _copy(tmp_path)
    assert check_command.main([str(run), "--out", str(tmp_path / "out")]) == 0
    assert f"judged as at-least-once-idempotent (from {run / 'test.json'})" in capsys.readouterr().out
    result = json.loads((tmp_path / "out" / "results.json").read_text())["files"][str(run / "history.jsonl")]
    assert result["delivery"] == "at-least-once-idempotent"
    assert [p["status"] for p in result["promises"] if p["id"] in ("lost", "duplicated")] == ["held", "held"]


def test_an_old_run_renders(tmp_path):
    from reports import render_run

    run = _copy(tmp_path)
    page = render_run(run).read_text()
    assert "VALID" in page and "queue-at-least-once-idempotent-kill" in page


def test_an_old_test_json_rebuilds_its_run():
    document = json.loads((OLD_RUN / "test.json").read_text())
    assert "format" not in document
    run = build_run(RunSpec.from_test_json(document))
    assert run.o.store_name() == document["name"]
    assert run.o.delivery_mode().name == "at-least-once-idempotent"
    assert run.workload.describe() == document["workload"]
    assert (run.o.seed, run.o.nemesis, run.o.time_limit_s) == (4242, ("kill",), 6.0)
