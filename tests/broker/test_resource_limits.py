"""Bounded resources (issue 17, point 1), on real broker processes with a low descriptor limit (ulimit -n).

- CreateTopics beyond the descriptors left: the topic is not created (no ghost
  partition count), the request gets an error, and the broker keeps serving and
  restarts.
- log.message.timestamp.*.max.ms (KIP-937) bound the timestamps that drive
  time-based segment rolls, so a producer cannot roll a segment per batch.
- connections: connections.max.idle.ms, a request-read timeout, max.connections,
  max.connections.per.ip and queued.max.request.bytes.
- max.broker.partitions (KIP-578) bounds CreateTopics and Metadata
  auto-creation with POLICY_VIOLATION; more than 10,000 partitions in one
  CreateTopics is refused whole, as Kafka does (KAFKA-17870).
"""

from __future__ import annotations

import dataclasses
import functools
import struct
import time

import pytest

from tests.broker import kafka_requests as k
from tests.broker.conftest import BrokerProcess
from tests.broker.raw_client import RawClient
from tests.broker.test_replication_process import free_ports

POLICY_VIOLATION = 44
UNKNOWN_SERVER_ERROR = -1
LEADER_NOT_AVAILABLE = 5
INVALID_TIMESTAMP = 32
INVALID_CONFIG = 40
OPEN_FILES_LIMIT = 200


@pytest.fixture
def limited_broker(broker_factory):
    return functools.partial(broker_factory, open_files_limit=OPEN_FILES_LIMIT)


def _topics(client: RawClient) -> dict[str, int]:
    return {t.name: len(t.partitions) for t in client.call(k.metadata(None)).topics}


def _produce_and_read(client: RawClient, topic: str) -> None:
    assert client.call(k.create_topic(topic, 1)).topics[0].error_code == 0
    produced = client.call(k.produce(topic, 0, k.batch([(None, b"still-serving")])))
    assert produced.responses[0].partition_responses[0].error_code == 0
    fetched = client.call(k.fetch(topic, 0, 0)).responses[0].partitions[0]
    assert fetched.error_code == 0 and b"still-serving" in bytes(fetched.records)


MODES = ("one-node", "cluster")  # a node alone, and a one-voter cluster, whose topics the controller creates


def _start(limited_broker, mode: str, overrides: dict[str, str]) -> BrokerProcess:
    if mode == "cluster":
        port = free_ports(1)[0]
        overrides = {**overrides, "listeners": f"PLAINTEXT://127.0.0.1:{port}",
                     "controller.quorum.voters": f"1@127.0.0.1:{port}"}
    broker = limited_broker(overrides)
    if mode == "cluster":
        with RawClient(broker.port) as client:
            probe = dataclasses.replace(k.create_topic("probe", 1), validate_only=True)
            _wait_until(lambda: client.call(probe).topics[0].error_code == 0)  # registered and unfenced
    return broker


