"""A virtual-time asyncio event loop: the scheduler of the deterministic simulation.

`VirtualTimeLoop` is an ordinary asyncio event loop (tasks, futures, Events,
`wait_for`, `asyncio.timeout`, `call_later` all work unchanged) whose clock is
virtual: `time()` returns simulated seconds, and when no callback is ready the
loop does not wait, it jumps its clock to the earliest timer. A run of the
whole broker therefore takes as much wall time as its computation, however
long its timeouts, and repeats exactly: with no file descriptors, no threads
and no real clock there is nothing left that could differ between two runs but
the seed.

Scheduling model (what the loop promises, stated first):
- time advances only when nothing is ready, straight to the next timer; it
  never goes backwards; a timer runs at the first iteration whose time is at or
  past its deadline (resolution 1 ns);
- the loop has no selector over file descriptors: every I/O of the simulation
  (broker.io.sim_network) is a callback scheduled on this loop. A loop with
  nothing ready and no timer is deadlocked: `SimulationDeadlock` is raised
  instead of waiting forever;
- with `shuffle_seed` set, the callbacks that are ready at the start of an
  iteration (not the timers falling due in it, which follow in deadline
  order) run in an order drawn from that seed (asyncio promises FIFO order
  for `call_soon`; code that relies on the order of callbacks from *different*
  sources is what this finds). Off by default. Order-sensitive pairs inside
  one source (a transport's bytes) are kept in order by their source;
- every task is tagged with the *actor* that created it (the `ACTOR` context
  variable, inherited by every task a task creates), so that `cancel_actor`
  can stop everything one simulated process runs, in creation order (a
  crash). Plain callbacks (`call_later`) are not tracked: one that a crashed
  process left behind still runs, and finds that process's network and disk
  revoked (broker.io.sim_network, broker.io.sim_disk);
- threads are not supported: `call_soon_threadsafe` and executors raise;
- `step_hook`, when set, is called once per iteration before its callbacks
  run, i.e. after every step of the previous iteration: where a simulation
  checks its invariants (broker.sim.invariants). It must only read.

This is FoundationDB's simulation idea (one thread, a virtual clock, every
source of nondeterminism behind an interface; "Testing Distributed Systems w/
Deterministic Simulation", Will Wilson, Strange Loop 2014) applied to asyncio,
as trio's MockClock does for trio (`autojump_threshold=0`).

Thread-safety: none; the loop must be driven from one thread.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import random
from asyncio import base_events

__all__ = ["ACTOR", "SimulationDeadlock", "VirtualTimeLoop"]

# The simulated process (e.g. "node-1#2": node 1, second incarnation) a task or callback belongs to.
ACTOR: contextvars.ContextVar[str | None] = contextvars.ContextVar("logquake_sim_actor", default=None)


class SimulationDeadlock(RuntimeError):
    """Nothing is ready and no timer is set: the simulated world can never move again."""


class _VirtualSelector:
    """Stands where a real loop has its selector: `select(timeout)` advances virtual time by `timeout`."""

    def __init__(self, loop: "VirtualTimeLoop"):
        self._loop = loop

    def select(self, timeout: float | None) -> list:
        if timeout is None:
            raise SimulationDeadlock(
                f"at virtual time {self._loop.time():.6f} s nothing is ready and no timer is set "
                "(every task waits for something nobody will do)")
        if timeout > 0:
            self._loop.advance(timeout)
        return []


class VirtualTimeLoop(base_events.BaseEventLoop):
    """An asyncio loop on virtual time (see the module docstring)."""

    def __init__(self, shuffle_seed: int | None = None):
        super().__init__()
        self._selector = _VirtualSelector(self)
        self._clock_resolution = 1e-9
        self._now_ns = 0
        self._shuffle = random.Random(shuffle_seed) if shuffle_seed is not None else None
        self.iterations = 0
        # actor -> its live tasks, in creation order (a dict is an ordered set)
        self._tasks_by_actor: dict[str | None, dict[asyncio.Task, None]] = {}
        self.set_task_factory(self._make_task)
        self.unhandled: list[str] = []  # what the exception handler saw: a test can insist it stays empty
        self.step_hook = None  # called once per iteration, before its callbacks run (see the module docstring)

    def default_exception_handler(self, context) -> None:
        exception = context.get("exception")
        if isinstance(exception, asyncio.CancelledError):
            # Python 3.11's StreamReaderProtocol asks a cancelled connection task for its exception (fixed in
            # 3.12); a crash cancels such tasks by design, so this is not an error of the simulated code.
            return
        self.unhandled.append(f"{context.get('message')}: {exception!r}")
        super().default_exception_handler(context)

    # ---- time -----------------------------------------------------------------------

    def time(self) -> float:
        return self._now_ns / 1e9

    def time_ns(self) -> int:
        """Virtual nanoseconds since the loop was made."""
        return self._now_ns

    def advance(self, seconds: float) -> None:
        """Move virtual time forward by `seconds` (at least 1 ns), as if the loop had slept."""
        assert seconds > 0, f"virtual time only moves forward (asked to advance {seconds} s)"
        self._now_ns += max(1, math.ceil(seconds * 1e9))

    # ---- the hooks a BaseEventLoop subclass provides --------------------------------

    def _process_events(self, event_list) -> None:
        # Called once per iteration, after the (virtual) poll and before the ready callbacks run.
        self.iterations += 1
        if self.step_hook is not None:
            self.step_hook()
        if self._shuffle is not None and len(self._ready) > 1:
            handles = list(self._ready)
            self._shuffle.shuffle(handles)
            self._ready.clear()
            self._ready.extend(handles)

    def _write_to_self(self) -> None:
        raise RuntimeError("the simulated loop has no threads: call_soon_threadsafe is not supported")

    def run_in_executor(self, executor, func, *args):
        raise RuntimeError(f"the simulated loop has no threads: run_in_executor({func!r}) is not supported")

    # ---- actors ------------------------------------------------------------------------

    def _make_task(self, loop, coro, context=None):
        task = asyncio.Task(coro, loop=loop, context=context)
        actor = context.get(ACTOR) if context is not None else ACTOR.get()
        tasks = self._tasks_by_actor.setdefault(actor, {})
        tasks[task] = None
        task.add_done_callback(tasks.pop)
        return task

    def actor_tasks(self, actor: str | None) -> list[asyncio.Task]:
        """The live tasks of `actor`, oldest first."""
        return [task for task in self._tasks_by_actor.get(actor, {}) if not task.done()]

    def live_tasks(self) -> list[asyncio.Task]:
        """Every live task, by actor (in the order actors first ran) and then oldest first."""
        return [task for tasks in self._tasks_by_actor.values() for task in tasks if not task.done()]

    def cancel_actor(self, actor: str) -> int:
        """Cancel every live task of `actor` (oldest first); return how many."""
        tasks = self.actor_tasks(actor)
        for task in tasks:
            task.cancel(f"simulated crash of {actor}")
        return len(tasks)

    def run_actor(self, actor: str, coro) -> asyncio.Task:
        """Start `coro` as a task of `actor`: it and everything it starts carry the tag."""
        context = contextvars.copy_context()
        context.run(ACTOR.set, actor)
        return self.create_task(coro, context=context)
