"""Workload clients in child processes (workloads.isolated): answers come back, a stuck client becomes an
`info` and is killed, a client that cannot open says why, and the queue workload survives the copy."""

from __future__ import annotations

import os
import pickle
import time

import pytest

from workloads.core import Client, Op, Workload, completion, invocation
from workloads.isolated import ClientProcessError, IsolatedClient
from workloads.pipeline import PipelineWorkload, _crash_self, _stop_self
from workloads.queue import QueueWorkload


class EchoClient(Client):
    def __init__(self, process: int, close_fails: bool = False):
        self.process = process
        self.close_fails = close_fails

    def invoke(self, op: Op) -> Op:
        if op.f == "hang":
            time.sleep(3600)
        if op.f == "crash":
            os._exit(3)
        if op.f == "raise":
            raise ValueError("client bug")
        if op.extra.get("pause_s"):
            started = time.monotonic()
            _stop_self(op.extra["pause_s"])  # the processor pause of the pipeline workload
            return completion("ok", {"stopped_s": time.monotonic() - started})
        if op.extra.get("crash"):
            _crash_self()
        return completion("ok", {"echo": op.value, "pid": os.getpid(), "process": self.process})

    def close(self) -> None:
        if self.close_fails:
            raise RuntimeError("the transaction could not be aborted")


class EchoWorkload(Workload):
    name = "echo"
    isolated_clients = True

    def __init__(self, refuse: bool = False, close_fails: bool = False):
        self.refuse = refuse
        self.close_fails = close_fails

    def setup(self, bootstrap):
        pass  # nothing to create

    def next_op(self, rng, process):
        return invocation("echo", 1)

    def open_client(self, bootstrap, process):
        if self.refuse:
            raise ConnectionError(f"no broker at {bootstrap}")
        return EchoClient(process, self.close_fails)

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


def test_a_client_that_fails_to_close_leaves_no_line_on_the_terminal(tmp_path):
    # exactly-once runs printed a lone "Process logquake-client-2:" on stderr: the child's close raised after
    # it had answered, and the harness killed it while multiprocessing was printing the traceback
    import subprocess
    import sys
    from pathlib import Path

    log_path = tmp_path / "harness.log"
    script = f"""
import time
from tests.workloads.test_isolated import EchoWorkload
from workloads.core import invocation
from workloads.isolated import IsolatedClient
client = IsolatedClient(EchoWorkload(close_fails=True), "x", 7, 10, 10, log_path={str(log_path)!r})
assert client.invoke(invocation("echo", 1)).type == "ok"
client.close()
time.sleep(1)
print("done")
"""
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout == "done\n", proc.stdout + proc.stderr
    assert proc.stderr == "", proc.stderr
    assert "client 7 did not close cleanly: RuntimeError: the transaction could not be aborted" in log_path.read_text()


def test_a_client_that_stops_itself_is_resumed_after_its_pause_and_one_that_kills_itself_is_info():
    """The pipeline workload's processor faults are signals a client sends its own process: SIGSTOP (every
    thread stops, heartbeats too) ended by the harness after `pause_s`, and SIGKILL mid-transaction."""
    client = IsolatedClient(EchoWorkload(), "unused:9092", 7, answer_timeout_s=20, final_timeout_s=20)
    try:
        done = client.invoke(invocation("work", None, {"pause_s": 1.5}).with_(process=7))
        assert done.type == "ok" and 1.5 <= done.value["stopped_s"] < 10
        assert client.invoke(invocation("echo", 2).with_(process=7)).type == "ok"  # resumed, and answering
        crashed = client.invoke(invocation("work", None, {"crash": "after-produce"}).with_(process=7))
        assert crashed.type == "info" and crashed.error[0] == "crashed", crashed.error
    finally:
        client.close()
    # in the harness's own process the faults refuse, rather than stop or kill the harness
    with pytest.raises(RuntimeError, match="isolated clients"):
        _stop_self(1.0)


def test_the_pipeline_workload_takes_processor_faults_in_turns_about_every_interval():
    with pytest.raises(ValueError, match="--processor-faults nap is not known"):
        PipelineWorkload(processor_faults=("pause", "nap"))
    import random

    now = [0.0]
    w = PipelineWorkload(processor_fault_interval_s=6.0, clock=lambda: now[0])
    rng = random.Random(3)
    faults = []
    for _ in range(6000):  # 600 s of ops, ten a second
        now[0] += 0.1
        op = w.next_op(rng, 0)
        kind = ("crash" if op.extra.get("crash") else "pause" if op.extra.get("pause_s") else
                "abort" if op.extra.get("abort") else "leave" if op.f == "leave" else None)
        if kind:
            faults.append((now[0], kind))
    kinds = [k for _, k in faults]
    # one fault about every 6 s, plus 16 s after each pause: a round of four kinds takes about 40 s
    assert 50 < len(faults) < 75, len(faults)
    for i in range(0, len(kinds) - 3, 4):
        assert sorted(kinds[i:i + 4]) == ["abort", "crash", "leave", "pause"]  # rounds
    gaps = [b - a for (a, ka), (b, _) in zip(faults, faults[1:]) if ka != "pause"]
    assert min(gaps) >= 2.9 and max(gaps) <= 9.1
    send_ops = [w.next_op(rng, 0) for _ in range(2000)]
    send_ops = [op for op in send_ops if op.f == "send"]
    sends = [v for op in send_ops for _, _, v in op.value]
    assert len(set(sends)) == len(sends) and {len(op.value) for op in send_ops} == {1, 2, 3, 4}
    assert all(len({p for _, p, _ in op.value}) == 1 for op in send_ops)
    assert PipelineWorkload(processor_faults=()).processor_faults == ()
    assert [op.f for op in w.final_ops()] == ["process", "read-output", "committed-offsets"]
