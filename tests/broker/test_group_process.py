"""Consumer groups against real broker processes: raw group requests (fast) and real clients (slow).

Fast: one node, raw requests — FindCoordinator creates `__consumer_offsets`,
JoinGroup v5 asks for a member id (MEMBER_ID_REQUIRED), a second member forms
generation 2, and an OffsetCommit naming generation 1 gets ILLEGAL_GENERATION
and changes nothing; the committed offsets survive a broker restart (replayed
from the log). A JoinGroup that cannot complete does not hold up a SIGTERM past
the broker's 5 s grace.

Slow: three confluent-kafka consumers subscribe to a 6-partition topic on a
3-node cluster while members join, leave and are killed (closed without
leaving: their session expires); every generation's assignment covers all
partitions and owns none twice; committed offsets survive a SIGKILL of the
coordinator's broker; cooperative-sticky, aiokafka and kafka-python groups.
"""

from __future__ import annotations

import datetime
import signal
import time

import pytest

from . import kafka_requests as k
from .raw_client import RawClient

GROUP_OVERRIDES = {"group.initial.rebalance.delay.ms": "0", "offsets.topic.num.partitions": "3"}


def _find(client, group):
    m = k.module("find_coordinator", 3)
    return client.call(m.FindCoordinatorRequest(key=group, key_type=0))


def _join(client, group, member_id=""):
    m = k.module("join_group", 5)
    return client.call(m.JoinGroupRequest(
        group_id=group, session_timeout=datetime.timedelta(seconds=10), rebalance_timeout=datetime.timedelta(seconds=10),
        member_id=member_id, group_instance_id=None, protocol_type="consumer",
        protocols=(m.JoinGroupRequestProtocol(name="range", metadata=b"\x00"),)))


def _sync(client, group, generation, member_id, assignments):
    m = k.module("sync_group", 3)
    return client.call(m.SyncGroupRequest(
        group_id=group, generation_id=generation, member_id=member_id, group_instance_id=None,
        assignments=tuple(m.SyncGroupRequestAssignment(member_id=mid, assignment=a) for mid, a in assignments.items())))


def _commit(client, group, generation, member_id, offset):
    m = k.module("offset_commit", 8)
    response = client.call(m.OffsetCommitRequest(
        group_id=group, generation_id_or_member_epoch=generation, member_id=member_id, group_instance_id=None,
        topics=(m.OffsetCommitRequestTopic(name="t", partitions=(m.OffsetCommitRequestPartition(
            partition_index=0, committed_offset=offset, committed_leader_epoch=-1, committed_metadata="m"),)),)))
    return response.topics[0].partitions[0].error_code


def _fetch(client, group):
    m = k.module("offset_fetch", 7)
    response = client.call(m.OffsetFetchRequest(group_id=group, topics=(
        m.OffsetFetchRequestTopic(name="t", partition_indexes=(0,)),), require_stable=False))
    assert response.error_code == 0
    return response.topics[0].partitions[0].committed_offset


