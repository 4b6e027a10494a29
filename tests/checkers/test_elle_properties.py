"""Property tests: generated list-append histories, valid ones and ones with one injected fault.

The generator runs random transactions (appends and reads over a pool of keys,
each key retired after a few appends, as Elle's generator does) on a set of
threads with random interleavings; each transaction fails, crashes (``info``:
applied or not, at random) or succeeds. Applied transactions run one at a
time against a map of lists:
- strictly serial: in the order of their completions, so each runs inside its
  invocation-completion window; the history is strict serializable;
- serial: in a random order unrelated to time; the history is serializable.

Faults injected into a strictly serial history: a stale read (a read missing
the last element, appended by a transaction that completed before the read
began), a lost append (an acknowledged element that disappears from every
read although later appends are seen), and an element read twice.
"""

import random
import time

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from checkers.elle import list_append
from checkers.elle.graph import CYCLE_ANOMALY_TYPES
from checkers.history import History, Op

RW_CYCLES = {t for t in CYCLE_ANOMALY_TYPES if t.startswith(("G-single", "G-nonadjacent", "G2-item"))}


class Txn:
    def __init__(self, process, mops):
        self.process = process
        self.mops = mops  # [f, k, v]; v None for reads until run
        self.result = None
        self.outcome = None
        self.invoke_position = -1
        self.complete_position = -1


def generate(seed, n_txns=30, concurrency=4, active_keys=3, max_writes_per_key=6, fail_p=0.1, info_p=0.1, strict=True, max_len=4):
    rng = random.Random(seed)
    keys = list(range(active_keys))
    next_key = active_keys
    writes = {}
    threads = list(range(concurrency))
    next_process = concurrency
    running = {}
    txns = []
    events = []  # (kind, txn)
    started = 0
    while len(events) < 2 * n_txns:
        thread = rng.randrange(concurrency)
        if thread not in running:
            if started == n_txns:
                continue
            started += 1
            mops = []
            for _ in range(rng.randint(1, max_len)):
                k = rng.choice(keys)
                if rng.random() < 0.5:
                    v = writes.get(k, 0) + 1
                    writes[k] = v
                    mops.append(["append", k, v])
                    if v >= max_writes_per_key:
                        keys[keys.index(k)] = next_key
                        next_key += 1
                else:
                    mops.append(["r", k, None])
            txn = Txn(threads[thread], mops)
            running[thread] = txn
            txns.append(txn)
            events.append(("invoke", txn))
        else:
            txn = running.pop(thread)
            roll = rng.random()
            txn.outcome = "fail" if roll < fail_p else "info" if roll < fail_p + info_p else "ok"
            if txn.outcome == "info":
                threads[thread] = next_process  # a crashed process never returns
                next_process += 1
            events.append(("complete", txn))
    applied = [t for kind, t in events if kind == "complete" and (t.outcome == "ok" or (t.outcome == "info" and rng.random() < 0.5))]
    if not strict:
        rng.shuffle(applied)
    state = {}
    for txn in applied:
        txn.result = []
        for f, k, v in txn.mops:
            if f == "append":
                state.setdefault(k, []).append(v)
                txn.result.append([f, k, v])
            else:
                txn.result.append([f, k, list(state.get(k, []))])
    ops = []
    for kind, txn in events:
        if kind == "invoke":
            txn.invoke_position = len(ops)
            ops.append({"process": txn.process, "type": "invoke", "f": "txn", "value": [list(m) for m in txn.mops]})
        else:
            txn.complete_position = len(ops)
            value = txn.result if txn.outcome == "ok" else [list(m) for m in txn.mops]
            ops.append({"process": txn.process, "type": txn.outcome, "f": "txn", "value": value})
    return ops, txns


def to_history(ops):
    return History([Op(i, i * 1000, op["process"], op["type"], op["f"], op["value"]) for i, op in enumerate(ops)])


histories = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**32),
        "n_txns": st.integers(2, 40),
        "concurrency": st.integers(1, 5),
        "active_keys": st.integers(1, 4),
        "max_writes_per_key": st.integers(1, 8),
        "fail_p": st.sampled_from([0.0, 0.1, 0.3]),
        "info_p": st.sampled_from([0.0, 0.1, 0.3]),
    }
)

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])


def assert_valid(result):
    # A history whose transactions never touched a common key has an empty
    # graph, which Elle reports as unknown rather than valid.
    assert result["valid"] is True or result["anomaly_types"] == ["empty-transaction-graph"], result


