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

A planted harness bug, for testing the nemeses' probes: a proxy made with
`ignore_cuts=True` (the local backend does so when the environment variable
`LOGQUAKE_DEBUG_PROXY_IGNORE_CUTS` is `true`) records every cut as asked and logs
it, but keeps forwarding: the partition is asked for and never lands.

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


def node_of(upstream: str) -> str:
    """The node an upstream belongs to: `n1` for `n1` and for `n1/controller`."""
    return upstream.partition("/")[0]


class _Gate:
    """Whether one directed link is open, and the directions waiting for it to reopen."""

    def __init__(self):
        self.is_open = True
        self.waiters: set = set()  # _Direction objects and futures of held connection attempts

    def close(self):
        self.is_open = False

    def open(self):
        self.is_open = True
        waiters, self.waiters = self.waiters, set()
        for waiter in waiters:
            if isinstance(waiter, asyncio.Future):
                if not waiter.done():
                    waiter.set_result(None)
            else:
                waiter.kick()


class _Direction:
    """One direction of one proxied connection: bytes from `source` to `target` on `link`.

    Clean and open, a chunk is written as soon as it arrives (no task, no copy).
    Otherwise chunks queue with their release times; while the link is cut the
    source stops being read, so bytes back up in the kernel and in the sender,
    as on a real partitioned link, and nothing is lost.
    """

    def __init__(self, proxy: "FaultProxy", link: tuple[str, str]):
        self.proxy = proxy
        self.link = link
        self.gate = proxy._gate(link)
        self.source: asyncio.Transport | None = None
        self.target: asyncio.Transport | None = None
        self.queue: collections.deque = collections.deque()  # (release_time, data)
        self.eof = False
        self.timer: asyncio.TimerHandle | None = None
        self.target_blocked = False
        self.source_paused = False
        self.last_release = 0.0

    def feed(self, data: bytes) -> None:
        shape = self.proxy._shape
        if not self.queue and self.gate.is_open and shape.is_clean and self.target is not None:
            self._write(data)
            return
        release = 0.0
        if not shape.is_clean:
            loop = self.proxy._loop
            delay_ms = shape.latency_ms + self.proxy._random.uniform(-shape.jitter_ms, shape.jitter_ms)
            if shape.loss and self.proxy._random.random() < shape.loss:
                delay_ms += RETRANSMIT_DELAY_MS
            release = max(loop.time() + max(delay_ms, 0.0) / 1000, self.last_release)
            self.last_release = release
        self.queue.append((release, data))
        if not self.gate.is_open or self.target is None:
            self._pause_source()
        self.kick()

    def feed_eof(self) -> None:
        self.eof = True
        self.kick()

    def kick(self) -> None:
        """Write whatever is due; wait for time, the gate or the target, as needed."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.target is None or self.target.is_closing():
            return
        loop = self.proxy._loop
        while self.queue:
            if not self.gate.is_open:
                self.gate.waiters.add(self)
                self._pause_source()
                return
            release, data = self.queue[0]
            wait_s = release - loop.time()
            if wait_s > 0:
                self.timer = loop.call_later(wait_s, self.kick)
                return
            self.queue.popleft()
            self._write(data)
        if self.gate.is_open:
            self._resume_source()
            if self.eof:
                self.eof = False
                try:
                    if self.target.can_write_eof():
                        self.target.write_eof()
                    else:
                        self.target.close()
                except OSError:
                    # under latency the EOF is passed on late, and the peer may have gone meanwhile
                    self.target.close()

    def _write(self, data: bytes) -> None:
        self.target.write(data)
        self.proxy.bytes_forwarded[self.link] += len(data)

    def _pause_source(self) -> None:
        if not self.source_paused and self.source is not None and not self.source.is_closing():
            self.source.pause_reading()
            self.source_paused = True

    def _resume_source(self) -> None:
        if self.source_paused and not self.target_blocked and self.source is not None and not self.source.is_closing():
            self.source.resume_reading()
            self.source_paused = False

    # flow control from the target's transport
    def target_paused(self) -> None:
        self.target_blocked = True
        self._pause_source()

    def target_resumed(self) -> None:
        self.target_blocked = False
        if not self.queue and self.gate.is_open:
            self._resume_source()

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.gate.waiters.discard(self)


class _Side(asyncio.Protocol):
    """One TCP connection of a proxied pair: what it receives feeds `outgoing`;
    its write-buffer pressure pauses `incoming`'s source."""

    def __init__(self, pair: "_Pair", outgoing: _Direction, incoming: _Direction):
        self.pair = pair
        self.outgoing = outgoing
        self.incoming = incoming
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport):
        self.transport = transport
        self.outgoing.source = transport
        self.incoming.target = transport
        self.incoming.kick()

    def data_received(self, data):
        self.outgoing.feed(data)

    def eof_received(self):
        self.outgoing.feed_eof()
        return True  # keep the other direction open (half-close)

    def pause_writing(self):
        self.incoming.target_paused()

    def resume_writing(self):
        self.incoming.target_resumed()

    def connection_lost(self, exc):
        if self.pair is not None:
            self.pair.lost(self)


