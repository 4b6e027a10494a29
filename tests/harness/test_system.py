"""System descriptions (`--system FILE.toml`): templates, validation sentences, refusals, and what a run records."""

import json
import re
import socket
import struct
import sys
import threading
from pathlib import Path

import pytest

from harness import run_command
from harness.proxy import CLIENT, FaultProxy
from harness.spec import RunSpec
from harness.system import (NodeSpec, SystemDescriptionError, TemplateError, load_system, refuse_faults_that_cannot_land,
                            render, why_libfaketime_cannot_reach)
from harness.targets import MetadataTargets, UnknownBrokerId

EXAMPLE = Path(__file__).parents[2] / "docs" / "systems" / "logquake-as-foreign.toml"


def _load(tmp_path, text: str):
    path = tmp_path / "system.toml"
    path.write_text(text)
    return load_system(str(path))


def _refused(tmp_path, text: str, message: str) -> None:
    with pytest.raises(SystemDescriptionError, match=re.escape(message)):
        _load(tmp_path, text)


# ----- templates --------------------------------------------------------------------------------------


def test_placeholders_take_integer_arithmetic_and_literal_braces():
    values = {"index": 2, "port": 9092, "host": "h", "id": "7"}
    assert render("{host}:{port + index * 10}", values) == "h:9112"
    assert render("{(index - 1) // 2}-{index % 2}-{-index}", values) == "0-0--2"
    assert render("{id + 1}", values) == "8"  # a variable that reads as an integer takes arithmetic
    assert render("{{literal}} {index}", values) == "{literal} 2"


@pytest.mark.parametrize("template, message", [
    ("{prot}", "bad placeholder 'prot'; accepted placeholders: index, port, host, id"),
    ("{host + 1}", "bad placeholder 'host + 1': arithmetic on 'host', which is text ('h'), not a number"),
    ("{port // 0}", "division by zero"),
    ("{port ** 2}", "only names, integers and + - * // % are accepted"),
    ("{port(1)}", "only names, integers and + - * // % are accepted"),
    ("a } b", "a stray brace in 'a } b'"),
    ("{port", "a stray brace in '{port'"),
])
def test_a_bad_template_is_refused_in_a_sentence(template, message):
    with pytest.raises(TemplateError, match=re.escape(message)):
        render(template, {"index": 2, "port": 9092, "host": "h", "id": "7"})


# ----- reading a description --------------------------------------------------------------------------


def test_the_first_format_still_loads_with_its_defaults(tmp_path):
    system = _load(tmp_path, 'start = "ob --id {node_id} --listen {host}:{port}"\nmax_nodes = 1\n')
    assert system.name == "system" and system.max_nodes == 1 and not system.is_ours
    assert [system.id_of(i) for i in (1, 2)] == [1, 2]
    spec = NodeSpec("n1", 1, "h", 5, 6, "/d", "b", "")
    assert system.command(spec) == ["ob", "--id", "1", "--listen", "h:5"]
    assert system.peers([spec, NodeSpec("n2", 2, "h", 7, 8, "/e", "c", "")]) == ("1@h:6,2@h:8", "1@h:6,2@h:8")


def test_a_cluster_description_renders_ids_ports_peers_quorum_files_and_variables(tmp_path):
    system = _load(tmp_path, """
start = "ob --config {data_dir}/ob.conf"
node_id = "{index * 10}"
ports = ["controller", "admin"]
peer = "{node_id}@{host}:{advertised_port_controller}"
controllers = [1, 3]
[vars]
role = "broker"
[node.3.vars]
role = "broker,controller"
[node.2]
start = "ob --config {data_dir}/ob.conf --slow"
[files]
"ob.conf" = "id={node_id}\\nroles={role}\\nvoters={controller_peers}\\nadmin={port_admin + 1}\\n"
"/abs/{index}.conf" = "all={peers}"
""")
    specs = [NodeSpec(f"n{i}", system.id_of(i), "h", 100 * i, 100 * i + 1, f"/d{i}", "b", "", index=i,
                      ports={"controller": 100 * i + 2, "admin": 100 * i + 4},
                      advertised_ports={"controller": 100 * i + 3, "admin": 100 * i + 5}, nodes=3,
                      variables=system.variables_of(i)) for i in (1, 2, 3)]
    peers, controller_peers = system.peers(specs)
    assert peers == "10@h:103,20@h:203,30@h:303" and controller_peers == "10@h:103,30@h:303"
    third = NodeSpec(**{**specs[2].__dict__, "peers": peers, "controller_peers": controller_peers})
    assert system.rendered_files(third) == {
        "/d3/ob.conf": "id=30\nroles=broker,controller\nvoters=10@h:103,30@h:303\nadmin=305\n",
        "/abs/3.conf": "all=10@h:103,20@h:203,30@h:303"}
    assert system.command(specs[1])[-1] == "--slow" and system.command(specs[0])[-1] == "/d1/ob.conf"
    assert system.node_ids is None and [system.id_of(i) for i in (1, 2, 3)] == [10, 20, 30]


