"""checkers.linearizable against a brute-force oracle on tiny random histories.

The oracle enumerates every configuration (set of operations taken effect, model
state) of every prefix of the history, so it is exact and slow. Hypothesis draws
random cas-register, queue, mutex and set histories of up to seven operations, about half of
them invalid (the unordered queue exercises nondeterministic info dequeues). The
checker must agree on the verdict, on the operation blamed (the first completion
whose prefix has no linearization), and on the set of states the model could
have been in when that operation had to take effect.
"""

from hypothesis import event, given, settings
from hypothesis import strategies as st

from checkers.history import History
from checkers.linearizable import check
from checkers.linearizable.models import INCONSISTENT, Choices, ModelOp, make_model


@st.composite
def histories(draw, model):
    n_ops = draw(st.integers(1, 7))
    n_processes = draw(st.integers(1, 3))
    specs = []
    for _ in range(n_ops):
        if model == "cas-register":
            f = draw(st.sampled_from(["read", "write", "cas"]))
            if f == "read":
                value = None
            elif f == "write":
                value = draw(st.integers(0, 2))
            else:
                value = [draw(st.integers(0, 2)), draw(st.integers(0, 2))]
            result = draw(st.integers(0, 2)) if f == "read" else value
        elif model == "mutex":
            f = draw(st.sampled_from(["acquire", "release"]))
            value = result = None
        elif model == "set":
            f = draw(st.sampled_from(["add", "read"]))
            value = draw(st.integers(0, 2)) if f == "add" else None
            result = sorted(draw(st.sets(st.integers(0, 2)))) if f == "read" else value
        else:
            f = draw(st.sampled_from(["enqueue", "dequeue"]))
            value = draw(st.integers(0, 2)) if f == "enqueue" else None
            result = draw(st.one_of(st.none(), st.integers(0, 2))) if f == "dequeue" else value
        outcome = draw(st.sampled_from(["ok", "ok", "ok", "info", "fail"]))
        specs.append((f, value, result, outcome))
    # Interleave: each process runs its ops in turn; the schedule picks which
    # process makes its next move (invoke or complete). A process that crashed
    # (info) goes on under a new process number, as in Jepsen.
    queues = {p: [] for p in range(n_processes)}
    for spec in specs:
        queues[draw(st.integers(0, n_processes - 1))].append(spec)
    ops, open_ops, next_process = [], {}, n_processes
    names = {p: p for p in queues}
    while True:
        movable = sorted(p for p in queues if queues[p] or p in open_ops)
        if not movable:
            break
        p = draw(st.sampled_from(movable))
        if p in open_ops:
            f, value, result, outcome = open_ops.pop(p)
            if outcome == "info" and not queues[p] and draw(st.booleans()):
                continue  # never completes
            ops.append({"process": names[p], "type": outcome, "f": f, "value": result if outcome == "ok" else value})
            if outcome == "info":
                names[p] = next_process
                next_process += 1
        else:
            f, value, result, outcome = queues[p].pop(0)
            ops.append({"process": names[p], "type": "invoke", "f": f, "value": value})
            open_ops[p] = (f, value, result, outcome)
    for i, op in enumerate(ops):
        op["index"] = i
    return ops


def oracle(ops, model_name, initial, semantics="knossos"):
    """(valid, blamed completion index, states) by brute force.

    Knossos semantics: fail ops had no effect. porcupine-etcd: a failed cas is a
    compare that returned false within its call and return; nil reads count.
    """
    porcupine = semantics == "porcupine-etcd"
    model = make_model(model_name, nil_read_legal=not porcupine)
    initial = model.initial_state(initial)
    pending, calls = {}, []
    for i, op in enumerate(ops):
        if op["type"] == "invoke":
            pending[op["process"]] = len(calls)
            calls.append({"call": i, "ret": None, "f": op["f"], "value": op["value"], "outcome": "info"})
        else:
            c = calls[pending.pop(op["process"])]
            if op["type"] == "ok":
                c.update(ret=i, value=op["value"], outcome="ok")
            elif op["type"] == "fail" and porcupine and op["f"] == "cas":
                c.update(ret=i, outcome="fail")
            elif op["type"] == "fail":
                c["outcome"] = "dropped"
    calls = [c for c in calls if c["outcome"] != "dropped"]
    for c in calls:
        c["step"] = model.compile(ModelOp(c["f"], c["value"], c["outcome"]))

    returns = sorted((c["ret"], x) for x, c in enumerate(calls) if c["ret"] is not None)
    for ret, x in returns:
        # The prefix up to this return: ops called before it may take effect;
        # ops that returned before it must. An op may take effect only after
        # every op that must, and returned before its call.
        pool = [k for k, c in enumerate(calls) if c["call"] < ret]
        must = frozenset(k for k in pool if calls[k]["ret"] is not None and calls[k]["ret"] < ret)
        seen = set()
        frontier = [(frozenset(), initial)]
        while frontier:
            config = frontier.pop()
            if config in seen:
                continue
            seen.add(config)
            placed, state = config
            for k in pool:
                if k in placed:
                    continue
                if any(calls[j]["ret"] < calls[k]["call"] and j not in placed for j in must):
                    continue
                after = calls[k]["step"](state)
                for one in (after if type(after) is Choices else [after]):
                    if one is not INCONSISTENT:
                        frontier.append((placed | {k}, one))
        if not any(must <= placed and x in placed for placed, _ in seen):
            blocked = {state for placed, state in seen if must <= placed and x not in placed}
            return False, ret, blocked
    return True, None, None


def agree(ops, model, initial, semantics="knossos"):
    expected_valid, expected_index, expected_states = oracle(ops, model, initial, semantics)
    r = check(History.from_dicts(ops), model, initial=initial, semantics=semantics)
    event(f"valid={expected_valid}")
    event(f"info ops={sum(op['type'] == 'info' for op in ops)}")
    assert r["valid"] is expected_valid
    if expected_valid is False:
        ce = r["counterexample"]
        assert ce["index"] == expected_index
        m = make_model(model)
        assert sorted(map(repr, ce["states"])) == sorted(repr(m.state_data(s)) for s in expected_states)


@settings(max_examples=500, deadline=None)
@given(ops=histories("cas-register"))
def test_cas_register_agrees_with_brute_force(ops):
    agree(ops, "cas-register", 0)


@settings(max_examples=500, deadline=None)
@given(ops=histories("cas-register"))
def test_cas_register_porcupine_etcd_semantics_agree_with_brute_force(ops):
    agree(ops, "cas-register", None, "porcupine-etcd")


@settings(max_examples=500, deadline=None)
@given(ops=histories("fifo-queue"))
def test_fifo_queue_agrees_with_brute_force(ops):
    agree(ops, "fifo-queue", None)


@settings(max_examples=500, deadline=None)
@given(ops=histories("fifo-queue"))
def test_unordered_queue_agrees_with_brute_force(ops):
    agree(ops, "unordered-queue", None)


@settings(max_examples=300, deadline=None)
@given(ops=histories("mutex"))
def test_mutex_agrees_with_brute_force(ops):
    agree(ops, "mutex", None)


@settings(max_examples=300, deadline=None)
@given(ops=histories("set"))
def test_set_agrees_with_brute_force(ops):
    agree(ops, "set", None)
