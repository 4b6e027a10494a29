"""Hand-drawn SVG plots of a run: the op timeline, latencies and throughput.

Every plot shares one horizontal geometry (same width, margins and time axis),
so faults and anomalies line up from one plot to the next. Above its plot
area every plot draws the same lanes: one lane of anomaly marks (a triangle
at each witness's first op, a line to its last; hover names the anomaly,
click opens the witness) and one lane per fault kind present, in the fixed
order of `KNOWN_FAULT_KINDS`, each in its kind's colour. The plot area below
is shaded in one neutral colour wherever at least one fault is in effect
(the union of the windows), so overlapping faults never blend into colours
the legend does not have; the lanes above say which faults they were.

Invariants
- Bounded size: a plot never emits more than about `ELEMENT_BUDGET` SVG
  elements whatever the history's size. Small histories get one bar per op
  (with a hover title); big ones are drawn from a grid of cells (the timeline
  keeps, per process row and time column, the worst completion type: info over
  fail over ok; the latency scatter keeps one dot per occupied cell), and the
  points of one colour share one `<path>`.
- Every text that comes from the run (process names, fault details, fs) goes
  through `html.escape`.
- Coordinates are SVG user units; the root `<svg>` carries `data-x0` (left edge
  of the plot area), `data-px-per-s`, `data-top` and `data-bottom` so the
  page's script can draw a marker at a given time.

Thread-safety: pure functions of their arguments.

Sources: the plots of Jepsen's `jepsen.checker.perf` (latency scatter on a log
axis, throughput by completion type, nemesis activity shaded) and
`jepsen.checker.timeline` (one row per process).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from reports.run_data import FaultWindow, RunData

__all__ = ["ANOMALY_COLOUR", "ELEMENT_BUDGET", "FAULT_SHADE", "FaultKind", "KNOWN_FAULT_KINDS", "MARKS_MAX", "Mark",
           "OP_COLOURS", "OP_TYPES", "OTHER_FAULT", "fault_class", "fault_kind_of", "lane_kinds", "latency_svg",
           "nice_ticks", "throughput_svg", "timeline_svg"]

WIDTH = 1000
LEFT = 84
RIGHT = 16
PLOT_WIDTH = WIDTH - LEFT - RIGHT
LANE_H = 9.0
MARK_LANE_H = 12.0
ELEMENT_BUDGET = 6000
EXACT_TIMELINE_MAX = 4000  # above this many ops the timeline is drawn from a grid
GRID_CELL_BUDGET = 40000  # process rows × time columns of that grid
OP_TYPES = ("ok", "fail", "info", "pending")
_TYPE_RANK = {"ok": 0, "pending": 1, "fail": 2, "info": 3}
MARKS_MAX = 200  # anomaly marks per plot; more are merged by position


@dataclass(frozen=True)
class FaultKind:
    """A nemesis package as the report draws it: its lane's name, its legend words and its colour."""

    kind: str
    words: str
    colour: str


# The one list of fault kinds: lane order, legend and colours (page.py builds its CSS from it). The
# colours are far from each other and from the op colours (CIELAB distance, see the tests).
KNOWN_FAULT_KINDS: tuple[FaultKind, ...] = (
    FaultKind("partition", "network partition", "#1c7ed6"),
    FaultKind("kill", "process killed (SIGKILL) until restarted", "#5f3dc4"),
    FaultKind("restart", "process stopped gracefully (SIGTERM) until restarted", "#e599f7"),
    FaultKind("pause", "process paused (SIGSTOP) until resumed", "#66d9e8"),
    FaultKind("disk", "disk fault", "#7c4a21"),
    FaultKind("clock", "wall clock skewed", "#f783ac"),
    FaultKind("packet", "packet latency, loss or reordering", "#343a40"),
)
OTHER_FAULT = FaultKind("other", "any other fault", "#ffe066")
OP_COLOURS = {"ok": "#2f9e44", "fail": "#e03131", "info": "#f08c00", "pending": "#adb5bd"}
FAULT_SHADE = "#e9ecef"  # the plot area while at least one fault is in effect
ANOMALY_COLOUR = "#a61e4d"
_KIND_NAMES = tuple(k.kind for k in KNOWN_FAULT_KINDS)


def fault_kind_of(kind: str) -> FaultKind:
    """The FaultKind of a kind name; kinds not known yet share OTHER_FAULT's colour."""
    return KNOWN_FAULT_KINDS[_KIND_NAMES.index(kind)] if kind in _KIND_NAMES else OTHER_FAULT


