"""Consumer-group offset commits, checked for durability: does the cluster keep every commit it acknowledged?

Each worker commits offsets for many short-lived consumer groups, one at a time: group `g` gets the
commits 1, 2, ..., `commits_per_group` of the workload's one partition, each waiting for its answer,
from one committer (the "simple" commit of a group with no members, as `kafka-consumer-groups
--reset-offsets` and an assign-based consumer make it: generation -1, no member id). A worker whose
operation ends unknown is replaced (a new process) and starts a new group. After healing, one client
reads every group's committed offset back (`offset-fetch`), and `checkers.offsets` reports a group
whose final offset is below one the broker acknowledged (`lost-commit`).

Short-lived groups are the point: a lost commit is only visible while no later commit of the same
group overwrites it, so every group's last commits are the ones the final read can judge, and a run
ends hundreds of groups. A coordinator partitioned away from the other brokers, still answering
clients, is where a broker that acknowledges a commit before it is replicated loses it
(`logquake.debug.commit.before.replication`): the group's later commits go to the same cut-off
coordinator, and the group ends there.

Ops: `offset-commit` with value `[group, offset]`: ok (acknowledged), fail (refused by the client
before it was sent), info (any error answer or none: a commit that timed out waiting for its
replicas may still land). `offset-fetch` (final) with the groups as its value, completing with a map
of group to offset (None: none committed); info with the groups it read when it ran out of time.

Clients: confluent-kafka's AdminClient (AlterConsumerGroupOffsets is an OffsetCommit,
ListConsumerGroupOffsets an OffsetFetch), one per worker, in a child process each.

Sources: Kafka's OffsetCommit/OffsetFetch (the group coordinator, `__consumer_offsets`).
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time
from typing import Any

from checkers.queue.delivery import Delivery
from workloads.client_security import confluent_settings
from workloads.core import Client, Grant, Op, Option, Workload, WorkloadKind, completion, grants, invocation, \
    register_workload
from workloads.kafka_admin import LIBRDKAFKA_LOGGER, create_topic

TOPIC = "logquake-offsets"
GROUP_PREFIX = "logquake-offsets-"
FINAL_READ_S = 120.0  # how long the final read goes on retrying groups whose coordinator does not answer
FINAL_READ_BATCH = 32  # OffsetFetch requests the final read keeps in flight at once


class OffsetsWorkload(Workload):
    name = "offsets"
    isolated_clients = True

    def __init__(self, replication_factor: int = 1, min_insync_replicas: int = 1, op_timeout_s: float = 10.0,
                 commits_per_group: int = 20, topic: str = TOPIC, run_token: str | None = None):
        if commits_per_group < 1:
            raise ValueError(f"--commits-per-group must be at least 1, got {commits_per_group}")
        self.replication_factor = replication_factor
        self.min_insync_replicas = min_insync_replicas
        self.op_timeout_s = op_timeout_s
        self.commits_per_group = commits_per_group
        self.topic = topic
        # group names unique to this run: a broker that outlives runs (--system) keeps older runs' groups
        self.run_token = run_token or os.urandom(4).hex()
        self._init_generator()

    def _init_generator(self) -> None:
        self._lock = threading.Lock()
        self._groups = 0  # groups handed out so far
        self._current: dict[int, tuple[str, int]] = {}  # process -> (its group, the last offset it was given)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        for name in ("_lock", "_groups", "_current"):
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._init_generator()  # a client process's copy never generates

    def describe(self) -> dict:
        return {"name": self.name, "topic": self.topic, "replication_factor": self.replication_factor,
                "min_insync_replicas": self.min_insync_replicas, "op_timeout_s": self.op_timeout_s,
                "commits_per_group": self.commits_per_group, "group_prefix": self.group_prefix}

    @property
    def group_prefix(self) -> str:
        return f"{GROUP_PREFIX}{self.run_token}-"

    def topics(self) -> dict[str, int]:
        return {self.topic: 1}

    def acls(self) -> list[Grant]:
        """Its groups (a prefix), to commit and fetch offsets and find their coordinator (READ, which implies DESCRIBE);
        its topic, which the commits name (READ)."""
        return (grants("GROUP", GROUP_PREFIX, "READ", pattern="PREFIXED")
                + grants("TOPIC", self.topic, "READ"))

    def setup(self, bootstrap: str) -> None:
        create_topic(bootstrap, self.topic, 1, self.replication_factor,
                     {"min.insync.replicas": str(self.min_insync_replicas)})
        self._wait_for_coordinators(bootstrap)

    def _wait_for_coordinators(self, bootstrap: str, groups: int = 8, timeout_s: float = 60.0) -> None:
        """Commit once for each of a few groups of their own, asking again until each is acknowledged.

        The first FindCoordinator makes the broker create `__consumer_offsets`, whose partitions then need
        leaders: commits sent before that are answered NOT_COORDINATOR, and each such unknown outcome
        would cost a worker its process. RuntimeError when the coordinators do not come up in time."""
        client = OffsetsClient(self, bootstrap)
        deadline = time.monotonic() + timeout_s
        try:
            for g in range(groups):
                while True:
                    done = client.commit(f"{self.group_prefix}ready-{g}", 0)
                    if done.type == "ok":
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the group coordinators did not answer offset commits within "
                                           f"{timeout_s:g} s: {done.error}")
                    time.sleep(0.5)
        finally:
            client.close()

    def next_op(self, rng: random.Random, process: int) -> Op:
        with self._lock:
            group, last = self._current.get(process, (None, self.commits_per_group))
            if group is None or last >= self.commits_per_group:
                group, last = f"{self.group_prefix}{self._groups}", 0
                self._groups += 1
            self._current[process] = (group, last + 1)
        return invocation("offset-commit", [group, last + 1])

    def final_ops(self) -> list[Op]:
        with self._lock:
            groups = [f"{self.group_prefix}{g}" for g in range(self._groups)]
        return [invocation("offset-fetch", groups, {"final": True})]

    def open_client(self, bootstrap: str, process: int) -> Client:
        return OffsetsClient(self, bootstrap)

    def check(self, history, final_reads_incomplete: str | None = None) -> dict:
        from checkers.core import MAX_WITNESSES
        from checkers.offsets import check as check_offsets

        return check_offsets(history, max_witnesses=MAX_WITNESSES)


class OffsetsClient(Client):
    """One AdminClient: commits with AlterConsumerGroupOffsets, reads with ListConsumerGroupOffsets."""

    def __init__(self, workload: OffsetsWorkload, bootstrap: str):
        from confluent_kafka.admin import AdminClient

        self.w = workload
        timeout_ms = int(workload.op_timeout_s * 1000)
        self.admin = AdminClient(confluent_settings({
            "bootstrap.servers": bootstrap, "socket.timeout.ms": min(timeout_ms, 5000),
            "reconnect.backoff.max.ms": 1000, "topic.metadata.refresh.interval.ms": 2000,
            "logger": LIBRDKAFKA_LOGGER,
        }))

    def invoke(self, op: Op) -> Op:
        if op.f == "offset-commit":
            return self.commit(op.value[0], op.value[1])
        if op.f == "offset-fetch":
            return self._final_read(list(op.value))
        raise ValueError(f"offsets client: unknown operation {op.f!r}")

    def commit(self, group: str, offset: int) -> Op:
        """Commit `offset` of the workload's partition for `group`: ok, fail (refused before sending) or info."""
        from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

        request = ConsumerGroupTopicPartitions(group, [TopicPartition(self.w.topic, 0, offset)])
        try:
            futures = self.admin.alter_consumer_group_offsets([request], request_timeout=self.w.op_timeout_s)
        except Exception as e:  # refused by the client before anything was sent
            return completion("fail", [group, offset], error=["commit-refused", str(e)])
        try:
            answer = next(iter(futures.values())).result(timeout=self.w.op_timeout_s + 5)
        except Exception as e:  # an error answer, or none: the commit may still have been written
            return completion("info", [group, offset], error=_error_of(e))
        errors = [tp.error for tp in answer.topic_partitions if tp.error is not None]
        if errors:
            return completion("info", [group, offset], error=_error_of(errors[0]))
        return completion("ok", [group, offset])

    def _final_read(self, groups: list[str]) -> Op:
        """Every group's committed offset of the workload's partition, retrying groups whose answer is an error."""
        from confluent_kafka import ConsumerGroupTopicPartitions

        found: dict[str, int | None] = {}
        left = list(groups)
        last_error: Any = None
        deadline = time.monotonic() + FINAL_READ_S
        while left and time.monotonic() < deadline:
            retry = []
            for start in range(0, len(left), FINAL_READ_BATCH):
                batch = left[start:start + FINAL_READ_BATCH]
                futures = {}
                for group in batch:
                    futures.update(self.admin.list_consumer_group_offsets(
                        [ConsumerGroupTopicPartitions(group)], request_timeout=5))
                for group, future in futures.items():
                    try:
                        answer = future.result(timeout=10)
                    except Exception as e:
                        retry.append(group)
                        last_error = _error_of(e)
                        continue
                    ours = [tp for tp in answer.topic_partitions if tp.topic == self.w.topic and tp.partition == 0]
                    if any(tp.error is not None for tp in ours):
                        # an error for the partition is no answer: taking it as "no offset" would be a false loss
                        retry.append(group)
                        last_error = _error_of(next(tp.error for tp in ours if tp.error is not None))
                        continue
                    found[group] = ours[0].offset if ours and ours[0].offset >= 0 else None
            left = retry
            if left:
                time.sleep(0.5)
        if left:
            return completion("info", found, error=["final-read-incomplete",
                                                    f"{len(left)} of {len(groups)} groups unread: {last_error}"])
        return completion("ok", found)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.admin.poll(0)


def _error_of(e: Any) -> list[str]:
    """[name, words] of a librdkafka error or exception."""
    error = e.args[0] if getattr(e, "args", None) and hasattr(e.args[0], "name") else e
    if hasattr(error, "name") and callable(error.name):
        return [error.name().lower(), error.str()]
    return [type(e).__name__, str(e)]


def _build(settings) -> OffsetsWorkload:
    return OffsetsWorkload(replication_factor=settings.replication_factor,
                           min_insync_replicas=settings.min_insync_replicas,
                           commits_per_group=settings.options["commits_per_group"])


register_workload(WorkloadKind(
    name="offsets",
    summary="consumer-group offset commits from one committer per short-lived group; every acknowledged commit "
            "must survive (checkers.offsets)",
    build=_build,
    options=(Option("commits_per_group", int, 20, "offset commits per consumer group before a worker moves on to "
                                                  "a new group"),),
    deliveries=(Delivery("at-least-once"),),
    clients=("confluent",),
))
