"""Fault injectors. Each acts only through the harness's node-control interface.

`build(["partition", "kill", "pause"], interval_s=10)` composes packages into one
`Nemesis` whose schedule is decided by the seed (see nemeses.core).
`prepared_fault_kinds(nemesis)` names the fault kinds (`disk`, `clock`) a
backend must prepare before its nodes start (`NodeControl.enable_faults`).
"""

from __future__ import annotations

from nemeses.clock import ClockPackage
from nemeses.core import FaultEvent, FaultPackage, Nemesis, Schedule, pick_nodes
from nemeses.disk import DiskPackage
from nemeses.packet import PacketPackage
from nemeses.partition import PartitionPackage
from nemeses.process import KillPackage, PausePackage, RestartPackage

PACKAGES = {
    "partition": PartitionPackage,
    "kill": KillPackage,
    "restart": RestartPackage,
    "pause": PausePackage,
    "disk": DiskPackage,
    "clock": ClockPackage,
    "packet": PacketPackage,
}

__all__ = ["FaultEvent", "FaultPackage", "Nemesis", "Schedule", "PACKAGES", "build", "parse_names", "pick_nodes",
           "prepared_fault_kinds"]


def parse_names(spec: str) -> list[str]:
    """Parse `--nemesis partition,kill,pause` (or `none`); names the unknown ones in the error."""
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if names == ["none"] or not names:
        return []
    unknown = [n for n in names if n not in PACKAGES]
    if unknown:
        raise ValueError(f"--nemesis {spec!r}: unknown fault(s) {unknown}; accepted: {', '.join(PACKAGES)} or none")
    return list(dict.fromkeys(names))


def build(names: list[str], interval_s: float = 10.0) -> Nemesis:
    return Nemesis([PACKAGES[name](interval_s=interval_s) for name in names])


def prepared_fault_kinds(nemesis: Nemesis) -> set[str]:
    """The kinds a backend must enable before setup for these packages (`disk` and `clock` packages need them)."""
    return {kind for package in nemesis.packages for kind in getattr(package, "prepares", ())}
