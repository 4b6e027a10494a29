"""The group coordinator: consumer groups of the classic rebalance protocol.

One `GroupCoordinator` per node serves the groups whose partition of
`__consumer_offsets` this node leads (partition = abs(Java String.hashCode(group_id))
% offsets.topic.num.partitions, Kafka's rule). Group metadata and committed
offsets are appended to that partition (see `group_records`) through a
`GroupLog`, which answers only after the record passed the high watermark
(acks=all), so they survive a leader failover; a new leader replays the
partition (`load_partition`) and serves its groups from there.

State machine (Kafka's GroupMetadata): Empty -> PreparingRebalance (a member
joins, leaves or expires) -> CompletingRebalance (every known member rejoined,
or the rebalance timeout removed the laggards; the generation id is bumped, a
protocol every member supports is chosen by vote, the leader gets the member
list) -> Stable (the leader's SyncGroup carried the assignment) ->
PreparingRebalance ...; Dead once deleted or unloaded. JoinGroup v4+ without a
member id answers MEMBER_ID_REQUIRED with a fresh id (KIP-394). Static members
(`group.instance.id`, KIP-345) keep their assignment across restarts: a rejoin
under the same instance id replaces the old member id, and the old one gets
FENCED_INSTANCE_ID. Sessions expire through `tick(now_ms)` (runtime.clock, driven
by `run`): a member not heard of within its session timeout is removed.

OffsetCommit from a member of another generation gets ILLEGAL_GENERATION and
changes nothing; generation -1 with an empty member id is the "simple"
(assign-based) consumer, accepted only while the group has no members.
TxnOffsetCommit offsets (`prepare_txn_offsets`) stay pending until
`complete_txn` (called for the COMMIT/ABORT marker) commits or drops them.
`commit_before_replication` plants a bug (logquake.debug.commit.before.replication):
OffsetCommit is answered, and served by OffsetFetch, before its append is done.
`aborted_offsets_visible` plants one (logquake.debug.aborted.offsets.visible): an ABORT
marker commits a transaction's pending offsets as a COMMIT would. `unfenced_txn_offsets`
plants one (logquake.debug.unfenced.txn.offsets): TxnOffsetCommit skips KIP-447's member
and generation check, so a zombie processor commits offsets of partitions it lost.
`double_assignment` plants one (logquake.debug.double.assignment): a rebalance keeps each
member's assignment and answers a follower's SyncGroup with it at once, so a follower whose
partitions the leader gave to another member keeps consuming them (two owners in one generation).

Thread-safety: none; everything runs on the broker's event loop.
Sources: Kafka's GroupCoordinator/GroupMetadata (classic protocol), KIP-345,
KIP-394, KIP-98 (TxnOffsetCommit).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import random
import uuid
from typing import Protocol

from kio.schema.errors import ErrorCode

from broker.coordinator import group_records as records

log = logging.getLogger("broker.coordinator.group")

EMPTY = "Empty"
PREPARING_REBALANCE = "PreparingRebalance"
COMPLETING_REBALANCE = "CompletingRebalance"
STABLE = "Stable"
DEAD = "Dead"

TICK_S = 0.1


def java_string_hash(text: str) -> int:
    """Java's String.hashCode over UTF-16 code units, as a signed 32-bit int."""
    h = 0
    data = text.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + ((data[i] << 8) | data[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


class GroupLog(Protocol):
    async def append(self, partition: int, entries: list[tuple[bytes, bytes | None]], producer_id: int = -1,
                     producer_epoch: int = -1, transactional: bool = False) -> ErrorCode:
        """Append to `__consumer_offsets`-`partition`; answer once the HW passed it (or the error)."""
        ...


@dataclasses.dataclass(slots=True)
class Member:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocol_type: str
    protocols: list[tuple[str, bytes]]
    assignment: bytes = b""
    last_heard_ms: int = 0
    join_future: asyncio.Future | None = None
    sync_future: asyncio.Future | None = None

    def metadata_for(self, protocol: str) -> bytes:
        for name, metadata in self.protocols:
            if name == protocol:
                return metadata
        return b""


@dataclasses.dataclass(slots=True)
class JoinResult:
    error: ErrorCode
    generation_id: int = -1
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader: str = ""
    member_id: str = ""
    members: list[tuple[str, str | None, bytes]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(slots=True)
class SyncResult:
    error: ErrorCode
    protocol_type: str | None = None
    protocol_name: str | None = None
    assignment: bytes = b""


class Group:
    def __init__(self, group_id: str, partition: int):
        self.group_id = group_id
        self.partition = partition
        self.state = EMPTY
        self.generation_id = 0
        self.protocol_type: str | None = None
        self.protocol_name: str | None = None
        self.leader_id: str | None = None
        self.members: dict[str, Member] = {}
        self.static_members: dict[str, str] = {}  # group.instance.id -> member id
        self.pending_members: set[str] = set()  # ids handed out with MEMBER_ID_REQUIRED
        self.rebalance_deadline_ms = 0
        self.initial_delay_until_ms = 0
        # committed offsets: (topic, partition) -> (offset, leader_epoch, metadata)
        self.offsets: dict[tuple[str, int], tuple[int, int, str | None]] = {}
        # producer id -> pending transactional offsets
        self.pending_txn_offsets: dict[int, dict[tuple[str, int], tuple[int, int, str | None]]] = {}

    def __repr__(self) -> str:
        return f"Group({self.group_id!r}, {self.state}, generation {self.generation_id}, members {sorted(self.members)})"

    def to_record(self) -> dict:
        return {
            "protocol_type": self.protocol_type, "generation": self.generation_id, "protocol": self.protocol_name,
            "leader": self.leader_id,
            "members": [{
                "member_id": m.member_id, "group_instance_id": m.group_instance_id, "client_id": m.client_id,
                "client_host": m.client_host, "session_timeout_ms": m.session_timeout_ms,
                "rebalance_timeout_ms": m.rebalance_timeout_ms,
                "subscription": base64.b64encode(m.metadata_for(self.protocol_name or "")).decode(),
                "assignment": base64.b64encode(m.assignment).decode(),
            } for m in self.members.values()],
        }

    def restore(self, value: dict, now_ms: int) -> None:
        self.protocol_type = value["protocol_type"]
        self.generation_id = int(value["generation"])
        self.protocol_name = value["protocol"]
        self.leader_id = value["leader"]
        self.members.clear()
        self.static_members.clear()
        for m in value["members"]:
            member = Member(m["member_id"], m["group_instance_id"], m["client_id"], m["client_host"],
                            int(m["session_timeout_ms"]), int(m["rebalance_timeout_ms"]), self.protocol_type or "",
                            [(self.protocol_name or "", base64.b64decode(m["subscription"]))],
                            base64.b64decode(m["assignment"]), now_ms)
            self.members[member.member_id] = member
            if member.group_instance_id is not None:
                self.static_members[member.group_instance_id] = member.member_id
        self.state = STABLE if self.members else EMPTY


class GroupCoordinator:
    def __init__(self, clock, group_log: GroupLog, num_partitions: int, initial_rebalance_delay_ms: int = 3000,
                 min_session_timeout_ms: int = 6000, max_session_timeout_ms: int = 1_800_000,
                 commit_before_replication: bool = False, rng: random.Random | None = None):
        if num_partitions < 1:
            raise ValueError(f"offsets.topic.num.partitions={num_partitions} is invalid; expected >= 1")
        self.clock = clock
        # member ids: the runtime's randomness, so seeded runs repeat (a fixed seed where none is given: tests)
        self.rng = rng if rng is not None else random.Random(0)
        self.group_log = group_log
        self.num_partitions = num_partitions
        self.initial_rebalance_delay_ms = initial_rebalance_delay_ms
        self.min_session_timeout_ms = min_session_timeout_ms
        self.max_session_timeout_ms = max_session_timeout_ms
        self.commit_before_replication = commit_before_replication  # a planted bug, see commit_offsets
        self.aborted_offsets_visible = False  # a planted bug, see complete_txn
        self.unfenced_txn_offsets = False  # a planted bug, see prepare_txn_offsets
        self.double_assignment = False  # a planted bug, see sync_group
        self.groups: dict[str, Group] = {}
        self.owned: set[int] = set()
        self._task: asyncio.Task | None = None
        self._background: set[asyncio.Task] = set()

    # ---- placement and ownership ------------------------------------------------------

    def _uuid(self) -> uuid.UUID:
        """A random (version 4) UUID drawn from the coordinator's randomness, as Kafka's member ids end in one."""
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)

    def partition_for(self, group_id: str) -> int:
        return abs(java_string_hash(group_id)) % self.num_partitions

    def owns(self, group_id: str) -> bool:
        return self.partition_for(group_id) in self.owned

    def load_partition(self, partition: int, batches) -> None:
        """Rebuild the groups of `partition` from its log (an iterable of whole-batch byte chunks)."""
        now_ms = self.clock.monotonic_ms()
        for group in [g for g in self.groups.values() if g.partition == partition]:
            self._unload(group)
        loaded: dict[str, Group] = {}

        def group_of(group_id: str) -> Group:
            group = loaded.get(group_id)
            if group is None:
                group = loaded[group_id] = Group(group_id, partition)
            return group

        pending: dict[int, list[tuple[str, tuple[str, int], tuple | None]]] = {}
        for chunk in batches:
            for header, entries in records.iter_records(chunk):
                if header.is_control:
                    for key, _value in entries:
                        commit = records.control_type(key) == records.CONTROL_COMMIT
                        for group_id, tp, offset in pending.pop(header.producer_id, []):
                            if commit:
                                _apply_offset(group_of(group_id).offsets, tp, offset)
                    continue
                for key, value in entries:
                    kind, what = records.decode_key(key)
                    decoded = records.decode_value(value)
                    if kind == "offset":
                        group_id, topic, part = what
                        offset = None if decoded is None else (decoded["offset"], decoded["leader_epoch"], decoded["metadata"])
                        if header.is_transactional:
                            pending.setdefault(header.producer_id, []).append((group_id, (topic, part), offset))
                        else:
                            _apply_offset(group_of(group_id).offsets, (topic, part), offset)
                    elif decoded is None:
                        loaded.pop(what, None)
                    else:
                        group_of(what).restore(decoded, now_ms)
        for producer_id, items in pending.items():
            for group_id, tp, offset in items:
                group_of(group_id).pending_txn_offsets.setdefault(producer_id, {})[tp] = offset
        self.groups.update(loaded)
        self.owned.add(partition)
        log.info("loaded %d groups from __consumer_offsets-%d", len(loaded), partition)

    def unload_partition(self, partition: int) -> None:
        self.owned.discard(partition)
        for group in [g for g in self.groups.values() if g.partition == partition]:
            self._unload(group)

    def _unload(self, group: Group) -> None:
        group.state = DEAD
        for member in group.members.values():
            _finish(member.join_future, JoinResult(ErrorCode.not_coordinator, member_id=member.member_id))
            _finish(member.sync_future, SyncResult(ErrorCode.not_coordinator))
        self.groups.pop(group.group_id, None)

    def check_group(self, group_id: str) -> ErrorCode:
        if not group_id:
            return ErrorCode.invalid_group_id
        if not self.owns(group_id):
            return ErrorCode.not_coordinator
        return ErrorCode.none

    # ---- timers ---------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self) -> None:
        while True:
            await self.clock.sleep(TICK_S)
            try:
                self.tick(self.clock.monotonic_ms())
            except Exception:  # one broken group must not stop every group's timers
                log.exception("group coordinator tick failed")

    def tick(self, now_ms: int) -> None:
        """Expire sessions and finish rebalances whose timeout or initial delay has passed."""
        for group in list(self.groups.values()):
            # a member that neither heartbeats nor rejoins expires in every state (as in Kafka), so a
            # rebalance never waits a whole rebalance timeout for a member that is gone
            for member in list(group.members.values()):
                if group.members.get(member.member_id) is not member:
                    continue  # already removed by this tick (a completed rebalance drops laggards)
                waiting = member.join_future is not None and not member.join_future.done()
                if not waiting and now_ms - member.last_heard_ms > member.session_timeout_ms:
                    log.info("group %s: member %s session expired (%d ms)", group.group_id, member.member_id,
                             member.session_timeout_ms)
                    self._remove_member(group, member, "session timeout", now_ms)
            if group.state == PREPARING_REBALANCE:
                self._maybe_complete_join(group, now_ms)

    # ---- JoinGroup -----------------------------------------------------------------------

    async def join_group(self, group_id: str, member_id: str, group_instance_id: str | None, client_id: str,
                         client_host: str, session_timeout_ms: int, rebalance_timeout_ms: int, protocol_type: str,
                         protocols: list[tuple[str, bytes]], require_known_member_id: bool) -> JoinResult:
        error = self.check_group(group_id)
        if error != ErrorCode.none:
            return JoinResult(error, member_id=member_id)
        if not self.min_session_timeout_ms <= session_timeout_ms <= self.max_session_timeout_ms:
            return JoinResult(ErrorCode.invalid_session_timeout, member_id=member_id)
        if not protocols or not protocol_type:
            return JoinResult(ErrorCode.inconsistent_group_protocol, member_id=member_id)
        now_ms = self.clock.monotonic_ms()
        group = self.groups.get(group_id)
        if group is None:
            if member_id:
                return JoinResult(ErrorCode.unknown_member_id, member_id=member_id)
            group = self.groups[group_id] = Group(group_id, self.partition_for(group_id))
        if group.state == DEAD:
            return JoinResult(ErrorCode.coordinator_not_available, member_id=member_id)
        if group.members and protocol_type != group.protocol_type:
            return JoinResult(ErrorCode.inconsistent_group_protocol, member_id=member_id)
        if group.members and not self._supported_by_all(group, protocols, exclude=member_id):
            return JoinResult(ErrorCode.inconsistent_group_protocol, member_id=member_id)
        if not member_id:
            if group_instance_id is not None:
                old_id = group.static_members.get(group_instance_id)
                new_id = f"{group_instance_id}-{self._uuid()}"
                if old_id is not None and old_id in group.members:
                    replaced = self._replace_static_member(group, old_id, new_id, protocols, now_ms)
                    return replaced if isinstance(replaced, JoinResult) else await replaced
                member_id = new_id
            else:
                member_id = f"{client_id}-{self._uuid()}"
                if require_known_member_id:
                    group.pending_members.add(member_id)
                    return JoinResult(ErrorCode.member_id_required, member_id=member_id)
        else:
            if group_instance_id is not None:
                known = group.static_members.get(group_instance_id)
                if known is not None and known != member_id:
                    return JoinResult(ErrorCode.fenced_instance_id, member_id=member_id)
            if member_id not in group.members and member_id not in group.pending_members:
                return JoinResult(ErrorCode.unknown_member_id, member_id=member_id)
        group.pending_members.discard(member_id)
        member = group.members.get(member_id)
        if member is None:
            member = Member(member_id, group_instance_id, client_id, client_host, session_timeout_ms,
                            rebalance_timeout_ms, protocol_type, list(protocols), last_heard_ms=now_ms)
            group.members[member_id] = member
            if group_instance_id is not None:
                group.static_members[group_instance_id] = member_id
            if group.leader_id is None:
                group.leader_id = member_id
            group.protocol_type = protocol_type
        else:
            member.protocols = list(protocols)
            member.session_timeout_ms = session_timeout_ms
            member.rebalance_timeout_ms = rebalance_timeout_ms
            member.last_heard_ms = now_ms
        _finish(member.join_future, JoinResult(ErrorCode.rebalance_in_progress, member_id=member_id))
        member.join_future = asyncio.get_running_loop().create_future()
        future = member.join_future
        if group.state != PREPARING_REBALANCE:
            self._prepare_rebalance(group, f"member {member_id} joined", now_ms)
        self._maybe_complete_join(group, now_ms)
        return await future

    def _replace_static_member(self, group: Group, old_id: str, new_id: str, protocols, now_ms: int):
        """A static member restarted: it takes over the old member id's place and assignment (KIP-345).

        Returns the JoinResult at once when the group is Stable (no rebalance), else the
        future of the member's place in the rebalance under way.
        """
        member = group.members.pop(old_id)
        _finish(member.join_future, JoinResult(ErrorCode.fenced_instance_id, member_id=old_id))
        _finish(member.sync_future, SyncResult(ErrorCode.fenced_instance_id))
        member.join_future = member.sync_future = None
        member.member_id = new_id
        member.protocols = list(protocols)
        member.last_heard_ms = now_ms
        group.members[new_id] = member
        group.static_members[member.group_instance_id] = new_id
        if group.leader_id == old_id:
            group.leader_id = new_id
        log.info("group %s: static member %s replaced %s by %s", group.group_id, member.group_instance_id, old_id, new_id)
        if group.state == STABLE:
            # no rebalance: the member gets its old assignment through SyncGroup
            return JoinResult(ErrorCode.none, group.generation_id, group.protocol_type, group.protocol_name,
                              group.leader_id or "", new_id, [])
        loop = asyncio.get_running_loop()
        member.join_future = loop.create_future()
        if group.state != PREPARING_REBALANCE:
            self._prepare_rebalance(group, f"static member {member.group_instance_id} rejoined", now_ms)
        future = member.join_future
        self._maybe_complete_join(group, now_ms)
        return future

    @staticmethod
    def _supported_by_all(group: Group, protocols, exclude: str) -> bool:
        names = {name for name, _ in protocols}
        for member in group.members.values():
            if member.member_id != exclude:
                names &= {name for name, _ in member.protocols}
        return bool(names)

    def _prepare_rebalance(self, group: Group, reason: str, now_ms: int) -> None:
        if group.state == COMPLETING_REBALANCE:
            # the assignment of the generation being completed will never come: tell the waiters
            for member in group.members.values():
                _finish(member.sync_future, SyncResult(ErrorCode.rebalance_in_progress))
                member.sync_future = None
        timeout_ms = max((m.rebalance_timeout_ms for m in group.members.values()), default=0)
        if group.state == EMPTY:
            group.initial_delay_until_ms = now_ms + self.initial_rebalance_delay_ms
        else:
            group.initial_delay_until_ms = now_ms
        group.rebalance_deadline_ms = max(now_ms + timeout_ms, group.initial_delay_until_ms)
        group.state = PREPARING_REBALANCE
        log.info("group %s: preparing rebalance at generation %d (%s)", group.group_id, group.generation_id, reason)

    def _maybe_complete_join(self, group: Group, now_ms: int) -> None:
        if group.state != PREPARING_REBALANCE:
            return
        joined = [m for m in group.members.values() if m.join_future is not None and not m.join_future.done()]
        everyone = len(joined) == len(group.members) and not group.pending_members
        if now_ms < group.initial_delay_until_ms:
            return
        if not everyone and now_ms < group.rebalance_deadline_ms:
            return
        for member in list(group.members.values()):
            if member not in joined:
                log.info("group %s: member %s did not rejoin within the rebalance timeout", group.group_id, member.member_id)
                self._drop(group, member)
        group.pending_members.clear()
        self._complete_join(group, now_ms)

    def _complete_join(self, group: Group, now_ms: int) -> None:
        group.generation_id += 1
        if not group.members:
            group.state = EMPTY
            group.protocol_name = None
            group.leader_id = None
            log.info("group %s: empty at generation %d", group.group_id, group.generation_id)
            # stored, so that a coordinator replaying the log does not wait for members that left
            self._store_in_background(group)
            return
        group.protocol_name = self._select_protocol(group)
        if group.leader_id not in group.members:
            group.leader_id = next(iter(group.members))
        group.state = COMPLETING_REBALANCE
        log.info("group %s: generation %d with %d members, protocol %s, leader %s", group.group_id,
                 group.generation_id, len(group.members), group.protocol_name, group.leader_id)
        member_list = [(m.member_id, m.group_instance_id, m.metadata_for(group.protocol_name)) for m in group.members.values()]
        for member in group.members.values():
            member.last_heard_ms = now_ms
            if not self.double_assignment:  # (the planted bug keeps it: see sync_group)
                member.assignment = b""
            is_leader = member.member_id == group.leader_id
            _finish(member.join_future, JoinResult(
                ErrorCode.none, group.generation_id, group.protocol_type, group.protocol_name, group.leader_id,
                member.member_id, member_list if is_leader else []))
            member.join_future = None

    def _store_in_background(self, group: Group) -> None:
        self._spawn(self.group_log.append(
            group.partition, [(records.group_key(group.group_id), records.encode_value(group.to_record()))]))

    def _spawn(self, coroutine) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @staticmethod
    def _select_protocol(group: Group) -> str:
        """Each member votes for its most preferred protocol among those every member supports."""
        common = None
        for member in group.members.values():
            names = {name for name, _ in member.protocols}
            common = names if common is None else common & names
        votes: dict[str, int] = {}
        order: list[str] = []
        for member in group.members.values():
            for name, _ in member.protocols:
                if name in common:
                    votes[name] = votes.get(name, 0) + 1
                    if name not in order:
                        order.append(name)
                    break
        return max(order, key=lambda name: votes[name])

    # ---- SyncGroup / Heartbeat / LeaveGroup ------------------------------------------------

    def _member_error(self, group: Group | None, member_id: str, group_instance_id: str | None,
                      generation_id: int) -> ErrorCode:
        if group is None or group.state == DEAD:
            return ErrorCode.unknown_member_id
        if group_instance_id is not None:
            known = group.static_members.get(group_instance_id)
            if known is not None and known != member_id:
                return ErrorCode.fenced_instance_id
        if member_id not in group.members:
            return ErrorCode.unknown_member_id
        if generation_id != group.generation_id:
            return ErrorCode.illegal_generation
        return ErrorCode.none

    async def sync_group(self, group_id: str, generation_id: int, member_id: str, group_instance_id: str | None,
                         assignments: dict[str, bytes]) -> SyncResult:
        error = self.check_group(group_id)
        if error != ErrorCode.none:
            return SyncResult(error)
        group = self.groups.get(group_id)
        error = self._member_error(group, member_id, group_instance_id, generation_id)
        if error != ErrorCode.none:
            return SyncResult(error)
        member = group.members[member_id]
        member.last_heard_ms = self.clock.monotonic_ms()
        if group.state == PREPARING_REBALANCE:
            return SyncResult(ErrorCode.rebalance_in_progress)
        # double_assignment (logquake.debug.double.assignment, a planted bug): a follower that held partitions
        # is answered at once with them instead of waiting for the leader's assignment of the new generation,
        # which may give them to another member: both then consume them in the same generation.
        early = self.double_assignment and member_id != group.leader_id and member.assignment
        if group.state == STABLE or early:
            return SyncResult(ErrorCode.none, group.protocol_type, group.protocol_name, member.assignment)
        _finish(member.sync_future, SyncResult(ErrorCode.rebalance_in_progress))
        member.sync_future = asyncio.get_running_loop().create_future()
        future = member.sync_future
        if member_id == group.leader_id:
            for m in group.members.values():
                m.assignment = assignments.get(m.member_id, b"")
            generation = group.generation_id
            error = await self.group_log.append(group.partition, [(records.group_key(group_id),
                                                                   records.encode_value(group.to_record()))])
            if group.state == COMPLETING_REBALANCE and group.generation_id == generation:
                if error != ErrorCode.none:
                    log.info("group %s: storing generation %d failed: %s", group_id, generation, error.name)
                    for m in group.members.values():
                        _finish(m.sync_future, SyncResult(ErrorCode.coordinator_not_available))
                        m.sync_future = None
                    self._prepare_rebalance(group, "its metadata could not be stored", self.clock.monotonic_ms())
                else:
                    group.state = STABLE
                    for m in group.members.values():
                        _finish(m.sync_future, SyncResult(ErrorCode.none, group.protocol_type, group.protocol_name, m.assignment))
                        m.sync_future = None
        return await future

    def heartbeat(self, group_id: str, generation_id: int, member_id: str, group_instance_id: str | None) -> ErrorCode:
        error = self.check_group(group_id)
        if error != ErrorCode.none:
            return error
        group = self.groups.get(group_id)
        error = self._member_error(group, member_id, group_instance_id, generation_id)
        if error != ErrorCode.none:
            return error
        group.members[member_id].last_heard_ms = self.clock.monotonic_ms()
        if group.state == PREPARING_REBALANCE:
            return ErrorCode.rebalance_in_progress
        return ErrorCode.none

    def leave_group(self, group_id: str, members: list[tuple[str, str | None]]) -> tuple[ErrorCode, list[ErrorCode]]:
        error = self.check_group(group_id)
        if error != ErrorCode.none:
            return error, []
        group = self.groups.get(group_id)
        results = []
        now_ms = self.clock.monotonic_ms()
        for member_id, instance_id in members:
            if group is None:
                results.append(ErrorCode.unknown_member_id)
                continue
            if instance_id is not None:
                known = group.static_members.get(instance_id)
                if known is None:
                    results.append(ErrorCode.unknown_member_id)
                    continue
                if member_id and known != member_id:
                    results.append(ErrorCode.fenced_instance_id)
                    continue
                member_id = known
            member = group.members.get(member_id)
            if member is None:
                results.append(ErrorCode.unknown_member_id)
                continue
            self._remove_member(group, member, "left the group", now_ms)
            results.append(ErrorCode.none)
        return ErrorCode.none, results

    def _drop(self, group: Group, member: Member) -> None:
        del group.members[member.member_id]
        if member.group_instance_id is not None and group.static_members.get(member.group_instance_id) == member.member_id:
            del group.static_members[member.group_instance_id]
        _finish(member.join_future, JoinResult(ErrorCode.unknown_member_id, member_id=member.member_id))
        _finish(member.sync_future, SyncResult(ErrorCode.unknown_member_id))
        if group.leader_id == member.member_id:
            group.leader_id = next(iter(group.members), None)

    def _remove_member(self, group: Group, member: Member, reason: str, now_ms: int) -> None:
        self._drop(group, member)
        log.info("group %s: member %s removed (%s)", group.group_id, member.member_id, reason)
        if group.state in (STABLE, COMPLETING_REBALANCE, EMPTY):
            self._prepare_rebalance(group, f"member {member.member_id} {reason}", now_ms)
            group.initial_delay_until_ms = now_ms
        self._maybe_complete_join(group, now_ms)

    # ---- offsets ---------------------------------------------------------------------------

    def _commit_error(self, group: Group | None, generation_id: int, member_id: str,
                      group_instance_id: str | None) -> ErrorCode:
        if generation_id < 0 and not member_id:
            # a "simple" consumer (assign, no membership): only while the group has no members
            if group is not None and group.members:
                return ErrorCode.unknown_member_id
            return ErrorCode.none
        error = self._member_error(group, member_id, group_instance_id, generation_id)
        if error == ErrorCode.none and group.state == COMPLETING_REBALANCE:
            return ErrorCode.rebalance_in_progress
        return error

    async def commit_offsets(self, group_id: str, generation_id: int, member_id: str, group_instance_id: str | None,
                             offsets: dict[tuple[str, int], tuple[int, int, str | None]]) -> dict[tuple[str, int], ErrorCode]:
        error = self.check_group(group_id)
        group = self.groups.get(group_id)
        if error == ErrorCode.none:
            error = self._commit_error(group, generation_id, member_id, group_instance_id)
        if error != ErrorCode.none:
            log.info("OffsetCommit of group %s (generation %d, member %r) refused: %s", group_id, generation_id,
                     member_id, error.name)
            return {tp: error for tp in offsets}
        if group is None:
            group = self.groups[group_id] = Group(group_id, self.partition_for(group_id))
        elif member_id in group.members:
            group.members[member_id].last_heard_ms = self.clock.monotonic_ms()  # a commit is a sign of life
        entries = [(records.offset_key(group_id, topic, part), records.encode_value(
            {"offset": o, "leader_epoch": e, "metadata": md})) for (topic, part), (o, e, md) in offsets.items()]
        if self.commit_before_replication:
            # logquake.debug.commit.before.replication (a planted bug): the append goes on in the background
            # and the commit is taken and answered at once, though the record may never pass the high watermark.
            self._spawn(self.group_log.append(group.partition, entries))
            error = ErrorCode.none
        else:
            error = await self.group_log.append(group.partition, entries)
        if error == ErrorCode.none:
            for tp, value in offsets.items():
                group.offsets[tp] = value
        return {tp: error for tp in offsets}

    def fetch_offsets(self, group_id: str, partitions: list[tuple[str, int]] | None, require_stable: bool = False):
        """(error, {(topic, partition): (offset, leader_epoch, metadata, error)}); None lists all committed."""
        error = self.check_group(group_id)
        if error != ErrorCode.none:
            return error, {}
        group = self.groups.get(group_id)
        committed = group.offsets if group is not None else {}
        wanted = list(committed) if partitions is None else partitions
        pending = set()
        if group is not None:
            for items in group.pending_txn_offsets.values():
                pending.update(items)
        out = {}
        for tp in wanted:
            offset, epoch, metadata = committed.get(tp, (-1, -1, ""))
            part_error = ErrorCode.unstable_offset_commit if require_stable and tp in pending else ErrorCode.none
            out[tp] = (offset, epoch, metadata, part_error)
        return ErrorCode.none, out

    async def prepare_txn_offsets(self, group_id, producer_id, producer_epoch, generation_id, member_id,
                                  group_instance_id, offsets) -> dict:
        """TxnOffsetCommit: validate the member, log the offsets in a transactional batch; pending until `complete_txn`."""
        error = self.check_group(group_id)
        group = self.groups.get(group_id)
        if error == ErrorCode.none and (member_id or generation_id >= 0) and not self.unfenced_txn_offsets:
            error = self._commit_error(group, generation_id, member_id, group_instance_id)
        if error != ErrorCode.none:
            return {tp: error for tp in offsets}
        if group is None:
            group = self.groups[group_id] = Group(group_id, self.partition_for(group_id))
        entries = [(records.offset_key(group_id, topic, part), records.encode_value(
            {"offset": o, "leader_epoch": e, "metadata": md})) for (topic, part), (o, e, md) in offsets.items()]
        error = await self.group_log.append(group.partition, entries, producer_id, producer_epoch, transactional=True)
        if error == ErrorCode.none:
            group.pending_txn_offsets.setdefault(producer_id, {}).update(offsets)
        return {tp: error for tp in offsets}

    def complete_txn(self, producer_id: int, commit: bool, offsets_partition: int) -> None:
        """A COMMIT/ABORT marker of `producer_id` landed in __consumer_offsets-`offsets_partition`."""
        for group in self.groups.values():
            if group.partition != offsets_partition:
                continue
            pending = group.pending_txn_offsets.pop(producer_id, None)
            if pending and (commit or self.aborted_offsets_visible):
                for tp, value in pending.items():
                    _apply_offset(group.offsets, tp, value)

    # ---- admin -----------------------------------------------------------------------------

    def list_groups(self) -> list[Group]:
        return [g for g in self.groups.values() if g.partition in self.owned and g.state != DEAD]

    def describe_group(self, group_id: str) -> tuple[ErrorCode, Group | None]:
        error = self.check_group(group_id)
        return error, self.groups.get(group_id) if error == ErrorCode.none else None

    async def delete_group(self, group_id: str) -> ErrorCode:
        error = self.check_group(group_id)
        if error != ErrorCode.none:
            return error
        group = self.groups.get(group_id)
        if group is None:
            return ErrorCode.group_id_not_found
        if group.state != EMPTY:
            return ErrorCode.non_empty_group
        entries = [(records.offset_key(group_id, t, p), None) for t, p in group.offsets]
        entries.append((records.group_key(group_id), None))
        error = await self.group_log.append(group.partition, entries)
        if error == ErrorCode.none:
            group.state = DEAD
            self.groups.pop(group_id, None)
        return error


def _apply_offset(offsets: dict, tp: tuple[str, int], value) -> None:
    if value is None:
        offsets.pop(tp, None)
    else:
        offsets[tp] = tuple(value)


def _finish(future: asyncio.Future | None, result) -> None:
    if future is not None and not future.done():
        future.set_result(result)
