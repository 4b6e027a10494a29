"""The packet package: netem-style shapes through slow_net, cleared without healing partitions."""

import pytest

import nemeses
from nemeses.core import FaultEvent
from nemeses.packet import DEFAULT_SHAPES, PacketPackage


class _NetControl:
    nodes = ["n1", "n2", "n3"]

    def __init__(self):
        self.calls = []

    def slow_net(self, latency_ms, jitter_ms=0.0, loss=0.0, duplicate=0.0, reorder=0.0):
        self.calls.append((latency_ms, jitter_ms, loss, duplicate, reorder))

    def heal(self):
        raise AssertionError("the packet package must not heal partitions")


def test_default_shapes_are_those_every_backend_can_do_and_the_schedule_is_seeded():
    schedule = nemeses.build(["packet"], interval_s=3).schedule(9, 120)
    assert {e.shape for e in schedule.events} == set(DEFAULT_SHAPES) == {"latency", "loss"}
    assert schedule == nemeses.build(["packet"], interval_s=3).schedule(9, 120)
    assert nemeses.prepared_fault_kinds(nemeses.build(["packet"])) == set()


def test_each_shape_becomes_one_slow_net_call_and_stop_clears_it():
    packet = PacketPackage(shapes=["latency", "loss", "duplicate", "reorder"], latency_ms=80, jitter_ms=20,
                           loss=0.3, duplicate=0.05, reorder=0.25)
    control = _NetControl()
    for shape in ("latency", "loss", "duplicate", "reorder"):
        packet.apply(FaultEvent(1, "packet", "start-packet", None, shape), control, None)
        assert packet.apply(FaultEvent(2, "packet", "stop-packet", None, shape), control, None) == {"cleared": True}
    assert control.calls == [(80, 20, 0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 0.0, 0.0),
                             (10.0, 0.0, 0.3, 0.0, 0.0), (0.0, 0.0, 0.0, 0.0, 0.0),
                             (10.0, 0.0, 0.0, 0.05, 0.0), (0.0, 0.0, 0.0, 0.0, 0.0),
                             (80, 20, 0.0, 0.0, 0.25), (0.0, 0.0, 0.0, 0.0, 0.0)]
    assert packet.heal(control) == {"cleared": False}


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"packet nemesis: unknown shape\(s\) \['corrupt'\]"):
        PacketPackage(shapes=["corrupt"])
    with pytest.raises(ValueError, match="loss must be a fraction between 0 and 1, got 1.5"):
        PacketPackage(loss=1.5)
    with pytest.raises(ValueError, match="latency_ms and jitter_ms must be >= 0"):
        PacketPackage(latency_ms=-1)