def test_listed_node_ids_set_the_cluster_size_limit(tmp_path):
    system = _load(tmp_path, 'start = "ob"\nnode_ids = [7, 3, 11]\n')
    assert [system.id_of(i) for i in (1, 2, 3)] == [7, 3, 11] and system.max_nodes == 3


@pytest.mark.parametrize("text, message", [
    ('start = "ob {prot}"', "system.toml: start: bad placeholder 'prot'"),
    ('start = "x"\nstop_signal = "SIGHUP"', "stop_signal 'SIGHUP' is not accepted; use SIGTERM or SIGINT"),
    ('strat = "x"', "unknown key(s) ['strat']; accepted keys are"),
    ('name = "x"', "'start' is required"),
    ('start = "x"\nnode_id = "{index % 2}"', "node_id '{index % 2}' gives nodes 1-3 the ids [1, 0, 1]; every node "
                                             "needs its own"),
    ('start = "x"\nnode_id = "{who}"\n[vars]\nwho = "a"', "node_id '{who}' does not give an integer"),
    ('start = "x"\nnode_id = "{host}"', "node_id: bad placeholder 'host'; accepted placeholders: index"),
    ('start = "x"\nnode_id = "{index}"\nnode_ids = [1]', "give node_id (a template) or node_ids (a list), not both"),
    ('start = "x"\nnode_ids = [1, 1]', "node_ids must be a list of distinct broker ids"),
    ('start = "x"\nnode_ids = [1, 2]\nmax_nodes = 3', "node_ids names 2 id(s) but max_nodes is 3"),
    ('start = "x"\nports = ["Controller"]', "ports must be a list of distinct names"),
    ('start = "x {port_admin}"\nports = ["controller"]', "bad placeholder 'port_admin'"),
    ('start = "x"\ncontrollers = [0]', "controllers must be a list of node numbers"),
    ('start = "x"\n[node.2.vars]\nrole = "b"', "[node.2.vars] sets ['role'], which [vars] does not declare"),
    ('start = "x"\n[node.two]\nstart = "y"', "[node.two]: expected a node number"),
    ('start = "x"\n[node.2]\nstop = "y"', "[node.2] has unknown key(s) ['stop']; accepted: start, vars"),
    ('start = "x"\n[vars]\nport = 3', "'port' cannot name a variable"),
    ('start = "x"\n[vars]\nflag = true', "flag = True; a variable is a string or an integer"),
    ('start = "x"\n[files]\n"a.conf" = 3', "[files] maps a path to the text written there"),
    ('start = "x"\n[files]\n"a.conf" = "{nope}"', "files 'a.conf': bad placeholder 'nope'"),
    ('start = "x"\n[storage]\nvolatile = "yes"', "[storage] volatile must be true or false, got 'yes'"),
    ('start = "x"\n[storage]\npath = "d"', "[storage] takes dir (where the broker keeps its log) and volatile"),
    ('start = "x"\nready = "check {port"', "ready: a stray brace"),
    ('start = "x"\nversion = "ob --version {node_id}"', "version: bad placeholder 'node_id'; accepted placeholders: python"),
    ('start = "x"\nsetup = []', "'setup' must be a command string or a list of strings"),
])
def test_a_bad_description_is_refused_in_a_sentence(tmp_path, text, message):
    _refused(tmp_path, text, message)


