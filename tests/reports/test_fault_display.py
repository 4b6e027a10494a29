"""How the report shows faults: sentences instead of raw JSON, one time base, fixed lanes, colours that
stay apart, overlaps that never blend, and the offset maps' axis and stripes."""

from __future__ import annotations

import itertools
import re

from reports.fault_words import describe_grudge, describe_nemesis
from reports.faults import explain_fault_context, fault_context
from reports.page import render_run_html
from reports.plots import KNOWN_FAULT_KINDS, OP_COLOURS, OTHER_FAULT, lane_kinds
from reports.run_data import FaultWindow, load_run
from tests.reports.run_dirs import checked_results, lost_write_run, write_run

MS = 1_000_000


def test_nemesis_ops_in_words_name_the_nodes_hit():
    assert describe_nemesis("kill", {"package": "kill", "target": "leader", "pick": 827710745},
                            {"killed": ["n2"]}) == "kill n2 (the leader)"
    assert describe_nemesis("start", {"package": "kill", "target": "leader"}, {"started": ["n2"]}) == "restart n2"
    assert describe_nemesis("pause", {"package": "pause", "target": "controller"},
                            {"paused": ["n3"]}) == "pause n3 (the controller)"
    assert describe_nemesis("resume", {"package": "pause"}, {"resumed": []}) == "resume: nothing to undo"
    assert describe_nemesis("start-partition", {"package": "partition", "shape": "isolate-leader"},
                            {"grudge": {}}) == "partition (isolate-leader): nothing cut"
    assert describe_nemesis("stop-partition", {"package": "partition"}, {"healed": True}) == "heal the network"
    assert describe_nemesis("heal", None, {"partition": {"healed": True}, "kill": {"started": []},
                                           "pause": {"resumed": ["n3"]}}) == \
        "heal everything: heal the network; resume n3"
    assert describe_nemesis("kill", {"package": "kill", "target": "one"}, {"error": "TimeoutError: no metadata"}) == \
        "kill (one node) failed: TimeoutError: no metadata"
    assert describe_nemesis("stop-disk", {"package": "disk", "shape": "lose-unfsynced"},
                            {"fault": "lose-unfsynced", "killed": ["n1", "n2"], "started": ["n1", "n2"],
                             "unfsynced_bytes_lost": {"n1": 4000, "n2": "unknown: timeout"}}) == \
        "crash n1, n2 with lazy disks, losing 4000 un-fsynced bytes, then restart them"
    assert describe_nemesis("stop-disk", {"package": "disk", "shape": "lose-unfsynced"},
                            {"fault": "lose-unfsynced", "killed": ["n1"], "started": ["n1"],
                             "unfsynced_bytes_held": {"n1": 5000}, "unfsynced_bytes_lost": {"n1": 1200},
                             "torn_writes": {"n1": 1}}) == \
        "crash n1 with lazy disks, losing 1200 un-fsynced bytes and tearing 1 write(s), then restart them"
    assert describe_nemesis("start-clock", {"package": "clock", "shape": "skew", "target": "one"},
                            {"fault": "skew", "nodes": ["n2"], "offset_s": -12.5, "clocks": "wall"}) == \
        "skew the wall clock of n2 by -12.5 s"
    assert describe_nemesis("start-packet", {"package": "packet", "shape": "loss"},
                            {"fault": "loss", "latency_ms": 10.0, "loss": 0.2}) == \
        "packet loss: 10 ms latency, 20% loss on every link"
    assert describe_nemesis("pause", {"package": "pause", "target": "all"}, None) == \
        "pause (every node): no completion recorded"


def test_grudges_read_as_components_or_as_who_drops_whom():
    assert describe_nemesis("start-partition", {"package": "partition", "shape": "bridge"},
                            {"grudge": {"n1": ["n3"], "n3": ["n1"]}}) == \
        "partition (bridge): n1 | n3 (the other nodes hear both sides)"
    assert describe_grudge({"n1": ["n2", "n3"], "n2": ["n1"], "n3": ["n1"]}) == "n1 | n2, n3"
    assert describe_grudge({"n1": ["n2", "n3"]}) == "n1 drops traffic from n2, n3"
    assert describe_grudge({"n3": ["client"]}) == "n3 cut off from the clients"
    assert describe_grudge({"n1": ["n3"], "n2": ["n1"], "n3": ["n2"]}) == \
        "n1 drops traffic from n3; n2 drops traffic from n1; n3 drops traffic from n2"


def _w(kind, start, end, detail=None):
    return FaultWindow(kind, start, end, kind, detail or f"{kind} n1")


