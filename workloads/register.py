"""A single linearizable register kept in one Kafka partition, checked with the linearizability checker.

The register is the log: a write of `v` appends `w:v` with acks=all through an
idempotent producer; a read appends a marker `r:<process>:<n>` the same way and
returns the value of the last write *before its marker's offset*, which the
reader finds by consuming the partition from its start (each client keeps
what it has consumed, so a read fetches only what is new). A read therefore
takes effect when its marker is acknowledged: if the broker keeps its log (no
acknowledged record lost, one record per offset, no duplicates), every
history is linearizable with respect to a read/write register, and the
linearizability checker (Knossos's WGL search, `checkers.linearizable`) says
so. Reading the high watermark and fetching the last record instead would
not be linearizable even on a correct Kafka: a deposed leader that does not
know it yet, or a new leader whose high watermark still lags (KIP-207),
answers with an old value.

The topic is not compacted, although a register's topic usually would be:
compaction keeps only the newest write of a key, so a reader whose consumer
lags could find the writes before its marker compacted away and answer with
an older one. (Our broker refuses `cleanup.policy=compact` anyway.)

Outcomes: a write is `ok` with its offset, `fail` when it certainly was not
written (the rules of the queue workload's sends), else `info`; a read is `ok`
with its value (None before the first write), `fail` when its marker was
certainly not written, else `info` (a read has no effect on the register, so
either is safe).

Thread-safety: one client per worker; the generator's counter is locked.

Sources: Jepsen's register workloads and Knossos's register model; the
"linearizable reads through the log" idea of writing a marker and reading up to
it is the usual way to read a replicated log linearizably (e.g. Raft's
read-through-the-log, Ongaro's thesis, section 6.4).
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import random
import threading
import time
from typing import Any

from checkers.queue.delivery import Delivery
from workloads.client_security import confluent_settings
from workloads.core import (Client, Grant, Op, Option, UniqueValues, Workload, WorkloadKind, completion, grants,
                            idempotent_write, invocation, register_workload)
from workloads.kafka_admin import LIBRDKAFKA_LOGGER, confluent_send_outcome, create_topic

TOPIC = "logquake-register"


class RegisterWorkload(UniqueValues, Workload):
    name = "register"
    isolated_clients = True

    def __init__(self, replication_factor: int = 1, min_insync_replicas: int = 1, op_timeout_s: float = 10.0,
                 read_fraction: float = 0.5, topic: str = TOPIC):
        if not 0.0 <= read_fraction <= 1.0:
            raise ValueError(f"--read-fraction must be between 0 and 1, got {read_fraction}")
        self.replication_factor = replication_factor
        self.min_insync_replicas = min_insync_replicas
        self.op_timeout_s = op_timeout_s
        self.read_fraction = read_fraction
        self.topic = topic
        self._init_values()

    def describe(self) -> dict:
        return {"name": self.name, "topic": self.topic, "replication_factor": self.replication_factor,
                "min_insync_replicas": self.min_insync_replicas, "op_timeout_s": self.op_timeout_s,
                "read_fraction": self.read_fraction}

    def topics(self) -> dict[str, int]:
        return {self.topic: 1}

    def acls(self) -> list[Grant]:
        """Its topic, to append (writes and read markers) and read; its consumer's group `logquake-<topic>`,
        only asked for its coordinator (the consumer assigns and commits nothing): DESCRIBE; IDEMPOTENT_WRITE on
        the cluster for the idempotent producer."""
        return (grants("TOPIC", self.topic, "READ", "WRITE") + grants("GROUP", f"logquake-{self.topic}", "DESCRIBE")
                + idempotent_write())


    def setup(self, bootstrap: str) -> None:
        create_topic(bootstrap, self.topic, 1, self.replication_factor,
                     {"min.insync.replicas": str(self.min_insync_replicas)})

    def next_op(self, rng: random.Random, process: int) -> Op:
        if rng.random() < self.read_fraction:
            return invocation("read", None)
        return invocation("write", self.unique_value())

    def final_ops(self) -> list[Op]:
        return [invocation("read", None, {"final": True})]

    def open_client(self, bootstrap: str, process: int) -> Client:
        return RegisterClient(self, bootstrap, process)

    def check(self, history, final_reads_incomplete: str | None = None) -> dict:
        from checkers.linearizable import check as check_linearizable

        register_ops = history.filter(lambda op: op.f in ("read", "write"))
        result = check_linearizable(register_ops, "register", time_limit_s=120)
        result["promises"] = [{
            "id": "linearizable", "promise": "every read returns the latest write (a linearizable register)",
            "status": {True: "held", False: "broken"}.get(result.get("valid"), "unknown"),
            "anomalies": {"nonlinearizable": 1} if result.get("valid") is False else {}, "allowed": {},
            "reason": (result.get("counterexample") or {}).get("explanation") or result.get("reason")
            or "the history is linearizable"}]
        return result


class RegisterClient(Client):
    """An idempotent producer for writes and markers, and a consumer that reads the register's log from its start."""

    def __init__(self, workload: RegisterWorkload, bootstrap: str, process: int):
        from confluent_kafka import Consumer, Producer

        self.w = workload
        self.process = process
        timeout_ms = int(workload.op_timeout_s * 1000)
        self.producer = Producer(confluent_settings({
            "bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 0,
            "message.timeout.ms": timeout_ms, "request.timeout.ms": min(timeout_ms, 5000),
            "socket.timeout.ms": min(timeout_ms, 5000), "reconnect.backoff.max.ms": 1000,
            "topic.metadata.refresh.interval.ms": 2000, "logger": LIBRDKAFKA_LOGGER,
        }))
        self.consumer = Consumer(confluent_settings({
            "bootstrap.servers": bootstrap, "group.id": f"logquake-{workload.topic}", "enable.auto.commit": False,
            "fetch.queue.backoff.ms": 10, "socket.timeout.ms": 5000, "topic.metadata.refresh.interval.ms": 2000,
            "logger": LIBRDKAFKA_LOGGER,
        }))
        self._assigned = False
        self.next_offset = 0  # the first offset not consumed yet
        self.write_offsets: list[int] = []  # offsets of the writes consumed so far, ascending
        self.write_values: list[Any] = []
        self.markers = itertools.count(1)

    def invoke(self, op: Op) -> Op:
        if op.f == "write":
            outcome = self._append(f"w:{op.value}")
            if outcome[0] == "ok":
                return completion("ok", op.value, extra={"offset": outcome[1]})
            return completion(outcome[0], op.value, error=outcome[1])
        if op.f == "read":
            outcome = self._append(f"r:{self.process}:{next(self.markers)}")
            if outcome[0] != "ok":
                return completion(outcome[0], None, error=outcome[1])
            marker = outcome[1]
            try:
                self._consume_until(marker, deadline=time.monotonic() + self.w.op_timeout_s)
            except TimeoutError as e:
                return completion("info", None, error=["read-timeout", str(e)])
            i = bisect.bisect_left(self.write_offsets, marker)
            value = self.write_values[i - 1] if i else None
            return completion("ok", value, extra={"offset": marker})
        raise ValueError(f"register client: unknown operation {op.f!r}")

    def _append(self, payload: str) -> tuple[str, Any]:
        """("ok", offset) for an acknowledged append, else ("fail" | "info", error)."""
        outcome: dict[str, Any] = {}
        done = threading.Event()

        def on_delivery(err, msg):
            outcome["err"] = err
            outcome["offset"] = msg.offset() if err is None else None
            done.set()

        try:
            self.producer.produce(self.w.topic, value=payload.encode(), partition=0, on_delivery=on_delivery)
        except Exception as e:  # refused by the client before anything was sent
            return "fail", ["produce-refused", str(e)]
        self.producer.flush(self.w.op_timeout_s + 5)
        if not done.is_set():
            return "info", ["timeout", f"no delivery report within {self.w.op_timeout_s + 5:g} s"]
        err = outcome["err"]
        if err is None:
            return "ok", outcome["offset"]
        return confluent_send_outcome(err.code(), retries=True), [err.name().lower(), err.str()]

    def _consume_until(self, marker: int, deadline: float) -> None:
        """Consume the register's log up to and including offset `marker`, keeping every write seen."""
        from confluent_kafka import KafkaError, TopicPartition

        if not self._assigned:
            self.consumer.assign([TopicPartition(self.w.topic, 0, self.next_offset)])
            self._assigned = True
        while self.next_offset <= marker:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"consumed up to offset {self.next_offset - 1}, marker at {marker}")
            # poll returns as soon as a message is there (consume(n) would wait for n or the timeout)
            msg = self.consumer.poll(min(left, 0.5))
            for msg in () if msg is None else (msg,):
                if msg.error() is not None:
                    if msg.error().code() != KafkaError._PARTITION_EOF:
                        LIBRDKAFKA_LOGGER.info("register read: %s", msg.error())
                    continue
                offset = msg.offset()
                if offset < self.next_offset:
                    continue  # delivered again after a re-fetch
                self.next_offset = offset + 1
                body = (msg.value() or b"").decode(errors="replace")
                if body.startswith("w:"):
                    self.write_offsets.append(offset)
                    self.write_values.append(int(body[2:]))

    def close(self) -> None:
        with contextlib.suppress(Exception):  # a consumer of a dead cluster may not close cleanly; nothing to save
            self.consumer.close()
        self.producer.purge()
        self.producer.flush(0)


def _build(settings) -> RegisterWorkload:
    return RegisterWorkload(replication_factor=settings.replication_factor,
                            min_insync_replicas=settings.min_insync_replicas,
                            read_fraction=settings.options["read_fraction"])


register_workload(WorkloadKind(
    name="register",
    summary="one linearizable read/write register in one partition; reads go through the log",
    build=_build,
    options=(Option("read_fraction", float, 0.5, "share of register operations that are reads"),),
    deliveries=(Delivery("at-least-once", idempotent=True),),
    clients=("confluent",),
))
