"""Metadata records (Hypothesis round trips, malformed input) and the image they build."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.metadata.image import MetadataImage, NO_LEADER, RESOURCE_TOPIC
from broker.metadata.records import (
    ConfigRecord,
    FenceBrokerRecord,
    MetadataRecordError,
    PartitionChangeRecord,
    PartitionRecord,
    ProducerIdsRecord,
    RegisterBrokerRecord,
    RemoveTopicRecord,
    TopicRecord,
    UnfenceBrokerRecord,
    decode_batch,
    decode_record,
    encode_batch,
)

ids = st.integers(0, 2**31 - 1)
epochs = st.integers(0, 2**31 - 1)
uuids = st.uuids()
names = st.text(min_size=1, max_size=20)
broker_lists = st.lists(ids, max_size=5).map(tuple)

records = st.one_of(
    st.builds(RegisterBrokerRecord, ids, uuids, names, st.integers(0, 65535), st.none() | names),
    st.builds(FenceBrokerRecord, ids),
    st.builds(UnfenceBrokerRecord, ids),
    st.builds(TopicRecord, names, uuids),
    st.builds(PartitionRecord, uuids, ids, broker_lists, broker_lists, st.integers(-1, 2**31 - 1), epochs, epochs),
    st.builds(PartitionChangeRecord, uuids, ids, st.none() | st.integers(-1, 100), st.none() | broker_lists, epochs, epochs),
    st.builds(ConfigRecord, st.sampled_from([2, 4]), names, names, st.none() | names),
    st.builds(RemoveTopicRecord, uuids),
    st.builds(ProducerIdsRecord, ids, st.integers(0, 2**62)),
)


@given(records)
def test_record_round_trip(record):
    assert decode_record(record.encode()) == record


@given(st.lists(records, max_size=10))
def test_batch_round_trip(batch):
    assert decode_batch(encode_batch(batch)) == tuple(batch)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty"),
        (b"\x02{}", "version 2 is unknown"),
        (b"\x01[1]", "accepted: a JSON object"),
        (b'\x01{"type":"Nope"}', "type 'Nope' is unknown"),
        (b'\x01{"type":"FenceBroker"}', "accepted: exactly ['broker_id']"),
        (b'\x01{"type":"FenceBroker","broker_id":"1"}', "broker_id is '1'; accepted: an integer"),
        (b'\x01{"type":"RemoveTopic","topic_id":"zz"}', "accepted: a UUID string"),
        (b"\x01\xff", "not JSON"),
    ],
)
def test_malformed_records_are_refused_with_a_reason(data, message):
    with pytest.raises(MetadataRecordError, match=message.replace("[", r"\[").replace("]", r"\]")):
        decode_record(data)


def test_truncated_batch_is_refused():
    data = encode_batch([FenceBrokerRecord(1), FenceBrokerRecord(2)])
    with pytest.raises(MetadataRecordError, match="runs past the end"):
        decode_batch(data[:-3])
    with pytest.raises(MetadataRecordError, match="bytes after"):
        decode_batch(data + b"x")


def test_image_builds_cluster_state_copy_on_write():
    topic_id = uuid.UUID(int=7)
    incarnation = uuid.UUID(int=9)
    empty = MetadataImage()
    image = empty.apply_all(
        [
            RegisterBrokerRecord(1, incarnation, "127.0.0.1", 9001),
            RegisterBrokerRecord(2, incarnation, "127.0.0.1", 9002),
            UnfenceBrokerRecord(1),
            TopicRecord("t", topic_id),
            ConfigRecord(RESOURCE_TOPIC, "t", "min.insync.replicas", "2"),
            PartitionRecord(topic_id, 0, (1, 2), (1, 2), 1, 0, 0),
        ],
        offset=3,
    )
    assert empty.topics == {} and empty.offset == 0
    assert image.offset == 3
    assert image.brokers[1].fenced is False and image.brokers[2].fenced is True
    assert image.unfenced_broker_ids() == [1]
    assert image.partition("t", 0).leader == 1
    assert image.topic_by_id(topic_id).configs == {"min.insync.replicas": "2"}
    changed = image.apply(PartitionChangeRecord(topic_id, 0, NO_LEADER, (2,), 1, 1))
    assert changed.partition("t", 0).isr == (2,) and changed.partition("t", 0).leader == NO_LEADER
    assert image.partition("t", 0).isr == (1, 2), "the old image is unchanged"
    kept_isr = changed.apply(PartitionChangeRecord(topic_id, 0, 2, None, 2, 2))
    assert kept_isr.partition("t", 0).isr == (2,) and kept_isr.partition("t", 0).leader == 2
    assert changed.brokers is kept_isr.brokers, "untouched maps are shared"
    removed = kept_isr.apply(RemoveTopicRecord(topic_id))
    assert removed.topics == {} and removed.topic_by_id(topic_id) is None
    allocated = removed.apply(ProducerIdsRecord(1, 1000))
    assert allocated.next_producer_id_block_start == 1000


def test_image_refuses_a_leader_outside_the_replicas():
    topic_id = uuid.UUID(int=1)
    image = MetadataImage().apply(TopicRecord("t", topic_id))
    with pytest.raises(AssertionError, match="leader not a replica"):
        image.apply(PartitionRecord(topic_id, 0, (1, 2), (1, 2), 3, 0, 0))
    image = image.apply(PartitionRecord(topic_id, 0, (1, 2), (1, 2), 1, 5, 5))
    with pytest.raises(AssertionError, match="leader epoch goes back"):
        image.apply(PartitionChangeRecord(topic_id, 0, 2, None, 4, 6))
