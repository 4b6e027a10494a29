"""The group APIs of one broker node, wired to its `GroupCoordinator` and its `__consumer_offsets` partitions.

`GroupApis` installs the handlers of FindCoordinator (groups; transactions go
to the handler it replaces), JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
OffsetCommit, OffsetFetch, ListGroups, DescribeGroups and DeleteGroups into a
`RequestHandlers`, and follows the node's leadership of `__consumer_offsets`
partitions (`on_become_leader` replays a partition into the coordinator,
`on_become_follower` / `on_stopped` unload its groups).

The internal topic `__consumer_offsets` (offsets.topic.num.partitions
partitions, replication factor min(offsets.topic.replication.factor, live
brokers)) is created on first use: through the controller in cluster mode
(`create_topic` is set by `broker.server.cluster`), locally on a one-node
broker. Until it exists and the group's partition has a leader, FindCoordinator
answers COORDINATOR_NOT_AVAILABLE (clients retry).

Writes go through the same leader append path as Produce, with acks=all: the
coordinator applies a commit or a new generation only after the high watermark
passed its record, so what a client was told survives a leader failover.

Thread-safety: none; everything runs on the broker's event loop.
Sources: Kafka protocol guide (the group APIs), KIP-345, KIP-394, KIP-699 (FindCoordinator v4 batching).
"""

from __future__ import annotations

import asyncio
import datetime
import logging

from kio.schema.errors import ErrorCode

from broker.coordinator.group import GroupCoordinator
from broker.coordinator.internal_topic import ensure_internal_topic, find_coordinator_response, locate_coordinator
from broker.protocol import apis
from broker.protocol.apis import build_entity, response_module
from broker.protocol.records import build_batch, iter_batches
from broker.replication import manager as replication

log = logging.getLogger("broker.coordinator.group")

OFFSETS_TOPIC = "__consumer_offsets"
KEY_TYPE_GROUP = 0
APPEND_TIMEOUT_MS = 5000
READ_CHUNK_BYTES = 1 << 20
AUTHORIZED_OPERATIONS_OMITTED = -(2**31)
ZERO_MS = datetime.timedelta(0)

JOIN_GROUP = apis.JOIN_GROUP
HEARTBEAT = apis.HEARTBEAT
LEAVE_GROUP = apis.LEAVE_GROUP
SYNC_GROUP = apis.SYNC_GROUP
DESCRIBE_GROUPS = apis.DESCRIBE_GROUPS
LIST_GROUPS = apis.LIST_GROUPS
OFFSET_COMMIT = apis.OFFSET_COMMIT
OFFSET_FETCH = apis.OFFSET_FETCH
DELETE_GROUPS = apis.DELETE_GROUPS


def _ms(value) -> int:
    return int(value.total_seconds() * 1000) if isinstance(value, datetime.timedelta) else int(value)


def read_partition(partition_log):
    """Whole-batch chunks of a partition log from its start to its end."""
    offset = partition_log.log_start_offset
    while offset < partition_log.log_end_offset:
        chunk = partition_log.read(offset, READ_CHUNK_BYTES)
        if not chunk:
            return
        last = None
        for _, header in iter_batches(chunk):
            last = header
        yield chunk
        offset = last.next_offset


class HandlerGroupLog:
    """`GroupLog` over the node's leader append path (acks=all)."""

    def __init__(self, handlers):
        self.handlers = handlers

    async def append(self, partition, entries, producer_id=-1, producer_epoch=-1, transactional=False) -> ErrorCode:
        batch = bytearray(build_batch(entries, base_timestamp=self.handlers.runtime.clock.wall_ms(),
                                      producer_id=producer_id, producer_epoch=producer_epoch,
                                      attributes=0x10 if transactional else 0))
        result, verdict = await self.handlers.leader.append_and_wait(OFFSETS_TOPIC, partition, batch, APPEND_TIMEOUT_MS)
        if not result.ok:
            log.info("append to %s-%d refused: %s (%s)", OFFSETS_TOPIC, partition, result.error.name, result.message)
            return result.error
        if verdict == replication.OK:
            return ErrorCode.none
        log.info("append to %s-%d not replicated: %s", OFFSETS_TOPIC, partition, verdict)
        # Kafka maps these to errors that make the client find the coordinator again and retry
        return ErrorCode.not_coordinator if verdict == replication.NOT_LEADER else ErrorCode.coordinator_not_available


