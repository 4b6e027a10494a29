"""Transactions by raw requests against one broker process (KIP-98): the happy path, fencing and bad input.

Each test speaks the protocol directly (tests/broker/raw_client.py) so it can
send what no well-behaved client sends: requests from a fenced epoch, EndTxn for
an unknown transactional id, markers from an old epoch. Error codes are Kafka's:
15 COORDINATOR_NOT_AVAILABLE, 47 INVALID_PRODUCER_EPOCH, 48 INVALID_TXN_STATE,
49 INVALID_PRODUCER_ID_MAPPING, 50 INVALID_TRANSACTION_TIMEOUT,
51 CONCURRENT_TRANSACTIONS, 90 PRODUCER_FENCED.
"""

from __future__ import annotations

import datetime
import time

from broker.protocol.txn_markers import marker_commit
from broker.protocol.records import iter_batches

from . import kafka_requests as k
from .raw_client import RawClient

TXN_OVERRIDES = {
    "transaction.state.log.num.partitions": "3",
    "offsets.topic.num.partitions": "3",
    "group.initial.rebalance.delay.ms": "0",
}


def _find_txn(client, transactional_id, version=3):
    m = k.module("find_coordinator", version)
    if version >= 4:
        return client.call(m.FindCoordinatorRequest(key_type=1, coordinator_keys=(transactional_id,))).coordinators[0]
    return client.call(m.FindCoordinatorRequest(key=transactional_id, key_type=1))


def _init(client, transactional_id, timeout_ms=60_000, version=4, producer_id=-1, producer_epoch=-1):
    m = k.module("init_producer_id", version)
    fields = dict(transactional_id=transactional_id, transaction_timeout=datetime.timedelta(milliseconds=timeout_ms))
    if version >= 3:
        fields.update(producer_id=producer_id, producer_epoch=producer_epoch)
    return client.call(m.InitProducerIdRequest(**fields))


def _init_until_done(client, transactional_id, **kwargs):
    """InitProducerId, retried while the coordinator aborts the previous transaction (CONCURRENT_TRANSACTIONS)."""
    deadline = time.monotonic() + 10
    while True:
        response = _init(client, transactional_id, **kwargs)
        if response.error_code != 51 or time.monotonic() > deadline:
            return response
        time.sleep(0.05)


def _add_partitions(client, transactional_id, producer_id, epoch, topic, partitions=(0,), version=3):
    m = k.module("add_partitions_to_txn", version)
    response = client.call(m.AddPartitionsToTxnRequest(
        v3_and_below_transactional_id=transactional_id, v3_and_below_producer_id=producer_id,
        v3_and_below_producer_epoch=epoch,
        v3_and_below_topics=(m.AddPartitionsToTxnTopic(name=topic, partitions=tuple(partitions)),)))
    return {(t.name, r.partition_index): r.partition_error_code
            for t in response.results_by_topic_v3_and_below for r in t.results_by_partition}


def _add_offsets(client, transactional_id, producer_id, epoch, group_id, version=3):
    m = k.module("add_offsets_to_txn", version)
    return client.call(m.AddOffsetsToTxnRequest(transactional_id=transactional_id, producer_id=producer_id,
                                                producer_epoch=epoch, group_id=group_id)).error_code


def _end(client, transactional_id, producer_id, epoch, commit, version=3):
    m = k.module("end_txn", version)
    return client.call(m.EndTxnRequest(transactional_id=transactional_id, producer_id=producer_id,
                                       producer_epoch=epoch, committed=commit)).error_code


def _txn_offset_commit(client, transactional_id, group_id, producer_id, epoch, topic, offset, version=3):
    m = k.module("txn_offset_commit", version)
    response = client.call(m.TxnOffsetCommitRequest(
        transactional_id=transactional_id, group_id=group_id, producer_id=producer_id, producer_epoch=epoch,
        generation_id=-1, member_id="", group_instance_id=None,
        topics=(m.TxnOffsetCommitRequestTopic(name=topic, partitions=(m.TxnOffsetCommitRequestPartition(
            partition_index=0, committed_offset=offset, committed_leader_epoch=-1, committed_metadata=""),)),)))
    return response.topics[0].partitions[0].error_code


