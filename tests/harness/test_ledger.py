"""The fault ledger: faults written down before they are applied, struck off when healed; `heal_store` heals
only the runs of dead harnesses, says what they left in effect, and closes their ledgers. The healers here
are scripted (what is under test is the ledger around them); the real ones run in tests/e2e/test_heal.py."""

from __future__ import annotations

import json
import multiprocessing.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from harness.ledger import INDEX_DIR, LEDGER_NAME, FaultLedger, heal_store, read_ledger, stale_ledgers


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _ledger(store, name="run1", owner_pid=None, tempdir=None):
    run = store / "test" / name
    run.mkdir(parents=True)
    ledger = FaultLedger(run / LEDGER_NAME, store, "local", {"run_dir": "/tmp/logquake/run-x"})
    if owner_pid is not None:  # as if another harness, now dead, had written it
        lines = (run / LEDGER_NAME).read_text().splitlines()
        header = json.loads(lines[0])
        header["owner"]["pid"] = owner_pid
        header["owner"]["tempdir"] = tempdir  # never this process's own
        (run / LEDGER_NAME).write_text(json.dumps(header) + "\n")
    return ledger


def test_faults_in_effect_are_those_opened_and_not_struck_off(tmp_path):
    ledger = _ledger(tmp_path)
    a = ledger.opened({"at_s": 1.0, "package": "partition", "f": "start-partition"})
    ledger.applied(a, ["n1"])
    b = ledger.opened({"at_s": 2.0, "package": "pause", "f": "pause"})
    c = ledger.opened({"at_s": 3.0, "package": "kill", "f": "kill"})  # the harness died applying it
    ledger.applied(b, ["n2"])
    ledger.struck("partition")
    state = read_ledger(ledger.path)
    assert [(f["event"]["f"], f["nodes"]) for f in state.in_effect] == [("pause", ["n2"]), ("kill", None)]
    assert c == 3 and state.closed is None
    ledger.struck("all")
    ledger.close("teardown")
    state = read_ledger(ledger.path)
    assert state.in_effect == [] and state.closed == "teardown"
    assert list((tmp_path / INDEX_DIR).iterdir()) == []


def test_only_the_ledgers_of_dead_harnesses_are_healed_and_then_closed(tmp_path):
    mine = _ledger(tmp_path, "alive")  # this process: alive
    mine.opened({"at_s": 1.0, "package": "pause", "f": "pause"})
    dead = _ledger(tmp_path, "dead", owner_pid=_dead_pid())
    dead.applied(dead.opened({"at_s": 2.5, "package": "pause", "f": "pause"}), ["n3"])
    assert [s.path for s in stale_ledgers(tmp_path)] == [dead.path]
    said, calls = [], []
    outcome = heal_store(tmp_path, {"local": lambda stale: calls.append(len(stale)) or ["run directory /tmp/logquake/run-x"]},
                         say=said.append)
    assert calls == [1] and outcome["removed"] == ["run directory /tmp/logquake/run-x"]
    assert outcome["runs"][0]["faults"] == ["pause (pause) at 2.5 s on n3"]
    assert "faults it left in effect: pause (pause) at 2.5 s on n3" in said[0]
    assert read_ledger(dead.path).closed == "logquake heal" and read_ledger(mine.path).closed is None
    assert stale_ledgers(tmp_path) == []
    assert [p.read_text() for p in (tmp_path / INDEX_DIR).iterdir()] == [str(mine.path.resolve())]


def test_a_backend_that_cannot_heal_leaves_its_ledgers_open_and_says_why(tmp_path):
    dead = _ledger(tmp_path, "dead", owner_pid=_dead_pid())

    def broken(stale):
        raise RuntimeError("no Docker daemon answers")

    outcome = heal_store(tmp_path, {"local": broken}, say=lambda _: None)
    assert outcome["errors"] == ["local: no Docker daemon answers"]
    assert read_ledger(dead.path).closed is None and stale_ledgers(tmp_path)


def test_a_pointer_to_a_removed_run_is_dropped(tmp_path):
    ledger = _ledger(tmp_path, "gone", owner_pid=_dead_pid())
    os.remove(ledger.path)
    assert stale_ledgers(tmp_path) == [] and list((tmp_path / INDEX_DIR).iterdir()) == []


def test_a_line_torn_by_the_crash_is_ignored_and_heal_closes_the_ledger_after_it(tmp_path):
    ledger = _ledger(tmp_path, "torn", owner_pid=_dead_pid())
    ledger.applied(ledger.opened({"at_s": 1.0, "package": "pause", "f": "pause"}), ["n1"])
    with open(ledger.path, "a") as f:
        f.write('{"struck": "al')  # the harness died in the middle of this line
    assert len(read_ledger(ledger.path).in_effect) == 1
    heal_store(tmp_path, {"local": lambda stale: []}, say=lambda _: None)
    assert read_ledger(ledger.path).closed == "logquake heal"


def test_heal_appends_exactly_one_line_to_a_whole_ledger(tmp_path):
    ledger = _ledger(tmp_path, "whole", owner_pid=_dead_pid())
    before = ledger.path.read_text().splitlines()
    heal_store(tmp_path, {"local": lambda stale: []}, say=lambda _: None)
    after = ledger.path.read_text().splitlines()
    assert after[:-1] == before and json.loads(after[-1]) == {"closed": "logquake heal"}


def test_heal_removes_the_dead_harness_multiprocessing_directory_and_nothing_else(tmp_path):
    mine = _ledger(tmp_path, "alive")
    assert read_ledger(mine.path).owner["tempdir"] == multiprocessing.util.get_temp_dir()
    left = Path(tempfile.mkdtemp(prefix="pymp-"))  # what a SIGKILLed harness leaves: its forkserver's socket
    (left / "listener-abc").write_text("")
    not_ours = tmp_path / "pymp-elsewhere"  # not right under the temp directory: kept, whatever the ledger says
    not_ours.mkdir()
    _ledger(tmp_path, "dead", owner_pid=_dead_pid(), tempdir=str(left))
    _ledger(tmp_path, "odd", owner_pid=_dead_pid(), tempdir=str(not_ours))
    said = []
    outcome = heal_store(tmp_path, {"local": lambda stale: []}, say=said.append)
    assert outcome["removed"] == [f"the multiprocessing directory {left}"]
    assert f"removed the multiprocessing directory {left}" in said
    assert not left.exists() and not_ours.is_dir() and Path(multiprocessing.util.get_temp_dir()).is_dir()
