"""The run report: one self-contained HTML page per run (`report.html`).

What a reader sees, top to bottom: the verdict and, per promise of the
delivery mode (nothing lost, nothing duplicated, order kept, nothing aborted
visible), whether it held, broke, or is not promised by the mode; the test's
parameters; every anomaly as the checker's sentence with a table of its
witness operations; a timeline of operations per process; latency and
throughput plots; per-key offset maps; the nemesis events; links to the raw
files.

Invariants
- Renders, never judges: every verdict and anomaly comes from results.json.
  The only knowledge of its own is which promises each delivery mode makes
  (the table of DESIGN.md), used to label a promise "not promised".
- Self-contained and offline: inline CSS, inline SVG, one small inline
  script; no network fetches, no external fonts.
- Escaped: every string from the run goes through `html.escape`.
- Always renders: missing or damaged files, runs without a verdict and empty
  histories give a page that says what is missing.
- Bounded: plots and maps cap their element counts (see `reports.plots`,
  `reports.offsets`), witness tables show at most `WITNESSES_SHOWN` witnesses
  per anomaly and values are cut at `VALUE_CHARS` characters.

Thread-safety: pure functions of the run directory's contents.

Sources: Jepsen's store layout and report files (jepsen.store,
jepsen.checker.timeline, jepsen.checker.perf), jepsen.tests.kafka's anomaly
names.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Mapping
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

from reports.offsets import offset_maps_html
from reports.faults import fault_notes
from reports.plots import KNOWN_FAULT_KINDS, fault_class, latency_svg, throughput_svg, timeline_svg
from reports.run_data import RAW_FILES, RunData, load_run

__all__ = ["PROMISES", "render_run", "render_run_html", "verdict_word"]

WITNESSES_SHOWN = 20
VALUE_CHARS = 240
NEMESIS_ROWS_SHOWN = 400

# (promise id, the promise in words, the anomalies that break it)
PROMISES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("lost", "nothing acknowledged is lost", ("lost-write", "unseen")),
    ("duplicated", "nothing is delivered twice", ("duplicate",)),
    ("reordered", "messages keep their log order",
     ("inconsistent-offsets", "poll-skip", "nonmonotonic-poll", "nonmonotonic-send", "int-poll-skip",
      "int-nonmonotonic-poll", "int-send-skip", "int-nonmonotonic-send")),
    ("aborted-visible", "nothing aborted or uncommitted is visible", ("G1a", "precommitted-read")),
    ("isolation", "transactions are isolated (no G0/G1c cycle)",
     ("G0", "G0-process", "G0-realtime", "G1c", "G1c-process", "G1c-realtime")),
)
# What each delivery mode does not promise (DESIGN.md, "Delivery modes").
MODE_DOES_NOT_PROMISE = {
    "at-most-once": frozenset({"lost"}),
    "at-least-once": frozenset({"duplicated"}),
    "exactly-once": frozenset(),
}
_ALWAYS_SHOWN = ("lost", "duplicated", "reordered", "aborted-visible")


def _e(x: Any) -> str:
    return escape(str(x), quote=True)


def verdict_word(valid: Any) -> tuple[str, str]:
    """(css class, word) for a validity: True, False or anything else (unknown)."""
    if valid is True:
        return "valid", "VALID"
    if valid is False:
        return "invalid", "INVALID"
    return "unknown", "UNKNOWN"


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(", ", ": "), sort_keys=False, default=str)


def _cut(text: str, limit: int = VALUE_CHARS) -> str:
    """The text cut to `limit` characters, escaped; the cut text keeps a longer version as a tooltip."""
    if len(text) <= limit:
        return _e(text)
    return f'<span title="{_e(text[:4000])}">{_e(text[: limit - 1])}…</span>'


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
    body = [
        _header(run, css, word),
        _promises(run),
        _problems(run),
        _fault_notes(run),
        _parameters(run),
        _anomalies(run),
        _section("timeline", "Timeline of operations", _op_legend() + _fault_legend(run) + timeline_svg(run)),
        _section("latency", "Latency", _op_legend(pending=False) + _fault_legend(run) + latency_svg(run)),
        _section("throughput", "Throughput", _op_legend(pending=False) + _fault_legend(run) + throughput_svg(run)),
        _section("offsets", "Offset maps per partition", offset_maps_html(run)),
        _nemesis(run),
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
    delivery = run.delivery
    mode = f' · delivery <b>{_e(delivery)}</b>' if delivery else ""
    nav = "".join(f'<a href="#{a}">{_e(t)}</a>' for a, t in (
        ("anomalies", "anomalies"), ("timeline", "timeline"), ("latency", "latency"), ("throughput", "throughput"),
        ("offsets", "offset maps"), ("nemesis", "nemesis"), ("files", "raw files")))
    return (
        f'<header id="verdict" class="verdict {css}"><div class="verdict-word" data-valid="{_e(css)}">{word}</div>'
        f'<div class="verdict-text"><h1>{_e(run.name)}</h1><p class="run-id">run {_e(run.run_dir.name)}{mode}'
        f' · {len(run.pairs)} operations · {run.duration_s:.1f} s</p>{extra}</div></header>'
        f'<nav>{nav}</nav>'
    )


def _count(result: Mapping[str, Any], bucket: str, name: str) -> int:
    stats = result.get("stats")
    counts_key = "anomaly_counts" if bucket == "anomalies" else "allowed_counts"
    if isinstance(stats, Mapping) and isinstance(stats.get(counts_key), Mapping) and name in stats[counts_key]:
        count = stats[counts_key][name]
        if isinstance(count, int):
            return count
    group = result.get(bucket)
    if isinstance(group, Mapping) and isinstance(group.get(name), list):
        return len(group[name])
    return 0


def _promises(run: RunData) -> str:
    checkers = run.checker_results()
    judged = [(n, r) for n, r in checkers if isinstance(r.get("anomalies"), Mapping) or r.get("valid") is True]
    if not judged:
        return ""
    delivery = run.delivery
    not_promised = MODE_DOES_NOT_PROMISE.get(delivery or "", frozenset())
    known = {name for _, _, names in PROMISES for name in names}
    rows = []
    seen_names: set[str] = set()
    for _, result in judged:
        for bucket in ("anomalies", "allowed"):
            if isinstance(result.get(bucket), Mapping):
                seen_names.update(str(k) for k in result[bucket])
    promises = list(PROMISES)
    other = sorted(seen_names - known)
    if other:
        promises.append(("other", "no other anomaly", tuple(other)))
    for pid, words, names in promises:
        broken = {n: sum(_count(r, "anomalies", n) for _, r in judged) for n in names}
        allowed = {n: sum(_count(r, "allowed", n) for _, r in judged) for n in names}
        broken = {n: c for n, c in broken.items() if c}
        allowed = {n: c for n, c in allowed.items() if c}
        if pid not in _ALWAYS_SHOWN and not broken and not allowed:
            continue
        undecided = all(r.get("valid") not in (True, False) for _, r in judged)
        if broken:
            status, label = "broken", "BROKEN"
        elif pid in not_promised:
            status, label = "allowed", f"not promised by {delivery}"
        elif undecided:
            status, label = "unknown", "not judged"
        else:
            status, label = "held", "HELD"
        detail = []
        for n, c in broken.items():
            detail.append(f'<a class="anomaly-count bad" href="#anomaly-{_e(n)}">{_e(n)} × {c}</a>')
        for n, c in allowed.items():
            detail.append(f'<a class="anomaly-count allowed" href="#allowed-{_e(n)}">{_e(n)} × {c} (allowed)</a>')
        rows.append(f'<tr class="promise {status}" data-promise="{_e(pid)}"><th>{_e(pid)}</th><td>{_e(words)}</td>'
                    f'<td class="promise-status">{_e(label)}</td><td>{" ".join(detail) or "none seen"}</td></tr>')
    mode = f"under <b>{_e(delivery)}</b>" if delivery else "(delivery mode unknown)"
    return (f'<section id="promises"><h2>Promises {mode}</h2><table class="promises">'
            '<thead><tr><th>promise</th><th>meaning</th><th>status</th><th>anomalies seen</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></section>')


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


def _fault_notes(run: RunData) -> str:
    notes = fault_notes(run)
    if not notes:
        return ""
    return _section("faults", "What the faults did", "".join(f'<p class="fault-note">{_e(n)}</p>' for n in notes))


def _kv_table(data: Mapping[str, Any], css: str) -> str:
    rows = []
    for k, v in data.items():
        shown = v if isinstance(v, str) else _compact(v)
        rows.append(f"<tr><th>{_e(k)}</th><td>{_cut(shown)}</td></tr>")
    return f'<table class="kv {css}">{"".join(rows)}</table>'


def _parameters(run: RunData) -> str:
    if not run.test:
        return _section("parameters", "Test parameters", '<p class="empty">test.json is missing or unreadable.</p>')
    parts = []
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
    return _section("parameters", "Test parameters", '<div class="kv-blocks">' + "".join(parts) + "</div>")


def _anomalies(run: RunData) -> str:
    checkers = run.checker_results()
    parts = []
    for name, result in checkers:
        anomalies = result.get("anomalies") if isinstance(result.get("anomalies"), Mapping) else {}
        allowed = result.get("allowed") if isinstance(result.get("allowed"), Mapping) else {}
        css, word = verdict_word(result.get("valid"))
        head = f'<h3 class="checker {css}">checker {_e(name)}: {word}</h3>'
        body = []
        if not anomalies:
            body.append('<p class="none">No anomalies reported.</p>' if result.get("valid") is True else
                        '<p class="none">No anomalies reported, but the verdict is not "valid".</p>')
        for anomaly, witnesses in anomalies.items():
            body.append(_anomaly_block(str(anomaly), witnesses, _count(result, "anomalies", str(anomaly)), False,
                                       run))
        if allowed:
            inner = "".join(_anomaly_block(str(a), w, _count(result, "allowed", str(a)), True, run)
                            for a, w in allowed.items())
            body.append(f'<details class="allowed-block"><summary>Allowed here ({len(allowed)} kind(s)): seen, '
                        f'but not a broken promise under this mode or by rule</summary>{inner}</details>')
        stats = result.get("stats")
        if isinstance(stats, Mapping):
            body.append('<details class="stats"><summary>checker statistics</summary>'
                        + _kv_table(stats, "stats") + "</details>")
        parts.append(head + "".join(body))
    if not parts:
        reason = "no results.json" if run.results is None else "no checker results in results.json"
        parts.append(f'<p class="empty">No anomalies to show: {_e(reason)}.</p>')
    return _section("anomalies", "Anomalies", "".join(parts))


def _anomaly_block(name: str, witnesses: Any, count: int, allowed: bool, run: RunData) -> str:
    anchor = ("allowed-" if allowed else "anomaly-") + name
    witnesses = witnesses if isinstance(witnesses, list) else []
    css = "allowed" if allowed else "bad"
    out = [f'<div class="anomaly {css}" id="{_e(anchor)}" data-anomaly="{_e(name)}">'
           f'<h4><span class="anomaly-name">{_e(name)}</span> <span class="count">× {count}</span></h4>']
    for w in witnesses[:WITNESSES_SHOWN]:
        if not isinstance(w, Mapping):
            out.append(f'<div class="witness"><p class="explanation">{_cut(_compact(w))}</p></div>')
            continue
        explanation = w.get("explanation")
        if not explanation:
            data = {k: v for k, v in w.items() if k not in ("op_maps", "op_indexes", "processes")}
            explanation = _compact(data)
        out.append(f'<div class="witness"><p class="explanation">{_e(explanation)}</p>'
                   f'{_ops_table(w.get("op_maps"), run)}</div>')
    hidden = max(len(witnesses), count) - min(len(witnesses), WITNESSES_SHOWN)
    if hidden > 0:
        out.append(f'<p class="more">{hidden} more witness(es) not shown: see results.json.</p>')
    out.append("</div>")
    return "".join(out)


def _ops_table(op_maps: Any, run: RunData) -> str:
    if not isinstance(op_maps, list) or not op_maps:
        return ""
    rows = []
    for op in op_maps:
        if not isinstance(op, Mapping):
            continue
        index = op.get("index")
        t = op.get("time")
        t_s = t / 1e9 if isinstance(t, (int, float)) and not isinstance(t, bool) else run.op_time_s.get(index, 0.0)
        error = op.get("error")
        rows.append(
            f'<tr class="op-row {_e(op.get("type"))}">'
            f'<td><a class="op-link" href="#timeline" data-index="{_e(index)}" data-t="{t_s:.6f}">{_e(index)}</a></td>'
            f'<td>{t_s:.3f}</td><td>{_e(op.get("process"))}</td><td class="type">{_e(op.get("type"))}</td>'
            f'<td>{_e(op.get("f"))}</td><td class="value">{_cut(_compact(op.get("value")))}</td>'
            f'<td>{_cut(_compact(error)) if error is not None else ""}</td></tr>'
        )
    return ('<table class="ops"><thead><tr><th>index</th><th>time (s)</th><th>process</th><th>type</th><th>f</th>'
            f'<th>value</th><th>error</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')


def _op_legend(pending: bool = True) -> str:
    items = [("ok", "ok: it happened"), ("fail", "fail: it certainly did not happen"),
             ("info", "info: unknown (timeout, crash)")]
    if pending:
        items.append(("pending", "no completion"))
    return '<div class="legend">' + "".join(
        f'<span class="legend-item"><span class="swatch op-{k}"></span>{_e(t)}</span>' for k, t in items) + "</div>"


def _fault_legend(run: RunData) -> str:
    kinds = list(KNOWN_FAULT_KINDS) + sorted({w.kind for w in run.windows} - set(KNOWN_FAULT_KINDS))
    items = []
    for kind in kinds:
        present = any(w.kind == kind for w in run.windows)
        items.append(f'<span class="legend-item{"" if present else " absent"}"><span class="swatch band '
                     f'{fault_class(kind)}"></span>{_e(kind)}{"" if present else " (none)"}</span>')
    return '<div class="legend faults">nemesis: ' + "".join(items) + "</div>"


def _nemesis(run: RunData) -> str:
    if not run.nemesis_pairs and not run.schedule:
        return _section("nemesis", "Nemesis", '<p class="empty">No nemesis operations in the history.</p>')
    rows = []
    for pair in run.nemesis_pairs[:NEMESIS_ROWS_SHOWN]:
        done = pair.complete.get("value") if pair.complete is not None else None
        rows.append(f'<tr><td>{pair.start_s:.3f}</td><td>{"" if pair.end_s is None else f"{pair.end_s:.3f}"}</td>'
                    f'<td>{_e(pair.invoke.get("f"))}</td><td>{_cut(_compact(pair.invoke.get("value")))}</td>'
                    f'<td>{_cut(_compact(done)) if pair.complete is not None else "no completion"}</td></tr>')
    more = len(run.nemesis_pairs) - NEMESIS_ROWS_SHOWN
    note = f'<p class="more">{more} more nemesis operation(s): see history.jsonl.</p>' if more > 0 else ""
    table = ('<table class="ops nemesis"><thead><tr><th>invoked (s)</th><th>done (s)</th><th>f</th><th>scheduled</th>'
             f'<th>what was done</th></tr></thead><tbody>{"".join(rows)}</tbody></table>{note}') if rows else \
        '<p class="empty">No nemesis operation was carried out.</p>'
    schedule = ""
    if run.schedule:
        schedule = (f'<details><summary>the seeded schedule ({len(run.schedule)} events, decided before the run)'
                    f'</summary><pre class="message">{_e(json.dumps(run.schedule, indent=1, default=str))}</pre></details>')
    return _section("nemesis", "Nemesis", table + schedule)


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

CSS = """
:root{--ok:#2f9e44;--fail:#e03131;--info:#f08c00;--pending:#adb5bd;--valid:#2b8a3e;--invalid:#c92a2a;
--unknown:#e67700;--partition:#1c7ed6;--kill:#9c36b5;--pause:#0ca678;--disk:#a05a2c;--clock:#d6336c;--packet:#74b816;--other:#868e96;--ink:#212529;--muted:#6c757d}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--ink);
margin:0 auto;max-width:1200px;padding:0 16px 40px}
h1{margin:0;font-size:22px}h2{font-size:18px;border-bottom:1px solid #dee2e6;padding-bottom:4px;margin-top:28px}
h3{font-size:15px;margin:16px 0 6px}h4{margin:12px 0 4px;font-size:14px}
a{color:#1864ab}
.verdict{display:flex;gap:20px;align-items:center;padding:16px 20px;margin-top:16px;border-radius:8px;color:#fff}
.verdict.valid{background:var(--valid)}.verdict.invalid{background:var(--invalid)}
.verdict.unknown{background:var(--unknown)}
.verdict-word{font-size:44px;font-weight:800;letter-spacing:1px}
.verdict .run-id{margin:2px 0 0;opacity:.9}.verdict-detail{margin:6px 0 0}
.verdict pre.message{background:rgba(0,0,0,.25);color:#fff;max-height:240px}
nav{margin:8px 0;display:flex;gap:14px;flex-wrap:wrap}
table{border-collapse:collapse;margin:6px 0}th,td{border:1px solid #dee2e6;padding:3px 7px;text-align:left;
vertical-align:top}thead th{background:#f1f3f5}
table.promises{font-size:16px;width:100%}table.promises th{width:11em}
tr.promise.broken td.promise-status{background:var(--invalid);color:#fff;font-weight:700}
tr.promise.held td.promise-status{background:var(--valid);color:#fff;font-weight:700}
tr.promise.allowed td.promise-status{background:#e9ecef;color:#495057}
tr.promise.unknown td.promise-status{background:var(--unknown);color:#fff}
.anomaly-count{display:inline-block;margin-right:8px;font-family:ui-monospace,Menlo,Consolas,monospace}
.anomaly-count.bad{color:var(--invalid);font-weight:600}.anomaly-count.allowed{color:var(--muted)}
.kv-blocks{display:flex;flex-wrap:wrap;gap:16px}.kv-block table{font-size:13px}
.kv th{background:#f8f9fa;font-weight:600}
pre.message{white-space:pre-wrap;background:#f8f9fa;padding:8px;overflow:auto;max-height:400px;font-size:12px}
.checker.valid{color:var(--valid)}.checker.invalid{color:var(--invalid)}.checker.unknown{color:var(--unknown)}
.anomaly{border-left:4px solid var(--invalid);padding:2px 0 6px 12px;margin:10px 0}
.anomaly.allowed{border-left-color:var(--pending)}
.anomaly-name{font-family:ui-monospace,Menlo,Consolas,monospace}.count{color:var(--muted);font-weight:400}
.witness{margin:6px 0 12px}.explanation{margin:4px 0;font-size:15px}
table.ops{font-size:12px;font-family:ui-monospace,Menlo,Consolas,monospace}
table.ops td.value{max-width:560px;word-break:break-all}
tr.op-row.ok td.type{color:var(--ok)}tr.op-row.fail td.type{color:var(--fail)}tr.op-row.info td.type{color:var(--info)}
.more,.plot-note,.key-summary,.none,.empty{color:var(--muted);font-size:12px;margin:2px 0 8px}
.legend{display:flex;flex-wrap:wrap;gap:4px 14px;font-size:12px;margin:4px 0}
.legend-item{display:inline-flex;align-items:center;gap:5px}.legend-item.absent{opacity:.45}
.swatch{display:inline-block;width:14px;height:10px;border:1px solid rgba(0,0,0,.15)}
.swatch.op-ok{background:var(--ok)}.swatch.op-fail{background:var(--fail)}.swatch.op-info{background:var(--info)}
.swatch.op-pending{background:var(--pending)}
.swatch.band.fk-partition{background:var(--partition)}.swatch.band.fk-kill{background:var(--kill)}
.swatch.band.fk-pause{background:var(--pause)}.swatch.band.fk-disk{background:var(--disk)}.swatch.band.fk-clock{background:var(--clock)}.swatch.band.fk-packet{background:var(--packet)}.swatch.band.fk-other{background:var(--other)}
svg.plot{display:block;max-width:1000px;background:#fff}
svg .axis{stroke:#495057}svg .grid{stroke:#e9ecef}
svg text{font:11px system-ui,sans-serif;fill:#495057}svg .axis-label{font-size:12px}
svg .empty{fill:var(--muted);font-size:13px}
svg rect.band{opacity:.13}svg rect.lane{opacity:.85}
svg .fk-partition{fill:var(--partition)}svg .fk-kill{fill:var(--kill)}svg .fk-pause{fill:var(--pause)}svg .fk-disk{fill:var(--disk)}svg .fk-clock{fill:var(--clock)}svg .fk-packet{fill:var(--packet)}
svg .fk-other{fill:var(--other)}
svg rect.op.ok{fill:var(--ok)}svg rect.op.fail{fill:var(--fail)}svg rect.op.info{fill:var(--info)}
svg rect.op.pending{fill:var(--pending);opacity:.6}svg rect.op.selected{stroke:#000;stroke-width:2}
svg path.op-path{fill:none}svg path.op-path.ok{stroke:var(--ok)}svg path.op-path.fail{stroke:var(--fail)}
svg path.op-path.info{stroke:var(--info)}svg path.op-path.pending{stroke:var(--pending)}
svg path.dots{fill:none;stroke-width:5;stroke-linecap:round}svg path.dots.ok{stroke:var(--ok);opacity:.55}
svg path.dots.fail{stroke:var(--fail)}svg path.dots.info{stroke:var(--info)}
svg polyline.line{fill:none;stroke-width:1.6}svg polyline.ok{stroke:var(--ok)}svg polyline.fail{stroke:var(--fail)}
svg polyline.info{stroke:var(--info)}
svg line.marker{stroke:#000;stroke-width:1.5;stroke-dasharray:4 3}
svg.offset-map{display:block;max-width:1002px}
.om-lost{fill:#c92a2a;background:#c92a2a;stroke:#c92a2a}.om-inconsistent{fill:#862e9c;background:#862e9c;stroke:#862e9c}
.om-duplicate{fill:#e64980;background:#e64980;stroke:#e64980}
.om-aborted-read{fill:#5f3dc4;background:#5f3dc4;stroke:#5f3dc4}
.om-reordered{fill:#f59f00;background:#f59f00;stroke:#f59f00}.om-unseen{fill:#ff922b;background:#ff922b;stroke:#ff922b}
.om-unread{fill:#ffd8a8;background:#ffd8a8;stroke:#ffd8a8}
.om-read-unacked{fill:#74c0fc;background:#74c0fc;stroke:#74c0fc}.om-ok{fill:#8ce99a;background:#8ce99a;stroke:#8ce99a}
.om-empty{fill:#f1f3f5;background:#f1f3f5;stroke:#f1f3f5}
.allowed.om-lost,.allowed.om-duplicate,.allowed.om-unseen,.allowed.om-reordered,.allowed.om-inconsistent,
.allowed.om-aborted-read{opacity:.45}
path.cells{fill:none}
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

# Clicking an op index in a witness table marks that moment on every plot
# and outlines the op's bar on the timeline (a bar carries the indexes of
# both its invocation and its completion; witnesses name either).
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
    for(var k=0;k<bars.length;k++){
      if(bars[k].getAttribute('data-index')===index||bars[k].getAttribute('data-done')===index){
        bars[k].classList.add('selected');
      }
    }
  }
  document.addEventListener('click',function(ev){
    var a=ev.target.closest?ev.target.closest('a.op-link'):null;
    if(!a){return;}
    ev.preventDefault();
    mark(parseFloat(a.getAttribute('data-t'))||0,a.getAttribute('data-index'));
    var timeline=document.getElementById('timeline');
    if(timeline){timeline.scrollIntoView();}
  });
  var links=document.querySelectorAll('a.op-link');
  for(var i=0;i<links.length;i++){links[i].title='show op '+links[i].getAttribute('data-index')+' on the plots';}
  document.body.setAttribute('data-report-ready','yes');
})();
"""
