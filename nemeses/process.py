"""Process faults: kill (SIGKILL, then restart), restart (a graceful stop, then start) and pause (SIGSTOP,
then SIGCONT).

Targets: `one`, `minority`, `majority`, `all`, `leader` (of the workload's first
partition), `controller` (the active controller), `primaries` (every partition
leader). The nodes a start event hit are remembered, and its stop event (or the
final heal) restarts or resumes exactly those, plus anything else still down.

A kill has one shape besides the plain one, drawn for `LAGGING_SHARE` of the
kill windows: `lagging-follower` kills a leader while one of its followers
lags: it pauses the follower next in line (the one the controller elects when
the leader dies: the first in-ISR replica in replica order, `Targets.successor`;
another running node chosen by the event's `pick` when the metadata names none
that runs) for `LAG_S`, kills the target while that node is still stopped, and
resumes it at once. The paused
follower stays in the ISR (the pause is shorter than any broker's session and
replica lag timeouts), so a broker whose acks or high watermark run ahead of
its slowest ISR member has acknowledged records the follower lacks, and the
controller may elect that follower when the dead leader is fenced: the records
are gone. A correct broker held its acks=all answers during the pause, so it
loses nothing. Single faults one at a time never make this moment (a follower
behind and the leader gone together); it is one of the composed sequences
Jepsen's nemeses mix (a slow replica, then a crash of the leader). The drawn
target of such a window is `leader` whatever was drawn: the follower must lag
behind the node that dies. Lagging the next in line, not any follower, makes
the moment count: when a follower that did not lag is elected it has the
records, and nothing is lost even on a broker that acknowledged too early.
A lagging kill is three in four kill windows, not one in two: measured over
the default mix's schedules of 60 s (seeds 0..1999), a run has one or two kill
windows, and with one in two 41% of runs had no lagging kill at all (the
scorecard's `hwm.past.isr`, caught in 4 of 5 runs with one and 1 of 3
without, 2026-12-06); with three in four, 18%.
"""

from __future__ import annotations

import time
from dataclasses import replace

from nemeses.core import FaultEvent, FaultPackage, Targets
from nemeses.probe import Probe, probe_processes
from nodecontrol.control import NodeControl


LAGGING = "lagging-follower"
LAG_S = 1.0  # how long the follower lags before the leader dies: under Kafka's 9 s session and 30 s replica lag
LAGGING_SHARE = 0.75  # of the kill windows, when both shapes may be drawn (the module doc says why)


class KillPackage(FaultPackage):
    name = "kill"
    start_f = "kill"
    stop_f = "start"
    targets = ("one", "leader", "controller", "minority", "majority", "all", "primaries")
    SHAPES = (LAGGING,)

    def __init__(self, interval_s: float = 10.0, duration_s: float | None = None, targets=None, shapes=None,
                 sleep=time.sleep):
        super().__init__(interval_s, duration_s, targets or ("one", "leader", "controller", "minority", "all"))
        if shapes is not None and set(shapes) - {None, LAGGING}:
            raise ValueError(f"kill nemesis: unknown shape(s) {sorted(set(shapes) - {None, LAGGING})}; "
                             f"accepted: {LAGGING}")
        self._shapes = tuple(shapes) if shapes is not None else (None, LAGGING)
        self.down: set[str] = set()
        self._sleep = sleep

    def shapes(self):
        return self._shapes

    def pick_shape(self, rng):
        if set(self._shapes) == {None, LAGGING}:
            return LAGGING if rng.random() < LAGGING_SHARE else None
        return super().pick_shape(rng)

    def window(self, rng, t):
        start, stop = super().window(rng, t)
        if start.shape == LAGGING and "leader" in self.targets:
            start, stop = replace(start, target="leader"), replace(stop, target="leader")
        return start, stop

    def apply(self, event: FaultEvent, control: NodeControl, targets: Targets) -> dict:
        if event.f == self.start_f:
            nodes = self.resolve(control, targets, event.target, event.pick)
            if event.shape == LAGGING:
                return self._kill_while_lagging(control, nodes, event.pick, targets)
            return self._kill(control, nodes)
        return self.heal(control)

    def _kill(self, control: NodeControl, nodes: list[str]) -> dict:
        for node in nodes:
            control.kill(node)
            self.down.add(node)
        return {"killed": nodes}

    def _kill_while_lagging(self, control: NodeControl, nodes: list[str], pick: int, targets: Targets) -> dict:
        others = sorted(n for n in control.nodes if n not in nodes and control.is_running(n))
        if not nodes or not others:  # no leader known, or nobody left to lag: a plain kill
            return self._kill(control, nodes)
        successor = targets.successor()
        lagger = successor if successor in others else others[pick % len(others)]
        control.pause(lagger)
        try:
            self._sleep(LAG_S)
            done = self._kill(control, nodes)
        finally:
            control.resume(lagger)
        return {**done, "lagged": [lagger], "lag_s": LAG_S}

    def probe(self, event: FaultEvent, result: dict, control: NodeControl) -> Probe:
        return probe_processes(result.get("killed") or [], control, "gone")

    def heal(self, control: NodeControl) -> dict:
        started = sorted(self.down)
        for node in started:
            control.start(node)
        self.down.clear()
        return {"started": started}


class RestartPackage(KillPackage):
    """A graceful stop, then a start: one step of a rolling restart, the most common event in a cluster's life.

    The stop is the system's own (SIGTERM for ours and Kafka, after which the system's stop timeout ends it with
    SIGKILL): a broker moves its leaderships away before it exits (Kafka's controlled shutdown), answering
    NOT_LEADER_OR_FOLLOWER to requests that arrive meanwhile, and writes its clean-shutdown state, so the start
    takes the path that trusts it. Both are code a crash never runs. Same targets as a kill, no shapes."""

    name = "restart"
    start_f = "shutdown"
    stop_f = "start"
    SHAPES = ()

    def __init__(self, interval_s: float = 10.0, duration_s: float | None = None, targets=None, sleep=time.sleep):
        super().__init__(interval_s, duration_s, targets, shapes=(None,), sleep=sleep)

    def apply(self, event: FaultEvent, control: NodeControl, targets: Targets) -> dict:
        if event.f != self.start_f:
            return self.heal(control)
        nodes = self.resolve(control, targets, event.target, event.pick)
        for node in nodes:
            control.stop(node)  # returns once the process is gone
            self.down.add(node)
        return {"stopped": nodes}

    def probe(self, event: FaultEvent, result: dict, control: NodeControl) -> Probe:
        return probe_processes(result.get("stopped") or [], control, "gone")


class PausePackage(FaultPackage):
    name = "pause"
    start_f = "pause"
    stop_f = "resume"
    targets = ("one", "leader", "controller", "minority", "majority", "all", "primaries")

    def __init__(self, interval_s: float = 10.0, duration_s: float | None = None, targets=None):
        super().__init__(interval_s, duration_s, targets or ("one", "leader", "controller", "minority", "all"))
        self.paused: set[str] = set()

    def apply(self, event: FaultEvent, control: NodeControl, targets: Targets) -> dict:
        if event.f == self.start_f:
            nodes = self.resolve(control, targets, event.target, event.pick)
            for node in nodes:
                control.pause(node)
                self.paused.add(node)
            return {"paused": nodes}
        return self.heal(control)

    def probe(self, event: FaultEvent, result: dict, control: NodeControl) -> Probe:
        return probe_processes(result.get("paused") or [], control, "paused")

    def heal(self, control: NodeControl) -> dict:
        resumed = sorted(self.paused)
        for node in resumed:
            control.resume(node)
        self.paused.clear()
        return {"resumed": resumed}
