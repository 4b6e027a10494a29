"""Unit tests of the group coordinator's state machine (broker.coordinator.group), with a fake clock and log."""

from __future__ import annotations

import asyncio

import pytest
from kio.schema.errors import ErrorCode

from broker.coordinator import group_records as records
from broker.coordinator.group import (
    COMPLETING_REBALANCE, EMPTY, PREPARING_REBALANCE, STABLE, GroupCoordinator, java_string_hash,
)
from broker.protocol.records import build_batch

SESSION_MS = 10_000
REBALANCE_MS = 5_000


class FakeClock:
    def __init__(self):
        self.now_ms = 1_000

    def monotonic_ms(self) -> int:
        return self.now_ms

    def monotonic_ns(self) -> int:
        return self.now_ms * 1_000_000

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)


class MemoryLog:
    """Keeps each partition's appends as v2 batches, as the real log would hold them."""

    def __init__(self):
        self.batches: dict[int, list[bytes]] = {}
        self.error = ErrorCode.none

    async def append(self, partition, entries, producer_id=-1, producer_epoch=-1, transactional=False):
        if self.error != ErrorCode.none:
            return self.error
        self.batches.setdefault(partition, []).append(build_batch(
            entries, producer_id=producer_id, producer_epoch=producer_epoch, attributes=0x10 if transactional else 0))
        return ErrorCode.none

    def marker(self, partition, producer_id, commit):
        key = (0).to_bytes(2, "big") + (1 if commit else 0).to_bytes(2, "big")
        self.batches[partition].append(build_batch([(key, b"\x00\x00\x00\x00\x00\x00")], producer_id=producer_id,
                                                   producer_epoch=0, attributes=0x30))


def make(partitions=4, delay_ms=100):
    clock, store = FakeClock(), MemoryLog()
    coordinator = GroupCoordinator(clock, store, partitions, initial_rebalance_delay_ms=delay_ms)
    for p in range(partitions):
        coordinator.load_partition(p, [])
    return clock, store, coordinator


def join(coordinator, member_id="", instance=None, protocols=(("range", b"r"),), group="g"):
    return asyncio.ensure_future(coordinator.join_group(
        group, member_id, instance, "client", "/127.0.0.1", SESSION_MS, REBALANCE_MS, "consumer", list(protocols), True))


async def join_new(coordinator, instance=None, protocols=(("range", b"r"),)):
    """Join as a new dynamic member: MEMBER_ID_REQUIRED first, then the real join (a future)."""
    if instance is not None:
        return join(coordinator, "", instance, protocols)
    first = await join(coordinator, protocols=protocols)
    assert first.error == ErrorCode.member_id_required
    return join(coordinator, first.member_id, None, protocols)


def test_partition_follows_java_string_hash_code():
    assert java_string_hash("") == 0
    assert java_string_hash("a") == 97
    assert java_string_hash("hello") == 99162322
    assert java_string_hash("polygenelubricants") == -2**31  # the classic Integer.MIN_VALUE case
    coordinator = GroupCoordinator(FakeClock(), MemoryLog(), 50)
    assert coordinator.partition_for("hello") == 99162322 % 50
    assert coordinator.partition_for("polygenelubricants") == 2**31 % 50


def test_group_of_three_forms_one_generation_with_one_leader():
    async def scenario():
        clock, store, coordinator = make()
        futures = [await join_new(coordinator) for _ in range(3)]
        await asyncio.sleep(0)
        assert not any(f.done() for f in futures)  # group.initial.rebalance.delay.ms
        clock.now_ms += 101
        coordinator.tick(clock.now_ms)
        results = await asyncio.gather(*futures)
        assert {r.error for r in results} == {ErrorCode.none}
        assert {r.generation_id for r in results} == {1}
        leaders = [r for r in results if r.member_id == r.leader]
        assert len(leaders) == 1 and len(leaders[0].members) == 3
        assert all(r.members == [] for r in results if r is not leaders[0])
        group = coordinator.groups["g"]
        assert group.state == COMPLETING_REBALANCE and group.protocol_name == "range"
        syncs = [asyncio.ensure_future(coordinator.sync_group("g", 1, r.member_id, None, {}))
                 for r in results if r is not leaders[0]]
        await asyncio.sleep(0)
        assignment = {r.member_id: r.member_id.encode() for r in results}
        leader_sync = await coordinator.sync_group("g", 1, leaders[0].member_id, None, assignment)
        assert leader_sync.assignment == leaders[0].member_id.encode()
        for sync in syncs:
            assert (await sync).error == ErrorCode.none
        assert group.state == STABLE
        assert len(store.batches[group.partition]) == 1  # the group's metadata was stored
    asyncio.run(scenario())