def test_raw_group_lifecycle_and_stale_generation_commit(broker_factory):
    broker = broker_factory(GROUP_OVERRIDES)
    with RawClient(broker.port) as client:
        found = _find(client, "grp")
        assert (found.error_code, found.node_id, found.port) == (0, 1, broker.port)
        offsets_topic = client.call(k.metadata(["__consumer_offsets"], allow_auto_topic_creation=False)).topics[0]
        assert offsets_topic.is_internal and len(offsets_topic.partitions) == 3
        first = _join(client, "grp")
        assert first.error_code == 79 and first.member_id  # MEMBER_ID_REQUIRED
        joined = _join(client, "grp", first.member_id)
        assert joined.error_code == 0 and joined.generation_id == 1 and joined.leader == first.member_id
        assert _sync(client, "grp", 1, first.member_id, {first.member_id: b"all"}).assignment == b"all"
        assert _commit(client, "grp", 1, first.member_id, 42) == 0
        assert _fetch(client, "grp") == 42
        # a second member forces generation 2; the first member rejoins from another connection
        with RawClient(broker.port) as other:
            second_id = _join(other, "grp").member_id
            pending = other.send(k.module("join_group", 5).JoinGroupRequest(
                group_id="grp", session_timeout=datetime.timedelta(seconds=10),
                rebalance_timeout=datetime.timedelta(seconds=10), member_id=second_id, group_instance_id=None,
                protocol_type="consumer", protocols=(k.module("join_group", 5).JoinGroupRequestProtocol(name="range", metadata=b"\x01"),)))
            rejoined = _join(client, "grp", first.member_id)
            assert rejoined.error_code == 0 and rejoined.generation_id == 2 and len(rejoined.members) == 2
            assert other.receive(11, 5, pending).generation_id == 2
        assert _commit(client, "grp", 1, first.member_id, 99) == 22  # ILLEGAL_GENERATION
        assert _fetch(client, "grp") == 42
        assert _commit(client, "grp", 2, "nobody", 99) == 25  # UNKNOWN_MEMBER_ID
        assert _fetch(client, "grp") == 42
    broker.kill()
    broker.restart()
    with RawClient(broker.port) as client:
        assert _find(client, "grp").error_code == 0
        assert _fetch(client, "grp") == 42


def test_sigterm_gives_a_join_group_that_cannot_complete_its_grace_then_names_it_and_exits_0(broker_factory):
    """A JoinGroup may wait a whole rebalance timeout (here 60 s) for members that never rejoin: at SIGTERM
    the broker waits 5 s for requests in flight, then names the one it gives up on and still exits cleanly."""
    broker = broker_factory(GROUP_OVERRIDES)
    m = k.module("join_group", 5)

    def join(member_id):
        return m.JoinGroupRequest(
            group_id="stuck", session_timeout=datetime.timedelta(seconds=60), rebalance_timeout=datetime.timedelta(seconds=60),
            member_id=member_id, group_instance_id=None, protocol_type="consumer",
            protocols=(m.JoinGroupRequestProtocol(name="range", metadata=b"\x00"),))

    with RawClient(broker.port) as client, RawClient(broker.port) as other:
        assert _find(client, "stuck").error_code == 0
        first_id = client.call(join("")).member_id
        assert client.call(join(first_id)).generation_id == 1
        second_id = other.call(join("")).member_id
        other.send(join(second_id))  # waits until the first member rejoins: it never does
        time.sleep(0.5)
        broker.process.send_signal(signal.SIGTERM)
        assert broker.process.wait(20) == 0  # the old grace of 30 s overran this (and any supervisor's stop timeout)
    stderr = broker.stderr_text()
    assert "1 request still in flight after 5 s; closing anyway: JoinGroup (" in stderr
    assert "shutdown took" in stderr and "logs closed cleanly" in stderr


# ---- slow: real clients on a 3-node cluster ------------------------------------------------------

CLUSTER_GROUP_OVERRIDES = {
    "group_initial_rebalance_delay_ms": "0",
    "offsets_topic_num_partitions": "3",
    "group_min_session_timeout_ms": "1000",
}
PARTITIONS = 6

MEMBER_SCRIPT = r"""
import sys
from confluent_kafka import Consumer
consumer = Consumer({"bootstrap.servers": sys.argv[1], "group.id": sys.argv[2], "session.timeout.ms": 3000,
                     "heartbeat.interval.ms": 300, "enable.auto.commit": False})
consumer.subscribe([sys.argv[3]])
while True:
    consumer.poll(0.1)
    print(sorted(tp.partition for tp in consumer.assignment()), flush=True)
"""


def _six_partition_topic(cluster, topic):
    from confluent_kafka.admin import NewTopic

    import time

    from confluent_kafka import KafkaException

    deadline = time.monotonic() + 60
    while True:
        futures = cluster.admin().create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=3)],
                                                operation_timeout=10, request_timeout=20)
        try:
            futures[topic].result(timeout=30)
            break
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)  # not every broker is registered yet
    cluster.wait(lambda: (p := cluster.partition(topic, PARTITIONS - 1)) is not None and p[0] >= 0, 60, "topic leaders")


