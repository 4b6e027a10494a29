"""The queue checker's watermark rules: `read-above-watermark` and `watermark-regression`.

Each history is a few hand-written rows in history order (index = row number);
`HW` is the completion field with the high watermark of the last fetch
response, `LISTED` the one with the final reads' ListOffsets answers.
"""

from __future__ import annotations

from checkers.history import History
from checkers.queue import check
from checkers.queue.delivery import PROMISES
from tests.checkers.test_queue import assign, history, poll, send, sentences

HW = "high-watermarks"
LISTED = "listed-high-watermarks"


def rows(*entries):
    return History.from_dicts(list(entries))


def invoke(process, f, value):
    return {"process": process, "type": "invoke", "f": f, "value": value}


def done(process, f, value, type="ok", **extra):
    return {"process": process, "type": type, "f": f, "value": value, **extra}


def test_a_read_at_or_above_the_watermark_of_its_own_poll_is_reported():
    # the send is acknowledged only after the poll returned, so nothing showed offset 0 committed before
    h = rows(
        invoke(0, "send", [["send", 1, 10]]),
        invoke(1, "poll", [["poll"]]),
        done(1, "poll", [["poll", {1: [[0, 10]]}]], **{HW: {1: 0}}),
        done(0, "send", [["send", 1, [0, 10]]]),
    )
    result = check(h, "at-least-once")
    assert result["valid"] is False and result["anomaly_types"] == ["read-above-watermark"]
    assert sentences(result, "read-above-watermark") == [
        "Op 2 (process 1) polled 10 from key 1 at offset 0, but the high watermark its client saw with that "
        "poll was 0: the broker served records it had not yet committed."
    ]
    witness = result["anomalies"]["read-above-watermark"][0]
    assert (witness["key"], witness["watermark"], witness["offsets"], witness["op_indexes"]) == (1, 0, [0], [2])
    assert result["stats"]["anomaly_summaries"]["read-above-watermark"] == (
        "1 poll that returned 1 message above the high watermark, on 1 key")
    broken = {row["id"]: row for row in result["promises"]}["aborted-visible"]
    assert broken["status"] == "broken" and broken["anomalies"] == {"read-above-watermark": 1}


def test_keys_written_as_json_strings_and_several_offsets():
    h = rows(
        invoke(1, "poll", [["poll"]]),
        done(1, "poll", [["poll", {"2": [[3, 30], [4, 40], [5, 50]]}]], **{HW: {"2": 4}}),
    )
    result = check(h, "at-most-once")
    assert sentences(result, "read-above-watermark") == [
        "Op 1 (process 1) polled 40, 50 from key 2 at offsets 4, 5, but the high watermark its client saw "
        "with that poll was 4: the broker served records it had not yet committed."
    ]


def test_reads_below_the_watermark_are_fine_and_no_mode_allows_reads_above_it():
    ok = history(send(0, 1, 10, 0), poll(1, {1: [[0, 10]]}, **{HW: {1: 1}}))
    assert check(ok)["valid"] is True
    above = rows(invoke(1, "poll", [["poll"]]), done(1, "poll", [["poll", {1: [[0, 10]]}]], **{HW: {1: 0}}))
    for delivery in ("at-most-once", "at-least-once", "at-least-once-idempotent", "exactly-once"):
        assert "read-above-watermark" in check(above, delivery)["anomaly_types"], delivery


def test_a_new_leaders_lagging_watermark_is_not_a_read_above_it():
    # KIP-207: process 1 read offset 5 under a watermark of 6; then a new leader whose high watermark
    # still lags (3) answers process 2's fetches, and librdkafka caches that before process 2's poll
    # returns the records it fetched from the old leader. Offset 5 was shown committed before.
    h = rows(
        invoke(1, "poll", [["poll"]]),
        done(1, "poll", [["poll", {1: [[4, 40], [5, 50]]}]], **{HW: {1: 6}}),
        invoke(2, "poll", [["poll"]]),
        done(2, "poll", [["poll", {1: [[4, 40], [5, 50]]}]], **{HW: {1: 3}}),
    )
    assert check(h, "at-most-once")["valid"] is True
    # ... and the same goes for an acknowledged acks=all send at offset 5, but not for an acks=1 one
    acked = rows(
        invoke(0, "send", [["send", 1, 50]]),
        done(0, "send", [["send", 1, [5, 50]]]),
        invoke(2, "poll", [["poll"]]),
        done(2, "poll", [["poll", {1: [[5, 50]]}]], **{HW: {1: 3}}),
    )
    assert check(acked, "at-least-once")["valid"] is True
    assert check(acked, "at-least-once", acks="1")["anomaly_types"] == ["read-above-watermark"]
    assert check(acked, "at-most-once")["anomaly_types"] == ["read-above-watermark"]


def at(seconds, row):
    return {**row, "time": int(seconds * 1e9)}


def nemesis(f, value):
    return {"process": "nemesis", "type": "info", "f": f, "value": value}


def restart_around_a_poll(stop_s, start_s, poll_s=10.0):
    """Process 0's send of 50 to key 1 is invoked at 9 s; process 2's poll returns it at `poll_s` with a cached
    high watermark of 3, below its offset 5; node n1 is shut down at `stop_s` and started at `start_s`."""
    rows_ = [at(9.0, invoke(0, "send", [["send", 1, 50]])),
             at(poll_s - 0.1, invoke(2, "poll", [["poll"]])),
             at(poll_s, done(2, "poll", [["poll", {1: [[5, 50]]}]], **{HW: {1: 3}})),
             at(poll_s + 0.5, done(0, "send", [["send", 1, [5, 50]]])),
             at(stop_s, nemesis("shutdown", {"package": "restart", "target": "n1"})),
             at(stop_s + 0.2, nemesis("shutdown", {"stopped": ["n1"]})),
             at(start_s, nemesis("start", {"package": "restart", "target": "n1"})),
             at(start_s + 0.2, nemesis("start", {"started": ["n1"]}))]
    return History.from_dicts([{**row, "index": i} for i, row in
                               enumerate(sorted(rows_, key=lambda row: row["time"]))])


