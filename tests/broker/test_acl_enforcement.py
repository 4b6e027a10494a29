"""ACLs enforced (issue 20, point 2): every request is checked against the ACLs, with Kafka's error codes.

A 3-node cluster of real broker processes whose CLIENT listener is SASL_PLAINTEXT (SCRAM-SHA-512): `admin` is a
super user, `alice` a user without ACLs. For each resource type alice's real confluent-kafka client is refused
with Kafka's error (a produce and a fetch TOPIC_AUTHORIZATION_FAILED, a group join GROUP_AUTHORIZATION_FAILED, an
offset commit TOPIC_AUTHORIZATION_FAILED for a topic she may not read, a transactional producer
TRANSACTIONAL_ID_AUTHORIZATION_FAILED, a topic creation TOPIC_AUTHORIZATION_FAILED); then admin adds the ACL and
the same call succeeds, with no restart. Three topics whose leaders are the three nodes, and Metadata asked of
each node alone, show that every broker enforces an ACL as soon as it is added. A single node checked with raw
requests covers what the clients do not show: Metadata hiding topics, ListGroups filtering, an idempotent
producer's InitProducerId, an acks=0 produce closing its connection.
"""

from __future__ import annotations

import time
import uuid

import pytest

from harness.cluster_command import cluster_properties

from . import kafka_requests as k
from .conftest import BrokerProcess
from .raw_client import RawClient
from .secured_cluster import NODES, SecuredCluster
from .test_cluster import free_port_block

STANDARD = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
TOPIC_ALREADY_EXISTS = 36
TOPIC_AUTHORIZATION_FAILED = 29
GROUP_AUTHORIZATION_FAILED = 30
CLUSTER_AUTHORIZATION_FAILED = 31
TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53


@pytest.fixture
def cluster(tmp_path):
    secured = SecuredCluster(tmp_path / "cluster", overrides=[("authorizer.class.name", STANDARD),
                                                              ("super.users", "User:admin")])
    try:
        yield secured.start()
    finally:
        secured.stop()


def _retry(call, timeout_s: float = 60, what: str = ""):
    """`call()` until it returns without raising (the cluster may still be electing, or an ACL still reaching a
    node); the last error if it never does."""
    from confluent_kafka import KafkaException

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return call()
        except (KafkaException, ZeroDivisionError, AssertionError, OSError):  # 1 / 0: "not yet"
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _create_topic(admin, topic) -> None:
    """CreateTopics of `topic` (a NewTopic), for `_retry`: TOPIC_ALREADY_EXISTS is success, since an attempt whose
    answer was lost (a client timeout on a loaded machine) may have created it; the CI once saw exactly that."""
    from confluent_kafka import KafkaException

    try:
        admin.create_topics([topic], request_timeout=20)[topic.topic].result(30)
    except KafkaException as exc:
        if _code(exc) != TOPIC_ALREADY_EXISTS:
            raise


def _grant(admin, *bindings) -> None:
    for binding, future in admin.create_acls(list(bindings), request_timeout=20).items():
        future.result(30)


def _acl(kind, name, operation, pattern=None, user="alice"):
    from confluent_kafka.admin import AclBinding, AclPermissionType, ResourcePatternType

    return AclBinding(kind, name, pattern or ResourcePatternType.LITERAL, f"User:{user}", "*", operation,
                      AclPermissionType.ALLOW)


def _code(exc) -> int:
    error = exc.args[0] if exc.args else None
    return error.code() if hasattr(error, "code") else -1


def _not_refused_for(code: int, got):
    """`got`, or a retry (by `_retry`) while it is still the error `code` of an ACL not yet applied everywhere."""
    if (got[0] if isinstance(got, tuple) else got) == code:
        raise AssertionError(f"still refused with {code}")
    return got


def _produce(settings: dict, topic: str, value: bytes) -> int:
    """The error code of one acks=all produce (0 when delivered)."""
    from confluent_kafka import Producer

    producer = Producer({**settings, "acks": "all", "message.timeout.ms": 15000, "retries": 0})
    outcome = []
    producer.produce(topic, value, callback=lambda err, msg: outcome.append(err.code() if err else 0))
    producer.flush(20)
    return outcome[0] if outcome else -1


