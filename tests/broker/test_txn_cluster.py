"""Exactly-once read-process-write on a 3-node cluster while brokers and processors die (slow; KIP-98, KIP-447).

A processor (a subprocess, so it can be SIGKILLed) consumes `in` with
read_committed in a consumer group, writes `out-<value>` to `out`, sends its offsets
to the transaction and commits; every fourth transaction writes
`aborted-<value>` instead and aborts (then rewinds). Meanwhile the test
SIGKILLs and restarts the broker of the transaction coordinator (the group id is
chosen so that it also coordinates the group) and then the group coordinator's
broker, freezes the processor mid-transaction (SIGSTOP) and
starts a second processor with the same transactional.id (the first is fenced
when it wakes), then SIGKILLs that one mid-transaction and starts a third,
which finishes the input. Checked: `out` read with read_committed holds every
input value exactly once and no `aborted-` value; read_uncommitted shows
aborted values; the frozen processor reported that it was fenced.

The same loop runs with confluent-kafka (librdkafka) and kafka-python.
"""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
import time

import pytest

from . import kafka_requests as k
from .raw_client import RawClient
from .test_replication_process import Cluster

pytestmark = pytest.mark.slow

INPUT_COUNT = 240
CLUSTER_OVERRIDES = {
    "transaction.state.log.num.partitions": "3",
    "offsets.topic.num.partitions": "3",
    "group.initial.rebalance.delay.ms": "0",
    "group.min.session.timeout.ms": "1000",
    "min.insync.replicas": "2",
}

# argv: bootstrap transactional.id input-count group.id. Prints COMMITTED <next offset>, IN_TXN, ABORTED, FENCED,
# STUCK, DONE. librdkafka 2.16 can block in send_offsets_to_transaction past its timeout when the group
# coordinator's broker left the Metadata response while it was fenced (confluentinc/librdkafka#5511: the
# decommissioned broker stays cached as coordinator); a watchdog then reports STUCK and exits, and the test
# starts a new processor, as an operator would restart a hung application.
CONFLUENT_PROCESSOR = r"""
import os, sys, threading, time
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
bootstrap, txn_id, total, group_id = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group_id, "isolation.level": "read_committed",
                     "enable.auto.commit": False, "auto.offset.reset": "earliest",
                     "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id, "transaction.timeout.ms": 20000,
                     "debug": "eos"})
FENCED = (KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH)
API_TIMEOUT_S = 10
busy = [None]

def watchdog():
    while True:
        time.sleep(0.5)
        started = busy[0]
        if started is not None and time.monotonic() - started[0] > API_TIMEOUT_S + 5:
            print(f"STUCK {started[1]}", flush=True)
            os._exit(4)

threading.Thread(target=watchdog, daemon=True).start()

def call(name, function, *args):
    busy[0] = (time.monotonic(), name)
    try:
        return function(*args)
    finally:
        busy[0] = None

def fatal(exc):
    error = exc.args[0]
    print(("FENCED " if error.code() in FENCED else "FATAL ") + str(error), flush=True)
    sys.exit(3)

def abort():
    while True:
        try:
            call("abort_transaction", producer.abort_transaction, API_TIMEOUT_S)
            return
        except KafkaException as exc:
            if exc.args[0].fatal() or not exc.args[0].retriable():
                fatal(exc)

try:
    call("init_transactions", producer.init_transactions, 60)
except KafkaException as exc:
    fatal(exc)
consumer.subscribe(["in"])
print("READY", flush=True)
attempts = 0
while True:
    messages = [m for m in consumer.consume(10, 0.5) if m.error() is None]
    if not messages:
        committed = consumer.committed([TopicPartition("in", 0)], 10)[0].offset
        if committed >= total:
            print("DONE", flush=True)
            break
        continue
    first, last = messages[0].offset(), messages[-1].offset()
    attempts += 1
    deliberate_abort = attempts % 4 == 0
    try:
        producer.begin_transaction()
        for m in messages:
            producer.produce("out", value=(b"aborted-" if deliberate_abort else b"out-") + m.value())
        call("send_offsets_to_transaction", producer.send_offsets_to_transaction,
             [TopicPartition("in", 0, last + 1)], consumer.consumer_group_metadata(), API_TIMEOUT_S)
        print("IN_TXN", flush=True)
        time.sleep(0.2)
        if deliberate_abort:
            call("flush", producer.flush, API_TIMEOUT_S)
            abort()
            print("ABORTED", flush=True)
            consumer.seek(TopicPartition("in", 0, first))
            continue
        while True:
            try:
                call("commit_transaction", producer.commit_transaction, API_TIMEOUT_S)
                break
            except KafkaException as exc:
                if exc.args[0].retriable() and not exc.args[0].txn_requires_abort() and not exc.args[0].fatal():
                    continue
                raise
        print(f"COMMITTED {last + 1}", flush=True)
    except KafkaException as exc:
        error = exc.args[0]
        if error.fatal() or error.code() in FENCED:
            fatal(exc)
        print(f"RETRY {error}", flush=True)
        abort()
        consumer.seek(TopicPartition("in", 0, first))
"""

