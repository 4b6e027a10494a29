"""Elle's own histories from tests/data/histories, with the verdicts Elle asserts."""

import json
import os

import pytest

from checkers.elle import list_append
from checkers.history import History
from tests.data import HISTORIES

DATA = str(HISTORIES)
MANIFEST = os.path.join(DATA, "manifest.json")


def _elle_entries():
    if not os.path.exists(MANIFEST):
        return []
    with open(MANIFEST) as f:
        return [e for e in json.load(f) if e["source"] == "elle"]


ENTRIES = _elle_entries()


def _load(entry):
    return History.load(os.path.join(DATA, entry["file"]), format=entry["format"])


def test_manifest_has_the_elle_histories():
    assert {e["file"] for e in ENTRIES} >= {
        "elle/histories/paper-example.edn",
        "elle/histories/si-without-g-single.edn",
    }


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["file"] for e in ENTRIES])
def test_expected_verdict(entry):
    assert entry["model"] == "list-append"
    r = list_append.check(_load(entry), consistency_models=entry["consistency_models"])
    assert r["valid"] is entry["expected_valid"]
    assert r["anomaly_types"] == sorted(entry["expected_anomalies"])
    for model in entry.get("expected_not", []):
        assert model in r["not"]


def test_paper_example_cycle_is_printed_as_in_the_paper():
    entry = next(e for e in ENTRIES if e["file"].endswith("paper-example.edn"))
    r = list_append.check(_load(entry), consistency_models=["serializable"])
    assert r["not"] == ["consistent-view"]
    (case,) = r["anomalies"]["G-single"]
    assert case["edges"] == ["rw", "wr", "ww"]
    assert [op["index"] for op in case["cycle"]] == [7, 3, 5, 7]
    assert case["explanation"] == (
        "Let:\n"
        "  T1 = {:index 7, :type :ok, :value [[:append 250 10] [:r 253 [1 3 4]] [:r 255 [2 3 4 5]] [:append 256 3]]}\n"
        "  T2 = {:index 3, :type :ok, :value [[:append 255 8] [:r 253 [1 3 4]]]}\n"
        "  T3 = {:index 5, :type :ok, :value [[:append 256 4] [:r 255 [2 3 4 5 8]] [:r 256 [1 2 4]] [:r 253 [1 3 4]]]}\n"
        "\n"
        "Then:\n"
        "  - T1 < T2, because T1 did not observe T2's append of 8 to 255.\n"
        "  - T2 < T3, because T3 observed T2's append of 8 to key 255.\n"
        "  - However, T3 < T1, because T1 appended 3 after T3 appended 4 to 256: a contradiction!"
    )


def test_si_without_g_single():
    entry = next(e for e in ENTRIES if e["file"].endswith("si-without-g-single.edn"))
    history = _load(entry)
    assert list_append.check(history, consistency_models=["snapshot-isolation"])["valid"] is True
    r = list_append.check(history, consistency_models=["repeatable-read"])
    assert (r["valid"], r["anomaly_types"], r["not"]) == (False, ["G2-item"], ["repeatable-read"])
    assert r["also_not"] == ["serializable", "strict-serializable", "strong-session-serializable"]
    (case,) = r["anomalies"]["G2-item"]
    assert case["explanation"].split("Then:\n")[1] == (
        "  - T1 < T2, because T1 observed the initial (nil) state of 9, which T2 created by appending 2.\n"
        "  - T2 < T3, because T3 appended 5 after T2 appended 2 to 9.\n"
        "  - However, T3 < T1, because T3 observed the initial (nil) state of 8, which T1 created by appending 1: "
        "a contradiction!"
    )
