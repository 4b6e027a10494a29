"""The run report: one self-contained HTML page per run (`report.html`).

It answers, first, what broke, when, and during which fault. Top to bottom:
the verdict with the run's delivery (in words) and its operation counts (as
results.json counted them); the broken promises, most severe first, each
with its anomalies (one sentence each, a few witnesses shown, the rest
folded), every witness placed in time and named with the faults in effect
then or just before (`reports.anomalies`); then the promises that held or
are not promised; the problems met reading the run (missing or damaged
files, harness and checker errors); notes on what the faults did; the
timeline, latency and throughput plots, which mark every witness in an
anomaly lane above the fault lanes; per-key offset maps with an offset axis; the test's parameters
and the checker's statistics, folded; the nemesis operations in words; links
to the raw files.

Invariants
- Renders, never judges: every verdict, promise status and anomaly comes
  from results.json (for runs stored before results.json recorded the
  promise table, `checkers.queue.delivery.judge_promises` gives it: the
  checker's own function, not a second judgement).
- Self-contained and offline: inline CSS, inline SVG, one small inline
  script; no network fetches, no external fonts.
- Escaped: every string from the run goes through `html.escape`.
- Always renders: missing or damaged files, runs without a verdict and empty
  histories give a page that says what is missing.
- Bounded: plots and maps cap their element counts (see `reports.plots`,
  `reports.offsets`), at most `WITNESSES_SHOWN` witnesses per anomaly and
  `NEMESIS_ROWS_SHOWN` nemesis rows, values cut at `VALUE_CHARS` characters.
- One time base: every time on the page is seconds since the test started,
  as the history records it.

Thread-safety: pure functions of the run directory's contents.

Sources: Jepsen's store layout and report files (jepsen.store,
jepsen.checker.timeline, jepsen.checker.perf), jepsen.tests.kafka's anomaly
names.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

from checkers.history import describe_op_counts
from reports.anomalies import VALUE_CHARS, WITNESSES_SHOWN, compact, cut, marks, promises_html, witnesses
from reports.fault_words import describe_nemesis
from reports.faults import fault_notes, processor_faults
from reports.node_errors import node_errors
from reports.offsets import OFFSET_CSS, offset_maps_html
from reports.plots import (ANOMALY_COLOUR, FAULT_SHADE, KNOWN_FAULT_KINDS, OP_COLOURS, OTHER_FAULT, Mark,
                           fault_class, lane_kinds, latency_svg, throughput_svg, timeline_svg)
from reports.run_data import RAW_FILES, RunData, fault_kind, load_run

__all__ = ["NEMESIS_ROWS_SHOWN", "VALUE_CHARS", "WITNESSES_SHOWN", "render_run", "render_run_html", "verdict_word"]

NEMESIS_ROWS_SHOWN = 400
NODE_ERRORS_SHOWN = 30  # distinct error lines of the nodes' logs shown (reports.node_errors)


def _e(x: Any) -> str:
    return escape(str(x), quote=True)


def verdict_word(valid: Any) -> tuple[str, str]:
    """(css class, word) for a validity: True, False or anything else (unknown)."""
    if valid is True:
        return "valid", "VALID"
    if valid is False:
        return "invalid", "INVALID"
    return "unknown", "UNKNOWN"


def render_run(run_dir: str | os.PathLike[str]) -> Path:
    """Write `run_dir/report.html` and return its path."""
    run_dir = Path(run_dir)
    html_text = render_run_html(run_dir)
    path = run_dir / "report.html"
    tmp = path.with_name("report.html.tmp")
    tmp.write_text(html_text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def render_run_html(run_dir: str | os.PathLike[str]) -> str:
    """The report of one run as a string (`logquake serve` uses it for runs without report.html)."""
    run = load_run(run_dir)
    css, word = verdict_word(run.valid)
    title = f"{run.name} · {run.run_dir.name} · {word}"
    found = witnesses(run)
    plot_marks = marks(found)
    legend = _op_legend() + _fault_legend(run, plot_marks)
    body = [
        _header(run, css, word),
        promises_html(run, found) or _no_promises(run),
        _problems(run),
        _fault_notes(run),
        _node_errors(run),
        _section("timeline", "Timeline of operations", legend + timeline_svg(run, plot_marks)),
        _section("latency", "Latency", legend + latency_svg(run, plot_marks)),
        _section("throughput", "Throughput", legend + throughput_svg(run, plot_marks)),
        _section("offsets", "Offset maps per key", offset_maps_html(run)),
        _parameters(run),
        _nemesis(run),
        _processor_faults(run),
        _files(run),
    ]
    generated = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{_e(title)}</title><style>{CSS}</style><script>{ERROR_CATCHER_JS}</script></head>"
        f"<body class=\"verdict-{css}\">"
        "<pre id=\"js-errors\" class=\"js-errors\" hidden></pre>"
        + "".join(body)
        + f"<footer>logquake report, generated {_e(generated)}. Reports render results.json; "
        "they judge nothing themselves.</footer>"
        f"<script>{REPORT_JS}</script></body></html>\n"
    )


# ----- sections ------------------------------------------------------------------------------------------


def _section(anchor: str, heading: str, content: str) -> str:
    return f'<section id="{_e(anchor)}"><h2>{_e(heading)}</h2>{content}</section>'


def _header(run: RunData, css: str, word: str) -> str:
    extra = ""
    results = run.results if isinstance(run.results, dict) else {}
    if run.results is None:
        extra = '<p class="verdict-detail">No results.json: the run is still going, or it stopped before checking.</p>'
    elif run.valid not in (True, False):
        reason = results.get("reason")
        message = results.get("message")
        parts = []
        if reason:
            parts.append(f'<p class="verdict-detail">No verdict: the test was <b>{_e(reason)}</b>.</p>')
        else:
            parts.append('<p class="verdict-detail">The checkers could not decide.</p>')
        if message:
            parts.append(f'<pre class="message">{_e(message)}</pre>')
        extra = "".join(parts)
    label = run.delivery_label
    mode = f' · delivery <b>{_e(label)}</b>' if label else ""
    counts = run.counts
    nav = "".join(f'<a href="#{a}">{_e(t)}</a>' for a, t in (
        ("promises", "promises and anomalies"), ("timeline", "timeline"), ("latency", "latency"),
        ("throughput", "throughput"), ("offsets", "offset maps"), ("parameters", "parameters"),
        ("nemesis", "nemesis"), ("files", "raw files")))
    return (
        f'<header id="verdict" class="verdict {css}"><div class="verdict-word" data-valid="{_e(css)}">{word}</div>'
        f'<div class="verdict-text"><h1>{_e(run.name)}</h1><p class="run-id">run {_e(run.run_dir.name)}{mode}'
        f' · <span class="counts">{_e(describe_op_counts(counts))}</span> · {run.duration_s:.1f} s</p>{extra}'
        f'</div></header><nav>{nav}</nav>'
    )


def _no_promises(run: RunData) -> str:
    if run.results is None:
        reason = "no results.json"
    elif run.checker_results():
        reason = "no checker reported anomalies or promises (see Problems below)"
    else:
        reason = "no checker results in results.json"
    return _section("promises", "Promises and anomalies", f'<p class="empty">No anomalies to show: {_e(reason)}.</p>')


def _problems(run: RunData) -> str:
    items = [_e(p) for p in run.problems]
    results = run.results if isinstance(run.results, dict) else {}
    for error in results.get("harness_errors") or ():
        items.append("harness: " + _e(error))
    if results.get("history_error"):
        items.append("history: " + _e(results["history_error"]))
    for name, result in run.checker_results():
        if result.get("error"):
            items.append(f'checker {_e(name)} failed, so its verdict is unknown:<pre class="message">'
                         f'{_e(result["error"])}</pre>')
    if not items:
        return ""
    return _section("problems", "Problems", "<ul class=\"problems\">" + "".join(f"<li>{i}</li>" for i in items)
                    + "</ul>")


def _node_errors(run: RunData) -> str:
    """The nodes' ERROR lines (reports.node_errors): what a broker itself said went wrong, beside the verdict."""
    entries = node_errors(run.run_dir, limit=NODE_ERRORS_SHOWN + 1)
    if not entries:
        return ""
    rows = "".join(f'<tr><td>{_e(e["node"])}</td><td>{_e(e["first"])}</td><td>{e["count"]}</td>'
                   f'<td class="message">{_e(e["message"])}</td></tr>' for e in entries[:NODE_ERRORS_SHOWN])
    more = (f'<p class="more">More error lines than these {NODE_ERRORS_SHOWN}: see the node logs under Raw '
            'files.</p>' if len(entries) > NODE_ERRORS_SHOWN else "")
    return _section("node-errors", "What the brokers logged as errors",
                    '<table class="ops node-errors"><thead><tr><th>node</th><th>first logged</th><th>times</th>'
                    f'<th>line (timestamp cut)</th></tr></thead><tbody>{rows}</tbody></table>{more}')


