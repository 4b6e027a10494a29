"""The read-process-write pipeline: Kafka's exactly-once claim, driven with real clients and processor faults.

Kafka's exactly-once promise is about a processor that consumes an input topic, writes to an output
topic and commits its input offsets in the same transaction (KIP-98, with KIP-447's consumer-group
fencing): after crashes, pauses and rebalances every input record is in the committed output exactly
once. This workload is Kafka's `transactions_test` copier in Jepsen's shape.

Every worker is one processor and also feeds the input (each op picks what to do):

- `send`: one to four unique values to a random input partition, through an idempotent producer with
  acks=all (the queue workload's value shapes: `[["send", partition, value], ...]`, completed with
  `[offset, value]`; ok when every value was acknowledged).
- `process`: one transaction of the processor: consume a batch at read_committed as a member of the
  group `logquake-pipeline` (subscribe), begin a transaction, write each record's value to the output
  topic (to partition `value % output partitions`, or with `keep_partition` the input's partition), commit the
  input offsets with `send_offsets_to_transaction` and the group metadata captured when the batch was
  consumed, and commit. The completion value is `checkers.pipeline`'s format: `{"consumed", "produced",
  "offsets"}`. ok: committed; fail: aborted (abort_transaction returned; the consumer is rewound to the
  batch's first offsets, or rejoins); info: anything else.
  Processor faults ride on `process` ops, one about every `processor_fault_interval_s` (default 6 s; the
  kinds of `processor_faults` take turns), the next op of whichever processor asks; such an op waits up to
  8 s for a batch so the fault lands mid-transaction (a processor without partitions, mid-rebalance after
  the previous fault, usually has some again by then; with 3 s a third of the pauses hit idle processors). They are real signals, so they need
  `isolated_clients`, which the workload sets: `{"crash": "after-produce" | "after-offsets"}` SIGKILLs the processor's own process
  mid-transaction (the runner opens a new processor under a new process number in the same worker slot: a
  restart, which takes over the crashed one's transactional.id, see `PipelineWorkload.transactional_id`), and
  `{"pause_s": S}` stops it with SIGSTOP after its writes, before its offsets, for S seconds (the harness
  resumes it; `workloads.isolated`): longer than the group's session timeout, so the group gives its
  partitions to another processor and the paused one comes back a zombie whose commit must be fenced.
  `{"abort": true}` aborts on purpose after the offsets were added, then leaves the group, so its
  partitions start again from the offsets committed before (an aborted transaction's offsets must not count).
- `leave`: the processor leaves the group and joins again at its next `process` (membership churn).

Final ops (one fresh processor, after healing): `process` with `{"drain": true}` runs transactions
until the group's committed offsets reach the end of every input partition (recorded as one op that
carries every transaction it committed); `read-output` reads the output topic at read_committed from
its start to its last stable offset, after waiting for open transactions (of killed processors) to be
aborted by their timeout; `committed-offsets` records the group's offsets.

Thread-safety: one client per worker, in its own process; the generator's counter is locked.

Sources: Apache Kafka's `tests/kafkatest/tests/core/transactions_test.py` (copy input to output
under kills, compare), KIP-98 (transactions), KIP-447 (producer fencing by consumer group metadata).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import multiprocessing
import os
import random
import signal
import time
from typing import Any

from checkers.queue.delivery import Delivery
from workloads.client_security import confluent_settings
from workloads.core import (Client, Grant, Op, Option, UniqueValues, Workload, WorkloadKind, completion, grants,
                            idempotent_write, invocation, register_workload)
from workloads.kafka_admin import LIBRDKAFKA_LOGGER, commit_transaction, confluent_send, create_topic
from workloads.python_clients import (AIOKAFKA_MISSING_GROUP_METADATA, close_quietly, describe_error, library,
                                      python_send)

INPUT_TOPIC = "logquake-pipeline-in"
OUTPUT_TOPIC = "logquake-pipeline-out"
GROUP = "logquake-pipeline"
SESSION_TIMEOUT_MS = 6000
MAX_POLL_INTERVAL_MS = 20000
# A killed processor's open transaction blocks read_committed readers of its output partitions (and,
# once it added offsets, the group's offsets of its input partitions) until the coordinator aborts it.
TRANSACTION_TIMEOUT_MS = 30000
# How long the final read waits for open transactions to end: two transaction timeouts and a margin (the
# coordinator aborts an expired transaction on its next periodic check, then writes the markers).
OPEN_TRANSACTIONS_WAIT_S = 2 * TRANSACTION_TIMEOUT_MS / 1000 + 30
PAUSE_S = 16.0  # well past the session timeout: the group moves the paused processor's partitions and another
# processor copies them before the zombie comes back (within the transaction timeout, so generation fences it)
DRAIN_IDLE_S = 60.0  # the drain gives up after this long without progress (past a transaction timeout)
BATCH = 50
PROCESSOR_FAULTS = ("crash", "pause", "abort", "leave")
CLIENTS = ("confluent", "kafka-python", "aiokafka")  # one processor implementation each (*PipelineClient)
FAULT_BATCH_WAIT_S = 8.0  # how long an op with a processor fault waits for input to hold mid-transaction


class PipelineWorkload(UniqueValues, Workload):
    name = "pipeline"
    isolated_clients = True  # processor faults are signals to the client's own process

    def __init__(self, partitions: int = 6, output_partitions: int = 6, keep_partition: bool = False,
                 replication_factor: int = 1, topic_config: dict[str, str] | None = None, op_timeout_s: float = 10.0,
                 processor_faults: tuple[str, ...] = PROCESSOR_FAULTS, processor_fault_interval_s: float = 6.0,
                 client: str = "confluent", clock=time.monotonic, slots: int = 6):
        unknown = sorted(set(processor_faults) - set(PROCESSOR_FAULTS))
        if unknown:
            raise ValueError(f"--processor-faults {','.join(unknown)} is not known; expected a comma-separated list of "
                             f"{', '.join(PROCESSOR_FAULTS)} (or none)")
        if not 0 <= processor_fault_interval_s < 3600:
            raise ValueError(f"--processor-fault-interval must be 0 (no processor faults) or a number of seconds "
                             f"below an hour, got {processor_fault_interval_s!r}")
        if client not in CLIENTS:
            raise ValueError(f"--client {client!r} is not supported; expected one of {', '.join(CLIENTS)}")
        if client == "aiokafka" and "pause" in processor_faults and processor_fault_interval_s > 0:
            raise ValueError(f"--processor-faults pause cannot run on --client aiokafka: {AIOKAFKA_MISSING_GROUP_METADATA}"
                             ", so a paused processor's commit would count after the group gave its partitions away; "
                             "leave pause out (--processor-faults crash,abort,leave) or use --client confluent or "
                             "kafka-python")
        if partitions < 1 or output_partitions < 1:
            raise ValueError(f"partitions must be at least 1, got {partitions} and {output_partitions}")
        if slots < 1:
            raise ValueError(f"slots (the run's concurrency) must be at least 1, got {slots}")
        self.client = client
        self.slots = slots
        self.partitions = partitions
        self.output_partitions = output_partitions
        self.rekey = not keep_partition
        self.replication_factor = replication_factor
        self.topic_config = dict(topic_config or {})
        self.op_timeout_s = op_timeout_s
        self.processor_faults = tuple(processor_faults)
        self.processor_fault_interval_s = processor_fault_interval_s
        self._clock = clock
        self._next_fault_at: float | None = None
        self._round: list[str] = []
        self._init_values()

    def describe(self) -> dict:
        return {"name": self.name, "delivery": "exactly-once", "client": self.client, "partitions": self.partitions,
                "output_partitions": self.output_partitions, "rekey": self.rekey, "input_topic": INPUT_TOPIC,
                "output_topic": OUTPUT_TOPIC, "group": GROUP, "replication_factor": self.replication_factor,
                "topic_config": self.topic_config, "op_timeout_s": self.op_timeout_s,
                "processor_faults": list(self.processor_faults),
                "processor_fault_interval_s": self.processor_fault_interval_s,
                "transactional_ids": f"logquake-pipeline-<slot>, {self.slots} slots", **self._client_notes()}

    def transactional_id(self, process: int) -> str:
        """The processor's transactional.id: one per worker slot (process mod the concurrency, the runner's
        Jepsen convention), so a processor restarted after a crash takes over the id of the one it replaces,
        as Kafka's transactions_test restarts its copiers: its InitProducerId bumps the epoch, which aborts the
        crashed one's open transaction at once and fences it (KIP-98). A paused zombie keeps its process and
        id; the group's generation fences it (KIP-447)."""
        return f"logquake-pipeline-{process % self.slots}"

    def _client_notes(self) -> dict:
        """What this run's client could not do, for test.json and the report (README, "Clients")."""
        if self.client != "aiokafka":
            return {}
        return {"notes": [f"{AIOKAFKA_MISSING_GROUP_METADATA}: its offsets are not fenced by the group's "
                          "generation. The pause processor fault is not run; a processor holding a batch holds the "
                          "group's rebalance back; a processor cut off from the group coordinator for a session "
                          "timeout but not from the transaction coordinator is not fenced (a duplicate-output under "
                          "network faults may be that, not the broker)."]}

    def setup(self, bootstrap: str) -> None:
        create_topic(bootstrap, INPUT_TOPIC, self.partitions, self.replication_factor, self.topic_config)
        create_topic(bootstrap, OUTPUT_TOPIC, self.output_partitions, self.replication_factor, self.topic_config)

    def topics(self) -> dict[str, int]:
        return {INPUT_TOPIC: self.partitions, OUTPUT_TOPIC: self.output_partitions}

    def acls(self) -> list[Grant]:
        """Both topics, to write (the input producer, the processors' output) and read (the processors' input,
        the final read of the output); the processors' group (join, transactional offset commits, committed
        offsets); the confluent output reader's group `<group>-reader`, only asked for its coordinator
        (DESCRIBE); the transactional id of each worker slot, literally; IDEMPOTENT_WRITE on the cluster for
        the input producer, which is idempotent but not transactional."""
        needed = grants("TOPIC", (INPUT_TOPIC, OUTPUT_TOPIC), "READ", "WRITE") + grants("GROUP", GROUP, "READ")
        if self.client == "confluent":
            needed += grants("GROUP", f"{GROUP}-reader", "DESCRIBE")
        slots = sorted({self.transactional_id(slot) for slot in range(self.slots)})
        return needed + grants("TRANSACTIONAL_ID", slots, "WRITE") + idempotent_write()

    def next_op(self, rng: random.Random, process: int) -> Op:
        roll = rng.random()
        if roll < 0.4:
            # one to four values to one partition, flushed once: input arrives faster than one value an op
            partition = rng.randrange(self.partitions)
            return invocation("send", [["send", partition, self.unique_value()] for _ in range(rng.randint(1, 4))])
        fault = self._due_fault(rng)
        if fault == "crash":
            return invocation("process", None, {"crash": rng.choice(("after-produce", "after-offsets"))})
        if fault == "pause":
            return invocation("process", None, {"pause_s": PAUSE_S})
        if fault == "abort":
            return invocation("process", None, {"abort": True})
        if fault == "leave":
            return invocation("leave", None)
        return invocation("process", None)

    def _due_fault(self, rng: random.Random) -> str | None:
        """The processor fault this op carries, if one is due: one about every `processor_fault_interval_s`
        (0.5x to 1.5x), after a pause once the pause is over, the kinds in rounds of a random order (as the
        nemeses take turns). Faults keyed to time, not to a share of ops: every fault costs the group a
        rebalance, and ops come faster when the cluster is healthy."""
        if not self.processor_faults or self.processor_fault_interval_s <= 0:
            return None
        now = self._clock()
        if self._next_fault_at is None:
            self._next_fault_at = now + self.processor_fault_interval_s * rng.uniform(0.5, 1.5)
        if now < self._next_fault_at:
            return None
        if not self._round:
            self._round = rng.sample(self.processor_faults, len(self.processor_faults))
        fault = self._round.pop()
        busy_s = PAUSE_S if fault == "pause" else 0.0
        self._next_fault_at = now + busy_s + self.processor_fault_interval_s * rng.uniform(0.5, 1.5)
        return fault

    def final_ops(self) -> list[Op]:
        return [invocation("process", None, {"final": True, "drain": True}),
                invocation("read-output", None, {"final": True}),
                invocation("committed-offsets", None, {"final": True})]

    def open_client(self, bootstrap: str, process: int) -> Client:
        if self.client == "confluent":
            return ConfluentPipelineClient(self, bootstrap, process)
        return PythonPipelineClient(self, bootstrap, process, self.client)

    def check(self, history, final_reads_incomplete: str | None = None) -> dict:
        from checkers.core import MAX_WITNESSES
        from checkers.pipeline import check as check_pipeline

        result = check_pipeline(history, max_witnesses=MAX_WITNESSES)
        if final_reads_incomplete is not None and result.get("valid") is True:
            result.update(valid="unknown", reason="final-reads-incomplete", message=final_reads_incomplete)
        return result


