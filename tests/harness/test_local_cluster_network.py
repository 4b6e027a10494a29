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
