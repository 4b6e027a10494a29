"""The broker's only ways out: clock, disk, network and randomness.

Every broker module reaches the outside world through a `Runtime` passed to its
constructor, never on its own (no `time.time()`, no `open()`, no `socket`, no
module-level `random`). The real implementations are the default; a simulated
runtime can later run the same broker code in one process, deterministically,
with injected faults (the approach of FoundationDB's and TigerBeetle's
simulators).

Thread-safety: the real implementations are as thread-safe as the OS calls they
wrap; the broker itself runs on one asyncio event loop.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from broker.io.clock import Clock, RealClock
from broker.io.disk import Disk, DiskFile, RealDisk
from broker.io.network import Network, RealNetwork

__all__ = ["Clock", "Disk", "DiskFile", "Network", "RealClock", "RealDisk", "RealNetwork", "Runtime"]


@dataclass
class Runtime:
    """The bundle of outside-world interfaces one broker node uses."""

    clock: Clock = field(default_factory=RealClock)
    disk: Disk = field(default_factory=RealDisk)
    network: Network = field(default_factory=RealNetwork)
    random: random.Random = field(default_factory=random.Random)

    @classmethod
    def real(cls, seed: int | None = None) -> "Runtime":
        return cls(RealClock(), RealDisk(), RealNetwork(), random.Random(seed))
