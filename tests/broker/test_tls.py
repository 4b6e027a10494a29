"""TLS listeners on a real broker process, with real clients: confluent-kafka, kafka-python, aiokafka and kcat.

The CA and certificates are made fresh for each test (harness.tls) in its
temporary directory.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import uuid

import pytest

from harness.tls import make_tls_files

from .conftest import BrokerProcess
from .raw_client import RawClient
from . import kafka_requests as k


def _ssl_broker(tmp_path, client_auth="none", extra=""):
    tls = make_tls_files(str(tmp_path / "tls"))
    properties = (f"node.id=1\nlisteners=SSL://127.0.0.1:0\nlog.dirs={tmp_path / 'logs'}\n"
                  f"ssl.keystore.location={tls.broker_keystore}\nssl.client.auth={client_auth}\n"
                  f"ssl.truststore.location={tls.ca}\n{extra}")
    return BrokerProcess(tmp_path / "broker", properties=properties).start(), tls


@pytest.fixture
def ssl_broker(tmp_path):
    broker, tls = _ssl_broker(tmp_path)
    try:
        yield broker, tls
    finally:
        broker.kill()


def _confluent_round_trip(bootstrap: str, settings: dict, topic: str) -> list[bytes]:
    from confluent_kafka import Consumer, Producer

    producer = Producer({"bootstrap.servers": bootstrap, **settings})
    for i in range(3):
        producer.produce(topic, f"m{i}".encode())
    assert producer.flush(20) == 0
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{uuid.uuid4().hex[:6]}",
                         "auto.offset.reset": "earliest", **settings})
    consumer.subscribe([topic])
    values = []
    try:
        for _ in range(100):
            message = consumer.poll(0.5)
            if message is not None and not message.error():
                values.append(message.value())
            if len(values) == 3:
                break
    finally:
        consumer.close()
    return values


def test_confluent_kafka_over_tls(ssl_broker):
    broker, tls = ssl_broker
    values = _confluent_round_trip(broker.bootstrap, {"security.protocol": "SSL", "ssl.ca.location": tls.ca}, "tls-confluent")
    assert values == [b"m0", b"m1", b"m2"]


def test_kafka_python_and_aiokafka_over_tls(ssl_broker):
    from kafka import KafkaConsumer, KafkaProducer

    broker, tls = ssl_broker
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, security_protocol="SSL", ssl_cafile=tls.ca)
    producer.send("tls-kp", b"kp").get(timeout=20)
    producer.close()
    consumer = KafkaConsumer("tls-kp", bootstrap_servers=broker.bootstrap, security_protocol="SSL", ssl_cafile=tls.ca,
                             auto_offset_reset="earliest", consumer_timeout_ms=10_000)
    assert [m.value for m in consumer][:1] == [b"kp"]
    consumer.close()

    async def aio():
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
        from aiokafka.helpers import create_ssl_context

        context = create_ssl_context(cafile=tls.ca)
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, security_protocol="SSL", ssl_context=context)
        await producer.start()
        try:
            await producer.send_and_wait("tls-aio", b"aio")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer("tls-aio", bootstrap_servers=broker.bootstrap, security_protocol="SSL",
                                    ssl_context=context, auto_offset_reset="earliest")
        await consumer.start()
        try:
            message = await asyncio.wait_for(consumer.getone(), 20)
        finally:
            await consumer.stop()
        return message.value

    assert asyncio.run(aio()) == b"aio"


def test_kcat_over_tls(ssl_broker):
    broker, tls = ssl_broker
    common = ["kcat", "-b", broker.bootstrap, "-X", "security.protocol=SSL", "-X", f"ssl.ca.location={tls.ca}", "-t", "tls-kcat"]
    subprocess.run(common + ["-P"], input=b"k1\nk2\n", check=True, timeout=30)
    out = subprocess.run(common + ["-C", "-o", "beginning", "-c", "2", "-e"], capture_output=True, check=True, timeout=30)
    assert out.stdout.split() == [b"k1", b"k2"]


def test_client_certificates_required(tmp_path):
    broker, tls = _ssl_broker(tmp_path, client_auth="required")
    try:
        with_cert = {"security.protocol": "SSL", "ssl.ca.location": tls.ca,
                     "ssl.certificate.location": tls.client_certificate, "ssl.key.location": tls.client_key}
        assert _confluent_round_trip(broker.bootstrap, with_cert, "tls-mtls") == [b"m0", b"m1", b"m2"]
        # without a certificate the handshake fails, and the broker serves the next client
        with pytest.raises((ssl.SSLError, ConnectionError, EOFError, AssertionError)):
            with RawClient(broker.port, ssl_context=ssl.create_default_context(cafile=tls.ca)) as client:
                client.call(k.api_versions())  # TLS 1.3 reports the missing certificate at the first read
        assert broker.alive()
        assert _confluent_round_trip(broker.bootstrap, with_cert, "tls-mtls-2") == [b"m0", b"m1", b"m2"]
    finally:
        broker.kill()


def test_plaintext_and_garbage_on_a_tls_port_leave_the_broker_serving(ssl_broker):
    broker, tls = ssl_broker
    with RawClient(broker.port) as raw:
        raw.send(k.api_versions())  # a Kafka request in the clear: not a TLS client hello
        try:
            answer = raw.sock.recv(100)
        except ConnectionResetError:
            answer = b""
        assert answer == b"" or answer[:1] == b"\x15", answer  # closed, or a TLS alert record: never a Kafka answer
    with socket.create_connection(("127.0.0.1", broker.port), timeout=10) as raw:
        raw.sendall(b"\x16\x03\x01\xff\xff" + bytes(range(256)) * 4)  # a handshake record of garbage
    assert broker.alive()
    assert _confluent_round_trip(broker.bootstrap, {"security.protocol": "SSL", "ssl.ca.location": tls.ca}, "after") == [
        b"m0", b"m1", b"m2"]
    log = broker.stderr_text()
    assert "Traceback" not in log, log[-3000:]
    assert "TLS handshake with ('127.0.0.1'" in log and "failed: WRONG_VERSION_NUMBER" in log, log[-3000:]


def test_bad_tls_settings_stop_the_broker_before_it_starts(tmp_path):
    logs = tmp_path / "logs"
    for extra, expected in (
        ("ssl.keystore.location=/nonexistent.pem\n", "is not a readable file"),
        ("", "ssl.keystore.location is not set"),
        ("ssl.keystore.type=JKS\nssl.keystore.location=/x.jks\n", "only PEM stores"),
        ("ssl.keystore.location=/etc/hostname\n", "no usable private key"),
    ):
        properties = f"node.id=1\nlisteners=SSL://127.0.0.1:0\nlog.dirs={logs}\n{extra}"
        path = tmp_path / "bad.properties"
        path.write_text(properties)
        result = subprocess.run(["python3", "-m", "broker", "--config", str(path)], capture_output=True, text=True, timeout=30)
        assert result.returncode == 2, result.stderr
        assert expected in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_describe_configs_hides_the_key_password(tmp_path):
    broker, tls = _ssl_broker(tmp_path, extra="ssl.key.password=hunter2-secret\n")
    try:
        context = ssl.create_default_context(cafile=tls.ca)
        m = k.module("describe_configs", 4)
        request = m.DescribeConfigsRequest(resources=(m.DescribeConfigsResource(
            resource_type=4, resource_name="1", configuration_keys=("ssl.key.password", "ssl.client.auth")),),
            include_synonyms=False, include_documentation=False)
        with RawClient(broker.port, ssl_context=context) as client:
            answer = client.call(request).results[0].configs
        by_name = {c.name: c for c in answer}
        assert (by_name["ssl.key.password"].value, by_name["ssl.key.password"].is_sensitive) == (None, True)
        assert (by_name["ssl.client.auth"].value, by_name["ssl.client.auth"].is_sensitive) == ("none", False)
        assert "hunter2-secret" not in broker.stderr_text()
    finally:
        broker.kill()
