"""Controller decisions: leader election from the ISR, fencing, unclean election, AlterPartition, topics.

The controller runs against a fake quorum (a proposal is committed at once by
applying its records to the image) and a fake clock.
"""

from __future__ import annotations

import asyncio
import random
import uuid

import pytest

from broker.controller.controller import (
    INVALID_REPLICATION_FACTOR,
    TOPIC_ALREADY_EXISTS,
    ControllerSettings,
    QuorumController,
    alter_partition_decision,
    choose_leader,
    fence_records,
    placement,
    unfence_records,
)
from broker.metadata.errors import (
    FencedLeaderEpochError,
    IneligibleReplicaError,
    InvalidRequestError,
    InvalidUpdateVersionError,
    NotLeaderOrFollowerError,
    StaleBrokerEpochError,
    UnknownTopicOrPartitionError,
)
from broker.metadata.image import NO_LEADER, RESOURCE_TOPIC, MetadataImage, PartitionState
from broker.metadata.records import (
    ConfigRecord,
    PartitionRecord,
    RegisterBrokerRecord,
    TopicRecord,
    UnfenceBrokerRecord,
)

TOPIC_ID = uuid.UUID(int=42)
SETTINGS = ControllerSettings(session_timeout_ms=9000)


def cluster(live=(1, 2, 3), fenced=(), replicas=(1, 2, 3), isr=None, leader=1, unclean=None) -> MetadataImage:
    records = []
    for broker_id in sorted(set(live) | set(fenced)):
        records.append(RegisterBrokerRecord(broker_id, uuid.UUID(int=broker_id), "127.0.0.1", 9000 + broker_id))
        if broker_id in live:
            records.append(UnfenceBrokerRecord(broker_id))
    records.append(TopicRecord("t", TOPIC_ID))
    if unclean is not None:
        records.append(ConfigRecord(RESOURCE_TOPIC, "t", "unclean.leader.election.enable", unclean))
    records.append(PartitionRecord(TOPIC_ID, 0, tuple(replicas), tuple(isr if isr is not None else replicas), leader, 3, 7))
    return MetadataImage().apply_all(records, len(records))


def state(**changes) -> PartitionState:
    base = dict(topic="t", topic_id=TOPIC_ID, partition=0, replicas=(1, 2, 3), isr=(1, 2, 3), leader=1, leader_epoch=0, partition_epoch=0)
    base.update(changes)
    return PartitionState(**base)


# ---- election -------------------------------------------------------------------------------


def test_leader_is_the_first_live_isr_member_in_replica_order():
    assert choose_leader(state(isr=(3, 2)), {2, 3}, False) == (2, (3, 2), False)
    assert choose_leader(state(replicas=(3, 1, 2), isr=(1, 2, 3)), {1, 2}, False)[0] == 1


def test_no_live_isr_member_means_offline_unless_unclean():
    assert choose_leader(state(isr=(1,)), {2, 3}, False) == (NO_LEADER, (1,), False)
    assert choose_leader(state(isr=(1,)), {3, 2}, True) == (2, (2,), True)
    assert choose_leader(state(isr=(1,)), set(), True) == (NO_LEADER, (1,), False)


def test_fencing_the_leader_elects_from_the_isr_and_bumps_the_epochs():
    image = cluster(isr=(1, 2, 3), leader=1)
    new = image.apply_all(fence_records(image, 1, SETTINGS), image.offset + 1)
    p = new.partition("t", 0)
    assert (p.leader, p.isr, p.leader_epoch, p.partition_epoch) == (2, (2, 3), 4, 8)
    assert new.brokers[1].fenced


def test_fencing_a_follower_shrinks_the_isr_but_keeps_the_leader_epoch():
    image = cluster(isr=(1, 2, 3), leader=1)
    p = image.apply_all(fence_records(image, 3, SETTINGS), 99).partition("t", 0)
    assert (p.leader, p.isr, p.leader_epoch, p.partition_epoch) == (1, (1, 2), 3, 8)


def test_the_last_isr_member_stays_in_the_isr_and_the_partition_goes_offline():
    image = cluster(live=(1, 2, 3), isr=(1,), leader=1)
    p = image.apply_all(fence_records(image, 1, SETTINGS), 99).partition("t", 0)
    assert (p.leader, p.isr, p.leader_epoch) == (NO_LEADER, (1,), 4)


def test_unclean_election_picks_a_live_out_of_sync_replica_when_enabled_for_the_topic(caplog):
    image = cluster(live=(1, 2, 3), isr=(1,), leader=1, unclean="true")
    p = image.apply_all(fence_records(image, 1, SETTINGS), 99).partition("t", 0)
    assert (p.leader, p.isr, p.leader_epoch) == (2, (2,), 4)
    assert "UNCLEAN leader election for t-0" in caplog.text and "are lost" in caplog.text
    # the broker default applies when the topic does not say
    image = cluster(live=(1, 2, 3), isr=(1,), leader=1)
    unclean_settings = ControllerSettings(unclean_leader_election_enable=True)
    assert image.apply_all(fence_records(image, 1, unclean_settings), 99).partition("t", 0).leader == 2