def _fault_notes(run: RunData) -> str:
    notes = fault_notes(run)
    if not notes:
        return ""
    return _section("faults", "What the faults did", "".join(f'<p class="fault-note">{_e(n)}</p>' for n in notes))


def _kv_table(data: Mapping[str, Any], css: str) -> str:
    rows = []
    for k, v in data.items():
        shown = v if isinstance(v, str) else compact(v)
        rows.append(f"<tr><th>{_e(k)}</th><td>{cut(shown)}</td></tr>")
    return f'<table class="kv {css}">{"".join(rows)}</table>'


def _parameters(run: RunData) -> str:
    parts = []
    if not run.test:
        parts.append('<p class="empty">test.json is missing or unreadable.</p>')
    if run.options:
        parts.append('<div class="kv-block"><h3>options</h3>' + _kv_table(run.options, "options") + "</div>")
    if run.workload:
        parts.append('<div class="kv-block"><h3>workload</h3>' + _kv_table(run.workload, "workload") + "</div>")
    versions = run.test.get("versions")
    if isinstance(versions, Mapping):
        parts.append('<div class="kv-block"><h3>versions</h3>' + _kv_table(versions, "versions") + "</div>")
    rest = {k: v for k, v in run.test.items() if k not in ("options", "workload", "versions", "name")}
    if rest:
        parts.append('<div class="kv-block"><h3>other</h3>' + _kv_table(rest, "other") + "</div>")
    for name, result in run.checker_results():
        if isinstance(result.get("stats"), Mapping):
            parts.append(f'<div class="kv-block"><h3>checker {_e(name)} statistics</h3>'
                         + _kv_table(result["stats"], "stats") + "</div>")
    seed = run.options.get("seed")
    summary = "Test parameters, versions and checker statistics" + (f" (seed {_e(seed)})" if seed is not None else "")
    return (f'<section id="parameters"><details class="parameters"><summary><h2>{summary}</h2></summary>'
            f'<div class="kv-blocks">{"".join(parts)}</div></details></section>')


