"""One run, one truth: an --idempotent run carries the same delivery label and the same op counts in every
output (stdout, test.json, results.json, report.html, the serve index and `logquake check`)."""

import json
import random

import pytest

from checkers.history import History, describe_op_counts, op_counts
from tests.e2e.conftest import run_logquake

pytestmark = pytest.mark.e2e

LABEL = "at-least-once with an idempotent producer"


def test_an_idempotent_run_is_labelled_the_same_everywhere(tmp_path):
    seed = random.randrange(1 << 30)
    store = tmp_path / "store"
    out = run_logquake(["test", "--idempotent", "--nodes", "1", "--nemesis", "none", "--time-limit", "6",
                        "--rate", "100", "--concurrency", "2", "--seed", str(seed), "--store", str(store), "--quiet"],
                       timeout_s=200)
    assert out.returncode == 0, f"seed {seed}\n{out.stdout}\n{out.stderr[-3000:]}"
    assert "queue-at-least-once-idempotent-none" in out.stdout
    assert f"verdict: VALID under {LABEL}" in out.stdout
    run = (store / "latest").resolve()
    test = json.loads((run / "test.json").read_text())
    results = json.loads((run / "results.json").read_text())
    assert test["name"] == "queue-at-least-once-idempotent-none"
    assert test["delivery"]["label"] == results["delivery"]["label"] == LABEL
    assert results["workload"]["delivery"] == "at-least-once-idempotent"
    # the counts: computed once from the history, shown as they are
    counts = op_counts(History.load(str(run / "history.jsonl")))
    assert results["counts"] == counts and counts["ok"] > 50
    assert f"  {describe_op_counts(counts)}" in out.stdout.splitlines()
    report = (run / "report.html").read_text()
    assert LABEL in report and "exactly-once" not in report
    assert f"{counts['total']} operations" in report
    from reports.index import render_index, summarize_run

    index = render_index(str(store), [(run, summarize_run(run))])
    assert LABEL in index or "at-least-once-idempotent" in index
    assert "exactly-once" not in index
    checked = run_logquake(["check", str(run), "--out", str(tmp_path / "check")], timeout_s=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"judged as at-least-once-idempotent (from {run / 'test.json'})" in checked.stdout
