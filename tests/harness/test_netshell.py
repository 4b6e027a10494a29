"""Tests of harness/netshell.py: the exact commands, bad input, and the rules' effect in a private network namespace."""

import shlex
import subprocess
import sys
import textwrap

import pytest

from harness import netshell
from harness.netshell import CHAIN, NetShellError

ADDRESSES = {"n1": "10.1.0.11", "n2": "10.1.0.12", "n3": "10.1.0.13"}


def test_drop_rules_for_a_grudge():
    grudge = {"n1": {"n3", "n2"}, "n2": {"n1"}}
    assert netshell.drop_rules_argv(grudge, "n1", ADDRESSES) == [
        ["iptables", "-w", "-A", CHAIN, "-s", "10.1.0.12", "-j", "DROP"],
        ["iptables", "-w", "-A", CHAIN, "-s", "10.1.0.13", "-j", "DROP"],
    ]
    assert netshell.drop_rules_argv(grudge, "n2", ADDRESSES) == [
        ["iptables", "-w", "-A", CHAIN, "-s", "10.1.0.11", "-j", "DROP"]]
    assert netshell.drop_rules_argv(grudge, "n3", ADDRESSES) == []


def test_a_node_never_cuts_itself():
    assert netshell.drop_rules_argv({"n1": ["n1"]}, "n1", ADDRESSES) == []


def test_client_cut_drops_the_client_listener_port():
    assert netshell.drop_rules_argv({"n1": ["client"]}, "n1", ADDRESSES, client_port=9093) == [
        ["iptables", "-w", "-A", CHAIN, "-p", "tcp", "--dport", "9093", "-j", "DROP"]]
    assert netshell.drop_rules_argv({"n1": ["client"]}, "n1", ADDRESSES, client_port=9093,
                                    client_address="10.1.0.1") == [
        ["iptables", "-w", "-A", CHAIN, "-p", "tcp", "--dport", "9093", "-s", "10.1.0.1", "-j", "DROP"]]


def test_client_cut_without_port_is_refused():
    with pytest.raises(NetShellError, match="no client_port"):
        netshell.drop_rules_argv({"n1": ["client"]}, "n1", ADDRESSES)


def test_unknown_address_is_named():
    with pytest.raises(NetShellError, match="'n9'"):
        netshell.drop_rules_argv({"n1": ["n9"]}, "n1", ADDRESSES)


def test_bad_client_port_is_named():
    with pytest.raises(NetShellError, match="client_port .* got 70000"):
        netshell.drop_rules_argv({}, "n1", ADDRESSES, client_port=70000)


def test_netem_full():
    assert netshell.netem_argv("eth0", 100, 10, loss=0.05, duplicate=0.01, reorder=0.25) == [
        "tc", "qdisc", "replace", "dev", "eth0", "root", "netem", "limit", "100000", "delay", "100ms", "10ms",
        "loss", "5%", "duplicate", "1%", "reorder", "25%"]


def test_netem_loss_only_and_verbs():
    assert netshell.netem_argv("eth0", 0, loss=0.5, verb="add")[2:] == [
        "add", "dev", "eth0", "root", "netem", "limit", "100000", "loss", "50%"]
    assert netshell.netem_argv("eth1", 5, verb="change")[2:6] == ["change", "dev", "eth1", "root"]


@pytest.mark.parametrize("kwargs, message", [
    ({"loss": 1.5}, "loss must be a fraction between 0 and 1, got 1.5"),
    ({"duplicate": -0.1}, "duplicate must be a fraction"),
    ({"latency_ms": -1}, "latency_ms must be a number of milliseconds >= 0, got -1"),
    ({"latency_ms": 0, "jitter_ms": 5}, "needs latency_ms > 0"),
    ({"latency_ms": 0, "reorder": 0.1}, "reorder=0.1 needs latency_ms > 0"),
    ({"verb": "del"}, "netem verb must be one of"),
])
def test_netem_bad_input(kwargs, message):
    args = {"device": "eth0", "latency_ms": 10, **kwargs}
    with pytest.raises(NetShellError, match=message.replace("(", r"\(")):
        netshell.netem_argv(**args)


def test_netem_bad_device():
    with pytest.raises(NetShellError, match="device"):
        netshell.netem_argv("eth0; rm -rf /", 10)
    with pytest.raises(NetShellError, match="device"):
        netshell.netem_delete_shell("")


