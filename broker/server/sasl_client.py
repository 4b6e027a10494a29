"""The client side of SASL: how a broker authenticates its own connections to its peers (KIP-43, KIP-84, KIP-152).

When the inter-broker listener is `SASL_PLAINTEXT` or `SASL_SSL`, every
connection the node opens to a peer (replica fetchers, Raft and controller
RPCs, transaction markers; all through broker.protocol.client's pools)
authenticates before its first request, as Kafka's SaslClientAuthenticator
does: SaslHandshake v1 naming `sasl.mechanism.inter.broker.protocol`, then
SaslAuthenticate v2 carrying the mechanism's tokens, with the username and
password of the listener's `sasl.jaas.config` (broker.server.jaas). The
server side is broker.server.sasl.

PLAIN (RFC 4616): one token `NUL username NUL password` (no authzid).

SCRAM-SHA-256 / SCRAM-SHA-512 (RFC 5802, RFC 7677):
- client-first `n,,n=<user>,r=<client nonce>` (`=` and `,` of the name escaped
  as `=3D` and `=2C`, RFC 5802 section 5.1);
- the server-first `r=<nonce>,s=<salt>,i=<iterations>` must extend the client
  nonce, carry no mandatory extension (`m=`) and at least 4096 iterations
  (RFC 7677 section 4, Kafka's minimum);
- client-final `c=biws,r=<nonce>,p=<ClientProof>` with SaltedPassword =
  PBKDF2-HMAC(password, salt, i), ClientKey = HMAC(SaltedPassword, "Client
  Key"), StoredKey = H(ClientKey), AuthMessage = client-first-bare + "," +
  server-first + "," + client-final-without-proof, ClientProof = ClientKey XOR
  HMAC(StoredKey, AuthMessage);
- the server-final `v=<ServerSignature>` must equal HMAC(HMAC(SaltedPassword,
  "Server Key"), AuthMessage): a server that does not know the credential is
  refused too (mutual authentication); `e=<error>` is a refusal.

A refusal raises `SaslAuthenticationFailed` (an `AuthenticationError`, so a
`ConnectionLost` to the pools' callers, which retry as for any lost
connection; the pool waits a second before it dials that peer again) and logs
one line naming the peer, the mechanism, the user and the server's reason,
never the password (at most one line per peer every 30 s).

Session lifetime (KIP-368): when the peer's `connections.max.reauth.ms` is
above 0 its SaslAuthenticate answer carries the session lifetime; this client
does not re-authenticate in band but returns the lifetime to the pool, which
stops handing the connection out at 85% of it (the low end of Kafka's clients'
85-95% window) and opens a new one; the old connection is closed once its
last request was answered.

Thread-safety: none; the node's event loop is the only caller.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib
import logging

from kio.schema.errors import ErrorCode

from broker.metadata.scram import HASHES, MIN_ITERATIONS
from broker.protocol import apis
from broker.protocol.client import AuthenticationError

log = logging.getLogger("broker.server")

HANDSHAKE_VERSION = 1
AUTHENTICATE_VERSION = 2
LOG_EVERY_NS = 30 * 1_000_000_000


class SaslAuthenticationFailed(AuthenticationError):
    """The peer refused this node's credentials, or could not prove it knows them; the message holds no password."""


class ScramError(ValueError):
    """A server message that breaks RFC 5802 (or the server's signature is wrong)."""


class _Refused(Exception):
    """The server answered an error (its message never holds our password)."""


def _escape_name(name: str) -> str:
    return name.replace("=", "=3D").replace(",", "=2C")


class PlainClient:
    """PLAIN's single token (RFC 4616)."""

    def __init__(self, username: str, password: str):
        self._token = b"\x00" + username.encode("utf-8") + b"\x00" + password.encode("utf-8")
        self.done = False

    def step(self, challenge: bytes | None) -> bytes:
        if challenge is not None:
            raise ScramError("PLAIN expects no challenge from the server")
        self.done = True
        return self._token

    def finish(self, server_final: bytes) -> None:
        """PLAIN has no server-final message: a success carries empty auth bytes (RFC 4616; Kafka sends none);
        anything else is a peer that does not speak PLAIN."""
        if server_final:
            raise ScramError(f"PLAIN expects an empty final answer from the server, got {len(server_final)} bytes")


