"""checkers.linearizable: tiny hand-written histories per model with their exact
counterexample sentences, semantics options, argument errors and budgets."""

import time

import pytest

from checkers.history import History
from checkers.linearizable import MODELS, check


def history(*ops):
    """ops: (process, type, f, value) or (process, type, f, value, extra-dict)."""
    dicts = []
    for i, op in enumerate(ops):
        process, kind, f, value = op[:4]
        d = {"index": i, "time": i * 1000, "process": process, "type": kind, "f": f, "value": value}
        if len(op) > 4:
            d.update(op[4])
        dicts.append(d)
    return History.from_dicts(dicts)


def ok(process, f, invoke_value, ok_value=None, extra=None):
    """An invoke immediately followed by its ok."""
    extra = extra or {}
    return [
        (process, "invoke", f, invoke_value, extra),
        (process, "ok", f, invoke_value if ok_value is None else ok_value, extra),
    ]


def flat(*groups):
    return [op for g in groups for op in (g if isinstance(g, list) else [g])]


def explanation(result):
    return result["counterexample"]["explanation"]


# -- register and cas-register -------------------------------------------------


def test_register_sequential_valid():
    h = history(*flat(ok(0, "write", 1), ok(1, "read", None, 1), ok(0, "write", 2), ok(1, "read", None, 2)))
    r = check(h, "register")
    assert r["valid"] is True
    assert r["analyzer"] == "wgl" and r["model"] == "register"
    assert "counterexample" not in r


def test_register_stale_read_sentence():
    h = history(*flat(ok(0, "write", 1), ok(1, "read", None, 2)))
    r = check(h, "register")
    assert r["valid"] is False
    assert explanation(r) == (
        "No linearization of the 1 operation before index 3 lets process 1's read of 2 (index 3) "
        "return 2: the register could only hold 1 at that point."
    )
    assert r["counterexample"]["states"] == [1]
    assert r["counterexample"]["prefix"] == [0]
    assert r["op"]["index"] == 3 and r["op"]["value"] == 2


def test_register_concurrent_writes_give_both_states():
    h = history(
        (0, "invoke", "write", 1),
        (1, "invoke", "write", 2),
        (0, "ok", "write", 1),
        (1, "ok", "write", 2),
        (2, "invoke", "read", None),
        (2, "ok", "read", 3),
    )
    r = check(h, "register")
    assert explanation(r) == (
        "No linearization of the 2 operations before index 5 lets process 2's read of 3 (index 5) "
        "return 3: the register could only hold 1 or 2 at that point."
    )
    assert r["counterexample"]["states"] == [1, 2]
    assert len(r["final_paths"]) == 2
    assert {p[-1]["model"] for p in r["final_paths"]} == {1, 2}


def test_register_read_concurrent_with_write_sees_either():
    for seen in (0, 1):
        h = history(
            (0, "invoke", "write", 1),
            (1, "invoke", "read", None),
            (1, "ok", "read", seen),
            (0, "ok", "write", 1),
        )
        assert check(h, "register", initial=0)["valid"] is True


def test_nil_read_is_always_legal_under_knossos_but_not_porcupine_etcd():
    h = history(*flat(ok(0, "write", 1), ok(1, "read", None, None)))
    assert check(h, "register")["valid"] is True
    r = check(h, "cas-register", semantics="porcupine-etcd")
    assert r["valid"] is False
    assert explanation(r) == (
        "No linearization of the 1 operation before index 3 lets process 1's read of nil (index 3) "
        "return nil: the register could only hold 1 at that point."
    )


def test_cas_register_failed_compare_sentence():
    h = history(*flat(ok(0, "write", 1), ok(1, "cas", [2, 3])))
    r = check(h, "cas-register")
    assert explanation(r) == (
        "No linearization of the 1 operation before index 3 lets process 1's cas from 2 to 3 (index 3) "
        "succeed: the register could only hold 1 at that point."
    )


def test_fail_ops_had_no_effect():
    h = history(
        *flat(ok(0, "write", 1), [(1, "invoke", "write", 5), (1, "fail", "write", 5)], ok(2, "read", None, 1))
    )
    assert check(h, "register")["valid"] is True
    h = history(
        *flat(ok(0, "write", 1), [(1, "invoke", "write", 5), (1, "fail", "write", 5)], ok(2, "read", None, 5))
    )
    assert check(h, "register")["valid"] is False


def test_porcupine_etcd_failed_cas_is_a_false_compare():
    h = history(*flat(ok(0, "write", 1), [(1, "invoke", "cas", [1, 2]), (1, "fail", "cas", [1, 2])]))
    assert check(h, "cas-register")["valid"] is True
    r = check(h, "cas-register", semantics="porcupine-etcd")
    assert r["valid"] is False
    assert explanation(r) == (
        "No linearization of the 1 operation before index 3 lets process 1's cas from 1 to 2 (index 3) "
        "fail: the register could only hold 1 at that point."
    )


