"""`logquake replay RUN_DIR`: run a stored test again with the same parameters, seed and fault schedule.

    logquake replay RUN_DIR [--times N] [--by role|node] [--store STORE]

Each replay is an ordinary run in the store, built from the original's
`test.json` with the original's `schedule.json` as a hand-written schedule;
its `test.json` names the original (`replay_of`). `--by role` (the default)
aims every fault at the role the original asked for (the leader is whoever
leads when the fault lands); `--by node` aims each at the nodes the original
actually hit, read from its history (an isolated leader becomes that node cut
off). At the end it prints, for each anomaly type of the original, how many
replays showed it, and appends the same to `RUN_DIR/replays.json`.

Exit status: 0 when every replay showed every anomaly type of the original
(or the original had none and every replay is valid), 1 otherwise, 254 for
bad arguments. Wall-clock timing still differs from run to run: a replay
repeats the operations' seed and the faults' times, not the interleaving.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import sys
from pathlib import Path
from typing import Any

from harness.cli_args import ArgumentParser, positive_int

EXIT_BAD_ARGUMENTS = 254


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="logquake replay", description=__doc__.split("\n\n")[0],
                       epilog="Exit status: 0 every replay reproduced the original's anomalies, 1 not, 254 bad arguments.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a stored run (its folder, e.g. store/latest)")
    p.add_argument("--times", type=positive_int, default=1, help="how many replays (default %(default)s)")
    p.add_argument("--by", choices=("role", "node"), default="role",
                   help="aim faults at the roles the original asked for, or at the nodes it hit (default %(default)s)")
    p.add_argument("--store", default=None, help="store for the replays (default: the original's store)")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    return p


def anomaly_types(results: dict[str, Any]) -> list[str]:
    """The anomaly types a run's results.json reports (a linearizability failure counts as `nonlinearizable`)."""
    found: set[str] = set()
    for result in results.values():
        if isinstance(result, dict):
            found.update(result.get("anomaly_types") or ())
            if result.get("valid") is False and "model" in result and not result.get("anomaly_types"):
                found.add("nonlinearizable")
    return sorted(found)


def events_by_node(schedule: list[dict[str, Any]], history_path: Path) -> list[dict[str, Any]]:
    """The schedule with every role target replaced by the nodes the original run's faults hit."""
    from checkers.history import NEMESIS, History
    from nemeses.core import node_target, nodes_hit

    hits: dict[tuple[float, str, str], Any] = {}
    pending: dict[tuple[float, str, str], Any] = {}
    for op in History.load(str(history_path)):
        if op.process != NEMESIS or not isinstance(op.value, dict):
            continue
        if "at_s" in op.value and "package" in op.value:
            pending = {(float(op.value["at_s"]), op.value["package"], op.value["f"]): None}
        elif pending:
            key = next(iter(pending))
            hits[key] = op.value
            pending = {}
    out = []
    for event in schedule:
        event = dict(event)
        hit = nodes_hit(hits.get((float(event["at_s"]), event["package"], event["f"])))
        target = event.get("target")
        role = target is not None and node_target(target) is None
        if hit and (role or event.get("shape") == "isolate-leader"):
            event["target"] = hit[0] if len(hit) == 1 else "nodes:" + ",".join(hit)
            if event.get("shape") == "isolate-leader":
                event["shape"] = "isolate-one"
        out.append(event)
    return out


def main(argv: list[str]) -> int:
    from harness.run_command import build_run, _configure_logging
    from harness.runner import Progress
    from harness.spec import RunSpec, SpecError

    args = build_parser().parse_args(argv)
    run_dir = Path(args.run_dir).resolve()
    try:
        spec = RunSpec.from_test_json(json.loads((run_dir / "test.json").read_text()))
        schedule = json.loads((run_dir / "schedule.json").read_text())
        original = json.loads((run_dir / "results.json").read_text())
    except (OSError, ValueError) as e:
        sys.stderr.write(f"logquake replay: {run_dir} is not a stored run with test.json, schedule.json and "
                         f"results.json: {e}\n")
        return EXIT_BAD_ARGUMENTS
    if args.by == "node":
        schedule = events_by_node(schedule, run_dir / "history.jsonl")
    replay = dataclasses.replace(spec, schedule=tuple(schedule) if schedule else None, replay_of=str(run_dir),
                                 store=args.store or spec.store)
    try:
        replay = replay.resolve()
    except SpecError as e:
        sys.stderr.write(f"logquake replay: the stored run cannot be rebuilt: {e}\n")
        return EXIT_BAD_ARGUMENTS
    _configure_logging()
    wanted = anomaly_types(original)
    seen: list[list[str]] = []
    replays = []
    for i in range(args.times):
        print(f"logquake replay: {i + 1} of {args.times}: {replay.store_name()} seed {replay.seed}, "
              f"{len(schedule)} fault event(s) by {args.by}", flush=True)
        outcome = build_run(replay, progress=Progress(enabled=not args.quiet)).run()
        found = anomaly_types(outcome.results or {})
        seen.append(found)
        verdict = {True: "valid", False: "invalid"}.get(outcome.valid, "unknown")
        replays.append({"run_dir": str(outcome.run_dir), "verdict": verdict, "anomaly_types": found})
        print(f"  {verdict.upper()}: {', '.join(found) or 'no anomaly'} ({outcome.run_dir})", flush=True)
    counts = {t: sum(1 for f in seen if t in f) for t in wanted}
    print(f"original: {', '.join(wanted) or 'no anomaly'}")
    for t, n in counts.items():
        print(f"  {t}: in {n} of {args.times} replay(s)")
    record = {"at": datetime.datetime.now(datetime.timezone.utc).isoformat(), "by": args.by, "times": args.times,
              "original_anomaly_types": wanted, "reproduced": counts, "replays": replays}
    path = run_dir / "replays.json"
    try:
        history = json.loads(path.read_text()) if path.exists() else []
    except ValueError:
        history = []
    path.write_text(json.dumps(history + [record], indent=1) + "\n")
    if wanted:
        return 0 if all(n == args.times for n in counts.values()) else 1
    return 0 if all(r["verdict"] == "valid" for r in replays) else 1
