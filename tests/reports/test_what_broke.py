"""The report answers what broke, when, and during which fault, first.

The page order, the promise table as results.json records it (and for old runs as the checker's own
function gives it), the most severe anomaly first, one sentence per anomaly with a few witnesses and
the rest folded, every witness with the faults around it, and the anomaly marks on the plots.
"""

from __future__ import annotations

import json
import re

from checkers.history import describe_op_counts, op_counts
from checkers.queue.delivery import judge_promises
from reports.page import render_run_html
from tests.reports.run_dirs import _history_ops, lost_write_run, write_run


def _results(run_dir):
    return json.loads((run_dir / "results.json").read_text())


def _save(run_dir, results):
    (run_dir / "results.json").write_text(json.dumps(results))


def _text(fragment: str) -> str:
    return re.sub(r"<[^>]+>", "", fragment)


def test_the_page_runs_verdict_promises_witnesses_plots_maps_then_parameters_nemesis_files(tmp_path):
    page = render_run_html(lost_write_run(tmp_path))
    order = ['<header id="verdict"', 'id="promise-lost"', 'id="anomaly-lost-write"', 'id="w-workload-lost-write-1"',
             'class="faults-at"', 'id="promise-reordered"', '<section id="timeline"', '<section id="latency"',
             '<section id="throughput"', '<section id="offsets"', '<section id="parameters"',
             '<section id="nemesis"', '<section id="files"']
    positions = [page.index(marker) for marker in order]
    assert positions == sorted(positions)
    # the parameters are folded: their tables sit inside a closed <details>
    params = page[page.index('<section id="parameters">'):page.index('<section id="nemesis">')]
    assert params.startswith('<section id="parameters"><details class="parameters"><summary>')
    assert '<table class="kv options">' in params and "<details open" not in params


def _hand_results(anomalies: dict, delivery: str = "exactly-once") -> dict:
    result = {"valid": False, "delivery": delivery, "anomalies": anomalies, "allowed": {},
              "stats": {"anomaly_counts": {n: len(w) for n, w in anomalies.items()}}}
    result["promises"] = judge_promises(result, delivery)
    return {"valid": False, "workload": result}


def _witness(op_index: int, text: str) -> dict:
    return {"key": 0, "explanation": text,
            "op_maps": [{"index": op_index, "time": 300 * 1_000_000, "process": 2, "type": "ok", "f": "send",
                         "value": [["send", 0, [1, 2]]]}]}


def test_the_most_severe_promise_and_anomaly_come_first(tmp_path):
    names = ["poll-skip", "duplicate", "inconsistent-offsets", "G1a", "unseen", "lost-write"]
    results = _hand_results({n: [_witness(11, f"a {n} witness")] for n in names})
    page = render_run_html(write_run(tmp_path, "severe", _history_ops(), results))
    promises = re.findall(r'<div class="promise broken with-anomalies" data-promise="([\w-]+)"', page)
    assert promises == ["lost", "aborted-visible", "duplicated", "reordered"]
    shown = re.findall(r'<div class="anomaly bad" id="anomaly-([\w-]+)"', page)
    assert shown == ["lost-write", "unseen", "G1a", "duplicate", "inconsistent-offsets", "poll-skip"]


def test_the_page_shows_the_promises_results_json_records_and_judges_nothing(tmp_path):
    run_dir = lost_write_run(tmp_path)
    results = _results(run_dir)
    lost = results["workload"]["promises"][0]
    assert lost["id"] == "lost" and lost["status"] == "broken"
    # as the checker records it when the final reads did not complete: lost is undecided, its anomalies stay
    lost.update(status="unknown", anomalies={}, reason="the final reads did not complete")
    _save(run_dir, results)
    page = render_run_html(run_dir)
    # the broken promise comes first; the undecided one, with its anomalies, after it
    assert page.index('data-promise="reordered"') < page.index('data-promise="lost"')
    block = page[page.index('data-promise="lost"'):page.index('<h3 class="other-promises">')]
    assert block.startswith('data-promise="lost" id="promise-lost"><h3><span class="status unknown">unknown</span> '
                            "nothing acknowledged is lost</h3>")
    assert "the final reads did not complete" in block and 'id="anomaly-lost-write"' in block
    assert "BROKEN" not in block


def test_an_old_run_without_promises_counts_or_delivery_gets_them_from_the_checker_and_the_history(tmp_path):
    run_dir = lost_write_run(tmp_path, delivery="at-least-once-idempotent")
    fresh = render_run_html(run_dir)
    results = _results(run_dir)
    for key in ("counts", "delivery"):
        del results[key]
    del results["workload"]["promises"]
    del results["workload"]["stats"]["anomaly_summaries"]
    _save(run_dir, results)
    page = render_run_html(run_dir)

    def statuses(p):
        return re.findall(r'class="promise ([\w-]+)(?: with-anomalies)?" data-promise="([\w-]+)"', p)

    assert statuses(page) == statuses(fresh)
    assert ("broken", "lost") in statuses(page) and ("held", "duplicated") in statuses(page)
    ops = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    assert f'<span class="counts">{describe_op_counts(op_counts(ops))}</span>' in page
    assert "delivery <b>at-least-once with an idempotent producer</b>" in page
    assert "exactly-once" not in page
    # without the checker's sentences, the count says what it counts: witnesses
    assert '<span class="anomaly-name">lost-write</span>: <span class="summary">1 witness</span>' in page