async def stable_group(coordinator, count=2, protocols=(("range", b"r"),)):
    futures = [await join_new(coordinator, protocols=protocols) for _ in range(count)]
    await asyncio.sleep(0)
    coordinator.clock.now_ms += 101
    coordinator.tick(coordinator.clock.now_ms)
    results = await asyncio.gather(*futures)
    leader = next(r for r in results if r.member_id == r.leader)
    others = [asyncio.ensure_future(coordinator.sync_group("g", leader.generation_id, r.member_id, None, {}))
              for r in results if r is not leader]
    await coordinator.sync_group("g", leader.generation_id, leader.member_id, None,
                                 {r.member_id: b"a-" + r.member_id.encode() for r in results})
    await asyncio.gather(*others)
    return results


@pytest.mark.parametrize("planted", [False, True])
def test_debug_double_assignment_hands_a_follower_its_old_partitions_in_the_new_generation(planted):
    async def scenario():
        clock, store, coordinator = make()
        coordinator.double_assignment = planted  # what logquake.debug.double.assignment sets
        a, b = await stable_group(coordinator)  # generation 1: each member holds "a-<its id>"
        leader, follower = (a, b) if a.member_id == a.leader else (b, a)
        newcomer = await join_new(coordinator)  # a third member: everyone rejoins
        rejoined = [join(coordinator, m.member_id) for m in (leader, follower)]
        results = await asyncio.gather(newcomer, *rejoined)
        assert {r.generation_id for r in results} == {2}
        # the follower's SyncGroup comes first, as it does: the leader is still computing the assignment
        follower_sync = asyncio.ensure_future(coordinator.sync_group("g", 2, follower.member_id, None, {}))
        await asyncio.sleep(0)
        # the leader gives the follower's old partitions to the newcomer, and the follower new ones
        old = b"a-" + follower.member_id.encode()
        await coordinator.sync_group("g", 2, leader.member_id, None, {
            leader.member_id: b"a-" + leader.member_id.encode(), follower.member_id: b"new", results[0].member_id: old})
        got = (await follower_sync).assignment
        assert coordinator.groups["g"].members[results[0].member_id].assignment == old
        assert got == (old if planted else b"new")  # planted: the follower and the newcomer both hold `old`
    asyncio.run(scenario())


def test_heartbeat_errors_and_session_expiry_rebalance():
    async def scenario():
        clock, store, coordinator = make()
        a, b = await stable_group(coordinator)
        assert coordinator.heartbeat("g", 1, a.member_id, None) == ErrorCode.none
        assert coordinator.heartbeat("g", 0, a.member_id, None) == ErrorCode.illegal_generation
        assert coordinator.heartbeat("g", 1, "nobody", None) == ErrorCode.unknown_member_id
        clock.now_ms += SESSION_MS - 1
        coordinator.heartbeat("g", 1, a.member_id, None)
        clock.now_ms += 2
        coordinator.tick(clock.now_ms)  # b's session expired, a's did not
        group = coordinator.groups["g"]
        assert set(group.members) == {a.member_id} and group.state == PREPARING_REBALANCE
        assert coordinator.heartbeat("g", 1, a.member_id, None) == ErrorCode.rebalance_in_progress
        rejoin = await join(coordinator, a.member_id)
        assert rejoin.error == ErrorCode.none and rejoin.generation_id == 2 and rejoin.leader == a.member_id
    asyncio.run(scenario())


