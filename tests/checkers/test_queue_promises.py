"""Delivery modes, the promise table and the count sentences of the queue checker.

One function (`checkers.queue.delivery.delivery_of`) decides a run's delivery, and the
checker, not the report, decides which promise held or broke.
"""

from __future__ import annotations

import pytest

from checkers.history import History, OpCounter, describe_op_counts, op_counts
from checkers.queue import check
from checkers.queue.delivery import ANOMALY_ORDER, DELIVERY_NAMES, Delivery, delivery_of, parse_delivery
from tests.checkers.test_queue import assign, history, poll, send


def statuses(result):
    return {row["id"]: row["status"] for row in result["promises"]}


def test_an_idempotent_run_is_at_least_once_idempotent_everywhere():
    # the label bug: an --idempotent run was labelled exactly-once in results.json and the report
    d = delivery_of({"delivery": "at-least-once", "idempotent": True})
    assert (d.name, d.mode, d.idempotent) == ("at-least-once-idempotent", "at-least-once", True)
    assert d.label == "at-least-once with an idempotent producer"
    assert "exactly-once" not in d.label and "exactly-once" not in d.name
    assert d.allowed == frozenset() and d.not_promised == frozenset()
    assert parse_delivery(d.name) == d
    assert delivery_of({"delivery": d.name}) == d


def test_every_name_parses_and_round_trips():
    for name in DELIVERY_NAMES:
        assert parse_delivery(name).name == name
        assert delivery_of(parse_delivery(name).to_dict() | {"delivery": parse_delivery(name).mode,
                                                            "idempotent": parse_delivery(name).idempotent}).name == name


@pytest.mark.parametrize("options, message", [
    ({"delivery": "exactly-once", "idempotent": True}, "--idempotent goes with --delivery at-least-once"),
    ({"delivery": "at-most-once", "idempotent": True}, "--idempotent goes with --delivery at-least-once"),
    ({"delivery": "sometimes"}, "delivery 'sometimes' is not known"),
    ({}, "name no delivery mode"),
])
def test_impossible_deliveries_are_refused_with_a_sentence(options, message):
    with pytest.raises(ValueError, match=message):
        delivery_of(options)


def test_the_checker_judges_an_idempotent_run_without_duplicates_allowed():
    h = history(send(0, 1, 10, 0), send(0, 1, 10, 1), assign(1, [1]), poll(1, {1: [[0, 10], [1, 10]]}))
    plain = check(h, delivery="at-least-once")
    idem = check(h, delivery=Delivery("at-least-once", idempotent=True))
    assert plain["valid"] is True and "duplicate" in plain["allowed"]
    assert statuses(plain)["duplicated"] == "not-promised"
    assert idem["valid"] is False and idem["anomaly_types"] == ["duplicate"]
    assert idem["delivery"] == "at-least-once-idempotent"
    assert statuses(idem)["duplicated"] == "broken" and statuses(idem)["lost"] == "held"


def test_promises_come_most_severe_first_and_name_their_anomalies():
    h = history(send(0, 1, 10, 0), send(0, 1, 11, 1), send(0, 1, 12, 2, type="fail"),
                assign(1, [1]), poll(1, {1: [[1, 11], [2, 12]]}))
    result = check(h, delivery="exactly-once")
    ids = [row["id"] for row in result["promises"]]
    assert ids[:4] == ["lost", "aborted-visible", "duplicated", "reordered"]
    rows = {row["id"]: row for row in result["promises"]}
    assert rows["lost"]["status"] == "broken" and rows["lost"]["anomalies"]["lost-write"] == 1
    assert rows["aborted-visible"]["anomalies"] == {"G1a": 1}
    assert rows["duplicated"]["status"] == "held"
    assert ANOMALY_ORDER.index("lost-write") < ANOMALY_ORDER.index("G1a") < ANOMALY_ORDER.index("duplicate")


