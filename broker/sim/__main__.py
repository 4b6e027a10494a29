"""`python -m broker.sim --seed S --history FILE [...]`: one seeded simulated run, its history written to FILE.

What `logquake sim` runs in a child interpreter (the harness may not import
the broker): the queue workload of broker.sim.workload against a simulated
cluster of the real broker. It writes the history (standard JSONL) to
`--history` and prints one JSON line on stdout: the seed, virtual and wall
seconds, ops, trace digest, the SHA-256 of the history's bytes and
`invariants` (the replication invariants checked after every step,
broker/sim/invariants.py: their names, the steps checked, the violations).
`--delivery exactly-once` runs transactional producers and read_committed
consumers (broker.sim.transactions); `--idempotent` goes with at-least-once
only (the pair is refused, exit 2). `--workload pipeline` runs the
read-process-write pipeline of broker.sim.pipeline instead of the queue
workload (its history is judged by checkers.pipeline), `--workload offsets`
the consumer-group offset commits of broker.sim.offsets (judged by
checkers.offsets); --idempotent and --delivery apply to neither (exit 2).
Exit 0 when the run completed (whatever the history and the invariants show:
the harness judges them),
1 with a traceback on stderr when the simulation itself broke (an invariant
of the broker or of the simulator, a deadlock).

Thread-safety: a command-line entry point; single-threaded.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import logging
import sys

if __name__ == "__main__":  # a process of its own: keep kio from importing Hypothesis (broker.keep_hypothesis_out)
    from broker import keep_hypothesis_out

    keep_hypothesis_out()

from broker.io import Runtime  # noqa: E402
from broker.sim.schedule import read_schedule  # noqa: E402
from broker.sim.workload import DELIVERIES, FAULTS, KINDS, SimOptions, simulate  # noqa: E402

# every workload but the queue (broker.sim.workload's own): its simulation class, and why the producer flags
# (--idempotent, --delivery) do not apply to it
SIMULATIONS = {
    "pipeline": ("broker.sim.pipeline:PipelineSimulation",
                 "runs its own clients (an idempotent feeder, transactional processors)"),
    "offsets": ("broker.sim.offsets:OffsetsSimulation", "commits consumer-group offsets and produces nothing"),
}
WORKLOADS = ("queue", *SIMULATIONS)


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not of the form key=value")
    return key.strip(), value.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m broker.sim", description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--duration-s", type=float, default=30.0)
    parser.add_argument("--faults", default=",".join(FAULTS), help=f"comma-separated, of {', '.join(KINDS)}; "
                                                                  "empty for none")
    parser.add_argument("--override", type=_key_value, action="append", default=[], metavar="KEY=VALUE",
                        help="a broker property for every node (repeatable)")
    parser.add_argument("--idempotent", action="store_true", help="idempotent producers (retries deduplicated)")
    parser.add_argument("--delivery", choices=DELIVERIES, default="at-least-once",
                        help="exactly-once: transactional producers and read_committed consumers")
    parser.add_argument("--workload", choices=WORKLOADS, default="queue",
                        help="queue (default), pipeline: read-process-write exactly once (broker.sim.pipeline), or "
                             "offsets: consumer-group offset commits (broker.sim.offsets)")
    parser.add_argument("--schedule", help="a JSON file: a list of faults ({at_s, kind, node, hold_s[, peer]} each), or "
                                           "{\"faults\": [...], \"end_s\": S} as the summary records them; run "
                                           "instead of the drawn faults (broker.sim.schedule reads it)")
    parser.add_argument("--history", required=True, help="where to write the history (JSONL)")
    args = parser.parse_args(argv)
    if args.workload in SIMULATIONS and (args.idempotent or args.delivery != "at-least-once"):
        parser.error(f"--workload {args.workload} {SIMULATIONS[args.workload][1]}: --idempotent and --delivery do not "
                     "apply")
    if args.idempotent and args.delivery != "at-least-once":
        parser.error("--idempotent goes with --delivery at-least-once (exactly-once producers are idempotent already)")
    schedule, end_s = None, None
    if args.schedule is not None:
        try:
            schedule, end_s = read_schedule(args.schedule, args.nodes)
        except ValueError as exc:  # it names the file, and a bad fault's number
            parser.error(f"--schedule {exc}")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    faults = tuple(f for f in args.faults.split(",") if f)
    try:
        options = SimOptions(seed=args.seed, nodes=args.nodes, duration_s=args.duration_s, faults=faults,
                             properties=dict(args.override), idempotent=args.idempotent, delivery=args.delivery,
                             schedule=schedule, schedule_end_s=end_s)
    except ValueError as exc:
        parser.error(str(exc))
    # the outside world of this process (its real clock, its real disk), as python -m broker reaches it: through a
    # real Runtime; the simulated world inside knows nothing of it
    real = Runtime.real()
    started_ns = real.clock.monotonic_ns()
    workload = None
    if args.workload in SIMULATIONS:
        module, name = SIMULATIONS[args.workload][0].split(":")
        workload = getattr(importlib.import_module(module), name)
    text, summary = simulate(options, workload)
    summary["wall_s"] = (real.clock.monotonic_ns() - started_ns) / 1e9
    data = text.encode("utf-8")
    out = real.disk.open(args.history, "wb")
    try:
        out.write(data)
    finally:
        out.close()
    summary["history_sha256"] = hashlib.sha256(data).hexdigest()
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
