"""The broker process over raw sockets: every API, error codes, long-poll, acks=0, restart."""

from __future__ import annotations

import dataclasses
import struct
import threading
import time
import uuid

import pytest

from broker.protocol import apis
from broker.protocol.records import iter_batches

from . import kafka_requests as req
from .raw_client import RawClient
from .test_replication_process import free_ports

UNKNOWN_SERVER_ERROR = -1


def _create(client: RawClient, name: str, partitions: int = 1, configs=None):
    response = client.call(req.create_topic(name, partitions, configs))
    assert response.topics[0].error_code == 0, response
    return response.topics[0]


def _produce(client: RawClient, topic: str, partition: int, records: bytes, **kw):
    response = client.call(req.produce(topic, partition, records, **kw))
    return response.responses[0].partition_responses[0]


def test_api_versions_every_version_and_kip511_fallback(broker):
    with RawClient(broker.port) as client:
        for version in range(0, 4):
            response = client.call(req.api_versions(version))
            assert response.error_code == 0
            assert {(k.api_key, k.min_version, k.max_version) for k in response.api_keys} == {
                (key, low, high) for key, (low, high) in apis.SUPPORTED_VERSIONS.items()
            }
        # a version we do not serve: header v2 + v4 body; the answer is v0-format with UNSUPPORTED_VERSION (35)
        body = struct.pack(">hhih", 18, 4, 99, 3) + b"raw" + b"\x00" + b"\x02a\x02b\x00"
        client.send_bytes(struct.pack(">i", len(body)) + body)
        frame = client.receive_frame()
        assert struct.unpack_from(">i", frame, 0)[0] == 99
        fallback = apis.decode_response(18, 0, frame, 4)
        assert fallback.error_code == 35 and len(fallback.api_keys) == len(apis.SUPPORTED_VERSIONS)
        # the connection stays usable
        assert client.call(req.api_versions(3)).error_code == 0


def test_metadata_auto_creates_with_stable_topic_id(broker):
    with RawClient(broker.port) as client:
        first = client.call(req.metadata(["auto1"]))
        topic = first.topics[0]
        assert topic.error_code == 0 and len(topic.partitions) == 1
        assert topic.partitions[0].leader_id == 1 and topic.partitions[0].isr_nodes == (1,)
        assert first.brokers[0].port == broker.port and first.brokers[0].host == "127.0.0.1"
        again = client.call(req.metadata(None))
        assert [(t.name, t.topic_id) for t in again.topics] == [("auto1", topic.topic_id)]
        assert topic.topic_id != uuid.UUID(int=0)
        bad = client.call(req.metadata(["bad name!"]))
        assert bad.topics[0].error_code == 17
        no_auto = client.call(req.metadata(["other"], allow_auto_topic_creation=False))
        assert no_auto.topics[0].error_code == 3
        v0 = client.call(req.metadata([], version=0))  # v0: an empty list means every topic
        assert [t.name for t in v0.topics] == ["auto1"]


def test_auto_create_disabled(broker_factory):
    broker = broker_factory({"auto.create.topics.enable": "false"})
    with RawClient(broker.port) as client:
        assert client.call(req.metadata(["nope"])).topics[0].error_code == 3


def test_create_topics_errors_and_delete(broker):
    with RawClient(broker.port) as client:
        created = _create(client, "made", 3, {"retention.ms": "60000"})
        assert created.num_partitions == 3 and created.topic_id != uuid.UUID(int=0)
        assert client.call(req.create_topic("made", 1)).topics[0].error_code == 36
        too_many = client.call(req.create_topic("rf3", 1, replication_factor=3)).topics[0]
        assert too_many.error_code == 38 and "replication is not implemented yet" in too_many.error_message
        bad_config = client.call(req.create_topic("badcfg", 1, {"retention.msec": "1"})).topics[0]
        assert bad_config.error_code == 40 and "retention.msec" in bad_config.error_message
        assert client.call(req.create_topic("zero", 0)).topics[0].error_code == 37
        described = client.call(req.describe_configs(2, "made")).results[0]
        values = {c.name: (c.value, c.config_source) for c in described.configs}
        assert values["retention.ms"] == ("60000", 1)
        assert values["cleanup.policy"] == ("delete", 5)
        deleted = client.call(req.delete_topic("made"))
        assert deleted.responses[0].error_code == 0
        assert client.call(req.delete_topic("made", version=1)).responses[0].error_code == 3
        assert client.call(req.metadata(["made"], allow_auto_topic_creation=False)).topics[0].error_code == 3
        recreated = _create(client, "made", 1)
        assert recreated.topic_id != created.topic_id