def _consumer(bootstrap, group, topic, **extra):
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "session.timeout.ms": 3000,
                         "heartbeat.interval.ms": 300, "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         **extra})
    consumer.subscribe([topic])
    return consumer


def _wait_balanced(consumers, member_count, timeout_s=60.0, external=None, first_offsets=None):
    """Poll every consumer until their assignments are disjoint and cover all partitions.

    `first_offsets` (a dict) collects the offset of the first message polled from each partition.
    """
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        owned = []
        for consumer in consumers:
            message = consumer.poll(0.05)
            if first_offsets is not None and message is not None and message.error() is None:
                first_offsets.setdefault(message.partition(), message.offset())
            owned.append(sorted(tp.partition for tp in consumer.assignment()))
        if external is not None:
            owned.append(external())
        flat = [p for parts in owned for p in parts]
        if sorted(flat) == list(range(PARTITIONS)) and sum(1 for parts in owned if parts) == member_count:
            # stable for a moment: no partition owned twice
            return owned
    raise AssertionError(f"the group did not balance over {member_count} members within {timeout_s} s: {owned}")


@pytest.mark.slow
def test_confluent_group_rebalances_on_join_leave_and_kill_and_offsets_survive_coordinator_kill(tmp_path):
    import subprocess
    import sys
    import threading
    import time

    from confluent_kafka import Producer, TopicPartition

    from .test_replication_process import Cluster

    cluster = Cluster(tmp_path, 3, {k.replace("_", "."): v for k, v in CLUSTER_GROUP_OVERRIDES.items()}).start()
    consumers, member = [], None
    try:
        _six_partition_topic(cluster, "gt")
        producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all"})
        for i in range(60):
            producer.produce("gt", value=b"%d" % i, partition=i % PARTITIONS)
        assert producer.flush(30) == 0
        consumers.append(_consumer(cluster.bootstrap, "g1", "gt"))
        assert _wait_balanced(consumers, 1) == [list(range(PARTITIONS))]
        consumers.append(_consumer(cluster.bootstrap, "g1", "gt"))
        # the third member is a process of its own, so that it can be killed without leaving
        member = subprocess.Popen([sys.executable, "-c", MEMBER_SCRIPT, cluster.bootstrap, "g1", "gt"],
                                  stdout=subprocess.PIPE, text=True)
        last_line = [""]

        def read_member():
            for line in member.stdout:
                last_line[0] = line

        threading.Thread(target=read_member, daemon=True).start()
        external = lambda: eval(last_line[0]) if last_line[0] else []  # noqa: E731 - the member prints a list
        _wait_balanced(consumers, 3, external=external)
        member.kill()
        member.wait()
        last_line[0] = ""
        _wait_balanced(consumers, 2)  # after the killed member's session expired
        consumers.pop().close()  # leaves the group
        assert _wait_balanced(consumers, 1) == [list(range(PARTITIONS))]
        # commit offsets, then kill the coordinator's broker
        survivor = consumers[0]
        committed = [TopicPartition("gt", p, 3 + p) for p in range(PARTITIONS)]
        survivor.commit(offsets=committed, asynchronous=False)
        with RawClient(cluster.ports[1]) as client:
            coordinator = _find(client, "g1").node_id
        survivor.close()
        consumers.clear()
        cluster.nodes[coordinator].kill()
        fresh = _consumer(cluster.bootstrap, "g1", "gt")
        consumers.append(fresh)
        first_offsets = {}
        _wait_balanced(consumers, 1, timeout_s=90, first_offsets=first_offsets)
        resumed = fresh.committed([TopicPartition("gt", p) for p in range(PARTITIONS)], timeout=30)
        assert [(tp.partition, tp.offset) for tp in resumed] == [(p, 3 + p) for p in range(PARTITIONS)]
        deadline = time.monotonic() + 30
        while len(first_offsets) < PARTITIONS and time.monotonic() < deadline:
            message = fresh.poll(0.2)
            if message is not None and message.error() is None:
                first_offsets.setdefault(message.partition(), message.offset())
        # the new member starts every partition at the offset committed before the kill
        assert first_offsets == {p: 3 + p for p in range(PARTITIONS)}
    finally:
        if member is not None and member.poll() is None:
            member.kill()
            member.wait()
        for consumer in consumers:
            consumer.close()
        cluster.stop()


