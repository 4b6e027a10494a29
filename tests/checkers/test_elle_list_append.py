"""Tiny hand-written list-append histories, one per anomaly, with exact explanations.

Also the helpers ``serial`` and ``concurrent`` that the other Elle test files use
to write histories as lists of transactions.
"""

import pytest

from checkers.elle import list_append
from checkers.elle.txn import result_to_edn
from checkers.history import History


def _invoke_value(value):
    return [[f, k, None] if f == "r" else [f, k, v] for f, k, v in value]


def serial(*txns, times=False):
    """Txns ``(process, type, value)`` one after another: invoke, then complete.

    With ``times``, op i gets time i * 1_000_000 ns.
    """
    ops = []
    for process, kind, value in txns:
        ops.append({"process": process, "type": "invoke", "f": "txn", "value": _invoke_value(value)})
        ops.append({"process": process, "type": kind, "f": "txn", "value": value})
    if times:
        for i, op in enumerate(ops):
            op["time"] = i * 1_000_000
    return History.from_dicts(ops)


def concurrent(*txns):
    """All txns invoked, then all completed, in the order given."""
    ops = [{"process": p, "type": "invoke", "f": "txn", "value": _invoke_value(v)} for p, _, v in txns]
    ops += [{"process": p, "type": k, "f": "txn", "value": v} for p, k, v in txns]
    return History.from_dicts(ops)


def only_case(result, anomaly):
    cases = result["anomalies"][anomaly]
    assert len(cases) == 1, cases
    return cases[0]


def test_valid_serial_history():
    h = serial(
        (0, "ok", [["append", "x", 1], ["r", "y", []]]),
        (1, "ok", [["r", "x", [1]], ["append", "y", 1]]),
        (0, "ok", [["r", "x", [1]], ["r", "y", [1]]]),
    )
    assert list_append.check(h) == {
        "valid": True,
        "anomaly_types": [],
        "anomalies": {},
        "not": [],
        "also_not": [],
    }


def test_g0_write_cycle():
    h = concurrent(
        (0, "ok", [["append", "x", 1], ["append", "y", 2]]),
        (1, "ok", [["append", "x", 2], ["append", "y", 1]]),
        (2, "ok", [["r", "x", [1, 2]], ["r", "y", [1, 2]]]),
    )
    r = list_append.check(h)
    assert r["valid"] is False
    assert r["anomaly_types"] == ["G0"]
    assert r["not"] == ["read-uncommitted"]
    case = only_case(r, "G0")
    assert case["edges"] == ["ww", "ww"]
    assert case["steps"] == [
        {"type": "ww", "key": "y", "value": 1, "value'": 2},
        {"type": "ww", "key": "x", "value": 1, "value'": 2},
    ]
    assert case["explanation"] == (
        "Let:\n"
        "  T1 = {:index 4, :type :ok, :process 1, :f :txn, :value [[:append :x 2] [:append :y 1]]}\n"
        "  T2 = {:index 3, :type :ok, :process 0, :f :txn, :value [[:append :x 1] [:append :y 2]]}\n"
        "\n"
        "Then:\n"
        "  - T1 < T2, because T2 appended 2 after T1 appended 1 to :y.\n"
        "  - However, T2 < T1, because T1 appended 2 after T2 appended 1 to :x: a contradiction!"
    )


def test_g1a_aborted_read():
    h = serial((0, "fail", [["append", "x", 1]]), (1, "ok", [["r", "x", [1]]]))
    r = list_append.check(h)
    assert r["valid"] is False
    assert "G1a" in r["anomaly_types"]
    assert r["not"] == ["read-committed"]
    case = only_case(r, "G1a")
    assert case["element"] == 1
    assert case["mop"] == ["r", "x", [1]]
    assert case["writer"]["type"] == "fail"
    assert case["op"]["index"] == 3


def test_g1b_intermediate_read():
    h = serial(
        (0, "ok", [["append", "x", 1], ["append", "x", 2]]),
        (1, "ok", [["r", "x", [1]]]),
    )
    r = list_append.check(h)
    assert r["anomaly_types"] == ["G-single", "G1b"]
    case = only_case(r, "G1b")
    assert (case["element"], case["writer"]["index"], case["op"]["index"]) == (1, 1, 3)
    assert only_case(r, "G-single")["explanation"].endswith(
        "  - T1 < T2, because T1 did not observe T2's append of 2 to :x.\n"
        "  - However, T2 < T1, because T1 observed T2's append of 1 to key :x: a contradiction!"
    )