# kafka-python 3.0.12 can block forever in a transactional call: when connecting to the transaction
# coordinator raises (a killed broker that the metadata still names), its Sender drops the pending
# request (sender.py, the `except` branch of the transactional send loop leaves it unqueued), and
# send_offsets_to_transaction / commit_transaction wait without a timeout. A watchdog reports STUCK
# and exits, as an operator would restart a hung application; the test then starts a new processor.
# kafka-python 3.0.12 also answers INVALID_PRODUCER_EPOCH on a transactional Produce with a KIP-360
# epoch bump (Java treats it as abortable, KIP-588), and while that bump is in flight every
# commit/abort raises "Invalid transition attempted from state BUMPING_PRODUCER_EPOCH". A fenced
# processor's bump ends in PRODUCER_FENCED, so the abort is retried until the client settles.
KAFKA_PYTHON_PROCESSOR = r"""
import os, sys, threading, time
from kafka import KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition
from kafka.errors import KafkaError, ProducerFencedError, InvalidProducerEpochError
bootstrap, txn_id, total, group_id = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
tp = TopicPartition("in", 0)
busy = [None]

def watchdog():
    while True:
        time.sleep(0.5)
        started = busy[0]
        if started is not None and time.monotonic() - started[0] > 12:
            print(f"STUCK {started[1]}", flush=True)
            os._exit(4)

threading.Thread(target=watchdog, daemon=True).start()

def call(name, function, *args):
    busy[0] = (time.monotonic(), name)
    try:
        return function(*args)
    finally:
        busy[0] = None

consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), group_id=group_id, isolation_level="read_committed",
                         enable_auto_commit=False, auto_offset_reset="earliest",
                         session_timeout_ms=6000, heartbeat_interval_ms=500)
producer = KafkaProducer(bootstrap_servers=bootstrap.split(","), transactional_id=txn_id, transaction_timeout_ms=20000)
FENCED = (ProducerFencedError, InvalidProducerEpochError)

def is_fenced(exc):
    return isinstance(exc, FENCED) or "fenced" in str(exc).lower() or "Fenced" in type(exc).__name__

try:
    call("init_transactions", producer.init_transactions)
except KafkaError as exc:
    print(("FENCED " if is_fenced(exc) else "FATAL ") + repr(exc), flush=True)
    sys.exit(3)
consumer.subscribe(["in"])
print("READY", flush=True)
attempts = 0
while True:
    batches = consumer.poll(timeout_ms=500, max_records=10)
    messages = [m for ms in batches.values() for m in ms]
    if not messages:
        committed = consumer.committed(tp) or 0
        if committed >= total:
            print("DONE", flush=True)
            break
        continue
    first, last = messages[0].offset, messages[-1].offset
    attempts += 1
    deliberate_abort = attempts % 4 == 0
    try:
        call("begin_transaction", producer.begin_transaction)
        for m in messages:
            producer.send("out", (b"aborted-" if deliberate_abort else b"out-") + m.value)
        call("send_offsets_to_transaction", producer.send_offsets_to_transaction,
             {tp: OffsetAndMetadata(last + 1, "", -1)}, group_id)
        print("IN_TXN", flush=True)
        time.sleep(0.2)
        if deliberate_abort:
            call("flush", producer.flush)
            call("abort_transaction", producer.abort_transaction)
            print("ABORTED", flush=True)
            consumer.seek(tp, first)
            continue
        call("commit_transaction", producer.commit_transaction)
        print(f"COMMITTED {last + 1}", flush=True)
    except KafkaError as exc:
        if is_fenced(exc):
            print("FENCED " + repr(exc), flush=True)
            sys.exit(3)
        print(f"RETRY {exc!r}", flush=True)
        for tries in range(20):
            try:
                call("abort_transaction", producer.abort_transaction)
                break
            except KafkaError as again:
                if "BUMPING_PRODUCER_EPOCH" in str(again) and tries < 19:
                    time.sleep(0.5)
                    continue
                print(("FENCED " if is_fenced(again) else "FATAL ") + repr(again), flush=True)
                sys.exit(3)
        consumer.seek(tp, first)
"""