def test_info_op_may_take_effect_later_or_never():
    base = flat(ok(0, "write", 1), [(1, "invoke", "cas", [1, 2]), (1, "info", "cas", [1, 2])])
    for seen in (1, 2):
        assert check(history(*base, *ok(2, "read", None, seen)), "cas-register")["valid"] is True
    # Taking effect, then being undone, is not allowed.
    assert check(history(*base, *ok(2, "read", None, 2), *ok(2, "read", None, 1)), "cas-register")["valid"] is False
    r = check(history(*base, *ok(2, "read", None, 3)), "cas-register")
    assert explanation(r) == (
        "No linearization of the 1 operation before index 5 lets process 2's read of 3 (index 5) "
        "return 3: the register could only hold 1 or 2 at that point."
    )


def test_info_op_cannot_take_effect_before_its_call():
    h = history(*flat(ok(0, "write", 1), ok(2, "read", None, 2), [(1, "invoke", "write", 2)]))
    r = check(h, "register")
    assert r["valid"] is False
    assert r["counterexample"]["index"] == 3


def test_unmatched_invoke_is_an_info_op():
    h = history((1, "invoke", "write", 2), *ok(0, "read", None, 2))
    assert check(h, "register")["valid"] is True


# -- other models ------------------------------------------------------------------


def test_mutex_double_acquire_sentence():
    h = history(*flat(ok(0, "acquire", None), ok(1, "acquire", None)))
    r = check(h, "mutex")
    assert explanation(r) == (
        "No linearization of the 1 operation before index 3 lets process 1's acquire (index 3) "
        "take effect: the mutex could only be held at that point."
    )
    h = history(*flat(ok(0, "acquire", None), ok(0, "release", None), ok(1, "acquire", None)))
    assert check(h, "mutex")["valid"] is True
    r = check(history(*ok(0, "release", None)), "mutex")
    assert explanation(r) == (
        "No linearization of the 0 operations before index 1 lets process 0's release (index 1) "
        "take effect: the mutex could only be free at that point."
    )


def test_fifo_queue_out_of_order_sentence():
    h = history(*flat(ok(0, "enqueue", 1), ok(0, "enqueue", 2), ok(1, "dequeue", None, 2)))
    r = check(h, "fifo-queue")
    assert explanation(r) == (
        "No linearization of the 2 operations before index 5 lets process 1's dequeue of 2 (index 5) "
        "return 2: the queue could only hold [1, 2] at that point."
    )
    assert check(h, "unordered-queue")["valid"] is True


def test_queue_empty_dequeue_and_double_dequeue():
    h = history(*flat(ok(0, "enqueue", 1), ok(1, "dequeue", None, 1), ok(2, "dequeue", None, 1)))
    for model in ("fifo-queue", "unordered-queue"):
        r = check(h, model)
        assert explanation(r) == (
            "No linearization of the 2 operations before index 5 lets process 2's dequeue of 1 (index 5) "
            "return 1: the queue could only hold nothing at that point."
        )
    h = history(*flat(ok(0, "enqueue", 1), ok(1, "dequeue", None, None)))
    r = check(h, "fifo-queue")
    assert explanation(r) == (
        "No linearization of the 1 operation before index 3 lets process 1's dequeue of nil (index 3) "
        "return nothing: the queue could only hold [1] at that point."
    )


def test_unordered_queue_info_dequeue_may_take_any_element():
    h = history(
        *flat(
            ok(0, "enqueue", 1),
            ok(0, "enqueue", 2),
            [(1, "invoke", "dequeue", None), (1, "info", "dequeue", None)],
            ok(2, "dequeue", None, 1),
        )
    )
    assert check(h, "unordered-queue")["valid"] is True
    # The info dequeue took 2 or never happened; either way 1 and 2 cannot both be left.
    h2 = history(*h_dicts(h), *ok(3, "dequeue", None, 2), *ok(3, "dequeue", None, 2))
    r = check(h2, "unordered-queue")
    assert r["valid"] is False
    assert r["counterexample"]["states"] == [[]]


def h_dicts(h):
    return [(op.process, op.type, op.f, op.value) for op in h]


