"""Replication across real broker processes (slow): combined broker+controller nodes on 127.0.0.1.

Each node is `python -m broker` with `controller.quorum.voters` naming every
node, so the controller quorum, the metadata image, the ReplicaManager and the
follower fetchers are all the real ones; faults are SIGKILL and restart.
Clients are confluent-kafka (librdkafka) and kafka-python.

What is checked (DESIGN.md, "Broker semantics"):
- leader kills under acks=all: every acknowledged message is consumed at the
  offset it was acknowledged with, offsets have no gap, and each killed node
  rejoins the ISR;
- with two of a partition's three replicas down (in a five-node cluster, so
  the controller quorum survives), acks=all is refused with
  NOT_ENOUGH_REPLICAS and nothing is acknowledged;
- with unclean.leader.election.enable=false a partition whose only ISR member
  died stays offline rather than electing a stale replica; with it true the
  stale replica is elected and the acknowledged records only the dead leader
  had are lost (the test names them).
"""

from __future__ import annotations

import socket
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.broker.conftest import BrokerProcess


pytestmark = pytest.mark.slow


def free_ports(count: int) -> list[int]:
    sockets, ports = [], []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
        ports.append(s.getsockname()[1])
    for s in sockets:
        s.close()
    return ports


class Cluster:
    def __init__(self, directory, size: int, overrides: dict[str, str] | None = None):
        self.ports = dict(zip(range(1, size + 1), free_ports(size)))
        voters = ",".join(f"{i}@127.0.0.1:{port}" for i, port in self.ports.items())
        self.nodes: dict[int, BrokerProcess] = {}
        self._admin = None
        for node_id, port in self.ports.items():
            properties = "\n".join([
                f"node.id={node_id}",
                f"listeners=PLAINTEXT://127.0.0.1:{port}",
                f"log.dirs={directory}/node{node_id}/logs",
                f"controller.quorum.voters={voters}",
                "broker.session.timeout.ms=3000",
                "broker.heartbeat.interval.ms=500",
                "replica.lag.time.max.ms=3000",
                *(f"{k}={v}" for k, v in (overrides or {}).items()),
            ]) + "\n"
            node = BrokerProcess(directory / f"node{node_id}", properties=properties)
            node.port = port
            self.nodes[node_id] = node

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{port}" for port in self.ports.values())

    def start(self) -> "Cluster":
        for node in self.nodes.values():
            node.start(timeout_s=30)
        return self

    def stop(self) -> None:
        for node in self.nodes.values():
            if node.alive():
                node.kill()

    def admin(self) -> AdminClient:
        # One client for the cluster's life: a destroyed client fails its pending futures.
        if self._admin is None:
            self._admin = AdminClient({"bootstrap.servers": self.bootstrap})
        return self._admin

    def partition(self, topic: str, partition: int = 0):
        """(leader, replicas, isr) from a Metadata request, or None if the topic is not there yet."""
        metadata = self.admin().list_topics(topic, timeout=10)
        entry = metadata.topics.get(topic)
        if entry is None or entry.error is not None and partition not in entry.partitions:
            return None
        state = entry.partitions.get(partition)
        if state is None:
            return None
        return state.leader, tuple(state.replicas), tuple(sorted(state.isrs))

    def create_topic(self, topic: str, replicas: list[int] | None = None, configs: dict[str, str] | None = None) -> None:
        if replicas is not None:
            new = NewTopic(topic, num_partitions=1, replica_assignment=[replicas], config=configs or {})
        else:
            new = NewTopic(topic, num_partitions=1, replication_factor=3, config=configs or {})
        deadline = time.monotonic() + 60
        while True:
            futures = self.admin().create_topics([new], operation_timeout=10, request_timeout=20)
            try:
                futures[topic].result(timeout=20)
                break
            except (KafkaException, TimeoutError) as exc:
                if "already exists" in str(exc):
                    break
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)  # the brokers may not all be registered yet
        self.wait(lambda: (p := self.partition(topic)) is not None and p[0] >= 0 and len(p[2]) == len(p[1]),
                  60, f"topic {topic} to have a leader and a full ISR")

    def wait(self, condition, timeout_s: float, what: str):
        deadline = time.monotonic() + timeout_s
        last_error = None
        while time.monotonic() < deadline:
            try:
                if condition():
                    return
            except KafkaException as exc:
                last_error = exc
            time.sleep(0.2)
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what} (last error: {last_error}); "
                             f"state: {self.describe()}")

    def describe(self) -> str:
        return "; ".join(f"node {i} {'up' if n.alive() else 'down'}" for i, n in self.nodes.items())


@pytest.fixture
def make_cluster(tmp_path):
    clusters = []

    def make(size: int = 3, **overrides) -> Cluster:
        cluster = Cluster(tmp_path, size, {k.replace("_", "."): v for k, v in overrides.items()})
        clusters.append(cluster)
        return cluster.start()

    yield make
    for cluster in clusters:
        cluster.stop()


