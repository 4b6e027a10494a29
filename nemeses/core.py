"""The nemesis model: faults as data, scheduled from a seed, applied through node control.

A *fault package* (Jepsen's word, from `jepsen.nemesis.combined`) bundles three
things: how to schedule its faults, how to apply one, and how to heal at the end.
Packages compose into one `Schedule`, a list of `FaultEvent`s with times,
kinds and targets, decided entirely by the seed before the test starts. The
runner records each event in the history *before* applying it, so a failing run
can be replayed, and its schedule shrunk, from the data alone. Nothing here
decides anything at random outside the seeded schedule: where a fault aims at a
random node, the choice is fixed in the event (`pick`, a number the schedule
drew), and resolved against the node list the same way every time.

Targets name roles: `one`, `minority`, `majority`, `all`, `leader` (of the
workload's first partition), `leader-of:<key>` (of that key's partition),
`controller` (the active controller), `primaries` (the leaders of every
partition); or nodes: `n2`, `nodes:n1,n3`, or `as-event:K`, the nodes the
K-th event of the schedule (in time order, from 1) hit, so a hand-written
schedule can say "isolate the leader, then kill that node". Roles that depend on the
cluster's state are resolved when the fault is applied, through a `Targets`
object that asks the cluster over the Kafka protocol; the resolved nodes are
recorded in the completion of the nemesis op, beside the event that asked.

A schedule can also be written by hand (`logquake test --schedule FILE`, in
the format `schedule.json` is written in: a list of events with `at_s`,
`package`, `f` and optionally `target`, `shape` and `pick`); `check_events`
refuses one that cannot run, naming the event.

Thread-safety: a Schedule is immutable; packages keep per-run state (what is
currently faulted) and are driven by one nemesis thread.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Protocol

from nodecontrol.control import NodeControl  # noqa: F401  (the only harness module nemeses may use)
from nemeses.probe import Probe, run_probe

TARGETS = ("one", "minority", "majority", "all", "leader", "controller", "primaries", "minority-third")


class Targets(Protocol):
    """Resolves role targets against the live cluster."""

    def leader(self, key: Any | None = None) -> str | None: ...

    def controller(self) -> str | None: ...

    def primaries(self) -> list[str]: ...

    def successor(self, key: Any | None = None) -> str | None:
        """The node elected next if the leader for `key` died (first in-ISR replica in replica order)."""
        ...


@dataclass(frozen=True)
class FaultEvent:
    """One scheduled nemesis operation.

    `at_s` is seconds after the workload starts; `f` is the operation
    (`start-partition`, `stop-partition`, `kill`, `start`, `pause`, `resume`,
    ...); `target` is a role; `shape` refines a partition; `pick` fixes the
    random choice among candidate nodes.
    """

    at_s: float
    package: str
    f: str
    target: str | None = None
    shape: str | None = None
    pick: int = 0

    @property
    def opens(self) -> bool:
        """True for an event that starts a fault (`start-*`, `kill`, `shutdown`, `pause`), False for one that undoes it."""
        return self.f.startswith("start-") or self.f in ("kill", "shutdown", "pause")

    def label(self) -> str:
        """The fault in a few words for progress lines: its package, and its shape or target ("partition: bridge")."""
        detail = self.shape or self.target
        return f"{self.package}: {detail}" if detail else self.package

    def to_dict(self) -> dict:
        d = {"at_s": round(self.at_s, 3), "package": self.package, "f": self.f}
        if self.target is not None:
            d["target"] = self.target
        if self.shape is not None:
            d["shape"] = self.shape
        d["pick"] = self.pick
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "FaultEvent":
        return cls(float(d["at_s"]), d["package"], d["f"], d.get("target"), d.get("shape"), int(d.get("pick", 0)))


@dataclass(frozen=True)
class Schedule:
    events: tuple[FaultEvent, ...]

    def to_list(self) -> list[dict]:
        return [e.to_dict() for e in self.events]

    @classmethod
    def from_list(cls, items: Iterable[dict]) -> "Schedule":
        return cls(tuple(sorted((FaultEvent.from_dict(d) for d in items), key=_event_order)))


def _event_order(event: FaultEvent):
    """Time order; at the same instant, undoing a fault goes before starting one."""
    return (event.at_s, event.opens)


def pick_nodes(nodes: list[str], target: str, pick: int) -> list[str]:
    """Resolve a node-count target (`one`, `minority`, `majority`, `all`) deterministically from `pick`."""
    ordered = sorted(nodes)
    n = len(ordered)
    counts = {"one": 1, "minority": max(1, (n - 1) // 2), "majority": n // 2 + 1, "all": n,
              "minority-third": max(1, (n - 1) // 3)}
    if target not in counts:
        raise ValueError(f"target {target!r} is not a node-count target; expected one of {sorted(counts)}")
    k = min(counts[target], n)
    rng = random.Random(pick)
    return sorted(rng.sample(ordered, k))


class FaultPackage:
    """Base class: subclasses give `name`, `kinds`, `schedule_window` and `apply`/`undo`."""

    name: str = "none"
    start_f: str = "start"
    stop_f: str = "stop"
    targets: tuple[str, ...] = ("one",)
    weight: int = 1  # turns per round when kinds take turns (Nemesis.schedule)

    def __init__(self, interval_s: float = 10.0, duration_s: float | None = None, targets: Iterable[str] | None = None):
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self.interval_s = interval_s
        self.duration_s = duration_s if duration_s is not None else interval_s / 2
        if targets is not None:
            targets = tuple(targets)
            unknown = [t for t in targets if t not in self.allowed_targets()]
            if unknown:
                raise ValueError(f"{self.name} nemesis: unknown target(s) {unknown}; accepted: {list(self.allowed_targets())}")
            self.targets = targets

    def allowed_targets(self) -> tuple[str, ...]:
        return type(self).targets

    def shapes(self) -> tuple[str | None, ...]:
        return (None,)

    def schedule(self, rng: random.Random, time_limit_s: float) -> list[FaultEvent]:
        """Fault windows of this package alone: every ~interval a start event, then its stop `duration`
        later, all before the limit."""
        events = []
        t = rng.uniform(0.2, 0.6) * self.interval_s
        while True:
            window = self.window(rng, t)
            if window[1].at_s >= time_limit_s:
                return events
            events.extend(window)
            t = window[1].at_s + self.interval_s * rng.uniform(0.5, 1.0)

    def window(self, rng: random.Random, t: float) -> tuple[FaultEvent, FaultEvent]:
        """One fault starting at `t`: its start event and its stop event, with target, shape and duration
        drawn from `rng`."""
        target = rng.choice(self.targets)
        shape = self.pick_shape(rng)
        pick = rng.randrange(1 << 30)
        duration = self.duration_s * rng.uniform(0.7, 1.3)
        return (FaultEvent(t, self.name, self.start_f, target, shape, pick),
                FaultEvent(t + duration, self.name, self.stop_f, target, shape, pick))

    def pick_shape(self, rng: random.Random) -> str | None:
        return rng.choice(self.shapes())

    def apply(self, event: FaultEvent, control: "NodeControl", targets: Targets) -> dict:
        """Carry out one event; return what was done (recorded as the nemesis op's completion value)."""
        raise AssertionError(f"{type(self).__name__} must implement apply()")

    def heal(self, control: "NodeControl") -> dict:
        """Undo every fault of this package; runs at the end, on errors and on Ctrl-C."""
        raise AssertionError(f"{type(self).__name__} must implement heal()")

    def probe(self, event: FaultEvent, result: dict, control: "NodeControl") -> "Probe | None":
        """Check, right after `apply` started a fault, that it is in effect (see nemeses.probe); None when
        this package has no probe."""
        return None

    def resolve(self, control: "NodeControl", targets: Targets, target: str, pick: int) -> list[str]:
        named = node_target(target)
        if named is not None:
            return [n for n in named if n in control.nodes]
        if target == "leader" or target.startswith("leader-of:"):
            node = targets.leader(target.partition(":")[2] or None)
            return [node] if node else []
        if target == "controller":
            node = targets.controller()
            return [node] if node else []
        if target == "primaries":
            return sorted(set(targets.primaries()))
        return pick_nodes(control.nodes, target, pick)


def nodes_hit(result: Any) -> list[str] | None:
    """The nodes a fault hit, from the result its package returned (None when it names none).

    Killed, paused, disk- or clock-faulted nodes are listed as such; of a partition, the node a one-node
    shape cut off (the only one with a grudge, or the one cut from everybody else)."""
    if not isinstance(result, dict):
        return None
    for key in ("killed", "paused", "nodes"):
        if isinstance(result.get(key), list):
            return list(result[key])
    grudge = result.get("grudge")
    if isinstance(grudge, dict) and grudge:
        if len(grudge) == 1:
            return [next(iter(grudge))]
        everyone = set(grudge) | {n for cut in grudge.values() for n in cut if n != "client"}
        victim = next((n for n, cut in grudge.items() if set(cut) == everyone - {n}), None)
        return [victim] if victim else None
    return None


def node_target(target: str | None) -> list[str] | None:
    """The nodes a target names directly (`n2`, `nodes:n1,n3`), or None for a role."""
    if target is None:
        return None
    if target.startswith("nodes:"):
        return [n.strip() for n in target[len("nodes:"):].split(",") if n.strip()]
    if re.fullmatch(r"n\d+", target):
        return [target]
    return None


def check_events(events: list[dict], packages: dict[str, type["FaultPackage"]], nodes: int,
                 time_limit_s: float) -> list["FaultEvent"]:
    """A hand-written schedule as events, or ValueError naming the event (by its position) and the problem."""
    if not isinstance(events, list) or not events:
        raise ValueError("a schedule is a non-empty list of events")
    out = []
    names = {f"n{i}" for i in range(1, nodes + 1)}
    for i, d in enumerate(events, 1):
        where = f"schedule event {i}"
        if not isinstance(d, dict):
            raise ValueError(f"{where} is not a table of at_s, package, f, target, shape")
        unknown = sorted(set(d) - {"at_s", "package", "f", "target", "shape", "pick"})
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {', '.join(unknown)}")
        package = packages.get(d.get("package"))
        if package is None:
            raise ValueError(f"{where}: package {d.get('package')!r} is not one of {', '.join(packages)}")
        if d.get("f") not in (package.start_f, package.stop_f):
            raise ValueError(f"{where}: {d.get('package')} events are {package.start_f!r} or {package.stop_f!r}, "
                             f"not {d.get('f')!r}")
        at_s = d.get("at_s")
        if not isinstance(at_s, (int, float)) or isinstance(at_s, bool) or not 0 <= at_s <= time_limit_s:
            raise ValueError(f"{where}: at_s {at_s!r} must be a number of seconds from 0 to the time limit "
                             f"{time_limit_s:g}")
        target = d.get("target")
        named = node_target(target)
        if named is not None and (not named or set(named) - names):
            raise ValueError(f"{where}: target {target!r} names nodes outside n1..n{nodes}")
        allowed = [t for t in getattr(package, "script_targets", package.targets) if t]
        if target is not None and target.startswith("as-event:"):
            k = target[len("as-event:"):]
            if not k.isdigit() or not 1 <= int(k) < i:
                raise ValueError(f"{where}: target {target!r} must name an earlier event (as-event:1 to "
                                 f"as-event:{i - 1}, in time order)")
        elif named is None and target is not None and target not in allowed \
                and not (target.startswith("leader-of:") and "leader" in allowed):
            raise ValueError(f"{where}: target {target!r} is not one of {', '.join(allowed)}, leader-of:<key>, "
                             "a node (n1) or nodes:n1,n2")
        shape = d.get("shape")
        if shape is not None and hasattr(package, "SHAPES") and shape not in package.SHAPES:
            raise ValueError(f"{where}: shape {shape!r} is not one of {', '.join(package.SHAPES)}" if package.SHAPES
                             else f"{where}: {d['package']} faults take no shape, got {shape!r}")
        out.append(FaultEvent(float(at_s), d["package"], d["f"], target, shape, int(d.get("pick", 0))))
    return sorted(out, key=_event_order)


@dataclass
class Nemesis:
    """Several packages composed: one schedule, one heal."""

    packages: list[FaultPackage] = field(default_factory=list)
    # the nodes each applied event hit, in the order they were applied (for `as-event:K` targets)
    applied: list[list[str]] = field(default_factory=list)
    # check each fault right after starting it, and record the probe with its result (nemeses.probe)
    probes: bool = True

    def schedule(self, seed: int, time_limit_s: float) -> Schedule:
        """One package: its own windows. Several: one fault at a time, the kinds taking turns in rounds.

        Packages scheduled independently overlapped most of the time (a pause of one node during a kill of
        another, an isolation of a node already killed), which left no majority working and wasted faults
        on nodes that were down; measured in bench/observation.py. One at a time, every fault meets a
        cluster that had a few seconds to recover from the last, as in Jepsen's composed nemeses, whose
        generator mixes the kinds on one timeline. A fault starts about every `interval` seconds; the kinds
        come in rounds, each kind `weight` times a round in random order."""
        if not self.packages:  # --nemesis none
            events = []
        elif len(self.packages) == 1:
            events = self.packages[0].schedule(random.Random(f"{seed}/0/{self.packages[0].name}"), time_limit_s)
        else:
            events = self._one_at_a_time(random.Random(f"{seed}/mix/{'+'.join(p.name for p in self.packages)}"),
                                         time_limit_s)
        events = sorted((replace(e, at_s=round(e.at_s, 3)) for e in events), key=_event_order)
        return Schedule(tuple(events))

    def _one_at_a_time(self, rng: random.Random, time_limit_s: float) -> list[FaultEvent]:
        interval = min(p.interval_s for p in self.packages)
        events: list[FaultEvent] = []
        bag: list[FaultPackage] = []
        t = rng.uniform(0.2, 0.6) * interval
        while True:
            if not bag:  # a round: every kind `weight` times, in random order, so no kind goes missing for long
                bag = [p for p in self.packages for _ in range(p.weight)]
                rng.shuffle(bag)
            start, stop = bag.pop().window(rng, t)
            if stop.at_s >= time_limit_s:
                return events
            events += [start, stop]
            t = stop.at_s + max(1.0, (interval - (stop.at_s - start.at_s)) * rng.uniform(0.7, 1.3))

    def package(self, name: str) -> FaultPackage:
        for p in self.packages:
            if p.name == name:
                return p
        raise KeyError(f"no nemesis package named {name!r}; have {[p.name for p in self.packages]}")

    def apply(self, event: FaultEvent, control: "NodeControl", targets: Targets) -> dict:
        if event.target and event.target.startswith("as-event:"):
            k = int(event.target[len("as-event:"):])
            earlier = self.applied[k - 1] if k <= len(self.applied) else []
            event = replace(event, target="nodes:" + ",".join(earlier))
        package = self.package(event.package)
        try:
            result = package.apply(event, control, targets)
        except Exception:
            self.applied.append([])
            raise
        self.applied.append(nodes_hit(result) or [])
        if self.probes and event.opens and isinstance(result, dict):
            result = {**result, "probe": run_probe(package, event, result, control)}
        return result

    def heal(self, control: "NodeControl", on_error: Callable[[str, BaseException], None] | None = None) -> dict:
        """Heal every package; an error in one never stops the others."""
        done = {}
        for package in self.packages:
            try:
                done[package.name] = package.heal(control)
            except Exception as e:  # every package must get its chance to heal
                if on_error:
                    on_error(package.name, e)
                done[package.name] = {"error": f"{type(e).__name__}: {e}"}
        return done
