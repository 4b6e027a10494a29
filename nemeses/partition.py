"""Network partitions, as grudges (Jepsen's `jepsen.nemesis` partitioners, rebuilt here).

A grudge maps a node to the parties it drops traffic from. Shapes:

- `halves`: two random halves, each deaf to the other.
- `isolate-one`: one random node cut off from every other node.
- `isolate-leader`: the leader of the workload's first partition cut off.
- `majorities-ring`: every node sees a majority, and no two nodes see the same
  majority (Jepsen's `majorities-ring`): in a shuffled ring each node hears only
  a window of nodes that starts at itself; links are cut one way.
- `bridge`: two halves that cannot hear each other, and one node that hears both.
- `one-way`: one node hears nobody, but everybody still hears it.
- `clients`: one node cut off from every client (its peers still reach it).

Healing removes every cut (node control `heal`), including latency from `slow_net`.
"""

from __future__ import annotations

import random

from nemeses.core import FaultEvent, FaultPackage, Targets
from nemeses.probe import Probe, probe_partition
from nodecontrol.control import CLIENT, NodeControl

SHAPES = ("halves", "isolate-one", "isolate-leader", "majorities-ring", "bridge", "one-way", "clients")
SHAPE_WEIGHTS = {"isolate-leader": 4}


def complete_grudge(components: list[list[str]]) -> dict[str, set[str]]:
    """Each node drops traffic from every node outside its own component."""
    everyone = {n for c in components for n in c}
    return {n: everyone - set(c) for c in components for n in c}


def grudge_for(shape: str, nodes: list[str], pick: int, leader: str | None = None,
               victim: str | None = None) -> dict[str, set[str]]:
    """The grudge of a shape; `victim` fixes the node a one-node shape (isolate-one, one-way, clients) cuts off."""
    ordered = sorted(nodes)
    rng = random.Random(pick)
    shuffled = ordered[:]
    rng.shuffle(shuffled)
    if victim is not None and victim in ordered:
        shuffled.remove(victim)
        shuffled.insert(0, victim)
    n = len(ordered)
    if shape == "halves":
        half = n // 2
        return complete_grudge([shuffled[:half], shuffled[half:]])
    if shape == "isolate-one":
        victim = shuffled[0]
        return complete_grudge([[victim], [x for x in ordered if x != victim]])
    if shape == "isolate-leader":
        if leader is None:
            return {}
        return complete_grudge([[leader], [x for x in ordered if x != leader]])
    if shape == "majorities-ring":
        majority = n // 2 + 1
        grudge = {}
        for i, node in enumerate(shuffled):
            sees = {shuffled[(i + k) % n] for k in range(majority)}
            grudge[node] = set(ordered) - sees
        return grudge
    if shape == "bridge":
        half = (n - 1) // 2
        left, bridge, right = shuffled[:half], shuffled[half], shuffled[half + 1:]
        grudge = {x: set(right) for x in left}
        grudge.update({x: set(left) for x in right})
        grudge[bridge] = set()
        return grudge
    if shape == "one-way":
        victim = shuffled[0]
        return {victim: set(ordered) - {victim}}
    if shape == "clients":
        return {shuffled[0]: {CLIENT}}
    raise ValueError(f"unknown partition shape {shape!r}; expected one of {', '.join(SHAPES)}")


class PartitionPackage(FaultPackage):
    name = "partition"
    start_f = "start-partition"
    stop_f = "stop-partition"
    targets = (None,)
    # in a hand-written schedule, the node a one-node shape (isolate-one, one-way, clients) cuts off
    script_targets = ("leader", "controller", "one")
    SHAPES = SHAPES
    weight = 2  # in a mix, two turns a round: most replication bugs need a leader cut off (see pick_shape)

    def __init__(self, interval_s: float = 10.0, duration_s: float | None = None, shapes=None):
        # A cut must outlast the cluster's failover, or no new leader is elected behind it and an isolated
        # leader's acknowledgements are never put to the test: 0.8 of the interval (8 s by default; the
        # harness runs our broker with broker.session.timeout.ms=4000, Kafka's default is 9000).
        super().__init__(interval_s, duration_s if duration_s is not None else interval_s * 0.8)
        if shapes is not None:
            unknown = [s for s in shapes if s not in SHAPES]
            if unknown:
                raise ValueError(f"partition nemesis: unknown shape(s) {unknown}; accepted: {list(SHAPES)}")
        self._shapes = tuple(shapes or SHAPES)

    def shapes(self):
        return self._shapes

    def pick_shape(self, rng):
        """Shapes drawn with weights: cutting off a leader while clients still reach it is the fault that
        puts acknowledgements, truncation and fencing to the test (Jepsen's Kafka analyses found their
        lost writes this way), so `isolate-leader` weighs four times each other shape."""
        return rng.choices(self._shapes, weights=[SHAPE_WEIGHTS.get(s, 1) for s in self._shapes])[0]

    def apply(self, event: FaultEvent, control: NodeControl, targets: Targets) -> dict:
        if event.f == self.start_f:
            leader = targets.leader() if event.shape == "isolate-leader" else None
            # a hand-written schedule may name the node a one-node shape cuts off ("isolate-one", target "n2")
            victim = self.resolve(control, targets, event.target, event.pick) if event.target else [None]
            grudge = grudge_for(event.shape or "halves", control.nodes, event.pick, leader, victim[0] if victim else None)
            control.partition(grudge)
            return {"grudge": {k: sorted(v) for k, v in sorted(grudge.items()) if v}}
        control.heal()
        return {"healed": True}

    def probe(self, event: FaultEvent, result: dict, control: NodeControl) -> Probe:
        return probe_partition(result.get("grudge") or {}, control)

    def heal(self, control: NodeControl) -> dict:
        control.heal()
        return {"healed": True}
