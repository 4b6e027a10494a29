"""The store's run list: discovery, grouping, order, verdict colours, escaping."""

from __future__ import annotations

import re

from reports import find_runs, render_index, summarize_run
from tests.reports.run_dirs import empty_run, interrupted_run, lost_write_run, valid_run, write_run


def _store(tmp_path):
    store = tmp_path / "store"
    runs = [lost_write_run(store), valid_run(store), interrupted_run(store), empty_run(store),
            valid_run(store, name="queue-lost", stamp="20261127T030000.000")]
    (store / "queue-lost" / "latest").symlink_to(runs[0].name)
    (store / "latest").symlink_to("queue-lost/" + runs[0].name)
    (store / "queue-lost" / "not-a-run").mkdir()
    return store, runs


def test_find_runs_lists_run_dirs_newest_first_and_skips_symlinks(tmp_path):
    store, _ = _store(tmp_path)
    found = [(p.parent.name, p.name) for p in find_runs(store)]
    assert found == [("queue-empty", "20261127T070000.000"), ("queue-interrupted", "20261127T060000.000"),
                     ("queue-lost", "20261127T050000.000"), ("queue-valid", "20261127T040000.000"),
                     ("queue-lost", "20261127T030000.000")]
    assert find_runs(tmp_path / "missing") == []


def test_summaries_come_from_results_json(tmp_path):
    store, runs = _store(tmp_path)
    lost = summarize_run(runs[0])
    assert lost.valid is False and lost.delivery == "exactly-once"
    assert lost.anomaly_types == ("int-poll-skip", "lost-write", "unseen")
    assert summarize_run(runs[1]).valid is True
    interrupted = summarize_run(runs[2])
    assert interrupted.valid == "unknown" and interrupted.reason == "interrupted"
    bare = write_run(store, "bare", [], None, stamp="20261127T010000.000")
    assert summarize_run(bare).reason == "no results.json (running, or stopped before checking)"
    (bare / "results.json").write_text("{broken")
    assert summarize_run(bare).reason == "results.json is unreadable"


def test_index_groups_by_test_newest_first_coloured_by_verdict(tmp_path):
    store, _ = _store(tmp_path)
    page = render_index(store, [(p, summarize_run(p)) for p in find_runs(store)])
    headings = re.findall(r'<section class="test" data-planted="[^"]*"><h2>([^<]*)</h2>', page)
    assert headings == ["queue-empty", "queue-interrupted", "queue-lost", "queue-valid"]
    lost_section = page[page.index("<h2>queue-lost</h2>"):]
    lost_section = lost_section[: lost_section.index("</section>")]
    assert re.findall(r'<tr class="run (\w+)"', lost_section) == ["invalid", "valid"]
    assert lost_section.index("20261127T050000.000") < lost_section.index("20261127T030000.000")
    assert '<a class="report-link" href="queue-lost/20261127T050000.000/report.html">' in page
    assert '<tr class="run unknown" data-valid="unknown">' in page
    assert "2 valid, 1 invalid, 2 unknown" in page
    assert "(drawn on request)" in page  # no report.html was written for these runs


def test_index_escapes_names_and_encodes_links(tmp_path):
    store = tmp_path / "store"
    write_run(store, "<i>x y", [], {"valid": True}, stamp="2026&1")
    page = render_index(store, [(p, summarize_run(p)) for p in find_runs(store)])
    assert "<i>" not in page
    assert "&lt;i&gt;x y" in page
    assert 'href="%3Ci%3Ex%20y/2026%261/report.html"' in page


def test_empty_store(tmp_path):
    page = render_index(tmp_path, [])
    assert "No runs in this store yet" in page


def test_each_run_shows_seed_client_overrides_duration_and_planted_bug_runs_group_apart(tmp_path):
    import json
    import os

    store = tmp_path / "store"
    plain = valid_run(store, name="queue-at-least-once-idempotent-kill", stamp="20261127T010000.000")
    planted = valid_run(store, name="queue-at-least-once-idempotent-kill", stamp="20261127T020000.000")
    for run, overrides in ((plain, {}), (planted, {"logquake.debug.skip.dedup": "true"})):
        test = json.loads((run / "test.json").read_text())
        test["options"] = {**test.get("options", {}), "delivery": "at-least-once", "idempotent": True, "seed": 4242,
                           "client": "confluent", "broker_overrides": overrides}
        (run / "test.json").write_text(json.dumps(test))
        os.utime(run / "test.json", (1000, 1000))
        os.utime(run / "results.json", (1037, 1037))
    summary = summarize_run(planted)
    assert (summary.seed, summary.client, summary.duration_s) == (4242, "confluent", 37)
    assert summary.delivery == "at-least-once with an idempotent producer"  # not exactly-once
    assert summary.planted_bugs == ("logquake.debug.skip.dedup",)
    page = render_index(store, [(p, summarize_run(p)) for p in find_runs(store)])
    assert page.count('<section class="test"') == 2
    assert '<section class="test" data-planted="logquake.debug.skip.dedup">' in page
    assert "planted bug: skip.dedup" in page and "logquake.debug.skip.dedup=true" in page
    assert '<td class="seed">4242</td>' in page and "37 s" in page
    assert "exactly-once" not in page
