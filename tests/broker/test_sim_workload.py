"""The simulated queue workload (broker/sim/workload.py): the standard history, the same bytes from the same seed.

One seed gives one history byte for byte, in this process and in a child
interpreter started with another hash seed (`python -m broker.sim`); another
seed gives another. The ops have the shapes of workloads/queue.py, so the real
queue checker judges them: ok sends carry `[offset, value]`, polls
`{key: [[offset, value], ...]}` with the high watermarks they saw, and the
final poll the listed high watermarks of every key.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import subprocess
import sys

from broker.sim.workload import SimOptions, simulate

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_one_seed_gives_one_history_in_two_processes_and_another_seed_another(tmp_path):
    text, summary = simulate(SimOptions(seed=4, duration_s=12.0))
    digest = hashlib.sha256(text.encode()).hexdigest()
    assert summary["unhandled"] == [], summary["unhandled"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTHONHASHSEED", None)
    child = subprocess.run([sys.executable, "-m", "broker.sim", "--seed", "4", "--duration-s", "12", "--history",
                            str(tmp_path / "h.jsonl")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stderr[-3000:]
    other = json.loads(child.stdout.strip().splitlines()[-1])
    assert other["history_sha256"] == digest
    assert hashlib.sha256((tmp_path / "h.jsonl").read_bytes()).hexdigest() == digest
    different, _ = simulate(SimOptions(seed=5, duration_s=12.0))
    assert hashlib.sha256(different.encode()).hexdigest() != digest


def test_the_history_has_the_queue_workloads_shapes_and_the_queue_checker_finds_it_valid():
    from checkers.history import History
    from checkers.queue import check

    text, _ = simulate(SimOptions(seed=2, duration_s=20.0, faults=("crash",)))
    ops = [json.loads(line) for line in text.splitlines()]
    sends = [op for op in ops if op["f"] == "send" and op["type"] == "ok"]
    assert sends and all(len(op["value"][0][2]) == 2 for op in sends)
    polls = [op for op in ops if op["f"] == "poll" and op["type"] == "ok" and op["value"][0][1]]
    assert polls and all("high-watermarks" in op for op in polls)
    final = ops[-1]
    assert final["f"] == "poll" and final["final"] is True and set(final["listed-high-watermarks"]) == {"0", "1", "2"}
    assert {op["f"] for op in ops if op["process"] == "nemesis"} == {"kill", "start"}
    history = History.from_dicts(ops)
    result = check(history, delivery="at-least-once", acks="all")
    assert result["valid"] is True, result["anomaly_types"]
    assert result["stats"]["unseen"] == 0


def test_a_power_cut_of_the_whole_cluster_keeps_what_was_fsynced_and_shows_a_skipped_fsync_as_lost_records():
    # One power fault at 4 s (every node down 2 s, then restarted from its simulated disk). A broker that fsyncs each
    # message before acknowledging it (log.flush.interval.messages=1) loses no acknowledged write; with the planted
    # logquake.debug.skip.fsync the flush moves the recovery point without an fsync, so the writes acknowledged since
    # the last segment roll are gone from every replica at once: acknowledged values missing from the final reads
    # (lost-write), or their offsets handed to new writes after the restart (inconsistent-offsets). A fresh seed each
    # run, printed for replay.
    import random

    from checkers.history import History
    from checkers.queue import check

    from broker.sim.workload import Fault

    seed = random.randrange(1 << 31)
    print(f"seed {seed} (drawn at random)")
    schedule = (Fault(at_s=4.0, kind="power", node=1, hold_s=2.0),)
    verdicts = {}
    for name, properties in (("fsynced", {"log.flush.interval.messages": "1"}),
                             ("skipped", {"log.flush.interval.messages": "1", "logquake.debug.skip.fsync": "true"})):
        text, summary = simulate(SimOptions(seed=seed, duration_s=10.0, schedule=schedule, properties=properties))
        ops = [json.loads(line) for line in text.splitlines()]
        assert [(op["f"], op["value"]) for op in ops if op["process"] == "nemesis"] == [
            ("kill", [1, 2, 3]), ("kill", {"killed": [1, 2, 3]}), ("start", [1, 2, 3]), ("start", {"started": [1, 2, 3]})]
        assert summary["unhandled"] == [], summary["unhandled"]
        verdicts[name] = check(History.from_dicts(ops), delivery="at-least-once", acks="all")
    assert verdicts["fsynced"]["valid"] is True, verdicts["fsynced"]["anomaly_types"]
    assert verdicts["skipped"]["valid"] is False
    assert {"lost-write", "inconsistent-offsets"} & set(verdicts["skipped"]["anomaly_types"]), verdicts["skipped"]
