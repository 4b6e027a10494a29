"""What the fault probes cost: the time to start each fault with its probe, against the same faults
started without probes, on one 3-node local cluster of our broker, in the same run.

Each round starts and undoes a partition (one node isolated), a kill (then a restart), a pause (then a
resume), packet delays (the latency shape, 100 +- 50 ms, and the loss shape, 20% with 10 ms) and a clock
skew (then a reset), first with probes off (the baseline) and then with probes on, on a random node each time. Printed
per fault kind: the median and largest time to start the fault, without and with its probe, the probe's
own cost (the difference of the medians), and whether every probe confirmed its fault. With `--backend
docker` the nodes are containers and a node's links are probed from inside it (`docker exec`). The target is under
1 s per fault (issue 15).

    python3 bench/probes.py [--rounds 10] [--seed N] [--backend local|docker]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.backends.local import LocalCluster  # noqa: E402
from harness.runner import wait_for_brokers  # noqa: E402
from harness.system import logquake_broker  # noqa: E402
from nemeses.clock import ClockPackage  # noqa: E402
from nemeses.core import FaultEvent, Nemesis  # noqa: E402
from nemeses.packet import PacketPackage  # noqa: E402
from nemeses.partition import PartitionPackage  # noqa: E402
from nemeses.process import KillPackage, PausePackage  # noqa: E402
from nodecontrol.control import NodeControlError  # noqa: E402

FAULTS = {  # kind: (start event, undo event)
    "partition": (("partition", "start-partition", "isolate-one"), ("partition", "stop-partition", "isolate-one")),
    "kill": (("kill", "kill", None), ("kill", "start", None)),
    "pause": (("pause", "pause", None), ("pause", "resume", None)),
    "packet latency": (("packet", "start-packet", "latency"), ("packet", "stop-packet", "latency")),
    "packet loss": (("packet", "start-packet", "loss"), ("packet", "stop-packet", "loss")),
    "clock skew": (("clock", "start-clock", "skew"), ("clock", "stop-clock", "skew")),
}


def measure(cluster: LocalCluster, rounds: int, rng: random.Random, probes: bool) -> dict[str, list]:
    nemesis = Nemesis([PartitionPackage(), KillPackage(), PausePackage(), PacketPackage(), ClockPackage()],
                      probes=probes)
    times: dict[str, list] = {kind: [] for kind in FAULTS}
    confirmed: dict[str, list] = {kind: [] for kind in FAULTS}
    for _ in range(rounds):
        for kind, ((package, start_f, shape), (_, undo_f, _)) in FAULTS.items():
            if kind not in times:
                continue
            node = rng.choice(cluster.nodes) if package != "packet" else None  # packet faults shape every link
            started = time.perf_counter()
            try:
                result = nemesis.apply(FaultEvent(0.0, package, start_f, node, shape), cluster, None)
            except NodeControlError as e:  # e.g. Docker on a kernel without netem: no delay to measure
                nemesis.apply(FaultEvent(0.0, package, undo_f, node, shape), cluster, None)
                times.pop(kind, None)
                confirmed.pop(kind, None)
                print(f"{kind}: not measured: {e}")
                continue
            times[kind].append(time.perf_counter() - started)
            if probes:
                confirmed[kind].append(result["probe"]["confirmed"])
            nemesis.apply(FaultEvent(0.0, package, undo_f, node, shape), cluster, None)
            if kind == "kill":
                cluster.wait_ready([node])
    return {"times": times, "confirmed": confirmed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="faults of each kind, with and without probes")
    parser.add_argument("--seed", type=int, default=None, help="the node choices (default: random, printed)")
    parser.add_argument("--backend", choices=("local", "docker"), default="local", help="where the nodes run")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    print(f"bench/probes.py: {args.rounds} rounds, seed {seed}, 3 {args.backend} nodes of our broker")
    if args.backend == "docker":
        from harness.backends.docker import DockerCluster

        cluster = DockerCluster(logquake_broker({}, 3), 3)
        cluster.prepare_image()
    else:
        cluster = LocalCluster(logquake_broker({}, 3), 3)
    cluster.enable_faults({"clock"})  # brokers under libfaketime
    cluster.setup()
    try:
        wait_for_brokers(cluster, 60)
        baseline = measure(cluster, args.rounds, random.Random(seed), probes=False)
        probed = measure(cluster, args.rounds, random.Random(seed), probes=True)
    finally:
        cluster.teardown()
    print(f"{'fault':<15} {'without probe: median / max':>28} {'with probe: median / max':>26} {'probe cost':>11}"
          f" {'confirmed':>10}")
    worst = 0.0
    for kind in [k for k in FAULTS if k in baseline["times"] and k in probed["times"]]:
        base, with_probe = baseline["times"][kind], probed["times"][kind]
        cost = statistics.median(with_probe) - statistics.median(base)
        worst = max(worst, max(with_probe) - statistics.median(base))
        ok = sum(1 for c in probed["confirmed"][kind] if c is True)
        print(f"{kind:<15} {statistics.median(base):>17.3f} / {max(base):.3f} s {statistics.median(with_probe):>15.3f}"
              f" / {max(with_probe):.3f} s {cost:>9.3f} s {ok:>6}/{len(with_probe)}")
    print(f"largest probe cost over every fault: {worst:.3f} s (target: under 1 s)")
    return 0 if worst < 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
