"""At-least-once on the Docker backend stays valid under packet faults (netem; on a kernel without netem, the
iptables loss fallback), with partitions, and the run leaves no container or network behind."""

import json
import subprocess
import sys

import pytest

from tests.e2e.conftest import docker_leftovers_of

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.slow]


def test_packet_loss_and_latency_keep_at_least_once_valid(tmp_path, docker_node_image):
    store = tmp_path / "store"
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "test", "--backend", "docker", "--nodes", "3",
                             "--nemesis", "packet,partition", "--nemesis-interval", "4", "--time-limit", "30",
                             "--seed", "3", "--store", str(store), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, out + err[-3000:]
    run = (store / "latest").resolve()
    results = json.loads((run / "results.json").read_text())
    assert results["valid"] is True
    assert results["counts"]["ok"] > 100
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    packet_results = [op["value"] for op in history
                      if op["process"] == "nemesis" and op["f"] == "start-packet" and "at_s" not in op["value"]]
    assert packet_results, "no packet fault was scheduled"
    # a fault in force: netem applied (no error), or the loss-only fallback on a kernel without netem
    in_force = [v for v in packet_results if "error" not in v or "was applied, by iptables" in v["error"]]
    assert in_force, packet_results
    assert docker_leftovers_of(proc.pid) == []
