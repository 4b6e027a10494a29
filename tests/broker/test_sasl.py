"""SASL (PLAIN, SCRAM-SHA-256/512) on a real broker process, with real clients, over plaintext and TLS."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import subprocess

import pytest

from broker.server.sasl import AuthenticationFailed, Credentials, SaslSession
from harness.tls import make_tls_files

from . import kafka_requests as k
from .conftest import BrokerProcess
from .raw_client import RawClient
from .test_tls import _confluent_round_trip

USERS = "# test users\nalice:alice-secret-1\nbob:b0b,=pw\n"


def _sasl_broker(tmp_path, protocol="SASL_PLAINTEXT", extra=""):
    tls = make_tls_files(str(tmp_path / "tls"))
    users = tmp_path / "users.txt"
    users.write_text(USERS)
    properties = (f"node.id=1\nlisteners={protocol}://127.0.0.1:0\nlog.dirs={tmp_path / 'logs'}\n"
                  f"logquake.sasl.users.file={users}\nssl.keystore.location={tls.broker_keystore}\n{extra}")
    return BrokerProcess(tmp_path / "broker", properties=properties).start(), tls


@pytest.fixture
def sasl_broker(tmp_path):
    broker, tls = _sasl_broker(tmp_path)
    try:
        yield broker
    finally:
        broker.kill()


@contextlib.contextmanager
def logged(logger_name: str):
    """The messages `logger_name` logs inside the block."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    handler = Collect()
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_confluent_kafka_authenticates_with_each_mechanism(sasl_broker, mechanism):
    settings = {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": mechanism,
                "sasl.username": "bob", "sasl.password": "b0b,=pw"}
    assert _confluent_round_trip(sasl_broker.bootstrap, settings, f"sasl-{mechanism.lower()}") == [b"m0", b"m1", b"m2"]
    log = sasl_broker.stderr_text()
    assert f"authenticated with {mechanism} as User:bob" in log
    assert "b0b,=pw" not in log


@pytest.mark.slow  # 30 s: kafka-python and aiokafka retry their bootstrap until their timeouts
def test_a_wrong_password_is_refused_in_every_client(sasl_broker):
    from confluent_kafka import KafkaError, Producer

    errors = []
    producer = Producer({"bootstrap.servers": sasl_broker.bootstrap, "security.protocol": "SASL_PLAINTEXT",
                         "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": "alice", "sasl.password": "not-the-password-7x",
                         "error_cb": errors.append, "log_level": 0})
    producer.produce("refused", b"x")
    for _ in range(20):
        producer.poll(0.25)
        if errors:
            break
    assert any(e.code() == KafkaError._AUTHENTICATION and "invalid username or password" in e.str() for e in errors), errors
    producer.purge()

    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    # kafka-python and aiokafka log the broker's answer and give the caller "unable to bootstrap"
    with pytest.raises(KafkaError), logged("kafka") as lines:
        producer = KafkaProducer(bootstrap_servers=sasl_broker.bootstrap, security_protocol="SASL_PLAINTEXT",
                                 sasl_mechanism="PLAIN", sasl_plain_username="alice", sasl_plain_password="not-the-password-7x",
                                 max_block_ms=5000, request_timeout_ms=5000)
        producer.send("refused", b"x").get(timeout=10)
    assert any("SaslAuthenticationFailedError" in line and "invalid username or password" in line for line in lines), lines[-5:]

    async def aio():
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=sasl_broker.bootstrap, security_protocol="SASL_PLAINTEXT",
                                    sasl_mechanism="SCRAM-SHA-512", sasl_plain_username="alice",
                                    sasl_plain_password="not-the-password-7x", request_timeout_ms=5000)
        try:
            await producer.start()
        finally:
            await producer.stop()

    with pytest.raises(Exception), logged("aiokafka") as lines:
        asyncio.run(aio())
    assert any("invalid username or password" in line for line in lines), lines[-5:]
    log = sasl_broker.stderr_text()
    assert "SASL authentication from" in log and "invalid username or password" in log
    assert "not-the-password-7x" not in log
    assert sasl_broker.alive()


def test_kafka_python_and_aiokafka_authenticate_with_scram(sasl_broker):
    from kafka import KafkaConsumer, KafkaProducer

    common = dict(bootstrap_servers=sasl_broker.bootstrap, security_protocol="SASL_PLAINTEXT",
                  sasl_mechanism="SCRAM-SHA-256", sasl_plain_username="alice", sasl_plain_password="alice-secret-1")
    producer = KafkaProducer(**common)
    producer.send("sasl-kp", b"kp").get(timeout=20)
    producer.close()
    consumer = KafkaConsumer("sasl-kp", auto_offset_reset="earliest", consumer_timeout_ms=10_000, **common)
    assert [m.value for m in consumer][:1] == [b"kp"]
    consumer.close()

    async def aio():
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=sasl_broker.bootstrap, security_protocol="SASL_PLAINTEXT",
                                    sasl_mechanism="SCRAM-SHA-512", sasl_plain_username="alice",
                                    sasl_plain_password="alice-secret-1")
        await producer.start()
        try:
            return (await producer.send_and_wait("sasl-aio", b"aio")).offset
        finally:
            await producer.stop()

    assert asyncio.run(aio()) == 0


