"""Incremental fetch sessions between followers and leaders (KIP-227).

Unit tests of the leader's session cache, then real nodes (the in-process
cluster of test_replication_cluster): followers hold sessions, incremental
fetches carry only what changed, a leader that forgets its sessions costs one
round, and consumers are never given a session.
"""

from __future__ import annotations

import dataclasses
import random
from types import SimpleNamespace

from kio.schema.errors import ErrorCode

from broker.protocol.fetch import MAX_SESSION_EPOCH, next_session_epoch
from broker.server.fetch_sessions import MAX_SESSIONS, FetchSessionCache
from tests.broker import kafka_requests as kr
from tests.broker.test_replication_cluster import TOPIC, run, running_cluster, wait_until


def _request(session_id, epoch, partitions=(), forgotten=(), topic="t"):
    parts = tuple(SimpleNamespace(partition=p, fetch_offset=o, current_leader_epoch=0, partition_max_bytes=1 << 20)
                  for p, o in partitions)
    topics = (SimpleNamespace(topic=topic, partitions=parts),) if parts else ()
    forgotten_topics = (SimpleNamespace(topic=topic, partitions=tuple(forgotten)),) if forgotten else ()
    return SimpleNamespace(session_id=session_id, session_epoch=epoch, topics=topics, forgotten_topics_data=forgotten_topics)


def _by_name(fetch_topic):
    return fetch_topic.topic


def test_a_follower_gets_a_session_that_tracks_its_partitions_and_epochs():
    cache = FetchSessionCache(random.Random(1))
    session, full, error = cache.resolve(_request(0, 0, [(0, 5), (1, 7)]), 2, _by_name)
    assert (full, error) == (True, 0) and session.session_id > 0 and session.epoch == 1
    assert {k: p.fetch_offset for k, p in session.partitions.items()} == {("t", 0): 5, ("t", 1): 7}

    again, full, error = cache.resolve(_request(session.session_id, 1, [(1, 9), (2, 0)], forgotten=[0]), 2, _by_name)
    assert again is session and (full, error) == (False, 0) and session.epoch == 2
    assert {k: p.fetch_offset for k, p in session.partitions.items()} == {("t", 1): 9, ("t", 2): 0}

    # a replayed or skipped epoch, another replica's id, an unknown id: the follower must start over
    assert cache.resolve(_request(session.session_id, 1), 2, _by_name)[2] == ErrorCode.invalid_fetch_session_epoch.value
    assert cache.resolve(_request(session.session_id, 2), 3, _by_name)[2] == ErrorCode.fetch_session_id_not_found.value
    assert cache.resolve(_request(session.session_id + 1, 2), 2, _by_name)[2] == ErrorCode.fetch_session_id_not_found.value
    # epoch -1 closes the session; the request itself is served without one
    assert cache.resolve(_request(session.session_id, -1), 2, _by_name) == (None, True, 0)
    assert len(cache) == 0


def test_the_session_epoch_wraps_to_one():
    assert [next_session_epoch(e) for e in (0, 1, 41, MAX_SESSION_EPOCH - 1, MAX_SESSION_EPOCH)] == [
        1, 2, 42, MAX_SESSION_EPOCH, 1]
    cache = FetchSessionCache(random.Random(4))
    session = cache.resolve(_request(0, 0, [(0, 0)]), 2, _by_name)[0]
    session.epoch = MAX_SESSION_EPOCH
    assert cache.resolve(_request(session.session_id, MAX_SESSION_EPOCH), 2, _by_name)[2] == 0
    assert session.epoch == 1


def test_consumers_get_no_session_and_a_replica_holds_one_at_most():
    cache = FetchSessionCache(random.Random(2))
    assert cache.resolve(_request(0, 0, [(0, 0)]), -1, _by_name) == (None, True, 0)
    assert cache.resolve(_request(0, -1, [(0, 0)]), 2, _by_name) == (None, True, 0)
    first = cache.resolve(_request(0, 0, [(0, 0)]), 2, _by_name)[0]
    second = cache.resolve(_request(0, 0, [(0, 0)]), 2, _by_name)[0]
    assert first.session_id != second.session_id and len(cache) == 1
    assert cache.resolve(_request(first.session_id, 1), 2, _by_name)[2] == ErrorCode.fetch_session_id_not_found.value
    for replica_id in range(3, 3 + MAX_SESSIONS + 5):
        cache.resolve(_request(0, 0, [(0, 0)]), replica_id, _by_name)
    assert len(cache) == MAX_SESSIONS


