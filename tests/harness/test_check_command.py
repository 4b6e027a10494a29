"""Tests for `logquake check` (harness/check_command.py): exit codes, bad flags,
several files, results files, checker detection and lazy dispatch."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from checkers.history import History
from tests.data import HISTORIES
from harness import check_command
from harness.cli import main as cli_main

DATA = HISTORIES


def _write_queue(path: Path, *, lose: bool = False) -> Path:
    rows = [
        {"process": 0, "type": "invoke", "f": "send", "value": [["send", 1, 10]]},
        {"process": 0, "type": "ok", "f": "send", "value": [["send", 1, [0, 10]]]},
        {"process": 0, "type": "invoke", "f": "send", "value": [["send", 1, 11]]},
        {"process": 0, "type": "ok", "f": "send", "value": [["send", 1, [1, 11]]]},
        {"process": 1, "type": "invoke", "f": "poll", "value": [["poll"]]},
        {"process": 1, "type": "ok", "f": "poll", "value": [["poll", {"1": [[1, 11]] if lose else [[0, 10], [1, 11]]}]]},
    ]
    History.from_dicts(rows).to_jsonl(path)
    return path


def test_valid_history_exits_0_and_writes_results_json(tmp_path, capsys):
    history = _write_queue(tmp_path / "history.jsonl")
    code = check_command.main([str(history), "--out", str(tmp_path / "out")])
    assert code == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["valid"] is True
    assert results["files"][str(history)]["checker"] == "queue"
    assert results["files"][str(history)]["delivery"] == "exactly-once"
    out = capsys.readouterr().out
    assert f"{history}  (queue): valid" in out
    assert "1 history: valid; results in" in out


def test_invalid_history_exits_1_and_prints_the_explanation(tmp_path, capsys):
    history = _write_queue(tmp_path / "h.jsonl", lose=True)
    assert check_command.main([str(history), "--out", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "lost-write: 1" in out
    assert "Op 1 sent 10 to key 1 (log index 0), and no poll observed it" in out
    # The same history is valid at most once, where loss is allowed.
    assert check_command.main([str(history), "--out", str(tmp_path), "--delivery", "at-most-once"]) == 0
    assert "allowed under at-most-once: lost-write (1), unseen (1)" in capsys.readouterr().out


def test_unreadable_history_is_unknown_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"process": 0, "type": "invoke"\n')
    assert check_command.main([str(bad), "--out", str(tmp_path)]) == 2
    out = capsys.readouterr().out
    assert f"error: cannot read the history: {bad} line 1: expected a JSON op map" in out
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["valid"] == "unknown"


def test_several_files_exit_with_the_worst_and_write_one_results_file(tmp_path):
    good = _write_queue(tmp_path / "good.jsonl")
    bad = _write_queue(tmp_path / "bad.jsonl", lose=True)
    unreadable = tmp_path / "unreadable.jsonl"
    unreadable.write_text("not json\n")
    out = tmp_path / "out"
    assert check_command.main([str(good), str(unreadable), "--out", str(out)]) == 2
    assert check_command.main([str(good), str(bad), str(unreadable), "--out", str(out)]) == 1
    results = json.loads((out / "results.json").read_text())
    assert results["valid"] is False
    assert [r["valid"] for r in results["files"].values()] == [True, False, "unknown"]


def test_a_directory_checks_each_run_history_once(tmp_path):
    run = tmp_path / "store" / "queue" / "20260101T000000.000"
    run.mkdir(parents=True)
    history = _write_queue(run / "history.jsonl")
    History.load(history).to_edn(run / "history.edn")  # the same history: not checked twice
    (run / "results.json").write_text("{}")
    other = tmp_path / "store" / "loose.jsonl"
    _write_queue(other, lose=True)
    out = tmp_path / "out"
    assert check_command.main([str(tmp_path / "store"), "--out", str(out)]) == 1
    results = json.loads((out / "results.json").read_text())
    assert sorted(results["files"]) == sorted([str(history), str(other)])


def test_edn_results(tmp_path):
    history = _write_queue(tmp_path / "h.jsonl", lose=True)
    assert check_command.main([str(history), "--out", str(tmp_path), "--edn"]) == 1
    text = (tmp_path / "results.edn").read_text()
    assert text.startswith("{:valid? false, :files {")
    assert ":lost-write [{:key 1, :value 10," in text
    assert not (tmp_path / "results.json").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--checker", "bogus", "x"], "argument --checker: invalid choice: 'bogus'"),
        (["--delivery", "twice", "x"], "argument --delivery: invalid choice: 'twice'"),
        (["--format", "yaml", "x"], "argument --format: invalid choice: 'yaml'"),
        ([], "the following arguments are required: FILE"),
        (["/nonexistent/history.jsonl"], "FILE '/nonexistent/history.jsonl' does not exist"),
        (["--no-such-flag", "x"], "unrecognized arguments: --no-such-flag"),
        (["--consistency-models", ",", "x"], "--consistency-models ',' names no model"),
        (["--consistency-models", "serialisable", "x"], "--consistency-models 'serialisable': "),
    ],
)
def test_bad_arguments_exit_254_naming_flag_and_value(argv, message, capsys):
    assert check_command.main(argv) == 254
    assert message in capsys.readouterr().err


def test_bad_model_and_initial_exit_254(tmp_path, capsys):
    history = _write_queue(tmp_path / "h.jsonl")
    assert check_command.main([str(history), "--model", "tree", "--out", str(tmp_path)]) == 254
    assert "--model 'tree' is not known; expected one of" in capsys.readouterr().err
    assert check_command.main([str(history), "--initial", "[1", "--out", str(tmp_path)]) == 254
    assert "--initial '[1' is neither JSON nor EDN" in capsys.readouterr().err


def test_cli_dispatches_check_and_help_exits_0(tmp_path, capsys):
    history = _write_queue(tmp_path / "h.jsonl")
    assert cli_main(["check", str(history), "--out", str(tmp_path)]) == 0
    assert cli_main(["check", "--help"]) == 0
    assert "exit codes: 0 valid, 1 invalid, 2 unknown, 254 bad arguments" in capsys.readouterr().out


def test_a_missing_checker_is_reported_not_raised(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "checkers.linearizable", None)  # import now raises ImportError
    history = tmp_path / "h.edn"
    history.write_text("[{:process 0 :type :invoke :f :read :value nil}\n {:process 0 :type :ok :f :read :value 0}]")
    assert check_command.main([str(history), "--out", str(tmp_path)]) == 2
    out = capsys.readouterr().out
    assert "error: checker linearizable is not available: cannot import checkers.linearizable" in out


@pytest.mark.parametrize(
    "file, expected",
    [
        ("elle/histories/paper-example.edn", ("list-append", None)),
        ("knossos/data/cas-register/bad/cas-failure.edn", ("linearizable", "cas-register")),
        ("knossos/data/mutex/bad/etcd.edn", ("linearizable", "mutex")),
        ("porcupine/test_data/kv/c01-ok.txt", ("linearizable", "kv")),
        ("porcupine/test_data/jepsen/etcd_000.log", ("linearizable", "cas-register")),
    ],
)
def test_detect_checker_on_shared_histories(file, expected):
    assert check_command.detect_checker(History.load(DATA / file)) == expected


def test_detect_checker_on_small_histories():
    def h(*values, f="txn"):
        rows = []
        for v in values:
            rows += [{"process": 0, "type": "invoke", "f": f, "value": v}, {"process": 0, "type": "ok", "f": f, "value": v}]
        return History.from_dicts(rows)

    assert check_command.detect_checker(h([["send", 1, 2]])) == ("queue", None)
    assert check_command.detect_checker(h([["w", 1, 2]], [["r", 1, None]])) == ("rw-register", None)
    assert check_command.detect_checker(h(1, f="write")) == ("linearizable", "register")
    assert check_command.detect_checker(h(1, f="enqueue")) == (None, None)
    assert check_command.detect_checker(h(["g", 1], f="offset-commit")) == ("offsets", None)


def test_an_offsets_history_is_checked_and_a_lost_commit_makes_it_invalid(tmp_path, capsys):
    rows = []
    for f, value, done in (("offset-commit", ["g", 1], ["g", 1]), ("offset-commit", ["g", 2], ["g", 2]),
                           ("offset-fetch", ["g"], {"g": 1})):
        rows += [{"process": 0, "type": "invoke", "f": f, "value": value},
                 {"process": 0, "type": "ok", "f": f, "value": done}]
    path = tmp_path / "h.jsonl"
    History.from_dicts(rows).to_jsonl(path)
    assert check_command.main([str(path), "--out", str(tmp_path / "out")]) == 1
    out = capsys.readouterr().out
    assert "(offsets): INVALID" in out and "lost-commit" in out


def test_undetectable_history_is_unknown(tmp_path, capsys):
    path = tmp_path / "h.jsonl"
    History.from_dicts(
        [{"process": 0, "type": "invoke", "f": "enqueue", "value": 1}, {"process": 0, "type": "ok", "f": "enqueue", "value": 1}]
    ).to_jsonl(path)
    assert check_command.main([str(path), "--out", str(tmp_path)]) == 2
    assert "cannot detect a checker from the ops; pass --checker" in capsys.readouterr().out


def test_a_stored_run_is_checked_under_its_own_delivery_mode_and_its_node_logs_are_ignored(tmp_path):
    import json as _json

    from harness.check_command import main as check_main

    run = tmp_path / "store" / "queue-at-least-once-kill" / "20260101T000000.000"
    (run / "nodes" / "n1").mkdir(parents=True)
    (run / "nodes" / "n1" / "broker.log").write_text("INFO  broker started\n")
    (run / "test.json").write_text(_json.dumps({"options": {"delivery": "at-least-once"}}))
    (run / "history.jsonl").write_text("".join(_json.dumps(op) + "\n" for op in _DUPLICATED))
    out = tmp_path / "out"
    # a duplicate is allowed under the run's at-least-once, so the stored run is valid
    assert check_main([str(tmp_path / "store"), "--out", str(out)]) == 0
    document = _json.loads((out / "results.json").read_text())
    assert list(document["files"]) == [str(run / "history.jsonl")]
    assert document["files"][str(run / "history.jsonl")]["allowed"]["duplicate"]
    # the same history judged as exactly-once, when asked, is invalid
    assert check_main([str(run), "--delivery", "exactly-once", "--out", str(out)]) == 1


def _stored_run(root, options, ops):
    run = root / "store" / "queue-run" / "20260101T000000.000"
    run.mkdir(parents=True)
    (run / "test.json").write_text(json.dumps({"options": options}))
    (run / "results.json").write_text('{"valid": true, "mine": "the run\'s own verdict"}\n')
    (run / "history.jsonl").write_text("".join(json.dumps(op) + "\n" for op in ops))
    return run


_DUPLICATED = [
    {"process": 0, "type": "invoke", "f": "send", "value": [["send", 0, 7]]},
    {"process": 0, "type": "ok", "f": "send", "value": [["send", 0, [0, 7]]]},
    {"process": 0, "type": "invoke", "f": "send", "value": [["send", 0, 7]]},
    {"process": 0, "type": "ok", "f": "send", "value": [["send", 0, [1, 7]]]},
    {"process": 1, "type": "invoke", "f": "poll", "value": [["poll"]]},
    {"process": 1, "type": "ok", "f": "poll", "value": [["poll", {"0": [[0, 7], [1, 7]]}]]},
]


def test_an_idempotent_run_is_checked_as_at_least_once_idempotent(tmp_path, capsys):
    run = _stored_run(tmp_path, {"delivery": "at-least-once", "idempotent": True}, _DUPLICATED)
    assert check_command.main([str(run), "--out", str(tmp_path / "out")]) == 1
    out = capsys.readouterr().out
    assert f"judged as at-least-once-idempotent (from {run / 'test.json'})" in out
    document = json.loads((tmp_path / "out" / "results.json").read_text())
    assert document["files"][str(run / "history.jsonl")]["delivery"] == "at-least-once-idempotent"


def test_a_bare_history_says_first_which_mode_it_assumed(tmp_path, capsys):
    path = tmp_path / "copied.jsonl"
    path.write_text("".join(json.dumps(op) + "\n" for op in _DUPLICATED))
    assert check_command.main([str(path), "--out", str(tmp_path / "out")]) == 1
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith(f"{path}: judged as exactly-once (assumed: no test.json beside the history")
    assert "pass --delivery at-most-once|at-least-once|at-least-once-idempotent|exactly-once" in first
    assert check_command.main([str(path), "--delivery", "at-least-once", "--out", str(tmp_path / "out")]) == 0
    assert "judged as at-least-once (--delivery)" in capsys.readouterr().out


def test_checking_inside_a_run_folder_leaves_the_runs_results_alone(tmp_path, capsys, monkeypatch):
    run = _stored_run(tmp_path, {"delivery": "at-least-once"}, _DUPLICATED)
    before = (run / "results.json").read_text()
    monkeypatch.chdir(run)
    assert check_command.main(["."]) == 0
    assert (run / "results.json").read_text() == before
    made = sorted(run.glob("check-*/results.json"))
    assert len(made) == 1, made
    assert f"results in {made[0].relative_to(run)}" in capsys.readouterr().out
    # naming the run's folder as --out is refused before anything is checked
    assert check_command.main([".", "--out", "."]) == 254
    assert "is a run's folder" in capsys.readouterr().err
    assert (run / "results.json").read_text() == before


def test_a_stored_run_is_checked_with_the_acks_it_ran_with(tmp_path, capsys):
    # at-most-once allows a message that is never read, but under acks=all an acknowledged offset at or above
    # the watermark the final reads were given is a watermark regression; the run said acks=all
    ops = [
        {"process": 0, "type": "invoke", "f": "send", "value": [["send", 0, 7]]},
        {"process": 0, "type": "ok", "f": "send", "value": [["send", 0, [5, 7]]]},
        {"process": 1, "type": "invoke", "f": "poll", "value": [["poll"]]},
        {"process": 1, "type": "ok", "f": "poll", "value": [["poll", {"0": []}]], "listed-high-watermarks": {"0": 3}},
    ]
    run = _stored_run(tmp_path, {"delivery": "at-most-once"}, ops)
    assert check_command.main([str(run), "--out", str(tmp_path / "out")]) == 0  # acks=1, at-most-once's default
    test = json.loads((run / "test.json").read_text())
    (run / "test.json").write_text(json.dumps({**test, "workload": {"acks": "all"}}))
    assert check_command.main([str(run), "--out", str(tmp_path / "out2")]) == 1
    assert "watermark-regression" in capsys.readouterr().out


def test_a_stored_run_of_a_volatile_system_is_rechecked_as_the_run_judged_it(tmp_path, capsys):
    rows = [{"process": 0, "type": "invoke", "f": "send", "value": [["send", 1, 10]]},
            {"process": 0, "type": "ok", "f": "send", "value": [["send", 1, [0, 10]]]},
            {"process": "nemesis", "type": "info", "f": "kill", "value": {"killed": ["n1"]}},
            {"process": 1, "type": "invoke", "f": "poll", "value": [["poll"]]},
            {"process": 1, "type": "ok", "f": "poll", "value": [["poll", {}]]}]
    options = {"delivery": "at-least-once", "system": "mem.toml",
               "system_description": {"start": "mem-broker", "storage": {"volatile": True}}}
    run = _stored_run(tmp_path, options, rows)
    assert check_command.main([str(run), "--out", str(tmp_path / "out")]) == 2
    result = json.loads((tmp_path / "out" / "results.json").read_text())["files"][str(run / "history.jsonl")]
    assert result["reason"] == "volatile-storage-losses" and "declares volatile storage" in result["message"]
    options["system_description"]["storage"]["volatile"] = False
    (run / "test.json").write_text(json.dumps({"options": options}))
    assert check_command.main([str(run), "--out", str(tmp_path / "out2")]) == 1


# -- hostile input, internal errors, memory ------------------------------------------------------

_HOSTILE = {
    "deep.jsonl": ("[" * 100_000, "line 1 column 101: nested too deeply: more than 100 levels"),
    "deep.edn": ("[{:type :invoke, :process 0, :f :read, :value " + "[" * 100_000 + "]" * 100_000 + "}]",
                 "line 1 column 146: invalid EDN: nested too deeply"),
    "long-int.jsonl": ('{"type": "invoke", "process": 0, "f": "read", "value": ' + "9" * 100_000 + "}\n",
                       "Exceeds the limit (4300 digits) for integer string conversion"),
    "long-int.edn": ("[{:type :invoke, :process 0, :f :read, :value " + "9" * 100_000 + "}]",
                     "an integer of 100000 digits is longer than the 4300 digits"),
    "truncated.jsonl": ('{"type": "invoke", "process": 0, "f": "send", "value": [["send", 1, 10]]}\n{"type": "ok", "pro',
                        "line 2: expected a JSON op map"),
    "truncated.edn": ("[{:type :invoke, :process 0, :f :send, :value [[:send 1 10]]}\n {:type :ok :process",
                      "line 2 column 2: invalid EDN: '{' is never closed"),
}


@pytest.mark.parametrize("name", [*_HOSTILE, "garbage.bin", "garbage.jsonl"])
def test_hostile_input_gives_a_sentence_and_unknown_never_a_traceback(tmp_path, name):
    import random
    import subprocess

    path = tmp_path / name
    if name.startswith("garbage"):
        path.write_bytes(random.Random(17).randbytes(200_000))
        expected = "expected a UTF-8 text history" if name.endswith(".jsonl") else "cannot detect the history format"
    else:
        text, expected = _HOSTILE[name]
        path.write_text(text)
    run = subprocess.run([sys.executable, "-m", "harness.cli", "check", str(path), "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert run.returncode == check_command.EXIT_UNKNOWN, run.stderr
    assert "Traceback" not in run.stdout + run.stderr and run.stderr == ""
    error_lines = [line for line in run.stdout.splitlines() if line.startswith("  error: ")]
    assert len(error_lines) == 1 and expected in error_lines[0], run.stdout
    assert len(error_lines[0]) < 500
    result = json.loads((tmp_path / "out" / "results.json").read_text())["files"][str(path)]
    assert result["valid"] == "unknown" and expected in result["error"]


def test_an_internal_error_exits_255_in_one_line_with_the_traceback_in_a_file(tmp_path, capsys, monkeypatch):
    history = _write_queue(tmp_path / "history.jsonl")

    def overflow(*args, **kwargs):
        raise RecursionError("maximum recursion depth exceeded\nsecond line")

    monkeypatch.setattr(check_command, "check_file", overflow)
    assert check_command.main([str(history), "--out", str(tmp_path / "out")]) == 255 != check_command.EXIT_INVALID
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("logquake check: internal error (a bug of logquake, not a verdict): RecursionError: "
                          "maximum recursion depth exceeded; its traceback is in ")
    trace_file = err.split("its traceback is in ")[1].split(" (or run again with --verbose)")[0]
    trace = Path(trace_file).read_text()
    Path(trace_file).unlink()
    assert trace.startswith("Traceback") and "in overflow" in trace
    assert check_command.main([str(history), "--out", str(tmp_path / "out"), "--verbose"]) == 255
    err = capsys.readouterr().err
    assert "its traceback follows\nTraceback" in err and "in overflow" in err


def test_witnesses_are_capped_in_results_json_and_the_summary_says_how_many_were_omitted(tmp_path, capsys):
    rows = []
    for value in range(10):
        rows += [{"process": 0, "type": "invoke", "f": "send", "value": [["send", 1, value]]},
                 {"process": 0, "type": "ok", "f": "send", "value": [["send", 1, [value, value]]]}]
    rows += [{"process": 1, "type": "invoke", "f": "poll", "value": [["poll"]]},
             {"process": 1, "type": "ok", "f": "poll", "value": [["poll", {"1": [[9, 9]]}]]}]
    History.from_dicts(rows).to_jsonl(tmp_path / "h.jsonl")
    code = check_command.main([str(tmp_path / "h.jsonl"), "--out", str(tmp_path / "out"), "--max-witnesses", "3"])
    assert code == check_command.EXIT_INVALID
    out = capsys.readouterr().out
    assert "  lost-write: 9 (results keep the first 3 witnesses; 6 omitted)" in out
    result = json.loads((tmp_path / "out" / "results.json").read_text())["files"][str(tmp_path / "h.jsonl")]
    assert [w["value"] for w in result["anomalies"]["lost-write"]] == [0, 1, 2]
    assert result["stats"]["anomaly_counts"]["lost-write"] == 9
    assert result["stats"]["witnesses_omitted"] == {"lost-write": 6}
    assert check_command.main([str(tmp_path / "h.jsonl"), "--out", str(tmp_path / "all"), "--max-witnesses", "0"]) == 254
    assert "--max-witnesses: '0' is not a positive integer" in capsys.readouterr().err


def test_a_large_jsonl_history_is_streamed_with_the_same_verdict(tmp_path, monkeypatch, capsys):
    valid, lost = _write_queue(tmp_path / "valid.jsonl"), _write_queue(tmp_path / "lost.jsonl", lose=True)
    in_memory = {path: check_command.check_file(str(path), None, "auto", {"delivery": None}) for path in (valid, lost)}
    monkeypatch.setattr(check_command, "STREAM_BYTES", 0)
    opened, stream = [], History.stream_jsonl
    monkeypatch.setattr(History, "stream_jsonl", lambda path: opened.append(path) or stream(path))
    streamed = {path: check_command.check_file(str(path), None, "auto", {"delivery": None}) for path in (valid, lost)}
    assert opened == [str(valid), str(lost)]
    assert streamed == in_memory
    assert in_memory[valid]["valid"] is True and in_memory[lost]["anomaly_types"] == ["lost-write", "unseen"]
