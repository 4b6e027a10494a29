"""How far `logquake shrink` shrinks a failing real run, per planted bug, and whether the shrunk run still fails.

For each planted bug (harness/scorecard.py's PLANTED_BUGS, under the settings the
scorecard runs it with), this runs `logquake test` with fresh random seeds
(printed) until one run shows one of the bug's expected anomalies (at most
--max-runs), shrinks that run with `logquake shrink --budget B --tries T`
(harness/shrink.py: ddmin over the schedule's faults, then the run's length, rate,
concurrency and keys, T runs per candidate), and runs the shrunk command
(its command.txt) --replays times. Every step is a `python3 -m harness.cli`
child process, as a user would run it. It prints, per bug: the seed, the
original fault events and length (the baseline, measured in the same run), the
shrunk ones, the ratio, the candidate runs and seconds the shrink took, the
anomaly kept and how many replays showed it; then one JSON line with every row.

    python3 bench/shrink.py [--bugs all|NAME,...] [--time-limit 60] [--budget 30m] [--tries 3] [--replays 3]
        [--max-runs 3]

Issue 15 asks each bug's failing run to shrink to at most 3 fault events within
30 minutes and the shrunk run to fail again in at least 2 of 3 replays; the last
column says whether both held. A bug takes up to --max-runs x (time limit + about
30 s), plus the budget, plus the replays: about 40 minutes at the defaults. It
runs in a temporary store, removed at the end, and asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def logquake(argv: list[str], timeout_s: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *argv], capture_output=True, text=True,
                          timeout=timeout_s, cwd=ROOT)


def anomalies_of(run_dir: Path) -> set[str]:
    from harness.replay_command import anomaly_types

    try:
        return set(anomaly_types(json.loads((run_dir / "results.json").read_text())))
    except (OSError, ValueError):
        return set()


def bug_argv(bug, time_limit_s: float, seed: int) -> list[str]:
    """The `logquake test` flags the scorecard runs `bug` with."""
    from harness.run_command import spec_to_argv
    from harness.scorecard import scorecard_campaign

    cell = next(c for c in scorecard_campaign([bug], [seed], time_limit_s, "local", "store").cells
                if c.id.startswith("bug="))
    argv = spec_to_argv(cell.spec)
    at = argv.index("--seed")
    argv[at + 1] = str(seed)
    return argv


def measure(bug, args, store: Path) -> dict:
    rng = random.SystemRandom()
    tried = []
    run_dir = None
    for _ in range(args.max_runs):
        seed = rng.randrange(1, 2**31)
        done = logquake(["test", *bug_argv(bug, args.time_limit, seed), "--store", str(store), "--quiet"],
                        args.time_limit + 600)
        if done.returncode not in (0, 1, 2):  # not a verdict: the run could not run (no cluster, bad flags)
            raise SystemExit(f"{bug.name}: logquake test exited {done.returncode}, not with a verdict; its output ends:\n"
                             + (done.stdout + done.stderr)[-2000:])
        latest = (store / "latest").resolve()
        found = anomalies_of(latest)
        tried.append((seed, sorted(found)))
        if done.returncode == 1 and found & set(bug.expect):
            run_dir = latest
            break
    if run_dir is None:
        return {"bug": bug.name, "seed": None, "tried": tried}
    started = time.monotonic()
    done = logquake(["shrink", str(run_dir), "--budget", f"{args.budget:g}s", "--tries", str(args.tries)],
                    args.budget + 3600)
    took_s = time.monotonic() - started
    shrinks = sorted(run_dir.glob("shrink-*/shrunk.json"))
    if done.returncode != 0 or not shrinks:
        return {"bug": bug.name, "seed": seed, "tried": tried, "error": (done.stdout + done.stderr)[-2000:]}
    result = json.loads(shrinks[-1].read_text())
    argv = shlex.split(result["command"])[1:] + ["--store", str(store / "replays"), "--quiet"]
    replays = 0
    for _ in range(args.replays):
        logquake(argv, float(result["shrunk"]["time_limit_s"]) + 600)
        replays += result["anomaly"] in anomalies_of((store / "replays" / "latest").resolve())
    return {"bug": bug.name, "seed": seed, "tried": tried, "anomaly": result["anomaly"],
            "original": {k: result["original"][k] for k in ("events", "time_limit_s", "rate", "concurrency")},
            "shrunk": {k: result["shrunk"][k] for k in ("events", "time_limit_s", "rate", "concurrency")},
            "elapsed_s": result["elapsed_s"], "took_s": round(took_s, 1), "candidates": len(result["candidates"]),
            "out_of_budget": result["out_of_budget"], "confirmed": result.get("confirmed"), "replays": replays,
            "command": result["command"]}


def main() -> int:
    from harness.campaign import CampaignError, parse_budget
    from harness.scorecard import PLANTED_BUGS

    def budget(text: str) -> float:
        try:
            return parse_budget(text, "--budget")
        except CampaignError as e:
            raise argparse.ArgumentTypeError(str(e).removeprefix("--budget: ")) from None

    measurable = {bug.name: bug for bug in PLANTED_BUGS if bug.expect}
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bugs", default="all", help=f"all, or comma-separated of: {', '.join(measurable)}")
    p.add_argument("--time-limit", type=float, default=60.0, help="seconds of each run that looks for a failure")
    p.add_argument("--budget", type=budget, default=1800.0, help="shrink budget per bug: 90s, 30m (default 30m)")
    p.add_argument("--tries", type=int, default=3, help="runs per shrink candidate (default %(default)s)")
    p.add_argument("--replays", type=int, default=3, help="replays of each shrunk run (default %(default)s)")
    p.add_argument("--max-runs", type=int, default=3, help="runs tried per bug for a failing one (default 3)")
    args = p.parse_args()
    names = list(measurable) if args.bugs == "all" else [b.strip() for b in args.bugs.split(",") if b.strip()]
    unknown = [n for n in names if n not in measurable]
    if unknown:
        p.error(f"--bugs: {', '.join(unknown)} cannot be measured (no workload shows it, or no such bug); choose "
                f"from {', '.join(measurable)}")
    print(f"{len(names)} bug(s); runs of {args.time_limit:g} s, shrink budget {args.budget:g} s, {args.tries} tries "
          f"per candidate, {args.replays} replays", flush=True)
    print(f"{'bug':26} {'seed':>11} {'faults':>7} {'shrunk':>7} {'ratio':>6} {'run s':>6} {'shrunk s':>9} "
          f"{'cands':>5} {'took s':>7} {'replays':>7}  anomaly (held: <=3 faults, >=2 of 3 replays)", flush=True)
    from bench._util import exit_on_sigterm

    exit_on_sigterm()  # the store below is removed also on SIGTERM
    store = Path(tempfile.mkdtemp(prefix="logquake-bench-real-shrink-"))
    rows = []
    try:
        for name in names:
            started = time.monotonic()
            row = measure(measurable[name], args, store)
            rows.append(row)
            if row["seed"] is None:
                print(f"{name:26} {'-':>11} no failing run in {len(row['tried'])}: {row['tried']} "
                      f"({time.monotonic() - started:.0f} s)", flush=True)
                continue
            if "error" in row:
                print(f"{name:26} {row['seed']:>11} shrink failed: {row['error'][-300:]}", flush=True)
                continue
            o, s = row["original"], row["shrunk"]
            held = s["events"] <= 3 and row["replays"] * 3 >= 2 * args.replays
            print(f"{name:26} {row['seed']:>11} {o['events']:>7} {s['events']:>7} "
                  f"{s['events'] / o['events'] if o['events'] else 0:>6.2f} {o['time_limit_s']:>6g} "
                  f"{s['time_limit_s']:>9g} {row['candidates']:>5} {row['took_s']:>7.0f} "
                  f"{row['replays']:>4}/{args.replays}  {row['anomaly']} ({'held' if held else 'NOT held'}"
                  f"{'; stopped at the budget' if row['out_of_budget'] else ''})", flush=True)
    finally:
        shutil.rmtree(store, ignore_errors=True)
    print(json.dumps({"rows": rows}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