def test_followers_replicate_through_sessions_and_recover_when_the_leader_forgets_them(tmp_path):
    async def scenario():
        async with running_cluster(tmp_path) as (nodes, client):
            assert (await client.produce(nodes[1], [b"a", b"b"]))[0] == ErrorCode.none
            await wait_until(lambda: all(n.manager.hosted(TOPIC, 0).high_watermark == 2 for n in nodes.values()),
                             what="every replica at HW 2")
            sessions = nodes[1].handlers.fetch_apis.fetch_sessions
            assert len(sessions) == 2
            for follower in (2, 3):
                fetcher = nodes[follower].manager.fetchers.fetchers[1]
                assert fetcher.session.session_id != 0 and fetcher.session.sent[(TOPIC, 0)][0] == 2

            # the leader forgets every session (as after a restart): one failed round, then new sessions
            nodes[1].handlers.fetch_apis.fetch_sessions = FetchSessionCache(random.Random(3))
            for i in range(5):
                assert (await client.produce(nodes[1], [b"c%d" % i]))[0] == ErrorCode.none
            await wait_until(lambda: all(n.manager.hosted(TOPIC, 0).high_watermark == 7 for n in nodes.values()),
                             what="every replica at HW 7")
            assert nodes[1].batches() == nodes[2].batches() == nodes[3].batches()
            assert len(nodes[1].handlers.fetch_apis.fetch_sessions) == 2

            # an incremental fetch with nothing new is answered with no partition at all
            fetcher = nodes[2].manager.fetchers.fetchers[1]
            leader_session = next(s for s in nodes[1].handlers.fetch_apis.fetch_sessions._sessions.values() if s.replica_id == 2)
            await wait_until(lambda: fetcher.session.session_id == leader_session.session_id, what="session settled")
            probe = kr.fetch(TOPIC, 0, 0, version=12)
            probe = dataclasses.replace(probe, replica_id=99, session_id=0, session_epoch=0)
            response = await client.send(nodes[1], probe)
            assert response.session_id != 0 and [t.topic for t in response.responses] == [TOPIC]
            empty = dataclasses.replace(probe, session_id=response.session_id, session_epoch=1, topics=(),
                                        max_wait=__import__("datetime").timedelta(milliseconds=0))
            response = await client.send(nodes[1], empty)
            assert response.error_code == ErrorCode.none
            # replica 99 is not a follower of the partition; its fetch offset 0 is behind the log, so it gets data
            assert [p.partition_index for t in response.responses for p in t.partitions] == [0]

            # a consumer asking for a session is served without one
            consumer = dataclasses.replace(kr.fetch(TOPIC, 0, 0, version=12), session_epoch=0)
            response = await client.send(nodes[1], consumer)
            assert response.session_id == 0 and response.responses[0].partitions[0].high_watermark == 7

    run(scenario())


def test_an_incremental_fetch_answers_only_what_changed(tmp_path):
    async def scenario():
        async with running_cluster(tmp_path) as (nodes, client):
            assert (await client.produce(nodes[1], [b"a"]))[0] == ErrorCode.none
            await wait_until(lambda: nodes[1].manager.hosted(TOPIC, 0).high_watermark == 1, what="HW 1")
            # a session at the log end, told the current HW: the next fetch has nothing to say
            zero = __import__("datetime").timedelta(milliseconds=0)
            start = dataclasses.replace(kr.fetch(TOPIC, 0, 1, version=12), replica_id=99, session_epoch=0, max_wait=zero)
            first = await client.send(nodes[1], start)
            assert first.responses[0].partitions[0].high_watermark == 1
            quiet = dataclasses.replace(start, session_id=first.session_id, session_epoch=1, topics=())
            assert (await client.send(nodes[1], quiet)).responses == ()
            # new records: the partition is answered again, with them
            assert (await client.produce(nodes[1], [b"b"]))[0] == ErrorCode.none
            after = await client.send(nodes[1], dataclasses.replace(quiet, session_epoch=2))
            parts = [p for t in after.responses for p in t.partitions]
            assert [p.partition_index for p in parts] == [0] and parts[0].records

    run(scenario())
