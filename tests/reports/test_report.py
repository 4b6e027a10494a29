"""The run report: verdicts, anomaly sentences, witnesses, plots, offset maps, escaping, bad and big runs."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reports import find_runs, render_index, render_run, render_run_html, summarize_run
from reports.plots import EXACT_TIMELINE_MAX, nice_ticks
from reports.run_data import load_run
from tests.reports.run_dirs import XSS, _history_ops, empty_run, interrupted_run, lost_write_run, valid_run, write_run

SVG_ELEMENT = re.compile(r"<(rect|path|circle|line|text|polyline|polygon)\b")


def _promise_status(page: str, promise: str) -> str:
    """The status a promise is shown with: a broken promise's block, or a row of the other promises."""
    m = re.search(rf'<(?:div|tr) class="promise ([\w-]+)(?: with-anomalies)?" data-promise="{promise}"', page)
    assert m, f"no promise row {promise!r}"
    return m.group(1)


def test_render_run_writes_report_html_and_returns_its_path(tmp_path):
    run_dir = lost_write_run(tmp_path)
    path = render_run(run_dir)
    assert path == run_dir / "report.html"
    text = path.read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert not (run_dir / "report.html.tmp").exists()


def test_invalid_run_shows_verdict_promises_sentences_and_witness_ops(tmp_path):
    run_dir = lost_write_run(tmp_path, delivery="exactly-once")
    results = json.loads((run_dir / "results.json").read_text())
    page = render_run_html(run_dir)
    assert '<header id="verdict" class="verdict invalid">' in page
    assert ">INVALID<" in page
    assert _promise_status(page, "lost") == "broken"
    assert _promise_status(page, "duplicated") == "held"
    assert _promise_status(page, "aborted-visible") == "held"
    assert _promise_status(page, "reordered") == "broken"  # the poll read 1 then 3, skipping 2
    lost = results["workload"]["anomalies"]["lost-write"][0]
    assert lost["explanation"] == ("Op 11 sent 2 to key 0 (log index 1), and no poll observed it, although op 19 "
                                   "polled a message at log index 2, after it.")
    assert html.escape(lost["explanation"]) in page
    block = page[page.index('id="anomaly-lost-write"'):]
    block = block[: block.index('<div class="anomaly', 10)]
    # the summary sentence the checker wrote, not a bare count
    assert ('<span class="summary">1 acknowledged message lost (later messages of the same key were read), '
            'on 1 key</span>') in block
    assert re.findall(r'class="op-link" href="#timeline" data-index="(\d+)"', block) == ["11", "19"]
    assert '<span class="span-s">0.25–0.56 s</span>' in block
    assert '<td class="type">ok</td><td>send</td>' in block
    # the witness names the faults in effect between its first op and its last
    faults = re.search(r'<p class="faults-at">(.*?)</p>', block).group(1)
    assert re.sub(r"<[^>]+>", "", faults) == (
        "At its first op, op 11 (0.25–0.30 s): In effect during it: kill n2 (the leader), 0.10–0.42 s; "
        "partition (halves, a majority): n1 drops traffic "
        "from n2, n3, 0.20–0.51 s.")
    for name in ("unseen", "int-poll-skip"):
        assert f'id="anomaly-{name}"' in page


def test_mode_that_allows_loss_labels_the_promise_not_promised(tmp_path):
    page = render_run_html(lost_write_run(tmp_path, delivery="at-most-once"))
    assert _promise_status(page, "lost") == "not-promised"
    assert "at-most-once does not promise it" in page
    assert 'id="allowed-lost-write"' in page
    assert 'id="anomaly-lost-write"' not in page


def test_duplicates_are_not_promised_under_at_least_once(tmp_path):
    page = render_run_html(lost_write_run(tmp_path, delivery="at-least-once"))
    assert _promise_status(page, "duplicated") == "not-promised"
    assert _promise_status(page, "lost") == "broken"


