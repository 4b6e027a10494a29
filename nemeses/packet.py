"""Packet faults (netem-style), through node control's `slow_net`.

Shapes of a fault window (the event's `shape`), applied to every link from
`start-packet` to `stop-packet`:

- `latency`: every packet delayed by `latency_ms` +- `jitter_ms`.
- `loss`: a fraction `loss` of packets lost (plus a little latency).
- `duplicate`, `reorder`: a fraction of packets duplicated or reordered. Only
  backends that shape real packets (Docker, with tc netem) can do these; the
  local backend's TCP proxies refuse them, so they are not in the default shapes.

The stop event and the final heal clear the shaping with `slow_net(0)`, not
with `heal()`, so a partition of another package stays in force. The probe
(`nemeses.probe.probe_delay`) measures that the delay every shape carries is in
effect.
Thread-safety: driven by the one nemesis thread.
"""

from __future__ import annotations

from nodecontrol.control import NodeControl
from nemeses.core import FaultEvent, FaultPackage, Targets
from nemeses.probe import Probe, probe_delay

SHAPES = ("latency", "loss", "duplicate", "reorder")
DEFAULT_SHAPES = ("latency", "loss")


class PacketPackage(FaultPackage):
    name = "packet"
    start_f = "start-packet"
    stop_f = "stop-packet"
    targets = (None,)

    def __init__(self, interval_s: float = 10.0, duration_s: float | None = None, shapes=None,
                 latency_ms: float = 100.0, jitter_ms: float = 50.0, loss: float = 0.2, duplicate: float = 0.1,
                 reorder: float = 0.2):
        super().__init__(interval_s, duration_s)
        if shapes is not None:
            unknown = [s for s in shapes if s not in SHAPES]
            if unknown:
                raise ValueError(f"packet nemesis: unknown shape(s) {unknown}; accepted: {list(SHAPES)}")
        for name, value in (("loss", loss), ("duplicate", duplicate), ("reorder", reorder)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"packet nemesis: {name} must be a fraction between 0 and 1, got {value}")
        if latency_ms < 0 or jitter_ms < 0:
            raise ValueError(f"packet nemesis: latency_ms and jitter_ms must be >= 0, got {latency_ms}, {jitter_ms}")
        self._shapes = tuple(shapes or DEFAULT_SHAPES)
        self.latency_ms, self.jitter_ms = latency_ms, jitter_ms
        self.loss, self.duplicate, self.reorder = loss, duplicate, reorder
        self.active = False

    def shapes(self):
        return self._shapes

    def net_shape(self, shape: str) -> dict:
        """The slow_net arguments of a shape."""
        if shape == "latency":
            return {"latency_ms": self.latency_ms, "jitter_ms": self.jitter_ms}
        if shape == "loss":
            return {"latency_ms": 10.0, "loss": self.loss}
        if shape == "duplicate":
            return {"latency_ms": 10.0, "duplicate": self.duplicate}
        if shape == "reorder":
            return {"latency_ms": self.latency_ms, "jitter_ms": self.jitter_ms, "reorder": self.reorder}
        raise ValueError(f"packet shape {shape!r} is not one of {list(SHAPES)}")

    def apply(self, event: FaultEvent, control: NodeControl, targets: Targets) -> dict:
        if event.f == self.start_f:
            args = self.net_shape(event.shape)
            control.slow_net(**args)
            self.active = True
            return {"fault": event.shape, **args}
        return self.heal(control)

    def probe(self, event: FaultEvent, result: dict, control: NodeControl) -> Probe:
        latency, jitter = float(result.get("latency_ms") or 0.0), float(result.get("jitter_ms") or 0.0)
        return probe_delay(control, max(0.0, latency - jitter), latency + jitter)

    def heal(self, control: NodeControl) -> dict:
        control.slow_net(0.0)
        was_active, self.active = self.active, False
        return {"cleared": was_active}
