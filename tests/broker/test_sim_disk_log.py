"""The broker's own log (broker.log) on the simulated disk: what a flush promises survives each kind of crash.

Real `LogManager` and `PartitionLog` code over `broker.io.sim_disk` with the
strict POSIX directory rule: flushed batches survive a power loss (the flush
syncs the segment, the partition directory and its parent); batches written
after the flush are lost at a power loss, kept when only the process dies (the
page cache outlives it), and with torn writes the log recovers to a whole-batch
prefix: never a partial batch, never less than what was flushed.
"""

from __future__ import annotations

from broker.coordinator.group_records import iter_records
from broker.io.sim import SimWorld
from broker.log.config import LogConfig
from broker.log.manager import LogManager
from broker.protocol.records import build_batch

HOST = "node1"


def _open(world: SimWorld) -> LogManager:
    manager = LogManager(["/data"], LogConfig(), world.runtime(HOST))
    manager.load()
    return manager


def _values(manager: LogManager) -> list[bytes]:
    log = manager.get("t", 0)
    if log is None:
        return []
    return [value for _, entries in iter_records(log.read(0, 1 << 20)) for _, value in entries]


def _write_flush_write(world: SimWorld) -> None:
    world.storage(HOST).make_durable_dirs("/data")
    manager = _open(world)
    log = manager.create("t", 0)
    for i in range(5):
        log.append(build_batch([(None, b"flushed-%d" % i)]), leader_epoch=0)
    log.flush()
    for i in range(3):
        log.append(build_batch([(None, b"unflushed-%d" % i)]), leader_epoch=0)


def test_a_power_loss_keeps_the_flushed_batches_only():
    world = SimWorld(1)
    _write_flush_write(world)
    world.crash(HOST)
    assert _values(_open(world)) == [b"flushed-%d" % i for i in range(5)]
    world.close()


def test_a_killed_process_loses_nothing_it_wrote():
    world = SimWorld(1)
    _write_flush_write(world)
    world.crash(HOST, power_loss=False)
    assert _values(_open(world)) == [b"flushed-%d" % i for i in range(5)] + [b"unflushed-%d" % i for i in range(3)]
    world.close()


def test_a_torn_tail_recovers_to_whole_batches_and_never_below_the_flush():
    flushed = [b"flushed-%d" % i for i in range(5)]
    unflushed = [b"unflushed-%d" % i for i in range(3)]
    survivors = set()
    for seed in range(12):
        world = SimWorld(seed, torn_writes=True)
        _write_flush_write(world)
        world.crash(HOST)
        values = _values(_open(world))
        assert values[:5] == flushed and values[5:] == unflushed[: len(values) - 5], (seed, values)
        survivors.add(len(values) - 5)
        world.close()
    assert len(survivors) > 1, f"the cut fell at different batches: {sorted(survivors)}"


def test_without_a_flush_a_power_loss_takes_the_whole_partition():
    world = SimWorld(1)
    world.storage(HOST).make_durable_dirs("/data")
    log = _open(world).create("t", 0)
    log.append(build_batch([(None, b"never-flushed")]), leader_epoch=0)
    world.crash(HOST)
    assert _values(_open(world)) == []
    assert [path for path, _ in world.storage(HOST).paths()] == ["/data"], "the directory's name was never synced"
    world.close()
