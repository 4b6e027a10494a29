"""`logquake sim`: seeds of the real broker under simulation, judged by the queue checker, stored as runs.

What the tests show: on the correct broker three seeds of 20 virtual seconds
with crashes and partitions are all VALID (exit 0) and each is stored with its
history, results and one-line verdict; with the planted bug
`logquake.debug.ack.before.replication` a seed is INVALID with lost writes
(exit 1) and the line names the command that replays it, which gives the same
history byte for byte and the same anomalies; a seed that breaks a
replication invariant (`logquake.debug.hwm.past.isr`) is INVALID and its
results.json holds the violations; bad flags exit 254 naming the
flag. Each seed runs in a child interpreter (`python -m broker.sim`), so these
tests cost a few wall seconds per seed.
"""

from __future__ import annotations

import json
import random
import shlex
import sys
from pathlib import Path

import pytest

from harness import cli

BUG = "logquake.debug.read.above.hwm=true"


def run_sim(argv, capsys):
    capsys.readouterr()  # drop what the test echoed before (a failing test shows it); read only this command's output
    code = cli.main(["sim", *argv])
    return code, capsys.readouterr().out.splitlines()


def fresh_seed() -> int:
    """A first seed drawn at random and printed (shown when a test fails), so a failure can be replayed."""
    seed = random.randrange(1, 2**31 - 100)
    print(f"first seed {seed} (drawn at random)", file=sys.stderr)  # stdout is the command's, read by the tests
    return seed


def run_results(store) -> dict[int, dict]:
    """seed -> results.json of every simulated run in `store`."""
    found = {}
    for run_dir in (store / "sim").iterdir():
        if not run_dir.is_symlink():
            results = json.loads((run_dir / "results.json").read_text())
            found[results["seed"]] = results
    return found


def test_three_seeds_of_the_correct_broker_are_valid_and_stored_as_runs(tmp_path, capsys):
    first = fresh_seed()
    code, lines = run_sim(["--seed", str(first), "--seeds", "3", "--duration", "20s", "--store", str(tmp_path)], capsys)
    print("\n".join(lines))
    assert code == 0, lines
    assert [line.split(":")[0] for line in lines[:3]] == [f"seed {first + i}" for i in range(3)]
    assert all(": valid (" in line and "; 7 of 7 invariants held over " in line for line in lines[:3]), lines
    assert lines[3].startswith(f"3 seeds ({first}..{first + 2}): 3 valid, 0 INVALID, 0 unknown; virtual ")
    runs = sorted(p for p in (tmp_path / "sim").iterdir() if not p.is_symlink())
    assert len(runs) == 3
    for run_dir in runs:
        assert {p.name for p in run_dir.iterdir()} >= {"test.json", "history.jsonl", "results.json", "sim.log",
                                                        "verdict.txt"}
        results = json.loads((run_dir / "results.json").read_text())
        assert results["valid"] is True and results["queue"]["delivery"] == "at-least-once"
        assert results["simulation"]["virtual_s"] >= 20.0
        invariants = results["invariants"]
        assert len(invariants["checked"]) == 7 and invariants["violation_counts"] == {} and invariants["checks"] > 0
        assert json.loads((run_dir / "test.json").read_text())["options"]["delivery"] == "at-least-once"
        assert (run_dir / "verdict.txt").read_text().startswith(f"seed {results['seed']}: valid")


def test_a_planted_bug_is_caught_and_its_seed_replays_to_the_same_history_and_anomalies(tmp_path, capsys):
    # read.above.hwm serves a fetch past the high watermark: the queue checker flags read-above-watermark on 24 of 24
    # seeds measured (7000..7019 and 91000..91003, 20 s). ack.before.replication was used here before; it is caught
    # on only 13 of 20 (a seed needs a partition or crash at the right moment), and a CI run drew 4 seeds that all
    # missed it. A rate test for that bug belongs with the per-bug measurement, not in this replay test.
    first = fresh_seed()
    code, lines = run_sim(["--seed", str(first), "--seeds", "4", "--duration", "20s", "--broker-override", BUG,
                           "--store", str(tmp_path / "runs")], capsys)
    print("\n".join(lines))
    assert code == 1, lines
    caught = [line for line in lines[:4] if ": INVALID" in line]
    assert caught, lines
    line = caught[0]
    seed = int(line.split(":")[0].split()[1])
    replay = line.split("; replay: ")[1]
    assert replay == (f"logquake sim --seed {seed} --nodes 3 --duration 20s --faults crash,partition "
                      f"--broker-override {BUG}")
    first_run = run_results(tmp_path / "runs")[seed]
    code, again = run_sim([*shlex.split(replay)[2:], "--store", str(tmp_path / "replay")], capsys)
    assert code == 1
    second = run_results(tmp_path / "replay")[seed]
    assert second["simulation"]["history_sha256"] == first_run["simulation"]["history_sha256"]
    assert second["queue"]["anomaly_types"] == first_run["queue"]["anomaly_types"]
    assert again[0].split(" (")[0] == line.split(" (")[0]