def _op_legend() -> str:
    items = [("ok", "ok: it happened"), ("fail", "fail: it certainly did not happen"),
             ("info", "info: unknown (timeout, crash)"), ("pending", "no completion")]
    return '<div class="legend">operations: ' + "".join(
        f'<span class="legend-item"><span class="swatch op-{k}"></span>{_e(t)}</span>' for k, t in items) + "</div>"


def _fault_legend(run: RunData, plot_marks: list[Mark]) -> str:
    present = set(lane_kinds(run.windows))
    items = []
    for kind in KNOWN_FAULT_KINDS:
        here = kind.kind in present
        items.append(f'<span class="legend-item{"" if here else " absent"}">'
                     f'<span class="swatch {fault_class(kind.kind)}">'
                     f'</span>{_e(kind.kind)}: {_e(kind.words)}{"" if here else " (none)"}</span>')
    unknown = sorted(present - {k.kind for k in KNOWN_FAULT_KINDS})
    if unknown:
        items.append(f'<span class="legend-item"><span class="swatch fk-other"></span>{_e(", ".join(unknown))}: '
                     f'{_e(OTHER_FAULT.words)}</span>')
    items.append('<span class="legend-item"><span class="swatch shade"></span>shaded: at least one fault in effect '
                 '(the lanes say which)</span>')
    if plot_marks:
        items.append('<span class="legend-item"><span class="swatch mark"></span>anomaly witness, from its first op '
                     'to its last (hover: which; click: read it)</span>')
    return '<div class="legend faults">faults: ' + "".join(items) + "</div>"


