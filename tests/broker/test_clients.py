"""Real clients against a real broker process: confluent-kafka (librdkafka), kafka-python, aiokafka, kcat.

Each client runs with its default settings (the consumer of confluent-kafka
needs a group.id, which is set; its commits fail with COORDINATOR_NOT_AVAILABLE
and consumption does not depend on them). A client produces keyed messages to a
6-partition topic, then assign-based consumers read every partition from the
beginning. The check: every acknowledged message is read exactly once, in the
partition and at the offset its delivery report named, in offset order per
partition, and nothing unacknowledged appears.
"""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from collections import Counter

import pytest

from .conftest import BrokerProcess

PARTITIONS = 6
VALUE = b"v" * 100
CODECS = ["gzip", "snappy", "lz4", "zstd"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shared_broker(tmp_path_factory):
    process = BrokerProcess(tmp_path_factory.mktemp("clients"), {"num.partitions": str(PARTITIONS)})
    try:
        yield process.start()
    finally:
        process.kill()
        print(f"---- stderr of clients broker ----\n{process.stderr_text()[-6000:]}")


def check_exactly_once(acked: dict[bytes, tuple[int, int]], consumed: list[tuple[bytes, int, int]]) -> None:
    """`acked`: key -> (partition, offset) from delivery reports; `consumed`: (key, partition, offset) in read order."""
    counts = Counter(key for key, _, _ in consumed)
    duplicates = [key for key, n in counts.items() if n > 1]
    assert not duplicates, f"{len(duplicates)} keys read more than once, e.g. {duplicates[:3]}"
    missing = set(acked) - set(counts)
    assert not missing, f"{len(missing)} acknowledged keys never read, e.g. {sorted(missing)[:3]}"
    unexpected = set(counts) - set(acked)
    assert not unexpected, f"{len(unexpected)} keys read that were never acknowledged, e.g. {sorted(unexpected)[:3]}"
    last_offset: dict[int, int] = {}
    for key, partition, offset in consumed:
        assert acked[key] == (partition, offset), f"{key!r} acknowledged at {acked[key]}, read at {(partition, offset)}"
        assert offset > last_offset.get(partition, -1), f"partition {partition} went back from {last_offset[partition]} to {offset}"
        last_offset[partition] = offset


def _create_topic(bootstrap: str, topic: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, PARTITIONS, 1)]).values():
        future.result(30)


# ---- confluent-kafka (librdkafka) -------------------------------------------------


def confluent_produce(bootstrap: str, topic: str, count: int, extra: dict | None = None) -> dict[bytes, tuple[int, int]]:
    from confluent_kafka import Producer

    acked: dict[bytes, tuple[int, int]] = {}
    errors = []

    def on_delivery(err, msg):
        if err is None:
            acked[msg.key()] = (msg.partition(), msg.offset())
        else:
            errors.append(err)

    producer = Producer({"bootstrap.servers": bootstrap, **(extra or {})})
    for i in range(count):
        while True:
            try:
                producer.produce(topic, key=b"key-%d" % i, value=VALUE, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.1)
        if i % 1000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0
    assert not errors, errors[:3]
    return acked


def confluent_consume(bootstrap: str, topic: str, count: int, extra: dict | None = None) -> list[tuple[bytes, int, int]]:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "assign-only", **(extra or {})})
    consumed = []
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
        deadline = time.monotonic() + 120
        while len(consumed) < count and time.monotonic() < deadline:
            for message in consumer.consume(10_000, 1.0):
                assert message.error() is None, message.error()
                consumed.append((message.key(), message.partition(), message.offset()))
        # a little longer, to see duplicates or extras if there are any
        for message in consumer.consume(10_000, 0.5):
            consumed.append((message.key(), message.partition(), message.offset()))
    finally:
        consumer.close()
    return consumed


def test_confluent_kafka_100k(shared_broker):
    _create_topic(shared_broker.bootstrap, "ck")
    acked = confluent_produce(shared_broker.bootstrap, "ck", 100_000)
    assert len(acked) == 100_000
    check_exactly_once(acked, confluent_consume(shared_broker.bootstrap, "ck", 100_000))


