"""Jepsen's Kafka queue workload, on real clients.

Operations (the value shapes of `jepsen.tests.kafka`):

- `send`:  `[["send", key, value]]`, completed as `[["send", key, [offset, value]]]`; a fifth
  of them (`MULTI_SEND_SHARE`) carry 2 to 4 such micro-ops to one key, produced back to back and
  flushed once, so the producer sends multi-record batches (ok when every message was acknowledged,
  fail when none can have been written, else info);
- `poll`:  `[["poll"]]`, completed as `[["poll", {key: [[offset, value], ...]}]]`, with
  `"high-watermarks": {key: offset}` for the keys it read: the high watermark of the last fetch
  response the client had for the partition when the poll returned (confluent-kafka:
  `get_watermark_offsets(tp, cached=True)`, no request; kafka-python and aiokafka: `highwater(tp)`).
  confluent-kafka and kafka-python hand out no last stable offset of a fetch response (librdkafka
  caches it but shows it only in its periodic statistics); aiokafka does (`last_stable_offset`), but
  the history has no field for it yet, so none is recorded. A `txn` with polls carries the
  same field; the final reads add `"listed-high-watermarks": {key: offset}`, the high watermarks
  ListOffsets answered after healing, which they read up to; under exactly-once, the keys the
  read_committed final read completed are read again at read_uncommitted, from the low to the high
  watermark (`"read-uncommitted-log"`: key -> [[offset, value], ...]; `"read-uncommitted-range"`:
  key -> [low, high]), which places every commit and abort marker (the offsets without a record);
- `assign`: a list of keys this process's consumer now reads (positions of keys
  it keeps are kept, new keys start at the earliest offset, asked for as the
  low watermark: the confluent client hands librdkafka absolute offsets only,
  see `ConfluentQueueClient._assign`);
- `subscribe`: a list of keys, read through consumer-group membership (needs a
  broker with consumer groups).

A key names a topic-partition: key k is partition k of the workload's topic.
Values are unique integers. After healing, one fresh client assigns every key
and polls from the earliest offset up to each partition's high watermark (the
final reads, which decide `unseen` and `lost-write`); a watermark query
that meets a transient error (a restarted broker still catching up, a leader
moving) is asked again for up to `WATERMARK_RETRY_S`.

Client settings follow the delivery mode (docs/DESIGN.md; the promise each mode makes
is `checkers.queue.delivery`'s table, the only one):

| mode | producer | consumer |
|---|---|---|
| at-most-once | acks=1 (or `acks` given), no retries, no idempotence | no offset commits |
| at-least-once | acks=all, retries, no idempotence | no offset commits |
| exactly-once | idempotent + transactional, acks=all | read_committed |

`idempotent=True` (at-least-once only) turns on the idempotent producer: its
retries must then never duplicate a message, so the checker holds the run to
no duplicates either (delivery `at-least-once-idempotent`).

Outcome rules (Jepsen's): `fail` only when the send certainly had no effect —
the producer refused it before sending, or the broker rejected the one and only
attempt (no retries); everything else unknown (`info`): a timeout, a lost
connection, an error after retries (an earlier attempt may have been written).
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any

from checkers.queue.checker import (FETCHED_WATERMARKS, FINAL_READ_SHORT, LAST_STABLE_OFFSETS, LISTED_WATERMARKS,
                                    STALLED_S, TRANSACTION_TIMEOUT_MS, UNCOMMITTED_LOG, UNCOMMITTED_RANGE)
from checkers.queue.delivery import Delivery
from workloads.client_security import confluent_settings
from workloads.core import (DELIVERY_MODES, Client, Grant, Op, Option, UniqueValues, Workload, WorkloadKind,
                            completion, grants, idempotent_write, invocation, register_workload)
from workloads.kafka_admin import LIBRDKAFKA_LOGGER, commit_transaction, confluent_send, create_topic
from workloads.python_clients import (AIOKAFKA_MISSING_RETRIES, close_quietly, describe_error, end_transaction,
                                      library, python_send)

CLIENTS = ("confluent", "kafka-python", "aiokafka")

log = logging.getLogger("workloads.queue")

# librdkafka logs through Python logging (into the run's harness.log), not onto the terminal


class QueueWorkload(UniqueValues, Workload):
    name = "queue"

    def __init__(self, delivery: str = "at-least-once", keys: int = 4, client: str = "confluent",
                 topic: str = "logquake-queue", replication_factor: int = 1, acks: str | None = None,
                 op_timeout_s: float = 10.0, subscribe: bool = False, poll_max_messages: int = 100,
                 topic_config: dict[str, str] | None = None, idempotent: bool = False):
        if delivery not in DELIVERY_MODES:
            raise ValueError(f"--delivery {delivery!r} is not a delivery mode; expected one of {', '.join(DELIVERY_MODES)}")
        if client not in CLIENTS:
            raise ValueError(f"--client {client!r} is not supported; expected one of {', '.join(CLIENTS)}")
        if keys < 1:
            raise ValueError(f"keys must be at least 1, got {keys}")
        if acks not in (None, "0", "1", "all", "-1"):
            raise ValueError(f"acks {acks!r} is not accepted; expected 0, 1 or all")
        if delivery == "at-most-once" and client == "aiokafka":
            raise ValueError(f"--delivery at-most-once cannot run on --client aiokafka: {AIOKAFKA_MISSING_RETRIES}, "
                             "so a send may be written twice; use --client confluent or kafka-python")
        if subscribe and client != "confluent":
            raise ValueError(f"--subscribe runs on --client confluent only: the {client} queue client has no "
                             "subscribe operation yet (it assigns partitions only)")
        self.delivery_mode = Delivery(delivery, idempotent)  # ValueError for --idempotent with another mode
        self.idempotent = idempotent
        self.delivery = delivery
        self.keys = keys
        self.client = client
        self.topic = topic
        self.replication_factor = replication_factor
        self.acks = acks
        self.op_timeout_s = op_timeout_s
        self.subscribe = subscribe
        self.poll_max_messages = poll_max_messages
        self.topic_config = dict(topic_config or {})
        self._init_values()

    def describe(self) -> dict:
        return {"name": self.name, "delivery": self.delivery, "keys": self.keys, "client": self.client,
                "topic": self.topic, "replication_factor": self.replication_factor, "acks": self.effective_acks(),
                "op_timeout_s": self.op_timeout_s, "subscribe": self.subscribe, "idempotent": self.idempotent,
                "topic_config": self.topic_config}

    def effective_acks(self) -> str:
        if self.acks is not None:
            return "all" if self.acks == "-1" else self.acks
        return "1" if self.delivery == "at-most-once" else "all"

    # ----- setup ---------------------------------------------------------------

    def setup(self, bootstrap: str) -> None:
        create_topic(bootstrap, self.topic, self.keys, self.replication_factor, self.topic_config)

    def topics(self) -> dict[str, int]:
        return {self.topic: self.keys}

    def acls(self) -> list[Grant]:
        """Its topic, to write and read. The confluent consumer names the group `logquake-<topic>` (a group
        member only with --subscribe: READ; else only asked for its coordinator: DESCRIBE), and under
        exactly-once a watermark consumer names `logquake-<topic>-watermarks` (DESCRIBE); kafka-python's and
        aiokafka's consumers name no group. Exactly-once: the transactional ids `logquake-<topic>-<process>`
        (prefixed), and no IDEMPOTENT_WRITE (a transactional producer asks for its id with WRITE on it);
        --idempotent: IDEMPOTENT_WRITE on the cluster."""
        needed = grants("TOPIC", self.topic, "READ", "WRITE")
        if self.client == "confluent":
            needed += grants("GROUP", f"logquake-{self.topic}", "READ" if self.subscribe else "DESCRIBE")
            if self.delivery == "exactly-once":
                needed += grants("GROUP", f"logquake-{self.topic}-watermarks", "DESCRIBE")
        if self.delivery == "exactly-once":
            needed += grants("TRANSACTIONAL_ID", f"logquake-{self.topic}-", "WRITE", pattern="PREFIXED")
        elif self.idempotent:
            needed += idempotent_write()
        return needed

    # Clients run in child processes (workloads.isolated), which get a copy of the workload: everything
    # but the op generator's lock and counter, which only the harness uses.
    isolated_clients = True


    # ----- generator -------------------------------------------------------------

    def next_op(self, rng: random.Random, process: int) -> Op:
        roll = rng.random()
        if roll < 0.5 and self.delivery == "exactly-once":
            # A tenth of the transactions are aborted on purpose, so every run
            # checks that aborted sends stay invisible to read_committed (G1a).
            extra = {"abort": True} if rng.random() < 0.1 else {}
            return invocation("txn", self._txn_mops(rng), extra)
        if roll < 0.5:
            key = rng.randrange(self.keys)
            # A fifth of the sends carry several messages to one key, produced back to back and flushed
            # once, so the producer packs them into multi-record batches (the same count of ops then
            # carries more messages: the throughput does not drop).
            count = rng.randint(2, MULTI_SEND_MAX) if rng.random() < MULTI_SEND_SHARE else 1
            return invocation("send", [["send", key, self.unique_value()] for _ in range(count)])
        if roll < 0.95:
            return invocation("poll", [["poll"]])
        keys = sorted(rng.sample(range(self.keys), rng.randint(1, self.keys)))
        return invocation("subscribe" if self.subscribe and rng.random() < 0.5 else "assign", keys)

    def _txn_mops(self, rng: random.Random) -> list[list]:
        """One to three sends, sometimes followed by a poll: Jepsen's mixed `txn` operation."""
        mops: list[list] = [["send", rng.randrange(self.keys), self.unique_value()] for _ in range(rng.randint(1, 3))]
        if rng.random() < 0.3:
            mops.append(["poll"])
        return mops

    def open_ops(self, rng: random.Random) -> list[Op]:
        return [invocation("assign", list(range(self.keys)))]

    def final_ops(self) -> list[Op]:
        return [invocation("assign", list(range(self.keys)), {"final": True}), invocation("poll", [["poll"]], {"final": True})]

    def open_client(self, bootstrap: str, process: int) -> Client:
        if self.client == "confluent":
            return ConfluentQueueClient(self, bootstrap, process)
        return PythonQueueClient(self, bootstrap, process, self.client)

    def check(self, history, final_reads_incomplete: str | None = None) -> dict:
        from checkers.core import MAX_WITNESSES
        from checkers.queue import check as check_queue

        return check_queue(history, delivery=self.delivery_mode, final_reads_incomplete=final_reads_incomplete,
                           acks=self.effective_acks(), max_witnesses=MAX_WITNESSES)


