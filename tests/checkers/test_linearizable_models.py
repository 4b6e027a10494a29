"""checkers.linearizable.models: each model's steps, on states alone."""

import json

import pytest

from checkers.history import History
from checkers.linearizable import check
from checkers.linearizable.models import INCONSISTENT, Choices, ModelOp, make_model, model_names


def step(model, state, f, value=None, outcome="ok", key=None, **kw):
    return make_model(model, **kw).step(state, ModelOp(f, value, outcome, key))


def test_model_names():
    assert list(model_names()) == [
        "cas-register", "fifo-queue", "kv", "multi-register", "mutex", "register", "set", "unordered-queue",
    ]


def test_unknown_model():
    with pytest.raises(ValueError, match="unknown model 'queue'; expected one of cas-register, fifo-queue, "):
        make_model("queue")


def test_register():
    assert step("register", 1, "write", 2) == 2
    assert step("register", 1, "read", 1) == 1
    assert step("register", 1, "read", 2) is INCONSISTENT
    assert step("register", 1, "read", None) == 1
    assert step("register", 1, "read", None, nil_read_legal=False) is INCONSISTENT
    assert step("register", None, "read", None, nil_read_legal=False) is None
    # Lists from EDN vectors become hashable tuples.
    assert step("register", None, "write", [1, 2]) == (1, 2)
    assert step("register", (1, 2), "read", [1, 2]) == (1, 2)


def test_cas_register():
    assert step("cas-register", 1, "cas", [1, 2]) == 2
    assert step("cas-register", 1, "cas", [0, 2]) is INCONSISTENT
    # porcupine-etcd: a failed cas is a compare that returned false.
    assert step("cas-register", 1, "cas", [0, 2], "fail") == 1
    assert step("cas-register", 1, "cas", [1, 2], "fail") is INCONSISTENT
    with pytest.raises(ValueError, match="a cas value must be \\[old, new\\], got \\[1\\]"):
        step("cas-register", 1, "cas", [1])
    with pytest.raises(ValueError, match="f 'append' is not an operation of model 'cas-register'; "
                                         "expected one of read, write, cas"):
        step("cas-register", 1, "append", 1)


def test_mutex():
    m = make_model("mutex")
    assert m.initial_state(None) is False
    assert step("mutex", False, "acquire") is True
    assert step("mutex", True, "acquire") is INCONSISTENT
    assert step("mutex", True, "release") is False
    assert step("mutex", False, "release") is INCONSISTENT
    with pytest.raises(ValueError, match="initial 'free' is not a mutex state"):
        m.initial_state("free")


def test_fifo_queue():
    assert step("fifo-queue", (1,), "enqueue", 2) == (1, 2)
    assert step("fifo-queue", (1, 2), "dequeue", 1) == (2,)
    assert step("fifo-queue", (1, 2), "dequeue", 2) is INCONSISTENT
    assert step("fifo-queue", (), "dequeue", None) == ()
    assert step("fifo-queue", (1,), "dequeue", None) is INCONSISTENT
    # An info dequeue took the head, if any.
    assert step("fifo-queue", (1, 2), "dequeue", None, "info") == (2,)
    assert step("fifo-queue", (), "dequeue", None, "info") is INCONSISTENT


def test_unordered_queue():
    assert step("unordered-queue", (2,), "enqueue", 1) == (1, 2)
    assert step("unordered-queue", (1, 2), "dequeue", 2) == (1,)
    assert step("unordered-queue", (1, 2), "dequeue", 3) is INCONSISTENT
    assert step("unordered-queue", (1, 1), "dequeue", 1) == (1,)
    choices = step("unordered-queue", (1, 1, 2), "dequeue", None, "info")
    assert type(choices) is Choices
    assert set(choices) == {(1, 2), (1, 1)} and len(choices) == 2


def test_set():
    assert step("set", frozenset(), "add", 1) == frozenset({1})
    assert step("set", frozenset({1, 2}), "read", [2, 1]) == frozenset({1, 2})
    assert step("set", frozenset({1, 2}), "read", [1]) is INCONSISTENT
    assert step("set", frozenset({1}), "read", None) == frozenset({1})


def test_multi_register():
    s = step("multi-register", (), "txn", [["write", "x", 1], ["write", "y", 2]])
    assert s == (("x", 1), ("y", 2))
    assert step("multi-register", s, "txn", [["read", "x", 1], ["read", "z", None]]) == s
    assert step("multi-register", s, "txn", [["read", "x", 2]]) is INCONSISTENT
    m = make_model("multi-register")
    assert m.keys_of(ModelOp("txn", [["read", "x", 1], ["write", "y", 2]])) == frozenset({"x", "y"})
    with pytest.raises(ValueError, match="micro-op \\['cas', 'x', 1\\] is not"):
        m.compile(ModelOp("txn", [["cas", "x", 1]]))


def test_kv():
    s = step("kv", (), "put", "a", key="k")
    assert s == (("k", "a"),)
    s = step("kv", s, "append", "b", key="k")
    assert s == (("k", "ab"),)
    assert step("kv", s, "get", "ab", key="k") == s
    assert step("kv", s, "get", "a", key="k") is INCONSISTENT
    assert step("kv", s, "get", "", key="other") == s
    with pytest.raises(ValueError, match="a kv put value must be a string, got 3"):
        step("kv", s, "put", 3, key="k")


def test_results_are_json():
    ops = []
    for i, (f, value) in enumerate([("enqueue", [1, 2]), ("enqueue", [3]), ("dequeue", [3])]):
        ops.append({"index": 2 * i, "process": 0, "type": "invoke", "f": f, "value": value if f == "enqueue" else None})
        ops.append({"index": 2 * i + 1, "process": 0, "type": "ok", "f": f, "value": value})
    r = check(History.from_dicts(ops), "fifo-queue")
    assert r["valid"] is False
    assert r["counterexample"]["explanation"] == (
        "No linearization of the 2 operations before index 5 lets process 0's dequeue of [3] (index 5) "
        "return [3]: the queue could only hold [[1, 2], [3]] at that point."
    )
    text = json.dumps(r)
    assert json.loads(text)["counterexample"]["states"] == [[[1, 2], [3]]]