def test_fault_context_tells_during_from_just_before_and_says_when_there_was_none():
    windows = [_w("kill", 1.0, 4.0), _w("partition", 3.0, 9.0), _w("pause", 20.0, 21.0)]
    assert explain_fault_context(fault_context(windows, 5.0, 6.0)) == (
        "In effect during it: partition n1, 3.00–9.00 s. "
        "Ended within 5 s before it began: kill n1, 1.00–4.00 s (1.00 s before).")
    assert explain_fault_context(fault_context(windows, 16.0, 17.0)) == (
        "No fault was in effect during it, nor in the 5 s before it; the last one ended 7.00 s before: "
        "partition n1, 3.00–9.00 s.")
    assert explain_fault_context(fault_context(windows, 0.0, 0.5)) == \
        "No fault was in effect during it, nor in the 5 s before it."
    # a span touching a window's edge is during it
    assert [w.kind for w in fault_context(windows, 21.0, 30.0).during] == ["pause"]


def _two_fault_ops(first: str, second: str) -> list[dict]:
    """`first` starts at 0.1 s, `second` at 0.2 s; both stop at 0.5 s; a few sends and a poll around them."""
    words = {"kill": ("kill", "start", {"killed": ["n2"]}, {"started": ["n2"]}),
             "partition": ("start-partition", "stop-partition", {"grudge": {"n1": ["n2"], "n2": ["n1"]}},
                           {"healed": True}),
             "pause": ("pause", "resume", {"paused": ["n3"]}, {"resumed": ["n3"]})}
    ops: list[dict] = []

    def op(t_ms, process, type_, f, value):
        ops.append({"index": len(ops), "time": int(t_ms * MS), "process": process, "type": type_, "f": f,
                    "value": value})

    def nemesis(t_ms, kind, undo):
        start_f, stop_f, done, undone = words[kind]
        f = stop_f if undo else start_f
        op(t_ms, "nemesis", "info", f, {"package": kind, "f": f, "target": "one", "pick": 7})
        op(t_ms + 1, "nemesis", "info", f, undone if undo else done)

    op(0, 0, "invoke", "send", [["send", 0, 1]])
    op(5, 0, "ok", "send", [["send", 0, [0, 1]]])
    nemesis(100, first, False)
    nemesis(200, second, False)
    op(300, 1, "invoke", "send", [["send", 0, 2]])
    op(310, 1, "ok", "send", [["send", 0, [1, 2]]])
    nemesis(500, first, True)
    nemesis(505, second, True)
    op(600, 2, "invoke", "poll", [["poll"]])
    op(610, 2, "ok", "poll", [["poll", {"0": [[0, 1], [1, 2]]}]])
    return ops


def _lane_order(page: str, plot: str) -> list[str]:
    svg = page[page.index(f'<svg class="plot {plot}"'):]
    svg = svg[:svg.index("</svg>")]
    return [m for m in re.findall(r'<text class="row-label" [^>]*>([a-z]+)</text>', svg) if not m.isdigit()]


def test_fault_lanes_keep_one_order_whichever_fault_came_first(tmp_path):
    pages = []
    for first, second in (("kill", "partition"), ("partition", "kill")):
        ops = _two_fault_ops(first, second)
        run_dir = write_run(tmp_path / first, "lanes", ops, checked_results(ops, "at-least-once"), "at-least-once")
        assert [w.kind for w in load_run(run_dir).windows] == [first, second]
        pages.append(render_run_html(run_dir))
    for page in pages:
        for plot in ("timeline", "latency", "throughput"):
            assert _lane_order(page, plot) == ["partition", "kill"]
    windows = [_w("zeta", 0, 1), _w("packet", 0, 1), _w("kill", 0, 1), _w("alpha", 0, 1), _w("partition", 0, 1)]
    assert lane_kinds(windows) == ["partition", "kill", "packet", "alpha", "zeta"]


def test_overlapping_faults_never_blend_and_the_legend_has_every_colour_drawn(tmp_path):
    ops = _two_fault_ops("kill", "pause")  # 0.1–0.5 s and 0.2–0.5 s overlap
    page = render_run_html(write_run(tmp_path, "overlap", ops, checked_results(ops, "at-least-once"),
                                     "at-least-once"))
    for plot in ("timeline", "latency", "throughput"):
        svg = page[page.index(f'<svg class="plot {plot}"'):]
        svg = svg[:svg.index("</svg>")]
        # one neutral shade over the union of the windows, and solid lanes of their own
        assert len(re.findall(r'<rect class="shade"', svg)) == 1
        assert "<title>faults in effect 0.10–0.51 s</title>" in svg
        assert 'class="lane fk-kill"' in svg and 'class="lane fk-pause"' in svg
    assert "opacity" not in re.search(r"svg rect\.lane\{[^}]*\}", page).group(0).replace("opacity:1", "")
    assert "rect.band" not in page and "rect.shade{fill:var(--shade)}" in page
    legend = page[page.index('<div class="legend faults">'):]
    legend = legend[:legend.index("</div>")]
    for css in set(re.findall(r'class="lane (fk-[a-z]+)"', page)):
        assert f'<span class="swatch {css}">' in legend
    assert '<span class="swatch shade">' in legend