def test_a_bad_description_exits_254_before_anything_starts(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text('start = "ob --port {prot}"\n')
    store = tmp_path / "store"
    assert run_command.main(["test", "--system", str(path), "--store", str(store), "--quiet"][1:]) == 254
    assert "bad placeholder 'prot'" in capsys.readouterr().err
    path.write_text('start = "ob"\ncontrollers = [1, 4]\n')
    assert run_command.main(["--system", str(path), "--nodes", "3", "--store", str(store), "--quiet"]) == 254
    assert "controllers names node(s) [4], beyond the 3 node(s) of this run" in capsys.readouterr().err
    path.write_text('start = "ob"\nnode_ids = [5, 6]\n')
    assert run_command.main(["--system", str(path), "--nodes", "3", "--nemesis", "partition", "--store", str(store)]) == 254
    assert "supports at most 2 node(s); asked for 3" in capsys.readouterr().err  # before any fault is judged
    assert not store.exists()


# ----- faults that cannot land ------------------------------------------------------------------------


def _elf(path: Path, interpreter: bool, extra: bytes = b"") -> str:
    """A 64-bit little-endian ELF file with one program header: PT_INTERP (dynamic) or PT_LOAD (static)."""
    header = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
    header += struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, 0, 64, 0, 0, 64, 56, 1, 64, 0, 0)
    program = struct.pack("<IIQQQQQQ", 3 if interpreter else 1, 4, 0, 0, 0, 0, 0, 0)
    path.write_bytes(header + program + extra)
    return str(path)


def test_clock_faults_are_refused_for_a_static_or_go_binary(tmp_path):
    static = _elf(tmp_path / "static-broker", interpreter=False)
    dynamic = _elf(tmp_path / "dynamic-broker", interpreter=True)
    go = _elf(tmp_path / "go-broker", interpreter=True, extra=b"\x00\xff Go buildinf:\x08\x02")
    assert "statically linked" in why_libfaketime_cannot_reach(static)
    assert why_libfaketime_cannot_reach(dynamic) is None
    assert "is a Go program" in why_libfaketime_cannot_reach(go)
    assert why_libfaketime_cannot_reach(sys.executable) is None
    assert why_libfaketime_cannot_reach(str(EXAMPLE)) is None  # not ELF: the clock probe tells
    system = _load(tmp_path, f'start = "{static} --port {{port}}"\n')
    with pytest.raises(SystemDescriptionError, match="clock faults cannot land: .*statically linked.*drop clock"):
        refuse_faults_that_cannot_land(system, ("kill", "clock"), "local")
    refuse_faults_that_cannot_land(system, ("kill",), "local")


def test_a_static_binary_with_clock_faults_exits_254(tmp_path, capsys):
    static = _elf(tmp_path / "static-broker", interpreter=False)
    path = tmp_path / "static.toml"
    path.write_text(f'start = "{static} --port {{port}}"\n[storage]\ndir = "{{data_dir}}"\n')
    assert run_command.main(["--system", str(path), "--nemesis", "clock", "--store", str(tmp_path / "s"), "--quiet"]) == 254
    assert "statically linked" in capsys.readouterr().err


def test_disk_faults_need_the_storage_dir_and_ssh_the_first_format(tmp_path):
    system = _load(tmp_path, 'start = "ob"\nports = ["controller"]\n')
    with pytest.raises(SystemDescriptionError, match=re.escape("say where with [storage] dir")):
        refuse_faults_that_cannot_land(system, ("disk",), "local")
    with pytest.raises(SystemDescriptionError, match="--backend ssh carries out the first description format only.*"
                                                     "uses ports"):
        refuse_faults_that_cannot_land(system, ("kill",), "ssh")


# ----- what a run records -----------------------------------------------------------------------------


def test_the_store_name_names_the_system_and_test_json_keeps_its_contents(tmp_path):
    spec = RunSpec(system=str(EXAMPLE), nemesis=("kill",)).resolve()
    assert spec.store_name() == "queue-at-least-once-kill-logquake-described"
    assert RunSpec(nemesis=("kill",)).resolve().store_name() == "queue-at-least-once-kill"  # ours: as before
    stored = json.loads(json.dumps({"format": 2, "options": spec.to_json()}))
    again = RunSpec.from_test_json(stored)
    assert again.system_description["node_id"] == "{index + 100}" and again == spec
    moved = RunSpec(system=str(tmp_path / "gone.toml"), system_description=spec.system_description,
                    nemesis=("kill",)).resolve()
    assert moved.store_name() == spec.store_name()  # rebuilt from the recorded contents, not the file
    old = {"options": {"workload": "queue", "nemesis": ["kill"], "system": "old.toml", "keys": 4}}
    assert RunSpec.from_test_json(old).system_description is None  # a run from before the contents were kept