def _stop_self(pause_s: float) -> None:
    """SIGSTOP this client's own process; `workloads.isolated` resumes it after `pause_s` (the op asked for it)."""
    if multiprocessing.parent_process() is None:
        raise RuntimeError("a processor pause stops the client's own process, which needs isolated clients")
    os.kill(os.getpid(), signal.SIGSTOP)


def _crash_self() -> None:
    if multiprocessing.parent_process() is None:
        raise RuntimeError("a processor crash kills the client's own process, which needs isolated clients")
    os.kill(os.getpid(), signal.SIGKILL)


class PipelineClient(Client):
    """One processor: a group member at read_committed, a transactional producer, and an input producer.

    The processor's logic (one transaction per batch, its faults, the drain, the final reads) is here, once;
    each client library gives the calls it is made of (`ConfluentPipelineClient`, `PythonPipelineClient`).
    A record is `(partition, offset, value)`. The library calls raise the library's errors, `self.errors`."""

    errors: tuple[type[BaseException], ...] = ()

    def __init__(self, workload: PipelineWorkload, bootstrap: str, process: int):
        self.w = workload
        self.bootstrap = bootstrap
        self.process = process
        self.consumer = None

    # ----- the calls each library gives -------------------------------------------------------

    @abc.abstractmethod
    def _send(self, op: Op) -> Op:
        """Every value of the op to its input partition, flushed once (the queue workload's sends and outcomes)."""

    @abc.abstractmethod
    def _consume(self, timeout_s: float) -> list[tuple[int, int, int]]:
        """A batch of at most BATCH records of the input, as a group member at read_committed (joining if needed)."""

    @abc.abstractmethod
    def _group_metadata(self) -> Any:
        """What `_send_offsets` fences this processor by: the group metadata as of the last batch."""

    def _is_member(self, group_metadata: Any) -> bool:
        """Whether `group_metadata` (from `_group_metadata`) shows a member of a generation; True where the
        library's metadata says nothing of it."""
        return True

    @abc.abstractmethod
    def _begin(self) -> None: ...

    @abc.abstractmethod
    def _produce(self, partition: int, value: int) -> None: ...

    @abc.abstractmethod
    def _flush(self) -> None: ...

    @abc.abstractmethod
    def _send_offsets(self, offsets: dict[int, int], group_metadata: Any) -> None: ...

    @abc.abstractmethod
    def _commit(self) -> tuple[str, list | None]:
        """("committed", None), ("abort", error) when the transaction must be aborted, or ("unknown", error)."""

    @abc.abstractmethod
    def _abort_transaction(self) -> None: ...

    @abc.abstractmethod
    def _seek(self, partition: int, offset: int) -> None: ...

    @abc.abstractmethod
    def _close_consumer(self) -> None: ...

    @abc.abstractmethod
    def _committed(self) -> dict[int, int]:
        """partition -> the group's committed offset of each input partition that answered."""

    @abc.abstractmethod
    def _input_ends(self) -> dict[int, int]:
        """partition -> the end of each input partition as a read_committed reader sees it (its last stable offset)."""

    @abc.abstractmethod
    def _output_reader(self) -> OutputReader: ...

    @abc.abstractmethod
    def _close_producers(self) -> None: ...

    # ----- operations ----------------------------------------------------------------------------

    def invoke(self, op: Op) -> Op:
        if op.f == "send":
            return self._send(op)
        if op.f == "process":
            return self._drain(op) if op.extra.get("drain") else self._process(op)
        if op.f == "leave":
            self._leave()
            return completion("ok", None)
        if op.f == "read-output":
            return self._read_output(op)
        if op.f == "committed-offsets":
            return self._committed_offsets(op)
        raise ValueError(f"pipeline client: unknown operation {op.f!r}")

    def _leave(self) -> None:
        if self.consumer is not None:
            with contextlib.suppress(Exception):  # leaving a broken cluster may fail; the session expires then
                self._close_consumer()
            self.consumer = None

    @contextlib.contextmanager
    def _batch_in_hand(self):
        """While this processor holds a batch, from its consume to its commit or abort. A library whose
        offsets are not fenced by the group's generation holds a rebalance back meanwhile (aiokafka)."""
        yield

    def _consume_for(self, op: Op) -> list[tuple[int, int, int]]:
        # an op that carries a processor fault waits longer for a batch, so the fault lands mid-transaction
        faulty = any(op.extra.get(k) for k in ("crash", "pause_s", "abort"))
        records = self._consume(0.2)
        deadline = time.monotonic() + (FAULT_BATCH_WAIT_S if faulty else 0)
        while not records and time.monotonic() < deadline:
            records = self._consume(0.5)
        return records

    def _process(self, op: Op, records: list | None = None) -> Op:
        """One transaction over one consumed batch; see the module doc for its outcomes."""
        with self._batch_in_hand():
            return self._transaction(op, self._consume_for(op) if records is None else records)

    def _transaction(self, op: Op, records: list[tuple[int, int, int]]) -> Op:
        consumed: dict[int, list] = {}
        for partition, offset, v in records:
            consumed.setdefault(partition, []).append([offset, v])
        value: dict[str, Any] = {"consumed": consumed, "produced": [], "offsets": {}}
        if not records:
            # an idle processor (no partition, or nothing new) takes its fault all the same: the group loses
            # a member either way
            if op.extra.get("crash"):
                _crash_self()
            if op.extra.get("pause_s"):
                _stop_self(float(op.extra["pause_s"]))
            return completion("ok", value)
        # the group metadata (generation, member) as of this batch: a processor that pauses after this
        # must be fenced when it commits, which it would not be with metadata taken after a rejoin
        group_metadata = self._group_metadata()
        first = {p: rows[0][0] for p, rows in consumed.items()}
        value["offsets"] = {p: rows[-1][0] + 1 for p, rows in consumed.items()}
        if not self._is_member(group_metadata):
            # the batch came from partitions the processor held before it lost its membership; offsets sent with
            # no member and generation would be taken as a commit without fencing (as Kafka takes them): drop
            # the batch, and rejoin at the next batch from the offsets the group committed
            self._leave()
            return completion("fail", value, error=["not-a-member", "the consumer lost its group membership "
                                                    "(no generation): the batch is dropped, the group rejoined"])
        try:
            self._begin()
        except self.errors as e:
            self._rewind(first)
            return completion("fail", value, error=["begin-transaction", _describe(e)])
        try:
            for partition, _offset, v in records:
                out = v % self.w.output_partitions if self.w.rekey else partition % self.w.output_partitions
                self._produce(out, v)
                value["produced"].append([out, v])
            if op.extra.get("crash") == "after-produce":
                self._flush()
                _crash_self()
            if op.extra.get("pause_s"):
                self._flush()
                _stop_self(float(op.extra["pause_s"]))
            self._send_offsets(value["offsets"], group_metadata)
            if op.extra.get("crash") == "after-offsets":
                _crash_self()
        except (BufferError, AssertionError, *self.errors) as e:
            return self._abort(value, first, ["transaction", _describe(e)])
        if op.extra.get("abort"):
            # abort with the offsets added, then rejoin: the group must start this processor's partitions
            # again from the offsets committed before, as the aborted ones are not
            done = self._abort(value, {}, ["aborted", "the workload aborts some transactions on purpose"])
            self._leave()
            return done
        verdict, error = self._commit()
        if verdict == "abort":
            return self._abort(value, first, error)
        if verdict == "unknown":
            return completion("info", value, error=error)
        return completion("ok", value)

    def _abort(self, value: dict, first: dict[int, int], error: list) -> Op:
        try:
            self._abort_transaction()
        except Exception as e:  # noqa: BLE001 (whatever the library raises, the outcome is unknown)
            return completion("info", value, error=error + ["abort-failed", _describe(e)])
        self._rewind(first)
        return completion("fail", value, error=error)

    def _rewind(self, first: dict[int, int]) -> None:
        """Put the consumer back on the first record of an aborted batch, or leave the group (a rejoin
        starts from the committed offsets): never step past records whose transaction did not commit."""
        try:
            for partition, offset in first.items():
                self._seek(partition, offset)
        except Exception as e:  # noqa: BLE001 (a partition given away meanwhile, a library refusing: rejoin)
            LIBRDKAFKA_LOGGER.info("pipeline: rewinding after an abort failed (%s); rejoining the group", e)
            self._leave()

    # ----- final ops -------------------------------------------------------------------------

    def _drain(self, op: Op) -> Op:
        """Transactions until the group's committed offsets reach every input partition's end."""
        total: dict[str, Any] = {"consumed": {}, "produced": [], "offsets": {}}
        ends = self._input_ends()
        committed = self._committed()
        last_progress = time.monotonic()
        while any(committed.get(p, 0) < end for p, end in ends.items()):
            if time.monotonic() - last_progress > DRAIN_IDLE_S:
                break
            with self._batch_in_hand():
                records = self._consume(1.0)
                done = self._transaction(invocation("process", None), records) if records else None
            if done is None:
                committed = self._committed()
                continue
            if done.type == "info":
                _merge(total, done.value)
                return completion("info", total, error=done.error)
            if done.type == "ok":
                _merge(total, done.value)
                committed.update(done.value["offsets"])
                last_progress = time.monotonic()
        return completion("ok", total)

    def _committed_offsets(self, op: Op) -> Op:
        offsets = self._committed()
        if len(offsets) < self.w.partitions:
            return completion("info", None, error=["committed-offsets", f"only {sorted(offsets)} answered"])
        return completion("ok", offsets)

    def _read_output(self, op: Op) -> Op:
        """Every output partition at read_committed, from its start to its last stable offset, once no
        transaction is open (the LSO reached the high watermark). A transaction left open (a killed
        processor's) is aborted by the coordinator after its timeout, so the read waits up to
        OPEN_TRANSACTIONS_WAIT_S; if an LSO is still below its HW then, the op is `info` and its value says
        what was seen and for how long (the pipeline checker judges it: `hanging-transaction`)."""
        reader = self._output_reader()
        try:
            started = time.monotonic()
            while True:
                stable, high = reader.ends()
                waited = time.monotonic() - started
                if stable == high or waited > OPEN_TRANSACTIONS_WAIT_S:
                    break
                time.sleep(0.5)
            if stable != high:
                seen = {"last-stable-offsets": stable, "high-watermarks": high, "waited-s": round(waited, 1),
                        "transaction-timeout-ms": TRANSACTION_TIMEOUT_MS}
                return completion("info", seen, error=["open-transactions", f"last stable offsets {stable} stayed "
                                                       f"below the high watermarks {high} for {waited:.0f} s"])
            rows, positions = reader.read(stable, idle_s=15.0)
            if any(positions[p] < end for p, end in stable.items()):
                return completion("info", None, error=["read-output", f"stopped at {positions} of {stable}"])
            return completion("ok", rows)
        finally:
            reader.close()

    def close(self) -> None:
        self._leave()
        self._close_producers()


