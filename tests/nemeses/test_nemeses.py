"""Nemesis schedules, grudge shapes, and packages applied through node control."""

import itertools

import pytest

import nemeses
from nodecontrol.control import CLIENT, NodeControlError
from nemeses.core import Schedule, pick_nodes
from nemeses.partition import SHAPES, grudge_for

NODES5 = ["n1", "n2", "n3", "n4", "n5"]


def test_schedules_are_decided_by_the_seed_alone():
    a = nemeses.build(["partition", "kill", "pause"]).schedule(7, 120)
    b = nemeses.build(["partition", "kill", "pause"]).schedule(7, 120)
    c = nemeses.build(["partition", "kill", "pause"]).schedule(8, 120)
    assert a == b
    assert a != c
    assert Schedule.from_list(a.to_list()) == a
    times = [e.at_s for e in a.events]
    assert times == sorted(times) and times[-1] <= 120


def test_every_start_has_its_stop_in_the_schedule():
    schedule = nemeses.build(["partition", "kill", "pause"]).schedule(3, 90)
    opened = {}
    for e in schedule.events:
        key = (e.package, e.pick)
        if e.f in ("start-partition", "kill", "pause"):
            opened[key] = e
        else:
            assert key in opened, e
            del opened[key]
    assert not opened


def test_a_mix_of_kinds_applies_one_fault_at_a_time_about_every_interval():
    for seed in range(20):
        events = nemeses.build(["partition", "kill", "pause"]).schedule(seed, 600).events
        opens = [e for e in events if e.opens]
        assert [e.opens for e in events] == [True, False] * len(opens)  # each fault ends before the next starts
        assert all(later.at_s - earlier.at_s >= 1.0 for earlier, later in zip(events[1::2], events[2::2]))
        kinds = [e.package for e in opens]
        for i in range(0, len(kinds) - 3, 4):  # rounds of four: partition twice, kill and pause once each
            assert sorted(kinds[i:i + 4]) == ["kill", "partition", "partition", "pause"], kinds
        assert 8.0 < 600 / len(opens) < 12.5


def test_no_fault_kinds_schedule_nothing():
    assert nemeses.build([]).schedule(5, 60).events == ()


def test_partitions_outlast_a_failover_and_favour_isolating_the_leader():
    events = nemeses.build(["partition"]).schedule(1, 3000).events
    durations = [stop.at_s - start.at_s for start, stop in zip(events[::2], events[1::2])]
    assert min(durations) >= 5.5 and 7.0 < sum(durations) / len(durations) < 9.0
    shapes = [e.shape for e in events[::2]]
    assert shapes.count("isolate-leader") > 2 * max(shapes.count(s) for s in set(shapes) - {"isolate-leader"})


def test_unknown_nemesis_names_are_refused():
    with pytest.raises(ValueError, match=r"unknown fault\(s\) \['kil'\]"):
        nemeses.parse_names("partition,kil")
    assert nemeses.parse_names("none") == []


def _sees(grudge, node, nodes):
    return set(nodes) - grudge.get(node, set())


def test_majorities_ring_every_node_sees_a_distinct_majority():
    for pick in range(20):
        grudge = grudge_for("majorities-ring", NODES5, pick)
        views = [frozenset(_sees(grudge, n, NODES5)) for n in NODES5]
        assert all(len(v) >= 3 for v in views)
        assert len(set(views)) == 5


def test_halves_and_isolation_are_symmetric_cuts():
    for shape in ("halves", "isolate-one"):
        grudge = grudge_for(shape, NODES5, 11)
        for a, b in itertools.permutations(NODES5, 2):
            assert (b in grudge.get(a, set())) == (a in grudge.get(b, set())), (shape, a, b)
    assert grudge_for("isolate-leader", NODES5, 1, leader="n4") == {
        "n4": {"n1", "n2", "n3", "n5"}, **{n: {"n4"} for n in ("n1", "n2", "n3", "n5")}}


def test_bridge_node_hears_both_sides_and_the_sides_do_not_hear_each_other():
    grudge = grudge_for("bridge", NODES5, 5)
    bridge = [n for n in NODES5 if not grudge[n]]
    assert len(bridge) == 1
    others = [n for n in NODES5 if n not in bridge]
    assert all(len(grudge[n]) == 2 for n in others)


def test_one_way_and_client_shapes():
    grudge = grudge_for("one-way", NODES5, 2)
    (victim,) = grudge
    assert grudge[victim] == set(NODES5) - {victim}
    assert list(grudge_for("clients", NODES5, 2).values()) == [{CLIENT}]
    with pytest.raises(ValueError, match="unknown partition shape"):
        grudge_for("triangle", NODES5, 0)
    assert set(SHAPES) >= {"halves", "majorities-ring", "bridge", "one-way"}


def test_pick_nodes_counts():
    assert len(pick_nodes(NODES5, "one", 1)) == 1
    assert len(pick_nodes(NODES5, "minority", 1)) == 2
    assert len(pick_nodes(NODES5, "majority", 1)) == 3
    assert pick_nodes(NODES5, "all", 1) == NODES5
    assert pick_nodes(NODES5, "one", 42) == pick_nodes(list(reversed(NODES5)), "one", 42)


class _RecordingControl:
    """A stand-in for node control in this unit test: records calls, validates like the real one."""

    def __init__(self, nodes):
        self.nodes = nodes
        self.calls = []

    def kill(self, node):
        self.calls.append(("kill", node))

    def start(self, node):
        self.calls.append(("start", node))

    def stop(self, node):
        self.calls.append(("stop", node))

    def pause(self, node):
        self.calls.append(("pause", node))

    def resume(self, node):
        self.calls.append(("resume", node))

    def partition(self, grudge):
        self.calls.append(("partition", {k: sorted(v) for k, v in grudge.items()}))

    def heal(self):
        self.calls.append(("heal",))


