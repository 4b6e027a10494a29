"""The transaction APIs of one broker node, wired to its `TransactionCoordinator` and `__transaction_state` (KIP-98).

`TxnApis` installs the handlers of AddPartitionsToTxn (v0-3), AddOffsetsToTxn,
EndTxn, TxnOffsetCommit, WriteTxnMarkers, ListTransactions and
DescribeTransactions (KIP-664's tooling) into a `RequestHandlers`, answers
InitProducerId with a transactional.id and FindCoordinator with key_type 1
(transactions; groups stay with `GroupApis`), and follows the node's leadership
of `__transaction_state` partitions (`TxnAwareLifecycle`): becoming leader
replays the partition into the coordinator (which re-sends the markers of
transactions left in PrepareCommit/PrepareAbort), losing it unloads them.

The internal topic `__transaction_state` (transaction.state.log.num.partitions
partitions, replication factor min(transaction.state.log.replication.factor,
live brokers)) is created on the first FindCoordinator for a transaction: through
the controller in cluster mode (`create_topic`, set by `broker.server.cluster`),
locally on a one-node broker. Until its partition has a leader, FindCoordinator
answers COORDINATOR_NOT_AVAILABLE (clients retry).

Parts:
- `HandlerTxnStateLog` appends state records (key: the transactional id, value:
  `TxnRecord.encode_value`) through the leader append path with acks=all, so a
  client is answered only once its transaction's state survives a failover;
- `PoolMarkerSender` writes each marker job's control batches: to partitions this
  node leads directly (`write_marker`), to the others as WriteTxnMarkers v1 over
  a `ConnectionPool`; a partition of a deleted topic counts as written. As
  Kafka's TransactionMarkerChannelManager, it keeps one request in flight per
  destination broker and the next one carries the markers of every transaction
  queued for that broker meanwhile (a receiving broker serves a connection's
  requests one at a time, so requests pipelined behind one another would each
  wait for the previous one's replication);
- `write_marker` (the WriteTxnMarkers handler's work on a partition leader)
  appends the control batch as the producer's id and epoch (an older epoch gets
  INVALID_PRODUCER_EPOCH), waits until the high watermark passed it, then, for
  `__consumer_offsets`, lets the group coordinator commit or drop the
  transaction's offsets (`complete_txn`); the handler appends every marker of
  a request at once and waits for them together;
- timed-out transactions are aborted every
  transaction.abort.timed.out.transaction.cleanup.interval.ms (`expire_once`).

Errors clients see: NOT_COORDINATOR (this node does not lead the id's
partition), CONCURRENT_TRANSACTIONS (markers of the previous transaction still
being written), PRODUCER_FENCED (INVALID_PRODUCER_EPOCH for versions before
KIP-588's: InitProducerId < 4, AddPartitionsToTxn / AddOffsetsToTxn / EndTxn < 2),
INVALID_PRODUCER_ID_MAPPING (unknown transactional id or producer id),
INVALID_TXN_STATE, INVALID_TRANSACTION_TIMEOUT (above transaction.max.timeout.ms).
Not served: AddPartitionsToTxn v4+ (the batched broker-to-broker verification of
KIP-890) and transaction version 2; Produce does not verify that a partition was
added to the transaction (as Kafka before KIP-890).

Thread-safety: none; everything runs on the broker's event loop.
Sources: KIP-98, KIP-447, KIP-360, KIP-588, KIP-699 (FindCoordinator batching),
the Kafka protocol guide (behaviour, not code).
"""

from __future__ import annotations

import asyncio
import datetime
import importlib
import inspect
import logging

from kio.schema.errors import ErrorCode

from broker.coordinator import group_records
from broker.coordinator.group_handlers import OFFSETS_TOPIC, read_partition
from broker.coordinator.internal_topic import ensure_internal_topic, find_coordinator_response, locate_coordinator
from broker.coordinator.txn_coordinator import (
    TRANSACTION_STATE_TOPIC,
    TransactionCoordinator,
    TxnStateLogError,
)
from broker.protocol.txn_markers import build_marker_batch
from broker.replication.leader_append import WAIT_ERRORS
from broker.coordinator.txn_state import (OTHER_STATE_NAMES, STATE_NAMES, MarkerJob, TxnRecord, fenced_error,
                                          partition_for)
from broker.metadata.errors import ControllerError
from broker.protocol.apis import build_entity, response_module
from broker.protocol import apis
from broker.protocol.client import ClientError, ConnectionPool
from broker.protocol.records import build_batch
from broker.replication import manager as replication