def test_valid_run(tmp_path):
    page = render_run_html(valid_run(tmp_path))
    assert '<header id="verdict" class="verdict valid">' in page
    for promise in ("lost", "duplicated", "reordered", "aborted-visible"):
        assert _promise_status(page, promise) == "held"
    assert '<h3 class="other-promises">Every promise</h3>' in page
    assert 'class="anomaly bad"' not in page and 'class="anomaly-mark"' not in page


def test_user_data_is_escaped_everywhere(tmp_path):
    run_dir = lost_write_run(tmp_path)
    test = json.loads((run_dir / "test.json").read_text())
    test["name"] = "<b>queue</b>"
    test["options"]["system"] = XSS
    (run_dir / "test.json").write_text(json.dumps(test))
    node_dir = run_dir / "nodes" / "n1"
    node_dir.mkdir(parents=True)
    (node_dir / "<img src=x>.log").write_text("log")
    page = render_run_html(run_dir)
    assert "<script>alert" not in page
    assert "<b>queue</b>" not in page
    assert "<img src=x>" not in page
    assert "&lt;b&gt;queue&lt;/b&gt;" in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert 'href="nodes/n1/%3Cimg%20src%3Dx%3E.log"' in page
    # The only scripts are the report's own two.
    assert page.count("<script>") == 2


def test_interrupted_run_has_no_verdict_but_draws_what_it_has(tmp_path):
    page = render_run_html(interrupted_run(tmp_path))
    assert '<header id="verdict" class="verdict unknown">' in page
    assert "No verdict: the test was <b>interrupted</b>." in page
    assert "the test was interrupted; its history is kept &lt;script&gt;" in page
    assert 'class="promise ' not in page and 'class="status ' not in page  # no promise is shown
    assert "No anomalies to show: no checker results in results.json." in page
    assert '<svg class="plot timeline"' in page
    assert 'class="lane fk-kill"' in page


def test_empty_history(tmp_path):
    page = render_run_html(empty_run(tmp_path))
    assert "no operations recorded" in page
    assert "no completed operations: no latencies to plot" in page
    assert "No send or poll with offsets in the history: nothing to map." in page
    assert "crashed" in page and "Traceback: boom" in page


def test_missing_and_damaged_files_become_problems_not_errors(tmp_path):
    run_dir = tmp_path / "queue" / "20261127T000000.000"
    run_dir.mkdir(parents=True)
    good = {"index": 0, "time": 1000, "process": 0, "type": "invoke", "f": "send", "value": [["send", 0, 1]]}
    (run_dir / "history.jsonl").write_text(json.dumps(good) + "\n" + '{"index": 1, "time": 20')
    (run_dir / "schedule.json").write_text("{not json")
    page = render_run_html(run_dir)
    assert "No results.json: the run is still going, or it stopped before checking." in page
    assert "results.json is missing" in page
    assert "test.json is missing" in page
    assert "history.jsonl: 1 line(s) are not op maps and were skipped (line 2)" in page
    assert "schedule.json could not be read" in page
    assert "harness.log (missing)" in page
    run = load_run(run_dir)
    assert [p.type for p in run.pairs] == ["pending"]


def test_load_run_rejects_a_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_run(tmp_path / "nope")


def test_fault_windows_from_nemesis_pairs(tmp_path):
    run = load_run(lost_write_run(tmp_path))
    windows = [(w.kind, round(w.start_s, 3), round(w.end_s, 3)) for w in run.windows]
    assert windows == [("kill", 0.1, 0.42), ("partition", 0.2, 0.51)]
    assert [w.detail for w in run.windows] == ["kill n2 (the leader)",
                                                "partition (halves, a majority): n1 drops traffic from n2, n3"]


