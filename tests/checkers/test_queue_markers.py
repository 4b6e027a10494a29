"""`missing-marker`: every transaction that wrote a key has a commit or abort marker of its own there.

The read_uncommitted final read (`read-uncommitted-log`, `read-uncommitted-range`) gives every data record of a
key; the offsets without one are control records. Each transaction needs one after its last record and before
its producer's next record on the key (or the read's end), and the checker matches them exactly.
"""

from __future__ import annotations

import json

from checkers.history import History, op_to_dict
from checkers.queue import check
from tests.checkers.test_queue import assign, history, op, poll


def txn(process, sends, type="ok"):
    """A txn op of `sends` [(key, value, offset)]; a failed (aborted) or info one records its invocation."""
    invoked = [["send", k, v] for k, v, _ in sends]
    done = [["send", k, [o, v]] for k, v, o in sends] if type == "ok" else invoked
    return op(process, "txn", invoked, done, type)


def final(committed, log, span, listed, **extra):
    """The final read: the read_committed values `committed` (key -> [[offset, value]]), then the uncommitted
    log of every key and its range, and the high watermarks the read_committed read was listed."""
    return poll(9, committed, **{"read-uncommitted-log": log, "read-uncommitted-range": span,
                                 "listed-high-watermarks": listed}, **extra)


def test_every_transaction_with_its_own_marker_is_valid():
    # process 0: two transactions on key 1 (markers at 1 and 3); process 1 one (marker at 5); one aborted
    # transaction of process 1 (records at 6, marker 7) whose records read_committed never returns
    h = history(assign(9, [1]),
                txn(0, [(1, 10, 0)]), txn(0, [(1, 11, 2)]), txn(1, [(1, 20, 4)]), txn(1, [(1, 21, None)], "fail"),
                final({1: [[0, 10], [2, 11], [4, 20]]}, {1: [[0, 10], [2, 11], [4, 20], [6, 21]]}, {1: [0, 8]}, {1: 8}))
    result = check(h, delivery="exactly-once")
    assert result["valid"] is True, result["anomaly_types"]
    assert "transactions-end" not in {row["id"] for row in result["promises"]}


def test_a_producer_next_transaction_right_after_its_last_is_a_missing_marker():
    """Process 0's commit of op 1 never reached key 1 (no offset between 0 and 1): the next transaction
    continued it, and its marker at 2 decided both, so read_committed saw nothing wrong."""
    h = history(assign(9, [1]), txn(0, [(1, 10, 0)]), txn(0, [(1, 11, 1)]),
                final({1: [[0, 10], [1, 11]]}, {1: [[0, 10], [1, 11]]}, {1: [0, 3]}, {1: 3}))
    result = check(h, delivery="exactly-once")
    assert result["valid"] is False and result["anomaly_types"] == ["missing-marker"]
    [witness] = result["anomalies"]["missing-marker"]
    assert (witness["op"], witness["next_op"], witness["last_offset"], witness["next_offset"]) == (3, 5, 0, 1)
    assert witness["explanation"].startswith(
        "Op 3 (process 0) wrote key 1 up to offset 0, so its commit or abort marker lies after that offset and "
        "before offset 1, where op 5, its producer's next transaction, wrote key 1. Read at read_uncommitted from "
        "offset 0 to 3, the key has 1 control record for 2 such transaction windows")
    rows = {row["id"]: row for row in result["promises"]}
    assert rows["transactions-end"]["status"] == "broken" and rows["lost"]["status"] == "held"
    assert result["stats"]["anomaly_summaries"]["missing-marker"] == \
        "1 transaction with no commit or abort marker of its own, on 1 key"


def test_another_transaction_marker_between_does_not_excuse_one():
    """Process 0's two transactions are 3 offsets apart, and the offset between is a control record, but it
    is process 1's marker: three windows (0..3, 1..end, 3..end), two control records (2, 4)."""
    h = history(assign(9, [1]), txn(0, [(1, 10, 0)]), txn(1, [(1, 20, 1)]), txn(0, [(1, 11, 3)]),
                final({1: [[0, 10], [1, 20], [3, 11]]}, {1: [[0, 10], [1, 20], [3, 11]]}, {1: [0, 5]}, {1: 5}))
    result = check(h, delivery="exactly-once")
    assert result["anomaly_types"] == ["missing-marker"] and len(result["anomalies"]["missing-marker"]) == 1
    # with a third control record (offset 5) each has its own
    fixed = history(assign(9, [1]), txn(0, [(1, 10, 0)]), txn(1, [(1, 20, 1)]), txn(0, [(1, 11, 3)]),
                    final({1: [[0, 10], [1, 20], [3, 11]]}, {1: [[0, 10], [1, 20], [3, 11]]}, {1: [0, 6]}, {1: 6}))
    assert check(fixed, delivery="exactly-once")["valid"] is True


def test_an_aborted_transaction_needs_its_marker_too():
    h = history(assign(9, [1]), txn(0, [(1, 10, None)], "fail"), txn(0, [(1, 11, 1)]),
                final({1: [[1, 11]]}, {1: [[0, 10], [1, 11]]}, {1: [0, 3]}, {1: 3}))
    assert check(h, delivery="exactly-once")["anomaly_types"] == ["missing-marker"]