def _key_of(partition: int) -> int:
    return partition


# The share of send ops that carry several messages (2 to MULTI_SEND_MAX) to one key.
MULTI_SEND_SHARE = 0.2
MULTI_SEND_MAX = 4

# Extra fields of completions (docs/DESIGN.md, "The history"), named once in the checker that reads them:
# what the client saw of each partition's watermarks, key -> offset (FETCH: the high watermark of the last
# fetch response, read back after the poll without a request; LISTED: the high watermark a ListOffsets
# request answered, final reads), and the keys a final read left short of its listed watermark.
FETCH_HIGH_WATERMARKS = FETCHED_WATERMARKS
LISTED_HIGH_WATERMARKS = LISTED_WATERMARKS


def watermark_extra(fetched: dict[int, int], listed: dict[int, int] | None = None) -> dict[str, dict[int, int]]:
    """The completion fields for the watermarks a client saw: only known ones (>= 0), only non-empty maps."""
    extra = {}
    for name, marks in ((FETCH_HIGH_WATERMARKS, fetched), (LISTED_HIGH_WATERMARKS, listed or {})):
        known = {k: int(h) for k, h in marks.items() if h is not None and h >= 0}
        if known:
            extra[name] = known
    return extra


def final_read_extra(positions: dict[int, int | None], targets: dict[int, int]) -> dict[str, dict[int, list[int]]]:
    """The completion field naming every key a final read left below the high watermark it listed:
    key -> [the next offset it would have read, the listed high watermark]; empty when it reached them all."""
    short = {k: [positions.get(k) or 0, high] for k, high in targets.items() if (positions.get(k) or 0) < high}
    return {FINAL_READ_SHORT: short} if short else {}


