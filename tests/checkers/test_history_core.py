"""Tests for checkers/core.py: merging verdicts, running checkers, JSON and EDN rendering."""

from __future__ import annotations

import json
import math

import pytest

from checkers.core import merge_valid, results_to_edn, run_checkers, to_jsonable
from checkers.history import History, Op


def _history() -> History:
    return History.from_dicts(
        [
            {"process": 0, "type": "invoke", "f": "send", "value": [["send", 1, 2]]},
            {"process": 0, "type": "ok", "f": "send", "value": [["send", 1, [0, 2]]]},
        ]
    )


def test_merge_valid_false_beats_unknown_beats_true():
    assert merge_valid() is True
    assert merge_valid(True, True) is True
    assert merge_valid(True, "unknown") == "unknown"
    assert merge_valid("unknown", False, True) is False
    assert merge_valid(False, "unknown") is False
    with pytest.raises(ValueError, match="validity 1 is not one of True, False, 'unknown'"):
        merge_valid(True, 1)
    with pytest.raises(ValueError, match="validity None"):
        merge_valid(None)


def test_run_checkers_isolates_exceptions_and_bad_results():
    def boom(history):
        raise RuntimeError("checker bug")

    results = run_checkers(
        _history(),
        {
            "good": lambda h: {"valid": True, "count": len(h)},
            "boom": boom,
            "bad": lambda h: {"valid": 1},
            "late": lambda h: {"valid": True},
        },
    )
    assert results["valid"] == "unknown"
    assert results["good"] == {"valid": True, "count": 2}
    assert results["boom"]["valid"] == "unknown"
    assert "RuntimeError: checker bug" in results["boom"]["error"]
    assert results["bad"]["valid"] == "unknown" and "expected a map with valid" in results["bad"]["error"]
    assert results["late"] == {"valid": True}
    assert run_checkers(_history(), {"a": lambda h: {"valid": False}, "b": boom})["valid"] is False
    with pytest.raises(ValueError, match='may not be named "valid"'):
        run_checkers(_history(), {"valid": lambda h: {"valid": True}})


def test_to_jsonable():
    h = _history()
    value = {
        "set": frozenset({3, 1, 2}),
        "mixed": {2, "a"},
        (1, 2): (3, 4),
        5: math.inf,
        "op": h[1],
        "history": h,
    }
    out = to_jsonable(value)
    json.dumps(out)  # must not raise
    assert out["set"] == [1, 2, 3]
    assert out["mixed"] == [2, "a"]
    assert out["[1, 2]"] == [3, 4]
    assert out["5"] == "inf"
    assert out["op"] == {"index": 1, "process": 0, "type": "ok", "f": "send", "value": [["send", 1, [0, 2]]]}
    assert len(out["history"]) == 2


def test_results_to_edn_uses_keyword_keys_and_jepsen_validity():
    result = {
        "valid": False,
        "queue": {"valid": "unknown", "anomaly_types": ["lost-write"], "anomalies": {"G1c": [{"key": 1, "op": Op(3, None, 0, "ok", "send", [["send", 1, [0, 2]]])}]}},
        "weird key": "a string",
        "set": frozenset({2, 1}),
    }
    assert results_to_edn(result) == (
        '{:valid? false, :queue {:valid? :unknown, :anomaly-types ["lost-write"], '
        ":anomalies {:G1c [{:key 1, :op {:index 3, :process 0, :type :ok, :f :send, :value [[:send 1 [0 2]]]}}]}}, "
        '"weird key" "a string", :set #{1 2}}\n'
    )