@pytest.mark.parametrize("codec", CODECS)
def test_confluent_kafka_compression(shared_broker, codec):
    topic = f"ck-{codec}"
    _create_topic(shared_broker.bootstrap, topic)
    acked = confluent_produce(shared_broker.bootstrap, topic, 10_000, {"compression.type": codec})
    check_exactly_once(acked, confluent_consume(shared_broker.bootstrap, topic, 10_000))


# ---- kafka-python ------------------------------------------------------------------


def kafka_python_produce(bootstrap: str, topic: str, count: int, **extra) -> dict[bytes, tuple[int, int]]:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, **extra)
    try:
        futures = [(b"key-%d" % i, producer.send(topic, key=b"key-%d" % i, value=VALUE)) for i in range(count)]
        producer.flush(60)
        acked = {}
        for key, future in futures:
            metadata = future.get(60)
            acked[key] = (metadata.partition, metadata.offset)
    finally:
        producer.close()
    return acked


def kafka_python_consume(bootstrap: str, topic: str, count: int) -> list[tuple[bytes, int, int]]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    consumed = []
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        consumer.seek_to_beginning()
        deadline = time.monotonic() + 120
        while len(consumed) < count and time.monotonic() < deadline:
            for records in consumer.poll(1000, max_records=10_000).values():
                consumed.extend((r.key, r.partition, r.offset) for r in records)
        for records in consumer.poll(500).values():
            consumed.extend((r.key, r.partition, r.offset) for r in records)
    finally:
        consumer.close()
    return consumed


def test_kafka_python_100k(shared_broker):
    _create_topic(shared_broker.bootstrap, "kp")
    acked = kafka_python_produce(shared_broker.bootstrap, "kp", 100_000)
    assert len(acked) == 100_000
    check_exactly_once(acked, kafka_python_consume(shared_broker.bootstrap, "kp", 100_000))


@pytest.mark.parametrize("codec", CODECS)
def test_kafka_python_compression(shared_broker, codec):
    topic = f"kp-{codec}"
    _create_topic(shared_broker.bootstrap, topic)
    acked = kafka_python_produce(shared_broker.bootstrap, topic, 5_000, compression_type=codec)
    check_exactly_once(acked, kafka_python_consume(shared_broker.bootstrap, topic, 5_000))


# ---- aiokafka ----------------------------------------------------------------------


async def _aiokafka_round_trip(bootstrap: str, topic: str, count: int, **extra):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **extra)
    await producer.start()
    acked = {}
    try:
        pending = []
        for i in range(count):
            key = b"key-%d" % i
            pending.append((key, await producer.send(topic, key=key, value=VALUE)))
        for key, future in pending:
            metadata = await future
            acked[key] = (metadata.partition, metadata.offset)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    consumed = []
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        await consumer.seek_to_beginning()
        deadline = time.monotonic() + 120
        while len(consumed) < count and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=1000, max_records=10_000)).values():
                consumed.extend((r.key, r.partition, r.offset) for r in records)
        for records in (await consumer.getmany(timeout_ms=500)).values():
            consumed.extend((r.key, r.partition, r.offset) for r in records)
    finally:
        await consumer.stop()
    return acked, consumed


def test_aiokafka_100k(shared_broker):
    _create_topic(shared_broker.bootstrap, "ak")
    acked, consumed = asyncio.run(_aiokafka_round_trip(shared_broker.bootstrap, "ak", 100_000))
    assert len(acked) == 100_000
    check_exactly_once(acked, consumed)


@pytest.mark.parametrize("codec", CODECS)
def test_aiokafka_compression(shared_broker, codec):
    topic = f"ak-{codec}"
    _create_topic(shared_broker.bootstrap, topic)
    acked, consumed = asyncio.run(_aiokafka_round_trip(shared_broker.bootstrap, topic, 5_000, compression_type=codec))
    check_exactly_once(acked, consumed)


