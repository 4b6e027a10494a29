"""Per-partition offset maps: every offset of every key, coloured by what became of its message.

The facts come from the history (which ok send acknowledged a value at an
offset, which ok poll read it); the judgements come only from the checker's
witnesses in results.json (`lost-write`, `duplicate`, `unseen`, `G1a`,
`inconsistent-offsets` and the ordering anomalies), so the map shows what the
checker said and never decides anything itself.

Statuses, worst first: `lost` (a lost-write witness), `inconsistent` (several values at one offset),
`duplicate`, `aborted-read` (G1a), `reordered` (a value named by a poll-skip,
nonmonotonic or internal ordering witness), `unseen`, `unread` (acknowledged
and never read, with no witness: e.g. past the last poll), `read-unacked`
(read, but its send was not acknowledged), `ok` (acknowledged and read),
`empty` (no message known at that offset: a transaction marker, or never
read). A witness under `allowed` (the mode permits it) gets the same colour,
lighter. A value keeps every anomaly status its witnesses give it, and a cell
shows every anomaly status of the values in it, as stacked stripes, worst on
top (an offset both lost and inconsistent shows both); a cell with no
anomaly shows the worst of its plain statuses.

Each key's map has an offset axis: the label left of a row is the first
offset of that row, the scale above the cells counts offsets from it.

Invariants: at most `CELL_BUDGET` cells over all keys (a split cell draws one
element per anomaly status in it); when a key spans more
offsets than its share, consecutive offsets merge into one cell showing the
worst status among them. At most `TITLED_CELLS_MAX` cells per key carry a
hover title (the worst ones); the others share one path per colour. Every
user value is escaped.

Thread-safety: pure functions.

Sources: jepsen.tests.kafka's version orders and its `lost-write`,
`duplicate` and `unseen` anomaly definitions (Kingsbury, 2022).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Mapping
from html import escape
from typing import Any

from reports.run_data import RunData

__all__ = ["ANOMALY_STATUSES", "CELL_BUDGET", "OFFSET_CSS", "STATUSES", "STATUS_COLOURS", "STATUS_TEXT",
           "offset_maps_html"]

CELL_BUDGET = 6000
TITLED_CELLS_MAX = 400  # per key
STATUSES = ("lost", "inconsistent", "duplicate", "aborted-read", "reordered", "unseen", "unread", "read-unacked",
            "ok", "empty")
STATUS_TEXT = {
    "lost": "lost: acknowledged, then missing below the highest offset read (lost-write)",
    "inconsistent": "several values at one offset (inconsistent-offsets)",
    "duplicate": "the same value at several offsets (duplicate)",
    "aborted-read": "read although its send failed (G1a)",
    "reordered": "skipped by a poll, or read or sent out of log order (poll-skip, nonmonotonic-*)",
    "unseen": "acknowledged, never read (unseen)",
    "unread": "acknowledged, not read, no anomaly reported",
    "read-unacked": "read, but its send was never acknowledged",
    "ok": "acknowledged and read",
    "empty": "no message known at this offset",
}
STATUS_COLOURS = {"lost": "#c92a2a", "inconsistent": "#862e9c", "duplicate": "#e64980", "aborted-read": "#3b5bdb",
                  "reordered": "#f59f00", "unseen": "#ff922b", "unread": "#ffd8a8", "read-unacked": "#74c0fc",
                  "ok": "#8ce99a", "empty": "#f1f3f5"}
ANOMALY_STATUSES = STATUSES[:6]  # the statuses a witness gives; the others are plain facts of the history
_RANK = {s: i for i, s in enumerate(STATUSES)}
OFFSET_CSS = "".join(f".om-{s}{{fill:{c};background:{c};stroke:{c}}}" for s, c in STATUS_COLOURS.items()) + "".join(
    f".allowed.om-{s}," for s in ANOMALY_STATUSES).rstrip(",") + "{opacity:.45}" + (
    "path.cells{fill:none}svg.offset-map{display:block;max-width:1060px}svg.offset-map text{font-size:9px}"
    ".swatch.split{background:linear-gradient(#c92a2a 50%,#862e9c 50%)}")
_REORDER_ANOMALIES = ("poll-skip", "nonmonotonic-poll", "nonmonotonic-send", "int-poll-skip",
                      "int-nonmonotonic-poll", "int-send-skip", "int-nonmonotonic-send")
CELLS_PER_ROW = 100
CELL_PX = 10
AXIS_LEFT = 56  # room for the row labels (first offset of each row)
AXIS_TOP = 12  # room for the scale above the cells


def _e(x: Any) -> str:
    return escape(str(x), quote=True)


def norm_key(k: Any) -> str:
    """A key as one string, whether the history wrote it as 2 or "2" (JSON map keys are strings)."""
    if isinstance(k, bool):
        return str(k)
    if isinstance(k, str):
        body = k[1:] if k[:1] == "-" else k
        return str(int(k)) if body.isdigit() else k
    if isinstance(k, (list, tuple)):
        return json.dumps(k, separators=(",", ":"))
    return str(k)


def _vkey(v: Any) -> str:
    # Values are almost always ints or strings: key those without a JSON round trip.
    if type(v) is int:
        return f"i{v}"
    if type(v) is str:
        return "s" + v
    return "j" + json.dumps(v, sort_keys=True, separators=(",", ":"), default=str)


def _show(v: Any, limit: int = 60) -> str:
    text = json.dumps(v, separators=(",", ":"), default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _KeyMap:
    def __init__(self) -> None:
        self.offsets: dict[int, set[str]] = defaultdict(set)
        self.values: dict[str, Any] = {}
        self.acked_by: dict[str, Any] = {}
        self.sent_unacked: dict[str, Any] = {}
        self.read_by: dict[str, Any] = {}
        self.status: dict[str, dict[str, bool]] = {}  # value -> {anomaly status: allowed}
        self.no_offset: set[str] = set()


def _collect(run: RunData) -> dict[str, _KeyMap]:
    keys: dict[str, _KeyMap] = defaultdict(_KeyMap)
    for pair in run.pairs:
        done = pair.complete
        if done is None or not isinstance(done.get("value"), list):
            continue
        kind = done.get("type")
        for mop in done["value"]:
            if not isinstance(mop, list) or not mop:
                continue
            if mop[0] == "send" and len(mop) == 3:
                km = keys[norm_key(mop[1])]
                v = mop[2]
                offset = None
                if isinstance(v, list) and len(v) == 2:
                    offset, v = v
                vk = _vkey(v)
                if kind == "ok":
                    km.values.setdefault(vk, v)
                    km.acked_by.setdefault(vk, done.get("index"))
                    if isinstance(offset, int) and not isinstance(offset, bool):
                        km.offsets[offset].add(vk)
                    else:
                        km.no_offset.add(vk)
                else:
                    km.sent_unacked.setdefault(vk, done.get("index"))
            elif mop[0] == "poll" and len(mop) >= 2 and isinstance(mop[1], Mapping) and kind == "ok":
                for raw_key, entries in mop[1].items():
                    km = keys[norm_key(raw_key)]
                    for entry in entries or ():
                        if not isinstance(entry, list) or len(entry) != 2:
                            continue
                        offset, v = entry
                        vk = _vkey(v)
                        km.values.setdefault(vk, v)
                        km.read_by.setdefault(vk, done.get("index"))
                        if isinstance(offset, int) and not isinstance(offset, bool):
                            km.offsets[offset].add(vk)
    return keys


def _mark(km: _KeyMap, v: Any, status: str, allowed: bool) -> None:
    vk = _vkey(v)
    km.values.setdefault(vk, v)
    statuses = km.status.setdefault(vk, {})
    statuses[status] = statuses.get(status, True) and allowed  # reported anywhere beats allowed


def _apply_witnesses(run: RunData, keys: dict[str, _KeyMap]) -> None:
    for _, result in run.checker_results():
        for bucket, allowed in (("anomalies", False), ("allowed", True)):
            groups = result.get(bucket)
            if not isinstance(groups, Mapping):
                continue
            for name, witnesses in groups.items():
                if not isinstance(witnesses, list):
                    continue
                for w in witnesses:
                    if isinstance(w, Mapping) and "key" in w:
                        _apply_one(keys[norm_key(w["key"])], str(name), w, allowed)


def _apply_one(km: _KeyMap, name: str, w: Mapping[str, Any], allowed: bool) -> None:
    if name == "lost-write" and "value" in w:
        _mark(km, w["value"], "lost", allowed)
    elif name == "duplicate" and "value" in w:
        _mark(km, w["value"], "duplicate", allowed)
        for offset in w.get("offsets") or ():
            if isinstance(offset, int):
                km.offsets[offset].add(_vkey(w["value"]))
    elif name == "unseen":
        for v in w.get("values") or ():
            _mark(km, v, "unseen", allowed)
    elif name == "G1a" and "value" in w:
        _mark(km, w["value"], "aborted-read", allowed)
    elif name == "inconsistent-offsets":
        for v in w.get("values") or ():
            _mark(km, v, "inconsistent", allowed)
    elif name in _REORDER_ANOMALIES:
        # A skip marks the messages jumped over; a step backwards marks the message read or sent out of order.
        values = list(w.get("values") or ())
        marked = list(w.get("skipped") or ()) if "skip" in name else values[1:2]
        for v in marked:
            _mark(km, v, "reordered", allowed)


def _value_statuses(km: _KeyMap, vk: str) -> dict[str, bool]:
    """{status: allowed}: the value's anomaly statuses, or its one plain status."""
    if km.status.get(vk):
        return km.status[vk]
    acked = vk in km.acked_by
    read = vk in km.read_by
    if acked and read:
        return {"ok": False}
    if acked:
        return {"unread": False}
    return {"read-unacked": False}


