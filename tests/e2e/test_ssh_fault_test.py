"""`logquake test --backend ssh` end to end, against sshd in three containers reached on 127.0.0.1.

A short at-least-once run with partition and kill faults must be valid and
leave no broker, iptables rule, qdisc or run dir on the hosts; bad input (a
typo in the nodes file, an unknown host key without the flag, a wrong key, an
unreachable host) must fail with exit 254 before any node starts; a harness
killed with SIGKILL while a partition and a pause are in effect leaves them on
the hosts until `logquake heal` removes them.
"""

import json
import re

import pytest

from harness.ledger import read_ledger
from tests.e2e.conftest import run_logquake
from tests.e2e.test_heal import kill_harness_with_faults_in_effect
from tests.harness.test_ssh_cluster import host_state, start_ssh_containers

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def ssh_nodes(tmp_path_factory):
    nodes_file, kh, cleanup, info = start_ssh_containers(tmp_path_factory.mktemp("ssh-e2e"))
    try:
        yield nodes_file, kh, info
    finally:
        cleanup()


def test_partition_and_kill_at_least_once_is_valid_and_leaves_nothing(ssh_nodes, tmp_path):
    nodes_file, _, info = ssh_nodes
    store = tmp_path / "store"
    proc = run_logquake(["test", "--backend", "ssh", "--nodes-file", str(nodes_file), "--nemesis", "partition,kill",
                         "--nemesis-interval", "4", "--time-limit", "20", "--rate", "60", "--concurrency", "3",
                         "--seed", "5", "--store", str(store), "--quiet"], timeout_s=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "verdict: VALID" in proc.stdout
    run = (store / "latest").resolve()
    results = json.loads((run / "results.json").read_text())
    assert results["valid"] is True
    assert results["counts"]["ok"] > 100
    options = json.loads((run / "test.json").read_text())["options"]
    assert options["backend"] == "ssh" and options["nodes_file"] == str(nodes_file.resolve())
    nemesis_ops = [op for op in map(json.loads, (run / "history.jsonl").read_text().splitlines())
                   if op["process"] == "nemesis"]
    assert any(op["f"] == "start-partition" and "grudge" in op["value"] for op in nemesis_ops), nemesis_ops
    assert any(op["f"] == "kill" and op["value"].get("killed") for op in nemesis_ops), nemesis_ops
    for node in ("n1", "n2", "n3"):
        assert (run / "nodes" / node / "stdout.log").is_file()
    for container in info["containers"]:
        assert host_state(container) == {"processes": "", "iptables": "", "qdisc": "", "runs": "", "mounts": ""}
    # credentials never reach the store: no private key material in any file written
    key_body = info["key"].read_text().splitlines()[1]
    for path in run.rglob("*"):
        if path.is_file():
            assert key_body not in path.read_text(errors="replace"), path


def _bad_run(nodes_file, tmp_path, *extra):
    return run_logquake(["test", "--backend", "ssh", "--nodes-file", str(nodes_file), "--nemesis", "partition,kill",
                         "--time-limit", "5", "--store", str(tmp_path / "store"), "--quiet", *extra], timeout_s=120)


def _assert_refused(proc, tmp_path, message):
    assert proc.returncode == 254, proc.stdout + proc.stderr
    assert re.search(message, proc.stderr), proc.stderr
    assert not (tmp_path / "store").exists(), "nothing may run before the hosts are checked"


def test_a_typo_in_the_nodes_file(ssh_nodes, tmp_path):
    nodes_file, _, _ = ssh_nodes
    bad = tmp_path / "typo.toml"
    bad.write_text(nodes_file.read_text().replace("address =", "adress =", 1))
    _assert_refused(_bad_run(bad, tmp_path), tmp_path,
                    r"typo.toml \(line \d+\): node 'n1': unknown key 'adress'; accepted keys of a \[\[node\]\] are")


def test_an_unknown_host_key_needs_the_flag(ssh_nodes, tmp_path):
    nodes_file, kh, info = ssh_nodes
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    text = nodes_file.read_text().replace(f'known_hosts = "{kh}"', f'known_hosts = "{empty}"')
    unknown = tmp_path / "unknown.toml"
    unknown.write_text(text)
    _assert_refused(_bad_run(unknown, tmp_path), tmp_path,
                    r"the host key of n1 \(root@127.0.0.1:\d+\) is not in known_hosts .*--accept-new-host-keys")
    for container in info["containers"]:
        assert host_state(container)["runs"] == ""


def test_a_wrong_key(ssh_nodes, tmp_path):
    import subprocess

    nodes_file, _, info = ssh_nodes
    wrong = tmp_path / "wrong"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong)], check=True)
    bad = tmp_path / "wrong.toml"
    bad.write_text(nodes_file.read_text().replace(str(info["key"]), str(wrong)))
    _assert_refused(_bad_run(bad, tmp_path), tmp_path,
                    rf"authentication as 'root' on n1 .* failed with key file {re.escape(str(wrong))}")


