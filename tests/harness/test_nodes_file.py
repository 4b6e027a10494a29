"""The SSH backend's nodes file: defaults, and clear errors for every kind of bad input."""

import pytest

from harness.nodes_file import NodesFileError, load_nodes_file, parse_nodes_file


@pytest.fixture
def key(tmp_path):
    path = tmp_path / "id_ed25519"
    path.write_text("not read by the parser\n")
    return str(path)


def _file(key, body):
    return f'user = "root"\nkey_file = "{key}"\nknown_hosts = "/tmp/kh"\n' + body


NODES = """
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
user = "kafka"
internal_port = 9094
"""


def test_defaults_and_overrides(key):
    nodes_file = parse_nodes_file(_file(key, NODES), "nodes.toml")
    n1, n2 = nodes_file.nodes
    assert nodes_file.names == ["n1", "n2"]
    assert nodes_file.known_hosts == "/tmp/kh"
    assert nodes_file.run_dir == "/srv/logquake"
    assert (n1.ssh_host, n1.ssh_port, n1.user, n1.key_file) == ("127.0.0.1", 2201, "root", key)
    assert (n1.client_bootstrap, n1.client_listen_host, n1.client_listen_port) == ("127.0.0.1:19092", "0.0.0.0", 9092)
    assert n1.internal_port == 9093
    assert (n2.ssh_port, n2.user, n2.client_bootstrap, n2.client_listen_port, n2.internal_port) == \
        (22, "kafka", "10.0.0.2:9092", 9092, 9094)
    assert n2.ssh_target == "kafka@10.0.0.2:22"


def test_a_typo_names_the_key_the_line_the_node_and_the_accepted_keys(key):
    text = _file(key, NODES.replace('address = "10.0.0.2"', 'adress = "10.0.0.2"'))
    with pytest.raises(NodesFileError) as e:
        parse_nodes_file(text, "nodes.toml")
    line = text.splitlines().index('adress = "10.0.0.2"') + 1
    assert str(e.value) == (f"nodes.toml (line {line}): node 'n2': unknown key 'adress'; accepted keys of a [[node]] "
                            "are name, ssh, address, client, client_listen, internal_port, user, key_file")


def test_a_top_level_typo(key):
    with pytest.raises(NodesFileError, match=r"nodes.toml \(line 4\): unknown key 'knwon_hosts'; accepted top-level"):
        parse_nodes_file(_file(key, 'knwon_hosts = "x"\n' + NODES), "nodes.toml")


def test_passwords_are_refused_without_echoing_them(key):
    with pytest.raises(NodesFileError) as e:
        parse_nodes_file(_file(key, 'password = "hunter2"\n' + NODES), "nodes.toml")
    assert "passwords are not supported" in str(e.value)
    assert "hunter2" not in str(e.value)


@pytest.mark.parametrize("body, message", [
    ("", "no nodes; add one [[node]] table"),
    ('[[node]]\nname = "n1"\nssh = "h"\n', "node 'n1': 'address' is required"),
    ('[[node]]\nname = "client"\nssh = "h"\naddress = "a"\n', "name 'client' is not accepted"),
    ('[[node]]\nname = "n1"\nssh = "h:99999"\naddress = "a"\n', "ssh 'h:99999' has a bad port '99999'"),
    ('[[node]]\nname = "n1"\nssh = "h"\naddress = "a:1"\n', "address 'a:1' must be a host without a port"),
    ('[[node]]\nname = "n1"\nssh = "h"\naddress = "a"\nclient = "a"\n', "client 'a' has no port"),
    ('[[node]]\nname = "n1"\nssh = "h"\naddress = "a"\ninternal_port = 9092\n',
     "internal_port 9092 is also the client listener's port"),
    ('[[node]]\nname = "n1"\nssh = "h"\naddress = "a"\n[[node]]\nname = "n1"\nssh = "g"\naddress = "b"\n',
     "node name 'n1' appears twice"),
    ('[[node]]\nname = "n1"\nssh = "h"\naddress = "a"\n[[node]]\nname = "n2"\nssh = "g"\naddress = "a"\n',
     "nodes 'n1' and 'n2' share the address 'a'"),
    ('[[node]]\nname = "n1"\nssh = "h"\naddress = "a"\nkey_file = "/no/such/key"\n',
     "node 'n1': key_file '/no/such/key' does not exist"),
    ('run_dir = "/"\n[[node]]\nname = "n1"\nssh = "h"\naddress = "a"\n', "run_dir '/' must be an absolute path"),
    ('[[node]]\nname = "n1"\nssh = "h"\naddress = 7\n', "address must be a non-empty string, got 7"),
])
def test_bad_input(key, body, message):
    with pytest.raises(NodesFileError) as e:
        parse_nodes_file(_file(key, body), "nodes.toml")
    assert message in str(e.value)


def test_ipv6_addresses(key):
    nodes_file = parse_nodes_file(_file(key, '[[node]]\nname = "n1"\nssh = "[::1]:2222"\naddress = "fd00::1"\n'))
    node = nodes_file.nodes[0]
    assert (node.ssh_host, node.ssh_port, node.address, node.client_bootstrap) == ("::1", 2222, "fd00::1",
                                                                                  "[fd00::1]:9092")


def test_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(NodesFileError, match="--nodes-file .*nope.toml: no such file"):
        load_nodes_file(str(tmp_path / "nope.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text("[[node]\n")
    with pytest.raises(NodesFileError, match="bad.toml: not valid TOML"):
        load_nodes_file(str(bad))
