"""SASL authentication of client connections: PLAIN and SCRAM-SHA-256/512 (KIP-43, KIP-84, KIP-152).

A connection on a `SASL_PLAINTEXT` or `SASL_SSL` listener starts unauthenticated
and may send only ApiVersions, SaslHandshake and SaslAuthenticate; anything else
closes it, as Kafka's authenticator does. SaslHandshake v1 names the mechanism
(UNSUPPORTED_SASL_MECHANISM with the enabled list if it is not one of
`sasl.enabled.mechanisms`); SaslAuthenticate carries the mechanism's tokens; after a v0 handshake (KIP-43's
original form, which librdkafka before 2.x asks for) the tokens come as bare
size-prefixed frames, answered the same way, and a failure just closes. A
failed authentication is answered SASL_AUTHENTICATION_FAILED with a message
that names neither the password nor whether the user exists, and the
connection is closed after the answer. The authenticated principal is
`User:<name>`. With `connections.max.reauth.ms` > 0 a session expires and the
client re-authenticates on the same connection (KIP-368; see `SaslSession`).

PLAIN (RFC 4616): one token, `authzid NUL authcid NUL password`; an authzid, if
given, must equal the authcid (Kafka's rule).

SCRAM (RFC 5802, with SHA-256/SHA-512 as RFC 7677 and KIP-84 use them): the
client's first message `n,,n=<user>,r=<client nonce>`, the server's
`r=<client nonce><server nonce>,s=<salt>,i=<iterations>`, the client's final
`c=<channel binding>,r=<nonce>,p=<proof>` and the server's `v=<signature>`. The
server keeps per user and mechanism only salt, iterations, StoredKey and
ServerKey, never the password: StoredKey = H(HMAC(SaltedPassword, "Client
Key")), ServerKey = HMAC(SaltedPassword, "Server Key"), SaltedPassword =
PBKDF2-HMAC(password, salt, iterations). A client proves itself by ClientProof =
ClientKey XOR HMAC(StoredKey, AuthMessage): the server recovers ClientKey and
checks H(ClientKey) == StoredKey. As Kafka's ScramSaslServer does, the nonce of
the client's final message must end with the server's nonce (librdkafka 2.0
repeats its own nonce in front). Channel binding is not supported (`n,,` only);
Kafka's `tokenauth` extension (delegation tokens) is refused.

Users come from `logquake.sasl.users.file` (lines `name:password`; `#` starts a
comment), read once at start-up; the passwords are turned into SCRAM
credentials with a fresh random salt and `logquake.sasl.scram.iterations`
(default 4096, Kafka's minimum) and the PLAIN check compares PBKDF2 hashes, so
no password is kept in memory after start-up. The file is the bootstrap: once
AlterUserScramCredentials changed a credential, the metadata log's credentials
(broker.metadata.scram, broker.server.scram_admin) are the only ones, on every
node (`credentials.lookup` goes through `ScramCredentialSource`).
"""

from __future__ import annotations

import base64
import contextvars
import datetime
import hashlib
import hmac
import logging
from kio.schema.errors import ErrorCode

from broker.metadata.scram import HASHES as _HASHES
from broker.metadata.scram import ScramCredential, scram_credential
from broker.protocol import apis

log = logging.getLogger("broker.server")

SASL_HANDSHAKE = apis.SASL_HANDSHAKE
SASL_AUTHENTICATE = apis.SASL_AUTHENTICATE
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
PRE_AUTH_APIS = frozenset({apis.API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE})
FAILED = "Authentication failed: invalid username or password"


class SaslConfigError(ValueError):
    """The users file cannot be used; the message says which line and why (never a password)."""