# How long the final reads keep asking for a partition's watermarks while the
# cluster settles: a broker restarted just before the final reads answers
# NOT_LEADER_OR_FOLLOWER or UNKNOWN_TOPIC_OR_PARTITION until its metadata has
# caught up, and librdkafka's get_watermark_offsets reports either at once.
WATERMARK_RETRY_S = 30.0
# How long the read_uncommitted final read (exactly-once) goes on without progress before leaving the keys it
# has not read to the end out of the history.
FINAL_SCAN_IDLE_S = 10.0


def transient_watermark_error(error) -> bool:
    """Whether a watermark query that failed with librdkafka `error` (a KafkaError) may succeed if asked again."""
    from confluent_kafka import KafkaError

    settling = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE, KafkaError.UNKNOWN_TOPIC_OR_PART,
                KafkaError.FENCED_LEADER_EPOCH, KafkaError.UNKNOWN_LEADER_EPOCH, KafkaError.OFFSET_NOT_AVAILABLE,
                KafkaError.REQUEST_TIMED_OUT, KafkaError.BROKER_NOT_AVAILABLE, KafkaError._TRANSPORT,
                KafkaError._TIMED_OUT, KafkaError._ALL_BROKERS_DOWN,
                # librdkafka's own answers before its metadata names the partition (a fresh consumer)
                KafkaError._UNKNOWN_PARTITION, KafkaError._UNKNOWN_TOPIC,
                # the query's broker handle was decommissioned (the broker left the client's metadata, as a fenced
                # node does for a moment after a restart): a Docker run's final read failed on it and had no verdict
                KafkaError._DESTROY_BROKER}
    return error.code() in settling or error.retriable()


def query_watermarks(query, keys: list[int], timeout_s: float, sleep=time.sleep,
                     clock=time.monotonic) -> dict[int, tuple[int, int]]:
    """key -> (low, high) watermarks, through `query(key)` -> (low, high), which raises KafkaException on failure.

    A transient error (`transient_watermark_error`) is asked again every 0.5 s
    until `timeout_s` has passed; any other error, or the last one, is raised.
    The workload created its topic, so UNKNOWN_TOPIC_OR_PARTITION means a
    broker that has not caught up yet, not a missing topic.
    """
    from confluent_kafka import KafkaException

    deadline = clock() + timeout_s
    marks = {}
    for key in keys:
        while True:
            try:
                marks[key] = tuple(query(key))
                break
            except KafkaException as e:
                if not transient_watermark_error(e.args[0]) or clock() >= deadline:
                    raise
                LIBRDKAFKA_LOGGER.info("watermarks of key %s not available yet (%s); asking again", key, e.args[0])
                sleep(0.5)
    return marks