def test_unfencing_a_broker_in_the_isr_gives_an_offline_partition_its_leader():
    image = cluster(live=(2, 3), fenced=(1,), isr=(1,), leader=NO_LEADER)
    new = image.apply_all(unfence_records(image, 1, SETTINGS), 99)
    p = new.partition("t", 0)
    assert (p.leader, p.isr, p.leader_epoch) == (1, (1,), 4)
    assert not new.brokers[1].fenced
    # an out-of-sync replica coming back does not lead (clean election only)
    image = cluster(live=(1, 3), fenced=(2,), isr=(1,), leader=NO_LEADER)
    image = image.apply_all(fence_records(image, 1, SETTINGS), 99)
    assert image.apply_all(unfence_records(image, 2, SETTINGS), 100).partition("t", 0).leader == NO_LEADER


# ---- AlterPartition -----------------------------------------------------------------------


def test_alter_partition_validation():
    image = cluster(live=(1, 2), fenced=(3,), isr=(1, 2), leader=1)
    with pytest.raises(UnknownTopicOrPartitionError):
        alter_partition_decision(image, 1, TOPIC_ID, 5, 3, (1,), 7)
    with pytest.raises(NotLeaderOrFollowerError):
        alter_partition_decision(image, 2, TOPIC_ID, 0, 3, (2,), 7)
    with pytest.raises(FencedLeaderEpochError, match="leader epoch 2; the current one is 3"):
        alter_partition_decision(image, 1, TOPIC_ID, 0, 2, (1,), 7)
    with pytest.raises(InvalidUpdateVersionError, match="partition epoch 6"):
        alter_partition_decision(image, 1, TOPIC_ID, 0, 3, (1,), 6)
    with pytest.raises(InvalidRequestError):
        alter_partition_decision(image, 1, TOPIC_ID, 0, 3, (2,), 7)
    with pytest.raises(IneligibleReplicaError, match="broker 3 is fenced"):
        alter_partition_decision(image, 1, TOPIC_ID, 0, 3, (1, 2, 3), 7)
    records, new_state = alter_partition_decision(image, 1, TOPIC_ID, 0, 3, (1,), 7)
    assert new_state.isr == (1,) and new_state.partition_epoch == 8 and new_state.leader_epoch == 3
    assert image.apply_all(records, 99).partition("t", 0) == new_state
    assert alter_partition_decision(image, 1, TOPIC_ID, 0, 3, (1, 2), 7) == ([], image.partition("t", 0))


def test_placement_is_round_robin():
    assert placement([1, 2, 3], 3, 2, 1) == [(2, 3), (3, 1), (1, 2)]


# ---- the controller with a fake quorum and clock ------------------------------------------------


class FakeClock:
    def __init__(self):
        self.now_ns = 0

    def monotonic_ns(self) -> int:
        return self.now_ns

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)


class FakeRuntime:
    def __init__(self):
        self.clock = FakeClock()
        self.random = random.Random(5)


class FakeQuorum:
    def __init__(self):
        self.image = MetadataImage()
        self.active = True
        self.node_id = 1
        self.leader_id = 1
        self.on_activate = []
        self.on_resign = []
        self.proposals = []

    async def wait_caught_up(self, timeout_s=10.0):
        return None

    async def propose(self, records, timeout_s=10.0):
        self.proposals.append(list(records))
        self.image = self.image.apply_all(records, self.image.offset + 1)
        return self.image.offset


def run(coroutine):
    return asyncio.run(coroutine)


def make_controller():
    runtime = FakeRuntime()
    quorum = FakeQuorum()
    return QuorumController(quorum, runtime, ControllerSettings(session_timeout_ms=1000)), quorum, runtime


async def register_and_unfence(controller, broker_id):
    incarnation = str(uuid.UUID(int=broker_id))
    answer = await controller.handle({"op": "register_broker", "broker_id": broker_id, "incarnation_id": incarnation,
                                      "host": "127.0.0.1", "port": 9000 + broker_id})
    assert answer["error_code"] == 0
    answer = await controller.handle({"op": "broker_heartbeat", "broker_id": broker_id, "incarnation_id": incarnation,
                                      "metadata_offset": controller.quorum.image.offset})
    assert answer == {"error_code": 0, "fenced": False, "metadata_offset": controller.quorum.image.offset}