def test_rebalance_timeout_removes_members_that_do_not_rejoin():
    async def scenario():
        clock, store, coordinator = make()
        a, b = await stable_group(coordinator)
        newcomer = await join_new(coordinator)
        rejoin_a = join(coordinator, a.member_id)
        await asyncio.sleep(0)
        assert not newcomer.done()  # b has not rejoined yet
        clock.now_ms += REBALANCE_MS + 1
        coordinator.tick(clock.now_ms)
        first, second = await newcomer, await rejoin_a
        assert first.generation_id == second.generation_id == 2
        assert b.member_id not in coordinator.groups["g"].members
        assert coordinator.heartbeat("g", 2, b.member_id, None) == ErrorCode.unknown_member_id
    asyncio.run(scenario())


def test_leave_group_triggers_rebalance_and_empty_group():
    async def scenario():
        clock, store, coordinator = make()
        a, b = await stable_group(coordinator)
        error, results = coordinator.leave_group("g", [(b.member_id, None), ("ghost", None)])
        assert error == ErrorCode.none and results == [ErrorCode.none, ErrorCode.unknown_member_id]
        assert (await join(coordinator, a.member_id)).generation_id == 2
        coordinator.leave_group("g", [(a.member_id, None)])
        assert coordinator.groups["g"].state == EMPTY
    asyncio.run(scenario())


def test_commit_from_old_generation_is_refused_and_changes_nothing():
    async def scenario():
        clock, store, coordinator = make()
        a, b = await stable_group(coordinator)
        ok = await coordinator.commit_offsets("g", 1, a.member_id, None, {("t", 0): (5, 0, "m")})
        assert ok == {("t", 0): ErrorCode.none}
        coordinator.leave_group("g", [(b.member_id, None)])
        await join(coordinator, a.member_id)  # generation 2
        stored = len(store.batches[coordinator.partition_for("g")])
        stale = await coordinator.commit_offsets("g", 1, a.member_id, None, {("t", 0): (9, 0, None)})
        assert stale == {("t", 0): ErrorCode.illegal_generation}
        assert len(store.batches[coordinator.partition_for("g")]) == stored
        assert coordinator.fetch_offsets("g", [("t", 0)])[1][("t", 0)][0] == 5
        unknown = await coordinator.commit_offsets("g", 2, "ghost", None, {("t", 0): (9, 0, None)})
        assert unknown == {("t", 0): ErrorCode.unknown_member_id}
    asyncio.run(scenario())


def test_offsets_and_group_survive_a_new_coordinator_replaying_the_log():
    async def scenario():
        clock, store, coordinator = make()
        a, b = await stable_group(coordinator)
        await coordinator.commit_offsets("g", 1, a.member_id, None, {("t", 0): (5, 0, None), ("t", 1): (7, 0, "x")})
        await coordinator.commit_offsets("g", 1, b.member_id, None, {("t", 0): (6, 0, None)})
        partition = coordinator.partition_for("g")
        successor = GroupCoordinator(clock, store, 4)
        assert successor.check_group("g") == ErrorCode.not_coordinator
        successor.load_partition(partition, store.batches[partition])
        error, offsets = successor.fetch_offsets("g", None)
        assert error == ErrorCode.none
        assert offsets == {("t", 0): (6, 0, None, ErrorCode.none), ("t", 1): (7, 0, "x", ErrorCode.none)}
        group = successor.groups["g"]
        assert group.state == STABLE and group.generation_id == 1 and set(group.members) == {a.member_id, b.member_id}
        assert successor.heartbeat("g", 1, a.member_id, None) == ErrorCode.none
        sync = await successor.sync_group("g", 1, b.member_id, None, {})
        assert sync.assignment == b"a-" + b.member_id.encode()
    asyncio.run(scenario())


def test_failed_append_is_not_applied():
    async def scenario():
        clock, store, coordinator = make()
        store.error = ErrorCode.not_leader_or_follower
        result = await coordinator.commit_offsets("g", -1, "", None, {("t", 0): (5, 0, None)})
        assert result == {("t", 0): ErrorCode.not_leader_or_follower}
        assert coordinator.fetch_offsets("g", [("t", 0)])[1][("t", 0)][0] == -1
    asyncio.run(scenario())


