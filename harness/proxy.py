"""The fault proxy: every byte between clients and nodes, and between nodes, passes here.

One listening port per node stands in front of that node's real port. Each
accepted connection is attributed to a *source* (a node name, or "client") by
the source address it comes from: the local backend gives every node its own
loopback address (127.0.0.N on Linux) for its outgoing connections, and clients
connect from 127.0.0.1. A *link* is a directed pair (source, destination).

Faults, all reversible by `heal`:

- `cut(src, dst)`: bytes from src to dst stop flowing. Like an iptables DROP, the
  bytes are held, not discarded (TCP never loses bytes mid-stream; a real drop
  stalls the stream until retransmission gets through or the endpoint gives up),
  and new connections on a cut link are accepted but not forwarded. With
  `reset=True` existing connections on the link are closed instead, like a REJECT.
- `slow(latency_ms, jitter_ms, loss)`: every chunk is delayed by latency ±
  jitter, keeping order; a fraction `loss` of chunks waits an extra
  retransmission timeout (200 ms), which is what packet loss does to TCP.

Invariants: bytes on one connection are forwarded in order and never dropped
while the connection is open; a healed link forwards everything it held.
Counters (`bytes_forwarded[(src, dst)]`) let tests show that a cut link carries
nothing while the others do.

Thread-safety: the proxy runs its own asyncio loop in a background thread; the
public methods may be called from any thread and take effect before they return.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import logging
import random
import threading
from dataclasses import dataclass
from typing import Callable, Iterable

log = logging.getLogger("harness.proxy")

CLIENT = "client"
RETRANSMIT_DELAY_MS = 200
CHUNK_BYTES = 256 * 1024


@dataclass(frozen=True)
class NetShape:
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    loss: float = 0.0

    def __post_init__(self):
        if self.latency_ms < 0 or self.jitter_ms < 0:
            raise ValueError(f"latency_ms and jitter_ms must be >= 0, got {self.latency_ms} and {self.jitter_ms}")
        if not 0.0 <= self.loss < 1.0:
            raise ValueError(f"loss must be a fraction in [0, 1), got {self.loss}")

    @property
    def is_clean(self) -> bool:
        return self.latency_ms == 0 and self.jitter_ms == 0 and self.loss == 0


class _Gate:
    """An open/closed condition a pump waits on; opening wakes every waiter."""

    def __init__(self):
        self._event = asyncio.Event()
        self._event.set()

    def close(self):
        self._event.clear()

    def open(self):
        self._event.set()

    @property
    def is_open(self) -> bool:
        return self._event.is_set()

    async def wait_open(self):
        await self._event.wait()


class FaultProxy:
    """Proxies each node's port and injects link faults.

    `upstreams` maps node name -> (host, port) of the node's real listener.
    `sources` maps a source IP address -> node name; any other address is a client.
    """

    def __init__(self, upstreams: dict[str, tuple[str, int]], sources: dict[str, str] | None = None,
                 listen_host: str = "127.0.0.1", seed: int = 0):
        self.upstreams = dict(upstreams)
        self.sources = {str(ipaddress.ip_address(ip)): name for ip, name in (sources or {}).items()}
        self.listen_host = listen_host
        self.ports: dict[str, int] = {}
        self.bytes_forwarded: collections.Counter = collections.Counter()
        self._random = random.Random(seed)
        self._gates: dict[tuple[str, str], _Gate] = {}
        self._reset_links: set[tuple[str, str]] = set()
        self._shape = NetShape()
        self._connections: dict[tuple[str, str], set[asyncio.StreamWriter]] = collections.defaultdict(set)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._servers: list[asyncio.AbstractServer] = []
        self._tasks: set[asyncio.Task] = set()

    # ----- lifecycle -------------------------------------------------------------

    def start(self, ports: dict[str, int] | None = None) -> dict[str, int]:
        """Start listening (on the given ports, or free ones); returns node -> proxy port."""
        if self._thread is not None:
            raise RuntimeError("the fault proxy is already running")
        ready = threading.Event()
        failure: list[BaseException] = []
        self._loop = asyncio.new_event_loop()

        def run():
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(self._listen(ports or {}))
            except BaseException as e:  # reported to the caller of start()
                failure.append(e)
                ready.set()
                return
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="fault-proxy", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise RuntimeError(f"the fault proxy could not listen: {failure[0]}") from failure[0]
        return dict(self.ports)

    def stop(self) -> None:
        """Close every listener and connection and stop the loop; idempotent."""
        if self._thread is None or self._loop is None:
            return
        fut = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        fut.result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._thread = None
        self._loop = None

    def __enter__(self):
        if self._thread is None:
            self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    # ----- faults ----------------------------------------------------------------

    def cut(self, src: str, dst: str, reset: bool = False) -> None:
        """Stop bytes flowing from `src` to `dst` (one direction)."""
        self._check_party(src, "src")
        self._check_party(dst, "dst")
        self._call(self._cut, src, dst, reset)

    def cut_links(self, links: Iterable[tuple[str, str]], reset: bool = False) -> None:
        for src, dst in links:
            self.cut(src, dst, reset)

    def heal(self) -> None:
        """Reopen every link and remove latency and loss."""
        self._call(self._heal)

    def slow(self, latency_ms: float = 0.0, jitter_ms: float = 0.0, loss: float = 0.0) -> None:
        shape = NetShape(latency_ms, jitter_ms, loss)
        self._call(setattr, self, "_shape", shape)

    def is_cut(self, src: str, dst: str) -> bool:
        gate = self._gates.get((src, dst))
        return gate is not None and not gate.is_open

    def cut_links_now(self) -> list[tuple[str, str]]:
        return sorted(link for link, gate in self._gates.items() if not gate.is_open)

    # ----- internals -------------------------------------------------------------

    def _check_party(self, name: str, role: str) -> None:
        if name != CLIENT and name not in self.upstreams:
            raise ValueError(f"{role} {name!r} is not a node of this proxy; expected one of "
                             f"{sorted(self.upstreams)} or {CLIENT!r}")

    def _call(self, fn: Callable, *args) -> None:
        if self._loop is None:
            fn(*args)
            return
        done = threading.Event()

        def wrapped():
            try:
                fn(*args)
            finally:
                done.set()

        self._loop.call_soon_threadsafe(wrapped)
        done.wait(10)

    def _gate(self, link: tuple[str, str]) -> _Gate:
        gate = self._gates.get(link)
        if gate is None:
            gate = self._gates[link] = _Gate()
        return gate

    def _cut(self, src: str, dst: str, reset: bool) -> None:
        link = (src, dst)
        self._gate(link).close()
        if reset:
            self._reset_links.add(link)
            for writer in list(self._connections.get(link, ())) + list(self._connections.get((dst, src), ())):
                writer.close()
        log.info("cut %s -> %s%s", src, dst, " (reset)" if reset else "")

    def _heal(self) -> None:
        for gate in self._gates.values():
            gate.open()
        self._reset_links.clear()
        self._shape = NetShape()
        log.info("healed all links")

    async def _listen(self, ports: dict[str, int]) -> None:
        for node, (host, port) in self.upstreams.items():
            server = await asyncio.start_server(
                lambda r, w, node=node: self._spawn(self._serve(node, r, w)),
                self.listen_host, ports.get(node, 0), reuse_address=True,
            )
            self._servers.append(server)
            self.ports[node] = server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        for server in self._servers:
            server.close()
        for writers in self._connections.values():
            for writer in writers:
                writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def source_of(self, peer_ip: str) -> str:
        return self.sources.get(str(ipaddress.ip_address(peer_ip)), CLIENT)

    async def _serve(self, dst: str, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter):
        peer = client_writer.get_extra_info("peername")
        src = self.source_of(peer[0]) if peer else CLIENT
        forward, backward = (src, dst), (dst, src)
        if forward in self._reset_links or backward in self._reset_links:
            client_writer.close()
            return
        # a connection attempt on a cut link hangs, as a dropped SYN does
        await self._gate(forward).wait_open()
        await self._gate(backward).wait_open()
        host, port = self.upstreams[dst]
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(host, port)
        except OSError as e:
            log.debug("upstream %s (%s:%s) refused a connection from %s: %s", dst, host, port, src, e)
            client_writer.close()
            return
        self._connections[forward].add(client_writer)
        self._connections[forward].add(upstream_writer)
        try:
            await asyncio.gather(
                self._pump(forward, client_reader, upstream_writer),
                self._pump(backward, upstream_reader, client_writer),
            )
        finally:
            self._connections[forward].discard(client_writer)
            self._connections[forward].discard(upstream_writer)
            for writer in (client_writer, upstream_writer):
                writer.close()

    async def _pump(self, link: tuple[str, str], reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        """Forward one direction of a connection: a reader stamps each chunk with its release
        time (now + the link's delay, never earlier than the previous chunk's, so order holds),
        a writer sends it when that time comes and the link is open."""
        gate = self._gate(link)
        queue: asyncio.Queue = asyncio.Queue(maxsize=16)
        loop = asyncio.get_running_loop()

        async def read_side():
            last_release = 0.0
            try:
                while True:
                    # wait before reading: while cut, bytes back up in the kernel buffers and
                    # the sender's TCP window fills, as on a real partitioned link
                    await gate.wait_open()
                    data = await reader.read(CHUNK_BYTES)
                    if not data:
                        break
                    release = 0.0
                    shape = self._shape
                    if not shape.is_clean:
                        delay_ms = shape.latency_ms + self._random.uniform(-shape.jitter_ms, shape.jitter_ms)
                        if shape.loss and self._random.random() < shape.loss:
                            delay_ms += RETRANSMIT_DELAY_MS
                        release = max(loop.time() + max(delay_ms, 0.0) / 1000, last_release)
                        last_release = release
                    await queue.put(data if release == 0.0 else (release, data))
            except (ConnectionError, OSError):
                pass
            finally:
                await queue.put(None)

        async def write_side():
            try:
                while True:
                    item = await queue.get()
                    if item is None:
                        break
                    if isinstance(item, tuple):
                        release, data = item
                        wait_s = release - loop.time()
                        if wait_s > 0:
                            await asyncio.sleep(wait_s)
                    else:
                        data = item
                    await gate.wait_open()
                    writer.write(data)
                    self.bytes_forwarded[link] += len(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                try:
                    if writer.can_write_eof() and not writer.is_closing():
                        writer.write_eof()
                except (OSError, RuntimeError):
                    writer.close()

        reader_task = asyncio.ensure_future(read_side())
        try:
            await write_side()
        finally:
            reader_task.cancel()
            await asyncio.gather(reader_task, return_exceptions=True)
