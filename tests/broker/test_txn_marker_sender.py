"""How transaction markers travel: `PoolMarkerSender` batches concurrent transactions per broker, and the
WriteTxnMarkers handler writes the markers of one request together.

The sender runs against a stub metadata image and a fake connection pool that
decodes each WriteTxnMarkers request, holds it until the test lets it go, and
answers NONE for every partition; the handler runs on a stub whose
`write_marker` waits until the test releases it.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from kio.schema.errors import ErrorCode

from broker.coordinator.txn_handlers import PoolMarkerSender, TxnApis
from broker.coordinator.txn_state import MarkerJob
from broker.protocol import apis

VERSION = 1
NODE = 1
LEADERS = {("a", 0): 2, ("a", 1): 2, ("b", 0): 2, ("a", 2): 3, ("a", 3): NODE}


class FakePool:
    """Records each WriteTxnMarkers request as [(producer id, [(topic, partition)])]; holds it until released."""

    def __init__(self):
        self.requests: list[tuple[int, list[tuple[int, list[tuple[str, int]]]]]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.closed = False

    async def request(self, host, port, api_key, api_version, body, timeout_s):
        assert api_key == apis.WRITE_TXN_MARKERS
        request = apis.decode_request(api_key, api_version, body, 0)
        markers = [(m.producer_id, [(t.name, p) for t in m.topics for p in t.partition_indexes]) for m in request.markers]
        self.requests.append((port, markers))
        await self.gate.wait()
        module = apis.response_module(api_key, api_version)
        build = apis.build_entity
        return apis.encode_entity(build(module, "WriteTxnMarkersResponse", markers=tuple(
            build(module, "WritableTxnMarkerResult", producer_id=m.producer_id, topics=tuple(
                build(module, "WritableTxnMarkerTopicResult", name=t.name, partitions=tuple(
                    build(module, "WritableTxnMarkerPartitionResult", partition_index=p, error_code=ErrorCode.none)
                    for p in t.partition_indexes))
                for t in m.topics))
            for m in reversed(request.markers))))  # matched by producer id, not by position

    async def close_all(self):
        self.closed = True


def sender() -> tuple[PoolMarkerSender, FakePool, list]:
    topics = {}
    for (topic, partition), leader in LEADERS.items():
        topics.setdefault(topic, SimpleNamespace(partitions={})).partitions[partition] = SimpleNamespace(leader=leader)
    brokers = {n: SimpleNamespace(host="127.0.0.1", port=9000 + n) for n in (1, 2, 3)}
    local = []

    async def write_marker(topic, partition, producer_id, producer_epoch, commit, coordinator_epoch):
        local.append((producer_id, (topic, partition)))
        return ErrorCode.none

    handlers = SimpleNamespace(replica_manager=SimpleNamespace(image=SimpleNamespace(topics=topics, brokers=brokers)),
                               config=SimpleNamespace(node_id=NODE))
    marker_sender = PoolMarkerSender(SimpleNamespace(handlers=handlers, write_marker=write_marker))
    pool = FakePool()
    marker_sender.pool = pool
    return marker_sender, pool, local


def job(producer_id: int, *partitions) -> MarkerJob:
    return MarkerJob(f"t{producer_id}", producer_id, 0, True, tuple(partitions))


async def _settle():
    for _ in range(5):
        await asyncio.sleep(0)


def test_one_transaction_sends_one_request_per_remote_broker_and_writes_local_partitions_directly():
    async def scenario():
        s, pool, local = sender()
        results = await s.write_markers(job(10, ("a", 0), ("a", 1), ("b", 0), ("a", 2), ("a", 3)), 5)
        assert set(results.values()) == {ErrorCode.none} and len(results) == 5
        assert sorted(pool.requests) == [(9002, [(10, [("a", 0), ("a", 1), ("b", 0)])]), (9003, [(10, [("a", 2)])])]
        assert local == [(10, ("a", 3))]
        await s.close()

    asyncio.run(scenario())


def test_transactions_queued_behind_a_request_in_flight_share_the_next_request():
    async def scenario():
        s, pool, _ = sender()
        pool.gate.clear()
        first = asyncio.ensure_future(s.write_markers(job(1, ("a", 0)), 5))
        await _settle()
        later = [asyncio.ensure_future(s.write_markers(job(p, ("a", 1), ("b", 0)), 5)) for p in (2, 3, 4)]
        await _settle()
        assert pool.requests == [(9002, [(1, [("a", 0)])])]  # one in flight per broker; the others wait
        pool.gate.set()
        answers = await asyncio.gather(first, *later)
        assert pool.requests[1] == (9002, [(p, [("a", 1), ("b", 0)]) for p in (2, 3, 4)])
        assert len(pool.requests) == 2
        assert all(set(a.values()) == {ErrorCode.none} for a in answers)
        assert answers[1] == {("a", 1): ErrorCode.none, ("b", 0): ErrorCode.none}
        assert not s._drains and not s._queues  # nothing left behind once the queue is empty
        await s.close()

    asyncio.run(scenario())


def test_two_markers_of_one_producer_never_share_a_request_and_a_cancelled_one_is_not_sent():
    async def scenario():
        s, pool, _ = sender()
        pool.gate.clear()
        first = asyncio.ensure_future(s.write_markers(job(1, ("a", 0)), 5))
        await _settle()
        again = asyncio.ensure_future(s.write_markers(job(7, ("a", 0)), 5))
        same = asyncio.ensure_future(s.write_markers(MarkerJob("x", 7, 1, False, (("a", 1),)), 5))
        gone = asyncio.ensure_future(s.write_markers(job(8, ("b", 0)), 5))
        await _settle()
        gone.cancel()  # its marker task was cancelled (the coordinator resigned) before the request left
        await _settle()
        pool.gate.set()
        await asyncio.gather(first, again, same)
        assert [markers for _, markers in pool.requests] == [[(1, [("a", 0)])], [(7, [("a", 0)])], [(7, [("a", 1)])]]
        await s.close()

    asyncio.run(scenario())


def test_close_stops_the_drains_cancels_the_markers_still_waiting_and_closes_the_pool():
    async def scenario():
        s, pool, _ = sender()
        pool.gate.clear()  # the first request never answers
        waiting = [asyncio.ensure_future(s.write_markers(job(p, ("a", 0)), 5)) for p in (1, 2)]
        await _settle()
        assert len(pool.requests) == 1 and s._drains
        await s.close()
        await asyncio.gather(*waiting, return_exceptions=True)
        assert pool.closed and not s._drains and not s._queues
        assert all(w.cancelled() for w in waiting)  # nobody is left waiting for an answer that cannot come

    asyncio.run(scenario())


def test_a_failed_request_answers_every_transaction_it_carried_with_an_error():
    async def scenario():
        s, pool, _ = sender()

        async def refuse(*args):
            raise OSError("connection reset")  # not a ClientError: the drain task must still answer

        pool.request = refuse
        results = await asyncio.gather(s.write_markers(job(1, ("a", 0)), 5), s.write_markers(job(2, ("a", 1)), 5))
        assert results == [{("a", 0): ErrorCode.unknown_server_error}, {("a", 1): ErrorCode.unknown_server_error}]
        assert not s._drains
        await s.close()

    asyncio.run(scenario())


def test_the_handler_appends_every_marker_of_a_request_before_waiting_for_any():
    async def scenario():
        appended = []
        release = asyncio.Event()

        async def write_marker(topic, partition, producer_id, producer_epoch, commit, coordinator_epoch):
            appended.append((producer_id, topic, partition))
            await release.wait()  # replication
            return ErrorCode.none if producer_id == 1 else ErrorCode.invalid_producer_epoch

        w = apis.request_class(apis.WRITE_TXN_MARKERS, VERSION)
        module = __import__(w.__module__, fromlist=["WritableTxnMarker"])
        request = module.WriteTxnMarkersRequest(markers=tuple(
            module.WritableTxnMarker(producer_id=pid, producer_epoch=0, transaction_result=True, coordinator_epoch=5,
                                     topics=(module.WritableTxnMarkerTopic(name="a", partition_indexes=(0, 1)),))
            for pid in (1, 2)))
        stub = SimpleNamespace(write_marker=write_marker)
        task = asyncio.ensure_future(TxnApis.write_txn_markers(stub, SimpleNamespace(api_version=VERSION), request))
        await _settle()
        assert appended == [(1, "a", 0), (1, "a", 1), (2, "a", 0), (2, "a", 1)]
        release.set()
        response = await task
        got = {(m.producer_id, p.partition_index): ErrorCode(p.error_code)
               for m in response.markers for t in m.topics for p in t.partitions}
        assert got == {(1, 0): ErrorCode.none, (1, 1): ErrorCode.none,
                       (2, 0): ErrorCode.invalid_producer_epoch, (2, 1): ErrorCode.invalid_producer_epoch}

    asyncio.run(scenario())
