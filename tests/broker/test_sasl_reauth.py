"""connections.max.reauth.ms (KIP-368) on a real broker process: a client that re-authenticates in band keeps
working across several session lifetimes; a connection that ignores its expiry is closed at its next request."""

from __future__ import annotations

import datetime
import time

import pytest

from . import kafka_requests as k
from .raw_client import RawClient
from .test_sasl import _sasl_broker

REAUTH_MS = 2000


@pytest.fixture
def reauth_broker(tmp_path):
    broker, _tls = _sasl_broker(tmp_path, extra=f"connections.max.reauth.ms={REAUTH_MS}\n")
    try:
        yield broker
    finally:
        broker.kill()


def _plain_login(client: RawClient, user: str = "alice", password: str = "alice-secret-1", version: int = 2):
    handshake = k.module("sasl_handshake", 1)
    assert client.call(handshake.SaslHandshakeRequest(mechanism="PLAIN")).error_code == 0
    authenticate = k.module("sasl_authenticate", version)
    return client.call(authenticate.SaslAuthenticateRequest(auth_bytes=f"\x00{user}\x00{password}".encode()))


def test_confluent_kafka_reauthenticates_in_band_while_producing(reauth_broker):
    from confluent_kafka import Producer

    errors, delivered = [], []

    def on_delivery(error, message):
        (errors if error is not None else delivered).append(error or message.offset())

    producer = Producer({"bootstrap.servers": reauth_broker.bootstrap, "security.protocol": "SASL_PLAINTEXT",
                         "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": "alice", "sasl.password": "alice-secret-1",
                         "error_cb": errors.append, "linger.ms": 5, "log_level": 0})
    deadline = time.monotonic() + 8  # four session lifetimes
    sent = 0
    while time.monotonic() < deadline:
        producer.produce("reauth", f"m{sent}".encode(), on_delivery=on_delivery)
        sent += 1
        producer.poll(0.05)
    assert producer.flush(15) == 0
    assert errors == [] and len(delivered) == sent and sent > 50
    log = reauth_broker.stderr_text()
    assert log.count("re-authenticated with SCRAM-SHA-256 as User:alice") >= 3, log[-3000:]
    assert "SASL session of User:alice expired" not in log
    assert "alice-secret-1" not in log


def test_a_connection_that_ignores_its_expiry_is_closed_and_one_that_reauthenticates_is_served(reauth_broker):
    with RawClient(reauth_broker.port) as client:
        answer = _plain_login(client)
        assert answer.error_code == 0 and answer.session_lifetime == datetime.timedelta(milliseconds=REAUTH_MS)
        assert client.call(k.metadata([])).brokers  # served inside the session
        time.sleep(REAUTH_MS / 1000 + 0.3)
        client.send(k.metadata([]))
        assert client.is_closed_by_peer()
    assert "Metadata v12 after the SASL session of User:alice expired (connections.max.reauth.ms=2000)" in \
        reauth_broker.stderr_text()
    with RawClient(reauth_broker.port) as client:
        assert _plain_login(client).error_code == 0
        time.sleep(REAUTH_MS / 1000 + 0.3)
        answer = _plain_login(client)  # after the expiry: a re-authentication is still allowed, and renews the session
        assert answer.error_code == 0 and answer.session_lifetime == datetime.timedelta(milliseconds=REAUTH_MS)
        assert client.call(k.metadata([])).brokers
    with RawClient(reauth_broker.port) as client:
        assert _plain_login(client).error_code == 0
        answer = _plain_login(client, "bob", "b0b,=pw")  # a connection cannot change principals (Kafka's rule)
        assert answer.error_code == 58 and "cannot change principals" in answer.error_message
        assert client.is_closed_by_peer()
    with RawClient(reauth_broker.port) as client:
        assert _plain_login(client, version=0).error_code == 0  # v0 has no session lifetime; the session still expires
        handshake = k.module("sasl_handshake", 1)
        answer = client.call(handshake.SaslHandshakeRequest(mechanism="SCRAM-SHA-512"))  # another mechanism: refused
        assert answer.error_code == 34
        assert client.is_closed_by_peer()
    assert reauth_broker.alive()
