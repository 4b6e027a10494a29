"""The error lines the nodes logged, for the report: what a broker said went wrong, next to the verdict.

`node_errors(run_dir)` reads each node's log as the run collected it
(`nodes/<node>/broker.log`, else the node's other `*.log` files: a foreign
broker's) and keeps the lines at ERROR level or above (ERROR, FATAL,
CRITICAL, as logging and log4j name them). Lines that differ only in their
timestamp are one entry, with how often it was logged and when first. A
line is an error when its first word after the timestamp is the level (both
formats put it there); a traceback's continuation lines are not errors of
their own. Entries come in the order first logged (by timestamp, across
nodes), at most `limit`, each message cut at `width`
characters. Pure: it reads files, never the history.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["LEVELS", "node_errors"]

LEVELS = ("ERROR", "FATAL", "CRITICAL")
# a leading timestamp: "2026-12-07 13:42:15,121 " (logging) or "[2026-12-07 13:42:15,121] " (log4j)
_STAMP = re.compile(r"^\[?(\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:[.,]\d+)?)\]?\s+")


def _logs_of(node_dir: Path) -> list[Path]:
    broker_log = node_dir / "broker.log"
    if broker_log.is_file():
        return [broker_log]
    return sorted(p for p in node_dir.glob("*.log") if p.is_file())


def node_errors(run_dir: str | Path, limit: int = 30, width: int = 400) -> list[dict]:
    """[{"node", "first", "count", "message"}] of the nodes' error lines (see the module doc)."""
    nodes = Path(run_dir) / "nodes"
    if not nodes.is_dir():
        return []
    entries: dict[tuple[str, str], dict] = {}
    for node_dir in sorted(p for p in nodes.iterdir() if p.is_dir()):
        for path in _logs_of(node_dir):
            try:
                with path.open(encoding="utf-8", errors="replace") as log:  # line by line: a night's log can be large
                    _collect(node_dir.name, log, entries, width)
            except OSError:
                continue
    return sorted(entries.values(), key=lambda e: e["first"])[:limit]


def _collect(node: str, lines, entries: dict[tuple[str, str], dict], width: int) -> None:
    for line in lines:
        line = line.rstrip("\r\n")
        stamp = _STAMP.match(line)
        rest = line[stamp.end():] if stamp else line
        if rest.split(" ", 1)[0] not in LEVELS:
            continue
        entry = entries.setdefault((node, rest[:width]), {
            "node": node, "first": stamp.group(1) if stamp else "", "count": 0, "message": rest[:width]})
        entry["count"] += 1
