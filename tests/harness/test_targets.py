"""Role targets against a real three-broker cluster: the successor a lagging-follower kill pauses is the node the
controller really elects when the leader dies."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import NewTopic

from harness.targets import MetadataTargets
from tests.broker.test_cluster import Cluster, create

pytestmark = pytest.mark.slow


def test_the_successor_is_the_node_elected_when_the_leader_dies(tmp_path):
    with Cluster(tmp_path) as three:
        _elect_the_successor(three)


def _elect_the_successor(three: Cluster) -> None:
    for node_id in (1, 2, 3):
        three.wait_for(f"all brokers registered at node {node_id}", lambda n=node_id: three.registered(n, {1, 2, 3}))
    create(three.admin(1), NewTopic("t", 1, 3))
    bootstrap = ",".join(three.address(n) for n in (1, 2, 3))
    targets = MetadataTargets(bootstrap, "t", ["n1", "n2", "n3"])

    def settled():
        partition = three.metadata(1).topics["t"].partitions[0]
        return partition if partition.leader > 0 and len(partition.isrs) == 3 else None

    partition = three.wait_for("t-0 led, with all three in its ISR", settled, 20)
    leader, successor = targets.leader(), targets.successor()
    assert leader == f"n{partition.leader}" and successor not in (None, leader)
    assert successor == f"n{[r for r in partition.replicas if r != partition.leader][0]}"

    three.nodes[partition.leader].kill()
    survivor = next(n for n in (1, 2, 3) if n != partition.leader)

    def moved():
        now = three.metadata(survivor).topics["t"].partitions[0]
        return now.leader if now.leader not in (-1, partition.leader) else None

    assert f"n{three.wait_for('a new leader of t-0', moved, 30)}" == successor
