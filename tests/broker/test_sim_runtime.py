"""The simulated runtime's parts, each against the fault model its module states (broker/io/sim*.py).

Loop: virtual time jumps to the next timer, asyncio's timeouts run on it, a
deadlock is named, an actor's tasks (and theirs) are cancelled together, the
seeded shuffle is reproducible. Network: real asyncio streams in memory, in
order and late by the link's delay; refused connects; partitions that hold
bytes until healed (both ways and one way) or reset connections; a crash
resets the peers and revokes the dead process's view. Disk: what was not
fsynced is gone after a crash, directory entries as POSIX or a journal makes
them durable, torn writes leave a prefix, EIO on write and fsync (a failed
fsync loses its writes for good), a dead process's files refuse service.
Clock: epoch + virtual time + skew.
"""

from __future__ import annotations

import asyncio
import errno
import random

import pytest

from broker.io.sim import EPOCH_MS, SimulationDeadlock, SimWorld
from broker.io.sim_disk import SimStorage
from broker.io.sim_loop import VirtualTimeLoop


def run(world: SimWorld, coro):
    try:
        return world.run(coro)
    finally:
        world.close()


# ---- loop ------------------------------------------------------------------------------


def test_virtual_time_jumps_to_the_next_timer_and_asyncio_timeouts_run_on_it():
    loop = VirtualTimeLoop()

    async def scenario():
        await asyncio.sleep(3600)
        assert loop.time() == pytest.approx(3600)
        event = asyncio.Event()
        loop.call_later(10, event.set)
        await asyncio.wait_for(event.wait(), 20)
        assert loop.time() == pytest.approx(3610)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(5):
                await asyncio.sleep(60)
        assert loop.time() == pytest.approx(3615)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.Event().wait(), 7)
        return loop.time()

    try:
        assert loop.run_until_complete(scenario()) == pytest.approx(3622)
    finally:
        loop.close()


def test_a_loop_with_nothing_ready_and_no_timer_is_a_deadlock_not_a_hang():
    loop = VirtualTimeLoop()

    async def wait_forever():
        await asyncio.sleep(2)
        await loop.create_future()

    with pytest.raises(SimulationDeadlock, match="at virtual time 2.000000 s nothing is ready"):
        loop.run_until_complete(wait_forever())
    loop.close()


def test_cancelling_an_actor_stops_its_tasks_and_the_tasks_they_started_only():
    loop = VirtualTimeLoop()
    stopped: list[str] = []

    async def worker(name: str, spawn: bool):
        try:
            if spawn:
                asyncio.ensure_future(worker(name + ".child", False))
            await asyncio.sleep(100)
        except asyncio.CancelledError:
            stopped.append(name)
            raise

    async def scenario():
        loop.run_actor("a#1", worker("a", True))
        survivor = loop.run_actor("b#1", worker("b", False))
        await asyncio.sleep(1)
        assert len(loop.actor_tasks("a#1")) == 2 and len(loop.actor_tasks("b#1")) == 1
        assert loop.cancel_actor("a#1") == 2
        await asyncio.sleep(1)
        assert not survivor.done()
        survivor.cancel()

    loop.run_until_complete(scenario())
    loop.close()
    assert stopped == ["a", "a.child", "b"]


def _ready_order(shuffle_seed):
    loop = VirtualTimeLoop(shuffle_seed=shuffle_seed)
    order: list[int] = []

    async def one(i: int):
        await asyncio.sleep(0)
        order.append(i)

    async def scenario():
        await asyncio.gather(*(one(i) for i in range(12)))

    loop.run_until_complete(scenario())
    loop.close()
    return order


def test_the_order_of_ready_callbacks_is_fifo_or_drawn_from_the_seed():
    assert _ready_order(None) == list(range(12))
    assert _ready_order(3) == _ready_order(3)
    assert _ready_order(3) != _ready_order(4)
    assert sorted(_ready_order(3)) == list(range(12))


# ---- network ---------------------------------------------------------------------------


async def _echo_server(world: SimWorld, host: str = "server", port: int = 9092):
    async def echo(reader, writer):
        while data := await reader.read(100):
            writer.write(data)
        writer.close()

    return await world.network.host(host).start_server(echo, host, port)


def test_a_connection_carries_bytes_in_order_after_the_link_delay_and_closes_with_eof():
    world = SimWorld(1)

    async def scenario():
        server = await _echo_server(world)
        assert server.sockets[0].getsockname() == ("server", 9092)
        client = world.network.host("client")
        reader, writer = await client.open_connection("server", 9092)
        assert writer.get_extra_info("peername") == ("server", 9092)
        sent_at = world.virtual_s
        for chunk in (b"one ", b"two ", b"three"):
            writer.write(chunk)
        assert await reader.readexactly(13) == b"one two three"
        assert world.virtual_s - sent_at >= 2 * 0.1e-3, "there and back took at least twice the minimum delay"
        writer.close()
        assert await reader.read() == b""

    run(world, scenario())


