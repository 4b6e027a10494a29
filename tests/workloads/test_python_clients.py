"""kafka-python and aiokafka behind one shape (workloads.python_clients): how a transaction ends, how a send's
outcome is decided, and the private event loop an aiokafka client runs on (no broker needed: fakes stand in
for the producers, here only)."""

from __future__ import annotations

import asyncio

import pytest

from workloads.python_clients import EventLoopThread, end_transaction, library, python_send


class FakeTransactionalProducer:
    def __init__(self, commit_error=None, abort_error=None):
        self.commit_error = commit_error
        self.abort_error = abort_error
        self.calls: list[str] = []

    def commit_transaction(self):
        self.calls.append("commit")
        if self.commit_error:
            raise self.commit_error

    def abort_transaction(self):
        self.calls.append("abort")
        if self.abort_error:
            raise self.abort_error


KP = library("kafka-python")


def test_a_transaction_commits_or_aborts_and_is_unknown_only_when_the_abort_fails_too():
    from kafka.errors import KafkaError, KafkaTimeoutError

    ok = FakeTransactionalProducer()
    assert end_transaction(KP, ok, True, 1.0) == ("committed", None) and ok.calls == ["commit"]
    on_purpose = FakeTransactionalProducer()
    assert end_transaction(KP, on_purpose, False, 1.0) == ("aborted", None) and on_purpose.calls == ["abort"]
    abortable = FakeTransactionalProducer(commit_error=KafkaError("a send failed"))
    assert end_transaction(KP, abortable, True, 1.0) == ("aborted", ["commit-failed", "KafkaError: a send failed"])
    stuck = FakeTransactionalProducer(commit_error=KafkaTimeoutError("no answer"), abort_error=AssertionError("committing"))
    verdict, error = end_transaction(KP, stuck, True, 1.0)
    assert verdict == "unknown" and error == ["commit-failed", "KafkaTimeoutError: no answer",
                                              "abort-failed", "AssertionError: committing"]


class FakeMeta:
    def __init__(self, offset):
        self.offset = offset


class FakeFuture:
    def __init__(self, outcome):
        self.outcome = outcome

    def get(self, timeout):
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return FakeMeta(self.outcome)


class FakeProducer:
    def __init__(self, outcomes):
        self.outcomes = list(outcomes)

    def send(self, topic, value, partition):
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, type):
            raise outcome("refused")
        return FakeFuture(outcome)


@pytest.mark.parametrize("client", ["kafka-python", "aiokafka"])
def test_a_send_is_ok_fail_or_info_by_each_messages_outcome(client):
    lib = library(client)
    mops = [["send", 1, 10], ["send", 1, 11]]
    done = python_send(lib, FakeProducer([5, 6]), "t", mops, 1.0, retries=True)
    assert done.type == "ok" and done.value == [["send", 1, [5, 10]], ["send", 1, [6, 11]]]
    timed_out = python_send(lib, FakeProducer([5, lib.errors.KafkaTimeoutError("late")]), "t", mops, 1.0, retries=True)
    assert timed_out.type == "info" and timed_out.error[0] == "timeout"
    too_large = python_send(lib, FakeProducer([lib.errors.MessageSizeTooLargeError] * 2), "t", mops, 1.0, retries=True)
    assert too_large.type == "fail" and too_large.error[0] == "produce-refused"


def test_the_private_event_loop_runs_coroutines_and_times_out_with_the_libraries_error():
    from aiokafka.errors import KafkaTimeoutError

    loop = EventLoopThread("test-loop")
    try:
        async def double(x):
            await asyncio.sleep(0.01)
            return 2 * x

        assert loop.run(double(21), 5) == 42
        with pytest.raises(KafkaTimeoutError, match="no answer within 0.1 s"):
            loop.run(asyncio.sleep(10), 0.1)
    finally:
        loop.stop()
    assert not loop.thread.is_alive()


def test_a_kafka_python_call_without_a_timeout_gives_up_after_one():
    import threading

    release = threading.Event()

    class Hanging(FakeTransactionalProducer):
        def commit_transaction(self):
            self.calls.append("commit")
            release.wait(30)

    hanging = Hanging(abort_error=AssertionError("Invalid state transition COMMITTING -> ABORTING"))
    try:
        verdict, error = end_transaction(KP, hanging, True, 0.2)
    finally:
        release.set()
    assert verdict == "unknown" and error[:2] == ["commit-failed", "KafkaTimeoutError: commit_transaction did not "
                                                                   "return within 0.2 s"], error
    assert hanging.calls == ["commit", "abort"]
    with pytest.raises(ValueError, match="raised inside"):
        KP.bounded(lambda: (_ for _ in ()).throw(ValueError("raised inside")), 1.0, "call")
    assert KP.bounded(lambda: 7, 1.0, "call") == 7


def test_an_aiokafka_poll_returns_nothing_after_its_timeout_while_the_group_reassigns():
    import time

    from workloads.python_clients import AiokafkaConsumer

    class Reassigning:  # getmany waits without a limit while the group reassigns partitions
        async def getmany(self, timeout_ms, max_records):
            await asyncio.sleep(3600)

    loop = EventLoopThread("test-poll")
    try:
        consumer = AiokafkaConsumer.__new__(AiokafkaConsumer)
        consumer.loop, consumer.call_timeout_s, consumer.consumer = loop, 5.0, Reassigning()
        started = time.monotonic()
        assert consumer.poll(timeout_ms=100, max_records=10) == {}
        assert time.monotonic() - started < 2.0
    finally:
        loop.stop()