class ConfluentQueueClient(Client):
    """One process's producer and consumer, on librdkafka."""

    def __init__(self, workload: QueueWorkload, bootstrap: str, process: int):
        from confluent_kafka import Producer

        self.w = workload
        self.bootstrap = bootstrap
        self.process = process
        timeout_ms = int(workload.op_timeout_s * 1000)
        config = {
            "bootstrap.servers": bootstrap,
            "acks": workload.effective_acks(),
            "linger.ms": 0,
            "enable.idempotence": workload.idempotent,
            "message.timeout.ms": timeout_ms,
            "request.timeout.ms": min(timeout_ms, 5000),
            "socket.timeout.ms": min(timeout_ms, 5000),
            "reconnect.backoff.max.ms": 1000,
            "topic.metadata.refresh.interval.ms": 2000,
            "logger": LIBRDKAFKA_LOGGER,
        }
        self.retries = workload.delivery != "at-most-once"
        if not self.retries:
            config["message.send.max.retries"] = 0
        elif not workload.idempotent and workload.delivery != "exactly-once":
            # One request in flight, so a retried batch cannot land after the next one: the messages of
            # a multi-send op keep their order (the idempotent producer keeps it by sequence numbers).
            # Ops are flushed one at a time, so this costs single sends nothing.
            config["max.in.flight.requests.per.connection"] = 1
        self.transactional = workload.delivery == "exactly-once"
        if self.transactional:
            # One transactional.id per process: a process replaced after an
            # indeterminate operation gets a new id, and its predecessor's open
            # transaction is aborted by the coordinator after transaction.timeout.ms.
            config["transactional.id"] = f"logquake-{workload.topic}-{process}"
            config["enable.idempotence"] = True
            config["transaction.timeout.ms"] = int(self._transaction_timeout_s() * 1000)
        self.producer = Producer(confluent_settings(config))
        if self.transactional:
            self.producer.init_transactions(workload.op_timeout_s)
        self.consumer = None
        self.positions: dict[int, int | None] = {}
        self.subscribed = False  # the consumer is a member of the group (subscribe), not assigned by hand

    # ----- operations ---------------------------------------------------------------

    def invoke(self, op: Op) -> Op:
        if op.f == "send":
            return self._send(op)
        if op.f == "txn":
            return self._txn(op)
        if op.f == "poll":
            return self._poll(op, final=bool(op.extra.get("final")))
        if op.f == "assign":
            return self._assign(op.value, retry_s=WATERMARK_RETRY_S if op.extra.get("final") else None)
        if op.f == "subscribe":
            return self._subscribe(op.value)
        raise ValueError(f"queue client: unknown operation {op.f!r}")

    def _txn(self, op: Op) -> Op:
        """Run the sends (and polls) of `op` in one transaction (KIP-98).

        ok: commit_transaction returned. fail: the transaction was aborted (on
        purpose when `op.extra["abort"]`, or after an abortable error), and
        abort_transaction returned, so read_committed
        readers never see its sends. info: anything else (a commit that timed
        out, a fenced or fatally failed producer): it may or may not have
        committed.
        """
        from confluent_kafka import KafkaException

        if not self.transactional:
            raise ValueError("queue client: txn operations need --delivery exactly-once")
        try:
            self.producer.begin_transaction()
        except KafkaException as e:
            return completion("fail", op.value, error=["begin-transaction", e.args[0].str()])
        done: list[list] = []
        outcomes: list[dict] = []
        fetched: dict[int, int] = {}
        # An aborted transaction's polls did not happen: its record is the
        # invocation's value. The consumer is rewound to where it stood, or the
        # next poll would look like it skipped the messages this one read.
        positions_before = dict(self.positions)
        try:
            for mop in op.value:
                if mop[0] == "send":
                    _, key, value = mop
                    outcome: dict[str, Any] = {}

                    def on_delivery(err, msg, outcome=outcome):
                        outcome["err"] = err
                        outcome["offset"] = msg.offset() if err is None else None

                    self.producer.produce(self.w.topic, value=str(value).encode(), partition=key, on_delivery=on_delivery)
                    outcomes.append(outcome)
                    done.append(["send", key, outcome, value])
                else:
                    polled = self._collect(self._ensure_consumer().consume(num_messages=self.w.poll_max_messages, timeout=0.1))
                    done.append(polled.value[0] if polled.type == "ok" else ["poll", {}])
                    fetched.update(polled.extra.get(FETCH_HIGH_WATERMARKS, {}))
        except (BufferError, KafkaException) as e:
            return self._abort(op, ["produce-refused", str(e)], positions_before)
        if op.extra.get("abort"):
            return self._abort(op, ["aborted", "the workload aborts a tenth of its transactions on purpose"], positions_before)
        verdict, error = commit_transaction(self.producer, self.w.op_timeout_s)
        if verdict == "abort":
            return self._abort(op, error, positions_before)
        if verdict == "unknown":
            return completion("info", op.value, error=error)
        value = []
        for mop in done:
            if mop[0] == "send":
                _, key, outcome, v = mop
                offset = outcome.get("offset")
                value.append(["send", key, [offset if offset is not None and offset >= 0 else None, v]])
            else:
                value.append(mop)
        return completion("ok", value, extra=watermark_extra(fetched))

    def _abort(self, op: Op, error: list, positions_before: dict[int, int | None]) -> Op:
        from confluent_kafka import KafkaException

        try:
            self.producer.abort_transaction(self.w.op_timeout_s)
        except KafkaException as e:
            return completion("info", op.value, error=error + ["abort-failed", e.args[0].str()])
        if self.consumer is not None and positions_before != self.positions:
            self.positions = positions_before
            if self._assign(list(positions_before)).type != "ok":
                # The consumer stands past what this aborted transaction read and cannot be
                # rewound now: drop it, so the next poll reads nothing until the next assign.
                self._close_consumer()
        return completion("fail", op.value, error=error)

    def _send(self, op: Op) -> Op:
        """Produce every message of the op (one, or several to one key), then flush once."""
        return confluent_send(self.producer, self.w.topic, op.value, self.w.op_timeout_s + 5, self.retries,
                              acks_all=self.w.effective_acks() == "all")

    def _ensure_consumer(self):
        if self.consumer is None:
            from confluent_kafka import Consumer

            config = {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"logquake-{self.w.topic}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "fetch.queue.backoff.ms": 10,
                "session.timeout.ms": 6000,
                "socket.timeout.ms": 5000,
                "topic.metadata.refresh.interval.ms": 2000,
                "enable.partition.eof": True,
                "logger": LIBRDKAFKA_LOGGER,
            }
            if self.w.delivery == "exactly-once":
                config["isolation.level"] = "read_committed"
            self.consumer = Consumer(confluent_settings(config))
        return self.consumer

    def _assign(self, keys: list[int], retry_s: float | None = None) -> Op:
        """Assign `keys`: kept keys at their positions, new keys at their low watermark.

        Only absolute offsets are handed to librdkafka, never OFFSET_BEGINNING.
        A logical start offset makes librdkafka send ListOffsets for the
        partition; if the partition is assigned again before the answer arrives
        (this workload re-assigns every few polls, and a Fetch long-poll ahead on
        the same connection delays the answer), librdkafka 2.16 takes the late
        answer as outdated and (re)starts an offset query for the stale logical
        offset, moving a partition that now fetches from an explicit position
        back to the beginning ("outdated offset response: (re)starting offset
        query timer for offset BEGINNING"; no warning is logged). An
        at-most-once run on Docker showed it as a nonmonotonic-poll from 350 to
        0 with no leader change and no truncation (seed 41). The low watermark
        is asked for here instead (ListOffsets outside the partition's fetch
        state); when it cannot be had within `retry_s` (default op_timeout_s)
        the assign fails and nothing changes.
        """
        from confluent_kafka import KafkaException, TopicPartition

        consumer = self._ensure_consumer()
        if self.subscribed:
            # assign() leaves a subscribed consumer in the group, whose next rebalance replaces the hand-made
            # assignment with the group's, from the committed offsets (none here: the earliest): a seed-575184660
            # run read key 2 from offset 14, then from 0, when another consumer joined; counted (rightly, for an
            # assigned consumer) as a nonmonotonic poll. Leaving the group first makes the assignment stick.
            consumer.unsubscribe()
            self.subscribed = False
        positions = {k: self.positions.get(k) for k in keys}
        new_keys = [k for k, pos in positions.items() if pos is None]
        try:
            marks = query_watermarks(self._watermark_query(consumer), new_keys,
                                     self.w.op_timeout_s if retry_s is None else retry_s)
        except KafkaException as e:
            return completion("fail", keys, error=["low-watermark", e.args[0].str()])
        positions.update({k: low for k, (low, _high) in marks.items()})
        self.positions = positions
        consumer.assign([TopicPartition(self.w.topic, k, pos) for k, pos in positions.items()])
        if keys and len(new_keys) == len(keys):
            # every key starts at its low watermark (the first assign, or the first after a subscribe forgot the
            # positions): a rewind on purpose, which the checker must not hold against this process's earlier reads
            return completion("ok", keys, extra={"seek-to-beginning?": True})
        return completion("ok", keys)

    def _watermark_query(self, consumer):
        """key -> (low, high) of the workload topic's partition `key`, asked of its leader; raises KafkaException."""
        from confluent_kafka import KafkaError, KafkaException, TopicPartition

        def query(key: int) -> tuple[int, int]:
            marks = consumer.get_watermark_offsets(TopicPartition(self.w.topic, key), timeout=min(self.w.op_timeout_s, 5.0))
            if marks is None:  # confluent-kafka's answer to a timeout
                raise KafkaException(KafkaError(KafkaError._TIMED_OUT, f"no watermarks for key {key} in time"))
            return marks

        return query

    def _subscribe(self, keys: list[int]) -> Op:
        consumer = self._ensure_consumer()
        consumer.subscribe([self.w.topic])
        self.subscribed = True
        self.positions = {}
        return completion("ok", keys)

    def _poll(self, op: Op, final: bool) -> Op:
        if self.consumer is None:
            return completion("ok", [["poll", {}]])
        if final:
            return self._poll_to_end()
        return self._collect(self.consumer.consume(num_messages=self.w.poll_max_messages, timeout=0.1))

    def _collect(self, messages) -> Op:
        from confluent_kafka import KafkaError

        polled: dict[int, list] = {}
        errors = []
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    errors.append(err.str())
                elif msg.offset() is not None and msg.offset() >= 0:
                    # The end of the partition as this consumer may read it: past
                    # the last transaction marker, which no message reports.
                    key = _key_of(msg.partition())
                    self.positions[key] = max(self.positions.get(key) or 0, msg.offset())
                continue
            key = _key_of(msg.partition())
            polled.setdefault(key, []).append([msg.offset(), int(msg.value())])
            self.positions[key] = msg.offset() + 1
        if errors and not polled:
            return completion("fail", [["poll"]], error=["poll-error", errors[0]])
        return completion("ok", [["poll", polled]], extra=watermark_extra(self._fetched_high_watermarks(polled)))

    def _fetched_high_watermarks(self, keys) -> dict[int, int]:
        """key -> the high watermark of the last fetch response for each of `keys`, as librdkafka cached it.

        `get_watermark_offsets(cached=True)` sends no request: librdkafka stores
        the HighwaterMarkOffset of every fetch response for the partition
        (rd_kafka_fetch_reply_handle_partition), so the value read after a poll
        comes from the response that delivered its messages or a later one.
        The last stable offset of the same response is cached too, but no
        Python call returns it (only the periodic statistics JSON does), so it
        is not recorded. Unknown values (none fetched yet, -1001; an error
        response, -1) are left out.
        """
        from confluent_kafka import KafkaException, TopicPartition

        marks = {}
        for key in keys:
            try:
                _low, high = self.consumer.get_watermark_offsets(TopicPartition(self.w.topic, key), cached=True)
            except KafkaException:
                continue
            marks[key] = high
        return marks

    def _poll_to_end(self) -> Op:
        """Read every assigned partition up to the high watermark seen at the start.

        Under exactly-once the consumer reads read_committed, which stops at the
        last stable offset, and so do its watermark queries: the high watermark
        is asked of a read_uncommitted consumer instead, and the read waits for
        transactions still open (a replaced client's) to be aborted by their
        timeout, so it allows a longer stretch without progress. Then the keys
        it read to the end are read again at read_uncommitted, to find where
        the transaction markers lie (`_read_uncommitted`).
        """
        from confluent_kafka import Consumer

        watermarks = self.consumer
        if self.transactional:
            watermarks = Consumer(confluent_settings({
                "bootstrap.servers": self.bootstrap, "group.id": f"logquake-{self.w.topic}-watermarks",
                "isolation.level": "read_uncommitted", "enable.partition.eof": True, "fetch.queue.backoff.ms": 10,
                "logger": LIBRDKAFKA_LOGGER}))
        try:
            marks = query_watermarks(self._watermark_query(watermarks), list(self.positions), WATERMARK_RETRY_S)
            targets = {key: high for key, (_low, high) in marks.items()}
            extra = self._read_committed_to(targets)
            if self.transactional:
                complete = [key for key in targets if key not in extra.get(FINAL_READ_SHORT, {})]
                extra.update(self._read_uncommitted(watermarks, complete))
        finally:
            if watermarks is not self.consumer:
                watermarks.close()
        return completion("ok", [["poll", extra.pop("polled")]], extra=extra)

    def _read_committed_to(self, targets: dict[int, int]) -> dict:
        """The final read proper (at the consumer's isolation level) up to `targets`: {"polled": key -> pairs}
        and the completion fields of what it saw."""
        idle_limit_s = 10.0 + (self._transaction_timeout_s() + 5.0 if self.transactional else 0.0)
        polled: dict[int, list] = {}
        last_progress = time.monotonic()
        while any((self.positions.get(k) or 0) < high for k, high in targets.items()):
            if time.monotonic() - last_progress > idle_limit_s:
                break
            before = dict(self.positions)
            done = self._collect(self.consumer.consume(num_messages=1000, timeout=0.2))
            got = done.value[0][1] if done.type == "ok" else {}
            if got or self.positions != before:
                last_progress = time.monotonic()
            for key, pairs in got.items():
                polled.setdefault(key, []).extend(pairs)
        extra = {**watermark_extra(self._fetched_high_watermarks(polled), targets),
                 **final_read_extra(self.positions, targets)}
        if self.transactional and FINAL_READ_SHORT in extra:
            extra.update(self._stuck_at(list(extra[FINAL_READ_SHORT]), time.monotonic() - last_progress))
        return {"polled": polled, **extra}

    def _read_uncommitted(self, consumer, keys: list[int]) -> dict:
        """After a read_committed final read that reached its targets on `keys`, read those keys again at
        read_uncommitted from their low watermark to their high watermark now: every data record, aborted
        ones too; the offsets without one are the commit and abort markers, which the queue checker matches
        to the transactions (`missing-marker`). A key whose read does not reach its watermark within
        FINAL_SCAN_IDLE_S without progress is left out (a marker may lie beyond where it stopped)."""
        from confluent_kafka import KafkaError, KafkaException, TopicPartition

        if not keys:
            return {}
        try:
            marks = query_watermarks(self._watermark_query(consumer), keys, WATERMARK_RETRY_S)
        except KafkaException as e:
            LIBRDKAFKA_LOGGER.info("no watermarks for the read_uncommitted final read: %s", e.args[0])
            return {}
        reached = {key: low for key, (low, _high) in marks.items()}
        records: dict[int, list] = {key: [] for key in marks}
        consumer.assign([TopicPartition(self.w.topic, key, low) for key, (low, _high) in marks.items()])
        last_progress = time.monotonic()
        while any(reached[key] < high for key, (_low, high) in marks.items()) \
                and time.monotonic() - last_progress < FINAL_SCAN_IDLE_S:
            for msg in consumer.consume(num_messages=1000, timeout=0.2):
                key, err = _key_of(msg.partition()), msg.error()
                if err is not None and err.code() != KafkaError._PARTITION_EOF or key not in reached \
                        or msg.offset() is None or msg.offset() < 0:
                    continue
                if err is None:
                    records[key].append([msg.offset(), int(msg.value())])
                after = msg.offset() + (1 if err is None else 0)  # an EOF names the offset after the log's end
                if after > reached[key]:
                    reached[key] = after
                    last_progress = time.monotonic()
        done = [key for key, (_low, high) in marks.items() if reached[key] >= high]
        if not done:
            return {}
        return {UNCOMMITTED_LOG: {key: records[key] for key in done},
                UNCOMMITTED_RANGE: {key: [marks[key][0], marks[key][1]] for key in done}}

    def _stuck_at(self, keys: list[int], stalled_s: float) -> dict:
        """What a read_committed final read that stopped short saw: each short key's last stable offset (the
        read_committed consumer's ListOffsets answer, librdkafka's high watermark at that isolation level),
        how long it had gone without progress, and the transaction timeout; the queue checker judges
        `hanging-transaction` from them. Nothing when the offsets cannot be asked."""
        from confluent_kafka import KafkaException

        try:
            marks = query_watermarks(self._watermark_query(self.consumer), keys, 5.0)
        except KafkaException as e:
            LIBRDKAFKA_LOGGER.info("last stable offsets of the short keys not available: %s", e.args[0])
            return {}
        return {LAST_STABLE_OFFSETS: {key: high for key, (_low, high) in marks.items()},
                STALLED_S: round(stalled_s, 1), TRANSACTION_TIMEOUT_MS: int(self._transaction_timeout_s() * 1000)}

    def _transaction_timeout_s(self) -> float:
        return max(self.w.op_timeout_s, 10.0)

    def _close_consumer(self) -> None:
        if self.consumer is not None:
            try:
                self.consumer.close()
            except Exception:  # closing a consumer of a dead cluster may fail; nothing to save
                pass
            self.consumer = None
        self.positions = {}
        self.subscribed = False

    def close(self) -> None:
        self._close_consumer()
        self.producer.purge()
        self.producer.flush(0)


