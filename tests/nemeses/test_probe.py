"""Probes measure that a fault is in effect, through the backend, never through its bookkeeping.

The first tests drive the probe rules with a scripted NodeControl (what is under test is the rule around
it). The others run three real broker processes behind the real fault proxy: a partition is measured as
landed, the same partition through a proxy that ignores cuts (the planted harness bug) is measured as not
landed, a kill undone at once by "someone else" (a node restarted right after it) is caught, and a packet
delay and a clock skew are measured where they were applied and missed where they were not."""

from __future__ import annotations

import pytest

from harness.backends.local import LocalCluster
from harness.runner import wait_for_brokers
from harness.system import logquake_broker
from nemeses.clock import ClockPackage
from nemeses.core import FaultEvent, Nemesis
from nemeses.packet import PacketPackage
from nemeses.probe import CUT_SILENCE_S, probe_delay, probe_partition, probe_processes
from nemeses.process import KillPackage, PausePackage
from nemeses.partition import PartitionPackage
from nodecontrol.control import NodeControlError


class Scripted:
    """Answers `reaches` from a set of open links and `observed_state` from a table."""

    def __init__(self, open_links, states=None):
        self.nodes = ["n1", "n2", "n3"]
        self.open_links = set(open_links)
        self.states = states or {}
        self.asked = []

    def reaches(self, links, timeout_s):
        self.asked.append((sorted(links), timeout_s))
        return {link: link in self.open_links for link in links}

    def observed_state(self, node):
        return self.states.get(node, "running")


ISOLATE_N1 = {"n1": ["n2", "n3"], "n2": ["n1"], "n3": ["n1"]}
EVERY_LINK = {(a, b) for a in ("n1", "n2", "n3") for b in ("n1", "n2", "n3") if a != b}


def test_a_partition_lands_when_the_cut_is_silent_and_a_link_inside_a_side_answers():
    probe = probe_partition(ISOLATE_N1, Scripted(open_links={("n2", "n3"), ("n3", "n2")}))
    assert probe.confirmed is True
    assert "silent for 0.4 s across the cut: n1->n2, n1->n3, n2->n1, n3->n1" in probe.checks[0]


def test_a_partition_that_still_answers_across_the_cut_did_not_land():
    probe = probe_partition(ISOLATE_N1, Scripted(open_links=EVERY_LINK))
    assert probe.confirmed is False and probe.checks[0].startswith("answered across the cut: n1->n2")


def test_a_probe_that_reaches_nothing_confirms_nothing():
    assert probe_partition(ISOLATE_N1, Scripted(open_links=set())).confirmed is None


def test_links_with_a_node_down_at_one_end_are_not_measured():
    control = Scripted(open_links={("n2", "n3"), ("n3", "n2")}, states={"n1": "gone"})
    probe = probe_partition(ISOLATE_N1, control)
    assert probe.confirmed is None and "nothing to measure" in probe.checks[0]
    assert control.asked == []


def test_kill_and_pause_probes_read_the_observed_state():
    assert probe_processes(["n2"], Scripted(set(), {"n2": "gone"}), "gone").confirmed is True
    restarted = probe_processes(["n2"], Scripted({("client", "n2")}, {"n2": "running"}), "gone")
    assert restarted.confirmed is False and "still answering on its port: n2" in restarted.checks
    assert probe_processes(["n1"], Scripted(set(), {"n1": "paused"}), "paused").confirmed is True
    assert probe_processes(["n1"], Scripted(set(), {"n1": "running"}), "paused").confirmed is False
    # a pause of a node another fault killed measures nothing (seen in a default run: kill all, then pause n3)
    dead = probe_processes(["n3"], Scripted(set(), {"n3": "gone"}), "paused")
    assert dead.confirmed is None and "nothing to pause" in dead.checks[0]
    assert probe_processes(["n1", "n3"], Scripted(set(), {"n1": "paused", "n3": "gone"}), "paused").confirmed is True


def test_a_backend_that_cannot_probe_records_the_probe_as_not_made():
    class NoProbes(Scripted):
        def reaches(self, links, timeout_s):
            raise NodeControlError("the NoProbes backend cannot probe links")

        def partition(self, grudge):
            pass

    result = Nemesis([PartitionPackage()]).apply(FaultEvent(1.0, "partition", "start-partition", None, "isolate-one"),
                                                 NoProbes(set()), None)
    assert result["probe"]["confirmed"] is None
    assert result["probe"]["checks"] == ["no probe made: the NoProbes backend cannot probe links"]


# ----- three real brokers behind the real fault proxy -------------------------------------------------


def _cluster(monkeypatch, ignore_cuts: bool, cls=LocalCluster, faults=()):
    monkeypatch.setenv("LOGQUAKE_DEBUG_PROXY_IGNORE_CUTS", "true" if ignore_cuts else "false")
    cluster = cls(logquake_broker({}, 3), 3)
    if faults:
        cluster.enable_faults(set(faults))
    cluster.setup()
    wait_for_brokers(cluster, 60)
    return cluster


