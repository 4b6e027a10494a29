"""Malformed input against a running broker: it answers with an error code or closes the
connection, never crashes or hangs, and data written before and after stays readable."""

from __future__ import annotations

import socket
import struct
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule, run_state_machine_as_test

from broker.protocol import apis
from broker.protocol.records import iter_batches

from . import kafka_requests as req
from .conftest import BrokerProcess
from .lying_batches import CODEC_IDS, LIES, compress, lying_batch
from .raw_client import RawClient, encode_request_frame


@pytest.fixture(scope="module")
def fuzz_broker(tmp_path_factory):
    process = BrokerProcess(tmp_path_factory.mktemp("fuzz"), {"socket.request.max.bytes": str(1 << 20)})
    try:
        process.start()
        with RawClient(process.port) as client:
            client.call(req.create_topic("fz", 1))
            assert client.call(req.produce("fz", 0, req.batch([(b"before", b"1")]))).responses[0].partition_responses[0].error_code == 0
        yield process
    finally:
        process.kill()
        print(f"---- stderr of fuzz broker ----\n{process.stderr_text()[-6000:]}")


def _send_and_drain(port: int, data: bytes) -> bytes:
    """Send `data`, half-close, and read whatever comes back until the broker closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            return b""
        received = bytearray()
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
        return bytes(received)


def _frame(body: bytes) -> bytes:
    return struct.pack(">i", len(body)) + body


supported = st.sampled_from(sorted(apis.SUPPORTED_VERSIONS))
valid_requests = st.sampled_from(
    [
        req.api_versions(3), req.api_versions(0), req.metadata(["fz"]), req.metadata(None, version=1),
        req.produce("fz", 0, req.batch([(b"k", b"v")])), req.fetch("fz", 0, 0), req.fetch("fz", 0, 0, version=4),
        req.list_offsets("fz", 0, -1), req.init_producer_id(), req.describe_configs(2, "fz"),
    ]
)


def _header(api_key: int, version: int, correlation_id: int = 1) -> bytes:
    return struct.pack(">hhih", api_key, version, correlation_id, 3) + b"fzz" + (b"\x00" if apis.is_supported(api_key, version) and apis.is_flexible(api_key, version) else b"")


inputs = st.one_of(
    st.binary(max_size=200),  # unframed noise
    st.binary(max_size=200).map(_frame),  # framed noise
    st.tuples(supported, st.integers(-3, 20), st.binary(max_size=300)).map(lambda t: _frame(_header(t[0], t[1]) + t[2])),
    st.tuples(st.integers(-(2**15), 2**15 - 1), st.integers(-(2**15), 2**15 - 1), st.binary(max_size=40)).map(
        lambda t: _frame(struct.pack(">hhi", t[0], t[1], 5) + t[2])
    ),
    st.integers(-(2**31), 2**31 - 1).map(lambda size: struct.pack(">i", size) + b"\x00" * 16),  # any size, short body
    st.tuples(valid_requests, st.data()).map(lambda t: t),  # mutated and truncated valid requests (below)
)


def _materialise(example) -> bytes:
    if isinstance(example, bytes):
        return example
    request, data = example
    raw = bytearray(encode_request_frame(request, 1))
    mode = data.draw(st.sampled_from(["flip", "truncate", "append"]))
    if mode == "flip" and len(raw) > 4:
        for _ in range(data.draw(st.integers(1, 4))):
            raw[data.draw(st.integers(4, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
    elif mode == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    else:
        extra = data.draw(st.binary(min_size=1, max_size=50))
        raw = bytearray(_frame(bytes(raw[4:]) + extra))
    return bytes(raw)


@pytest.mark.slow
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(example=inputs)
def test_malformed_input_never_breaks_the_broker(fuzz_broker, example):
    _send_and_drain(fuzz_broker.port, _materialise(example))
    assert fuzz_broker.alive(), fuzz_broker.stderr_text()[-3000:]
    with RawClient(fuzz_broker.port) as client:
        assert client.call(req.api_versions(3)).error_code == 0


@pytest.mark.slow
def test_data_survives_the_fuzzing(fuzz_broker):
    # runs after the fuzz test (file order): the record written before is there, and writes still work
    with RawClient(fuzz_broker.port) as client:
        result = client.call(req.produce("fz", 0, req.batch([(b"after", b"2")]))).responses[0].partition_responses[0]
        assert result.error_code == 0
        partition = client.call(req.fetch("fz", 0, 0)).responses[0].partitions[0]
        assert partition.error_code == 0 and partition.log_start_offset == 0, partition
        records = partition.records
        headers = [h for _, h in iter_batches(records, validate_crc=True)]
        assert headers[0].base_offset == 0
        assert b"before" in bytes(records) and b"after" in bytes(records)
    assert "Traceback" not in fuzz_broker.stderr_text() or "closed after an unexpected error" in fuzz_broker.stderr_text()


def test_truncated_frame_then_disconnect_is_cleaned_up(broker):
    with socket.create_connection(("127.0.0.1", broker.port)) as sock:
        sock.sendall(struct.pack(">i", 100) + b"\x00\x12\x00\x03")
    for size in (-1, 0, 3, 2**31 - 1):
        assert _send_and_drain(broker.port, struct.pack(">i", size) + b"abc") == b""
    with RawClient(broker.port) as client:
        assert client.call(req.api_versions(3)).error_code == 0
    assert broker.alive()


# ---- stateful: lying bodies for every codec, then the next good record is read ---------------------


class LyingBodies(RuleBasedStateMachine):
    """Valid headers and CRCs around lying bodies (every lie of `lying_batches.LIES`, garbage, codecs 5-7,
    for every codec and Produce version), interleaved with good records; after each good record a real
    consumer (confluent-kafka) reads exactly the good records, in order, and nothing the broker refused."""

    port: int = 0
    machines = 0

    def __init__(self):
        super().__init__()
        LyingBodies.machines += 1
        self.topic = f"lying-{LyingBodies.machines}"
        self.client = RawClient(self.port)
        assert self.client.call(req.create_topic(self.topic, 1)).topics[0].error_code == 0
        self.good: list[bytes] = []

    @rule(codec=st.sampled_from(sorted(CODEC_IDS.values()) + [5, 6, 7]), lie=st.sampled_from(sorted(LIES)),
          version=st.integers(3, 11))
    def send_lie(self, codec, lie, version):
        body, count, last = LIES[lie][0]()
        batch = lying_batch(compress(codec if codec < 5 else 0, body), count, last, attributes=codec)
        result = self.client.call(req.produce(self.topic, 0, batch, version=version)).responses[0].partition_responses[0]
        assert result.error_code in ((2, 87) if version >= 8 else (2,)), (lie, codec, version, result)

    @rule(codec=st.sampled_from(sorted(CODEC_IDS.values())), garbage=st.binary(max_size=300), count=st.integers(1, 2**31 - 1))
    def send_garbage(self, codec, garbage, count):
        result = self.client.call(req.produce(self.topic, 0, lying_batch(garbage, count, attributes=codec))).responses[0]
        if result.partition_responses[0].error_code == 0:  # by chance a true batch: a consumer must then read it
            self.good.extend([None] * count)
        else:
            assert result.partition_responses[0].error_code in (2, 87), result

    @rule(value=st.binary(min_size=1, max_size=50))
    def send_good_and_read_it(self, value):
        result = self.client.call(req.produce(self.topic, 0, req.batch([(None, value)]))).responses[0].partition_responses[0]
        assert result.error_code == 0 and result.base_offset == len(self.good), result
        self.good.append(value)
        read = _confluent_read(self.port, self.topic, len(self.good))
        assert read[-1] == value
        assert [v for v, want in zip(read, self.good) if want is not None] == [w for w in self.good if w is not None]

    def teardown(self):
        self.client.close()


def _confluent_read(port: int, topic: str, count: int, timeout_s: float = 20.0) -> list[bytes]:
    """The first `count` record values a real consumer reads from offset 0."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": f"127.0.0.1:{port}", "group.id": "fuzz", "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        values: list[bytes] = []
        errors = []
        deadline = time.monotonic() + timeout_s
        while len(values) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error():
                errors.append(msg.error())
            elif msg is not None:
                values.append(msg.value())
        assert len(values) >= count, f"read {len(values)} of {count} records of {topic}; consumer errors {errors[:3]}"
        return values[:count]
    finally:
        consumer.close()


@pytest.mark.slow
def test_lying_bodies_then_the_next_good_record_is_read(fuzz_broker):
    LyingBodies.port = fuzz_broker.port
    run_state_machine_as_test(LyingBodies, settings=settings(max_examples=25, stateful_step_count=10, deadline=None))
    assert fuzz_broker.alive()
