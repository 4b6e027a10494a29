"""How much of a run the harness watches: operations completed against what `--rate` asks, outside fault
windows, and whether some worker keeps completing operations through faults that leave a majority working.

A fault-injection run is worth the operations it sees: a worker stuck waiting for a timeout watches
nothing. For each run (default settings: queue workload, the default fault mix, 3 nodes) this prints:

- outside faults: operations completed (ok or fail) while no fault was in effect, over `--rate` times
  that time (issue 13's target: at least 70%);
- through faults: of the whole seconds inside fault windows in which the faults in effect, together, leave
  a majority of the nodes working (the nodes killed, paused, or cut off from their peers or from the
  clients by every fault overlapping that second form a minority), the share in which at least one worker
  completed an operation (target: every second, 100%). Where faults overlap (a hand-written schedule; the
  default mix applies one fault at a time), a pause of one node and a kill of another leave no majority
  of three, and such seconds are not counted.

    python3 bench/observation.py [--runs 10] [--time-limit 30] [--seed N] [-- extra logquake test flags]
    python3 bench/observation.py --analyze RUN_DIR [RUN_DIR ...]

Each run's seed is printed (a run can be repeated with `logquake test --seed`). The figures come from the
runs' histories (`reports.run_data` reads them, as the report does).
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nemeses.core import nodes_hit  # noqa: E402
from reports.run_data import load_run  # noqa: E402


def _union(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _inside(t: float, spans: list[tuple[float, float]]) -> bool:
    return any(start <= t < end for start, end in spans)


def _affected(pair, nodes: int) -> set[str] | None:
    """The nodes a fault took out of service for clients: killed or paused ones, and with a partition, those cut
    off from the rest (from at least nodes - 1 peers) or from the clients; None when the op says nothing."""
    value = pair.complete.get("value") if pair.complete else None
    if isinstance(value, dict) and "grudge" in value:
        grudge = value["grudge"]
        return {n for n, cut in grudge.items() if isinstance(cut, list)
                and ("client" in cut or len(set(cut) - {"client"}) >= nodes - 1)}
    hit = nodes_hit(value)
    return set(hit) if hit is not None else None


def observe(run_dir: Path) -> dict:
    run = load_run(run_dir)
    options = run.options
    rate, limit, nodes = float(options.get("rate", 200.0)), float(options.get("time_limit_s", 30.0)), \
        int(options.get("nodes", 3))
    client = [p for p in run.pairs if isinstance(p.process, int)]
    if not client:
        return {"run": str(run_dir), "error": "no client operations"}
    begin = min(p.start_s for p in client)
    end = begin + limit
    done = [p.end_s for p in client if p.end_s is not None and p.type in ("ok", "fail") and begin <= p.end_s < end]
    faults = _union([(max(w.start_s, begin), min(w.end_s, end)) for w in run.windows if w.end_s > begin])
    fault_s = sum(e - s for s, e in faults)
    outside_s = max(0.0, limit - fault_s)
    outside_done = sum(1 for t in done if not _inside(t, faults))
    starts = {(round(p.start_s, 3), str(p.invoke.get("f"))): p for p in run.nemesis_pairs}
    # every fault window with the nodes it took out; a second counts when some fault was in effect all through it
    # and the faults in effect, together, left a majority of the nodes working
    spans = [(max(w.start_s, begin), min(w.end_s, end), _affected(p, nodes)) for w in run.windows
             if w.end_s > begin and (p := starts.get((round(w.start_s, 3), w.f))) is not None]
    seconds = []
    for lo, hi in [(s + k, s + k + 1) for s, e in faults for k in range(int(math.floor(e - s)))]:
        active = [hit for s, e, hit in spans if s < hi and e > lo]
        if active and all(hit is not None for hit in active) and \
                len(set().union(*active)) <= (nodes - 1) // 2:
            seconds.append((lo, hi))
    served = sum(1 for lo, hi in seconds if any(lo <= t < hi for t in done))
    return {"run": str(run_dir), "seed": options.get("seed"), "verdict": (run.results or {}).get("valid"),
            "asked_outside": rate * outside_s, "done_outside": outside_done,
            "outside_ratio": outside_done / (rate * outside_s) if outside_s > 0 else None,
            "fault_s": fault_s, "majority_seconds": len(seconds), "served_seconds": served,
            "served_ratio": served / len(seconds) if seconds else None, "all_done": len(done),
            "asked": rate * limit}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="default runs to make (default 10)")
    parser.add_argument("--time-limit", type=float, default=30.0, help="seconds each run (default 30)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the seeds (default random, printed)")
    parser.add_argument("--analyze", nargs="+", metavar="RUN_DIR", help="measure stored runs instead")
    args, extra = parser.parse_known_args()
    extra = [a for a in extra if a != "--"]
    if args.analyze:
        run_dirs = [Path(d).resolve() for d in args.analyze]
    else:
        seed = args.seed if args.seed is not None else random.randrange(1 << 30)
        rng = random.Random(seed)
        store = Path(tempfile.mkdtemp(prefix="logquake-observation-"))
        print(f"bench/observation.py: {args.runs} runs of {args.time_limit:g} s, seeds from {seed}, store {store}")
        run_dirs = []
        for i in range(args.runs):
            run_seed = rng.randrange(1 << 30)
            subprocess.run([sys.executable, "-m", "harness.cli", "test", "--time-limit", str(args.time_limit),
                            "--seed", str(run_seed), "--store", str(store), "--quiet", *extra],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            run_dirs.append((store / "latest").resolve())
    rows = [observe(d) for d in run_dirs]
    print(f"{'seed':>10} {'verdict':>8} {'done/asked (all)':>17} {'outside faults':>15} {'through faults':>15}")
    for r in rows:
        if "error" in r:
            print(f"{r['run']}: {r['error']}")
            continue
        outside = "-" if r["outside_ratio"] is None else f"{r['outside_ratio']:.0%}"
        served = "-" if r["served_ratio"] is None else f"{r['served_seconds']}/{r['majority_seconds']} s"
        print(f"{r['seed']!s:>10} {r['verdict']!s:>8} {r['all_done']:>7}/{r['asked']:<9.0f} {outside:>15} {served:>15}")
    ratios = [r["outside_ratio"] for r in rows if r.get("outside_ratio") is not None]
    seconds = sum(r.get("majority_seconds", 0) for r in rows)
    served = sum(r.get("served_seconds", 0) for r in rows)
    if ratios:
        print(f"outside faults: median {statistics.median(ratios):.0%}, lowest {min(ratios):.0%} of --rate "
              f"(target: at least 70%)")
    if seconds:
        print(f"through faults that leave a majority working: {served} of {seconds} seconds "
              f"({served / seconds:.0%}) had a completed operation (target: every second)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