@pytest.mark.slow
@pytest.mark.parametrize("ignore_cuts", [False, True])
def test_a_partition_through_the_real_proxy_is_measured(monkeypatch, ignore_cuts):
    cluster = _cluster(monkeypatch, ignore_cuts)
    try:
        result = Nemesis([PartitionPackage()]).apply(
            FaultEvent(1.0, "partition", "start-partition", "n1", "isolate-one"), cluster, None)
        probe = result["probe"]
        assert probe["confirmed"] is (not ignore_cuts), probe
        assert CUT_SILENCE_S <= probe["took_s"] < 1.0 if not ignore_cuts else probe["took_s"] < 1.0
    finally:
        cluster.teardown()


class RestartedBySomeoneElse(LocalCluster):
    """A node under a supervisor that restarts it the moment it dies: the kill never holds."""

    def kill(self, node):
        super().kill(node)
        self.start(node)
        self.wait_ready([node])


@pytest.mark.slow
def test_a_kill_undone_at_once_and_a_pause_are_measured_on_real_processes(monkeypatch):
    cluster = _cluster(monkeypatch, False, RestartedBySomeoneElse)
    try:
        nemesis = Nemesis([KillPackage(), PausePackage()])
        killed = nemesis.apply(FaultEvent(1.0, "kill", "kill", "n2"), cluster, None)
        assert killed["probe"]["confirmed"] is False, killed["probe"]
        assert "n2: running" in killed["probe"]["checks"][0]
        paused = nemesis.apply(FaultEvent(2.0, "pause", "pause", "n3"), cluster, None)
        assert paused["probe"]["confirmed"] is True and paused["probe"]["checks"] == ["n3: paused"]
        LocalCluster.kill(cluster, "n3")
        assert cluster.observed_state("n3") == "gone"
    finally:
        cluster.teardown()


def test_a_disk_fault_lands_when_the_node_s_faultfs_reports_its_mode():
    from nemeses.disk import DiskPackage

    class Disks(Scripted):
        def __init__(self, modes):
            super().__init__(set())
            self.modes = modes

        def disk(self, node, fault):
            assert fault == "status"
            return {"modes": self.modes}

    event = FaultEvent(1.0, "disk", "start-disk", "n1", "fail-disk")
    result = {"fault": "fail-disk", "nodes": ["n1"]}
    assert DiskPackage().probe(event, result, Disks(["fail-writes"])).confirmed is True
    missed = DiskPackage().probe(event, result, Disks([]))
    assert missed.confirmed is False and missed.checks == ("n1: faultfs modes none",)


class RoundTrips(Scripted):
    """Answers `round_trips` from a list of tables, one per call (seconds or None per link)."""

    def __init__(self, *tables, states=None):
        super().__init__(set(), states)
        self.tables = list(tables)

    def round_trips(self, links, timeout_s):
        table = self.tables.pop(0)
        return {link: table.get(link, table.get("*")) for link in links}


def test_a_delay_lands_when_every_link_is_slow_in_its_slowest_round_trip():
    # the second try of client->n2 is quick (netem's reorder lets some packets through undelayed): still slowed
    probe = probe_delay(RoundTrips({"*": 0.120}, {"*": 0.110, ("client", "n2"): 0.001}), 50.0, 150.0)
    assert probe.confirmed is True, probe
    assert probe.checks[0].startswith("slowest of 2 round trips (at least 25 ms expected): client->n1 120 ms")
    assert "n1->n2 120 ms, n1->n3 120 ms" in probe.checks[0]


def test_a_link_that_stays_fast_means_the_delay_did_not_land():
    fast = {"*": 0.080, ("client", "n3"): 0.002}
    probe = probe_delay(RoundTrips(fast, fast), 50.0, 150.0)
    assert probe.confirmed is False and probe.checks[-1] == "not slowed: client->n3"


def test_delays_too_small_to_measure_and_links_that_never_answer_say_nothing():
    assert probe_delay(RoundTrips(), 2.0, 2.0).confirmed is None
    silent = probe_delay(RoundTrips({"*": None}, {"*": None}), 10.0, 10.0)
    assert silent.confirmed is None and silent.checks[0].startswith("no answer on any link")
    down = probe_delay(RoundTrips({"*": 0.030}, {"*": 0.030}, states={"n1": "gone", "n2": "gone"}), 10.0, 10.0)
    assert down.confirmed is True and "n1" not in down.checks[0]


