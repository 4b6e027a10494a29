"""checkers.linearizable.wgl: read-only operations linearized as soon as they can be.

`search(..., read_only=flags)` takes a read that the state allows as soon as it
is enabled and tries no alternative to it (see the module docstring of wgl.py
for why that loses no linearization). These tests run the search with and
without the flags on random histories of a kv key (appends and puts make the
states order-dependent, so dead ends are many) and of a cas-register, and
require the same verdict, the same blamed operation and the same set of
states in the counterexample; and that the reduction never explores more.
"""

import random

import pytest

from checkers.linearizable.models import KVKey, ModelOp, make_model
from checkers.linearizable.wgl import search


def random_history(rng: random.Random, model: str, n_ops: int, processes: int, corrupt: bool):
    """(events, model ops) of a history simulated on a sequential object, maybe with one read changed."""
    plans = []
    for p in range(processes):
        t = rng.uniform(0, 3)
        for i in range(n_ops // processes):
            start, end = t, t + rng.uniform(0.5, 6)
            if model == "kv":
                f = rng.choice(("get", "put", "append", "append"))
                value = None if f == "get" else f"{p}.{i};"
            else:
                f = rng.choice(("read", "write", "cas"))
                if f == "read":
                    value = None
                elif f == "write":
                    value = rng.randrange(3)
                else:
                    value = [rng.randrange(3), rng.randrange(3)]
            plans.append({"f": f, "value": value, "start": start, "end": end, "effect": rng.uniform(start, end)})
            t = end + rng.uniform(0.01, 1)
    state = "" if model == "kv" else 0
    for plan in sorted(plans, key=lambda p: p["effect"]):
        f, value = plan["f"], plan["value"]
        if f in ("get", "read"):
            plan["result"] = state
        elif f == "put" or f == "write":
            state = value
        elif f == "append":
            state = state + value
        elif state == value[0]:
            state = value[1]
        else:
            plan["failed"] = True  # a cas that did not apply: dropped, as a fail op is
    plans = [p for p in plans if not p.get("failed")]
    reads = [p for p in plans if "result" in p]
    if corrupt and reads:
        victim = rng.choice(reads)
        victim["result"] = victim["result"] + "?" if model == "kv" else victim["result"] + 1
    points = []
    for i, p in enumerate(plans):
        points += [(p["start"], 0, i, True), (p["end"], 1, i, False)]
    events = [(i, call) for _, _, i, call in sorted(points)]
    ops = []
    for p in plans:
        value = p["result"] if "result" in p else p["value"]
        ops.append(ModelOp(p["f"], value, "ok", "k" if model == "kv" else None))
    return events, ops


@pytest.mark.parametrize("model", ["kv", "cas-register"])
def test_read_only_reduction_keeps_verdict_blame_and_states(model):
    the_model = KVKey("k") if model == "kv" else make_model(model)
    initial = "" if model == "kv" else 0
    rng = random.Random(19)
    verdicts = {True: 0, False: 0}
    for _ in range(120):
        events, ops = random_history(rng, model, n_ops=rng.randint(4, 24), processes=rng.randint(2, 6),
                                     corrupt=rng.random() < 0.5)
        steps = [the_model.compile(op) for op in ops]
        flags = [not the_model.may_change_state(op) for op in ops]
        plain = search(events, steps, initial)
        reduced = search(events, steps, initial, read_only=flags)
        assert reduced.valid == plain.valid
        assert reduced.blocked_op == plain.blocked_op
        assert set(reduced.blocked_states) == set(plain.blocked_states)
        assert reduced.cache_entries <= plain.cache_entries
        verdicts[plain.valid] += 1
    assert verdicts[True] > 20 and verdicts[False] > 20  # both kinds were exercised


def test_a_read_taken_early_is_not_forced_on_a_later_state():
    # p0 appends "a" over a long interval; p1's get of "" and p2's get of "a" overlap it. The
    # reduction takes the get of "" first (the state is ""), then the append, then the get of "a".
    events = [(0, True), (1, True), (2, True), (1, False), (2, False), (0, False)]
    the_model = KVKey("k")
    ops = [ModelOp("append", "a", "ok", "k"), ModelOp("get", "", "ok", "k"), ModelOp("get", "a", "ok", "k")]
    steps = [the_model.compile(op) for op in ops]
    result = search(events, steps, "", read_only=[False, True, True])
    assert result.valid is True
    # And with the get of "a" returning before the get of "" is called, no order works.
    events = [(0, True), (2, True), (2, False), (1, True), (1, False), (0, False)]
    result = search(events, steps, "", read_only=[False, True, True])
    assert result.valid is False and result.blocked_op == 1 and result.blocked_states == ["a"]


def test_read_only_flags_must_match_the_operations():
    with pytest.raises(ValueError, match="read_only has 1 flags for 2 operations"):
        search([(0, True), (1, True)], [lambda s: s, lambda s: s], 0, read_only=[True])
