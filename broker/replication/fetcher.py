"""Follower fetch loops: one per source broker, batching every partition this node follows there.

A partition added to a fetcher first needs truncation: the loop sends
OffsetForLeaderEpoch (api key 23, v4) with the follower's latest epoch and the
current leader epoch, and truncates by `truncation_offset` (KIP-101/KIP-279),
repeating while the decision says so. Then it fetches (Fetch v12, replica_id =
this node, current_leader_epoch, fetch offset = own LEO, long poll of
replica.fetch.wait.max.ms), appends what arrives with `append_as_follower`
(offsets and epochs preserved; new epochs go to the epoch cache) and sets its
own HW to min(leader HW, own LEO).

Errors per partition: OFFSET_OUT_OF_RANGE below the leader's log start offset
restarts the log there; otherwise it means our log is ahead of the leader's
(divergence): truncation runs again. NOT_LEADER_OR_FOLLOWER,
FENCED_LEADER_EPOCH and UNKNOWN_LEADER_EPOCH mean the image has not caught up
on one side: the partition waits replica.fetch.backoff.ms and retries (the
metadata listener moves it when leadership changes). A lost connection backs
the whole fetcher off for replica.fetch.backoff.ms.

With the debug switch skip_truncation, a partition never truncates: it starts
fetching at its own LEO (keeping records the new leader never had), and an
OFFSET_OUT_OF_RANGE above the leader's log is retried after a back-off until
the leader's log has grown past it, which is exactly the divergence KIP-101
prevents.

Thread-safety: none; asyncio tasks on the broker's event loop.

Sources: Apache Kafka `AbstractFetcherThread`, `ReplicaFetcherThread`,
`ReplicaFetcherManager`; KIP-101, KIP-279, KIP-392.
"""

from __future__ import annotations

import asyncio
import datetime
import logging

from kio.schema.errors import ErrorCode

from broker.protocol import apis
from broker.protocol.client import ClientError
from broker.protocol.fetch import next_session_epoch
from broker.protocol.records import CorruptRecordError, iter_batches
from broker.replication.truncation import truncation_offset

log = logging.getLogger("broker.replication")

FETCH_VERSION = 12
OFFSET_FOR_LEADER_EPOCH = 23
OFFSET_FOR_LEADER_EPOCH_VERSION = 4
STREAK_LOG_S = 10  # a streak of failed fetch rounds is logged when it starts, then at most once every this many s


_ENTITY_CLASSES: dict[tuple[int, int, str], type] = {}


def _entity(api_key: int, version: int, class_name: str, **values):
    cls = _ENTITY_CLASSES.get((api_key, version, class_name))
    if cls is None:
        module = __import__(apis.request_class(api_key, version).__module__, fromlist=[class_name])
        cls = _ENTITY_CLASSES[(api_key, version, class_name)] = getattr(module, class_name)
    return cls(**values)


class FetchSessionState:
    """The follower's half of a KIP-227 fetch session with one leader.

    `session_id` 0 means none: the next fetch is full and asks for one (epoch 0).
    `sent` is the fetch state (fetch offset, leader epoch, last fetched epoch,
    log start offset) the leader holds for each session partition; an
    incremental fetch names only the partitions whose state differs and
    forgets those no longer fetched. Any failed round drops the session, since
    the leader's view of it is then unknown."""

    def __init__(self) -> None:
        self.session_id = 0
        self.epoch = 0
        self.sent: dict[tuple[str, int], tuple[int, int, int, int]] = {}

    def reset(self) -> None:
        self.session_id = 0
        self.epoch = 0
        self.sent = {}


class FetchedPartition:
    def __init__(self, replica, leader_id: int):
        self.replica = replica
        self.leader_id = leader_id
        self.leader_epoch = replica.leader_epoch
        self.needs_truncation = True
        self.delayed_until_ms = 0
        self.failures = 0  # fetched data this partition could not take, in a row