class PythonQueueClient(Client):
    """The same operations on kafka-python or aiokafka (`workloads.python_clients` gives both one shape).

    Under exactly-once the producer is transactional (`transactional_id`, one per process, and
    `init_transactions`) and the consumer reads read_committed; a `txn` op is begin_transaction, the sends
    (and polls), and commit_transaction, or abort_transaction when the op asks for it or the commit fails
    (`python_clients.end_transaction`). `subscribe` is not supported on these clients."""

    def __init__(self, workload: QueueWorkload, bootstrap: str, process: int, client: str):
        self.lib = library(client)
        self.w = workload
        self.bootstrap = bootstrap.split(",")
        self.retries = workload.delivery != "at-most-once"
        self.transactional = workload.delivery == "exactly-once"
        self.call_timeout_s = workload.op_timeout_s
        self.loop = self.lib.event_loop(f"aiokafka-client-{process}")
        acks = workload.effective_acks()
        config: dict[str, Any] = dict(
            bootstrap_servers=self.bootstrap,
            acks={"all": "all", "1": 1, "0": 0}[acks],
            retries=5 if self.retries else 0,
            enable_idempotence=workload.idempotent or self.transactional,
            request_timeout_ms=int(min(workload.op_timeout_s, 5) * 1000),
            linger_ms=0,
        )
        if self.retries and not workload.idempotent and not self.transactional:
            config["max_in_flight_requests_per_connection"] = 1  # a multi-send op's messages keep their order
        if self.transactional:
            # one transactional id per process, as the confluent client (ConfluentQueueClient.__init__)
            config["transactional_id"] = f"logquake-{workload.topic}-{process}"
            config["transaction_timeout_ms"] = int(self._transaction_timeout_s() * 1000)
        try:
            self.producer = self.lib.producer(self.loop, self.call_timeout_s, **config)
            if self.transactional:
                self.producer.init_transactions()
        except BaseException:
            if self.loop is not None:
                self.loop.stop()
            raise
        self.consumer = None
        self.positions: dict[int, int | None] = {}

    def _transaction_timeout_s(self) -> float:
        return max(self.w.op_timeout_s, 10.0)

    def invoke(self, op: Op) -> Op:
        if op.f == "send":
            return python_send(self.lib, self.producer, self.w.topic, op.value, self.w.op_timeout_s, self.retries,
                               acks_all=self.w.effective_acks() == "all")
        if op.f == "txn":
            return self._txn(op)
        if op.f == "poll":
            return self._poll(bool(op.extra.get("final")))
        if op.f == "assign":
            return self._assign(op.value)
        if op.f == "subscribe":
            raise ValueError(f"{self.lib.name} queue client: subscribe is not supported yet; use the confluent client")
        raise ValueError(f"queue client: unknown operation {op.f!r}")

    def _txn(self, op: Op) -> Op:
        """The sends (and polls) of `op` in one transaction; ok, fail and info as `ConfluentQueueClient._txn`.

        An aborted transaction's polls did not happen: the consumer is put back where it stood."""
        errors = self.lib.errors
        if not self.transactional:
            raise ValueError("queue client: txn operations need --delivery exactly-once")
        try:
            self.producer.begin_transaction()
        except errors.KafkaError as e:
            return completion("fail", op.value, error=["begin-transaction", describe_error(e)])
        positions_before = dict(self.positions)
        sends = [m for m in op.value if m[0] == "send"]
        futures: list[Any] = []
        polls: list[list] = []
        fetched: dict[int, int] = {}
        refused = None
        for mop in op.value:
            if mop[0] == "send":
                try:
                    futures.append(self.producer.send(self.w.topic, value=str(mop[2]).encode(), partition=mop[1]))
                except (errors.KafkaError, AssertionError, TypeError) as e:
                    refused = ["produce-refused", describe_error(e)]
                    break
            else:
                polled = self._poll(final=False)
                polls.append(polled.value[0] if polled.type == "ok" else ["poll", {}])
                fetched.update(polled.extra.get(FETCH_HIGH_WATERMARKS, {}))
        offsets: list[int | None] = []
        if refused is None:
            for future in futures:
                try:
                    meta = future.get(timeout=self.w.op_timeout_s)
                except errors.KafkaError as e:  # the transaction is then abortable: its commit fails and it aborts
                    refused = ["send-failed", describe_error(e)]
                    break
                offsets.append(meta.offset if meta.offset is not None and meta.offset >= 0 else None)
        on_purpose = bool(op.extra.get("abort"))
        verdict, error = end_transaction(self.lib, self.producer, refused is None and not on_purpose, self.w.op_timeout_s)
        if verdict == "unknown":
            return completion("info", op.value, error=(refused or []) + (error or []))
        if verdict == "aborted":
            self._rewind(positions_before)
            reason = ["aborted", "the workload aborts a tenth of its transactions on purpose"] if on_purpose else None
            return completion("fail", op.value, error=reason or refused or error)
        value: list[list] = []
        sent = iter(zip(sends, offsets))
        polled_mops = iter(polls)
        for mop in op.value:
            if mop[0] == "send":
                (_, key, v), offset = next(sent)
                value.append(["send", key, [offset, v]])
            else:
                value.append(next(polled_mops))
        return completion("ok", value, extra=watermark_extra(fetched))

    def _rewind(self, positions_before: dict[int, int | None]) -> None:
        if self.consumer is not None and positions_before != self.positions:
            self.positions = positions_before
            self._assign(list(positions_before))

    def _ensure_consumer(self):
        if self.consumer is None:
            self.consumer = self.lib.consumer(
                self.loop, self.call_timeout_s, bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                auto_offset_reset="earliest", group_id=None,
                isolation_level="read_committed" if self.transactional else "read_uncommitted")
        return self.consumer

    def _assign(self, keys: list[int]) -> Op:
        consumer = self._ensure_consumer()
        self.positions = {k: self.positions.get(k) for k in keys}
        parts = [self.lib.topic_partition(self.w.topic, k) for k in keys]
        consumer.assign(parts)
        for tp in parts:
            pos = self.positions[tp.partition]
            if pos is None:
                consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, pos)
        return completion("ok", keys)

    def _final_targets(self) -> dict:
        """tp -> the high watermark the final read reads up to. Under exactly-once it is asked of a
        read_uncommitted consumer (a read_committed one answers the last stable offset), and the read
        waits for transactions still open to be aborted by their timeout."""
        parts = list(self.consumer.assignment())
        if not self.transactional:
            return self.consumer.end_offsets(parts)
        plain = self.lib.consumer(self.loop, self.call_timeout_s, bootstrap_servers=self.bootstrap, group_id=None,
                                  isolation_level="read_uncommitted")
        try:
            return plain.end_offsets(parts)
        finally:
            close_quietly(plain.close)

    def _poll(self, final: bool) -> Op:
        if self.consumer is None:
            return completion("ok", [["poll", {}]])
        polled: dict[int, list] = {}
        ends = self._final_targets() if final else {}
        idle_limit_s = 10.0 + (self._transaction_timeout_s() + 5.0 if self.transactional else 0.0)
        last_progress = time.monotonic()
        while True:
            batch = self.consumer.poll(timeout_ms=200 if final else 100,
                                       max_records=1000 if final else self.w.poll_max_messages)
            for tp, records in batch.items():
                for r in records:
                    polled.setdefault(tp.partition, []).append([r.offset, int(r.value)])
                    self.positions[tp.partition] = r.offset + 1
            if not final:
                break
            before = {tp.partition: self.positions.get(tp.partition) for tp in ends}
            for tp in ends:
                # past transaction markers and aborted records, which no record reports
                self.positions[tp.partition] = max(self.positions.get(tp.partition) or 0, self.consumer.position(tp))
            if batch or before != {tp.partition: self.positions.get(tp.partition) for tp in ends}:
                last_progress = time.monotonic()
            if all((self.positions.get(tp.partition) or 0) >= end for tp, end in ends.items()):
                break
            if time.monotonic() - last_progress > idle_limit_s:
                break
        # both libraries keep the high watermark of the last fetch response they parsed (and no last stable
        # offset in kafka-python); `end_offsets` asks ListOffsets.
        fetched = {key: self.consumer.highwater(self.lib.topic_partition(self.w.topic, key)) for key in polled}
        listed = {tp.partition: end for tp, end in ends.items()}
        extra = {**watermark_extra(fetched, listed), **final_read_extra(self.positions, listed)}
        if final and self.transactional:
            extra.update(self._read_uncommitted([key for key in listed if key not in extra.get(FINAL_READ_SHORT, {})]))
        return completion("ok", [["poll", polled]], extra=extra)

    def _read_uncommitted(self, keys: list[int]) -> dict:
        """After a read_committed final read that reached its targets on `keys`, read those keys again at
        read_uncommitted from their low watermark to their high watermark now (both listed with ListOffsets
        when this read starts): every data record, aborted ones too; the offsets without one are the commit and
        abort markers, which the queue checker matches to the transactions (`missing-marker`), as
        ConfluentQueueClient._read_uncommitted does. A key whose read does not reach its watermark within
        FINAL_SCAN_IDLE_S without progress is left out (a marker may lie beyond where it stopped)."""
        if not keys:
            return {}
        parts = [self.lib.topic_partition(self.w.topic, key) for key in keys]
        consumer = None
        try:
            consumer = self.lib.consumer(self.loop, self.call_timeout_s, bootstrap_servers=self.bootstrap,
                                         group_id=None, enable_auto_commit=False, isolation_level="read_uncommitted")
            lows, highs = consumer.beginning_offsets(parts), consumer.end_offsets(parts)
            marks = {tp.partition: (int(lows[tp]), int(highs[tp])) for tp in parts}
            consumer.assign(parts)
            for tp in parts:
                consumer.seek(tp, marks[tp.partition][0])
            reached = {key: low for key, (low, _high) in marks.items()}
            records: dict[int, list] = {key: [] for key in marks}
            last_progress = time.monotonic()
            while any(reached[key] < high for key, (_low, high) in marks.items()) \
                    and time.monotonic() - last_progress < FINAL_SCAN_IDLE_S:
                for tp, batch in consumer.poll(timeout_ms=200, max_records=1000).items():
                    records[tp.partition].extend([r.offset, int(r.value)] for r in batch)
                for tp in parts:
                    # past the markers, which no record reports
                    after = consumer.position(tp)
                    if after > reached[tp.partition]:
                        reached[tp.partition] = after
                        last_progress = time.monotonic()
        except self.lib.errors.KafkaError as e:  # aiokafka's timeouts are KafkaErrors too
            log.info("read_uncommitted final read not done: %s", describe_error(e))
            return {}
        finally:
            if consumer is not None:
                close_quietly(consumer.close)
        done = [key for key, (_low, high) in marks.items() if reached[key] >= high]
        if not done:
            return {}
        return {UNCOMMITTED_LOG: {key: records[key] for key in done},
                UNCOMMITTED_RANGE: {key: [marks[key][0], marks[key][1]] for key in done}}

    def close(self) -> None:
        closers = [self.consumer.close] if self.consumer is not None else []
        close_quietly(*closers, lambda: self.producer.close(timeout=1))
        if self.loop is not None:
            self.loop.stop()


