"""Cluster mode in one process: a one-voter quorum behind a real listener (fast).

The node runs `broker.server.cluster.ClusterNode` exactly as `python -m broker`
does with `controller.quorum.voters` set, with a short election timeout; the
test speaks Kafka to it through the broker's own client (kio entities from
tests/broker/kafka_requests). Checks: Metadata comes from the metadata image
(brokers, leader, epochs, ISR, controller id), CreateTopics and DeleteTopics go
through the controller (topic ids stable, refusals named), auto-creation,
InitProducerId from controller blocks, and a restart replays the metadata log.
"""

from __future__ import annotations

import asyncio
import datetime

from broker.io import Runtime
from broker.log.manager import LogManager
from broker.protocol import apis
from broker.protocol.client import ConnectionPool
from broker.server.cluster import ClusterNode
from broker.server.config import load_config
from broker.server.node import build_handlers
from broker.server.router import node_router
from broker.server.server import BrokerServer
from tests.broker import kafka_requests as kr
from tests.broker.test_cluster import free_port_block


class Node:
    def __init__(self, tmp_path, port: int):
        self.config = load_config(
            f"node.id=1\nlisteners=PLAINTEXT://127.0.0.1:{port}\nlog.dirs={tmp_path}\n"
            f"controller.quorum.voters=1@127.0.0.1:{port}\ncontroller.quorum.election.timeout.ms=100\n"
            "broker.heartbeat.interval.ms=100\nnum.partitions=2\n",
            "test", [],
        )
        self.port = port
        self.tmp_path = tmp_path

    async def start(self):
        self.runtime = Runtime.real(seed=7)
        self.storage = LogManager([str(self.tmp_path)], self.config.log_config, self.runtime)
        self.handlers = build_handlers(self.config, self.runtime, self.storage, str(self.tmp_path))
        self.handlers.load()
        self.cluster = ClusterNode(self.config, self.runtime, self.handlers)
        self.server = BrokerServer(self.config, self.runtime, self.handlers, node_router(self.handlers, self.cluster))
        await self.server.start()
        self.cluster.start(self.server)
        self.pool = ConnectionPool(self.runtime, "test", None)
        return self

    async def request(self, entity):
        api_key, version = entity.__api_key__, entity.__version__
        raw = await self.pool.request("127.0.0.1", self.port, api_key, version, apis.encode_request(entity), 15.0)
        return apis.decode_response(api_key, version, raw)

    async def unfenced(self):
        for _ in range(300):
            if self.cluster.lifecycle is not None and not self.cluster.lifecycle.fenced:
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the node was not unfenced within 3 s")

    async def stop(self):
        await self.cluster.shutdown()
        await self.server.stop()
        await self.cluster.close()
        await self.pool.close_all()
        self.storage.close(clean=True)


def test_metadata_and_admin_requests_go_through_the_controller(tmp_path):
    async def scenario():
        node = await Node(tmp_path, free_port_block(1)).start()
        try:
            await node.unfenced()
            created = await node.request(kr.create_topic("orders", 3, {"min.insync.replicas": "1", "retention.ms": "1000"}))
            result = created.topics[0]
            assert (result.error_code, result.num_partitions, result.replication_factor) == (0, 3, 1)
            topic_id = result.topic_id
            assert topic_id.int != 0
            configs = {c.name: c.value for c in result.configs}
            assert configs["retention.ms"] == "1000" and configs["min.insync.replicas"] == "1"

            again = await node.request(kr.create_topic("orders", 3))
            assert again.topics[0].error_code == 36 and "already exists" in again.topics[0].error_message
            too_many = await node.request(kr.create_topic("wide", 1, replication_factor=2))
            assert too_many.topics[0].error_code == 38 and "larger than the 1 available" in too_many.topics[0].error_message
            bad = await node.request(kr.create_topic("bad", 1, {"min.insync.replicas": "zero"}))
            assert bad.topics[0].error_code == 40

            metadata = await node.request(kr.metadata(["orders", "auto"]))
            assert [(b.node_id, b.port) for b in metadata.brokers] == [(1, node.port)]
            assert metadata.controller_id == 1 and metadata.cluster_id == "logquake-1"
            by_name = {t.name: t for t in metadata.topics}
            assert by_name["orders"].topic_id == topic_id
            partitions = sorted(by_name["orders"].partitions, key=lambda p: p.partition_index)
            assert [(p.leader_id, p.leader_epoch, p.replica_nodes, p.isr_nodes, p.error_code) for p in partitions] == [
                (1, 0, (1,), (1,), 0)
            ] * 3
            assert by_name["auto"].error_code == 0 and len(by_name["auto"].partitions) == 2, "auto-created with num.partitions"

            m = kr.module("create_topics", 7)
            assigned = m.CreateTopicsRequest(topics=(
                m.CreatableTopic(name="placed", num_partitions=-1, replication_factor=-1, configs=(), assignments=(
                    m.CreatableReplicaAssignment(partition_index=0, broker_ids=(1,)),
                    m.CreatableReplicaAssignment(partition_index=1, broker_ids=(1,)),
                )),
                m.CreatableTopic(name="misplaced", num_partitions=-1, replication_factor=-1, configs=(), assignments=(
                    m.CreatableReplicaAssignment(partition_index=0, broker_ids=(2,)),
                )),
            ), timeout=datetime.timedelta(seconds=5), validate_only=False)
            answer = {t.name: t for t in (await node.request(assigned)).topics}
            assert (answer["placed"].error_code, answer["placed"].num_partitions) == (0, 2)
            assert answer["misplaced"].error_code == 39 and "registered brokers" in answer["misplaced"].error_message

            first = await node.request(kr.init_producer_id())
            second = await node.request(kr.init_producer_id())
            assert first.error_code == 0 and second.producer_id == first.producer_id + 1

            deleted = await node.request(kr.delete_topic("auto"))
            assert deleted.responses[0].error_code == 0
            missing = await node.request(kr.delete_topic("never"))
            assert missing.responses[0].error_code == 3
            assert "auto" not in node.handlers.topics.by_name
        finally:
            await node.stop()

        # a restart replays the metadata log: same topic, same id, producer ids past the old block
        node = await Node(tmp_path, node.port).start()
        try:
            await node.unfenced()
            metadata = await node.request(kr.metadata(["orders"], allow_auto_topic_creation=False))
            assert metadata.topics[0].topic_id == topic_id and metadata.topics[0].error_code == 0
            assert "auto" not in node.cluster.quorum.image.topics
            third = await node.request(kr.init_producer_id())
            assert third.producer_id >= first.producer_id + 1000
        finally:
            await node.stop()

    asyncio.run(scenario())