log = logging.getLogger("broker.coordinator.txn")

KEY_TYPE_TRANSACTION = 1
APPEND_TIMEOUT_MS = 5000
MARKER_REQUEST_TIMEOUT_S = 10.0
WRITE_TXN_MARKERS_VERSION = 1
ZERO_MS = datetime.timedelta(0)


def _ms(value) -> int:
    return int(value.total_seconds() * 1000) if isinstance(value, datetime.timedelta) else int(value)


def _not_replicated_error(verdict) -> ErrorCode:
    # Kafka's mapping for coordinator log appends: the client looks the coordinator up again and retries
    return ErrorCode.not_coordinator if verdict == replication.NOT_LEADER else ErrorCode.coordinator_not_available


class HandlerTxnStateLog:
    """`TxnStateLog` over the node's leader append path (acks=all)."""

    def __init__(self, handlers):
        self.handlers = handlers

    async def append(self, partition: int, records: list[TxnRecord]) -> None:
        handlers = self.handlers
        entries = [(record.transactional_id.encode("utf-8"), record.encode_value()) for record in records]
        batch = bytearray(build_batch(entries, base_timestamp=handlers.runtime.clock.wall_ms()))
        result, verdict = await handlers.leader.append_and_wait(TRANSACTION_STATE_TOPIC, partition, batch, APPEND_TIMEOUT_MS)
        if not result.ok:
            error = result.error
            mapped = (ErrorCode.not_coordinator if error in (ErrorCode.not_leader_or_follower, ErrorCode.unknown_topic_or_partition)
                      else ErrorCode.coordinator_not_available)
            raise TxnStateLogError(mapped, f"append to {TRANSACTION_STATE_TOPIC}-{partition} refused: {error.name} ({result.message})")
        if verdict != replication.OK:
            raise TxnStateLogError(_not_replicated_error(verdict),
                                   f"append to {TRANSACTION_STATE_TOPIC}-{partition} not replicated: {verdict}")


class _QueuedMarker:
    """One transaction's markers waiting for the next WriteTxnMarkers request to their partitions' leader."""

    __slots__ = ("job", "partitions", "coordinator_epoch", "future")

    def __init__(self, job: MarkerJob, partitions: list[tuple[str, int]], coordinator_epoch: int, future):
        self.job = job
        self.partitions = partitions
        self.coordinator_epoch = coordinator_epoch
        self.future = future  # set to {(topic, partition): ErrorCode}; cancelled when its marker task is