def test_count_sentences_say_what_they_count():
    # 3 reads of 1 failed send, and 2 unseen messages on one key (one witness): "× 1" would mislead
    h = history(send(0, 1, 10, 0, type="fail"), assign(1, [1]),
                poll(1, {1: [[0, 10]]}), poll(1, {1: [[0, 10]]}), poll(1, {1: [[0, 10]]}),
                send(0, 2, 20, 0), send(0, 2, 21, 1))
    result = check(h, delivery="exactly-once")
    summaries = result["stats"]["anomaly_summaries"]
    assert result["stats"]["anomaly_counts"]["G1a"] == 3
    assert summaries["G1a"] == "3 reads of 1 message whose send failed or was aborted, on 1 key"
    assert result["stats"]["anomaly_counts"]["unseen"] == 1
    assert summaries["unseen"] == "2 acknowledged messages never read, on 1 key"


def test_without_final_reads_a_verdict_resting_on_them_is_unknown():
    incomplete = "final read assign did not complete: timed out"
    unseen_only = history(send(0, 1, 10, 0), assign(1, [1]))
    clean = history(send(0, 1, 10, 0), assign(1, [1]), poll(1, {1: [[0, 10]]}))
    for h in (unseen_only, clean):
        result = check(h, delivery="at-least-once", final_reads_incomplete=incomplete)
        assert result["valid"] == "unknown" and result["reason"] == "final-reads-incomplete"
        assert result["message"].startswith(incomplete)
        assert statuses(result)["lost"] == "unknown"
    # an anomaly the final reads cannot undo stands; complete final reads change nothing
    dup = history(send(0, 1, 10, 0), send(0, 1, 10, 1), send(0, 2, 5, 0), assign(1, [1]),
                  poll(1, {1: [[0, 10], [1, 10]]}))
    result = check(dup, delivery="exactly-once", final_reads_incomplete=incomplete)
    assert result["valid"] is False and statuses(result)["duplicated"] == "broken"
    assert statuses(result)["lost"] == "unknown"  # unseen key 2 is not evidence without final reads
    # ... and is not listed as an anomaly either: only counted as unjudged
    assert result["anomaly_types"] == ["duplicate"] and "unseen" not in result["anomalies"]
    assert "unseen" not in result["stats"]["anomaly_counts"] and "unseen" not in result["stats"]["anomaly_summaries"]
    assert result["stats"]["unjudged"] == {"unseen": 1}
    assert "unseen" in check(dup, delivery="exactly-once")["anomaly_types"]  # complete final reads: it is evidence
    assert check(unseen_only, delivery="at-least-once")["valid"] is False
    # under at-most-once losing is allowed, so missing final reads decide nothing
    assert check(clean, delivery="at-most-once", final_reads_incomplete=incomplete)["valid"] is True


def test_a_final_read_that_stopped_below_its_listed_watermarks_makes_the_final_reads_incomplete():
    """The CI once saw 6 acknowledged messages "unseen" on 4 keys after a partition healed; a final read that
    gives up (no progress for a while) below the high watermarks ListOffsets gave it has not read everything
    the broker called committed, so its gaps are not evidence of loss. The history carries the fact, so
    `logquake check` on a copied history says the same as the run."""
    short = {"final-read-short": {1: [1, 2]}, "listed-high-watermarks": {1: 2}}
    h = history(send(0, 1, 10, 0), send(0, 1, 11, 1), assign(1, [1]), poll(1, {1: [[0, 10]]}, **short))
    result = check(h, delivery="at-least-once")
    assert result["valid"] == "unknown" and result["reason"] == "final-reads-incomplete"
    assert result["message"].startswith("the final read stopped below the high watermarks it listed (key 1 at offset 1 of 2)")
    assert statuses(result)["lost"] == "unknown"
    # a final read that reached its watermarks decides as before: the unread send is unseen (and the listed
    # watermark lies at an acknowledged offset)
    reached = history(send(0, 1, 10, 0), send(0, 1, 11, 1), assign(1, [1]),
                      poll(1, {1: [[0, 10]]}, **{"listed-high-watermarks": {1: 1}}))
    assert check(reached, delivery="at-least-once")["anomaly_types"] == ["unseen", "watermark-regression"]
    # an anomaly that needs no final read stands
    dup = history(send(0, 1, 10, 0), send(0, 1, 10, 1), assign(1, [1]), poll(1, {1: [[0, 10], [1, 10]]}, **short))
    assert check(dup, delivery="exactly-once")["valid"] is False


