"""Process faults: kill (SIGKILL, then restart) and pause (SIGSTOP, then SIGCONT).

Targets: `one`, `minority`, `majority`, `all`, `leader` (of the workload's first
partition), `controller` (the active controller), `primaries` (every partition
leader). The nodes a start event hit are remembered, and its stop event (or the
final heal) restarts or resumes exactly those, plus anything else still down.
"""

from __future__ import annotations

from nemeses.core import FaultEvent, FaultPackage, Targets
from nemeses.probe import Probe, probe_processes
from nodecontrol.control import NodeControl


class KillPackage(FaultPackage):
    name = "kill"
    start_f = "kill"
    stop_f = "start"
    targets = ("one", "leader", "controller", "minority", "majority", "all", "primaries")

    def __init__(self, interval_s: float = 10.0, duration_s: float | None = None, targets=None):
        super().__init__(interval_s, duration_s, targets or ("one", "leader", "controller", "minority", "all"))
        self.down: set[str] = set()

    def apply(self, event: FaultEvent, control: NodeControl, targets: Targets) -> dict:
        if event.f == self.start_f:
            nodes = self.resolve(control, targets, event.target, event.pick)
            for node in nodes:
                control.kill(node)
                self.down.add(node)
            return {"killed": nodes}
        return self.heal(control)

    def probe(self, event: FaultEvent, result: dict, control: NodeControl) -> Probe:
        return probe_processes(result.get("killed") or [], control, "gone")

    def heal(self, control: NodeControl) -> dict:
        started = sorted(self.down)
        for node in started:
            control.start(node)
        self.down.clear()
        return {"started": started}


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