def test_a_broken_invariant_makes_the_seed_invalid_and_is_stored_with_its_seed_and_virtual_time(tmp_path, capsys):
    # logquake.debug.hwm.past.isr breaks isr-holds-hw within seconds on nearly every seed (10 of 10 measured,
    # tests/broker/test_sim_invariants.py); two fresh seeds, at least one must show it
    first = fresh_seed()
    code, lines = run_sim(["--seed", str(first), "--seeds", "2", "--duration", "8s", "--broker-override",
                           "logquake.debug.hwm.past.isr=true", "--store", str(tmp_path)], capsys)
    print("\n".join(lines))
    assert code == 1, lines
    broken = [line for line in lines[:2] if "; invariants broken: isr-holds-hw x" in line]
    assert broken and all(": INVALID (" in line for line in broken), lines
    seed = int(broken[0].split(":")[0].split()[1])
    results = run_results(tmp_path)[seed]
    assert results["valid"] is False
    assert results["invariants"]["violation_counts"]["isr-holds-hw"] > 0
    assert results["invariants"]["violations"][0].startswith(f"seed {seed}, virtual time ")


@pytest.mark.parametrize("argv, named", [
    (["--faults", "pause"], "--faults"),
    (["--duration", "soon"], "--duration"),
    (["--seeds", "0"], "--seeds"),
    (["--jobs", "0"], "--jobs"),
    (["--broker-override", "novalue"], "--broker-override"),
    (["--schedule", "{missing}"], "--schedule"),
    (["--schedule", "{not-json}"], "--schedule"),
    (["--schedule", "{unknown-kind}"], "kind 'flood' cannot be scheduled"),
    (["--schedule", "{no-hold}"], "needs at_s, kind, node and hold_s"),
    (["--schedule", "{node-4}"], "names a node this cluster of 3 does not have"),
    (["--schedule", "{self-link}"], "a link from a node to itself"),
])
def test_bad_arguments_exit_254_naming_the_flag(argv, named, capsys, tmp_path):
    files = {"not-json": "[{", "unknown-kind": '[{"at_s": 1, "kind": "flood", "node": 1, "hold_s": 2}]',
             "no-hold": '{"faults": [{"at_s": 1, "kind": "crash", "node": 1}]}',
             "node-4": '[{"at_s": 1, "kind": "crash", "node": 4, "hold_s": 2}]',
             "self-link": '[{"at_s": 1, "kind": "link", "node": 2, "peer": 2, "hold_s": 2}]'}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    argv = [word.format(**{name: tmp_path / name for name in [*files, "missing"]}) for word in argv]
    with pytest.raises(SystemExit) as exit_:
        cli.main(["sim", *argv, "--store", str(tmp_path / "store")])
    assert exit_.value.code == 254
    assert named in capsys.readouterr().err
    assert not (tmp_path / "store").exists(), "a refused command started something"


def test_seeds_run_at_once_give_the_same_lines_in_seed_order_and_the_same_histories(tmp_path, capsys):
    first = fresh_seed()
    argv = ["--seed", str(first), "--seeds", "3", "--duration", "8s"]
    code_one, alone = run_sim([*argv, "--store", str(tmp_path / "one")], capsys)
    code_two, together = run_sim([*argv, "--jobs", "2", "--store", str(tmp_path / "two")], capsys)
    assert code_one == code_two == 0, together
    assert [line.split(":")[0] for line in together[:3]] == [f"seed {first + i}" for i in range(3)]

    def hashes(lines):
        return [line.split("history sha256 ")[1].split(";")[0] for line in lines[:3]]

    assert hashes(together) == hashes(alone)
    assert together[3].endswith(", 2 at once)") and not alone[3].endswith("at once)")
    assert {seed: r["valid"] for seed, r in run_results(tmp_path / "two").items()} == \
        {first + i: True for i in range(3)}


