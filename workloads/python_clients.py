"""kafka-python and aiokafka behind one synchronous shape, and what the workloads do with either.

The workload clients run one operation at a time in a worker (its own process, `workloads.isolated`), so
they are synchronous. kafka-python is; aiokafka is asyncio. `AiokafkaProducer` and `AiokafkaConsumer` give
aiokafka kafka-python's shape (`send(...).get(timeout)`, `poll(timeout_ms, max_records)`, `highwater`,
`end_offsets`, `begin_transaction`, ...) over a private event loop that runs in a daemon thread for the
life of the client (`EventLoopThread`): aiokafka's group membership, heartbeats and fetches then go on
between operations, as kafka-python's background threads and librdkafka's do. Each call waits for its
coroutine with a timeout; a call that overstays it raises the library's KafkaTimeoutError (the coroutine
is cancelled; aiokafka shields its transaction calls, which go on).

`library(client)` names what differs between the two (errors, TopicPartition, how to build a producer and
a consumer); `python_send` and `end_transaction` are what the queue and pipeline workloads share on them.

What aiokafka 0.14 lacks, which the workloads refuse rather than fake:
- `AIOKafkaProducer.send_offsets_to_transaction(offsets, group_id)` takes the group id only, and sends
  TxnOffsetCommit v0, without the generation and member id (KIP-447) by which the group coordinator fences
  a processor whose partitions were given away while it was stopped (a zombie);
- the producer has no `retries` setting: it retries a failed batch until `request_timeout_ms`, so it
  cannot promise at-most-once.
kafka-python 3.0.12 has both (`KafkaConsumer.group_metadata()`, TxnOffsetCommit v3).

Thread-safety: a client and its facades belong to one worker thread; the event loop thread runs only
aiokafka's coroutines.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import threading
from dataclasses import dataclass
from typing import Any

from checkers.history import Op, completion
from workloads.client_security import python_client_settings
from workloads.kafka_admin import after_append, combine_send_outcomes

__all__ = ["AIOKAFKA_MISSING_GROUP_METADATA", "AIOKAFKA_MISSING_RETRIES", "AiokafkaConsumer", "AiokafkaProducer",
           "EventLoopThread", "Library", "close_quietly", "describe_error", "end_transaction", "library", "python_send"]

AIOKAFKA_MISSING_GROUP_METADATA = (
    "aiokafka's AIOKafkaProducer.send_offsets_to_transaction(offsets, group_id) takes a group id only, not the "
    "consumer group metadata (generation, member id) by which KIP-447 fences a zombie processor")
AIOKAFKA_MISSING_RETRIES = (
    "aiokafka's AIOKafkaProducer has no retries setting (it retries a failed batch until request_timeout_ms)")

START_TIMEOUT_S = 30.0


class EventLoopThread:
    """A private asyncio event loop running in a daemon thread; `run` waits for one coroutine on it."""

    def __init__(self, name: str):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def run(self, coroutine, timeout_s: float | None):
        from aiokafka.errors import KafkaTimeoutError

        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result(timeout_s)
        except TimeoutError:
            future.cancel()
            raise KafkaTimeoutError(f"no answer within {timeout_s} s") from None

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        if not self.thread.is_alive():
            self.loop.close()


def _aio_partition(tp):
    from aiokafka.structs import TopicPartition

    return TopicPartition(tp[0], tp[1])


class _DeliveryFuture:
    """kafka-python's FutureRecordMetadata shape for an aiokafka delivery future: `get(timeout)`."""

    def __init__(self, loop: EventLoopThread, future):
        self.loop = loop
        self.future = future

    def get(self, timeout: float):
        async def wait():
            return await asyncio.wait_for(asyncio.shield(self.future), timeout)

        return self.loop.run(wait(), timeout + 1)


class AiokafkaProducer:
    """An AIOKafkaProducer with kafka-python's synchronous methods; the transactional producer is initialised
    (InitProducerId) when it starts, as kafka-python's `init_transactions` does."""

    def __init__(self, loop: EventLoopThread, call_timeout_s: float, **config):
        from aiokafka import AIOKafkaProducer

        self.loop = loop
        self.call_timeout_s = call_timeout_s

        async def start():
            producer = AIOKafkaProducer(**config)
            try:
                await producer.start()
            except BaseException:
                await producer.stop()
                raise
            return producer

        self.producer = loop.run(start(), START_TIMEOUT_S)

    def init_transactions(self) -> None:
        """Done by `start`: aiokafka asks for its producer id when it starts."""

    def send(self, topic: str, value: bytes, partition: int) -> _DeliveryFuture:
        return _DeliveryFuture(self.loop, self.loop.run(self.producer.send(topic, value=value, partition=partition),
                                                        self.call_timeout_s))

    def flush(self, timeout: float | None = None) -> None:
        self.loop.run(self.producer.flush(), timeout or self.call_timeout_s)

    def begin_transaction(self) -> None:
        self.loop.run(self.producer.begin_transaction(), self.call_timeout_s)

    def commit_transaction(self) -> None:
        self.loop.run(self.producer.commit_transaction(), self.call_timeout_s)

    def abort_transaction(self) -> None:
        self.loop.run(self.producer.abort_transaction(), self.call_timeout_s)

    def send_offsets_to_transaction(self, offsets: dict, group_id: str) -> None:
        self.loop.run(self.producer.send_offsets_to_transaction(
            {_aio_partition(tp): int(getattr(o, "offset", o)) for tp, o in offsets.items()}, group_id),
            self.call_timeout_s)

    def close(self, timeout: float | None = None) -> None:
        self.loop.run(self.producer.stop(), timeout or self.call_timeout_s)


