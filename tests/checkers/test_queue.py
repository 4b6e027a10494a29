"""Tests for the Kafka queue checker: one tiny history per anomaly, with exact sentences.

The situations recreate what jepsen.tests.kafka's own tests cover (lost writes
with consistent and inconsistent offsets, skips across assign, duplicates,
G1c via wr and ww), written here from the published definitions.
"""

from __future__ import annotations

import pytest

from checkers.history import History
from checkers.queue import check, explain


def op(process, f, invoke_value, done_value, type="ok", **extra):
    return [
        {"process": process, "type": "invoke", "f": f, "value": invoke_value},
        {"process": process, "type": type, "f": f, "value": done_value, **extra},
    ]


def send(process, key, value, offset, type="ok"):
    done = [["send", key, [offset, value]]] if type == "ok" else [["send", key, value]]
    return op(process, "send", [["send", key, value]], done, type)


def poll(process, reads, type="ok", **extra):
    return op(process, "poll", [["poll"]], [["poll", reads]] if type == "ok" else [["poll"]], type, **extra)


def assign(process, keys, f="assign"):
    return op(process, f, keys, keys)


def history(*ops):
    return History.from_dicts([row for pair in ops for row in pair])


def sentences(result, name, section="anomalies"):
    return [w["explanation"] for w in result[section].get(name, [])]


# -- valid -------------------------------------------------------------------------------


def test_a_clean_history_is_valid():
    h = history(send(0, 1, 10, 0), send(0, 1, 11, 1), assign(1, [1]), poll(1, {1: [[0, 10]]}), poll(1, {1: [[1, 11]]}))
    result = check(h)
    assert result["valid"] is True
    assert result["anomalies"] == {} and result["allowed"] == {}
    assert result["anomaly_types"] == []
    assert result["stats"]["keys"] == 1 and result["stats"]["unseen"] == 0


def test_nothing_completed_is_unknown():
    h = History.from_dicts([{"process": 0, "type": "invoke", "f": "send", "value": [["send", 1, 10]]}])
    assert check(h)["valid"] == "unknown"


def test_bad_arguments_name_the_value():
    h = history(send(0, 1, 10, 0))
    with pytest.raises(ValueError, match="delivery 'twice' is not known; expected one of at-most-once, at-least-once, at-least-once-idempotent, exactly-once"):
        check(h, delivery="twice")
    with pytest.raises(TypeError, match="unknown option.*colour"):
        check(h, colour=1)


def test_malformed_micro_op_is_rejected_with_its_op():
    h = History.from_dicts(
        [
            {"process": 0, "type": "invoke", "f": "txn", "value": [["append", 1, 2]]},
            {"process": 0, "type": "ok", "f": "txn", "value": [["append", 1, 2]]},
        ]
    )
    with pytest.raises(ValueError, match=r"op 1: unknown micro-op 'append'"):
        check(h)


# -- lost writes and unseen ----------------------------------------------------------


def test_lost_write_with_consistent_offsets():
    h = history(
        send(0, 1, 10, 0),  # op 1
        send(0, 1, 11, 1),  # op 3
        send(0, 1, 12, 2),  # op 5
        poll(1, {1: [[0, 10]]}),  # op 7
        poll(2, {1: [[2, 12]]}),  # op 9
    )
    result = check(h)
    assert result["valid"] is False
    assert result["anomaly_types"] == ["lost-write", "unseen"]
    assert sentences(result, "lost-write") == [
        "Op 3 sent 11 to key 1 (log index 1), and no poll observed it, although op 9 polled a message at log index 2, after it."
    ]
    witness = result["anomalies"]["lost-write"][0]
    assert witness["op_indexes"] == [3, 9] and witness["processes"] == [0, 2]
    assert witness["op_maps"][0]["value"] == [["send", 1, [1, 11]]]
    assert sentences(result, "unseen") == ["1 message sent to key 1 and acknowledged was never polled: 11."]
    # At-most-once promises nothing about loss.
    relaxed = check(h, delivery="at-most-once")
    assert relaxed["valid"] is True
    assert sorted(relaxed["allowed"]) == ["lost-write", "unseen"]


