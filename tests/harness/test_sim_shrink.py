"""`logquake shrink` of a failing `logquake sim` seed (harness/sim_shrink.py).

What the tests show: a seed of 20 virtual seconds that catches the planted bug
`logquake.debug.ack.before.replication` (drawn at random until one fails: the
simulator catches it in about 93 of 100 seeds) shrinks within its budget to at
most 3 faults and a run no longer than the original; the first candidate (the
recorded schedule) replays the original history byte for byte; the written
command reproduces the same anomaly (exit 1); and shrink.json, schedule.json,
command.txt and shrink.html are written. A valid seed, or an anomaly the run
does not show, is refused with exit 254 before anything runs; a run whose
recorded schedule no longer shows its anomaly is refused with exit 254 after
that one candidate, and leaves no shrink folder behind.
"""

from __future__ import annotations

import json
import random
import shlex
import sys
from pathlib import Path

import pytest

from harness import cli

BUG = "logquake.debug.ack.before.replication=true"


def failing_seed(tmp_path, capsys) -> Path:
    """The run dir of the first of up to 4 random seeds that is INVALID with the bug planted."""
    for _ in range(4):
        seed = random.randrange(1, 2**31)
        print(f"seed {seed} (drawn at random)", file=sys.stderr)
        capsys.readouterr()
        code = cli.main(["sim", "--seed", str(seed), "--duration", "20s", "--broker-override", BUG,
                         "--store", str(tmp_path)])
        print(capsys.readouterr().out, file=sys.stderr)
        if code == 1:
            return (tmp_path / "sim" / "latest").resolve()
    pytest.fail("4 random seeds in a row missed ack.before.replication (the simulator catches it in about 93 of 100)")


@pytest.mark.slow
def test_a_failing_seed_shrinks_to_at_most_three_faults_and_the_command_reproduces_it(tmp_path, capsys):
    run_dir = failing_seed(tmp_path, capsys)
    original = json.loads((run_dir / "results.json").read_text())
    code = cli.main(["shrink", str(run_dir), "--budget", "4m"])
    out = capsys.readouterr().out
    print(out, file=sys.stderr)
    assert code == 0, out
    work = next(run_dir.glob("shrink-*"))
    result = json.loads((work / "shrunk.json").read_text())
    assert result["anomaly"] in original["queue"]["anomaly_types"]
    assert result["replayed_byte_for_byte"] is True
    assert result["candidates"][0]["history_sha256"] == original["simulation"]["history_sha256"]
    assert result["shrunk"]["events"] <= min(3, result["original"]["events"]), result["shrunk"]
    assert result["shrunk"]["duration_s"] <= 20.0
    assert json.loads((work / "schedule.json").read_text()) == result["schedule"]
    assert (work / "shrink.html").read_text().count("<table>") == 2
    command = (work / "command.txt").read_text().strip()
    assert command == result["command"] and f"--schedule {work / 'schedule.json'}" in command
    argv = shlex.split(command)
    assert argv[:2] == ["logquake", "sim"]
    code = cli.main(argv[1:] + ["--store", str(tmp_path / "again")])
    line = capsys.readouterr().out
    assert code == 1 and result["anomaly"] in line, line


def test_a_run_that_cannot_be_shrunk_is_refused_with_254_and_leaves_nothing_in_its_run_dir(tmp_path, capsys):
    # a valid seed, or an anomaly it does not show: refused before anything runs
    seed = random.randrange(1, 2**31)
    print(f"seed {seed} (drawn at random)", file=sys.stderr)
    assert cli.main(["sim", "--seed", str(seed), "--duration", "4s", "--faults", "none",
                     "--store", str(tmp_path)]) == 0
    run_dir = (tmp_path / "sim" / "latest").resolve()
    capsys.readouterr()
    assert cli.main(["shrink", str(run_dir)]) == 254
    assert "shows no anomaly" in capsys.readouterr().err
    assert cli.main(["shrink", str(run_dir), "--anomaly", "lost-write"]) == 254
    assert "does not show lost-write" in capsys.readouterr().err
    assert not list(run_dir.glob("shrink-*")) and len(list((tmp_path / "sim").iterdir())) == 2  # the run and latest
    # a recorded schedule that no longer shows the anomaly (as after a change to the broker; here results.json claims
    # one the valid run never had): refused after its one candidate, whose run stays in the store as every candidate's
    results = json.loads((run_dir / "results.json").read_text())
    results["valid"], results["queue"]["anomaly_types"] = False, ["lost-write"]
    (run_dir / "results.json").write_text(json.dumps(results))
    before = sorted(p.name for p in run_dir.iterdir())
    assert cli.main(["shrink", str(run_dir)]) == 254
    err = capsys.readouterr().err
    assert "no longer shows lost-write" in err and "nothing to shrink from" in err, err
    assert sorted(p.name for p in run_dir.iterdir()) == before, "the refused shrink left something in the run dir"
    assert len(list((tmp_path / "sim").iterdir())) == 3  # the run, latest and the one candidate's run