def _nemesis(run: RunData) -> str:
    if not run.nemesis_pairs:
        note = " (schedule.json lists what was planned)" if run.schedule else ""
        return _section("nemesis", "Nemesis", f'<p class="empty">No nemesis operations in the history{note}.</p>')
    rows = []
    for pair in run.nemesis_pairs[:NEMESIS_ROWS_SHOWN]:
        f = str(pair.invoke.get("f"))
        scheduled = pair.invoke.get("value")
        done = pair.complete.get("value") if pair.complete is not None else None
        kind = "heal" if f == "heal" else fault_kind(f, scheduled)
        swatch = "" if f == "heal" else f'<span class="swatch {fault_class(kind)}"></span>'
        rows.append(f'<tr><td>{pair.start_s:.2f}</td><td>{"" if pair.end_s is None else f"{pair.end_s:.2f}"}</td>'
                    f'<td>{swatch}{_e(kind)}</td><td>{_e(describe_nemesis(f, scheduled, done))}</td></tr>')
    more = len(run.nemesis_pairs) - NEMESIS_ROWS_SHOWN
    note = f'<p class="more">{more} more nemesis operation(s): see history.jsonl.</p>' if more > 0 else ""
    table = ('<p class="plot-note">Times are seconds since the test started, as on the plots.</p>'
             '<table class="ops nemesis"><thead><tr><th>began (s)</th><th>done (s)</th><th>fault</th>'
             f'<th>what was done</th></tr></thead><tbody>{"".join(rows)}</tbody></table>{note}')
    return _section("nemesis", "Nemesis", table)


def _processor_faults(run: RunData) -> str:
    """The pipeline's faults on its own processors (none for other workloads: no section)."""
    rows = processor_faults(run)
    if not rows:
        return ""
    counts = next((r["stats"]["processor_faults"] for _, r in run.checker_results()
                   if isinstance(r.get("stats"), Mapping) and isinstance(r["stats"].get("processor_faults"), Mapping)),
                  None)
    summary = ("<p>Counted by the checker: " + _e(", ".join(f"{k} {v}" for k, v in counts.items())) + ".</p>"
               if counts else "")
    trs = "".join(f'<tr><td>{r["at_s"]:.2f}</td><td>{_e(r["process"])}</td><td>{_e(r["fault"])}</td>'
                  f'<td>{_e(r["outcome"])}</td><td>{cut(compact(r["error"])) if r["error"] else ""}</td></tr>'
                  for r in rows[:NEMESIS_ROWS_SHOWN])
    more = len(rows) - NEMESIS_ROWS_SHOWN
    note = f'<p class="more">{more} more processor fault(s): see history.jsonl.</p>' if more > 0 else ""
    table = (summary + '<table class="ops processor-faults"><thead><tr><th>began (s)</th><th>process</th>'
             f'<th>what was done to the processor</th><th>its op ended</th><th>error</th></tr></thead>'
             f'<tbody>{trs}</tbody></table>{note}')
    return _section("processor-faults", "Processor faults", table)


