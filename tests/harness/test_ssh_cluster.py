"""The SSH backend against sshd in the project's own containers, reached through ports published on 127.0.0.1.

`ssh_nodes` starts three containers of the node base image on a dedicated,
labelled network, each running `sshd -D` with fresh host keys, a generated
ed25519 key in root's authorized_keys, NET_ADMIN (iptables), and ports 22 and
9092 published on 127.0.0.1; it writes a known_hosts and a nodes file, and
removes the containers and the network in its finally block. The tests then
drive `SshCluster` through a whole life cycle and check that teardown leaves
no broker, iptables rule, qdisc or run dir on the hosts.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from nodecontrol.control import NodeControlError

BASE_IMAGE = "logquake-base:bookworm"
LABEL = "logquake.ssh-test"
CLIENT_PORT = 9092

SSHD_COMMAND = (
    "rm -f /etc/ssh/ssh_host_* && ssh-keygen -A -q && mkdir -p /run/sshd /root/.ssh && "
    "printf '%s\\n' \"$AUTHORIZED_KEY\" > /root/.ssh/authorized_keys && chmod 700 /root/.ssh && "
    "chmod 600 /root/.ssh/authorized_keys && exec /usr/sbin/sshd -D -e -o PasswordAuthentication=no"
)


def _image(client) -> str:
    """The node image if `logquake docker build` made one, else the base image (sshd and python3 are in both)."""
    import docker.errors

    try:
        from harness.docker_command import node_image_tag

        tag = node_image_tag()
        client.images.get(tag)
        return tag
    except (ImportError, docker.errors.ImageNotFound, AttributeError):
        pass  # no node image yet: the base image has sshd too
    try:
        client.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        subprocess.run(["logquake", "docker", "base"], check=True)
    return BASE_IMAGE


def _wait_for_sshd(port: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), 1) as s:
                s.settimeout(1)
                if s.recv(4).startswith(b"SSH-"):
                    return
        except OSError:
            pass  # sshd not answering yet
        if time.monotonic() > deadline:
            raise RuntimeError(f"sshd on 127.0.0.1:{port} did not answer within {timeout_s} s")
        time.sleep(0.1)


def start_ssh_containers(tmp_path: Path, count: int = 3, run_dir: str = "/srv/logquake"):
    """Start `count` sshd containers; returns (nodes file path, known_hosts path, cleanup callable, info)."""
    import docker

    client = docker.from_env()
    image = _image(client)
    tag = uuid.uuid4().hex[:8]
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "logquake-test", "-f", str(key)],
                   check=True)
    labels = {LABEL: f"{os.getpid()}-{tag}"}
    network = client.networks.create(f"logquake-ssh-{tag}", driver="bridge", labels=labels)
    containers = []

    def cleanup() -> None:
        for c in containers:
            with contextlib.suppress(docker.errors.APIError):
                c.remove(force=True)
        with contextlib.suppress(docker.errors.APIError):
            network.remove()
        client.close()

    try:
        for i in range(1, count + 1):
            containers.append(client.containers.run(
                image, ["sh", "-c", SSHD_COMMAND], name=f"logquake-ssh-{tag}-n{i}", hostname=f"n{i}",
                detach=True, init=True, cap_add=["NET_ADMIN", "SYS_ADMIN"], devices=["/dev/fuse"],
                network=network.name, labels=labels,
                environment={"AUTHORIZED_KEY": (tmp_path / "id_ed25519.pub").read_text().strip()},
                ports={"22/tcp": ("127.0.0.1", None), f"{CLIENT_PORT}/tcp": ("127.0.0.1", None)}))
        known_hosts, nodes = [], []
        for i, c in enumerate(containers, 1):
            c.reload()
            ports = c.attrs["NetworkSettings"]["Ports"]
            ssh_port = int(ports["22/tcp"][0]["HostPort"])
            client_port = int(ports[f"{CLIENT_PORT}/tcp"][0]["HostPort"])
            address = c.attrs["NetworkSettings"]["Networks"][network.name]["IPAddress"]
            _wait_for_sshd(ssh_port)
            host_key = c.exec_run(["cat", "/etc/ssh/ssh_host_ed25519_key.pub"]).output.decode().split()
            known_hosts.append(f"[127.0.0.1]:{ssh_port} {host_key[0]} {host_key[1]}\n")
            nodes.append(f'[[node]]\nname = "n{i}"\nssh = "127.0.0.1:{ssh_port}"\naddress = "{address}"\n'
                         f'client = "127.0.0.1:{client_port}"\nclient_listen = "0.0.0.0:{CLIENT_PORT}"\n')
        kh = tmp_path / "known_hosts"
        kh.write_text("".join(known_hosts))
        nodes_file = tmp_path / "nodes.toml"
        nodes_file.write_text(f'user = "root"\nkey_file = "{key}"\nknown_hosts = "{kh}"\nrun_dir = "{run_dir}"\n\n'
                              + "\n".join(nodes))
        return nodes_file, kh, cleanup, {"containers": containers, "key": key, "image": image}
    except BaseException:
        cleanup()
        raise


@pytest.fixture(scope="module")
def ssh_nodes(tmp_path_factory):
    nodes_file, kh, cleanup, info = start_ssh_containers(tmp_path_factory.mktemp("ssh-nodes"))
    try:
        yield nodes_file, kh, info
    finally:
        cleanup()


def host_state(container) -> dict[str, str]:
    """What a run may leave on a host: broker processes, our iptables chains, a netem qdisc, run dirs."""
    def sh(script: str) -> str:
        return container.exec_run(["sh", "-c", script]).output.decode()

    return {
        "processes": sh("ps -eo args | grep -E '[b]roker --config|[n]ode_launch|[f]aultfs' || true").strip(),
        "iptables": sh("iptables -w -S | grep -i logquake || true").strip(),
        "qdisc": sh("tc qdisc show | grep -i netem || true").strip(),
        "runs": sh("ls /srv/logquake/runs 2>/dev/null || true").strip(),
        "mounts": sh("grep -i fuse /proc/mounts | grep -v fusectl || true").strip(),
    }


@pytest.mark.docker
@pytest.mark.slow
def test_a_cluster_life_cycle_leaves_nothing_behind(ssh_nodes, tmp_path):
    from harness.backends.ssh import SshCluster
    from harness.nodes_file import load_nodes_file
    from harness.system import logquake_broker

    nodes_file_path, _, info = ssh_nodes
    nodes_file = load_nodes_file(str(nodes_file_path))
    cluster = SshCluster(logquake_broker(node_count=3), nodes_file)
    try:
        cluster.setup()
        assert all(cluster.is_running(n) for n in cluster.nodes)
        # a client on this host reaches every broker through its published port
        for node in cluster.nodes:
            host, port = cluster.node_bootstrap(node).rsplit(":", 1)
            socket.create_connection((host, int(port)), 2).close()
        n1, n2, n3 = info["containers"]
        cluster.partition({"n1": {"n2", "client"}})
        rules = n1.exec_run(["iptables", "-w", "-S", "LOGQUAKE"]).output.decode()
        n2_address = nodes_file.nodes[1].address
        assert f"-A LOGQUAKE -s {n2_address}/32 -j DROP" in rules
        assert f"-A LOGQUAKE -p tcp -m tcp --dport {CLIENT_PORT} -j DROP" in rules
        def connects(container, address: str) -> bool:
            probe = f"import socket; socket.create_connection(('{address}', 22), 1)"
            return container.exec_run(["python3", "-c", probe]).exit_code == 0

        n1_address, n3_address = nodes_file.nodes[0].address, nodes_file.nodes[2].address
        # dropping n2's packets on n1 cuts TCP both ways (the SYN-ACK or the SYN is lost); n3 is untouched
        assert not connects(n2, n1_address) and not connects(n1, n2_address)
        assert connects(n3, n1_address) and connects(n1, n3_address)
        # the probes measure the same: n2 -> n1 and client -> n1 silent, n3 -> n1 answering
        assert cluster.reaches([("n2", "n1"), ("client", "n1"), ("n3", "n1"), ("client", "n2")], 0.5) == {
            ("n2", "n1"): False, ("client", "n1"): False, ("n3", "n1"): True, ("client", "n2"): True}
        cluster.heal()
        assert "-A LOGQUAKE" not in n1.exec_run(["iptables", "-w", "-S", "LOGQUAKE"]).output.decode()
        assert connects(n2, n1_address)
        cluster.pause("n2")
        assert cluster.is_paused("n2") and cluster.is_running("n2") and cluster.observed_state("n2") == "paused"
        cluster.resume("n2")
        assert cluster.observed_state("n2") == "running"
        cluster.kill("n3")
        assert not cluster.is_running("n3") and cluster.observed_state("n3") == "gone"
        cluster.start("n3")
        cluster.wait_ready(["n3"])
        assert cluster.is_running("n3")
        result = cluster.exec("n1", ["sh", "-c", "echo hello; exit 4"])
        assert (result.exit_status, result.stdout) == (4, "hello\n")
        collected = cluster.collect(str(tmp_path / "nodes"))
        assert sorted(Path(p).relative_to(tmp_path / "nodes").as_posix() for p in collected if
                      p.endswith("stdout.log")) == ["n1/stdout.log", "n2/stdout.log", "n3/stdout.log"]
    finally:
        cluster.teardown()
    for container in info["containers"]:
        assert host_state(container) == {"processes": "", "iptables": "", "qdisc": "", "runs": "", "mounts": ""}
    # the installed version stays for the next run
    assert info["containers"][0].exec_run(["sh", "-c", "ls /srv/logquake/*/installed"]).exit_code == 0


@pytest.mark.docker
@pytest.mark.slow
def test_a_missing_tool_is_named(ssh_nodes):
    from harness.backends.ssh import SshCluster
    from harness.nodes_file import load_nodes_file
    from harness.system import logquake_broker

    nodes_file_path, _, info = ssh_nodes
    container = info["containers"][0]
    container.exec_run(["mv", "/usr/sbin/tc", "/usr/sbin/tc.hidden"])
    try:
        cluster = SshCluster(logquake_broker(node_count=3), load_nodes_file(str(nodes_file_path)))
        with pytest.raises(NodeControlError, match=r"n1 \(root@127.0.0.1:\d+\) lacks tc; node control needs"):
            cluster.check_access()
        cluster.teardown()
    finally:
        container.exec_run(["mv", "/usr/sbin/tc.hidden", "/usr/sbin/tc"])


@pytest.mark.docker
@pytest.mark.slow
def test_disk_and_clock_faults_and_loss_without_netem(ssh_nodes):
    from harness.backends.ssh import SshCluster
    from harness.nodes_file import load_nodes_file
    from harness.system import logquake_broker

    nodes_file_path, _, info = ssh_nodes
    cluster = SshCluster(logquake_broker(node_count=3), load_nodes_file(str(nodes_file_path)))
    cluster.enable_faults({"disk", "clock"})
    n1 = info["containers"][0]
    try:
        cluster.setup()
        log_dir = f"{cluster.node_dir('n1')}/logs"
        assert f" {log_dir} fuse" in n1.exec_run(["cat", "/proc/mounts"]).output.decode()
        status = cluster.disk("n1", "lazy")
        assert status["modes"] == ["lazy"], status
        assert cluster.disk("n1", "heal")["modes"] == []
        cluster.clock("n1", 3600.0)
        assert n1.exec_run(["cat", f"{cluster.node_dir('n1')}/faketime"]).output.decode() == "+3600.000\n"
        broker_pid = n1.exec_run(["cat", f"{cluster.node_dir('n1')}/broker.pid"]).output.decode().strip()
        environ = n1.exec_run(["cat", f"/proc/{broker_pid}/environ"]).output.decode()
        assert "FAKETIME_TIMESTAMP_FILE=" in environ and "libfaketime" in environ
        measured = cluster.clock_offset("n1")  # the clock probe's measurement, made on the host
        assert measured["preloaded"] is True and abs(measured["offset_s"] - 3600) < 0.5, measured
        cluster.kill("n1")
        assert f" {log_dir} fuse" not in n1.exec_run(["cat", "/proc/mounts"]).output.decode()
        cluster.start("n1")
        cluster.wait_ready(["n1"])
        cluster.stop("n2")
        assert not cluster.is_running("n2")
        with pytest.raises(NodeControlError, match="disk 'pause' on n2: the node is not running"):
            cluster.disk("n2", "pause")
        cluster.start("n2")
        netem_works = n1.exec_run(["sh", "-c", "tc qdisc add dev lo root netem delay 0ms && "
                                                 "tc qdisc del dev lo root"]).exit_code == 0
        if netem_works:
            cluster.slow_net(50, 10, 0.1)
            assert "netem" in n1.exec_run(["tc", "qdisc", "show"]).output.decode()
        else:
            with pytest.raises(NodeControlError, match="its kernel has no netem qdisc"):
                cluster.slow_net(50)
            cluster.slow_net(0, loss=0.25)
            rules = n1.exec_run(["iptables", "-w", "-S", "LOGQUAKE-LOSS"]).output.decode()
            assert "--probability 0.25" in rules, rules
        cluster.heal()
        assert "-A LOGQUAKE" not in n1.exec_run(["iptables", "-w", "-S"]).output.decode()
    finally:
        cluster.teardown()
    for container in info["containers"]:
        assert host_state(container) == {"processes": "", "iptables": "", "qdisc": "", "runs": "", "mounts": ""}


CRASHING_HARNESS = """
import os, sys
from harness.backends.ssh import SshCluster
from harness.nodes_file import load_nodes_file
from harness.system import logquake_broker

