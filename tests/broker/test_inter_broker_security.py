"""A secured inter-broker listener: 3-node clusters of real broker processes whose INTERNAL listener (replication,
Raft, controller RPCs, transaction markers) is SSL with client certificates required, SASL_SSL with SCRAM-SHA-512
or SASL_PLAINTEXT with PLAIN, while clients use a PLAINTEXT CLIENT listener (confluent-kafka).

Each scenario creates a topic with 3 replicas and min.insync.replicas=2, produces with acks=all, kills the
partition's leader and produces and consumes again: the two survivors elect, replicate and commit over the secured
listener. The negative tests: a node with a wrong inter-broker password logs the refusal (never the password) and
never joins; a node without a usable truststore exits 2 naming the property.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from harness.cluster_command import cluster_properties
from harness.tls import make_tls_files

from .conftest import ROOT, BrokerProcess
from .test_cluster import free_port_block, wait_for

NODES = 3
BROKER_PASSWORD = "br0ker-Inter-9"
LOGIN_MODULES = {"PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
                 "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule"}


class InternalSecuredCluster:
    """Three combined nodes: CLIENT PLAINTEXT, INTERNAL `protocol` (`mechanism` for SASL_*); `passwords` overrides a
    node's own inter-broker password."""

    def __init__(self, directory, protocol: str, mechanism: str | None = None, passwords: dict[int, str] | None = None,
                 drop: tuple[str, ...] = (), overrides=()):
        self.base = free_port_block(2 * NODES)
        directory.mkdir(parents=True, exist_ok=True)
        tls = make_tls_files(str(directory / "tls"))
        users = directory / "users.txt"
        users.write_text(f"broker:{BROKER_PASSWORD}\nalice:alice-secret-1\n")
        self.nodes = []
        for node_id in range(1, NODES + 1):
            security = {"listener.security.protocol.map": f"CLIENT:PLAINTEXT,INTERNAL:{protocol}"}
            if "SSL" in protocol:
                security.update({"ssl.keystore.location": tls.broker_keystore, "ssl.truststore.location": tls.ca,
                                 "ssl.client.auth": "required"})
            if protocol.startswith("SASL_"):
                password = (passwords or {}).get(node_id, BROKER_PASSWORD)
                security.update({
                    "logquake.sasl.users.file": str(users), "sasl.enabled.mechanisms": mechanism,
                    "sasl.mechanism.inter.broker.protocol": mechanism,
                    f"listener.name.internal.{mechanism.lower()}.sasl.jaas.config":
                        f'{LOGIN_MODULES[mechanism]} required username="broker" password="{password}";'})
            for key in drop:
                security.pop(key, None)
            settings = [("broker.session.timeout.ms", "3000"), ("broker.heartbeat.interval.ms", "500"), *overrides]
            self.nodes.append(BrokerProcess(directory / f"node{node_id}", properties=cluster_properties(
                node_id, NODES, "127.0.0.1", self.base, directory, settings, security)))

    def bootstrap(self, nodes=None) -> str:
        return ",".join(f"127.0.0.1:{self.base + n - 1}" for n in (nodes or range(1, NODES + 1)))

    def start(self, nodes=None) -> "InternalSecuredCluster":
        for node_id in nodes or range(1, NODES + 1):
            self.nodes[node_id - 1].start(timeout_s=30)
        return self

    def kill(self) -> None:
        for node in self.nodes:
            node.kill()

    def logs(self) -> str:
        return "".join(node.stderr_text() for node in self.nodes)


def _wait(what: str, predicate, timeout_s: float = 45.0):
    return wait_for(what, predicate, timeout_s, 0.2)


def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    errors = []
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                         "message.timeout.ms": 30000, "log_level": 0})
    for value in values:
        producer.produce(topic, value, on_delivery=lambda err, msg: err and errors.append(err))
    assert producer.flush(40) == 0, "not every record delivered"
    assert not errors, errors


def _consume(bootstrap: str, topic: str, count: int) -> list[bytes]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{topic}", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False, "log_level": 0})
    consumer.subscribe([topic])
    values: list[bytes] = []
    deadline = time.monotonic() + 40
    try:
        while len(values) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                values.append(message.value())
    finally:
        consumer.close()
    return values


REAUTH_MS = 4000


@pytest.mark.parametrize("protocol, mechanism, reauth", [("SSL", None, False), ("SASL_SSL", "SCRAM-SHA-512", False),
                                                         ("SASL_PLAINTEXT", "PLAIN", True)])