def test_g1c_circular_information_flow():
    h = concurrent(
        (0, "ok", [["append", "x", 1], ["r", "y", [1]]]),
        (1, "ok", [["append", "y", 1], ["r", "x", [1]]]),
    )
    r = list_append.check(h, consistency_models=["read-committed"])
    assert (r["valid"], r["anomaly_types"], r["not"]) == (False, ["G1c"], ["read-committed"])
    assert only_case(r, "G1c")["explanation"] == (
        "Let:\n"
        "  T1 = {:index 3, :type :ok, :process 1, :f :txn, :value [[:append :y 1] [:r :x [1]]]}\n"
        "  T2 = {:index 2, :type :ok, :process 0, :f :txn, :value [[:append :x 1] [:r :y [1]]]}\n"
        "\n"
        "Then:\n"
        "  - T1 < T2, because T2 observed T1's append of 1 to key :y.\n"
        "  - However, T2 < T1, because T1 observed T2's append of 1 to key :x: a contradiction!"
    )


def test_g_single_read_skew():
    h = concurrent(
        (0, "ok", [["append", "x", 1], ["append", "y", 1]]),
        (1, "ok", [["r", "x", []], ["r", "y", [1]]]),
    )
    r = list_append.check(h, consistency_models=["snapshot-isolation"])
    assert (r["valid"], r["anomaly_types"], r["not"]) == (False, ["G-single"], ["consistent-view"])
    assert "snapshot-isolation" in r["also_not"]
    case = only_case(r, "G-single")
    assert case["steps"][0] == {"type": "rw", "key": "x", "value": None, "value'": 1}
    assert case["explanation"].split("Then:\n")[1] == (
        "  - T1 < T2, because T1 observed the initial (nil) state of :x, which T2 created by appending 1.\n"
        "  - However, T2 < T1, because T1 observed T2's append of 1 to key :y: a contradiction!"
    )


def test_g_nonadjacent_is_not_g_single():
    h = concurrent(
        (0, "ok", [["r", "x", []], ["r", "z", [1]]]),
        (1, "ok", [["append", "x", 1]]),
        (2, "ok", [["r", "x", [1]], ["r", "y", []]]),
        (3, "ok", [["append", "y", 1], ["append", "z", 1]]),
    )
    r = list_append.check(h, consistency_models=["snapshot-isolation"])
    assert (r["valid"], r["anomaly_types"], r["not"]) == (False, ["G-nonadjacent"], ["snapshot-isolation"])
    case = only_case(r, "G-nonadjacent")
    assert case["edges"] == ["rw", "wr", "rw", "wr"]
    assert case["explanation"].split("Then:\n")[1] == (
        "  - T1 < T2, because T1 observed the initial (nil) state of :x, which T2 created by appending 1.\n"
        "  - T2 < T3, because T3 observed T2's append of 1 to key :x.\n"
        "  - T3 < T4, because T3 observed the initial (nil) state of :y, which T4 created by appending 1.\n"
        "  - However, T4 < T1, because T1 observed T4's append of 1 to key :z: a contradiction!"
    )
    # Repeatable read allows it: its rw edges are not adjacent, and no item
    # anti-dependency cycle with adjacent rw edges exists.
    assert list_append.check(h, consistency_models=["repeatable-read"])["valid"] is True


def test_g2_item_write_skew():
    h = concurrent(
        (0, "ok", [["r", "x", []], ["append", "y", 1]]),
        (1, "ok", [["r", "y", []], ["append", "x", 1]]),
    )
    r = list_append.check(h, consistency_models=["repeatable-read"])
    assert (r["valid"], r["anomaly_types"], r["not"]) == (False, ["G2-item"], ["repeatable-read"])
    assert only_case(r, "G2-item")["explanation"].split("Then:\n")[1] == (
        "  - T1 < T2, because T1 observed the initial (nil) state of :y, which T2 created by appending 1.\n"
        "  - However, T2 < T1, because T2 observed the initial (nil) state of :x, which T1 created by appending 1: a contradiction!"
    )
    # Snapshot isolation allows write skew.
    assert list_append.check(h, consistency_models=["snapshot-isolation"])["valid"] is True


