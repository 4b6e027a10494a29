"""SSH access of the SSH backend against an sshd on 127.0.0.1: host keys, keys, unreachable hosts, commands.

These tests start their own sshd (temporary host key, authorized_keys and
config, on a free port of 127.0.0.1) and only connect and run harmless
commands: nothing here changes the host's firewall or processes.
"""

import getpass
import os
import re
import shutil
import socket
import subprocess
import time

import paramiko
import pytest

from harness.backends.ssh import SshHost, fingerprint
from nodecontrol.control import NodeControlError
from harness.nodes_file import parse_nodes_file

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return str(path)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """An sshd on 127.0.0.1 that accepts one generated key for the current user."""
    d = tmp_path_factory.mktemp("sshd")
    host_key = _keygen(d / "host_key")
    client_key = _keygen(d / "client_key")
    (d / "authorized_keys").write_text((d / "client_key.pub").read_text())
    os.chmod(d / "authorized_keys", 0o600)
    port = _free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nAuthorizedKeysFile {d / 'authorized_keys'}\n"
        f"PidFile {d / 'sshd.pid'}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
        "StrictModes no\nPermitRootLogin prohibit-password\n")
    try:
        os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege separation directory
    except PermissionError:
        pass  # not root: sshd then runs without privilege separation
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / "sshd_config")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"sshd did not start: {proc.stderr.read().decode()}") from None
                time.sleep(0.05)
        host_line = (d / "host_key.pub").read_text().split()
        yield {"port": port, "client_key": client_key, "dir": d,
               "known_line": f"[127.0.0.1]:{port} {host_line[0]} {host_line[1]}\n"}
    finally:
        proc.terminate()
        proc.wait(10)


def _host(sshd, tmp_path, known_hosts=None, key=None, port=None, accept=False, timeout_s=5):
    user = getpass.getuser()
    kh = tmp_path / "known_hosts"
    if known_hosts is not None:
        kh.write_text(known_hosts)
    nodes = parse_nodes_file(
        f'user = "{user}"\nkey_file = "{key or sshd["client_key"]}"\nknown_hosts = "{kh}"\n'
        f'connect_timeout_s = {timeout_s}\n'
        f'[[node]]\nname = "n1"\nssh = "127.0.0.1:{port or sshd["port"]}"\naddress = "127.0.0.2"\n', "nodes.toml")
    return SshHost(nodes.nodes[0], nodes.known_hosts, accept, nodes.connect_timeout_s), kh


def test_known_host_connects_and_runs_commands(sshd, tmp_path):
    host, _ = _host(sshd, tmp_path, known_hosts=sshd["known_line"])
    try:
        result = host.run("echo out; echo err >&2; exit 3", check=False)
        assert (result.exit_status, result.stdout, result.stderr) == (3, "out\n", "err\n")
        with pytest.raises(NodeControlError, match=r"probing on n1 exited with status 3: err"):
            host.run("echo err >&2; exit 3", what="probing")
        with pytest.raises(NodeControlError, match=r"sleeping on n1 took more than 0.3 s"):
            host.run("sleep 5", timeout_s=0.3, what="sleeping")
        # the connection survives a timed-out command
        assert host.run("echo again").stdout == "again\n"
    finally:
        host.close()


def test_unknown_host_key_is_refused_without_the_flag(sshd, tmp_path):
    host, kh = _host(sshd, tmp_path, known_hosts="")
    with pytest.raises(NodeControlError) as e:
        host.connect()
    key = paramiko.PKey.from_path(str(sshd["dir"] / "host_key"))
    assert str(e.value) == (
        f"the host key of n1 ({getpass.getuser()}@127.0.0.1:{sshd['port']}) is not in known_hosts {kh}"
        f" (it offered {fingerprint(key)}); check it and add it (ssh-keyscan -p {sshd['port']} 127.0.0.1 >> {kh}),"
        " or pass --accept-new-host-keys to accept and save new keys")
    assert kh.read_text() == ""