class Processor:
    """One processor subprocess; its stdout lines go to a queue read by a thread."""

    def __init__(self, script: str, bootstrap: str, name: str, directory, group_id: str):
        self.name = name
        self.stderr_path = directory / f"processor-{name}.stderr"
        with open(self.stderr_path, "w") as stderr:
            self.process = subprocess.Popen([sys.executable, "-c", script, bootstrap, "rpw-tx", str(INPUT_COUNT), group_id],
                                            stdout=subprocess.PIPE, stderr=stderr, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line.strip())

    def next_line(self, timeout_s: float) -> str | None:
        """The next stdout line, or None after `timeout_s` (or when the process is gone and nothing is left)."""
        try:
            line = self.lines.get(timeout=timeout_s)
        except queue.Empty:
            return None
        self.seen.append(line)
        return line

    def describe(self) -> str:
        return f"processor {self.name}: last lines {self.seen[-8:]}; stderr: {self.stderr_path.read_text()[-1500:]}"

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
        self.process.wait()


class Pipeline:
    """The processors of one run: one active at a time; a processor that reports STUCK is replaced."""

    def __init__(self, script: str, bootstrap: str, directory, group_id: str):
        self.script, self.bootstrap, self.directory, self.group_id = script, bootstrap, directory, group_id
        self.processors: list[Processor] = []
        self.active: Processor | None = None
        self.committed = 0  # the highest input offset committed so far
        self.replaced_stuck: list[str] = []

    def start(self) -> Processor:
        self.active = Processor(self.script, self.bootstrap, str(len(self.processors) + 1), self.directory, self.group_id)
        self.processors.append(self.active)
        return self.active

    def wait_for(self, predicate, timeout_s: float, what: str) -> str:
        """Read the active processor until a line satisfies `predicate`; replace it when it is stuck."""
        deadline = time.monotonic() + timeout_s
        while True:
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} within {timeout_s} s; {self.active.describe()}")
            line = self.active.next_line(0.5)
            if line is None:
                if self.active.process.poll() is not None and self.active.lines.empty():
                    raise AssertionError(f"{what}: the processor exited ({self.active.process.returncode}); "
                                         f"{self.active.describe()}")
                continue
            if line.startswith("COMMITTED "):
                self.committed = max(self.committed, int(line.split()[1]))
            if line.startswith("STUCK "):
                self.replaced_stuck.append(f"{self.active.name}: {line}")
                self.active.kill()
                self.start()
                continue
            if predicate(line):
                return line

    def wait_committed(self, at_least: int, timeout_s: float = 60.0) -> None:
        if self.committed < at_least:
            self.wait_for(lambda line: self.committed >= at_least, timeout_s, f"commit up to {at_least}")

    def kill_all(self) -> None:
        for processor in self.processors:
            processor.kill()


def _coordinator(cluster: Cluster, key: str, key_type: int, timeout_s: float = 30.0) -> int:
    """The node id FindCoordinator names for `key` (retried while the internal topic is being created)."""
    m = k.module("find_coordinator", 3)
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        for node in cluster.nodes.values():
            if not node.alive():
                continue
            try:
                with RawClient(node.port) as client:
                    found = client.call(m.FindCoordinatorRequest(key=key, key_type=key_type))
            except OSError as exc:
                last = exc
                continue
            if found.error_code == 0:
                return found.node_id
            last = found
        time.sleep(0.2)
    raise AssertionError(f"no coordinator for {key!r} (key_type {key_type}) within {timeout_s} s: {last}; {cluster.describe()}")


def _group_next_to(cluster: Cluster, node_id: int) -> str:
    """A group id whose coordinator is `node_id`: one SIGKILL then takes both coordinators at once."""
    for index in range(60):
        group_id = f"rpw-{index}"
        if _coordinator(cluster, group_id, 0) == node_id:
            return group_id
    raise AssertionError(f"no group id among rpw-0..rpw-59 is coordinated by node {node_id}")


def _kill_and_restart(cluster: Cluster, node_id: int) -> None:
    cluster.nodes[node_id].kill()
    time.sleep(1.0)
    cluster.nodes[node_id].start(timeout_s=30)


