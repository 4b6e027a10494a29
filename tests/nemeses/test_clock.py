"""The clock package: seeded skews, strobes on a thread, resets at stop and heal."""

import threading

import pytest

import nemeses
from nemeses.clock import ClockPackage, skew_for
from nemeses.core import FaultEvent

NODES = ["n1", "n2", "n3"]


class _ClockControl:
    def __init__(self, nodes):
        self.nodes = nodes
        self.calls = []
        self.lock = threading.Lock()
        self.set_twice = threading.Event()

    def clock(self, node, offset_s):
        with self.lock:
            self.calls.append((node, offset_s))
            if len({o for _, o in self.calls}) >= 2:
                self.set_twice.set()


class _Targets:
    def leader(self, key=None):
        return "n2"

    def controller(self):
        return "n3"

    def primaries(self):
        return ["n2"]


def test_skew_is_decided_by_the_pick():
    offsets = [skew_for(pick, 30.0) for pick in range(200)]
    assert offsets == [skew_for(pick, 30.0) for pick in range(200)]
    assert all(1.0 <= abs(o) <= 30.0 for o in offsets)
    assert min(offsets) < 0 < max(offsets)
    assert nemeses.prepared_fault_kinds(nemeses.build(["clock"])) == {"clock"}


def test_skew_moves_the_targets_and_stop_resets_them():
    clock, control = ClockPackage(max_skew_s=10), _ClockControl(NODES)
    done = clock.apply(FaultEvent(1, "clock", "start-clock", "leader", "skew", 42), control, _Targets())
    assert done == {"fault": "skew", "nodes": ["n2"], "offset_s": skew_for(42, 10), "clocks": "wall"}
    assert clock.apply(FaultEvent(2, "clock", "stop-clock", "leader", "skew", 42), control, _Targets()) == \
        {"reset": ["n2"]}
    assert control.calls == [("n2", skew_for(42, 10)), ("n2", 0.0)]


def test_strobe_flips_the_offset_until_stopped_then_resets():
    clock, control = ClockPackage(max_skew_s=5, strobe_period_s=0.01), _ClockControl(NODES)
    done = clock.apply(FaultEvent(1, "clock", "start-clock", "all", "strobe", 7), control, _Targets())
    magnitude = abs(skew_for(7, 5))
    assert done["offset_s"] == [magnitude, -magnitude] and done["nodes"] == NODES
    assert control.set_twice.wait(5), control.calls
    assert clock.heal(control) == {"reset": NODES}
    assert control.calls[-3:] == [(n, 0.0) for n in NODES]
    assert {o for _, o in control.calls[:-3]} == {magnitude, -magnitude}
    count = len(control.calls)
    threading.Event().wait(0.05)
    assert len(control.calls) == count  # the strobe thread has stopped


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"clock nemesis: unknown shape\(s\) \['wobble'\]"):
        ClockPackage(shapes=["wobble"])
    with pytest.raises(ValueError, match="max_skew_s must be positive, got 0"):
        ClockPackage(max_skew_s=0)
    with pytest.raises(ValueError, match="strobe_period_s must be positive, got -1"):
        ClockPackage(strobe_period_s=-1)
