"""The SSH backend: every node is a real host the harness reaches over SSH (paramiko), as in Jepsen.

`--backend ssh --nodes-file FILE` (harness/nodes_file.py describes the file).
For each run the backend:

1. connects to every host (`check_access`, also called before setup by
   `logquake test` so that a bad host, key or host key fails before any fault);
2. uploads the project as a wheelhouse (harness/wheelhouse.py) and installs it
   into `<run_dir>/<version>/venv`, skipping hosts that already have that
   version (a marker file is written last, so a half-done install is redone);
3. makes `<run_dir>/runs/<run id>/<node>/` with the broker's configuration,
   data, `stdout.log` and `node.pid`, and starts the broker there as a daemon
   in its own session (`setsid`), so signals reach every process it started;
4. implements node control with the shell commands of harness/netshell.py,
   the same ones the Docker backend runs: partitions are iptables DROP rules
   in the LOGQUAKE chain, `slow_net` is tc netem on the interface that carries
   traffic to the other nodes, kill/pause/resume signal the pid file's group;
5. collects logs over SFTP; teardown kills the brokers, flushes and removes
   the chains, deletes the qdisc and removes the run's directory. The installed
   venv stays, to be reused by the next run.

Disk and clock faults (`enable_faults` before setup): the broker runs under
`nodecontrol.launch` on its host, with `nodecontrol.faultfs` mounted over its
log.dirs (controlled through `<node>/faultfs.sock`, with `python -m
nodecontrol.faultfs ctl` over SSH) and libfaketime following `<node>/faketime`;
the host then needs /dev/fuse, fuse3 and libfaketime, which `check_access`
verifies. A graceful stop signals the launcher only; kill kills the group and
removes the dead mount. On a kernel without sch_netem, `slow_net` can only drop
packets (iptables `statistic`), and says so for delay, duplication or reordering.

Host keys are checked against the nodes file's known_hosts with paramiko's
RejectPolicy; `accept_new_host_keys` (the `--accept-new-host-keys` flag)
instead adds a new key, saves it to known_hosts and logs its SHA256
fingerprint. A changed key is always refused. Only keys and agents
authenticate; no credential is ever logged (logs name user@host:port only).

Crash leftovers: each run dir holds `owner` ("<harness host> <pid>"). Setup
kills the brokers of, and removes, run dirs on its hosts whose owner is this
machine and whose harness process is gone.

Our broker gets two listeners (Kafka's names): INTERNAL on the node's
`address` for replication and the controller quorum, CLIENT on
`client_listen`, advertised as `client`, which is what the harness and its
clients use. Another broker (`--system FILE.toml`) must already be installed
on the hosts; its start command gets {host} = address, {port} = the
client_listen port, {advertised_port} = the client port, {peers} =
id@address:internal_port, {python} = the uploaded venv's python, and its
clients must reach it on its address (one listener).

One run at a time per host: the LOGQUAKE chains and the qdisc are the host's,
so setup flushes them and teardown removes them.

Thread-safety: one lock per host serialises commands on it; a cluster-wide
lock makes each control verb atomic with respect to the others.
Sources: Jepsen's `jepsen.control` (SSH control of real hosts) and `jepsen.net`.
"""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import logging
import os
import posixpath
import shlex
import signal
import socket
import stat
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Iterable, TypeVar

import paramiko

from harness import netshell
from nodecontrol.control import ExecResult, Grudge, NodeControl, NodeControlError
from nodecontrol.probe import pid_alive
from harness.nodes_file import NodesFile, SshNode
from harness.system import NodeSpec, System, render

log = logging.getLogger("harness.ssh")

T = TypeVar("T")
_known_hosts_lock = threading.Lock()
KEEP_VERSIONS = 3  # installed versions kept on each host


