"""The local backend's process control and cleanup, on stand-in echo nodes described by a TOML file."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.backends.local import LocalCluster, reap_stale_runs
from nodecontrol.control import NodeControlError
from harness.system import SystemDescriptionError, load_system

ECHO = Path(__file__).parent / "fixtures" / "echo_node.py"


@pytest.fixture
def echo_system(tmp_path):
    path = tmp_path / "echo.toml"
    path.write_text(
        'name = "echo"\n'
        f'start = ["{{python}}", "{ECHO}", "{{host}}", "{{port}}", "{{data_dir}}/echo.log"]\n'
        'log_file = "{data_dir}/echo.log"\n'
        "stop_timeout_s = 5\nready_timeout_s = 10\n"
    )
    return load_system(str(path))


@pytest.fixture
def cluster(echo_system):
    c = LocalCluster(echo_system, 3)
    c.setup()
    try:
        yield c
    finally:
        c.teardown()


def _roundtrip(bootstrap, payload=b"hi"):
    host, port = bootstrap.split(",")[0].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=2) as s:
        s.sendall(payload)
        return s.recv(100)


def test_nodes_start_behind_the_proxy_and_answer(cluster):
    assert all(cluster.is_running(n) for n in cluster.nodes)
    for node in cluster.nodes:
        assert _roundtrip(cluster.node_bootstrap(node)) == b"hi"


def test_kill_start_pause_resume(cluster):
    cluster.kill("n1")
    assert not cluster.is_running("n1")
    # the proxy accepts, finds nothing behind it, and closes the connection
    assert _roundtrip(cluster.node_bootstrap("n1")) == b""
    cluster.start("n1")
    cluster.wait_ready(["n1"])
    assert _roundtrip(cluster.node_bootstrap("n1")) == b"hi"
    cluster.pause("n2")
    assert cluster.is_paused("n2")
    with pytest.raises(socket.timeout):
        host, port = cluster.node_bootstrap("n2").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=1) as s:
            s.settimeout(0.5)
            s.sendall(b"x")
            s.recv(10)
    cluster.resume("n2")
    assert _roundtrip(cluster.node_bootstrap("n2")) == b"hi"


def test_partition_of_clients_and_heal(cluster):
    cluster.partition({"n3": {"client"}})
    host, port = cluster.node_bootstrap("n3").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=1) as s:
        s.settimeout(0.5)
        s.sendall(b"x")
        with pytest.raises(socket.timeout):
            s.recv(10)
        assert _roundtrip(cluster.node_bootstrap("n1")) == b"hi"
        cluster.heal()
        s.settimeout(2)
        assert s.recv(10) == b"x"


def test_bad_control_arguments_name_the_problem(cluster):
    with pytest.raises(NodeControlError, match="no node 'n9'"):
        cluster.kill("n9")
    with pytest.raises(NodeControlError, match="'n7', which is not a node"):
        cluster.partition({"n1": {"n7"}})


def test_teardown_leaves_no_process_or_directory(echo_system):
    c = LocalCluster(echo_system, 2)
    c.setup()
    run_dir = c.run_dir
    pids = [c._procs[n].pid for n in c.nodes]
    ports = list(c.proxy.ports.values())
    c.teardown()
    assert not run_dir.exists()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    for port in ports:
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()


def test_a_crashed_runs_leftovers_are_reaped(echo_system, tmp_path):
    # a harness process that starts a cluster and dies without teardown
    script = (
        "import sys; sys.path.insert(0, %r)\n"
        "from harness.system import load_system\n"
        "from harness.backends.local import LocalCluster\n"
        "c = LocalCluster(load_system(%r), 1); c.setup()\n"
        "print(c.run_dir, c._procs['n1'].pid, flush=True)\n"
        "import os; os._exit(1)\n"
    ) % (str(Path(__file__).parents[2]), str(tmp_path / "echo.toml"))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    run_dir, pid = out.stdout.split()
    assert Path(run_dir).exists()
    os.kill(int(pid), 0)  # the node outlived its harness
    reaped = reap_stale_runs()
    assert run_dir in reaped
    assert not Path(run_dir).exists()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"node process {pid} of the crashed run is still alive")


def test_system_descriptions_are_validated(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('start = "x --port {prot}"\n')
    with pytest.raises(SystemDescriptionError, match="bad placeholder 'prot'"):
        load_system(str(bad))
    bad.write_text('start = "x"\nstop_signal = "SIGHUP"\n')
    with pytest.raises(SystemDescriptionError, match="stop_signal 'SIGHUP'"):
        load_system(str(bad))
    bad.write_text('strat = "x"\n')
    with pytest.raises(SystemDescriptionError, match="unknown key"):
        load_system(str(bad))
    with pytest.raises(SystemDescriptionError, match="no such file"):
        load_system(str(tmp_path / "missing.toml"))


_TWO_PORT_NODE = '''
import os, socket, sys, threading, time
if not os.path.exists("formatted"):
    sys.exit("not formatted: the setup command did not run first")
conf = dict(line.split("=", 1) for line in open("node.conf").read().split())
def serve(port):
    server = socket.create_server(("{host}", port))
    while True:
        conn, _ = server.accept()
        threading.Thread(target=lambda c=conn: [c.sendall(d) for d in iter(lambda: c.recv(100), b"")], daemon=True).start()
threading.Thread(target=serve, args=(int(conf["extra"]),), daemon=True).start()
threading.Thread(target=lambda: (time.sleep(0.3), open("ready", "w").close()), daemon=True).start()
serve(int(conf["port"]))
'''


def test_a_described_cluster_gets_its_ids_ports_files_and_hooks(tmp_path):
    torn_down = tmp_path / "torn-down.log"
    description = tmp_path / "two-ports.toml"
    description.write_text(f'''
start = "{{python}} node.py"
node_id = "{{index + 10}}"
ports = ["extra"]
peer = "{{node_id}}@{{host}}:{{advertised_port_extra}}"
controllers = [1]
setup = "touch formatted"
teardown = ["sh", "-c", "echo {{node_id}} >> {torn_down}"]
ready = ["{{python}}", "-c", "import os, sys; sys.exit(0 if os.path.exists('{{data_dir}}/ready') else 1)"]
ready_timeout_s = 20
[files]
"node.py" = """{_TWO_PORT_NODE.replace("{", "{{").replace("}", "}}").replace("{{host}}", "{host}")}"""
"node.conf" = "id={{node_id}}\\nport={{port}}\\nextra={{port_extra}}\\nvoters={{controller_peers}}\\nall={{peers}}\\n"
''')
    cluster = LocalCluster(load_system(str(description)), 2)
    cluster.setup()
    try:
        assert cluster.broker_ids() == {"n1": 11, "n2": 12}
        for node in cluster.nodes:
            data_dir = Path(cluster._specs[node].data_dir)
            assert (data_dir / "ready").exists()  # the ready command waited for it
            for key in (node, f"{node}/extra"):  # both listeners answer through their own proxy port
                assert _roundtrip(f"127.0.0.1:{cluster.proxy.ports[key]}") == b"hi"
        conf = (Path(cluster._specs["n2"].data_dir) / "node.conf").read_text()
        proxy = cluster.proxy.ports
        assert conf.startswith("id=12\n") and f"voters=11@127.0.0.1:{proxy['n1/extra']}\n" in conf
        assert f"all=11@127.0.0.1:{proxy['n1/extra']},12@127.0.0.1:{proxy['n2/extra']}\n" in conf
    finally:
        cluster.teardown()
    assert sorted(torn_down.read_text().split()) == ["11", "12"]
