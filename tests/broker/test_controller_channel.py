"""The broker's channel to the active controller: local vs remote, NOT_CONTROLLER retries, deadlines; the lifecycle."""

from __future__ import annotations

import asyncio
import random
import uuid

import pytest

from broker.controller import rpc
from broker.controller.channel import BrokerLifecycle, ClusterProducerIds, QuorumControllerChannel
from broker.metadata.errors import ControllerUnavailableError, FencedLeaderEpochError
from broker.metadata.image import MetadataImage
from broker.protocol.client import ConnectionLost


class Clock:
    def __init__(self):
        self.now_ns = 0

    def monotonic_ns(self):
        return self.now_ns

    async def sleep(self, seconds):
        self.now_ns += int(seconds * 1e9)
        await asyncio.sleep(0)


class Runtime:
    def __init__(self):
        self.clock = Clock()
        self.random = random.Random(1)


class Quorum:
    def __init__(self, leader_id, active=False):
        self.leader_id = leader_id
        self.active = active
        self.image = MetadataImage()


class Controller:
    def __init__(self, answers):
        self.answers = list(answers)
        self.requests = []

    async def handle(self, request):
        self.requests.append(request)
        return self.answers.pop(0)


class Pool:
    """Answers requests to node 2's address from a script; anything else fails."""

    def __init__(self, script):
        self.script = list(script)
        self.sent = []

    async def request(self, host, port, api_key, api_version, body, timeout_s):
        self.sent.append((port, api_key, rpc.decode_json(body)))
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return rpc.encode_json(step)


VOTERS = {1: ("127.0.0.1", 9001), 2: ("127.0.0.1", 9002)}


def test_local_controller_is_called_directly():
    controller = Controller([{"error_code": 0, "fenced": False}])
    channel = QuorumControllerChannel(1, Quorum(1, active=True), controller, Pool([]), VOTERS, Runtime())
    assert asyncio.run(channel.call({"op": "broker_heartbeat"})) == {"error_code": 0, "fenced": False}
    assert controller.requests == [{"op": "broker_heartbeat"}]


def test_remote_controller_with_retries_until_an_answer():
    pool = Pool([ConnectionLost("down"), {"error_code": 41, "leader_id": 2}, {"error_code": 0, "start": 5, "length": 10}])
    channel = QuorumControllerChannel(1, Quorum(2), Controller([]), pool, VOTERS, Runtime())
    producer_ids = ClusterProducerIds(channel)
    assert asyncio.run(producer_ids.allocate()) == 5
    assert [(port, key) for port, key, _ in pool.sent] == [(9002, rpc.CONTROLLER)] * 3


def test_errors_become_exceptions_and_the_deadline_holds():
    pool = Pool([{"error_code": 74, "error_message": "stale leader epoch"}])
    channel = QuorumControllerChannel(1, Quorum(2), Controller([]), pool, VOTERS, Runtime())
    with pytest.raises(FencedLeaderEpochError, match="stale leader epoch"):
        asyncio.run(channel.alter_partition(uuid.UUID(int=1), 0, 3, (1, 2), 4))
    assert pool.sent[0][2] == {"op": "alter_partition", "broker_id": 1, "topic_id": str(uuid.UUID(int=1)), "partition": 0,
                               "leader_epoch": 3, "new_isr": [1, 2], "partition_epoch": 4}
    leaderless = QuorumControllerChannel(1, Quorum(None), Controller([]), Pool([]), VOTERS, Runtime())
    with pytest.raises(ControllerUnavailableError, match="no active controller elected yet"):
        asyncio.run(leaderless.call({"op": "x"}, timeout_s=1.0))


def test_lifecycle_registers_again_when_its_incarnation_is_unknown():
    stale = {"error_code": 77, "error_message": "register again"}
    controller = Controller([
        {"error_code": 0, "broker_epoch": 1},  # register
        stale,  # heartbeat: the controller forgot us
        {"error_code": 0, "broker_epoch": 2},  # register again
        {"error_code": 0, "fenced": False, "metadata_offset": 2},
        {"error_code": 0},  # controlled shutdown
    ])
    quorum = Quorum(1, active=True)
    channel = QuorumControllerChannel(1, quorum, controller, Pool([]), VOTERS, Runtime())
    lifecycle = BrokerLifecycle(channel, quorum, Runtime(), "127.0.0.1", 9001, heartbeat_interval_ms=100)

    async def scenario():
        lifecycle.start()
        while lifecycle.fenced:
            await asyncio.sleep(0)
        await lifecycle.controlled_shutdown()

    asyncio.run(scenario())
    ops = [r["op"] for r in controller.requests]
    assert ops == ["register_broker", "broker_heartbeat", "register_broker", "broker_heartbeat", "controlled_shutdown"]
    assert controller.requests[0]["incarnation_id"] == controller.requests[2]["incarnation_id"] == str(lifecycle.incarnation_id)
