"""Tests for checkers/history.py: reading, writing, pairing and error messages."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from checkers.history import (
    History,
    HistoryError,
    JsonlWriter,
    Op,
    detect_format,
    op_from_dict,
    op_to_dict,
    read_edn,
)
from tests.data import HISTORIES

DATA = HISTORIES
MANIFEST = json.loads((DATA / "manifest.json").read_text())

# Op counts per shared file, counted independently of the reader: op lines in
# the Jepsen logs, op maps (lines starting with "{" after any "[") in EDN.
def _independent_count(entry: dict) -> int:
    text = (DATA / entry["file"]).read_text()
    if entry["format"] == "jepsen-log":
        return sum(
            1
            for line in text.splitlines()
            if "jepsen.util - " in line and line.split("\t")[1:2] and line.split("\t")[1] in (":invoke", ":ok", ":fail", ":info")
        )
    return text.count("{:")


def H(*rows, **kw) -> History:
    return History.from_dicts([dict(zip(("process", "type", "f", "value"), r)) for r in rows], **kw)


# -- shared data ---------------------------------------------------------------


@pytest.mark.parametrize("entry", MANIFEST, ids=[e["file"] for e in MANIFEST])
def test_every_shared_history_loads_with_the_declared_and_the_detected_format(entry):
    path = DATA / entry["file"]
    declared = History.load(path, entry["format"])
    assert len(declared) == _independent_count(entry)
    assert History.load(path) == declared
    assert detect_format(str(path)) == entry["format"]


def test_shared_histories_have_the_expected_shapes():
    paper = History.load(DATA / "elle/histories/paper-example.edn")
    assert len(paper) == 8
    assert paper[0].process is None and paper[0].f is None and paper[0].time is None
    assert paper[3].value == [["append", 255, 8], ["r", 253, [1, 3, 4]]]
    assert paper.completion(paper[2]) is paper[3]

    mutex = History.load(DATA / "knossos/data/mutex/bad/etcd.edn")
    assert mutex[1] == Op(1, 342667129, 1, "fail", "release", None, {"error": "not-held"})

    etcd = History.load(DATA / "porcupine/test_data/jepsen/etcd_000.log")
    assert etcd[0] == Op(0, None, 0, "invoke", "read", None)
    infos = [op for op in etcd if op.type == "info"]
    assert infos and all(op.value == "timed-out" for op in infos)

    si = History.load(DATA / "elle/histories/si-without-g-single.edn")
    assert [op.index for op in si][:4] == [10, 11, 20, 21]
    assert si.completion(si[0]) is si[1]


# -- round trips -----------------------------------------------------------------


def _sample() -> History:
    return History.from_dicts(
        [
            {"index": 0, "time": 5, "process": 0, "type": "invoke", "f": "send", "value": [["send", 2, 17]]},
            {"index": 1, "time": 9, "process": "nemesis", "type": "info", "f": "kill", "value": ["n1", "n2"]},
            {"index": 2, "time": 12, "process": 0, "type": "ok", "f": "send", "value": [["send", 2, [1044, 17]]]},
            {"index": 3, "time": 13, "process": 1, "type": "invoke", "f": "txn", "value": [["poll"], ["send", "k", "v"]]},
            {"index": 4, "time": 14, "process": "nemesis", "type": "info", "f": "kill", "value": {"n1": "killed"}},
            {"index": 5, "time": 20, "process": 1, "type": "info", "f": "txn", "value": [["poll"], ["send", "k", "v"]],
             "error": "timeout"},
            {"index": 6, "time": 21, "process": 2, "type": "invoke", "f": "poll", "value": [["poll"]]},
            {"index": 7, "time": 29, "process": 2, "type": "fail", "f": "poll", "value": [["poll"]],
             "error": ["unknown-topic-or-partition", "msg with \"quotes\"\n"], "node": "n1"},
            {"index": 8, "time": 30, "process": 3, "type": "invoke", "f": "append", "value": [["append", 1, 2], ["r", 1, None]]},
            {"index": 9, "time": 31, "process": 3, "type": "ok", "f": "append", "value": [["append", 1, 2], ["r", 1, [1.5, True, False, "s p"]]]},
        ]
    )


def test_jsonl_edn_round_trip(tmp_path):
    history = _sample()
    history.to_jsonl(tmp_path / "h.jsonl")
    from_jsonl = History.load(tmp_path / "h.jsonl")
    assert from_jsonl == history
    from_jsonl.to_edn(tmp_path / "h.edn")
    from_edn = History.load(tmp_path / "h.edn")
    assert from_edn == history
    text = (tmp_path / "h.edn").read_text()
    # The keyword rule: op keys, type, f, nemesis, micro-op names and error keywords.
    assert "{:index 0, :time 5, :process 0, :type :invoke, :f :send, :value [[:send 2 17]]}" in text
    assert ":process :nemesis" in text
    assert ':value [[:poll] [:send "k" "v"]], :error :timeout}' in text
    assert ':error [:unknown-topic-or-partition "msg with \\"quotes\\"\\n"], :node "n1"' in text
    assert '[:r 1 [1.5 true false "s p"]]' in text


def test_edn_map_keys_come_back_from_jsonl_as_strings(tmp_path):
    (tmp_path / "h.edn").write_text(
        '[{:process 0 :type :invoke :f :poll :value [[:poll]]}\n {:process 0 :type :ok :f :poll :value [[:poll {2 [[0 17]]}]]}]'
    )
    history = History.load(tmp_path / "h.edn")
    assert history[1].value == [["poll", {2: [[0, 17]]}]]
    history.to_jsonl(tmp_path / "h.jsonl")
    assert History.load(tmp_path / "h.jsonl")[1].value == [["poll", {"2": [[0, 17]]}]]


def test_jsonl_writer_appends_flushed_lines_and_reads_back(tmp_path):
    path = tmp_path / "history.jsonl"
    with JsonlWriter(path) as writer:
        writer.write({"index": 0, "process": 0, "type": "invoke", "f": "poll", "value": [["poll"]]})
        assert path.read_text().count("\n") == 1  # flushed per line
        writer.write(Op(1, 7, 0, "ok", "poll", [["poll", {"1": [[0, 5]]}]]))
        assert writer.count == 2
    history = History.load(path)
    assert history[1].value == [["poll", {"1": [[0, 5]]}]]
    with pytest.raises(HistoryError, match="closed"):
        writer.write({"index": 2, "process": 0, "type": "invoke"})
    with JsonlWriter(path) as writer, pytest.raises(HistoryError, match="without :type"):
        writer.write({"index": 2})


def test_op_extra_is_read_only():
    op = Op(0, None, 0, "fail", "read", None, {"error": "timeout"})
    with pytest.raises(TypeError):
        op.extra["error"] = "changed"
    with pytest.raises(AttributeError):
        op.f = "write"
    assert Op(1, None, 0, "ok", "read", 1, {}).extra is Op(2, None, 0, "ok", "read", 1).extra


def test_op_dict_round_trip_and_get():
    d = {"index": 3, "time": 1, "process": "nemesis", "type": "info", "f": "start", "value": None, "error": "x"}
    op = op_from_dict(d)
    assert op.extra == {"error": "x"} and op.get("error") == "x" and op.get("f") == "start"
    assert op_to_dict(op) == d
    assert not op.is_client and op.is_info
    assert hash(op) == hash(op_from_dict(d))


_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None)
@given(values=st.lists(_values, min_size=1, max_size=6), micro=st.sampled_from(["append", "r", "w", "send", "poll", "x"]))
def test_any_json_history_round_trips_through_edn(tmp_path_factory, values, micro):
    rows = []
    for i, value in enumerate(values):
        value = [[micro, i, value]] if i % 2 == 0 else value
        rows.append({"index": 2 * i, "process": i, "type": "invoke", "f": "txn", "value": value})
        rows.append({"index": 2 * i + 1, "process": i, "type": "ok", "f": "txn", "value": value, "extra-key": value})
    history = History.from_dicts(rows)
    directory = tmp_path_factory.mktemp("rt")
    history.to_jsonl(directory / "h.jsonl")
    from_jsonl = History.load(directory / "h.jsonl")
    assert from_jsonl == history
    from_jsonl.to_edn(directory / "h.edn")
    assert History.load(directory / "h.edn") == from_jsonl


# -- pairing -------------------------------------------------------------------------


def test_pairing_info_and_unfinished_invocations():
    h = H(
        (0, "invoke", "write", 1),
        (1, "invoke", "read", None),
        (0, "ok", "write", 1),
        (1, "info", "read", None),
        (2, "invoke", "cas", [1, 2]),
        ("nemesis", "info", "partition", None),
        ("nemesis", "info", "partition", "done"),
        (0, "invoke", "read", None),
        (0, "fail", "read", None),
        (3, "invoke", "write", 9),
    )
    assert h.completion(h[0]) is h[2]
    assert h.invocation(h[2]) is h[0]
    assert h.completion(h[2]) is None and h.invocation(h[0]) is None
    assert h.completion(h[1]).type == "info"
    assert h.completion(h[4]) is None
    assert h.completion(h[5]) is h[6]
    pairs = list(h.pairs())
    assert [(a.index, b.index) for a, b in pairs] == [(0, 2), (1, 3), (4, -1), (5, 6), (7, 8), (9, -1)]
    synthesized = pairs[2][1]
    assert synthesized == Op(-1, None, 2, "info", "cas", [1, 2])
    assert h.processes() == [0, 1, 2, "nemesis", 3]
    assert [op.index for op in h.by_process()[0]] == [0, 2, 7, 8]
    assert [op.index for op in h.client_ops()] == [0, 1, 2, 3, 4, 7, 8, 9]
    client = h.client_ops()
    assert client.completion(client[0]).index == 2


def test_realtime_order():
    h = H(
        (0, "invoke", "write", 1),
        (0, "ok", "write", 1),
        (1, "invoke", "read", None),
        (2, "invoke", "write", 2),
        (2, "info", "write", 2),
        (1, "ok", "read", 1),
        (3, "invoke", "read", None),
        (3, "ok", "read", 2),
    )
    assert h.realtime_precedes(h[0], h[2])
    assert h.realtime_precedes(h[1], h[6])
    assert not h.realtime_precedes(h[2], h[3])  # concurrent
    assert not h.realtime_precedes(h[3], h[6])  # info: could take effect any time later
    assert h.realtime_precedes(h[2], h[6])
    assert not h.realtime_precedes(h[6], h[0])


def test_process_less_ops_pair_in_order():
    h = H((None, "invoke", "txn", 1), (None, "ok", "txn", 1), (None, "invoke", "txn", 2), (None, "fail", "txn", 2))
    assert [(a.index, b.index) for a, b in h.pairs()] == [(0, 1), (2, 3)]


def test_a_second_invocation_while_pending_names_both_lines():
    lines = ['{"process": 1, "type": "invoke", "f": "read"}', "", '{"process": 1, "type": "invoke", "f": "read"}']
    with pytest.raises(HistoryError) as error:
        History.from_jsonl(lines)
    assert str(error.value).startswith("<lines> line 3: process 1 invokes 'read' while its invocation at <lines> line 1")


def test_a_completion_without_invocation_is_rejected(tmp_path):
    path = tmp_path / "h.jsonl"
    path.write_text('{"process": 4, "type": "ok", "f": "read", "value": 1}\n')
    with pytest.raises(HistoryError, match=rf"^{path} line 1: ok of 'read' for process 4 has no pending invocation"):
        History.load(path)


def test_duplicate_indexes_are_rejected():
    with pytest.raises(HistoryError, match="duplicate :index 3"):
        History.from_dicts([{"index": 3, "process": 0, "type": "invoke"}, {"index": 3, "process": 0, "type": "ok"}])


# -- malformed input ---------------------------------------------------------------------


def test_truncated_json_line_names_file_and_line(tmp_path):
    path = tmp_path / "history.jsonl"
    path.write_text('{"index": 0, "process": 0, "type": "invoke", "f": "read"}\n{"index": 1, "process": 0, "ty\n')
    with pytest.raises(HistoryError) as error:
        History.load(path)
    assert str(error.value).startswith(f"{path} line 2: expected a JSON op map, got ")


def test_map_without_type_names_file_and_line(tmp_path):
    path = tmp_path / "history.jsonl"
    path.write_text('\n\n{"index": 0, "process": 0, "f": "read"}\n')
    with pytest.raises(HistoryError) as error:
        History.load(path)
    assert str(error.value) == (
        f"{path} line 3: expected a map with :type, got {{'index': 0, 'process': 0, 'f': 'read'}}"
    )


def test_bad_type_and_fields(tmp_path):
    with pytest.raises(HistoryError, match="line 1: :type must be one of invoke, ok, fail, info; got 'done'"):
        History.from_jsonl(['{"type": "done"}'])
    with pytest.raises(HistoryError, match="line 1: :time must be integer nanoseconds"):
        History.from_jsonl(['{"type": "invoke", "time": "noon"}'])
    with pytest.raises(HistoryError, match="line 1: expected a map with :type, got \\[1, 2\\]"):
        History.from_jsonl(["[1, 2]"])


def test_garbage_edn_names_file_line_and_column(tmp_path):
    path = tmp_path / "history.edn"
    path.write_text("[{:process 0, :type :invoke, :f :read}\n {:process 0, :type :ok, :f :read, :value 1}\n {:process 0 :type :invoke :f :read)\n]")
    with pytest.raises(HistoryError) as error:
        History.load(path)
    assert str(error.value) == f"{path} line 3 column 36: invalid EDN: '{{' closed by ')'"
    lines = tmp_path / "history.txt"
    lines.write_text("; comment\n{:process 0, :type :invoke}\n{:process 0 :type}\n")
    with pytest.raises(HistoryError) as error:
        History.load(lines)
    assert str(error.value) == f"{lines} line 3 column 1: invalid EDN: a map needs an even number of forms (key value pairs)"
    lines.write_text("{:process 0, :type :invoke}\n{:process 0, :f :read}\n")
    with pytest.raises(HistoryError, match=rf"^{lines} line 2: expected a map with :type, got"):
        History.load(lines)


def test_unclosed_edn_and_detection_errors(tmp_path):
    path = tmp_path / "h.edn"
    path.write_text("[{:type :invoke}\n")
    with pytest.raises(HistoryError, match=r"line 1 column 1: invalid EDN: '\[' is never closed"):
        History.load(path)
    empty = tmp_path / "empty.edn"
    empty.write_text("  \n")
    with pytest.raises(HistoryError, match="cannot detect the format of an empty history"):
        History.load(empty)
    with pytest.raises(HistoryError, match="format 'yaml' is not known"):
        History.load(path, "yaml")


def test_jepsen_log_value_errors_name_the_line():
    lines = ["INFO  jepsen.util - 3\t:invoke\t:cas\t[1 2]", "INFO  jepsen.util - 3\t:ok\t:cas\t[1 2"]
    with pytest.raises(HistoryError, match=r"^<lines> line 2: expected one EDN value"):
        History.from_jepsen_log(lines)
    h = History.from_jepsen_log(lines[:1] + ["other logger line", "INFO  jepsen.util - :nemesis\t:info\t:start\tnil",
                                             "INFO  jepsen.util - 3\t:ok\t:cas\t[1 2]"])
    assert [(op.process, op.type, op.f, op.value) for op in h] == [
        (3, "invoke", "cas", [1, 2]), ("nemesis", "info", "start", None), (3, "ok", "cas", [1, 2])
    ]


def test_read_edn_values():
    text = r'[:kw sym \c \newline "s\"\n" {:k #{[1 2]}} #_ 5 #inst "2020" 1.5 -3 7N ##NaN nil true (1) 1/2]'
    values = [v for v, _ in read_edn(text, unwrap=True)]
    assert values[:7] == ["kw", "sym", "c", "\n", 's"\n', {"k": frozenset({(1, 2)})}, "2020"]
    assert values[7:10] == [1.5, -3, 7]
    assert values[10] != values[10]  # NaN
    assert values[11:] == [None, True, [1], 0.5]


_OP_JSON = '{"index": 0, "type": "invoke", "f": "send", "process": 0, "value": '
_OP_EDN = "{:index 0, :type :invoke, :f :send, :process 0, :value "


@pytest.mark.parametrize("name, text, problem", [
    ("deep.jsonl", _OP_JSON + "[" * 5000 + "]" * 5000 + "}\n",
     "line 1 column 167: nested too deeply: more than 100 levels of arrays or maps"),
    # deeper than MAX_NESTING_DEPTH yet within what json.loads would decode: refused all the same, since
    # a checker walking the value could still overflow the stack
    ("deep-150.jsonl", '{"note": "[[[ in a string is no nesting", "index": 0, "type": "invoke", "f": "send", '
     '"process": 0, "value": ' + "[" * 150 + "]" * 150 + "}\n", "line 1 column 208: nested too deeply"),
    ("open.jsonl", "[" * 100_000, "line 1 column 101: nested too deeply"),
    ("big.jsonl", _OP_JSON + "9" * 100_000 + "}\n", "Exceeds the limit (4300 digits)"),
    ("big.edn", _OP_EDN + "9" * 100_000 + "}\n", "an integer of 100000 digits"),
    ("deep.edn", "[" + _OP_EDN + "[" * 100_000 + "]" * 100_000 + "}]\n",
     "line 1 column 156: invalid EDN: nested too deeply: more than 100 levels"),
    ("ratio.edn", "[\n" + _OP_EDN + "1/0}]\n", "line 2 column 56: invalid EDN: the ratio '1/0' has no value here"),
    ("big-ratio.edn", "[" + _OP_EDN + "9" * 5000 + "/7}]", "line 1 column 57: invalid EDN: the ratio"),
    ("big.log", "INFO  jepsen.util - 0\t:invoke\t:read\t" + "9" * 10_000 + "\n",
     "big.log line 1: expected one EDN value, got '999"),
    ("cut.jsonl", _OP_JSON + "[[\"send\", 1, 2", "line 1: expected a JSON op map"),
    ("cut.edn", "[" + _OP_EDN + "[[:send 1 2]] ", "line 1 column 2: invalid EDN: '{' is never closed"),
    ("binary.edn", "[\x00\x01\x7f\ufffd]", "binary.edn line 1: expected a map with :type, got '\\x00"),
], ids=["deep-json", "deep-json-150", "unclosed-json", "long-int-json", "long-int-edn", "deep-edn", "ratio-by-zero",
        "ratio-long-int", "long-int-jepsen-log", "truncated-json", "truncated-edn", "binary"])
def test_hostile_histories_are_refused_with_a_sentence_not_a_traceback(tmp_path, name, text, problem):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(HistoryError, match=re.escape(problem)):
        History.load(str(path))
    if name.endswith(".jsonl"):
        with pytest.raises(HistoryError, match=re.escape(problem)):
            History.stream_jsonl(str(path))


def test_nesting_up_to_the_limit_is_read(tmp_path):
    # the op map is level 1, so its value may nest 99 levels
    path = tmp_path / "h.jsonl"
    path.write_text(_OP_JSON + "[" * 99 + "]" * 99 + "}\n")
    assert History.load(str(path))[0].value == json.loads("[" * 99 + "]" * 99)
    edn = tmp_path / "h.edn"
    edn.write_text("[" + _OP_EDN + "[" * 99 + "]" * 99 + "}]")
    assert History.load(str(edn)) == History.load(str(path))


def test_a_streamed_history_reads_its_file_again_on_each_pass(tmp_path):
    path = tmp_path / "h.jsonl"
    rows = [{"process": p, "type": t, "f": "write", "value": p} for p in range(3) for t in ("invoke", "ok")]
    rows.insert(3, {"process": "nemesis", "type": "info", "f": "kill", "value": None, "note": "\u00e9"})
    rows.insert(5, {"process": "nemesis", "type": "info", "f": "kill", "value": ["n1"]})
    History.from_dicts(rows).to_jsonl(path)
    path.write_text(path.read_text().replace("\n", "\n\n  \n", 2))  # blank lines are skipped, not ops
    in_memory, streamed = History.from_jsonl(path), History.stream_jsonl(path)
    assert streamed == in_memory and len(streamed) == 8
    assert list(streamed) == list(in_memory)
    assert [streamed[i] for i in (0, 3, -1)] == [in_memory[i] for i in (0, 3, -1)]
    assert streamed[2:6] == in_memory[2:6]
    assert [streamed.completion_position(i) for i in range(8)] == [in_memory.completion_position(i) for i in range(8)]
    assert streamed.completion(streamed[0]) == in_memory[1]
    with pytest.raises(HistoryError, match=r"h.jsonl line 4: process 0 invokes"):
        path.write_text(path.read_text().replace('"ok"', '"invoke"', 1))
        History.stream_jsonl(path)
    path.write_text(path.read_text() + path.read_text())  # appended to after it was opened
    with pytest.raises(HistoryError, match="the history changed while it was being checked"):
        list(streamed)