def test_set_read_sentence():
    h = history(*flat(ok(0, "add", 1), ok(0, "add", 2), ok(1, "read", None, [1])))
    r = check(h, "set")
    assert explanation(r) == (
        "No linearization of the 2 operations before index 5 lets process 1's read of #{1} (index 5) "
        "return #{1}: the set could only hold #{1, 2} at that point."
    )
    h = history(*flat(ok(0, "add", 1), ok(0, "add", 2), ok(1, "read", None, [2, 1])))
    assert check(h, "set")["valid"] is True


def test_multi_register_txn_sentence():
    h = history(*flat(ok(0, "txn", [["write", "x", 1], ["write", "y", 2]]), ok(1, "txn", [["read", "x", 2]])))
    r = check(h, "multi-register")
    assert explanation(r) == (
        'No linearization of the 1 operation on keys "x", "y" before index 3 lets process 1\'s '
        'txn read "x" 2 (index 3) take effect: the registers could only hold {"x" 1, "y" 2} at that point.'
    )
    h = history(*flat(ok(0, "txn", [["write", "x", 1]]), ok(1, "txn", [["read", "x", 1], ["read", "y", None]])))
    assert check(h, "multi-register")["valid"] is True


def kv(process, f, key, value, result=None):
    return ok(process, f, value, result, {"key": key})


def test_kv_checks_each_key_and_names_the_failing_one():
    h = history(
        *flat(
            kv(0, "put", "a", "x"),
            kv(1, "append", "b", "1"),
            kv(0, "append", "a", "y"),
            kv(1, "append", "b", "2"),
            kv(2, "get", "a", None, "xy"),
            kv(2, "get", "b", None, "2"),
        )
    )
    r = check(h, "kv")
    assert r["sub_history_count"] == 2
    assert r["valid"] is False
    assert explanation(r) == (
        'No linearization of the 2 operations on key "b" before index 11 lets process 2\'s get of key "b" '
        '(index 11) return "2": key "b" could only hold "12" at that point.'
    )
    assert r["counterexample"]["key"] == ["b"]


def test_kv_keys_start_empty():
    h = history(*kv(0, "get", "k", None, ""), *kv(0, "append", "k", "z"), *kv(1, "get", "k", None, "z"))
    assert check(h, "kv")["valid"] is True


def test_kv_process_pool_gives_the_same_answer():
    ops = []
    for key in range(6):
        ops += kv(key, "put", str(key), "v")
        ops += kv(key, "get", str(key), None, "v" if key != 4 else "w")
    h = history(*ops)
    in_process = check(h, "kv")
    pooled = check(h, "kv", workers=2, parallel_min_ops=0)
    assert pooled["valid"] is False
    assert explanation(pooled) == explanation(in_process)
    assert '"4"' in explanation(pooled)


def test_nemesis_ops_are_ignored():
    h = history(
        ("nemesis", "info", "start-partition", None),
        *ok(0, "write", 1),
        ("nemesis", "info", "start-partition", "done"),
        *ok(1, "read", None, 1),
    )
    assert check(h, "register")["valid"] is True


def test_plain_op_maps_are_accepted():
    ops = [
        {"process": 0, "type": "invoke", "f": "write", "value": 1},
        {"process": 0, "type": "ok", "f": "write", "value": 1},
        {"process": 1, "type": "invoke", "f": "read", "value": None},
        {"process": 1, "type": "ok", "f": "read", "value": 2},
    ]
    r = check(ops, "register")
    assert r["valid"] is False
    assert r["counterexample"]["index"] == 3


# -- errors and budgets ---------------------------------------------------------------


def test_unknown_model_is_named():
    with pytest.raises(ValueError) as e:
        check(history(), "cas")
    assert str(e.value) == "unknown model 'cas'; expected one of " + ", ".join(sorted(MODELS))


def test_unknown_semantics_and_option_are_named():
    with pytest.raises(ValueError, match="unknown semantics 'jepsen'; expected one of knossos, porcupine-etcd"):
        check(history(), "register", semantics="jepsen")
    with pytest.raises(ValueError, match="unknown option 'wokers' \\(value 3\\)"):
        check(history(), "register", wokers=3)
    with pytest.raises(ValueError, match="time_limit_s -1 must be a positive number"):
        check(history(), "register", time_limit_s=-1)


def test_unknown_f_is_named_with_its_op():
    h = history(*ok(0, "cas", [1, 2]))
    message = "history op 0 \\(process 0\\): f 'cas' is not an operation of model 'register'"
    with pytest.raises(ValueError, match=message):
        check(h, "register")


def test_bad_cas_value_is_named():
    message = "history op 0 \\(process 0\\): a cas value must be \\[old, new\\], got 3"
    with pytest.raises(ValueError, match=message):
        check(history(*ok(0, "cas", 3)), "cas-register")


