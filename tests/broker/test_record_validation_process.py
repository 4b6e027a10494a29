"""Record validation on a real broker process over TCP: batches with a valid header and CRC and a lying
body, for every codec, are refused with CORRUPT_MESSAGE / INVALID_RECORD on the same connection, which
stays usable; the good record a real producer (confluent-kafka) sends next is the one a real consumer
reads first. Before the leader validated records, the lies were acknowledged at offset 0 and the
consumer stopped there for ever."""

from __future__ import annotations

import time

import pytest

from . import kafka_requests as req
from .lying_batches import CODEC_IDS, GOOD, LIES, compress, lying_batch
from .raw_client import RawClient

CORRUPT_MESSAGE = 2
INVALID_RECORD = 87


def produce_raw(client: RawClient, topic: str, batch: bytes, version: int):
    return client.call(req.produce(topic, 0, batch, version=version)).responses[0].partition_responses[0]


def confluent_produce_one(bootstrap: str, topic: str, value: bytes, codec: str) -> int:
    from confluent_kafka import Producer

    reports = []
    producer = Producer({"bootstrap.servers": bootstrap, "compression.type": codec, "acks": "all"})
    producer.produce(topic, value=value, partition=0, on_delivery=lambda err, msg: reports.append((err, msg.offset())))
    assert producer.flush(30) == 0
    [(err, offset)] = reports
    assert err is None, err
    return offset


def confluent_read_first(bootstrap: str, topic: str, timeout_s: float = 30.0):
    """The first record a real consumer reads from offset 0, or the error that stopped it."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "validation", "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + timeout_s
        errors = []
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                errors.append(msg.error())
                continue
            return msg.offset(), msg.value()
        raise AssertionError(f"no record read from {topic} within {timeout_s} s; consumer errors {errors[:3]}")
    finally:
        consumer.close()


@pytest.mark.slow
@pytest.mark.parametrize("codec", sorted(CODEC_IDS))
def test_lying_batches_are_refused_and_the_next_good_record_is_read(broker, codec):
    topic = f"lies-{codec}"
    codec_id = CODEC_IDS[codec]
    with RawClient(broker.port) as client:
        assert client.call(req.create_topic(topic, 1)).topics[0].error_code == 0
        for name in ("count 2^31-1", "count != last_offset_delta+1", "random bytes", "offset deltas out of order"):
            body, count, last = LIES[name][0]()
            batch = lying_batch(compress(codec_id, body), count, last, attributes=codec_id)
            result = produce_raw(client, topic, batch, version=9)
            assert result.error_code == INVALID_RECORD, (name, result)
            assert "record" in result.error_message, result
            assert produce_raw(client, topic, batch, version=7).error_code == CORRUPT_MESSAGE, name
        if codec_id:
            garbage = lying_batch(bytes(range(256)), 3, attributes=codec_id)
            result = produce_raw(client, topic, garbage, version=9)
            assert result.error_code == CORRUPT_MESSAGE and codec in result.error_message, result
        for bad_codec in (5, 6, 7):
            result = produce_raw(client, topic, lying_batch(GOOD, 3, attributes=bad_codec), version=11)
            assert result.error_code == CORRUPT_MESSAGE and f"codec id {bad_codec}" in result.error_message, result
        # the connection survived every refusal, and nothing was appended
        assert client.call(req.list_offsets(topic, 0, -1)).topics[0].partitions[0].offset == 0
    offset = confluent_produce_one(broker.bootstrap, topic, b"the good record", codec)
    assert offset == 0
    assert confluent_read_first(broker.bootstrap, topic) == (0, b"the good record")
    assert broker.alive()