def _wait_until(condition, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met within 30 s"
        time.sleep(0.1)


@pytest.mark.parametrize("mode", MODES)
def test_many_partitions_hold_a_bounded_number_of_descriptors_and_restart(limited_broker, mode):
    """The issue's evidence: a CreateTopics of more partitions than descriptors (or a Metadata request naming
    as many new topics) left the node serving nothing, and unable to restart. Segment files now close and
    reopen on demand (broker.io.file_pool), within half of ulimit -n."""
    broker = _start(limited_broker, mode, {})
    partitions = 2 * OPEN_FILES_LIMIT
    with RawClient(broker.port) as client:
        assert client.call(k.create_topic("wide", partitions)).topics[0].error_code == 0
        for partition in range(partitions):
            produced = client.call(k.produce("wide", partition, k.batch([(None, b"p%d" % partition)])))
            assert produced.responses[0].partition_responses[0].error_code == 0, partition
        names = [f"auto-{n}" for n in range(OPEN_FILES_LIMIT)]
        client.call(k.metadata(names))
        _wait_until(lambda: len(_topics(client)) == 1 + OPEN_FILES_LIMIT)
        _produce_and_read(client, "after")
    assert broker.stop() == 0
    broker.restart()  # used to fail: Too many open files while loading the logs
    with RawClient(broker.port) as client:
        for partition in (0, partitions // 2, partitions - 1):
            def fetched(partition=partition):
                answer = client.call(k.fetch("wide", partition, 0)).responses[0].partitions[0]
                return answer.error_code == 0 and b"p%d" % partition in bytes(answer.records)
            _wait_until(fetched)  # a cluster node leads again once it has re-registered
    assert broker.stop() == 0


def test_a_node_out_of_descriptors_answers_errors_leaves_no_ghost_and_recovers(limited_broker):
    """With every descriptor taken by connections, a CreateTopics fails whole (no topic whose partitions are
    missing), is answered with the reason, and works again once the connections go; the node restarts."""
    broker = limited_broker()
    client = RawClient(broker.port)
    hogs = []
    try:
        # the answers' codecs load lazily, from files: load them while descriptors are left
        client.call(dataclasses.replace(k.create_topic("warm-up", 1), validate_only=True))
        _topics(client)
        while True:  # connections until the broker can accept no more
            hog = RawClient(broker.port, timeout_s=1.0)
            hogs.append(hog)
            try:
                hog.call(k.api_versions())
            except OSError:
                break
            assert len(hogs) < OPEN_FILES_LIMIT, "the broker accepted more connections than it has descriptors"
        answer = client.call(k.create_topic("late", 5)).topics[0]
        assert answer.error_code == UNKNOWN_SERVER_ERROR and "Too many open files" in answer.error_message
        for hog in hogs:
            hog.close()
        hogs.clear()
        time.sleep(0.5)
        assert "late" not in _topics(client)
        _produce_and_read(client, "late")  # descriptors came back: the same name is created and serves
    finally:
        client.close()
        for hog in hogs:
            hog.close()
    assert broker.stop() == 0
    broker.restart()
    with RawClient(broker.port) as again:
        assert _topics(again) == {"late": 1}


@pytest.mark.parametrize("mode", MODES)
def test_max_broker_partitions_bounds_create_topics_and_auto_creation(limited_broker, mode):
    broker = _start(limited_broker, mode, {"max.broker.partitions": "12", "num.partitions": "2"})
    with RawClient(broker.port) as client:
        answer = client.call(k.create_topic("big", 13)).topics[0]
        assert (answer.error_code, answer.error_message) == (
            POLICY_VIOLATION, "13 partitions x 1 replicas would give broker 1 13 partition replicas, above "
                              "max.broker.partitions=12")
        assert client.call(k.create_topic("ten", 10)).topics[0].error_code == 0
        # a Metadata request naming many new topics creates only what the limit leaves room for
        names = [f"auto-{n}" for n in range(50)]
        answered = {t.name: t.error_code for t in client.call(k.metadata(names)).topics}
        assert answered["auto-0"] in (0, LEADER_NOT_AVAILABLE)
        assert all(answered[name] == POLICY_VIOLATION for name in names[1:])
        assert _topics(client) == {"ten": 10, "auto-0": 2}


@pytest.mark.parametrize("mode", MODES)
def test_more_than_ten_thousand_partitions_in_one_request_are_refused_whole(limited_broker, mode):
    broker = _start(limited_broker, mode, {"max.broker.partitions": "100000"})
    with RawClient(broker.port) as client:
        m = k.module("create_topics", 7)
        request = k.create_topic("a", 5001)
        request = m.CreateTopicsRequest(topics=request.topics + k.create_topic("b", 5000).topics,
                                        timeout=request.timeout, validate_only=False)
        answers = {t.name: (t.error_code, t.error_message) for t in client.call(request).topics}
        assert answers == {name: (POLICY_VIOLATION, "Excessively large number of partitions per request.")
                           for name in ("a", "b")}
        assert _topics(client) == {}


def _produce_at(client: RawClient, topic: str, timestamp_ms: int) -> int:
    produced = client.call(k.produce(topic, 0, k.batch([(None, b"v")], base_timestamp=timestamp_ms)))
    return produced.responses[0].partition_responses[0].error_code


def test_timestamps_that_jump_ahead_cannot_roll_a_segment_per_batch(limited_broker):
    """The issue's evidence: produces whose timestamps jump 8 days each rolled a segment (a descriptor) per
    batch until none was left. KIP-937's log.message.timestamp.after.max.ms (1 hour) refuses them."""
    broker = limited_broker()
    day_ms = 86_400_000
    with RawClient(broker.port) as client:
        assert client.call(k.create_topic("clock", 1)).topics[0].error_code == 0
        now_ms = int(time.time() * 1000)
        answers = [_produce_at(client, "clock", now_ms + n * 8 * day_ms) for n in range(2 * OPEN_FILES_LIMIT)]
        assert answers[0] == 0 and set(answers[1:]) == {INVALID_TIMESTAMP}
        assert _produce_at(client, "clock", int(time.time() * 1000) + 3_000_000) == 0  # 50 minutes ahead is fine
        _produce_and_read(client, "after")
    segments = list((broker.log_dir / "clock-0").glob("*.log"))
    assert len(segments) == 1, segments


def test_timestamp_bounds_are_settable(limited_broker):
    broker = limited_broker({"log.message.timestamp.before.max.ms": "60000",
                             "log.message.timestamp.after.max.ms": "60000"})
    with RawClient(broker.port) as client:
        assert client.call(k.create_topic("t", 1)).topics[0].error_code == 0
        now_ms = int(time.time() * 1000)
        assert _produce_at(client, "t", now_ms - 120_000) == INVALID_TIMESTAMP
        assert _produce_at(client, "t", now_ms + 120_000) == INVALID_TIMESTAMP
        assert _produce_at(client, "t", now_ms - 10_000) == 0
        produced = client.call(k.produce("t", 0, k.batch([(None, b"v")], base_timestamp=now_ms + 120_000)))
        assert "log.message.timestamp.after.max.ms=60000" in produced.responses[0].partition_responses[0].error_message


def _api_versions_answered(client: RawClient) -> bool:
    try:
        return client.call(k.api_versions()).error_code == 0
    except (ConnectionError, OSError):
        return False


def test_idle_and_trickling_connections_are_closed(broker_factory):
    broker = broker_factory({"connections.max.idle.ms": "500", "logquake.request.read.timeout.ms": "500"})
    with RawClient(broker.port) as idle, RawClient(broker.port) as trickle:
        assert _api_versions_answered(idle)  # a connection that served a request, then sent nothing
        frame = trickle.request_bytes(k.api_versions())
        trickle.send_bytes(frame[:6])  # a request whose bytes come one now and then: the rest never comes
        assert idle.is_closed_by_peer(timeout_s=3.0)
        assert trickle.is_closed_by_peer(timeout_s=3.0)
    text = broker.stderr_text()
    assert "(connections.max.idle.ms)" in text and "(logquake.request.read.timeout.ms)" in text
    with RawClient(broker.port) as fresh:
        assert _api_versions_answered(fresh)


@pytest.mark.parametrize("overrides", [{"max.connections": "4"}, {"max.connections.per.ip": "4"}])
def test_connections_beyond_the_limit_are_closed_until_one_goes(broker_factory, overrides):
    broker = broker_factory(overrides)
    clients = [RawClient(broker.port) for _ in range(4)]
    try:
        assert all(_api_versions_answered(c) for c in clients)
        with RawClient(broker.port) as extra:
            assert extra.is_closed_by_peer()
        clients.pop().close()
        deadline = time.monotonic() + 5
        while True:  # the broker notices the close on its next read
            with RawClient(broker.port) as again:
                if _api_versions_answered(again):
                    break
            assert time.monotonic() < deadline, "no connection admitted after one closed"
            time.sleep(0.05)
    finally:
        for c in clients:
            c.close()
    assert "refused: " in broker.stderr_text()


def test_queued_max_request_bytes_bounds_what_all_connections_buffer(broker_factory):
    """A connection that announced a 1 MiB request holds the whole budget while its body trickles in; a second
    connection's request waits until the first gives its budget back (here: closed by the read timeout)."""
    broker = broker_factory({"socket.request.max.bytes": "1048576", "queued.max.request.bytes": "1048576",
                             "logquake.request.read.timeout.ms": "1500"})
    with RawClient(broker.port) as hog, RawClient(broker.port) as other:
        hog.send_bytes(struct.pack(">i", 1048576) + b"\x00\x12\x00\x03")
        time.sleep(0.3)
        started = time.monotonic()
        assert _api_versions_answered(other)
        waited_s = time.monotonic() - started
        assert hog.is_closed_by_peer(timeout_s=1.0)
    assert waited_s > 0.8, f"the second request was answered after {waited_s:.2f} s, without waiting for the budget"


def test_topic_timestamp_bounds_override_the_brokers(broker_factory):
    broker = broker_factory()
    with RawClient(broker.port) as client:
        strict = client.call(k.create_topic("strict", 1, {"message.timestamp.after.max.ms": "1000",
                                                          "message.timestamp.before.max.ms": "1000"})).topics[0]
        assert strict.error_code == 0
        assert client.call(k.create_topic("default", 1)).topics[0].error_code == 0
        now_ms = int(time.time() * 1000)
        assert _produce_at(client, "strict", now_ms + 30_000) == INVALID_TIMESTAMP
        assert _produce_at(client, "strict", now_ms - 30_000) == INVALID_TIMESTAMP
        assert _produce_at(client, "default", now_ms + 30_000) == 0
        for name, value in (("message.timestamp.after.max.ms", "-1"), ("max.message.bytes", "-1")):
            refused = client.call(k.create_topic(f"bad-{name}", 1, {name: value})).topics[0]
            assert (refused.error_code, refused.error_message) == (
                INVALID_CONFIG, f"topic config {name}='-1' is out of range; expected an integer >= 0")
