"""The store's run list: every run, grouped by test name, newest first, coloured by verdict.

`find_runs(store_root)` lists run directories (`<store>/<test-name>/<timestamp>/`
holding a test.json, history.jsonl or results.json; the `latest` symlinks are
skipped), `summarize_run(run_dir)` reads what the list shows about one run
(verdict, reason, delivery as `delivery_of` names it, seed, client, broker
overrides, duration, anomaly types) from results.json and test.json, and `render_index(store_root, summaries)` renders the page.
Verdict colours: green valid, red invalid, orange unknown (including runs
without results.json: still running, or stopped before checking).

Runs whose broker had a planted bug (a `logquake.debug.*` override) form a
group of their own under their test name, marked as such.

Invariants: renders, never judges (verdicts come from results.json); every
name and value from the store is escaped, and every link is a relative,
percent-encoded path inside the store.

Thread-safety: pure functions of the files they read; safe from any thread.

Sources: Jepsen's web store browser (jepsen.web: tests grouped by name,
newest first, valid/invalid/unknown colours).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

from checkers.queue.delivery import delivery_of
from reports.page import verdict_word

__all__ = ["RunSummary", "find_runs", "render_index", "summarize_run"]

_RUN_MARKERS = ("test.json", "history.jsonl", "results.json")


def _e(x: Any) -> str:
    return escape(str(x), quote=True)


@dataclass(frozen=True)
class RunSummary:
    test_name: str
    run_id: str
    valid: Any
    reason: str | None = None
    delivery: str | None = None  # the delivery's label (checkers.queue.delivery), as every output names it
    anomaly_types: tuple[str, ...] = ()
    has_report: bool = False
    files: tuple[str, ...] = field(default_factory=tuple)
    seed: Any = None
    client: str | None = None
    overrides: tuple[tuple[str, str], ...] = ()
    duration_s: float | None = None  # from test.json being written to results.json being written

    @property
    def planted_bugs(self) -> tuple[str, ...]:
        """The planted bugs (logquake.debug.* switches set to true) the run's broker had."""
        return tuple(k for k, v in self.overrides if k.startswith("logquake.debug.") and k != "logquake.debug.log.requests"
                     and str(v).lower() == "true")


def find_runs(store_root: str | os.PathLike[str]) -> list[Path]:
    """Every run directory under the store root (two levels down), newest first within the whole store."""
    root = Path(store_root)
    if not root.is_dir():
        return []
    runs = []
    for test_dir in root.iterdir():
        if test_dir.is_symlink() or not test_dir.is_dir():
            continue
        for run_dir in test_dir.iterdir():
            if run_dir.is_symlink() or not run_dir.is_dir():
                continue
            if any((run_dir / marker).is_file() for marker in _RUN_MARKERS):
                runs.append(run_dir)
    return sorted(runs, key=lambda p: (p.name, p.parent.name), reverse=True)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8", errors="replace"))
    except (OSError, ValueError):
        return None


def summarize_run(run_dir: str | os.PathLike[str]) -> RunSummary:
    """What the run list shows about one run; unreadable files give an unknown verdict, not an error."""
    run_dir = Path(run_dir)
    results = _read_json(run_dir / "results.json") if (run_dir / "results.json").is_file() else None
    test = _read_json(run_dir / "test.json") if (run_dir / "test.json").is_file() else None
    valid: Any = "unknown"
    reason = None
    delivery = None
    anomaly_types: list[str] = []
    if isinstance(results, dict):
        valid = results.get("valid", "unknown")
        if valid not in (True, False):
            reason = str(results.get("reason") or "the checkers could not decide")
        for value in results.values():
            if isinstance(value, dict):
                for name in value.get("anomaly_types") or ():
                    if str(name) not in anomaly_types:
                        anomaly_types.append(str(name))
    elif results is None and (run_dir / "results.json").is_file():
        reason = "results.json is unreadable"
    else:
        reason = "no results.json (running, or stopped before checking)"
    options = test.get("options") if isinstance(test, dict) and isinstance(test.get("options"), dict) else {}
    try:  # the one decision of a run's delivery, from its options (an --idempotent run is not exactly-once)
        delivery = delivery_of(options).label
    except ValueError:
        recorded = results.get("delivery") if isinstance(results, dict) else None
        delivery = recorded.get("label") if isinstance(recorded, dict) else delivery
    overrides = options.get("broker_overrides") if isinstance(options.get("broker_overrides"), dict) else {}
    duration_s = None
    if (run_dir / "results.json").is_file() and (run_dir / "test.json").is_file():
        duration_s = max(0.0, (run_dir / "results.json").stat().st_mtime - (run_dir / "test.json").stat().st_mtime)
    name = test.get("name") if isinstance(test, dict) and isinstance(test.get("name"), str) else run_dir.parent.name
    files = tuple(n for n in ("results.json", "history.jsonl", "history.edn", "test.json", "harness.log")
                  if (run_dir / n).is_file())
    return RunSummary(test_name=name, run_id=run_dir.name, valid=valid, reason=reason, delivery=delivery,
                      anomaly_types=tuple(anomaly_types), has_report=(run_dir / "report.html").is_file(),
                      files=files, seed=options.get("seed"), client=options.get("client"),
                      overrides=tuple(sorted((str(k), str(v)) for k, v in overrides.items())), duration_s=duration_s)