def test_serve_forever_returns_when_the_server_is_closed():
    world = SimWorld(2)

    async def scenario():
        server = await _echo_server(world)
        serving = asyncio.ensure_future(server.serve_forever())
        await world.sleep(5.0)
        assert not serving.done()
        server.close()
        await asyncio.wait_for(serving, 1.0)
        assert not server.is_serving()

    run(world, scenario())


def test_a_slow_link_delays_its_writes_and_only_its_own():
    world = SimWorld(6)

    async def scenario():
        await _echo_server(world)
        reader, writer = await world.network.host("client").open_connection("server", 9092)

        async def round_trip() -> float:
            started = world.virtual_s
            writer.write(b"ping")
            assert await reader.readexactly(4) == b"ping"
            return world.virtual_s - started

        normal = await round_trip()
        world.network.slow(["client"], ["server"], 200, one_way=True)
        slow = await round_trip()
        assert normal < 0.01 and 0.2 <= slow < 0.21, (normal, slow)
        world.network.slow(["client"], ["server"], 0)
        assert await round_trip() < 0.01

    run(world, scenario())


def test_connects_to_no_listener_or_a_refusing_host_are_refused():
    world = SimWorld(1)

    async def scenario():
        await _echo_server(world)
        client = world.network.host("client")
        with pytest.raises(ConnectionRefusedError):
            await client.open_connection("server", 9093)
        world.network.refuse("server")
        with pytest.raises(ConnectionRefusedError):
            await client.open_connection("server", 9092)
        world.network.refuse("server", False)
        await client.open_connection("server", 9092)

    run(world, scenario())


def test_a_dropping_partition_holds_bytes_and_connects_until_it_heals():
    world = SimWorld(2)

    async def scenario():
        await _echo_server(world)
        client = world.network.host("client")
        reader, writer = await client.open_connection("server", 9092)
        world.network.partition(["client"], ["server"])
        writer.write(b"held")
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(reader.readexactly(4), 30)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(client.open_connection("server", 9092), 5)
        pending_connect = asyncio.ensure_future(client.open_connection("server", 9092))
        await asyncio.sleep(1)
        world.network.heal()
        assert await reader.readexactly(4) == b"held"
        await pending_connect

    run(world, scenario())


def test_a_one_way_partition_holds_one_direction_only():
    world = SimWorld(3)

    async def scenario():
        got: list[bytes] = []

        async def collect(reader, writer):
            got.append(await reader.readexactly(5))
            writer.write(b"reply")

        await world.network.host("server").start_server(collect, "server", 9092)
        reader, writer = await world.network.host("client").open_connection("server", 9092)
        world.network.partition(["server"], ["client"], one_way=True)
        writer.write(b"hello")
        await asyncio.sleep(1)
        assert got == [b"hello"], "client -> server still flows"
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(reader.readexactly(5), 10)
        world.network.heal()
        assert await reader.readexactly(5) == b"reply"

    run(world, scenario())


def test_a_resetting_partition_resets_connections_and_refuses_new_ones():
    world = SimWorld(4)

    async def scenario():
        await _echo_server(world)
        client = world.network.host("client")
        reader, writer = await client.open_connection("server", 9092)
        world.network.partition(["client"], ["server"], reset=True)
        with pytest.raises(ConnectionResetError):
            await reader.readexactly(1)
        with pytest.raises(ConnectionResetError):
            await writer.drain()
        with pytest.raises(ConnectionRefusedError):
            await client.open_connection("server", 9092)

    run(world, scenario())


def test_a_crash_resets_the_peers_and_revokes_the_dead_process_network():
    world = SimWorld(5)

    async def scenario():
        await _echo_server(world)
        client = world.network.host("client")
        reader, writer = await client.open_connection("server", 9092)
        dead = world.network._hosts["server"]
        world.network.crash("server")
        with pytest.raises(ConnectionResetError):
            await reader.readexactly(1)
        with pytest.raises(ConnectionRefusedError):
            await client.open_connection("server", 9092)
        with pytest.raises(OSError, match="crashed"):
            await dead.open_connection("client", 1)
        await _echo_server(world)  # the next incarnation listens again
        await client.open_connection("server", 9092)
        assert world.network.disconnect("client") == 1

    run(world, scenario())


# ---- disk ------------------------------------------------------------------------------


def _storage(**options) -> SimStorage:
    storage = SimStorage("node1", random.Random(1), **options)
    storage.make_durable_dirs("/data")
    return storage


def test_a_crash_keeps_what_was_fsynced_and_loses_the_rest():
    storage = _storage()
    disk = storage.disk()
    handle = disk.open("/data/log", "xb")
    disk.fsync_dir("/data")
    handle.write(b"durable ")
    handle.fsync()
    handle.write(b"lost")
    assert disk.open("/data/log", "rb").read() == b"durable lost", "reads see the page cache"
    storage.crash()
    assert storage.disk().open("/data/log", "rb").read() == b"durable "


