"""Hand-drawn SVG plots of a run: the op timeline, latencies and throughput.

Every plot shares one horizontal geometry (same width, margins and time axis),
so the nemesis bands line up from one plot to the next, and every plot shades
the nemesis fault windows in the colour of their fault kind.

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
from collections.abc import Iterable
from html import escape
from typing import Any

from reports.run_data import FaultWindow, RunData

__all__ = ["ELEMENT_BUDGET", "KNOWN_FAULT_KINDS", "OP_TYPES", "fault_class", "latency_svg", "nice_ticks",
           "throughput_svg", "timeline_svg"]

WIDTH = 1000
LEFT = 84
RIGHT = 16
PLOT_WIDTH = WIDTH - LEFT - RIGHT
ELEMENT_BUDGET = 6000
EXACT_TIMELINE_MAX = 4000  # above this many ops the timeline is drawn from a grid
GRID_CELL_BUDGET = 40000  # process rows × time columns of that grid
OP_TYPES = ("ok", "fail", "info", "pending")
_TYPE_RANK = {"ok": 0, "pending": 1, "fail": 2, "info": 3}
KNOWN_FAULT_KINDS = ("partition", "kill", "pause", "disk", "clock", "packet")


def fault_class(kind: str) -> str:
    """The CSS class of a fault kind; every kind not known yet shares the fallback colour."""
    return f"fk-{kind}" if kind in KNOWN_FAULT_KINDS else "fk-other"


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

    def bands(self, windows: Iterable[FaultWindow], top: float, bottom: float) -> list[str]:
        out = []
        for w in windows:
            x1, x2 = self.x(w.start_s), self.x(w.end_s)
            out.append(f'<rect class="band {fault_class(w.kind)}" x="{_num(x1)}" y="{_num(top)}" '
                       f'width="{_num(max(x2 - x1, 1.0))}" height="{_num(bottom - top)}">'
                       f'<title>{_e(w.kind)} {w.start_s:.3f}–{w.end_s:.3f} s: {_e(w.detail)}</title></rect>')
        return out


def _tick_label(t: float) -> str:
    return f"{t:g}"


def _empty_plot(message: str, css_class: str) -> str:
    return (f'<svg class="plot {css_class}" viewBox="0 0 {WIDTH} 40" width="100%" role="img" aria-label="{_e(message)}">'
            f'<text class="empty" x="{WIDTH / 2}" y="24" text-anchor="middle">{_e(message)}</text></svg>')


def _process_sort_key(p: Any) -> tuple[int, Any]:
    if isinstance(p, int) and not isinstance(p, bool):
        return (0, p)
    return (1, str(p))


def timeline_svg(run: RunData) -> str:
    """One row per process, each op a bar from invocation to completion, coloured by completion type."""
    if not run.pairs and not run.windows:
        return _empty_plot("no operations recorded", "timeline")
    frame = _Frame(run.duration_s)
    processes = sorted({p.process for p in run.pairs}, key=_process_sort_key)
    kinds = list(dict.fromkeys(w.kind for w in run.windows))
    lane_h = 9.0
    top = 8.0
    lanes_bottom = top + lane_h * len(kinds) + (4 if kinds else 0)
    row_h = max(1.0, min(14.0, 640.0 / max(1, len(processes))))
    rows_top = lanes_bottom
    rows_bottom = rows_top + row_h * len(processes)
    height = rows_bottom + 40
    row_of = {p: i for i, p in enumerate(processes)}
    out = [frame.svg_open(height, "timeline of operations per process", top, rows_bottom, "timeline")]
    out += frame.bands(run.windows, rows_top, rows_bottom)
    out += frame.time_axis(rows_bottom, top)
    # One lane per fault kind: solid bars, so overlapping faults stay visible.
    for lane, kind in enumerate(kinds):
        y = top + lane * lane_h
        out.append(f'<text class="row-label" x="{LEFT - 4}" y="{_num(y + lane_h - 1.5)}" text-anchor="end">{_e(kind)}</text>')
        for w in run.windows:
            if w.kind == kind:
                x1, x2 = frame.x(w.start_s), frame.x(w.end_s)
                out.append(f'<rect class="lane {fault_class(kind)}" x="{_num(x1)}" y="{_num(y + 1)}" '
                           f'width="{_num(max(x2 - x1, 1.0))}" height="{_num(lane_h - 2)}">'
                           f'<title>{_e(w.detail)} ({w.start_s:.3f}–{w.end_s:.3f} s)</title></rect>')
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


def latency_svg(run: RunData) -> str:
    """Latency of every completed op (ms, log scale) at its invocation time."""
    points = [(p.start_s, p.latency_ms, p.type) for p in run.pairs if p.latency_ms is not None]
    if not points:
        return _empty_plot("no completed operations: no latencies to plot", "latency")
    frame = _Frame(run.duration_s)
    lo_ms = max(1e-3, min(ms for _, ms, _ in points if ms > 0) if any(ms > 0 for _, ms, _ in points) else 1.0)
    hi_ms = max(ms for _, ms, _ in points)
    log_lo = math.floor(math.log10(lo_ms))
    log_hi = max(log_lo + 1, math.ceil(math.log10(max(hi_ms, lo_ms))))
    top, plot_h = 10.0, 260.0
    bottom = top + plot_h

    def y_of(ms: float) -> float:
        v = math.log10(max(ms, 10.0 ** log_lo))
        return bottom - (v - log_lo) / (log_hi - log_lo) * plot_h

    out = [frame.svg_open(bottom + 40, "latency of each operation in milliseconds", top, bottom, "latency")]
    out += frame.bands(run.windows, top, bottom)
    out += frame.time_axis(bottom, top)
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
    out.append("</svg>")
    note = f"{len(points)} completed operations"
    if cell > 1:
        note += f"; drawn as one dot per {cell:g}×{cell:g} cell"
    return "".join(out) + f'<p class="plot-note">{_e(note)}</p>'


def throughput_svg(run: RunData) -> str:
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
    top, plot_h = 10.0, 200.0
    bottom = top + plot_h
    y_ticks = nice_ticks(0.0, max(peak, 1.0), 5)
    y_max = max(y_ticks[-1], peak, 1.0)

    def y_of(rate: float) -> float:
        return bottom - rate / y_max * plot_h

    out = [frame.svg_open(bottom + 40, "throughput in operations per second by completion type", top, bottom,
                          "throughput")]
    out += frame.bands(run.windows, top, bottom)
    out += frame.time_axis(bottom, top)
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
    out.append("</svg>")
    return "".join(out) + f'<p class="plot-note">{_e(f"completions per {bucket_s * 1000:.0f} ms bucket, as ops/s")}</p>'