class Credentials:
    """Every user's SCRAM credentials, per mechanism (PLAIN checks against the SHA-256 ones)."""

    def __init__(self, users: dict[str, str], rng, iterations: int = 4096):
        if iterations < 4096:
            raise SaslConfigError(f"logquake.sasl.scram.iterations={iterations}: expected at least 4096 (RFC 7677, Kafka)")
        self.scram = {mechanism: {name: scram_credential(mechanism, password, rng.randbytes(32), iterations)
                                  for name, password in users.items()} for mechanism in _HASHES}

    @classmethod
    def parse(cls, text: str, rng, iterations: int = 4096) -> "Credentials":
        users: dict[str, str] = {}
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, colon, password = line.partition(":")
            if not colon or not name or not password:
                raise SaslConfigError(f"line {number} of the users file is not name:password")
            if name in users:
                raise SaslConfigError(f"line {number} of the users file names user {name!r} again")
            users[name] = password
        if not users:
            raise SaslConfigError("the users file names no user; expected lines of name:password")
        return cls(users, rng, iterations)

    def lookup(self, mechanism: str, name: str) -> ScramCredential | None:
        return self.scram[mechanism].get(name)

    def check_plain(self, name: str, password: str) -> bool:
        return check_plain(self, name, password)


def check_plain(credentials, name: str, password: str) -> bool:
    """PLAIN's password check against the user's SCRAM-SHA-256 credential (`credentials.lookup`)."""
    credential = credentials.lookup("SCRAM-SHA-256", name)
    if credential is None:
        return False
    given = scram_credential("SCRAM-SHA-256", password, credential.salt, credential.iterations)
    return hmac.compare_digest(given.stored_key, credential.stored_key)


class AuthenticationFailed(Exception):
    """The client's token does not authenticate it; the message is safe to send and log."""