def test_lost_write_with_inconsistent_offsets():
    h = history(
        send(0, 1, 10, 0),  # op 1
        send(0, 1, 11, 1),  # op 3: the broker later shows 12 at offset 1
        send(2, 1, 12, 1),  # op 5
        send(2, 1, 13, 2),  # op 7
        poll(1, {1: [[0, 10], [1, 12], [2, 13]]}),  # op 9
    )
    result = check(h)
    assert result["anomaly_types"] == ["inconsistent-offsets", "lost-write", "unseen"]
    assert sentences(result, "inconsistent-offsets") == ["Offset 1 of key 1 holds 2 different values: 11, 12."]
    assert sentences(result, "lost-write") == [
        "Op 3 sent 11 to key 1 (log index 1), and no poll observed it, although op 9 polled a message at log index 2, after it."
    ]


def test_info_send_counts_as_committed_only_when_read():
    h = history(
        send(0, 1, 10, None, type="info"),  # op 1: outcome unknown, never read
        send(1, 1, 11, 0),  # op 3
        poll(2, {1: [[0, 11]]}),  # op 5
    )
    assert check(h)["valid"] is True
    h = history(
        send(0, 1, 10, None, type="info"),  # op 1: read below, so it committed
        send(1, 1, 11, 1),  # op 3
        send(1, 1, 12, 2),  # op 5
        poll(2, {1: [[0, 10]]}),  # op 7
        poll(3, {1: [[2, 12]]}),  # op 9
    )
    result = check(h)
    assert sentences(result, "lost-write") == [
        "Op 3 sent 11 to key 1 (log index 1), and no poll observed it, although op 9 polled a message at log index 2, after it."
    ]


# -- duplicates and aborted reads ------------------------------------------------------


def test_duplicate_is_allowed_only_at_least_once():
    h = history(send(0, 1, 10, 0), send(0, 1, 11, 1), poll(1, {1: [[0, 10], [1, 11], [2, 10]]}))
    result = check(h)
    assert result["anomaly_types"] == ["duplicate"]
    assert sentences(result, "duplicate") == ["Value 10 appears 2 times in key 1, at offsets 0, 2."]
    relaxed = check(h, delivery="at-least-once")
    assert relaxed["valid"] is True
    assert sentences(relaxed, "duplicate", "allowed") == ["Value 10 appears 2 times in key 1, at offsets 0, 2."]
    assert check(h, delivery="at-most-once")["valid"] is False


def test_g1a_aborted_read():
    h = history(send(0, 1, 10, None, type="fail"), poll(1, {1: [[0, 10]]}))
    result = check(h)
    assert result["anomaly_types"] == ["G1a"]
    assert sentences(result, "G1a") == ["Op 3 polled 10 from key 1, but op 1, which sent it, failed."]
    assert result["anomalies"]["G1a"][0]["op_indexes"] == [1, 3]


def test_precommitted_read():
    h = history(op(0, "txn", [["send", 1, 10], ["poll"]], [["send", 1, [0, 10]], ["poll", {1: [[0, 10]]}]]))
    result = check(h)
    assert result["anomaly_types"] == ["precommitted-read"]
    assert sentences(result, "precommitted-read") == [
        "Op 1 polled 10 from key 1, a message it sent itself, before its transaction committed."
    ]


# -- per-process order ---------------------------------------------------------------------


def _three_sends():
    return [send(0, 1, 10, 0), send(0, 1, 11, 1), send(0, 1, 12, 2)]  # ops 1, 3, 5


def test_poll_skip():
    h = history(*_three_sends(), assign(1, [1]), poll(1, {1: [[0, 10]]}), poll(1, {1: [[2, 12]]}), poll(2, {1: [[1, 11]]}))
    result = check(h)
    assert result["anomaly_types"] == ["poll-skip"]
    assert sentences(result, "poll-skip") == [
        "Process 1 polled 10 from key 1 in op 9, then 12 in op 11, skipping 1 message: 11."
    ]