class PoolMarkerSender:
    """`MarkerSender`: local partitions directly, the others' leaders by WriteTxnMarkers v1.

    Remote markers go through a queue per destination broker, drained by one
    task at a time (`_drain`): a request carries every transaction queued when
    it leaves, the next waits for its answer. A lone transaction's markers thus
    leave at once, as before; concurrent ones share requests instead of queueing
    behind each other on the connection. Two markers of one producer never share
    a request (the response is keyed by producer id); the second waits for the
    next one."""

    def __init__(self, txn_apis: "TxnApis"):
        self.txn_apis = txn_apis
        self.pool: ConnectionPool | None = None
        self._queues: dict[int, list[_QueuedMarker]] = {}  # destination broker -> markers not yet sent
        self._drains: dict[int, asyncio.Task] = {}  # destination broker -> the task sending its queue

    def _pool(self) -> ConnectionPool:
        if self.pool is None:
            handlers = self.txn_apis.handlers
            self.pool = ConnectionPool(handlers.runtime, f"logquake-txn-markers-{handlers.config.node_id}",
                                       handlers.config.outbound_address)
        return self.pool

    async def write_markers(self, job: MarkerJob, coordinator_epoch: int) -> dict[tuple[str, int], ErrorCode]:
        handlers = self.txn_apis.handlers
        manager = handlers.replica_manager
        results: dict[tuple[str, int], ErrorCode] = {}
        remote: dict[int, list[tuple[str, int]]] = {}
        local: list[tuple[str, int]] = []
        for topic, partition in job.partitions:
            if manager is None:
                local.append((topic, partition))
                continue
            topic_state = manager.image.topics.get(topic)
            if topic_state is None:
                log.info("marker for deleted topic %s dropped (transaction %r)", topic, job.transactional_id)
                results[(topic, partition)] = ErrorCode.none
                continue
            state = topic_state.partitions.get(partition)
            if state is None or state.leader < 0 or state.leader not in manager.image.brokers:
                results[(topic, partition)] = ErrorCode.leader_not_available
            elif state.leader == handlers.config.node_id:
                local.append((topic, partition))
            else:
                remote.setdefault(state.leader, []).append((topic, partition))
        jobs = [self._local(job, tp, coordinator_epoch) for tp in local]
        jobs += [self._remote(job, leader, tps, coordinator_epoch) for leader, tps in remote.items()]
        for answer in await asyncio.gather(*jobs):
            results.update(answer)
        failed = {tp: e.name for tp, e in results.items() if e != ErrorCode.none}
        if failed:
            log.info("markers of %r (producer %d epoch %d) not yet written: %s", job.transactional_id, job.producer_id,
                     job.producer_epoch, failed)
        return results

    async def _local(self, job: MarkerJob, tp: tuple[str, int], coordinator_epoch: int):
        error = await self.txn_apis.write_marker(tp[0], tp[1], job.producer_id, job.producer_epoch, job.commit,
                                                 coordinator_epoch)
        return {tp: error}

    async def _remote(self, job: MarkerJob, leader: int, tps: list[tuple[str, int]], coordinator_epoch: int):
        """Queue the job's markers for `leader` and wait for the answer of the request that carries them."""
        loop = asyncio.get_running_loop()
        queued = _QueuedMarker(job, tps, coordinator_epoch, loop.create_future())
        self._queues.setdefault(leader, []).append(queued)
        if leader not in self._drains:
            self._drains[leader] = loop.create_task(self._drain(leader))
        return await queued.future

    async def _drain(self, leader: int) -> None:
        """Send `leader`'s queue, one request at a time, until it is empty."""
        queue = self._queues[leader]
        batch: list[_QueuedMarker] = []
        try:
            while queue:
                batch, held, producers = [], [], set()
                for queued in queue:
                    if queued.future.done():
                        continue  # its marker task was cancelled (resigned coordinator, shutdown)
                    (held if queued.job.producer_id in producers else batch).append(queued)
                    producers.add(queued.job.producer_id)
                queue[:] = held
                if not batch:
                    continue
                try:
                    answers = await self._send(leader, batch)
                except Exception:  # an answer is always due: the marker tasks send again after an error
                    log.exception("WriteTxnMarkers to node %d failed", leader)
                    answers = [{tp: ErrorCode.unknown_server_error for tp in queued.partitions} for queued in batch]
                for queued, answer in zip(batch, answers):
                    if not queued.future.done():
                        queued.future.set_result(answer)
        finally:
            del self._drains[leader]
            # left over only when this task is cancelled (close): nobody will send them
            for queued in batch + self._queues.pop(leader, []):
                queued.future.cancel()

    async def _send(self, leader: int, batch: list[_QueuedMarker]) -> list[dict[tuple[str, int], ErrorCode]]:
        """One WriteTxnMarkers request carrying `batch` (distinct producer ids); each entry's errors per partition."""
        failed = [{tp: ErrorCode.coordinator_not_available for tp in queued.partitions} for queued in batch]
        broker = self.txn_apis.handlers.replica_manager.image.brokers.get(leader)
        if broker is None:
            log.info("WriteTxnMarkers to node %d not sent: it left the cluster", leader)
            return [{tp: ErrorCode.leader_not_available for tp in queued.partitions} for queued in batch]
        module = _request_module(apis.WRITE_TXN_MARKERS, WRITE_TXN_MARKERS_VERSION)
        markers = []
        for queued in batch:
            by_topic: dict[str, list[int]] = {}
            for topic, partition in queued.partitions:
                by_topic.setdefault(topic, []).append(partition)
            job = queued.job
            markers.append(module.WritableTxnMarker(
                producer_id=job.producer_id, producer_epoch=job.producer_epoch, transaction_result=job.commit,
                topics=tuple(module.WritableTxnMarkerTopic(name=t, partition_indexes=tuple(ps)) for t, ps in by_topic.items()),
                coordinator_epoch=queued.coordinator_epoch))
        request = module.WriteTxnMarkersRequest(markers=tuple(markers))
        try:
            body = await self._pool().request(broker.host, broker.port, apis.WRITE_TXN_MARKERS, WRITE_TXN_MARKERS_VERSION,
                                              apis.encode_request(request), MARKER_REQUEST_TIMEOUT_S)
        except ClientError as exc:
            log.info("WriteTxnMarkers to node %d failed: %s", leader, exc)
            return failed
        try:
            response = apis.decode_response(apis.WRITE_TXN_MARKERS, WRITE_TXN_MARKERS_VERSION, body)
        except Exception as exc:  # kio raises assorted errors on bad bytes; the markers are simply sent again
            log.warning("undecodable WriteTxnMarkers response from node %d: %s: %s", leader, type(exc).__name__, exc)
            return [{tp: ErrorCode.unknown_server_error for tp in queued.partitions} for queued in batch]
        by_producer: dict[int, dict[tuple[str, int], ErrorCode]] = {}
        for marker in response.markers:
            errors = by_producer.setdefault(marker.producer_id, {})
            for topic in marker.topics:
                for part in topic.partitions:
                    errors[(topic.name, part.partition_index)] = ErrorCode(part.error_code)
        answers = []
        for queued in batch:
            errors = by_producer.get(queued.job.producer_id, {})
            answers.append({tp: errors.get(tp, ErrorCode.unknown_server_error) for tp in queued.partitions})
        return answers

    async def close(self) -> None:
        drains = list(self._drains.values())
        for task in drains:
            task.cancel()
        await asyncio.gather(*drains, return_exceptions=True)
        if self.pool is not None:
            await self.pool.close_all()