def _lab(colour: str) -> tuple[float, float, float]:
    """sRGB hex -> CIELAB (D65)."""
    rgb = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    r, g, b = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
    xyz = ((0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047, 0.2126 * r + 0.7152 * g + 0.0722 * b,
           (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883)
    fx, fy, fz = [t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116 for t in xyz]
    return 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)


def test_fault_colours_stay_apart_from_each_other_and_from_the_op_colours():
    faults = {k.kind: k.colour for k in (*KNOWN_FAULT_KINDS, OTHER_FAULT)}
    everything = {**OP_COLOURS, **faults}
    for a, b in itertools.combinations(everything, 2):
        if a in faults or b in faults:
            distance = sum((p - q) ** 2 for p, q in zip(_lab(everything[a]), _lab(everything[b]))) ** 0.5
            assert distance >= 25, f"{a} {everything[a]} and {b} {everything[b]} are only {distance:.1f} apart"
    # pause was #0ca678, 24 from ok's green: the kind of closeness this guards against
    assert sum((p - q) ** 2 for p, q in zip(_lab("#0ca678"), _lab(OP_COLOURS["ok"]))) ** 0.5 < 25


def test_the_nemesis_table_speaks_in_sentences_in_seconds_since_the_start(tmp_path):
    page = render_run_html(lost_write_run(tmp_path))
    table = page[page.index('<section id="nemesis">'):]
    table = table[:table.index("</section>")]
    assert "pick" not in table and "at_s" not in table and "{" not in table
    rows = [_text_cells(r) for r in re.findall(r"<tr>(.*?)</tr>", table)[1:]]
    assert rows == [["0.10", "0.12", "kill", "kill n2 (the leader)"],
                    ["0.20", "0.21", "partition", "partition (halves, a majority): n1 drops traffic from n2, n3"],
                    ["0.40", "0.42", "kill", "restart n2"],
                    ["0.50", "0.51", "partition", "heal the network"],
                    ["0.60", "0.61", "heal", "heal everything: nothing was left to undo"]]


def _text_cells(row: str) -> list[str]:
    return [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td>(.*?)</td>", row)]


def test_offset_maps_have_an_axis_and_stripes_for_every_anomaly_at_an_offset(tmp_path):
    page = render_run_html(lost_write_run(tmp_path))
    svg = page[page.index('<svg class="offset-map" data-key="0"'):]
    svg = svg[:svg.index("</svg>")]
    assert '<text class="axis-label" x="52" y="9" text-anchor="end">offset</text>' in svg
    assert [t for t in re.findall(r'<text class="tick"[^>]*>([^<]*)</text>', svg)] == \
        ["+0", "+10", "+20", "+30", "+40", "+50", "+60", "+70", "+80", "+90", "0"]
    # offset 1 of key 0: lost, skipped by a poll and never read: three stripes, worst on top
    stripes = re.findall(r'<rect class="om-([\w-]+)" x="67" y="([\d.]+)"', svg)
    assert stripes == [("lost", "13"), ("reordered", "16"), ("unseen", "19")]


def test_a_long_key_labels_each_row_with_its_first_offset(tmp_path):
    ops = []
    for i in range(250):
        ops.append({"index": len(ops), "time": i * MS, "process": 0, "type": "invoke", "f": "send",
                    "value": [["send", 0, i]]})
        ops.append({"index": len(ops), "time": i * MS + 500_000, "process": 0, "type": "ok", "f": "send",
                    "value": [["send", 0, [i, i]]]})
    page = render_run_html(write_run(tmp_path, "long", ops, None))
    svg = page[page.index('<svg class="offset-map" data-key="0"'):]
    svg = svg[:svg.index("</svg>")]
    rows = re.findall(r'<text class="tick" x="52" y="[\d.]+" text-anchor="end">([^<]*)</text>', svg)
    assert rows == ["0", "100", "200"]


def test_the_report_knows_exactly_the_fault_kinds_the_nemeses_have_and_when_each_opens_and_closes():
    # reports may not import nemeses (they render histories of any harness), so the two lists are
    # checked against each other here: one set of names, one order, and the same opening/undo rule
    import nemeses
    from nemeses.core import FaultEvent
    from reports.plots import KNOWN_FAULT_KINDS
    from checkers.faults import fault_kind, is_undo

    assert [k.kind for k in KNOWN_FAULT_KINDS] == list(nemeses.PACKAGES)
    for name, package in nemeses.PACKAGES.items():
        for f, opens in ((package.start_f, True), (package.stop_f, False)):
            event = FaultEvent(1.0, name, f)
            assert event.opens is opens and is_undo(f) is not opens, (name, f)
            assert fault_kind(f, event.to_dict()) == name