def test_one_op_count_for_progress_results_and_report():
    h = history(send(0, 1, 10, 0), send(0, 1, 11, 1, type="fail"), assign(1, [1]), poll(1, {1: [[0, 10]]}))
    rows = [{"process": "nemesis", "type": "info", "f": "kill", "value": None}] + [
        {"process": op.process, "type": op.type} for op in h]
    counts = op_counts(h)
    assert counts == {"total": 4, "ok": 3, "fail": 1, "info": 0, "pending": 0}
    live = OpCounter()
    for row in rows:
        live.add(row["process"], row["type"])
    assert live.as_dict() == counts == op_counts(History.from_dicts(rows[1:]))
    assert str(live) == describe_op_counts(counts) == "4 operations: 3 ok, 1 fail, 0 info"


def test_a_final_read_held_at_its_last_stable_offset_for_two_transaction_timeouts_is_a_hanging_transaction():
    """The read_committed final read stopped at key 1's last stable offset (1) below the high watermark it listed
    (3) and went 25 s without progress, alone, with a 10 s transaction timeout: a transaction at offset 1 never
    ended (the coordinator bug a lagging-follower kill found answered a commit with no marker). Acknowledged
    records above it are out of readers' reach, and the checker says so instead of 'no verdict'."""
    stuck = {"final-read-short": {1: [1, 3]}, "listed-high-watermarks": {1: 3}, "last-stable-offsets": {1: 1},
             "stalled-s": 25.0, "transaction-timeout-ms": 10_000}
    sends = (send(0, 1, 10, 0), send(0, 1, 11, 1))
    h = history(*sends, assign(1, [1]), poll(1, {1: [[0, 10]]}, **stuck))
    result = check(h, delivery="exactly-once")
    assert result["valid"] is False and "hanging-transaction" in result["anomaly_types"], result["anomaly_types"]
    assert statuses(result)["transactions-end"] == "broken" and statuses(result)["lost"] == "unknown"
    witness = result["anomalies"]["hanging-transaction"][0]
    assert witness["explanation"].startswith("The final read of op 7 stopped at offset 1 of key 1, its last stable "
                                             "offset, below the high watermark 3, and went 25 s without progress")
    assert result["stats"]["anomaly_summaries"]["hanging-transaction"] == \
        "1 key whose final read a transaction that never ended held back for good"
    # not yet two timeouts, a read that stopped below its last stable offset (a partition without a leader),
    # or another client op running beside the read (it may have held the transaction open): no verdict
    for changed in ({"stalled-s": 15.0}, {"last-stable-offsets": {1: 3}}):
        quiet = history(*sends, assign(1, [1]), poll(1, {1: [[0, 10]]}, **(stuck | changed)))
        assert check(quiet, delivery="exactly-once")["valid"] == "unknown", changed
    final = poll(1, {1: [[0, 10]]}, **stuck)
    beside = History.from_dicts([row for pair in (*sends, assign(1, [1])) for row in pair]
                                + [send(2, 1, 12, 2)[0], final[0], final[1], send(2, 1, 12, 2)[1]])
    assert check(beside, delivery="exactly-once")["valid"] == "unknown"
    # a clean run lists no such promise; an old history without the fields is judged as before
    assert "transactions-end" not in statuses(check(history(*sends, assign(1, [1]), poll(1, {1: [[0, 10], [1, 11]]})),
                                                    delivery="exactly-once"))
