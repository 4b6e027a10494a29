"""The confluent queue client against a real broker process whose answers are held back (slow).

Regression for a nonmonotonic-poll that was the client library's, not the
broker's: librdkafka 2.16 answers a late (outdated) ListOffsets reply for a
logical start offset by starting another offset query for that stale logical
offset, so a consumer that re-assigns a partition while such a query is in
flight later jumps back to the beginning ("outdated offset response:
(re)starting offset query timer for offset BEGINNING"). The workload now hands
librdkafka absolute offsets only. The broker is held back with SIGSTOP, so its
answers arrive after the client's next assign, as a Fetch long-poll ahead on
the same connection made them arrive in the Docker run (seed 41).
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from confluent_kafka import Producer

from tests.broker.conftest import BrokerProcess
from workloads.core import invocation
from workloads.queue import QueueWorkload

pytestmark = pytest.mark.slow


def test_reassigning_while_offset_answers_are_late_never_moves_a_key_backwards(tmp_path):
    broker = BrokerProcess(tmp_path / "broker").start()
    resume = None
    client = None
    try:
        workload = QueueWorkload(delivery="at-most-once", keys=1, op_timeout_s=10.0)
        workload.setup(broker.bootstrap)
        producer = Producer({"bootstrap.servers": broker.bootstrap})
        for value in range(10):
            producer.produce(workload.topic, str(value).encode(), partition=0)
        assert producer.flush(10) == 0
        client = workload.open_client(broker.bootstrap, 0)
        client._ensure_consumer().list_topics(workload.topic, timeout=10)  # the partition's leader is known

        os.kill(broker.process.pid, signal.SIGSTOP)
        resume = threading.Timer(0.6, os.kill, (broker.process.pid, signal.SIGCONT))
        resume.start()
        # Two assigns while the broker holds every answer back, then one at the position the
        # first poll leaves; the old client started the key at OFFSET_BEGINNING in the first two.
        assert client.invoke(invocation("assign", [0])).type == "ok"
        assert client.invoke(invocation("assign", [0])).type == "ok"
        resume.join()
        polled: list[int] = []
        reassigned = False
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline:
            completion = client.invoke(invocation("poll", [["poll"]]))
            assert completion.type == "ok", completion.error
            polled += [offset for offset, _value in completion.value[0][1].get(0, [])]
            if polled and not reassigned:
                assert client.invoke(invocation("assign", [0])).type == "ok"
                reassigned = True
            time.sleep(0.05)
        assert polled == list(range(10)), f"key 0 was polled at offsets {polled}"
    finally:
        if resume is not None:
            resume.cancel()
        os.kill(broker.process.pid, signal.SIGCONT)
        if client is not None:
            client.close()
        broker.kill()
