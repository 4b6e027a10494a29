"""Idempotent produce (KIP-98) over a raw socket: retries get their original offsets, gaps and old epochs are refused."""

from __future__ import annotations



from . import kafka_requests as req
from .raw_client import RawClient


def _batch(producer_id: int, epoch: int, first_sequence: int, count: int, tag: bytes = b"") -> bytes:
    return req.batch(
        [(b"k", b"%s-%d" % (tag, first_sequence + i)) for i in range(count)],
        producer_id=producer_id,
        producer_epoch=epoch,
        base_sequence=first_sequence,
    )


def _produce(client: RawClient, records: bytes, topic: str = "idem"):
    return client.call(req.produce(topic, 0, records)).responses[0].partition_responses[0]


def _log_end_offset(client: RawClient, topic: str = "idem") -> int:
    return client.call(req.list_offsets(topic, 0, -1)).topics[0].partitions[0].offset


def test_replayed_batch_gets_its_original_offset_and_is_not_appended_twice(broker):
    with RawClient(broker.port) as client:
        assert client.call(req.create_topic("idem", 1)).topics[0].error_code == 0
        producer_id = client.call(req.init_producer_id()).producer_id
        first = _batch(producer_id, 0, 0, 3)
        second = _batch(producer_id, 0, 3, 2)
        assert _produce(client, first).base_offset == 0
        assert _produce(client, second).base_offset == 3
        # the exact same request again, twice: original offsets back, nothing appended
        assert (_produce(client, second).error_code, _produce(client, second).base_offset) == (0, 3)
        replay_first = _produce(client, first)
        assert (replay_first.error_code, replay_first.base_offset) == (0, 0)
        assert _log_end_offset(client) == 5
        # a gap: sequence 6 when 5 is expected
        gap = _produce(client, _batch(producer_id, 0, 6, 1))
        assert gap.error_code == 45
        assert _log_end_offset(client) == 5
        assert _produce(client, _batch(producer_id, 0, 5, 1)).base_offset == 5


def test_new_producer_must_start_at_zero_and_old_epochs_are_fenced(broker):
    with RawClient(broker.port) as client:
        client.call(req.create_topic("idem", 1))
        assert _produce(client, _batch(77, 0, 4, 1)).error_code == 45
        assert _produce(client, _batch(77, 1, 0, 2)).base_offset == 0
        assert _produce(client, _batch(77, 0, 2, 1)).error_code == 47
        assert _produce(client, _batch(77, 2, 0, 1)).base_offset == 2  # a newer epoch restarts at 0
        assert _log_end_offset(client) == 3


def test_only_the_last_five_batches_are_remembered(broker):
    with RawClient(broker.port) as client:
        client.call(req.create_topic("idem", 1))
        batches = [_batch(5, 0, i, 1) for i in range(7)]
        for i, batch in enumerate(batches):
            assert _produce(client, batch).base_offset == i
        for i in range(2, 7):
            assert _produce(client, batches[i]).base_offset == i
        assert _produce(client, batches[0]).error_code == 45  # too old to be recognised
        assert _log_end_offset(client) == 7


def test_producer_state_survives_restart(broker_factory):
    broker = broker_factory({"log.flush.interval.messages": "1"})
    with RawClient(broker.port) as client:
        client.call(req.create_topic("idem", 1))
        batch = _batch(9, 0, 0, 4)
        assert _produce(client, batch).base_offset == 0
        assert _produce(client, _batch(9, 0, 4, 1)).base_offset == 4
    broker.kill()  # unclean: the state must come back from the log alone
    broker.restart()
    with RawClient(broker.port) as client:
        replay = _produce(client, batch)
        assert (replay.error_code, replay.base_offset) == (0, 0)
        assert _produce(client, _batch(9, 0, 6, 1)).error_code == 45
        assert _produce(client, _batch(9, 0, 5, 1)).base_offset == 5
