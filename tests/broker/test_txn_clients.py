"""Transactions with real clients against one broker process (KIP-98, KIP-447).

confluent-kafka (librdkafka), kafka-python and aiokafka transactional producers
commit and abort; a read_committed consumer sees only committed values, a
read_uncommitted one sees the aborted ones too; offsets sent with
send_offsets_to_transaction become the group's committed offsets on commit and
not on abort.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from .test_txn_requests import TXN_OVERRIDES

pytestmark = pytest.mark.slow


def _create_topic(bootstrap: str, name: str, partitions: int = 1) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(10)


def _read_all(bootstrap: str, topic: str, isolation: str, last_value: bytes, timeout_s: float = 15.0) -> list[bytes]:
    """Every value of partition 0 up to and including `last_value` (which must arrive), with confluent-kafka."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{isolation}", "isolation.level": isolation,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        values: list[bytes] = []
        deadline = time.monotonic() + timeout_s
        while last_value not in values:
            assert time.monotonic() < deadline, f"{isolation} consumer of {topic} saw only {values} within {timeout_s} s"
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                values.append(message.value())
        return values
    finally:
        consumer.close()


def _committed(bootstrap: str, group: str, topic: str) -> int:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        return consumer.committed([TopicPartition(topic, 0)], timeout=10)[0].offset
    finally:
        consumer.close()


def test_confluent_kafka_commit_and_abort(broker_factory):
    from confluent_kafka import Producer

    broker = broker_factory(TXN_OVERRIDES)
    _create_topic(broker.bootstrap, "ck")
    producer = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "ck-tx"})
    producer.init_transactions(10)
    producer.begin_transaction()
    for value in (b"c0", b"c1"):
        producer.produce("ck", value=value)
    producer.commit_transaction(10)
    producer.begin_transaction()
    for value in (b"a0", b"a1"):
        producer.produce("ck", value=value)
    producer.flush(10)  # written, then aborted (abort_transaction alone would purge them unsent)
    producer.abort_transaction(10)
    producer.begin_transaction()
    producer.produce("ck", value=b"c2")
    producer.commit_transaction(10)
    assert _read_all(broker.bootstrap, "ck", "read_committed", b"c2") == [b"c0", b"c1", b"c2"]
    assert _read_all(broker.bootstrap, "ck", "read_uncommitted", b"c2") == [b"c0", b"c1", b"a0", b"a1", b"c2"]


def test_confluent_kafka_send_offsets_to_transaction(broker_factory):
    from confluent_kafka import Consumer, Producer, TopicPartition

    broker = broker_factory(TXN_OVERRIDES)
    _create_topic(broker.bootstrap, "in")
    _create_topic(broker.bootstrap, "out")
    seed = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(6):
        seed.produce("in", value=b"%d" % i)
    seed.flush(10)
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "rpw", "isolation.level": "read_committed",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    producer = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "rpw-tx"})
    try:
        consumer.subscribe(["in"])
        producer.init_transactions(10)
        taken: list[bytes] = []
        deadline = time.monotonic() + 20
        while len(taken) < 3:
            assert time.monotonic() < deadline, f"consumed only {taken}"
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                taken.append(message.value())
        # first transaction: 3 values, offsets sent, committed
        producer.begin_transaction()
        for value in taken:
            producer.produce("out", value=b"out-" + value)
        producer.send_offsets_to_transaction([TopicPartition("in", 0, 3)], consumer.consumer_group_metadata(), 10)
        producer.commit_transaction(10)
        assert _committed(broker.bootstrap, "rpw", "in") == 3
        # second transaction: offsets sent, then aborted: the committed offset stays at 3
        producer.begin_transaction()
        producer.produce("out", value=b"out-aborted")
        producer.send_offsets_to_transaction([TopicPartition("in", 0, 6)], consumer.consumer_group_metadata(), 10)
        producer.flush(10)
        producer.abort_transaction(10)
        assert _committed(broker.bootstrap, "rpw", "in") == 3
        producer.begin_transaction()
        producer.produce("out", value=b"out-last")
        producer.commit_transaction(10)
    finally:
        consumer.close()
    assert _read_all(broker.bootstrap, "out", "read_committed", b"out-last") == [b"out-0", b"out-1", b"out-2", b"out-last"]


def test_kafka_python_commit_abort_and_offsets(broker_factory):
    from kafka import KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition

    broker = broker_factory(TXN_OVERRIDES)
    _create_topic(broker.bootstrap, "kp")
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id="kp-tx")
    try:
        producer.init_transactions()
        producer.begin_transaction()
        producer.send("kp", b"c0")
        producer.send_offsets_to_transaction({TopicPartition("kp", 0): OffsetAndMetadata(1, "", -1)}, "kp-group")
        producer.commit_transaction()
        producer.begin_transaction()
        producer.send("kp", b"a0")
        producer.send_offsets_to_transaction({TopicPartition("kp", 0): OffsetAndMetadata(2, "", -1)}, "kp-group")
        producer.flush()
        producer.abort_transaction()
        producer.begin_transaction()
        producer.send("kp", b"c1")
        producer.commit_transaction()
    finally:
        producer.close()
    assert _committed(broker.bootstrap, "kp-group", "kp") == 1
    for isolation, expected in (("read_committed", [b"c0", b"c1"]), ("read_uncommitted", [b"c0", b"a0", b"c1"])):
        consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, isolation_level=isolation,
                                 auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=3000)
        try:
            consumer.assign([TopicPartition("kp", 0)])
            assert [m.value for m in consumer] == expected
        finally:
            consumer.close()


def test_aiokafka_transactions(broker_factory):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    broker = broker_factory(TXN_OVERRIDES)
    _create_topic(broker.bootstrap, "aio")

    async def run() -> dict[str, list[bytes]]:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id="aio-tx")
        await producer.start()
        try:
            async with producer.transaction():
                await producer.send_and_wait("aio", b"c0")
            await producer.begin_transaction()
            await producer.send_and_wait("aio", b"a0")
            await producer.abort_transaction()
            async with producer.transaction():
                await producer.send_and_wait("aio", b"c1")
        finally:
            await producer.stop()
        seen = {}
        for isolation in ("read_committed", "read_uncommitted"):
            consumer = AIOKafkaConsumer("aio", bootstrap_servers=broker.bootstrap, isolation_level=isolation,
                                        auto_offset_reset="earliest", enable_auto_commit=False)
            await consumer.start()
            try:
                values: list[bytes] = []
                deadline = time.monotonic() + 10
                while b"c1" not in values and time.monotonic() < deadline:
                    batches = await consumer.getmany(timeout_ms=500)
                    values += [m.value for messages in batches.values() for m in messages]
                seen[isolation] = values
            finally:
                await consumer.stop()
        return seen

    seen = asyncio.run(run())
    assert seen == {"read_committed": [b"c0", b"c1"], "read_uncommitted": [b"c0", b"a0", b"c1"]}
