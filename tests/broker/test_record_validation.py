"""The leader's record validation (broker.protocol.record_validation): every lie a batch with a valid
header and CRC can tell about its body, for every codec, is refused with the Kafka error and a message
naming it; honest batches of every codec pass; a decompression bomb is stopped at the bound."""

from __future__ import annotations

import gzip
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.protocol import record_validation
from broker.protocol.record_validation import (
    UNCOMPRESSED_FACTOR,
    RecordValidationError,
    max_uncompressed_bytes,
    validate_batch,
)
from broker.protocol.records import iter_batches

from .lying_batches import GOOD, LIES, compress, lying_batch, record, varint, xerial_snappy

LIMIT = max_uncompressed_bytes(1048588)


def check(batch: bytes, limit: int = LIMIT) -> None:
    [(pos, header)] = list(iter_batches(batch, validate_crc=True))
    validate_batch(batch, pos, header, limit)


def refused(batch: bytes, limit: int = LIMIT) -> RecordValidationError:
    with pytest.raises(RecordValidationError) as info:
        check(batch, limit)
    return info.value


CODECS = [0, 1, 2, 3, 4]


@pytest.mark.parametrize("codec", CODECS)
def test_honest_batches_of_every_codec_pass(codec):
    check(lying_batch(compress(codec, GOOD), 3, attributes=codec))
    headers = varint(2) + varint(1) + b"a" + varint(-1) + varint(2) + b"bc" + varint(2) + b"de"
    check(lying_batch(compress(codec, record(0, b"k", b"v", headers)), 1, attributes=codec))
    big = b"".join(record(i, None, b"x" * 300) for i in range(200))  # multi-byte lengths and offset deltas
    check(lying_batch(compress(codec, big), 200, attributes=codec))


def test_java_xerial_snappy_framing_passes():
    body = b"".join(record(i, None, b"y" * 100) for i in range(50))
    check(lying_batch(xerial_snappy(body), 50, attributes=2))


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("lie", sorted(LIES))
def test_every_lie_is_refused_for_every_codec(lie, codec):
    make, fragment = LIES[lie]
    body, count, last = make()
    error = refused(lying_batch(compress(codec, body), count, last, attributes=codec))
    assert error.error == "invalid_record", error
    assert fragment in str(error), error


@pytest.mark.parametrize("codec", [1, 2, 3, 4])
@pytest.mark.parametrize("garbage", [b"", b"\x07", bytes(range(256)) * 3, b"\xff" * 64])
def test_garbage_for_each_codec_is_corrupt(codec, garbage):
    error = refused(lying_batch(garbage, 1, attributes=codec))
    assert error.error == "corrupt_message", error
    assert "decompress" in str(error) or "ends inside" in str(error), error


@pytest.mark.parametrize("codec", [1, 2, 3, 4])
def test_truncated_compressed_stream_is_corrupt(codec):
    whole = compress(codec, b"".join(record(i, None, bytes(range(256))) for i in range(40)))
    error = refused(lying_batch(whole[: len(whole) // 2], 40, attributes=codec))
    assert error.error == "corrupt_message", error


@pytest.mark.parametrize("codec", [5, 6, 7])
def test_codec_ids_5_to_7_are_refused(codec):
    error = refused(lying_batch(GOOD, 3, attributes=codec))
    assert error.error == "corrupt_message" and f"compression codec id {codec}" in str(error)


def test_log_append_time_from_a_client_is_refused():
    error = refused(lying_batch(GOOD, 3, attributes=0x08))
    assert error.error == "invalid_timestamp" and "LogAppendTime" in str(error)


@pytest.mark.parametrize("codec", [1, 2, 3, 4])
def test_decompression_bomb_stops_at_the_bound(codec):
    body = b"".join(record(i, None, b"\x00" * 10_000) for i in range(100))  # ~1 MB of zeros, compresses to ~kB
    batch = lying_batch(compress(codec, body), 100, attributes=codec)
    check(batch, limit=len(body))
    error = refused(batch, limit=len(body) - 1)
    assert error.error == "corrupt_message" and str(len(body) - 1) in str(error), error


def test_the_bound_is_sixteen_times_max_message_bytes():
    assert max_uncompressed_bytes(1000) == 16_000 == UNCOMPRESSED_FACTOR * 1000


def test_gzip_with_two_members_passes():
    half = [record(i, None, b"m") for i in range(4)]
    check(lying_batch(gzip.compress(b"".join(half[:2])) + gzip.compress(b"".join(half[2:])), 4, attributes=1))
    zlib_stream = zlib.compress(b"".join(half))  # zlib, not gzip, framing is not Kafka's gzip
    assert refused(lying_batch(zlib_stream, 4, attributes=1)).error == "corrupt_message"


def _walk_only(data: bytes, count: int) -> bool:
    """The record walk without the uniform fast path: True if it accepts."""
    saved = record_validation.UNIFORM_RECORDS_MAX
    record_validation.UNIFORM_RECORDS_MAX = 0
    try:
        record_validation._walk_records(data, count, "none")
        return True
    except RecordValidationError:
        return False
    finally:
        record_validation.UNIFORM_RECORDS_MAX = saved


@pytest.mark.parametrize("key, value, count", [
    (key, value, count) for key, value in [(None, b"x" * 100), (b"", b""), (b"key", None)]
    for count in [1, 63, 64, 65, 8191, 8192, 8193]
] + [(b"k" * 70, b"v" * 9000, 70)], ids=lambda param: param if isinstance(param, int) else len(param or b""))
def test_honest_uniform_batches_take_the_fast_path(key, value, count):
    body = b"".join(record(i, key, value) for i in range(count))
    assert record_validation._uniform_records(body, count)
    assert _walk_only(body, count)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_the_fast_path_accepts_only_what_the_walk_accepts(data):
    count = data.draw(st.integers(1, 80))
    key = data.draw(st.sampled_from([None, b"", b"ab"]))
    value = data.draw(st.sampled_from([None, b"", b"v" * 3, b"w" * 70]))
    body = bytearray(b"".join(record(i, key, value) for i in range(count)))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(body) - 1))
        mode = data.draw(st.sampled_from(["flip", "delete", "insert"]))
        if mode == "flip":
            body[at] ^= data.draw(st.integers(1, 255))
        elif mode == "delete":
            del body[at]
        else:
            body.insert(at, data.draw(st.integers(0, 255)))
    claimed = count + data.draw(st.integers(-1, 1)) or 1
    if record_validation._uniform_records(bytes(body), claimed):
        assert _walk_only(bytes(body), claimed)
