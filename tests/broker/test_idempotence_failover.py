"""Idempotent producers across restarts and leader failovers (KIP-98).

Fast: the producer state survives a restart through `<offset>.snapshot` files
in the partition directory. Slow: a confluent-kafka producer with
enable.idempotence=true keeps producing while the partition leader of a 3-node
cluster is SIGKILLed and restarted repeatedly; its retries across the
failovers write no duplicate and lose nothing it was told was written (the new
leader rebuilt the producer state from its log, so it recognises a retried
batch and answers with the original offset).
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from broker.io import RealDisk
from broker.replication.producer_state import ProducerStateTable

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


@pytest.mark.slow
def test_idempotent_producer_through_leader_kills_has_no_duplicates_and_loses_nothing(tmp_path):
    from confluent_kafka import Producer

    from .test_replication_process import Cluster, check_acknowledged, consume_all

    cluster = Cluster(tmp_path, 3, {"min.insync.replicas": "2"}).start()
    try:
        topic = "idem-kills"
        cluster.create_topic(topic)
        values = [b"v%d" % i for i in range(3000)]
        acked: dict[bytes, int] = {}
        errors: list[str] = []

        def produce() -> None:
            producer = Producer({"bootstrap.servers": cluster.bootstrap, "enable.idempotence": True, "acks": "all",
                                 "linger.ms": 5, "message.timeout.ms": 90000, "retry.backoff.ms": 100})

            def report(error, message):
                if error is None:
                    acked[message.value()] = message.offset()
                else:
                    errors.append(str(error))

            for value in values:
                producer.produce(topic, value, partition=0, on_delivery=report)
                producer.poll(0)
                time.sleep(0.004)
            producer.flush(120)

        worker = threading.Thread(target=produce, daemon=True)
        worker.start()
        kills = []
        for _ in range(3):
            time.sleep(2.5)
            leader = cluster.partition(topic)[0]
            assert leader >= 0, f"no leader: {cluster.partition(topic)}"
            kills.append(leader)
            cluster.nodes[leader].kill()
            cluster.wait(lambda: (p := cluster.partition(topic)) is not None and p[0] not in (-1, leader), 30, "a new leader")
            cluster.nodes[leader].start(timeout_s=30)
            cluster.wait(lambda: leader in cluster.partition(topic)[2], 60, f"node {leader} to rejoin the ISR")
        worker.join(180)
        assert not worker.is_alive(), "the producer did not finish"
        assert not errors, f"{len(errors)} messages failed, e.g. {errors[:3]}"
        end = max(acked.values()) + 1
        consumed = consume_all(cluster.bootstrap, topic, end)
    finally:
        cluster.stop()
    duplicates = sorted({v for v in consumed.values() if list(consumed.values()).count(v) > 1})
    assert not duplicates, f"{len(duplicates)} values written twice, e.g. {duplicates[:5]}"
    check_acknowledged(consumed, acked)
    assert len(acked) == len(values) and len(consumed) == len(values)
    print(f"idempotent producer: {len(acked)} acknowledged, {len(consumed)} records, leaders killed {kills}")
