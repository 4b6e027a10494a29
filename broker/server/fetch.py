"""The Fetch read path of a broker node: long polls, fetch sessions, and the reads of one partition.

`FetchApis` answers Fetch (registered through broker.server.router). It owns
the node's fetch sessions (KIP-227, broker.server.fetch_sessions) and reads
partitions through the node's request handlers (the topic table, the leader
append path's producer state, the ReplicaManager in cluster mode); it appends
nothing.

Semantics kept (Kafka's; DESIGN.md "Broker semantics"):
- Fetch long-polls: it answers when min_bytes are available, on an error, or
  after max_wait_ms, and is woken by every append; every partition reports its
  last_stable_offset (the first offset of the oldest open transaction, never
  above the high watermark, KIP-98); isolation_level=1 (read_committed) reads
  up to it and gets the aborted transactions overlapping the records, level 0
  reads up to the high watermark; aborted_transactions is a list, never null;
  control batches are returned (clients skip them); a fetch offset outside
  [log_start_offset, high_watermark] gets OFFSET_OUT_OF_RANGE; each partition
  reads at most min(partition_max_bytes, what is left of max_bytes), but the
  first partition with data gets at least one whole batch (KIP-74), so a
  negative max_bytes counts as 0; a negative partition_max_bytes gets
  UNKNOWN_SERVER_ERROR for that partition, as in Kafka; topics are named
  up to v12 and addressed by topic id from v13 (KIP-516);
- cluster mode: only a partition's leader serves Fetch (others answer
  NOT_LEADER_OR_FOLLOWER with the current leader and its endpoint, KIP-951);
  a request naming an older leader epoch gets FENCED_LEADER_EPOCH, a newer one
  UNKNOWN_LEADER_EPOCH; followers (replica_id >= 0) read to the log end and
  report their progress, consumers read to the high watermark, and a fetch
  offset between the two answers empty rather than OFFSET_OUT_OF_RANGE;
- a partition whose log cannot be read (a damaged segment: CorruptRecordError,
  or an OSError of the disk) answers KAFKA_STORAGE_ERROR for that partition,
  as Kafka does, and the other partitions of the request are served; the
  error is logged once per partition and reason, not at every poll.

Thread-safety: none; everything runs on the broker's event loop.
"""

from __future__ import annotations

import logging
import uuid

from kio.schema.errors import ErrorCode

from broker.log.log import OffsetOutOfRangeError
from broker.protocol.records import CorruptRecordError
from broker.protocol import apis
from broker.protocol.fetch import FetchPartitionResult, FetchTopicResult, encode_fetch_response
from broker.replication import manager as replication
from broker.replication.producer_state import ProducerStateTable
from broker.server.config import debug_switch
from broker.server.fetch_sessions import UNKNOWN, FetchSessionCache

log = logging.getLogger("broker.server")

READ_COMMITTED = 1


def fetch_replica_id(request, version: int) -> int:
    """The fetching replica's node id (-1 for a consumer); from v15 it sits in replica_state (KIP-903)."""
    if version >= 15:
        return request.replica_state.replica_id
    return getattr(request, "replica_id", -1)


def _by_topic_id(fetch_topic):
    return fetch_topic.topic_id


def _by_topic_name(fetch_topic):
    return fetch_topic.topic


def _topic_key_of(version: int):
    """How a Fetch request of this version names topics: by id from v13, by name before."""
    return _by_topic_id if version >= 13 else _by_topic_name


def negative_fetch_size_error(topic: str, fetch_partition) -> ErrorCode:
    """A Fetch partition asking for fewer than 0 bytes: Kafka's LogSegment.read refuses a negative size
    (IllegalArgumentException), which its ReplicaManager answers as UNKNOWN_SERVER_ERROR for that partition;
    we answer the same, and the connection stays open."""
    log.info("fetch of %s-%d refused: partition_max_bytes %d is negative", topic, fetch_partition.partition,
             fetch_partition.partition_max_bytes)
    return ErrorCode.unknown_server_error