class OutputReader(abc.ABC):
    """The final read of the output topic: two readers outside the group, read_uncommitted and read_committed."""

    @abc.abstractmethod
    def ends(self) -> tuple[dict[int, int], dict[int, int]]:
        """(partition -> last stable offset, partition -> high watermark) of every output partition."""

    @abc.abstractmethod
    def read(self, stable: dict[int, int], idle_s: float) -> tuple[dict[int, list], dict[int, int]]:
        """Every committed record up to `stable`, from offset 0, read_committed: (partition -> [[offset, value],
        ...], partition -> the position reached); gives up after `idle_s` without progress."""

    @abc.abstractmethod
    def close(self) -> None: ...


def _describe(e: BaseException) -> str:
    """An error of any library in one line (confluent-kafka's KafkaException carries a KafkaError)."""
    inner = e.args[0] if e.args else None
    if hasattr(inner, "str") and callable(inner.str):
        return inner.str()
    return describe_error(e)


class ConfluentPipelineClient(PipelineClient):
    """The processor on confluent-kafka (librdkafka): KIP-447 fencing with `consumer_group_metadata()`."""

    def __init__(self, workload: PipelineWorkload, bootstrap: str, process: int):
        from confluent_kafka import KafkaException, Producer

        super().__init__(workload, bootstrap, process)
        self.errors = (KafkaException,)
        timeout_ms = int(workload.op_timeout_s * 1000)
        common = confluent_settings({"bootstrap.servers": bootstrap, "linger.ms": 0,
                                     "request.timeout.ms": min(timeout_ms, 5000),
                                     "socket.timeout.ms": min(timeout_ms, 5000), "reconnect.backoff.max.ms": 1000,
                                     "topic.metadata.refresh.interval.ms": 2000, "logger": LIBRDKAFKA_LOGGER})
        self.input = Producer({**common, "acks": "all", "enable.idempotence": True, "message.timeout.ms": timeout_ms})
        self.producer = Producer({**common, "transactional.id": workload.transactional_id(process),
                                  "enable.idempotence": True, "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS})
        self.producer.init_transactions(workload.op_timeout_s)

    def _ensure_consumer(self):
        if self.consumer is None:
            from confluent_kafka import Consumer

            self.consumer = Consumer(confluent_settings({
                "bootstrap.servers": self.bootstrap, "group.id": GROUP, "isolation.level": "read_committed",
                "enable.auto.commit": False, "auto.offset.reset": "earliest",
                "session.timeout.ms": SESSION_TIMEOUT_MS, "heartbeat.interval.ms": 1000,
                # the rebalance timeout: a rebalance waits this long for a member busy in a transaction
                # (librdkafka's default, 300 s, would stall the whole group behind one slow commit)
                "max.poll.interval.ms": MAX_POLL_INTERVAL_MS,
                "socket.timeout.ms": 5000, "topic.metadata.refresh.interval.ms": 2000,
                "reconnect.backoff.max.ms": 1000, "logger": LIBRDKAFKA_LOGGER,
            }))
            self.consumer.subscribe([INPUT_TOPIC])
        return self.consumer

    def _send(self, op: Op) -> Op:
        return confluent_send(self.input, INPUT_TOPIC, op.value, self.w.op_timeout_s + 5, retries=True)

    def _consume(self, timeout_s: float) -> list[tuple[int, int, int]]:
        from confluent_kafka import KafkaError

        kept = []
        for msg in self._ensure_consumer().consume(num_messages=BATCH, timeout=timeout_s):
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    LIBRDKAFKA_LOGGER.info("pipeline consume: %s", err)
                continue
            kept.append((msg.partition(), msg.offset(), int(msg.value())))
        return kept

    def _group_metadata(self) -> Any:
        return self.consumer.consumer_group_metadata()

    def _begin(self) -> None:
        self.producer.begin_transaction()

    def _produce(self, partition: int, value: int) -> None:
        self.producer.produce(OUTPUT_TOPIC, value=str(value).encode(), partition=partition)

    def _flush(self) -> None:
        self.producer.flush(self.w.op_timeout_s)

    def _send_offsets(self, offsets: dict[int, int], group_metadata: Any) -> None:
        from confluent_kafka import TopicPartition

        self.producer.send_offsets_to_transaction([TopicPartition(INPUT_TOPIC, p, o) for p, o in offsets.items()],
                                                  group_metadata, self.w.op_timeout_s)

    def _commit(self) -> tuple[str, list | None]:
        verdict, error = commit_transaction(self.producer, self.w.op_timeout_s)
        return verdict, error

    def _abort_transaction(self) -> None:
        self.producer.abort_transaction(self.w.op_timeout_s)

    def _seek(self, partition: int, offset: int) -> None:
        from confluent_kafka import TopicPartition

        self.consumer.seek(TopicPartition(INPUT_TOPIC, partition, offset))

    def _close_consumer(self) -> None:
        self.consumer.close()

    def _input_ends(self) -> dict[int, int]:
        from confluent_kafka import TopicPartition

        consumer = self._ensure_consumer()
        return {p: consumer.get_watermark_offsets(TopicPartition(INPUT_TOPIC, p), timeout=self.w.op_timeout_s)[1]
                for p in range(self.w.partitions)}

    def _committed(self) -> dict[int, int]:
        from confluent_kafka import KafkaException, TopicPartition

        try:
            parts = self._ensure_consumer().committed([TopicPartition(INPUT_TOPIC, p) for p in range(self.w.partitions)],
                                                      timeout=self.w.op_timeout_s)
        except KafkaException as e:
            LIBRDKAFKA_LOGGER.info("pipeline: committed offsets not available (%s)", e)
            return {}
        return {tp.partition: max(tp.offset, 0) for tp in parts if tp.error is None}

    def _output_reader(self) -> OutputReader:
        return _ConfluentOutputReader(self.bootstrap, self.w.output_partitions, self.w.op_timeout_s)

    def _close_producers(self) -> None:
        for producer in (self.producer, self.input):
            with contextlib.suppress(Exception):
                producer.purge()
                producer.flush(0)


class _ConfluentOutputReader(OutputReader):
    def __init__(self, bootstrap: str, partitions: int, timeout_s: float):
        from confluent_kafka import Consumer, TopicPartition

        def consumer(isolation: str):
            return Consumer(confluent_settings({"bootstrap.servers": bootstrap, "group.id": f"{GROUP}-reader",
                                                "isolation.level": isolation, "enable.auto.commit": False,
                                                "enable.partition.eof": True, "logger": LIBRDKAFKA_LOGGER}))

        self.timeout_s = timeout_s
        self.parts = [TopicPartition(OUTPUT_TOPIC, p) for p in range(partitions)]
        self.plain, self.committed = consumer("read_uncommitted"), consumer("read_committed")

    def ends(self) -> tuple[dict[int, int], dict[int, int]]:
        stable = {tp.partition: self.committed.get_watermark_offsets(tp, timeout=self.timeout_s)[1] for tp in self.parts}
        high = {tp.partition: self.plain.get_watermark_offsets(tp, timeout=self.timeout_s)[1] for tp in self.parts}
        return stable, high

    def read(self, stable: dict[int, int], idle_s: float) -> tuple[dict[int, list], dict[int, int]]:
        from confluent_kafka import KafkaError, TopicPartition

        self.committed.assign([TopicPartition(OUTPUT_TOPIC, p, 0) for p in stable])
        rows: dict[int, list] = {p: [] for p in stable}
        positions = {p: 0 for p in stable}
        last_progress = time.monotonic()
        while any(positions[p] < end for p, end in stable.items()) and time.monotonic() - last_progress <= idle_s:
            for msg in self.committed.consume(num_messages=1000, timeout=0.5):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF and msg.offset() is not None:
                        positions[msg.partition()] = max(positions[msg.partition()], msg.offset())
                        last_progress = time.monotonic()
                    continue
                rows[msg.partition()].append([msg.offset(), int(msg.value())])
                positions[msg.partition()] = msg.offset() + 1
                last_progress = time.monotonic()
        return rows, positions

    def close(self) -> None:
        for c in (self.plain, self.committed):
            with contextlib.suppress(Exception):
                c.close()


class PythonPipelineClient(PipelineClient):
    """The processor on kafka-python or aiokafka, through `workloads.python_clients`' one shape.

    kafka-python fences a zombie as librdkafka does: `send_offsets_to_transaction(offsets,
    KafkaConsumer.group_metadata())` sends TxnOffsetCommit v3 with the generation and member id (KIP-447).
    aiokafka cannot (`python_clients.AIOKAFKA_MISSING_GROUP_METADATA`): its offsets carry the group id only, so
    the workload refuses the pause fault on it, and while a processor holds a batch it holds back the group's
    rebalance (its `on_partitions_revoked` waits for the transaction to end, and a batch consumed after a
    revocation began is dropped unprocessed), so a partition is never given to another processor while a
    transaction over it is open. What stays unfenced on aiokafka is a processor cut off from the group
    coordinator for a session timeout while it can still reach the transaction coordinator (a network fault):
    its commit is accepted after its partitions moved, as Kafka's pre-KIP-447 processors' were."""

    def __init__(self, workload: PipelineWorkload, bootstrap: str, process: int, client: str):
        super().__init__(workload, bootstrap, process)
        self.lib = library(client)
        self.errors = (self.lib.errors.KafkaError,)
        self.servers = bootstrap.split(",")
        self.call_timeout_s = workload.op_timeout_s
        self.loop = self.lib.event_loop(f"aiokafka-processor-{process}")
        self.batches_in_hand = 0
        self.revocations = 0
        common = dict(bootstrap_servers=self.servers, linger_ms=0,
                      request_timeout_ms=int(min(workload.op_timeout_s, 5) * 1000))
        try:
            self.input = self.lib.producer(self.loop, self.call_timeout_s, acks="all", enable_idempotence=True,
                                           **common)
            self.producer = self.lib.producer(self.loop, self.call_timeout_s, enable_idempotence=True,
                                              transactional_id=workload.transactional_id(process),
                                              transaction_timeout_ms=TRANSACTION_TIMEOUT_MS, **common)
            self.producer.init_transactions()
        except BaseException:
            if self.loop is not None:
                self.loop.stop()
            raise
        self.outputs: list[Any] = []

    def _partition(self, topic: str, partition: int):
        return self.lib.topic_partition(topic, partition)

    def _ensure_consumer(self):
        if self.consumer is None:
            self.consumer = self.lib.consumer(
                self.loop, self.call_timeout_s, bootstrap_servers=self.servers, group_id=GROUP,
                isolation_level="read_committed", enable_auto_commit=False, auto_offset_reset="earliest",
                session_timeout_ms=SESSION_TIMEOUT_MS, heartbeat_interval_ms=1000,
                max_poll_interval_ms=MAX_POLL_INTERVAL_MS, max_poll_records=BATCH)
            if self.lib.name == "aiokafka":
                self.consumer.subscribe([INPUT_TOPIC], listener=self._rebalance_listener())
            else:
                self.consumer.subscribe([INPUT_TOPIC])
        return self.consumer

    def _rebalance_listener(self):
        from aiokafka.abc import ConsumerRebalanceListener

        client = self

        class HoldWhileInTransaction(ConsumerRebalanceListener):
            async def on_partitions_revoked(self, revoked):
                client.revocations += 1
                deadline = time.monotonic() + MAX_POLL_INTERVAL_MS / 1000
                while client.batches_in_hand and time.monotonic() < deadline:
                    await asyncio.sleep(0.02)

            async def on_partitions_assigned(self, assigned):
                """Nothing to do: the next getmany reads the new partitions from the group's committed offsets."""

        return HoldWhileInTransaction()

    @contextlib.contextmanager
    def _batch_in_hand(self):
        self.batches_in_hand += 1
        try:
            yield
        finally:
            self.batches_in_hand -= 1

    def _send(self, op: Op) -> Op:
        return python_send(self.lib, self.input, INPUT_TOPIC, op.value, self.w.op_timeout_s + 5, retries=True)

    def _consume(self, timeout_s: float) -> list[tuple[int, int, int]]:
        revocations = self.revocations
        try:
            batch = self._ensure_consumer().poll(timeout_ms=int(timeout_s * 1000), max_records=BATCH)
        except self.lib.errors.KafkaError as e:
            LIBRDKAFKA_LOGGER.info("pipeline consume: %s", _describe(e))
            return []
        if self.revocations != revocations:
            # the group began taking partitions back while this batch came: it may not be ours any more
            return []
        return [(tp.partition, r.offset, int(r.value)) for tp, records in batch.items() for r in records]

    def _group_metadata(self) -> Any:
        if self.lib.name == "aiokafka":
            return GROUP  # AIOKAFKA_MISSING_GROUP_METADATA
        return self.consumer.group_metadata()

    def _is_member(self, group_metadata: Any) -> bool:
        # kafka-python: after the coordinator answers UNKNOWN_MEMBER_ID (a session that expired while the processor
        # was paused), the consumer resets its generation to -1 and its member id to "", yet its next poll can
        # still return records of the partitions it held; Kafka's TxnOffsetCommit takes offsets with no member as
        # a commit without fencing, so committing them duplicated output (seen in CI, seed 2100549289)
        if self.lib.name == "kafka-python":
            return group_metadata.generation_id >= 0 and bool(group_metadata.member_id)
        return True

    def _begin(self) -> None:
        self.outputs = []
        self.producer.begin_transaction()

    def _produce(self, partition: int, value: int) -> None:
        self.outputs.append(self.producer.send(OUTPUT_TOPIC, value=str(value).encode(), partition=partition))

    def _flush(self) -> None:
        self.producer.flush(self.w.op_timeout_s)

    def _send_offsets(self, offsets: dict[int, int], group_metadata: Any) -> None:
        if self.lib.name == "kafka-python":
            from kafka.structs import OffsetAndMetadata

            marks = {self._partition(INPUT_TOPIC, p): OffsetAndMetadata(o, "", -1) for p, o in offsets.items()}
        else:
            marks = {self._partition(INPUT_TOPIC, p): o for p, o in offsets.items()}
        self.lib.bounded(lambda: self.producer.send_offsets_to_transaction(marks, group_metadata), self.w.op_timeout_s,
                         "send_offsets_to_transaction")

    def _commit(self) -> tuple[str, list | None]:
        try:
            for future in self.outputs:  # a write that failed makes the transaction abortable
                future.get(timeout=self.w.op_timeout_s)
            self.lib.bounded(self.producer.commit_transaction, self.w.op_timeout_s, "commit_transaction")
        except Exception as e:  # noqa: BLE001 (the abort that follows decides: it returns, or the outcome is unknown)
            return "abort", ["commit-failed", _describe(e)]
        return "committed", None

    def _abort_transaction(self) -> None:
        self.lib.bounded(self.producer.abort_transaction, self.w.op_timeout_s, "abort_transaction")

    def _seek(self, partition: int, offset: int) -> None:
        self.consumer.seek(self._partition(INPUT_TOPIC, partition), offset)

    def _close_consumer(self) -> None:
        self.consumer.close()

    def _input_ends(self) -> dict[int, int]:
        ends = self._ensure_consumer().end_offsets([self._partition(INPUT_TOPIC, p) for p in range(self.w.partitions)])
        return {tp.partition: end for tp, end in ends.items()}

    def _committed(self) -> dict[int, int]:
        consumer = self._ensure_consumer()
        offsets = {}
        for p in range(self.w.partitions):
            try:
                offset = consumer.committed(self._partition(INPUT_TOPIC, p))
            except self.lib.errors.KafkaError as e:
                LIBRDKAFKA_LOGGER.info("pipeline: committed offset of %s not available (%s)", p, _describe(e))
                continue
            offsets[p] = max(offset or 0, 0)
        return offsets

    def _output_reader(self) -> OutputReader:
        return _PythonOutputReader(self)

    def _close_producers(self) -> None:
        close_quietly(lambda: self.producer.close(timeout=1), lambda: self.input.close(timeout=1))
        if self.loop is not None:
            self.loop.stop()


class _PythonOutputReader(OutputReader):
    def __init__(self, client: PythonPipelineClient):
        def consumer(isolation: str):
            return client.lib.consumer(client.loop, client.call_timeout_s, bootstrap_servers=client.servers,
                                       group_id=None, isolation_level=isolation, enable_auto_commit=False)

        self.parts = [client._partition(OUTPUT_TOPIC, p) for p in range(client.w.output_partitions)]
        self.plain, self.committed = consumer("read_uncommitted"), consumer("read_committed")

    def ends(self) -> tuple[dict[int, int], dict[int, int]]:
        stable = {tp.partition: end for tp, end in self.committed.end_offsets(self.parts).items()}
        high = {tp.partition: end for tp, end in self.plain.end_offsets(self.parts).items()}
        return stable, high

    def read(self, stable: dict[int, int], idle_s: float) -> tuple[dict[int, list], dict[int, int]]:
        parts = [tp for tp in self.parts if tp.partition in stable]
        self.committed.assign(parts)
        for tp in parts:
            self.committed.seek(tp, 0)
        rows: dict[int, list] = {p: [] for p in stable}
        positions = {p: 0 for p in stable}
        last_progress = time.monotonic()
        while any(positions[p] < end for p, end in stable.items()) and time.monotonic() - last_progress <= idle_s:
            for tp, records in self.committed.poll(timeout_ms=500, max_records=1000).items():
                for r in records:
                    rows[tp.partition].append([r.offset, int(r.value)])
            for tp in parts:  # past markers and aborted records, which no record reports
                position = self.committed.position(tp)
                if position > positions[tp.partition]:
                    positions[tp.partition] = position
                    last_progress = time.monotonic()
        return rows, positions

    def close(self) -> None:
        close_quietly(self.plain.close, self.committed.close)


def _merge(total: dict, value: dict) -> None:
    for p, rows in value["consumed"].items():
        total["consumed"].setdefault(p, []).extend(rows)
    total["produced"].extend(value["produced"])
    total["offsets"].update(value["offsets"])


def _build(settings) -> PipelineWorkload:
    o = settings.options
    kinds = tuple(k for k in o["processor_faults"].split(",") if k and k != "none")
    return PipelineWorkload(partitions=o["partitions"], output_partitions=o["output_partitions"],
                            keep_partition=o["keep_partition"], replication_factor=settings.replication_factor,
                            topic_config={"min.insync.replicas": str(settings.min_insync_replicas)},
                            processor_faults=kinds, processor_fault_interval_s=o["processor_fault_interval"],
                            client=settings.client, slots=settings.concurrency)


register_workload(WorkloadKind(
    name="pipeline",
    summary="a pipeline copying an input topic to an output topic (consume, write and commit offsets in one "
            "transaction) under processor kills, zombies and group churn",
    build=_build,
    options=(
        Option("partitions", int, 6, "input topic partitions"),
        Option("output_partitions", int, 6, "output topic partitions"),
        Option("keep_partition", bool, False, "write each record to the output partition of its input's number "
                                               "(default: re-key, to partition value mod output partitions)"),
        Option("processor_faults", str, ",".join(PROCESSOR_FAULTS),
               "processor faults to take turns: crash (SIGKILL mid-transaction), pause (SIGSTOP for 16 s: a zombie), "
               "abort (abort after adding offsets, then rejoin), leave (leave the group and rejoin); or none"),
        Option("processor_fault_interval", float, 6.0, "seconds between processor faults, about (0: none)"),
    ),
    deliveries=(Delivery("exactly-once"),),
    clients=CLIENTS,
))
