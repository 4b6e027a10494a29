"""Framing, request headers and the hand-written Fetch encoder, checked against kio."""

from __future__ import annotations

import datetime
import struct
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.protocol import apis
from broker.protocol.fetch import FetchPartitionResult, FetchTopicResult, encode_fetch_response
from broker.protocol.records import build_batch
from broker.protocol.guard import check_body
from broker.protocol.wire import (
    MalformedRequestError,
    RequestHeader,
    encode_request_header,
    frame,
    parse_request_header,
    read_unsigned_varint,
    skip_tagged_fields,
    write_unsigned_varint,
)
from broker.server.server import api_versions_fallback

client_ids = st.one_of(st.none(), st.text(max_size=40))
headers = st.builds(
    RequestHeader,
    api_key=st.integers(-(2**15), 2**15 - 1),
    api_version=st.integers(-(2**15), 2**15 - 1),
    correlation_id=st.integers(-(2**31), 2**31 - 1),
    client_id=client_ids,
    size=st.just(0),
)


@given(headers, st.booleans(), st.binary(max_size=64))
def test_request_header_round_trip(header, flexible, body):
    raw = encode_request_header(header, flexible)
    parsed = parse_request_header(raw + body, flexible)
    assert (parsed.api_key, parsed.api_version, parsed.correlation_id, parsed.client_id) == (
        header.api_key, header.api_version, header.correlation_id, header.client_id)
    assert parsed.size == len(raw)


@given(headers, st.booleans(), st.data())
def test_truncated_header_is_malformed_never_a_crash(header, flexible, data):
    raw = encode_request_header(header, flexible)
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(MalformedRequestError):
        parse_request_header(raw[:cut], flexible)


@given(st.binary(max_size=80), st.booleans())
def test_random_bytes_parse_or_raise_malformed(raw, flexible):
    try:
        header = parse_request_header(raw, flexible)
    except MalformedRequestError:
        return
    assert header.size <= len(raw)


@given(st.integers(0, 2**32 - 1))
def test_unsigned_varint_round_trip(value):
    out = bytearray()
    write_unsigned_varint(value, out)
    assert read_unsigned_varint(out, 0) == (value, len(out))


def test_tagged_fields_are_skipped():
    # two tagged fields: tag 0 with 3 bytes, tag 5 with 1 byte
    raw = bytes([2, 0, 3, 1, 2, 3, 5, 1, 9]) + b"rest"
    assert skip_tagged_fields(raw, 0) == 9
    with pytest.raises(MalformedRequestError):
        skip_tagged_fields(bytes([1, 0, 10, 1]), 0)


@given(st.lists(st.binary(max_size=50), max_size=5))
def test_frame_prefixes_total_size(chunks):
    framed = frame(chunks)
    joined = b"".join(bytes(c) for c in framed)
    assert struct.unpack(">i", joined[:4])[0] == len(joined) - 4


batches = st.lists(st.tuples(st.binary(max_size=8), st.binary(max_size=30)), min_size=1, max_size=4).map(build_batch)
partition_results = st.builds(
    FetchPartitionResult,
    partition_index=st.integers(0, 1000),
    error_code=st.sampled_from([0, 1, 3, 100]),
    high_watermark=st.integers(-1, 2**40),
    last_stable_offset=st.integers(-1, 2**40),
    log_start_offset=st.integers(-1, 2**40),
    records=st.one_of(st.just(b""), batches, batches.map(memoryview)),
)
topic_results = st.builds(
    FetchTopicResult,
    topic=st.text(alphabet="abcxyz._-", min_size=1, max_size=20),
    topic_id=st.uuids(),
    partitions=st.lists(partition_results, max_size=3),
)