def _offset_fetch(client, group_id, topic):
    m = k.module("offset_fetch", 7)
    response = client.call(m.OffsetFetchRequest(group_id=group_id, topics=(
        m.OffsetFetchRequestTopic(name=topic, partition_indexes=(0,)),), require_stable=False))
    return response.topics[0].partitions[0].committed_offset


def _txn_batch(producer_id, epoch, first_sequence, values):
    return k.batch([(None, v) for v in values], producer_id=producer_id, producer_epoch=epoch,
                   base_sequence=first_sequence, attributes=0x10)


def _produce(client, topic, records, transactional_id):
    return client.call(k.produce(topic, 0, records, transactional_id=transactional_id)).responses[0].partition_responses[0]


def _fetch(client, topic, offset=0, isolation_level=0):
    request = k.fetch(topic, 0, offset)
    request = type(request)(**{**{f: getattr(request, f) for f in request.__dataclass_fields__ if not f.startswith("__")},
                               "isolation_level": isolation_level})
    return client.call(request).responses[0].partitions[0]


def _list_latest(client, topic, isolation_level):
    m = k.module("list_offsets", 6)
    response = client.call(m.ListOffsetsRequest(replica_id=-1, isolation_level=isolation_level, topics=(
        m.ListOffsetsTopic(name=topic, partitions=(m.ListOffsetsPartition(
            partition_index=0, current_leader_epoch=-1, timestamp=-1),)),)))
    return response.topics[0].partitions[0].offset


def _values(records) -> list[bytes]:
    from broker.coordinator.group_records import iter_records

    return [value for header, entries in iter_records(bytes(records or b"")) if not header.is_control
            for _, value in entries]


def _wait_for(condition, what: str, timeout_s: float = 10.0):
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s} s")
        time.sleep(0.05)


def _begin(client, transactional_id, topic="t"):
    assert _find_txn(client, transactional_id).error_code == 0
    init = _init_until_done(client, transactional_id)
    assert init.error_code == 0, init
    assert _add_partitions(client, transactional_id, init.producer_id, init.producer_epoch, topic) == {(topic, 0): 0}
    return init.producer_id, init.producer_epoch


def test_abort_then_commit_read_committed_and_uncommitted(broker_factory):
    broker = broker_factory(TXN_OVERRIDES)
    with RawClient(broker.port) as client:
        client.call(k.create_topic("t", 1))
        found = _find_txn(client, "tx", version=4)
        assert (found.error_code, found.node_id, found.port) == (0, 1, broker.port)
        meta = client.call(k.metadata(["__transaction_state"], allow_auto_topic_creation=False)).topics[0]
        assert meta.is_internal and len(meta.partitions) == 3
        producer_id, epoch = _begin(client, "tx")
        assert _produce(client, "t", _txn_batch(producer_id, epoch, 0, [b"a0", b"a1"]), "tx").error_code == 0
        # open transaction: read_committed sees nothing, LSO at its first offset; read_uncommitted sees it
        committed = _fetch(client, "t", isolation_level=1)
        assert (committed.high_watermark, committed.last_stable_offset, _values(committed.records)) == (2, 0, [])
        assert _values(_fetch(client, "t").records) == [b"a0", b"a1"]
        assert (_list_latest(client, "t", 1), _list_latest(client, "t", 0)) == (0, 2)
        assert _end(client, "tx", producer_id, epoch, False) == 0
        _wait_for(lambda: _fetch(client, "t", isolation_level=1).last_stable_offset == 3, "abort marker written")
        aborted = _fetch(client, "t", isolation_level=1)
        assert [(a.producer_id, a.first_offset) for a in aborted.aborted_transactions] == [(producer_id, 0)]
        buf = bytes(aborted.records)
        batches = list(iter_batches(buf))
        assert [h.is_control for _, h in batches] == [False, True]  # control batches go to clients, which skip them
        position, marker = batches[1]
        assert marker_commit(buf[position:position + marker.size]) is False
        # the next transaction commits
        assert _add_partitions(client, "tx", producer_id, epoch, "t") == {("t", 0): 0}
        assert _produce(client, "t", _txn_batch(producer_id, epoch, 2, [b"c0"]), "tx").error_code == 0
        assert _end(client, "tx", producer_id, epoch, True) == 0
        _wait_for(lambda: _fetch(client, "t", isolation_level=1).last_stable_offset == 5, "commit marker written")
        final = _fetch(client, "t", isolation_level=1)
        assert _values(final.records) == [b"a0", b"a1", b"c0"]  # the client drops a0, a1 by aborted_transactions
        assert [(a.producer_id, a.first_offset) for a in final.aborted_transactions] == [(producer_id, 0)]
        assert _fetch(client, "t", offset=3, isolation_level=1).aborted_transactions == ()
        assert _list_latest(client, "t", 1) == 5
        # a retried EndTxn of the finished outcome succeeds; the other outcome is INVALID_TXN_STATE
        assert _end(client, "tx", producer_id, epoch, True) == 0
        assert _end(client, "tx", producer_id, epoch, False) == 48


