"""The simulated world: one seed, one virtual-time loop, a network, a disk per node, a clock per node.

`SimWorld(seed)` builds everything a deterministic run needs and hands each
simulated process a `broker.io.Runtime` (`SimWorld.runtime(host)`) whose
clock, disk, network and randomness are the simulation's. The broker code
above is the real one: it cannot tell.

Fault model of the whole runtime (each part states its own in detail):
- time (broker.io.sim_loop): virtual, advancing only when nothing is ready,
  straight to the next timer; computation takes no virtual time; optionally
  the order of ready callbacks is drawn from the seed;
- clock (`SimClock`): `monotonic_ns` is the loop's virtual time (every
  node reads the same monotonic clock, with no drift between nodes); `wall_ms` is a fixed
  epoch plus virtual time plus the node's skew, which `set_skew` may change at
  any time (a wall clock that jumps, forward or back);
- network (broker.io.sim_network): ordered byte streams with per-link delays
  from the seed; partitions one-way or both ways, either holding the bytes
  until healed or resetting the connections; slow links; refused connects;
  connection loss; a crashed process's connections reset;
- disk (broker.io.sim_disk): per node, in memory; when the node crashes
  (power loss) unsynced file data and unsynced directory entries are lost
  (entries synced as POSIX promises, or as a journaling file system does); a
  process that is only killed leaves the page cache behind; optional torn
  writes; EIO on write or fsync;
- randomness: every `random.Random` handed out is seeded from the world's seed
  and a name (the host, its incarnation), never from the OS, so adding a node
  does not change the draws of the others.
What a run did is summed up in its trace (`SimTrace`): a SHA-256 over every
delivered network write, every connect, reset and fault, and whatever the
caller records (acknowledged offsets); two runs of one seed give the same
digest, or the simulation has a leak of nondeterminism.

Thread-safety: none; a world runs on the thread that calls `run`.

Sources: FoundationDB's simulator (Will Wilson, "Testing Distributed Systems
w/ Deterministic Simulation", 2014), TigerBeetle's VOPR and its
`src/testing/storage.zig` (faults stated at the top), trio's MockClock and
fake network.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections import deque

from broker.io import Runtime
from broker.io.sim_disk import SimDisk, SimFile, SimStorage
from broker.io.sim_loop import ACTOR, SimulationDeadlock, VirtualTimeLoop
from broker.io.sim_network import HostNetwork, SimNetwork

__all__ = ["ACTOR", "EPOCH_MS", "HostNetwork", "SimClock", "SimDisk", "SimFile", "SimNetwork", "SimStorage",
           "SimTrace", "SimWorld", "SimulationDeadlock", "VirtualTimeLoop"]

EPOCH_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: every simulation's wall clock starts here


class SimClock:
    """A `broker.io.clock.Clock` on the loop's virtual time, with this node's wall-clock skew."""

    def __init__(self, loop: VirtualTimeLoop, skew_ms: int = 0, epoch_ms: int = EPOCH_MS):
        self.loop = loop
        self.skew_ms = skew_ms
        self.epoch_ms = epoch_ms

    def set_skew(self, skew_ms: int) -> None:
        self.skew_ms = skew_ms

    def wall_ms(self) -> int:
        return self.epoch_ms + self.loop.time_ns() // 1_000_000 + self.skew_ms

    def monotonic_ns(self) -> int:
        return self.loop.time_ns()

    def monotonic_ms(self) -> int:
        return self.loop.time_ns() // 1_000_000

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class SimTrace:
    """A running SHA-256 of what happened, and the last events for a failure message."""

    def __init__(self, loop: VirtualTimeLoop, keep_last: int = 40):
        self.loop = loop
        self._hash = hashlib.sha256()
        self.events = 0
        self._last: deque[tuple] = deque(maxlen=keep_last)  # (virtual ns, kind, fields), formatted when asked

    def record(self, kind: str, *fields) -> None:
        now_ns = self.loop.time_ns()
        self._hash.update(f"{now_ns} {kind}".encode())
        for value in fields:
            if isinstance(value, (bytes, bytearray, memoryview)):
                self._hash.update(b" %d:" % len(value))
                self._hash.update(value)
            else:
                self._hash.update(b" " + repr(value).encode())
        self._hash.update(b"\n")
        self.events += 1
        self._last.append((now_ns, kind, fields))

    @property
    def last(self) -> list[str]:
        """The last events, one line each (formatted only when asked: a failure message, not every event)."""
        lines = []
        for now_ns, kind, fields in self._last:
            shown = [f"{len(v)} bytes" if isinstance(v, (bytes, bytearray, memoryview)) else repr(v) for v in fields]
            lines.append(f"{now_ns / 1e9:.6f} {kind} {' '.join(shown)}")
        return lines

    def digest(self) -> str:
        return self._hash.hexdigest()


class SimWorld:
    """Everything of one simulation, from one seed (see the module docstring)."""

    def __init__(self, seed: int, shuffle: bool = False, delay_ms_min: float = 0.1, delay_ms_max: float = 2.0,
                 torn_writes: bool = False, directories: str = "posix"):
        self.seed = seed
        self.loop = VirtualTimeLoop(shuffle_seed=self._derive("scheduler").getrandbits(64) if shuffle else None)
        self.trace = SimTrace(self.loop)
        self.network = SimNetwork(self.loop, self._derive("network"), self.trace.record,
                                  delay_ms_min=delay_ms_min, delay_ms_max=delay_ms_max)
        self.torn_writes = torn_writes
        self.directories = directories
        self.storages: dict[str, SimStorage] = {}
        self.clocks: dict[str, SimClock] = {}
        self.incarnations: dict[str, int] = {}

    def _derive(self, name: str) -> random.Random:
        # a str seed is hashed with SHA-512 by random.Random: the same in every process, whatever PYTHONHASHSEED
        return random.Random(f"{self.seed}/{name}")

    def storage(self, host: str) -> SimStorage:
        if host not in self.storages:
            self.storages[host] = SimStorage(host, self._derive(f"disk/{host}"), torn_writes=self.torn_writes,
                                             directories=self.directories)
        return self.storages[host]

    def clock(self, host: str) -> SimClock:
        if host not in self.clocks:
            self.clocks[host] = SimClock(self.loop)
        return self.clocks[host]

    def runtime(self, host: str) -> Runtime:
        """The runtime of a new process on `host` (its next incarnation): fresh network view and disk view."""
        incarnation = self.incarnations.get(host, 0) + 1
        self.incarnations[host] = incarnation
        self.trace.record("start", host, incarnation)
        return Runtime(clock=self.clock(host), disk=self.storage(host).disk(), network=self.network.host(host),
                       random=self._derive(f"random/{host}/{incarnation}"))

    def actor(self, host: str) -> str:
        """The actor tag of `host`'s current process (broker.io.sim_loop.ACTOR)."""
        return f"{host}#{self.incarnations.get(host, 0)}"

    def crash(self, host: str, power_loss: bool = True) -> int:
        """Kill `host`'s process at once: its network view is revoked and its connections reset, every task it ran
        is cancelled, and with `power_loss` (the machine went down, not only the process) its disk keeps only what
        was durable. Returns how many tasks were cancelled."""
        self.network.crash(host)
        if power_loss:
            self.storage(host).crash()
        else:
            self.storage(host).process_exit()
        cancelled = self.loop.cancel_actor(self.actor(host))
        self.trace.record("crashed", host, power_loss, cancelled)
        return cancelled

    def exited(self, host: str) -> int:
        """`host`'s process ended by itself (after a clean shutdown): what it left running is cancelled, its views
        are revoked, its page cache stays."""
        return self.crash(host, power_loss=False)

    async def sleep(self, seconds: float) -> None:
        """Sleep on virtual time (for the simulation's own code: drivers, checkers, clients)."""
        await asyncio.sleep(seconds)

    def run(self, coro):
        """Run `coro` to completion on virtual time (the main actor is None)."""
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        # cancel what is left (background tasks of nodes still up), give them a turn to finish, close the loop
        leftovers = self.loop.live_tasks()
        for task in leftovers:
            task.cancel()
        if leftovers:
            self.loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
        self.loop.close()

    @property
    def virtual_s(self) -> float:
        return self.loop.time()