class AiokafkaConsumer:
    """An AIOKafkaConsumer with kafka-python's synchronous methods (the ones the workloads use)."""

    def __init__(self, loop: EventLoopThread, call_timeout_s: float, **config):
        from aiokafka import AIOKafkaConsumer

        self.loop = loop
        self.call_timeout_s = call_timeout_s

        async def start():
            consumer = AIOKafkaConsumer(**config)
            await consumer.start()
            return consumer

        self.consumer = loop.run(start(), START_TIMEOUT_S)

    def _call(self, coroutine):
        return self.loop.run(coroutine, self.call_timeout_s)

    def _sync(self, function, *args):
        async def call():
            return function(*args)

        return self._call(call())

    def subscribe(self, topics: list[str], listener=None) -> None:
        self._sync(lambda: self.consumer.subscribe(topics, listener=listener))

    def assign(self, partitions) -> None:
        self._sync(self.consumer.assign, [_aio_partition(tp) for tp in partitions])

    def assignment(self) -> set:
        return self._sync(self.consumer.assignment)

    def seek(self, tp, offset: int) -> None:
        self._sync(self.consumer.seek, _aio_partition(tp), offset)

    def seek_to_beginning(self, *partitions) -> None:
        self._call(self.consumer.seek_to_beginning(*[_aio_partition(tp) for tp in partitions]))

    def poll(self, timeout_ms: int, max_records: int) -> dict:
        """Records as `getmany` hands them out, or none after `timeout_ms`: getmany itself waits without a limit
        while the group reassigns partitions (so that no record of a partition given away is returned), and
        kafka-python's poll returns after its timeout whatever the group does."""

        async def poll():
            try:
                return await asyncio.wait_for(self.consumer.getmany(timeout_ms=timeout_ms, max_records=max_records),
                                              timeout_ms / 1000 + 0.5)
            except asyncio.TimeoutError:  # cancelled while waiting, before any record was taken out
                return {}

        return self.loop.run(poll(), timeout_ms / 1000 + self.call_timeout_s)

    def position(self, tp) -> int:
        return self._call(self.consumer.position(_aio_partition(tp)))

    def highwater(self, tp) -> int | None:
        return self._sync(self.consumer.highwater, _aio_partition(tp))

    def end_offsets(self, partitions) -> dict:
        return self._call(self.consumer.end_offsets([_aio_partition(tp) for tp in partitions]))

    def beginning_offsets(self, partitions) -> dict:
        return self._call(self.consumer.beginning_offsets([_aio_partition(tp) for tp in partitions]))

    def committed(self, tp) -> int | None:
        return self._call(self.consumer.committed(_aio_partition(tp)))

    def close(self) -> None:
        self._call(self.consumer.stop())


@dataclass(frozen=True)
class Library:
    """What differs between kafka-python and aiokafka for the workloads: the errors module (KafkaError,
    KafkaTimeoutError, MessageSizeTooLargeError), TopicPartition, and how to build a producer or consumer from
    kafka-python's settings (aiokafka drops `retries` and `max_in_flight_requests_per_connection`: it has
    neither, and sends one request per broker at a time)."""

    name: str
    errors: Any
    topic_partition: Any

    def producer(self, loop: EventLoopThread | None, call_timeout_s: float, **config):
        config = python_client_settings(self.name, config)
        if self.name == "kafka-python":
            from kafka import KafkaProducer

            return KafkaProducer(**config)
        config.pop("retries", None)
        config.pop("max_in_flight_requests_per_connection", None)
        if config.get("acks") == "all":
            config["acks"] = -1
        return AiokafkaProducer(loop, call_timeout_s, **config)

    def consumer(self, loop: EventLoopThread | None, call_timeout_s: float, **config):
        config = python_client_settings(self.name, config)
        if self.name == "kafka-python":
            from kafka import KafkaConsumer

            return KafkaConsumer(**config)
        return AiokafkaConsumer(loop, call_timeout_s, **config)

    def bounded(self, call, timeout_s: float, what: str):
        """`call()`, which raises the library's KafkaTimeoutError after `timeout_s`. kafka-python's
        `commit_transaction`, `abort_transaction` and `send_offsets_to_transaction` wait for their answer
        without a limit (a coordinator that is cut off is asked again and again), so they run in a thread
        of their own and are left to it when late (the producer's transaction state then refuses an abort,
        and the client is replaced after the op's `info`). aiokafka's calls are bounded already."""
        if self.name != "kafka-python":
            return call()
        outcome: dict[str, Any] = {}

        def run():
            try:
                outcome["value"] = call()
            except BaseException as e:  # noqa: BLE001 (handed to the caller)
                outcome["error"] = e

        thread = threading.Thread(target=run, name=f"kafka-python-{what}", daemon=True)
        thread.start()
        thread.join(timeout_s)
        if thread.is_alive():
            raise self.errors.KafkaTimeoutError(f"{what} did not return within {timeout_s} s")
        if "error" in outcome:
            raise outcome["error"]
        return outcome.get("value")

    def event_loop(self, name: str) -> EventLoopThread | None:
        """The client's private event loop (aiokafka), or None (kafka-python needs none)."""
        return EventLoopThread(name) if self.name == "aiokafka" else None


