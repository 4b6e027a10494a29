"""The clock interface.

`wall_ms` is the wall clock (record timestamps, time indexes, retention by
time); it may jump, so nothing that measures durations uses it. `monotonic_ns`
measures durations (timeouts, lag, session expiry). `sleep` suspends the calling
task; a simulated clock advances virtual time instead.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def wall_ms(self) -> int: ...

    def monotonic_ns(self) -> int: ...

    def monotonic_ms(self) -> int: ...

    async def sleep(self, seconds: float) -> None: ...


class RealClock:
    """The operating system's clocks."""

    def wall_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()

    def monotonic_ms(self) -> int:
        return time.monotonic_ns() // 1_000_000

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
