"""Two listeners (Kafka's listeners / advertised.listeners / listener.security.protocol.map /
inter.broker.listener.name): config validation, routing of inter-broker connections, and a real
three-node cluster whose clients see only the client listener's addresses."""

from __future__ import annotations

import time
import uuid
from types import SimpleNamespace

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from broker.server.cluster import InterBrokerRoutes
from broker.server.config import ConfigError, Listener, load_config
from tests.broker.conftest import BrokerProcess
from tests.broker.test_replication_process import free_ports

TWO = """node.id=1
listeners=INTERNAL://0.0.0.0:9092,EXTERNAL://0.0.0.0:9093
advertised.listeners=INTERNAL://n1:9092,EXTERNAL://127.0.0.1:4001
listener.security.protocol.map=INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT
inter.broker.listener.name=INTERNAL
controller.listener.names=INTERNAL
controller.quorum.voters=1@n1:9092,2@n2:9092,3@n3:9092
"""


def _load(text: str, *overrides: str):
    return load_config(text, "server.properties", list(overrides))


def test_two_listeners_parse():
    config = _load(TWO)
    assert config.listeners == (Listener("INTERNAL", "0.0.0.0", 9092), Listener("EXTERNAL", "0.0.0.0", 9093))
    assert config.advertised_listeners == (Listener("INTERNAL", "n1", 9092), Listener("EXTERNAL", "127.0.0.1", 4001))
    assert config.inter_broker_listener_name == "INTERNAL"
    assert config.client_listener_name == "EXTERNAL"
    assert config.effective()["inter.broker.listener.name"] == ("INTERNAL", "static")


def test_one_listener_is_both():
    config = _load("node.id=1\n")
    assert config.inter_broker_listener_name == config.client_listener_name == "PLAINTEXT"


def test_advertised_defaults_per_listener():
    config = _load(TWO, "advertised.listeners=INTERNAL://n1:9092")
    assert config.advertised_listeners[1] == Listener("EXTERNAL", "0.0.0.0", 9093)


@pytest.mark.parametrize("override, fragments", [
    ("listener.security.protocol.map=INTERNAL:PLAINTEXT", ["EXTERNAL is not in listener.security.protocol.map"]),
    ("listener.security.protocol.map=INTERNAL:PLAINTEXT,EXTERNAL:SSL", ["listener EXTERNAL uses SSL",
                                                                         "ssl.keystore.location is not set"]),
    ("listener.security.protocol.map=INTERNAL:PLAINTEXT,EXTERNAL:SASL_SSL", ["listener EXTERNAL uses SASL_SSL",
                                                                              "logquake.sasl.users.file is not set"]),
    ("listener.security.protocol.map=INTERNAL", ["listener.security.protocol.map", "NAME:PROTOCOL"]),
    ("inter.broker.listener.name=OTHER", ["inter.broker.listener.name='OTHER'", "accepted: INTERNAL, EXTERNAL"]),
    ("advertised.listeners=OTHER://h:1", ["advertised.listeners", "OTHER", "not in listeners"]),
    ("listeners=INTERNAL://:1,INTERNAL://:2", ["names listener INTERNAL twice"]),
    ("listeners=INTERNAL://:9092,EXTERNAL://:0", ["port 0", "only with a single listener"]),
    ("controller.quorum.voters=1@n1:9999,2@n2:9092", ["n1:9999", "inter-broker listener INTERNAL advertises n1:9092"]),
])
def test_bad_listener_settings_are_named(override, fragments):
    with pytest.raises(ConfigError) as info:
        _load(TWO, override)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_at_most_two_listeners():
    with pytest.raises(ConfigError, match="names 3 listeners; at most two"):
        _load(TWO, "listeners=INTERNAL://:1,EXTERNAL://:2,C://:3", "listener.security.protocol.map="
              "INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT,C:PLAINTEXT")


def test_inter_broker_name_required_when_ambiguous():
    text = TWO.replace("inter.broker.listener.name=INTERNAL\n", "")
    with pytest.raises(ConfigError, match="inter.broker.listener.name is missing"):
        _load(text)


def test_several_listeners_need_cluster_mode():
    with pytest.raises(ConfigError, match="several listeners need cluster mode"):
        _load("node.id=1\nlisteners=PLAINTEXT://:1,EXTERNAL://:2\n"
              "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,EXTERNAL:PLAINTEXT\n")