def test_poll_skip_across_assign_is_not_a_skip():
    # Jepsen: assign keeps only the state of keys still assigned.
    h = history(
        *_three_sends(),
        assign(1, [1]),
        poll(1, {1: [[0, 10]]}),  # op 9
        assign(1, [2]),
        assign(1, [1]),
        poll(1, {1: [[2, 12]]}),
        poll(2, {1: [[1, 11]]}),
    )
    assert check(h)["valid"] is True
    # An assign that keeps the key keeps the position: the skip is reported.
    h = history(*_three_sends(), assign(1, [1]), poll(1, {1: [[0, 10]]}), assign(1, [1, 2]), poll(1, {1: [[2, 12]]}), poll(2, {1: [[1, 11]]}))
    assert check(h)["anomaly_types"] == ["poll-skip"]


def test_poll_skip_by_a_subscriber_is_allowed():
    h = history(
        *_three_sends(), assign(1, [1], f="subscribe"), poll(1, {1: [[0, 10]]}), poll(1, {1: [[2, 12]]}), poll(2, {1: [[1, 11]]})
    )
    result = check(h)
    assert result["valid"] is True
    assert sentences(result, "poll-skip", "allowed") == [
        "Process 1 polled 10 from key 1 in op 9, then 12 in op 11, skipping 1 message: 11."
    ]
    assert check(h, subscribe_allows_skips=False)["anomaly_types"] == ["poll-skip"]


def test_skip_over_an_aborted_transaction_is_not_a_skip():
    # Offset 1 holds an aborted transaction's message (or a commit marker):
    # it is in no poll and no committed send, so it is no position in the log.
    h = history(
        send(0, 1, 10, 0),  # op 1
        send(0, 1, 11, None, type="fail"),  # op 3: aborted, took offset 1
        send(0, 1, 12, 2),  # op 5
        assign(1, [1]),
        poll(1, {1: [[0, 10]]}),
        poll(1, {1: [[2, 12]]}),
    )
    assert check(h)["valid"] is True


def test_nonmonotonic_poll():
    h = history(*_three_sends(), assign(1, [1]), poll(1, {1: [[1, 11]]}), poll(1, {1: [[0, 10]]}), poll(2, {1: [[0, 10], [1, 11], [2, 12]]}))
    result = check(h)
    assert result["anomaly_types"] == ["nonmonotonic-poll"]
    assert sentences(result, "nonmonotonic-poll") == [
        "Process 1 polled 11 from key 1 in op 9, then 10 in op 11, 1 position earlier in the log."
    ]


def test_seek_to_beginning_forgets_poll_positions():
    rewind = [
        {"process": 1, "type": "invoke", "f": "assign", "value": [1]},
        {"process": 1, "type": "ok", "f": "assign", "value": [1], "seek-to-beginning?": True},
    ]
    h = History.from_dicts(
        [row for pair in (send(0, 1, 10, 0), assign(1, [1]), poll(1, {1: [[0, 10]]})) for row in pair]
        + rewind
        + poll(1, {1: [[0, 10]]})
    )
    assert check(h)["valid"] is True


def test_a_repeated_poll_is_nonmonotonic():
    h = history(send(0, 1, 10, 0), poll(1, {1: [[0, 10]]}), poll(1, {1: [[0, 10]]}))
    assert sentences(check(h), "nonmonotonic-poll") == [
        "Process 1 polled 10 from key 1 in op 3, then 10 in op 5, the same position in the log."
    ]


def test_a_new_process_after_a_crash_starts_over():
    # Process 1's poll crashed (info); its thread continues as process 5,
    # which may read from the start again.
    h = history(send(0, 1, 10, 0), poll(1, {1: [[0, 10]]}), poll(1, None, type="info"), poll(5, {1: [[0, 10]]}))
    assert check(h)["valid"] is True


def test_nonmonotonic_send():
    h = history(send(0, 1, 10, 1), send(0, 1, 11, 0), poll(1, {1: [[0, 11], [1, 10]]}))
    result = check(h)
    assert result["anomaly_types"] == ["nonmonotonic-send"]
    assert sentences(result, "nonmonotonic-send") == [
        "Process 0 sent 10 to key 1 in op 1, then 11 in op 3, 1 position earlier in the log."
    ]


# -- within one op ----------------------------------------------------------------------------


