"""The network interface.

The broker accepts and opens TCP connections only through a `Network`. The real
one is asyncio's streams; a simulated one can hand out in-memory stream pairs
with delays, drops and partitions. `open_connection` takes an optional
`local_host` so that a node's outgoing connections can carry an identity (its own
127.0.0.x source address) that a fault proxy can see.
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, Protocol

ConnectionHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Network(Protocol):
    async def start_server(self, handler: ConnectionHandler, host: str, port: int) -> asyncio.AbstractServer: ...

    async def open_connection(
        self, host: str, port: int, local_host: str | None = None
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]: ...


class RealNetwork:
    """TCP through asyncio streams."""

    def __init__(self, stream_limit_bytes: int = 1 << 20):
        self.stream_limit_bytes = stream_limit_bytes

    async def start_server(self, handler: ConnectionHandler, host: str, port: int) -> asyncio.AbstractServer:
        return await asyncio.start_server(handler, host, port, limit=self.stream_limit_bytes, reuse_address=True)

    async def open_connection(self, host: str, port: int, local_host: str | None = None):
        local_addr = (local_host, 0) if local_host else None
        return await asyncio.open_connection(host, port, limit=self.stream_limit_bytes, local_addr=local_addr)
