"""What every Kafka workload needs: topic creation while a cluster forms, sends and their outcomes, and a
transaction's commit.

Thread-safety: pure functions; `create_topic` makes its own admin client.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from checkers.history import Op, completion
from workloads.client_security import confluent_settings

__all__ = ["LIBRDKAFKA_LOGGER", "combine_send_outcomes", "commit_transaction", "confluent_send", "confluent_send_outcome",
           "create_topic"]

LIBRDKAFKA_LOGGER = logging.getLogger("librdkafka")


def create_topic(bootstrap: str, topic: str, partitions: int, replication_factor: int,
                 config: dict[str, str] | None = None, timeout_s: float = 30.0) -> None:
    """Create `topic` (an existing one is fine), asking again while the cluster is still forming.

    A broker answers Metadata before the controller has admitted it, so a cluster that has just
    started may still have too few brokers for the replication factor: that, and a controller still
    being elected, are retried for `timeout_s`. RuntimeError names the topic and the last error.
    """
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(confluent_settings({"bootstrap.servers": bootstrap, "logger": LIBRDKAFKA_LOGGER}))
    new = NewTopic(topic, num_partitions=partitions, replication_factor=replication_factor, config=dict(config or {}))
    forming = {KafkaError.INVALID_REPLICATION_FACTOR, KafkaError.NOT_CONTROLLER, KafkaError.REQUEST_TIMED_OUT,
               KafkaError.BROKER_NOT_AVAILABLE, KafkaError._TRANSPORT, KafkaError._TIMED_OUT}
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin.create_topics([new], operation_timeout=30)[topic].result(60)
            return
        except KafkaException as e:
            err = e.args[0]
            if err.code() == err.TOPIC_ALREADY_EXISTS:
                return
            if err.code() in forming and time.monotonic() < deadline:
                time.sleep(0.5)
                continue
            raise RuntimeError(f"could not create topic {topic!r} with {partitions} partitions "
                               f"and replication factor {replication_factor}: {err}") from e


# Kafka error codes a leader may answer after it appended the batch: NOT_ENOUGH_REPLICAS_AFTER_APPEND always; with
# acks=all also NOT_LEADER_OR_FOLLOWER (it lost the leadership while waiting for the ISR, and the new leader may have
# the batch: Kafka's DelayedProduce, broker.replication.manager here) and REQUEST_TIMED_OUT (the ISR did not catch up
# in time, and may later). The deterministic simulation found the first: a send answered 6 was read later.
AFTER_APPEND = frozenset({20})
AFTER_APPEND_ACKS_ALL = AFTER_APPEND | {6, 7}


def after_append(code: int, acks_all: bool) -> bool:
    """Whether a broker's error answer `code` to a produce may come after the batch was appended."""
    return code in (AFTER_APPEND_ACKS_ALL if acks_all else AFTER_APPEND)


def confluent_send_outcome(code: int, retries: bool, acks_all: bool = False) -> str:
    """`fail` or `info` for a send whose delivery report carries librdkafka error `code`.

    Certain failure: the message can never be written (too large, invalid topic,
    not authorised), or the broker refused the one and only attempt (no retries)
    before appending it. Anything else is unknown: a local timeout or transport
    error (the request may have arrived), an error after retries (an earlier
    attempt may have been written), or an error the leader may answer after the
    append (`after_append`: NOT_ENOUGH_REPLICAS_AFTER_APPEND, and under acks=all
    NOT_LEADER_OR_FOLLOWER and REQUEST_TIMED_OUT).
    """
    from confluent_kafka import KafkaError

    never_written = {KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_MSG_SIZE, KafkaError.TOPIC_EXCEPTION,
                     KafkaError.TOPIC_AUTHORIZATION_FAILED}
    if code in never_written:
        return "fail"
    broker_refused = code > 0 and not after_append(code, acks_all)
    return "fail" if broker_refused and not retries else "info"


def combine_send_outcomes(outcomes: list[tuple[str, list | None]]) -> tuple[str, list | None]:
    """The type and error of a send op from each message's (type, error): ok when every message is ok,
    fail when every one certainly failed, else info (some may have been written); the first error."""
    types = {t for t, _ in outcomes}
    error = next((e for t, e in outcomes if e is not None), None)
    if types == {"ok"}:
        return "ok", None
    if types == {"fail"}:
        return "fail", error
    return "info", error


def confluent_send(producer, topic: str, mops: list, timeout_s: float, retries: bool, acks_all: bool = False) -> Op:
    """Produce `[["send", partition, value], ...]` through a confluent-kafka `producer`, flush once, and answer
    the send op's completion: ok with `[offset, value]` per message when all were acknowledged (offset None
    when unknown, as under acks=0), else fail or info by `combine_send_outcomes`."""
    outcomes: list[dict[str, Any]] = []
    for _, partition, value in mops:
        outcome: dict[str, Any] = {}

        def on_delivery(err, msg, outcome=outcome):
            outcome["err"] = err
            if err is None:
                # acks=0: the producer never learns the offset (librdkafka reports -1)
                offset = msg.offset()
                outcome["offset"] = offset if offset is not None and offset >= 0 else None

        try:
            producer.produce(topic, value=str(value).encode(), partition=partition, on_delivery=on_delivery)
        except BufferError as e:
            outcome["refused"] = ["buffer-full", str(e)]
        except Exception as e:  # refused by the client before anything was sent
            outcome["refused"] = ["produce-refused", str(e)]
        outcomes.append(outcome)
    if any("refused" not in o for o in outcomes):
        producer.flush(timeout_s)
    each = []
    for outcome in outcomes:
        if "refused" in outcome:
            each.append(("fail", outcome["refused"]))
        elif "err" not in outcome:
            each.append(("info", ["timeout", f"no delivery report within {timeout_s} s"]))
        elif outcome["err"] is None:
            each.append(("ok", None))
        else:
            err = outcome["err"]
            each.append((confluent_send_outcome(err.code(), retries, acks_all), [err.name().lower(), err.str()]))
    verdict, error = combine_send_outcomes(each)
    if verdict == "ok":
        return completion("ok", [["send", p, [o["offset"], v]] for (_, p, v), o in zip(mops, outcomes)])
    return completion(verdict, mops, error=error)


def commit_transaction(producer, timeout_s: float) -> tuple[str, list | None]:
    """Commit a confluent-kafka producer's open transaction: ("committed", None), ("abort", error) when it
    must be aborted, or ("unknown", error); retriable errors are asked again until `timeout_s` has passed."""
    from confluent_kafka import KafkaException

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            producer.commit_transaction(max(0.1, deadline - time.monotonic()))
            return "committed", None
        except KafkaException as e:
            err = e.args[0]
            if err.txn_requires_abort():
                return "abort", ["commit-abortable", err.str()]
            if err.retriable() and time.monotonic() < deadline:
                continue
            return "unknown", ["commit-unknown", err.str()]