class FetchApis:
    """Fetch for one node; `handlers` is its RequestHandlers (topics, partitions, leadership, wake-ups)."""

    def __init__(self, handlers):
        self.handlers = handlers
        self.config = handlers.config
        self.runtime = handlers.runtime
        self.topics = handlers.topics
        self.partitions = handlers.partitions
        self.read_uncommitted_bug = debug_switch(handlers.config, "logquake.debug.read.uncommitted")
        self.fetch_sessions = FetchSessionCache(handlers.runtime.random)  # followers' incremental fetches (KIP-227)
        self._unreadable_logged: set[tuple[str, int, str]] = set()

    def read_log(self, partition_log, name: str, index: int, offset: int, max_bytes: int,
                 upper: int) -> tuple[bytes, int]:
        """(records, error code): the read, or KAFKA_STORAGE_ERROR for a log that cannot be read (module doc)."""
        try:
            return partition_log.read(offset, max_bytes, upper), 0
        except (CorruptRecordError, OSError) as exc:
            reason = f"{type(exc).__name__}: {exc}"
            if (name, index, reason) not in self._unreadable_logged:
                self._unreadable_logged.add((name, index, reason))
                log.error("%s-%d: the log cannot be read at offset %d (%s); fetches of it are answered "
                          "KAFKA_STORAGE_ERROR", name, index, offset, reason)
            return b"", ErrorCode.kafka_storage_error.value

    def apis(self) -> dict:
        """The API this part answers (broker.server.router)."""
        return {apis.FETCH: self.fetch}

    async def fetch(self, header, request, denied=()):
        """`denied`: FetchTopicResults the authorizer refused (broker.server.authorization); a consumer's fetch with
        any is answered at once, as with any other partition error."""
        self.handlers.txn_apis.on_request()
        version = header.api_version
        replica_id = fetch_replica_id(request, version)
        session, full, error = self.fetch_sessions.resolve(request, replica_id if self.handlers.replica_manager else -1,
                                                           _topic_key_of(version))
        if error:
            return encode_fetch_response(version, [], error_code=error, session_id=0)
        if session is not None:
            return await self.fetch_in_session(request, version, replica_id, session, full)
        max_wait_s = max(request.max_wait.total_seconds(), 0.0)
        deadline_ns = self.runtime.clock.monotonic_ns() + int(max_wait_s * 1e9)
        first_pass = True
        while True:
            topics, total_bytes, has_error = self.read_fetch(request, version, first_pass)
            if denied:
                topics, has_error = topics + list(denied), True
            first_pass = False
            remaining_s = (deadline_ns - self.runtime.clock.monotonic_ns()) / 1e9
            if total_bytes >= request.min_bytes or has_error or remaining_s <= 0 or self.handlers.stopping:
                endpoints = self.handlers.leader_endpoints(p.current_leader for t in topics for p in t.partitions)
                return encode_fetch_response(version, topics, session_id=0, node_endpoints=endpoints)
            await self.handlers.wait_for_append(remaining_s)

    async def fetch_in_session(self, request, version: int, replica_id: int, session, full: bool):
        """A follower's fetch within its session (KIP-227; broker.server.fetch_sessions): the answer names
        every session partition when `full`, else only those with records, an error, or a new high
        watermark or log start offset."""
        max_wait_s = max(request.max_wait.total_seconds(), 0.0)
        deadline_ns = self.runtime.clock.monotonic_ns() + int(max_wait_s * 1e9)
        first_pass = True
        while True:
            topics, answered, total_bytes, has_error = self.read_session(session, request, version, replica_id,
                                                                         first_pass, full)
            first_pass = False
            remaining_s = (deadline_ns - self.runtime.clock.monotonic_ns()) / 1e9
            if total_bytes >= request.min_bytes or has_error or remaining_s <= 0 or self.handlers.stopping:
                for session_partition, result in answered:
                    session_partition.sent_high_watermark = result.high_watermark if not result.error_code else UNKNOWN
                    session_partition.sent_log_start_offset = result.log_start_offset
                endpoints = self.handlers.leader_endpoints(p.current_leader for t in topics for p in t.partitions)
                return encode_fetch_response(version, topics, session_id=session.session_id, node_endpoints=endpoints)
            await self.handlers.wait_for_append(remaining_s)

    def read_session(self, session, request, version: int, replica_id: int, first_pass: bool, full: bool):
        """One pass over a session's partitions: (topics, [(session partition, result)], bytes, any error)."""
        manager = self.handlers.replica_manager
        budget = request.max_bytes if request.max_bytes > 0 else 0
        missing_error = ErrorCode.unknown_topic_id if version >= 13 else ErrorCode.unknown_topic_or_partition
        total_bytes = 0
        has_error = False
        by_topic: dict[object, FetchTopicResult] = {}
        answered = []
        for session_partition in session.partitions.values():
            key = session_partition.topic_key
            if version >= 13:
                topic_state = manager.image.topic_by_id(key)
                name = topic_state.name if topic_state is not None else ""
            else:
                name = key
            if not full:
                replica = manager.hosted(name, session_partition.partition) if name else None
                if (replica is not None and replica.role == replication.LEADER
                        and session_partition.current_leader_epoch in (-1, replica.leader_epoch)
                        and session_partition.fetch_offset == replica.log.log_end_offset
                        and not session_partition.must_answer(replica.high_watermark, replica.log.log_start_offset)):
                    # nothing new for this follower here; it still counts as fetched (ISR, high watermark)
                    if first_pass:
                        manager.record_follower_fetch(replica, replica_id, session_partition.fetch_offset)
                    continue
            result = self.read_replica(manager, name, session_partition, replica_id, first_pass,
                                       max(budget - total_bytes, 0), total_bytes == 0, missing_error)
            has_error |= result.error_code != 0
            total_bytes += len(result.records)
            answered.append((session_partition, result))
            topic = by_topic.get(key)
            if topic is None:
                topic = by_topic[key] = FetchTopicResult(name, key if version >= 13 else uuid.UUID(int=0), [])
            topic.partitions.append(result)
        return list(by_topic.values()), answered, total_bytes, has_error

    def read_fetch(self, request, version: int, first_pass: bool = True) -> tuple[list[FetchTopicResult], int, bool]:
        budget = request.max_bytes if request.max_bytes > 0 else 0
        total_bytes = 0
        has_error = False
        results = []
        manager = self.handlers.replica_manager
        replica_id = fetch_replica_id(request, version)
        # logquake.debug.read.uncommitted (a planted bug): read_committed is served as
        # read_uncommitted, so aborted and still-open transactions are visible.
        read_committed = (getattr(request, "isolation_level", 0) == READ_COMMITTED and replica_id < 0
                          and not self.read_uncommitted_bug)
        for fetch_topic in request.topics:
            if manager is not None:
                if version >= 13:
                    topic_state = manager.image.topic_by_id(fetch_topic.topic_id)
                    name = topic_state.name if topic_state is not None else ""
                else:
                    name = fetch_topic.topic
                partitions = []
                for fetch_partition in fetch_topic.partitions:
                    result = self.read_replica(manager, name, fetch_partition, replica_id, first_pass,
                                               max(budget - total_bytes, 0), total_bytes == 0,
                                               ErrorCode.unknown_topic_id if version >= 13 else ErrorCode.unknown_topic_or_partition,
                                               read_committed)
                    has_error |= result.error_code != 0
                    total_bytes += len(result.records)
                    partitions.append(result)
                results.append(FetchTopicResult(name, fetch_topic.topic_id if version >= 13 else uuid.UUID(int=0), partitions))
                continue
            if version >= 13:
                info = self.topics.by_id.get(fetch_topic.topic_id)
                name = info.name if info is not None else ""
                missing_error = ErrorCode.unknown_topic_id
            else:
                name = fetch_topic.topic
                info = self.topics.by_name.get(name)
                missing_error = ErrorCode.unknown_topic_or_partition
            partitions = []
            for fetch_partition in fetch_topic.partitions:
                index = fetch_partition.partition
                state = self.partitions.get((name, index)) if info is not None else None
                if state is None:
                    has_error = True
                    partitions.append(FetchPartitionResult(index, missing_error.value))
                    continue
                partition_log = state.log
                high_watermark = partition_log.log_end_offset
                stable = state.producers.last_stable_offset(high_watermark)
                upper = stable if read_committed else high_watermark
                start = partition_log.log_start_offset
                offset = fetch_partition.fetch_offset
                result = FetchPartitionResult(index, 0, high_watermark, stable, start, b"")
                if fetch_partition.partition_max_bytes < 0:
                    has_error = True
                    result.error_code = negative_fetch_size_error(name, fetch_partition).value
                elif offset < start or offset > high_watermark:
                    has_error = True
                    result.error_code = ErrorCode.offset_out_of_range.value
                elif offset < upper and (budget > total_bytes or total_bytes == 0):
                    limit = min(fetch_partition.partition_max_bytes, max(budget - total_bytes, 0))
                    try:
                        data, error = self.read_log(partition_log, name, index, offset, limit, upper)
                    except OffsetOutOfRangeError:
                        data, error = b"", ErrorCode.offset_out_of_range.value
                    if error:
                        has_error = True
                        result.error_code = error
                    # KIP-74: only the first partition with data may exceed the budget (one whole batch).
                    if total_bytes and total_bytes + len(data) > budget:
                        data = b""
                    result.records = data
                    total_bytes += len(data)
                    if read_committed and data:
                        result.aborted_transactions = self.aborted_in(state.producers, offset, upper)
                    if not state.producers.ongoing and not state.producers.unreplicated:
                        # (unchanged for a real log; the null broker's virtual log may grow on read)
                        result.high_watermark = result.last_stable_offset = partition_log.log_end_offset
                partitions.append(result)
            results.append(FetchTopicResult(name, fetch_topic.topic_id if version >= 13 else uuid.UUID(int=0), partitions))
        return results, total_bytes, has_error

    @staticmethod
    def aborted_in(producers: ProducerStateTable, fetch_offset: int, upper_offset: int) -> list[tuple[int, int]]:
        return [(txn.producer_id, txn.first_offset) for txn in producers.aborted_overlapping(fetch_offset, upper_offset)]

    def read_replica(self, manager, name: str, fetch_partition, replica_id: int, first_pass: bool, budget_left: int,
                     first_data: bool, missing_error: ErrorCode, read_committed: bool = False) -> FetchPartitionResult:
        """Fetch from a replicated partition this node leads.

        Followers (replica_id >= 0) read up to the log end offset and report
        their progress; consumers read up to the high watermark, read_committed
        consumers up to the last stable offset. A fetch offset above the HW but
        within the log answers empty, not OFFSET_OUT_OF_RANGE (a new leader's HW
        may trail what the old one exposed). `budget_left` bounds the read with
        partition_max_bytes, as Kafka takes the smaller of the two; `first_data`:
        no data was taken yet, so one batch may exceed both (KIP-74).
        """
        index = fetch_partition.partition
        replica = manager.hosted(name, index) if name else None
        if replica is None:
            return FetchPartitionResult(index, self.handlers.unhosted_error(name, index, missing_error).value)
        if replica.role != replication.LEADER:
            result = FetchPartitionResult(index, ErrorCode.not_leader_or_follower.value)
            result.current_leader = self.handlers.leader_hint(name, index)
            return result
        current_leader_epoch = getattr(fetch_partition, "current_leader_epoch", -1)
        # logquake.debug.stale.epoch.fetch (a planted bug): only a newer epoch is refused; a follower or
        # consumer that missed a leader change is served from its old position as if nothing had changed.
        if manager.settings.stale_epoch_fetch and current_leader_epoch < replica.leader_epoch:
            current_leader_epoch = -1
        if current_leader_epoch != -1 and current_leader_epoch != replica.leader_epoch:
            error = ErrorCode.fenced_leader_epoch if current_leader_epoch < replica.leader_epoch else ErrorCode.unknown_leader_epoch
            result = FetchPartitionResult(index, error.value)
            if error == ErrorCode.fenced_leader_epoch:
                result.current_leader = (self.config.node_id, replica.leader_epoch)
            return result
        if fetch_partition.partition_max_bytes < 0:
            return FetchPartitionResult(index, negative_fetch_size_error(name, fetch_partition).value)
        partition_log = replica.log
        offset = fetch_partition.fetch_offset
        if replica_id >= 0 and first_pass:
            manager.record_follower_fetch(replica, replica_id, offset)
        high_watermark = replica.high_watermark
        state = self.partitions.get((name, index))
        # logquake.debug.read.above.hwm (a planted bug): consumers see records not yet
        # replicated, read_committed ones too (their stable offset is then taken
        # against the log end offset, not the high watermark).
        consumer_limit = partition_log.log_end_offset if manager.settings.read_above_hwm else high_watermark
        stable = state.producers.last_stable_offset(consumer_limit) if state is not None else consumer_limit
        limit_offset = partition_log.log_end_offset if replica_id >= 0 else consumer_limit
        start = partition_log.log_start_offset
        result = FetchPartitionResult(index, 0, high_watermark, stable, start, b"")
        if offset < start or offset > partition_log.log_end_offset:
            result.error_code = ErrorCode.offset_out_of_range.value
            return result
        if read_committed:
            limit_offset = min(limit_offset, stable)
        if offset >= limit_offset or (budget_left == 0 and not first_data):
            return result
        data, result.error_code = self.read_log(partition_log, name, index, offset,
                                                min(fetch_partition.partition_max_bytes, budget_left), limit_offset)
        if not first_data and len(data) > budget_left:
            data = b""
        result.records = data
        if read_committed and data and state is not None:
            result.aborted_transactions = self.aborted_in(state.producers, offset, limit_offset)
        return result
