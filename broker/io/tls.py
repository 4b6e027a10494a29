"""TLS for the broker's listeners: an `ssl.SSLContext` per SSL listener, from Kafka's `ssl.*` properties.

Kafka's names and meanings (KIP-651 added PEM stores):
- `ssl.keystore.type=PEM`, `ssl.keystore.location`: one PEM file holding the
  broker's private key and its certificate chain (leaf first);
  `ssl.key.password` decrypts the key if it is encrypted.
- `ssl.truststore.type=PEM`, `ssl.truststore.location`: the CA certificates
  that client certificates must chain to.
- `ssl.client.auth`: `none` (no client certificate asked), `requested` (asked,
  verified if given), `required` (a connection without a valid one fails).
- `ssl.enabled.protocols`: TLSv1.2 and TLSv1.3 (Kafka's default); older
  versions are refused.
JKS and PKCS12 stores are Java formats; only PEM is accepted, with a message
that says so.

The client side (`client_context`, `TlsClientNetwork`) is a node's own
connections to its peers when the inter-broker listener is SSL or SASL_SSL,
as Kafka's SslFactory in client mode builds them: the peer's certificate must
chain to `ssl.truststore.location` (required here: there is no JVM default
truststore to fall back on), its name must match the address dialled when
`ssl.endpoint.identification.algorithm=https` (Kafka's default since 2.0,
KIP-294; empty turns the check off), and the node presents its keystore's
certificate, so a peer whose listener has `ssl.client.auth=required` accepts it. The files are read here, at start-up, because Python's `ssl`
module loads certificate chains from paths only: this module is the broker's
one door to them (DESIGN: the outside world only through `broker.io`).
"""

from __future__ import annotations

import os
import ssl

CLIENT_AUTH = {"none": ssl.CERT_NONE, "requested": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


class TlsConfigError(ValueError):
    """A TLS property names a file that cannot be used; the message says which and why."""


def server_context(keystore: str, key_password: str | None, truststore: str | None, client_auth: str) -> ssl.SSLContext:
    """The server-side context of an SSL listener."""
    if client_auth not in CLIENT_AUTH:
        raise TlsConfigError(f"ssl.client.auth={client_auth!r}; expected one of {', '.join(CLIENT_AUTH)}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _readable("ssl.keystore.location", keystore)
    try:
        context.load_cert_chain(keystore, password=key_password)
    except ssl.SSLError as exc:
        raise TlsConfigError(
            f"ssl.keystore.location={keystore!r} holds no usable private key and certificate chain ({exc.reason or exc}); "
            "expected one PEM file with the key and the chain (ssl.key.password if the key is encrypted)") from None
    context.verify_mode = CLIENT_AUTH[client_auth]
    if client_auth != "none":
        if not truststore:
            raise TlsConfigError(f"ssl.client.auth={client_auth} needs ssl.truststore.location: the CA certificates "
                                 "client certificates must chain to")
        _readable("ssl.truststore.location", truststore)
        try:
            context.load_verify_locations(cafile=truststore)
        except ssl.SSLError as exc:
            raise TlsConfigError(f"ssl.truststore.location={truststore!r} holds no PEM certificate ({exc.reason or exc})") from None
    return context


def client_context(keystore: str, key_password: str | None, truststore: str | None,
                   check_hostname: bool) -> ssl.SSLContext:
    """The context of a node's outgoing TLS connections to its peers (see the module docstring)."""
    if not truststore:
        raise TlsConfigError("ssl.truststore.location is not set; an SSL inter-broker listener needs it: the CA "
                             "certificates the peers' certificates must chain to")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _readable("ssl.truststore.location", truststore)
    try:
        context.load_verify_locations(cafile=truststore)
    except ssl.SSLError as exc:
        raise TlsConfigError(f"ssl.truststore.location={truststore!r} holds no PEM certificate ({exc.reason or exc})") from None
    context.check_hostname = check_hostname
    context.verify_mode = ssl.CERT_REQUIRED
    _readable("ssl.keystore.location", keystore)
    try:
        context.load_cert_chain(keystore, password=key_password)
    except ssl.SSLError as exc:
        raise TlsConfigError(f"ssl.keystore.location={keystore!r} holds no usable private key and certificate chain "
                             f"({exc.reason or exc})") from None
    return context


class TlsClientNetwork:
    """A `Network` whose outgoing connections speak TLS (`context`); servers it starts are left as they are.

    The handshake runs after the TCP connection is open (asyncio's `start_tls`), so the wrapped network,
    real or a proxy's, sees an ordinary connection; the name verified is the host dialled."""

    def __init__(self, network, context: ssl.SSLContext, handshake_timeout_s: float = 10.0):
        self.network = network
        self.context = context
        self.handshake_timeout_s = handshake_timeout_s

    async def start_server(self, handler, host: str, port: int):
        return await self.network.start_server(handler, host, port)

    async def open_connection(self, host: str, port: int, local_host: str | None = None):
        reader, writer = await self.network.open_connection(host, port, local_host=local_host)
        try:
            await writer.start_tls(self.context, server_hostname=host, ssl_handshake_timeout=self.handshake_timeout_s)
        except BaseException:
            writer.close()
            raise
        return reader, writer


def _readable(name: str, path: str) -> None:
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise TlsConfigError(f"{name}={path!r} is not a readable file; expected a PEM file")