class SaslSession:
    """One connection's SASL state, re-authentication included (KIP-368).

    With `reauth_ms` (connections.max.reauth.ms) > 0 a successful authentication expires `reauth_ms` later
    (`expires_ns`); SaslAuthenticate v1+ tells the client so (session_lifetime_ms). A SaslHandshake v1 on an
    authenticated connection starts a re-authentication: same mechanism, and it must end with the same
    principal (Kafka's rule), else it fails and the connection closes. Requests keep being served while it
    runs, until the session expires (broker.server.server closes an expired connection at its next request
    that is not SaslHandshake or SaslAuthenticate).
    """

    def __init__(self, credentials, enabled: tuple[str, ...], rng, peer, clock=None, reauth_ms: int = 0):
        self.credentials = credentials
        self.enabled = enabled
        self.rng = rng
        self.peer = peer
        self.clock = clock
        self.reauth_ms = reauth_ms
        self.mechanism: str | None = None
        self.principal: str | None = None
        self.in_exchange = False  # between a SaslHandshake and the end of its token exchange
        self.expires_ns: int | None = None
        self.close_after_response = False
        self.raw_tokens = False  # after a SaslHandshake v0 the next frames are bare tokens, not requests
        self._scram: dict | None = None

    @property
    def authenticated(self) -> bool:
        return self.principal is not None

    @property
    def reauthenticating(self) -> bool:
        return self.in_exchange and self.authenticated

    def begin(self, mechanism: str, raw_tokens: bool) -> None:
        """A SaslHandshake accepted: the token exchange starts (again, for a re-authentication)."""
        self.mechanism = mechanism
        self.raw_tokens = raw_tokens
        self.in_exchange = True
        self._scram = None

    def expired(self, now_ns: int) -> bool:
        return self.expires_ns is not None and now_ns >= self.expires_ns

    def _succeed(self, principal: str) -> None:
        if self.authenticated and principal != self.principal:
            raise AuthenticationFailed(f"re-authentication as {principal} on a connection of {self.principal}: "
                                       "a connection cannot change principals")
        self.principal = principal
        self.in_exchange = False
        if self.reauth_ms > 0 and self.clock is not None:
            self.expires_ns = self.clock.monotonic_ns() + self.reauth_ms * 1_000_000

    def step(self, token: bytes) -> bytes:
        """The answer to one SaslAuthenticate token; AuthenticationFailed if the client is refused."""
        if self.mechanism == "PLAIN":
            parts = token.split(b"\x00")
            if len(parts) != 3:
                raise AuthenticationFailed("malformed PLAIN token: expected authzid NUL user NUL password")
            authzid, user, password = (p.decode("utf-8", "replace") for p in parts)
            if authzid and authzid != user:
                raise AuthenticationFailed("PLAIN authorization id must be empty or the user name")
            if not self.credentials.check_plain(user, password):
                raise AuthenticationFailed(FAILED)
            self._succeed(f"User:{user}")
            return b""
        if self._scram is None:
            return self._scram_first(token)
        return self._scram_final(token)

    def _scram_first(self, token: bytes) -> bytes:
        text = token.decode("utf-8", "replace")
        header, _, bare = text.partition(",")
        authzid, _, bare = bare.partition(",")
        if header != "n" or (authzid and not authzid.startswith("a=")):
            raise AuthenticationFailed("SCRAM client-first message without the n,, header (channel binding is not supported)")
        fields = dict(item.split("=", 1) for item in bare.split(",") if "=" in item)
        if "n" not in fields or "r" not in fields or not fields["r"]:
            raise AuthenticationFailed("SCRAM client-first message without a user name or nonce")
        if fields.get("tokenauth", "").lower() == "true":
            raise AuthenticationFailed("delegation tokens (tokenauth) are not supported")
        user = fields["n"].replace("=2C", ",").replace("=3D", "=")
        credential = self.credentials.lookup(self.mechanism, user)
        if credential is None:
            raise AuthenticationFailed(FAILED)
        nonce = fields["r"] + base64.b64encode(self.rng.randbytes(18)).decode()
        server_first = f"r={nonce},s={base64.b64encode(credential.salt).decode()},i={credential.iterations}"
        self._scram = {"user": user, "credential": credential, "nonce": nonce,
                       "gs2": f"{header},{authzid},", "messages": f"{bare},{server_first}"}
        return server_first.encode()

    def _scram_final(self, token: bytes) -> bytes:
        state = self._scram
        text = token.decode("utf-8", "replace")
        without_proof, _, proof_field = text.rpartition(",p=")
        fields = dict(item.split("=", 1) for item in without_proof.split(",") if "=" in item)
        # Kafka's check is "ends with the server's nonce", not equality, and librdkafka before 2.1 relies on it:
        # it sends its own nonce again in front of the server's (which already starts with it)
        if not proof_field or not fields.get("r", "").endswith(state["nonce"]):
            raise AuthenticationFailed("SCRAM client-final message with a wrong nonce or no proof")
        if fields.get("c") != base64.b64encode(state["gs2"].encode()).decode():
            raise AuthenticationFailed("SCRAM channel binding does not match the client-first header")
        name = _HASHES[self.mechanism]
        credential = state["credential"]
        auth_message = f"{state['messages']},{without_proof}".encode()
        try:
            proof = base64.b64decode(proof_field, validate=True)
        except ValueError:
            raise AuthenticationFailed("SCRAM proof is not base64") from None
        signature = hmac.new(credential.stored_key, auth_message, name).digest()
        if len(proof) != len(signature):
            raise AuthenticationFailed(FAILED)
        client_key = bytes(a ^ b for a, b in zip(proof, signature))
        if not hmac.compare_digest(hashlib.new(name, client_key).digest(), credential.stored_key):
            raise AuthenticationFailed(FAILED)
        self._succeed(f"User:{state['user']}")
        server_signature = hmac.new(credential.server_key, auth_message, name).digest()
        return f"v={base64.b64encode(server_signature).decode()}".encode()


