"""checkers.linearizable.wgl: dead-state pruning of string states (`search(..., string_hints=...)`).

A kv key's state only grows by appends until a put replaces it, so a state that
is not a prefix of what some get must still see (with no put left that could come
between) is dead: see wgl.py's module docstring. These tests run the search with
and without the hints on random kv histories, with unknown outcomes (ops that never
return: they may take effect or not), gets of unknown values, puts that repeat
values and puts whose value is a prefix of others, and require the same verdict,
the same blamed operation and the same set of states in the counterexample. They
also check that the pruning does cut (fewer configurations on the valid ones) and
that resuming an invalid history's search from kept dead configurations is exercised.
"""

import random

import pytest

from checkers.linearizable import check
from checkers.linearizable import wgl
from checkers.linearizable.models import KVKey, ModelOp
from checkers.linearizable.wgl import search


def random_kv_history(rng: random.Random, n_ops: int, processes: int, corrupt: bool):
    """(events, model ops) of a kv key's history simulated on a sequential store, maybe with one get
    changed. Some ops never return (their effect was applied or not), some gets return None."""
    plans = []
    values = ["a", "b", "ab", "c", "ba"]  # repeats, and values that are prefixes of others
    for p in range(processes):
        t = rng.uniform(0, 3)
        for i in range(n_ops // processes):
            start, end = t, t + rng.uniform(0.5, 6)
            f = rng.choice(("get", "get", "put", "append", "append"))
            if f == "get":
                value = None
            elif rng.random() < 0.3:
                value = rng.choice(values)
            else:
                value = f"{p}.{i};"
            plan = {"f": f, "value": value, "start": start, "end": end, "effect": rng.uniform(start, end)}
            plans.append(plan)
            if f != "get" and rng.random() < 0.1:
                plan["info"] = True  # never returns; the process stops here
                plan["applied"] = rng.random() < 0.5
                break
            t = end + rng.uniform(0.01, 1)
    state = ""
    for plan in sorted(plans, key=lambda p: p["effect"]):
        if plan.get("info") and not plan["applied"]:
            continue
        if plan["f"] == "get":
            plan["result"] = state if rng.random() < 0.9 else None
        elif plan["f"] == "put":
            state = plan["value"]
        else:
            state = state + plan["value"]
    gets = [p for p in plans if p.get("result")]
    if corrupt and gets:
        victim = rng.choice(gets)
        victim["result"] = rng.choice((victim["result"] + "?", victim["result"][:-1], "?" + victim["result"]))
    points = []
    for i, p in enumerate(plans):
        points.append((p["start"], 0, i, True))
        if not p.get("info"):
            points.append((p["end"], 1, i, False))
    events = [(i, call) for _, _, i, call in sorted(points)]
    ops = []
    for p in plans:
        value = p["result"] if p["f"] == "get" else p["value"]
        ops.append(ModelOp(p["f"], value, "info" if p.get("info") else "ok", "k"))
    return events, ops


def searches_input(ops):
    """The steps and the initial state of a kv key's search over `ops`."""
    model = KVKey("k")
    return [model.compile(op) for op in ops], ""


def searches(events, ops, **options):
    model = KVKey("k")
    steps = [model.compile(op) for op in ops]
    read_only = [not model.may_change_state(op) for op in ops]
    hints = [model.string_hint(op) for op in ops]
    plain = search(events, steps, "", **options)
    reads = search(events, steps, "", read_only=read_only, **options)
    hinted = search(events, steps, "", read_only=read_only, string_hints=hints, **options)
    hinted_alone = search(events, steps, "", string_hints=hints, **options)
    return plain, reads, hinted, hinted_alone


def assert_same_blame(result, plain, events, ops):
    """`result` has the verdict and blamed op of the plain search, and its states: all of them, or (past the cap,
    or with unobservable states merged) some of them, leaving out only states that cannot lead to what the
    blamed get saw."""
    assert result.valid == plain.valid
    assert result.blocked_op == plain.blocked_op
    if plain.valid is not False:
        return
    every_state = set(search(events, *searches_input(ops), max_block_states=1 << 30).blocked_states)
    if len(result.blocked_states) < wgl.MAX_BLOCK_STATES and not result.blocked_states_partial:
        assert set(result.blocked_states) == every_state
        return
    assert set(result.blocked_states) <= every_state
    assert len(every_state) >= wgl.MAX_BLOCK_STATES or result.blocked_states_partial
    blamed = ops[result.blocked_op]
    if result.blocked_states_partial and blamed.f == "get" and blamed.value is not None:
        assert not any(blamed.value.startswith(m) for m in every_state - set(result.blocked_states))


def test_pruning_keeps_verdict_blame_and_states():
    resumed = partial = 0
    rng = random.Random(23)
    verdicts = {True: 0, False: 0}
    fewer = 0
    for _ in range(800):
        events, ops = random_kv_history(rng, n_ops=rng.randint(4, 20), processes=rng.randint(2, 7),
                                        corrupt=rng.random() < 0.5)
        plain, reads, hinted, hinted_alone = searches(events, ops)
        for result in (reads, hinted, hinted_alone):
            assert_same_blame(result, plain, events, ops)
            partial += result.blocked_states_partial
        if plain.valid is True:
            assert hinted.cache_entries <= reads.cache_entries
            fewer += hinted.cache_entries < reads.cache_entries
        verdicts[plain.valid] += 1
        resumed += bool(hinted.resumed) + bool(hinted_alone.resumed)
        assert plain.resumed == reads.resumed == 0
    assert verdicts[True] > 200 and verdicts[False] > 200  # both kinds were exercised
    assert fewer > 60  # the pruning cut something
    assert resumed > 100  # and invalid histories' searches resumed from dead configurations
    assert partial > 20  # and unobservable states were merged where a get blocked


def test_without_pruning_when_too_many_puts_share_values(monkeypatch):
    monkeypatch.setattr(wgl, "_MAX_HINT_LINKS_PER_OP", 0)
    rng = random.Random(5)
    for _ in range(40):
        events, ops = random_kv_history(rng, n_ops=rng.randint(4, 20), processes=rng.randint(2, 5),
                                        corrupt=rng.random() < 0.5)
        plain, reads, hinted, _ = searches(events, ops)
        assert_same_blame(hinted, plain, events, ops)


def test_a_wrong_order_of_appends_is_dropped_at_once():
    # Appends of "a" and "b" overlap; a get of "ba" returns before the put is called. Taking "a"
    # first leaves the state "a", not a prefix of "ba", so that configuration is pruned.
    events = [(0, True), (1, True), (0, False), (1, False), (2, True), (2, False), (3, True), (3, False)]
    ops = [ModelOp("append", "a", "ok", "k"), ModelOp("append", "b", "ok", "k"),
           ModelOp("get", "ba", "ok", "k"), ModelOp("put", "z", "ok", "k")]
    plain, reads, hinted, _ = searches(events, ops)
    assert plain.valid is reads.valid is hinted.valid is True
    assert hinted.cache_entries < reads.cache_entries


def test_a_get_already_linearized_constrains_no_later_state():
    # put "ab", then a get of "ab" overlapping a put of "a" (both puts' values are prefixes of "ab"),
    # then an append of "c" and a get of "ac": the get of "ab" takes effect before the put of "a";
    # the state "ac" after them must not be taken as dead for that get.
    events = [(0, True), (0, False), (1, True), (2, True), (1, False), (2, False), (3, True), (3, False),
              (4, True), (4, False)]
    ops = [ModelOp("put", "ab", "ok", "k"), ModelOp("get", "ab", "ok", "k"), ModelOp("put", "a", "ok", "k"),
           ModelOp("append", "c", "ok", "k"), ModelOp("get", "ac", "ok", "k")]
    plain, reads, hinted, hinted_alone = searches(events, ops)
    assert plain.valid is reads.valid is hinted.valid is hinted_alone.valid is True


def test_a_put_that_may_come_between_keeps_a_state_alive():
    # The get of "zb" may follow the put of "z" (called before the get returns) and an append: the
    # state "a" is not a prefix of "zb", but it is not dead.
    events = [(0, True), (1, True), (2, True), (0, False), (1, False), (3, True), (2, False), (3, False)]
    ops = [ModelOp("append", "a", "ok", "k"), ModelOp("put", "z", "ok", "k"), ModelOp("append", "b", "ok", "k"),
           ModelOp("get", "zb", "ok", "k")]
    plain, reads, hinted, _ = searches(events, ops)
    assert plain.valid is hinted.valid is True


def test_check_gives_the_same_counterexample_with_and_without_pruning(monkeypatch):
    rng = random.Random(7)
    invalid = partial = 0
    for _ in range(30):
        events, ops = random_kv_history(rng, n_ops=16, processes=4, corrupt=True)
        pending = {}
        history = []
        for op_id, call in events:
            op = ops[op_id]
            if call:
                value = None if op.f == "get" else op.value
                history.append({"process": op_id, "type": "invoke", "f": op.f, "key": "k", "value": value})
            else:
                history.append({"process": op_id, "type": op.outcome, "f": op.f, "key": "k", "value": op.value})
            pending[op_id] = call
        for op_id, call in pending.items():
            if call:
                history.append({"process": op_id, "type": "info", "f": ops[op_id].f, "key": "k",
                                "value": ops[op_id].value})
        pruned = check(history, "kv")
        monkeypatch.setattr(KVKey, "string_hint", lambda self, op: None)
        unpruned = check(history, "kv")
        monkeypatch.undo()
        invalid += unpruned["valid"] is False
        for field in ("valid", "op", "configs", "counterexample"):
            if field == "counterexample" and field in unpruned:
                # The paths kept may differ; what went wrong and where may not. The states are all of them,
                # or some when states no read still to come could see were merged (and the sentence says so).
                partial += pruned[field]["states_partial"]
                if pruned[field]["states_partial"]:
                    assert all(s in unpruned[field]["states"] for s in pruned[field]["states"])
                    assert pruned[field]["explanation"].endswith(
                        "(or another value that no read still to come could see) at that point.")
                else:
                    assert pruned[field]["explanation"] == unpruned[field]["explanation"]
                    assert pruned[field]["states"] == unpruned[field]["states"]
            elif field == "configs" and field in unpruned:
                # one config per state of the first ones found (the order they are found in may differ)
                assert len(pruned[field]) == min(len(pruned["counterexample"]["states"]), 10)
                assert all(c["model"] in unpruned["counterexample"]["states"] for c in pruned[field])
            else:
                assert pruned.get(field) == unpruned.get(field), field
    assert invalid > 10 and partial > 2


def test_string_hints_must_match_the_operations():
    steps = [lambda s: s, lambda s: s]
    with pytest.raises(ValueError, match="string_hints has 1 hints for 2 operations"):
        search([(0, True), (1, True)], steps, "", string_hints=[("extend", None)])
    with pytest.raises(ValueError, match=r"string_hints\[1\] is \('observe', None\)"):
        search([(0, True), (1, True)], steps, "", string_hints=[("extend", None), ("observe", None)])
    # an initial state that is not a string (a user's `initial` map may hold any value) turns the pruning off
    plain = search([(0, True), (0, False), (1, True), (1, False)], steps, 0)
    hinted = search([(0, True), (0, False), (1, True), (1, False)], steps, 0,
                    string_hints=[("extend", None), ("extend", None)])
    assert (hinted.valid, hinted.steps) == (plain.valid, plain.steps)


def test_orders_of_appends_no_get_can_see_share_one_configuration():
    # Seven appends in flight at once, then a get of a value no order of them makes. Each order of any subset of
    # the appends is a different string, and no get still to come starts with any of them: the plain search tries
    # every order (13,700 of them), the merged one every subset (2^7 = 128) once.
    appends = 7
    events = [(i, True) for i in range(appends)] + [(i, False) for i in range(appends)] + [(appends, True),
                                                                                         (appends, False)]
    ops = [ModelOp("append", f"{i};", "ok", "k") for i in range(appends)] + [ModelOp("get", "never", "ok", "k")]
    plain, reads, hinted, hinted_alone = searches(events, ops)
    assert plain.valid is False and plain.blocked_op == appends
    assert reads.cache_entries > 13_000
    for result in (hinted, hinted_alone):
        assert_same_blame(result, plain, events, ops)
        assert result.cache_entries <= 2 ** appends + 1 and result.blocked_states_partial
