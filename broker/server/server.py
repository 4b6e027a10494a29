"""Connections: framing, dispatch, responses, shutdown.

Each connection is served by one task that reads a size-prefixed request,
handles it, writes its response, and only then reads the next request, so
responses leave in request order (Kafka's per-connection ordering guarantee)
and a slow long-poll Fetch holds back only its own connection.

Robustness (the fault model is "any bytes from any peer, at any time"):
- a size prefix that is negative, too small for a header, or larger than
  socket.request.max.bytes closes the connection before the body is read;
- an unknown API key, an unsupported version (except ApiVersions, which gets
  the KIP-511 v0 answer with UNSUPPORTED_VERSION and the supported list), or a
  body kio cannot decode, logs one line and closes the connection;
- an exception inside a handler is logged with its traceback and closes that
  connection only; the broker stays up;
- a peer that vanishes mid-request just ends its task.

Listeners: one server socket per configured listener (Kafka's `listeners`);
every connection's task sets `CONNECTION_LISTENER` (broker.server.listeners)
to the name of the listener it arrived on, so a handler can answer with the
addresses of that listener (Metadata does, in broker.server.cluster) without a
parameter of its own. On a client listener a broker-internal request (Raft and
controller RPCs, WriteTxnMarkers, a Fetch from a replica) closes the
connection, as Kafka does for an API not enabled on a listener.

SASL (broker.server.sasl): on a SASL_* listener only ApiVersions, SaslHandshake
and SaslAuthenticate are served before authentication; with
connections.max.reauth.ms > 0 (KIP-368) a connection whose session expired is
closed at its next request unless that request re-authenticates (SaslHandshake,
then SaslAuthenticate), as Kafka's SocketServer does.

Resource limits (Kafka's names, issue 17): a connection that sends no request for
connections.max.idle.ms is closed; a request must arrive whole within
logquake.request.read.timeout.ms of its first byte; a new connection beyond
max.connections (client listeners; inter-broker connections pass, as in Kafka)
or max.connections.per.ip is closed at once, with one log line a second at
most; request bodies on the client listeners (every listener of a node with
one) wait for room under queued.max.request.bytes before they are read
(`RequestBytesBudget`).

Shutdown (`stop`): stop accepting, wake long-polling fetches, wait for
requests in flight to be answered, close the remaining connections, then
close storage cleanly.

Thread-safety: everything runs on one asyncio event loop.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import struct

from kio.schema.errors import ErrorCode

from broker.io import Runtime
from broker.protocol import apis
from broker.protocol.wire import (
    MIN_REQUEST_BYTES,
    MalformedRequestError,
    frame,
    parse_request_header,
    peek_header,
    response_header,
)
from broker.server.config import BrokerConfig
from broker.server.fetch import fetch_replica_id
from broker.server.handlers import CloseConnection, RequestHandlers
from broker.server.authorization import CONNECTION_PEER, connection_peer
from broker.server.router import Router
from broker.server.sasl import (
    CONNECTION_SASL,
    PRE_AUTH_APIS,
    SASL_AUTHENTICATE,
    SASL_HANDSHAKE,
    AuthenticationFailed,
    SaslSession,
    load_credentials,
)
from broker.server.listeners import CONNECTION_LISTENER, advertised_versions, on_client_listener, tls_context

log = logging.getLogger("broker.server")

_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")
_API_VERSIONS_V0_ENTRY = struct.Struct(">hhh")
MAINTENANCE_INTERVAL_S = 0.25
SHUTDOWN_GRACE_S = 5.0  # well inside a supervisor's stop timeout (the harness's is 15 s, Docker's default 10 s)
TLS_HANDSHAKE_TIMEOUT_S = 10.0  # an SSL connection that does not finish its handshake in this time is dropped

def api_versions_fallback(correlation_id: int, versions: dict[int, tuple[int, int]] = apis.SUPPORTED_VERSIONS) -> list:
    """KIP-511: a v0-format ApiVersions response with UNSUPPORTED_VERSION and our version list (`versions`)."""
    body = bytearray(_INT32.pack(correlation_id))
    body += struct.pack(">h", ErrorCode.unsupported_version.value)
    body += _INT32.pack(len(versions))
    for key, (low, high) in sorted(versions.items()):
        body += _API_VERSIONS_V0_ENTRY.pack(key, low, high)
    return frame([body])


LARGE_CHUNK_BYTES = 16 * 1024


def _write_chunks(writer: asyncio.StreamWriter, chunks: list) -> None:
    """Write small chunks coalesced and large ones (record data) as they are.

    `writelines` would join everything into one new bytes object first, copying
    every fetched record once more; a large buffer written alone goes to the
    socket directly and is copied only if the socket cannot take it all.
    """
    pending = bytearray()
    for chunk in chunks:
        if len(chunk) >= LARGE_CHUNK_BYTES:
            if pending:
                writer.write(pending)
                pending = bytearray()
            writer.write(chunk)
        else:
            pending += chunk
    if pending:
        writer.write(pending)


class RequestBytesBudget:
    """queued.max.request.bytes: the bytes of requests read and not yet answered, over all connections.

    A connection takes its request's size from the budget before reading the body and gives it back once the
    response is written; when the budget is spent, connections wait before reading more (Kafka's
    MemoryPool), so N connections each sending a maximal request hold at most this much, not N times
    socket.request.max.bytes. -1: no limit.
    """

    def __init__(self, limit_bytes: int):
        self.limit_bytes = limit_bytes
        self.used_bytes = 0
        self._freed = asyncio.Event()

    async def acquire(self, size: int) -> None:
        if self.limit_bytes < 0:
            return
        while self.used_bytes + size > self.limit_bytes:
            self._freed.clear()
            await self._freed.wait()
        self.used_bytes += size

    def release(self, size: int) -> None:
        if self.limit_bytes < 0:
            return
        self.used_bytes -= size
        self._freed.set()


UNLIMITED_BUDGET = RequestBytesBudget(-1)


class BrokerServer:
    def __init__(self, config: BrokerConfig, runtime: Runtime, handlers: RequestHandlers, router: Router):
        self.config = config
        self.runtime = runtime
        self.handlers = handlers
        self.router = router  # sealed: every API's handler (broker.server.router)
        self.server: asyncio.AbstractServer | None = None  # the first listener's
        self.servers: list[asyncio.AbstractServer] = []
        self.port: int | None = None  # the first listener's bound port
        # requests being handled: token -> (api key, monotonic ns at arrival), named at shutdown if they linger
        self.in_flight: dict[object, tuple[int, int]] = {}
        self.connections: set[asyncio.StreamWriter] = set()
        self._maintenance: asyncio.Task | None = None
        self._stopping = False
        self._next_connection_id = 0
        # connection limits (max.connections counts the client listeners' connections only)
        self._limited_connections = 0
        self._connections_per_ip: dict[str, int] = {}
        self._last_refusal_log_ns = -(10**18)
        self.request_bytes = RequestBytesBudget(config.queued_max_request_bytes)
        # Internal APIs (api key >= 30000: Raft, controller RPCs) in cluster mode:
        # api_key -> handler(body) returning the response body (or a coroutine of it).
        self.internal_handlers: dict = {}
        self.sasl_credentials = None  # loaded at start when a listener is SASL_*

    async def start(self) -> None:
        protocols = {l.name: self.config.security_protocol(l.name) for l in self.config.listeners}
        if any(p.startswith("SASL_") for p in protocols.values()):
            self.sasl_credentials = load_credentials(self.config, self.runtime)
            source = self.router.credential_source
            if source is not None:  # the users file bootstraps the metadata log's credentials (broker.server.scram_admin)
                source.file = self.sasl_credentials
                self.sasl_credentials = source
        for listener in self.config.listeners:
            protocol = protocols[listener.name]
            tls = tls_context(self.config) if protocol in ("SSL", "SASL_SSL") else None
            server = await self.runtime.network.start_server(
                self._connection_handler(listener.name, tls, protocol.startswith("SASL_")),
                listener.host or "0.0.0.0", listener.port)
            self.servers.append(server)
            if not server.sockets:
                # asyncio skips an address it cannot make a socket for (no descriptor left, say) and logs a warning
                raise OSError(f"listener {listener} opened no socket; see the warning above (file descriptors: "
                              "ulimit -n)")
        self.server = self.servers[0]
        self.port = self.server.sockets[0].getsockname()[1]
        self._maintenance = asyncio.ensure_future(self._maintain_forever())

    async def _maintain_forever(self) -> None:
        failures = 0
        while not self._stopping:
            await self.runtime.clock.sleep(MAINTENANCE_INTERVAL_S)
            try:
                self.handlers.storage.maintain()
            except OSError as exc:  # a full or failing disk: a roll or a deletion waits; one line, then one a minute
                if failures % int(60 / MAINTENANCE_INTERVAL_S) == 0:
                    log.warning("log maintenance failed (%s); retried every %.2f s (failure %d)", exc,
                                MAINTENANCE_INTERVAL_S, failures + 1)
                failures += 1
            except Exception:
                log.exception("log maintenance failed; it will be retried")
            else:
                if failures:
                    log.info("log maintenance works again after %d failures", failures)
                failures = 0

    def _connection_handler(self, listener_name: str, tls, sasl: bool):
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            CONNECTION_LISTENER.set(listener_name)  # this task's own context: other connections are unaffected
            if tls is not None and not await self._start_tls(writer, listener_name, tls):
                return
            CONNECTION_PEER.set(connection_peer(writer))
            if sasl:
                CONNECTION_SASL.set(SaslSession(self.sasl_credentials, self.config.value("sasl.enabled.mechanisms"),
                                                self.runtime.random, writer.get_extra_info("peername"), self.runtime.clock,
                                                self.config.value("connections.max.reauth.ms")))
            await self._serve_connection(reader, writer)

        return handle

    async def stop(self) -> None:
        self._stopping = True
        for server in self.servers:
            server.close()
        self.handlers.close()
        clock = self.runtime.clock
        deadline_ns = clock.monotonic_ns() + int(SHUTDOWN_GRACE_S * 1e9)
        while self.in_flight and clock.monotonic_ns() < deadline_ns:
            await clock.sleep(0.01)
        if self.in_flight:
            count = len(self.in_flight)
            log.warning("%d request%s still in flight after %.0f s; closing anyway: %s", count, "" if count == 1 else "s",
                        SHUTDOWN_GRACE_S, self.describe_in_flight())
        for writer in list(self.connections):
            writer.close()
        if self._maintenance is not None:
            self._maintenance.cancel()
        await self.runtime.clock.sleep(0)  # let connection tasks observe their closed transports

    def describe_in_flight(self) -> str:
        """The requests being handled, oldest first: API name and age."""
        now_ns = self.runtime.clock.monotonic_ns()
        parts = []
        for api_key, since_ns in sorted(self.in_flight.values(), key=lambda item: item[1]):
            name = apis.API_NAMES.get(api_key) or f"internal api key {api_key}"
            parts.append(f"{name} ({(now_ns - since_ns) / 1e9:.1f} s)")
        return ", ".join(parts) or "none"

    def _refusal(self, listener: str | None, address: str) -> str | None:
        """Why a new connection must be closed at once (max.connections, max.connections.per.ip), or None."""
        if self._connections_per_ip.get(address, 0) >= self.config.max_connections_per_ip:
            return f"{address} already has {self.config.max_connections_per_ip} connections (max.connections.per.ip)"
        if self._limited(listener) and self._limited_connections >= self.config.max_connections:
            return f"{self.config.max_connections} connections are open on the client listeners (max.connections)"
        return None

    def _limited(self, listener: str | None) -> bool:
        # Kafka lets inter-broker connections past max.connections; a node with one listener has only that one
        return listener is None or len(self.config.listeners) == 1 or self.config.is_client_listener(listener)

    async def _start_tls(self, writer: asyncio.StreamWriter, listener_name: str, tls) -> bool:
        """The TLS handshake of an SSL listener's connection; False (logged, closed) if it fails.

        The handshake runs here rather than in the listening socket so that a failed one is logged
        with its peer and reason (asyncio reports those only in debug mode); the reason is the TLS
        library's, which never holds key material."""
        peer = writer.get_extra_info("peername")
        try:
            await writer.start_tls(tls, ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT_S)
            return True
        except (ssl.SSLError, ConnectionError, asyncio.TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", None) or type(exc).__name__
            now_ns = self.runtime.clock.monotonic_ns()
            if now_ns - self._last_refusal_log_ns >= 1_000_000_000:  # a flood of them logs one line a second
                self._last_refusal_log_ns = now_ns
                log.info("TLS handshake with %s on listener %s failed: %s", peer, listener_name, reason)
            writer.close()
            return False

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._next_connection_id += 1
        peer = writer.get_extra_info("peername")
        name = f"connection {self._next_connection_id} from {peer}"
        address = peer[0] if isinstance(peer, tuple) and peer else str(peer)
        listener = CONNECTION_LISTENER.get()
        refusal = self._refusal(listener, address)
        if refusal is not None:
            now_ns = self.runtime.clock.monotonic_ns()
            if now_ns - self._last_refusal_log_ns >= 1_000_000_000:  # a flood of them logs one line a second
                self._last_refusal_log_ns = now_ns
                log.warning("%s refused: %s", name, refusal)
            writer.close()
            return
        limited = self._limited(listener)
        self._limited_connections += limited
        self._connections_per_ip[address] = self._connections_per_ip.get(address, 0) + 1
        self.connections.add(writer)
        try:
            # inter-broker connections do not wait for the budget: a follower's fetch must reach a leader whose
            # budget is held by produce requests that wait for that very fetch (acks=all)
            await self._serve_requests(reader, writer, name, self.request_bytes if limited else UNLIMITED_BUDGET)
        except (ConnectionError, asyncio.IncompleteReadError):
            log.debug("%s went away", name)
        except CloseConnection as exc:
            log.warning("%s closed: %s", name, exc)
        except Exception:
            log.exception("%s closed after an unexpected error", name)
        finally:
            self.connections.discard(writer)
            self._limited_connections -= limited
            left = self._connections_per_ip[address] - 1
            if left:
                self._connections_per_ip[address] = left
            else:
                del self._connections_per_ip[address]
            writer.close()

    async def _serve_requests(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, name: str,
                              budget: "RequestBytesBudget") -> None:
        max_bytes = self.config.socket_request_max_bytes
        idle_s = self.config.connections_max_idle_ms / 1000
        while not self._stopping:
            try:
                async with asyncio.timeout(idle_s):
                    first = await reader.readexactly(1)
            except TimeoutError:
                raise CloseConnection(f"no request for {self.config.connections_max_idle_ms} ms "
                                      "(connections.max.idle.ms)") from None
            except asyncio.IncompleteReadError:
                return
            try:
                prefix = first + await self._read(reader, 3, "its size prefix")
            except asyncio.IncompleteReadError as exc:
                raise CloseConnection(f"truncated size prefix ({1 + len(exc.partial)} of 4 bytes)") from None
            (size,) = _INT32.unpack(prefix)
            session = CONNECTION_SASL.get()
            minimum = 0 if session is not None and session.raw_tokens else MIN_REQUEST_BYTES  # a bare SASL token
            if size < minimum or size > max_bytes:
                raise CloseConnection(
                    f"request size {size} is outside the accepted range {MIN_REQUEST_BYTES}..{max_bytes} "
                    "(socket.request.max.bytes); the body was not read"
                )
            await budget.acquire(size)
            try:
                await self._serve_request(writer, await self._read(reader, size, f"its {size} bytes"))
            finally:
                budget.release(size)

    async def _read(self, reader: asyncio.StreamReader, size: int, what: str) -> bytes:
        """`size` bytes of a request, within logquake.request.read.timeout.ms: a peer that trickles a request
        (a byte a second) holds a connection and its buffer no longer than that."""
        try:
            async with asyncio.timeout(self.config.request_read_timeout_ms / 1000):
                return await reader.readexactly(size)
        except TimeoutError:
            raise CloseConnection(f"a request did not deliver {what} within {self.config.request_read_timeout_ms} ms "
                                  "(logquake.request.read.timeout.ms)") from None

    async def _serve_request(self, writer: asyncio.StreamWriter, request_bytes: bytes) -> None:
        session = CONNECTION_SASL.get()
        if session is not None and session.raw_tokens:
            try:
                answer = session.step(bytes(request_bytes))
            except AuthenticationFailed as exc:
                raise CloseConnection(f"SASL authentication of {session.peer} failed: {exc}") from None
            session.raw_tokens = session.in_exchange
            if not session.in_exchange:
                log.info("%s authenticated with %s as %s", session.peer, session.mechanism, session.principal)
            _write_chunks(writer, [_INT32.pack(len(answer)), answer])
            await writer.drain()
            return
        token = object()
        self.in_flight[token] = (_INT16.unpack_from(request_bytes)[0], self.runtime.clock.monotonic_ns())
        try:
            response = await self.dispatch(request_bytes)
            if response is not None:
                _write_chunks(writer, response)
                await writer.drain()
            session = CONNECTION_SASL.get()
            if session is not None and session.close_after_response:
                raise CloseConnection(f"SASL authentication of {session.peer} did not succeed")
        finally:
            del self.in_flight[token]

    async def _dispatch_internal(self, handler, request_bytes: bytes, api_key: int, correlation_id: int) -> list:
        """An internal request: header v1, the handler's own body codec, response header v0."""
        try:
            header = parse_request_header(request_bytes, False)
            body = handler(memoryview(request_bytes)[header.size :])
            if asyncio.iscoroutine(body):
                body = await body
        except (MalformedRequestError, ValueError) as exc:
            # ValueError: the internal codecs' decode errors (Raft messages, metadata RPC JSON)
            raise CloseConnection(f"malformed internal request (api key {api_key}): {exc}") from None
        return frame([response_header(correlation_id, False), body])

    async def dispatch(self, request_bytes: bytes) -> list | None:
        """Handle one request; return the framed response as buffers, or None when none is due."""
        try:
            api_key, api_version, correlation_id = peek_header(request_bytes)
        except MalformedRequestError as exc:
            raise CloseConnection(str(exc)) from None
        client_listener = on_client_listener(self.config)
        if client_listener and (api_key in self.internal_handlers or api_key in apis.BROKER_ONLY_APIS):
            # Kafka closes the connection for an API not enabled on the listener (InvalidRequestException)
            name = apis.API_NAMES.get(api_key) or f"internal api key {api_key}"
            raise CloseConnection(f"{name} v{api_version} is a broker-internal API, not served on client listener "
                                  f"{CONNECTION_LISTENER.get()} (only on {self.config.inter_broker_listener_name})")
        session = CONNECTION_SASL.get()
        if session is not None and not session.authenticated and api_key not in PRE_AUTH_APIS:
            name = apis.API_NAMES.get(api_key) or f"api key {api_key}"
            raise CloseConnection(f"{name} v{api_version} before SASL authentication on listener {CONNECTION_LISTENER.get()}; "
                                  "only ApiVersions, SaslHandshake and SaslAuthenticate are served until then")
        if session is not None and session.expired(self.runtime.clock.monotonic_ns()) and not (
                api_key == SASL_HANDSHAKE or (api_key == SASL_AUTHENTICATE and session.in_exchange)):
            # KIP-368: Kafka closes a connection whose session expired at its next request that does not re-authenticate
            name = apis.API_NAMES.get(api_key) or f"api key {api_key}"
            raise CloseConnection(f"{name} v{api_version} after the SASL session of {session.principal} expired "
                                  f"(connections.max.reauth.ms={session.reauth_ms}); the client did not re-authenticate")
        internal = self.internal_handlers.get(api_key)
        if internal is not None:
            return await self._dispatch_internal(internal, request_bytes, api_key, correlation_id)
        if not apis.is_supported(api_key, api_version):
            if api_key == apis.API_VERSIONS and api_version > apis.SUPPORTED_VERSIONS[apis.API_VERSIONS][1]:
                log.info("ApiVersions v%d is newer than ours; answering with the KIP-511 v0 fallback", api_version)
                return api_versions_fallback(correlation_id, advertised_versions(self.config))
            if api_key in apis.SUPPORTED_VERSIONS:
                low, high = apis.SUPPORTED_VERSIONS[api_key]
                raise CloseConnection(
                    f"{apis.API_NAMES[api_key]} v{api_version} is not supported; this broker serves v{low}..v{high}"
                )
            raise CloseConnection(f"unknown or unsupported API key {api_key} (version {api_version})")
        flexible = apis.is_flexible(api_key, api_version)
        try:
            header = parse_request_header(request_bytes, flexible)
            request = apis.decode_request(api_key, api_version, request_bytes, header.size)
        except MalformedRequestError as exc:
            raise CloseConnection(
                f"malformed {apis.API_NAMES[api_key]} v{api_version} request: {exc} "
                f"(first bytes: {bytes(request_bytes[:64]).hex()})"
            ) from None
        if client_listener and api_key == apis.FETCH and fetch_replica_id(request, api_version) >= 0:
            raise CloseConnection(f"a Fetch from replica {fetch_replica_id(request, api_version)} is broker-internal, not served on "
                                  f"client listener {CONNECTION_LISTENER.get()}")
        if self.config.debug_log_requests:
            log.debug("request %s v%d correlation %d from %r", apis.API_NAMES[api_key], api_version, correlation_id, header.client_id)
        body = self.router.handler(api_key)(header, request)
        if asyncio.iscoroutine(body):
            body = await body
        if body is None:
            return None
        chunks = body if isinstance(body, list) else [apis.encode_entity(body)]
        return frame([response_header(correlation_id, apis.response_header_flexible(api_key, api_version)), *chunks])