def _cell_statuses(statuses: list[dict[str, bool]]) -> list[tuple[str, bool]]:
    """A cell's stripes, worst first: every anomaly status of its values, or else their worst plain status."""
    merged: dict[str, bool] = {}
    for d in statuses:
        for status, allowed in d.items():
            merged[status] = merged.get(status, True) and allowed
    if not merged:
        return [("empty", False)]
    anomalies = sorted((s for s in merged if s in ANOMALY_STATUSES), key=_RANK.__getitem__)
    if anomalies:
        return [(s, merged[s]) for s in anomalies]
    worst = min(merged, key=_RANK.__getitem__)
    return [(worst, merged[worst])]


def _describe(km: _KeyMap, vk: str) -> str:
    statuses = [s for s in km.status.get(vk, {}) if s in ANOMALY_STATUSES]
    parts = [_show(km.values.get(vk, vk)) + (f" ({', '.join(sorted(statuses, key=_RANK.__getitem__))})"
                                             if statuses else "")]
    if vk in km.acked_by:
        parts.append(f"acknowledged by op {km.acked_by[vk]}")
    elif vk in km.sent_unacked:
        parts.append(f"sent by op {km.sent_unacked[vk]}, not acknowledged")
    if vk in km.read_by:
        parts.append(f"first read by op {km.read_by[vk]}")
    else:
        parts.append("never read")
    return ", ".join(parts)