@settings(max_examples=200)
@given(st.integers(4, 16), st.lists(topic_results, max_size=3), st.integers(0, 1000), st.integers(-1, 2**31 - 1))
def test_fetch_encoder_matches_kio(version, topics, throttle_ms, session_id):
    body = b"".join(bytes(c) for c in encode_fetch_response(version, topics, throttle_time_ms=throttle_ms, session_id=session_id))
    decoded = apis.decode_response(apis.FETCH, version, body)
    assert decoded.throttle_time == datetime.timedelta(milliseconds=throttle_ms)
    if version >= 7:
        assert decoded.session_id == session_id and decoded.error_code == 0
    assert len(decoded.responses) == len(topics)
    for got_topic, want_topic in zip(decoded.responses, topics):
        if version >= 13:
            assert got_topic.topic_id == want_topic.topic_id
        else:
            assert got_topic.topic == want_topic.topic
        assert len(got_topic.partitions) == len(want_topic.partitions)
        for got, want in zip(got_topic.partitions, want_topic.partitions):
            assert got.partition_index == want.partition_index
            assert got.error_code == want.error_code
            assert got.high_watermark == want.high_watermark
            assert got.last_stable_offset == want.last_stable_offset
            if version >= 5:
                assert got.log_start_offset == want.log_start_offset
            assert got.aborted_transactions == ()  # empty, never null
            assert bytes(got.records or b"") == bytes(want.records)
    # and kio's own encoding of the decoded message is byte-identical to ours
    assert apis.encode_entity(decoded) == body


def test_every_advertised_version_has_kio_schemas():
    for api_key, (low, high) in apis.SUPPORTED_VERSIONS.items():
        for version in range(low, high + 1):
            assert apis.request_class(api_key, version).__api_key__ == api_key
            assert apis.response_class(api_key, version).__version__ == version


def test_api_versions_fallback_is_v0_format():
    framed = b"".join(bytes(c) for c in api_versions_fallback(42))
    size, correlation_id = struct.unpack_from(">ii", framed, 0)
    assert size == len(framed) - 4 and correlation_id == 42
    response = apis.decode_response(apis.API_VERSIONS, 0, framed, 8)
    assert response.error_code == 35
    assert {(k.api_key, k.min_version, k.max_version) for k in response.api_keys} == {
        (key, low, high) for key, (low, high) in apis.SUPPORTED_VERSIONS.items()
    }


@pytest.mark.parametrize("version", [3, 7, 9, 11])
def test_produce_request_decodes_with_kio(version):
    module = __import__(f"kio.schema.produce.v{version}.request", fromlist=["x"])
    batch = build_batch([(b"k", b"v")])
    request = module.ProduceRequest(
        transactional_id=None, acks=1, timeout=datetime.timedelta(seconds=1),
        topic_data=(module.TopicProduceData(name="t", partition_data=(module.PartitionProduceData(index=0, records=batch),)),),
    )
    header = RequestHeader(0, version, 7, "c", 0)
    raw = encode_request_header(header, apis.is_flexible(0, version)) + apis.encode_request(request)
    parsed = parse_request_header(raw, apis.is_flexible(0, version))
    decoded = apis.decode_request(0, version, raw, parsed.size)
    assert decoded.topic_data[0].partition_data[0].records == batch
    # trailing bytes are ignored, as Kafka does (librdkafka sends some with Metadata v12)
    assert apis.decode_request(0, version, raw + b"\x01\x00\x00", parsed.size).topic_data[0].partition_data[0].records == batch


def test_librdkafka_metadata_v12_with_trailing_bytes_decodes():
    # captured from confluent-kafka 2.16's AdminClient.list_topics()
    raw = bytes.fromhex("0003000c00000003000772646b61666b610000000000010000")
    header = parse_request_header(raw, apis.is_flexible(3, 12))
    request = apis.decode_request(3, 12, raw, header.size)
    assert request.topics is None and request.allow_auto_topic_creation is False


def test_huge_array_length_is_refused_before_kio_allocates():
    # DeleteTopics v5 claiming 2.4 billion topic names in 8 bytes: kio alone would abort the process
    body = struct.pack(">hhih", 20, 5, 1, 3) + b"fzz" + b"\x00" + bytes.fromhex("90b7f7d7474c8e5f")
    header = parse_request_header(body, True)
    with pytest.raises(MalformedRequestError, match="elements"):
        apis.decode_request(20, 5, body, header.size)


@given(st.sampled_from(sorted(apis.SUPPORTED_VERSIONS)), st.data())
def test_noise_bodies_are_refused_or_decoded_never_a_crash(api_key, data):
    low, high = apis.SUPPORTED_VERSIONS[api_key]
    version = data.draw(st.integers(low, high))
    noise = data.draw(st.binary(max_size=120))
    try:
        decoded = apis.decode_request(api_key, version, noise, 0)
    except MalformedRequestError:
        return
    # whatever decodes re-encodes (kio's writer accepts what its reader built)
    assert isinstance(apis.encode_entity(decoded), bytes)


