"""checkers.linearizable on the public Knossos and Porcupine histories in
tests/data/histories, each against the verdict its own project asserts.

The whole sweep (110 histories) takes about a second, so it runs by default.
Semantics come from each manifest entry's `semantics` field: Knossos's registers
start at 0 (its tests use `(cas-register 0)`), Porcupine's etcd logs read a failed
cas as a compare that returned false and start nil, Porcupine's kv histories are
per-key string registers.
"""

import json

import pytest

from checkers.history import History
from tests.data import HISTORIES
from checkers.linearizable import check

DATA = HISTORIES
MANIFEST = DATA / "manifest.json"


def entries():
    if not MANIFEST.exists():
        raise FileNotFoundError(f"histories manifest {MANIFEST} is missing")
    return [e for e in json.loads(MANIFEST.read_text()) if e["source"] in ("knossos", "porcupine")]


def options(entry):
    semantics = entry["semantics"]
    if semantics.startswith("knossos"):
        return {"semantics": "knossos", "initial": None if entry["model"] == "mutex" else 0}
    if semantics.startswith("porcupine-etcd"):
        return {"semantics": "porcupine-etcd", "initial": None}
    if entry["model"] == "kv":
        return {"semantics": "knossos", "initial": None}
    raise AssertionError(f"manifest entry {entry['file']} has semantics this test does not know: {semantics!r}")


ENTRIES = entries()


def test_manifest_has_the_expected_histories():
    by_source = {}
    for e in ENTRIES:
        by_source.setdefault((e["source"], e["model"]), []).append(e)
    assert len(by_source[("knossos", "cas-register")]) == 54
    assert len(by_source[("knossos", "mutex")]) == 1
    assert len(by_source[("porcupine", "cas-register")]) == 52
    assert len(by_source[("porcupine", "kv")]) == 3


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["file"] for e in ENTRIES])
def test_expected_verdict(entry):
    h = History.load(DATA / entry["file"], format=entry["format"])
    r = check(h, entry["model"], time_limit_s=60, **options(entry))
    assert r["valid"] is entry["expected_valid"], r.get("counterexample") or r.get("reason")
    if r["valid"] is False:
        ce = r["counterexample"]
        assert ce["explanation"].startswith("No linearization of the ")
        assert ce["states"], "a counterexample names the states the model could be in"
        assert r["final_paths"] and r["configs"]


def load(name, fmt):
    return History.load(DATA / name, format=fmt)


def test_knossos_cas_failure_counterexample():
    r = check(load("knossos/data/cas-register/bad/cas-failure.edn", "edn"), "cas-register", initial=0)
    assert r["counterexample"]["explanation"] == (
        "No linearization of the 180 operations before index 491 lets process 70's read of 0 (index 491) "
        "return 0: the register could only hold 2 at that point."
    )


def test_knossos_mutex_counterexample():
    r = check(load("knossos/data/mutex/bad/etcd.edn", "edn"), "mutex")
    assert r["counterexample"]["explanation"] == (
        "No linearization of the 259 operations before index 1119 lets process 0's acquire (index 1119) "
        "take effect: the mutex could only be held at that point."
    )


def test_porcupine_kv_bad_counterexample():
    r = check(load("porcupine/test_data/kv/c01-bad.txt", "edn-lines"), "kv")
    assert r["counterexample"]["explanation"] == (
        'No linearization of the 3 operations on key "7" before index 59 lets process 0\'s get of key "7" '
        '(index 59) return "x 0 0 y": key "7" could only hold "x 0 0 yx 0 3 y" at that point.'
    )


def test_porcupine_etcd_valid_log_is_valid_under_both_semantics():
    # Knossos's semantics (a failed cas had no effect, a nil read is always legal)
    # only allow more than porcupine-etcd's, so a log valid under porcupine-etcd
    # stays valid; the difference itself is tested on hand-written histories.
    h = load("porcupine/test_data/jepsen/etcd_002.log", "jepsen-log")
    assert check(h, "cas-register", semantics="porcupine-etcd")["valid"] is True
    assert check(h, "cas-register", semantics="knossos")["valid"] is True
