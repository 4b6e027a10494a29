"""The disk package: its schedule, and what each shape asks of node control."""

import random

import pytest

import nemeses
from nodecontrol.control import NodeControlError
from nemeses.core import FaultEvent
from nemeses.disk import SHAPES, DiskPackage

NODES = ["n1", "n2", "n3"]


class _DiskControl:
    """Node control with disks: records calls; `down` nodes are not running."""

    def __init__(self, nodes):
        self.nodes = nodes
        self.calls = []
        self.down = set()

    def is_running(self, node):
        return node not in self.down

    def disk(self, node, fault):
        self.calls.append(("disk", node, fault))
        if node in self.down:
            raise NodeControlError(f"{node} is down")
        if fault == "tear":  # what faultfs says of a tear: 100 bytes were pending, 60 reached the disk
            return {"pending_bytes": 0, "tear": {"files": 2, "kept_bytes": 60, "lost_bytes": 40, "torn_writes": 1}}
        return {"pending_bytes": 100} if fault == "status" else {}

    def kill(self, node):
        self.calls.append(("kill", node))
        self.down.add(node)

    def start(self, node):
        self.calls.append(("start", node))
        self.down.discard(node)


class _Targets:
    def leader(self, key=None):
        return "n2"

    def controller(self):
        return "n3"

    def primaries(self):
        return ["n1", "n2"]


def test_schedule_is_seeded_uses_every_shape_and_closes_every_window():
    nemesis = nemeses.build(["disk"], interval_s=4)
    schedule = nemesis.schedule(3, 200)
    assert schedule == nemeses.build(["disk"], interval_s=4).schedule(3, 200)
    assert {e.shape for e in schedule.events} == set(SHAPES)
    fs = [e.f for e in schedule.events]
    assert fs[0::2] == ["start-disk"] * (len(fs) // 2) and fs[1::2] == ["stop-disk"] * (len(fs) // 2)
    assert nemeses.prepared_fault_kinds(nemesis) == {"disk"}


def test_pause_and_fail_windows_start_the_fault_and_stop_heals_it():
    disk, control = DiskPackage(), _DiskControl(NODES)
    assert disk.apply(FaultEvent(1, "disk", "start-disk", "leader", "pause-disk"), control, _Targets()) == \
        {"fault": "pause-disk", "nodes": ["n2"]}
    assert disk.apply(FaultEvent(2, "disk", "stop-disk", "leader", "pause-disk"), control, _Targets()) == \
        {"fault": "pause-disk", "healed": ["n2"]}
    disk.apply(FaultEvent(3, "disk", "start-disk", "all", "fail-disk"), control, _Targets())
    disk.apply(FaultEvent(4, "disk", "stop-disk", "all", "fail-disk"), control, _Targets())
    assert control.calls == [("disk", "n2", "pause"), ("disk", "n2", "heal")] + \
        [("disk", n, "fail-writes") for n in NODES] + [("disk", n, "heal") for n in NODES]


def test_lose_unfsynced_sets_lazy_then_tears_kills_and_restarts_the_same_nodes():
    disk, control = DiskPackage(), _DiskControl(NODES)
    disk.apply(FaultEvent(1, "disk", "start-disk", "all", "lose-unfsynced"), control, _Targets())
    done = disk.apply(FaultEvent(2, "disk", "stop-disk", "all", "lose-unfsynced"), control, _Targets())
    assert done == {"fault": "lose-unfsynced", "killed": NODES, "started": NODES,
                    "unfsynced_bytes_held": {n: 100 for n in NODES}, "unfsynced_bytes_lost": {n: 40 for n in NODES},
                    "torn_writes": {n: 1 for n in NODES}}
    assert control.calls == ([("disk", n, "lazy") for n in NODES] + [("disk", n, "tear") for n in NODES]
                             + [("kill", n) for n in NODES] + [("start", n) for n in NODES])
    assert disk.heal(control) == {"healed": [], "started": []}


def test_heal_ends_lazy_mode_without_a_crash_and_skips_nodes_that_are_down():
    disk, control = DiskPackage(), _DiskControl(NODES)
    disk.apply(FaultEvent(1, "disk", "start-disk", "all", "lose-unfsynced"), control, _Targets())
    control.down.add("n3")  # killed by another package meanwhile: its disk restarts healthy
    assert disk.heal(control) == {"healed": ["n1", "n2"], "started": []}
    assert ("kill", "n1") not in control.calls


def test_a_node_that_is_down_is_not_faulted():
    disk, control = DiskPackage(), _DiskControl(NODES)
    control.down.add("n2")
    assert disk.apply(FaultEvent(1, "disk", "start-disk", "leader", "pause-disk"), control, _Targets()) == \
        {"fault": "pause-disk", "nodes": []}


def test_bad_shapes_and_targets_are_named():
    with pytest.raises(ValueError, match=r"disk nemesis: unknown shape\(s\) \['melt'\]"):
        DiskPackage(shapes=["melt"])
    with pytest.raises(ValueError, match=r"disk nemesis: unknown target\(s\) \['controller'\]"):
        DiskPackage(targets=["controller"])
    with pytest.raises(ValueError, match="shape 'melt' is not one of"):
        DiskPackage().apply(FaultEvent(1, "disk", "start-disk", "one", "melt"), _DiskControl(NODES), _Targets())


def test_half_of_the_windows_lose_unfsynced_data_and_most_of_those_crash_every_node():
    # a power loss of the whole cluster is what separates a broker that fsyncs from one that does not
    schedule = nemeses.build(["disk"], interval_s=4).schedule(11, 4000)
    starts = [e for e in schedule.events if e.f == "start-disk"]
    lazy = [e for e in starts if e.shape == "lose-unfsynced"]
    others = [e for e in starts if e.shape != "lose-unfsynced"]
    assert 0.42 < len(lazy) / len(starts) < 0.58 and {e.shape for e in others} == {"pause-disk", "fail-disk"}
    share_all = sum(e.target == "all" for e in lazy) / len(lazy)
    assert len(lazy) > 100 and 0.78 < share_all < 0.92, (len(lazy), share_all)  # 0.8, plus a quarter of the rest
    assert sum(e.target == "all" for e in others) / len(others) < 0.35
    rng, asked_one = random.Random(1), DiskPackage(targets=["one"])
    assert {asked_one.window(rng, 0.0)[0].target for _ in range(200)} == {"one"}  # targets a user gave are kept
