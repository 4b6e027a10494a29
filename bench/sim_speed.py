"""How much faster than real time the deterministic simulation runs: one seed of 3 nodes, 30 virtual seconds.

One seed of `logquake sim`'s default run (the queue workload with crashes and
partitions, broker/sim/workload.py) is simulated in this process twice: with
the invariants checked after every step (broker/sim/invariants.py; what
`logquake sim` runs) and, as the baseline measured in the same run, without
them (the simulator and the broker alone). For each it prints the virtual
seconds, the wall and CPU seconds, and the ratios virtual/wall and
virtual/CPU (CPU time is what a loaded machine still gives one process: on
this shared 2-core machine wall time varies with the other jobs), against
issue 21's target of 20. It also prints what a seed of `logquake sim` pays
besides the simulation: a child interpreter importing the broker (its
start-up, measured as `python -c 'import broker.sim.workload'`).

    python3 bench/sim_speed.py [--seed S] [--duration 30] [--nodes 3]

Without --seed the seed is drawn at random and printed. It asserts nothing.

Measured (shared 2-core machine at load 6, Python 3.11, seed 777, 33.4 virtual
s, 3,508 ops, 80,219 steps): with the invariants 10.7x virtual/CPU (8.7x
virtual/wall), the baseline without them 13.0x (12.4x); the invariants cost
1.22x. Before this bench's changes (the checker reading every replica's state
and log at every step) the same seed took 4.4 to 5.6 CPU s with the
invariants (6.0 to 7.7x) against 3.6 to 4.0 s after (8.3 to 9.3x), measured
back to back on the loaded machine; the checker's own time went from 28 to
4.4 us a step. A seed's child interpreter adds about 0.9 s of start-up.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from broker.sim.workload import SimOptions, simulate  # noqa: E402

TARGET = 20.0


def measure(seed: int, duration_s: float, nodes: int, invariants: bool) -> dict:
    wall0, cpu0 = time.perf_counter(), time.process_time()
    _, summary = simulate(SimOptions(seed=seed, duration_s=duration_s, nodes=nodes, invariants=invariants))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {"virtual": summary["virtual_s"], "wall": wall, "cpu": cpu, "ops": summary["ops"],
            "steps": summary["invariants"]["checks"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--duration", type=float, default=30.0, help="virtual seconds of workload (default 30)")
    parser.add_argument("--nodes", type=int, default=3)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    print(f"seed {seed}{' (drawn at random)' if args.seed is None else ''}, {args.nodes} nodes, "
          f"{args.duration:g} s of workload with crashes and partitions")
    runs = {"with invariants": measure(seed, args.duration, args.nodes, True),
            "baseline, no invariants": measure(seed, args.duration, args.nodes, False)}
    for name, r in runs.items():
        print(f"  {name:24s} virtual {r['virtual']:6.1f} s  wall {r['wall']:6.2f} s  CPU {r['cpu']:6.2f} s  "
              f"virtual/wall {r['virtual'] / r['wall']:5.1f}x  virtual/CPU {r['virtual'] / r['cpu']:5.1f}x  "
              f"({r['ops']} ops)")
    checked, bare = runs["with invariants"], runs["baseline, no invariants"]
    print(f"  invariants cost {checked['cpu'] / bare['cpu']:.2f}x the CPU of the baseline "
          f"({(checked['cpu'] - bare['cpu']) / checked['steps'] * 1e6:.1f} us a step over {checked['steps']} steps)")
    print(f"  target {TARGET:g}x: virtual/CPU with invariants is {checked['virtual'] / checked['cpu'] / TARGET:.2f} "
          "of it")
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import broker.sim.workload"], cwd=ROOT, check=True)
    print(f"  a seed's child interpreter starting and importing the broker: {time.perf_counter() - started:.2f} s wall")


if __name__ == "__main__":
    main()