class _Network:
    def __init__(self):
        self.opened = []

    async def open_connection(self, host, port, local_host=None):
        self.opened.append((host, port, local_host))
        return "reader", "writer"


def test_routes_registered_client_endpoints_to_voter_addresses():
    import asyncio

    image = SimpleNamespace(brokers={
        1: SimpleNamespace(broker_id=1, host="127.0.0.1", port=4001),
        2: SimpleNamespace(broker_id=2, host="127.0.0.1", port=4002),
    })
    network = _Network()
    routes = InterBrokerRoutes(network, lambda: image, {1: ("n1", 9092), 2: ("n2", 9092)})
    assert routes.route("127.0.0.1", 4002) == ("n2", 9092)
    assert routes.route("n1", 9092) == ("n1", 9092)  # voter addresses pass unchanged
    assert routes.route("127.0.0.1", 5555) == ("127.0.0.1", 5555)
    asyncio.run(routes.open_connection("127.0.0.1", 4001, local_host="10.0.0.5"))
    assert network.opened == [("n1", 9092, "10.0.0.5")]


@pytest.mark.slow
def test_cluster_with_two_listeners(tmp_path):
    """Clients on EXTERNAL see only EXTERNAL addresses; a peer asking on INTERNAL sees INTERNAL ones; acks=all
    replication (which runs between the brokers' internal addresses) works."""
    ports = free_ports(6)
    internal = dict(zip((1, 2, 3), ports[:3]))
    external = dict(zip((1, 2, 3), ports[3:]))
    voters = ",".join(f"{i}@127.0.0.1:{p}" for i, p in internal.items())
    nodes = []
    try:
        for i in (1, 2, 3):
            properties = "\n".join([
                f"node.id={i}",
                f"listeners=INTERNAL://127.0.0.1:{internal[i]},EXTERNAL://127.0.0.1:{external[i]}",
                "listener.security.protocol.map=INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT",
                "inter.broker.listener.name=INTERNAL",
                "controller.listener.names=INTERNAL",
                f"log.dirs={tmp_path}/n{i}/logs",
                f"controller.quorum.voters={voters}",
                "broker.session.timeout.ms=3000",
                "broker.heartbeat.interval.ms=500",
            ]) + "\n"
            node = BrokerProcess(tmp_path / f"n{i}", properties=properties)
            nodes.append(node)
            node.start(timeout_s=30)
        external_bootstrap = ",".join(f"127.0.0.1:{p}" for p in external.values())
        admin = AdminClient({"bootstrap.servers": external_bootstrap})
        deadline = time.monotonic() + 60
        while len(admin.list_topics(timeout=5).brokers) < 3:
            assert time.monotonic() < deadline, "the cluster did not list three brokers within 60 s"
            time.sleep(0.2)
        seen = {b.id: b.port for b in admin.list_topics(timeout=5).brokers.values()}
        assert seen == external
        internal_admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{internal[2]}"})
        # node 2 applies the registrations on its own metadata log, and a loaded machine can fence a broker for a
        # moment (3 s sessions): CI once saw its answer list two brokers right after the external one listed three
        while len(internal_admin.list_topics(timeout=5).brokers) < 3:
            assert time.monotonic() < deadline, "node 2 did not list three brokers within 60 s"
            time.sleep(0.2)
        assert {b.id: b.port for b in internal_admin.list_topics(timeout=5).brokers.values()} == internal

        topic = f"t-{uuid.uuid4().hex[:8]}"
        admin.create_topics([NewTopic(topic, 1, 3, config={"min.insync.replicas": "3"})])[topic].result(30)
        producer = Producer({"bootstrap.servers": external_bootstrap, "acks": "all"})
        results = []
        for n in range(20):
            producer.produce(topic, value=str(n).encode(), on_delivery=lambda err, msg: results.append(err))
        producer.flush(60)
        assert results == [None] * 20  # acks=all with min.insync.replicas=3: every follower fetched
        consumer = Consumer({"bootstrap.servers": external_bootstrap, "group.id": "g", "auto.offset.reset": "earliest"})
        try:
            consumer.subscribe([topic])
            got = []
            deadline = time.monotonic() + 60
            while len(got) < 20 and time.monotonic() < deadline:
                msg = consumer.poll(0.5)
                if msg is not None and msg.error() is None:
                    got.append(int(msg.value()))
            assert got == list(range(20))
        finally:
            consumer.close()
    finally:
        for node in nodes:
            node.kill()