def test_a_seeds_recorded_schedule_replays_its_history_byte_for_byte_and_runs_as_given(tmp_path, capsys,
                                                                                         monkeypatch):
    # schedule.json holds the faults as applied (drawn from the seed); --schedule of it gives the same history
    first = fresh_seed()
    code, lines = run_sim(["--seed", str(first), "--duration", "10s", "--faults", "crash,partition,link",
                           "--store", str(tmp_path / "a")], capsys)
    assert code in (0, 1) and lines[0].startswith(f"seed {first}: "), lines
    drawn = run_results(tmp_path / "a")[first]
    recorded = json.loads((Path(drawn["run_dir"]) / "schedule.json").read_text())
    assert set(recorded) == {"faults", "end_s"} and recorded["end_s"] > 0, recorded
    assert all(f["kind"] in ("crash", "partition", "link") for f in recorded["faults"]), recorded
    code, lines = run_sim(["--seed", str(first), "--duration", "10s", "--faults", "crash,partition,link", "--schedule",
                           str(Path(drawn["run_dir"]) / "schedule.json"), "--store", str(tmp_path / "b")], capsys)
    replayed = run_results(tmp_path / "b")[first]
    assert replayed["simulation"]["history_sha256"] == drawn["simulation"]["history_sha256"], lines
    # a hand-written schedule: the run applies exactly its faults, and its replay command names the run's own copy;
    # the file and the store are named relative to the working directory, as a user types them
    given = tmp_path / "mine.json"
    given.write_text(json.dumps([{"at_s": 1.0, "kind": "link", "node": 1, "peer": 3, "hold_s": 2.0},
                                 {"at_s": 4.0, "kind": "crash", "node": 2, "hold_s": 1.5}]))
    monkeypatch.chdir(tmp_path)
    code, lines = run_sim(["--seed", str(first), "--duration", "8s", "--schedule", "mine.json", "--store", "c"], capsys)
    assert code == 0, lines
    results = run_results(tmp_path / "c")[first]
    applied = json.loads((Path(results["run_dir"]) / "schedule.json").read_text())["faults"]
    assert [(f["kind"], f["node"], f["peer"], f["at_s"], f["hold_s"]) for f in applied] == [
        ("link", 1, 3, 1.0, 2.0), ("crash", 2, 0, 4.0, 1.5)]
    copy = Path(results["run_dir"]) / "schedule.given.json"
    assert copy.read_text() == given.read_text() and results["replay"].endswith(f"--schedule {copy}")


def test_help_exits_0_and_lists_the_faults(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["sim", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--broker-override" in out and "crash, partition" in out


def one_valid_fault_free_seed(flags: list[str], tmp_path, capsys) -> tuple[dict, dict]:
    """Run one fresh seed of 6 s without faults with `flags`, assert it valid; (its results.json, its test.json)."""
    first = fresh_seed()
    code, lines = run_sim(["--seed", str(first), "--duration", "6s", "--faults", "none", *flags,
                           "--store", str(tmp_path)], capsys)
    print("\n".join(lines))
    assert code == 0 and lines[0].startswith(f"seed {first}: valid ("), lines
    results = run_results(tmp_path)[first]
    assert results["replay"].endswith(" ".join(["--faults", "none", *flags]))
    return results, json.loads((Path(results["run_dir"]) / "test.json").read_text())


def test_idempotent_seeds_are_checked_as_at_least_once_idempotent_and_replay_with_the_flag(tmp_path, capsys):
    results, test = one_valid_fault_free_seed(["--idempotent"], tmp_path, capsys)
    assert results["queue"]["delivery"] == "at-least-once-idempotent"
    assert test["options"]["idempotent"] is True and test["workload"]["delivery"] == "at-least-once-idempotent"


def test_exactly_once_seeds_are_checked_as_exactly_once_and_idempotent_is_refused_with_it(tmp_path, capsys):
    results, test = one_valid_fault_free_seed(["--delivery", "exactly-once"], tmp_path, capsys)
    assert results["queue"]["delivery"] == "exactly-once"
    assert test["options"]["delivery"] == "exactly-once" and test["workload"]["delivery"] == "exactly-once"
    with pytest.raises(SystemExit) as exit_:
        cli.main(["sim", "--idempotent", "--delivery", "exactly-once", "--store", str(tmp_path)])
    assert exit_.value.code == 254
    assert "--idempotent goes with --delivery at-least-once" in capsys.readouterr().err