class GroupApis:
    def __init__(self, handlers):
        self.handlers = handlers
        config = handlers.config
        self.num_partitions = config.value("offsets.topic.num.partitions")
        self.replication_factor = config.value("offsets.topic.replication.factor")
        self.coordinator = GroupCoordinator(
            handlers.runtime.clock, HandlerGroupLog(handlers), self.num_partitions,
            initial_rebalance_delay_ms=config.value("group.initial.rebalance.delay.ms"),
            min_session_timeout_ms=config.value("group.min.session.timeout.ms"),
            max_session_timeout_ms=config.value("group.max.session.timeout.ms"),
            rng=handlers.runtime.random,
        )
        # set by broker.server.cluster: async (name, partitions, replication factor) -> None
        self.create_topic = None
        self._creating: asyncio.Future | None = None
        self._started = False

    def apis(self) -> dict:
        """The group APIs (broker.server.router); FindCoordinator for groups is `find_coordinator`."""
        return {
            JOIN_GROUP: self.join_group,
            SYNC_GROUP: self.sync_group,
            HEARTBEAT: self.heartbeat,
            LEAVE_GROUP: self.leave_group,
            OFFSET_COMMIT: self.offset_commit,
            OFFSET_FETCH: self.offset_fetch,
            LIST_GROUPS: self.list_groups,
            DESCRIBE_GROUPS: self.describe_groups,
            DELETE_GROUPS: self.delete_groups,
        }

    # ---- lifecycle ----------------------------------------------------------------------

    def _ensure_started(self) -> None:
        if not self._started:
            self._started = True
            self.coordinator.start()
            if self.handlers.replica_manager is None:
                self.loaded_locally()

    async def stop(self) -> None:
        await self.coordinator.stop()

    def loaded_locally(self) -> None:
        """One-node mode: this node leads every partition of __consumer_offsets that exists."""
        for (topic, partition), state in list(self.handlers.partitions.items()):
            if topic == OFFSETS_TOPIC and partition not in self.coordinator.owned:
                self.coordinator.load_partition(partition, read_partition(state.log))

    def on_become_leader(self, topic: str, partition: int, partition_log) -> None:
        if topic == OFFSETS_TOPIC:
            self.coordinator.load_partition(partition, read_partition(partition_log))

    def on_not_leader(self, topic: str, partition: int) -> None:
        if topic == OFFSETS_TOPIC:
            self.coordinator.unload_partition(partition)

    # ---- FindCoordinator ------------------------------------------------------------------

    async def _ensure_topic(self) -> None:
        await ensure_internal_topic(self, OFFSETS_TOPIC)

    def _locate(self, group_id: str):
        """(error, message, node id, host, port) of the coordinator of `group_id`."""
        return locate_coordinator(self.handlers, OFFSETS_TOPIC, self.coordinator.partition_for(group_id),
                                  f"group {group_id!r}")

    async def find_coordinator(self, header, request):
        self._ensure_started()
        module = self.handlers_module(apis.FIND_COORDINATOR, header.api_version)
        await self._ensure_topic()
        return find_coordinator_response(self.build, module, header.api_version, request, self._locate,
                                         "the group id is empty; expected a non-empty group.id", ZERO_MS)

    # ---- helpers ----------------------------------------------------------------------------

    handlers_module = staticmethod(response_module)
    build = staticmethod(build_entity)

    # ---- JoinGroup / SyncGroup / Heartbeat / LeaveGroup ----------------------------------------

    async def join_group(self, header, request):
        self._ensure_started()
        version = header.api_version
        module = self.handlers_module(JOIN_GROUP, version)
        result = await self.coordinator.join_group(
            request.group_id, request.member_id, getattr(request, "group_instance_id", None),
            header.client_id or "", "/" + (getattr(header, "client_host", "") or "unknown"),
            _ms(request.session_timeout), _ms(getattr(request, "rebalance_timeout", request.session_timeout)),
            request.protocol_type, [(p.name, p.metadata) for p in request.protocols],
            require_known_member_id=version >= 4,
        )
        protocol_name = result.protocol_name if result.protocol_name is not None or version >= 7 else ""
        members = tuple(self.build(module, "JoinGroupResponseMember", member_id=m, group_instance_id=i, metadata=md)
                        for m, i, md in result.members)
        return self.build(module, "JoinGroupResponse", throttle_time=ZERO_MS, error_code=result.error,
                          generation_id=result.generation_id, protocol_type=result.protocol_type,
                          protocol_name=protocol_name, leader=result.leader, skip_assignment=False,
                          member_id=result.member_id, members=members)

    async def sync_group(self, header, request):
        self._ensure_started()
        module = self.handlers_module(SYNC_GROUP, header.api_version)
        result = await self.coordinator.sync_group(
            request.group_id, request.generation_id, request.member_id, getattr(request, "group_instance_id", None),
            {a.member_id: a.assignment for a in request.assignments})
        return self.build(module, "SyncGroupResponse", throttle_time=ZERO_MS, error_code=result.error,
                          protocol_type=result.protocol_type, protocol_name=result.protocol_name,
                          assignment=result.assignment)

    def heartbeat(self, header, request):
        self._ensure_started()
        module = self.handlers_module(HEARTBEAT, header.api_version)
        error = self.coordinator.heartbeat(request.group_id, request.generation_id, request.member_id,
                                           getattr(request, "group_instance_id", None))
        return self.build(module, "HeartbeatResponse", throttle_time=ZERO_MS, error_code=error)

    def leave_group(self, header, request):
        self._ensure_started()
        version = header.api_version
        module = self.handlers_module(LEAVE_GROUP, version)
        if version >= 3:
            wanted = [(m.member_id, m.group_instance_id) for m in request.members]
        else:
            wanted = [(request.member_id, None)]
        error, results = self.coordinator.leave_group(request.group_id, wanted)
        if version < 3:
            if error == ErrorCode.none and results:
                error = results[0]
            return self.build(module, "LeaveGroupResponse", throttle_time=ZERO_MS, error_code=error)
        members = tuple(self.build(module, "MemberResponse", member_id=m, group_instance_id=i, error_code=e)
                        for (m, i), e in zip(wanted, results))
        return self.build(module, "LeaveGroupResponse", throttle_time=ZERO_MS, error_code=error, members=members)

    # ---- OffsetCommit / OffsetFetch ------------------------------------------------------------

    async def offset_commit(self, header, request):
        self._ensure_started()
        module = self.handlers_module(OFFSET_COMMIT, header.api_version)
        offsets = {}
        for topic in request.topics:
            for part in topic.partitions:
                offsets[(topic.name, part.partition_index)] = (
                    part.committed_offset, getattr(part, "committed_leader_epoch", -1), part.committed_metadata)
        results = await self.coordinator.commit_offsets(
            request.group_id, request.generation_id_or_member_epoch, request.member_id,
            getattr(request, "group_instance_id", None), offsets)
        topics = tuple(
            self.build(module, "OffsetCommitResponseTopic", name=topic.name, partitions=tuple(
                self.build(module, "OffsetCommitResponsePartition", partition_index=p.partition_index,
                           error_code=results[(topic.name, p.partition_index)])
                for p in topic.partitions))
            for topic in request.topics)
        return self.build(module, "OffsetCommitResponse", throttle_time=ZERO_MS, topics=topics)

    def _fetch_group(self, group_id: str, topics, require_stable: bool):
        wanted = None if topics is None else [(t.name, p) for t in topics for p in t.partition_indexes]
        error, found = self.coordinator.fetch_offsets(group_id, wanted, require_stable)
        by_topic: dict[str, list] = {}
        for (topic, partition), value in found.items():
            by_topic.setdefault(topic, []).append((partition, value))
        return error, by_topic

    def offset_fetch(self, header, request):
        self._ensure_started()
        version = header.api_version
        module = self.handlers_module(OFFSET_FETCH, version)
        require_stable = bool(getattr(request, "require_stable", False))
        if version >= 8:
            groups = []
            for group in request.groups:
                error, by_topic = self._fetch_group(group.group_id, group.topics, require_stable)
                groups.append(self.build(module, "OffsetFetchResponseGroup", group_id=group.group_id, error_code=error,
                                         topics=self._fetch_topics(module, "OffsetFetchResponseTopics",
                                                                   "OffsetFetchResponsePartitions", by_topic)))
            return self.build(module, "OffsetFetchResponse", throttle_time=ZERO_MS, groups=tuple(groups))
        error, by_topic = self._fetch_group(request.group_id, request.topics, require_stable)
        topics = self._fetch_topics(module, "OffsetFetchResponseTopic", "OffsetFetchResponsePartition", by_topic)
        if version < 2 and error != ErrorCode.none:
            # v0-1 have no top-level error: every partition carries it
            topics = tuple(self.build(module, "OffsetFetchResponseTopic", name=t.name, partitions=tuple(
                self.build(module, "OffsetFetchResponsePartition", partition_index=p, committed_offset=-1,
                           metadata="", error_code=error) for p in t.partition_indexes)) for t in request.topics or ())
        return self.build(module, "OffsetFetchResponse", throttle_time=ZERO_MS, topics=topics, error_code=error)

    def _fetch_topics(self, module, topic_class: str, partition_class: str, by_topic) -> tuple:
        return tuple(
            self.build(module, topic_class, name=topic, partitions=tuple(
                self.build(module, partition_class, partition_index=partition, committed_offset=offset,
                           committed_leader_epoch=epoch, metadata=metadata if metadata is not None else "",
                           error_code=error)
                for partition, (offset, epoch, metadata, error) in sorted(parts)))
            for topic, parts in by_topic.items())

    # ---- ListGroups / DescribeGroups / DeleteGroups --------------------------------------------

    def list_groups(self, header, request):
        self._ensure_started()
        module = self.handlers_module(LIST_GROUPS, header.api_version)
        states = {s.lower() for s in getattr(request, "states_filter", ()) or ()}
        types = {t.lower() for t in getattr(request, "types_filter", ()) or ()}
        listed = []
        for group in self.coordinator.list_groups():
            if states and group.state.lower() not in states:
                continue
            if types and "classic" not in types:
                continue
            listed.append(self.build(module, "ListedGroup", group_id=group.group_id,
                                     protocol_type=group.protocol_type or "", group_state=group.state,
                                     group_type="classic"))
        return self.build(module, "ListGroupsResponse", throttle_time=ZERO_MS, error_code=ErrorCode.none,
                          groups=tuple(listed))

    def describe_groups(self, header, request):
        self._ensure_started()
        module = self.handlers_module(DESCRIBE_GROUPS, header.api_version)
        described = []
        for group_id in request.groups:
            error, group = self.coordinator.describe_group(group_id)
            members = ()
            if group is not None:
                members = tuple(self.build(
                    module, "DescribedGroupMember", member_id=m.member_id, group_instance_id=m.group_instance_id,
                    client_id=m.client_id, client_host=m.client_host,
                    member_metadata=m.metadata_for(group.protocol_name or ""), member_assignment=m.assignment,
                ) for m in group.members.values())
            described.append(self.build(
                module, "DescribedGroup", error_code=error, group_id=group_id,
                group_state=group.state if group is not None else ("Dead" if error == ErrorCode.none else ""),
                protocol_type=(group.protocol_type or "") if group is not None else "",
                protocol_data=(group.protocol_name or "") if group is not None else "",
                members=members, authorized_operations=AUTHORIZED_OPERATIONS_OMITTED))
        return self.build(module, "DescribeGroupsResponse", throttle_time=ZERO_MS, groups=tuple(described))

    async def delete_groups(self, header, request):
        self._ensure_started()
        module = self.handlers_module(DELETE_GROUPS, header.api_version)
        results = []
        for group_id in request.groups_names:
            error = await self.coordinator.delete_group(group_id)
            results.append(self.build(module, "DeletableGroupResult", group_id=group_id, error_code=error))
        return self.build(module, "DeleteGroupsResponse", throttle_time=ZERO_MS, results=tuple(results))


class GroupAwareLifecycle:
    """The `PartitionLifecycle` given to the ReplicaManager: the request handlers' own, then the group coordinator's.

    The handlers go first, so a new leader's partition state (the append path)
    exists before the coordinator replays the partition and may write to it.
    """

    def __init__(self, handlers, group_apis: GroupApis):
        self.handlers = handlers
        self.group_apis = group_apis

    def on_become_leader(self, topic: str, partition: int, partition_log) -> None:
        self.handlers.on_become_leader(topic, partition, partition_log)
        self.group_apis.on_become_leader(topic, partition, partition_log)

    def on_become_follower(self, topic: str, partition: int, partition_log) -> None:
        self.group_apis.on_not_leader(topic, partition)
        self.handlers.on_become_follower(topic, partition, partition_log)

    def on_stopped(self, topic: str, partition: int) -> None:
        self.group_apis.on_not_leader(topic, partition)
        self.handlers.on_stopped(topic, partition)

    def on_high_watermark(self) -> None:
        self.handlers.on_high_watermark()

    def __getattr__(self, name: str):
        # anything else the ReplicaManager asks of its lifecycle is the handlers' business
        return getattr(self.handlers, name)
