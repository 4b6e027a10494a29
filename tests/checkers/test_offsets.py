"""The committed-offsets checker: a lost acknowledged commit is found, an uncertain one excuses what it may
have written, an offset nobody committed is found, and the verdicts without an answer are unknown."""

from __future__ import annotations

import pytest

from checkers.history import History
from checkers.offsets import OffsetsHistoryError, check


def commit(group, offset, type="ok", process=0):
    return [{"process": process, "type": "invoke", "f": "offset-commit", "value": [group, offset]},
            {"process": process, "type": type, "f": "offset-commit", "value": [group, offset]}]


def fetch(final, type="ok"):
    groups = sorted(final)
    return [{"process": 9, "type": "invoke", "f": "offset-fetch", "value": groups, "final": True},
            {"process": 9, "type": type, "f": "offset-fetch", "value": final, "final": True}]


def history(*pairs):
    return History.from_dicts([row for pair in pairs for row in pair])


def test_a_group_holding_its_last_acknowledged_commit_is_valid():
    result = check(history(commit("a", 1), commit("a", 2), commit("b", 1), fetch({"a": 2, "b": 1})))
    assert result["valid"] is True
    assert result["stats"]["groups_judged"] == 2
    assert {row["id"]: row["status"] for row in result["promises"]} == {"durable-commits": "held",
                                                                       "no-invented-offsets": "held"}


@pytest.mark.parametrize("final", [1, None])
def test_a_group_back_at_an_older_offset_or_none_lost_an_acknowledged_commit(final):
    result = check(history(commit("a", 1), commit("a", 2), commit("a", 3), fetch({"a": final})))
    assert result["valid"] is False
    [witness] = result["anomalies"]["lost-commit"]
    assert witness["acknowledged"] == 3 and witness["final"] == final
    assert "acknowledged a commit of offset 3" in witness["explanation"]
    assert len(witness["op_maps"]) == 2  # the acknowledgement and the final read
    assert result["promises"][0] == {**result["promises"][0], "id": "durable-commits", "status": "broken"}


def test_an_older_commit_of_unknown_outcome_may_explain_the_final_offset():
    # commit 2's answer was lost; it may have been written after commit 3 (a late retry): not a proven loss
    result = check(history(commit("a", 1), commit("a", 2, type="info"), commit("a", 3), fetch({"a": 2})))
    assert result["valid"] is True


def test_a_later_commit_of_unknown_outcome_or_a_failed_one_does_not_count_as_acknowledged():
    result = check(history(commit("a", 1), commit("a", 2, type="info"), commit("a", 3, type="fail"),
                           fetch({"a": 1})))
    assert result["valid"] is True


def test_an_offset_no_commit_asked_for_is_reported():
    result = check(history(commit("a", 1), commit("a", 2), fetch({"a": 7})))
    assert result["anomaly_types"] == ["unknown-commit"]
    assert "which none of its commits (1, 2) asked for" in result["anomalies"]["unknown-commit"][0]["explanation"]


def test_without_the_final_read_there_is_no_verdict():
    result = check(history(commit("a", 1)))
    assert result["valid"] == "unknown" and result["reason"] == "final-reads-incomplete"
    assert {row["status"] for row in result["promises"]} == {"unknown"}


def test_a_partial_final_read_judges_the_groups_it_read_and_finds_their_losses():
    partial = history(commit("a", 1), commit("b", 1), commit("b", 2), fetch({"a": 1}, type="info"))
    result = check(partial)
    assert result["valid"] == "unknown" and "read 1 of 2 groups" in result["message"]
    lossy = history(commit("a", 1), commit("b", 1), commit("b", 2), fetch({"b": 1}, type="info"))
    assert check(lossy)["anomaly_types"] == ["lost-commit"]


def test_no_acknowledged_commit_means_nothing_to_judge():
    result = check(history(commit("a", 1, type="info"), fetch({"a": None})))
    assert result["valid"] == "unknown" and result["reason"] == "no-completed-ops"


def test_witnesses_are_capped_but_counted():
    pairs = [commit(f"g{i}", 1) for i in range(5)]
    result = check(history(*pairs, fetch({f"g{i}": None for i in range(5)})), max_witnesses=2)
    assert result["stats"]["anomaly_counts"] == {"lost-commit": 5}
    assert len(result["anomalies"]["lost-commit"]) == 2
    assert result["stats"]["witnesses_omitted"] == {"lost-commit": 3}


@pytest.mark.parametrize("value", [["a"], [1, 2], ["a", "2"], ["a", True], None])
def test_a_malformed_commit_is_refused_with_its_op(value):
    rows = [{"process": 0, "type": "invoke", "f": "offset-commit", "value": value},
            {"process": 0, "type": "ok", "f": "offset-commit", "value": value}]
    with pytest.raises(OffsetsHistoryError, match=r"op 0: an offset-commit's value is \[group, offset\]"):
        check(History.from_dicts(rows))


def test_a_final_offset_that_is_not_a_number_is_refused():
    with pytest.raises(OffsetsHistoryError, match="group a has offset 'x'"):
        check(history(commit("a", 1), fetch({"a": "x"})))
