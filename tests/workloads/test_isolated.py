"""Workload clients in child processes (workloads.isolated): answers come back, a stuck client becomes an
`info` and is killed, a client that cannot open says why, and the queue workload survives the copy."""

from __future__ import annotations

import os
import pickle
import time

import pytest

from workloads.core import Client, Workload, completion, invocation
from workloads.isolated import ClientProcessError, IsolatedClient
from workloads.queue import QueueWorkload


class EchoClient(Client):
    def __init__(self, process: int):
        self.process = process

    def invoke(self, op: Op) -> Op:
        if op.f == "hang":
            time.sleep(3600)
        if op.f == "crash":
            os._exit(3)
        if op.f == "raise":
            raise ValueError("client bug")
        return completion("ok", {"echo": op.value, "pid": os.getpid(), "process": self.process})

    def close(self) -> None:
        pass  # nothing to release


class EchoWorkload(Workload):
    name = "echo"
    isolated_clients = True

    def __init__(self, refuse: bool = False):
        self.refuse = refuse

    def setup(self, bootstrap):
        pass  # nothing to create

    def next_op(self, rng, process):
        return invocation("echo", 1)

    def open_client(self, bootstrap, process):
        if self.refuse:
            raise ConnectionError(f"no broker at {bootstrap}")
        return EchoClient(process)

    def final_ops(self):
        return []

    def check(self, history):
        return {"valid": True}


def test_operations_run_in_another_process_and_a_stuck_one_becomes_info(tmp_path):
    log_path = tmp_path / "harness.log"
    client = IsolatedClient(EchoWorkload(), "127.0.0.1:1", 7, answer_timeout_s=1.0, final_timeout_s=2.0,
                            log_path=str(log_path))
    try:
        done = client.invoke(invocation("echo", [1, 2]))
        assert done.type == "ok" and done.value["echo"] == [1, 2] and done.value["process"] == 7
        assert done.value["pid"] != os.getpid()
        raised = client.invoke(invocation("raise", "x"))
        assert (raised.type, raised.error) == ("info", ["exception", "ValueError: client bug"])
        started = time.monotonic()
        stuck = client.invoke(invocation("hang", "y"))
        assert stuck.type == "info" and stuck.error[0] == "client-process"
        assert "did not answer within 1 s while running hang" in stuck.error[1]
        assert time.monotonic() - started < 10
        assert not client._proc.is_alive()
        # a dead client answers every later operation with info, at once
        assert client.invoke(invocation("echo", 3)).type == "info"
    finally:
        client.close()


def test_a_final_operation_gets_the_longer_timeout_and_a_crash_is_info():
    client = IsolatedClient(EchoWorkload(), "127.0.0.1:1", 1, answer_timeout_s=0.5, final_timeout_s=30.0)
    try:
        assert client.invoke(invocation("echo", 1, {"final": True})).type == "ok"
        crashed = client.invoke(invocation("crash", 2))
        assert crashed.type == "info" and "died while running crash (exit status" in crashed.error[1]
    finally:
        client.close()


def test_a_client_that_cannot_open_says_why():
    with pytest.raises(ClientProcessError, match=r"could not open its client: ConnectionError: no broker at 127.0.0.1:1"):
        IsolatedClient(EchoWorkload(refuse=True), "127.0.0.1:1", 2, answer_timeout_s=1.0, final_timeout_s=1.0)


def test_the_queue_workload_is_copied_without_its_generator_state():
    workload = QueueWorkload(delivery="exactly-once", keys=3, op_timeout_s=4.0)
    copy = pickle.loads(pickle.dumps(workload))
    assert (copy.delivery, copy.keys, copy.op_timeout_s, copy.topic) == ("exactly-once", 3, 4.0, workload.topic)
    with copy._lock:
        assert next(copy._values) == 1