@SETTINGS
@given(histories)
def test_strictly_serial_histories_are_strict_serializable(params):
    ops, _ = generate(strict=True, **params)
    assert_valid(list_append.check(to_history(ops)))


@SETTINGS
@given(histories)
def test_serial_histories_are_serializable(params):
    ops, _ = generate(strict=False, **params)
    assert_valid(list_append.check(to_history(ops), consistency_models=["serializable"]))


def test_serial_but_not_strict_histories_do_break_strict_serializability():
    # Guards the generator: a random serial order must often contradict
    # realtime, or the serializable property above would test too little.
    verdicts = [
        list_append.check(to_history(generate(seed, n_txns=30, concurrency=3, strict=False)[0]))["valid"]
        for seed in range(20)
    ]
    assert verdicts.count(False) >= 5, verdicts


def _writers(txns):
    return {(m[1], m[2]): t for t in txns if t.outcome == "ok" for m in t.result if m[0] == "append"}


@SETTINGS
@given(histories, st.randoms(use_true_random=False))
def test_a_stale_read_is_caught(params, rng):
    ops, txns = generate(strict=True, **params)
    writers = _writers(txns)
    candidates = []
    for reader in txns:
        if reader.outcome != "ok":
            continue
        appended = {m[1] for m in reader.mops if m[0] == "append"}
        for i, (f, k, v) in enumerate(reader.result):
            writer = writers.get((k, v[-1])) if f == "r" and v else None
            if writer is not None and writer is not reader and k not in appended and writer.complete_position < reader.invoke_position:
                candidates.append((reader, i))
    assume(candidates)
    reader, i = rng.choice(candidates)
    f, k, v = reader.result[i]
    ops[reader.complete_position]["value"][i] = [f, k, v[:-1]]
    r = list_append.check(to_history(ops))
    assert r["valid"] is False
    assert set(r["anomaly_types"]) & (RW_CYCLES | {"G1b"}), r["anomaly_types"]


@SETTINGS
@given(histories, st.randoms(use_true_random=False))
def test_a_lost_append_is_caught(params, rng):
    ops, txns = generate(strict=True, **params)
    writers = _writers(txns)
    candidates = []
    for reader in txns:
        if reader.outcome != "ok":
            continue
        for f, k, v in reader.result:
            if f != "r":
                continue
            for j, element in enumerate(v[:-1]):
                lost_by = writers.get((k, element))
                later = [writers.get((k, e)) for e in v[j + 1 :]]
                if lost_by is not None and any(t is not None and t.invoke_position > lost_by.complete_position for t in later):
                    candidates.append((k, element))
    assume(candidates)
    k, element = rng.choice(sorted(set(candidates)))
    for op in ops:
        if op["type"] == "ok":
            op["value"] = [[f, mk, [e for e in v if e != element]] if f == "r" and mk == k else [f, mk, v] for f, mk, v in op["value"]]
    r = list_append.check(to_history(ops))
    assert r["valid"] is False
    assert set(r["anomaly_types"]) & (set(CYCLE_ANOMALY_TYPES) | {"G1b"}), r["anomaly_types"]


@SETTINGS
@given(histories, st.randoms(use_true_random=False))
def test_an_element_read_twice_is_caught(params, rng):
    ops, txns = generate(strict=True, **params)
    candidates = [(t, i) for t in txns if t.outcome == "ok" for i, (f, k, v) in enumerate(t.result) if f == "r" and v]
    assume(candidates)
    txn, i = rng.choice(candidates)
    f, k, v = txn.result[i]
    ops[txn.complete_position]["value"][i] = [f, k, v + [v[-1]]]
    r = list_append.check(to_history(ops))
    assert r["valid"] is False
    assert "duplicate-elements" in r["anomaly_types"]


def test_regression_seeds_stay_valid():
    for seed in range(20):
        ops, _ = generate(seed, n_txns=200, concurrency=8, active_keys=5, max_writes_per_key=10)
        assert_valid(list_append.check(to_history(ops)))


@pytest.mark.slow
def test_a_hundred_thousand_transactions_at_concurrency_twenty():
    ops, _ = generate(1, n_txns=100_000, concurrency=20, active_keys=10, max_writes_per_key=32, fail_p=0.05, info_p=0.02)
    history = to_history(ops)
    started = time.monotonic()
    result = list_append.check(history)
    elapsed_s = time.monotonic() - started
    assert result["valid"] is True
    assert elapsed_s < 60, elapsed_s
