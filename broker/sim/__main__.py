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
workload (its history is judged by checkers.pipeline; --idempotent and
--delivery do not apply to it, exit 2).
Exit 0 when the run completed (whatever the history and the invariants show:
the harness judges them),
1 with a traceback on stderr when the simulation itself broke (an invariant
of the broker or of the simulator, a deadlock).

Thread-safety: a command-line entry point; single-threaded.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys

if __name__ == "__main__":  # a process of its own: keep kio from importing Hypothesis (broker.keep_hypothesis_out)
    from broker import keep_hypothesis_out

    keep_hypothesis_out()

from broker.io import Runtime  # noqa: E402
from broker.sim.workload import DELIVERIES, FAULTS, KINDS, Fault, SimOptions, simulate  # noqa: E402

WORKLOADS = ("queue", "pipeline")


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not of the form key=value")
    return key.strip(), value.strip()


def read_schedule(data: bytes) -> tuple[tuple[Fault, ...], float | None]:
    """(faults, end_s) of a schedule file: a JSON list of objects with Fault's fields, or an object with that list
    as `faults` and the nemesis's last wake-up as `end_s` (what a run's summary records). ValueError says what is
    wrong."""
    try:
        items = json.loads(data)
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    end_s = None
    if isinstance(items, dict):
        end_s = items.get("end_s")
        if end_s is not None and (not isinstance(end_s, (int, float)) or end_s < 0):
            raise ValueError(f"end_s is {end_s!r}: expected seconds (a number, at least 0)")
        items = items.get("faults")
    if not isinstance(items, list):
        raise ValueError("expected a JSON list of faults, or an object with one as `faults`")
    faults = []
    for number, item in enumerate(items, 1):
        try:
            faults.append(Fault(at_s=float(item["at_s"]), kind=str(item["kind"]), node=int(item["node"]),
                                hold_s=float(item["hold_s"]), peer=int(item.get("peer", 0))))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"fault {number} ({item!r}) needs at_s, kind, node and hold_s: {exc!r}") from None
    return tuple(faults), None if end_s is None else float(end_s)


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
                        help="queue (default) or pipeline: read-process-write exactly once (broker.sim.pipeline)")
    parser.add_argument("--schedule", help="a JSON file: a list of faults ({at_s, kind, node, hold_s[, peer]} each), or "
                                           "{\"faults\": [...], \"end_s\": S} as the summary records them; run "
                                           "instead of the drawn faults")
    parser.add_argument("--history", required=True, help="where to write the history (JSONL)")
    args = parser.parse_args(argv)
    if args.workload == "pipeline" and (args.idempotent or args.delivery != "at-least-once"):
        parser.error("--workload pipeline runs its own clients (an idempotent feeder, transactional processors): "
                     "--idempotent and --delivery do not apply")
    if args.idempotent and args.delivery != "at-least-once":
        parser.error("--idempotent goes with --delivery at-least-once (exactly-once producers are idempotent already)")
    schedule, end_s = None, None
    if args.schedule is not None:
        try:
            source = Runtime.real().disk.open(args.schedule, "rb")
            try:
                schedule, end_s = read_schedule(source.read())
            finally:
                source.close()
        except (OSError, ValueError) as exc:
            parser.error(f"--schedule {args.schedule}: {exc}")
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
    if args.workload == "pipeline":
        from broker.sim.pipeline import PipelineSimulation

        workload = PipelineSimulation
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
