"""bench/broker_throughput.py --peer at a tiny size, so that the peer comparison cannot rot: the peer here is a
second broker of ours started from its command line, as any Kafka-compatible binary would be, and the bench
prints both brokers' figures and the ratios, and leaves no peer process behind. Wrong flags are refused before
anything starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "broker_throughput.py"


def _run(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout)


def test_a_peer_broker_is_started_from_its_command_measured_beside_ours_and_stopped(tmp_path):
    properties = tmp_path / "peer.properties"
    properties.write_text("node.id=1\n")
    marker = f"peer-marker-{tmp_path.name}"  # finds the peer process afterwards, if it were left running
    command = (f"{sys.executable} -m broker --config {properties} --override listeners=PLAINTEXT://127.0.0.1:{{port}} "
               f"--override advertised.listeners=PLAINTEXT://127.0.0.1:{{port}} --override log.dirs={tmp_path / marker}")
    out = _run("--messages", "3000", "--passes", "1", "--partitions", "2", "--peer", command, "--peer-name", "twin")
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert any(line.startswith("twin ") and line.split()[1] == "2" for line in lines), out.stdout
    assert any(line.startswith("logquake ") and line.split()[1] == "2" for line in lines), out.stdout
    ratio = [line for line in lines if "ratio logquake/twin at 2 partition(s)" in line]
    assert len(ratio) == 1 and "produce" in ratio[0] and "consume" in ratio[0], out.stdout
    left = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    assert left.stdout.strip() == "", f"the peer is still running: {left.stdout}"


def test_a_peer_command_without_a_port_is_refused_before_anything_starts():
    out = _run("--peer", "tansu broker --listener-url tcp://127.0.0.1:9092", timeout=60)
    assert out.returncode == 2
    assert "has no {port}" in out.stderr


def test_a_peer_program_that_is_not_there_is_refused():
    out = _run("--peer", "/nonexistent/broker --port {port}", timeout=60)
    assert out.returncode == 2
    assert "not found or not executable" in out.stderr


def test_peer_and_security_are_exclusive():
    out = _run("--peer", "tansu --port {port}", "--security", "tls", timeout=60)
    assert out.returncode == 2
    assert "--peer and --security" in out.stderr
