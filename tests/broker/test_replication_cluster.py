"""Replication between real broker nodes in one process, with a fake controller.

Each node is the real server stack (LogManager, RequestHandlers, BrokerServer on
127.0.0.1, ReplicaManager with its fetchers talking Kafka's protocol over TCP);
only the controller is a fake: it holds the metadata image, applies
AlterPartition as the real one would (epoch checks, partition epoch bump) and
lets a test elect leaders. This exercises acks=all, the high watermark, ISR
shrink/expand, OffsetForLeaderEpoch truncation and the planted-bug switches
without the controller quorum.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import uuid

import pytest
from kio.schema.errors import ErrorCode

from broker.io import Runtime
from broker.log.manager import LogManager
from broker.metadata.errors import FencedLeaderEpochError, InvalidUpdateVersionError
from broker.metadata.image import MetadataImage
from broker.metadata.records import (
    ConfigRecord,
    PartitionChangeRecord,
    PartitionRecord,
    RegisterBrokerRecord,
    TopicRecord,
    UnfenceBrokerRecord,
)
from broker.protocol import apis
from broker.protocol.client import ConnectionPool
from broker.protocol.records import iter_batches
from broker.replication.manager import ReplicaManager, ReplicationSettings
from broker.server.config import build_config
from broker.server.node import build_handlers
from broker.server.router import node_router
from broker.server.server import BrokerServer
from tests.broker import kafka_requests as kr

TOPIC = "replicated"
TOPIC_ID = uuid.UUID(int=0xABCDEF)


class FakeController:
    def __init__(self):
        self.image = MetadataImage()
        self.listeners: dict[int, ReplicaManager] = {}
        self.alter_calls: list[tuple[int, ...]] = []

    def commit(self, *records) -> None:
        old = self.image
        self.image = old.apply_all(records, old.offset + 1)
        for listener in list(self.listeners.values()):
            listener.on_metadata(old, self.image)

    async def alter_partition(self, topic_id, partition, leader_epoch, new_isr, partition_epoch):
        await asyncio.sleep(0)
        state = self.image.partition_by_id(topic_id, partition)
        if leader_epoch != state.leader_epoch:
            raise FencedLeaderEpochError(f"leader epoch {leader_epoch} is not {state.leader_epoch}")
        if partition_epoch != state.partition_epoch:
            raise InvalidUpdateVersionError(f"partition epoch {partition_epoch} is not {state.partition_epoch}")
        self.alter_calls.append(tuple(new_isr))
        self.commit(PartitionChangeRecord(topic_id, partition, None, tuple(new_isr), state.leader_epoch, state.partition_epoch + 1))
        return self.image.partition_by_id(topic_id, partition)

    def elect(self, leader: int, isr: tuple[int, ...]) -> None:
        state = self.image.partition_by_id(TOPIC_ID, 0)
        self.commit(PartitionChangeRecord(TOPIC_ID, 0, leader, isr, state.leader_epoch + 1, state.partition_epoch + 1))


class Node:
    def __init__(self, node_id: int, directory, controller: FakeController, debug: dict[str, str] | None = None,
                 lag_ms: int = 30_000, incarnation_id: uuid.UUID | None = None):
        self.node_id = node_id
        self.incarnation_id = incarnation_id
        self.directory = str(directory)
        self.controller = controller
        self.debug = debug or {}
        self.lag_ms = lag_ms
        self.port = 0
        self.running = False

    async def start(self) -> "Node":
        raw = {"node.id": str(self.node_id), "listeners": f"PLAINTEXT://127.0.0.1:{self.port}", "log.dirs": self.directory}
        raw.update(self.debug)
        config = build_config(raw)
        runtime = Runtime.real()
        self.storage = LogManager([self.directory], config.log_config, runtime)
        self.handlers = build_handlers(config, runtime, self.storage, self.directory)
        self.handlers.load()
        self.server = BrokerServer(config, runtime, self.handlers, node_router(self.handlers))
        await self.server.start()
        self.port = self.server.port
        self.pool = ConnectionPool(runtime, f"replica-{self.node_id}", None)
        settings = ReplicationSettings(
            replica_lag_time_max_ms=self.lag_ms, min_insync_replicas=1, replica_fetch_wait_max_ms=100,
            replica_fetch_backoff_ms=100, request_timeout_ms=5000,
        )  # the logquake.debug.* switches come from the node's config when the manager is attached
        self.manager = ReplicaManager(self.node_id, runtime, self.storage, self.controller, self.pool, settings,
                                      self.handlers, self.handlers.topic_admin.topic_log_config)
        self.handlers.replica_manager = self.manager
        self.manager.incarnation_id = self.incarnation_id
        self.manager.start()
        self.controller.listeners[self.node_id] = self.manager
        self.manager.on_metadata(MetadataImage(), self.controller.image)
        self.running = True
        return self

    async def stop(self) -> None:
        """Stop the node; a node already stopped is left alone."""
        if not self.running:
            return
        self.running = False
        self.controller.listeners.pop(self.node_id, None)
        await self.manager.stop()
        await self.server.stop()
        await self.pool.close_all()
        self.storage.close(clean=True)

    @property
    def log(self):
        return self.storage.get(TOPIC, 0)

    def batches(self) -> list[tuple[int, int, int]]:
        """(base offset, leader epoch, crc) of every stored batch."""
        out = []
        offset = self.log.log_start_offset
        while offset < self.log.log_end_offset:
            data = self.log.read(offset, 1 << 20)
            if not data:
                break
            for _, header in iter_batches(data):
                out.append((header.base_offset, header.partition_leader_epoch, header.crc))
                offset = header.next_offset
        return out


class Client:
    def __init__(self):
        self.pool = ConnectionPool(Runtime.real(), "test-client", None)

    async def send(self, node: Node, request, timeout_s: float = 10.0):
        api_key, version = int(request.__api_key__), int(request.__version__)
        body = await self.pool.request("127.0.0.1", node.port, api_key, version, apis.encode_request(request), timeout_s)
        return apis.decode_response(api_key, version, body)

    async def produce(self, node: Node, values: list[bytes], acks: int = -1, timeout_ms: int = 10_000, **batch_fields):
        request = kr.produce(TOPIC, 0, kr.batch([(None, v) for v in values], **batch_fields), acks=acks)
        request = type(request)(transactional_id=None, acks=acks, timeout=__import__("datetime").timedelta(milliseconds=timeout_ms),
                                topic_data=request.topic_data)
        response = await self.send(node, request)
        part = response.responses[0].partition_responses[0]
        return part.error_code, part.base_offset

    async def fetch(self, node: Node, offset: int):
        response = await self.send(node, kr.fetch(TOPIC, 0, offset, version=12))
        part = response.responses[0].partitions[0]
        return part.error_code, part.high_watermark, [h for _, h in iter_batches(part.records or b"")]

    async def close(self):
        await self.pool.close_all()


async def wait_until(condition, timeout_s: float = 10.0, what: str = "condition"):
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.02)


async def cluster(tmp_path, controller, min_isr: str = "2", debug=None, lag_ms: int = 30_000, leader: int = 1):
    nodes = {i: Node(i, tmp_path / f"node{i}", controller, (debug or {}).get(i), lag_ms) for i in (1, 2, 3)}
    for node in nodes.values():
        await node.start()
    records = []
    for node in nodes.values():
        records += [RegisterBrokerRecord(node.node_id, uuid.uuid4(), "127.0.0.1", node.port), UnfenceBrokerRecord(node.node_id)]
    records += [
        TopicRecord(TOPIC, TOPIC_ID),
        ConfigRecord(2, TOPIC, "min.insync.replicas", min_isr),
        PartitionRecord(TOPIC_ID, 0, (1, 2, 3), (1, 2, 3), leader, 0, 0),
    ]
    controller.commit(*records)
    return nodes


@contextlib.asynccontextmanager
async def running_cluster(tmp_path, controller: FakeController | None = None, **options):
    """(nodes, client) of a 3-node cluster with `controller` (a new fake one by default); every node still
    running, and the client, are stopped afterwards, also the nodes a test put into `nodes` itself."""
    nodes = await cluster(tmp_path, controller or FakeController(), **options)
    client = Client()
    try:
        yield nodes, client
    finally:
        await client.close()
        for node in nodes.values():
            await node.stop()


def run(coroutine):
    asyncio.run(asyncio.wait_for(coroutine, 60))


def test_acks_all_replicates_to_the_isr_and_consumers_read_to_the_high_watermark(tmp_path):
    async def scenario():
        async with running_cluster(tmp_path) as (nodes, client):
            error, base = await client.produce(nodes[1], [b"a", b"b"])
            assert (error, base) == (ErrorCode.none, 0)
            # answered only once the HW passed the batch, i.e. both followers had it
            assert nodes[1].manager.hosted(TOPIC, 0).high_watermark == 2
            await wait_until(lambda: all(n.log.log_end_offset == 2 for n in nodes.values()), what="followers at LEO 2")
            assert nodes[1].batches() == nodes[2].batches() == nodes[3].batches()
            error, high_watermark, batches = await client.fetch(nodes[1], 0)
            assert (error, high_watermark, [b.base_offset for b in batches]) == (ErrorCode.none, 2, [0])
            # only the leader serves clients
            assert (await client.produce(nodes[2], [b"x"]))[0] == ErrorCode.not_leader_or_follower
            assert (await client.fetch(nodes[3], 0))[0] == ErrorCode.not_leader_or_follower
            # followers learn the HW from the leader
            await wait_until(lambda: nodes[2].manager.hosted(TOPIC, 0).high_watermark == 2, what="follower HW")

    run(scenario())


def test_two_of_three_down_acks_all_times_out_then_not_enough_replicas(tmp_path):
    async def scenario():
        controller = FakeController()
        async with running_cluster(tmp_path, controller, lag_ms=600) as (nodes, client):
            assert (await client.produce(nodes[1], [b"a"]))[0] == ErrorCode.none
            await nodes[2].stop()
            await nodes[3].stop()
            # the ISR still names 2 and 3 until the lag time passes: the request waits and times out
            error, _ = await client.produce(nodes[1], [b"lost?"], timeout_ms=200)
            assert error in (ErrorCode.request_timed_out, ErrorCode.not_enough_replicas_after_append)
            await wait_until(lambda: controller.image.partition(TOPIC, 0).isr == (1,), what="ISR shrink to (1,)")
            error, _ = await client.produce(nodes[1], [b"refused"])
            assert error == ErrorCode.not_enough_replicas
            # The timed-out batch was not refused, only not confirmed (an indeterminate outcome for the
            # client): once the ISR is (1,) alone, the HW covers it, as in Kafka. The refused one was never appended.
            error, high_watermark, batches = await client.fetch(nodes[1], 0)
            assert high_watermark == 2 and nodes[1].log.log_end_offset == 2
            assert (await client.produce(nodes[1], [b"acks=1"], acks=1))[0] == ErrorCode.none
            # a follower that comes back catches up and rejoins the ISR
            await nodes[2].start()
            await wait_until(lambda: controller.image.partition(TOPIC, 0).isr == (1, 2), what="ISR expansion to (1, 2)")
            await wait_until(lambda: nodes[1].manager.hosted(TOPIC, 0).high_watermark == nodes[1].log.log_end_offset,
                             what="HW at the LEO again")
            assert (await client.produce(nodes[1], [b"ok again"]))[0] == ErrorCode.none

    run(scenario())


async def diverge(controller, nodes, client):
    """KIP-101 scenario 2: node 1 leads and writes records only it has; node 2 takes over and writes others."""
    assert (await client.produce(nodes[1], [b"common"]))[0] == ErrorCode.none
    await wait_until(lambda: all(n.log.log_end_offset == 1 for n in nodes.values()), what="replication of the first batch")
    await nodes[2].stop()
    await nodes[3].stop()
    for value in (b"only-on-1a", b"only-on-1b"):
        assert (await client.produce(nodes[1], [value], acks=1))[0] == ErrorCode.none
    await nodes[1].stop()
    await nodes[2].start()
    await nodes[3].start()
    controller.elect(2, (2, 3))
    for value in (b"new-leader-a", b"new-leader-b", b"new-leader-c"):
        error, _ = await client.produce(nodes[2], [value])
        assert error == ErrorCode.none
    await nodes[1].start()


def test_a_returning_old_leader_truncates_its_divergent_records(tmp_path):
    async def scenario():
        controller = FakeController()
        async with running_cluster(tmp_path, controller, min_isr="1") as (nodes, client):
            await diverge(controller, nodes, client)
            await wait_until(lambda: nodes[1].log.log_end_offset == 4 and nodes[1].batches() == nodes[2].batches(),
                             what="node 1 to converge on node 2's log")
            assert [epoch for _, epoch, _ in nodes[1].batches()] == [0, 1, 1, 1]
            assert [(e.epoch, e.start_offset) for e in nodes[1].manager.hosted(TOPIC, 0).epochs.entries] == [(0, 0), (1, 1)]
            await wait_until(lambda: controller.image.partition(TOPIC, 0).isr == (1, 2, 3), what="node 1 back in the ISR")

    run(scenario())


def test_debug_skip_truncation_keeps_divergent_records(tmp_path):
    async def scenario():
        controller = FakeController()
        debug = {1: {"logquake.debug.skip.truncation": "true"}}
        async with running_cluster(tmp_path, controller, min_isr="1", debug=debug) as (nodes, client):
            await diverge(controller, nodes, client)
            await wait_until(lambda: nodes[1].log.log_end_offset == 4, what="node 1 to reach offset 4")
            mine, theirs = nodes[1].batches(), nodes[2].batches()
            assert mine[0] == theirs[0]
            assert mine[1:3] != theirs[1:3] and [epoch for _, epoch, _ in mine[1:3]] == [0, 0]  # the planted bug

    run(scenario())


def test_debug_ack_before_replication_and_read_above_hwm(tmp_path):
    async def scenario():
        debug = {"logquake.debug.ack.before.replication": "true", "logquake.debug.read.above.hwm": "true"}
        async with running_cluster(tmp_path, debug={1: debug}) as (nodes, client):
            await nodes[2].stop()
            await nodes[3].stop()
            # ISR (1, 2, 3) with both followers gone: a correct leader could not acknowledge this
            assert (await client.produce(nodes[1], [b"unreplicated"], timeout_ms=300)) == (ErrorCode.none, 0)
            assert nodes[1].manager.hosted(TOPIC, 0).high_watermark == 0
            error, high_watermark, batches = await client.fetch(nodes[1], 0)
            assert (error, high_watermark, len(batches)) == (ErrorCode.none, 0, 1)  # served above the HW

    run(scenario())


def test_debug_skip_dedup_appends_a_retried_idempotent_batch_twice(tmp_path):
    async def scenario():
        results = {}
        for skip in (False, True):
            debug = {"logquake.debug.skip.dedup": "true"} if skip else {}
            async with running_cluster(tmp_path / str(skip), debug={1: debug}) as (nodes, client):
                fields = dict(producer_id=7, producer_epoch=0, base_sequence=0)
                first = await client.produce(nodes[1], [b"once"], **fields)
                retry = await client.produce(nodes[1], [b"once"], **fields)
                results[skip] = (first, retry, nodes[1].log.log_end_offset)
        assert results[False] == ((ErrorCode.none, 0), (ErrorCode.none, 0), 1)
        assert results[True] == ((ErrorCode.none, 0), (ErrorCode.none, 1), 2)

    run(scenario())


def test_fenced_and_unknown_leader_epochs_and_offset_for_leader_epoch(tmp_path):
    async def scenario():
        controller = FakeController()
        async with running_cluster(tmp_path, controller) as (nodes, client):
            assert (await client.produce(nodes[1], [b"a"]))[0] == ErrorCode.none
            stale_image = controller.image
            controller.elect(1, (1, 2, 3))  # epoch 1, same leader
            assert (await client.produce(nodes[1], [b"b"]))[0] == ErrorCode.none
            # An image older than the log (a restarted node replaying metadata) is not acted on:
            # the node stops serving instead of leading at epoch 0, and its epoch boundaries survive.
            current_image = controller.image
            nodes[1].manager.on_metadata(current_image, stale_image)
            assert (await client.produce(nodes[1], [b"stale"]))[0] == ErrorCode.not_leader_or_follower
            nodes[1].manager.on_metadata(stale_image, current_image)
            assert [(e.epoch, e.start_offset) for e in nodes[1].manager.hosted(TOPIC, 0).epochs.entries] == [(0, 0), (1, 1)]
            m = kr.module("fetch", 12)
            for epoch, expected in ((0, ErrorCode.fenced_leader_epoch), (2, ErrorCode.unknown_leader_epoch), (1, ErrorCode.none)):
                request = kr.fetch(TOPIC, 0, 0, version=12)
                part = m.FetchPartition(partition=0, current_leader_epoch=epoch, fetch_offset=0, last_fetched_epoch=-1,
                                        log_start_offset=-1, partition_max_bytes=1 << 20)
                request = type(request)(**{**{f: getattr(request, f) for f in request.__dataclass_fields__ if not f.startswith("__")},
                                           "topics": (m.FetchTopic(topic=TOPIC, partitions=(part,)),)})
                response = await client.send(nodes[1], request)
                assert response.responses[0].partitions[0].error_code == expected
            o = kr.module("offset_for_leader_epoch", 4)
            request = o.OffsetForLeaderEpochRequest(replica_id=-1, topics=(o.OffsetForLeaderTopic(topic=TOPIC, partitions=(
                o.OffsetForLeaderPartition(partition=0, current_leader_epoch=1, leader_epoch=0),)),))
            answer = (await client.send(nodes[1], request)).topics[0].partitions[0]
            assert (answer.error_code, answer.leader_epoch, answer.end_offset) == (ErrorCode.none, 0, 1)
            answer = (await client.send(nodes[2], request)).topics[0].partitions[0]
            assert answer.error_code == ErrorCode.not_leader_or_follower
            # A record from an epoch past this leader's (it was deposed and has not heard) is not
            # answered "no such epoch", which would send a consumer back to auto.offset.reset.
            for current in (-1, 1):
                request = o.OffsetForLeaderEpochRequest(replica_id=-1, topics=(o.OffsetForLeaderTopic(topic=TOPIC, partitions=(
                    o.OffsetForLeaderPartition(partition=0, current_leader_epoch=current, leader_epoch=2),)),))
                answer = (await client.send(nodes[1], request)).topics[0].partitions[0]
                assert (answer.error_code, answer.leader_epoch, answer.end_offset) == (ErrorCode.unknown_leader_epoch, -1, -1)

    run(scenario())


def test_topic_deletion_stops_and_deletes_every_replica(tmp_path):
    async def scenario():
        from broker.metadata.records import RemoveTopicRecord

        controller = FakeController()
        async with running_cluster(tmp_path, controller) as (nodes, client):
            assert (await client.produce(nodes[1], [b"doomed"]))[0] == ErrorCode.none
            directories = [n.log.directory for n in nodes.values()]
            assert all(os.path.isdir(d) for d in directories)
            controller.commit(RemoveTopicRecord(TOPIC_ID))
            assert all(n.manager.hosted(TOPIC, 0) is None and n.log is None for n in nodes.values())
            assert not any(os.path.exists(d) for d in directories)
            assert (await client.produce(nodes[1], [b"late"]))[0] == ErrorCode.unknown_topic_or_partition

    run(scenario())


def test_not_leader_answers_carry_the_current_leader_and_its_endpoint(tmp_path):
    async def scenario():
        async with running_cluster(tmp_path) as (nodes, client):
            request = kr.produce(TOPIC, 0, kr.batch([(None, b"x")]), acks=1, version=10)
            response = await client.send(nodes[2], request)
            part = response.responses[0].partition_responses[0]
            assert part.error_code == ErrorCode.not_leader_or_follower
            assert (part.current_leader.leader_id, part.current_leader.leader_epoch) == (1, 0)
            assert [(e.node_id, e.port) for e in response.node_endpoints] == [(1, nodes[1].port)]
            response = await client.send(nodes[3], kr.fetch(TOPIC, 0, 0, version=16, topic_id=TOPIC_ID))
            part = response.responses[0].partitions[0]
            assert part.error_code == ErrorCode.not_leader_or_follower
            assert (part.current_leader.leader_id, part.current_leader.leader_epoch) == (1, 0)
            assert [(e.node_id, e.port) for e in response.node_endpoints] == [(1, nodes[1].port)]

    run(scenario())


def test_a_follower_behind_the_leaders_log_start_restarts_its_log_there(tmp_path):
    async def scenario():
        async with running_cluster(tmp_path, min_isr="1") as (nodes, client):
            assert (await client.produce(nodes[1], [b"0"]))[0] == ErrorCode.none
            await wait_until(lambda: nodes[3].log.log_end_offset == 1, what="node 3 at LEO 1")
            await nodes[3].stop()
            for value in (b"1", b"2", b"3", b"4"):
                assert (await client.produce(nodes[1], [value], acks=1))[0] == ErrorCode.none
            await wait_until(lambda: nodes[2].log.log_end_offset == 5, what="node 2 at LEO 5")
            nodes[1].log.roll()
            nodes[1].log.delete_records_before(4)  # as retention or DeleteRecords would
            await nodes[3].start()
            await wait_until(lambda: nodes[3].log.log_end_offset == 5, what="node 3 to catch up")
            assert nodes[3].log.log_start_offset == 4
            assert nodes[3].batches() == nodes[1].batches()

    run(scenario())


def test_a_restarted_leader_starts_from_its_checkpointed_high_watermark(tmp_path):
    async def scenario():
        async with running_cluster(tmp_path) as (nodes, client):
            for value in (b"a", b"b", b"c"):
                assert (await client.produce(nodes[1], [value]))[0] == ErrorCode.none
            await nodes[2].stop()
            await nodes[3].stop()
            await nodes[1].stop()
            await nodes[1].start()  # leader again, with its followers still down
            assert nodes[1].manager.hosted(TOPIC, 0).high_watermark == 3
            error, high_watermark, batches = await client.fetch(nodes[1], 0)
            assert (error, high_watermark, len(batches)) == (ErrorCode.none, 3, 3)

    run(scenario())


def test_images_older_than_this_process_registration_are_not_acted_on(tmp_path):
    async def scenario():
        controller = FakeController()
        async with running_cluster(tmp_path, controller) as (nodes, client):
            assert (await client.produce(nodes[1], [b"a"]))[0] == ErrorCode.none
            await nodes[1].stop()
            incarnation = uuid.uuid4()
            restarted = Node(1, tmp_path / "node1", controller, incarnation_id=incarnation)
            restarted.port = nodes[1].port
            nodes[1] = restarted
            # start() replays the current image (still naming node 1 leader at epoch 0), as a
            # restarted node replaying its metadata log would; with the incarnation set it must wait
            await restarted.start()
            assert restarted.manager.hosted(TOPIC, 0) is None
            # The topic is known but not (yet) hosted here: NOT_LEADER_OR_FOLLOWER, which clients
            # retry, as Kafka answers; UNKNOWN_TOPIC_OR_PARTITION made librdkafka's ListOffsets fail at once.
            assert (await client.produce(restarted, [b"stale"]))[0] == ErrorCode.not_leader_or_follower
            assert (await client.fetch(restarted, 0))[0] == ErrorCode.not_leader_or_follower
            offsets = await client.send(restarted, kr.list_offsets(TOPIC, 0, -1))
            assert offsets.topics[0].partitions[0].error_code == ErrorCode.not_leader_or_follower
            o = kr.module("offset_for_leader_epoch", 4)
            answer = (await client.send(restarted, o.OffsetForLeaderEpochRequest(replica_id=-1, topics=(o.OffsetForLeaderTopic(
                topic=TOPIC, partitions=(o.OffsetForLeaderPartition(partition=0, current_leader_epoch=-1, leader_epoch=0),)),)))
                      ).topics[0].partitions[0]
            assert answer.error_code == ErrorCode.not_leader_or_follower
            unknown = await client.send(restarted, kr.list_offsets("no-such-topic", 0, -1))
            assert unknown.topics[0].partitions[0].error_code == ErrorCode.unknown_topic_or_partition
            controller.elect(2, (2, 3))
            assert restarted.manager.hosted(TOPIC, 0) is None
            controller.commit(RegisterBrokerRecord(1, incarnation, "127.0.0.1", restarted.port), UnfenceBrokerRecord(1))
            replica = restarted.manager.hosted(TOPIC, 0)
            assert replica is not None and replica.role == "follower" and replica.state.leader == 2
            await wait_until(lambda: controller.image.partition(TOPIC, 0).isr == (1, 2, 3), what="node 1 back in the ISR")

    run(scenario())


@pytest.mark.parametrize("planted", [False, True])
def test_debug_hwm_past_isr_acknowledges_what_one_isr_member_lacks(tmp_path, planted):
    async def scenario():
        debug = {1: {"logquake.debug.hwm.past.isr": "true"}} if planted else {}
        async with running_cluster(tmp_path, debug=debug) as (nodes, client):
            await nodes[3].stop()  # still in the ISR: replica.lag.time.max.ms has not passed
            error, _ = await client.produce(nodes[1], [b"on 1 and 2 only"], timeout_ms=300)
            replica = nodes[1].manager.hosted(TOPIC, 0)
            assert replica.isr == (1, 2, 3)
            if planted:
                assert (error, replica.high_watermark) == (ErrorCode.none, 1)
            else:
                assert (error, replica.high_watermark) == (ErrorCode.request_timed_out, 0)

    run(scenario())


@pytest.mark.parametrize("planted", [False, True])
def test_debug_fenced_leader_acks_answers_ok_when_the_leadership_is_lost(tmp_path, planted):
    async def scenario():
        controller = FakeController()
        debug = {1: {"logquake.debug.fenced.leader.acks": "true"}} if planted else {}
        async with running_cluster(tmp_path, controller, debug=debug) as (nodes, client):
            await nodes[2].stop()
            await nodes[3].stop()
            produce = asyncio.ensure_future(client.produce(nodes[1], [b"never replicated"], timeout_ms=5000))
            await wait_until(lambda: nodes[1].log.log_end_offset == 1, what="the leader's own append")
            controller.elect(2, (2,))  # node 1 learns it was replaced while the request waits
            error, _ = await produce
            assert error == (ErrorCode.none if planted else ErrorCode.not_leader_or_follower)

    run(scenario())


@pytest.mark.parametrize("planted", [False, True])
def test_debug_stale_epoch_fetch_serves_a_fetch_naming_an_older_leader_epoch(tmp_path, planted):
    async def scenario():
        controller = FakeController()
        debug = {1: {"logquake.debug.stale.epoch.fetch": "true"}} if planted else {}
        async with running_cluster(tmp_path, controller, debug=debug) as (nodes, client):
            assert (await client.produce(nodes[1], [b"a"]))[0] == ErrorCode.none
            controller.elect(1, (1, 2, 3))  # node 1 leads again, in epoch 1
            await wait_until(lambda: nodes[1].manager.hosted(TOPIC, 0).high_watermark == 1, what="the HW in epoch 1")
            for replica_id in (-1, 2):  # a consumer, and a follower, that still believe in epoch 0
                request = kr.fetch(TOPIC, 0, 0, version=12)
                topic = request.topics[0]
                stale = dataclasses.replace(topic.partitions[0], current_leader_epoch=0)
                request = dataclasses.replace(request, replica_id=replica_id,
                                              topics=(dataclasses.replace(topic, partitions=(stale,)),))
                part = (await client.send(nodes[1], request)).responses[0].partitions[0]
                if planted:
                    assert (part.error_code, len(list(iter_batches(part.records)))) == (ErrorCode.none, 1)
                else:
                    assert (part.error_code, part.records or b"") == (ErrorCode.fenced_leader_epoch, b"")
            # the current epoch is served either way
            request = kr.fetch(TOPIC, 0, 0, version=12)
            assert (await client.send(nodes[1], request)).responses[0].partitions[0].error_code == ErrorCode.none

    run(scenario())


def test_new_planted_bugs_are_switched_on_from_the_config(tmp_path):
    async def scenario():
        debug = {name: "true" for name in ("logquake.debug.stale.epoch.fetch", "logquake.debug.epoch.bump.unfenced",
                                           "logquake.debug.abort.marker.lost", "logquake.debug.double.assignment")}
        for node_id, switches in ((1, debug), (2, {})):
            node = await Node(node_id, tmp_path / f"node{node_id}", FakeController(), switches).start()
            try:
                handlers, on = node.handlers, bool(switches)
                assert node.manager.settings.stale_epoch_fetch == on
                assert handlers.txn_apis.coordinator.epoch_bump_unfenced == on
                handlers.txn_apis.coordinator.on_become_leader(0, 0, [])  # each state machine gets the switch
                assert handlers.txn_apis.coordinator.owned[0][1].epoch_bump_unfenced == on
                assert handlers.leader.abort_marker_lost == on
                assert handlers.group_apis.coordinator.double_assignment == on
            finally:
                await node.stop()

    run(scenario())


def test_planted_coordinator_bugs_are_switched_on_from_the_config_with_a_warning(tmp_path, caplog):
    async def scenario():
        debug = {"logquake.debug.commit.before.replication": "true", "logquake.debug.partial.commit.markers": "true"}
        node = await Node(1, tmp_path / "node1", FakeController(), debug).start()
        try:
            handlers = node.handlers
            assert handlers.group_apis.coordinator.commit_before_replication
            assert handlers.txn_apis.coordinator.partial_commit_markers
        finally:
            await node.stop()
        plain = await Node(2, tmp_path / "node2", FakeController()).start()
        try:
            assert not plain.handlers.group_apis.coordinator.commit_before_replication
            assert not plain.handlers.txn_apis.coordinator.partial_commit_markers
        finally:
            await plain.stop()

    with caplog.at_level("WARNING"):
        run(scenario())
    assert ("planted bugs enabled on node 1: logquake.debug.partial.commit.markers, "
            "logquake.debug.commit.before.replication") in caplog.text
    assert "node 2" not in caplog.text


def test_a_new_leader_whose_high_watermark_lags_its_epoch_start_answers_offset_not_available(tmp_path):
    """KIP-207: ListOffsets(latest) on a new leader is OFFSET_NOT_AVAILABLE until its high watermark reaches the
    start offset of its epoch, and the high watermark after that."""
    async def scenario():
        controller = FakeController()
        async with running_cluster(tmp_path, controller, min_isr="1") as (nodes, client):
            assert (await client.produce(nodes[1], [b"committed"]))[0] == ErrorCode.none
            await wait_until(lambda: nodes[2].manager.hosted(TOPIC, 0).high_watermark == 1, what="node 2 at HW 1")
            await nodes[3].stop()  # still in the ISR: nothing more is committed while it is away
            assert (await client.produce(nodes[1], [b"uncommitted"], acks=1))[0] == ErrorCode.none
            await wait_until(lambda: nodes[2].log.log_end_offset == 2, what="node 2 to fetch the second record")
            await nodes[1].stop()
            controller.elect(2, (2, 3))
            await wait_until(lambda: nodes[2].manager.hosted(TOPIC, 0).leader_state is not None, what="node 2 leads")
            replica = nodes[2].manager.hosted(TOPIC, 0)
            assert (replica.high_watermark, replica.leader_state.epoch_start_offset) == (1, 2)
            part = (await client.send(nodes[2], kr.list_offsets(TOPIC, 0, -1))).topics[0].partitions[0]
            assert part.error_code == ErrorCode.offset_not_available, part
            await nodes[3].start()  # catches up: the HW reaches the epoch start
            await wait_until(lambda: nodes[2].manager.hosted(TOPIC, 0).high_watermark == 2, what="HW 2 on node 2")
            part = (await client.send(nodes[2], kr.list_offsets(TOPIC, 0, -1))).topics[0].partitions[0]
            assert (part.error_code, part.offset) == (ErrorCode.none, 2), part

    run(scenario())


def test_a_partition_whose_fetched_records_cannot_be_appended_does_not_stop_the_others(tmp_path):
    """One fetcher serves every partition a follower takes from one leader; a partition whose data cannot be
    appended (here: its log refuses, as a divergent log does) is backed off, and the others keep replicating."""
    async def scenario():
        controller = FakeController()
        async with running_cluster(tmp_path, controller, min_isr="1") as (nodes, client):
            controller.commit(PartitionRecord(TOPIC_ID, 1, (1, 2, 3), (1, 2, 3), 1, 0, 0))
            await wait_until(lambda: all(n.storage.get(TOPIC, 1) is not None for n in nodes.values()),
                             what="partition 1 on every node")
            refused = []

            def refuse(records, headers=None):
                refused.append(len(records))
                raise ValueError("follower batch overlaps the log (planted for this test)")

            nodes[2].log.append_as_follower = refuse
            assert (await client.produce(nodes[1], [b"p0"], acks=1))[0] == ErrorCode.none
            await wait_until(lambda: refused and nodes[3].log.log_end_offset == 1, what="node 2 to refuse partition 0")
            response = await client.send(nodes[1], kr.produce(TOPIC, 1, kr.batch([(None, b"p1")]), acks=1))
            assert response.responses[0].partition_responses[0].error_code == ErrorCode.none
            await wait_until(lambda: nodes[2].storage.get(TOPIC, 1).log_end_offset == 1,
                             what="node 2 to replicate partition 1 while partition 0 fails")
            assert nodes[2].log.log_end_offset == 0 and len(refused) < 20  # backed off, not retried in a loop

    run(scenario())


def test_a_partition_whose_log_cannot_be_read_is_not_led_and_the_image_goes_on_for_the_others(tmp_path, caplog):
    import logging

    from tests.broker.test_router import damage_second_batch

    other_id = uuid.UUID(int=0x123456)

    async def scenario():
        controller = FakeController()
        async with running_cluster(tmp_path, controller) as (nodes, client):
            for value in (b"a", b"b", b"c"):
                assert (await client.produce(nodes[1], [value]))[0] == ErrorCode.none
            await wait_until(lambda: nodes[2].log.log_end_offset == 3, what="node 2 at LEO 3")
            # node 2's disk returns garbage for the second batch's header, under the running broker
            damage_second_batch(tmp_path / "node2" / f"{TOPIC}-0" / f"{0:020d}.log")
            # one image makes node 2 the leader (which reads the log to rebuild producer state) and adds a topic
            state = controller.image.partition_by_id(TOPIC_ID, 0)
            with caplog.at_level(logging.ERROR, logger="broker.replication"):
                controller.commit(PartitionChangeRecord(TOPIC_ID, 0, 2, (1, 2, 3), state.leader_epoch + 1,
                                                        state.partition_epoch + 1),
                                  TopicRecord("other", other_id), PartitionRecord(other_id, 0, (2,), (2,), 2, 0, 0))
            replica = nodes[2].manager.hosted(TOPIC, 0)
            assert replica.leader_state is None and replica.role != "leader"
            assert (await client.produce(nodes[2], [b"x"]))[0] == ErrorCode.not_leader_or_follower
            said = [r.getMessage() for r in caplog.records if "cannot take its role" in r.getMessage()]
            assert len(said) == 1 and said[0].startswith(f"{TOPIC}-0: cannot take its role (leader 2, epoch "), said
            # the rest of the image was applied: node 2 leads the new topic's partition
            assert nodes[2].manager.hosted("other", 0).leader_state is not None

    run(scenario())
