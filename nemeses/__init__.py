"""Fault injectors. Each acts only through the harness's node-control interface.

`build(["partition", "kill", "pause"], interval_s=10)` composes packages into one
`Nemesis` whose schedule is decided by the seed (see nemeses.core).
"""

from __future__ import annotations

from nemeses.core import FaultEvent, FaultPackage, Nemesis, Schedule, pick_nodes
from nemeses.partition import PartitionPackage
from nemeses.process import KillPackage, PausePackage

PACKAGES = {
    "partition": PartitionPackage,
    "kill": KillPackage,
    "pause": PausePackage,
}

__all__ = ["FaultEvent", "FaultPackage", "Nemesis", "Schedule", "PACKAGES", "build", "parse_names", "pick_nodes"]


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
