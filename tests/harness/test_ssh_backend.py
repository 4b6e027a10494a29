"""The SSH backend's pure parts: broker properties with two listeners, the launcher command, refusals."""

import pytest

from harness.backends.ssh import SshCluster
from nodecontrol.control import NodeControlError
from harness.nodes_file import parse_nodes_file
from harness.system import System, logquake_broker

NODES = """
known_hosts = "/nonexistent/known_hosts"
run_dir = "/srv/lq"
[[node]]
name = "n1"
ssh = "127.0.0.1:2201"
address = "172.30.0.11"
client = "127.0.0.1:19092"
client_listen = "0.0.0.0:9092"
[[node]]
name = "n2"
ssh = "10.0.0.2"
address = "10.0.0.2"
internal_port = 9094
"""


@pytest.fixture
def cluster():
    c = SshCluster(logquake_broker({"log.segment.bytes": "1000"}, 2), parse_nodes_file(NODES, "nodes.toml"))
    c.version = "0.1.0-abc"
    return c


def test_properties_give_each_broker_an_internal_and_a_client_listener(cluster):
    props = cluster.properties("n1")
    assert props["listeners"] == "INTERNAL://172.30.0.11:9093,CLIENT://0.0.0.0:9092"
    assert props["advertised.listeners"] == "INTERNAL://172.30.0.11:9093,CLIENT://127.0.0.1:19092"
    assert props["listener.security.protocol.map"] == "INTERNAL:PLAINTEXT,CLIENT:PLAINTEXT"
    assert props["inter.broker.listener.name"] == "INTERNAL"
    assert props["controller.quorum.voters"] == "1@172.30.0.11:9093,2@10.0.0.2:9094"
    assert props["node.id"] == "1" and cluster.properties("n2")["node.id"] == "2"
    assert props["log.dirs"] == f"{cluster.node_dir('n1')}/logs"
    assert props["log.segment.bytes"] == "1000"
    assert "logquake.outbound.address" not in props
    assert cluster.bootstrap_servers() == "127.0.0.1:19092,10.0.0.2:9092"


def test_paths_live_under_the_run_dir(cluster):
    assert cluster.run_path.startswith("/srv/lq/runs/run-")
    assert cluster._command("n2") == ["/srv/lq/0.1.0-abc/venv/bin/python", "-m", "broker", "--config",
                                      f"{cluster.node_dir('n2')}/server.properties"]


def test_disk_and_clock_start_the_broker_under_the_launcher(cluster):
    cluster.enable_faults({"disk", "clock"})  # not connected yet: nothing to check
    d = cluster.node_dir("n1")
    assert cluster._command("n1") == [
        "/srv/lq/0.1.0-abc/venv/bin/python", "-m", "nodecontrol.launch", "--pid-file", f"{d}/broker.pid",
        "--faultfs", f"{d}/logs:{d}/logs:{d}/faultfs.sock", "--faketime", f"{d}/faketime", "--",
        "/srv/lq/0.1.0-abc/venv/bin/python", "-m", "broker", "--config", f"{d}/server.properties"]


def test_verbs_check_their_input(cluster):
    with pytest.raises(NodeControlError, match="no node 'n9' in this cluster"):
        cluster.kill("n9")
    with pytest.raises(NodeControlError, match="clock faults on n1: this cluster was set up without them"):
        cluster.clock("n1", 5)
    with pytest.raises(NodeControlError, match="grudge names 'n7'"):
        cluster.partition({"n7": {"n1"}})


def test_a_described_broker_gets_the_system_placeholders(tmp_path):
    other = System(name="other", start=["{python}", "/opt/other/run", "--id", "{node_id}", "--listen",
                                        "{host}:{port}", "--advertise", "{host}:{advertised_port}", "--voters",
                                        "{peers}", "--data", "{data_dir}"], log_file="{data_dir}/other.log")
    with pytest.raises(NodeControlError, match=r"nodes.toml: node 'n1': client 127.0.0.1:19092 is not on its "
                                               r"address '172.30.0.11'; a --system broker \('other'\) gets one "
                                               r"listener.*set client = \"172.30.0.11:<port>\""):
        SshCluster(other, parse_nodes_file(NODES, "nodes.toml"))
    cluster = SshCluster(other, parse_nodes_file(NODES.replace("127.0.0.1:19092", "172.30.0.11:19092"),
                                                 "nodes.toml"))
    cluster.version = "v"
    d = cluster.node_dir("n1")
    assert cluster._command("n1") == ["/srv/lq/v/venv/bin/python", "/opt/other/run", "--id", "1", "--listen",
                                      "172.30.0.11:9092", "--advertise", "172.30.0.11:19092", "--voters",
                                      "1@172.30.0.11:9093,2@10.0.0.2:9094", "--data", d]
    assert cluster.properties("n1") == {}
    cluster.enable_faults({"disk"})
    with pytest.raises(NodeControlError, match="disk faults need to know where 'other' keeps its data"):
        cluster._command("n1")


def test_logquake_test_refuses_a_node_count_the_nodes_file_contradicts(tmp_path, capsys):
    from harness.run_command import main

    path = tmp_path / "nodes.toml"
    path.write_text(NODES)
    assert main(["--backend", "ssh", "--nodes-file", str(path), "--nodes", "5"]) == 254
    assert f"--nodes 5 but the nodes file {path} names 2 node(s)" in capsys.readouterr().err
