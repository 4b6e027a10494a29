"""Tiny hand-written rw-register histories: each anomaly, each version-order source."""

import pytest

from checkers.elle import rw_register
from checkers.history import History
from tests.checkers.test_elle_list_append import concurrent, only_case, serial


def then_part(case):
    return case["explanation"].split("Then:\n")[1]


def test_valid_history():
    h = serial((0, "ok", [["w", "x", 1]]), (1, "ok", [["r", "x", 1], ["w", "y", 2]]), (0, "ok", [["r", "y", 2]]))
    assert rw_register.check(h)["valid"] is True


def test_g1c_from_reads():
    h = concurrent((0, "ok", [["w", "x", 1], ["r", "y", 1]]), (1, "ok", [["w", "y", 1], ["r", "x", 1]]))
    r = rw_register.check(h)
    assert (r["valid"], r["anomaly_types"], r["not"]) == (False, ["G1c"], ["read-committed"])
    assert then_part(only_case(r, "G1c")) == (
        "  - T1 < T2, because T1 wrote :y = 1, which was read by T2.\n"
        "  - However, T2 < T1, because T2 wrote :x = 1, which was read by T1: a contradiction!"
    )


def test_write_skew_from_the_initial_state():
    h = concurrent((0, "ok", [["r", "x", None], ["w", "y", 1]]), (1, "ok", [["r", "y", None], ["w", "x", 1]]))
    r = rw_register.check(h, consistency_models=["serializable"])
    assert (r["valid"], r["anomaly_types"], r["not"]) == (False, ["G2-item"], ["repeatable-read"])
    assert then_part(only_case(r, "G2-item")) == (
        "  - T1 < T2, because T1 read key :y = nil, and T2 set it to 1, which came later in the version order.\n"
        "  - However, T2 < T1, because T2 read key :x = nil, and T1 set it to 1, which came later in the "
        "version order: a contradiction!"
    )
    assert rw_register.check(h, consistency_models=["snapshot-isolation"])["valid"] is True


def test_wfr_keys_give_ww_edges():
    h = concurrent(
        (0, "ok", [["w", "x", 1], ["r", "y", 2]]),
        (1, "ok", [["r", "x", 1], ["w", "x", 2], ["w", "y", 2]]),
    )
    r = rw_register.check(h, wfr_keys=True)
    case = only_case(r, "G1c")
    assert case["steps"][1] == {"type": "ww", "key": "x", "value": 1, "value'": 2}
    assert then_part(case) == (
        "  - T1 < T2, because T1 wrote :y = 2, which was read by T2.\n"
        "  - However, T2 < T1, because T2 set key :x to 1, and T1 set it to 2, which came later in the "
        "version order: a contradiction!"
    )
    # Without the option the pair is still a G1c through the two reads.
    assert only_case(rw_register.check(h), "G1c")["edges"] == ["wr", "wr"]


def test_cyclic_versions_leave_the_source_out():
    h = concurrent((0, "ok", [["r", "x", 1], ["w", "x", 2]]), (1, "ok", [["r", "x", 2], ["w", "x", 1]]))
    r = rw_register.check(h, **{"wfr-keys?": True})
    assert only_case(r, "cyclic-versions") == {
        "key": "x",
        "scc": [1, 2],
        "sources": ["initial-state", "wfr-keys"],
    }
    assert "read-uncommitted" in r["not"]


def test_sequential_keys_use_process_order():
    h = serial((0, "ok", [["w", "x", 1]]), (0, "ok", [["r", "x", None]]))
    r = rw_register.check(h, consistency_models=["serializable"], sequential_keys=True)
    assert only_case(r, "cyclic-versions")["sources"] == ["initial-state", "sequential-keys"]
    assert only_case(r, "cyclic-versions")["scc"] == [None, 1]


def _linearizable_case():
    # T1 writes x=1; then T2 (x=2, y=1) and T3 (reads x=1 and y=1) overlap.
    return History.from_dicts(
        [
            {"process": 0, "type": "invoke", "f": "txn", "value": [["w", "x", 1]]},
            {"process": 0, "type": "ok", "f": "txn", "value": [["w", "x", 1]]},
            {"process": 1, "type": "invoke", "f": "txn", "value": [["w", "x", 2], ["w", "y", 1]]},
            {"process": 2, "type": "invoke", "f": "txn", "value": [["r", "x", None], ["r", "y", None]]},
            {"process": 1, "type": "ok", "f": "txn", "value": [["w", "x", 2], ["w", "y", 1]]},
            {"process": 2, "type": "ok", "f": "txn", "value": [["r", "x", 1], ["r", "y", 1]]},
        ]
    )


def test_linearizable_keys_use_realtime_order():
    h = _linearizable_case()
    assert rw_register.check(h)["valid"] is True
    r = rw_register.check(h, linearizable_keys=True)
    assert (r["valid"], r["anomaly_types"]) == (False, ["G-single"])
    assert then_part(only_case(r, "G-single")) == (
        "  - T1 < T2, because T1 read key :x = 1, and T2 set it to 2, which came later in the version order.\n"
        "  - However, T2 < T1, because T2 wrote :y = 1, which was read by T1: a contradiction!"
    )


def test_g1a_g1b_internal_lost_update():
    r = rw_register.check(serial((0, "fail", [["w", "x", 1]]), (1, "ok", [["r", "x", 1]])))
    assert only_case(r, "G1a")["writer"]["type"] == "fail"
    r = rw_register.check(serial((0, "ok", [["w", "x", 1], ["w", "x", 2]]), (1, "ok", [["r", "x", 1]])))
    assert only_case(r, "G1b")["writer"]["index"] == 1
    r = rw_register.check(serial((0, "ok", [["w", "x", 1], ["r", "x", 2]])))
    assert only_case(r, "internal")["expected"] == 1
    r = rw_register.check(
        concurrent((0, "ok", [["r", "x", None], ["w", "x", 1]]), (1, "ok", [["r", "x", None], ["w", "x", 2]])),
        consistency_models=["cursor-stability"],
    )
    assert r["anomaly_types"] == ["lost-update"]
    assert [t["index"] for t in only_case(r, "lost-update")["txns"]] == [2, 3]


def test_duplicate_writes_make_the_result_unknown():
    h = serial((0, "ok", [["w", "x", 1]]), (1, "ok", [["w", "x", 1]]), (2, "ok", [["r", "x", 1]]))
    r = rw_register.check(h)
    assert (r["valid"], r["anomaly_types"]) == ("unknown", ["duplicate-writes"])


def test_bad_options():
    h = serial((0, "ok", [["w", "x", 1]]))
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['linearizable'\]"):
        rw_register.check(h, linearizable=True)
    with pytest.raises(TypeError, match="wfr_keys must be True or False, got 'yes'"):
        rw_register.check(h, wfr_keys="yes")
    r = rw_register.check(serial((0, "ok", [["append", "x", 1]])))
    assert r["anomaly_types"] == ["unexpected-txn-micro-op-types"]