def _files(run: RunData) -> str:
    items = []
    for name in RAW_FILES:
        path = run.run_dir / name
        if path.is_file():
            items.append(f'<li><a href="{_e(name)}">{_e(name)}</a> <span class="size">{_size(path)}</span></li>')
        elif name not in ("results.edn",):
            items.append(f'<li class="missing">{_e(name)} (missing)</li>')
    nodes_dir = run.run_dir / "nodes"
    node_files = sorted(p for p in nodes_dir.rglob("*") if p.is_file()) if nodes_dir.is_dir() else []
    for path in node_files[:500]:
        rel = path.relative_to(run.run_dir).as_posix()
        href = "/".join(_url_part(part) for part in rel.split("/"))
        items.append(f'<li><a href="{_e(href)}">{_e(rel)}</a> <span class="size">{_size(path)}</span></li>')
    if not node_files:
        items.append('<li class="missing">nodes/ (no node logs collected)</li>')
    return _section("files", "Raw files", '<ul class="files">' + "".join(items) + "</ul>")


def _url_part(part: str) -> str:
    return quote(part, safe="")


def _size(path: Path) -> str:
    try:
        n = path.stat().st_size
    except OSError:
        return ""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


# ----- style and script ----------------------------------------------------------------------------------

def _colour_css() -> str:
    """The colour rules, built from the one list of op colours and fault kinds in reports.plots."""
    kinds = (*KNOWN_FAULT_KINDS, OTHER_FAULT)
    variables = "".join(f"--{k}:{c};" for k, c in OP_COLOURS.items())
    variables += "".join(f"--{k.kind}:{k.colour};" for k in kinds)
    rules = [":root{" + variables + f"--shade:{FAULT_SHADE};--mark:{ANOMALY_COLOUR}" + "}"]
    for k in kinds:
        rules.append(f"svg .fk-{k.kind}{{fill:var(--{k.kind})}}.swatch.fk-{k.kind}{{background:var(--{k.kind})}}")
    for k in OP_COLOURS:
        rules.append(f".swatch.op-{k}{{background:var(--{k})}}svg rect.op.{k}{{fill:var(--{k})}}"
                     f"svg path.op-path.{k}{{stroke:var(--{k})}}")
    return "\n".join(rules) + "\n"