class HostKeyUnknown(paramiko.SSHException):
    """A host whose key is not in known_hosts, while new keys are not accepted."""

    def __init__(self, hostname: str, key: paramiko.PKey):
        super().__init__(f"{hostname} not found in known_hosts")
        self.hostname = hostname
        self.key = key


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256 fingerprint of a public key (what `ssh-keygen -lf` prints)."""
    digest = base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
    return f"{key.get_name()} SHA256:{digest}"


class _RejectUnknown(paramiko.MissingHostKeyPolicy):
    def missing_host_key(self, client, hostname, key):
        raise HostKeyUnknown(hostname, key)


class _AcceptAndSave(paramiko.MissingHostKeyPolicy):
    """--accept-new-host-keys: trust a key seen for the first time, save it, say so in the log."""

    def __init__(self, known_hosts: str, node: str):
        self.known_hosts = known_hosts
        self.node = node

    def missing_host_key(self, client, hostname, key):
        client.get_host_keys().add(hostname, key.get_name(), key)
        with _known_hosts_lock:
            Path(self.known_hosts).parent.mkdir(parents=True, exist_ok=True)
            with open(self.known_hosts, "a") as f:
                f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        log.warning("accepted the new host key of %s (%s): %s; saved to %s", self.node, hostname, fingerprint(key),
                    self.known_hosts)


class SshHost:
    """One SSH connection to one node's host; commands run through `sh -c` on it."""

    def __init__(self, node: SshNode, known_hosts: str, accept_new_host_keys: bool, connect_timeout_s: float):
        self.node = node
        self.known_hosts = known_hosts
        self.accept_new_host_keys = accept_new_host_keys
        self.connect_timeout_s = connect_timeout_s
        self._client: paramiko.SSHClient | None = None
        self._lock = threading.Lock()

    def connect(self) -> None:
        """Connect and authenticate; NodeControlError says which host failed and what to do."""
        node = self.node
        where = f"{node.name} ({node.ssh_target})"
        client = paramiko.SSHClient()
        if os.path.isfile(self.known_hosts):
            try:
                client.load_host_keys(self.known_hosts)
            except (OSError, paramiko.SSHException) as e:
                raise NodeControlError(f"known_hosts {self.known_hosts} cannot be read: {e}") from None
        elif not self.accept_new_host_keys:
            raise NodeControlError(f"known_hosts {self.known_hosts} does not exist, so the host key of {where} "
                                   "cannot be checked; create it (ssh-keyscan) or pass --accept-new-host-keys")
        client.set_missing_host_key_policy(_AcceptAndSave(self.known_hosts, node.name) if self.accept_new_host_keys
                                           else _RejectUnknown())
        try:
            client.connect(node.ssh_host, port=node.ssh_port, username=node.user,
                           key_filename=node.key_file, allow_agent=node.key_file is None,
                           look_for_keys=node.key_file is None, timeout=self.connect_timeout_s,
                           banner_timeout=self.connect_timeout_s, auth_timeout=self.connect_timeout_s)
        except HostKeyUnknown as e:
            client.close()
            port_flag = f"-p {node.ssh_port} " if node.ssh_port != 22 else ""
            raise NodeControlError(
                f"the host key of {where} is not in known_hosts {self.known_hosts} (it offered {fingerprint(e.key)});"
                f" check it and add it (ssh-keyscan {port_flag}{node.ssh_host} >> {self.known_hosts}), or pass "
                "--accept-new-host-keys to accept and save new keys") from None
        except paramiko.BadHostKeyException as e:
            client.close()
            raise NodeControlError(
                f"the host key of {where} does not match known_hosts {self.known_hosts}: it offered "
                f"{fingerprint(e.key)}, known_hosts has {fingerprint(e.expected_key)}; refusing to connect "
                "(if the host was reinstalled, remove its old line from known_hosts)") from None
        except paramiko.PasswordRequiredException:
            client.close()
            raise NodeControlError(f"the key file {node.key_file} of {where} is encrypted; passphrases are not "
                                   "supported: load the key into an SSH agent and omit key_file") from None
        except paramiko.AuthenticationException:
            client.close()
            how = f"key file {node.key_file}" if node.key_file else "the SSH agent's keys or ~/.ssh/id_*"
            raise NodeControlError(f"authentication as {node.user!r} on {where} failed with {how}; is the public "
                                   f"key in {node.user}'s authorized_keys there?") from None
        except (OSError, paramiko.SSHException, EOFError) as e:
            client.close()
            reason = str(e) or type(e).__name__
            if isinstance(e, (TimeoutError, socket.timeout)):
                reason = f"no answer within {self.connect_timeout_s:g} s"
            raise NodeControlError(f"cannot reach {where} over SSH: {reason}") from None
        transport = client.get_transport()
        assert transport is not None
        # keep idle control connections alive through NAT and firewalls during long runs
        transport.set_keepalive(15)
        self._client = client

    @property
    def connected(self) -> bool:
        transport = self._client.get_transport() if self._client else None
        return transport is not None and transport.is_active()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def run(self, script: str, timeout_s: float = 60.0, check: bool = True, what: str = "") -> ExecResult:
        """Run a shell script on the host; with check, a non-zero exit is a NodeControlError naming `what`."""
        with self._lock:
            if not self.connected:
                self.connect()
            assert self._client is not None
            log.debug("%s$ %s", self.node.name, script)
            try:
                channel = self._client.get_transport().open_session(timeout=self.connect_timeout_s)
                channel.exec_command(script)
                stdout, stderr = bytearray(), bytearray()
                deadline = time.monotonic() + timeout_s
                while True:
                    while channel.recv_ready():
                        stdout += channel.recv(65536)
                    while channel.recv_stderr_ready():
                        stderr += channel.recv_stderr(65536)
                    if channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready():
                        break
                    if time.monotonic() > deadline:
                        channel.close()
                        raise NodeControlError(f"{what or 'command'} on {self.node.name} took more than "
                                               f"{timeout_s:g} s: {script}")
                    time.sleep(0.005)
                status = channel.recv_exit_status()
                channel.close()
            except (OSError, paramiko.SSHException, EOFError) as e:
                self.close()
                raise NodeControlError(f"{what or 'command'} on {self.node.name} ({self.node.ssh_target}) failed: "
                                       f"the SSH connection broke: {e}") from None
        result = ExecResult(status, stdout.decode(errors="replace"), stderr.decode(errors="replace"))
        if check and status != 0:
            detail = (result.stderr.strip() or result.stdout.strip())[-2000:]
            raise NodeControlError(f"{what or 'command'} on {self.node.name} exited with status {status}: "
                                   f"{detail or '(no output)'}\ncommand: {script}")
        return result

    def sftp(self) -> paramiko.SFTPClient:
        with self._lock:
            if not self.connected:
                self.connect()
            assert self._client is not None
            return self._client.open_sftp()


