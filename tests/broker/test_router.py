"""The node's API router (broker.server.router), and a node's APIs answered in-process through it.

The in-process tests assemble a one-node broker (its logs in a temporary
directory) without a server or a socket, hand kio requests to the router and
decode what it answers with the wire codecs, so produce, fetch, the group
coordinator and the transaction coordinator are exercised exactly as a
connection would, minus the bytes on a socket.
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
import logging
import struct

import pytest

from broker.io import Runtime
from broker.log.manager import LogManager
from broker.protocol import apis
from broker.protocol.wire import RequestHeader
from broker.server.config import load_config
from broker.server.node import build_handlers
from broker.server.router import Router, RouterError, node_router

from . import kafka_requests as k
from .test_txn_requests import TXN_OVERRIDES, _begin, _end, _fetch, _find_txn, _produce, _txn_batch, _values, _wait_for


class InProcessClient:
    """`call(request)` like tests/broker/raw_client.py's, answered by a router on this thread's event loop."""

    def __init__(self, router: Router, loop: asyncio.AbstractEventLoop):
        self.router = router
        self.loop = loop
        self.correlation = itertools.count(1)

    def call(self, request):
        api_key, version = request.__api_key__, request.__version__
        header = RequestHeader(api_key, version, next(self.correlation), "in-process", 0)
        body = self.loop.run_until_complete(self.router.dispatch(header, request))
        raw = b"".join(bytes(chunk) for chunk in body) if isinstance(body, list) else apis.encode_entity(body)
        return apis.decode_response(api_key, version, raw)


@pytest.fixture
def node(tmp_path):
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    properties = "".join(f"{key}={value}\n" for key, value in TXN_OVERRIDES.items())
    config = load_config(f"node.id=1\nlisteners=PLAINTEXT://127.0.0.1:9092\nlog.dirs={tmp_path}\n{properties}", "test", [])
    runtime = Runtime.real(seed=3)
    storage = LogManager([str(tmp_path)], config.log_config, runtime)
    handlers = build_handlers(config, runtime, storage, str(tmp_path))
    handlers.load()
    client = InProcessClient(node_router(handlers), loop)
    try:
        yield client
    finally:
        loop.run_until_complete(handlers.txn_apis.stop())
        loop.run_until_complete(handlers.group_apis.stop())
        storage.close()
        loop.close()
        asyncio.set_event_loop(None)


def test_produce_and_fetch_in_process(node):
    assert node.call(k.create_topic("t", 2)).topics[0].error_code == 0
    answer = node.call(k.produce("t", 1, k.batch([(b"k", b"v0"), (None, b"v1")]), acks=1)).responses[0].partition_responses[0]
    assert (answer.error_code, answer.base_offset) == (0, 0)
    fetched = node.call(k.fetch("t", 1, 0)).responses[0].partitions[0]
    assert (fetched.error_code, fetched.high_watermark, _values(fetched.records)) == (0, 2, [b"v0", b"v1"])
    assert node.call(k.fetch("t", 0, 0)).responses[0].partitions[0].high_watermark == 0


def test_group_coordinator_in_process(node):
    node.call(k.create_topic("t", 1))
    find = k.module("find_coordinator", 3)
    found = node.call(find.FindCoordinatorRequest(key="g", key_type=0))
    assert (found.error_code, found.node_id) == (0, 1)
    join = k.module("join_group", 3)
    joined = node.call(join.JoinGroupRequest(
        group_id="g", session_timeout=datetime.timedelta(seconds=10), rebalance_timeout=datetime.timedelta(seconds=10),
        member_id="", protocol_type="consumer", protocols=(join.JoinGroupRequestProtocol(name="range", metadata=b""),)))
    assert joined.error_code == 0 and joined.leader == joined.member_id
    sync = k.module("sync_group", 3)
    synced = node.call(sync.SyncGroupRequest(
        group_id="g", generation_id=joined.generation_id, member_id=joined.member_id, group_instance_id=None,
        assignments=(sync.SyncGroupRequestAssignment(member_id=joined.member_id, assignment=b"plan"),)))
    assert (synced.error_code, synced.assignment) == (0, b"plan")
    commit = k.module("offset_commit", 7)
    committed = node.call(commit.OffsetCommitRequest(
        group_id="g", generation_id_or_member_epoch=joined.generation_id, member_id=joined.member_id,
        group_instance_id=None, topics=(commit.OffsetCommitRequestTopic(name="t", partitions=(
            commit.OffsetCommitRequestPartition(partition_index=0, committed_offset=7, committed_leader_epoch=-1,
                                                committed_metadata=""),)),)))
    assert committed.topics[0].partitions[0].error_code == 0
    fetch = k.module("offset_fetch", 7)
    answer = node.call(fetch.OffsetFetchRequest(group_id="g", topics=(
        fetch.OffsetFetchRequestTopic(name="t", partition_indexes=(0,)),), require_stable=False))
    assert answer.topics[0].partitions[0].committed_offset == 7


def test_transaction_coordinator_in_process(node):
    node.call(k.create_topic("t", 1))
    producer_id, epoch = _begin(node, "tx")
    assert _produce(node, "t", _txn_batch(producer_id, epoch, 0, [b"a"]), "tx").error_code == 0
    assert _fetch(node, "t", isolation_level=1).last_stable_offset == 0  # open: nothing stable yet
    assert _end(node, "tx", producer_id, epoch, True) == 0
    _wait_for(lambda: _fetch(node, "t", isolation_level=1).last_stable_offset == 2, "commit marker written")
    assert _values(_fetch(node, "t", isolation_level=1).records) == [b"a"]


def test_find_coordinator_goes_to_the_owner_of_its_key_type(node):
    assert _find_txn(node, "tx").error_code == 0
    m = k.module("find_coordinator", 4)
    answer = node.call(m.FindCoordinatorRequest(key_type=7, coordinator_keys=("a", "b")))
    assert [(c.key, c.error_code) for c in answer.coordinators] == [("a", 42), ("b", 42)]  # INVALID_REQUEST
    assert "key_type=7" in answer.coordinators[0].error_message


def _noop(header, request):
    return None


def test_an_api_registered_twice_late_or_not_at_all_is_an_assembly_error():
    router = Router()
    router.register("a", {apis.PRODUCE: _noop})
    with pytest.raises(RouterError, match="Produce registered twice: by a and by b"):
        router.register("b", {apis.PRODUCE: _noop})
    router.register_coordinator("a", 0, _noop)
    with pytest.raises(RouterError, match="key type 0 registered twice"):
        router.register_coordinator("b", 0, _noop)
    with pytest.raises(RouterError, match="per key type"):
        router.register("b", {apis.FIND_COORDINATOR: _noop})
    with pytest.raises(RouterError, match="no handler for .*Fetch"):
        router.seal()
    complete = Router()
    complete.register("all", {key: _noop for key in apis.SUPPORTED_VERSIONS if key != apis.FIND_COORDINATOR})
    complete.seal()
    with pytest.raises(RouterError, match="sealed"):
        complete.register("late", {})


def test_a_cluster_node_answers_the_metadata_apis_itself(tmp_path):
    from broker.server.cluster import ClusterNode

    loop = asyncio.new_event_loop()
    try:
        config = load_config(f"node.id=1\nlisteners=PLAINTEXT://127.0.0.1:9092\nlog.dirs={tmp_path}\n"
                             "controller.quorum.voters=1@127.0.0.1:9092\n", "test", [])
        runtime = Runtime.real(seed=5)
        handlers = build_handlers(config, runtime, LogManager([str(tmp_path)], config.log_config, runtime), str(tmp_path))
        router = node_router(handlers, ClusterNode(config, runtime, handlers))
        owners = {apis.API_NAMES[key]: router.owner(key) for key in apis.SUPPORTED_VERSIONS}
        assert {name for name, owner in owners.items() if owner == "cluster node"} == {
            "Metadata", "CreateTopics", "DeleteTopics", "InitProducerId"}
        assert owners["Produce"] == "request handlers" and owners["JoinGroup"] == "group coordinator"
        assert owners["EndTxn"] == "transaction coordinator" and owners["FindCoordinator"] == "router"
        assert node_router(handlers).owner(apis.METADATA) == "request handlers"
    finally:
        loop.close()


def test_a_restarted_cluster_node_serves_no_stale_metadata_before_it_caught_up(tmp_path):
    """Until its image holds its own registration, a node's leaders and epochs are its replayed past: Metadata
    then answers LEADER_NOT_AVAILABLE (retried by every client) instead of naming them."""
    import types

    from broker.server.cluster import ClusterNode

    loop = asyncio.new_event_loop()
    try:
        config = load_config(f"node.id=1\nlisteners=PLAINTEXT://127.0.0.1:9092\nlog.dirs={tmp_path}\n"
                             "controller.quorum.voters=1@127.0.0.1:9092\n", "test", [])
        runtime = Runtime.real(seed=5)
        handlers = build_handlers(config, runtime, LogManager([str(tmp_path)], config.log_config, runtime), str(tmp_path))
        cluster = ClusterNode(config, runtime, handlers)
        request = k.metadata(["t"], allow_auto_topic_creation=False)
        header = RequestHeader(apis.METADATA, request.__version__, 1, "test", 0)
        cluster.replica_manager = types.SimpleNamespace(caught_up=False)  # the state of a node replaying its log
        stale = loop.run_until_complete(cluster.metadata(header, request))
        assert [(t.name, t.error_code, t.partitions) for t in stale.topics] == [("t", 5, ())]  # LEADER_NOT_AVAILABLE
        cluster.replica_manager = types.SimpleNamespace(caught_up=True)
        current = loop.run_until_complete(cluster.metadata(header, request))
        assert [(t.name, t.error_code) for t in current.topics] == [("t", 3)]  # the image's answer: no such topic
    finally:
        loop.close()


KAFKA_STORAGE_ERROR = 56


def damage_second_batch(segment) -> None:
    """Overwrite the magic byte of the segment's second batch, as a disk that returns garbage would."""
    data = bytearray(segment.read_bytes())
    second = 12 + struct.unpack_from(">i", data, 8)[0]  # base offset (8) and length (4), then the batch
    data[second + 16] = 0x55  # after base offset (8), length (4) and partition leader epoch (4)
    segment.write_bytes(bytes(data))