def _single_node_topic(broker, topic, messages=60):
    from confluent_kafka import Producer

    with RawClient(broker.port) as client:
        assert client.call(k.create_topic(topic, PARTITIONS)).topics[0].error_code == 0
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(messages):
        producer.produce(topic, value=b"%d" % i, partition=i % PARTITIONS)
    assert producer.flush(30) == 0


@pytest.mark.slow
def test_confluent_cooperative_sticky_group(broker_factory):
    broker = broker_factory({**GROUP_OVERRIDES, "group.min.session.timeout.ms": "1000"})
    _single_node_topic(broker, "coop")
    extra = {"partition.assignment.strategy": "cooperative-sticky"}
    consumers = [_consumer(broker.bootstrap, "coop-group", "coop", **extra)]
    try:
        assert _wait_balanced(consumers, 1) == [list(range(PARTITIONS))]
        consumers.append(_consumer(broker.bootstrap, "coop-group", "coop", **extra))
        owned = _wait_balanced(consumers, 2)
        assert sorted(len(parts) for parts in owned) == [3, 3]
        consumers.pop(0).close()
        assert _wait_balanced(consumers, 1) == [list(range(PARTITIONS))]
    finally:
        for consumer in consumers:
            consumer.close()


@pytest.mark.slow
def test_aiokafka_consumer_group(broker_factory):
    import asyncio

    from aiokafka import AIOKafkaConsumer, TopicPartition

    broker = broker_factory({**GROUP_OVERRIDES, "group.min.session.timeout.ms": "1000"})
    _single_node_topic(broker, "aio")

    async def run():
        consumers = [AIOKafkaConsumer("aio", bootstrap_servers=broker.bootstrap, group_id="aio-group",
                                      auto_offset_reset="earliest", enable_auto_commit=False,
                                      session_timeout_ms=6000, heartbeat_interval_ms=300) for _ in range(2)]
        for consumer in consumers:
            await consumer.start()
        try:
            seen = set()
            deadline = asyncio.get_running_loop().time() + 60
            while len(seen) < 60 and asyncio.get_running_loop().time() < deadline:
                for consumer in consumers:
                    batches = await consumer.getmany(timeout_ms=200)
                    for records in batches.values():
                        seen.update(r.value for r in records)
            assert seen == {b"%d" % i for i in range(60)}
            owned = [consumer.assignment() for consumer in consumers]
            assert not owned[0] & owned[1] and len(owned[0] | owned[1]) == PARTITIONS
            for consumer in consumers:
                await consumer.commit({tp: 10 for tp in consumer.assignment()})
            assert await consumers[0].committed(TopicPartition("aio", 0)) == 10
        finally:
            for consumer in consumers:
                await consumer.stop()

    asyncio.run(asyncio.wait_for(run(), 120))


@pytest.mark.slow
def test_kafka_python_consumer_group(broker_factory):
    from kafka import KafkaConsumer, TopicPartition

    broker = broker_factory({**GROUP_OVERRIDES, "group.min.session.timeout.ms": "1000"})
    _single_node_topic(broker, "kp")
    consumer = KafkaConsumer("kp", bootstrap_servers=broker.bootstrap, group_id="kp-group",
                             auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=10_000)
    try:
        values = set()
        for message in consumer:
            values.add(message.value)
            if len(values) == 60:
                break
        assert values == {b"%d" % i for i in range(60)}
        assert consumer.assignment() == {TopicPartition("kp", p) for p in range(PARTITIONS)}
        consumer.commit()
        assert consumer.committed(TopicPartition("kp", 0)) == 10
    finally:
        consumer.close()
