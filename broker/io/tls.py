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
that says so. The files are read here, at start-up, because Python's `ssl`
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


def _readable(name: str, path: str) -> None:
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise TlsConfigError(f"{name}={path!r} is not a readable file; expected a PEM file")