CSS = _colour_css() + """
:root{--valid:#2b8a3e;--invalid:#c92a2a;--unknown:#e67700;--ink:#212529;--muted:#6c757d}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--ink);
margin:0 auto;max-width:1200px;padding:0 16px 40px}
h1{margin:0;font-size:22px}h2{font-size:18px;border-bottom:1px solid #dee2e6;padding-bottom:4px;margin-top:24px}
h3{font-size:15px;margin:14px 0 6px}h4{margin:10px 0 4px;font-size:14px;font-weight:600}
a{color:#1864ab}
.verdict{display:flex;gap:20px;align-items:center;padding:10px 20px;margin-top:12px;border-radius:8px;color:#fff}
.verdict.valid{background:var(--valid)}.verdict.invalid{background:var(--invalid)}
.verdict.unknown{background:var(--unknown)}
.verdict-word{font-size:38px;font-weight:800;letter-spacing:1px}
.verdict .run-id{margin:2px 0 0;opacity:.92}.verdict-detail{margin:6px 0 0}
.verdict pre.message{background:rgba(0,0,0,.25);color:#fff;max-height:240px}
nav{margin:6px 0;display:flex;gap:14px;flex-wrap:wrap;font-size:13px}
#promises h2{margin-top:14px}
table{border-collapse:collapse;margin:6px 0}th,td{border:1px solid #dee2e6;padding:3px 7px;text-align:left;
vertical-align:top}thead th{background:#f1f3f5}
table.promises{width:100%}table.promises td.promise-status{width:9em}
.status{display:inline-block;padding:0 7px;border-radius:3px;font-weight:700;font-size:13px}
.status.broken{background:var(--invalid);color:#fff}.status.held{background:var(--valid);color:#fff}
.status.not-promised{background:#e9ecef;color:#495057;font-weight:400}
.status.unknown{background:var(--unknown);color:#fff}
.promise.with-anomalies{border-left:4px solid var(--unknown);padding:0 0 4px 12px;margin:8px 0 14px}
.promise.broken{border-left-color:var(--invalid)}.promise.with-anomalies>h3{margin:6px 0 2px;font-size:16px}
.reason{margin:0 0 4px;color:var(--muted);font-size:12px}
.anomaly-count{display:inline-block;margin-right:8px}.anomaly-count.allowed{color:var(--muted)}
.kv-blocks{display:flex;flex-wrap:wrap;gap:16px}.kv-block table{font-size:13px}
.kv th{background:#f8f9fa;font-weight:600}
details.parameters>summary{cursor:pointer}details.parameters>summary h2{display:inline-block;border:0;margin:8px 0}
pre.message{white-space:pre-wrap;background:#f8f9fa;padding:8px;overflow:auto;max-height:400px;font-size:12px}
.anomaly{padding:0 0 2px;margin:6px 0}
.anomaly.allowed{border-left:4px solid var(--pending);padding-left:12px}
.anomaly-name{font-family:ui-monospace,Menlo,Consolas,monospace;color:var(--invalid)}
.anomaly.allowed .anomaly-name{color:var(--muted)}.summary{font-weight:400}
.witness{margin:4px 0 10px;padding-left:10px;border-left:2px solid #dee2e6}
.witness:target{background:#fff9db}.explanation{margin:2px 0;font-size:14px}
.when,.faults-at,.faults-later{margin:1px 0;font-size:13px}.faults-later{color:var(--muted);font-size:12px}
.faults-later .fault{font-weight:400}.when{color:var(--muted)}.span-s{font-weight:600;color:var(--ink)}
.fault{font-weight:600}.fault .swatch{margin-right:3px;vertical-align:-1px}
details.witness-ops summary,details.more-witnesses summary{cursor:pointer;font-size:12px;color:#1864ab}
table.ops{font-size:12px;font-family:ui-monospace,Menlo,Consolas,monospace}
table.ops td.value,table.ops td.message{max-width:560px;word-break:break-all}
table.nemesis .swatch{margin-right:5px;vertical-align:-1px}
tr.op-row.ok td.type{color:var(--ok)}tr.op-row.fail td.type{color:var(--fail)}tr.op-row.info td.type{color:var(--info)}
.more,.plot-note,.key-summary,.none,.empty{color:var(--muted);font-size:12px;margin:2px 0 8px}
.legend{display:flex;flex-wrap:wrap;gap:4px 14px;font-size:12px;margin:4px 0}
.legend-item{display:inline-flex;align-items:center;gap:5px}.legend-item.absent{opacity:.45}
.swatch{display:inline-block;width:14px;height:10px;border:1px solid rgba(0,0,0,.15)}
.swatch.shade{background:var(--shade)}.swatch.mark{background:var(--mark);clip-path:polygon(0 0,100% 0,50% 100%)}
svg.plot{display:block;max-width:1000px;background:#fff}
svg .axis{stroke:#495057}svg .grid{stroke:#e9ecef}
svg text{font:11px system-ui,sans-serif;fill:#495057}svg .axis-label{font-size:12px}
svg .empty{fill:var(--muted);font-size:13px}
svg rect.shade{fill:var(--shade)}svg rect.lane{opacity:1}
svg .row-label.anomalies{fill:var(--mark);font-weight:600}
svg path.mark{fill:var(--mark);stroke:#fff;stroke-width:.6}svg line.mark-span{stroke:var(--mark);stroke-width:2}
svg a.anomaly-mark:hover path.mark{stroke:#000;stroke-width:1.2}
svg path.mark-guide{stroke:var(--mark);stroke-width:.8;stroke-dasharray:2 3;opacity:.7;pointer-events:none}
svg rect.op.pending{opacity:.6}svg rect.op.selected{stroke:#000;stroke-width:2}
svg path.op-path{fill:none}
svg path.dots{fill:none;stroke-width:5;stroke-linecap:round}svg path.dots.ok{stroke:var(--ok);opacity:.55}
svg path.dots.fail{stroke:var(--fail)}svg path.dots.info{stroke:var(--info)}
svg polyline.line{fill:none;stroke-width:1.6}svg polyline.ok{stroke:var(--ok)}svg polyline.fail{stroke:var(--fail)}
svg polyline.info{stroke:var(--info)}
svg line.marker{stroke:#000;stroke-width:1.5;stroke-dasharray:4 3}
""" + OFFSET_CSS + """
ul.files li.missing,ul.problems{color:#862e2e}.size{color:var(--muted);font-size:12px}
.js-errors{background:#fff3bf;border:1px solid #f08c00;padding:8px}
footer{margin-top:32px;color:var(--muted);font-size:12px}
"""