def test_static_member_rejoin_keeps_assignment_and_fences_old_instance():
    async def scenario():
        clock, store, coordinator = make()
        first = join(coordinator, "", "instance-1")
        await asyncio.sleep(0)
        clock.now_ms += 101
        coordinator.tick(clock.now_ms)
        result = await first
        await coordinator.sync_group("g", result.generation_id, result.member_id, "instance-1", {result.member_id: b"p0"})
        restarted = await join(coordinator, "", "instance-1")
        assert restarted.error == ErrorCode.none and restarted.member_id != result.member_id
        assert restarted.generation_id == result.generation_id  # no rebalance
        sync = await coordinator.sync_group("g", restarted.generation_id, restarted.member_id, "instance-1", {})
        assert sync.assignment == b"p0"
        assert coordinator.heartbeat("g", 1, result.member_id, "instance-1") == ErrorCode.fenced_instance_id
    asyncio.run(scenario())


def test_protocol_selection_and_inconsistent_protocols():
    async def scenario():
        clock, store, coordinator = make()
        results = await stable_group(coordinator, protocols=(("cooperative-sticky", b"c"), ("range", b"r")))
        assert coordinator.groups["g"].protocol_name == "cooperative-sticky"
        bad = await join(coordinator, "", None, (("roundrobin", b""),))
        assert bad.error == ErrorCode.inconsistent_group_protocol
        assert len(results) == 2
    asyncio.run(scenario())


def test_initial_rebalance_delay_waits_for_more_members():
    async def scenario():
        clock, store, coordinator = make(delay_ms=3_000)
        first = await join_new(coordinator)
        await asyncio.sleep(0)
        assert not first.done()
        second = await join_new(coordinator)
        clock.now_ms += 3_001
        coordinator.tick(clock.now_ms)
        a, b = await first, await second
        assert a.generation_id == b.generation_id == 1
    asyncio.run(scenario())


def test_txn_offsets_pending_until_commit_marker_and_replayed():
    async def scenario():
        clock, store, coordinator = make()
        partition = coordinator.partition_for("g")
        result = await coordinator.prepare_txn_offsets("g", 42, 0, -1, "", None, {("t", 0): (10, 0, None)})
        assert result == {("t", 0): ErrorCode.none}
        assert coordinator.fetch_offsets("g", [("t", 0)], require_stable=True)[1][("t", 0)] == (
            -1, -1, "", ErrorCode.unstable_offset_commit)
        await coordinator.prepare_txn_offsets("g", 43, 0, -1, "", None, {("t", 1): (20, 0, None)})
        coordinator.complete_txn(42, True, partition)
        coordinator.complete_txn(43, False, partition)
        store.marker(partition, 42, True)
        store.marker(partition, 43, False)
        _, offsets = coordinator.fetch_offsets("g", [("t", 0), ("t", 1)])
        assert offsets[("t", 0)][0] == 10 and offsets[("t", 1)][0] == -1
        successor = GroupCoordinator(clock, store, 4)
        successor.load_partition(partition, store.batches[partition])
        _, replayed = successor.fetch_offsets("g", [("t", 0), ("t", 1)])
        assert replayed[("t", 0)][0] == 10 and replayed[("t", 1)][0] == -1
    asyncio.run(scenario())


def test_delete_group_only_when_empty_and_tombstones_replay():
    async def scenario():
        clock, store, coordinator = make()
        a, b = await stable_group(coordinator)
        await coordinator.commit_offsets("g", 1, a.member_id, None, {("t", 0): (5, 0, None)})
        assert await coordinator.delete_group("g") == ErrorCode.non_empty_group
        coordinator.leave_group("g", [(a.member_id, None), (b.member_id, None)])
        assert await coordinator.delete_group("g") == ErrorCode.none
        assert await coordinator.delete_group("g") == ErrorCode.group_id_not_found
        partition = coordinator.partition_for("g")
        successor = GroupCoordinator(clock, store, 4)
        successor.load_partition(partition, store.batches[partition])
        assert "g" not in successor.groups or not successor.groups["g"].offsets
    asyncio.run(scenario())