class ReplicaFetcher:
    """The fetch loop towards one source broker."""

    def __init__(self, manager, pool, source_id: int):
        self.manager = manager
        self.pool = pool
        self.source_id = source_id
        self.partitions: dict[tuple[str, int], FetchedPartition] = {}
        self.endpoint: tuple[str, int] | None = None
        self._task: asyncio.Task | None = None
        self._changed = asyncio.Event()
        self._stopped = False
        self.session = FetchSessionState()
        self._streak = 0  # failed rounds in a row (logged once per streak, `_failed`)
        self._streak_started_ns = self._streak_logged_ns = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        self._stopped = True
        self._changed.set()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    def add(self, replica) -> None:
        self.partitions[(replica.topic, replica.partition)] = FetchedPartition(replica, self.source_id)
        self._changed.set()

    def remove(self, replica) -> None:
        self.partitions.pop((replica.topic, replica.partition), None)

    async def _run(self) -> None:
        settings = self.manager.settings
        while not self._stopped:
            if not self.partitions or self.endpoint is None:
                self._changed.clear()
                await self._wait_changed(settings.replica_fetch_backoff_ms / 1000)
                continue
            try:
                progressed = await self._round()
            except ClientError as exc:
                self.session.reset()
                self._failed(str(exc), settings.replica_fetch_backoff_ms)
                await self.manager.runtime.clock.sleep(settings.replica_fetch_backoff_ms / 1000)
                continue
            except asyncio.CancelledError:
                raise
            except Exception:
                self.session.reset()
                log.exception("fetcher for broker %d failed; retrying in %d ms", self.source_id, settings.replica_fetch_backoff_ms)
                await self.manager.runtime.clock.sleep(settings.replica_fetch_backoff_ms / 1000)
                continue
            if self._streak:
                seconds = (self.manager.runtime.clock.monotonic_ns() - self._streak_started_ns) / 1e9
                log.info("fetcher for broker %d works again after %d failed attempts in %.1f s", self.source_id,
                         self._streak, seconds)
                self._streak = 0
            if not progressed:
                await self._wait_changed(settings.replica_fetch_backoff_ms / 1000)

    def _failed(self, reason: str, backoff_ms: int) -> None:
        """Log a failed fetch round once per streak of failures (a leader that is down fails one every backoff, ten a
        second), then once every STREAK_LOG_S with the count; the recovery is logged by `_run`."""
        now_ns = self.manager.runtime.clock.monotonic_ns()
        self._streak += 1
        if self._streak == 1:
            self._streak_started_ns = self._streak_logged_ns = now_ns
            log.info("fetcher for broker %d: %s; retrying every %d ms", self.source_id, reason, backoff_ms)
        elif now_ns - self._streak_logged_ns >= STREAK_LOG_S * 1e9:
            self._streak_logged_ns = now_ns
            log.info("fetcher for broker %d: still failing (%d attempts in %.0f s): %s", self.source_id, self._streak,
                     (now_ns - self._streak_started_ns) / 1e9, reason)

    async def _wait_changed(self, timeout_s: float) -> None:
        self._changed.clear()
        sleeper = asyncio.ensure_future(self.manager.runtime.clock.sleep(timeout_s))
        waiter = asyncio.ensure_future(self._changed.wait())
        try:
            await asyncio.wait([sleeper, waiter], return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waiter.cancel()

    async def _round(self) -> bool:
        """One OffsetForLeaderEpoch (if needed) and one Fetch; False if nothing could be fetched."""
        now_ms = self.manager.runtime.clock.monotonic_ms()
        to_truncate = [p for p in self.partitions.values() if p.needs_truncation and p.delayed_until_ms <= now_ms]
        if to_truncate:
            await self._truncate(to_truncate)
        ready = [p for p in self.partitions.values() if not p.needs_truncation and p.delayed_until_ms <= now_ms]
        if not ready:
            return False
        await self._fetch(ready)
        return True

    # ------------------------------------------------------------------ truncation

    async def _truncate(self, partitions: list[FetchedPartition]) -> None:
        if self.manager.settings.skip_truncation:
            for fetched in partitions:
                fetched.needs_truncation = False
            return
        by_topic: dict[str, list[FetchedPartition]] = {}
        for fetched in partitions:
            by_topic.setdefault(fetched.replica.topic, []).append(fetched)
        version = OFFSET_FOR_LEADER_EPOCH_VERSION
        requested: dict[tuple[str, int], int] = {}
        topics = []
        for topic, members in by_topic.items():
            parts = []
            for fetched in members:
                epoch = fetched.replica.epochs.latest_epoch
                requested[(topic, fetched.replica.partition)] = epoch
                parts.append(_entity(OFFSET_FOR_LEADER_EPOCH, version, "OffsetForLeaderPartition",
                                     partition=fetched.replica.partition, current_leader_epoch=fetched.leader_epoch,
                                     leader_epoch=epoch))
            topics.append(_entity(OFFSET_FOR_LEADER_EPOCH, version, "OffsetForLeaderTopic", topic=topic, partitions=tuple(parts)))
        request = _entity(OFFSET_FOR_LEADER_EPOCH, version, "OffsetForLeaderEpochRequest",
                          replica_id=self.manager.node_id, topics=tuple(topics))
        host, port = self.endpoint
        body = await self.pool.request(host, port, OFFSET_FOR_LEADER_EPOCH, version, apis.encode_request(request),
                                       self.manager.settings.request_timeout_ms / 1000)
        response = apis.decode_response(OFFSET_FOR_LEADER_EPOCH, version, body)
        now_ms = self.manager.runtime.clock.monotonic_ms()
        for topic_result in response.topics:
            for result in topic_result.partitions:
                fetched = self.partitions.get((topic_result.topic, result.partition))
                if fetched is None or not fetched.needs_truncation:
                    continue
                if result.error_code != ErrorCode.none:
                    log.info("%s-%d: OffsetForLeaderEpoch from broker %d: %s; retrying", topic_result.topic,
                             result.partition, self.source_id, result.error_code.name)
                    fetched.delayed_until_ms = now_ms + self.manager.settings.replica_fetch_backoff_ms
                    continue
                replica = fetched.replica
                decision = truncation_offset(
                    requested[(topic_result.topic, result.partition)], result.leader_epoch, result.end_offset,
                    replica.epochs, replica.log.log_end_offset, replica.follower_high_watermark,
                )
                self.manager.follower_truncate(replica, decision.offset)
                fetched.needs_truncation = not decision.completed

    # ------------------------------------------------------------------ fetching

    async def _fetch(self, partitions: list[FetchedPartition]) -> None:
        settings = self.manager.settings
        session = self.session
        incremental = session.session_id != 0
        by_topic: dict[str, list] = {}
        offsets: dict[tuple[str, int], int] = {}
        state: dict[tuple[str, int], tuple[int, int, int, int]] = {}
        for fetched in partitions:
            replica = fetched.replica
            key = (replica.topic, replica.partition)
            offsets[key] = replica.log.log_end_offset
            state[key] = (replica.log.log_end_offset, fetched.leader_epoch, replica.epochs.latest_epoch,
                          replica.log.log_start_offset)
            if incremental and session.sent.get(key) == state[key]:
                continue  # the leader's session already holds this partition's fetch state
            by_topic.setdefault(replica.topic, []).append(
                _entity(apis.FETCH, FETCH_VERSION, "FetchPartition", partition=replica.partition,
                        current_leader_epoch=fetched.leader_epoch, fetch_offset=replica.log.log_end_offset,
                        last_fetched_epoch=replica.epochs.latest_epoch, log_start_offset=replica.log.log_start_offset,
                        partition_max_bytes=settings.replica_fetch_max_bytes)
            )
        forgotten: dict[str, list[int]] = {}
        if incremental:
            for topic, partition in session.sent.keys() - state.keys():
                forgotten.setdefault(topic, []).append(partition)
        topics = tuple(_entity(apis.FETCH, FETCH_VERSION, "FetchTopic", topic=t, partitions=tuple(p)) for t, p in by_topic.items())
        forgotten_topics = tuple(_entity(apis.FETCH, FETCH_VERSION, "ForgottenTopic", topic=t, partitions=tuple(p))
                                 for t, p in forgotten.items())
        request = _entity(apis.FETCH, FETCH_VERSION, "FetchRequest", replica_id=self.manager.node_id,
                          max_wait=datetime.timedelta(milliseconds=settings.replica_fetch_wait_max_ms), min_bytes=1,
                          max_bytes=settings.replica_fetch_response_max_bytes, isolation_level=0,
                          session_id=session.session_id, session_epoch=session.epoch, topics=topics,
                          forgotten_topics_data=forgotten_topics, rack_id="")
        host, port = self.endpoint
        timeout_s = (settings.replica_fetch_wait_max_ms + settings.request_timeout_ms) / 1000
        # A round that fails (an exception out of here) resets the session in _run: the leader's view is unknown.
        body = await self.pool.request(host, port, apis.FETCH, FETCH_VERSION, apis.encode_request(request), timeout_s)
        response = apis.decode_response(apis.FETCH, FETCH_VERSION, body)
        if response.error_code in (ErrorCode.fetch_session_id_not_found, ErrorCode.invalid_fetch_session_epoch):
            log.info("fetcher for broker %d: %s; starting a new fetch session", self.source_id, response.error_code.name)
            session.reset()
            return
        if response.error_code != ErrorCode.none:
            raise ClientError(f"Fetch answered {response.error_code.name}")
        if response.session_id != 0:
            session.session_id = response.session_id
            session.epoch = next_session_epoch(request.session_epoch)
            session.sent = state
        else:
            session.reset()
        now_ms = self.manager.runtime.clock.monotonic_ms()
        for topic_result in response.responses:
            for result in topic_result.partitions:
                key = (topic_result.topic, result.partition_index)
                fetched = self.partitions.get(key)
                if fetched is None or key not in offsets or fetched.replica.log.log_end_offset != offsets[key]:
                    continue  # removed, or truncated/moved while the request was out
                try:
                    self._handle_partition(fetched, result, now_ms)
                except Exception as exc:  # one partition's failure must not stop the others from this leader
                    self._partition_failed(fetched, exc, now_ms)
                else:
                    fetched.failures = 0

    def _partition_failed(self, fetched: FetchedPartition, exc: Exception, now_ms: int) -> None:
        """Back off one partition whose fetched data could not be taken, and go on with the others (Kafka's
        fetcher marks such a partition failed). The wait doubles with each failure in a row, up to 10 s; the
        trace is logged the first time, then a line at the 2nd, 4th, 8th... failure."""
        fetched.failures += 1
        replica = fetched.replica
        backoff_ms = min(self.manager.settings.replica_fetch_backoff_ms * 2 ** min(fetched.failures - 1, 16), 10_000)
        if fetched.failures == 1:
            log.exception("%s-%d: records fetched from broker %d could not be appended; this partition waits "
                          "%d ms, the others go on", replica.topic, replica.partition, self.source_id, backoff_ms)
        elif fetched.failures & (fetched.failures - 1) == 0:
            log.warning("%s-%d: fetch from broker %d failed %d times in a row (%s: %s); waiting %d ms",
                        replica.topic, replica.partition, self.source_id, fetched.failures, type(exc).__name__,
                        exc, backoff_ms)
        fetched.delayed_until_ms = now_ms + backoff_ms

    def _handle_partition(self, fetched: FetchedPartition, result, now_ms: int) -> None:
        replica = fetched.replica
        settings = self.manager.settings
        error = result.error_code
        if error == ErrorCode.none:
            records = result.records
            if records:
                try:
                    headers = list(iter_batches(records, validate_crc=True))
                except CorruptRecordError as exc:
                    log.warning("%s-%d: corrupt batch from leader %d: %s; fetching again", replica.topic,
                                replica.partition, self.source_id, exc)
                    fetched.delayed_until_ms = now_ms + settings.replica_fetch_backoff_ms
                    return
                if headers:
                    replica.log.append_as_follower(records, headers)
                    self.manager.follower_appended(replica, headers)
            self.manager.follower_high_watermark(replica, result.high_watermark)
            return
        if error == ErrorCode.offset_out_of_range:
            if replica.log.log_end_offset < result.log_start_offset:
                self.manager.follower_truncate_fully(replica, result.log_start_offset)
            elif settings.skip_truncation:
                fetched.delayed_until_ms = now_ms + settings.replica_fetch_backoff_ms
            else:
                fetched.needs_truncation = True
            return
        log.info("%s-%d: fetch from broker %d answered %s; retrying in %d ms", replica.topic, replica.partition,
                 self.source_id, error.name, settings.replica_fetch_backoff_ms)
        fetched.delayed_until_ms = now_ms + settings.replica_fetch_backoff_ms


class FetcherManager:
    """The fetchers of this node, one per source broker."""

    def __init__(self, manager, pool):
        self.manager = manager
        self.pool = pool
        self.fetchers: dict[int, ReplicaFetcher] = {}

    def add(self, replica, leader_id: int) -> None:
        fetcher = self.fetchers.get(leader_id)
        if fetcher is None:
            fetcher = ReplicaFetcher(self.manager, self.pool, leader_id)
            self.fetchers[leader_id] = fetcher
            self._set_endpoint(fetcher, self.manager.image)
            fetcher.start()
        fetcher.add(replica)

    def remove(self, replica) -> None:
        for fetcher in self.fetchers.values():
            fetcher.remove(replica)

    def is_fetching(self, replica) -> bool:
        key = (replica.topic, replica.partition)
        return any(key in fetcher.partitions for fetcher in self.fetchers.values())

    def refresh_endpoints(self, image) -> None:
        for fetcher in self.fetchers.values():
            self._set_endpoint(fetcher, image)

    def _set_endpoint(self, fetcher: ReplicaFetcher, image) -> None:
        broker = image.brokers.get(fetcher.source_id)
        endpoint = (broker.host, broker.port) if broker is not None else None
        if endpoint != fetcher.endpoint:
            fetcher.endpoint = endpoint
            fetcher._changed.set()

    async def stop(self) -> None:
        for fetcher in list(self.fetchers.values()):
            await fetcher.stop()
        self.fetchers.clear()