class SshCluster(NodeControl):
    """A Kafka-compatible broker on the hosts of a nodes file; see the module docstring."""

    def __init__(self, system: System, nodes_file: NodesFile, accept_new_host_keys: bool = False, seed: int = 0,
                 extra_properties: dict[str, str] | None = None,
                 wheelhouse: Callable[[], tuple[str, Path]] | None = None):
        if system.config_file is None:
            # a described broker has one listener: {host}:{port}, advertised as {host}:{advertised_port}
            for n in nodes_file.nodes:
                if n.client_host != n.address:
                    raise NodeControlError(
                        f"{nodes_file.path}: node {n.name!r}: client {n.client_bootstrap} is not on its address "
                        f"{n.address!r}; a --system broker ({system.name!r}) gets one listener, advertised as "
                        f"{{host}}:{{advertised_port}} with host = address, so clients must reach it there: set "
                        f"client = \"{_host(n.address)}:<port>\" (only our broker has a second, client listener)")
        self.system = system
        self.nodes_file = nodes_file
        self.nodes = nodes_file.names
        self.seed = seed
        self.extra_properties = dict(extra_properties or {})
        self._wheelhouse = wheelhouse
        self._hosts = {n.name: SshHost(n, nodes_file.known_hosts, accept_new_host_keys, nodes_file.connect_timeout_s)
                       for n in nodes_file.nodes}
        self._by_name = {n.name: n for n in nodes_file.nodes}
        self._lock = threading.RLock()
        self._paused: set[str] = set()
        self._devices: dict[str, str] = {}
        self.run_id = f"run-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.version: str | None = None
        self._set_up_nodes: set[str] = set()
        self._accessed = False

    def leftovers(self) -> dict:
        return {"nodes_file": self.nodes_file.path, "run_path": self.run_path,
                "hosts": [f"{n.ssh_host}:{n.ssh_port}" for n in self.nodes_file.nodes]}

    # ----- paths on the hosts ------------------------------------------------------------

    @property
    def run_path(self) -> str:
        return posixpath.join(self.nodes_file.run_dir, "runs", self.run_id)

    def node_dir(self, node: str) -> str:
        return posixpath.join(self.run_path, node)

    def _pid_file(self, node: str) -> str:
        return posixpath.join(self.node_dir(node), "node.pid")

    def _python(self) -> str:
        assert self.version is not None
        return posixpath.join(self.nodes_file.run_dir, self.version, "venv", "bin", "python")

    # ----- lifecycle -------------------------------------------------------------------------

    def check_access(self) -> None:
        """Connect to every host and check it has what node control needs; errors name the host."""
        def check(node: str) -> None:
            host = self._hosts[node]
            if not host.connected:
                host.connect()
            python = self.nodes_file.python
            want = f"{sys.version_info[0]}.{sys.version_info[1]}"
            result = host.run(
                f"missing=''; for tool in iptables tc setsid kill ip; do command -v $tool >/dev/null 2>&1 || "
                f"missing=\"$missing $tool\"; done; echo \"missing:$missing\"; "
                f"{shlex.quote(python)} -c 'import sys; print(\"python:%d.%d\" % sys.version_info[:2])' 2>/dev/null; "
                f"id -u", check=False, what="checking the host")
            lines = result.stdout.split("\n")
            missing = next((l.split(":", 1)[1].split() for l in lines if l.startswith("missing:")), [])
            if missing:
                raise NodeControlError(f"{node} ({host.node.ssh_target}) lacks {', '.join(missing)}; node control "
                                       "needs iptables, iproute2 (ip, tc), util-linux (setsid) and procps (kill)")
            found = next((l.split(":", 1)[1] for l in lines if l.startswith("python:")), None)
            if found != want:
                raise NodeControlError(f"{node} ({host.node.ssh_target}): {python} is {found or 'missing'}, but the "
                                       f"uploaded wheels are for Python {want}; set python = \"...\" in the nodes "
                                       f"file to a Python {want} on that host")
            if result.stdout.split()[-1:] != ["0"]:
                raise NodeControlError(f"{node} ({host.node.ssh_target}): user {host.node.user!r} is not root; "
                                       "iptables, tc and the run dir need root (user = \"root\")")

            if "disk" in self.fault_kinds and host.run("test -c /dev/fuse && command -v fusermount3", check=False,
                                                       what="checking FUSE").exit_status != 0:
                raise NodeControlError(f"{node} ({host.node.ssh_target}): disk faults need /dev/fuse and fuse3 "
                                       "(fusermount3) on the host")
            if "clock" in self.fault_kinds and host.run("ls /usr/lib/*/faketime/libfaketimeMT.so.1 "
                                                        "/usr/lib/faketime/libfaketimeMT.so.1 2>/dev/null | grep -q .",
                                                        check=False, what="checking libfaketime").exit_status != 0:
                raise NodeControlError(f"{node} ({host.node.ssh_target}): clock faults need libfaketime "
                                       "(Debian's libfaketime package) on the host")

        try:
            self._fan_out(check, self.nodes)
        except BaseException:
            for host in self._hosts.values():
                host.close()
            raise
        self._accessed = True

    def enable_faults(self, kinds) -> None:
        """As NodeControl's; hosts already checked are checked again for what the new kinds need."""
        super().enable_faults(kinds)
        if self._accessed and self.fault_kinds:
            self.check_access()

    def prepare(self) -> None:
        """Check the hosts and install the project on them, without starting anything (setup does it too)."""
        if not self._accessed:
            self.check_access()
        if self.version is None:
            self._install()

    def setup(self) -> None:
        started = time.monotonic()
        if not self._accessed:
            self.check_access()
        self._reap_stale_runs()
        if self.version is None:
            self._install()
        installed = time.monotonic()

        def prepare(node: str) -> None:
            host = self._hosts[node]
            device = self._devices[node] = self._device_of(node)
            host.run(f"mkdir -p {shlex.quote(posixpath.join(self.node_dir(node), 'logs'))} && echo "
                     f"{shlex.quote(f'{socket.gethostname()} {os.getpid()}')} > "
                     f"{shlex.quote(posixpath.join(self.run_path, 'owner'))}", what="making the run dir")
            self._set_up_nodes.add(node)
            host.run(netshell.chain_setup_shell() + "; " + netshell.heal_shell(device), what="preparing iptables")
            if "clock" in self.fault_kinds:
                self._set_clock(node, 0.0)
            self._write_config(node)

        self._fan_out(prepare, self.nodes)
        for node in self.nodes:
            self.start(node)
        self.wait_ready(self.nodes)
        log.info("ssh cluster up on %s in %.1f s (install %.1f s)", ", ".join(self.nodes),
                 time.monotonic() - started, installed - started)

    def teardown(self) -> None:
        with self._lock:
            def clean(node: str) -> None:
                host = self._hosts[node]
                if node not in self._set_up_nodes:
                    return
                device = self._devices.get(node)
                run_path = shlex.quote(self.run_path)
                steps = [netshell.signal_pid_file_shell(self._pid_file(node), "CONT"),
                         netshell.signal_pid_file_shell(self._pid_file(node), "KILL"),
                         netshell.chain_teardown_shell(),
                         netshell.netem_delete_shell(device) if device else "true",
                         self._unmount_shell(node),
                         f"rm -rf {shlex.quote(self.node_dir(node))}",
                         # the owner file goes with the last node dir of the run on this host
                         f"rmdir {run_path} 2>/dev/null || {{ ls -d {run_path}/*/ >/dev/null 2>&1 || "
                         f"rm -rf {run_path}; }}",
                         "true"]
                host.run("; ".join(steps), what="teardown")
                self._set_up_nodes.discard(node)

            errors = []
            for node, error in self._fan_out(clean, self.nodes, raise_first=False):
                if error is not None:
                    errors.append(f"{node}: {error}")
            for host in self._hosts.values():
                host.close()
            self._paused.clear()
            if errors:
                raise NodeControlError("teardown left things behind on " + "; ".join(errors))

    def bootstrap_servers(self) -> str:
        return ",".join(n.client_bootstrap for n in self.nodes_file.nodes)

    def node_bootstrap(self, node: str) -> str:
        self.check_node(node)
        return self._by_name[node].client_bootstrap

    def collect(self, dest_dir: str) -> list[str]:
        written: list[str] = []
        for node in self.nodes:
            if node not in self._set_up_nodes:
                continue
            out = Path(dest_dir) / node
            out.mkdir(parents=True, exist_ok=True)
            sources = [posixpath.join(self.node_dir(node), "stdout.log")]
            log_path = self.system.log_path(self._spec(node))
            if log_path:
                sources.append(posixpath.join(self.node_dir(node), log_path))  # relative paths: in the node dir
            sftp = self._hosts[node].sftp()
            try:
                for src in sources:
                    try:
                        if not stat.S_ISREG(sftp.stat(src).st_mode):
                            continue
                    except OSError:
                        continue
                    target = out / posixpath.basename(src)
                    sftp.get(src, str(target))
                    written.append(str(target))
            finally:
                sftp.close()
        return written

    # ----- install and configure ----------------------------------------------------------------

    def _install(self) -> None:
        from harness.wheelhouse import build_wheelhouse

        version, wheel_dir = (self._wheelhouse or build_wheelhouse)()
        self.version = version
        version_dir = posixpath.join(self.nodes_file.run_dir, version)
        marker = posixpath.join(version_dir, "installed")
        wheels = sorted(p for p in Path(wheel_dir).iterdir() if p.suffix == ".whl")
        pip_wheel = next((p.name for p in wheels if p.name.startswith("pip-")), None)
        if pip_wheel is None:
            raise NodeControlError(f"the wheelhouse {wheel_dir} has no pip wheel; remove it to have it rebuilt")

        def install(node: str) -> None:
            host = self._hosts[node]
            if host.run(f"test -f {shlex.quote(marker)}", check=False).exit_status == 0:
                log.info("%s already has logquake %s", node, version)
                return
            remote_wheels = posixpath.join(version_dir, "wheels")
            host.run(f"mkdir -p {shlex.quote(remote_wheels)}", what="making the install dir")
            sftp = host.sftp()
            try:
                for wheel in wheels:
                    sftp.put(str(wheel), posixpath.join(remote_wheels, wheel.name))
            finally:
                sftp.close()
            venv = posixpath.join(version_dir, "venv")
            python = shlex.quote(self.nodes_file.python)
            host.run(f"rm -rf {shlex.quote(venv)} && {python} -m venv --without-pip {shlex.quote(venv)} && "
                     f"{shlex.quote(posixpath.join(venv, 'bin', 'python'))} "
                     f"{shlex.quote(posixpath.join(remote_wheels, pip_wheel))}/pip install --isolated --quiet "
                     f"--no-index --find-links {shlex.quote(remote_wheels)} logquake && "
                     f"touch {shlex.quote(marker)}", timeout_s=600, what=f"installing logquake {version}")
            log.info("installed logquake %s on %s", version, node)
            # keep the newest few versions (each a venv of ~100 MB); other harnesses may still use them
            base = shlex.quote(self.nodes_file.run_dir)
            host.run(f"ls -1dt {base}/*/installed 2>/dev/null | tail -n +{KEEP_VERSIONS + 1} | "
                     f"while read -r m; do rm -rf \"$(dirname \"$m\")\"; done; true", what="pruning old versions")

        self._fan_out(install, self.nodes)

    def properties(self, node: str) -> dict[str, str]:
        """Our broker's properties on `node`: the system's, with the two listeners of a multi-host cluster
        (empty for a described broker, which is configured by its own start command)."""
        if self.system.config_file is None:
            return {}
        spec = self._spec(node)
        subs = spec.substitutions()
        subs["python"] = self._python()
        props = {k: v.format(**subs) for k, v in self.system.properties.items()}
        props.update({k: v.format(**subs) for k, v in self.extra_properties.items()})
        me = self._by_name[node]
        props.pop("logquake.outbound.address", None)
        props.update({
            "listeners": f"INTERNAL://{_host(me.address)}:{me.internal_port},"
                         f"CLIENT://{_host(me.client_listen_host)}:{me.client_listen_port}",
            "advertised.listeners": f"INTERNAL://{_host(me.address)}:{me.internal_port},"
                                    f"CLIENT://{_host(me.client_host)}:{me.client_port}",
            "listener.security.protocol.map": "INTERNAL:PLAINTEXT,CLIENT:PLAINTEXT",
            "inter.broker.listener.name": "INTERNAL",
            "controller.listener.names": "INTERNAL",
            "controller.quorum.voters": ",".join(f"{i}@{_host(n.address)}:{n.internal_port}"
                                                 for i, n in enumerate(self.nodes_file.nodes, 1)),
        })
        return props

    def _spec(self, node: str) -> NodeSpec:
        """The placeholders of a system description on this host: {host} is the node's address, {port} its
        client listener's port, {advertised_port} the port of `client`, {peers} id@address:internal_port."""
        me = self._by_name[node]
        node_id = self.nodes.index(node) + 1
        peers = ",".join(f"{i}@{_host(n.address)}:{n.internal_port}" for i, n in enumerate(self.nodes_file.nodes, 1))
        return NodeSpec(node, node_id, me.address, me.client_listen_port, me.client_port, self.node_dir(node),
                        me.address, peers, internal_port=me.internal_port)

    def _write_config(self, node: str) -> None:
        if self.system.config_file is None:
            return
        spec = self._spec(node)
        subs = spec.substitutions()
        path = self.system.config_file.format(**subs)
        text = "".join(f"{k}={v}\n" for k, v in self.properties(node).items())
        sftp = self._hosts[node].sftp()
        try:
            with sftp.open(path, "w") as f:
                f.write(text)
        finally:
            sftp.close()

    def _command(self, node: str) -> list[str]:
        """The broker's argv, under nodecontrol.launch when disk or clock faults are enabled."""
        subs = self._spec(node).substitutions()
        subs["python"] = self._python()
        command = [render(part, subs) for part in self.system.start]
        if not self.fault_kinds:
            return command
        d = self.node_dir(node)
        launcher = [self._python(), "-m", "nodecontrol.launch", "--pid-file", posixpath.join(d, "broker.pid")]
        if "disk" in self.fault_kinds:
            log_dir = self._log_dir(node)
            launcher += ["--faultfs", f"{log_dir}:{log_dir}:{self._faultfs_socket(node)}"]
        if "clock" in self.fault_kinds:
            launcher += ["--faketime", self._faketime_file(node)]
        return launcher + ["--"] + command

    def _log_dir(self, node: str) -> str:
        raw = self.properties(node).get("log.dirs", "")
        if not raw:
            raise NodeControlError(f"disk faults need to know where {self.system.name!r} keeps its data; only our "
                                   "broker's log.dirs is known to the SSH backend")
        if "," in raw:
            raise NodeControlError(f"disk faults need exactly one log directory; log.dirs is {raw!r}")
        return posixpath.normpath(posixpath.join(self.node_dir(node), raw))

    def _faultfs_socket(self, node: str) -> str:
        return posixpath.join(self.node_dir(node), "faultfs.sock")

    def _faketime_file(self, node: str) -> str:
        return posixpath.join(self.node_dir(node), "faketime")

    def _unmount_shell(self, node: str) -> str:
        """Lazily unmount every FUSE mount under the node's dir (a killed launcher leaves a dead one)."""
        d = self.node_dir(node)
        return (f"awk -v d={shlex.quote(d + '/')} 'index($2, d) == 1 {{print $2}}' /proc/mounts | "
                f"while read -r m; do fusermount3 -u -z \"$m\" 2>/dev/null || umount -l \"$m\" 2>/dev/null; done; true")

    # ----- process control ---------------------------------------------------------------------

    def start(self, node: str) -> None:
        self.check_node(node)
        with self._lock:
            if self.is_running(node):
                return
            d = self.node_dir(node)
            # `cd` as a command of its own: with `cd X && setsid ... &` the shell would fork a subshell for the
            # whole list, which lingers as the broker's parent; a lone `setsid ... &` is exec'd by the fork
            self._hosts[node].run(
                f"rm -f {shlex.quote(self._pid_file(node))}; cd {shlex.quote(d)} || exit 1; "
                + netshell.start_in_background_shell(self._command(node), self._pid_file(node),
                                                     posixpath.join(d, "stdout.log")),
                timeout_s=30, what=f"starting {node}")
            self._paused.discard(node)
            log.info("started %s", node)

    def wait_ready(self, nodes: Iterable[str], timeout_s: float | None = None) -> None:
        """Poll, on each host, the client listener until it accepts a connection (the broker is up)."""
        timeout_s = timeout_s or self.system.ready_timeout_s

        def wait(node: str) -> None:
            me = self._by_name[node]
            if self.system.config_file is None:  # a described broker listens on {host}, the node's address
                probe_host = me.address
            else:
                probe_host = "127.0.0.1" if me.client_listen_host in ("0.0.0.0", "::", "") else me.client_listen_host
            script = ("import socket, sys, time, os\n"
                      f"deadline = time.monotonic() + {timeout_s!r}\n"
                      "while time.monotonic() < deadline:\n"
                      "    try:\n"
                      f"        socket.create_connection(({probe_host!r}, {me.client_listen_port}), 0.5).close()\n"
                      "        sys.exit(0)\n"
                      "    except OSError:\n"
                      "        pass\n"
                      f"    pid = open({self._pid_file(node)!r}).read().strip()\n"
                      "    try:\n"
                      "        os.killpg(int(pid), 0)\n"
                      "    except (OSError, ValueError):\n"
                      "        sys.exit(3)\n"
                      "    time.sleep(0.1)\n"
                      "sys.exit(2)\n")
            result = self._hosts[node].run(f"{shlex.quote(self._python())} -c {shlex.quote(script)}",
                                           timeout_s=timeout_s + 30, check=False, what=f"waiting for {node}")
            if result.exit_status == 0:
                return
            tail = self._tail(node)
            if result.exit_status == 3:
                raise NodeControlError(f"{node} exited while starting; last lines of its output:\n{tail}")
            raise NodeControlError(f"{node} did not accept connections on {probe_host}:{me.client_listen_port} "
                                   f"within {timeout_s:g} s (status {result.exit_status}: "
                                   f"{result.stderr.strip()[-500:]}); last lines of its output:\n{tail}")

        self._fan_out(wait, list(nodes))

    def _tail(self, node: str, lines: int = 20) -> str:
        path = shlex.quote(posixpath.join(self.node_dir(node), "stdout.log"))
        try:
            return self._hosts[node].run(f"tail -n {lines} {path}", check=False).stdout.strip() or "(no output)"
        except NodeControlError as e:
            return f"(output unavailable: {e})"

    def _signal(self, node: str, signal_name: str) -> bool:
        result = self._hosts[node].run(netshell.signal_pid_file_shell(self._pid_file(node), signal_name),
                                       check=False, what=f"SIG{signal_name} to {node}")
        return result.exit_status == 0

    def _wait_gone(self, node: str, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.is_running(node):
                return True
            time.sleep(0.1)
        return not self.is_running(node)

    def stop(self, node: str) -> None:
        self.check_node(node)
        stop_name = signal.Signals(self.system.stop_signal).name.removeprefix("SIG")
        with self._lock:
            self._signal(node, "CONT")
            if self.fault_kinds:
                # the launcher stops the broker, then unmounts; a group-wide signal would reach the FUSE
                # process too and could take the disk away from a broker that is still closing
                pid = shlex.quote(self._pid_file(node))
                sent = self._hosts[node].run(f'[ -s {pid} ] && kill -s {stop_name} "$(cat {pid})" 2>/dev/null',
                                             check=False, what=f"SIG{stop_name} to {node}").exit_status == 0
            else:
                sent = self._signal(node, stop_name)
            if sent and not self._wait_gone(node, self.system.stop_timeout_s):
                log.warning("%s did not stop within %.0f s of SIG%s; killing it", node, self.system.stop_timeout_s,
                            stop_name)
                self._hard_kill(node)
            self._paused.discard(node)

    def _hard_kill(self, node: str) -> None:
        self._signal(node, "CONT")
        self._signal(node, "KILL")
        if not self._wait_gone(node, 10):
            raise NodeControlError(f"{node} still runs 10 s after SIGKILL")
        if "disk" in self.fault_kinds:
            # the FUSE process died with the group: remove its dead mount now, not at the next start
            self._hosts[node].run(self._unmount_shell(node), check=False, what=f"unmounting {node}'s disk")

    def kill(self, node: str) -> None:
        self.check_node(node)
        with self._lock:
            self._hard_kill(node)
            self._paused.discard(node)
            log.info("killed %s", node)

    def pause(self, node: str) -> None:
        self.check_node(node)
        with self._lock:
            if self._signal(node, "STOP"):
                self._paused.add(node)

    def resume(self, node: str) -> None:
        self.check_node(node)
        with self._lock:
            self._signal(node, "CONT")
            self._paused.discard(node)

    def is_running(self, node: str) -> bool:
        self.check_node(node)
        # a zombie still answers kill -0; count only processes that are not defunct
        pid = shlex.quote(self._pid_file(node))
        script = (f"{netshell.pid_file_running_shell(self._pid_file(node))} && "
                  f"ps -o stat= -g \"$(cat {pid})\" | grep -qv '^Z'")
        return self._hosts[node].run(script, check=False, what=f"checking {node}").exit_status == 0

    def is_paused(self, node: str) -> bool:
        return node in self._paused

    # ----- probes ------------------------------------------------------------------------------------

    def round_trips(self, links: list[tuple[str, str]], timeout_s: float) -> dict[tuple[str, str], float | None]:
        """Client links are probed from this machine to each node's client address; a node's links from its
        host, with the uploaded venv's python."""
        nodes = {n.name: n for n in self.nodes_file.nodes}
        return self.round_trips_by_source(
            links, timeout_s, client_address=lambda dst: (nodes[dst].client_host, nodes[dst].client_port),
            run_on=lambda src, argv: self._hosts[src].run(shlex.join(argv), check=False, timeout_s=timeout_s + 10,
                                                          what=f"probing links from {src}"),
            peer_address=lambda dst: f"{_host(nodes[dst].address)}:{nodes[dst].internal_port}", python=self._python())

    def clock_offset(self, node: str) -> dict:
        return self.clock_offset_by_exec(node, posixpath.join(self.node_dir(node), "broker.pid"), self._python())

    def observed_state(self, node: str) -> str:
        self.check_node(node)
        pid = shlex.quote(self._pid_file(node))
        states = self._hosts[node].run(f"[ -s {pid} ] && ps -o stat= -g \"$(cat {pid})\"; true", check=False,
                                       what=f"observing {node}").stdout.split()
        live = [s for s in states if not s.startswith("Z")]
        if not live:
            return "gone"
        return "paused" if all(s.startswith("T") for s in live) else "running"

    def exec(self, node: str, command: list[str], timeout_s: float = 60.0) -> ExecResult:
        self.check_node(node)
        if not command:
            raise NodeControlError(f"exec on {node}: the command is empty")
        return self._hosts[node].run(shlex.join(command), timeout_s=timeout_s, check=False,
                                     what=f"exec {command[0]}")

    # ----- network --------------------------------------------------------------------------------

    def partition(self, grudge: Grudge) -> None:
        self.check_grudge(grudge)
        addresses = {n.name: n.address for n in self.nodes_file.nodes}
        grudge = {dst: set(srcs) for dst, srcs in grudge.items()}
        with self._lock:
            def cut(node: str) -> None:
                me = self._by_name[node]
                try:
                    commands = netshell.drop_rules_argv(grudge, node, addresses, client_port=me.client_listen_port)
                except netshell.NetShellError as e:
                    raise NodeControlError(f"partition of {node}: {e}") from None
                if commands:
                    self._hosts[node].run(" && ".join(shlex.join(c) for c in commands), what=f"partition of {node}")

            self._fan_out(cut, [n for n in self.nodes if n in grudge and grudge[n] - {n}])

    def heal(self) -> None:
        with self._lock:
            def heal_node(node: str) -> None:
                if node in self._devices:
                    self._hosts[node].run(netshell.heal_shell(self._devices[node]), what=f"healing {node}")

            self._fan_out(heal_node, [n for n in self.nodes if n in self._set_up_nodes])

    def slow_net(self, latency_ms: float, jitter_ms: float = 0.0, loss: float = 0.0, duplicate: float = 0.0,
                 reorder: float = 0.0) -> None:
        """tc netem on each host's interface to the other nodes; without sch_netem, loss alone via iptables."""
        self.check_net_fractions(loss=loss, duplicate=duplicate, reorder=reorder)
        with self._lock:
            def slow(node: str) -> None:
                try:
                    argv = netshell.netem_argv(self._devices[node], latency_ms, jitter_ms, loss, duplicate, reorder)
                except netshell.NetShellError as e:
                    raise NodeControlError(f"slow_net: {e}") from None
                result = self._hosts[node].run(shlex.join(argv), check=False, what=f"tc netem on {node}")
                if result.exit_status == 0:
                    return
                if "qdisc kind is unknown" not in result.stderr:
                    raise NodeControlError(f"tc netem on {node} exited with status {result.exit_status}: "
                                           f"{result.stderr.strip()}\ncommand: {shlex.join(argv)}")
                if latency_ms or jitter_ms or duplicate or reorder:
                    raise NodeControlError(
                        f"slow_net(latency_ms={latency_ms}, jitter_ms={jitter_ms}, duplicate={duplicate}, reorder="
                        f"{reorder}) on {node}: its kernel has no netem qdisc (CONFIG_NET_SCH_NETEM is not set; tc "
                        "says 'Specified qdisc kind is unknown'), so only packet loss can be injected there")
                self._hosts[node].run(" && ".join(shlex.join(c) for c in netshell.loss_rules_argv(loss)),
                                      what=f"iptables loss rules on {node}")

            self._fan_out(slow, [n for n in self.nodes if n in self._devices])

    # ----- disk and clock ---------------------------------------------------------------------------

    def _disk_ctl(self, node: str, fault: str) -> dict:
        result = self._hosts[node].run(shlex.join([self._python(), "-m", "nodecontrol.faultfs", "ctl",
                                                   self._faultfs_socket(node), fault]),
                                       check=False, what=f"disk {fault} on {node}")
        return self.disk_ctl_status(node, fault, result)

    def _set_clock(self, node: str, offset_s: float) -> None:
        path = shlex.quote(self._faketime_file(node))
        # libfaketime rereads the file on every call (FAKETIME_NO_CACHE): replace it whole, never half-written
        self._hosts[node].run(f"printf '%s\\n' {offset_s:+.3f} > {path}.tmp && mv {path}.tmp {path}",
                              what=f"setting the clock of {node}")

    # ----- crash leftovers -------------------------------------------------------------------------

    def _device_of(self, node: str) -> str:
        """The interface `node`'s host reaches the other nodes through (where partitions and netem act)."""
        others = [n.address for n in self.nodes_file.nodes if n.name != node]
        route_to = others[0] if others else "1.1.1.1"
        device = self._hosts[node].run(f"ip -o route get {shlex.quote(route_to)} | sed -n 's/.* dev \\([^ ]*\\).*/\\1/p'",
                                       what="finding the network interface").stdout.strip().split("\n")[0]
        if not device:
            raise NodeControlError(f"{node}: cannot tell which interface reaches {route_to} (ip route get)")
        return device

    def heal_dead_runs(self) -> list[str]:
        """`logquake heal` on these hosts: connect, remove the runs of dead harnesses of this machine (brokers
        resumed and killed, mounts, run dirs), and, on a host that no run uses any more, the partition and loss
        chains and the netem qdisc they may have left; what was removed, a line each."""
        removed: list[str] = []
        try:
            self._fan_out(lambda node: self._hosts[node].connected or self._hosts[node].connect(), self.nodes)
            removed += self._reap_stale_runs()
            runs = shlex.quote(posixpath.join(self.nodes_file.run_dir, "runs"))

            def release(node: str) -> None:
                device = self._device_of(node)
                left = self._hosts[node].run(
                    f"if ls {runs}/*/owner >/dev/null 2>&1; then echo in-use; else {netshell.chain_teardown_shell()}; "
                    f"{netshell.netem_delete_shell(device)}; echo released; fi", check=False,
                    what="releasing the network").stdout.split()
                if left[-1:] == ["released"]:
                    removed.append(f"{node}: iptables chains and netem on {device} (no run uses the host)")

            self._fan_out(release, self.nodes)
        finally:
            for host in self._hosts.values():
                host.close()
        return removed

    def _reap_stale_runs(self) -> list[str]:
        """Kill the brokers of, and remove, run dirs left on these hosts by a harness of this machine that died;
        what was removed."""
        runs = shlex.quote(posixpath.join(self.nodes_file.run_dir, "runs"))
        me = socket.gethostname()
        removed: list[str] = []

        def reap(node: str) -> None:
            host = self._hosts[node]
            listing = host.run(f"for f in {runs}/*/owner; do [ -f \"$f\" ] && echo \"$f $(cat \"$f\")\"; done; true",
                               what="listing old runs").stdout
            for line in listing.splitlines():
                parts = line.split()
                if len(parts) != 3 or parts[1] != me or not parts[2].isdigit() or pid_alive(int(parts[2])):
                    continue
                run_path = posixpath.dirname(parts[0])
                if run_path == self.run_path:
                    continue
                quoted = shlex.quote(run_path)
                host.run(f"for p in {quoted}/*/node.pid; do [ -s \"$p\" ] && kill -s CONT -- -\"$(cat \"$p\")\" "
                         f"2>/dev/null; [ -s \"$p\" ] && kill -s KILL -- -\"$(cat \"$p\")\" 2>/dev/null; done; "
                         f"awk -v d={shlex.quote(run_path + '/')} 'index($2, d) == 1 {{print $2}}' /proc/mounts | "
                         f"while read -r m; do fusermount3 -u -z \"$m\" 2>/dev/null || umount -l \"$m\"; done; "
                         f"rm -rf {quoted}", what="removing a crashed run")
                log.warning("removed leftovers of a crashed run on %s: %s", node, run_path)
                removed.append(f"{node}: run directory {run_path} and its processes and mounts")

        self._fan_out(reap, self.nodes)
        return removed

    # ----- helpers -----------------------------------------------------------------------------------

    def _fan_out(self, action: Callable[[str], T], nodes: list[str], raise_first: bool = True):
        """Run action on every node at once; raise the first error (in node order) or return (node, error)s."""
        if not nodes:
            return []
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(nodes), thread_name_prefix="ssh") as pool:
            futures = {node: pool.submit(action, node) for node in nodes}
        outcomes = []
        for node in nodes:
            error = futures[node].exception()
            if error is not None and raise_first:
                raise error
            outcomes.append((node, error))
        return outcomes


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def heal_hosts(nodes_file_path: str) -> list[str]:
    """`logquake heal` for the hosts of a nodes file that runs of dead harnesses used (see
    `SshCluster.heal_dead_runs`); the host keys must be known (as the run knew them)."""
    from harness.nodes_file import load_nodes_file
    from harness.system import logquake_broker

    nodes_file = load_nodes_file(nodes_file_path)
    return SshCluster(logquake_broker({}, len(nodes_file.nodes)), nodes_file).heal_dead_runs()
