"""The register workload: its checker on tiny histories, and its client against a real broker process."""

from __future__ import annotations

import random

import pytest

from checkers.history import History
from tests.broker.conftest import BrokerProcess
from workloads.core import invocation, workload_kinds
from workloads.register import RegisterWorkload


def _history(*rows):
    return History.from_dicts([{"process": p, "type": t, "f": f, "value": v} for p, t, f, v in rows])


def test_a_stale_read_breaks_the_linearizable_promise():
    # write 1, then write 2 completes, then a read returns 1: no order of the ops explains it
    h = _history((0, "invoke", "write", 1), (0, "ok", "write", 1), (0, "invoke", "write", 2), (0, "ok", "write", 2),
                 (1, "invoke", "read", None), (1, "ok", "read", 1))
    result = RegisterWorkload().check(h)
    assert result["valid"] is False
    assert [(p["id"], p["status"]) for p in result["promises"]] == [("linearizable", "broken")]
    assert result["counterexample"]["explanation"]


def test_a_read_concurrent_with_a_write_may_see_either_value():
    h = _history((0, "invoke", "write", 1), (0, "ok", "write", 1), (0, "invoke", "write", 2),
                 (1, "invoke", "read", None), (1, "ok", "read", 1), (0, "ok", "write", 2),
                 (1, "invoke", "read", None), (1, "ok", "read", 2))
    result = RegisterWorkload().check(h)
    assert result["valid"] is True and result["promises"][0]["status"] == "held"


def test_the_register_registers_itself_with_its_options():
    kind = workload_kinds()["register"]
    assert [o.name for o in kind.options] == ["read_fraction"]
    assert [d.name for d in kind.deliveries] == ["at-least-once-idempotent"]
    rng = random.Random(3)
    w = RegisterWorkload(read_fraction=0.5)
    ops = [w.next_op(rng, 0) for _ in range(200)]
    writes = [op.value for op in ops if op.f == "write"]
    assert {op.f for op in ops} == {"read", "write"} and len(writes) == len(set(writes))


@pytest.mark.slow
def test_reads_through_the_log_see_every_acknowledged_write(tmp_path):
    broker = BrokerProcess(tmp_path / "broker").start()
    clients = []
    try:
        workload = RegisterWorkload(op_timeout_s=10.0)
        workload.setup(broker.bootstrap)
        a, b = (workload.open_client(broker.bootstrap, p) for p in (0, 1))
        clients += [a, b]
        assert a.invoke(invocation("read", None)).value is None  # nothing written yet
        for value in range(1, 6):
            done = a.invoke(invocation("write", value))
            assert done.type == "ok", done
            # the other client, whose consumer is behind, still reads the latest write
            seen = b.invoke(invocation("read", None))
            assert (seen.type, seen.value) == ("ok", value)
        assert b.invoke(invocation("write", 9)).type == "ok"
        assert a.invoke(invocation("read", None)).value == 9
    finally:
        for client in clients:
            client.close()
        broker.stop()