def test_replication_and_the_controller_work_over_a_secured_internal_listener(tmp_path, protocol, mechanism, reauth):
    """With `reauth`, connections.max.reauth.ms (KIP-368) expires the nodes' own sessions too: they reconnect."""
    overrides = [("connections.max.reauth.ms", str(REAUTH_MS))] if reauth else []
    cluster = InternalSecuredCluster(tmp_path / "cluster", protocol, mechanism, overrides=overrides)
    try:
        cluster.start()
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap(), "log_level": 0})
        _wait("every broker registered", lambda: set(admin.list_topics(timeout=5).brokers) == {1, 2, 3})
        for future in admin.create_topics([NewTopic("secured", 1, 3, config={"min.insync.replicas": "2"})],
                                          request_timeout=15).values():
            future.result(timeout=20)
        partition = _wait("3 replicas in sync", lambda: next(
            (p for p in [admin.list_topics("secured", timeout=5).topics["secured"].partitions[0]] if len(p.isrs) == 3),
            None))
        _produce(cluster.bootstrap(), "secured", [b"before-%d" % i for i in range(5)])

        leader = partition.leader
        cluster.nodes[leader - 1].kill()
        survivors = [n for n in range(1, NODES + 1) if n != leader]
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap(survivors), "log_level": 0})
        _wait("a surviving leader with both survivors in sync", lambda: (
            lambda p: p.leader in survivors and set(p.isrs) == set(survivors))(
                admin.list_topics("secured", timeout=5).topics["secured"].partitions[0]))
        # min.insync.replicas=2: acks=all now needs the other survivor's fetches over INTERNAL
        _produce(cluster.bootstrap(survivors), "secured", [b"after-%d" % i for i in range(5)])
        values = _consume(cluster.bootstrap(survivors), "secured", 10)
        assert values == [b"before-%d" % i for i in range(5)] + [b"after-%d" % i for i in range(5)]

        if reauth:  # idle, the survivors keep talking (Raft, heartbeats, fetches) on fresh sessions
            sessions = cluster.logs().count(f"authenticated with {mechanism} as User:broker")
            time.sleep(REAUTH_MS * 1.5 / 1000)
            assert cluster.logs().count(f"authenticated with {mechanism} as User:broker") > sessions
            assert "the client did not re-authenticate" not in cluster.logs()
            _produce(cluster.bootstrap(survivors), "secured", [b"late"])
        logs = cluster.logs()
        if mechanism is not None:
            assert f"authenticated with {mechanism} as User:broker" in logs
        assert "TLS handshake" not in logs, "no failed handshake between the nodes"
        assert "SASL authentication to" not in logs
        assert BROKER_PASSWORD not in logs
    finally:
        cluster.kill()
        for node in cluster.nodes:
            print(f"---- {node.directory.name} ----\n{node.stderr_text()[-4000:]}")


def test_a_node_with_a_wrong_inter_broker_password_logs_it_and_never_joins(tmp_path):
    wrong = "not-the-broker-password-4q"
    cluster = InternalSecuredCluster(tmp_path / "cluster", "SASL_SSL", "SCRAM-SHA-512", passwords={3: wrong})
    try:
        cluster.start()
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap([1, 2]), "log_level": 0})
        _wait("nodes 1 and 2 registered", lambda: set(admin.list_topics(timeout=5).brokers) == {1, 2})
        _wait("node 3 logs the refusal", lambda: "SASL authentication to" in cluster.nodes[2].stderr_text(), 20)
        time.sleep(3)  # more than a session timeout: had it joined, it would be listed by now
        assert set(admin.list_topics(timeout=5).brokers) == {1, 2}
        log3 = cluster.nodes[2].stderr_text()
        assert "with SCRAM-SHA-512 as broker failed: SASL_AUTHENTICATION_FAILED" in log3
        assert "invalid username or password" in log3
        assert wrong not in cluster.logs() and BROKER_PASSWORD not in cluster.logs()
    finally:
        cluster.kill()
        for node in cluster.nodes:
            print(f"---- {node.directory.name} ----\n{node.stderr_text()[-4000:]}")


@pytest.mark.parametrize("truststore, words", [
    (None, "ssl.truststore.location is missing"),
    ("/nonexistent/ca.pem", "ssl.truststore.location='/nonexistent/ca.pem' is not a readable file"),
])
def test_an_ssl_inter_broker_listener_without_a_usable_truststore_exits_2(tmp_path, truststore, words):
    cluster = InternalSecuredCluster(tmp_path / "cluster", "SSL", drop=("ssl.truststore.location", "ssl.client.auth"))
    config = tmp_path / "node1.properties"
    text = cluster.nodes[0].properties
    if truststore is not None:
        text += f"ssl.truststore.location={truststore}\n"
    config.write_text(text)
    done = subprocess.run([sys.executable, "-m", "broker", "--config", str(config)], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert words in done.stderr


def test_an_authenticated_inter_broker_listener_is_checked_like_any_other(tmp_path):
    """With an authorizer, a SASL inter-broker listener is not trusted wholesale (Kafka's rule): the brokers' own
    principal is a super user and replicates; another user of the users file that reaches the port gets only its
    ACLs."""
    from . import kafka_requests as k
    from .raw_client import RawClient
    from .test_sasl_reauth import _plain_login

    cluster = InternalSecuredCluster(tmp_path / "cluster", "SASL_PLAINTEXT", "PLAIN", overrides=[
        ("authorizer.class.name", "org.apache.kafka.metadata.authorizer.StandardAuthorizer"),
        ("super.users", "User:broker;User:ANONYMOUS")])  # ANONYMOUS: this test's plaintext CLIENT clients
    try:
        cluster.start()
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap(), "log_level": 0})
        _wait("every broker registered", lambda: set(admin.list_topics(timeout=5).brokers) == {1, 2, 3})
        for future in admin.create_topics([NewTopic("guarded", 1, 3)], request_timeout=15).values():
            future.result(timeout=20)
        _wait("3 replicas in sync", lambda: len(
            admin.list_topics("guarded", timeout=5).topics["guarded"].partitions[0].isrs) == 3)
        _produce(cluster.bootstrap(), "guarded", [b"v"])
        with RawClient(cluster.base + NODES) as raw:  # node 1's INTERNAL listener, as alice
            assert _plain_login(raw, "alice", "alice-secret-1").error_code == 0
            answer = raw.call(k.create_topic("by-alice", 1))
            assert [t.error_code for t in answer.topics] == [29]  # TOPIC_AUTHORIZATION_FAILED
            assert [t.error_code for t in raw.call(k.metadata(["guarded"])).topics] == [29]
        assert "Principal User:alice from host 127.0.0.1 is denied operation CREATE on TOPIC by-alice" in cluster.logs()
    finally:
        cluster.kill()
