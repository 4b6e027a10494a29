"""Shrinking a failing simulated seed: the fewest faults, and the shortest run, that still show its anomaly.

`shrink_sim(run_dir, ...)` takes a stored `logquake sim` run that failed and
looks for a smaller schedule under the same seed that fails the same way: delta
debugging over the faults the run applied (its `schedule.json`), then halving
the run's duration (never below the end of its last fault). The simulation is
deterministic, so one run decides a candidate (no tries, unlike the shrinking
of real runs in harness/shrink.py, whose runs differ in their timing): a
candidate fails when its run shows the anomaly type (an anomaly of the checker
of the run's workload, harness.sim_command's `checker`: queue, pipeline or
offsets; or `invariant:<name>` for a broken invariant). Without --anomaly, the
queue checker's most severe anomaly is shrunk first, then any other checker's
in name order, then a broken invariant. The first candidate is
the recorded schedule itself, which replays the original run byte for byte;
the search says so when its history hash differs.

Every candidate is an ordinary sim run in the store. Outputs, in
`RUN_DIR/shrink-<time>/`: `shrunk.json` (the original and shrunk schedule and
duration, every candidate, the time taken), `schedule.json` (the shrunk
schedule, in `logquake sim --schedule`'s format), `command.txt` (the exact
`logquake sim` command that reproduces it) and `shrink.html`, with each
later candidate's schedule as `candidate-N.json`. The folder is made only
once the first candidate (run from RUN_DIR/schedule.json itself) has shown
the anomaly: a shrink refused because the recorded schedule no longer fails
leaves nothing under RUN_DIR (that candidate's own run stays in the store,
as every candidate's does: it is the evidence for the refusal).

Delta debugging: Zeller and Hildebrandt, "Simplifying and Isolating
Failure-Inducing Input" (IEEE TSE 28(2), 2002); harness.shrink.ddmin.

Thread-safety: one shrink per process.
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from pathlib import Path
from typing import Any, Callable

__all__ = ["shrink_sim", "sim_anomalies"]


def sim_anomalies(result: dict[str, Any]) -> set[str]:
    """What a sim run's results.json found: its checker's anomaly types and `invariant:<name>` per broken one."""
    from harness.replay_command import anomaly_types

    broken = (result.get("invariants") or {}).get("violation_counts") or {}
    return set(anomaly_types(result)) | {f"invariant:{name}" for name in broken}


def _args(test: dict[str, Any], duration_s: float, schedule: Path, store: str) -> argparse.Namespace:
    options = test["options"]
    return argparse.Namespace(workload=options.get("workload", "queue"), nodes=options["nodes"], duration=duration_s,
                              faults=tuple(options["faults"]),
                              idempotent=options["idempotent"], delivery=options["delivery"],
                              broker_override=sorted(options["broker_overrides"].items()), schedule=schedule,
                              store=store)


def shrink_sim(run_dir: Path, budget_s: float, anomaly: str | None, out: Callable[[str], None] = print
               ) -> dict[str, Any]:
    """Shrink the failing sim run in `run_dir`; return what shrunk.json holds. ValueError for one that cannot be."""
    from checkers.queue.delivery import ANOMALY_ORDER
    from harness.shrink import ddmin, shrink_html
    from harness.sim_command import read_schedule, replay_command, run_seed, verdict_line
    from harness.store import Store, write_json

    test = json.loads((run_dir / "test.json").read_text())
    if not (run_dir / "schedule.json").is_file():
        raise ValueError(f"{run_dir} has no schedule.json (a sim run of an older logquake): run its seed again and "
                         "shrink that run")
    nodes = test["options"]["nodes"]
    recorded = read_schedule(run_dir / "schedule.json", nodes)  # every link's peer resolved: _side shows it as is
    original = json.loads((run_dir / "results.json").read_text())
    found = sim_anomalies(original)
    if anomaly is None:
        if not found:
            raise ValueError(f"{run_dir} shows no anomaly: there is nothing to shrink (name one with --anomaly)")
        order = list(ANOMALY_ORDER)
        anomaly = min(found, key=lambda a: (a.startswith("invariant:"), order.index(a) if a in order else len(order), a))
    elif anomaly not in found:
        raise ValueError(f"{run_dir} does not show {anomaly}; it shows {', '.join(sorted(found)) or 'no anomaly'}")
    seed, duration_s = test["seed"], float(test["options"]["duration_s"])
    store_root = str(run_dir.parents[1])  # STORE/sim/<time>
    store = Store(store_root)
    # made only once the recorded schedule is known to fail: a refusal must leave no folder behind
    work = run_dir / ("shrink-" + datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ"))
    started = time.monotonic()
    tried: list[dict[str, Any]] = []

    def out_of_budget() -> bool:
        return time.monotonic() - started > budget_s

    def run(faults: list[dict[str, Any]], end_s: float | None, duration: float,
            given: Path | None = None) -> dict[str, Any]:
        """One candidate run; its schedule is written to work/candidate-N.json, unless `given` already holds it."""
        candidate = given
        if candidate is None:
            candidate = work / f"candidate-{len(tried) + 1}.json"
            write_json(candidate, {"faults": faults, "end_s": end_s})
        result = run_seed(_args(test, duration, candidate, store_root), seed, store)
        seen = sim_anomalies(result) if result["valid"] is not True else set()
        tried.append({"faults": len(faults), "duration_s": duration, "failed": anomaly in seen,
                      "valid": result["valid"], "run_dir": result["run_dir"],
                      "history_sha256": (result.get("simulation") or {}).get("history_sha256")})
        out(f"  candidate {len(tried)}: {len(faults)} fault(s), {duration:g} s: "
            f"{'FAILS' if anomaly in seen else 'passes'} ({time.monotonic() - started:.0f} s of {budget_s:.0f} s used)")
        return result

    out(f"shrinking {run_dir}: {anomaly}, seed {seed}, {len(recorded['faults'])} fault(s), {duration_s:g} s, budget "
        f"{budget_s:.0f} s (the simulation is deterministic: one run per candidate)")
    # the recorded file itself, not a rewrite of it: the replay is of exactly what the run recorded, and nothing is
    # written under run_dir before it is known to fail
    first = run(recorded["faults"], recorded["end_s"], duration_s, given=run_dir / "schedule.json")
    replayed = (first.get("simulation") or {}).get("history_sha256") == \
        (original.get("simulation") or {}).get("history_sha256")
    if not replayed:
        out("  note: the recorded schedule did not replay the original history byte for byte (a run of an older "
            "logquake, or a changed broker); shrinking from what it shows now")
    if anomaly not in (sim_anomalies(first) if first["valid"] is not True else set()):
        raise ValueError(f"the recorded schedule of seed {seed} no longer shows {anomaly} ({verdict_line(first)}): "
                         "nothing to shrink from")
    work.mkdir()
    end_s = recorded["end_s"]
    faults = ddmin(list(recorded["faults"]), lambda fs: anomaly in _failed(run(fs, end_s, duration_s)), out_of_budget)
    # then the run's length: halve it while it still fails, never below the last fault's heal (or 5 s); the drawn
    # nemesis's last wake-up (end_s) only keeps a replay byte-identical, so a shorter run drops it
    last_heal_s = max((f["at_s"] + f["hold_s"] for f in faults), default=0.0)
    best_duration, best_end = duration_s, end_s
    while not out_of_budget():
        shorter = max(5.0, round(last_heal_s + 1.0, 3), round(best_duration / 2, 3))
        if shorter >= best_duration or anomaly not in _failed(run(faults, None, shorter)):
            break
        best_duration, best_end = shorter, None
    shrunk = {"faults": faults, "end_s": best_end}
    write_json(work / "schedule.json", shrunk)
    command = replay_command(_args(test, best_duration, work / "schedule.json", store_root), seed,
                             work / "schedule.json")
    (work / "command.txt").write_text(command + "\n")
    result = {"run_dir": str(run_dir), "anomaly": anomaly, "seed": seed, "budget_s": budget_s,
              "elapsed_s": round(time.monotonic() - started, 1), "out_of_budget": out_of_budget(),
              "replayed_byte_for_byte": replayed,
              "original": _side(recorded["faults"], duration_s),
              "shrunk": _side(faults, best_duration),
              "schedule": shrunk, "command": command, "candidates": tried}
    write_json(work / "shrunk.json", result)
    (work / "shrink.html").write_text(shrink_html(result))
    out(f"shrunk {len(recorded['faults'])} -> {len(faults)} fault(s), {duration_s:g} -> {best_duration:g} s in "
        f"{result['elapsed_s']:.0f} s ({len(tried)} candidate run(s)); {work}")
    out(f"reproduce with: {command}")
    return result


def _failed(result: dict[str, Any]) -> set[str]:
    return sim_anomalies(result) if result["valid"] is not True else set()


def _side(faults: list[dict[str, Any]], duration_s: float) -> dict[str, Any]:
    """One side of shrink.html: the faults as rows of harness.shrink's table, and a one-line summary (a link's peer
    as read_schedule resolved it)."""
    rows = [{"at_s": f["at_s"], "package": f["kind"], "f": f"held {f['hold_s']:.2f} s",
             "target": f"node {f['node']}" + (f" from node {f['peer']}" if f["kind"] == "link" else "")}
            for f in faults]
    return {"events": len(faults), "duration_s": duration_s, "schedule": rows,
            "summary": f"{len(faults)} fault(s), {duration_s:g} s of simulated workload"}
