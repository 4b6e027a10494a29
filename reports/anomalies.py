"""What broke, when, and during which fault: the promise section at the top of the report.

For each checker result the section shows the promise table the checker
recorded (`results["workload"]["promises"]`, most severe promise first; for
runs stored before the checker recorded it, `judge_promises` of
`checkers.queue.delivery` computes the same table from the stored anomalies).
Broken promises come first, each with its anomalies in `ANOMALY_ORDER`
(lost writes, then aborted reads, duplicates, ordering; an anomaly that
follows from another, such as `unseen` from lost messages or the internal
`int-*` orders, sits under the same promise as its cause). Each anomaly gets
the checker's one-sentence summary (`stats.anomaly_summaries`), its first
`WITNESSES_OPEN` witnesses, and the rest up to `WITNESSES_SHOWN` folded.

Every witness is placed in time: its span runs from the invocation of its
first op to the completion of its last (op times are the history's
nanoseconds since the test started), and the faults named next to it are
those in effect during that span or ended at most `reports.faults.LOOKBACK_S`
seconds before it began, each labelled as which of the two it is. The same
spans become the anomaly marks of the plots (`marks`).

Invariants: renders, never judges (statuses and counts come from
results.json or the checker's own `judge_promises`); every string escaped;
bounded by `WITNESSES_SHOWN` witnesses per anomaly and `VALUE_CHARS`
characters per value.

Thread-safety: pure functions of a loaded RunData.

Sources: Jepsen's checker output (jepsen.tests.kafka anomaly maps with their
ops), and Elle's habit of explaining each anomaly in a sentence with the ops
that show it; the "what was the nemesis doing" question answered by the
shaded plots of jepsen.checker.perf.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from html import escape
from typing import Any

from checkers.queue.delivery import ANOMALY_ORDER, PROMISES, judge_promises
from reports.faults import explain_fault_context, fault_context, listed, window_text
from reports.plots import Mark, fault_class
from reports.run_data import FaultWindow, OpPair, RunData

__all__ = ["VALUE_CHARS", "WITNESSES_OPEN", "WITNESSES_SHOWN", "Witness", "marks", "promises_html",
           "promise_rows", "witnesses"]

WITNESSES_OPEN = 3
WITNESSES_SHOWN = 20
VALUE_CHARS = 240
_STATUS_WORDS = {"broken": "BROKEN", "held": "HELD", "not-promised": "not promised", "unknown": "unknown"}


def _e(x: Any) -> str:
    return escape(str(x), quote=True)


def compact(value: Any) -> str:
    return json.dumps(value, separators=(", ", ": "), sort_keys=False, default=str)


def cut(text: str, limit: int = VALUE_CHARS) -> str:
    """The text cut to `limit` characters, escaped; the cut text keeps a longer version as a tooltip."""
    if len(text) <= limit:
        return _e(text)
    return f'<span title="{_e(text[:4000])}">{_e(text[: limit - 1])}…</span>'


def _rank(name: str) -> tuple[int, str]:
    return (ANOMALY_ORDER.index(name) if name in ANOMALY_ORDER else len(ANOMALY_ORDER), name)


@dataclass(frozen=True)
class Witness:
    """One witness of one anomaly, placed in time."""

    checker: str
    anomaly: str
    number: int  # 1-based, in results.json's order
    allowed: bool
    data: Any
    start_s: float | None  # the first op's invocation
    end_s: float | None  # the last op's completion
    ops: tuple[tuple[Mapping[str, Any], OpPair | None], ...]
    first: int | None = None  # which of `ops` was invoked first
    first_span: tuple[float, float] | None = None  # its invocation and completion

    @property
    def anchor(self) -> str:
        prefix = "wa" if self.allowed else "w"
        return f"{prefix}-{self.checker}-{self.anomaly}-{self.number}"

    @property
    def href(self) -> str:
        """Where a mark of this witness links: the witness when the page shows it, else its anomaly."""
        if self.number <= WITNESSES_SHOWN:
            return "#" + self.anchor
        return "#" + ("allowed-" if self.allowed else "anomaly-") + self.anomaly


def _pair_index(run: RunData) -> dict[Any, OpPair]:
    by_index: dict[Any, OpPair] = {}
    for pair in run.pairs:
        by_index[pair.invoke.get("index")] = pair
        if pair.complete is not None:
            by_index[pair.complete.get("index")] = pair
    return by_index


def _op_seconds(op: Mapping[str, Any]) -> float | None:
    t = op.get("time")
    return t / 1e9 if isinstance(t, (int, float)) and not isinstance(t, bool) else None


def _interval(op: Mapping[str, Any], pair: OpPair | None) -> tuple[float, float] | None:
    """An op's time from invocation to completion (an op the history lacks: its own time, if any)."""
    if pair is not None:
        return pair.start_s, pair.end_s if pair.end_s is not None else pair.start_s
    t = _op_seconds(op)
    return None if t is None else (t, t)