def _read_out(bootstrap: str, isolation: str, timeout_s: float = 30.0) -> list[bytes]:
    """Every value of `out` partition 0 up to its current end, with confluent-kafka."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{isolation}", "isolation.level": isolation,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        _, high = consumer.get_watermark_offsets(TopicPartition("out", 0), timeout=10)
        consumer.assign([TopicPartition("out", 0, 0)])
        values: list[bytes] = []
        deadline = time.monotonic() + timeout_s
        idle_since = time.monotonic()
        while time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                values.append(message.value())
                idle_since = time.monotonic()
            position = consumer.position([TopicPartition("out", 0)])[0].offset
            if position >= high and time.monotonic() - idle_since > 1.0:
                return values
        raise AssertionError(f"{isolation} read of out did not reach offset {high} within {timeout_s} s")
    finally:
        consumer.close()


@pytest.mark.parametrize("client", ["confluent-kafka", "kafka-python"])
def test_read_process_write_is_exactly_once_through_kills_and_fencing(tmp_path, client):
    from confluent_kafka import Producer

    script = CONFLUENT_PROCESSOR if client == "confluent-kafka" else KAFKA_PYTHON_PROCESSOR
    started = time.monotonic()
    cluster = Cluster(tmp_path, 3, CLUSTER_OVERRIDES).start()
    pipeline = None
    try:
        cluster.create_topic("in")
        cluster.create_topic("out")
        # the group's coordinator is the transaction coordinator's broker: the first kill takes both
        txn_node = _coordinator(cluster, "rpw-tx", 1)
        group_id = _group_next_to(cluster, txn_node)
        pipeline = Pipeline(script, cluster.bootstrap, tmp_path, group_id)
        seed = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all", "enable.idempotence": True})
        for i in range(INPUT_COUNT):
            seed.produce("in", value=b"%d" % i)
        assert seed.flush(30) == 0
        pipeline.start()
        pipeline.wait_committed(30)
        # the broker of both coordinators dies and comes back
        txn_node = _coordinator(cluster, "rpw-tx", 1)
        _kill_and_restart(cluster, txn_node)
        pipeline.wait_committed(pipeline.committed + 10)
        # the group coordinator's broker dies and comes back
        group_node = _coordinator(cluster, group_id, 0)
        _kill_and_restart(cluster, group_node)
        pipeline.wait_committed(pipeline.committed + 10)
        # freeze the processor mid-transaction, start another with the same transactional.id
        pipeline.wait_for(lambda line: line == "IN_TXN", 30, "an open transaction")
        frozen = pipeline.active
        frozen.process.send_signal(signal.SIGSTOP)
        pipeline.start()
        pipeline.wait_committed(pipeline.committed + 10)
        frozen.process.send_signal(signal.SIGCONT)
        verdict = None
        deadline = time.monotonic() + 40
        while verdict is None and time.monotonic() < deadline:
            line = frozen.next_line(0.5)
            if line is not None and line.startswith(("FENCED", "FATAL", "DONE", "COMMITTED")):
                verdict = line
        assert verdict is not None and verdict.startswith("FENCED"), f"not fenced: {frozen.describe()}"
        # the active processor dies mid-transaction; another finishes the input
        pipeline.wait_for(lambda line: line == "IN_TXN", 30, "an open transaction")
        pipeline.active.process.kill()
        pipeline.start()
        pipeline.wait_for(lambda line: line == "DONE", 60, "the end of the input")
        committed_values = _read_out(cluster.bootstrap, "read_committed")
        uncommitted_values = _read_out(cluster.bootstrap, "read_uncommitted")
    finally:
        if pipeline is not None:
            pipeline.kill_all()
        cluster.stop()
    expected = sorted(b"out-%d" % i for i in range(INPUT_COUNT))
    duplicates = sorted({v for v in committed_values if committed_values.count(v) > 1})
    missing = sorted(set(expected) - set(committed_values))
    assert not duplicates and not missing, f"read_committed: duplicates {duplicates[:10]}, missing {missing[:10]}"
    assert sorted(v for v in committed_values if v.startswith(b"out-")) == expected
    assert not [v for v in committed_values if v.startswith(b"aborted-")]
    aborted_seen = [v for v in uncommitted_values if v.startswith(b"aborted-")]
    assert aborted_seen, "no aborted record reached the log (the deliberate aborts wrote nothing)"
    print(f"{client}: {len(committed_values)} committed, {len(uncommitted_values) - len(committed_values)} aborted "
          f"records; group {group_id}; brokers killed: {txn_node} (both coordinators), {group_node} (groups); processors "
          f"{len(pipeline.processors)}, replaced when stuck: {pipeline.replaced_stuck}; {time.monotonic() - started:.1f} s")
