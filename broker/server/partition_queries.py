"""Queries about one partition answered by its leader: ListOffsets, OffsetForLeaderEpoch, DescribeProducers.

`PartitionQueries` answers the three (registered through
broker.server.router). They read a partition's log, its leader epochs and its
producer state, and change nothing. On a single node every partition this
node holds is led by it at leader epoch 0; in cluster mode only the
partition's leader answers (`replica_error`: others get
NOT_LEADER_OR_FOLLOWER, an older current leader epoch FENCED_LEADER_EPOCH, a
newer one UNKNOWN_LEADER_EPOCH), and ListOffsets "latest" is the high
watermark, or the last stable offset for isolation_level=1.

Thread-safety: none; everything runs on the broker's event loop.
"""

from __future__ import annotations

import logging

from kio.schema.errors import ErrorCode

from broker.protocol import apis
from broker.replication import manager as replication
from broker.replication.leader_append import SINGLE_NODE_EPOCH
from broker.server.fetch import READ_COMMITTED

log = logging.getLogger("broker.server")

LEADER_EPOCH = SINGLE_NODE_EPOCH
EARLIEST_TIMESTAMP = -2
LATEST_TIMESTAMP = -1


class PartitionQueries:
    """ListOffsets, OffsetForLeaderEpoch and DescribeProducers of one node; `handlers` is its RequestHandlers."""

    def __init__(self, handlers):
        self.handlers = handlers
        self.partitions = handlers.partitions

    def apis(self) -> dict:
        """The APIs this part answers (broker.server.router)."""
        return {
            apis.LIST_OFFSETS: self.list_offsets,
            apis.OFFSET_FOR_LEADER_EPOCH: self.offset_for_leader_epoch,
            apis.DESCRIBE_PRODUCERS: self.describe_producers,
        }

    def list_offsets(self, header, request):
        module = apis.response_module(apis.LIST_OFFSETS, header.api_version)
        read_committed = getattr(request, "isolation_level", 0) == READ_COMMITTED
        topic_results = []
        for topic in request.topics:
            partition_results = []
            for part in topic.partitions:
                error, timestamp, offset = ErrorCode.none, -1, -1
                state = self.partitions.get((topic.name, part.partition_index))
                leader_epoch = LEADER_EPOCH
                latest = state.log.log_end_offset if state is not None else -1
                lagging = False
                if self.handlers.replica_manager is not None:
                    # Only the leader answers; "latest" is the high watermark (read_uncommitted).
                    error, replica = self.replica_error(topic.name, part.partition_index, getattr(part, "current_leader_epoch", -1))
                    if replica is not None:
                        leader_epoch, latest = replica.leader_epoch, replica.high_watermark
                        # KIP-207: a new leader whose high watermark has not reached the start of its epoch may
                        # still be behind what the previous leader had committed: OFFSET_NOT_AVAILABLE (retriable)
                        # until it has, rather than a latest offset that goes backwards.
                        leader = replica.leader_state
                        lagging = leader is not None and leader.high_watermark < leader.epoch_start_offset
                if state is not None and read_committed:
                    latest = state.producers.last_stable_offset(latest)
                if error != ErrorCode.none:
                    pass  # refused by the leadership check above: no offset to look up
                elif state is None:
                    error = ErrorCode.unknown_topic_or_partition
                elif part.timestamp == LATEST_TIMESTAMP and lagging:
                    error = ErrorCode.offset_not_available
                elif part.timestamp == LATEST_TIMESTAMP:
                    offset = latest
                elif part.timestamp == EARLIEST_TIMESTAMP:
                    offset = state.log.log_start_offset
                elif part.timestamp < 0:
                    error = ErrorCode.invalid_request
                    log.info("ListOffsets for %s-%d with unsupported timestamp %d", topic.name, part.partition_index, part.timestamp)
                else:
                    found = state.log.offset_for_timestamp(part.timestamp)
                    if found is not None:
                        offset, timestamp = found
                partition_results.append(
                    apis.build_entity(
                        module,
                        "ListOffsetsPartitionResponse",
                        partition_index=part.partition_index,
                        error_code=error,
                        timestamp=timestamp,
                        offset=offset,
                        leader_epoch=leader_epoch if error == ErrorCode.none else -1,
                    )
                )
            topic_results.append(apis.build_entity(module, "ListOffsetsTopicResponse", name=topic.name, partitions=tuple(partition_results)))
        return apis.build_entity(module, "ListOffsetsResponse", throttle_time=apis.ZERO_MS, topics=tuple(topic_results))

    def replica_error(self, topic: str, partition: int, current_leader_epoch: int):
        """(error, replica) for a request that only the partition's leader may answer."""
        replica = self.handlers.replica_manager.hosted(topic, partition)
        if replica is None:
            return self.handlers.unhosted_error(topic, partition, ErrorCode.unknown_topic_or_partition), None
        if replica.role != replication.LEADER:
            return ErrorCode.not_leader_or_follower, None
        if current_leader_epoch != -1 and current_leader_epoch < replica.leader_epoch:
            return ErrorCode.fenced_leader_epoch, None
        if current_leader_epoch > replica.leader_epoch:
            return ErrorCode.unknown_leader_epoch, None
        return ErrorCode.none, replica

    # ---- DescribeProducers (KIP-664) ---------------------------------------------

    def describe_producers(self, header, request):
        """The producers a partition's leader tracks: id, epoch, last sequence, the coordinator epoch of
        their last marker and the first offset of their open transaction (-1: none). No batch timestamps
        are kept, so last_timestamp is -1."""
        module = apis.response_module(apis.DESCRIBE_PRODUCERS, header.api_version)
        topics = []
        for topic in request.topics:
            partitions = []
            for index in topic.partition_indexes:
                if self.handlers.replica_manager is not None:
                    error = self.replica_error(topic.name, index, -1)[0]
                else:
                    error = ErrorCode.none if (topic.name, index) in self.partitions else ErrorCode.unknown_topic_or_partition
                state = self.partitions.get((topic.name, index)) if error == ErrorCode.none else None
                if state is None:
                    error = error if error != ErrorCode.none else ErrorCode.not_leader_or_follower
                    partitions.append(apis.build_entity(module, "PartitionResponse", partition_index=index, error_code=error,
                                             error_message=error.name, active_producers=()))
                    continue
                table = state.producers
                producers = tuple(
                    apis.build_entity(module, "ProducerState", producer_id=producer_id, producer_epoch=entry.epoch,
                           last_sequence=entry.batches[-1].last_sequence if entry.batches else -1, last_timestamp=-1,
                           coordinator_epoch=table.coordinator_epochs.get(producer_id, -1),
                           current_txn_start_offset=table.ongoing.get(producer_id, -1))
                    for producer_id, entry in sorted(table.producers.items()))
                partitions.append(apis.build_entity(module, "PartitionResponse", partition_index=index, error_code=ErrorCode.none,
                                         error_message=None, active_producers=producers))
            topics.append(apis.build_entity(module, "TopicResponse", name=topic.name, partitions=tuple(partitions)))
        return apis.build_entity(module, "DescribeProducersResponse", throttle_time=apis.ZERO_MS, topics=tuple(topics))

    # ---- OffsetForLeaderEpoch ----------------------------------------------------

    def offset_for_leader_epoch(self, header, request):
        """Where the requested leader epoch ends in this leader's log (KIP-101; KIP-279 names the epoch)."""
        module = apis.response_module(apis.OFFSET_FOR_LEADER_EPOCH, header.api_version)
        topic_results = []
        for topic in request.topics:
            partition_results = []
            for part in topic.partitions:
                epoch, end_offset = -1, -1
                if self.handlers.replica_manager is not None:
                    error, replica = self.replica_error(topic.topic, part.partition, part.current_leader_epoch)
                    if replica is not None and part.leader_epoch > replica.leader_epoch:
                        # The asker holds a record written at a later epoch than this leader's:
                        # this leader is deposed and does not know it yet. Kafka's answer here
                        # (no such epoch, -1/-1) makes a KIP-320 consumer that sent no current
                        # epoch, as librdkafka may, reset its position by auto.offset.reset,
                        # and a Docker run saw it re-read a partition from offset 0 so;
                        # "your epoch is newer than mine" sends it to refresh its metadata.
                        error, replica = ErrorCode.unknown_leader_epoch, None
                    if replica is not None:
                        epoch, end_offset = replica.epochs.end_offset_for(part.leader_epoch, replica.log.log_end_offset)
                else:
                    state = self.partitions.get((topic.topic, part.partition))
                    error = ErrorCode.unknown_topic_or_partition if state is None else ErrorCode.none
                    if state is not None and part.leader_epoch == LEADER_EPOCH:
                        epoch, end_offset = LEADER_EPOCH, state.log.log_end_offset
                partition_results.append(apis.build_entity(module, "EpochEndOffset", error_code=error, partition=part.partition,
                                                leader_epoch=epoch, end_offset=end_offset))
            topic_results.append(apis.build_entity(module, "OffsetForLeaderTopicResult", topic=topic.topic, partitions=tuple(partition_results)))
        return apis.build_entity(module, "OffsetForLeaderEpochResponse", throttle_time=apis.ZERO_MS, topics=tuple(topic_results))