# ---- kcat ---------------------------------------------------------------------------------


def test_kcat_metadata_produce_consume(shared_broker):
    bootstrap = shared_broker.bootstrap
    lines = [f"line-{i}" for i in range(100)]
    subprocess.run(["kcat", "-b", bootstrap, "-P", "-t", "kc", "-p", "2"], input="\n".join(lines) + "\n",
                   text=True, check=True, timeout=60)
    listing = subprocess.run(["kcat", "-b", bootstrap, "-L", "-t", "kc"], capture_output=True, text=True, check=True, timeout=60)
    assert 'topic "kc" with 6 partitions' in listing.stdout
    assert f"broker 1 at {bootstrap}" in listing.stdout
    consumed = subprocess.run(["kcat", "-b", bootstrap, "-C", "-t", "kc", "-p", "2", "-o", "beginning", "-e", "-f", "%o %s\n"],
                              capture_output=True, text=True, check=True, timeout=60)
    assert consumed.stdout.splitlines() == [f"{i} {line}" for i, line in enumerate(lines)]


# ---- durability ---------------------------------------------------------------------------


def test_clean_restart_keeps_every_message(broker_factory):
    broker = broker_factory({"num.partitions": str(PARTITIONS)})
    _create_topic(broker.bootstrap, "restart")
    acked = confluent_produce(broker.bootstrap, "restart", 20_000)
    assert broker.stop() == 0
    broker.restart()
    check_exactly_once(acked, confluent_consume(broker.bootstrap, "restart", 20_000))


def test_sigkill_under_load_keeps_every_acknowledged_message(broker_factory):
    from confluent_kafka import Producer

    broker = broker_factory({"num.partitions": str(PARTITIONS), "log.flush.interval.messages": "1"})
    _create_topic(broker.bootstrap, "kill")
    acked: dict[bytes, tuple[int, int]] = {}
    failed = []

    def on_delivery(err, msg):
        if err is None:
            acked[msg.key()] = (msg.partition(), msg.offset())
        else:
            failed.append(msg.key())

    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5, "message.timeout.ms": 5000})
    stop = threading.Event()

    def produce_until_stopped():
        i = 0
        while not stop.is_set():
            try:
                producer.produce("kill", key=b"key-%d" % i, value=VALUE, on_delivery=on_delivery)
                i += 1
            except BufferError:
                producer.poll(0.05)
            if i % 100 == 0:
                producer.poll(0)

    thread = threading.Thread(target=produce_until_stopped)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while len(acked) < 5_000 and time.monotonic() < deadline:
            time.sleep(0.05)
        broker.kill()
    finally:
        stop.set()
        thread.join()
    producer.flush(15)
    assert len(acked) >= 5_000, f"only {len(acked)} messages acknowledged before the kill"
    broker.restart()
    consumed = confluent_consume(broker.bootstrap, "kill", len(acked))
    counts = Counter(key for key, _, _ in consumed)
    lost = [key for key in acked if counts[key] == 0]
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged messages lost after SIGKILL, e.g. {lost[:3]}"
    for key, partition, offset in consumed:
        if key in acked:
            assert acked[key] == (partition, offset)


def test_confluent_admin_client(shared_broker):
    from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

    admin = AdminClient({"bootstrap.servers": shared_broker.bootstrap})
    for future in admin.create_topics([NewTopic("admin", 3, 1, config={"retention.ms": "3600000"})]).values():
        future.result(30)
    assert len(admin.list_topics(timeout=10).topics["admin"].partitions) == 3
    described = {resource.restype: future.result(30) for resource, future in
                 admin.describe_configs([ConfigResource("topic", "admin"), ConfigResource("broker", "1")]).items()}
    assert described[ConfigResource.Type.TOPIC]["retention.ms"].value == "3600000"
    assert described[ConfigResource.Type.BROKER]["num.partitions"].value == str(PARTITIONS)
    for future in admin.delete_topics(["admin"]).values():
        future.result(30)
    assert "admin" not in admin.list_topics(timeout=10).topics