def test_missing_known_hosts_file_is_refused_without_the_flag(sshd, tmp_path):
    host, kh = _host(sshd, tmp_path)
    with pytest.raises(NodeControlError, match=f"known_hosts {kh} does not exist"):
        host.connect()


def test_the_flag_accepts_saves_and_logs_the_fingerprint(sshd, tmp_path, caplog):
    host, kh = _host(sshd, tmp_path, accept=True)
    host.connect()
    host.close()
    key = paramiko.PKey.from_path(str(sshd["dir"] / "host_key"))
    assert kh.read_text() == sshd["known_line"]
    assert f"accepted the new host key of n1 ([127.0.0.1]:{sshd['port']}): {fingerprint(key)}" in caplog.text
    # once saved, the default policy accepts it
    strict, _ = _host(sshd, tmp_path)
    try:
        assert strict.run("echo ok").stdout == "ok\n"
    finally:
        strict.close()


def test_fingerprint_is_openssh_s(sshd):
    out = subprocess.run(["ssh-keygen", "-lf", str(sshd["dir"] / "host_key.pub")], capture_output=True,
                         text=True, check=True).stdout.split()
    key = paramiko.PKey.from_path(str(sshd["dir"] / "host_key"))
    assert fingerprint(key) == f"ssh-ed25519 {out[1]}"


def test_changed_host_key_is_refused_even_with_the_flag(sshd, tmp_path):
    other = paramiko.Ed25519Key.from_private_key_file(_keygen(tmp_path / "other"))
    host, _ = _host(sshd, tmp_path, known_hosts=f"[127.0.0.1]:{sshd['port']} ssh-ed25519 {other.get_base64()}\n",
                    accept=True)
    with pytest.raises(NodeControlError, match=r"does not match known_hosts .*refusing to connect"):
        host.connect()


def test_wrong_key_is_an_authentication_error(sshd, tmp_path):
    wrong = _keygen(tmp_path / "wrong")
    host, _ = _host(sshd, tmp_path, known_hosts=sshd["known_line"], key=wrong)
    with pytest.raises(NodeControlError, match=rf"authentication as '.*' on n1 .* failed with key file {wrong}; "
                                               r"is the public key in .*authorized_keys there\?"):
        host.connect()


def test_unreachable_host(sshd, tmp_path):
    host, _ = _host(sshd, tmp_path, known_hosts=sshd["known_line"], port=_free_port())
    with pytest.raises(NodeControlError, match=r"cannot reach n1 \(.*@127.0.0.1:\d+\) over SSH: "):
        host.connect()


def _nodes_toml(sshd, tmp_path, known_hosts: str) -> str:
    kh = tmp_path / "known_hosts"
    kh.write_text(known_hosts)
    path = tmp_path / "nodes.toml"
    path.write_text(f'user = "{getpass.getuser()}"\nkey_file = "{sshd["client_key"]}"\n'
                    f'known_hosts = "{kh}"\n[[node]]\nname = "n1"\nssh = "127.0.0.1:{sshd["port"]}"\n'
                    'address = "127.0.0.2"\n')
    return str(path)


def test_logquake_test_refuses_an_unknown_host_key_before_anything_runs(sshd, tmp_path, capsys):
    from harness.run_command import main

    store = tmp_path / "store"
    code = main(["test", "--backend", "ssh", "--nodes-file", _nodes_toml(sshd, tmp_path, ""), "--nemesis",
                 "partition,kill", "--store", str(store), "--quiet"][1:])
    err = capsys.readouterr().err
    assert code == 254, err
    assert re.search(r"logquake test: the host key of n1 \(.*@127.0.0.1:\d+\) is not in known_hosts .* or pass "
                     r"--accept-new-host-keys", err), err
    assert not store.exists()


def test_logquake_test_needs_the_nodes_file_with_ssh(capsys):
    from harness.run_command import main

    assert main(["--backend", "ssh"]) == 254
    assert "--backend ssh and --nodes-file FILE go together" in capsys.readouterr().err
