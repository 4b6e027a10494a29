"""What every Kafka workload needs: topic creation while a cluster forms, and the outcome of a failed send.

Thread-safety: pure functions; `create_topic` makes its own admin client.
"""

from __future__ import annotations

import logging
import time

__all__ = ["LIBRDKAFKA_LOGGER", "confluent_send_outcome", "create_topic"]

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

    admin = AdminClient({"bootstrap.servers": bootstrap, "logger": LIBRDKAFKA_LOGGER})
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


def confluent_send_outcome(code: int, retries: bool) -> str:
    """`fail` or `info` for a send whose delivery report carries librdkafka error `code`.

    Certain failure: the message can never be written (too large, invalid topic,
    not authorised), or the broker refused the one and only attempt (no retries).
    Anything else is unknown: a local timeout or transport error (the request may
    have arrived), an error after retries (an earlier attempt may have been
    written), or NOT_ENOUGH_REPLICAS_AFTER_APPEND (written on the leader).
    """
    from confluent_kafka import KafkaError

    never_written = {KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_MSG_SIZE, KafkaError.TOPIC_EXCEPTION,
                     KafkaError.TOPIC_AUTHORIZATION_FAILED}
    if code in never_written:
        return "fail"
    broker_refused = code > 0 and code != KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND
    return "fail" if broker_refused and not retries else "info"