def test_a_new_transaction_reusing_the_sequences_of_an_aborted_one_is_refused_not_swallowed(broker_factory):
    # librdkafka reuses the sequence of a batch it took for unwritten after an abort, without bumping
    # its epoch; answering it as a duplicate would drop the new records from a committed transaction.
    broker = broker_factory(TXN_OVERRIDES)
    with RawClient(broker.port) as client:
        client.call(k.create_topic("t", 1))
        producer_id, epoch = _begin(client, "tx")
        assert _produce(client, "t", _txn_batch(producer_id, epoch, 0, [b"aborted"]), "tx").error_code == 0
        # a retry within the transaction is a duplicate: its original offset, nothing appended
        retry = _produce(client, "t", _txn_batch(producer_id, epoch, 0, [b"aborted"]), "tx")
        assert (retry.error_code, retry.base_offset) == (0, 0)
        assert _end(client, "tx", producer_id, epoch, False) == 0
        _wait_for(lambda: _fetch(client, "t", isolation_level=1).last_stable_offset == 2, "abort marker written")
        assert _add_partitions(client, "tx", producer_id, epoch, "t") == {("t", 0): 0}
        reused = _produce(client, "t", _txn_batch(producer_id, epoch, 0, [b"new"]), "tx")
        assert reused.error_code == 45, reused  # OUT_OF_ORDER_SEQUENCE_NUMBER
        assert _produce(client, "t", _txn_batch(producer_id, epoch, 1, [b"new"]), "tx").error_code == 0
        assert _end(client, "tx", producer_id, epoch, True) == 0
        _wait_for(lambda: _fetch(client, "t", isolation_level=1).last_stable_offset == 4, "commit marker written")
        assert _values(_fetch(client, "t", isolation_level=1).records) == [b"aborted", b"new"]


def test_end_txn_for_unknown_transactional_id_changes_nothing(broker_factory):
    broker = broker_factory(TXN_OVERRIDES)
    with RawClient(broker.port) as client:
        client.call(k.create_topic("t", 1))
        producer_id, epoch = _begin(client, "known")
        assert _find_txn(client, "nobody").error_code == 0
        assert _end(client, "nobody", producer_id, epoch, True) == 49  # INVALID_PRODUCER_ID_MAPPING
        assert _end(client, "known", producer_id + 1000, epoch, True) == 49
        assert _add_partitions(client, "nobody", producer_id, epoch, "t") == {("t", 0): 49}
        # the known transaction is still open and still commits
        assert _produce(client, "t", _txn_batch(producer_id, epoch, 0, [b"x"]), "known").error_code == 0
        assert _end(client, "known", producer_id, epoch, True) == 0
        _wait_for(lambda: _fetch(client, "t", isolation_level=1).last_stable_offset == 2, "commit marker written")
    assert broker.alive()


