"""Shrinking a failing run: the smallest fault schedule and settings that still show its anomaly.

`shrink(run_dir, ...)` takes a stored failing run, and looks for a smaller run
that still fails the same way: first over the schedule's faults by delta
debugging, then over the run's length, rate, concurrency and keys. A
candidate *fails* when at least one of `tries` runs of it shows the anomaly
type (runs are random in their timing, so one miss proves little). Every
candidate run is an ordinary run in the store, under the test name
`<original>-shrink`. The search stops at three quarters of its budget with
the smallest failing run found so far.

Confirmation: a candidate that failed once in `tries` runs may fail rarely
(timing), and its replays then show nothing. So the last quarter of the budget
runs the smallest failing candidate again, up to `max(tries, CONFIRM_RUNS)`
times (three at least: with `--tries 1` one lucky run would confirm itself),
and keeps it only if it fails in every one of them; else the failing candidate before it
(a larger one), and so on back to the original. Every run, not a majority: the
search keeps whichever candidate happened to fail, so the one it ends with is
the luckiest of many, and its true rate lies below what a few runs show (the
winner's curse). A majority let through candidates that failed about half the
time (`double.assignment` in bench/shrink.py: 2 of 3 in its confirmation, then
1 of 3 replays); a candidate failing with probability p passes three of three
with p^3, 0.73 at p = 0.9 and 0.13 at p = 0.5. If none is confirmed within the
budget, the one that failed in the largest share of its confirmation runs stays
(the smallest if none failed), marked unconfirmed. `shrunk.json` says which
(`confirmed`: the candidate's runs and failures, and how many steps back it is).

Faults: the schedule's events are grouped into faults, each a start event with
the undo of the same package that follows it (an unpaired event is a fault of
its own), so removing a fault never leaves a kill without its restart.

Delta debugging: Zeller and Hildebrandt, "Simplifying and Isolating
Failure-Inducing Input" (IEEE TSE 28(2), 2002), the ddmin algorithm: test
subsets and complements of the faults at growing granularity, keep any that
fails, and stop when no single fault can be removed (1-minimal).

Outputs, in `RUN_DIR/shrink-<time>/`: `shrunk.json` (the spec of the smallest
failing run, its schedule, its size, and the history of candidates), the
schedule as `schedule.json`, the exact `logquake test ... --schedule` command
that reproduces it (`command.txt`), and `shrink.html`, the original and the
shrunk schedule side by side.

Thread-safety: one shrink per process.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import shlex
import time
from html import escape
from pathlib import Path
from typing import Any, Callable

from harness.spec import RunSpec

__all__ = ["confirm", "ddmin", "faults_of", "shrink"]

# The share of the budget the search may use; the rest confirms its result (see the module docstring).
SEARCH_SHARE = 0.75
# The fewest runs a confirmation may take, whatever --tries (all of them must fail): with one run, a candidate
# that fails in one run of three would be kept a third of the time.
CONFIRM_RUNS = 3


def faults_of(events: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The schedule's events grouped into faults: a start with the next undo of its package."""
    from nemeses import PACKAGES

    faults: list[list[dict[str, Any]]] = []
    open_by_package: dict[str, list[dict[str, Any]]] = {}
    for event in sorted(events, key=lambda e: float(e["at_s"])):
        package = PACKAGES.get(event["package"])
        if package is not None and event["f"] == package.start_f:
            fault = [event]
            faults.append(fault)
            open_by_package[event["package"]] = fault
        elif event["package"] in open_by_package:
            open_by_package.pop(event["package"]).append(event)
        else:
            faults.append([event])
    return faults