# Runs first, in <head>: any script error is written into the page, where a
# reader (and the browser test) can see it.
ERROR_CATCHER_JS = """
window.reportErrors=[];
window.addEventListener('error',function(ev){
  window.reportErrors.push(String(ev.message||ev));
  var el=document.getElementById('js-errors');
  if(el){el.textContent='script error: '+window.reportErrors.join('\\n');el.hidden=false;}
});
"""

# Clicking an op index in a witness marks that moment on every plot and
# outlines the op's bar on the timeline (a bar carries the indexes of both
# its invocation and its completion; witnesses name either). Clicking an
# anomaly mark on a plot marks its moment and opens and shows its witness
# (unfolding the <details> it may sit in), as does a page opened at
# `report.html#w-...`.
REPORT_JS = """
(function(){
  var NS='http://www.w3.org/2000/svg';
  function mark(t,index){
    var plots=document.querySelectorAll('svg.plot[data-px-per-s]');
    for(var i=0;i<plots.length;i++){
      var svg=plots[i];
      var old=svg.querySelector('line.marker');
      if(old){old.parentNode.removeChild(old);}
      var x=parseFloat(svg.getAttribute('data-x0'))+t*parseFloat(svg.getAttribute('data-px-per-s'));
      var line=document.createElementNS(NS,'line');
      line.setAttribute('class','marker');
      line.setAttribute('x1',x);line.setAttribute('x2',x);
      line.setAttribute('y1',svg.getAttribute('data-top'));line.setAttribute('y2',svg.getAttribute('data-bottom'));
      svg.appendChild(line);
    }
    var selected=document.querySelectorAll('rect.op.selected');
    for(var j=0;j<selected.length;j++){selected[j].classList.remove('selected');}
    var bars=document.querySelectorAll('rect.op');
    for(var k=0;index!==null&&k<bars.length;k++){
      if(bars[k].getAttribute('data-index')===index||bars[k].getAttribute('data-done')===index){
        bars[k].classList.add('selected');
      }
    }
  }
  // Show an element even inside folded <details> (witnesses past the first few are folded).
  function reveal(id){
    var el=document.getElementById(id);
    if(!el){return;}
    for(var p=el.parentElement;p;p=p.parentElement){if(p.tagName==='DETAILS'){p.open=true;}}
    if(location.hash!=='#'+id){location.hash=id;}
    el.scrollIntoView();
  }
  document.addEventListener('click',function(ev){
    if(!ev.target.closest){return;}
    var a=ev.target.closest('a.op-link');
    if(a){
      ev.preventDefault();
      mark(parseFloat(a.getAttribute('data-t'))||0,a.getAttribute('data-index'));
      var timeline=document.getElementById('timeline');
      if(timeline){timeline.scrollIntoView();}
      return;
    }
    var m=ev.target.closest('a.anomaly-mark');
    if(m){
      ev.preventDefault();
      mark(parseFloat(m.getAttribute('data-t'))||0,null);
      reveal((m.getAttribute('href')||'#').slice(1));
    }
  });
  if(location.hash){reveal(decodeURIComponent(location.hash.slice(1)));}
  var links=document.querySelectorAll('a.op-link');
  for(var i=0;i<links.length;i++){links[i].title='show op '+links[i].getAttribute('data-index')+' on the plots';}
  document.body.setAttribute('data-report-ready','yes');
})();
"""