def test_an_unreachable_host(ssh_nodes, tmp_path):
    import socket

    nodes_file, _, _ = ssh_nodes
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    text = nodes_file.read_text()
    first_ssh = re.search(r'ssh = "127.0.0.1:(\d+)"', text).group(0)
    bad = tmp_path / "unreachable.toml"
    bad.write_text(text.replace(first_ssh, f'ssh = "127.0.0.1:{closed_port}"'))
    _assert_refused(_bad_run(bad, tmp_path), tmp_path,
                    rf"cannot reach n1 \(root@127.0.0.1:{closed_port}\) over SSH")


def test_sigint_tears_the_hosts_down(ssh_nodes, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    nodes_file, _, info = ssh_nodes
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "test", "--backend", "ssh", "--nodes-file",
                             str(nodes_file), "--nemesis", "partition", "--nemesis-interval", "1", "--time-limit",
                             "120", "--rate", "20", "--concurrency", "2", "--store", str(tmp_path / "store"),
                             "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        # wait until the run is under way: brokers on every host and a partition rule in place at least once
        while not all(host_state(c)["processes"] for c in info["containers"]) or \
                not (tmp_path / "store" / "latest" / "history.jsonl").exists() or \
                '"start-partition"' not in (tmp_path / "store" / "latest" / "history.jsonl").read_text():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the run did not get under way"
            time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 2, out + err  # unknown: interrupted, the history is kept
    for container in info["containers"]:
        assert host_state(container) == {"processes": "", "iptables": "", "qdisc": "", "runs": "", "mounts": ""}


def test_logquake_heal_undoes_what_a_killed_harness_left_on_the_hosts(ssh_nodes, tmp_path):
    nodes_file, _, info = ssh_nodes
    pid, store, ledger = kill_harness_with_faults_in_effect(tmp_path, "ssh", "--nodes-file", str(nodes_file))
    left = [host_state(c) for c in info["containers"]]
    assert all(state["processes"] and state["runs"] for state in left), left
    assert any(state["iptables"] for state in left), left  # n1's partition rules
    out = run_logquake(["heal", str(store), "--json"], timeout_s=180)
    assert out.returncode == 0, out.stdout + out.stderr
    outcome = json.loads(out.stdout)
    assert [r["backend"] for r in outcome["runs"]] == ["ssh"], outcome
    assert outcome["runs"][0]["faults"][1].startswith("pause (pause) at 2.0 s on n2"), outcome
    for container in info["containers"]:
        assert host_state(container) == {"processes": "", "iptables": "", "qdisc": "", "runs": "", "mounts": ""}
    assert read_ledger(ledger).closed == "logquake heal"
    again = run_logquake(["heal", str(store), "--json"], timeout_s=120)
    assert again.returncode == 0, again.stdout + again.stderr
    # nothing of this store is left to heal; its "removed" may name a container of another test worker's docker
    # run tearing down as this heal looks (heal is host-wide for containers)
    assert json.loads(again.stdout)["runs"] == [], again.stdout