def test_a_read_above_the_watermark_around_a_fault_is_not_reported():
    # The CI run of seed 1843779183 (`--nemesis restart`): a controlled shutdown moved the leader of the key;
    # the consumer still held records it had fetched from the old leader, committed there, and its poll
    # returned them after librdkafka had cached the new leader's lagging high watermark (KIP-207). Nothing else
    # had read the key, so no proof before the poll showed them committed.
    during = restart_around_a_poll(stop_s=9.5, start_s=12.0)
    assert check(during, "at-least-once", acks="1")["valid"] is True
    # a fault closed less than LEADER_SETTLE_S (5 s) before the send, or opened before the poll returned
    assert check(restart_around_a_poll(stop_s=3.0, start_s=6.0), "at-least-once", acks="1")["valid"] is True
    assert check(restart_around_a_poll(stop_s=9.9, start_s=11.0), "at-least-once", acks="1")["valid"] is True
    # a fault over more than 5 s before the send was invoked, or opened after the poll returned, excuses nothing
    for stop_s, start_s in ((1.0, 3.0), (10.1, 12.0)):
        result = check(restart_around_a_poll(stop_s, start_s), "at-least-once", acks="1")
        assert result["anomaly_types"] == ["read-above-watermark"], (stop_s, start_s)


def test_a_fetched_watermark_below_what_was_read_is_never_a_regression():
    # A new leader's high watermark may lag the old one's for a moment (KIP-207): legal.
    h = history(send(0, 1, 10, 0), send(0, 1, 11, 1), send(0, 1, 12, 2),
                poll(1, {1: [[0, 10], [1, 11], [2, 12]]}, **{HW: {1: 3}}),
                assign(2, [1]), poll(2, {1: [[0, 10]]}, **{HW: {1: 1}}))
    assert check(h)["valid"] is True


def final_reads(listed, read=None):
    return op_pair(9, "poll", [["poll"]], [["poll", read or {}]], **{LISTED: listed})


def op_pair(process, f, invoke_value, done_value, **extra):
    return [invoke(process, f, invoke_value), done(process, f, done_value, **extra)]


def test_final_reads_given_a_watermark_below_an_offset_already_read_report_a_regression():
    h = history(send(0, 1, 10, 0), send(0, 1, 11, 1), send(0, 1, 12, 2), poll(1, {1: [[0, 10], [1, 11], [2, 12]]}),
                final_reads({1: 2}, {1: [[0, 10], [1, 11]]}))
    result = check(h, "at-least-once")
    assert result["anomaly_types"] == ["watermark-regression"]
    assert sentences(result, "watermark-regression") == [
        "The final reads of op 9 were given a high watermark of 2 for key 1, but op 5 had already been "
        "acknowledged (acks=all) for a message at offset 2 of it: the committed part of the log went backwards."
    ]
    assert result["stats"]["anomaly_summaries"]["watermark-regression"] == (
        "1 high watermark below an offset already read or acknowledged, on 1 key")
    # at-most-once: the acks are not commits, the read is (op 7)
    assert sentences(check(h, "at-most-once"), "watermark-regression") == [
        "The final reads of op 9 were given a high watermark of 2 for key 1, but op 7 had already polled a "
        "message at offset 2 of it: the committed part of the log went backwards."
    ]
    fine = history(send(0, 1, 10, 0), poll(1, {1: [[0, 10]]}), final_reads({1: 1}, {1: [[0, 10]]}))
    assert check(fine)["valid"] is True


def test_an_offset_read_after_the_final_reads_began_is_no_regression():
    h = rows(
        invoke(9, "poll", [["poll"]]),
        invoke(1, "poll", [["poll"]]),
        done(1, "poll", [["poll", {1: [[4, 40]]}]]),
        done(9, "poll", [["poll", {}]], **{LISTED: {1: 2}}),
    )
    assert "watermark-regression" not in check(h, "at-most-once")["anomaly_types"]


def test_histories_without_watermarks_check_as_before_and_the_names_have_one_promise():
    base = [send(0, 1, 10, 0), send(0, 1, 11, 1), poll(1, {1: [[1, 11]]}), poll(1, {1: [[0, 10]]})]
    plain = check(history(*base))
    assert plain["anomaly_types"] == ["nonmonotonic-poll"]
    watched = check(history(*base[:2], poll(1, {1: [[1, 11]]}, **{HW: {1: 2}}), poll(1, {1: [[0, 10]]}, **{HW: {1: 2}})))
    strip = ("op_maps",)
    assert {n: [{k: v for k, v in w.items() if k not in strip} for w in ws] for n, ws in watched["anomalies"].items()} \
        == {n: [{k: v for k, v in w.items() if k not in strip} for w in ws] for n, ws in plain["anomalies"].items()}
    promised = {name: pid for pid, _, names in PROMISES for name in names}
    assert promised["read-above-watermark"] == promised["watermark-regression"] == "aborted-visible"


def test_a_transaction_that_polls_carries_watermarks_too():
    h = rows(
        invoke(1, "txn", [["send", 2, 20], ["poll"]]),
        done(1, "txn", [["send", 2, [0, 20]], ["poll", {1: [[7, 70]]}]], **{HW: {1: 7}}),
    )
    assert "read-above-watermark" in check(h, "exactly-once")["anomaly_types"]
