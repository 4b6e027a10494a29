"""MetadataQuorum in one process: three quorum members over real TCP, short timeouts.

Each member gets a minimal server that hands RAFT requests to its quorum (what
the broker's server does in cluster mode). Checks: a leader is elected and
becomes the active controller, committed records reach every image, a killed
leader is replaced, a restarted member recovers its image from disk and
catches up, and a proposal on a follower is refused.
"""

from __future__ import annotations

import asyncio
import struct
import uuid

import pytest

from broker.controller import rpc
from broker.controller.quorum import MetadataQuorum
from broker.controller.storage import QuorumStorage
from broker.io import Runtime
from broker.metadata.errors import NotControllerError
from broker.metadata.records import RegisterBrokerRecord, TopicRecord
from broker.protocol.client import ConnectionPool

ELECTION_TIMEOUT_MS = 150


class Member:
    def __init__(self, node_id: int, voters: dict, directory: str):
        self.node_id = node_id
        self.voters = voters
        self.directory = directory
        self.server = None
        self.quorum: MetadataQuorum | None = None
        self.pool: ConnectionPool | None = None
        self.seen_offsets: list[int] = []

    async def start(self) -> None:
        runtime = Runtime.real(seed=self.node_id)
        self.pool = ConnectionPool(runtime, f"member-{self.node_id}", "127.0.0.1")
        self.quorum = MetadataQuorum(
            self.node_id, self.voters, QuorumStorage(runtime.disk, self.directory), runtime, self.pool,
            election_timeout_ms=ELECTION_TIMEOUT_MS, request_timeout_ms=500,
        )
        self.quorum.listeners.append(self)
        host, port = self.voters[self.node_id]
        self.server = await asyncio.start_server(self._serve, host, port, reuse_address=True)
        self.quorum.start()

    def on_metadata(self, old, new) -> None:
        self.seen_offsets.append(new.offset)

    async def _serve(self, reader, writer) -> None:
        try:
            while True:
                (size,) = struct.unpack(">i", await reader.readexactly(4))
                data = await reader.readexactly(size)
                api_key, _, correlation_id, client_id_length = struct.unpack_from(">hhih", data, 0)
                assert api_key == rpc.RAFT
                body = self.quorum.handle_raft_request(memoryview(data)[10 + max(client_id_length, 0) :])
                response = struct.pack(">i", correlation_id) + body
                writer.write(struct.pack(">i", len(response)) + response)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        if self.quorum is not None:
            await self.quorum.stop()
        if self.pool is not None:
            await self.pool.close_all()


def free_ports(count: int) -> list[int]:
    import socket

    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


async def wait_until(what: str, predicate, timeout_s: float = 5.0):
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.01)
    raise AssertionError(f"{what}: not within {timeout_s} s")


def test_election_commit_failover_and_recovery(tmp_path):
    async def scenario():
        ports = free_ports(3)
        voters = {i + 1: ("127.0.0.1", ports[i]) for i in range(3)}
        members = {i: Member(i, voters, str(tmp_path / f"m{i}")) for i in voters}
        try:
            for member in members.values():
                await member.start()
            leader = await wait_until("an active controller", lambda: next((m for m in members.values() if m.quorum.active), None))
            follower = next(m for m in members.values() if m is not leader)
            with pytest.raises(NotControllerError):
                await follower.quorum.propose([TopicRecord("nope", uuid.UUID(int=9))])
            offset = await leader.quorum.propose([
                RegisterBrokerRecord(1, uuid.UUID(int=1), "127.0.0.1", 1),
                TopicRecord("t", uuid.UUID(int=2)),
            ])
            assert "t" in leader.quorum.image.topics and leader.quorum.image.offset >= offset
            await wait_until("the topic everywhere", lambda: all("t" in m.quorum.image.topics for m in members.values()))

            # the leader dies; the two others elect a new one, which commits more
            await leader.stop()
            survivors = [m for m in members.values() if m is not leader]
            new_leader = await wait_until("a new active controller",
                                          lambda: next((m for m in survivors if m.quorum.active), None))
            await new_leader.quorum.propose([TopicRecord("u", uuid.UUID(int=3))])
            # the old leader restarts from its files: its image is back at once, then it catches up
            restarted = Member(leader.node_id, voters, leader.directory)
            members[leader.node_id] = restarted
            await restarted.start()
            assert "t" in restarted.quorum.image.topics, "committed metadata is replayed from the local log at start"
            await wait_until("the restarted member catches up", lambda: "u" in restarted.quorum.image.topics)
            images = [m.quorum.image for m in members.values()]
            await wait_until("equal images", lambda: len({m.quorum.image.offset for m in members.values()}) == 1)
            assert all(m.quorum.image.topics.keys() == images[0].topics.keys() for m in members.values())
            assert restarted.seen_offsets == sorted(restarted.seen_offsets)
        finally:
            for member in members.values():
                await member.stop()

    asyncio.run(scenario())


def test_a_cut_off_leader_steps_down_and_the_majority_elects_another(tmp_path):
    from broker.protocol.client import ConnectionLost

    async def scenario():
        ports = free_ports(3)
        voters = {i + 1: ("127.0.0.1", ports[i]) for i in range(3)}
        members = {i: Member(i, voters, str(tmp_path / f"m{i}")) for i in voters}
        try:
            for member in members.values():
                await member.start()
            leader = await wait_until("an active controller", lambda: next((m for m in members.values() if m.quorum.active), None))
            await leader.quorum.propose([TopicRecord("before", uuid.UUID(int=1))])
            # cut the leader off both ways: nothing in (server closed), nothing out (every send fails)
            leader.server.close()
            await leader.server.wait_closed()
            leader.server = None
            await leader.pool.close_all()
            real_request = leader.pool.request

            async def unreachable(*args, **kwargs):
                raise ConnectionLost("cut off by the test")

            leader.pool.request = unreachable
            others = [m for m in members.values() if m is not leader]
            new_leader = await wait_until("another active controller", lambda: next((m for m in others if m.quorum.active), None))
            await wait_until("the cut-off leader resigns (check-quorum)", lambda: not leader.quorum.active)
            await new_leader.quorum.propose([TopicRecord("during", uuid.UUID(int=2))])
            assert "during" not in leader.quorum.image.topics
            # heal: the old leader follows the new term and catches up
            leader.pool.request = real_request
            leader.pool._closed = False
            host, port = voters[leader.node_id]
            leader.server = await asyncio.start_server(leader._serve, host, port, reuse_address=True)
            await wait_until("the old leader catches up", lambda: "during" in leader.quorum.image.topics)
            await wait_until("the old leader follows the new one", lambda: leader.quorum.leader_id == new_leader.node_id)
            assert not leader.quorum.active
        finally:
            for member in members.values():
                await member.stop()

    asyncio.run(scenario())