def _href(*parts: str) -> str:
    return "/".join(quote(p, safe="") for p in parts)


def render_index(store_root: str | os.PathLike[str], runs: Iterable[tuple[Path, RunSummary]],
                 campaigns: Iterable[str] = ()) -> str:
    """The run-list page for a store; `runs` are (run_dir, summary) pairs, newest first; `campaigns` the names of
    the store's campaigns, linked to their trends and their directories."""
    root = Path(store_root)
    groups: dict[str, list[tuple[Path, RunSummary]]] = defaultdict(list)
    order: list[str] = []
    total = {"valid": 0, "invalid": 0, "unknown": 0}
    for run_dir, summary in runs:
        # runs with a planted bug are their own group: they are expected to fail
        directory = (run_dir.parent.name, summary.planted_bugs)
        if directory not in groups:
            order.append(directory)
        groups[directory].append((run_dir, summary))
        total[verdict_word(summary.valid)[0]] += 1
    sections = []
    for directory in order:
        rows = []
        for run_dir, s in groups[directory]:
            css, word = verdict_word(s.valid)
            link = _href(run_dir.parent.name, run_dir.name)
            report_note = "" if s.has_report else ' <span class="note">(drawn on request)</span>'
            files = " ".join(f'<a href="{link}/{_href(n)}">{_e(n)}</a>' for n in s.files)
            detail = _e(s.reason) if s.reason else ""
            anomalies = ", ".join(_e(a) for a in s.anomaly_types)
            overrides = "<br>".join(f"{_e(k)}={_e(v)}" for k, v in s.overrides) or "none"
            duration = "" if s.duration_s is None else f"{s.duration_s:.0f} s"
            rows.append(
                f'<tr class="run {css}" data-valid="{css}"><td class="verdict">{word}</td>'
                f'<td><a class="report-link" href="{link}/report.html">{_e(run_dir.name)}</a>{report_note}</td>'
                f'<td>{_e(s.delivery or "")}</td><td class="seed">{_e("" if s.seed is None else s.seed)}</td>'
                f'<td>{_e(s.client or "")}</td><td class="overrides">{overrides}</td><td>{_e(duration)}</td>'
                f'<td class="anomalies">{anomalies}</td><td>{detail}</td>'
                f'<td class="files">{files} <a href="{link}/">all files</a></td></tr>'
            )
        title = groups[directory][0][1].test_name
        planted = directory[1]
        badge = (f' <span class="planted">planted bug: {_e(", ".join(b.removeprefix("logquake.debug.") for b in planted))}'
                 "</span>") if planted else ""
        sections.append(
            f'<section class="test" data-planted="{_e(",".join(planted))}"><h2>{_e(title)}{badge}</h2><table><thead>'
            f'<tr><th>verdict</th><th>run</th><th>delivery</th><th>seed</th><th>client</th><th>overrides</th>'
            f'<th>duration</th><th>anomalies</th><th>note</th><th>files</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></section>'
        )
    if not sections:
        sections.append('<p class="empty">No runs in this store yet: run <code>logquake test</code> first.</p>')
    campaign_links = "".join(
        f'<li><a href="campaigns/{_href(name)}/trends.html">{_e(name)}: trends</a> · '
        f'<a href="campaigns/{_href(name)}/">every night</a></li>' for name in campaigns)
    if campaign_links:
        sections.insert(0, f'<section class="campaigns"><h2>Campaigns</h2><ul>{campaign_links}</ul></section>')
    summary = (f'{total["valid"]} valid, {total["invalid"]} invalid, {total["unknown"]} unknown')
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>logquake store: {_e(root.name or str(root))}</title><style>{INDEX_CSS}</style></head><body>'
        f'<h1>logquake store <code>{_e(str(root))}</code></h1><p class="totals">{_e(summary)}</p>'
        + "".join(sections)
        + "</body></html>\n"
    )


INDEX_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;color:#212529;max-width:1200px;
margin:0 auto;padding:0 16px 40px}
h1{font-size:22px}h2{font-size:17px;margin-top:26px}
table{border-collapse:collapse;width:100%;table-layout:fixed}
th:nth-child(1){width:6.5em}th:nth-child(2){width:12em}th:nth-child(4){width:6.5em}th:nth-child(5){width:6em}
th:nth-child(7){width:5em}th:nth-child(10){width:18%}td{overflow-wrap:anywhere}
.planted{font-size:13px;background:#c92a2a;color:#fff;border-radius:3px;padding:1px 6px;font-weight:400}th,td{border:1px solid #dee2e6;padding:4px 8px;text-align:left}
thead th{background:#f1f3f5}
tr.run td.verdict{font-weight:700;color:#fff;width:7em}
tr.run.valid td.verdict{background:#2b8a3e}tr.run.invalid td.verdict{background:#c92a2a}
tr.run.unknown td.verdict{background:#e67700}
td.anomalies{color:#c92a2a;font-family:ui-monospace,Menlo,Consolas,monospace}
td.files a{margin-right:8px}.note,.totals,.empty{color:#6c757d}
"""