def test_the_version_command_is_run_and_its_failure_said(tmp_path):
    assert load_system(str(EXAMPLE)).version_text().startswith("logquake ")
    failing = _load(tmp_path, 'start = "x"\nversion = ["{python}", "-c", "import sys; print(\'no\'); sys.exit(3)"]\n')
    assert failing.version_text().startswith("unknown: ") and failing.version_text().endswith("exited 3: no")
    assert _load(tmp_path, 'start = "x"\n').version_text() is None


# ----- role targets map broker ids to nodes -----------------------------------------------------------


def test_broker_ids_map_to_nodes_and_an_unknown_id_is_said():
    targets = MetadataTargets("unused:1", "t", ["n1", "n2", "n3"], node_ids={"n1": 101, "n2": 102, "n3": 103})
    assert targets._node(102, "leader of t/0") == "n2"
    assert targets._node(-1, "leader of t/0") is None  # no leader now
    with pytest.raises(UnknownBrokerId, match=re.escape("broker id 2 as the leader of t/0, but no node has that id "
                                                        "(the nodes' ids: n1=101, n2=102, n3=103)")):
        targets._node(2, "leader of t/0")
    assert MetadataTargets("unused:1", "t", ["n1", "n2"])._node(2, "controller") == "n2"  # by default: the number


# ----- several listeners per node share its link faults -----------------------------------------------


def test_a_cut_link_holds_every_listener_of_the_node():
    servers = []
    upstreams = {}
    for key in ("n1", "n1/controller", "n2"):
        server = socket.create_server(("127.0.0.1", 0))
        servers.append(server)
        upstreams[key] = server.getsockname()

        def accept(server=server):
            conn, _ = server.accept()
            with conn:
                while data := conn.recv(100):
                    conn.sendall(data)

        threading.Thread(target=accept, daemon=True).start()
    with FaultProxy(upstreams, sources={"127.0.0.12": "n2"}) as proxy:
        assert set(proxy.ports) == {"n1", "n1/controller", "n2"}
        with pytest.raises(ValueError, match=r"'n1/controller' is not a node of this proxy; expected one of \['n1', 'n2'\]"):
            proxy.cut("n1/controller", "n2")
        proxy.cut("n2", "n1")
        assert proxy.is_cut("n2", "n1")
        with socket.create_connection(("127.0.0.1", proxy.ports["n1/controller"]), source_address=("127.0.0.12", 0),
                                      timeout=2) as s:
            s.sendall(b"x")
            with pytest.raises(socket.timeout):
                s.recv(1)  # held like the node's first listener
            proxy.heal()
            assert s.recv(1) == b"x"
        with socket.create_connection(("127.0.0.1", proxy.ports["n1"]), timeout=2) as s:
            s.sendall(b"y")
            assert s.recv(1) == b"y" and not proxy.is_cut(CLIENT, "n1")
    for server in servers:
        server.close()


def test_partitions_between_nodes_are_refused_when_the_broker_is_never_given_its_source_address(tmp_path):
    system = _load(tmp_path, 'start = "ob --listen {host}:{port}"\n')
    with pytest.raises(SystemDescriptionError, match=re.escape("partitions between nodes cannot land: the local fault "
                                                               "proxy tells a node's connections")):
        refuse_faults_that_cannot_land(system, ("partition", "kill"), "local", nodes=3)
    refuse_faults_that_cannot_land(system, ("partition",), "local", nodes=1)  # one node: no links between nodes
    refuse_faults_that_cannot_land(system, ("kill", "pause"), "local", nodes=3)
    given = _load(tmp_path, 'start = "ob --listen {host}:{port}"\n[files]\n"ob.conf" = "bind={ bind_host }"\n')
    refuse_faults_that_cannot_land(given, ("partition",), "local", nodes=3)


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[2] / "docs" / "systems").glob("*.toml")),
                         ids=lambda p: p.name)
def test_every_shipped_description_loads(path):
    system = load_system(str(path))
    assert system.name and system.start
