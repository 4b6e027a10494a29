"""Explicit fault schedules of the simulator: the `Fault` record, its rules, and the one reader of schedule files.

A schedule file is what every `logquake sim` run writes as schedule.json and
what `--schedule` takes back: a JSON list of faults, or an object with that
list as `faults` and `end_s` (when the drawn nemesis last woke up, kept so
that a replay matches the drawn run byte for byte). A fault is `at_s`
(seconds after the workload started), `kind` (one of SCHEDULED_KINDS), `node`
(1..N), `hold_s` (seconds until healed) and `peer`, which only a link uses:
the other end of the cut, where 0 or absent means the node after `node`,
cyclically (`Fault.other_end`).

Why a module of its own: three places used to hold these rules, each with
its own copy (`python -m broker.sim --schedule`, `SimOptions`, and the
harness, which checks a file before it starts anything and reads a run's
file to shrink it), and the copies had started to drift. The harness may not
import the broker (pyproject.toml's import contracts), so it reaches this
module as it reaches the simulation, through a child interpreter:

    python -m broker.sim.schedule FILE --nodes N

prints one JSON line: the schedule as the simulation will apply it (every
fault with all five fields, a link's peer resolved, other kinds' peer 0) and
exit 0, or `{"error": MESSAGE}` and exit 1, where MESSAGE names the file and,
for a bad fault, its number and its text. The module imports nothing heavier
than broker.io, so that check costs the harness a fraction of a second.

Thread-safety: pure functions and an immutable record; the entry point is
single-threaded.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from dataclasses import dataclass

from broker.io import Runtime

# what a given schedule may hold; the drawn-only `leader` kind is not here because it names no node of its own: a
# drawn one is recorded as the partition of the node that led, which is what a replay schedules
SCHEDULED_KINDS = ("crash", "partition", "clients", "power", "link")


@dataclass(frozen=True)
class Fault:
    """One fault of an explicit schedule: `kind` (one of SCHEDULED_KINDS) of node `node`, `at_s` virtual seconds after
    the workload started (or once the fault before it healed), healed `hold_s` seconds later. A `link` fault cuts
    `node` from `peer` only (0: the node after `node`, cyclically); other kinds ignore `peer`."""

    at_s: float
    kind: str
    node: int
    hold_s: float
    peer: int = 0

    def other_end(self, nodes: int) -> int:
        """The node a link fault cuts `node` from, in a cluster of `nodes`: the one place that says what peer 0
        means, so that the check, the simulation and what a run records cannot disagree."""
        return self.peer or self.node % nodes + 1

    def as_applied(self, nodes: int) -> Fault:
        """This fault as the simulation records it once applied: a link's peer resolved, any other kind's peer 0
        (what `python -m broker.sim.schedule` prints, so that a reader never needs the peer rule itself)."""
        return dataclasses.replace(self, peer=self.other_end(nodes) if self.kind == "link" else 0)


def fault_problem(fault: Fault, nodes: int) -> str | None:
    """What makes `fault` impossible in a cluster of `nodes` (None when nothing does).

    One wording for `SimOptions` and for schedule files alike. A peer outside the cluster is refused whatever the
    kind: ignored by every kind but a link, it is most likely a typo that a user wants to hear about."""
    if fault.kind not in SCHEDULED_KINDS:
        return (f"kind {fault.kind!r} cannot be scheduled; choose from {', '.join(SCHEDULED_KINDS)} (a drawn leader "
                "fault is the partition of the node that led: schedule that partition)")
    if not (math.isfinite(fault.at_s) and math.isfinite(fault.hold_s) and fault.at_s >= 0 and fault.hold_s > 0):
        return "at_s must be at least 0 and hold_s more than 0 (finite seconds)"
    if not (1 <= fault.node <= nodes and 0 <= fault.peer <= nodes):
        return (f"names a node this cluster of {nodes} does not have (node is 1 to {nodes}; peer is 0, the next "
                f"node, or 1 to {nodes})")
    if fault.kind == "link" and fault.other_end(nodes) == fault.node:
        return ("is a link from a node to itself" +
                (f" (peer 0 is the next node, and a cluster of {nodes} has no other)" if not fault.peer else ""))
    return None


def _number(value, whole: bool) -> bool:
    """A JSON number (not a boolean, which Python counts as an int); with `whole`, one without a fraction."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return not whole or isinstance(value, int) or value.is_integer()


def parse_schedule(data: bytes, nodes: int, source: str) -> tuple[tuple[Fault, ...], float | None]:
    """(faults, end_s) of a schedule file's bytes, each fault checked against a cluster of `nodes`.

    ValueError names `source` (the file) and, for a bad fault, its number from 1 and its JSON text, so that a user
    can find it in a long file."""
    try:
        parsed = json.loads(data)
    except ValueError as exc:
        raise ValueError(f"{source}: not JSON: {exc}") from None
    end_s = parsed.get("end_s") if isinstance(parsed, dict) else None
    items = parsed.get("faults") if isinstance(parsed, dict) else parsed
    if not isinstance(items, list):
        raise ValueError(f"{source}: expected a JSON list of faults, or an object with one as `faults`")
    if end_s is not None and not (_number(end_s, whole=False) and math.isfinite(end_s) and end_s >= 0):
        raise ValueError(f"{source}: end_s is {end_s!r}, expected seconds (a number, at least 0)")
    faults = []
    for number, item in enumerate(items, 1):
        fault, problem = None, None
        if not isinstance(item, dict) or not {"at_s", "kind", "node", "hold_s"} <= set(item):
            problem = "needs at_s, kind, node and hold_s"
        elif not (all(_number(item[k], whole=False) for k in ("at_s", "hold_s"))
                  and all(_number(item.get(k, 0), whole=True) for k in ("node", "peer"))):
            problem = "at_s and hold_s must be numbers, node and peer whole numbers"
        else:
            fault = Fault(at_s=float(item["at_s"]), kind=str(item["kind"]), node=int(item["node"]),
                          hold_s=float(item["hold_s"]), peer=int(item.get("peer", 0)))
            problem = fault_problem(fault, nodes)
        if fault is None or problem:
            raise ValueError(f"{source}: fault {number} ({json.dumps(item)}): {problem}")
        faults.append(fault)
    return tuple(faults), None if end_s is None else float(end_s)


def read_schedule(path: str, nodes: int) -> tuple[tuple[Fault, ...], float | None]:
    """`parse_schedule` of the file at `path`, read through the real runtime's disk (the broker's only way to files);
    a file that cannot be read is a ValueError too, naming it."""
    try:
        source = Runtime.real().disk.open(path, "rb")
        try:
            data = source.read()
        finally:
            source.close()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    return parse_schedule(data, nodes, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m broker.sim.schedule",
                                     description="Check a schedule file against a cluster; print it as it will be "
                                                 "applied, or the error, as one JSON line.")
    parser.add_argument("file")
    parser.add_argument("--nodes", type=int, required=True)
    args = parser.parse_args(argv)
    try:
        faults, end_s = read_schedule(args.file, args.nodes)
    except ValueError as exc:
        print(json.dumps({"error": str(exc)}), flush=True)
        return 1
    print(json.dumps({"faults": [dataclasses.asdict(f.as_applied(args.nodes)) for f in faults], "end_s": end_s}),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