cluster = SshCluster(logquake_broker(node_count=3), load_nodes_file(sys.argv[1]))
cluster.setup()
print(cluster.run_path, flush=True)
os.kill(os.getpid(), 9)  # a harness that dies without teardown
"""


@pytest.mark.docker
@pytest.mark.slow
def test_the_next_setup_removes_what_a_crashed_harness_left(ssh_nodes, tmp_path):
    import sys

    from harness.backends.ssh import SshCluster
    from harness.nodes_file import load_nodes_file
    from harness.system import logquake_broker

    nodes_file_path, _, info = ssh_nodes
    crashed = subprocess.run([sys.executable, "-c", CRASHING_HARNESS, str(nodes_file_path)], capture_output=True,
                             text=True, timeout=300, cwd=Path(__file__).resolve().parents[2])
    assert crashed.returncode == -9, crashed.stderr
    stale_run = crashed.stdout.strip().splitlines()[-1]
    n1 = info["containers"][0]
    assert host_state(n1)["processes"] and host_state(n1)["runs"] == stale_run.rsplit("/", 1)[1]
    cluster = SshCluster(logquake_broker(node_count=3), load_nodes_file(str(nodes_file_path)))
    try:
        cluster.setup()
        for container in info["containers"]:
            state = host_state(container)
            assert state["runs"] == cluster.run_id, state
            assert len(state["processes"].splitlines()) == 1, state
    finally:
        cluster.teardown()
    for container in info["containers"]:
        assert host_state(container) == {"processes": "", "iptables": "", "qdisc": "", "runs": "", "mounts": ""}


# A stand-in for another broker: a TCP echo server (no braces: the start command is a format string)
ECHO_NODE = (
    "import socket, sys, threading\n"
    "host, port, log_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]\n"
    "open(log_path, 'a').write('echo node on %s:%d\\n' % (host, port))\n"
    "server = socket.create_server((host, port))\n"
    "def serve(conn):\n"
    "    with conn:\n"
    "        while True:\n"
    "            data = conn.recv(65536)\n"
    "            if not data:\n"
    "                return\n"
    "            conn.sendall(data)\n"
    "while True:\n"
    "    threading.Thread(target=serve, args=(server.accept()[0],), daemon=True).start()\n"
)


@pytest.mark.docker
@pytest.mark.slow
def test_a_described_broker_runs_on_the_hosts(ssh_nodes, tmp_path):
    import json
    import re

    from harness.backends.ssh import SshCluster
    from harness.nodes_file import load_nodes_file
    from harness.system import load_system

    nodes_file_path, _, info = ssh_nodes
    description = tmp_path / "echo.toml"
    description.write_text('name = "echo"\n'
                           f'start = ["{{python}}", "-c", {json.dumps(ECHO_NODE)}, "{{host}}", "{{port}}", '
                           '"{data_dir}/echo.log"]\nlog_file = "{data_dir}/echo.log"\nstop_timeout_s = 5\n'
                           "ready_timeout_s = 20\n")
    # the echo node has one listener, on the node's address, which this host reaches over the bridge
    text = nodes_file_path.read_text()
    text = re.sub(r'address = "([^"]+)"\nclient = "[^"]+"\nclient_listen = "[^"]+"',
                  lambda m: f'address = "{m.group(1)}"\nclient = "{m.group(1)}:{CLIENT_PORT}"', text)
    nodes = tmp_path / "nodes.toml"
    nodes.write_text(text)
    cluster = SshCluster(load_system(str(description)), load_nodes_file(str(nodes)))
    try:
        cluster.setup()
        for node in cluster.nodes:
            host, port = cluster.node_bootstrap(node).rsplit(":", 1)
            with socket.create_connection((host, int(port)), 2) as s:
                s.sendall(b"hi")
                assert s.recv(10) == b"hi"
        cluster.stop("n2")
        assert not cluster.is_running("n2")
        cluster.start("n2")
        cluster.wait_ready(["n2"])
        collected = cluster.collect(str(tmp_path / "nodes"))
        assert (tmp_path / "nodes" / "n2" / "echo.log").read_text().count("echo node on") == 2
        assert len([p for p in collected if p.endswith("echo.log")]) == 3
    finally:
        cluster.teardown()
    for container in info["containers"]:
        assert host_state(container)["runs"] == ""
        assert "-c import socket" not in container.exec_run(["ps", "-eo", "args"]).output.decode()