def test_bad_input_errors():
    async def scenario():
        clock, store, coordinator = make()
        assert (await join(coordinator, group="")).error == ErrorCode.invalid_group_id
        assert (await join(coordinator, member_id="made-up")).error == ErrorCode.unknown_member_id
        too_short = await coordinator.join_group("g", "", None, "c", "h", 10, REBALANCE_MS, "consumer", [("r", b"")], True)
        assert too_short.error == ErrorCode.invalid_session_timeout
        with pytest.raises(ValueError, match="offsets.topic.num.partitions=0"):
            GroupCoordinator(clock, store, 0)
        with pytest.raises(ValueError, match="b'O'"):
            records.decode_key(b"Zxx")
    asyncio.run(scenario())


def test_replayed_members_that_never_return_expire_during_a_rebalance():
    async def scenario():
        clock, store, coordinator = make()
        await stable_group(coordinator)
        partition = coordinator.partition_for("g")
        successor = GroupCoordinator(clock, store, 4, initial_rebalance_delay_ms=0)
        successor.load_partition(partition, store.batches[partition])
        newcomer = await join_new(successor)
        await asyncio.sleep(0)
        assert not newcomer.done()  # waits for the two replayed members
        clock.now_ms += SESSION_MS + 1
        successor.tick(clock.now_ms)
        result = await newcomer
        assert result.error == ErrorCode.none and result.generation_id == 2
        assert list(successor.groups["g"].members) == [result.member_id]
    asyncio.run(scenario())


def test_group_that_became_empty_is_stored_empty():
    async def scenario():
        clock, store, coordinator = make()
        a, b = await stable_group(coordinator)
        coordinator.leave_group("g", [(a.member_id, None), (b.member_id, None)])
        await asyncio.sleep(0)
        partition = coordinator.partition_for("g")
        successor = GroupCoordinator(clock, store, 4)
        successor.load_partition(partition, store.batches[partition])
        assert successor.groups["g"].state == EMPTY and not successor.groups["g"].members
    asyncio.run(scenario())


def test_static_member_rejoining_during_a_rebalance_takes_part_in_it():
    async def scenario():
        clock, store, coordinator = make()
        static = join(coordinator, "", "instance-1")
        await asyncio.sleep(0)
        clock.now_ms += 101
        coordinator.tick(clock.now_ms)
        first = await static
        await coordinator.sync_group("g", 1, first.member_id, "instance-1", {first.member_id: b"p0"})
        newcomer = await join_new(coordinator)  # PreparingRebalance, waiting for instance-1
        restarted = join(coordinator, "", "instance-1")
        a, b = await newcomer, await restarted
        assert a.error == b.error == ErrorCode.none and a.generation_id == b.generation_id == 2
        assert b.member_id != first.member_id and set(coordinator.groups["g"].members) == {a.member_id, b.member_id}
        assert coordinator.heartbeat("g", 2, first.member_id, "instance-1") == ErrorCode.fenced_instance_id
    asyncio.run(scenario())


def test_debug_commit_before_replication_answers_and_serves_a_commit_the_log_refused():
    async def scenario(planted):
        _, store, coordinator = make()
        coordinator.commit_before_replication = planted  # what logquake.debug.commit.before.replication sets
        store.error = ErrorCode.not_enough_replicas  # the record cannot pass the high watermark
        answer = await coordinator.commit_offsets("simple", -1, "", None, {("t", 0): (5, 0, None)})
        await asyncio.sleep(0)
        _, fetched = coordinator.fetch_offsets("simple", [("t", 0)])
        return answer[("t", 0)], fetched[("t", 0)][0]

    assert asyncio.run(scenario(False)) == (ErrorCode.not_enough_replicas, -1)
    assert asyncio.run(scenario(True)) == (ErrorCode.none, 5)


def test_member_ids_come_from_the_coordinators_randomness():
    # a seeded runtime gives the same member ids in the same order (the simulation of issue 21 needs it)
    import random

    ids = []
    for _ in range(2):
        coordinator = GroupCoordinator(FakeClock(), MemoryLog(), 50, initial_rebalance_delay_ms=0, rng=random.Random(7))
        ids.append([coordinator._uuid() for _ in range(3)])
    assert ids[0] == ids[1] and len(set(ids[0])) == 3 and all(u.version == 4 for u in ids[0])