def test_unknown_fault_kinds_get_the_fallback_colour_and_heal_closes_open_windows(tmp_path):
    ops = [
        {"index": 0, "time": 0, "process": "nemesis", "type": "info", "f": "start-disk-fault",
         "value": {"package": "disk", "f": "start-disk-fault"}},
        {"index": 1, "time": 10 ** 6, "process": "nemesis", "type": "info", "f": "start-disk-fault", "value": {}},
        {"index": 2, "time": 2 * 10 ** 6, "process": "nemesis", "type": "info", "f": "bump-clock",
         "value": {"f": "bump-clock"}},
        {"index": 3, "time": 3 * 10 ** 6, "process": "nemesis", "type": "info", "f": "bump-clock", "value": {}},
        {"index": 4, "time": 4 * 10 ** 6, "process": 0, "type": "invoke", "f": "poll", "value": [["poll"]]},
        {"index": 5, "time": 5 * 10 ** 6, "process": 0, "type": "ok", "f": "poll", "value": [["poll", {}]]},
        {"index": 6, "time": 9 * 10 ** 6, "process": "nemesis", "type": "info", "f": "heal", "value": None},
        {"index": 7, "time": 10 ** 7, "process": "nemesis", "type": "info", "f": "heal", "value": {}},
    ]
    run_dir = write_run(tmp_path, "disk", ops, {"valid": "unknown", "workload": {"valid": "unknown"}})
    run = load_run(run_dir)
    assert sorted((w.kind, w.end_s) for w in run.windows) == [("bump-clock", 0.01), ("disk", 0.01)]
    page = render_run_html(run_dir)
    assert 'class="lane fk-other"' in page
    assert "bump-clock: any other fault" in page  # the legend has the colour of the unknown kinds
    assert 'class="lane fk-disk"' in page
    assert "pause: process paused (SIGSTOP) until resumed (none)" in page


def test_offset_maps_colour_lost_and_acknowledged_values(tmp_path):
    page = render_run_html(lost_write_run(tmp_path))
    section = page[page.index('<section id="offsets">'):]
    section = section[: section.index("</section>")]
    assert '<h3 class="key-heading">key 0</h3>' in section and '<h3 class="key-heading">key 1</h3>' in section
    # value 2 is a lost write, unseen, and skipped by op 19's poll: its cell shows all three, as stripes
    assert re.search(r'<g class="split"><title>offset 1: 2 \(lost, reordered, unseen\), acknowledged by op 11, never '
                     r'read</title><rect class="om-lost" [^>]*></rect><rect class="om-reordered" [^>]*></rect>'
                     r'<rect class="om-unseen" [^>]*></rect></g>', section)
    assert re.search(r'<rect class="om-ok" [^>]*><title>offset 0: &quot;&lt;script&gt;', section)
    # Value 9 was sent by an info op and never read: it is not in the log, so not on the map.
    assert "9, sent by op" not in section


