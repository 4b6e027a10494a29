"""The broker's outgoing Kafka-protocol client: pipelined requests over pooled connections.

`KafkaClientConnection` is one TCP connection, opened through the runtime's
`Network` (so a simulated network can carry it, and so it can bind the node's
own `logquake.outbound.address`). Requests are framed as Kafka requests (size
prefix, request header v1 or v2) with increasing correlation ids and may be
pipelined: a reader task matches each response to its request by correlation
id (Kafka answers in request order on a connection; a response out of order or
with an unknown id is a protocol violation and drops the connection).

`ConnectionPool` keeps one connection per (host, port), opened lazily and
re-opened on the next request after it was lost. A request that times out
leaves the connection open (its late response is discarded); a lost
connection fails every request waiting on it with `ConnectionLost`.

Authentication: a pool given `authenticate` (an async callable, e.g.
broker.server.sasl_client's SASL exchange) runs it on every connection it
opens, before the connection is handed out; it returns the session lifetime
in ms (KIP-368; 0: none). A connection with a lifetime is handed out until
85% of it has passed (`REAUTH_FRACTION`, the low end of Kafka clients' 85-95%
window); then the pool opens a new one and the old one is closed as soon as
its last pending request is answered, so no request is sent on a session the
server is about to expire. After an `AuthenticationError` the pool does not
dial that destination again for a second (`AUTH_FAILURE_BACKOFF_NS`, Kafka's
reconnect.backoff.max.ms): requests fail at once with the same error, so a
node with wrong credentials does not flood its peers' logs. TLS is below this
module, in the runtime's network (broker.io.tls.TlsClientNetwork).

Internal APIs (Raft messages, broker registration and heartbeats, forwarded
requests) use the same framing with api keys >= 30000 and non-flexible headers
(request header v1, response header v0); their bodies are the callers' own
codecs. For Kafka APIs the header version follows kio's flexible-version table
(`broker.protocol.apis.is_flexible`), except ApiVersions responses, whose header
is always v0 (KIP-511).

Sources: the Kafka protocol guide ("Common Request and Response Structure"),
KIP-482 (flexible versions), KIP-511.

Thread-safety: none; one event loop owns a pool and its connections.
"""

from __future__ import annotations

import asyncio
import logging
import struct

from broker.protocol import apis
from broker.protocol.wire import RequestHeader, encode_request_header, skip_tagged_fields

log = logging.getLogger("broker.client")

INTERNAL_API_KEY_MIN = 30000
_INT32 = struct.Struct(">i")
MAX_RESPONSE_BYTES = 256 * 1024 * 1024
CONNECT_TIMEOUT_S = 5.0
REAUTH_FRACTION = 0.85
AUTH_FAILURE_BACKOFF_NS = 1_000_000_000


class ClientError(Exception):
    """A request that got no response."""


class ConnectionLost(ClientError):
    """The connection failed or closed before the response arrived (the request may have been handled)."""


class AuthenticationError(ConnectionLost):
    """The peer refused this node's credentials while the connection was being opened."""


class RequestTimeout(ClientError):
    """No response within the request's timeout (the request may still be handled)."""


def request_is_flexible(api_key: int, api_version: int) -> bool:
    if api_key >= INTERNAL_API_KEY_MIN:
        return False
    return apis.is_flexible(api_key, api_version)