class ScramClient:
    """One SCRAM exchange (RFC 5802 section 3): `step(None)`, `step(server_first)`, then `finish(server_final)`."""

    def __init__(self, mechanism: str, username: str, password: str, nonce: str):
        self.hash = HASHES[mechanism]
        self._password = password.encode("utf-8")
        self._nonce = nonce
        self._first_bare = f"n={_escape_name(username)},r={nonce}"
        self._server_signature: bytes | None = None
        self.done = False

    def step(self, challenge: bytes | None) -> bytes:
        if challenge is None:
            return f"n,,{self._first_bare}".encode()
        return self._final(challenge.decode("utf-8", "replace"))

    def _final(self, server_first: str) -> bytes:
        if server_first.startswith("m="):
            raise ScramError("the server-first message asks for a mandatory extension (m=), which is not supported")
        fields = dict(item.split("=", 1) for item in server_first.split(",") if "=" in item)
        nonce, salt_text, iterations_text = fields.get("r", ""), fields.get("s"), fields.get("i", "")
        if not nonce.startswith(self._nonce) or len(nonce) <= len(self._nonce):
            raise ScramError("the server nonce does not extend the client nonce")
        try:
            salt = base64.b64decode(salt_text or "", validate=True)
            iterations = int(iterations_text)
        except ValueError:
            raise ScramError("the server-first message has no valid salt (s=) or iteration count (i=)") from None
        if not salt or iterations < MIN_ITERATIONS:
            raise ScramError(f"the server-first message has an empty salt or fewer than {MIN_ITERATIONS} iterations")
        salted = hashlib.pbkdf2_hmac(self.hash, self._password, salt, iterations)
        client_key = hmac.new(salted, b"Client Key", self.hash).digest()
        stored_key = hashlib.new(self.hash, client_key).digest()
        without_proof = f"c={base64.b64encode(b'n,,').decode()},r={nonce}"
        auth_message = f"{self._first_bare},{server_first},{without_proof}".encode()
        signature = hmac.new(stored_key, auth_message, self.hash).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        server_key = hmac.new(salted, b"Server Key", self.hash).digest()
        self._server_signature = hmac.new(server_key, auth_message, self.hash).digest()
        self.done = True
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def finish(self, server_final: bytes) -> None:
        """Check the server-final message: the server proves it knows the credential (RFC 5802 section 3)."""
        text = server_final.decode("utf-8", "replace")
        if text.startswith("e="):
            raise ScramError(f"the server refused: {text[2:]}")
        fields = dict(item.split("=", 1) for item in text.split(",") if "=" in item)
        try:
            signature = base64.b64decode(fields.get("v", ""), validate=True)
        except ValueError:
            signature = b""
        if self._server_signature is None or not hmac.compare_digest(signature, self._server_signature):
            raise ScramError("the server signature is wrong: the server does not know this user's credential")


def mechanism_client(mechanism: str, login, rng):
    """The client state machine of `mechanism` for `login` (a broker.server.jaas.JaasLogin)."""
    if mechanism == "PLAIN":
        return PlainClient(login.username, login.password)
    return ScramClient(mechanism, login.username, login.password, base64.b64encode(rng.randbytes(24)).decode())


class SaslClientAuthenticator:
    """`authenticate` of broker.protocol.client's pools: one SASL exchange on a freshly opened connection."""

    def __init__(self, mechanism: str, login, rng, clock):
        self.mechanism = mechanism
        self.login = login
        self.rng = rng
        self.clock = clock
        self._last_log_ns: dict[str, int] = {}

    async def __call__(self, connection, timeout_s: float) -> int:
        """Authenticate `connection`; return the session lifetime in ms (0: it does not expire)."""
        try:
            return await self._exchange(connection, timeout_s)
        except (ScramError, _Refused) as exc:
            now_ns = self.clock.monotonic_ns()
            if now_ns - self._last_log_ns.get(connection.name, -LOG_EVERY_NS) >= LOG_EVERY_NS:
                self._last_log_ns[connection.name] = now_ns
                log.warning("SASL authentication to %s with %s as %s failed: %s (retried; logged once every %d s)",
                            connection.name, self.mechanism, self.login.username, exc, LOG_EVERY_NS // 1_000_000_000)
            raise SaslAuthenticationFailed(f"SASL authentication to {connection.name} with {self.mechanism} as "
                                           f"{self.login.username} failed: {exc}") from None

    async def _exchange(self, connection, timeout_s: float) -> int:
        handshake = apis.build_entity(_request_module(apis.SASL_HANDSHAKE, HANDSHAKE_VERSION), "SaslHandshakeRequest",
                                      mechanism=self.mechanism)
        body = await connection.request(apis.SASL_HANDSHAKE, HANDSHAKE_VERSION, apis.encode_request(handshake), timeout_s)
        answer = apis.decode_response(apis.SASL_HANDSHAKE, HANDSHAKE_VERSION, body)
        if answer.error_code != ErrorCode.none:
            raise _Refused(f"SaslHandshake answered {answer.error_code.name.upper()} (the peer enables: "
                           f"{', '.join(answer.mechanisms) or 'nothing'})")
        client = mechanism_client(self.mechanism, self.login, self.rng)
        challenge = None
        while True:
            token = client.step(challenge)
            request = apis.build_entity(_request_module(apis.SASL_AUTHENTICATE, AUTHENTICATE_VERSION),
                                        "SaslAuthenticateRequest", auth_bytes=token)
            body = await connection.request(apis.SASL_AUTHENTICATE, AUTHENTICATE_VERSION, apis.encode_request(request),
                                            timeout_s)
            answer = apis.decode_response(apis.SASL_AUTHENTICATE, AUTHENTICATE_VERSION, body)
            if answer.error_code != ErrorCode.none:
                raise _Refused(f"{answer.error_code.name.upper()}: {answer.error_message or 'no message'}")
            if client.done:
                client.finish(bytes(answer.auth_bytes))
                lifetime = answer.session_lifetime
                return int(lifetime.total_seconds() * 1000) if lifetime else 0
            challenge = bytes(answer.auth_bytes)


def _request_module(api_key: int, version: int):
    return importlib.import_module(apis.request_class(api_key, version).__module__)


def inter_broker_authenticator(config, runtime) -> SaslClientAuthenticator | None:
    """The SASL exchange of the node's connections to its peers when its inter-broker listener is SASL_* in a
    cluster (credentials checked by broker.server.config), else None."""
    if config.inter_broker_login is None or not config.cluster_mode:
        return None
    return SaslClientAuthenticator(config.value("sasl.mechanism.inter.broker.protocol"), config.inter_broker_login,
                                   runtime.random, runtime.clock)