def fault_class(kind: str) -> str:
    """The CSS class of a fault kind; every kind not known yet shares the fallback colour."""
    return f"fk-{fault_kind_of(kind).kind}"


def lane_kinds(windows: Iterable[FaultWindow]) -> list[str]:
    """The fault kinds present, in the fixed order of KNOWN_FAULT_KINDS, then unknown kinds by name."""
    present = {w.kind for w in windows}
    return [k for k in _KIND_NAMES if k in present] + sorted(present - set(_KIND_NAMES))


@dataclass(frozen=True)
class Mark:
    """An anomaly witness on the time axis: from its first op's invocation to its last op's completion."""

    start_s: float
    end_s: float
    anomaly: str
    title: str
    href: str


def _e(x: Any) -> str:
    return escape(str(x), quote=True)


def _num(x: float) -> str:
    # Short coordinates keep big plots small.
    return f"{x:.1f}".rstrip("0").rstrip(".") if abs(x) < 1e6 else f"{x:.0f}"


def nice_ticks(lo: float, hi: float, count: int = 8) -> list[float]:
    """Round tick values covering [lo, hi], about `count` of them (steps of 1, 2 or 5 × 10^k)."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, count)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    t = first
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 10))
        t += step
    return ticks


class _Frame:
    """The time axis of every plot: seconds -> x in user units."""

    def __init__(self, duration_s: float):
        self.duration_s = max(duration_s, 1e-3)
        self.px_per_s = PLOT_WIDTH / self.duration_s

    def x(self, t_s: float) -> float:
        return LEFT + min(max(t_s, 0.0), self.duration_s) * self.px_per_s

    def svg_open(self, height: float, label: str, top: float, bottom: float, css_class: str) -> str:
        return (f'<svg class="plot {css_class}" viewBox="0 0 {WIDTH} {_num(height)}" width="100%" '
                f'role="img" aria-label="{_e(label)}" data-x0="{LEFT}" data-px-per-s="{self.px_per_s:.6g}" '
                f'data-top="{_num(top)}" data-bottom="{_num(bottom)}" preserveAspectRatio="xMinYMin meet">')

    def time_axis(self, y: float, top: float) -> list[str]:
        out = [f'<line class="axis" x1="{LEFT}" y1="{_num(y)}" x2="{LEFT + PLOT_WIDTH}" y2="{_num(y)}"/>']
        for t in nice_ticks(0.0, self.duration_s, 10):
            x = self.x(t)
            out.append(f'<line class="grid" x1="{_num(x)}" y1="{_num(top)}" x2="{_num(x)}" y2="{_num(y)}"/>')
            out.append(f'<text class="tick" x="{_num(x)}" y="{_num(y + 14)}" text-anchor="middle">{_tick_label(t)}</text>')
        out.append(f'<text class="axis-label" x="{LEFT + PLOT_WIDTH / 2}" y="{_num(y + 30)}" '
                   f'text-anchor="middle">time since the test started (s)</text>')
        return out

    def shade(self, windows: Iterable[FaultWindow], top: float, bottom: float) -> list[str]:
        """One neutral band per stretch of time with at least one fault in effect (the union of windows)."""
        spans = sorted((w.start_s, w.end_s) for w in windows)
        merged: list[list[float]] = []
        for a, b in spans:
            if merged and a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        out = []
        for a, b in merged:
            x1, x2 = self.x(a), self.x(b)
            out.append(f'<rect class="shade" x="{_num(x1)}" y="{_num(top)}" width="{_num(max(x2 - x1, 1.0))}" '
                       f'height="{_num(bottom - top)}"><title>faults in effect {a:.2f}–{b:.2f} s</title></rect>')
        return out

    def lanes(self, windows: Sequence[FaultWindow], marks: Sequence[Mark], top: float) -> tuple[list[str], float]:
        """The anomaly lane (when there are marks) and one lane per fault kind, from `top` down; returns the
        elements and the y where they end."""
        out: list[str] = []
        y = top
        if marks:
            out.append(f'<text class="row-label anomalies" x="{LEFT - 4}" y="{_num(y + MARK_LANE_H - 2)}" '
                       f'text-anchor="end">anomalies</text>')
            out += self.marks(marks, y)
            y += MARK_LANE_H
        for kind in lane_kinds(windows):
            out.append(f'<text class="row-label" x="{LEFT - 4}" y="{_num(y + LANE_H - 1.5)}" '
                       f'text-anchor="end">{_e(kind)}</text>')
            for w in windows:
                if w.kind == kind:
                    x1, x2 = self.x(w.start_s), self.x(w.end_s)
                    out.append(f'<rect class="lane {fault_class(kind)}" x="{_num(x1)}" y="{_num(y + 1)}" '
                               f'width="{_num(max(x2 - x1, 1.0))}" height="{_num(LANE_H - 2)}">'
                               f'<title>{_e(w.detail)} ({w.start_s:.2f}–{w.end_s:.2f} s since the test started)'
                               f'</title></rect>')
            y += LANE_H
        return out, (y + 4 if y > top else y)

    def _merged(self, marks: Sequence[Mark]) -> list[tuple[Mark, int]]:
        """Marks merged by pixel column when there are more than MARKS_MAX: (first mark, how many)."""
        if len(marks) <= MARKS_MAX:
            return [(m, 1) for m in marks]
        width = 1.0
        while True:
            columns: dict[int, list[Mark]] = defaultdict(list)
            for m in marks:
                columns[int(self.x(m.start_s) / width)].append(m)
            if len(columns) <= MARKS_MAX:
                return [(ms[0], len(ms)) for _, ms in sorted(columns.items())]
            width *= 2

    def marks(self, marks: Sequence[Mark], top: float) -> list[str]:
        out = []
        for m, n in self._merged(marks):
            x1, x2 = self.x(m.start_s), self.x(m.end_s)
            more = f" (and {n - 1} more witnesses near this time)" if n > 1 else ""
            y = top + MARK_LANE_H / 2
            span = (f'<line class="mark-span" x1="{_num(x1)}" y1="{_num(y)}" x2="{_num(x2)}" y2="{_num(y)}"/>'
                    if x2 - x1 >= 2 else "")
            out.append(f'<a class="anomaly-mark" href="{_e(m.href)}" data-anomaly="{_e(m.anomaly)}" '
                       f'data-t="{m.start_s:.6f}"><title>{_e(m.title + more)}</title>{span}'
                       f'<path class="mark" d="M{_num(x1 - 4)} {_num(top + 1)}h8l-4 {_num(MARK_LANE_H - 3)}z"/></a>')
        return out

    def guides(self, marks: Sequence[Mark], top: float, bottom: float) -> list[str]:
        """A thin line through the plot area at each mark's start: one path for all of them."""
        if not marks:
            return []
        xs = sorted({round(self.x(m.start_s), 1) for m, _ in self._merged(marks)})
        d = "".join(f"M{_num(x)} {_num(top)}V{_num(bottom)}" for x in xs)
        return [f'<path class="mark-guide" d="{d}"/>']