def test_a_damaged_log_answers_kafka_storage_error_and_the_other_partitions_are_served(node, tmp_path, caplog):
    assert node.call(k.create_topic("t", 2)).topics[0].error_code == 0
    for value in (b"a", b"b", b"c"):
        assert node.call(k.produce("t", 0, k.batch([(None, value)]), acks=1)).responses[0].partition_responses[0] \
            .error_code == 0
    assert node.call(k.produce("t", 1, k.batch([(None, b"other")]), acks=1)).responses[0].partition_responses[0] \
        .error_code == 0
    damage_second_batch(tmp_path / "t-0" / f"{0:020d}.log")
    with caplog.at_level(logging.ERROR, logger="broker.server"):
        for _ in range(3):  # finding offset 2 walks the batch headers from the start, through the damaged one
            damaged = node.call(k.fetch("t", 0, 2)).responses[0].partitions[0]
            assert (damaged.error_code, _values(damaged.records)) == (KAFKA_STORAGE_ERROR, [])
    said = [r.getMessage() for r in caplog.records if "cannot be read" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("t-0: the log cannot be read at offset 2 (CorruptRecordError: "), said
    healthy = node.call(k.fetch("t", 1, 0)).responses[0].partitions[0]
    assert (healthy.error_code, _values(healthy.records)) == (0, [b"other"])