def test_what_the_check_cannot_know_is_left_alone():
    """No window for: an info txn followed by another of its process (its end was not awaited); records at or
    above the listed high watermark, or a listed watermark above the range (the last transaction may still
    have been open); a key whose read_committed final read stopped short (hanging-transaction's business);
    a range far larger than its records; and a history without the fields (judged as before)."""
    adjacent = ({1: [[0, 10], [1, 11]]}, {1: [[0, 10], [1, 11]]}, {1: [0, 3]}, {1: 3})  # one marker, at 2
    info_first = history(assign(9, [1]), txn(0, [(1, 10, None)], "info"), txn(0, [(1, 11, 1)]), final(*adjacent))
    assert check(info_first, delivery="exactly-once")["valid"] is True
    for listed in ({1: 0}, {1: 2}, {}):
        last_open = history(assign(9, [1]), txn(0, [(1, 10, 0)]),
                            final({1: [[0, 10]]}, {1: [[0, 10]]}, {1: [0, 1]}, listed))
        assert "missing-marker" not in check(last_open, delivery="exactly-once")["anomaly_types"], listed
    steps = [assign(9, [1]), txn(0, [(1, 10, 0)]), txn(0, [(1, 11, 1)])]
    short = history(*steps, final(*adjacent, **{"final-read-short": {1: [0, 2]}}))
    assert "missing-marker" not in check(short, delivery="exactly-once")["anomaly_types"]
    wide = history(*steps, final({1: [[0, 10], [1, 11]]}, {1: [[0, 10], [1, 11]]}, {1: [0, 10**9]}, {1: 2}))
    assert check(wide, delivery="exactly-once")["valid"] is True
    plain = history(*steps, poll(9, {1: [[0, 10], [1, 11]]}))
    assert check(plain, delivery="exactly-once")["valid"] is True


def test_a_transaction_still_owed_its_marker_at_the_end_of_the_read():
    """The last transaction of process 0 lies below the watermark the complete read_committed read reached (2),
    so it had ended; the read_uncommitted read to offset 2 holds no marker after it."""
    h = history(assign(9, [1]), txn(0, [(1, 10, 0)]), txn(1, [(1, 20, 1)]),
                final({1: [[0, 10], [1, 20]]}, {1: [[0, 10], [1, 20]]}, {1: [0, 3]}, {1: 2}))
    result = check(h, delivery="exactly-once")
    assert result["anomaly_types"] == ["missing-marker"]
    [witness] = result["anomalies"]["missing-marker"]
    assert witness["next_op"] is None and "the end of the final read_uncommitted read" in witness["explanation"]


def test_the_fields_read_back_from_json_are_judged_the_same():
    h = history(assign(9, [1]), txn(0, [(1, 10, 0)]), txn(0, [(1, 11, 1)]),
                final({1: [[0, 10], [1, 11]]}, {1: [[0, 10], [1, 11]]}, {1: [0, 3]}, {1: 3}))
    lines = [json.dumps(op_to_dict(o)) for o in h]  # JSON makes the keys of every map strings
    again = History.from_jsonl(lines)
    assert check(again, delivery="exactly-once")["anomaly_types"] == ["missing-marker"]


def test_the_window_named_is_one_that_can_lack_a_marker_with_the_fewest_inside():
    """Windows: process 0's lone transaction (0..7), process 1's first (1..4) and second (4..7), process 2's
    (2..7); control records at 3, 5 and 6: one short. The sweep leaves a window that closes at the end of the
    read without one; any of the four can be, and the one named is process 1's first, with one control record
    inside, where a lost marker leaves a producer's two transactions close together."""
    h = history(assign(9, [1]), txn(0, [(1, 10, 0)]), txn(1, [(1, 20, 1)]), txn(2, [(1, 30, 2)]),
                txn(1, [(1, 21, 4)]),
                final({1: [[0, 10], [1, 20], [2, 30], [4, 21]]}, {1: [[0, 10], [1, 20], [2, 30], [4, 21]]},
                      {1: [0, 7]}, {1: 7}))
    result = check(h, delivery="exactly-once")
    [witness] = result["anomalies"]["missing-marker"]
    assert (witness["process"], witness["last_offset"], witness["next_offset"], witness["inside"]) == (1, 1, 4, 1)
    assert witness["explanation"].endswith("This window is one that can be left without (of those, the one with "
                                           "the fewest control records inside: 1).")


def test_two_missing_markers_are_two_witnesses():
    h = history(assign(9, [1]), txn(0, [(1, 10, 0)]), txn(0, [(1, 11, 1)]), txn(0, [(1, 12, 2)]),
                final({1: [[0, 10], [1, 11], [2, 12]]}, {1: [[0, 10], [1, 11], [2, 12]]}, {1: [0, 4]}, {1: 4}))
    result = check(h, delivery="exactly-once")
    assert result["stats"]["anomaly_counts"] == {"missing-marker": 2}
    assert [w["last_offset"] for w in result["anomalies"]["missing-marker"]] == [0, 1]