def test_loss_rules():
    assert netshell.loss_rules_argv(0.0) == [["iptables", "-w", "-F", netshell.LOSS_CHAIN]]
    assert netshell.loss_rules_argv(0.25)[1] == ["iptables", "-w", "-A", netshell.LOSS_CHAIN, "-m", "statistic",
                                                 "--mode", "random", "--probability", "0.25", "-j", "DROP"]
    with pytest.raises(NetShellError, match="loss"):
        netshell.loss_rules_argv(2)


def test_signal_shell():
    assert netshell.signal_pid_file_shell("/d/node.pid", "SIGKILL") == \
        '[ -s /d/node.pid ] && kill -s KILL -- -"$(cat /d/node.pid)" 2>/dev/null'
    with pytest.raises(NetShellError, match="signal must be one of"):
        netshell.signal_pid_file_shell("/d/node.pid", "HUP; reboot")


def test_background_process_lifecycle(tmp_path):
    """Start, pause, resume, kill through the shell strings, on this machine."""
    pid_file, log_file = str(tmp_path / "node.pid"), str(tmp_path / "out.log")
    start = netshell.start_in_background_shell([sys.executable, "-c", "import time; print('up', flush=True); "
                                                "time.sleep(60)"], pid_file, log_file, cwd=str(tmp_path),
                                               env={"GREETING": "hi there"})
    subprocess.run(["sh", "-c", start], check=True, timeout=10)
    running = netshell.pid_file_running_shell(pid_file)
    try:
        assert subprocess.run(["sh", "-c", running]).returncode == 0
        pgid = int(open(pid_file).read())
        # a signal is delivered after kill returns: wait for the state to change (the test flaked under load)
        assert subprocess.run(["sh", "-c", netshell.signal_pid_file_shell(pid_file, "STOP")]).returncode == 0
        assert _state_within(pgid, ("T",)) == "T"
        assert subprocess.run(["sh", "-c", netshell.signal_pid_file_shell(pid_file, "CONT")]).returncode == 0
        assert _state_within(pgid, ("S", "R")) in ("S", "R")
    finally:
        subprocess.run(["sh", "-c", netshell.signal_pid_file_shell(pid_file, "KILL")])
    for _ in range(100):
        if subprocess.run(["sh", "-c", running]).returncode != 0:
            break
        subprocess.run(["sleep", "0.05"])
    assert subprocess.run(["sh", "-c", running]).returncode != 0


def _state_within(pid: int, wanted: tuple[str, ...], timeout_s: float = 5.0) -> str:
    """The process's state once it is one of `wanted`, or the last state seen after `timeout_s`."""
    import time

    deadline = time.monotonic() + timeout_s
    state = _state(pid)
    while state not in wanted and time.monotonic() < deadline:
        time.sleep(0.02)
        state = _state(pid)
    return state


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def test_rules_cut_and_heal_in_a_network_namespace():
    """The commands, run in a fresh network namespace, cut exactly the named source, and heal undoes it."""
    rules = netshell.drop_rules_argv({"n1": {"n2", "client"}}, "n1", {"n2": "127.0.0.2"}, client_port=9400)
    script = textwrap.dedent(f"""
        set -e
        ip link set lo up
        {netshell.chain_setup_shell()}
        {netshell.chain_setup_shell()}
        {"; ".join(shlex.join(r) for r in rules)}
        python3 - <<'PY'
        import socket
        def connects(src, port):
            listener = socket.create_server(("127.0.0.1", port))
            try:
                s = socket.socket(); s.settimeout(0.5); s.bind((src, 0))
                try:
                    s.connect(("127.0.0.1", port)); return True
                except OSError:
                    return False
                finally:
                    s.close()
            finally:
                listener.close()
        print("cut", connects("127.0.0.2", 9300), connects("127.0.0.3", 9300), connects("127.0.0.3", 9400))
        PY
        {netshell.heal_shell("lo")}
        python3 -c 'import socket; l = socket.create_server(("127.0.0.1", 9400)); s = socket.socket(); s.bind(("127.0.0.2", 0)); s.settimeout(0.5); s.connect(("127.0.0.1", 9400)); print("healed")'
        {netshell.chain_teardown_shell()}
        iptables -S | grep -c LOGQUAKE || true
    """)
    out = subprocess.run(["unshare", "-n", "sh", "-c", script], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:3] == ["cut False True False", "healed", "0"]
