"""The outgoing client: pipelined requests against an in-process broker, timeouts, lost connections."""

from __future__ import annotations

import asyncio
import struct

import pytest

from broker.io import Runtime
from broker.log.manager import LogManager
from broker.protocol import apis
from broker.protocol.client import ConnectionLost, ConnectionPool, KafkaClientConnection, RequestTimeout
from broker.server.config import load_config
from broker.server.node import build_handlers
from broker.server.router import node_router
from broker.server.server import BrokerServer


async def _start_broker(tmp_path):
    runtime = Runtime.real(seed=1)
    config = load_config(f"node.id=1\nlisteners=PLAINTEXT://127.0.0.1:0\nlog.dirs={tmp_path}\n", "test", [])
    storage = LogManager([str(tmp_path)], config.log_config, runtime)
    handlers = build_handlers(config, runtime, storage, str(tmp_path))
    handlers.load()
    server = BrokerServer(config, runtime, handlers, node_router(handlers))
    await server.start()
    return runtime, server, storage


def _api_versions_body(version: int) -> bytes:
    cls = apis.request_class(apis.API_VERSIONS, version)
    fields = cls.__dataclass_fields__
    values = {"client_software_name": "test", "client_software_version": "1"}
    return apis.encode_request(cls(**{k: v for k, v in values.items() if k in fields}))


def test_pipelined_requests_get_their_own_responses(tmp_path):
    async def scenario():
        runtime, server, storage = await _start_broker(tmp_path)
        pool = ConnectionPool(runtime, "test-client", "127.0.0.1")
        try:
            metadata_cls = apis.request_class(apis.METADATA, 12)
            metadata_body = apis.encode_request(metadata_cls(topics=None, allow_auto_topic_creation=False,
                                                             include_topic_authorized_operations=False))
            results = await asyncio.gather(
                pool.request("127.0.0.1", server.port, apis.API_VERSIONS, 3, _api_versions_body(3), 5.0),
                pool.request("127.0.0.1", server.port, apis.METADATA, 12, metadata_body, 5.0),
                pool.request("127.0.0.1", server.port, apis.API_VERSIONS, 0, _api_versions_body(0), 5.0),
            )
            versions = apis.decode_response(apis.API_VERSIONS, 3, results[0])
            assert {entry.api_key for entry in versions.api_keys} == set(apis.SUPPORTED_VERSIONS)
            metadata = apis.decode_response(apis.METADATA, 12, results[1])
            assert [b.node_id for b in metadata.brokers] == [1]
            versions_v0 = apis.decode_response(apis.API_VERSIONS, 0, results[2])
            assert versions_v0.error_code == 0
            # one connection serves the destination
            assert len(pool._connections) == 1
        finally:
            await pool.close_all()
            await server.stop()
            storage.close(clean=True)

    asyncio.run(scenario())


def test_timeout_and_lost_connection():
    async def scenario():
        accepted: list[asyncio.StreamWriter] = []

        async def silent(reader, writer):
            accepted.append(writer)
            await reader.read(4)  # read the start of a request and never answer

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        runtime = Runtime.real(seed=2)
        connection = await KafkaClientConnection.open(runtime, "127.0.0.1", port, "test")
        with pytest.raises(RequestTimeout):
            await connection.request(30000, 0, b"hello", 0.2)
        waiting = asyncio.ensure_future(connection.request(30000, 0, b"again", 5.0))
        await asyncio.sleep(0.1)
        for writer in accepted:
            writer.close()
        with pytest.raises(ConnectionLost):
            await waiting
        assert connection.closed
        with pytest.raises(ConnectionLost):
            await connection.request(30000, 0, b"after", 1.0)
        server.close()
        await server.wait_closed()
        # nothing listens on a closed port: the pool reports ConnectionLost
        pool = ConnectionPool(runtime, "test", None)
        with pytest.raises(ConnectionLost):
            await pool.request("127.0.0.1", port, 30000, 0, b"x", 1.0)
        await pool.close_all()

    asyncio.run(scenario())


def test_internal_api_round_trip_uses_v1_header():
    async def scenario():
        seen = []

        async def echo(reader, writer):
            while True:
                try:
                    (size,) = struct.unpack(">i", await reader.readexactly(4))
                except asyncio.IncompleteReadError:
                    return
                data = await reader.readexactly(size)
                api_key, version, correlation_id, client_id_length = struct.unpack_from(">hhih", data, 0)
                body = data[10 + client_id_length :]
                seen.append((api_key, version, body))
                response = struct.pack(">i", correlation_id) + body[::-1]
                writer.write(struct.pack(">i", len(response)) + response)
                await writer.drain()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        pool = ConnectionPool(Runtime.real(seed=3), "node-1", None)
        try:
            answers = await asyncio.gather(*(pool.request("127.0.0.1", port, 30001, 0, bytes([n, 0]), 2.0) for n in range(20)))
            assert answers == [bytes([0, n]) for n in range(20)]
            assert [s[0] for s in seen] == [30001] * 20
        finally:
            await pool.close_all()
            server.close()
            await server.wait_closed()

    asyncio.run(scenario())


def test_outgoing_connections_bind_the_outbound_address():
    """logquake.outbound.address: a fault proxy attributes connections by their source address."""

    async def scenario():
        peers = []

        async def note_peer(reader, writer):
            peers.append(writer.get_extra_info("peername")[0])
            writer.close()

        server = await asyncio.start_server(note_peer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        pool = ConnectionPool(Runtime.real(seed=4), "node-2", "127.0.0.2")
        try:
            await pool.connection("127.0.0.1", port)
            for _ in range(100):
                if peers:
                    break
                await asyncio.sleep(0.01)
            assert peers == ["127.0.0.2"]
        finally:
            await pool.close_all()
            server.close()
            await server.wait_closed()

    asyncio.run(scenario())