def test_posix_directories_entries_are_durable_only_once_their_directory_is_synced():
    storage = _storage()
    disk = storage.disk()
    for name in ("synced", "unsynced"):
        handle = disk.open(f"/data/{name}", "wb")
        handle.write(b"x")
        handle.fsync()
        if name == "synced":
            disk.fsync_dir("/data")
    disk.makedirs("/data/sub")
    disk.fsync_dir("/data/sub")  # syncs sub's entries, not sub's own name
    disk.rename("/data/synced", "/data/renamed")
    storage.crash()
    assert [p for p, _ in storage.paths()] == ["/data", "/data/synced"], "the rename and the new names are gone"

    disk = storage.disk()
    disk.rename("/data/synced", "/data/renamed")
    disk.fsync_dir("/data")
    storage.crash()
    assert storage.paths() == [("/data", None), ("/data/renamed", 1)]


def test_journaled_directories_are_durable_after_any_sync():
    storage = _storage(directories="journaled")
    disk = storage.disk()
    disk.makedirs("/data/quorum")
    disk.open("/data/unsynced-data", "wb").write(b"gone")
    handle = disk.open("/data/quorum/state", "wb")
    handle.write(b"term 3")
    handle.fsync()
    disk.open("/data/after-the-last-sync", "wb")
    storage.crash()
    assert storage.paths() == [("/data", None), ("/data/quorum", None), ("/data/quorum/state", 6),
                               ("/data/unsynced-data", 0)], "names made before a sync are kept, data is not"


def test_a_torn_write_leaves_a_prefix_of_the_unsynced_writes():
    outcomes = set()
    for seed in range(30):
        storage = SimStorage("node1", random.Random(seed), torn_writes=True)
        storage.make_durable_dirs("/data")
        disk = storage.disk()
        handle = disk.open("/data/log", "wb")
        handle.write(b"AAAA")
        handle.fsync()
        disk.fsync_dir("/data")
        handle.write(b"BBBB")
        handle.write(b"CCCC")
        storage.crash()
        content = storage.read_file("/data/log")
        assert b"AAAABBBBCCCC".startswith(content) and content.startswith(b"AAAA"), content
        outcomes.add(content)
    assert len(outcomes) > 3, f"the cut falls at different points: {sorted(outcomes)}"


def test_eio_on_write_changes_nothing_and_a_failed_fsync_loses_its_writes_for_good():
    storage = _storage(write_error_probability=1.0)
    disk = storage.disk()
    handle = disk.open("/data/log", "wb")
    disk.fsync_dir("/data")
    with pytest.raises(OSError) as failed:
        handle.write(b"never")
    assert failed.value.errno == errno.EIO and handle.size() == 0

    storage.write_error_probability, storage.fsync_error_probability = 0.0, 1.0
    handle.write(b"dirty")
    with pytest.raises(OSError) as failed:
        handle.fsync()
    assert failed.value.errno == errno.EIO
    storage.fsync_error_probability = 0.0
    handle.fsync()  # succeeds, but the failed fsync's pages were dropped (fsyncgate)
    assert handle.pread(5, 0) == b"dirty"
    storage.crash()
    assert storage.read_file("/data/log") == b""


def test_a_dead_process_files_and_disk_refuse_service():
    storage = _storage()
    disk = storage.disk()
    handle = disk.open("/data/log", "wb")
    storage.crash()
    for call in (lambda: handle.write(b"x"), lambda: disk.exists("/data"), lambda: disk.open("/data/x", "wb")):
        with pytest.raises(OSError) as refused:
            call()
        assert refused.value.errno == errno.EIO


# ---- clock and runtime -----------------------------------------------------------------


def test_the_clock_is_epoch_plus_virtual_time_plus_skew():
    world = SimWorld(9)

    async def scenario():
        runtime = world.runtime("node1")
        clock = runtime.clock
        await clock.sleep(2.5)
        assert clock.monotonic_ns() == 2_500_000_000 and clock.monotonic_ms() == 2500
        assert clock.wall_ms() == EPOCH_MS + 2500
        clock.set_skew(-60_000)
        assert clock.wall_ms() == EPOCH_MS + 2500 - 60_000

    run(world, scenario())


def test_the_runtime_random_depends_on_seed_host_and_incarnation_only():
    def draw(seed, host, incarnations):
        world = SimWorld(seed)
        for _ in range(incarnations - 1):
            world.runtime(host)
            world.crash(host)
        value = world.runtime(host).random.random()
        world.close()
        return value

    assert draw(1, "node1", 1) == draw(1, "node1", 1)
    assert len({draw(1, "node1", 1), draw(2, "node1", 1), draw(1, "node2", 1), draw(1, "node1", 2)}) == 4


def test_a_process_that_exits_or_is_killed_leaves_the_page_cache_behind():
    storage = _storage()
    disk = storage.disk()
    disk.open("/data/log", "wb").write(b"unsynced")
    storage.process_exit()
    assert storage.disk().open("/data/log", "rb").read() == b"unsynced"
