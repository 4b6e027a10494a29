"""The leader append path: a partition's producer state and every append to its log as its leader.

`LeaderAppend` is the one port through which records enter a partition this
node leads, whoever sends them: Produce (clients), the group coordinator
(`__consumer_offsets`), the transaction coordinator (`__transaction_state` and
the commit/abort markers of WriteTxnMarkers). In Kafka this is Partition's
`appendRecordsToLeader` with ReplicaManager around it.

One append (`append`), in order:
- leadership: a partition this node does not host, or does not lead, is
  refused (UNKNOWN_TOPIC_OR_PARTITION / NOT_LEADER_OR_FOLLOWER); acks=-1 with an
  ISR smaller than min.insync.replicas gets NOT_ENOUGH_REPLICAS;
- the batch: exactly one v2 batch, its CRC (CORRUPT_MESSAGE), its size against
  max.message.bytes (MESSAGE_TOO_LARGE), its records decompressed (bounded) and
  walked, and its timestamps against the KIP-937 bounds
  (`broker.protocol.record_validation`);
- markers: only a caller that says `control` may write a control batch; a
  marker from an older coordinator epoch is TRANSACTION_COORDINATOR_FENCED;
- producers: a transactional batch of a fenced epoch is INVALID_PRODUCER_EPOCH;
  an idempotent batch is checked against the producer state (a duplicate is
  answered with its original offsets, a gap with OUT_OF_ORDER_SEQUENCE_NUMBER);
- the log: the append itself; one the disk refuses leaves the log as it was
  and is KAFKA_STORAGE_ERROR; then the producer state records the batch.
It returns an `AppendResult`; for acks=-1 on a replicated partition the result
names the replica and the offset the high watermark must pass.
`append_and_wait` appends, wakes the fetchers and waits for that high watermark.

The producer state of each partition lives here too: rebuilt on becoming
leader and at start from the newest `<offset>.snapshot` plus the log after it,
snapshotted at a clean stop and after a rebuild, and deleted when the replica
becomes a follower (its log may be cut and rewritten below a snapshot).

Planted bugs (off by default): `skip_dedup` (logquake.debug.skip.dedup: the
leader appends retries again) and `abort_marker_lost`
(logquake.debug.abort.marker.lost: a rebuild skips abort markers).

Thread-safety: none; everything runs on the broker's event loop.
Sources: Kafka's Partition.appendRecordsToLeader, LogValidator, ProducerStateManager (behaviour, not code).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from kio.schema.errors import ErrorCode

from broker.io import Runtime
from broker.protocol.record_validation import RecordValidationError, check_timestamps, max_uncompressed_bytes, validate_batch
from broker.protocol.records import CorruptRecordError, iter_batches
from broker.protocol.txn_markers import marker_info
from broker.replication import manager as replication
from broker.replication.producer_state import DUPLICATE, INVALID_EPOCH, OUT_OF_ORDER, SNAPSHOT_SUFFIX, ProducerStateTable

log = logging.getLogger("broker.server")

SINGLE_NODE_EPOCH = 0  # a single node's leader epoch: its leadership never changes
WAIT_ERRORS = {
    replication.NOT_ENOUGH_REPLICAS_AFTER_APPEND: ErrorCode.not_enough_replicas_after_append,
    replication.REQUEST_TIMED_OUT: ErrorCode.request_timed_out,
    replication.NOT_LEADER: ErrorCode.not_leader_or_follower,
}


@dataclass
class PartitionState:
    log: object  # PartitionLog (or NullPartitionLog)
    producers: ProducerStateTable


@dataclass(frozen=True)
class AppendResult:
    error: ErrorCode
    message: str | None = None
    base_offset: int = -1
    log_start_offset: int = -1
    # acks=-1 on a replicated partition: (replica, offset the high watermark must pass) before answering
    waiting: tuple | None = None

    @property
    def ok(self) -> bool:
        return self.error == ErrorCode.none


def _refused(error: ErrorCode, message: str) -> AppendResult:
    return AppendResult(error, message)


class LeaderAppend:
    """The partitions this node serves as leader: their producer state and their appends."""

    def __init__(self, runtime: Runtime, node_id: int, *, max_message_bytes: Callable[[str], int],
                 timestamp_bounds: Callable[[str], tuple[int, int]],
                 unhosted_error: Callable[[str, int, ErrorCode], ErrorCode], wake_fetchers: Callable[[], None],
                 skip_dedup: bool = False, abort_marker_lost: bool = False):
        self.runtime = runtime
        self.node_id = node_id
        self.max_message_bytes = max_message_bytes
        self.timestamp_bounds = timestamp_bounds
        self.unhosted_error = unhosted_error
        self.wake_fetchers = wake_fetchers
        self.skip_dedup = skip_dedup  # a planted bug (logquake.debug.skip.dedup)
        self.abort_marker_lost = abort_marker_lost  # a planted bug (logquake.debug.abort.marker.lost)
        self.partitions: dict[tuple[str, int], PartitionState] = {}
        self.replica_manager = None  # set in cluster mode

    # ---- producer state ----------------------------------------------------------

    def rebuild_partition_state(self, topic: str, partition: int, partition_log) -> PartitionState:
        """Producer state from the newest usable `<offset>.snapshot` plus the log after it (markers included)."""
        directory = getattr(partition_log, "directory", None)
        producers, start_offset = ProducerStateTable(), partition_log.log_start_offset
        if directory is not None:
            producers, snapshot_offset = ProducerStateTable.load_latest_snapshot(
                self.runtime.disk, directory, partition_log.log_end_offset)
            start_offset = max(snapshot_offset, partition_log.log_start_offset)

        def control_commit(header):
            return marker_info(partition_log.read(header.base_offset, header.size))

        replayed = producers.rebuild(partition_log.iter_batch_headers(start_offset), control_commit,
                                     skip_aborts=self.abort_marker_lost)
        if replayed:
            log.info("rebuilt producer state of %s-%d from %d idempotent batches after offset %d",
                     topic, partition, replayed, start_offset)
        if directory is not None and start_offset < partition_log.log_end_offset and (producers.producers or producers.aborted):
            try:
                self.write_producer_snapshot(producers, partition_log)
            except OSError as exc:  # a full disk at start: the next start replays the same batches again
                log.warning("producer state snapshot of %s-%d not written: %s", topic, partition, exc)
        return PartitionState(partition_log, producers)

    def serve(self, topic: str, partition: int, partition_log) -> None:
        """Lead `topic-partition` (at start, or on becoming its leader): rebuild its producer state from the log."""
        self.partitions[(topic, partition)] = self.rebuild_partition_state(topic, partition, partition_log)

    def stop_serving(self, topic: str, partition: int, partition_log=None) -> None:
        """No longer lead it; a follower's snapshots go (its log may be cut and rewritten below them)."""
        self.partitions.pop((topic, partition), None)
        if partition_log is not None:
            self.delete_producer_snapshots(partition_log)

    def write_producer_snapshot(self, producers: ProducerStateTable, partition_log) -> None:
        """Snapshot the producer state at the log end, keeping only the newest two snapshot files.

        A snapshot past the log end after a crash (unflushed tail) is ignored when loading;
        followers delete theirs (their log may be truncated and rewritten below it).
        """
        directory = partition_log.directory
        producers.write_snapshot(self.runtime.disk, directory, partition_log.log_end_offset)
        names = sorted(name for name in self.runtime.disk.listdir(directory) if name.endswith(SNAPSHOT_SUFFIX))
        for name in names[:-2]:
            self.runtime.disk.remove(f"{directory}/{name}")

    def delete_producer_snapshots(self, partition_log) -> None:
        directory = getattr(partition_log, "directory", None)
        if directory is None or not self.runtime.disk.exists(directory):
            return
        for name in self.runtime.disk.listdir(directory):
            if name.endswith(SNAPSHOT_SUFFIX):
                self.runtime.disk.remove(f"{directory}/{name}")

    def snapshot_producer_states(self) -> None:
        """At a clean stop: a snapshot per served partition, so the next start replays little of the log."""
        for (topic, partition), state in list(self.partitions.items()):
            directory = getattr(state.log, "directory", None)
            if directory is None or not state.producers.producers or not self.runtime.disk.exists(directory):
                continue
            try:
                self.write_producer_snapshot(state.producers, state.log)
            except OSError as exc:
                log.warning("producer state snapshot of %s-%d not written: %s", topic, partition, exc)

    # ---- appends -----------------------------------------------------------------

    def append(self, topic: str, partition: int, records, acks: int, control: bool = False) -> AppendResult:
        """Append one partition's batch as its leader (see the module docstring for the checks, in order).

        `control` True admits a commit/abort marker (WriteTxnMarkers only).
        """
        state = self.partitions.get((topic, partition))
        manager = self.replica_manager
        replica = None
        leader_epoch = SINGLE_NODE_EPOCH
        if manager is not None:
            replica = manager.hosted(topic, partition)
            if replica is None:
                return _refused(self.unhosted_error(topic, partition, ErrorCode.unknown_topic_or_partition),
                                f"this node hosts no partition {topic}-{partition}")
            if replica.role != replication.LEADER or state is None:
                return _refused(ErrorCode.not_leader_or_follower, (
                    f"this node ({self.node_id}) is not the leader of {topic}-{partition} (leader {replica.state.leader})"))
            if acks == -1 and len(replica.isr) < replica.min_insync_replicas:
                return _refused(ErrorCode.not_enough_replicas, (
                    f"the ISR of {topic}-{partition} is {replica.isr}, fewer than "
                    f"min.insync.replicas={replica.min_insync_replicas}"))
            leader_epoch = replica.leader_epoch
        if state is None:
            return _refused(ErrorCode.unknown_topic_or_partition, f"this node hosts no partition {topic}-{partition}")
        partition_log = state.log
        if not records:
            return _refused(ErrorCode.invalid_record, "the produce request carries no record batch")
        try:
            headers = list(iter_batches(records, validate_crc=True))
        except CorruptRecordError as exc:
            log.warning("corrupt record batch for %s-%d: %s", topic, partition, exc)
            return _refused(ErrorCode.corrupt_message, str(exc))
        if len(headers) != 1:
            return _refused(ErrorCode.invalid_record,
                            f"produce v3+ must carry exactly one record batch per partition, not {len(headers)}")
        _, batch = headers[0]
        limit = self.max_message_bytes(topic)
        if batch.size > limit:
            return _refused(ErrorCode.message_too_large, f"record batch of {batch.size} bytes exceeds max.message.bytes={limit}")
        try:
            validate_batch(records, 0, batch, max_uncompressed_bytes(limit))
            check_timestamps(batch, self.runtime.clock.wall_ms(), *self.timestamp_bounds(topic))
        except RecordValidationError as exc:
            log.warning("invalid record batch for %s-%d refused: %s", topic, partition, exc)
            return _refused(ErrorCode[exc.error], str(exc))
        marker = coordinator_epoch = None
        if batch.is_control:
            if not control:
                return _refused(ErrorCode.invalid_record, "clients may not write control batches")
            info = marker_info(bytes(records))
            assert info is not None, "append_marker passes only commit/abort control batches"
            marker, coordinator_epoch = info
            if state.producers.marker_fenced(batch.producer_id, coordinator_epoch):
                return _refused(ErrorCode.transaction_coordinator_fenced, (
                    f"marker for producer {batch.producer_id} from coordinator epoch {coordinator_epoch}, older than "
                    f"epoch {state.producers.coordinator_epochs[batch.producer_id]} already seen"))
        if batch.is_transactional and batch.producer_id >= 0 and state.producers.epoch_error(batch.producer_id, batch.producer_epoch):
            # a marker or TxnOffsetCommit batch of a fenced epoch (sequenced batches are checked below)
            return _refused(ErrorCode.invalid_producer_epoch,
                            f"producer {batch.producer_id} epoch {batch.producer_epoch} is older than the current epoch")
        idempotent = batch.producer_id >= 0 and batch.base_sequence >= 0 and marker is None
        # logquake.debug.skip.dedup (a planted bug): the leader appends retries again.
        if idempotent and not self.skip_dedup:
            verdict, cached = state.producers.check(batch)
            if verdict == DUPLICATE:
                log.info("duplicate batch for %s-%d from producer %d epoch %d sequences %d..%d: answering its original "
                         "offset %d", topic, partition, batch.producer_id, batch.producer_epoch, batch.base_sequence,
                         batch.last_sequence, cached.base_offset)
                waiting = (replica, cached.last_offset + 1) if replica is not None and acks == -1 else None
                return AppendResult(ErrorCode.none, None, cached.base_offset, partition_log.log_start_offset, waiting)
            if verdict == OUT_OF_ORDER and cached is not None:
                message = (f"producer {batch.producer_id} epoch {batch.producer_epoch} reuses sequences "
                           f"{batch.base_sequence}..{batch.last_sequence} of its batch at offset {cached.base_offset}, "
                           "whose transaction has ended; a producer must bump its epoch before reusing sequences")
                log.info("produce to %s-%d refused: %s", topic, partition, message)
                return _refused(ErrorCode.out_of_order_sequence_number, message)
            if verdict == OUT_OF_ORDER:
                return _refused(ErrorCode.out_of_order_sequence_number, (
                    f"producer {batch.producer_id} epoch {batch.producer_epoch} sent sequence {batch.base_sequence}, "
                    "which does not follow its last appended sequence"))
            if verdict == INVALID_EPOCH:
                return _refused(ErrorCode.invalid_producer_epoch,
                                f"producer {batch.producer_id} epoch {batch.producer_epoch} is older than the current epoch")
        try:
            result = partition_log.append(records, leader_epoch, headers)
        except OSError as exc:
            # a full disk or a failing log dir: nothing was appended (broker.log.log), the producer may retry
            log.warning("append to %s-%d failed: %s", topic, partition, exc)
            return _refused(ErrorCode.kafka_storage_error, f"append to {topic}-{partition} failed: {exc}")
        if marker is not None:
            state.producers.apply_marker(batch.producer_id, batch.producer_epoch, result.base_offset, marker,
                                         replicated=replica is None, coordinator_epoch=coordinator_epoch)
        elif idempotent:
            state.producers.record(batch, result.base_offset)
        elif batch.is_transactional and batch.producer_id >= 0:
            state.producers.begin_unsequenced(batch.producer_id, batch.producer_epoch, result.base_offset)
        waiting = None
        if replica is not None:
            manager.after_leader_append(replica)
            if acks == -1:
                waiting = (replica, result.last_offset + 1)
        return AppendResult(ErrorCode.none, None, result.base_offset, partition_log.log_start_offset, waiting)

    async def append_and_wait(self, topic: str, partition: int, records, timeout_ms: int,
                              control: bool = False) -> tuple[AppendResult, str]:
        """Append with acks=-1, wake the fetchers and wait until the high watermark passed the batch.

        Returns the append's result and the replication verdict (`broker.replication.manager`'s OK,
        NOT_ENOUGH_REPLICAS_AFTER_APPEND, REQUEST_TIMED_OUT, NOT_LEADER; OK on a single node); a refused
        append's verdict is "" (nothing was written)."""
        result = self.append(topic, partition, records, -1, control=control)
        if not result.ok:
            return result, ""
        self.wake_fetchers()
        if result.waiting is None:
            return result, replication.OK
        replica, required = result.waiting
        return result, await self.replica_manager.wait_for_high_watermark(replica, required, timeout_ms)
