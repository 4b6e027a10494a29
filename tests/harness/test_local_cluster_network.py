"""A partition between two of our broker nodes cuts exactly their replication and controller traffic.

Three real broker processes behind the fault proxy: after cutting n1 <-> n2, the
proxy forwards not one byte between them, while n1 <-> n3 and n2 <-> n3 keep
carrying Raft heartbeats and follower fetches; after healing, n1 <-> n2 carries
bytes again.
"""

import time

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from harness.backends.local import LocalCluster
from harness.runner import wait_for_brokers
from harness.system import logquake_broker
from tests.broker.test_cluster import assert_forged_registration_refused

pytestmark = pytest.mark.slow

PAIRS = [("n1", "n3"), ("n3", "n1"), ("n2", "n3"), ("n3", "n2")]


def _snapshot(cluster):
    return dict(cluster.proxy.bytes_forwarded)


def test_a_cut_link_between_nodes_carries_no_bytes_while_the_others_work():
    cluster = LocalCluster(logquake_broker({}, 3), 3)
    cluster.setup()
    try:
        wait_for_brokers(cluster, 60)
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers()})
        admin.create_topics([NewTopic("links", 3, 3)])["links"].result(60)
        time.sleep(2)
        before = _snapshot(cluster)
        assert before.get(("n1", "n2"), 0) > 0 and before.get(("n2", "n1"), 0) > 0, before
        cluster.partition({"n1": {"n2"}, "n2": {"n1"}})
        time.sleep(0.5)  # bytes already in flight when the cut came may still be forwarded
        cut = _snapshot(cluster)
        time.sleep(4)
        after = _snapshot(cluster)
        assert after.get(("n1", "n2"), 0) == cut.get(("n1", "n2"), 0)
        assert after.get(("n2", "n1"), 0) == cut.get(("n2", "n1"), 0)
        for pair in PAIRS:
            assert after.get(pair, 0) > cut.get(pair, 0), f"{pair} carried nothing while only n1-n2 was cut"
        cluster.heal()
        time.sleep(3)
        healed = _snapshot(cluster)
        assert healed.get(("n1", "n2"), 0) > after.get(("n1", "n2"), 0)
        assert healed.get(("n2", "n1"), 0) > after.get(("n2", "n1"), 0)
    finally:
        cluster.teardown()


def test_a_client_cannot_reach_the_broker_internal_apis():
    """Issue 17: a plain TCP client on a node's (proxied) client port forged register_broker for broker 2 and
    fenced it. Clients now reach the CLIENT listener, which closes such a connection, while the nodes' own
    traffic (from their own addresses) reaches INTERNAL through the same proxy port, so the cluster works."""
    import json
    import socket
    import struct
    import uuid

    cluster = LocalCluster(logquake_broker({}, 3), 3)
    cluster.setup()
    try:
        wait_for_brokers(cluster, 60)
        host, port = cluster.node_bootstrap("n1").rsplit(":", 1)
        body = json.dumps({"op": "register_broker", "broker_id": 2, "incarnation_id": str(uuid.uuid4()),
                           "host": "127.0.0.1", "port": 1, "rack": None}).encode()
        header = struct.pack(">hhih", 30001, 0, 7, 6) + b"forger"  # request header v1 of controller RPC 30001
        with socket.create_connection((host, int(port)), timeout=10) as forger:
            forger.sendall(struct.pack(">i", len(header) + len(body)) + header + body)
            assert forger.recv(1) == b"", "the client port answered a forged register_broker"
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers()})
        assert_forged_registration_refused(admin, int(cluster.node_bootstrap("n2").rsplit(":", 1)[1]))
        admin.create_topics([NewTopic("works", 1, 3)])["works"].result(60)  # replication and the quorum work
    finally:
        cluster.teardown()