def test_second_producer_with_the_same_transactional_id_fences_the_first(broker_factory):
    broker = broker_factory(TXN_OVERRIDES)
    with RawClient(broker.port) as client:
        client.call(k.create_topic("t", 1))
        producer_id, epoch = _begin(client, "shared")
        assert _produce(client, "t", _txn_batch(producer_id, epoch, 0, [b"old"]), "shared").error_code == 0
        # the second producer: its first try aborts the open transaction (bumping the epoch), a retry gets a new epoch
        assert _init(client, "shared").error_code == 51
        second = _init_until_done(client, "shared")
        assert (second.error_code, second.producer_id) == (0, producer_id) and second.producer_epoch == epoch + 2
        # the first producer is fenced on its next call, whatever it is
        assert _end(client, "shared", producer_id, epoch, True) == 90  # PRODUCER_FENCED (EndTxn v3)
        assert _end(client, "shared", producer_id, epoch, True, version=1) == 47  # INVALID_PRODUCER_EPOCH before KIP-588
        assert _add_partitions(client, "shared", producer_id, epoch, "t", version=1) == {("t", 0): 47}
        assert _produce(client, "t", _txn_batch(producer_id, epoch, 1, [b"late"]), "shared").error_code == 47
        # KIP-360: asking to bump an epoch it no longer holds is refused too
        assert _init(client, "shared", producer_id=producer_id, producer_epoch=epoch).error_code == 90
        assert _init(client, "shared", version=3, producer_id=producer_id, producer_epoch=epoch).error_code == 47
        committed = _wait_for(lambda: (lambda r: r if r.last_stable_offset == 2 else None)(
            _fetch(client, "t", isolation_level=1)), "abort marker written")
        assert [(a.producer_id, a.first_offset) for a in committed.aborted_transactions] == [(producer_id, 0)]


def test_txn_offset_commit_from_a_fenced_epoch_commits_nothing(broker_factory):
    broker = broker_factory(TXN_OVERRIDES)
    with RawClient(broker.port) as client:
        client.call(k.create_topic("t", 1))
        producer_id, epoch = _begin(client, "offsets")
        assert _add_offsets(client, "offsets", producer_id, epoch, "grp") == 0
        assert _txn_offset_commit(client, "offsets", "grp", producer_id, epoch, "t", 7) == 0
        assert _offset_fetch(client, "grp", "t") == -1  # pending until the commit marker
        second = _init_until_done(client, "offsets")
        assert second.error_code == 0 and second.producer_epoch == epoch + 2
        # the abort marker (epoch + 1) reached __consumer_offsets: epoch 0 is fenced there
        code = _wait_for(lambda: (lambda c: c if c != 0 else None)(
            _txn_offset_commit(client, "offsets", "grp", producer_id, epoch, "t", 9)), "fenced TxnOffsetCommit")
        assert code in (47, 90)
        assert _end(client, "offsets", producer_id, epoch, True) == 90
        assert _offset_fetch(client, "grp", "t") == -1
        # the new producer's transaction commits its offsets
        new_epoch = second.producer_epoch
        assert _add_offsets(client, "offsets", producer_id, new_epoch, "grp") == 0
        assert _txn_offset_commit(client, "offsets", "grp", producer_id, new_epoch, "t", 11) == 0
        assert _end(client, "offsets", producer_id, new_epoch, True) == 0
        _wait_for(lambda: _offset_fetch(client, "grp", "t") == 11, "transactional offset committed")


