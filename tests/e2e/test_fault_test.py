"""`logquake test` end to end: real broker processes, real clients, real faults, the real checker."""

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import leftovers_of, run_logquake

pytestmark = pytest.mark.e2e


def _run_dir(store: Path) -> Path:
    latest = store / "latest"
    assert latest.is_symlink(), f"no store/latest in {store}"
    return latest.resolve()


def test_single_node_at_least_once_under_kill_and_pause_is_valid(store, backend):
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "test", "--backend", backend, "--nodes", "1",
                             "--nemesis", "kill,pause",
                             "--nemesis-interval", "5", "--time-limit", "15", "--rate", "100", "--concurrency", "3",
                             "--seed", "11", "--store", str(store), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, out + err
    assert "verdict: VALID" in out
    run = _run_dir(store)
    for name in ("test.json", "history.jsonl", "history.edn", "results.json", "schedule.json", "harness.log"):
        assert (run / name).is_file(), name
    results = json.loads((run / "results.json").read_text())
    assert results["valid"] is True
    assert results["counts"]["ok"] > 100
    test = json.loads((run / "test.json").read_text())
    assert test["options"]["seed"] == 11 and test["versions"]["confluent-kafka"]
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [op["index"] for op in history] == list(range(len(history)))
    nemesis_fs = {op["f"] for op in history if op["process"] == "nemesis"}
    assert {"kill", "start", "heal"} <= nemesis_fs
    finals = [op for op in history if op.get("final")]
    assert [op["f"] for op in finals] == ["assign", "poll"]  # the final reads: assign every key, read to the end
    assert list((run / "nodes" / "n1").iterdir())
    assert leftovers_of(proc.pid, backend) == _nothing(backend)


def _nothing(backend: str) -> dict:
    return {"processes": [], "dirs": [], **({"docker": []} if backend == "docker" else {})}


def test_sigint_at_a_random_moment_leaves_nothing_behind(store, backend):
    rng = random.Random()
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "test", "--backend", backend, "--nodes", "1",
                             "--nemesis", "kill,pause,partition",
                             "--nemesis-interval", "3", "--time-limit", "30", "--rate", "50", "--concurrency", "2",
                             "--replication-factor", "1", "--store", str(store), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(rng.uniform(3, 12))
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, out + err  # UNKNOWN: interrupted, so no verdict
    assert leftovers_of(proc.pid, backend) == _nothing(backend), out + err
    run = _run_dir(store)
    assert (run / "history.jsonl").is_file()
    results = json.loads((run / "results.json").read_text())
    assert results["reason"] == "interrupted"


def test_an_external_broker_described_by_a_toml_file_is_tested_the_same_way(store, tmp_path):
    system = tmp_path / "external.toml"
    system.write_text(
        'name = "external-python-broker"\n'
        'start = "{python} -m broker --config /dev/null --override node.id={node_id} '
        '--override listeners=PLAINTEXT://{host}:{port} --override advertised.listeners=PLAINTEXT://{host}:{advertised_port} '
        '--override log.dirs={data_dir}/data"\n'
        'log_file = "{data_dir}/data/broker.log"\n'
        "max_nodes = 1\n"
    )
    out = run_logquake(["test", "--system", str(system), "--nodes", "1", "--nemesis", "kill,pause,partition",
                        "--nemesis-interval", "4", "--time-limit", "12", "--rate", "80", "--concurrency", "2",
                        "--seed", "5", "--store", str(store), "--quiet"])
    assert out.returncode == 0, out.stdout + out.stderr
    run = _run_dir(store)
    history = (run / "history.jsonl").read_text()
    assert '"grudge"' in history  # client partitions hit the external node too
    too_many = run_logquake(["test", "--system", str(system), "--nodes", "3", "--store", str(store), "--quiet"])
    assert too_many.returncode == 254
    assert "supports at most 1 node(s); asked for 3" in too_many.stderr


def test_bad_arguments_exit_254_and_name_the_flag():
    out = run_logquake(["test", "--nemesis", "partition,meteor"])
    assert out.returncode == 254
    assert "meteor" in out.stderr
    out = run_logquake(["test", "--rate", "-3"])
    assert out.returncode == 254
    assert "--rate" in out.stderr and "-3" in out.stderr
    out = run_logquake(["test", "--system", "/nonexistent.toml"])
    assert out.returncode == 254
    assert "no such file" in out.stderr


def test_kafka_python_clients_on_three_nodes_under_faults_are_valid(store, backend):
    out = run_logquake(["test", "--backend", backend, "--client", "kafka-python", "--time-limit", "15", "--seed", "4", "--store", str(store),
                        "--quiet"], timeout_s=300)
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    run = _run_dir(store)
    test = json.loads((run / "test.json").read_text())
    assert test["workload"]["client"] == "kafka-python" and test["versions"]["kafka-python"]
    assert json.loads((run / "results.json").read_text())["counts"]["ok"] > 100


def test_a_run_started_with_sigint_ignored_still_stops_cleanly_on_sigint(store):
    """A shell starts background jobs with SIGINT ignored; a campaign stops its runs with SIGINT."""
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "test", "--nodes", "1", "--nemesis", "none",
                             "--time-limit", "30", "--rate", "20", "--concurrency", "1", "--replication-factor", "1",
                             "--store", str(store), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    time.sleep(6)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, out + err
    assert json.loads((_run_dir(store) / "results.json").read_text())["reason"] == "interrupted"
    assert leftovers_of(proc.pid, "local") == _nothing("local"), out + err