def test_bad_value_is_named_from_a_pool_worker():
    h = history(*kv(0, "put", "a", "x"), *kv(1, "put", "b", 7))
    with pytest.raises(ValueError, match="history op 2 \\(process 1\\): a kv put value must be a string, got 7"):
        check(h, "kv", workers=2, parallel_min_ops=0)


def pathological(n_writes):
    """n concurrent writes, then a read of a value nobody wrote: every order of
    the writes is explored before the search can say no."""
    ops = [(p, "invoke", "write", p) for p in range(n_writes)]
    ops += [(p, "ok", "write", p) for p in range(n_writes)]
    ops += ok(n_writes, "read", None, -1)
    return history(*ops)


def test_time_budget_gives_unknown_quickly():
    h = pathological(40)
    start = time.monotonic()
    r = check(h, "register", time_limit_s=0.2)
    elapsed_s = time.monotonic() - start
    assert r["valid"] == "unknown"
    assert r["reason"].startswith("time limit reached")
    assert elapsed_s < 2.0


def test_memory_budget_gives_unknown():
    r = check(pathological(40), "register", memory_limit_bytes=1_000_000)
    assert r["valid"] == "unknown"
    assert r["reason"].startswith("memory limit reached")
    # At least 160 bytes an entry, checked every few thousand steps.
    assert r["cache_entries"] <= 1_000_000 // 160 + 4096


def test_memory_budget_measures_growing_states():
    # 14 concurrent appends, then a get nothing explains: all 2**14 subsets are
    # cached, each with a string of up to 280 characters (several hundred bytes
    # an entry), so a 2 MB budget stops the search after a few thousand entries.
    ops = [("w%d" % p, "invoke", "append", "x" * 20, {"key": "k"}) for p in range(14)]
    ops += [("w%d" % p, "ok", "append", "x" * 20, {"key": "k"}) for p in range(14)]
    ops += [("r", "invoke", "get", None, {"key": "k"}), ("r", "ok", "get", "never", {"key": "k"})]
    r = check(history(*ops), "kv", memory_limit_bytes=2_000_000)
    assert r["valid"] == "unknown"
    assert r["reason"].startswith("memory limit reached")
    assert r["cache_entries"] <= 2_000_000 // 300 + 4096


def test_small_pathological_history_finishes_invalid():
    r = check(pathological(8), "register")
    assert r["valid"] is False
    assert r["counterexample"]["states"] == list(range(8))


def test_independent_keys_are_checked_apart():
    h = history(
        *ok(0, "write", [1, 5]),
        *ok(1, "write", [2, 6]),
        *ok(0, "read", [1, None], [1, 5]),
        *ok(1, "cas", [2, [6, 7]]),
        *ok(2, "read", [2, None], [2, 6]),
    )
    r = check(h, "cas-register", independent=True)
    assert r["sub_history_count"] == 2
    assert r["valid"] is False
    assert explanation(r) == (
        "No linearization of the 2 operations on key 2 before index 9 lets process 2's read of 6 (index 9) "
        "return 6: the register could only hold 7 at that point."
    )
    assert check(history(*h_dicts(h)[:8]), "cas-register", independent=True)["valid"] is True
    # Without independent the tuples are plain values of one register.
    assert check(h, "cas-register")["valid"] is False


def test_independent_needs_tuples_and_an_unkeyed_model():
    with pytest.raises(ValueError, match="history op 0 \\(process 0\\): value 5 is not a \\[key, value\\] tuple"):
        check(history(*ok(0, "write", 5)), "register", independent=True)
    with pytest.raises(ValueError, match="model 'kv' is already keyed"):
        check(history(), "kv", independent=True)


def test_process_pool_stops_the_other_searches_once_a_key_fails():
    ops = flat(kv(0, "put", "0", "a"), kv(0, "get", "0", None, "b"))
    # Key "1": 40 concurrent appends, then a get that nothing explains: a
    # search that would run for minutes.
    ops += [(10 + p, "invoke", "append", str(p), {"key": "1"}) for p in range(40)]
    ops += [(10 + p, "ok", "append", str(p), {"key": "1"}) for p in range(40)]
    ops += kv(1, "get", "1", None, "never")
    start = time.monotonic()
    r = check(history(*ops), "kv", workers=2, parallel_min_ops=0)
    assert r["valid"] is False
    assert r["counterexample"]["key"] == ["0"]
    assert time.monotonic() - start < 10


def test_long_state_lists_are_cut_in_the_sentence():
    r = check(pathological(13), "register")
    assert r["counterexample"]["states"] == list(range(13))
    assert explanation(r) == (
        "No linearization of the 13 operations before index 27 lets process 13's read of -1 (index 27) "
        "return -1: the register could only hold 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 or 3 other values at that point."
    )
