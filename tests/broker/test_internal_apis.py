"""Broker-internal APIs only on the inter-broker listener (issue 17, point 2), on real broker processes.

A cluster node with two listeners (INTERNAL for the brokers and the controller
quorum, EXTERNAL for clients) must close a client-listener connection that
sends a Raft or controller RPC (register_broker, allocate_producer_ids), a
WriteTxnMarkers or a Fetch from a replica, as Kafka closes one for an API not
enabled on its listener; ApiVersions there lists client APIs only. The same
requests on INTERNAL are answered, which shows that the forged frames are
well-formed and that only the listener refuses them.
"""

from __future__ import annotations

import dataclasses
import json
import struct
import time
import uuid

import pytest

from broker.controller.rpc import CONTROLLER, RAFT
from broker.protocol import apis
from broker.protocol.wire import RequestHeader, encode_request_header
from broker.server.config import load_config
from tests.broker import kafka_requests as k
from tests.broker.conftest import BrokerProcess
from tests.broker.raw_client import RawClient
from tests.broker.test_replication_process import free_ports

_INT32 = struct.Struct(">i")


def internal_frame(api_key: int, body: bytes, correlation_id: int = 7) -> bytes:
    """An internal request as a peer frames it: header v1, then the body (broker.controller.rpc)."""
    payload = encode_request_header(RequestHeader(api_key, 0, correlation_id, "forger", 0), False) + body
    return _INT32.pack(len(payload)) + payload


def controller_request(op: dict) -> bytes:
    return internal_frame(CONTROLLER, json.dumps(op).encode())


def answer_of(client: RawClient) -> dict:
    frame = client.receive_frame()
    return json.loads(frame[4:])  # response header v0: the correlation id only


@pytest.fixture
def two_listener_node(tmp_path):
    internal, external = free_ports(2)
    properties = "\n".join([
        "node.id=1",
        f"listeners=INTERNAL://127.0.0.1:{internal},EXTERNAL://127.0.0.1:{external}",
        "listener.security.protocol.map=INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT",
        "inter.broker.listener.name=INTERNAL",
        "controller.listener.names=INTERNAL",
        f"controller.quorum.voters=1@127.0.0.1:{internal}",
        f"log.dirs={tmp_path}/n1/logs",
        "broker.session.timeout.ms=3000",
        "broker.heartbeat.interval.ms=500",
    ]) + "\n"
    node = BrokerProcess(tmp_path / "n1", properties=properties)
    try:
        node.start(timeout_s=30)
        with RawClient(external) as client:
            deadline = time.monotonic() + 30
            while [b.node_id for b in client.call(k.metadata([])).brokers] != [1] or not _registered(client):
                assert time.monotonic() < deadline, "the node did not register itself within 30 s"
                time.sleep(0.1)
        yield node, internal, external
        assert node.alive(), "the broker died"
    finally:
        node.kill()
        print(f"---- stderr ----\n{node.stderr_text()[-4000:]}")


def _registered(client: RawClient) -> bool:
    return client.call(k.create_topic(f"probe-{uuid.uuid4().hex[:6]}", 1)).topics[0].error_code == 0


def _broker_ids(port: int) -> list[int]:
    with RawClient(port) as client:
        return [b.node_id for b in client.call(k.metadata([])).brokers]


def test_forged_controller_and_raft_requests_close_the_client_connection(two_listener_node):
    node, internal, external = two_listener_node
    forged = [
        # the evidence: a plain TCP client registers (and so fences) another broker
        controller_request({"op": "register_broker", "broker_id": 2, "incarnation_id": str(uuid.uuid4()),
                            "host": "127.0.0.1", "port": 1, "rack": None}),
        controller_request({"op": "broker_heartbeat", "broker_id": 1, "incarnation_id": str(uuid.uuid4()),
                            "metadata_offset": 0}),
        controller_request({"op": "allocate_producer_ids", "broker_id": 1}),
        internal_frame(RAFT, struct.pack(">I", 0)),
    ]
    for frame in forged:
        with RawClient(external) as client:
            client.send_bytes(frame)
            assert client.is_closed_by_peer(), f"a forged internal request was answered on the client listener: {frame!r}"
    assert "broker-internal API, not served on client listener EXTERNAL" in node.stderr_text()
    assert _broker_ids(external) == [1]  # no broker 2 was registered
    # the same frames are well-formed: the inter-broker listener answers them
    with RawClient(internal) as client:
        client.send_bytes(controller_request({"op": "allocate_producer_ids", "broker_id": 1}))
        assert answer_of(client)["error_code"] == 0


def test_write_txn_markers_and_replica_fetch_close_the_client_connection(two_listener_node):
    node, internal, external = two_listener_node
    w = k.module("write_txn_markers", 1)
    markers = w.WriteTxnMarkersRequest(markers=(w.WritableTxnMarker(
        producer_id=1, producer_epoch=0, transaction_result=False,
        topics=(w.WritableTxnMarkerTopic(name="t", partition_indexes=(0,)),), coordinator_epoch=0),))
    follower_fetch = dataclasses.replace(k.fetch("t", 0, 0, version=11), replica_id=1)
    for request in (markers, follower_fetch):
        with RawClient(external) as client:
            client.send(request)
            assert client.is_closed_by_peer(), f"{type(request).__name__} was answered on the client listener"
        with RawClient(internal) as client:
            client.call(request)  # answered on the inter-broker listener
    assert node.alive()


def test_api_versions_lists_client_apis_on_the_client_listener(two_listener_node):
    _, internal, external = two_listener_node
    with RawClient(external) as client:
        listed = {entry.api_key for entry in client.call(k.api_versions()).api_keys}
    assert apis.WRITE_TXN_MARKERS not in listed
    assert listed == set(apis.CLIENT_VERSIONS)
    with RawClient(internal) as client:
        listed = {entry.api_key for entry in client.call(k.api_versions()).api_keys}
    assert listed == set(apis.SUPPORTED_VERSIONS)
    # the KIP-511 fallback (an ApiVersions newer than ours) lists client APIs only as well
    with RawClient(external) as client:
        header = encode_request_header(RequestHeader(apis.API_VERSIONS, 99, 5, "future", 0), True)
        client.send_bytes(_INT32.pack(len(header)) + header)
        frame = client.receive_frame()
    (count,) = _INT32.unpack_from(frame, 6)
    keys = {struct.unpack_from(">h", frame, 10 + 6 * n)[0] for n in range(count)}
    assert keys == set(apis.CLIENT_VERSIONS)


def test_controller_listener_must_be_the_inter_broker_one():
    text = ("node.id=1\nlisteners=INTERNAL://127.0.0.1:9092,EXTERNAL://127.0.0.1:9093\n"
            "listener.security.protocol.map=INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT\ninter.broker.listener.name=INTERNAL\n"
            "controller.quorum.voters=1@127.0.0.1:9092\n")
    with pytest.raises(ValueError, match="controller.listener.names='EXTERNAL' must name the inter-broker listener"):
        load_config(text, "server.properties", ["controller.listener.names=EXTERNAL"])
    assert load_config(text, "server.properties", ["controller.listener.names=INTERNAL"]).is_client_listener("EXTERNAL")