def _consume_one(settings: dict, topic: str, group: str, partition: int = 0, timeout_s: float = 20):
    """(error code, value) of the first message or error a consumer assigned to `topic` gets (librdkafka asks the
    group's committed offsets even then, so the group must be readable)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({**settings, "group.id": group, "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, partition, 0)])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            message = consumer.poll(1)
            if message is None:
                continue
            if message.error() is not None:
                return message.error().code(), None
            return 0, message.value()
        return -1, None
    finally:
        consumer.close()


def _topic_error(settings: dict, topic: str) -> int:
    from confluent_kafka.admin import AdminClient

    metadata = AdminClient(settings).list_topics(topic, timeout=10)
    entry = metadata.topics[topic]
    return entry.error.code() if entry.error is not None else 0


@pytest.mark.slow
def test_every_resource_type_is_refused_until_its_acl_is_added_on_every_broker(cluster):
    from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
    from confluent_kafka.admin import AclOperation as Op, AdminClient, NewTopic, ResourcePatternType, ResourceType

    admin = AdminClient(cluster.settings("admin"))
    suffix = uuid.uuid4().hex[:6]
    # one topic led by each node (the first replica of an assignment is its preferred leader)
    topics = [f"orders-{node}-{suffix}" for node in range(1, NODES + 1)]
    for node, topic in enumerate(topics, start=1):
        replicas = [(node - 1 + i) % NODES + 1 for i in range(NODES)]
        _retry(lambda t=topic, r=replicas: _create_topic(admin, NewTopic(t, num_partitions=1, replica_assignment=[r])))
    for topic in topics:
        assert _retry(lambda t=topic: _produce(cluster.settings("admin"), t, b"from-admin") == 0 or 1 / 0) is True
    alice = cluster.settings("alice")

    # Metadata and produce: refused on every node, allowed on every node once the ACL is there
    for node in range(1, NODES + 1):
        assert _topic_error(cluster.settings("alice", node), topics[0]) == TOPIC_AUTHORIZATION_FAILED
    assert [_produce(alice, topic, b"x") for topic in topics] == [TOPIC_AUTHORIZATION_FAILED] * NODES
    _grant(admin, *(_acl(ResourceType.TOPIC, topic, Op.WRITE) for topic in topics))
    assert _retry(lambda: all(_topic_error(cluster.settings("alice", n), topics[0]) == 0
                              for n in range(1, NODES + 1)) or 1 / 0, 20)
    assert [_retry(lambda t=topic: _produce(alice, t, b"by-alice") or 0) for topic in topics] == [0] * NODES

    # fetch: WRITE does not give READ
    reader = f"reader-{suffix}"
    _grant(admin, _acl(ResourceType.GROUP, reader, Op.READ))
    # the group's ACL may reach the group's coordinator a moment after CreateAcls answered (from another node)
    assert _retry(lambda: _not_refused_for(GROUP_AUTHORIZATION_FAILED, _consume_one(alice, topics[1], reader)[0])) \
        == TOPIC_AUTHORIZATION_FAILED
    _grant(admin, _acl(ResourceType.TOPIC, "orders-", Op.READ, ResourcePatternType.PREFIXED))
    assert [_retry(lambda t=topic: _not_refused_for(TOPIC_AUTHORIZATION_FAILED, _consume_one(alice, t, reader)))
            for topic in topics] == [(0, b"from-admin")] * NODES

    # group join: FindCoordinator and JoinGroup need the group
    group = f"g-{suffix}"
    consumer = Consumer({**alice, "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        consumer.subscribe([topics[0]])
        errors = []
        deadline = time.monotonic() + 20
        while not errors and time.monotonic() < deadline:
            message = consumer.poll(1)
            if message is not None and message.error() is not None:
                errors.append(message.error().code())
        assert errors == [GROUP_AUTHORIZATION_FAILED]
    finally:
        consumer.close()
    _grant(admin, _acl(ResourceType.GROUP, group, Op.READ))
    consumer = Consumer({**alice, "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        consumer.subscribe([topics[0]])
        got = None
        deadline = time.monotonic() + 30
        while got is None and time.monotonic() < deadline:
            message = consumer.poll(1)
            if message is not None and message.error() is None:
                got = message.value()
        assert got == b"from-admin"

        # offset commit: the group is allowed now, a topic alice may not read is not
        unread = f"ledger-{suffix}"
        _retry(lambda: _create_topic(admin, NewTopic(unread, 1, 3)))
        with pytest.raises(KafkaException) as refused:
            consumer.commit(offsets=[TopicPartition(unread, 0, 1)], asynchronous=False)
        assert _code(refused.value) == TOPIC_AUTHORIZATION_FAILED
        _grant(admin, _acl(ResourceType.TOPIC, unread, Op.READ))
        result = _retry(lambda: consumer.commit(offsets=[TopicPartition(unread, 0, 1)], asynchronous=False))
        assert [(p.topic, p.offset, p.error) for p in result] == [(unread, 1, None)]
    finally:
        consumer.close()

    # transactional id
    transactional = Producer({**alice, "transactional.id": f"tx-{suffix}", "transaction.timeout.ms": 10000})
    with pytest.raises(KafkaException) as refused:
        transactional.init_transactions(20)
    assert _code(refused.value) == TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    _grant(admin, _acl(ResourceType.TRANSACTIONAL_ID, "tx-", Op.WRITE, ResourcePatternType.PREFIXED))

    def initialized():  # a refused init_transactions is fatal to its producer: a new one each try
        producer = Producer({**alice, "transactional.id": f"tx-{suffix}", "transaction.timeout.ms": 10000})
        producer.init_transactions(20)
        return producer

    transactional = _retry(initialized, 30)
    transactional.begin_transaction()
    transactional.produce(topics[2], b"in-txn")
    transactional.commit_transaction(20)

    # topic creation
    created = f"alice-{suffix}"
    alice_admin = AdminClient(alice)
    with pytest.raises(KafkaException) as refused:
        alice_admin.create_topics([NewTopic(created, 1, 3)], request_timeout=20)[created].result(30)
    assert _code(refused.value) == TOPIC_AUTHORIZATION_FAILED
    _grant(admin, _acl(ResourceType.TOPIC, "alice-", Op.CREATE, ResourcePatternType.PREFIXED))
    _retry(lambda: _create_topic(alice_admin, NewTopic(created, 1, 3)), 30)

    # alice manages no ACLs: CreateAcls needs ALTER on the cluster
    with pytest.raises(KafkaException) as refused:
        _grant(alice_admin, _acl(ResourceType.TOPIC, "x", Op.READ, user="mallory"))
    assert _code(refused.value) == CLUSTER_AUTHORIZATION_FAILED
    denials = "".join(node.stderr_text() for node in cluster.nodes)
    assert "Principal User:alice from host 127.0.0.1 is denied operation" in denials
    assert "alice-secret-1" not in denials


# ---- a single node, raw requests -----------------------------------------------------------------------------


@pytest.fixture
def node(tmp_path):
    """A one-node cluster: a PLAINTEXT CLIENT listener (User:ANONYMOUS, checked) and INTERNAL (not checked)."""
    base = free_port_block(2)
    properties = cluster_properties(1, 1, "127.0.0.1", base, tmp_path, [("authorizer.class.name", STANDARD)])
    broker = BrokerProcess(tmp_path / "b", properties=properties).start(timeout_s=30)
    broker.internal_port = base + 1
    try:
        yield broker
    finally:
        broker.kill()


def _raw_grant(port: int, *bindings) -> None:
    from .test_acl_admin import _create_request

    with RawClient(port) as raw:
        results = _retry(lambda: raw.call(_create_request(bindings, 3)), 30).results
    assert [r.error_code for r in results] == [0] * len(bindings)


def _anonymous(kind, name, operation):
    from broker.metadata.acls import AclBinding, AclPermissionType, PatternType

    return AclBinding(kind, name, PatternType.LITERAL, "User:ANONYMOUS", "*", operation, AclPermissionType.ALLOW)


def test_raw_requests_show_what_clients_do_not(node):
    from broker.metadata.acls import AclOperation as Op, ResourceType

    with RawClient(node.internal_port) as trusted:  # the inter-broker listener is not checked
        for topic in ("seen", "hidden"):
            answer = _retry(lambda t=topic: trusted.call(k.create_topic(t, 1)).topics[0].error_code == 0 or 1 / 0, 30)
        m = k.module("offset_commit", 8)
        commit = m.OffsetCommitRequest(group_id="secret-group", generation_id_or_member_epoch=-1, member_id="",
                                           group_instance_id=None, topics=(m.OffsetCommitRequestTopic(
                                               name="seen", partitions=(m.OffsetCommitRequestPartition(
                                                   partition_index=0, committed_offset=0, committed_leader_epoch=-1,
                                                   committed_metadata=""),)),))
        find = k.module("find_coordinator", 4).FindCoordinatorRequest(key_type=0, coordinator_keys=("secret-group",))
        # FindCoordinator creates the offsets topic, which may then still be loading: retried
        _retry(lambda: trusted.call(find).coordinators[0].error_code == 0 or 1 / 0, 30)
        _retry(lambda: trusted.call(commit).topics[0].partitions[0].error_code == 0 or 1 / 0, 30)
    _raw_grant(node.internal_port, _anonymous(ResourceType.TOPIC, "seen", Op.DESCRIBE))
    with RawClient(node.port) as raw:
        # all topics: the hidden one is left out; named: it is TOPIC_AUTHORIZATION_FAILED, and so is a missing
        # topic the caller may not create (and it is not created)
        assert [t.name for t in raw.call(k.metadata(None)).topics] == ["seen"]
        named = raw.call(k.metadata(["seen", "hidden", "missing"]))
        assert sorted((t.name, t.error_code) for t in named.topics) == [
            ("hidden", TOPIC_AUTHORIZATION_FAILED), ("missing", TOPIC_AUTHORIZATION_FAILED), ("seen", 0)]
        assert [t.error_code for t in raw.call(k.metadata(["hidden"], version=0)).topics] == [TOPIC_AUTHORIZATION_FAILED]
        # ListGroups without DESCRIBE on the cluster lists only the groups the caller may describe: none here
        listed = raw.call(k.module("list_groups", 4).ListGroupsRequest(states_filter=()))
        assert listed.error_code == 0 and list(listed.groups) == []
        # an idempotent producer needs IDEMPOTENT_WRITE on the cluster or WRITE on some topic
        assert raw.call(k.init_producer_id()).error_code == CLUSTER_AUTHORIZATION_FAILED
    with RawClient(node.internal_port) as trusted:
        assert "missing" not in [t.name for t in trusted.call(k.metadata(None)).topics]
        assert [g.group_id for g in trusted.call(k.module("list_groups", 4).ListGroupsRequest(states_filter=())).groups] \
            == ["secret-group"]
    _raw_grant(node.internal_port, _anonymous(ResourceType.TOPIC, "seen", Op.WRITE))
    with RawClient(node.port) as raw:
        answer = raw.call(k.init_producer_id())
        assert answer.error_code == 0 and answer.producer_id >= 0
        # produce: per topic; acks=0 to a refused topic closes the connection (the client's only signal)
        result = raw.call(k.produce("hidden", 0, k.batch([(None, b"v")]), acks=1))
        assert [p.error_code for t in result.responses for p in t.partition_responses] == [TOPIC_AUTHORIZATION_FAILED]
        raw.send(k.produce("hidden", 0, k.batch([(None, b"v")]), acks=0))
        assert raw.is_closed_by_peer()
    with RawClient(node.internal_port) as trusted:  # nothing reached the hidden topic
        listed = trusted.call(k.list_offsets("hidden", 0, -1))
        assert [p.offset for t in listed.topics for p in t.partitions] == [0]


def test_a_client_certificate_names_the_principal_as_kafkas_default_rule():
    from broker.server.authorization import certificate_principal

    subject = ((("countryName", "DE"),), (("organizationName", "Acme, Inc."),), (("commonName", "alice"),))
    assert certificate_principal({"subject": subject}) == "User:CN=alice,O=Acme\\, Inc.,C=DE"
    assert certificate_principal({"subject": ((("commonName", " lead"), ("userId", "7")),)}) == "User:CN=\\ lead+UID=7"
    assert certificate_principal({}) is None and certificate_principal(None) is None


def test_a_client_certificate_is_the_principal_on_an_ssl_listener(tmp_path):
    """ssl.client.auth=requested: the client with a certificate is its subject (here a super user); the one
    without is User:ANONYMOUS and is refused."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    from harness.tls import make_tls_files

    tls = make_tls_files(str(tmp_path / "tls"))
    properties = (f"node.id=1\nlisteners=SSL://127.0.0.1:0\nlog.dirs={tmp_path / 'logs'}\n"
                  f"ssl.keystore.location={tls.broker_keystore}\nssl.truststore.location={tls.ca}\n"
                  f"ssl.client.auth=requested\nauthorizer.class.name={STANDARD}\n"
                  "super.users=User:CN=logquake client,O=logquake test\n")
    broker = BrokerProcess(tmp_path / "b", properties=properties).start()
    try:
        anonymous = {"bootstrap.servers": broker.bootstrap, "security.protocol": "SSL", "ssl.ca.location": tls.ca,
                     "log_level": 0}
        with_certificate = {**anonymous, "ssl.certificate.location": tls.client_certificate,
                            "ssl.key.location": tls.client_key}
        admin, nobody = AdminClient(with_certificate), AdminClient(anonymous)  # kept: a freed client fails its futures
        admin.create_topics([NewTopic("by-certificate", 1, 1)])["by-certificate"].result(20)
        with pytest.raises(KafkaException) as refused:
            nobody.create_topics([NewTopic("by-nobody", 1, 1)])["by-nobody"].result(20)
        assert _code(refused.value) == TOPIC_AUTHORIZATION_FAILED
        assert "Principal User:ANONYMOUS from host 127.0.0.1 is denied operation CREATE on TOPIC by-nobody" \
            in broker.stderr_text()
    finally:
        broker.kill()