def consume_all(bootstrap: str, topic: str, end_offset: int, timeout_s: float = 60) -> dict[int, bytes]:
    """offset -> value of every record below `end_offset`, read from the beginning."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{uuid.uuid4()}", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", "enable.partition.eof": False})
    seen: dict[int, bytes] = {}
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + timeout_s
        while (not seen or max(seen) + 1 < end_offset) and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error() is not None:
                continue
            assert message.offset() not in seen or seen[message.offset()] == message.value(), "an offset read twice with different values"
            seen[message.offset()] = message.value()
    finally:
        consumer.close()
    return seen


def produce_confluent(bootstrap: str, topic: str, values: list[bytes], acked: dict[bytes, int], errors: list[str]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": False,
                         "message.timeout.ms": 30000, "retries": 1000, "retry.backoff.ms": 100,
                         "max.in.flight.requests.per.connection": 1, "linger.ms": 0})

    def report(error, message):
        if error is None:
            acked[message.value()] = message.offset()
        else:
            errors.append(str(error))

    for value in values:
        producer.produce(topic, value, partition=0, on_delivery=report)
        producer.poll(0)
        time.sleep(0.005)
    producer.flush(60)


def produce_kafka_python(bootstrap: str, topic: str, values: list[bytes], acked: dict[bytes, int], errors: list[str]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap.split(","), acks="all", retries=1000, retry_backoff_ms=100,
                             max_in_flight_requests_per_connection=1, request_timeout_ms=10000)
    try:
        for value in values:
            future = producer.send(topic, value, partition=0)
            future.add_callback(lambda metadata, value=value: acked.__setitem__(value, metadata.offset))
            future.add_errback(lambda exc: errors.append(repr(exc)))
            time.sleep(0.005)
        producer.flush(60)
    finally:
        producer.close(10)


def check_acknowledged(consumed: dict[int, bytes], acked: dict[bytes, int]) -> None:
    assert acked, "nothing was acknowledged"
    assert sorted(consumed) == list(range(len(consumed))), "consumed offsets have a gap"
    lost = {value: offset for value, offset in acked.items() if consumed.get(offset) != value}
    assert not lost, f"{len(lost)} acknowledged messages are missing or elsewhere, e.g. {sorted(lost.items(), key=lambda kv: kv[1])[:5]}"


@pytest.mark.parametrize("nodes", [3, 5])
@pytest.mark.parametrize("client", ["confluent-kafka", "kafka-python"])
def test_leader_kills_under_acks_all_lose_nothing_acknowledged(make_cluster, client, nodes):
    import threading

    cluster = make_cluster(nodes)
    topic = "kills"
    cluster.create_topic(topic, configs={"min.insync.replicas": "2"})
    acked: dict[bytes, int] = {}
    errors: list[str] = []
    values = [f"m{i}".encode() for i in range(1500)]
    produce = produce_confluent if client == "confluent-kafka" else produce_kafka_python
    worker = threading.Thread(target=produce, args=(cluster.bootstrap, topic, values, acked, errors), daemon=True)
    worker.start()
    kills = []
    for _ in range(3):
        time.sleep(2)
        leader = cluster.partition(topic)[0]
        assert leader >= 0, f"no leader: {cluster.partition(topic)}"
        kills.append(leader)
        killed_at = time.monotonic()
        cluster.nodes[leader].kill()
        cluster.wait(lambda: (p := cluster.partition(topic)) is not None and p[0] not in (-1, leader), 30, "a new leader")
        failover_s = time.monotonic() - killed_at
        cluster.nodes[leader].start(timeout_s=30)
        restarted_at = time.monotonic()
        cluster.wait(lambda: leader in cluster.partition(topic)[2], 60, f"node {leader} to rejoin the ISR")
        print(f"killed leader {leader}: new leader after {failover_s:.1f} s; back in the ISR {time.monotonic() - restarted_at:.1f} s after restart")
    worker.join(180)
    assert not worker.is_alive(), "the producer did not finish"
    end = max(acked.values()) + 1 if acked else 0
    consumed = consume_all(cluster.bootstrap, topic, end)
    print(f"{client}: {len(acked)} acknowledged, {len(errors)} failed, {len(consumed)} offsets consumed "
          f"({len(consumed) - len(acked)} unacknowledged or duplicate records)")
    check_acknowledged(consumed, acked)
    assert len(set(kills)) >= 1 and len(acked) + len(errors) == len(values)


def test_two_replicas_down_acks_all_is_refused_with_not_enough_replicas(make_cluster):
    cluster = make_cluster(5)
    topic = "min-isr"
    cluster.create_topic(topic, replicas=[1, 2, 3], configs={"min.insync.replicas": "2"})
    leader, replicas, _ = cluster.partition(topic)
    followers = [r for r in replicas if r != leader]
    for follower in followers:
        cluster.nodes[follower].kill()
    cluster.wait(lambda: cluster.partition(topic)[2] == (leader,), 60, "the ISR to shrink to the leader")
    acked: dict[bytes, int] = {}
    errors: list[str] = []
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all", "message.timeout.ms": 5000, "retries": 0})
    for i in range(5):
        producer.produce(topic, f"x{i}".encode(), partition=0,
                         on_delivery=lambda e, m: errors.append(e.name()) if e else acked.__setitem__(m.value(), m.offset()))
    producer.flush(30)
    assert acked == {}
    assert errors and all(name == "NOT_ENOUGH_REPLICAS" for name in errors), errors


@pytest.mark.parametrize("unclean", [False, True])
def test_unclean_leader_election(make_cluster, unclean):
    cluster = make_cluster(5)
    topic = "unclean"
    cluster.create_topic(topic, replicas=[1, 2, 3],
                         configs={"min.insync.replicas": "1", "unclean.leader.election.enable": str(unclean).lower()})
    leader, replicas, _ = cluster.partition(topic)
    stale = [r for r in replicas if r != leader]
    before: dict[bytes, int] = {}
    produce_confluent(cluster.bootstrap, topic, [f"before{i}".encode() for i in range(20)], before, [])
    for node in stale:
        cluster.nodes[node].kill()
    cluster.wait(lambda: cluster.partition(topic)[2] == (leader,), 60, "the ISR to shrink to the leader")
    only_on_leader: dict[bytes, int] = {}
    produce_confluent(cluster.bootstrap, topic, [f"after{i}".encode() for i in range(20)], only_on_leader, [])
    assert len(only_on_leader) == 20  # acknowledged: the ISR (the leader alone) has them
    cluster.nodes[leader].kill()
    for node in stale:
        cluster.nodes[node].start(timeout_s=30)
    if not unclean:
        time.sleep(8)  # several session timeouts: time enough for a (wrong) election
        assert cluster.partition(topic)[0] == -1, "a stale replica was elected with unclean.leader.election.enable=false"
        return
    cluster.wait(lambda: cluster.partition(topic)[0] in stale, 60, "an unclean election of a stale replica")
    consumed = consume_all(cluster.bootstrap, topic, len(before), timeout_s=20)
    check_acknowledged(consumed, before)
    # Documented loss: the records acknowledged while the old leader was the whole ISR
    # exist on no surviving replica; the elected stale replica never had them.
    lost = [v for v, offset in only_on_leader.items() if consumed.get(offset) != v]
    assert sorted(lost) == sorted(only_on_leader), f"expected every 'after' record lost, lost {lost}"


@pytest.mark.parametrize("planted", [False, True])
def test_planted_bug_ack_before_replication_loses_acknowledged_writes(make_cluster, planted):
    """With the followers paused, a correct leader acknowledges nothing; the planted bug acknowledges
    writes only the leader has, and killing the leader loses them (what the harness must find)."""
    import signal

    overrides = {"logquake.debug.ack.before.replication": "true"} if planted else {}
    cluster = make_cluster(3, **{k.replace(".", "_"): v for k, v in overrides.items()})
    topic = "planted"
    cluster.create_topic(topic, configs={"min.insync.replicas": "2"})
    base: dict[bytes, int] = {}
    produce_confluent(cluster.bootstrap, topic, [f"base{i}".encode() for i in range(10)], base, [])
    leader, replicas, _ = cluster.partition(topic)
    followers = [r for r in replicas if r != leader]
    watcher = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "watch"})
    try:
        # the HW reaches 10 only once both followers hold the base records (with the bug too)
        cluster.wait(lambda: watcher.get_watermark_offsets(TopicPartition(topic, 0), timeout=5)[1] == 10, 30,
                     "the base records to be replicated")
    finally:
        watcher.close()
    time.sleep(1)  # and the followers to learn that HW on their next fetch
    for follower in followers:
        cluster.nodes[follower].process.send_signal(signal.SIGSTOP)
    try:
        acked: dict[bytes, int] = {}
        errors: list[str] = []
        producer = Producer({"bootstrap.servers": f"127.0.0.1:{cluster.ports[leader]}", "acks": "all",
                             "message.timeout.ms": 3000, "retries": 0})
        for i in range(10):
            producer.produce(topic, f"paused{i}".encode(), partition=0,
                             on_delivery=lambda e, m: errors.append(e.name()) if e else acked.__setitem__(m.value(), m.offset()))
        producer.flush(20)
        cluster.nodes[leader].kill()
    finally:
        for follower in followers:
            cluster.nodes[follower].process.send_signal(signal.SIGCONT)
    if not planted:
        assert acked == {}, "a correct leader acknowledged writes its paused followers never had"
        return
    assert len(acked) == 10
    cluster.wait(lambda: cluster.partition(topic)[0] in followers, 60, "a follower to take over")
    consumed = consume_all(cluster.bootstrap, topic, len(base), timeout_s=20)
    check_acknowledged(consumed, base)
    lost = [value for value, offset in acked.items() if consumed.get(offset) != value]
    assert sorted(lost) == sorted(acked), f"the planted bug should lose every write acknowledged while followers were paused; lost {lost}"