def test_ticks_are_round_numbers_covering_the_range():
    assert nice_ticks(0, 27, 10) == [0, 5, 10, 15, 20, 25]
    assert nice_ticks(0, 0.6, 10) == [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    assert nice_ticks(3, 3) == [3]


def _synthetic_ops(n_ops: int, processes: int = 8, keys: int = 4) -> list[dict]:
    """A large, well-formed queue history (no checker run): sends then polls that read them back."""
    ops: list[dict] = []
    t = 0
    offsets = [0] * keys
    log: list[list[tuple[int, int]]] = [[] for _ in range(keys)]
    read = [0] * keys
    value = 0
    i = 0
    while len(ops) < n_ops:
        process = i % processes
        key = i % keys
        t += 400_000  # each process invokes every 3.2 ms, after its previous op completed
        if i % 3 != 2:
            value += 1
            ops.append({"index": len(ops), "time": t, "process": process, "type": "invoke", "f": "send",
                        "value": [["send", key, value]]})
            ops.append({"index": len(ops), "time": t + 2_000_000 + (i % 7) * 100_000, "process": process,
                        "type": "ok", "f": "send",
                        "value": [["send", key, [offsets[key], value]]]})
            log[key].append((offsets[key], value))
            offsets[key] += 1
        else:
            chunk = log[key][read[key]: read[key] + 3]
            read[key] += len(chunk)
            ops.append({"index": len(ops), "time": t, "process": process, "type": "invoke", "f": "poll",
                        "value": [["poll"]]})
            ops.append({"index": len(ops), "time": t + 1_000_000, "process": process, "type": "ok", "f": "poll",
                        "value": [["poll", {str(key): [list(c) for c in chunk]}]]})
        i += 1
    ops.sort(key=lambda o: o["time"])
    for index, op in enumerate(ops):
        op["index"] = index
    return ops


def test_a_history_past_the_exact_limit_is_drawn_on_a_grid(tmp_path):
    ops = _synthetic_ops(2 * EXACT_TIMELINE_MAX + 1000)
    run_dir = write_run(tmp_path, "grid", ops, {"valid": True, "workload": {"valid": True, "anomalies": {}}})
    page = render_run_html(run_dir)
    assert "operations drawn on a grid of" in page
    assert '<rect class="op ' not in page
    assert len(SVG_ELEMENT.findall(page)) < 20_000


@pytest.mark.slow
def test_a_100k_op_history_stays_small(tmp_path):
    ops = _synthetic_ops(100_000)
    results = {"valid": True, "workload": {"valid": True, "delivery": "at-least-once", "anomaly_types": [],
                                           "anomalies": {}, "allowed": {}, "stats": {"ops": len(ops)}}}
    run_dir = write_run(tmp_path, "big", ops, results, "at-least-once")
    path = render_run(run_dir)
    page = path.read_text()
    assert len(SVG_ELEMENT.findall(page)) < 20_000
    assert path.stat().st_size < 3 * 1024 * 1024
    assert "50000 completed operations" in page
    assert _promise_status(page, "lost") == "held"
    assert "drawn as one dot per" in page


def test_raw_file_links_are_relative(tmp_path):
    run_dir = lost_write_run(tmp_path)
    (run_dir / "harness.log").write_text("x")
    (run_dir / "nodes" / "n1").mkdir(parents=True)
    (run_dir / "nodes" / "n1" / "server.log").write_text("x")
    page = render_run_html(run_dir)
    for href in ("history.jsonl", "results.json", "test.json", "schedule.json", "harness.log",
                 "nodes/n1/server.log"):
        assert f'<a href="{href}">' in page
    assert not re.search(r'href="(/|file:|https?:)', page)
    assert "history.edn (missing)" in page


def test_report_is_self_contained(tmp_path):
    page = render_run_html(lost_write_run(tmp_path))
    assert not re.search(r'<(link|img|iframe)\b', page)
    assert "<script src" not in page
    assert "@import" not in page and "url(" not in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "").replace(
        "'http://www.w3.org/2000/svg'", "")


def test_store_path_argument_may_be_a_string(tmp_path):
    run_dir: Path = valid_run(tmp_path)
    assert render_run(str(run_dir)) == run_dir / "report.html"


def test_a_crashed_checker_shows_its_traceback_and_no_promises(tmp_path):
    ops = [{"index": 0, "time": 0, "process": 0, "type": "invoke", "f": "poll", "value": [["poll"]]},
           {"index": 1, "time": 10 ** 6, "process": 0, "type": "ok", "f": "poll", "value": [["poll", {}]]}]
    results = {"valid": "unknown",
               "workload": {"valid": "unknown", "error": "Traceback (most recent call last):\n  <boom>"}}
    page = render_run_html(write_run(tmp_path, "crashed-checker", ops, results))
    assert '<header id="verdict" class="verdict unknown">' in page
    assert "The checkers could not decide." in page
    assert "checker workload failed, so its verdict is unknown:" in page
    assert "  &lt;boom&gt;" in page
    assert 'class="promise ' not in page and 'class="status ' not in page  # no promise is shown
    assert "No anomalies to show: no checker reported anomalies or promises (see Problems below)." in page