def test_describe_broker_configs(broker_factory):
    broker = broker_factory({"num.partitions": "4"})
    with RawClient(broker.port) as client:
        result = client.call(req.describe_configs(4, "1")).results[0]
        assert result.error_code == 0
        values = {c.name: (c.value, c.config_source) for c in result.configs}
        assert values["num.partitions"] == ("4", 4)
        assert values["message.max.bytes"] == ("1048588", 5)
        assert client.call(req.describe_configs(4, "9")).results[0].error_code == 42


def test_produce_then_fetch_at_every_fetch_version(broker):
    now_ms = int(time.time() * 1000)
    with RawClient(broker.port) as client:
        topic_id = _create(client, "pf", 1).topic_id
        batches = [req.batch([(b"k%d" % i, b"v%d" % j) for j in range(3)], base_timestamp=now_ms + i) for i in range(4)]
        for i, batch in enumerate(batches):
            result = _produce(client, "pf", 0, batch)
            assert result.error_code == 0 and result.base_offset == 3 * i
        for version in (4, 7, 11, 12, 13, 16):
            response = client.call(req.fetch("pf", 0, 3, version=version, topic_id=topic_id))
            part = response.responses[0].partitions[0]
            assert part.error_code == 0 and part.high_watermark == 12 and part.last_stable_offset == 12
            assert part.aborted_transactions == ()
            stored = [(pos, h) for pos, h in iter_batches(part.records, validate_crc=True)]
            assert [h.base_offset for _, h in stored] == [3, 6, 9]
            # bytes are the client's except the base offset and leader epoch, which lie outside the CRC
            assert bytes(part.records[stored[0][0] + 16 : stored[0][1].size]) == batches[1][16:]
        out_of_range = client.call(req.fetch("pf", 0, 13)).responses[0].partitions[0]
        assert out_of_range.error_code == 1
        at_end = client.call(req.fetch("pf", 0, 12)).responses[0].partitions[0]
        assert at_end.error_code == 0 and not at_end.records
        unknown = client.call(req.fetch("nope", 0, 0)).responses[0].partitions[0]
        assert unknown.error_code == 3
        unknown_id = client.call(req.fetch("", 0, 0, version=13, topic_id=uuid.uuid4())).responses[0].partitions[0]
        assert unknown_id.error_code == 100


def test_list_offsets(broker_factory):
    # old timestamps (1970) on purpose: time retention is off so they stay
    broker = broker_factory({"log.retention.ms": "-1"})
    with RawClient(broker.port) as client:
        _create(client, "lo", 1)
        for i in range(3):
            _produce(client, "lo", 0, req.batch([(None, b"x"), (None, b"y")], base_timestamp=1000 * (i + 1)))
        def offset_of(ts, version=6):
            part = client.call(req.list_offsets("lo", 0, ts, version=version)).topics[0].partitions[0]
            assert part.error_code == 0
            return part.offset
        assert offset_of(-2) == 0 and offset_of(-1) == 6 and offset_of(-1, version=1) == 6
        assert offset_of(2000) == 2
        assert offset_of(99999) == -1
        assert client.call(req.list_offsets("nope", 0, -1)).topics[0].partitions[0].error_code == 3


def test_fetch_long_poll_is_woken_by_produce(broker):
    with RawClient(broker.port) as client, RawClient(broker.port) as producer:
        _create(client, "lp", 1)
        started = time.monotonic()
        empty = client.call(req.fetch("lp", 0, 0, max_wait_ms=300))
        waited = time.monotonic() - started
        assert 0.25 <= waited < 3 and not empty.responses[0].partitions[0].records
        timer = threading.Timer(0.5, lambda: _produce(producer, "lp", 0, req.batch([(None, b"wake")])))
        timer.start()
        started = time.monotonic()
        woken = client.call(req.fetch("lp", 0, 0, max_wait_ms=10_000))
        assert time.monotonic() - started < 5
        timer.join(10)  # the produce's own answer, before its connection closes under it
        assert woken.responses[0].partitions[0].high_watermark == 1 and woken.responses[0].partitions[0].records


def test_acks_0_gets_no_response(broker):
    with RawClient(broker.port) as client:
        _create(client, "a0", 1)
        client.send(req.produce("a0", 0, req.batch([(None, b"fire")]), acks=0))
        correlation_id = client.send(req.list_offsets("a0", 0, -1))
        response = client.receive(apis.LIST_OFFSETS, 6, correlation_id)  # asserts it is the next frame
        assert response.topics[0].partitions[0].offset == 1


