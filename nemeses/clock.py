"""Clock faults, through node control's `clock(node, offset_s)` (libfaketime under each broker).

Shapes of a fault window (the event's `shape`):

- `skew`: the target nodes' wall clocks jump by +-N seconds (N and the sign
  drawn from the event's `pick`, at most `max_skew_s`) until `stop-clock` sets
  them back.
- `strobe`: the target nodes' wall clocks flip between +N and -N seconds every
  `strobe_period_s` (Jepsen's `strobe-time`), from a background thread, until
  `stop-clock`.

Which clocks move: the wall clock only (`CLOCK_REALTIME`); the monotonic clock
is left true on purpose (see nodecontrol.launch). So record timestamps
(`CreateTime` / `LogAppendTime`), time indexes, time-based retention and
anything a broker measures with the wall clock feel the fault; timeouts
measured with the monotonic clock do not.

The probe reads, for each target node, the clock its broker process sees
(`NodeControl.clock_offset`: libfaketime mapped into the broker, and the offset
its faketime variables give now) and compares it with the offset asked for
(either sign for a strobe), within `CLOCK_TOLERANCE_S` plus the measurement's
own uncertainty.

Needs `enable_faults({"clock"})` before the cluster starts (`prepares`). The
final heal stops every strobe and resets every clock it touched to 0.
Thread-safety: apply/heal run on the nemesis thread; each strobe runs on its own
thread, stopped (and joined) by `stop-clock` and by the heal.
"""

from __future__ import annotations

import logging
import random
import threading
import time

from nodecontrol.control import NodeControl, NodeControlError
from nemeses.core import FaultEvent, FaultPackage, Targets
from nemeses.probe import STATE_SETTLE_S, Probe

log = logging.getLogger("nemeses.clock")

SHAPES = ("skew", "strobe")
# how far a measured clock offset may be from the one asked for, beyond the measurement's own uncertainty
CLOCK_TOLERANCE_S = 0.25


def skew_for(pick: int, max_skew_s: float) -> float:
    """The offset an event's `pick` stands for: +-[1, max_skew_s] seconds, to the millisecond."""
    rng = random.Random(pick)
    magnitude = rng.uniform(min(1.0, max_skew_s), max_skew_s)
    return round(magnitude if rng.random() < 0.5 else -magnitude, 3)


class ClockPackage(FaultPackage):
    name = "clock"
    start_f = "start-clock"
    stop_f = "stop-clock"
    targets = ("one", "minority", "majority", "all", "leader", "controller")
    prepares = ("clock",)

    def __init__(self, interval_s: float = 10.0, duration_s: float | None = None, targets=None, shapes=None,
                 max_skew_s: float = 60.0, strobe_period_s: float = 0.05):
        super().__init__(interval_s, duration_s, targets or ("one", "minority", "leader", "controller"))
        if shapes is not None:
            unknown = [s for s in shapes if s not in SHAPES]
            if unknown:
                raise ValueError(f"clock nemesis: unknown shape(s) {unknown}; accepted: {list(SHAPES)}")
        if max_skew_s <= 0:
            raise ValueError(f"clock nemesis: max_skew_s must be positive, got {max_skew_s}")
        if strobe_period_s <= 0:
            raise ValueError(f"clock nemesis: strobe_period_s must be positive, got {strobe_period_s}")
        self._shapes = tuple(shapes or SHAPES)
        self.max_skew_s = max_skew_s
        self.strobe_period_s = strobe_period_s
        self.skewed: set[str] = set()
        self._strobes: list[tuple[threading.Thread, threading.Event]] = []

    def shapes(self):
        return self._shapes

    def apply(self, event: FaultEvent, control: NodeControl, targets: Targets) -> dict:
        if event.f != self.start_f:
            return self.heal(control)
        if event.shape not in SHAPES:
            raise ValueError(f"clock event {event.to_dict()}: shape {event.shape!r} is not one of {list(SHAPES)}")
        nodes = self.resolve(control, targets, event.target, event.pick)
        offset_s = skew_for(event.pick, self.max_skew_s)
        if event.shape == "skew":
            for node in nodes:
                control.clock(node, offset_s)
                self.skewed.add(node)
            return {"fault": "skew", "nodes": nodes, "offset_s": offset_s, "clocks": "wall"}
        self.skewed.update(nodes)
        stop = threading.Event()
        thread = threading.Thread(target=self._strobe, args=(control, nodes, abs(offset_s), stop),
                                  name="clock-strobe", daemon=True)
        self._strobes.append((thread, stop))
        thread.start()
        return {"fault": "strobe", "nodes": nodes, "offset_s": [abs(offset_s), -abs(offset_s)],
                "period_s": self.strobe_period_s, "clocks": "wall"}

    def probe(self, event: FaultEvent, result: dict, control: NodeControl) -> Probe:
        nodes = result.get("nodes") or []
        if not nodes:
            return Probe(None, ("the fault hit no node",))
        asked = result.get("offset_s")
        strobe = isinstance(asked, list)
        want = abs(float(asked[0])) if strobe else float(asked)
        checks, verdicts = [], []
        for node in nodes:
            state = control.observed_state(node)
            if state == "gone":
                checks.append(f"{node}: down, not measured")
                continue
            # a strobe's thread may not have written its first offset yet: measure again for a moment
            deadline = time.monotonic() + STATE_SETTLE_S
            while True:
                try:
                    found = control.clock_offset(node)
                except NodeControlError as e:  # e.g. a paused container takes no exec: this node says nothing
                    found = {"error": str(e)}
                offset = found.get("offset_s")
                ok = offset is not None and abs((abs(offset) if strobe else offset) - want) <= \
                    CLOCK_TOLERANCE_S + float(found.get("uncertainty_s") or 0.0)
                if ok or "error" in found or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            if "error" in found:
                checks.append(f"{node}: not measured ({found['error']})")
                continue
            if not found.get("preloaded"):
                checks.append(f"{node}: libfaketime is not loaded in its broker (pid {found.get('pid')})")
            else:
                checks.append(f"{node}: reads {offset:+.3f} s (asked {f'+-{want:.3f}' if strobe else f'{want:+.3f}'} s)")
            verdicts.append(ok)
        return Probe(all(verdicts) if verdicts else None, tuple(checks))

    def _strobe(self, control: NodeControl, nodes: list[str], magnitude_s: float, stop: threading.Event) -> None:
        sign = 1
        while not stop.is_set():
            for node in nodes:
                try:
                    control.clock(node, sign * magnitude_s)
                except NodeControlError as e:
                    log.warning("clock strobe on %s: %s", node, e)
            sign = -sign
            stop.wait(self.strobe_period_s)

    def heal(self, control: NodeControl) -> dict:
        for thread, stop in self._strobes:
            stop.set()
        for thread, _ in self._strobes:
            thread.join(10)
        self._strobes.clear()
        reset = sorted(self.skewed)
        for node in reset:
            control.clock(node, 0.0)
        self.skewed.clear()
        return {"reset": reset}