class KafkaClientConnection:
    """One client connection; build it with `await KafkaClientConnection.open(...)`."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, client_id: str, name: str):
        self._reader = reader
        self._writer = writer
        self._client_id = client_id
        self.name = name
        self._next_correlation_id = 0
        # correlation id -> (future, response header is flexible), in send order
        self._pending: dict[int, tuple[asyncio.Future, bool]] = {}
        self._closed: BaseException | None = None
        self._reader_task = asyncio.ensure_future(self._read_responses())
        self.expires_ns: int | None = None  # monotonic time after which the pool no longer hands it out
        self._retired = False

    @classmethod
    async def open(cls, runtime, host: str, port: int, client_id: str, local_host: str | None = None,
                   timeout_s: float = CONNECT_TIMEOUT_S, authenticate=None) -> "KafkaClientConnection":
        try:
            reader, writer = await asyncio.wait_for(runtime.network.open_connection(host, port, local_host=local_host), timeout_s)
        except asyncio.TimeoutError:
            raise ConnectionLost(f"connecting to {host}:{port} timed out after {timeout_s} s") from None
        except OSError as exc:  # ssl.SSLError too: a TLS handshake that failed (broker.io.tls.TlsClientNetwork)
            raise ConnectionLost(f"cannot connect to {host}:{port}: {exc}") from None
        connection = cls(reader, writer, client_id, f"{host}:{port}")
        if authenticate is not None:
            started_ns = runtime.clock.monotonic_ns()
            try:
                lifetime_ms = await authenticate(connection, timeout_s)
            except BaseException:
                await connection.close()
                raise
            if lifetime_ms > 0:
                connection.expires_ns = started_ns + int(lifetime_ms * REAUTH_FRACTION * 1_000_000)
        return connection

    @property
    def closed(self) -> bool:
        return self._closed is not None

    def usable(self, now_ns: int) -> bool:
        """Open, and its session (if it has one) not yet near its end."""
        return self._closed is None and not self._retired and (self.expires_ns is None or now_ns < self.expires_ns)

    def retire(self) -> None:
        """No new requests: close now if none is pending, else once the last one is answered."""
        self._retired = True
        if not self._pending:
            self._fail(ConnectionLost(f"connection to {self.name} retired: its SASL session is about to expire"))

    async def request(self, api_key: int, api_version: int, body: bytes, timeout_s: float,
                      flexible: bool | None = None) -> bytes:
        """Send one request; return the response body (after the response header)."""
        if self._closed is not None:
            raise ConnectionLost(f"connection to {self.name} is closed: {self._closed}")
        if flexible is None:
            flexible = request_is_flexible(api_key, api_version)
        correlation_id = self._next_correlation_id
        self._next_correlation_id = (self._next_correlation_id + 1) & 0x7FFFFFFF
        header = encode_request_header(RequestHeader(api_key, api_version, correlation_id, self._client_id, 0), flexible)
        future = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = (future, flexible and api_key != apis.API_VERSIONS)
        self._writer.write(_INT32.pack(len(header) + len(body)) + header + bytes(body))
        try:
            await asyncio.wait_for(self._drain(), timeout_s)
            return await asyncio.wait_for(asyncio.shield(future), timeout_s)
        except asyncio.TimeoutError:
            raise RequestTimeout(f"request api_key {api_key} v{api_version} to {self.name} timed out after {timeout_s} s") from None
        finally:
            self._pending.pop(correlation_id, None)
            if self._retired and not self._pending:
                self._fail(ConnectionLost(f"connection to {self.name} retired: its SASL session is about to expire"))

    async def _drain(self) -> None:
        try:
            await self._writer.drain()
        except (ConnectionError, OSError) as exc:
            self._fail(ConnectionLost(f"connection to {self.name} failed while sending: {exc}"))
            raise ConnectionLost(f"connection to {self.name} failed while sending: {exc}") from None

    async def _read_responses(self) -> None:
        try:
            while True:
                prefix = await self._reader.readexactly(4)
                (size,) = _INT32.unpack(prefix)
                if not 4 <= size <= MAX_RESPONSE_BYTES:
                    raise ConnectionLost(f"response size {size} from {self.name} is outside 4..{MAX_RESPONSE_BYTES}")
                data = await self._reader.readexactly(size)
                (correlation_id,) = _INT32.unpack_from(data, 0)
                entry = self._pending.get(correlation_id)
                if entry is None:
                    # a response to a request that timed out: its waiter is gone
                    continue
                future, flexible = entry
                position = 4
                if flexible:
                    position = skip_tagged_fields(data, position)
                if not future.done():
                    future.set_result(data[position:])
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as exc:
            self._fail(ConnectionLost(f"connection to {self.name} lost: {type(exc).__name__}: {exc}"))
        except ConnectionLost as exc:
            self._fail(exc)
        except asyncio.CancelledError:
            self._fail(ConnectionLost(f"connection to {self.name} closed"))
            raise
        except Exception as exc:  # a malformed response: drop the connection rather than guess
            log.warning("bad response from %s: %s: %s", self.name, type(exc).__name__, exc)
            self._fail(ConnectionLost(f"bad response from {self.name}: {exc}"))

    def _fail(self, error: ConnectionLost) -> None:
        if self._closed is None:
            self._closed = error
        for future, _ in list(self._pending.values()):
            if not future.done():
                future.set_exception(error)
                future.exception()  # mark retrieved: the waiter may already have timed out
        self._pending.clear()
        self._writer.close()

    async def close(self) -> None:
        self._fail(ConnectionLost(f"connection to {self.name} closed"))
        self._reader_task.cancel()
        try:
            await self._reader_task
        except asyncio.CancelledError:
            pass


class ConnectionPool:
    """One lazily (re)opened connection per destination (host, port)."""

    def __init__(self, runtime, client_id: str, local_host: str | None, authenticate=None):
        self.runtime = runtime
        self.client_id = client_id
        self.local_host = local_host
        self.authenticate = authenticate  # run on each new connection (see the module docstring)
        self._refused: dict[tuple[str, int], tuple[int, AuthenticationError]] = {}  # key -> (until ns, error)
        self._connections: dict[tuple[str, int], KafkaClientConnection] = {}
        self._connecting: dict[tuple[str, int], asyncio.Future] = {}
        self._closed = False

    async def connection(self, host: str, port: int, timeout_s: float = CONNECT_TIMEOUT_S) -> KafkaClientConnection:
        if self._closed:
            raise ConnectionLost("the connection pool is closed")
        key = (host, port)
        existing = self._connections.get(key)
        if existing is not None and existing.usable(self.runtime.clock.monotonic_ns()):
            return existing
        if existing is not None and not existing.closed:
            existing.retire()  # its session nears its end: a new connection authenticates afresh
        pending = self._connecting.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        refused = self._refused.get(key)
        if refused is not None and self.runtime.clock.monotonic_ns() < refused[0]:
            raise refused[1]
        future = asyncio.get_running_loop().create_future()
        self._connecting[key] = future
        try:
            connection = await KafkaClientConnection.open(self.runtime, host, port, self.client_id, self.local_host,
                                                          timeout_s, self.authenticate)
        except BaseException as exc:
            if isinstance(exc, AuthenticationError):
                self._refused[key] = (self.runtime.clock.monotonic_ns() + AUTH_FAILURE_BACKOFF_NS, exc)
            future.set_exception(exc if isinstance(exc, Exception) else ConnectionLost(str(exc)))
            future.exception()
            raise
        finally:
            self._connecting.pop(key, None)
        if self._closed:
            await connection.close()
            raise ConnectionLost("the connection pool is closed")
        self._connections[key] = connection
        future.set_result(connection)
        return connection

    async def request(self, host: str, port: int, api_key: int, api_version: int, body: bytes, timeout_s: float) -> bytes:
        connection = await self.connection(host, port, min(timeout_s, CONNECT_TIMEOUT_S))
        return await connection.request(api_key, api_version, body, timeout_s)

    async def close_all(self) -> None:
        self._closed = True
        connections = list(self._connections.values())
        self._connections.clear()
        for connection in connections:
            await connection.close()