def test_bad_batches_get_error_codes(broker_factory):
    broker = broker_factory({"message.max.bytes": "2000"})
    with RawClient(broker.port) as client:
        _create(client, "bad", 1)
        corrupt = bytearray(req.batch([(None, b"payload")]))
        corrupt[-2] ^= 0xFF
        assert _produce(client, "bad", 0, bytes(corrupt)).error_code == 2
        big = req.batch([(None, b"x" * 3000)])
        assert _produce(client, "bad", 0, big).error_code == 10
        two = req.batch([(None, b"a")]) + req.batch([(None, b"b")])
        assert _produce(client, "bad", 0, two).error_code == 87
        assert _produce(client, "bad", 0, req.batch([(None, b"a")]), acks=2).error_code == 21
        assert _produce(client, "nope", 0, req.batch([(None, b"a")])).error_code == 3
        # nothing of that was appended; a good batch still is
        assert _produce(client, "bad", 0, req.batch([(None, b"ok")])).base_offset == 0
        assert "CRC mismatch" in broker.stderr_text()


def test_init_producer_id_plain_and_transactional(broker):
    import time

    from . import kafka_requests as k

    with RawClient(broker.port) as client:
        plain = [client.call(req.init_producer_id(None)) for _ in range(3)]
        assert [r.error_code for r in plain] == [0, 0, 0]
        ids = [r.producer_id for r in plain]
        assert ids == sorted(set(ids))
        # A transactional id is served once its coordinator (a __transaction_state
        # partition, created on the first FindCoordinator for a transaction) is up.
        m = k.module("find_coordinator", 3)
        deadline = time.monotonic() + 30
        while True:
            found = client.call(m.FindCoordinatorRequest(key="txn-1", key_type=1))
            response = client.call(req.init_producer_id("txn-1"))
            if response.error_code == 0 or time.monotonic() > deadline:
                break
            assert response.error_code in (15, 16), response  # COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR
            time.sleep(0.1)
        assert (found.error_code, response.error_code) == (0, 0)
        assert response.producer_id >= 0 and response.producer_id not in ids and response.producer_epoch == 0


def test_oversized_request_closes_connection_before_body(broker_factory):
    broker = broker_factory({"socket.request.max.bytes": "1000"})
    with RawClient(broker.port) as client:
        client.send_bytes(struct.pack(">i", 5000) + b"\x00" * 10)
        assert client.is_closed_by_peer()
    assert "outside the accepted range" in broker.stderr_text()
    with RawClient(broker.port) as client:
        assert client.call(req.api_versions()).error_code == 0


def test_unknown_api_and_version_close_the_connection(broker):
    with RawClient(broker.port) as client:
        body = struct.pack(">hhih", 9999, 0, 1, -1)
        client.send_bytes(struct.pack(">i", len(body)) + body)
        assert client.is_closed_by_peer()
    with RawClient(broker.port) as client:
        body = struct.pack(">hhih", 0, 2, 1, -1)  # Produce v2: below our range
        client.send_bytes(struct.pack(">i", len(body)) + body)
        assert client.is_closed_by_peer()
    assert broker.alive()


def test_clean_restart_keeps_topics_ids_data_and_producer_ids(broker):
    with RawClient(broker.port) as client:
        topic_id = _create(client, "keep", 2).topic_id
        for i in range(5):
            _produce(client, "keep", i % 2, req.batch([(b"k", b"v%d" % i)]))
        producer_id = client.call(req.init_producer_id()).producer_id
    assert broker.stop() == 0
    assert (broker.log_dir / ".kafka_cleanshutdown").exists()
    broker.restart()
    with RawClient(broker.port) as client:
        topic = client.call(req.metadata(["keep"], allow_auto_topic_creation=False)).topics[0]
        assert topic.error_code == 0 and topic.topic_id == topic_id and len(topic.partitions) == 2
        assert client.call(req.fetch("keep", 0, 0)).responses[0].partitions[0].high_watermark == 3
        assert client.call(req.fetch("keep", 1, 0)).responses[0].partitions[0].high_watermark == 2
        assert client.call(req.init_producer_id()).producer_id > producer_id