def test_pending_operations_are_drawn_to_the_end_of_the_history(tmp_path):
    ops = [{"index": 0, "time": 0, "process": 0, "type": "invoke", "f": "send", "value": [["send", 0, 1]]},
           {"index": 1, "time": 10 ** 6, "process": 1, "type": "invoke", "f": "poll", "value": [["poll"]]},
           {"index": 2, "time": 2 * 10 ** 9, "process": 1, "type": "ok", "f": "poll", "value": [["poll", {}]]}]
    page = render_run_html(write_run(tmp_path, "pending", ops, None))
    bar = re.search(r'<rect class="op pending" data-index="0" x="([\d.]+)" y="[\d.]+" width="([\d.]+)"', page)
    assert bar, "the pending send has no bar"
    assert float(bar.group(1)) + float(bar.group(2)) == pytest.approx(1000 - 16, abs=0.2)  # the plot's right edge
    assert "op 0: process 0 send pending, no completion" in page


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=st.sampled_from(list("ab <>&\"'/=;") + ["\u00e9", "\u2028"]), max_size=300),
       cut=st.integers(min_value=0, max_value=300))
def test_no_injected_markup_survives_anywhere(tmp_path_factory, text, cut):
    # A tag hidden at any position of long user strings (values are cut at VALUE_CHARS) must never come out raw.
    hostile = text[:cut] + "<xss-tag onload=x>" + text[cut:]
    store = tmp_path_factory.mktemp("store")
    ops = [
        {"index": 0, "time": 0, "process": 0, "type": "invoke", "f": "send", "value": [["send", hostile, hostile]]},
        {"index": 1, "time": 10 ** 6, "process": 0, "type": "ok", "f": "send",
         "value": [["send", hostile, [0, hostile]]], "error": hostile},
        {"index": 2, "time": 2 * 10 ** 6, "process": "nemesis", "type": "info", "f": hostile,
         "value": {"package": hostile, "f": hostile}},
        {"index": 3, "time": 3 * 10 ** 6, "process": "nemesis", "type": "info", "f": hostile, "value": hostile},
    ]
    results = {"valid": False, "reason": hostile,
               "workload": {"valid": False, "delivery": hostile,
                            "anomalies": {hostile: [{"key": hostile, "value": hostile, "explanation": hostile,
                                                     "op_maps": ops[:2]}],
                                          "lost-write": [{"key": hostile, "value": hostile, "explanation": hostile,
                                                          "op_maps": ops[1:2]}]},
                            "stats": {hostile: hostile}},
               "harness_errors": [hostile]}
    run_dir = write_run(store, "x", ops, results)
    test = json.loads((run_dir / "test.json").read_text())
    test["name"] = hostile
    test["options"][hostile] = hostile
    (run_dir / "test.json").write_text(json.dumps(test))
    page = render_run_html(run_dir)
    assert "<xss-tag" not in page
    index_page = render_index(store, [(p, summarize_run(p)) for p in find_runs(store)])
    assert "<xss-tag" not in index_page


@pytest.mark.parametrize("results", [
    {"valid": False, "workload": {"valid": False, "promises": [{"id": 5, "status": None, "anomalies": "x"}],
                                  "anomalies": {"lost-write": "not a list",
                                                "x": [1, None, {"op_maps": "bad"}, {"op_maps": [{"time": "z"}]}]},
                                  "allowed": [], "stats": {"anomaly_counts": {"x": "many"},
                                                           "anomaly_summaries": {"x": 7}}}},
    {"valid": False, "workload": {"valid": False, "promises": "nope",
                                  "anomalies": {"G1a": [{"op_maps": [{"index": 11, "time": 10 ** 20}]}]}},
     "counts": {"total": "x"}, "delivery": "weird"},
])
def test_damaged_promises_and_witnesses_still_render(tmp_path, results):
    page = render_run_html(write_run(tmp_path, "damaged", _history_ops(), results))
    assert '<header id="verdict" class="verdict invalid">' in page
    assert 'class="anomaly bad"' in page and 'data-report-ready' in page
