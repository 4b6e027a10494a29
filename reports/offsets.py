"""Per-partition offset maps: every offset of every key, coloured by what became of its message.

The facts come from the history (which ok send acknowledged a value at an
offset, which ok poll read it); the judgements come only from the checker's
witnesses in results.json (`lost-write`, `duplicate`, `unseen`, `G1a`,
`inconsistent-offsets` and the ordering anomalies), so the map shows what the
checker said and never decides anything itself.

Statuses, worst first (an offset shows the worst status of its values):
`lost` (a lost-write witness), `inconsistent` (several values at one offset),
`duplicate`, `aborted-read` (G1a), `reordered` (a value named by a poll-skip,
nonmonotonic or internal ordering witness), `unseen`, `unread` (acknowledged
and never read, with no witness: e.g. past the last poll), `read-unacked`
(read, but its send was not acknowledged), `ok` (acknowledged and read),
`empty` (no message known at that offset: a transaction marker, or never
read). A witness under `allowed` (the mode permits it) gets the same colour,
lighter.

Invariants: at most `CELL_BUDGET` cells over all keys; when a key spans more
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

__all__ = ["CELL_BUDGET", "STATUSES", "STATUS_TEXT", "offset_maps_html"]

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
_RANK = {s: i for i, s in enumerate(STATUSES)}
_REORDER_ANOMALIES = ("poll-skip", "nonmonotonic-poll", "nonmonotonic-send", "int-poll-skip",
                      "int-nonmonotonic-poll", "int-send-skip", "int-nonmonotonic-send")
CELLS_PER_ROW = 100
CELL_PX = 10


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
        self.status: dict[str, tuple[str, bool]] = {}  # value -> (status, allowed)
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
    current = km.status.get(vk)
    if current is None or _RANK[status] < _RANK[current[0]] or (_RANK[status] == _RANK[current[0]] and not allowed):
        km.status[vk] = (status, allowed)


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


def _value_status(km: _KeyMap, vk: str) -> tuple[str, bool]:
    if vk in km.status:
        return km.status[vk]
    acked = vk in km.acked_by
    read = vk in km.read_by
    if acked and read:
        return "ok", False
    if acked:
        return "unread", False
    return "read-unacked", False


def _describe(km: _KeyMap, vk: str) -> str:
    parts = [_show(km.values.get(vk, vk))]
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
    return f'<div class="legend">{items}<span class="legend-item"><span class="swatch om-lost allowed"></span>' \
           f'lighter: allowed by the delivery mode</span></div>'


def _key_strip(k: str, km: _KeyMap, budget: int) -> str:
    counts: dict[str, int] = defaultdict(int)
    value_status = {vk: _value_status(km, vk) for vk in km.values}
    for vk, (status, _) in value_status.items():
        counts[status] += 1
    placed = {vk for vks in km.offsets.values() for vk in vks}
    unplaced = sorted((vk for vk in km.values if vk not in placed), key=lambda vk: _RANK[value_status[vk][0]])
    if km.offsets:
        lo, hi = min(km.offsets), max(km.offsets)
    else:
        lo, hi = 0, -1
    span = hi - lo + 1
    per_cell = max(1, math.ceil(span / budget)) if span > 0 else 1
    cells: list[tuple[str, bool, str]] = []  # (status, allowed, title)
    detailed = span <= budget
    for start in range(lo, hi + 1, per_cell):
        end = min(hi, start + per_cell - 1)
        worst, worst_allowed, members = "empty", False, []
        for offset in range(start, end + 1):
            for vk in km.offsets.get(offset, ()):
                status, allowed = value_status[vk]
                members.append((offset, vk))
                if _RANK[status] < _RANK[worst] or (status == worst and not allowed):
                    worst, worst_allowed = status, allowed
        if start == end:
            where = f"offset {start}"
        else:
            where = f"offsets {start}–{end}"
        if worst in ("ok", "empty") and not detailed:
            title = ""  # keep big maps small: only cells worth a look get a title
        elif per_cell == 1:
            title = f"{where}: " + ("; ".join(_describe(km, vk) for _, vk in members) or STATUS_TEXT["empty"])
        else:
            title = f"{where}: {len(members)} values, worst: {STATUS_TEXT[worst]}"
        cells.append((worst, worst_allowed, title))
    for vk in unplaced:
        status, allowed = value_status[vk]
        cells.append((status, allowed, f"no known offset: {_describe(km, vk)}"))
    if len(cells) > TITLED_CELLS_MAX:
        # Hover titles cost bytes: keep them for the worst cells only.
        titled = sorted((i for i, c in enumerate(cells) if c[2]), key=lambda i: (_RANK[cells[i][0]], i))
        keep = set(titled[:TITLED_CELLS_MAX])
        cells = [c if i in keep else (c[0], c[1], "") for i, c in enumerate(cells)]
    summary = ", ".join(f"{counts[s]} {s}" for s in STATUSES if counts.get(s))
    heading = (f'<h3 class="key-heading">key {_e(k)}</h3><p class="key-summary">'
               + (f"offsets {lo}–{hi}" if hi >= lo else "no offsets")
               + (f", {per_cell} offsets per cell" if per_cell > 1 else "")
               + (f", {len(unplaced)} value(s) without a known offset at the end" if unplaced else "")
               + f" · {_e(summary)}</p>")
    return heading + _cells_svg(k, cells)


def _cells_svg(k: str, cells: list[tuple[str, bool, str]]) -> str:
    rows = math.ceil(len(cells) / CELLS_PER_ROW)
    height = rows * CELL_PX + 2
    out = [f'<svg class="offset-map" data-key="{_e(k)}" viewBox="0 0 {CELLS_PER_ROW * CELL_PX + 2} {height}" '
           f'width="100%" role="img" aria-label="offset map of key {_e(k)}">']
    plain: dict[tuple[str, bool], list[str]] = defaultdict(list)
    size = CELL_PX - 1
    for i, (status, allowed, title) in enumerate(cells):
        x = 1 + (i % CELLS_PER_ROW) * CELL_PX
        y = 1 + (i // CELLS_PER_ROW) * CELL_PX
        css = f"om-{status}" + (" allowed" if allowed else "")
        if title:
            out.append(f'<rect class="{css}" x="{x}" y="{y}" width="{size}" height="{size}"><title>{_e(title)}</title></rect>')
        else:
            # Untitled cells of one colour share one path: one element for thousands of cells.
            plain[(status, allowed)].append(f"M{x} {y + size / 2}h{size}")
    for (status, allowed), segments in plain.items():
        css = f"om-{status}" + (" allowed" if allowed else "")
        out.append(f'<path class="cells {css}" stroke-width="{size}" d="{"".join(segments)}"/>')
    out.append("</svg>")
    return "".join(out)