def test_find_coordinator(broker):
    from . import kafka_requests as k

    with RawClient(broker.port) as client:
        for version in (1, 3):
            m = k.module("find_coordinator", version)
            group = client.call(m.FindCoordinatorRequest(key="g", key_type=0))
            assert (group.error_code, group.node_id, group.port) == (0, 1, broker.port)
            txn = client.call(m.FindCoordinatorRequest(key="t", key_type=1))
            assert (txn.error_code, txn.node_id, txn.port) == (0, 1, broker.port)
            other = client.call(m.FindCoordinatorRequest(key="t", key_type=2))
            assert other.error_code == 42 and "key_type=2 is not served" in other.error_message  # INVALID_REQUEST
        m = k.module("find_coordinator", 4)
        both = client.call(m.FindCoordinatorRequest(key_type=0, coordinator_keys=("a", "b")))
        assert [(c.key, c.error_code, c.node_id) for c in both.coordinators] == [("a", 0, 1), ("b", 0, 1)]


def test_sigterm_answers_a_long_poll_in_flight_then_exits_0(broker):
    with RawClient(broker.port) as client:
        _create(client, "term", 1)
        correlation_id = client.send(req.fetch("term", 0, 0, max_wait_ms=20_000))
        time.sleep(0.3)
        started = time.monotonic()
        broker.process.send_signal(15)
        response = client.receive(apis.FETCH, 11, correlation_id)
        assert response.responses[0].partitions[0].error_code == 0
        assert time.monotonic() - started < 10
    assert broker.process.wait(20) == 0
    assert "logs closed cleanly" in broker.stderr_text()


def test_acks_0_failure_closes_the_connection(broker):
    with RawClient(broker.port) as client:
        client.send(req.produce("no-such-topic", 0, req.batch([(None, b"lost")]), acks=0))
        assert client.is_closed_by_peer()
    assert "acks=0 produce failed" in broker.stderr_text()


def test_leftover_logs_of_a_deleted_topic_do_not_leak_into_a_new_one(broker):
    import json

    with RawClient(broker.port) as client:
        _create(client, "ghost", 1)
        _produce(client, "ghost", 0, req.batch([(None, b"old")]))
    assert broker.stop() == 0
    # simulate a crash between removing the topic's metadata and removing its logs
    state_path = broker.log_dir / "__logquake_topics.json"
    state = json.loads(state_path.read_text())
    state["topics"] = [t for t in state["topics"] if t["name"] != "ghost"]
    state_path.write_text(json.dumps(state))
    broker.restart()
    with RawClient(broker.port) as client:
        _create(client, "ghost", 1)
        part = client.call(req.fetch("ghost", 0, 0)).responses[0].partitions[0]
        assert part.high_watermark == 0 and not part.records
    assert "leftover logs of a deleted topic named ghost" in broker.stderr_text()


@pytest.mark.parametrize("mode", ["one-node", "cluster"])
def test_negative_fetch_sizes_are_answered_and_keep_the_connection(broker_factory, mode):
    """A Fetch whose partition_max_bytes is negative used to raise ValueError and drop the connection. As in
    Kafka (its LogSegment.read refuses a negative size and its ReplicaManager answers that as an unknown server
    error), the partition gets UNKNOWN_SERVER_ERROR; a negative top-level max_bytes counts as 0, so the
    response carries the first batch only (KIP-74)."""
    overrides = {}
    if mode == "cluster":
        port = free_ports(1)[0]
        overrides = {"listeners": f"PLAINTEXT://127.0.0.1:{port}", "controller.quorum.voters": f"1@127.0.0.1:{port}"}
    broker = broker_factory(overrides)
    with RawClient(broker.port) as client:
        deadline = time.monotonic() + 30
        while client.call(req.create_topic("sizes", 1)).topics[0].error_code != 0:  # a cluster node registers first
            assert time.monotonic() < deadline, "topic not created within 30 s"
            time.sleep(0.1)
        for value in (b"one", b"two"):
            deadline = time.monotonic() + 30
            while _produce(client, "sizes", 0, req.batch([(None, value)])).error_code != 0:  # leader elected
                assert time.monotonic() < deadline, "produce not accepted within 30 s"
                time.sleep(0.1)
        fetch = req.fetch("sizes", 0, 0)
        topic = fetch.topics[0]
        negative_partition = dataclasses.replace(
            fetch, topics=(dataclasses.replace(topic, partitions=(dataclasses.replace(topic.partitions[0], partition_max_bytes=-1),)),))
        answer = client.call(negative_partition).responses[0].partitions[0]
        assert answer.error_code == UNKNOWN_SERVER_ERROR and bytes(answer.records) == b""

        negative_total = dataclasses.replace(fetch, max_bytes=-1)
        answer = client.call(negative_total).responses[0].partitions[0]
        assert answer.error_code == 0
        assert [header.base_offset for _, header in iter_batches(bytes(answer.records))] == [0]
        assert client.call(req.api_versions()).error_code == 0
    assert broker.stop() == 0
