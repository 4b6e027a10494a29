"""A simulated network: in-memory TCP connections between hosts, with delays, partitions and resets.

`SimNetwork` is shared by every simulated host; `SimNetwork.host(name)` is one
host's view of it, a `broker.io.network.Network`: `start_server` and
`open_connection` hand out real asyncio `StreamReader`/`StreamWriter` pairs
whose transports are in memory, so the broker's server and client code run
unchanged. Every delivery is a callback on the simulation's loop
(broker.io.sim_loop), at a virtual time drawn from the seed.

Fault model (stated first):
- a connection is a pair of ordered byte streams (TCP): bytes arrive in the
  order sent, never duplicated, never corrupted, each write after the link's
  delay (a per-link base delay drawn once from the seed, plus per-write jitter;
  a write never overtakes an earlier one on the same connection);
- writes are never refused or paused (the socket buffers are unbounded);
  reading pauses and resumes as asyncio's flow control asks;
- a *partition* cuts directed links between hosts (`partition(side_a, side_b,
  one_way=...)`). Two behaviours, chosen per partition:
  - `reset=False` (packets dropped, as `iptables -j DROP`): bytes sent across a
    cut link are held and arrive, in order, after the link heals (TCP
    retransmission), unless the connection is closed first; a connect across a
    cut link in either direction (SYN or SYN-ACK lost) waits until both heal,
    so the caller's own timeout decides;
  - `reset=True` (`-j REJECT --reject-with tcp-reset`): every open connection
    across a cut link is reset at both ends at once (their streams raise
    ConnectionResetError) and new connects across it are refused;
- `slow(side_a, side_b, delay_ms)`: a slow link: every write (and connect)
  across it takes `delay_ms` more, on top of the link's own delay (0 makes it
  normal again); order within a connection is kept;
- `refuse(host)`: connects to that host are refused (ConnectionRefusedError),
  as by a closed port; so is any connect to a host and port nobody listens on;
- `disconnect(host)` resets every connection of a host (connection loss);
- `crash(host)` is a process crash: the host's listeners vanish, its
  connections are reset (the peers see ConnectionResetError after the link
  delay; bytes in flight either way are lost), and its old view of the network
  is revoked, so code of the dead process that still runs can no longer reach
  anything (OSError);
- closing a connection is a FIN: the peer reads what was sent, then EOF;
  `abort` is an RST: bytes in flight are dropped, the peer gets
  ConnectionResetError;
- not modelled: packet loss that TCP would not hide, reordering within a
  connection, bandwidth, half-open connections that linger after a peer's crash.

Every delivered write is recorded in the world's trace (time, source,
destination, bytes), so two runs of one seed can be compared byte for byte.

Thread-safety: none; one loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import random
from collections import deque
from typing import Callable

__all__ = ["SimNetwork", "HostNetwork"]

STREAM_LIMIT_BYTES = 1 << 20


class _Socket:
    """What `server.sockets[i]` must answer for the broker: its bound address."""

    def __init__(self, address: tuple[str, int]):
        self._address = address

    def getsockname(self) -> tuple[str, int]:
        return self._address


class SimServer(asyncio.AbstractServer):
    def __init__(self, network: "SimNetwork", host: "HostNetwork", address: tuple[str, int], handler, context):
        self.network = network
        self.host_network = host
        self.address = address
        self.handler = handler
        self.context = context  # the listening process's context: accepted connections' tasks run in it
        self.sockets = [_Socket(address)]
        self._serving = True
        self._closed_waiters: list = []

    def close(self) -> None:
        if self._serving:
            self._serving = False
            self.network._servers.pop(self.address, None)
            for waiter in self._closed_waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def get_loop(self):
        return self.network.loop

    def is_serving(self) -> bool:
        return self._serving

    async def start_serving(self) -> None:
        """Already serving: a simulated server accepts from start_server on."""

    async def serve_forever(self) -> None:
        """Return when the server is closed (it accepts from start_server on, as asyncio's does once started)."""
        if not self._serving:
            return
        waiter = self.network.loop.create_future()
        self._closed_waiters.append(waiter)
        await waiter

    async def wait_closed(self) -> None:
        """Closing is immediate: nothing is left to wait for."""


class _Direction:
    """One byte stream of a connection: what one end wrote, in flight to the other."""

    def __init__(self, sender: "SimTransport", receiver: "SimTransport"):
        self.sender = sender
        self.receiver = receiver
        self.queue: deque[tuple[int, str, bytes]] = deque()  # (due ns, "data" | "fin", payload)
        self.timer: asyncio.TimerHandle | None = None
        self.timer_due_ns = -1


class SimTransport(asyncio.Transport):
    """One end of a simulated connection."""

    def __init__(self, network: "SimNetwork", local: tuple[str, int], peer: tuple[str, int], context):
        super().__init__()
        self.network = network
        self.local = local
        self.peer = peer
        self.context = context  # the owning process's context: its protocol's callbacks run in it
        self.protocol: asyncio.BaseProtocol | None = None
        self.outgoing: _Direction | None = None
        self.incoming: _Direction | None = None
        self.closing = False  # close() or abort() called, or the peer's FIN processed
        self.lost = False  # connection_lost delivered (or the owner is dead): no more callbacks
        self.dead = False  # the owning process crashed
        self._reading_paused = False
        self._held: list[bytes] = []  # data that arrived while reading was paused
        self._held_eof = False

    # ---- asyncio.Transport --------------------------------------------------------

    def get_extra_info(self, name, default=None):
        if name == "peername":
            return self.peer
        if name == "sockname":
            return self.local
        return default

    def set_protocol(self, protocol) -> None:
        self.protocol = protocol

    def get_protocol(self):
        return self.protocol

    def is_closing(self) -> bool:
        return self.closing

    def is_reading(self) -> bool:
        return not self._reading_paused and not self.closing

    def pause_reading(self) -> None:
        self._reading_paused = True

    def resume_reading(self) -> None:
        if not self._reading_paused:
            return
        self._reading_paused = False
        held, self._held = self._held, []
        for data in held:
            self._deliver_data(data)
        if self._held_eof:
            self._held_eof = False
            self._deliver_eof()

    def get_write_buffer_size(self) -> int:
        return 0

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (0, 0)

    def set_write_buffer_limits(self, high=None, low=None) -> None:
        """Ignored: simulated write buffers are unbounded (the module's fault model)."""

    def can_write_eof(self) -> bool:
        return False

    def write(self, data) -> None:
        if self.closing or self.dead or not data:
            return
        self.network._send(self.outgoing, "data", bytes(data))

    def writelines(self, list_of_data) -> None:
        self.write(b"".join(list_of_data))

    def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        if not self.dead:
            self.network._send(self.outgoing, "fin", b"")
        self.network.loop.call_soon(self._connection_lost, None, context=self.context)

    def abort(self) -> None:
        if self.lost:
            return
        self.closing = True
        self.network._reset(self.outgoing, self.incoming)
        self.network.loop.call_soon(self._connection_lost, None, context=self.context)

    # ---- deliveries (on the owner's context) -------------------------------------

    def _deliver_data(self, data: bytes) -> None:
        if self.lost or self.dead:
            return
        if self._reading_paused:
            self._held.append(data)
            return
        self.protocol.data_received(data)

    def _deliver_eof(self) -> None:
        if self.lost or self.dead:
            return
        if self._reading_paused:
            self._held_eof = True
            return
        keep_open = self.protocol.eof_received()
        if not keep_open:
            self.close()

    def _connection_lost(self, exc: BaseException | None) -> None:
        if self.lost:
            return
        self.lost = True
        self.closing = True
        if not self.dead:
            self.protocol.connection_lost(exc)
        if self.outgoing is not None and self.outgoing.receiver.lost:
            self.network._forget(self)


class HostNetwork:
    """One host's view of the network (a `broker.io.network.Network`); revoked when its process crashes."""

    def __init__(self, network: "SimNetwork", host: str):
        self.network = network
        self.host = host
        self.revoked = False
        self.stream_limit_bytes = STREAM_LIMIT_BYTES

    def _check(self) -> None:
        if self.revoked:
            raise OSError(f"host {self.host}'s process crashed: its network is gone")

    async def start_server(self, handler, host: str, port: int) -> asyncio.AbstractServer:
        self._check()
        return self.network._listen(self, handler, host or self.host, port)

    async def open_connection(self, host: str, port: int, local_host: str | None = None):
        # local_host (logquake.outbound.address) is ignored: a simulated host's connections always come from it
        self._check()
        return await self.network._connect(self, host, port)


class SimNetwork:
    """The network every simulated host shares (see the module docstring for the fault model)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, rng: random.Random, record: Callable[..., None],
                 delay_ms_min: float = 0.1, delay_ms_max: float = 2.0, jitter_ms_max: float = 0.5):
        if not 0 <= delay_ms_min <= delay_ms_max:
            raise ValueError(f"need 0 <= delay_ms_min <= delay_ms_max, got {delay_ms_min} and {delay_ms_max}")
        self.loop = loop
        self.rng = rng
        self.record = record
        self.delay_ms_min = delay_ms_min
        self.delay_ms_max = delay_ms_max
        self.jitter_ms_max = jitter_ms_max
        self._servers: dict[tuple[str, int], SimServer] = {}
        self._hosts: dict[str, HostNetwork] = {}
        self._link_delay_ns: dict[tuple[str, str], int] = {}
        self._next_port: dict[str, int] = {}
        self._connections: list[tuple[SimTransport, SimTransport]] = []
        self._cut: dict[tuple[str, str], bool] = {}  # directed link -> reset?
        self._extra_delay_ns: dict[tuple[str, str], int] = {}  # directed link -> added delay (slow links)
        self._refused: set[str] = set()
        self._topology_changed = asyncio.Event()

    # ---- hosts ---------------------------------------------------------------------

    def host(self, name: str) -> HostNetwork:
        """A fresh view for a (re)started process on host `name`."""
        old = self._hosts.get(name)
        assert old is None or old.revoked, f"host {name} already has a live process"
        view = self._hosts[name] = HostNetwork(self, name)
        return view

    def _port(self, host: str) -> int:
        port = self._next_port.get(host, 40000)
        self._next_port[host] = port + 1
        return port

    # ---- faults --------------------------------------------------------------------

    def partition(self, side_a, side_b, one_way: bool = False, reset: bool = False) -> None:
        """Cut the links from every host of side_a to every host of side_b (and back, unless one_way)."""
        for a in side_a:
            for b in side_b:
                assert a != b, f"host {a} is on both sides of a partition"
                self._cut[(a, b)] = reset
                if not one_way:
                    self._cut[(b, a)] = reset
        self.record("partition", sorted(side_a), sorted(side_b), one_way, reset)
        if reset:
            for left, right in list(self._connections):
                if self._is_cut(left.local[0], right.local[0]):
                    self._reset_both(left, right)

    def heal(self) -> None:
        """Every link carries traffic again; what was held across a cut is delivered."""
        self._cut.clear()
        self.record("heal")
        now_ns = self._now_ns()
        for left, right in list(self._connections):
            for direction in (left.outgoing, right.outgoing):
                if direction.queue:
                    delay_ns = self._delay_ns(direction.sender.local[0], direction.receiver.local[0])
                    direction.queue = deque((max(due, now_ns + delay_ns), kind, payload)
                                            for due, kind, payload in direction.queue)
                    self._schedule(direction)
        self._wake_connects()

    def slow(self, side_a, side_b, delay_ms: float, one_way: bool = False) -> None:
        """Add `delay_ms` to every write from side_a to side_b (and back, unless one_way); 0 restores the link."""
        if delay_ms < 0:
            raise ValueError(f"delay_ms must be >= 0, got {delay_ms}")
        for a in side_a:
            for b in side_b:
                for link in ((a, b),) if one_way else ((a, b), (b, a)):
                    if delay_ms:
                        self._extra_delay_ns[link] = int(delay_ms * 1e6)
                    else:
                        self._extra_delay_ns.pop(link, None)
        self.record("slow", sorted(side_a), sorted(side_b), delay_ms, one_way)

    def refuse(self, host: str, refused: bool = True) -> None:
        """Refuse (or accept again) every new connection to `host`."""
        (self._refused.add if refused else self._refused.discard)(host)
        self.record("refuse", host, refused)

    def disconnect(self, host: str) -> int:
        """Reset every connection of `host` at both ends; return how many."""
        victims = [(a, b) for a, b in self._connections if host in (a.local[0], b.local[0])]
        for left, right in victims:
            self._reset_both(left, right)
        self.record("disconnect", host, len(victims))
        return len(victims)

    def crash(self, host: str) -> None:
        """The process on `host` died: listeners gone, connections reset, its view revoked."""
        view = self._hosts.get(host)
        if view is not None:
            view.revoked = True
        for address in [a for a in self._servers if a[0] == host]:
            self._servers.pop(address).close()
        for left, right in list(self._connections):
            for mine, theirs in ((left, right), (right, left)):
                if mine.local[0] == host:
                    mine.dead = True
                    mine.lost = True
                    mine.closing = True
                    self._reset(mine.outgoing, mine.incoming)
        self.record("crash", host)

    # ---- internals -----------------------------------------------------------------

    def _now_ns(self) -> int:
        return round(self.loop.time() * 1e9)

    def _is_cut(self, a: str, b: str) -> bool:
        return (a, b) in self._cut or (b, a) in self._cut

    def _delay_ns(self, src: str, dst: str) -> int:
        base = self._link_delay_ns.get((src, dst))
        if base is None:
            base = self._link_delay_ns[(src, dst)] = int(self.rng.uniform(self.delay_ms_min, self.delay_ms_max) * 1e6)
        return base + int(self.rng.uniform(0, self.jitter_ms_max) * 1e6) + self._extra_delay_ns.get((src, dst), 0)

    def _wake_connects(self) -> None:
        self._topology_changed.set()
        self._topology_changed = asyncio.Event()

    def _listen(self, view: HostNetwork, handler, host: str, port: int) -> SimServer:
        if host in ("0.0.0.0", "", "::"):
            host = view.host
        assert host == view.host, f"host {view.host} cannot listen on another host's address {host}"
        port = port or self._port(host)
        if (host, port) in self._servers:
            raise OSError(98, f"address {host}:{port} already in use")
        server = self._servers[(host, port)] = SimServer(self, view, (host, port), handler, contextvars.copy_context())
        self.record("listen", host, port)
        return server

    async def _connect(self, view: HostNetwork, host: str, port: int):
        src = view.host
        while self._is_cut(src, host):
            if self._cut.get((src, host)) or self._cut.get((host, src)):
                await asyncio.sleep(self._delay_ns(src, host) / 1e9)
                raise ConnectionRefusedError(f"connection from {src} to {host}:{port} reset (partition)")
            await self._topology_changed.wait()
        # SYN there, SYN-ACK back
        await asyncio.sleep((self._delay_ns(src, host) + self._delay_ns(host, src)) / 1e9)
        view._check()
        server = self._servers.get((host, port))
        if server is None or host in self._refused or self._is_cut(src, host):
            self.record("refused", src, host, port)
            raise ConnectionRefusedError(f"connection from {src} to {host}:{port} refused")
        client_end = SimTransport(self, (src, self._port(src)), (host, port), contextvars.copy_context())
        server_end = SimTransport(self, (host, port), client_end.local, server.context)
        client_end.outgoing = server_end.incoming = _Direction(client_end, server_end)
        server_end.outgoing = client_end.incoming = _Direction(server_end, client_end)
        self._connections.append((client_end, server_end))
        self.record("connect", client_end.local, server_end.local)

        loop = self.loop
        server_reader = asyncio.StreamReader(limit=server.host_network.stream_limit_bytes, loop=loop)
        server_protocol = asyncio.StreamReaderProtocol(server_reader, server.handler, loop=loop)
        server_end.protocol = server_protocol
        server.context.run(server_protocol.connection_made, server_end)

        reader = asyncio.StreamReader(limit=view.stream_limit_bytes, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        client_end.protocol = protocol
        protocol.connection_made(client_end)
        return reader, asyncio.StreamWriter(client_end, protocol, reader, loop)

    def _send(self, direction: _Direction, kind: str, payload: bytes) -> None:
        src, dst = direction.sender.local[0], direction.receiver.local[0]
        due_ns = self._now_ns() + self._delay_ns(src, dst)
        if direction.queue:
            due_ns = max(due_ns, direction.queue[-1][0])  # never overtake an earlier write
        direction.queue.append((due_ns, kind, payload))
        self._schedule(direction)

    def _schedule(self, direction: _Direction) -> None:
        if not direction.queue:
            return
        src, dst = direction.sender.local[0], direction.receiver.local[0]
        if (src, dst) in self._cut:
            return  # held until heal()
        due_ns = direction.queue[0][0]
        if direction.timer is not None and direction.timer_due_ns <= due_ns:
            return
        if direction.timer is not None:
            direction.timer.cancel()
        direction.timer_due_ns = due_ns
        direction.timer = self.loop.call_at(due_ns / 1e9, self._pump, direction, context=direction.receiver.context)

    def _pump(self, direction: _Direction) -> None:
        direction.timer = None
        src, dst = direction.sender.local[0], direction.receiver.local[0]
        now_ns = self._now_ns()
        receiver = direction.receiver
        while direction.queue and direction.queue[0][0] <= now_ns and (src, dst) not in self._cut:
            _, kind, payload = direction.queue.popleft()
            if kind == "data":
                self.record("data", direction.sender.local, receiver.local, payload)
                receiver._deliver_data(payload)
            else:
                self.record("fin", direction.sender.local, receiver.local)
                receiver._deliver_eof()
        if not direction.queue and direction.sender.lost and receiver.lost:
            self._forget(direction.sender)
        self._schedule(direction)

    def _reset(self, outgoing: _Direction, incoming: _Direction) -> None:
        """An RST from outgoing.sender: in-flight bytes both ways dropped, the peer fails after the link delay."""
        for direction in (outgoing, incoming):
            direction.queue.clear()
            if direction.timer is not None:
                direction.timer.cancel()
                direction.timer = None
        peer = outgoing.receiver
        if not peer.lost:
            delay_s = self._delay_ns(outgoing.sender.local[0], peer.local[0]) / 1e9
            self.loop.call_later(delay_s, self._peer_reset, outgoing.sender, peer, context=peer.context)

    def _peer_reset(self, sender: SimTransport, peer: SimTransport) -> None:
        self.record("rst", sender.local, peer.local)
        peer.closing = True
        peer._connection_lost(ConnectionResetError(f"connection reset by {sender.local[0]}:{sender.local[1]}"))
        self._forget(peer)

    def _reset_both(self, left: SimTransport, right: SimTransport) -> None:
        for end, other in ((left, right), (right, left)):
            end.outgoing.queue.clear()
            if end.outgoing.timer is not None:
                end.outgoing.timer.cancel()
                end.outgoing.timer = None
            if not end.lost:
                end.closing = True
                self.loop.call_soon(end._connection_lost,
                                    ConnectionResetError(f"connection to {other.local[0]}:{other.local[1]} reset"),
                                    context=end.context)
        self.record("reset", left.local, right.local)
        self._forget(left)

    def _forget(self, end: SimTransport) -> None:
        self._connections = [pair for pair in self._connections if end not in pair]