def test_bad_transaction_input_gets_kafka_errors(broker_factory):
    broker = broker_factory({**TXN_OVERRIDES, "transaction.max.timeout.ms": "60000"})
    with RawClient(broker.port) as client:
        client.call(k.create_topic("t", 1))
        assert _find_txn(client, "").error_code == 42  # INVALID_REQUEST: empty transactional id
        assert _find_txn(client, "x").error_code == 0
        assert _init(client, "x", timeout_ms=120_000).error_code == 50  # above transaction.max.timeout.ms
        init = _init(client, "x")
        producer_id, epoch = init.producer_id, init.producer_epoch
        # an unknown topic: nothing is added, the known partitions were not attempted (55)
        m = k.module("add_partitions_to_txn", 3)
        response = client.call(m.AddPartitionsToTxnRequest(
            v3_and_below_transactional_id="x", v3_and_below_producer_id=producer_id, v3_and_below_producer_epoch=epoch,
            v3_and_below_topics=(m.AddPartitionsToTxnTopic(name="t", partitions=(0, 5)),
                                 m.AddPartitionsToTxnTopic(name="missing", partitions=(0,)))))
        errors = {(t.name, r.partition_index): r.partition_error_code
                  for t in response.results_by_topic_v3_and_below for r in t.results_by_partition}
        assert errors == {("t", 0): 55, ("t", 5): 3, ("missing", 0): 3}
        assert _end(client, "x", producer_id, epoch, True) == 48  # nothing open: INVALID_TXN_STATE
        # WriteTxnMarkers from an old epoch is refused on the partition
        assert _add_partitions(client, "x", producer_id, epoch, "t") == {("t", 0): 0}
        assert _produce(client, "t", _txn_batch(producer_id, epoch + 3, 0, [b"v"]), "x").error_code == 0
        w = k.module("write_txn_markers", 1)
        answer = client.call(w.WriteTxnMarkersRequest(markers=(w.WritableTxnMarker(
            producer_id=producer_id, producer_epoch=epoch, transaction_result=True,
            topics=(w.WritableTxnMarkerTopic(name="t", partition_indexes=(0,)),), coordinator_epoch=0),)))
        assert answer.markers[0].topics[0].partitions[0].error_code == 47
        assert _fetch(client, "t", isolation_level=1).last_stable_offset == 0
        # a client may not write a control batch itself
        control = k.batch([(b"\x00\x00\x00\x01", b"\x00\x00\x00\x00\x00\x00")], producer_id=producer_id,
                          producer_epoch=epoch + 3, attributes=0x30)
        assert _produce(client, "t", control, "x").error_code == 87  # INVALID_RECORD
        # a marker from a coordinator epoch older than one the partition has seen (a
        # coordinator that lost its partition, delivering late) is fenced and changes nothing
        def marker(commit, coordinator_epoch):
            answer = client.call(w.WriteTxnMarkersRequest(markers=(w.WritableTxnMarker(
                producer_id=producer_id, producer_epoch=epoch + 3, transaction_result=commit,
                topics=(w.WritableTxnMarkerTopic(name="t", partition_indexes=(0,)),),
                coordinator_epoch=coordinator_epoch),)))
            return answer.markers[0].topics[0].partitions[0].error_code

        assert marker(False, 5) == 0  # aborts the open transaction
        end_before = _fetch(client, "t").high_watermark
        assert _produce(client, "t", _txn_batch(producer_id, epoch + 3, 1, [b"w"]), "x").error_code == 0
        assert marker(False, 4) == 52  # TRANSACTION_COORDINATOR_FENCED
        fetched = _fetch(client, "t", isolation_level=1)
        assert fetched.last_stable_offset == end_before  # the new transaction is still open, not aborted
        assert marker(True, 5) == 0
        assert _fetch(client, "t", isolation_level=1).last_stable_offset == end_before + 2
    assert broker.alive()