def witnesses(run: RunData) -> list[Witness]:
    """Every witness in results.json, with its span in time (the page shows WITNESSES_SHOWN per anomaly and
    marks them all on the plots)."""
    by_index = _pair_index(run)
    out = []
    for checker, result in run.checker_results():
        for bucket, allowed in (("anomalies", False), ("allowed", True)):
            group = result.get(bucket)
            if not isinstance(group, Mapping):
                continue
            for name, items in group.items():
                if not isinstance(items, list):
                    continue
                for number, w in enumerate(items, 1):
                    op_maps = w.get("op_maps") if isinstance(w, Mapping) else None
                    ops = tuple((op, by_index.get(op.get("index"))) for op in (op_maps or ())
                                if isinstance(op, Mapping))
                    spans = [_interval(op, pair) for op, pair in ops]
                    timed = [(span, i) for i, span in enumerate(spans) if span is not None]
                    first = min(timed)[1] if timed else None
                    out.append(Witness(str(checker), str(name), number, allowed, w,
                                       min(a for (a, _), _ in timed) if timed else None,
                                       max(b for (_, b), _ in timed) if timed else None, ops,
                                       first, spans[first] if first is not None else None))
    return out


def marks(found: list[Witness]) -> list[Mark]:
    """The plots' anomaly marks: one per witness of a reported (not allowed) anomaly that has a time."""
    out = []
    for w in found:
        if w.allowed or w.start_s is None or w.end_s is None:
            continue
        ops = ", ".join(str(op.get("index")) for op, _ in w.ops)
        shown = "click to read it" if w.number <= WITNESSES_SHOWN else "not shown on this page: see results.json"
        out.append(Mark(w.start_s, w.end_s, w.anomaly,
                        f"{w.anomaly}, witness {w.number}: ops {ops}, {w.start_s:.2f}–{w.end_s:.2f} s ({shown})",
                        w.href))
    return sorted(out, key=lambda m: (m.start_s, _rank(m.anomaly)))