def load_credentials(config, runtime) -> Credentials:
    """The users of `logquake.sasl.users.file`, read through the runtime's disk; SaslConfigError if unusable."""
    path = config.value("logquake.sasl.users.file")
    try:
        handle = runtime.disk.open(path, "rb")
        try:
            text = handle.read().decode("utf-8")
        finally:
            handle.close()
    except (OSError, UnicodeDecodeError) as exc:
        raise SaslConfigError(f"logquake.sasl.users.file={path!r} cannot be read: {exc}") from None
    try:
        return Credentials.parse(text, runtime.random, config.value("logquake.sasl.scram.iterations"))
    except SaslConfigError as exc:
        raise SaslConfigError(f"logquake.sasl.users.file={path!r}: {exc}") from None


# The SASL session of the connection a request arrived on (None: the listener is not SASL).
CONNECTION_SASL: contextvars.ContextVar[SaslSession | None] = contextvars.ContextVar("connection_sasl", default=None)


class SaslApis:
    """SaslHandshake and SaslAuthenticate (broker.server.router); the state is the connection's session."""

    def apis(self) -> dict:
        return {SASL_HANDSHAKE: self.handshake, SASL_AUTHENTICATE: self.authenticate}

    def handshake(self, header, request):
        module = apis.response_module(SASL_HANDSHAKE, header.api_version)
        session = CONNECTION_SASL.get()
        enabled = session.enabled if session is not None else ()
        error, why = ErrorCode.none, ""
        if session is None or request.mechanism not in enabled:
            error = ErrorCode.unsupported_sasl_mechanism
        elif session.in_exchange or (session.authenticated and header.api_version == 0):
            error, why = ErrorCode.illegal_sasl_state, "a SaslHandshake in the middle of an exchange, or v0 to re-authenticate"
        elif session.authenticated and request.mechanism != session.mechanism:
            # KIP-368: a re-authentication keeps the mechanism (and the principal)
            error, why = ErrorCode.illegal_sasl_state, f"re-authentication must use {session.mechanism}"
        if error != ErrorCode.none:
            log.info("SASL handshake from %s refused: mechanism %r (%s%s; enabled: %s)", session.peer if session else "?",
                     request.mechanism, error.name, f": {why}" if why else "", ", ".join(enabled) or "none on this listener")
            if session is not None:
                session.close_after_response = True
            return apis.build_entity(module, "SaslHandshakeResponse", error_code=error, mechanisms=tuple(enabled))
        if session.authenticated:
            log.info("%s re-authenticating as %s with %s", session.peer, session.principal, session.mechanism)
        session.begin(request.mechanism, header.api_version == 0)
        return apis.build_entity(module, "SaslHandshakeResponse", error_code=ErrorCode.none, mechanisms=tuple(enabled))

    def authenticate(self, header, request):
        module = apis.response_module(SASL_AUTHENTICATE, header.api_version)
        session = CONNECTION_SASL.get()
        error, message, answer = ErrorCode.none, None, b""
        if session is None or not session.in_exchange:
            error, message = ErrorCode.illegal_sasl_state, "SaslAuthenticate without a SaslHandshake first"
        else:
            reauthentication = session.reauthenticating
            try:
                answer = session.step(bytes(request.auth_bytes))
            except AuthenticationFailed as exc:
                error, message = ErrorCode.sasl_authentication_failed, str(exc)
        if error != ErrorCode.none:
            log.info("SASL authentication from %s failed: %s", session.peer if session else "?", message)
            if session is not None:
                session.close_after_response = True
        elif not session.in_exchange:
            log.info("%s %s with %s as %s", session.peer, "re-authenticated" if reauthentication else "authenticated",
                     session.mechanism, session.principal)
        lifetime = apis.ZERO_MS
        if error == ErrorCode.none and not session.in_exchange and session.reauth_ms > 0:
            lifetime = datetime.timedelta(milliseconds=session.reauth_ms)  # KIP-368's session_lifetime_ms (v1+)
        return apis.build_entity(module, "SaslAuthenticateResponse", error_code=error, error_message=message,
                                 auth_bytes=answer, session_lifetime=lifetime)
