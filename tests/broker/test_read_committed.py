"""Fetch responses for read_committed consumers: the aborted_transactions list, checked against kio (KIP-98).

The hand-written Fetch encoder (broker.protocol.fetch) must write each aborted
transaction as (producer_id, first_offset), with tagged fields from v12, so
that kio's generated FetchResponse decodes the same list and re-encodes the
message byte for byte.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from broker.protocol import apis
from broker.protocol.fetch import FetchPartitionResult, FetchTopicResult, encode_fetch_response
from broker.protocol.records import build_batch

aborted_lists = st.lists(st.tuples(st.integers(0, 2**62), st.integers(0, 2**62)), max_size=4)


@settings(max_examples=150)
@given(st.integers(4, 16), aborted_lists, st.integers(0, 2**40), st.uuids())
def test_aborted_transactions_round_trip_through_kio(version, aborted, stable, topic_id):
    records = build_batch([(None, b"v")], base_offset=stable)
    partition = FetchPartitionResult(0, 0, stable + 5, stable, 0, records, aborted_transactions=aborted)
    empty = FetchPartitionResult(1, 0, stable, stable, 0, b"")
    body = b"".join(bytes(c) for c in encode_fetch_response(version, [FetchTopicResult("t", topic_id, [partition, empty])]))
    decoded = apis.decode_response(apis.FETCH, version, body)
    got, got_empty = decoded.responses[0].partitions
    assert [(a.producer_id, a.first_offset) for a in got.aborted_transactions] == aborted
    assert got.last_stable_offset == stable and got.high_watermark == stable + 5
    assert got_empty.aborted_transactions == ()  # none: an empty list, never null
    assert bytes(got.records) == records
    assert apis.encode_entity(decoded) == body