def test_int_poll_skip_and_rebalance_exemption():
    base = _three_sends() + [poll(2, {1: [[1, 11]]})]
    h = history(*base, poll(1, {1: [[0, 10], [2, 12]]}))
    result = check(h)
    assert result["anomaly_types"] == ["int-poll-skip"]
    assert sentences(result, "int-poll-skip") == ["Op 9 polled 10 then 12 from key 1, skipping 1 message: 11."]
    h = history(*base, poll(1, {1: [[0, 10], [2, 12]]}, **{"rebalance-log": [{"keys": [1]}]}))
    assert check(h)["valid"] is True


def test_int_nonmonotonic_poll():
    h = history(send(0, 1, 10, 0), send(0, 1, 11, 1), poll(1, {1: [[1, 11], [0, 10]]}))
    result = check(h)
    assert result["anomaly_types"] == ["int-nonmonotonic-poll"]
    assert sentences(result, "int-nonmonotonic-poll") == ["Op 5 polled 11 then 10 from key 1, 1 position earlier in the log."]


def test_int_send_skip_is_always_allowed():
    h = history(
        op(0, "txn", [["send", 1, 10], ["send", 1, 12]], [["send", 1, [0, 10]], ["send", 1, [2, 12]]]),
        send(1, 1, 11, 1),
        poll(2, {1: [[0, 10], [1, 11], [2, 12]]}),
    )
    result = check(h)
    assert result["valid"] is True
    assert sentences(result, "int-send-skip", "allowed") == [
        "Op 1 sent 10 then 12 to key 1, but 1 message lies between them in the log: 11."
    ]


def test_int_nonmonotonic_send():
    h = history(
        op(0, "send", [["send", 1, 10], ["send", 1, 11]], [["send", 1, [1, 10]], ["send", 1, [0, 11]]]),
        poll(2, {1: [[0, 11], [1, 10]]}),
    )
    result = check(h)
    assert result["anomaly_types"] == ["int-nonmonotonic-send"]
    assert sentences(result, "int-nonmonotonic-send") == [
        "Op 1 sent 10 then 11 to key 1, but the second landed 1 position earlier in the log."
    ]


def test_a_retried_send_whose_first_copy_landed_in_order_is_a_duplicate_not_a_reorder():
    # 10 was written at 0, its answer lost; 11 went out (to a new leader) at 1; the retry of 10 landed at 2
    # and was acknowledged there. The sends are in order; the second copy of 10 is the anomaly.
    for within_one_op in (True, False):
        sends = ([op(0, "send", [["send", 1, 10], ["send", 1, 11]], [["send", 1, [2, 10]], ["send", 1, [1, 11]]])]
                 if within_one_op else [send(0, 1, 10, 2), send(0, 1, 11, 1)])
        h = history(*sends, poll(2, {1: [[0, 10], [1, 11], [2, 10]]}))
        result = check(h)
        assert result["anomaly_types"] == ["duplicate"]
        assert check(h, delivery="at-least-once")["valid"] is True
    # without an earlier copy it is a reorder, as before
    h = history(send(0, 1, 10, 2), send(0, 1, 11, 1), poll(2, {1: [[1, 11], [2, 10]]}))
    assert check(h)["anomaly_types"] == ["nonmonotonic-send"]


# -- cycles ----------------------------------------------------------------------------------


def _rows(*rows):
    return History.from_dicts([dict(zip(("process", "type", "f", "value"), r)) for r in rows])


def test_g1c_via_wr():
    h = _rows(
        (0, "invoke", "txn", [["send", 1, 10], ["poll"]]),
        (1, "invoke", "txn", [["send", 2, 20], ["poll"]]),
        (0, "ok", "txn", [["send", 1, [0, 10]], ["poll", {2: [[0, 20]]}]]),
        (1, "ok", "txn", [["send", 2, [0, 20]], ["poll", {1: [[0, 10]]}]]),
    )
    result = check(h)
    assert result["anomaly_types"] == ["G1c"]
    assert sentences(result, "G1c") == [
        "Let T1 = op 2, T2 = op 3. Then T1 sent 10 to key 1, which was polled by T2; "
        "T2 sent 20 to key 2, which was polled by T1: a cycle."
    ]
    witness = result["anomalies"]["G1c"][0]
    assert witness["ops"] == [2, 3] and [s["type"] for s in witness["steps"]] == ["wr", "wr"]


