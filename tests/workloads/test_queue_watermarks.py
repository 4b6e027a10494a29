"""What the queue workload records of watermarks, and its multi-message sends (no broker needed).

The consumer here is a fake that answers like librdkafka's: `consume` hands out
messages, `get_watermark_offsets(tp, cached=True)` the high watermark of the
last fetch response (or -1001 before any).
"""

from __future__ import annotations

import random

from workloads.core import invocation
from workloads.queue import (FETCH_HIGH_WATERMARKS, LISTED_HIGH_WATERMARKS, MULTI_SEND_MAX, QueueWorkload,
                             final_read_extra, watermark_extra)
from workloads.kafka_admin import combine_send_outcomes


class FakeMessage:
    def __init__(self, partition: int, offset: int, value: int):
        self._partition, self._offset, self._value = partition, offset, value

    def error(self):
        return None

    def partition(self):
        return self._partition

    def offset(self):
        return self._offset

    def value(self):
        return str(self._value).encode()


class FakeConsumer:
    """consume() returns the scripted batches; cached watermarks come from `highs` (-1001: none yet)."""

    def __init__(self, batches, highs):
        self.batches = list(batches)
        self.highs = highs
        self.cached_asks = []

    def consume(self, num_messages=1, timeout=-1):
        return self.batches.pop(0) if self.batches else []

    def get_watermark_offsets(self, tp, timeout=None, cached=False):
        assert cached, "a poll must read the cached watermarks, never send a request"
        self.cached_asks.append(tp.partition)
        return 0, self.highs.get(tp.partition, -1001)

    def close(self):
        self.closed = True


def confluent_client(consumer):
    from workloads.queue import ConfluentQueueClient

    client = ConfluentQueueClient(QueueWorkload(delivery="at-least-once", keys=4), "127.0.0.1:1", 0)
    client.consumer = consumer  # never connects: the consumer is a fake
    return client


def test_a_poll_records_the_cached_high_watermark_of_each_key_it_read():
    consumer = FakeConsumer([[FakeMessage(1, 7, 70), FakeMessage(1, 8, 80), FakeMessage(2, 3, 30)]],
                            {1: 9, 2: -1001, 3: 50})
    client = confluent_client(consumer)
    try:
        done = client.invoke(invocation("poll", [["poll"]]))
        assert done.type == "ok"
        assert done.value == [["poll", {1: [[7, 70], [8, 80]], 2: [[3, 30]]}]]
        # key 2 has no fetched watermark yet (-1001): nothing is invented; key 3 was not read
        assert dict(done.extra) == {FETCH_HIGH_WATERMARKS: {1: 9}}
        assert sorted(consumer.cached_asks) == [1, 2]
        # a poll that read nothing records nothing
        assert FETCH_HIGH_WATERMARKS not in client.invoke(invocation("poll", [["poll"]])).extra
    finally:
        client.close()


def test_watermark_fields_keep_only_known_values():
    assert watermark_extra({0: 5, 1: -1, 2: None}, {0: 6, 3: -1001}) == {FETCH_HIGH_WATERMARKS: {0: 5},
                                                                         LISTED_HIGH_WATERMARKS: {0: 6}}
    assert watermark_extra({}, None) == {}


def test_a_final_read_names_the_keys_it_left_below_their_listed_watermarks():
    # key 0 reached its watermark, key 1 stopped two short, key 2 was never read (no position)
    assert final_read_extra({0: 7, 1: 3, 2: None}, {0: 7, 1: 5, 2: 4}) == {"final-read-short": {1: [3, 5], 2: [0, 4]}}
    assert final_read_extra({0: 7}, {0: 7}) == {}


def test_some_sends_carry_several_messages_to_one_key():
    w = QueueWorkload(keys=4)
    rng = random.Random(11)
    sends = [op.value for op in (w.next_op(rng, 0) for _ in range(2000)) if op.f == "send"]
    sizes = [len(mops) for mops in sends]
    assert set(sizes) == set(range(1, MULTI_SEND_MAX + 1))
    assert 0.1 < sum(1 for n in sizes if n > 1) / len(sizes) < 0.3
    for mops in sends:
        assert len({m[1] for m in mops}) == 1  # one key, so one partition: a multi-record batch
    values = [m[2] for mops in sends for m in mops]
    assert len(values) == len(set(values))


def test_a_multi_message_send_is_ok_only_when_every_message_is():
    assert combine_send_outcomes([("ok", None), ("ok", None)]) == ("ok", None)
    assert combine_send_outcomes([("fail", ["a"]), ("fail", ["b"])]) == ("fail", ["a"])
    # one written, one refused: some of it happened, so it is unknown
    assert combine_send_outcomes([("ok", None), ("fail", ["buffer-full", "x"])]) == ("info", ["buffer-full", "x"])
    assert combine_send_outcomes([("fail", ["a"]), ("info", ["timeout", "t"])]) == ("info", ["a"])
