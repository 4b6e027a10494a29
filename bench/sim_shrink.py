"""How far `logquake shrink` shrinks a failing simulated seed, per planted bug, and whether the shrunk run still fails.

For each planted bug the simulator catches (the settings are the ones README's
table of `logquake sim` uses for it), this finds a failing seed (random seeds
from a random start, printed, until one is INVALID, at most --max-seeds), then
shrinks it with `logquake shrink` (harness/sim_shrink.py: ddmin over the
faults, then the duration, one deterministic run per candidate) and replays
the shrunk command --replays times, each in its own child interpreter. It
prints, per bug: the seed, the original faults and duration (the baseline,
measured in the same run), the shrunk ones, the ratio, the candidates and
seconds the shrink took, the anomaly kept, and how many replays showed it.

    python3 bench/sim_shrink.py [--bugs all|NAME,...] [--seed S] [--duration 30] [--budget 600] [--replays 3]

Everything runs in a temporary store, removed at the end. It asserts nothing.
Issue 15 asks each bug's failing run to shrink to at most 3 fault events
within 30 minutes and the shrunk run to fail again in at least 2 of 3 replays;
the last column says whether both held.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FLUSH = ["--faults", "crash,partition,power", "--broker-override", "log.flush.interval.messages=1"]
EXACTLY_ONCE = ["--delivery", "exactly-once"]
PIPELINE = ["--workload", "pipeline"]
# bug -> the flags README's table of `logquake sim` measures it with (the bugs the simulator catches)
BUGS = {
    "ack.before.replication": [], "skip.truncation": [], "fenced.leader.acks": [], "skip.fsync": FLUSH,
    "skip.dedup": ["--idempotent"], "hwm.past.isr": [], "read.above.hwm": [], "index.off.by.one": [],
    "read.uncommitted": EXACTLY_ONCE, "abort.marker.lost": EXACTLY_ONCE, "epoch.bump.unfenced": EXACTLY_ONCE,
    "partial.commit.markers": EXACTLY_ONCE + ["--faults", "crash,partition,link"],
    "keep.torn.tail": ["--faults", "crash"],
    "aborted.offsets.visible": PIPELINE, "unfenced.txn.offsets": PIPELINE, "double.assignment": PIPELINE,
}


def quietly(function, *args, **kwargs):
    """Call `function` with its prints captured; (its result, what it printed)."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        result = function(*args, **kwargs)
    return result, buffer.getvalue()


def measure(bug: str, first_seed: int, args, store: Path) -> dict:
    from harness import cli
    from harness.sim_shrink import shrink_sim, sim_anomalies

    flags = ["--duration", f"{args.duration:g}s", *BUGS[bug], "--broker-override", f"logquake.debug.{bug}=true"]
    for seed in range(first_seed, first_seed + args.max_seeds):
        code, _ = quietly(cli.main, ["sim", "--seed", str(seed), *flags, "--store", str(store)])
        if code == 1:
            break
    else:
        return {"bug": bug, "seed": None, "tried": args.max_seeds}
    run_dir = (store / "sim" / "latest").resolve()
    result, _ = quietly(shrink_sim, run_dir, args.budget, None)
    argv = shlex.split(result["command"])[1:] + ["--store", str(store / "replays")]
    replays = 0
    for _ in range(args.replays):
        code, _ = quietly(cli.main, argv)
        replayed = json.loads((store / "replays" / "sim" / "latest" / "results.json").read_text())
        replays += code == 1 and result["anomaly"] in sim_anomalies(replayed)
    return {"bug": bug, "seed": seed, "tried": seed - first_seed + 1, "anomaly": result["anomaly"],
            "original": result["original"], "shrunk": result["shrunk"], "elapsed_s": result["elapsed_s"],
            "candidates": len(result["candidates"]), "replays": replays, "byte_for_byte": result["replayed_byte_for_byte"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bugs", default="all", help=f"all, or comma-separated of: {', '.join(BUGS)}")
    p.add_argument("--seed", type=int, default=None, help="the first seed of every bug (default: drawn, printed)")
    p.add_argument("--duration", type=float, default=30.0, help="virtual seconds per seed (default %(default)s)")
    p.add_argument("--budget", type=float, default=600.0, help="seconds of shrinking per bug (default %(default)s)")
    p.add_argument("--replays", type=int, default=3, help="replays of each shrunk run (default %(default)s)")
    p.add_argument("--max-seeds", type=int, default=10, help="seeds tried per bug for a failing one (default 10)")
    args = p.parse_args()
    bugs = list(BUGS) if args.bugs == "all" else [b.strip() for b in args.bugs.split(",") if b.strip()]
    unknown = [b for b in bugs if b not in BUGS]
    if unknown:
        p.error(f"--bugs: {', '.join(unknown)} not measured here; choose from {', '.join(BUGS)}")
    first = args.seed if args.seed is not None else random.randrange(1, 2**31 - 1000)
    print(f"first seed {first}{'' if args.seed is not None else ' (drawn at random)'}; {args.duration:g} s per seed, "
          f"shrink budget {args.budget:g} s, {args.replays} replays", flush=True)
    header = (f"{'bug':24} {'seed':>11} {'faults':>7} {'shrunk':>7} {'ratio':>6} {'dur s':>6} {'shrunk s':>9} "
              f"{'cands':>5} {'took s':>7} {'replays':>7}  anomaly (held: <=3 faults, >=2 of 3 replays)")
    print(header, flush=True)
    from bench._util import exit_on_sigterm

    exit_on_sigterm()  # the store below is removed also on SIGTERM
    store = Path(tempfile.mkdtemp(prefix="logquake-bench-shrink-"))
    rows = []
    try:
        for bug in bugs:
            started = time.monotonic()
            row = measure(bug, first, args, store)
            rows.append(row)
            if row["seed"] is None:
                print(f"{bug:24} {'-':>11} no failing seed in {row['tried']} ({time.monotonic() - started:.0f} s)",
                      flush=True)
                continue
            o, s = row["original"], row["shrunk"]
            held = s["events"] <= 3 and row["replays"] * 3 >= 2 * args.replays
            print(f"{bug:24} {row['seed']:>11} {o['events']:>7} {s['events']:>7} "
                  f"{s['events'] / o['events'] if o['events'] else 0:>6.2f} {o['duration_s']:>6g} {s['duration_s']:>9g} "
                  f"{row['candidates']:>5} {row['elapsed_s']:>7.0f} {row['replays']:>4}/{args.replays}  "
                  f"{row['anomaly']} ({'held' if held else 'NOT held'}"
                  f"{'' if row['byte_for_byte'] else '; the recorded schedule did not replay byte for byte'})",
                  flush=True)
    finally:
        shutil.rmtree(store, ignore_errors=True)
    print(json.dumps({"first_seed": first, "rows": rows}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