def test_transaction_past_its_timeout_is_aborted_and_its_producer_fenced(broker_factory):
    broker = broker_factory({**TXN_OVERRIDES, "transaction.abort.timed.out.transaction.cleanup.interval.ms": "100"})
    with RawClient(broker.port) as client:
        client.call(k.create_topic("t", 1))
        assert _find_txn(client, "slow").error_code == 0
        init = _init(client, "slow", timeout_ms=300)
        producer_id, epoch = init.producer_id, init.producer_epoch
        assert _add_partitions(client, "slow", producer_id, epoch, "t") == {("t", 0): 0}
        assert _produce(client, "t", _txn_batch(producer_id, epoch, 0, [b"v"]), "slow").error_code == 0
        aborted = _wait_for(lambda: (lambda r: r if r.last_stable_offset == 2 else None)(
            _fetch(client, "t", isolation_level=1)), "timed-out transaction aborted", timeout_s=5)
        assert [(a.producer_id, a.first_offset) for a in aborted.aborted_transactions] == [(producer_id, 0)]
        assert _end(client, "slow", producer_id, epoch, True) == 90


def test_txn_offset_commit_checks_member_and_generation_but_not_a_rebalance_in_progress(broker_factory):
    from .test_group_process import _commit, _join

    broker = broker_factory(TXN_OVERRIDES)
    with RawClient(broker.port) as client:
        client.call(k.create_topic("t", 1))
        producer_id, epoch = _begin(client, "member-tx")
        assert _add_offsets(client, "member-tx", producer_id, epoch, "grp") == 0
        member_id = _join(client, "grp").member_id
        joined = _join(client, "grp", member_id)
        assert joined.error_code == 0 and joined.generation_id == 1
        # no SyncGroup yet: the group completes its rebalance, a plain OffsetCommit is refused
        assert _commit(client, "grp", 1, member_id, 3) == 27  # REBALANCE_IN_PROGRESS

        def commit(generation, member, offset):
            m = k.module("txn_offset_commit", 3)
            response = client.call(m.TxnOffsetCommitRequest(
                transactional_id="member-tx", group_id="grp", producer_id=producer_id, producer_epoch=epoch,
                generation_id=generation, member_id=member, group_instance_id=None,
                topics=(m.TxnOffsetCommitRequestTopic(name="t", partitions=(m.TxnOffsetCommitRequestPartition(
                    partition_index=0, committed_offset=offset, committed_leader_epoch=-1, committed_metadata=""),)),)))
            return response.topics[0].partitions[0].error_code

        assert commit(2, member_id, 4) == 22  # ILLEGAL_GENERATION
        assert commit(1, "someone-else", 4) == 25  # UNKNOWN_MEMBER_ID
        assert commit(1, member_id, 5) == 0
        assert _end(client, "member-tx", producer_id, epoch, True) == 0
        _wait_for(lambda: _offset_fetch(client, "grp", "t") == 5, "transactional offset committed")


def test_transaction_open_at_a_crash_is_aborted_after_restart_without_any_transactional_client(broker_factory):
    broker = broker_factory({**TXN_OVERRIDES, "transaction.abort.timed.out.transaction.cleanup.interval.ms": "100",
                             "log.flush.interval.messages": "1"})
    with RawClient(broker.port) as client:
        client.call(k.create_topic("t", 1))
        assert _find_txn(client, "crash").error_code == 0
        init = _init(client, "crash", timeout_ms=500)
        producer_id, epoch = init.producer_id, init.producer_epoch
        assert _add_partitions(client, "crash", producer_id, epoch, "t") == {("t", 0): 0}
        assert _produce(client, "t", _txn_batch(producer_id, epoch, 0, [b"v"]), "crash").error_code == 0
    broker.kill()
    broker.restart()
    with RawClient(broker.port) as client:
        # only a read_committed consumer comes back: the open transaction still ends (timeout abort)
        assert _fetch(client, "t", isolation_level=1).last_stable_offset == 0
        aborted = _wait_for(lambda: (lambda r: r if r.last_stable_offset == 2 else None)(
            _fetch(client, "t", isolation_level=1)), "the open transaction aborted after restart", timeout_s=5)
        assert [(a.producer_id, a.first_offset) for a in aborted.aborted_transactions] == [(producer_id, 0)]
