"""SCRAM authentication and KIP-368 re-authentication across a leader kill (issue 20's acceptance).

A 3-node cluster whose CLIENT listener is SASL_SSL (SCRAM-SHA-512) with `connections.max.reauth.ms=2000` and an ACL
authorizer: `alice` has only WRITE and READ on her topic and READ on her group. An idempotent acks=all
confluent-kafka producer sends for 14 seconds (seven session lifetimes) while the partition's leader is SIGKILLed
after about 4. Every message must be delivered, and a read_committed consumer (a new SCRAM exchange with the new
leader) must read exactly the delivered values, in order; the surviving nodes must log in-band
re-authentications of User:alice after the kill, none a session that expired unrenewed, and no node the password.
"""

from __future__ import annotations

import re
import time
import uuid

import pytest

from .secured_cluster import SecuredCluster
from .test_acl_enforcement import STANDARD, _acl, _grant, _retry, _topic_error

pytestmark = pytest.mark.slow

REAUTH_MS = 2000
RUN_S = 14.0
KILL_AFTER_S = 4.0


@pytest.fixture
def cluster(tmp_path):
    secured = SecuredCluster(tmp_path / "cluster", "SASL_SSL", [
        ("authorizer.class.name", STANDARD), ("super.users", "User:admin"),
        ("connections.max.reauth.ms", str(REAUTH_MS)), ("replica.lag.time.max.ms", "3000")])
    try:
        yield secured.start()
    finally:
        secured.stop()


def _leader(admin, topic: str) -> int:
    partition = admin.list_topics(topic, timeout=10).topics[topic].partitions[0]
    if partition.leader < 0 or len(partition.isrs) < 3:
        raise AssertionError(f"{topic}: leader {partition.leader}, ISR {partition.isrs}")
    return partition.leader


def test_scram_sessions_reauthenticate_and_nothing_is_lost_across_a_leader_kill(cluster):
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AclOperation as Op, AdminClient, NewTopic, ResourceType

    admin = AdminClient(cluster.settings("admin"))
    topic, group = f"reauth-{uuid.uuid4().hex[:6]}", f"reader-{uuid.uuid4().hex[:6]}"
    _retry(lambda: admin.create_topics([NewTopic(topic, 1, 3, config={"min.insync.replicas": "2"})],
                                       request_timeout=20)[topic].result(30))
    _grant(admin, _acl(ResourceType.TOPIC, topic, Op.WRITE), _acl(ResourceType.TOPIC, topic, Op.READ),
           _acl(ResourceType.GROUP, group, Op.READ))
    leader = _retry(lambda: _leader(admin, topic), 30)
    # CreateAcls answers once the node that took it applied the ACLs; the others may lag: every node, asked alone,
    # must show alice her topic (DESCRIBE, implied by WRITE) before she produces to whichever leads it
    _retry(lambda: all(_topic_error(cluster.settings("alice", node), topic) == 0 for node in (1, 2, 3)) or 1 / 0, 30)

    delivered, errors = [], []

    def on_delivery(error, message):
        if error is not None:
            errors.append(error)
        else:
            delivered.append(message.value())

    alice = cluster.settings("alice")
    producer = Producer({**alice, "acks": "all", "enable.idempotence": True, "linger.ms": 5,
                         "message.timeout.ms": 30000, "error_cb": lambda e: None})
    started = time.monotonic()
    killed_at = None
    sent = 0
    while time.monotonic() - started < RUN_S:
        if killed_at is None and time.monotonic() - started >= KILL_AFTER_S:
            cluster.nodes[leader - 1].kill()
            killed_at = time.monotonic()
        producer.produce(topic, f"m{sent}".encode(), on_delivery=on_delivery)
        sent += 1
        producer.poll(0.02)
    assert producer.flush(40) == 0
    assert errors == [] and len(delivered) == sent, (errors[:3], len(delivered), sent)
    assert killed_at is not None and _retry(lambda: _leader_other_than(admin, topic, leader), 30)

    consumer = Consumer({**alice, "group.id": group, "isolation.level": "read_committed", "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        got = []
        deadline = time.monotonic() + 40
        while len(got) < sent and time.monotonic() < deadline:
            for message in consumer.consume(500, 1.0):
                assert message.error() is None, message.error()
                got.append(message.value())
    finally:
        consumer.close()
    assert got == delivered, (len(got), len(delivered))

    survivors = [node for node_id, node in enumerate(cluster.nodes, start=1) if node_id != leader]
    after_kill = "".join(node.stderr_text() for node in survivors)
    assert len(re.findall(r"re-authenticated with SCRAM-SHA-512 as User:alice", after_kill)) >= 2, after_kill[-3000:]
    every_log = "".join(node.stderr_text() for node in cluster.nodes)
    assert "SASL session of User:alice expired" not in every_log
    assert "alice-secret-1" not in every_log and "admin-secret-1" not in every_log


def _leader_other_than(admin, topic: str, old: int) -> bool:
    partition = admin.list_topics(topic, timeout=10).topics[topic].partitions[0]
    if partition.leader in (-1, old):
        raise AssertionError(f"{topic} still led by {partition.leader}")
    return True
