"""Throwaway TLS material for a test cluster: a CA, a broker certificate and a client certificate, as PEM files.

Everything is generated fresh (EC P-256 keys, certificates valid for a day) in a
directory the caller owns and removes; nothing is ever committed or reused. The
broker certificate names every host a client may dial (DNS names and IP
addresses as subject alternative names), since clients verify the name they
connected to. Files:
- `ca.pem`: the CA certificate (a client's `ssl.ca.location`, the broker's
  `ssl.truststore.location` when it asks for client certificates);
- `broker.pem`: the broker's private key and certificate chain in one file (its
  `ssl.keystore.location`, Kafka's PEM keystore of KIP-651);
- `broker-chain.pem`, `broker-key.pem`: the same chain and key as two files, for
  brokers that take a certificate file and a key file (`--system` descriptions'
  `{ssl_certificate}` and `{ssl_key}`);
- `client.pem`, `client-key.pem`: a client certificate and its key, signed by
  the same CA (`ssl.certificate.location`, `ssl.key.location`).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class TlsFiles:
    directory: str
    ca: str
    broker_keystore: str
    client_certificate: str
    client_key: str
    broker_certificate: str  # the chain of broker_keystore without its key
    broker_key: str  # the key of broker_keystore alone


def _name(common_name: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "logquake test"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject, issuer, public_key, signing_key, *, ca: bool, hosts=(), days: int = 1):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if hosts:
        names = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def make_tls_files(directory: str, hosts=("localhost", "127.0.0.1")) -> TlsFiles:
    """Write a fresh CA, broker keystore and client certificate into `directory` (created, mode 0700)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    os.makedirs(directory, mode=0o700, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("logquake test CA")
    ca_cert = _certificate(ca_name, ca_name, ca_key.public_key(), ca_key, ca=True)
    broker_key = ec.generate_private_key(ec.SECP256R1())
    broker_cert = _certificate(_name("logquake broker"), ca_name, broker_key.public_key(), ca_key, ca=False, hosts=hosts)
    client_key = ec.generate_private_key(ec.SECP256R1())
    client_cert = _certificate(_name("logquake client"), ca_name, client_key.public_key(), ca_key, ca=False)

    def key_pem(key) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

    def cert_pem(cert) -> bytes:
        return cert.public_bytes(serialization.Encoding.PEM)

    files = TlsFiles(directory, os.path.join(directory, "ca.pem"), os.path.join(directory, "broker.pem"),
                     os.path.join(directory, "client.pem"), os.path.join(directory, "client-key.pem"),
                     os.path.join(directory, "broker-chain.pem"), os.path.join(directory, "broker-key.pem"))
    chain = cert_pem(broker_cert) + cert_pem(ca_cert)
    for path, data in ((files.ca, cert_pem(ca_cert)),
                       (files.broker_keystore, key_pem(broker_key) + chain),
                       (files.broker_certificate, chain),
                       (files.broker_key, key_pem(broker_key)),
                       (files.client_certificate, cert_pem(client_cert)),
                       (files.client_key, key_pem(client_key))):
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
    return files