def _ww_and_wr():
    # T1 sends 10 to key 1 before T2 sends 11 (ww); T1 polled T2's 20 (wr).
    return _rows(
        (0, "invoke", "txn", [["send", 1, 10], ["poll"]]),
        (1, "invoke", "txn", [["send", 2, 20], ["send", 1, 11]]),
        (1, "ok", "txn", [["send", 2, [0, 20]], ["send", 1, [1, 11]]]),
        (0, "ok", "txn", [["send", 1, [0, 10]], ["poll", {2: [[0, 20]]}]]),
        (2, "invoke", "poll", [["poll"]]),
        (2, "ok", "poll", [["poll", {1: [[0, 10], [1, 11]]}]]),
    )


def test_g1c_via_ww_and_wr_needs_ww_deps_and_is_then_allowed():
    h = _ww_and_wr()
    assert check(h)["valid"] is True  # wr alone has no cycle
    result = check(h, ww_deps=True)
    assert result["valid"] is True
    assert sentences(result, "G1c", "allowed") == [
        "Let T1 = op 2, T2 = op 3. Then T1 sent 20 to key 2, which was polled by T2; "
        "T2 sent 10 to key 1 before T1 sent 11: a cycle."
    ]


def test_g0_is_always_allowed():
    h = _rows(
        (0, "invoke", "send", [["send", 1, 10], ["send", 2, 21]]),
        (1, "invoke", "send", [["send", 1, 11], ["send", 2, 20]]),
        (0, "ok", "send", [["send", 1, [0, 10]], ["send", 2, [1, 21]]]),
        (1, "ok", "send", [["send", 1, [1, 11]], ["send", 2, [0, 20]]]),
        (2, "invoke", "poll", [["poll"]]),
        (2, "ok", "poll", [["poll", {1: [[0, 10], [1, 11]], 2: [[0, 20], [1, 21]]}]]),
    )
    result = check(h, ww_deps=True)
    assert result["valid"] is True
    assert sentences(result, "G0", "allowed") == [
        "Let T1 = op 2, T2 = op 3. Then T1 sent 10 to key 1 before T2 sent 11; "
        "T2 sent 20 to key 2 before T1 sent 21: a cycle."
    ]


def test_g1c_process():
    h = _rows(
        (1, "invoke", "txn", [["send", 2, 20], ["poll"]]),
        (0, "invoke", "poll", [["poll"]]),
        (0, "ok", "poll", [["poll", {2: [[0, 20]]}]]),  # op 2
        (0, "invoke", "send", [["send", 1, 10]]),
        (0, "ok", "send", [["send", 1, [0, 10]]]),  # op 4
        (1, "ok", "txn", [["send", 2, [0, 20]], ["poll", {1: [[0, 10]]}]]),  # op 5
    )
    result = check(h)
    assert result["anomaly_types"] == ["G1c-process"]
    assert sentences(result, "G1c-process") == [
        "Let T1 = op 2, T2 = op 4, T3 = op 5. Then T1 and T2 ran in that order on process 0; "
        "T2 sent 10 to key 1, which was polled by T3; T3 sent 20 to key 2, which was polled by T1: a cycle."
    ]


# T1 = op 2 completes before T2 (ops 3, 4) is invoked; T2 -wr-> T3 (op 5) -wr-> T1
_REALTIME_CYCLE = (
    (1, "invoke", "txn", [["send", 2, 20], ["poll"]]),
    (2, "invoke", "poll", [["poll"]]),
    (2, "ok", "poll", [["poll", {2: [[0, 20]]}]]),  # op 2
    (0, "invoke", "send", [["send", 1, 10]]),  # op 3
    (0, "ok", "send", [["send", 1, [0, 10]]]),  # op 4
    (1, "ok", "txn", [["send", 2, [0, 20]], ["poll", {1: [[0, 10]]}]]),  # op 5
)


def test_g1c_realtime():
    h = _rows(*_REALTIME_CYCLE)
    result = check(h)
    assert result["anomaly_types"] == ["G1c-realtime"]
    assert sentences(result, "G1c-realtime") == [
        "Let T1 = op 2, T2 = op 4, T3 = op 5. Then T1 completed (op 2) before T2 was invoked (op 3); "
        "T2 sent 10 to key 1, which was polled by T3; T3 sent 20 to key 2, which was polled by T1: a cycle."
    ]