def test_g_single_process_variant():
    h = serial((0, "ok", [["append", "x", 1]]), (0, "ok", [["r", "x", []]]))
    r = list_append.check(h, consistency_models=["strong-session-serializable"])
    assert (r["valid"], r["anomaly_types"]) == (False, ["G-single-process"])
    assert r["not"] == ["strong-session-snapshot-isolation"]
    assert only_case(r, "G-single-process")["explanation"].split("Then:\n")[1] == (
        "  - T1 < T2, because T1 observed the initial (nil) state of :x, which T2 created by appending 1.\n"
        "  - However, T2 < T1, because process 0 executed T2 before T1: a contradiction!"
    )
    # Plain serializability allows the stale read: the order T2, T1 is serial.
    assert list_append.check(h, consistency_models=["serializable"])["valid"] is True


def test_g_single_realtime_stale_read_with_times():
    h = serial((0, "ok", [["append", "x", 1]]), (1, "ok", [["r", "x", []]]), times=True)
    r = list_append.check(h)
    assert (r["valid"], r["anomaly_types"], r["not"]) == (
        False,
        ["G-single-realtime"],
        ["strong-snapshot-isolation"],
    )
    assert only_case(r, "G-single-realtime")["explanation"].split("Then:\n")[1] == (
        "  - T1 < T2, because T1 observed the initial (nil) state of :x, which T2 created by appending 1.\n"
        "  - However, T2 < T1, because T2 completed at index 1, 0.001 seconds before the invocation of T1, "
        "at index 2: a contradiction!"
    )


def test_an_edge_both_rw_and_realtime_is_explained_as_rw():
    # T2 began after T1 ended, but each missed the other's append: the T1 ->
    # T2 edge is rw and realtime. Elle explains a pair by data dependencies
    # first, so the cycle is G2-item, not G-single-realtime.
    h = serial(
        (0, "ok", [["r", "x", []], ["append", "y", 1]]),
        (1, "ok", [["r", "y", []], ["append", "x", 1]]),
    )
    r = list_append.check(h)
    assert (r["valid"], r["anomaly_types"]) == (False, ["G2-item"])
    assert only_case(r, "G2-item")["edges"] == ["rw", "rw"]


def test_realtime_step_data():
    h = serial((0, "ok", [["append", "x", 1]]), (1, "ok", [["r", "x", []]]))
    steps = only_case(list_append.check(h), "G-single-realtime")["steps"]
    assert steps[1] == {"type": "realtime", "a_index": 1, "a_time": None, "b_index": 2, "b_time": None}
    assert only_case(list_append.check(h), "G-single-realtime")["explanation"].endswith(
        "because T2 completed at index 1, before the invocation of T1, at index 2: a contradiction!"
    )


def test_internal_inconsistency():
    h = serial((0, "ok", [["append", "x", 1], ["r", "x", [2]]]))
    r = list_append.check(h, consistency_models=["serializable"])
    assert r["valid"] is False
    case = only_case(r, "internal")
    assert case["expected"] == ["...", 1]
    assert case["mop"] == ["r", "x", [2]]


def test_internal_after_a_read():
    h = serial((0, "ok", [["r", "x", [3]], ["append", "x", 1], ["r", "x", [3]]]))
    case = only_case(list_append.check(h), "internal")
    assert case["expected"] == [3, 1]


def test_future_read():
    h = serial((0, "ok", [["r", "x", [1]], ["append", "x", 1]]))
    r = list_append.check(h, consistency_models=["read-atomic"])
    assert r["valid"] is False
    case = only_case(r, "future-read")
    assert (case["element"], case["mop"]) == (1, ["r", "x", [1]])


def test_dirty_update():
    h = serial(
        (0, "fail", [["append", "x", 1]]),
        (1, "ok", [["append", "x", 2]]),
        (2, "ok", [["r", "x", [1, 2]]]),
    )
    r = list_append.check(h, consistency_models=["read-committed"])
    assert r["valid"] is False
    assert {"G1a", "dirty-update"} <= set(r["anomaly_types"])
    case = only_case(r, "dirty-update")
    assert case["key"] == "x"
    assert case["values"] == [1, 2]
    assert [t if t == "..." else t["index"] for t in case["txns"]] == [1, "...", 3]


def test_duplicate_elements():
    h = serial((0, "ok", [["append", "x", 1]]), (1, "ok", [["r", "x", [1, 1]]]))
    r = list_append.check(h, consistency_models=["read-uncommitted"])
    assert r["valid"] is False
    assert only_case(r, "duplicate-elements")["duplicates"] == {1: 2}