def _key_sort(k: str) -> tuple[int, Any]:
    body = k[1:] if k[:1] == "-" else k
    return (0, int(k)) if body.isdigit() else (1, k)


def offset_maps_html(run: RunData) -> str:
    """The offset-map section body: one strip per key, plus a legend."""
    keys = _collect(run)
    _apply_witnesses(run, keys)
    keys = {k: km for k, km in keys.items() if km.offsets or km.no_offset or km.status}
    if not keys:
        return '<p class="empty">No send or poll with offsets in the history: nothing to map.</p>'
    per_key_budget = max(200, CELL_BUDGET // len(keys))
    out = [_legend()]
    for k in sorted(keys, key=_key_sort):
        out.append(_key_strip(k, keys[k], per_key_budget))
    return "".join(out)


def _legend() -> str:
    items = "".join(f'<span class="legend-item"><span class="swatch om-{s}"></span>{_e(STATUS_TEXT[s])}</span>'
                    for s in STATUSES)
    return (f'<div class="legend">{items}<span class="legend-item"><span class="swatch om-lost allowed"></span>'
            'lighter: allowed by the delivery mode</span><span class="legend-item"><span class="swatch split"></span>'
            'stripes: every anomaly at that offset, worst on top (here lost and inconsistent)</span></div>'
            '<p class="plot-note">Each row holds 100 cells; the number left of a row is the first offset in it, and '
            'the scale above counts offsets from there. Hover a cell for its values and ops.</p>')


_Cell = tuple[list[tuple[str, bool]], str]  # (stripes worst first, title)


def _key_strip(k: str, km: _KeyMap, budget: int) -> str:
    counts: dict[str, int] = defaultdict(int)
    value_statuses = {vk: _value_statuses(km, vk) for vk in km.values}
    for statuses in value_statuses.values():
        for status in statuses:
            counts[status] += 1
    placed = {vk for vks in km.offsets.values() for vk in vks}
    unplaced = sorted((vk for vk in km.values if vk not in placed),
                      key=lambda vk: min(_RANK[s] for s in value_statuses[vk]))
    if km.offsets:
        lo, hi = min(km.offsets), max(km.offsets)
    else:
        lo, hi = 0, -1
    span = hi - lo + 1
    per_cell = max(1, math.ceil(span / budget)) if span > 0 else 1
    cells: list[_Cell] = []
    detailed = span <= budget
    for start in range(lo, hi + 1, per_cell):
        end = min(hi, start + per_cell - 1)
        members = [(offset, vk) for offset in range(start, end + 1) for vk in sorted(km.offsets.get(offset, ()))]
        stripes = _cell_statuses([value_statuses[vk] for _, vk in members])
        worst = stripes[0][0]
        where = f"offset {start}" if start == end else f"offsets {start}–{end}"
        if worst in ("ok", "empty") and not detailed:
            title = ""  # keep big maps small: only cells worth a look get a title
        elif per_cell == 1:
            title = f"{where}: " + ("; ".join(_describe(km, vk) for _, vk in members) or STATUS_TEXT["empty"])
        else:
            title = f"{where}: {len(members)} values; " + "; ".join(STATUS_TEXT[s] for s, _ in stripes)
        cells.append((stripes, title))
    extra: list[_Cell] = []
    for vk in unplaced:
        stripes = _cell_statuses([value_statuses[vk]])
        extra.append((stripes, f"no known offset: {_describe(km, vk)}"))
    every = cells + extra
    if len(every) > TITLED_CELLS_MAX:
        # Hover titles cost bytes: keep them for the worst cells only.
        titled = sorted((i for i, c in enumerate(every) if c[1]), key=lambda i: (_RANK[every[i][0][0][0]], i))
        keep = set(titled[:TITLED_CELLS_MAX])
        every = [c if i in keep else (c[0], "") for i, c in enumerate(every)]
        cells, extra = every[: len(cells)], every[len(cells):]
    summary = ", ".join(f"{counts[s]} {s}" for s in STATUSES if counts.get(s))
    heading = (f'<h3 class="key-heading">key {_e(k)}</h3><p class="key-summary">'
               + (f"offsets {lo}–{hi}" if hi >= lo else "no offsets")
               + (f", {per_cell} offsets per cell" if per_cell > 1 else "")
               + (f", {len(unplaced)} value(s) without a known offset in the last row" if unplaced else "")
               + f" · {_e(summary)}</p>")
    return heading + _cells_svg(k, cells, extra, lo, per_cell)


def _cells_svg(k: str, cells: list[_Cell], extra: list[_Cell], lo: int, per_cell: int) -> str:
    rows = math.ceil(len(cells) / CELLS_PER_ROW)
    extra_rows = math.ceil(len(extra) / CELLS_PER_ROW)
    height = AXIS_TOP + (rows + extra_rows) * CELL_PX + 2
    width = AXIS_LEFT + CELLS_PER_ROW * CELL_PX + 2
    out = [f'<svg class="offset-map" data-key="{_e(k)}" viewBox="0 0 {width} {height}" '
           f'width="100%" role="img" aria-label="offset map of key {_e(k)}">']
    # The axis: "offset" over the row labels, a scale of +0 … +90 cells (times per_cell offsets) above.
    out.append(f'<text class="axis-label" x="{AXIS_LEFT - 4}" y="{AXIS_TOP - 3}" text-anchor="end">offset</text>')
    for c in range(0, CELLS_PER_ROW, 10):
        x = AXIS_LEFT + 1 + c * CELL_PX
        out.append(f'<text class="tick" x="{x}" y="{AXIS_TOP - 3}">+{c * per_cell}</text>')
    for r in range(rows):
        y = AXIS_TOP + 1 + r * CELL_PX + CELL_PX - 2
        out.append(f'<text class="tick" x="{AXIS_LEFT - 4}" y="{y}" text-anchor="end">'
                   f'{lo + r * CELLS_PER_ROW * per_cell}</text>')
    if extra:
        y = AXIS_TOP + 1 + rows * CELL_PX + CELL_PX - 2
        out.append(f'<text class="tick" x="{AXIS_LEFT - 4}" y="{y}" text-anchor="end">no offset</text>')
    plain: dict[tuple[str, bool, int, int], list[str]] = defaultdict(list)
    size = CELL_PX - 1
    placed = [(i, c) for i, c in enumerate(cells)] + [(rows * CELLS_PER_ROW + i, c) for i, c in enumerate(extra)]
    for i, (stripes, title) in placed:
        x = AXIS_LEFT + 1 + (i % CELLS_PER_ROW) * CELL_PX
        y = AXIS_TOP + 1 + (i // CELLS_PER_ROW) * CELL_PX
        n = len(stripes)
        if title:
            rects = []
            for j, (status, allowed) in enumerate(stripes):
                css = f"om-{status}" + (" allowed" if allowed else "")
                inner = f"<title>{_e(title)}</title>" if n == 1 else ""
                rects.append(f'<rect class="{css}" x="{x}" y="{_num(y + j * size / n)}" width="{size}" '
                             f'height="{_num(size / n)}">{inner}</rect>')
            out.append(rects[0] if n == 1 else f'<g class="split"><title>{_e(title)}</title>{"".join(rects)}</g>')
        else:
            # Untitled cells of one colour share one path: one element for thousands of cells.
            for j, (status, allowed) in enumerate(stripes):
                plain[(status, allowed, n, j)].append(f"M{x} {_num(y + (j + 0.5) * size / n)}h{size}")
    for (status, allowed, n, _), segments in plain.items():
        css = f"om-{status}" + (" allowed" if allowed else "")
        out.append(f'<path class="cells {css}" stroke-width="{_num(size / n)}" d="{"".join(segments)}"/>')
    out.append("</svg>")
    return "".join(out)


def _num(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".")