def test_g1c_realtime_among_ops_outside_the_spans_a_cycle_can_lie_in():
    # Ops before and after the cycle, whose sends complete before their messages are read, lie outside
    # every span of a backward edge (`_cycle_spans`): the cycle and its sentence are as without them.
    before = [(3, "invoke", "send", [["send", 3, 30 + i]]) if j == 0 else (3, "ok", "send", [["send", 3, [i, 30 + i]]])
              for i in range(3) for j in range(2)]
    after = [(4, "invoke", "poll", [["poll"]]), (4, "ok", "poll", [["poll", {3: [[0, 30], [1, 31], [2, 32]]}]])]
    h = _rows(*before, *_REALTIME_CYCLE, *after)  # the cycle's ops are 6 later: 8, 9, 10, 11
    result = check(h)
    assert result["anomaly_types"] == ["G1c-realtime"]
    assert sentences(result, "G1c-realtime") == [
        "Let T1 = op 8, T2 = op 10, T3 = op 11. Then T1 completed (op 8) before T2 was invoked (op 9); "
        "T2 sent 10 to key 1, which was polled by T3; T3 sent 20 to key 2, which was polled by T1: a cycle."
    ]


def test_cycle_spans_are_the_merged_spans_of_backward_data_edges():
    from checkers.queue.checker import _cycle_spans

    assert _cycle_spans({0: [5], 3: [9]}) == []  # every edge goes forward: no cycle anywhere
    assert _cycle_spans({7: [3], 0: [5], 20: [15, 25], 12: [6]}) == [(3, 12), (15, 20)]
    assert _cycle_spans({9: [1], 4: [2]}) == [(1, 9)]


def test_a_streamed_history_is_judged_as_the_same_history_in_memory(tmp_path):
    h = _rows(
        *_REALTIME_CYCLE,
        *[row for i in range(3) for row in (
            (3, "invoke", "send", [["send", 1, 11 + i]]),
            (3, "ok" if i != 1 else "info", "send", [["send", 1, [1 + i, 11 + i]] if i != 1 else ["send", 1, 12]]))],
        (4, "invoke", "poll", [["poll"]]),
        (4, "ok", "poll", [["poll", {1: [[0, 10], [3, 13]]}]]),
    )
    h.to_jsonl(tmp_path / "h.jsonl")
    in_memory, streamed = History.from_jsonl(tmp_path / "h.jsonl"), History.stream_jsonl(tmp_path / "h.jsonl")
    assert streamed.streamed and not in_memory.streamed
    expected = check(in_memory, max_witnesses=1)
    assert set(expected["anomaly_types"]) == {"G1c-realtime", "int-poll-skip", "lost-write", "unseen"}
    assert check(streamed, max_witnesses=1) == expected


# -- JSON keys, explainer ------------------------------------------------------------------


def test_string_keys_from_json_match_integer_send_keys(tmp_path):
    h = history(send(0, 1, 10, 0), send(0, 1, 11, 1), poll(1, {1: [[0, 10], [1, 11]]}))
    h.to_jsonl(tmp_path / "h.jsonl")
    again = History.load(tmp_path / "h.jsonl")
    assert again[5].value == [["poll", {"1": [[0, 10], [1, 11]]}]]
    assert check(again)["valid"] is True


def test_explain_rejects_unknown_anomalies():
    with pytest.raises(ValueError, match="no explainer for anomaly 'G2'"):
        explain("G2", {})


def test_max_witnesses_keeps_counts_exact_and_says_how_many_were_omitted():
    h = history(*[send(0, 1, v, v - 10) for v in range(10, 15)], poll(1, {1: [[4, 14]]}))
    result = check(h, max_witnesses=2)
    assert len(result["anomalies"]["lost-write"]) == 2
    assert result["stats"]["anomaly_counts"]["lost-write"] == 4
    assert result["stats"]["witnesses_omitted"] == {"lost-write": 2}
    assert result["stats"]["allowed_witnesses_omitted"] == {}
    assert [w["value"] for w in result["anomalies"]["lost-write"]] == [10, 11]  # the first ones found
    assert check(h, delivery="at-most-once", max_witnesses=3)["stats"]["allowed_witnesses_omitted"] == {
        "lost-write": 1}
