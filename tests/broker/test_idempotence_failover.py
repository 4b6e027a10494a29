"""Idempotent-producer state across restarts through `<offset>.snapshot` files in the partition directory."""

from __future__ import annotations

import json

from broker.io import RealDisk
from broker.server.producer_state import ProducerStateTable

from . import kafka_requests as req
from .raw_client import RawClient
from .test_idempotence import _batch, _log_end_offset, _produce


def _snapshots(broker) -> list:
    return sorted(broker.log_dir.glob("idem-0/*.snapshot"))


def test_clean_stop_writes_a_snapshot_that_restart_uses(broker_factory):
    broker = broker_factory({"log.flush.interval.messages": "1"})
    with RawClient(broker.port) as client:
        client.call(req.create_topic("idem", 1))
        batch = _batch(9, 0, 0, 4)
        assert _produce(client, batch).base_offset == 0
    broker.stop()
    (snapshot,) = _snapshots(broker)
    assert snapshot.name == f"{4:020d}.snapshot"
    table, next_offset = ProducerStateTable.from_snapshot_bytes(snapshot.read_bytes())
    assert next_offset == 4 and table.producers[9].epoch == 0
    # Make the snapshot say more than the log does: only a broker that loads it refuses epoch 0.
    value = json.loads(snapshot.read_text())
    value["producers"][0]["epoch"] = 3
    snapshot.write_text(json.dumps(value))
    broker.restart()
    with RawClient(broker.port) as client:
        assert _produce(client, _batch(9, 0, 4, 1)).error_code == 47  # INVALID_PRODUCER_EPOCH
        assert _produce(client, _batch(9, 3, 4, 1)).base_offset == 4  # the snapshot's batches, at its epoch
        assert _log_end_offset(client) == 5


def test_restart_after_snapshot_replays_the_log_tail(broker_factory):
    broker = broker_factory({"log.flush.interval.messages": "1"})
    with RawClient(broker.port) as client:
        client.call(req.create_topic("idem", 1))
        first = _batch(9, 0, 0, 2)
        assert _produce(client, first).base_offset == 0
    broker.stop()  # snapshot at offset 2
    broker.restart()
    with RawClient(broker.port) as client:
        tail = _batch(9, 0, 2, 3)
        assert _produce(client, tail).base_offset == 2
    broker.kill()  # no new snapshot: batches after offset 2 come back from the log
    broker.restart()
    with RawClient(broker.port) as client:
        for batch, offset in ((first, 0), (tail, 2)):
            replay = _produce(client, batch)
            assert (replay.error_code, replay.base_offset) == (0, offset)
        assert _produce(client, _batch(9, 0, 5, 1)).base_offset == 5
    assert len(_snapshots(broker)) <= 2
    loaded, _ = ProducerStateTable.load_latest_snapshot(RealDisk(), str(broker.log_dir / "idem-0"), 6)
    assert 9 in loaded.producers