def _tick_label(t: float) -> str:
    return f"{t:g}"


def _empty_plot(message: str, css_class: str) -> str:
    return (f'<svg class="plot {css_class}" viewBox="0 0 {WIDTH} 40" width="100%" role="img" aria-label="{_e(message)}">'
            f'<text class="empty" x="{WIDTH / 2}" y="24" text-anchor="middle">{_e(message)}</text></svg>')


def _process_sort_key(p: Any) -> tuple[int, Any]:
    if isinstance(p, int) and not isinstance(p, bool):
        return (0, p)
    return (1, str(p))


def timeline_svg(run: RunData, marks: Sequence[Mark] = ()) -> str:
    """One row per process, each op a bar from invocation to completion, coloured by completion type."""
    if not run.pairs and not run.windows:
        return _empty_plot("no operations recorded", "timeline")
    frame = _Frame(run.duration_s)
    processes = sorted({p.process for p in run.pairs}, key=_process_sort_key)
    top = 8.0
    lanes, rows_top = frame.lanes(run.windows, marks, top)
    row_h = max(1.0, min(14.0, 640.0 / max(1, len(processes))))
    rows_bottom = rows_top + row_h * len(processes)
    height = rows_bottom + 40
    row_of = {p: i for i, p in enumerate(processes)}
    out = [frame.svg_open(height, "timeline of operations per process", top, rows_bottom, "timeline")]
    out += frame.shade(run.windows, rows_top, rows_bottom)
    out += frame.time_axis(rows_bottom, top)
    out += lanes
    if processes:
        out.append(f'<text class="axis-label" transform="translate(12 {_num((rows_top + rows_bottom) / 2)}) '
                   f'rotate(-90)" text-anchor="middle">process</text>')
    label_every = max(1, math.ceil(9.0 / row_h))
    for p, i in row_of.items():
        if i % label_every == 0:
            y = rows_top + i * row_h + min(row_h, 11) - 1.5
            out.append(f'<text class="row-label" x="{LEFT - 4}" y="{_num(y)}" text-anchor="end">{_e(p)}</text>')
    if len(run.pairs) <= EXACT_TIMELINE_MAX:
        out += _timeline_exact(run, frame, row_of, rows_top, row_h)
        note = "one bar per operation; hover a bar for the op"
    else:
        columns = max(100, min(PLOT_WIDTH, GRID_CELL_BUDGET // max(1, len(processes))))
        out += _timeline_grid(run, frame, row_of, rows_top, row_h, columns)
        note = (f"{len(run.pairs)} operations drawn on a grid of {columns} time columns: each cell shows the worst "
                "completion in it (info over fail over ok)")
    out += frame.guides(marks, rows_top, rows_bottom)
    out.append("</svg>")
    return "".join(out) + f'<p class="plot-note">{_e(note)}</p>'


def _timeline_exact(run: RunData, frame: _Frame, row_of: dict[Any, int], rows_top: float, row_h: float) -> list[str]:
    out = []
    end_s = frame.duration_s
    bar_h = max(row_h - 1.0, 0.8)
    for pair in run.pairs:
        x1 = frame.x(pair.start_s)
        x2 = frame.x(pair.end_s if pair.end_s is not None else end_s)
        y = rows_top + row_of[pair.process] * row_h
        latency = pair.latency_ms
        detail = f"{latency:.1f} ms" if latency is not None else "no completion"
        index = pair.invoke.get("index")
        done = f' data-done="{_e(pair.complete.get("index"))}"' if pair.complete is not None else ""
        out.append(f'<rect class="op {pair.type if pair.type in OP_TYPES else "info"}" data-index="{_e(index)}"{done} '
                   f'x="{_num(x1)}" y="{_num(y)}" width="{_num(max(x2 - x1, 1.0))}" height="{_num(bar_h)}">'
                   f'<title>op {_e(index)}: process {_e(pair.process)} {_e(pair.invoke.get("f"))} '
                   f'{_e(pair.type)}, {detail}</title></rect>')
    return out


def _timeline_grid(run: RunData, frame: _Frame, row_of: dict[Any, int], rows_top: float, row_h: float,
                   columns: int) -> list[str]:
    col_w = PLOT_WIDTH / columns
    cells: dict[tuple[int, int], str] = {}
    end_s = frame.duration_s
    for pair in run.pairs:
        row = row_of[pair.process]
        c1 = min(columns - 1, int((frame.x(pair.start_s) - LEFT) / col_w))
        c2 = min(columns - 1, int((frame.x(pair.end_s if pair.end_s is not None else end_s) - LEFT) / col_w))
        kind = pair.type if pair.type in _TYPE_RANK else "info"
        for c in range(c1, c2 + 1):
            current = cells.get((row, c))
            if current is None or _TYPE_RANK[kind] > _TYPE_RANK[current]:
                cells[(row, c)] = kind
    # Run-length encode each row, then draw every run of one type in one path.
    paths: dict[str, list[str]] = defaultdict(list)
    by_row: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for (row, c), kind in cells.items():
        by_row[row].append((c, kind))
    bar_h = max(row_h - 1.0, 0.8)
    for row, items in by_row.items():
        items.sort()
        start_c, kind, last_c = items[0][0], items[0][1], items[0][0]
        for c, k in items[1:] + [(None, None)]:
            if c is not None and k == kind and c == last_c + 1:
                last_c = c
                continue
            y = rows_top + row * row_h + bar_h / 2
            paths[kind].append(f"M{_num(LEFT + start_c * col_w)} {_num(y)}h{_num((last_c - start_c + 1) * col_w)}")
            if c is not None:
                start_c, kind, last_c = c, k, c
    return [f'<path class="op-path {kind}" stroke-width="{_num(bar_h)}" d="{"".join(segments)}"/>'
            for kind, segments in sorted(paths.items(), key=lambda kv: _TYPE_RANK[kv[0]])]


def latency_svg(run: RunData, marks: Sequence[Mark] = ()) -> str:
    """Latency of every completed op (ms, log scale) at its invocation time."""
    points = [(p.start_s, p.latency_ms, p.type) for p in run.pairs if p.latency_ms is not None]
    if not points:
        return _empty_plot("no completed operations: no latencies to plot", "latency")
    frame = _Frame(run.duration_s)
    lo_ms = max(1e-3, min(ms for _, ms, _ in points if ms > 0) if any(ms > 0 for _, ms, _ in points) else 1.0)
    hi_ms = max(ms for _, ms, _ in points)
    log_lo = math.floor(math.log10(lo_ms))
    log_hi = max(log_lo + 1, math.ceil(math.log10(max(hi_ms, lo_ms))))
    lanes, top = frame.lanes(run.windows, marks, 8.0)
    plot_h = 260.0
    bottom = top + plot_h

    def y_of(ms: float) -> float:
        v = math.log10(max(ms, 10.0 ** log_lo))
        return bottom - (v - log_lo) / (log_hi - log_lo) * plot_h

    out = [frame.svg_open(bottom + 40, "latency of each operation in milliseconds", top, bottom, "latency")]
    out += frame.shade(run.windows, top, bottom)
    out += frame.time_axis(bottom, top)
    out += lanes
    for power in range(log_lo, log_hi + 1):
        y = y_of(10.0 ** power)
        out.append(f'<line class="grid" x1="{LEFT}" y1="{_num(y)}" x2="{LEFT + PLOT_WIDTH}" y2="{_num(y)}"/>')
        out.append(f'<text class="tick" x="{LEFT - 4}" y="{_num(y + 4)}" text-anchor="end">{10.0 ** power:g}</text>')
    out.append(f'<text class="axis-label" transform="translate(14 {_num((top + bottom) / 2)}) rotate(-90)" '
               f'text-anchor="middle">latency (ms)</text>')
    placed = [(frame.x(t), y_of(ms), kind) for t, ms, kind in points]
    cell = 1.0
    while True:
        seen: dict[tuple[int, int, str], tuple[float, float]] = {}
        for x, y, kind in placed:
            seen.setdefault((int(x / cell), int(y / cell), kind), (x, y))
        if len(seen) <= ELEMENT_BUDGET or cell >= 16:
            break
        cell *= 2
    paths: dict[str, list[str]] = defaultdict(list)
    for (_, _, kind), (x, y) in seen.items():
        paths[kind].append(f"M{_num(x)} {_num(y)}h0")
    for kind in ("ok", "fail", "info"):
        if paths.get(kind):
            out.append(f'<path class="dots {kind}" d="{"".join(paths[kind])}"/>')
    out += frame.guides(marks, top, bottom)
    out.append("</svg>")
    note = f"{len(points)} completed operations"
    if cell > 1:
        note += f"; drawn as one dot per {cell:g}×{cell:g} cell"
    return "".join(out) + f'<p class="plot-note">{_e(note)}</p>'


def throughput_svg(run: RunData, marks: Sequence[Mark] = ()) -> str:
    """Completions per second over time, one line per completion type."""
    completed = [p for p in run.pairs if p.end_s is not None]
    if not completed:
        return _empty_plot("no completed operations: no throughput to plot", "throughput")
    frame = _Frame(run.duration_s)
    buckets = max(1, min(200, int(frame.duration_s / 0.1)))
    bucket_s = frame.duration_s / buckets
    counts: dict[str, list[int]] = {k: [0] * buckets for k in ("ok", "fail", "info")}
    for p in completed:
        kind = p.type if p.type in counts else "info"
        counts[kind][min(buckets - 1, int(p.end_s / bucket_s))] += 1
    peak = max(max(v) for v in counts.values()) / bucket_s
    lanes, top = frame.lanes(run.windows, marks, 8.0)
    plot_h = 200.0
    bottom = top + plot_h
    y_ticks = nice_ticks(0.0, max(peak, 1.0), 5)
    y_max = max(y_ticks[-1], peak, 1.0)

    def y_of(rate: float) -> float:
        return bottom - rate / y_max * plot_h

    out = [frame.svg_open(bottom + 40, "throughput in operations per second by completion type", top, bottom,
                          "throughput")]
    out += frame.shade(run.windows, top, bottom)
    out += frame.time_axis(bottom, top)
    out += lanes
    for v in y_ticks:
        y = y_of(v)
        out.append(f'<line class="grid" x1="{LEFT}" y1="{_num(y)}" x2="{LEFT + PLOT_WIDTH}" y2="{_num(y)}"/>')
        out.append(f'<text class="tick" x="{LEFT - 4}" y="{_num(y + 4)}" text-anchor="end">{v:g}</text>')
    out.append(f'<text class="axis-label" transform="translate(14 {_num((top + bottom) / 2)}) rotate(-90)" '
               f'text-anchor="middle">ops/s</text>')
    for kind in ("ok", "fail", "info"):
        values = counts[kind]
        if not any(values):
            continue
        pts = " ".join(f"{_num(frame.x((i + 0.5) * bucket_s))},{_num(y_of(n / bucket_s))}" for i, n in enumerate(values))
        out.append(f'<polyline class="line {kind}" points="{pts}"><title>{kind} completions per second</title></polyline>')
    out += frame.guides(marks, top, bottom)
    out.append("</svg>")
    return "".join(out) + f'<p class="plot-note">{_e(f"completions per {bucket_s * 1000:.0f} ms bucket, as ops/s")}</p>'