def test_registration_heartbeat_session_expiry_and_return():
    controller, quorum, runtime = make_controller()

    async def scenario():
        for broker_id in (1, 2, 3):
            await register_and_unfence(controller, broker_id)
        answer = await controller.handle({"op": "create_topics", "topics": [
            {"name": "t", "num_partitions": 3, "replication_factor": 3, "assignments": None, "configs": {"min.insync.replicas": "2"}},
        ]})
        assert answer["topics"][0]["error_code"] == 0
        assert quorum.image.topics["t"].configs == {"min.insync.replicas": "2"}
        leaders = {p: s.leader for p, s in quorum.image.topics["t"].partitions.items()}
        assert sorted(leaders.values()) == [1, 2, 3], "round-robin placement spreads the leaders"
        # brokers 1 and 3 heartbeat, broker 2 falls silent past the session timeout
        runtime.clock.now_ns = 600_000_000
        for broker_id in (1, 3):
            await controller.handle({"op": "broker_heartbeat", "broker_id": broker_id,
                                     "incarnation_id": str(uuid.UUID(int=broker_id)), "metadata_offset": quorum.image.offset})
        runtime.clock.now_ns = 1_200_000_000
        assert controller.expired_brokers(runtime.clock.now_ns, 1_000_000_000) == [2]
        assert controller.expired_brokers(runtime.clock.now_ns - 300_000_000, 1_000_000_000) == []
        await quorum.propose(fence_records(quorum.image, 2, controller.settings))
        for state in quorum.image.topics["t"].partitions.values():
            assert state.leader in (1, 3) and 2 not in state.isr
        # a stale incarnation must register again; the new one is unfenced after catching up
        stale = await controller.handle({"op": "broker_heartbeat", "broker_id": 2, "incarnation_id": str(uuid.UUID(int=99))})
        assert stale["error_code"] == StaleBrokerEpochError.error_code
        answer = await controller.handle({"op": "broker_heartbeat", "broker_id": 2, "incarnation_id": str(uuid.UUID(int=2)),
                                          "metadata_offset": quorum.image.offset})
        assert answer["fenced"] is False
        # controlled shutdown moves leadership away and fences
        await controller.handle({"op": "controlled_shutdown", "broker_id": 1})
        assert quorum.image.brokers[1].fenced
        assert all(s.leader != 1 for s in quorum.image.topics["t"].partitions.values())
        again = await controller.handle({"op": "broker_heartbeat", "broker_id": 1, "incarnation_id": str(uuid.UUID(int=1)),
                                         "metadata_offset": quorum.image.offset})
        assert again["fenced"] is True, "a broker shutting down is not unfenced by a late heartbeat"

    run(scenario())


def test_create_topics_refusals_and_delete():
    controller, quorum, _ = make_controller()

    async def scenario():
        for broker_id in (1, 2):
            await register_and_unfence(controller, broker_id)
        answer = await controller.handle({"op": "create_topics", "topics": [
            {"name": "a", "num_partitions": 1, "replication_factor": 3, "configs": {}},
            {"name": "b", "num_partitions": 2, "replication_factor": 2, "configs": {}},
            {"name": "b", "num_partitions": 2, "replication_factor": 2, "configs": {}},
            {"name": "c", "num_partitions": 1, "replication_factor": 1, "configs": {"min.insync.replicas": "0"}},
            {"name": "d", "num_partitions": 0, "replication_factor": 1, "assignments": {"0": [2, 1], "1": [1, 2]}, "configs": {}},
            {"name": "e", "num_partitions": 0, "replication_factor": 1, "assignments": {"0": [2, 7]}, "configs": {}},
        ]})
        codes = [(r["name"], r["error_code"]) for r in answer["topics"]]
        assert codes == [("a", INVALID_REPLICATION_FACTOR), ("b", 0), ("b", TOPIC_ALREADY_EXISTS), ("c", 40), ("d", 0), ("e", 39)]
        assert "larger than the 2 available" in answer["topics"][0]["error_message"]
        assert quorum.image.partition("d", 0).replicas == (2, 1) and quorum.image.partition("d", 0).leader == 2
        topic_id = quorum.image.topics["b"].topic_id
        deleted = await controller.handle({"op": "delete_topics", "topics": [{"name": "b"}, {"name": "zz"}]})
        assert [t["error_code"] for t in deleted["topics"]] == [0, 3]
        assert "b" not in quorum.image.topics and quorum.image.topic_by_id(topic_id) is None

    run(scenario())


def test_producer_id_blocks_never_overlap_and_inactive_controller_refuses():
    controller, quorum, _ = make_controller()

    async def scenario():
        first = await controller.handle({"op": "allocate_producer_ids", "broker_id": 1})
        second = await controller.handle({"op": "allocate_producer_ids", "broker_id": 2})
        assert first["start"] + first["length"] <= second["start"]
        quorum.active = False
        refused = await controller.handle({"op": "allocate_producer_ids", "broker_id": 1})
        assert refused["error_code"] == 41
        unknown = await controller.handle({"op": "frobnicate"})
        assert unknown["error_code"] == 42 and "frobnicate" in unknown["error_message"]

    run(scenario())