class _Pair:
    """A client connection and its upstream connection."""

    def __init__(self, proxy: "FaultProxy", src: str, dst: str):
        self.proxy = proxy
        self.forward = _Direction(proxy, (src, dst))
        self.backward = _Direction(proxy, (dst, src))
        self.client = _Side(self, self.forward, self.backward)
        self.upstream = _Side(self, self.backward, self.forward)
        self.closed = False

    def transports(self):
        return [side.transport for side in (self.client, self.upstream) if side.transport is not None]

    def lost(self, side: _Side) -> None:
        if self.closed:
            return
        self.closed = True
        self.forward.close()
        self.backward.close()
        for transport in self.transports():
            transport.close()
        self.proxy._pairs.discard(self)

    def close(self) -> None:
        for transport in self.transports():
            transport.close()
        self.lost(self.client)


class FaultProxy:
    """Proxies each node's port and injects link faults.

    `upstreams` maps node name -> (host, port) of the node's real listener; a node with several
    listeners has more entries named `node/listener` (e.g. `n1/controller`), each proxied on a port of its
    own, and a link fault between two nodes holds every one of them.
    `sources` maps a source IP address -> node name; any other address is a client.
    `peer_upstreams` maps node name -> (host, port) of a listener for connections from
    other nodes (a broker's inter-broker listener); nodes missing there get theirs in `upstreams`.
    """

    def __init__(self, upstreams: dict[str, tuple[str, int]], sources: dict[str, str] | None = None,
                 listen_host: str = "127.0.0.1", seed: int = 0, ignore_cuts: bool = False,
                 peer_upstreams: dict[str, tuple[str, int]] | None = None):
        self.upstreams = dict(upstreams)
        self.peer_upstreams = dict(peer_upstreams or {})
        self.ignore_cuts = ignore_cuts
        if ignore_cuts:
            log.warning("planted harness bug: this fault proxy ignores cuts (LOGQUAKE_DEBUG_PROXY_IGNORE_CUTS)")
        self.sources = {str(ipaddress.ip_address(ip)): name for ip, name in (sources or {}).items()}
        self.listen_host = listen_host
        self.ports: dict[str, int] = {}
        self.bytes_forwarded: collections.Counter = collections.Counter()
        self._random = random.Random(seed)
        self._gates: dict[tuple[str, str], _Gate] = {}
        self._reset_links: set[tuple[str, str]] = set()
        self._shape = NetShape()
        self._pairs: set[_Pair] = set()
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
        nodes = {node_of(key) for key in self.upstreams}
        if name != CLIENT and name not in nodes:
            raise ValueError(f"{role} {name!r} is not a node of this proxy; expected one of "
                             f"{sorted(nodes)} or {CLIENT!r}")

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
        if self.ignore_cuts:
            log.info("cut %s -> %s asked for and ignored (planted harness bug)", src, dst)
            return
        self._gate(link).close()
        if reset:
            self._reset_links.add(link)
            for pair in list(self._pairs):
                if link in (pair.forward.link, pair.backward.link):
                    pair.close()
        log.info("cut %s -> %s%s", src, dst, " (reset)" if reset else "")

    def _heal(self) -> None:
        self._reset_links.clear()
        self._shape = NetShape()
        for gate in self._gates.values():
            gate.open()
        for pair in list(self._pairs):  # chunks queued for latency go out now
            pair.forward.kick()
            pair.backward.kick()
        log.info("healed all links")

    async def _listen(self, ports: dict[str, int]) -> None:
        for key in self.upstreams:
            server = await self._loop.create_server(
                lambda key=key: _Accepted(self, key), self.listen_host, ports.get(key, 0), reuse_address=True,
            )
            self._servers.append(server)
            self.ports[key] = server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        for server in self._servers:
            server.close()
        for pair in list(self._pairs):
            pair.close()
        for gate in self._gates.values():
            for waiter in gate.waiters:
                if isinstance(waiter, asyncio.Future) and not waiter.done():
                    waiter.cancel()
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

    async def _connect_upstream(self, pair: _Pair, client: asyncio.Transport, upstream: str) -> None:
        """Open the upstream side of an accepted connection, once its links are open."""
        forward, backward = pair.forward.link, pair.backward.link
        try:
            # a connection attempt on a cut link hangs, as a dropped SYN does
            for link in (forward, backward):
                gate = self._gate(link)
                if not gate.is_open:
                    waiter = self._loop.create_future()
                    gate.waiters.add(waiter)
                    await waiter
            if pair.closed:
                return
            from_peer = forward[0] != CLIENT and upstream in self.peer_upstreams
            host, port = self.peer_upstreams[upstream] if from_peer else self.upstreams[upstream]
            await self._loop.create_connection(lambda: pair.upstream, host, port)
        except OSError as e:
            log.debug("upstream %s refused a connection from %s: %s", upstream, forward[0], e)
            pair.close()
        except asyncio.CancelledError:
            pair.close()
            raise


class _Accepted(_Side):
    """The client side of a new connection: attributes it to a source and opens the upstream side."""

    def __init__(self, proxy: FaultProxy, upstream: str):
        self.proxy = proxy
        self.upstream = upstream
        self.dst = node_of(upstream)
        self.pair = None

    def connection_made(self, transport):
        peer = transport.get_extra_info("peername")
        src = self.proxy.source_of(peer[0]) if peer else CLIENT
        pair = _Pair(self.proxy, src, self.dst)
        if pair.forward.link in self.proxy._reset_links or pair.backward.link in self.proxy._reset_links:
            transport.close()
            return
        _Side.__init__(self, pair, pair.forward, pair.backward)
        pair.client = self
        self.proxy._pairs.add(pair)
        # until the upstream side exists, what the client sends waits in its direction's queue
        super().connection_made(transport)
        self.proxy._spawn(self.proxy._connect_upstream(pair, transport, self.upstream))