@pytest.mark.slow
def test_a_packet_delay_is_measured_on_the_real_proxy_and_missed_where_none_was_applied(monkeypatch):
    cluster = _cluster(monkeypatch, False)
    try:
        package = PacketPackage()
        # nothing was applied: the links answer at once. Asked for 300 ms (150 ms expected at least), well above
        # what a loaded 2-core machine adds on its own: under the CI's two workers an unslowed round trip took
        # 52-59 ms, above the 25 ms a 50 ms delay expects, and the probe rightly could not tell them apart
        asked = {"fault": "latency", "latency_ms": 300.0, "jitter_ms": 0.0}
        before = package.probe(FaultEvent(1.0, "packet", "start-packet", None, "latency"), asked, cluster)
        assert before.confirmed is False, before
        for shape in ("latency", "loss"):
            result = Nemesis([package]).apply(FaultEvent(1.0, "packet", "start-packet", None, shape), cluster, None)
            probe = result["probe"]
            assert probe["confirmed"] is True and probe["took_s"] < 1.0, (shape, probe)
            package.heal(cluster)
    finally:
        cluster.teardown()


class Clocks(Scripted):
    """Answers `clock_offset` from a table of readings per node, one reading per call."""

    def __init__(self, readings, states=None):
        super().__init__(set(), states)
        self.readings = {node: list(values) for node, values in readings.items()}

    def clock_offset(self, node):
        if node not in self.readings:
            raise NodeControlError(f"{node} is paused: no exec")
        values = self.readings[node]
        return values.pop(0) if len(values) > 1 else values[0]


def _read(offset, preloaded=True):
    return {"pid": 7, "preloaded": preloaded, "offset_s": offset, "uncertainty_s": 0.02}


def test_a_skew_lands_when_each_broker_reads_the_offset_asked_for():
    event = FaultEvent(1.0, "clock", "start-clock", "minority", "skew")
    result = {"fault": "skew", "nodes": ["n1", "n2"], "offset_s": -12.5, "clocks": "wall"}
    probe = ClockPackage().probe(event, result, Clocks({"n1": [_read(-12.41)], "n2": [_read(-12.6)]}))
    assert probe.confirmed is True and probe.checks == ("n1: reads -12.410 s (asked -12.500 s)",
                                                        "n2: reads -12.600 s (asked -12.500 s)")
    missed = ClockPackage().probe(event, result, Clocks({"n1": [_read(-12.5)], "n2": [_read(0.001)]}))
    assert missed.confirmed is False and missed.checks[1] == "n2: reads +0.001 s (asked -12.500 s)"
    unloaded = ClockPackage().probe(event, result, Clocks({"n1": [_read(None, False)], "n2": [_read(-12.5)]}))
    assert unloaded.confirmed is False and unloaded.checks[0] == "n1: libfaketime is not loaded in its broker (pid 7)"


def test_a_strobe_counts_either_sign_and_a_down_node_is_not_measured():
    event = FaultEvent(1.0, "clock", "start-clock", "minority", "strobe")
    result = {"fault": "strobe", "nodes": ["n1", "n2"], "offset_s": [30.0, -30.0], "period_s": 0.05}
    # n1's strobe thread has not written its first offset at the first reading
    probe = ClockPackage().probe(event, result, Clocks({"n1": [_read(0.0), _read(-29.9)]}, states={"n2": "gone"}))
    assert probe.confirmed is True and probe.checks == ("n1: reads -29.900 s (asked +-30.000 s)",
                                                        "n2: down, not measured")
    # a node that cannot be measured (a paused container takes no exec) says nothing; the others still count
    paused = ClockPackage().probe(event, result, Clocks({"n1": [_read(30.0)]}))
    assert paused.confirmed is True and paused.checks[1] == "n2: not measured (n2 is paused: no exec)"


class ClockWritesGoNowhere(LocalCluster):
    """A harness bug: the clock fault is reported applied, but the offset file is never written."""

    def _set_clock(self, node, offset_s):
        self.lost_clock_writes = getattr(self, "lost_clock_writes", []) + [(node, offset_s)]  # never reach the file


@pytest.mark.slow
@pytest.mark.parametrize("cls", [LocalCluster, ClockWritesGoNowhere])
def test_a_clock_skew_is_measured_in_the_real_broker_process(monkeypatch, cls):
    cluster = _cluster(monkeypatch, False, cls, faults=("clock",))
    try:
        result = Nemesis([ClockPackage()]).apply(FaultEvent(1.0, "clock", "start-clock", "n2", "skew", pick=5),
                                                 cluster, None)
        probe = result["probe"]
        assert probe["confirmed"] is (cls is LocalCluster), probe
        if cls is LocalCluster:
            assert probe["took_s"] < 1.0, probe
        else:
            assert cluster.lost_clock_writes == [("n2", result["offset_s"])]
        assert probe["checks"][0].startswith("n2: reads ") and f"(asked {result['offset_s']:+.3f} s)" in \
            probe["checks"][0], probe
    finally:
        cluster.teardown()