class _Targets:
    def leader(self, key=None):
        return "n2"

    def controller(self):
        return "n3"

    def primaries(self):
        return ["n2", "n3"]

    def successor(self, key=None):
        return "n3"


def test_kill_package_restarts_exactly_what_it_killed_and_heals_at_the_end():
    nemesis = nemeses.build(["kill"])
    control = _RecordingControl(NODES5)
    kill = nemesis.packages[0]
    from nemeses.core import FaultEvent

    assert kill.apply(FaultEvent(1, "kill", "kill", "leader"), control, _Targets()) == {"killed": ["n2"]}
    assert kill.apply(FaultEvent(2, "kill", "kill", "controller"), control, _Targets()) == {"killed": ["n3"]}
    assert nemesis.heal(control) == {"kill": {"started": ["n2", "n3"]}}
    assert control.calls == [("kill", "n2"), ("kill", "n3"), ("start", "n2"), ("start", "n3")]


def test_a_lagging_follower_kill_pauses_another_node_kills_the_leader_then_resumes_it():
    from nemeses.core import FaultEvent
    from nemeses.process import LAG_S, LAGGING, KillPackage

    control = _RecordingControl(NODES5)
    control.is_running = lambda node: node != "n4"
    slept = []
    kill = KillPackage(sleep=lambda s: (slept.append(s), control.calls.append(("sleep", s))))
    done = kill.apply(FaultEvent(1, "kill", "kill", "leader", LAGGING, pick=2), control, _Targets())
    # the lagging node is the leader's successor (the next in line for election)
    assert done == {"killed": ["n2"], "lagged": ["n3"], "lag_s": LAG_S}
    assert control.calls == [("pause", "n3"), ("sleep", LAG_S), ("kill", "n2"), ("resume", "n3")]
    assert kill.apply(FaultEvent(9, "kill", "start", "leader", LAGGING), control, _Targets()) == {"started": ["n2"]}

    class NoSuccessor(_Targets):  # no ISR member to elect, or one that is down: the event's pick among the others
        def __init__(self, successor):
            self._successor = successor

        def successor(self, key=None):
            return self._successor

    for successor in (None, "n4"):
        control.calls.clear()
        done = kill.apply(FaultEvent(1, "kill", "kill", "leader", LAGGING, pick=2), control, NoSuccessor(successor))
        # picked among the running others (n1, n3, n5) by the event's pick
        assert done == {"killed": ["n2"], "lagged": ["n5"], "lag_s": LAG_S}, successor
        assert control.calls[0] == ("pause", "n5")

    class Refusing(_RecordingControl):
        def kill(self, node):
            raise NodeControlError("no such process")

    refusing = Refusing(NODES5)
    refusing.is_running = lambda node: True
    with pytest.raises(NodeControlError):
        KillPackage(sleep=lambda s: None).apply(FaultEvent(1, "kill", "kill", "leader", LAGGING), refusing, _Targets())
    assert refusing.calls[-1] == ("resume", "n3")  # the follower never stays paused


def test_a_restart_stops_gracefully_and_starts_exactly_what_it_stopped():
    from nemeses.core import FaultEvent

    nemesis = nemeses.build(["kill", "restart"])
    control = _RecordingControl(NODES5)
    kill, restart = nemesis.packages
    assert restart.apply(FaultEvent(1, "restart", "shutdown", "leader"), control, _Targets()) == {"stopped": ["n2"]}
    assert kill.apply(FaultEvent(2, "kill", "kill", "controller"), control, _Targets()) == {"killed": ["n3"]}
    assert restart.apply(FaultEvent(3, "restart", "start", "leader"), control, _Targets()) == {"started": ["n2"]}
    assert nemesis.heal(control) == {"kill": {"started": ["n3"]}, "restart": {"started": []}}
    assert control.calls == [("stop", "n2"), ("kill", "n3"), ("start", "n2"), ("start", "n3")]
    # no shapes: a graceful stop is one thing, and a scheduled shape is refused
    events = nemeses.build(["restart"], interval_s=4).schedule(5, 400).events
    assert {e.f for e in events} == {"shutdown", "start"} and {e.shape for e in events} == {None}
    from nemeses.core import check_events

    with pytest.raises(ValueError, match="schedule event 1: restart faults take no shape, got 'lagging-follower'"):
        check_events([{"at_s": 1, "package": "restart", "f": "shutdown", "shape": "lagging-follower"}],
                     nemeses.PACKAGES, 3, 30)


def test_three_in_four_kill_windows_are_lagging_follower_kills_of_the_leader():
    from nemeses.process import LAGGING

    events = nemeses.build(["kill"], interval_s=4).schedule(5, 4000).events
    kills = [e for e in events if e.f == "kill"]
    lagging = [e for e in kills if e.shape == LAGGING]
    assert 0.68 < len(lagging) / len(kills) < 0.82, (len(lagging), len(kills))
    assert {e.target for e in lagging} == {"leader"} and len({e.target for e in kills}) > 2


def test_heal_runs_every_package_even_when_one_fails():
    nemesis = nemeses.build(["partition", "pause"])
    control = _RecordingControl(NODES5)

    def broken_heal():
        raise NodeControlError("proxy is gone")

    control.heal = broken_heal
    pause = nemesis.package("pause")
    pause.paused.add("n1")
    errors = []
    done = nemesis.heal(control, on_error=lambda name, e: errors.append(name))
    assert errors == ["partition"]
    assert done["pause"] == {"resumed": ["n1"]}
    assert ("resume", "n1") in control.calls
