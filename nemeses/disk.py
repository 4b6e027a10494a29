"""Disk faults, through node control's `disk(node, fault)` (nodecontrol.faultfs under each node's log.dirs).

Shapes of a fault window (the event's `shape`):

- `pause-disk`: every file-system call of the target nodes blocks from
  `start-disk` to `stop-disk`: a stalled disk (a dying SSD, a saturated EBS
  volume). The broker sees no error, only time passing.
- `fail-disk`: writes, namespace changes and fsyncs fail with EIO until
  `stop-disk`; reads still work. Kafka answers a failed log write by taking the
  log directory offline (KIP-112); a broker must at least not acknowledge what it
  could not write.
- `lose-unfsynced`: from `start-disk` on, data written but not fsync'd stays in
  the file system's memory (LazyFS-style lazy mode); at `stop-disk` the power
  of the target nodes is cut: of each file's pending writes a random prefix
  reaches the disk, the last one possibly torn (faultfs `tear`), the rest is
  lost, and the nodes are killed and started again.
  A broker that acknowledges writes before fsyncing them (Kafka's default,
  `log.flush.interval.messages` unset) relies on replication instead: losing
  the un-fsynced tail on every replica at once can lose acknowledged writes.

Targets: `one`, `minority`, `majority`, `all`, `leader`, `primaries`. With
the three shapes allowed, `lose-unfsynced` is drawn for half the windows
(`LOSE_SHARE`) and the two others for a quarter each; a drawn `lose-unfsynced`
window aims at `all` nodes in `ALL_SHARE` of the draws whatever target was
drawn (when `all` is among the package's targets): a power loss of the whole
cluster is the one crash that tells a broker that fsyncs what it acknowledges
from one that does not, since with fewer nodes crashed the survivors' copies
cover the loss for both (with `--nemesis disk` in 60 s runs, before this no run
of three drew it; Jepsen's LazyFS tests crash every node for the same reason).
Measured over the schedules of 60 s runs (seeds 0..1999, four or five windows
a run): with a third of the windows `lose-unfsynced` and half of those aimed at
`all`, 34% of runs had no whole-cluster power loss, and the scorecard caught
`skip.fsync` in 4 of 8 runs, each one with such a loss (2026-12-06); with a
half and 0.8, 7% have none.
The final
heal ends every disk fault (`heal`: lazy data is written out, not lost) and
starts nodes a `lose-unfsynced` crash left down.

Needs `enable_faults({"disk"})` before the cluster starts (`prepares`).
Thread-safety: driven by the one nemesis thread.
"""

from __future__ import annotations

from dataclasses import replace

from nodecontrol.control import NodeControl, NodeControlError
from nemeses.core import FaultEvent, FaultPackage, Targets
from nemeses.probe import Probe

SHAPES = ("pause-disk", "fail-disk", "lose-unfsynced")
LOSE_SHARE = 0.5  # of the windows, when all three shapes may be drawn (the module doc says why)
ALL_SHARE = 0.8  # of the lose-unfsynced windows, aimed at every node whatever target was drawn
_START_FAULT = {"pause-disk": "pause", "fail-disk": "fail-writes", "lose-unfsynced": "lazy"}


class DiskPackage(FaultPackage):
    name = "disk"
    start_f = "start-disk"
    stop_f = "stop-disk"
    targets = ("one", "minority", "majority", "all", "leader", "primaries")
    prepares = ("disk",)

    def __init__(self, interval_s: float = 10.0, duration_s: float | None = None, targets=None, shapes=None):
        super().__init__(interval_s, duration_s, targets or ("one", "minority", "all", "leader"))
        if shapes is not None:
            unknown = [s for s in shapes if s not in SHAPES]
            if unknown:
                raise ValueError(f"disk nemesis: unknown shape(s) {unknown}; accepted: {list(SHAPES)}")
        self._shapes = tuple(shapes or SHAPES)
        self.faulted: dict[str, str] = {}  # node -> shape in force
        self.down: set[str] = set()

    def shapes(self):
        return self._shapes

    def pick_shape(self, rng):
        if set(self._shapes) == set(SHAPES):
            return "lose-unfsynced" if rng.random() < LOSE_SHARE else rng.choice(("pause-disk", "fail-disk"))
        return super().pick_shape(rng)

    def window(self, rng, t):
        start, stop = super().window(rng, t)
        if start.shape == "lose-unfsynced" and "all" in self.targets and rng.random() < ALL_SHARE:
            start, stop = replace(start, target="all"), replace(stop, target="all")
        return start, stop

    def apply(self, event: FaultEvent, control: NodeControl, targets: Targets) -> dict:
        if event.shape not in SHAPES:
            raise ValueError(f"disk event {event.to_dict()}: shape {event.shape!r} is not one of {list(SHAPES)}")
        if event.f == self.start_f:
            nodes = [n for n in self.resolve(control, targets, event.target, event.pick) if control.is_running(n)]
            for node in nodes:
                control.disk(node, _START_FAULT[event.shape])
                self.faulted[node] = event.shape
            return {"fault": event.shape, "nodes": nodes}
        if event.shape == "lose-unfsynced":
            return self._crash(control)
        healed = self._heal_disks(control, lambda shape: shape != "lose-unfsynced")
        return {"fault": event.shape, "healed": healed}

    def probe(self, event: FaultEvent, result: dict, control: NodeControl) -> Probe:
        """The faultfs of each faulted node reports the mode that was asked for."""
        nodes = result.get("nodes") or []
        if not nodes:
            return Probe(None, ("the fault hit no running node",))
        want = _START_FAULT[event.shape]
        modes = {node: control.disk(node, "status").get("modes", []) for node in nodes}
        checks = tuple(f"{node}: faultfs modes {', '.join(m) or 'none'}" for node, m in modes.items())
        return Probe(all(want in m for m in modes.values()), checks)

    def _crash(self, control: NodeControl) -> dict:
        """Cut the power of every node in lazy mode: tear their un-fsynced data (a prefix reaches the disk, the
        rest dies with the FUSE process), kill them, then start them."""
        victims = sorted(n for n, shape in self.faulted.items() if shape == "lose-unfsynced")
        held, lost, torn = {}, {}, {}
        for node in victims:
            if control.is_running(node):
                try:
                    tear = control.disk(node, "tear").get("tear") or {}
                    held[node] = tear.get("kept_bytes", 0) + tear.get("lost_bytes", 0)
                    lost[node], torn[node] = tear.get("lost_bytes", 0), tear.get("torn_writes", 0)
                except NodeControlError as e:
                    held[node] = lost[node] = torn[node] = f"unknown: {e}"
        for node in victims:
            control.kill(node)
            self.down.add(node)
            self.faulted.pop(node, None)
        for node in victims:
            control.start(node)
            self.down.discard(node)
        return {"fault": "lose-unfsynced", "killed": victims, "unfsynced_bytes_held": held, "unfsynced_bytes_lost": lost,
                "torn_writes": torn, "started": victims}

    def _heal_disks(self, control: NodeControl, which) -> list[str]:
        healed = []
        for node, shape in sorted(self.faulted.items()):
            if which(shape) and control.is_running(node):
                control.disk(node, "heal")
                healed.append(node)
        for node in healed:
            self.faulted.pop(node, None)
        return healed

    def heal(self, control: NodeControl) -> dict:
        healed = self._heal_disks(control, lambda shape: True)
        self.faulted.clear()  # a node that is down has no mount to heal; it starts healthy
        started = sorted(self.down)
        for node in started:
            control.start(node)
        self.down.clear()
        return {"healed": healed, "started": started}