def test_guard_walks_every_request_the_tests_build_to_its_end():
    from . import kafka_requests as req

    samples = [
        req.api_versions(3), req.api_versions(0), req.metadata(["a"]), req.metadata(None, 1), req.metadata(["a"], 4),
        req.produce("t", 0, req.batch([(b"k", b"v")])), req.produce("t", 0, b"x", version=3), req.fetch("t", 0, 0),
        req.fetch("t", 0, 0, version=4), req.fetch("t", 0, 0, version=13, topic_id=uuid.uuid4()),
        req.list_offsets("t", 0, -1), req.list_offsets("t", 0, -1, 1), req.init_producer_id(), req.init_producer_id(None, 0),
        req.describe_configs(2, "t"), req.describe_configs(2, "t", 1), req.delete_topic("t"), req.delete_topic("t", 1),
        req.create_topic("t", 1, {"a": "b"}), req.create_topic("t", 1, version=2),
    ]
    for request in samples:
        body = apis.encode_request(request)
        assert check_body(type(request), body, 0) == len(body), request


produce_partitions = st.lists(st.tuples(st.integers(0, 2**31 - 1), st.one_of(st.none(), batches)), max_size=3)
produce_topics = st.lists(st.tuples(st.text(alphabet="abc._-", min_size=1, max_size=10), produce_partitions), max_size=3)


@settings(max_examples=150)
@given(st.integers(3, 11), produce_topics, st.sampled_from([-1, 0, 1]), st.one_of(st.none(), st.text(max_size=10)), st.integers(0, 2**31 - 1))
def test_produce_request_decoder_matches_kio(version, topics, acks, transactional_id, timeout_ms):
    from broker.protocol.produce import decode_produce_request

    module = __import__(f"kio.schema.produce.v{version}.request", fromlist=["x"])
    request = module.ProduceRequest(
        transactional_id=transactional_id, acks=acks, timeout=datetime.timedelta(milliseconds=timeout_ms),
        topic_data=tuple(
            module.TopicProduceData(name=name, partition_data=tuple(module.PartitionProduceData(index=i, records=r) for i, r in parts))
            for name, parts in topics
        ),
    )
    body = apis.encode_request(request)
    decoded = decode_produce_request(body, 0, version)
    assert (decoded.transactional_id, decoded.acks, decoded.timeout_ms) == (transactional_id, acks, timeout_ms)
    assert [(t.name, [(p.index, None if p.records is None else bytes(p.records)) for p in t.partition_data]) for t in decoded.topic_data] == topics
    for cut in {0, len(body) // 2, len(body) - 1}:
        with pytest.raises(MalformedRequestError):
            decode_produce_request(body[:cut], 0, version)


@settings(max_examples=150)
@given(st.integers(3, 11), st.data())
def test_produce_response_encoder_matches_kio(version, data):
    from broker.protocol.produce import PartitionProduceResult, encode_produce_response

    results = data.draw(st.lists(st.tuples(
        st.text(alphabet="abc", min_size=1, max_size=5),
        st.lists(st.builds(PartitionProduceResult, st.integers(0, 100), st.sampled_from([0, 2, 10, 45]),
                           st.integers(-1, 2**40), st.integers(-1, 2**40), st.one_of(st.none(), st.text(max_size=20))), max_size=3),
    ), max_size=3))
    throttle_ms = data.draw(st.integers(0, 10_000))
    body = encode_produce_response(version, results, throttle_ms)
    decoded = apis.decode_response(apis.PRODUCE, version, body)
    assert decoded.throttle_time == datetime.timedelta(milliseconds=throttle_ms)
    for (name, parts), got in zip(results, decoded.responses, strict=True):
        assert got.name == name
        for want, part in zip(parts, got.partition_responses, strict=True):
            assert (part.index, part.error_code, part.base_offset) == (want.index, want.error_code, want.base_offset)
            assert part.log_append_time is None
            if version >= 5:
                assert part.log_start_offset == want.log_start_offset
            if version >= 8:
                assert part.error_message == want.error_message and part.record_errors == ()
    assert apis.encode_entity(decoded) == body