def promise_rows(run: RunData, result: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The promise table of one checker result: as recorded, else judged by the checker's own function
    (runs stored before results.json had it), else None."""
    rows = result.get("promises")
    if isinstance(rows, list) and all(isinstance(r, Mapping) for r in rows):
        return [dict(r) for r in rows]
    if not (isinstance(result.get("anomalies"), Mapping) or result.get("valid") is True):
        return None
    name = run.delivery_name
    if not name:
        return None
    try:
        return judge_promises(result, name)
    except (ValueError, TypeError):
        return None


# ----- HTML ----------------------------------------------------------------------------------------------


def _window_html(w: FaultWindow) -> str:
    return (f'<span class="fault" data-kind="{_e(w.kind)}"><span class="swatch {fault_class(w.kind)}"></span>'
            f'{_e(w.detail)}</span>, {w.start_s:.2f}–{w.end_s:.2f} s')


def _window_start_html(w: FaultWindow) -> str:
    return (f'<span class="fault" data-kind="{_e(w.kind)}"><span class="swatch {fault_class(w.kind)}"></span>'
            f'{_e(w.detail)}</span> at {w.start_s:.2f} s')


def _op_link(op: Mapping[str, Any], pair: OpPair | None, run: RunData) -> str:
    index = op.get("index")
    t = _op_seconds(op)
    start = pair.start_s if pair is not None else t if t is not None else run.op_time_s.get(index, 0.0)
    end = pair.end_s if pair is not None and pair.end_s is not None else t
    when = f"{start:.2f}" + (f"–{end:.2f}" if end is not None and end - start >= 0.005 else "") + " s"
    what = f"{op.get('f', '')} {op.get('type', '')}".strip()
    return (f'op <a class="op-link" href="#timeline" data-index="{_e(index)}" data-t="{start:.6f}">{_e(index)}</a> '
            f'<span class="op-when">({_e(what)}, {when})</span>')


def _seconds_text(a: float, b: float) -> str:
    return f"{a:.2f} s" if b - a < 0.005 else f"{a:.2f}–{b:.2f} s"


def _when_html(w: Witness, run: RunData) -> str:
    """When the witness happened (its ops) and the faults in effect at its first op or just before it; then
    the faults that began after that op and before its last op ended, by name."""
    if w.first is None or w.first_span is None or w.start_s is None or w.end_s is None:
        return '<p class="when">This witness names no op with a time: its faults are unknown.</p>'
    links = ", ".join(_op_link(op, pair, run) for op, pair in w.ops)
    when = (f'<p class="when"><span class="span-s">{_seconds_text(w.start_s, w.end_s)}</span> · {links}</p>')
    if not (run.windows or run.nemesis_pairs):
        return when + f'<p class="faults-at">{_e("No fault was injected in this run.")}</p>'
    a, b = w.first_span
    head = ""
    if len(w.ops) > 1:
        head = _e(f"At its first op, op {w.ops[w.first][0].get('index')} ({_seconds_text(a, b)}): ")
    faults = head + explain_fault_context(fault_context(run.windows, a, b), _window_html, _e)
    later = [x for x in run.windows if b < x.start_s <= w.end_s]
    if later:
        faults += ('</p><p class="faults-later">'
                   + _e(f"Began after it, before its last op ended at {w.end_s:.2f} s: ")
                   + listed(later, _window_start_html) + ".")
    return when + f'<p class="faults-at">{faults}</p>'


def _ops_table(w: Witness, run: RunData) -> str:
    rows = []
    for op, pair in w.ops:
        t = _op_seconds(op)
        t_s = t if t is not None else run.op_time_s.get(op.get("index"), 0.0)
        start = pair.start_s if pair is not None else t_s
        ctx = fault_context(run.windows, start, t_s)
        during = "; ".join(window_text(x) for x in ctx.during) or "none"
        error = op.get("error")
        rows.append(
            f'<tr class="op-row {_e(op.get("type"))}"><td>{_e(op.get("index"))}</td>'
            f'<td>{start:.3f}</td><td>{t_s:.3f}</td><td>{_e(op.get("process"))}</td>'
            f'<td class="type">{_e(op.get("type"))}</td><td>{_e(op.get("f"))}</td>'
            f'<td class="value">{cut(compact(op.get("value")))}</td>'
            f'<td>{cut(compact(error)) if error is not None else ""}</td><td>{_e(during)}</td></tr>')
    if not rows:
        return ""
    return (f'<details class="witness-ops"><summary>its {len(rows)} operation(s) in full</summary>'
            '<table class="ops"><thead><tr><th>index</th><th>invoked (s)</th><th>completed (s)</th><th>process</th>'
            '<th>type</th><th>f</th><th>value</th><th>error</th><th>faults in effect during it</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></details>')


def _witness_html(w: Witness, run: RunData) -> str:
    data = w.data
    if isinstance(data, Mapping):
        explanation = data.get("explanation") or compact(
            {k: v for k, v in data.items() if k not in ("op_maps", "op_indexes", "processes")})
    else:
        explanation = compact(data)
    return (f'<div class="witness" id="{_e(w.anchor)}"><p class="explanation">{cut(str(explanation), 1200)}</p>'
            f'{_when_html(w, run)}{_ops_table(w, run)}</div>')


def _count(result: Mapping[str, Any], bucket: str, name: str) -> int:
    stats = result.get("stats")
    key = "anomaly_counts" if bucket == "anomalies" else "allowed_counts"
    if isinstance(stats, Mapping) and isinstance(stats.get(key), Mapping):
        count = stats[key].get(name)
        if isinstance(count, int) and not isinstance(count, bool):
            return count
    group = result.get(bucket)
    if isinstance(group, Mapping) and isinstance(group.get(name), list):
        return len(group[name])
    return 0


def _summary(result: Mapping[str, Any], bucket: str, name: str) -> str:
    stats = result.get("stats")
    if isinstance(stats, Mapping) and isinstance(stats.get("anomaly_summaries"), Mapping):
        sentence = stats["anomaly_summaries"].get(name)
        if isinstance(sentence, str) and sentence:
            return sentence
    count = _count(result, bucket, name)
    return f"{count} witness" + ("" if count == 1 else "es")


def anomaly_html(checker: str, result: Mapping[str, Any], name: str, allowed: bool, found: list[Witness],
                 run: RunData) -> str:
    """One anomaly: its summary sentence, the first witnesses, the rest folded."""
    bucket = "allowed" if allowed else "anomalies"
    mine = [w for w in found if w.checker == checker and w.anomaly == name and w.allowed == allowed
            and w.number <= WITNESSES_SHOWN]
    anchor = ("allowed-" if allowed else "anomaly-") + name
    css = "allowed" if allowed else "bad"
    out = [f'<div class="anomaly {css}" id="{_e(anchor)}" data-anomaly="{_e(name)}">'
           f'<h4><span class="anomaly-name">{_e(name)}</span>: <span class="summary">'
           f'{_e(_summary(result, bucket, name))}</span></h4>']
    out += [_witness_html(w, run) for w in mine[:WITNESSES_OPEN]]
    stored = result.get(bucket, {}).get(name) if isinstance(result.get(bucket), Mapping) else None
    kept = len(stored) if isinstance(stored, list) else 0
    total = max(kept, _count(result, bucket, name))
    folded = mine[WITNESSES_OPEN:]
    rest = _rest_words(kept - len(mine), total - kept)
    if folded:
        out.append(f'<details class="more-witnesses"><summary>{len(folded)} more witness(es)'
                   f'{", and " + rest if rest else ""}</summary>'
                   + "".join(_witness_html(w, run) for w in folded) + "</details>")
    elif rest:
        out.append(f'<p class="more">{rest[0].upper() + rest[1:]}.</p>')
    out.append("</div>")
    return "".join(out)


def _rest_words(in_results: int, not_kept: int) -> str:
    """Where the witnesses not on the page are: in results.json, or counted only (the checker kept the first ones)."""
    parts = []
    if in_results > 0:
        parts.append(f"{in_results} more witness(es) in results.json")
    if not_kept > 0:
        parts.append(f"{not_kept} more counted but not kept (`logquake check --max-witnesses N` on the run's history "
                     "keeps more)")
    return ", ".join(parts)


def _status_badge(status: str) -> str:
    return f'<span class="status {_e(status)}">{_e(_STATUS_WORDS.get(status, status))}</span>'


def _checker_html(checker: str, result: Mapping[str, Any], found: list[Witness], run: RunData,
                  several: bool) -> str:
    rows = promise_rows(run, result)
    anomalies = result.get("anomalies") if isinstance(result.get("anomalies"), Mapping) else {}
    allowed = result.get("allowed") if isinstance(result.get("allowed"), Mapping) else {}
    head = f'<h3 class="checker">checker {_e(checker)}</h3>' if several else ""
    parts = [head]
    if rows is None:
        parts.append('<p class="empty">This run did not record which promises held.</p>')
        rows = []
    # Each anomaly sits under the promise it breaks: the row that counts it, else the row of its promise in
    # the checker's table (an anomaly the checker could not judge, e.g. without final reads), else apart.
    attached: dict[str, list[str]] = {str(r.get("id")): [] for r in rows}
    promise_of = {n: pid for pid, _, names in PROMISES for n in names}
    for name in sorted((str(n) for n in anomalies), key=_rank):
        pid = next((str(r.get("id")) for r in rows if name in (r.get("anomalies") or {})), promise_of.get(name))
        attached.setdefault(pid if pid in attached else "", []).append(name)
    with_anomalies = [r for r in rows if attached.get(str(r.get("id")))]
    with_anomalies.sort(key=lambda r: r.get("status") != "broken")
    for row in with_anomalies:
        pid = str(row.get("id"))
        status = str(row.get("status"))
        reason = row.get("reason")
        parts.append(f'<div class="promise {_e(status)} with-anomalies" data-promise="{_e(pid)}" '
                     f'id="promise-{_e(pid)}">'
                     f'<h3>{_status_badge(status)} {_e(row.get("promise", pid))}</h3>'
                     + (f'<p class="reason">{_e(reason)}</p>' if reason else "")
                     + "".join(anomaly_html(checker, result, n, False, found, run) for n in attached[pid]) + "</div>")
    leftover = attached.get("", [])
    if leftover:
        parts.append('<div class="promise unsorted with-anomalies" data-promise="unsorted">'
                     '<h3>Anomalies no promise names</h3>'
                     + "".join(anomaly_html(checker, result, n, False, found, run) for n in leftover) + "</div>")
    others = [r for r in rows if r not in with_anomalies]
    if others:
        trs = []
        for row in others:
            status = str(row.get("status"))
            links = " ".join(f'<a class="anomaly-count allowed" href="#allowed-{_e(n)}">{_e(n)}: '
                             f'{_e(_summary(result, "allowed", str(n)))}</a>'
                             for n in sorted((str(n) for n in (row.get("allowed") or {})), key=_rank))
            trs.append(f'<tr class="promise {_e(status)}" data-promise="{_e(row.get("id"))}">'
                       f'<td class="promise-status">{_status_badge(status)}</td><td>{_e(row.get("promise"))}</td>'
                       f'<td>{_e(row.get("reason", ""))}{" · " + links if links else ""}</td></tr>')
        title = "The other promises" if with_anomalies or leftover else "Every promise"
        parts.append(f'<h3 class="other-promises">{title}</h3><table class="promises">'
                     f'<tbody>{"".join(trs)}</tbody></table>')
    if allowed:
        inner = "".join(anomaly_html(checker, result, str(n), True, found, run)
                        for n in sorted((str(n) for n in allowed), key=_rank))
        parts.append(f'<details class="allowed-block"><summary>Allowed here ({len(allowed)} kind(s)): seen, but not '
                     f'a broken promise under this delivery mode or by rule</summary>{inner}</details>')
    if not anomalies and not rows:
        parts.append('<p class="none">No anomalies reported.</p>' if result.get("valid") is True else
                     '<p class="none">No anomalies reported, but the verdict is not "valid".</p>')
    return "".join(parts)


def promises_html(run: RunData, found: list[Witness]) -> str:
    """The section: broken promises with their anomalies and witnesses, then the other promises."""
    checkers = [(n, r) for n, r in run.checker_results()
                if isinstance(r.get("anomalies"), Mapping) or r.get("valid") is True
                or isinstance(r.get("promises"), list)]
    if not checkers:
        return ""
    label = run.delivery_label
    mode = f"under <b>{_e(label)}</b>" if label else "(delivery mode unknown)"
    body = "".join(_checker_html(n, r, found, run, len(checkers) > 1) for n, r in checkers)
    return f'<section id="promises"><h2>Promises {mode}</h2>{body}</section>'