def ddmin(items: list[Any], fails: Callable[[list[Any]], bool], out_of_budget: Callable[[], bool] = lambda: False) -> list[Any]:
    """A 1-minimal failing subset of `items`, for which `fails(items)` is assumed true (Zeller & Hildebrandt)."""
    n = 2
    while len(items) >= 2 and not out_of_budget():
        chunk = max(1, len(items) // n)
        subsets = [items[i:i + chunk] for i in range(0, len(items), chunk)]
        reduced = False
        for subset in subsets:
            if out_of_budget():
                return items
            if fails(subset):
                items, n, reduced = subset, 2, True
                break
        if not reduced and n > 2 or not reduced and len(subsets) > 2:
            for subset in subsets:
                complement = [x for x in items if x not in subset]
                if out_of_budget():
                    return items
                if complement and fails(complement):
                    items, n, reduced = complement, max(n - 1, 2), True
                    break
        if not reduced:
            if n >= len(items):
                break
            n = min(len(items), n * 2)
    if len(items) == 1 and not out_of_budget() and fails([]):
        return []
    return items


def confirm(chain: list[Any], run_fails: Callable[[Any], bool], tries: int,
            out_of_budget: Callable[[], bool] = lambda: False) -> dict[str, Any]:
    """The last item of `chain` (failing candidates, largest first) that fails in every one of `tries` runs.

    Runs each from the last back, stopping a candidate's runs at its first run without the failure. Returns
    {"candidate", "steps_back", "failed", "runs", "confirmed"}; when no candidate is confirmed before the budget
    or the chain ends, the one that failed in the largest share of its runs (the smaller
    of equals), with its own figures and "confirmed": False."""
    best: dict[str, Any] | None = None
    for steps_back, candidate in enumerate(reversed(chain)):
        failed = runs = 0
        while runs < tries and failed == runs and not out_of_budget():
            runs += 1
            failed += bool(run_fails(candidate))
        outcome = {"candidate": candidate, "steps_back": steps_back, "failed": failed, "runs": runs,
                   "confirmed": failed == tries}
        if outcome["confirmed"]:
            return outcome
        if best is None or (runs and failed / runs > (best["failed"] / best["runs"] if best["runs"] else 0)):
            best = outcome
        if out_of_budget():
            break
    assert best is not None, "confirm needs at least one candidate"
    return best


def _anomalies(results: dict[str, Any]) -> set[str]:
    from harness.replay_command import anomaly_types

    return set(anomaly_types(results))


def shrink(run_dir: Path, budget_s: float, tries: int, anomaly: str | None, out: Callable[[str], None] = print,
           quiet: bool = True) -> dict[str, Any]:
    """Shrink the failing run in `run_dir`; return what shrunk.json holds. ValueError for a run that cannot be shrunk."""
    from checkers.queue.delivery import ANOMALY_ORDER
    from harness.run_command import build_run, spec_to_argv
    from harness.runner import Progress

    spec = RunSpec.from_test_json(json.loads((run_dir / "test.json").read_text()))
    schedule = json.loads((run_dir / "schedule.json").read_text())
    found = _anomalies(json.loads((run_dir / "results.json").read_text()))
    if anomaly is None:
        if not found:
            raise ValueError(f"{run_dir} shows no anomaly: there is nothing to shrink (name one with --anomaly)")
        anomaly = min(found, key=lambda a: (ANOMALY_ORDER.index(a) if a in ANOMALY_ORDER else len(ANOMALY_ORDER), a))
    elif anomaly not in found:
        raise ValueError(f"{run_dir} does not show {anomaly}; it shows {', '.join(sorted(found)) or 'no anomaly'}")
    base = dataclasses.replace(spec, name=f"{spec.store_name()}-shrink", replay_of=str(run_dir)).resolve()
    started = time.monotonic()
    tried: list[dict[str, Any]] = []

    def out_of_budget() -> bool:
        return time.monotonic() - started > budget_s

    def search_out_of_budget() -> bool:
        return time.monotonic() - started > budget_s * SEARCH_SHARE

    chain: list[RunSpec] = []  # the failing candidates, in the order found (each smaller than the one before)

    def run_fails(candidate: RunSpec, attempt: int, confirming: bool = False) -> bool:
        outcome = build_run(candidate, progress=Progress(enabled=not quiet)).run()
        seen = _anomalies(outcome.results or {})
        tried.append({"events": len(candidate.schedule or ()), "time_limit_s": candidate.time_limit_s,
                      "rate": candidate.rate, "concurrency": candidate.concurrency, "attempt": attempt,
                      "failed": anomaly in seen, "run_dir": str(outcome.run_dir), "confirming": confirming})
        out(f"  {'confirming' if confirming else 'candidate'} {len(tried)}: {len(candidate.schedule or ())} fault "
            f"event(s), {candidate.time_limit_s:g} s, rate {candidate.rate:g}, concurrency {candidate.concurrency}: "
            f"{'FAILS' if anomaly in seen else 'passes'} ({time.monotonic() - started:.0f} s of "
            f"{budget_s:.0f} s used)")
        return anomaly in seen

    def fails(candidate: RunSpec) -> bool:
        for attempt in range(tries):
            if search_out_of_budget():
                return False
            if run_fails(candidate, attempt + 1):
                chain.append(candidate)
                return True
        return False

    def with_faults(faults: list[list[dict[str, Any]]], from_spec: RunSpec) -> RunSpec:
        events = [e for fault in faults for e in fault]
        return dataclasses.replace(from_spec, schedule=tuple(events) if events else None,
                                   nemesis=() if not events else from_spec.nemesis).resolve()

    out(f"shrinking {run_dir}: {anomaly}, {len(schedule)} fault event(s), budget {budget_s:.0f} s, {tries} tries "
        "per candidate")
    best = with_faults(faults_of(schedule), base)
    chain.append(best)  # the original failed
    faults = ddmin(faults_of(schedule), lambda fs: fails(with_faults(fs, best)), search_out_of_budget)
    best = with_faults(faults, best)
    # then the run's length (never before its last fault), rate, concurrency and keys, halving while it fails
    last_event_s = max((float(e["at_s"]) for e in best.schedule or ()), default=0.0)
    for field_name, floor in (("time_limit_s", max(5.0, last_event_s + 2.0)), ("rate", 10.0), ("concurrency", 1)):
        while not search_out_of_budget():
            current = getattr(best, field_name)
            smaller = max(floor, current / 2) if isinstance(current, float) else max(floor, current // 2)
            if smaller >= current:
                break
            candidate = dataclasses.replace(best, **{field_name: smaller}).resolve()
            if not fails(candidate):
                break
            best = candidate
    if "keys" in best.workload_options:
        while not search_out_of_budget() and best.workload_options["keys"] > 1:
            candidate = dataclasses.replace(best, workload_options={**best.workload_options,
                                                                     "keys": best.workload_options["keys"] // 2}).resolve()
            if not fails(candidate):
                break
            best = candidate
    confirm_runs = max(tries, CONFIRM_RUNS)
    out(f"confirming: the smallest failing candidate must fail in {confirm_runs} of {confirm_runs} runs")
    attempts = iter(range(1, 1 << 30))
    confirmed = confirm(chain, lambda candidate: run_fails(candidate, next(attempts), confirming=True),
                        confirm_runs, out_of_budget)
    best = confirmed.pop("candidate")
    out(f"{'confirmed' if confirmed['confirmed'] else 'NOT confirmed'}: {len(best.schedule or ())} fault event(s), "
        f"{best.time_limit_s:g} s failed in {confirmed['failed']} of {confirmed['runs']} run(s)"
        + (f", {confirmed['steps_back']} step(s) back from the smallest" if confirmed["steps_back"] else "")
        + ("" if confirmed["confirmed"] else "; its replays may not show the anomaly"))
    directory = run_dir / ("shrink-" + datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ"))
    directory.mkdir()
    shrunk_schedule = list(best.schedule or ())
    (directory / "schedule.json").write_text(json.dumps(shrunk_schedule, indent=1) + "\n")
    reproduce = dataclasses.replace(best, name=None, replay_of=None, store=spec.store)
    argv = ["logquake", "test", *spec_to_argv(reproduce, str(directory / "schedule.json") if best.schedule else None)]
    command = shlex.join(argv)
    (directory / "command.txt").write_text(command + "\n")
    result = {"run_dir": str(run_dir), "anomaly": anomaly, "budget_s": budget_s, "tries": tries,
              "elapsed_s": round(time.monotonic() - started, 1), "out_of_budget": out_of_budget(),
              "original": {"events": len(schedule), "time_limit_s": spec.time_limit_s, "rate": spec.rate,
                           "concurrency": spec.concurrency, "schedule": schedule},
              "shrunk": {"events": len(shrunk_schedule), "time_limit_s": best.time_limit_s, "rate": best.rate,
                         "concurrency": best.concurrency, "workload_options": best.workload_options,
                         "schedule": shrunk_schedule, "spec": reproduce.to_json()},
              "command": command, "confirmed": confirmed, "candidates": tried}
    (directory / "shrunk.json").write_text(json.dumps(result, indent=1) + "\n")
    (directory / "shrink.html").write_text(shrink_html(result))
    out(f"shrunk {len(schedule)} -> {len(shrunk_schedule)} fault event(s), {spec.time_limit_s:g} -> "
        f"{best.time_limit_s:g} s in {result['elapsed_s']:.0f} s ({len(tried)} candidate run(s)); {directory}")
    out(f"reproduce with: {command}")
    return result


def _schedule_rows(events: list[dict[str, Any]]) -> str:
    return "".join(
        f"<tr><td>{float(e['at_s']):g} s</td><td>{escape(str(e['package']))}</td><td>{escape(str(e['f']))}</td>"
        f"<td>{escape(str(e.get('target') or e.get('shape') or ''))}</td></tr>" for e in events) or (
        "<tr><td colspan=\"4\">no faults</td></tr>")


def shrink_html(result: dict[str, Any]) -> str:
    """The original and the shrunk schedule side by side (self-contained, offline)."""
    def side(title: str, part: dict[str, Any]) -> str:
        summary = part.get("summary") or (f"{part['events']} fault event(s), {part['time_limit_s']:g} s, rate "
                                          f"{part['rate']:g}, concurrency {part['concurrency']}")
        return (f"<div class=\"side\"><h2>{escape(title)}</h2><p>{escape(summary)}</p>"
                "<table><thead><tr><th>at</th><th>fault</th><th>event</th><th>target</th></tr></thead><tbody>"
                + _schedule_rows(part["schedule"]) + "</tbody></table></div>")

    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>shrink</title><style>"
            "body{font:14px system-ui,sans-serif;margin:16px}.sides{display:flex;gap:24px}"
            "table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:2px 6px}</style></head><body>"
            f"<h1>Shrinking {escape(result['anomaly'])}</h1><p>{escape(result['run_dir'])}: "
            f"{len(result['candidates'])} candidate run(s) in {result['elapsed_s']:.0f} s"
            f"{' (stopped at the budget)' if result['out_of_budget'] else ''}.</p><div class=\"sides\">"
            + side("original", result["original"]) + side("shrunk", result["shrunk"])
            + f"</div><p>Reproduce with:</p><pre>{escape(result['command'])}</pre></body></html>\n")