def test_sasl_over_tls_with_kcat_and_confluent(tmp_path):
    broker, tls = _sasl_broker(tmp_path, protocol="SASL_SSL")
    try:
        common = ["kcat", "-b", broker.bootstrap, "-X", "security.protocol=SASL_SSL", "-X", f"ssl.ca.location={tls.ca}",
                  "-X", "sasl.mechanism=SCRAM-SHA-512", "-X", "sasl.username=alice", "-X", "sasl.password=alice-secret-1",
                  "-t", "sasl-kcat"]
        subprocess.run(common + ["-P"], input=b"s1\n", check=True, timeout=30)
        out = subprocess.run(common + ["-C", "-o", "beginning", "-c", "1", "-e"], capture_output=True, check=True, timeout=30)
        assert out.stdout.split() == [b"s1"]
        settings = {"security.protocol": "SASL_SSL", "ssl.ca.location": tls.ca, "sasl.mechanism": "PLAIN",
                    "sasl.username": "alice", "sasl.password": "alice-secret-1"}
        assert _confluent_round_trip(broker.bootstrap, settings, "sasl-ssl") == [b"m0", b"m1", b"m2"]
    finally:
        broker.kill()


def test_requests_before_authentication_close_the_connection(sasl_broker):
    with RawClient(sasl_broker.port) as client:
        assert client.call(k.api_versions()).error_code == 0  # allowed before authentication
        with pytest.raises((ConnectionError, AssertionError, OSError)):
            client.call(k.metadata(["x"]))
    assert "Metadata v12 before SASL authentication" in sasl_broker.stderr_text()
    m = k.module("sasl_handshake", 1)
    with RawClient(sasl_broker.port) as client:
        answer = client.call(m.SaslHandshakeRequest(mechanism="GSSAPI"))
        assert (answer.error_code, answer.mechanisms) == (33, ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"))
    assert sasl_broker.alive()


def test_scram_refuses_malformed_and_replayed_messages():
    credentials = Credentials.parse(USERS, random.Random(1))
    session = SaslSession(credentials, ("SCRAM-SHA-256",), random.Random(2), ("peer", 1))
    session.mechanism = "SCRAM-SHA-256"
    for token in (b"y,,n=alice,r=abc", b"n,,r=abc", b"n,,n=alice,r=", b"n,,n=nobody,r=abc"):
        fresh = SaslSession(credentials, ("SCRAM-SHA-256",), random.Random(2), ("peer", 1))
        fresh.mechanism = "SCRAM-SHA-256"
        with pytest.raises(AuthenticationFailed):
            fresh.step(token)
    server_first = session.step(b"n,,n=alice,r=abc").decode()
    assert server_first.startswith("r=abc") and ",i=4096" in server_first
    with pytest.raises(AuthenticationFailed, match="nonce"):
        session.step(b"c=biws,r=other,p=AAAA")
    plain = SaslSession(credentials, ("PLAIN",), random.Random(3), ("peer", 1))
    plain.mechanism = "PLAIN"
    with pytest.raises(AuthenticationFailed, match="authorization id"):
        plain.step(b"bob\x00alice\x00alice-secret-1")
    assert plain.step(b"\x00alice\x00alice-secret-1") == b"" and plain.principal == "User:alice"


def test_bad_sasl_settings_stop_the_broker_before_it_starts(tmp_path):
    bad_users = tmp_path / "bad-users.txt"
    bad_users.write_text("alice\n")
    for extra, expected in (
        ("", "logquake.sasl.users.file is not set"),
        ("logquake.sasl.users.file=/nonexistent\n", "cannot be read"),
        (f"logquake.sasl.users.file={bad_users}\n", "line 1 of the users file is not name:password"),
        (f"logquake.sasl.users.file={bad_users}\nsasl.enabled.mechanisms=GSSAPI\n", "GSSAPI is not served"),
    ):
        path = tmp_path / "bad.properties"
        path.write_text(f"node.id=1\nlisteners=SASL_PLAINTEXT://127.0.0.1:0\nlog.dirs={tmp_path / 'logs'}\n{extra}")
        result = subprocess.run(["python3", "-m", "broker", "--config", str(path)], capture_output=True, text=True, timeout=30)
        assert result.returncode == 2 and expected in result.stderr and "Traceback" not in result.stderr, result.stderr