def _positive(flag: str, value: float) -> float:
    if not 0 < value < 86_400:  # NaN and infinity fail too (librdkafka takes timeouts in int milliseconds)
        raise ValueError(f"{flag} must be a positive number of seconds below a day, got {value!r}")
    return value


def _build(settings) -> QueueWorkload:
    o = settings.options
    return QueueWorkload(delivery=settings.delivery.mode, idempotent=settings.delivery.idempotent, keys=o["keys"],
                         client=settings.client, replication_factor=settings.replication_factor, acks=o["acks"],
                         subscribe=o["subscribe"], op_timeout_s=_positive("--op-timeout", o["op_timeout"]),
                         topic_config={"min.insync.replicas": str(settings.min_insync_replicas)})


register_workload(WorkloadKind(
    name="queue",
    summary="Jepsen's Kafka queue: sends, polls and transactions over several keys (topic-partitions)",
    build=_build,
    options=(
        Option("keys", int, 4, "keys (topic-partitions) the queue workload uses"),
        Option("acks", str, None, "override the producer acks of the delivery mode (e.g. 0 for at-most-once)",
               choices=("0", "1", "all")),
        Option("op_timeout", float, 10.0, "seconds a send or poll may take before its outcome is unknown (info) "
                                          "and its client is replaced"),
        Option("subscribe", bool, False, "mix subscribe ops (consumer-group membership) into the polls; needs a broker "
                                         "with consumer groups"),
    ),
    deliveries=(Delivery("at-least-once"), Delivery("at-most-once"), Delivery("at-least-once", idempotent=True),
                Delivery("exactly-once")),
    clients=CLIENTS,
))
