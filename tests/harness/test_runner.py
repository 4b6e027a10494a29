"""The runner's recovery wait (harness.runner.wait_for_cluster) against a fake cluster: no broker needed.
(The verdict of a run whose final reads did not complete is the queue checker's: tests/checkers/test_queue_promises.py.)"""

from __future__ import annotations

from concurrent.futures import Future
from types import SimpleNamespace

import pytest
from confluent_kafka import KafkaError, KafkaException

from harness.runner import wait_for_cluster


class FakeControl:
    nodes = ["n1", "n2", "n3"]

    def is_running(self, node) -> bool:
        return True

    def bootstrap_servers(self) -> str:
        return "127.0.0.1:1"


class FakeAdmin:
    """Metadata always names leaders (as a broker restarted from stale metadata does); ListOffsets
    fails for the partitions in each round's `unserved` set, then succeeds."""

    def __init__(self, rounds: list[set[int]]):
        self.rounds = rounds
        self.list_offsets_calls = 0

    def list_topics(self, topic=None, timeout=None):
        partitions = {p: SimpleNamespace(leader=1) for p in range(3)}
        return SimpleNamespace(topics={topic: SimpleNamespace(partitions=partitions)})

    def list_offsets(self, requests, request_timeout=None):
        unserved = self.rounds[min(self.list_offsets_calls, len(self.rounds) - 1)]
        self.list_offsets_calls += 1
        futures = {}
        for tp in requests:
            future = Future()
            if tp.partition in unserved:
                future.set_exception(KafkaException(KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION)))
            else:
                future.set_result(SimpleNamespace(offset=10))
            futures[tp] = future
        return futures


def test_recovery_waits_until_every_leader_answers_list_offsets():
    # After a kill of every node, Metadata named leaders at once while no broker served a
    # partition yet; the final reads then failed (UNKNOWN_TOPIC_OR_PARTITION, seed 41).
    admin = FakeAdmin([{0, 2}, {2}, set()])
    wait_for_cluster(FakeControl(), "queue", 3, timeout_s=10, admin=admin)
    assert admin.list_offsets_calls == 3


def test_recovery_that_never_serves_a_partition_names_it():
    admin = FakeAdmin([{1}])
    with pytest.raises(RuntimeError, match=r"did not recover within 0.6 s after healing: partitions whose leader "
                                           r"does not answer ListOffsets yet: 1 \(.*NOT_LEADER_FOR_PARTITION"):
        wait_for_cluster(FakeControl(), "queue", 3, timeout_s=0.6, admin=admin)


def test_a_replacement_process_is_the_crashed_one_plus_the_concurrency_as_in_jepsen():
    from harness.runner import FaultRun
    from harness.spec import RunSpec

    run = FaultRun(RunSpec(concurrency=3), control=None, workload=None, nemesis=None, targets_factory=None)
    assert [run._new_process(replacing=p) for p in (1, 4, 0)] == [4, 7, 3]  # worker slot = process mod 3
    assert run._new_process() == 8  # the final reads: above every number used, never one used before
    assert run._new_process(replacing=2) == 5
    assert run._new_process() == 9


def test_a_failed_final_op_leaves_the_final_reads_incomplete(monkeypatch):
    # a final assign that fails is followed by a poll that reads no partition and answers ok with nothing:
    # the final reads must not count as complete (a Docker run called 6 acknowledged messages unseen so)
    from checkers.history import completion, invocation
    from harness import runner as runner_module
    from harness.runner import FaultRun
    from harness.spec import RunSpec

    class Recorder:
        def __init__(self):
            self.ops = []

        def record(self, op):
            self.ops.append(op)

    class Client:
        closed = False

        def invoke(self, op):
            if op.f == "assign":
                return completion("fail", op.value, error=["low-watermark", "Local: Unknown partition"])
            return completion("ok", [["poll", {}]])

        def close(self):
            Client.closed = True

    class Workload:
        def topics(self):
            return {"t": 4}

        def final_ops(self):
            return [invocation("assign", [0, 1], {"final": True}), invocation("poll", [["poll"]], {"final": True})]

        def open_client(self, bootstrap, process):
            return Client()

    monkeypatch.setattr(runner_module, "wait_for_cluster", lambda *args: None)
    run = FaultRun(RunSpec(concurrency=2), control=FakeControl(), workload=Workload(), nemesis=None,
                   targets_factory=None)
    run.recorder = Recorder()
    run._recover_and_final_reads()
    assert [op.f for op in run.recorder.ops] == ["assign", "assign"]  # invocation and completion; no poll after it
    assert run.final_reads_incomplete == "final read assign failed: ['low-watermark', 'Local: Unknown partition']"
    assert Client.closed  # the final client is closed when the final reads stop early


def test_a_cluster_that_does_not_recover_is_judged_without_final_reads_not_crashed(monkeypatch):
    # keep.torn.tail under the disk fault: a node whose log cannot be read never serves its partitions again.
    # That is the broker's failure, so the run gets a verdict (the history without final reads), not exit 255.
    from harness import runner as runner_module
    from harness.runner import FaultRun, NotRecovered
    from harness.spec import RunSpec

    class Workload:
        def topics(self):
            return {"t": 4}

        def final_ops(self):
            raise AssertionError("no final reads without a recovered cluster")

    def never(*args):
        raise NotRecovered("the cluster did not recover within 60 s after healing: partitions without a leader: [2]")

    monkeypatch.setattr(runner_module, "wait_for_cluster", never)
    run = FaultRun(RunSpec(concurrency=2), control=FakeControl(), workload=Workload(), nemesis=None,
                   targets_factory=None)
    run._recover_and_final_reads()
    assert run.final_reads_incomplete == ("no final reads: the cluster did not recover within 60 s after healing: "
                                          "partitions without a leader: [2]")
    results: dict = {}
    run._add_run_facts(results)
    assert results["not_recovered"].startswith("the cluster did not recover within 60 s")