def test_incompatible_order():
    h = concurrent(
        (0, "ok", [["append", "x", 1]]),
        (1, "ok", [["append", "x", 2]]),
        (2, "ok", [["r", "x", [1, 2]]]),
        (3, "ok", [["r", "x", [2, 1]]]),
    )
    r = list_append.check(h, consistency_models=["read-committed"])
    assert r["valid"] is False
    assert only_case(r, "incompatible-order") == {"key": "x", "values": [[1, 2], [2, 1]]}
    assert "read-committed" in r["not"]


def test_lost_update():
    h = History.from_dicts(
        [
            {"process": 0, "type": "invoke", "f": "txn", "value": [["append", "x", 1]]},
            {"process": 0, "type": "ok", "f": "txn", "value": [["append", "x", 1]]},
            {"process": 1, "type": "invoke", "f": "txn", "value": [["r", "x", None], ["append", "x", 2]]},
            {"process": 2, "type": "invoke", "f": "txn", "value": [["r", "x", None], ["append", "x", 3]]},
            {"process": 1, "type": "ok", "f": "txn", "value": [["r", "x", [1]], ["append", "x", 2]]},
            {"process": 2, "type": "ok", "f": "txn", "value": [["r", "x", [1]], ["append", "x", 3]]},
        ]
    )
    r = list_append.check(h, consistency_models=["cursor-stability"])
    assert r["valid"] is False
    case = only_case(r, "lost-update")
    assert (case["key"], case["value"]) == ("x", [1])
    assert [t["index"] for t in case["txns"]] == [4, 5]
    assert r["anomaly_types"] == ["lost-update"]
    assert r["not"] == ["ROLA", "cursor-stability"]
    # Neither append was ever read, so both came after 1: each txn read the
    # state the other overwrote, an rw cycle as well.
    assert list_append.check(h)["anomaly_types"] == ["G2-item", "lost-update"]


def test_empty_transaction_graph_is_unknown():
    r = list_append.check(serial((0, "ok", [["append", "x", 1]])))
    assert r["valid"] == "unknown"
    assert r["anomaly_types"] == ["empty-transaction-graph"]


def test_cycle_search_timeout_reports_fallback_cycle():
    ticks = iter(range(0, 10_000, 100))
    h = concurrent(
        (0, "ok", [["append", "x", 1], ["append", "y", 1]]),
        (1, "ok", [["r", "x", []], ["r", "y", [1]]]),
    )
    r = list_append.check(h, cycle_search_timeout_s=1.0, clock=lambda: next(ticks))
    assert r["valid"] is False
    assert r["anomaly_types"] == ["G-single", "cycle-search-timeout"]
    assert only_case(r, "cycle-search-timeout") == {
        "type": "cycle-search-timeout",
        # G0 and G1c need no BFS here (no ww/wr cycle at all), so the first
        # clock reading past the deadline is in the G-single search.
        "anomaly_spec_type": "G-single",
        "does_not_contain": ["G0", "G1c"],
        "scc_size": 2,
    }
    assert only_case(r, "G-single")["edges"] == ["wr", "rw"]


def test_info_transactions_may_or_may_not_have_happened():
    h = History.from_dicts(
        [
            {"process": 0, "type": "invoke", "f": "txn", "value": [["append", "x", 1]]},
            {"process": 0, "type": "info", "f": "txn", "value": [["append", "x", 1]]},
            {"process": 1, "type": "invoke", "f": "txn", "value": [["r", "x", None]]},
            {"process": 1, "type": "ok", "f": "txn", "value": [["r", "x", [1]]]},
            {"process": 2, "type": "invoke", "f": "txn", "value": [["r", "x", None]]},
        ]
    )
    assert list_append.check(h)["valid"] is True


def test_duplicate_appends_make_the_result_unknown():
    h = serial((0, "ok", [["append", "x", 1]]), (1, "ok", [["append", "x", 1]]))
    r = list_append.check(h)
    assert r["valid"] == "unknown"
    assert r["anomaly_types"] == ["duplicate-appends"]
    assert "value 1 appended to key :x multiple times" in only_case(r, "duplicate-appends")["message"]


def test_unexpected_micro_ops_make_the_result_unknown():
    h = serial((0, "ok", [["w", "x", 1]]))
    r = list_append.check(h)
    assert (r["valid"], r["anomaly_types"]) == ("unknown", ["unexpected-txn-micro-op-types"])
    assert only_case(r, "unexpected-txn-micro-op-types")["examples"][0]["index"] == 1


