"""The hanging-transaction tooling (KIP-664) through kafka-python's admin client against one broker process:
ListTransactions, DescribeTransactions and DescribeProducers see an open transaction, then its commit; bad
input gets Kafka's errors."""

from __future__ import annotations

import time

import pytest

from tests.broker.raw_client import RawClient

from .test_txn_clients import _create_topic
from .test_txn_requests import TXN_OVERRIDES, _wait_for

pytestmark = pytest.mark.slow


def test_an_open_transaction_is_listed_described_and_its_producers_shown(broker_factory):
    from confluent_kafka import Producer
    from kafka import TopicPartition
    from kafka.admin import KafkaAdminClient
    from kafka.errors import TransactionalIdNotFoundError

    broker = broker_factory(TXN_OVERRIDES)
    _create_topic(broker.bootstrap, "adm", partitions=2)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "adm-tx",
                         "transaction.timeout.ms": 30_000})
    producer.init_transactions(10)
    producer.begin_transaction()
    for partition in (0, 0, 1):
        producer.produce("adm", value=b"v", partition=partition)
    producer.flush(10)
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        listed = [t for ts in admin.list_transactions().values() for t in ts]
        assert [(t.transactional_id, t.state.value) for t in listed] == [("adm-tx", "Ongoing")]
        producer_id = listed[0].producer_id
        assert admin.list_transactions(state_filters=["CompleteCommit"]) == {1: []}
        assert [t.transactional_id for ts in admin.list_transactions(duration_filter_ms=0).values() for t in ts] == ["adm-tx"]
        assert admin.list_transactions(producer_id_filters=[producer_id + 1]) == {1: []}

        description = admin.describe_transactions(["adm-tx"])["adm-tx"]
        assert description.state.value == "Ongoing" and description.producer_id == producer_id
        assert description.transaction_timeout_ms == 30_000
        assert abs(description.transaction_start_time_ms - time.time() * 1000) < 60_000
        assert description.topic_partitions == {TopicPartition("adm", 0), TopicPartition("adm", 1)}

        states = admin.describe_producers([TopicPartition("adm", 0), TopicPartition("adm", 1)])
        first = states[TopicPartition("adm", 0)].active_producers
        assert [(p.producer_id, p.last_sequence, p.current_transaction_start_offset) for p in first] == [(producer_id, 1, 0)]
        assert states[TopicPartition("adm", 1)].active_producers[0].current_transaction_start_offset == 0

        producer.commit_transaction(10)
        assert admin.describe_transactions(["adm-tx"])["adm-tx"].state.value == "CompleteCommit"
        _wait_for(lambda: admin.describe_producers([TopicPartition("adm", 0)])[TopicPartition("adm", 0)]
                  .active_producers[0].current_transaction_start_offset == -1, "the open transaction to close")
        with pytest.raises(TransactionalIdNotFoundError):
            admin.describe_transactions(["no-such-id"])
    finally:
        admin.close()


def test_unknown_state_filters_and_partitions_are_named(broker_factory):
    broker = broker_factory(TXN_OVERRIDES)
    _create_topic(broker.bootstrap, "adm2")
    from kio.schema.describe_producers.v0 import request as describe_producers
    from kio.schema.describe_transactions.v0 import request as describe_transactions
    from kio.schema.list_transactions.v1 import request as list_transactions

    with RawClient(broker.port) as client:
        listed = client.call(list_transactions.ListTransactionsRequest(state_filters=("Ongoing", "Hanging")))
        assert listed.unknown_state_filters == ("Hanging",) and listed.transaction_states == ()
        described = client.call(describe_producers.DescribeProducersRequest(topics=(
            describe_producers.TopicRequest(name="adm2", partition_indexes=(0, 7)),)))
        by_partition = {p.partition_index: p for p in described.topics[0].partitions}
        assert by_partition[0].error_code == 0 and by_partition[0].active_producers == ()
        assert by_partition[7].error_code.name == "unknown_topic_or_partition"
        # No transaction was ever started, so __transaction_state does not exist and this node coordinates
        # nothing: NOT_COORDINATOR (16). kio refuses to decode Kafka's "no start time" (-1), so the answer
        # is checked on the wire: the error, the id, an empty state, timeout 0, start time -1, producer id
        # -1, epoch -1, no topics.
        client.send(describe_transactions.DescribeTransactionsRequest(transactional_ids=("nobody",)))
        frame = client.receive_frame()
        assert (b"\x00\x10\x07nobody\x01\x00\x00\x00\x00" + b"\xff" * 18 + b"\x01\x00") in frame, frame.hex()