def test_the_header_shows_the_counts_and_delivery_results_json_records(tmp_path):
    run_dir = lost_write_run(tmp_path)
    results = _results(run_dir)
    results["counts"] = {"total": 579, "ok": 527, "fail": 1, "info": 51, "pending": 0}
    results["delivery"]["label"] = "a label only results.json has"
    _save(run_dir, results)
    page = render_run_html(run_dir)
    header = page[page.index('<header id="verdict"'):page.index("</header>")]
    assert "579 operations: 527 ok, 1 fail, 51 info" in header
    assert "delivery <b>a label only results.json has</b>" in header
    assert "Promises under <b>a label only results.json has</b>" in page


def test_a_few_witnesses_show_and_the_rest_fold(tmp_path):
    witnesses = [_witness(11, f"witness number {i}") for i in range(25)]
    results = _hand_results({"lost-write": witnesses})
    results["workload"]["stats"]["anomaly_counts"]["lost-write"] = 30
    results["workload"]["stats"]["anomaly_summaries"] = {"lost-write": "30 acknowledged messages lost"}
    page = render_run_html(write_run(tmp_path, "many", _history_ops(), results))
    block = page[page.index('id="anomaly-lost-write"'):]
    block = block[:block.index('<h3 class="other-promises">')]
    assert '<span class="summary">30 acknowledged messages lost</span>' in block
    shown, folded = block.split('<details class="more-witnesses">')
    assert shown.count('<div class="witness"') == 3
    # 25 kept in results.json of 30 counted: 5 more there, and 5 the checker counted without keeping them
    assert folded.startswith("<summary>17 more witness(es), and 5 more witness(es) in results.json, 5 more counted "
                             "but not kept (`logquake check --max-witnesses N` on the run's history keeps more)"
                             "</summary>")
    assert folded.count('<div class="witness"') == 17
    assert "witness number 19" in folded and "witness number 20" not in page
    # every stored witness is marked on the plots; those the page does not show link to their anomaly
    timeline = page[page.index('<svg class="plot timeline"'):]
    timeline = timeline[:timeline.index("</svg>")]
    hrefs = re.findall(r'<a class="anomaly-mark" href="#([\w-]+)"', timeline)
    assert hrefs == [f"w-workload-lost-write-{i}" for i in range(1, 21)] + ["anomaly-lost-write"] * 5
    assert "lost-write, witness 21: ops 11, 0.25–0.30 s (not shown on this page: see results.json)" in timeline


def test_each_witness_names_the_faults_around_it(tmp_path):
    page = render_run_html(lost_write_run(tmp_path))
    skip = page[page.index('id="w-workload-int-poll-skip-1"'):]
    skip = skip[:skip.index("</p>", skip.index('class="faults-at"'))]
    # op 19 polled at 0.52–0.56 s: the kill ended at 0.42 s and the partition at 0.51 s, just before it
    assert _text(skip[skip.index('class="faults-at"'):]).endswith(
        "Ended within 5 s before it began: kill n2 (the leader), 0.10–0.42 s (0.10 s before); partition (halves, a "
        "majority): n1 drops traffic from n2, n3, 0.20–0.51 s (0.01 s before).")
    # the full op table names the faults in effect during each op
    assert "<td>kill n2 (the leader), 0.10–0.42 s; partition (halves, a majority): n1 drops traffic from n2, n3, " \
           "0.20–0.51 s</td>" in page


def test_faults_that_began_after_a_witness_s_first_op_are_named_apart(tmp_path):
    ops = _history_ops()
    # op 1 acknowledged value 1 at 5 ms, before any fault; op 19 read it at 0.56 s, after both faults began
    witness = {"key": 0, "explanation": "a witness from before the faults", "op_maps": [ops[1], ops[19]]}
    results = _hand_results({"duplicate": [witness]})
    page = render_run_html(write_run(tmp_path, "later", ops, results))
    block = page[page.index('id="w-workload-duplicate-1"'):]
    block = block[:block.index("</div>")]
    assert _text(re.search(r'<p class="faults-at">(.*?)</p>', block).group(1)) == (
        "At its first op, op 1 (0.00–0.01 s): No fault was in effect during it, nor in the 5 s before it.")
    assert _text(re.search(r'<p class="faults-later">(.*?)</p>', block).group(1)) == (
        "Began after it, before its last op ended at 0.56 s: kill n2 (the leader) at 0.10 s; partition (halves, "
        "a majority): n1 drops traffic from n2, n3 at 0.20 s.")


def test_anomaly_marks_on_every_time_plot_name_the_anomaly_and_link_to_the_witness(tmp_path):
    page = render_run_html(lost_write_run(tmp_path))
    for plot in ("timeline", "latency", "throughput"):
        svg = page[page.index(f'<svg class="plot {plot}"'):]
        svg = svg[:svg.index("</svg>")]
        marks = re.findall(r'<a class="anomaly-mark" href="#([\w-]+)" data-anomaly="([\w-]+)" data-t="([\d.]+)">'
                           r"<title>([^<]*)</title>", svg)
        assert ("w-workload-lost-write-1", "lost-write", "0.250000",
                "lost-write, witness 1: ops 11, 19, 0.25–0.56 s (click to read it)") in marks
        assert {m[1] for m in marks} == {"lost-write", "unseen", "int-poll-skip"}
        assert '<path class="mark-guide"' in svg
        for target, _, _, _ in marks:
            assert f'id="{target}"' in page


def test_allowed_anomalies_are_not_marked(tmp_path):
    page = render_run_html(lost_write_run(tmp_path, delivery="at-most-once"))
    assert 'id="allowed-lost-write"' in page
    assert 'data-anomaly="lost-write" data-t=' not in page
    assert 'data-anomaly="int-poll-skip" data-t=' in page