def test_nemesis_ops_are_ignored():
    h = History.from_dicts(
        [
            {"process": "nemesis", "type": "info", "f": "start", "value": None},
            {"process": 0, "type": "invoke", "f": "txn", "value": [["append", "x", 1]]},
            {"process": "nemesis", "type": "info", "f": "start", "value": ["n1"]},
            {"process": 0, "type": "ok", "f": "txn", "value": [["append", "x", 1]]},
            {"process": 1, "type": "invoke", "f": "txn", "value": [["r", "x", None]]},
            {"process": 1, "type": "ok", "f": "txn", "value": [["r", "x", [1]]]},
        ]
    )
    assert list_append.check(h)["valid"] is True


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"bogus": 1}, "unknown option(s) ['bogus']; accepted options are"),
        ({"consistency_models": ["serialisable"]}, "unknown consistency model(s) ['serialisable']"),
        ({"consistency_models": "serializable"}, "got the string 'serializable'"),
        ({"anomalies": ["G9"]}, "unknown anomaly type(s) ['G9']"),
        ({"cycle_search_timeout_s": 0}, "cycle_search_timeout_s must be a positive number of seconds, got 0"),
        ({"clock": 3}, "clock must be a callable"),
    ],
)
def test_bad_options_are_named(kwargs, message):
    with pytest.raises((TypeError, ValueError)) as error:
        list_append.check(serial((0, "ok", [["append", "x", 1]])), **kwargs)
    assert message in str(error.value)


def test_elle_spelled_options_are_accepted():
    h = concurrent(
        (0, "ok", [["r", "x", []], ["append", "y", 1]]),
        (1, "ok", [["r", "y", []], ["append", "x", 1]]),
    )
    r = list_append.check(h, **{"consistency-models": ["snapshot-isolation"], "anomalies": ["G2-item"]})
    assert (r["valid"], r["anomaly_types"]) == (False, ["G2-item"])


def test_edn_rendering_uses_elle_keywords():
    h = concurrent(
        (0, "ok", [["append", "x", 1], ["append", "y", 1]]),
        (1, "ok", [["r", "x", []], ["r", "y", [1]]]),
    )
    text = result_to_edn(list_append.check(h))
    assert text.startswith("{:valid? false, :anomaly-types (:G-single), :anomalies {:G-single [{:type :G-single, ")
    assert ":steps [{:type :rw, :key :x, :value nil, :value' 1} {:type :wr, :key :y, :value 1}]" in text
    assert text.endswith(
        ":not #{:consistent-view}, :also-not #{:forward-consistent-view :serializable :snapshot-isolation "
        ":strict-serializable :strong-session-serializable :strong-session-snapshot-isolation "
        ":strong-snapshot-isolation :update-serializable}}"
    )
    assert result_to_edn(list_append.check(serial((0, "ok", [["append", "x", 1]]), (1, "ok", [["r", "x", [1]]])))) == "{:valid? true}"


@pytest.mark.parametrize(
    "value",
    [
        [["r", "x", 5]],  # a list-append read must be a list or nil
        [["append", "x", [1]]],  # appended values must be hashable
        [["append", "x"]],
        "not a transaction",
    ],
)
def test_malformed_values_make_the_result_unknown(value):
    h = History.from_dicts(
        [
            {"process": 0, "type": "invoke", "f": "txn", "value": value},
            {"process": 0, "type": "ok", "f": "txn", "value": value},
        ]
    )
    r = list_append.check(h)
    assert (r["valid"], r["anomaly_types"]) == ("unknown", ["unexpected-txn-micro-op-types"])
    assert '["r", key, list-or-nil]' in only_case(r, "unexpected-txn-micro-op-types")["message"]


def test_results_go_through_core_json_and_edn():
    import json

    from checkers.core import merge_valid, results_to_edn, to_jsonable

    h = concurrent(
        (0, "ok", [["append", "x", 1], ["append", "y", 1]]),
        (1, "ok", [["r", "x", [1, 1]], ["r", "y", [1]]]),
    )
    r = list_append.check(h)
    assert json.loads(json.dumps(to_jsonable(r)))["anomaly_types"] == r["anomaly_types"]
    text = results_to_edn(r)
    assert text.startswith("{:valid? false")
    assert ":anomaly-types" in text
    assert merge_valid(r["valid"], True) is False


def test_edn_rendering_keeps_non_string_keys():
    h = serial((0, "ok", [["append", "x", 1]]), (1, "ok", [["r", "x", [1, 1]]]))
    text = result_to_edn(list_append.check(h))
    assert ":duplicates {1 2}" in text
    assert text.startswith("{:valid? false, :anomaly-types (:duplicate-elements), ")