def _request_module(api_key: int, version: int):
    return importlib.import_module(apis.request_class(api_key, version).__module__)


class TxnApis:
    def __init__(self, handlers):
        self.handlers = handlers
        config = handlers.config
        self.num_partitions = config.value("transaction.state.log.num.partitions")
        self.replication_factor = config.value("transaction.state.log.replication.factor")
        self.cleanup_interval_ms = config.value("transaction.abort.timed.out.transaction.cleanup.interval.ms")
        self.marker_sender = PoolMarkerSender(self)
        self.coordinator = TransactionCoordinator(
            handlers.runtime.clock.wall_ms, HandlerTxnStateLog(handlers), self.marker_sender, self._take_producer_id,
            self.num_partitions, max_timeout_ms=config.value("transaction.max.timeout.ms"),
            sleep=handlers.runtime.clock.sleep)
        self._producer_ids: list[int] = []  # allocated ahead: the state machine allocates synchronously
        # set by broker.server.cluster: async (name, partitions, replication factor) -> None
        self.create_topic = None
        self._creating: asyncio.Future | None = None
        self._expiry_task: asyncio.Task | None = None
        self._stopped = False

    def apis(self) -> dict:
        """The transaction APIs (broker.server.router); FindCoordinator for transactional ids is `find_coordinator`."""
        return {
            apis.ADD_PARTITIONS_TO_TXN: self.add_partitions_to_txn,
            apis.ADD_OFFSETS_TO_TXN: self.add_offsets_to_txn,
            apis.END_TXN: self.end_txn,
            apis.WRITE_TXN_MARKERS: self.write_txn_markers,
            apis.TXN_OFFSET_COMMIT: self.txn_offset_commit,
            apis.LIST_TRANSACTIONS: self.list_transactions,
            apis.DESCRIBE_TRANSACTIONS: self.describe_transactions,
        }

    # ---- producer ids ---------------------------------------------------------------------

    def _take_producer_id(self) -> int:
        assert self._producer_ids, "a producer id is allocated before every state machine step that may need one"
        return self._producer_ids.pop()

    async def _reserve_producer_id(self) -> ErrorCode:
        if self._producer_ids:
            return ErrorCode.none
        try:
            value = self.handlers.producer_ids.allocate()
            if inspect.isawaitable(value):
                value = await value
        except ControllerError as exc:
            log.info("no producer id for a transaction: %s", exc)
            return ErrorCode.coordinator_not_available
        self._producer_ids.append(value)
        return ErrorCode.none

    # ---- lifecycle --------------------------------------------------------------------------

    def on_request(self) -> None:
        """Any request on a one-node broker: start the coordinator if `__transaction_state` exists.

        Nothing else runs inside the event loop before the first request after a
        (re)start, and transactions left open or prepared must be timed out or
        completed even if no transactional client comes back.
        """
        if (self._expiry_task is None and not self._stopped and self.handlers.replica_manager is None
                and TRANSACTION_STATE_TOPIC in self.handlers.topics.by_name):
            self._ensure_started()

    def _ensure_started(self) -> None:
        if self._expiry_task is None and not self._stopped:
            self._expiry_task = asyncio.get_running_loop().create_task(self._expire_loop())
            if self.handlers.replica_manager is None:
                self.loaded_locally()

    async def _expire_loop(self) -> None:
        clock = self.handlers.runtime.clock
        while True:
            await clock.sleep(self.cleanup_interval_ms / 1000)
            if await self._reserve_producer_id() != ErrorCode.none:
                continue
            aborted = await self.coordinator.expire_once()
            if aborted:
                log.info("aborted %d transactions past their transaction.timeout.ms", aborted)

    def loaded_locally(self) -> None:
        """One-node mode: this node leads every partition of __transaction_state that exists."""
        for (topic, partition), state in list(self.handlers.partitions.items()):
            if topic == TRANSACTION_STATE_TOPIC and partition not in self.coordinator.owned:
                self.on_become_leader(topic, partition, state.log)

    def on_become_leader(self, topic: str, partition: int, partition_log) -> None:
        if topic != TRANSACTION_STATE_TOPIC:
            return
        manager = self.handlers.replica_manager
        replica = manager.hosted(topic, partition) if manager is not None else None
        coordinator_epoch = replica.leader_epoch if replica is not None else 0
        records = []
        for chunk in read_partition(partition_log):
            for header, entries in group_records.iter_records(chunk):
                if header.is_control:
                    continue
                for key, value in entries:
                    if key is None or value is None:
                        continue
                    try:
                        records.append(TxnRecord.decode(key, value))
                    except (ValueError, UnicodeDecodeError) as exc:
                        log.warning("unreadable record in %s-%d at batch %d skipped: %s", topic, partition,
                                    header.base_offset, exc)
        self.coordinator.on_become_leader(partition, coordinator_epoch, records)
        log.info("leading %s-%d (coordinator epoch %d): %d transactional ids loaded", topic, partition, coordinator_epoch,
                 len(self.coordinator.owned[partition][1].transactions))
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        self._ensure_started()

    def on_not_leader(self, topic: str, partition: int) -> None:
        if topic == TRANSACTION_STATE_TOPIC:
            self.coordinator.on_resign(partition)

    def stop_nowait(self) -> None:
        """Stop the expiry loop and the marker tasks (a clean stop; a new leader re-sends unfinished markers)."""
        self._stopped = True
        if self._expiry_task is not None:
            self._expiry_task.cancel()
        for task in self.coordinator.marker_tasks.values():
            task.cancel()

    async def stop(self) -> None:
        self.stop_nowait()
        await self.coordinator.close()
        if self._expiry_task is not None:
            await asyncio.gather(self._expiry_task, return_exceptions=True)
        await self.marker_sender.close()

    # ---- FindCoordinator ------------------------------------------------------------------

    async def _ensure_topic(self) -> None:
        await ensure_internal_topic(self, TRANSACTION_STATE_TOPIC)

    def _locate(self, transactional_id: str):
        """(error, message, node id, host, port) of the coordinator of `transactional_id`."""
        return locate_coordinator(self.handlers, TRANSACTION_STATE_TOPIC,
                                  partition_for(transactional_id, self.num_partitions),
                                  f"transactional id {transactional_id!r}")

    async def find_coordinator(self, header, request):
        self._ensure_started()
        module = _response_module(apis.FIND_COORDINATOR, header.api_version)
        await self._ensure_topic()
        return find_coordinator_response(_build, module, header.api_version, request, self._locate,
                                         "the transactional id is empty; expected a non-empty transactional.id", ZERO_MS)

    # ---- InitProducerId ---------------------------------------------------------------------

    async def init_producer_id(self, header, request):
        self._ensure_started()
        version = header.api_version
        module = _response_module(apis.INIT_PRODUCER_ID, version)
        transactional_id = request.transactional_id
        timeout_ms = _ms(request.transaction_timeout)
        error = ErrorCode.none
        if not transactional_id:
            error = ErrorCode.invalid_request
            log.info("InitProducerId with an empty transactional.id refused")
        expected = (getattr(request, "producer_id", -1), getattr(request, "producer_epoch", -1))
        if error == ErrorCode.none and expected[0] >= 0:
            # KIP-360: a producer asking to bump its own epoch must still hold it
            current = self.coordinator.lookup(transactional_id)
            if current is not None and (current.producer_id, current.producer_epoch) != expected:
                error = ErrorCode.producer_fenced
        if error == ErrorCode.none:
            error = await self._reserve_producer_id()
        producer_id, producer_epoch = -1, -1
        if error == ErrorCode.none:
            outcome = await self.coordinator.init_producer_id(transactional_id, timeout_ms)
            error, producer_id, producer_epoch = outcome.error, outcome.producer_id, outcome.producer_epoch
        if error == ErrorCode.producer_fenced:
            error = fenced_error(version >= 4)
        if error != ErrorCode.none:
            log.info("InitProducerId for transactional.id %r: %s", transactional_id, error.name)
            producer_id, producer_epoch = -1, -1
        return _build(module, "InitProducerIdResponse", throttle_time=ZERO_MS, error_code=error,
                      producer_id=producer_id, producer_epoch=producer_epoch)

    # ---- ListTransactions / DescribeTransactions (KIP-664) ----------------------------------------

    def list_transactions(self, header, request):
        """The transactional ids this node coordinates, filtered by state, producer id and, from v1, by
        how long their transaction has been open (`duration_filter` ms; negative: no filter)."""
        module = _response_module(apis.LIST_TRANSACTIONS, header.api_version)
        known = set(STATE_NAMES.values()) | set(OTHER_STATE_NAMES)
        states = set(request.state_filters)
        producer_ids = set(request.producer_id_filters)
        min_duration_ms = getattr(request, "duration_filter", -1)
        now_ms = self.handlers.runtime.clock.wall_ms()
        listed = []
        for txn in sorted(self.coordinator.coordinated(), key=lambda t: t.transactional_id):
            name = STATE_NAMES[txn.state]
            if states and name not in states or producer_ids and txn.producer_id not in producer_ids:
                continue
            if min_duration_ms >= 0 and (txn.start_ms < 0 or now_ms - txn.start_ms <= min_duration_ms):
                continue
            listed.append(_build(module, "TransactionState", transactional_id=txn.transactional_id,
                                 producer_id=txn.producer_id, transaction_state=name))
        return _build(module, "ListTransactionsResponse", throttle_time=ZERO_MS, error_code=ErrorCode.none,
                      unknown_state_filters=tuple(sorted(states - known)), transaction_states=tuple(listed))

    def describe_transactions(self, header, request):
        """Each id's state, producer, timeout, start time and partitions; NOT_COORDINATOR where this node
        does not coordinate it, TRANSACTIONAL_ID_NOT_FOUND where it knows no such id."""
        module = _response_module(apis.DESCRIBE_TRANSACTIONS, header.api_version)
        described = []
        for transactional_id in request.transactional_ids:
            txn = self.coordinator.lookup(transactional_id)
            if txn is None:
                error = (ErrorCode.transactional_id_not_found if self.coordinator.owns(transactional_id)
                         else ErrorCode.not_coordinator)
                described.append(_build(module, "TransactionState", error_code=error, transactional_id=transactional_id,
                                        transaction_state="", transaction_timeout=ZERO_MS, transaction_start_time=_wall(-1),
                                        producer_id=-1, producer_epoch=-1, topics=()))
                continue
            by_topic: dict[str, list[int]] = {}
            for topic, partition in sorted(txn.partitions):
                by_topic.setdefault(topic, []).append(partition)
            described.append(_build(
                module, "TransactionState", error_code=ErrorCode.none, transactional_id=transactional_id,
                transaction_state=STATE_NAMES[txn.state], transaction_timeout=datetime.timedelta(milliseconds=txn.timeout_ms),
                transaction_start_time=_wall(txn.start_ms), producer_id=txn.producer_id, producer_epoch=txn.producer_epoch,
                topics=tuple(_build(module, "TopicData", topic=topic, partitions=tuple(parts)) for topic, parts in by_topic.items())))
        return _build(module, "DescribeTransactionsResponse", throttle_time=ZERO_MS, transaction_states=tuple(described))

    # ---- AddPartitionsToTxn / AddOffsetsToTxn / EndTxn ------------------------------------------

    def _topic_error(self, topic: str, partition: int) -> ErrorCode:
        info = self.handlers.topics.by_name.get(topic)
        if info is None or not 0 <= partition < info.partitions:
            return ErrorCode.unknown_topic_or_partition
        return ErrorCode.none

    async def add_partitions_to_txn(self, header, request):
        self._ensure_started()
        version = header.api_version
        module = _response_module(apis.ADD_PARTITIONS_TO_TXN, version)
        transactional_id = request.v3_and_below_transactional_id
        wanted = [(t.name, p) for t in request.v3_and_below_topics for p in t.partitions]
        errors = {tp: self._topic_error(*tp) for tp in wanted}
        if any(e != ErrorCode.none for e in errors.values()):
            # Kafka's rule: nothing is added when one partition is unknown; the rest were not attempted
            errors = {tp: (e if e != ErrorCode.none else ErrorCode.operation_not_attempted) for tp, e in errors.items()}
        else:
            outcome = await self.coordinator.add_partitions(transactional_id, request.v3_and_below_producer_id,
                                                            request.v3_and_below_producer_epoch, wanted)
            error = fenced_error(version >= 2) if outcome.error == ErrorCode.producer_fenced else outcome.error
            errors = {tp: error for tp in wanted}
        if any(e != ErrorCode.none for e in errors.values()):
            log.info("AddPartitionsToTxn for %r: %s", transactional_id,
                     {f"{t}-{p}": e.name for (t, p), e in errors.items() if e != ErrorCode.none})
        by_topic: dict[str, list] = {}
        for (topic, partition), error in errors.items():
            by_topic.setdefault(topic, []).append(_build(module, "AddPartitionsToTxnPartitionResult",
                                                         partition_index=partition, partition_error_code=error))
        return _build(module, "AddPartitionsToTxnResponse", throttle_time=ZERO_MS, results_by_topic_v3_and_below=tuple(
            _build(module, "AddPartitionsToTxnTopicResult", name=topic, results_by_partition=tuple(results))
            for topic, results in by_topic.items()))

    async def add_offsets_to_txn(self, header, request):
        self._ensure_started()
        version = header.api_version
        module = _response_module(apis.ADD_OFFSETS_TO_TXN, version)
        group_apis = self.handlers.group_apis
        group_apis._ensure_started()
        await group_apis._ensure_topic()
        offsets_partition = group_apis.coordinator.partition_for(request.group_id)
        outcome = await self.coordinator.add_offsets(request.transactional_id, request.producer_id, request.producer_epoch,
                                                     OFFSETS_TOPIC, offsets_partition)
        error = fenced_error(version >= 2) if outcome.error == ErrorCode.producer_fenced else outcome.error
        if error != ErrorCode.none:
            log.info("AddOffsetsToTxn for %r (group %r): %s", request.transactional_id, request.group_id, error.name)
        return _build(module, "AddOffsetsToTxnResponse", throttle_time=ZERO_MS, error_code=error)

    async def end_txn(self, header, request):
        self._ensure_started()
        version = header.api_version
        module = _response_module(apis.END_TXN, version)
        outcome = await self.coordinator.end_txn(request.transactional_id, request.producer_id, request.producer_epoch,
                                                 bool(request.committed))
        error = fenced_error(version >= 2) if outcome.error == ErrorCode.producer_fenced else outcome.error
        if error != ErrorCode.none:
            log.info("EndTxn(%s) for %r: %s", "commit" if request.committed else "abort", request.transactional_id, error.name)
        return _build(module, "EndTxnResponse", throttle_time=ZERO_MS, error_code=error)

    # ---- TxnOffsetCommit --------------------------------------------------------------------

    async def txn_offset_commit(self, header, request):
        group_apis = self.handlers.group_apis
        group_apis._ensure_started()
        module = _response_module(apis.TXN_OFFSET_COMMIT, header.api_version)
        offsets = {}
        for topic in request.topics:
            for part in topic.partitions:
                offsets[(topic.name, part.partition_index)] = (
                    part.committed_offset, getattr(part, "committed_leader_epoch", -1), part.committed_metadata)
        coordinator = group_apis.coordinator
        generation_id = getattr(request, "generation_id", -1)
        member_id = getattr(request, "member_id", "")
        group_instance_id = getattr(request, "group_instance_id", None)
        error = coordinator.check_group(request.group_id)
        if (error == ErrorCode.none and (generation_id >= 0 or member_id or group_instance_id is not None)
                and not coordinator.unfenced_txn_offsets):  # the planted bug skips KIP-447's check
            # KIP-447: a transactional commit names its member and generation, which must be current; unlike
            # OffsetCommit it is not refused while the group completes a rebalance (REBALANCE_IN_PROGRESS), as
            # in Kafka: the producer may be blocked in send_offsets_to_transaction while its own consumer
            # would have to poll to finish that rebalance.
            error = coordinator._member_error(coordinator.groups.get(request.group_id), member_id, group_instance_id,
                                              generation_id)
        if error != ErrorCode.none:
            results = {tp: error for tp in offsets}
        else:
            # validated above: the group coordinator takes it as a commit without membership
            results = await coordinator.prepare_txn_offsets(request.group_id, request.producer_id,
                                                            request.producer_epoch, -1, "", None, offsets)
        failed = {f"{t}-{p}": e.name for (t, p), e in results.items() if e != ErrorCode.none}
        if failed:
            log.info("TxnOffsetCommit of %r for group %r (producer %d epoch %d): %s", request.transactional_id,
                     request.group_id, request.producer_id, request.producer_epoch, failed)
        topics = tuple(
            _build(module, "TxnOffsetCommitResponseTopic", name=topic.name, partitions=tuple(
                _build(module, "TxnOffsetCommitResponsePartition", partition_index=p.partition_index,
                       error_code=results[(topic.name, p.partition_index)])
                for p in topic.partitions))
            for topic in request.topics)
        return _build(module, "TxnOffsetCommitResponse", throttle_time=ZERO_MS, topics=topics)

    # ---- WriteTxnMarkers (on partition leaders) ---------------------------------------------------

    async def write_marker(self, topic: str, partition: int, producer_id: int, producer_epoch: int, commit: bool,
                           coordinator_epoch: int) -> ErrorCode:
        """Append a commit/abort marker as this partition's leader and wait until it is replicated."""
        handlers = self.handlers
        batch = bytearray(build_marker_batch(producer_id, producer_epoch, commit, coordinator_epoch,
                                             handlers.runtime.clock.wall_ms()))
        result, verdict = await handlers.leader.append_and_wait(topic, partition, batch, APPEND_TIMEOUT_MS, control=True)
        if not result.ok:
            log.info("%s marker for producer %d epoch %d on %s-%d refused: %s (%s)", "commit" if commit else "abort",
                     producer_id, producer_epoch, topic, partition, result.error.name, result.message)
            return result.error
        if verdict != replication.OK:
            log.info("marker on %s-%d not replicated: %s", topic, partition, verdict)
            return WAIT_ERRORS[verdict]
        if topic == OFFSETS_TOPIC:
            handlers.group_apis.coordinator.complete_txn(producer_id, commit, partition)
        handlers.wake_fetchers()  # the last stable offset moved
        return ErrorCode.none

    async def write_txn_markers(self, header, request):
        module = _response_module(apis.WRITE_TXN_MARKERS, header.api_version)
        # every marker of the request is appended at once (in request order) and they wait for replication
        # together: a coordinator batches the markers of many transactions into one request
        wanted = [[(t.name, p) for t in marker.topics for p in t.partition_indexes] for marker in request.markers]
        flat = await asyncio.gather(*(
            self.write_marker(topic, partition, marker.producer_id, marker.producer_epoch,
                              bool(marker.transaction_result), marker.coordinator_epoch)
            for marker, tps in zip(request.markers, wanted) for topic, partition in tps))
        results = []
        position = 0
        for marker, tps in zip(request.markers, wanted):
            errors = flat[position:position + len(tps)]
            position += len(tps)
            by_topic: dict[str, list] = {}
            for (topic, partition), error in zip(tps, errors):
                by_topic.setdefault(topic, []).append(_build(module, "WritableTxnMarkerPartitionResult",
                                                             partition_index=partition, error_code=error))
            results.append(_build(module, "WritableTxnMarkerResult", producer_id=marker.producer_id, topics=tuple(
                _build(module, "WritableTxnMarkerTopicResult", name=topic, partitions=tuple(parts))
                for topic, parts in by_topic.items())))
        return _build(module, "WriteTxnMarkersResponse", markers=tuple(results))


class TxnAwareLifecycle:
    """The `PartitionLifecycle` given to the ReplicaManager: the inner one (handlers, groups), then transactions'."""

    def __init__(self, inner, txn_apis: TxnApis):
        self.inner = inner
        self.txn_apis = txn_apis

    def on_become_leader(self, topic: str, partition: int, partition_log) -> None:
        self.inner.on_become_leader(topic, partition, partition_log)
        self.txn_apis.on_become_leader(topic, partition, partition_log)

    def on_become_follower(self, topic: str, partition: int, partition_log) -> None:
        self.txn_apis.on_not_leader(topic, partition)
        self.inner.on_become_follower(topic, partition, partition_log)

    def on_stopped(self, topic: str, partition: int) -> None:
        self.txn_apis.on_not_leader(topic, partition)
        self.inner.on_stopped(topic, partition)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


def _wall(ms: int) -> datetime.datetime:
    """A wall-clock time in ms since the epoch as kio's datetime (-1, "none", is a millisecond before it)."""
    return datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc)


_response_module = response_module
_build = build_entity