def library(client: str) -> Library:
    if client == "kafka-python":
        return Library(client, importlib.import_module("kafka.errors"), importlib.import_module("kafka").TopicPartition)
    if client == "aiokafka":
        return Library(client, importlib.import_module("aiokafka.errors"),
                       importlib.import_module("aiokafka.structs").TopicPartition)
    raise ValueError(f"no Python client library named {client!r}; expected kafka-python or aiokafka")


def python_send(lib: Library, producer, topic: str, mops: list, timeout_s: float, retries: bool,
                acks_all: bool = False) -> Op:
    """Send `[["send", partition, value], ...]` through a kafka-python-shaped `producer`, wait for each, and
    answer the send op's completion (the rules of `kafka_admin.confluent_send`): ok with `[offset, value]` per
    message when every one was acknowledged, else fail (certainly not written) or info."""
    errors = lib.errors
    futures: list[Any] = []
    for _, partition, value in mops:
        try:
            futures.append(producer.send(topic, value=str(value).encode(), partition=partition))
        except (errors.MessageSizeTooLargeError, AssertionError, TypeError) as e:
            futures.append(["produce-refused", str(e)])
        except errors.KafkaError as e:  # e.g. aiokafka refusing a send outside a transaction; may have been queued
            futures.append(e)
    each: list[tuple[str, list | None]] = []
    offsets: list[int | None] = []
    for future in futures:
        offsets.append(None)
        if isinstance(future, list):
            each.append(("fail", future))
            continue
        try:
            if isinstance(future, Exception):
                raise future
            meta = future.get(timeout=timeout_s)
        except errors.KafkaTimeoutError as e:
            each.append(("info", ["timeout", str(e)]))
            continue
        except errors.KafkaError as e:
            code = getattr(e, "errno", -1)
            certain = isinstance(e, errors.MessageSizeTooLargeError) or (
                not retries and code not in (None, -1, 1) and not after_append(code, acks_all))
            each.append(("fail" if certain else "info", [type(e).__name__, str(e)]))
            continue
        offsets[-1] = meta.offset if meta.offset is not None and meta.offset >= 0 else None
        each.append(("ok", None))
    verdict, error = combine_send_outcomes(each)
    if verdict == "ok":
        return completion("ok", [["send", p, [offset, v]] for (_, p, v), offset in zip(mops, offsets)])
    return completion(verdict, mops, error=error)


def end_transaction(lib: Library, producer, commit: bool, timeout_s: float) -> tuple[str, list | None]:
    """Commit (or abort) a kafka-python-shaped producer's open transaction: ("committed", None),
    ("aborted", error) when it was aborted (on purpose, or after a commit that failed and an abort that
    returned), or ("unknown", error): a commit that failed and an abort that failed too, which may have
    committed (neither library lets a commit that was sent be aborted: the abort is refused). Each call
    gives up after `timeout_s` (`Library.bounded`)."""
    error: list | None = None
    if commit:
        try:
            lib.bounded(producer.commit_transaction, timeout_s, "commit_transaction")
            return "committed", None
        except Exception as e:  # noqa: BLE001 (any failure: the abort below decides what it was)
            error = ["commit-failed", describe_error(e)]
    try:
        lib.bounded(producer.abort_transaction, timeout_s, "abort_transaction")
    except Exception as e:  # noqa: BLE001 (an abort that fails leaves the outcome unknown)
        return "unknown", (error or []) + ["abort-failed", describe_error(e)]
    return "aborted", error


def describe_error(e: BaseException) -> str:
    """An error in one line that names its type once (kafka-python's own errors put their name in str())."""
    text = str(e)
    return text if text.startswith(type(e).__name__) else f"{type(e).__name__}: {text}"


def close_quietly(*closers) -> None:
    """Call each closer; a client of a broken cluster may not close cleanly, and nothing is left to save."""
    for close in closers:
        with contextlib.suppress(Exception):
            close()
