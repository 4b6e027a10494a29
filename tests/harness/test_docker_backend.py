"""The Docker backend against a real Docker engine: partitions cut exactly the named links, kill/pause/start,
netem (or its loss-only fallback), collect, teardown leaves nothing, and a crashed run's leftovers are reaped."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from harness.backends.docker import (CLIENT_PORT, INTERNAL_PORT, LABEL_OWNER, LABEL_RUN, DockerCluster,
                                     reap_stale_runs)
from nodecontrol.probe import kafka_answers
from nodecontrol.control import NodeControlError
from harness.docker_command import docker_client, ensure_node_image
from harness.runner import wait_for_brokers
from harness.system import logquake_broker

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def client():
    client = docker_client()
    ensure_node_image(client)
    return client


@pytest.fixture(scope="module")
def cluster(client):
    control = DockerCluster(logquake_broker(None, 3), 3)
    try:
        control.setup()
        wait_for_brokers(control, 60)
        yield control
    finally:
        control.teardown()


@pytest.fixture(autouse=True)
def healed(request):
    yield
    if "cluster" in request.fixturenames:
        control = request.getfixturevalue("cluster")
        for node in control.nodes:
            control.resume(node)
            control.start(node)
        control.heal()
        # a node started again registers a moment later: the next test starts from a formed cluster (CI once saw
        # Metadata list two brokers of three in the test after a kill)
        wait_for_brokers(control, 60)


def _connects(control, src: str, dst: str) -> bool:
    """Can a TCP connection from src's container to dst's internal listener be made within 2 s?"""
    code = (f"import socket; socket.create_connection(({control.addresses[dst]!r}, {INTERNAL_PORT}), timeout=2)")
    return control.exec(src, ["python3", "-c", code]).exit_status == 0


def _client_answers(control, node: str) -> bool:
    return kafka_answers("127.0.0.1", control.client_ports[node], timeout_s=2)


def test_partition_cuts_exactly_the_grudge_and_heal_restores(cluster):
    assert _connects(cluster, "n1", "n2") and _connects(cluster, "n3", "n2")
    cluster.partition({"n2": {"n1"}})
    assert not _connects(cluster, "n1", "n2")
    assert _connects(cluster, "n3", "n2") and _connects(cluster, "n2", "n3")
    rules = cluster.exec("n2", ["iptables", "-S", "LOGQUAKE"]).stdout
    assert f"-A LOGQUAKE -s {cluster.addresses['n1']}/32 -j DROP" in rules
    cluster.partition({"n2": {"n1"}})  # already cut: no second rule
    assert cluster.exec("n2", ["iptables", "-S", "LOGQUAKE"]).stdout.count("DROP") == 1
    cluster.heal()
    assert _connects(cluster, "n1", "n2")
    assert "DROP" not in cluster.exec("n2", ["iptables", "-S", "LOGQUAKE"]).stdout


def test_client_cut_hides_one_node_from_clients_only(cluster):
    assert _client_answers(cluster, "n1")
    cluster.partition({"n1": {"client"}})
    assert not _client_answers(cluster, "n1")
    assert _client_answers(cluster, "n2")
    assert _connects(cluster, "n2", "n1")  # peers still reach n1's internal listener
    cluster.heal()
    assert _client_answers(cluster, "n1")


def test_probes_measure_cuts_and_process_states(cluster):
    links = [("n1", "n2"), ("n3", "n2"), ("client", "n2"), ("client", "n1")]
    assert set(cluster.reaches(links, 0.5).values()) == {True}
    cluster.partition({"n2": {"n1", "client"}})
    try:
        assert cluster.reaches(links, 0.5) == {("n1", "n2"): False, ("n3", "n2"): True, ("client", "n2"): False,
                                               ("client", "n1"): True}
    finally:
        cluster.heal()
    cluster.pause("n3")
    assert cluster.observed_state("n3") == "paused"
    cluster.resume("n3")
    assert cluster.observed_state("n3") == "running"


def test_bad_grudge_is_named(cluster):
    with pytest.raises(NodeControlError, match="'n9'"):
        cluster.partition({"n1": {"n9"}})


def test_kill_and_start_keep_the_address_and_reapply_the_grudge(cluster):
    cluster.partition({"n3": {"n1"}})
    cluster.kill("n3")
    assert not cluster.is_running("n3")
    cluster.kill("n3")  # killing a dead node is a no-op
    cluster.start("n3")
    cluster.wait_ready(["n3"])
    assert cluster.is_running("n3")
    inspect = cluster.client.api.inspect_container(cluster._containers["n3"].id)
    assert list(inspect["NetworkSettings"]["Networks"].values())[0]["IPAddress"] == cluster.addresses["n3"]
    assert not _connects(cluster, "n1", "n3")  # the restarted node's fresh namespace got the grudge again
    assert _connects(cluster, "n2", "n3")


def test_pause_freezes_and_resume_thaws(cluster):
    cluster.pause("n2")
    assert cluster.is_paused("n2") and cluster.is_running("n2")
    assert not _client_answers(cluster, "n2")
    cluster.resume("n2")
    assert not cluster.is_paused("n2")
    assert _client_answers(cluster, "n2")


def test_network_changes_reach_a_paused_node_when_it_resumes(cluster):
    cluster.partition({"n2": {"n1"}})
    cluster.pause("n2")
    cluster.heal()  # a frozen container cannot exec: the heal waits for resume, and the node stays frozen
    cluster.partition({"n2": {"n3"}})
    assert cluster.is_paused("n2")
    cluster.resume("n2")
    rules = cluster.exec("n2", ["iptables", "-S", "LOGQUAKE"]).stdout
    assert cluster.addresses["n3"] in rules and cluster.addresses["n1"] not in rules


def test_kill_of_a_paused_node(cluster):
    cluster.pause("n1")
    cluster.kill("n1")
    assert not cluster.is_running("n1")


def test_stop_is_graceful(cluster):
    started = time.monotonic()
    cluster.stop("n2")
    took_s = time.monotonic() - started
    assert not cluster.is_running("n2")
    container = cluster._containers["n2"]
    # exit 137 means Docker's SIGKILL after stop_timeout_s: the broker's own log says which phase hung
    assert container.attrs["State"]["ExitCode"] == 0, (
        f"stop took {took_s:.1f} s; the broker's last lines:\n{container.logs(tail=60).decode(errors='replace')}")
    assert b"shutdown took" in container.logs(tail=20)


def test_slow_net_netem_or_loss_fallback(cluster):
    netem = cluster.exec("n1", ["sh", "-c", "tc qdisc add dev lo root netem delay 1ms && tc qdisc del dev lo root"])
    if netem.exit_status == 0:
        cluster.slow_net(20, 5, loss=0.1, duplicate=0.01, reorder=0.1)
        shown = cluster.exec("n2", ["tc", "qdisc", "show", "dev", "eth0"]).stdout
        assert "netem" in shown and "delay 20" in shown and "loss 10%" in shown
    else:
        assert "Specified qdisc kind is unknown" in netem.stderr
        with pytest.raises(NodeControlError, match="CONFIG_NET_SCH_NETEM"):
            cluster.slow_net(20, 5)
        assert "DROP" not in cluster.exec("n2", ["iptables", "-S", "LOGQUAKE-LOSS"]).stdout
        with pytest.raises(NodeControlError, match=r"only loss=0.2 was applied"):
            cluster.slow_net(10, loss=0.2)
        assert "--probability 0.2" in cluster.exec("n2", ["iptables", "-S", "LOGQUAKE-LOSS"]).stdout
        cluster.slow_net(0, loss=0.1)
        rules = cluster.exec("n2", ["iptables", "-S", "LOGQUAKE-LOSS"]).stdout
        assert "--probability 0.1" in rules and "-j DROP" in rules and "0.2" not in rules
    cluster.slow_net(0)
    assert "netem" not in cluster.exec("n2", ["tc", "qdisc", "show", "dev", "eth0"]).stdout
    assert "DROP" not in cluster.exec("n2", ["iptables", "-S", "LOGQUAKE-LOSS"]).stdout
    with pytest.raises(NodeControlError, match="loss=1.5"):
        cluster.slow_net(10, loss=1.5)


def test_exec_reports_status_and_output(cluster):
    result = cluster.exec("n1", ["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (result.exit_status, result.stdout, result.stderr) == (3, "out\n", "err\n")
    with pytest.raises(NodeControlError, match="timed out after 0.5 s"):
        cluster.exec("n1", ["sleep", "5"], timeout_s=0.5)


def test_collect_copies_stdout_and_the_broker_log(cluster, tmp_path):
    written = cluster.collect(str(tmp_path))
    for node in cluster.nodes:
        assert str(tmp_path / node / "stdout.log") in written
        assert str(tmp_path / node / "broker.log") in written
    assert "listening on" in (tmp_path / "n1" / "stdout.log").read_text()


def test_brokers_advertise_only_loopback_addresses_to_clients(cluster):
    from confluent_kafka.admin import AdminClient

    brokers = AdminClient({"bootstrap.servers": cluster.bootstrap_servers()}).list_topics(timeout=10).brokers
    assert {(b.host, b.port) for b in brokers.values()} == {("127.0.0.1", p) for p in cluster.client_ports.values()}
    published = cluster.client.api.inspect_container(cluster._containers["n1"].id)["HostConfig"]["PortBindings"]
    assert published == {f"{CLIENT_PORT}/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(cluster.client_ports["n1"])}]}


def _labelled(client, run_id: str) -> list[str]:
    label = f"{LABEL_RUN}={run_id}"
    return ([c.name for c in client.containers.list(all=True, filters={"label": label})]
            + [n.name for n in client.networks.list(filters={"label": label})])


def _host_rules() -> str:
    """The host's iptables rules, filter and nat tables (Docker's own rules for networks and published ports)."""
    return "".join(subprocess.run(["iptables", "-w", "-t", table, "-S"], capture_output=True, text=True,
                                  check=True).stdout for table in ("filter", "nat"))


def test_teardown_removes_everything_and_is_idempotent(client):
    control = DockerCluster(logquake_broker(None, 1), 1)
    try:
        control.setup()
        control.partition({"n1": {"client"}})
        control.slow_net(0, loss=0.1)
        assert _labelled(client, control.run_id)
        bridge = f"br-{control.network.id[:12]}"
        port = str(control.client_ports["n1"])
        assert bridge in _host_rules() and port in _host_rules()
    finally:
        control.teardown()
    assert _labelled(client, control.run_id) == []
    assert bridge not in _host_rules() and f"--dport {port}" not in _host_rules()
    control.teardown()


def test_a_subnet_another_network_takes_between_probe_and_create_is_asked_for_again(client):
    """Two runs at once (a campaign's --parallel jobs) race for the subnet Docker offers both: the loser is refused
    as overlapping and must ask again, not fail its run. The race is made real: right after the run's probe
    network is removed, a second real network takes its subnet, once."""
    control = DockerCluster(logquake_broker(None, 1), 1)
    real_client = control.client
    competitors, probes = [], []

    def create(name, **kwargs):
        if "ipam" in kwargs and not competitors:
            from docker.types import IPAMConfig, IPAMPool

            subnet = probes[-1].attrs["IPAM"]["Config"][0]["Subnet"]
            competitors.append(real_client.networks.create(
                f"{name}-competitor", driver="bridge", labels=control.labels,
                ipam=IPAMConfig(pool_configs=[IPAMPool(subnet=subnet)])))
        network = real_client.networks.create(name, **kwargs)
        if "ipam" not in kwargs:
            probes.append(network)
        return network

    class Networks:  # the real collection, with create() racing as above
        def __getattr__(self, attribute):
            return create if attribute == "create" else getattr(real_client.networks, attribute)

    class Client:
        networks = Networks()

    control.client = Client()
    try:
        control._create_network()
        taken = competitors[0].attrs["IPAM"]["Config"][0]["Subnet"]
        ours = control.network.attrs["IPAM"]["Config"][0]["Subnet"]
        assert len(probes) == 2 and ours != taken
        assert control.addresses["n1"].startswith(ours.rsplit(".", 1)[0] + ".")
    finally:
        control.client = real_client
        for network in [*competitors, control.network]:
            if network is not None:
                network.remove()
    assert _labelled(client, control.run_id) == []


def test_leftovers_of_a_killed_harness_are_reaped(client):
    script = textwrap.dedent("""
        import sys, time
        from harness.backends.docker import DockerCluster
        from harness.system import logquake_broker
        control = DockerCluster(logquake_broker(None, 1), 1)
        control.setup()
        print(control.run_id, flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        run_id = proc.stdout.readline().strip()
        assert run_id, "the child harness did not set up its cluster"
        owner = f"{socket.gethostname()}:{proc.pid}"
        assert _labelled(client, run_id)
        assert reap_stale_runs(client) == [] or not any(run_id in r for r in reap_stale_runs(client))
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        assert client.containers.list(all=True, filters={"label": f"{LABEL_OWNER}={owner}"})
        removed = reap_stale_runs(client)
        assert any(run_id in r for r in removed)
        assert _labelled(client, run_id) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reap_stale_runs(client)


def test_other_systems_are_refused_clearly(tmp_path):
    from harness.system import load_system

    toml = tmp_path / "other.toml"
    toml.write_text('start = "/opt/ob/bin/ob --port {port}"\n')
    with pytest.raises(NodeControlError, match="runs our broker only so far"):
        DockerCluster(load_system(str(toml)), 1)


def test_disk_and_clock_faults_run_through_node_launch(client):
    control = DockerCluster(logquake_broker(None, 1), 1)
    control.enable_faults({"disk", "clock"})
    try:
        control.setup()
        assert "faultfs on /var/lib/logquake/logs type fuse" in control.exec("n1", ["mount"]).stdout
        assert control.disk("n1", "fail-fsync")["modes"] == ["fail-fsync"]
        assert control.disk("n1", "heal")["modes"] == []
        with pytest.raises(NodeControlError, match="disk fault 'melt' is not known"):
            control.disk("n1", "melt")
        control.clock("n1", 30)
        assert control.exec("n1", ["cat", "/var/lib/logquake/faketime"]).stdout == "+30.000\n"
        broker_pid = control.exec("n1", ["cat", "/var/lib/logquake/broker.pid"]).stdout.strip()
        environ = control.exec("n1", ["cat", f"/proc/{broker_pid}/environ"]).stdout.split("\0")
        assert "FAKETIME_TIMESTAMP_FILE=/var/lib/logquake/faketime" in environ
        measured = control.clock_offset("n1")  # the clock probe's measurement, made inside the container
        assert measured["preloaded"] is True and abs(measured["offset_s"] - 30) < 0.5, measured
        control.disk("n1", "lazy")
        cut = control.disk("n1", "tear")  # the power cut of lose-unfsynced: the disk stalls until the kill
        assert "pause" in cut["modes"] and set(cut["tear"]) == {"files", "kept_bytes", "lost_bytes", "torn_writes"}
        control.kill("n1")
        control.start("n1")
        control.wait_ready(["n1"])
        assert control.disk("n1", "status")["modes"] == []  # the remounted disk after a kill
    finally:
        control.teardown()


def test_disk_faults_need_enable_faults(cluster):
    with pytest.raises(NodeControlError, match="set up without them"):
        cluster.disk("n1", "status")
    with pytest.raises(NodeControlError, match="set up without them"):
        cluster.clock("n1", 5)
