"""The local backend: every node is a process on this machine, behind the fault proxy.

Layout of a run: `<tmp>/logquake/run-<pid>-<n>/` holds `owner.pid` (the harness
process), and one directory per node (`n1`, `n2`, ...) with the node's data, its
`stdout.log` and its `node.pid`. A run that crashed leaves that directory
behind; `reap_stale_runs()` (called by every new local cluster) kills the
process groups recorded there whose owner is dead, and removes the directory.

Network faults: each node listens on a private port; clients and peers reach it
through its proxy port, which is the port the node advertises. A system with an
inter-broker listener of its own (`{internal_port}`, as our broker's INTERNAL)
gets its peers' connections there and its clients' on the client port, through
the same proxy port. A node's own
outgoing connections leave from its own loopback address (127.0.0.(10+i) on
Linux, given to the system as `{bind_host}`), so the proxy can tell a peer from a
client and cut exactly the links a grudge names. A broker that ignores
`{bind_host}` still gets client partitions, kill and pause, but its inter-node
traffic looks like client traffic to the proxy (so `logquake test` refuses
partitions for a description that never passes it on). A described broker's
further ports (`ports = [...]`) each get a real port and a proxy port of their
own (proxy upstream `n1/NAME`); a link fault holds every port of the node.

A described broker's lifecycle: its `[files]` are written and its `setup`
command run in each node's directory before the first start (files again
before every start); a node is ready when its port accepts connections and its
`ready` command exits 0; `teardown` runs for each node when the cluster is
removed, after its processes are gone.

Security (`security="tls"|"sasl-scram"|"sasl-scram-tls"`, `logquake test --security`):
setup() makes the secrets (`harness.security`) in `<run>/secrets` (mode 0700) and
secures each node's CLIENT listener (ours through its properties; a described
broker through the security placeholders of its templates, its [files] texts
alone getting the passwords: those files are written with mode 0600 and never
collected, and a password a broker logs is replaced in the collected copy, with
a warning); the proxy forwards the TLS bytes as it
forwards any (it never looks inside). In the SASL modes the nodes enforce ACLs,
the harness's own user being their one super user. `client_security()` gives
the workload's clients' settings, `admin_client_security()` the harness's own
(topic and ACL creation); the probes of client links speak TLS where the
listener does. The secrets go with the run directory (teardown, or the reaping
of a dead run).

Process control: each node runs in its own session (process group), so kill and
pause reach every process it started.

Disk and clock faults (`enable_faults({"disk", "clock"})` before `setup()`):
each node then runs under `nodecontrol.launch`, whose pid is `node.pid` (the
process group). With `disk`, `nodecontrol.faultfs` is mounted over the node's
`log.dirs` directory itself (backing and mount are the same path, so the data
is readable there after an unmount) and controlled through `<node>/faultfs.sock`;
the system must say where its data lives with a `log.dirs` property (ours
does). With `clock`, the broker's wall clock follows `<node>/faketime` (an
offset such as `+2.500`). A graceful stop signals the launcher only, which
stops the broker before unmounting; `kill` kills the whole group, FUSE process
included (so data held by the lazy mode is lost), then removes the dead mount.
`teardown` and `reap_stale_runs` unmount every FUSE mount under the run
directory before removing it.

Thread-safety: one lock serialises control actions.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import logging
import os
import shutil
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from nodecontrol.control import CLIENT, ExecResult, Grudge, NodeControl, NodeControlError, run_command
from nodecontrol.probe import clock_offset_of_pid_file, group_state, kafka_round_trip, pid_alive
from nodecontrol.launch import unmount_under
from harness.proxy import FaultProxy
from harness.security import SECRETS_DIRECTORY, ClusterSecurity, check_mode, template_secrets, template_values
from harness.system import NodeSpec, System, new_cluster_id, render

log = logging.getLogger("harness.local")

RUN_ROOT = Path(tempfile.gettempdir()) / "logquake"
# a planted harness bug for testing the probes: the fault proxy logs cuts and ignores them (harness/proxy.py)
IGNORE_CUTS_VARIABLE = "LOGQUAKE_DEBUG_PROXY_IGNORE_CUTS"
_run_counter = 0
_counter_lock = threading.Lock()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port(host: str = "127.0.0.1", taken: set[int] | None = None) -> int:
    """A port free now on `host`, below the kernel's ephemeral range, and not in `taken` (which it joins).

    A port is free only until someone binds it: the ports of one cluster are chosen before any node binds
    them, so each choice must avoid the ones made before it (`taken`); without that, two listeners of a
    run of 6 to 9 ports drew one twice about once in 600 to 1,500 runs ("address already in use" at setup).

    A node's port is given up while the node is down (killed, its container
    stopped) and taken again when it restarts. A port from the ephemeral range
    could meanwhile become the source port of some outgoing connection, and
    the restart would fail with "address already in use"; ports below the
    range are never handed out that way.
    """
    low, _high = _ephemeral_range()
    if low <= 12000:
        for _ in range(200):  # an unusual range: fall back to the kernel's choice
            with socket.socket() as s:
                s.bind((host, 0))
                port = s.getsockname()[1]
            if taken is None or port not in taken:
                if taken is not None:
                    taken.add(port)
                return port
        raise RuntimeError(f"no free port on {host} outside {sorted(taken or ())} after 200 tries")
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(10000, low)
        if taken is not None and port in taken:
            continue
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        if taken is not None:
            taken.add(port)
        return port
    raise RuntimeError(f"no free port on {host} in 10000..{low - 1} after 200 tries")


def reap_stale_runs(root: Path = RUN_ROOT) -> list[str]:
    """Kill the node processes and remove the directories of runs whose harness died."""
    reaped = []
    if not root.is_dir():
        return reaped
    for run_dir in root.glob("run-*"):
        owner_file = run_dir / "owner.pid"
        try:
            owner = int(owner_file.read_text())
        except (OSError, ValueError):
            owner = None
        if owner is not None and pid_alive(owner) and owner != os.getpid():
            continue
        if owner == os.getpid():
            continue
        for pid_file in run_dir.glob("*/node.pid"):
            try:
                pgid = int(pid_file.read_text())
                os.killpg(pgid, signal.SIGCONT)
                os.killpg(pgid, signal.SIGKILL)
            except (OSError, ValueError):
                pass  # that run's node is gone already, or its pid file was cut short
        for mount in unmount_under(str(run_dir)):
            log.warning("removed the FUSE mount of a crashed run: %s", mount)
        shutil.rmtree(run_dir, ignore_errors=True)
        reaped.append(str(run_dir))
        log.warning("removed leftovers of a crashed run: %s", run_dir)
    return reaped


# How long a kill waits for every process of the node's group to be gone. The launcher's own exit is not
# enough: a broker dying with its disk paused keeps its listening socket open a little longer, and a
# restart's wait_ready then took that old socket for the new node.
GROUP_EXIT_TIMEOUT_S = 10.0


def _wait_group_gone(pgid: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        except PermissionError:
            return  # the group id was reused by someone else's processes: ours are gone
        time.sleep(0.02)
    log.warning("processes of group %d still exist %.0f s after SIGKILL", pgid, timeout_s)


class LocalCluster(NodeControl):
    def __init__(self, system: System, node_count: int, host: str = "127.0.0.1", seed: int = 0,
                 extra_properties: dict[str, str] | None = None, security: str = "none"):
        self.check_cluster_size(system, node_count)
        self.security_mode = check_mode(security)
        system.check_security(security, f"system {system.name!r}")
        self.security: ClusterSecurity | None = None  # made in setup(), in the run directory
        self.system = system
        self.host = host
        self.nodes = [f"n{i}" for i in range(1, node_count + 1)]
        self.seed = seed
        self.extra_properties = dict(extra_properties or {})
        self._lock = threading.RLock()
        self._procs: dict[str, subprocess.Popen] = {}
        self._paused: set[str] = set()
        self._specs: dict[str, NodeSpec] = {}
        self.proxy: FaultProxy | None = None
        self.run_dir: Path | None = None

    # ----- lifecycle -------------------------------------------------------------

    def setup(self) -> None:
        reap_stale_runs()
        global _run_counter
        with _counter_lock:
            _run_counter += 1
            n = _run_counter
        RUN_ROOT.mkdir(parents=True, exist_ok=True)
        self.run_dir = Path(tempfile.mkdtemp(prefix=f"run-{os.getpid()}-{n}-", dir=RUN_ROOT))
        (self.run_dir / "owner.pid").write_text(str(os.getpid()))
        if self.security_mode != "none":  # removed with the run directory, by teardown or by the next run's reaping
            self.security = ClusterSecurity.create(self.security_mode, self.run_dir / SECRETS_DIRECTORY,
                                                   hosts=tuple(dict.fromkeys(("localhost", "127.0.0.1", self.host))),
                                                   mechanism=self.system.sasl_mechanism,
                                                   acls=self.system.enforces_acls(self.security_mode))
        # one real port per listener of each node: the first, then the description's `ports` by name
        keys = [f"{node}/{name}" if name else node for node in self.nodes for name in ("", *self.system.ports)]
        taken: set[int] = set()
        real_ports = {key: free_port(self.host, taken) for key in keys}
        # a system with an inter-broker listener of its own ({internal_port}, as ours) gets its peers there
        internal_ports = ({node: free_port(self.host, taken) for node in self.nodes}
                          if self.system.uses_placeholder("internal_port") else {})
        self.proxy = FaultProxy(
            {key: (self.host, port) for key, port in real_ports.items()},
            sources={self._bind_host(i): node for i, node in enumerate(self.nodes, 1) if self._bind_host(i) != self.host},
            peer_upstreams={node: (self.host, port) for node, port in internal_ports.items()},
            listen_host=self.host,
            seed=self.seed,
            ignore_cuts=os.environ.get(IGNORE_CUTS_VARIABLE, "").lower() == "true",
        )
        proxy_ports = self.proxy.start()
        cluster_id = new_cluster_id()
        specs = []
        for i, node in enumerate(self.nodes, 1):
            data_dir = self.run_dir / node
            data_dir.mkdir()
            specs.append(NodeSpec(
                node, self.system.id_of(i), self.host, real_ports[node], proxy_ports[node], str(data_dir),
                self._bind_host(i), "", index=i,
                ports={name: real_ports[f"{node}/{name}"] for name in self.system.ports},
                advertised_ports={name: proxy_ports[f"{node}/{name}"] for name in self.system.ports},
                cluster_id=cluster_id, nodes=len(self.nodes), variables=self.system.variables_of(i, self.security_mode),
                internal_port=internal_ports.get(node),
                security=template_values(self.security, self.system.sasl_mechanism)))
        peers, controller_peers = self.system.peers(specs)
        for spec in specs:
            self._specs[spec.name] = dataclasses.replace(spec, peers=peers, controller_peers=controller_peers)
        for node in self.nodes:  # the setup command may read the node's files (e.g. to format its storage)
            self._write_config(self._specs[node])
            self._run_hook("setup", node)
        for node in self.nodes:
            self.start(node)
        self.wait_ready(self.nodes)

    def client_security(self):
        """The settings a client needs for the CLIENT listener (`workloads.client_security.ClientSecurity`), None
        when it is plaintext; valid from setup() to teardown()."""
        return self.security.client() if self.security is not None else None

    def admin_client_security(self):
        """The harness's own settings: in a SASL mode the cluster's super user (the nodes enforce ACLs, see
        `enforces_acls`), else the same as `client_security()`; valid from setup() to teardown()."""
        return self.security.admin_client() if self.security is not None else None

    @property
    def enforces_acls(self) -> bool:
        return self.security is not None and self.security.enforces_acls

    def broker_ids(self) -> dict[str, int]:
        return {node: self.system.id_of(i) for i, node in enumerate(self.nodes, 1)}

    def leftovers(self) -> dict:
        return {"run_dir": str(self.run_dir) if self.run_dir else None}

    def _bind_host(self, i: int) -> str:
        return f"127.0.0.{10 + i}" if sys.platform.startswith("linux") and self.host == "127.0.0.1" else self.host

    def teardown(self) -> None:
        with self._lock:
            if self.proxy is not None:
                self.proxy.heal()
            for node in list(self._procs):
                self._hard_stop(node)
            for node in self._specs:
                try:
                    self._run_hook("teardown", node)
                except NodeControlError as e:  # the cluster is removed all the same
                    log.warning("%s", e)
            if self.proxy is not None:
                self.proxy.stop()
                self.proxy = None
            if self.security is not None:
                self.security.remove()
                self.security = None
            if self.run_dir is not None:
                unmount_under(str(self.run_dir))
                shutil.rmtree(self.run_dir, ignore_errors=True)
                self.run_dir = None

    def bootstrap_servers(self) -> str:
        assert self.proxy is not None, "bootstrap_servers() before setup()"
        return ",".join(f"{self.host}:{self.proxy.ports[node]}" for node in self.nodes)

    def node_bootstrap(self, node: str) -> str:
        self.check_node(node)
        assert self.proxy is not None
        return f"{self.host}:{self.proxy.ports[node]}"

    def collect(self, dest_dir: str) -> list[str]:
        """Each node's stdout.log and log_file into `dest_dir/<node>/`; never a [files] entry that names a password,
        and a password a broker wrote into its log is replaced by [secret] (with a warning)."""
        written = []
        secrets = [s.encode() for s in template_secrets(self.security).values() if s]
        for node, spec in self._specs.items():
            out = Path(dest_dir) / node
            out.mkdir(parents=True, exist_ok=True)
            sources = [Path(spec.data_dir) / "stdout.log"]
            log_path = self.system.log_path(spec)
            if log_path:
                sources.append(Path(log_path))
            private = self.system.secret_files(spec)
            for src in sources:
                if str(src) in private:  # refused when the description is read; kept out here all the same
                    log.warning("%s of %s names a password; not collected", src.name, node)
                elif src.is_file():
                    target = out / src.name
                    data = src.read_bytes()
                    if any(secret in data for secret in secrets):
                        log.warning("%s of %s held a password of the run; the copy says [secret] instead", src.name,
                                    node)
                        for secret in secrets:
                            data = data.replace(secret, b"[secret]")
                    target.write_bytes(data)
                    written.append(str(target))
        return written

    # ----- process control ---------------------------------------------------------

    def start(self, node: str) -> None:
        self.check_node(node)
        with self._lock:
            proc = self._procs.get(node)
            if proc is not None and proc.poll() is None:
                return
            spec = self._specs[node]
            self._write_config(spec)
            stdout = open(Path(spec.data_dir) / "stdout.log", "ab")  # noqa: SIM115 (owned by the child)
            command = self._launch_command(spec)
            try:
                proc = subprocess.Popen(command, cwd=spec.data_dir, stdout=stdout,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
            except OSError as e:
                raise NodeControlError(f"could not start {node} with {command}: {e}") from e
            finally:
                stdout.close()
            (Path(spec.data_dir) / "node.pid").write_text(str(proc.pid))
            self._procs[node] = proc
            self._paused.discard(node)
            log.info("started %s (pid %d)", node, proc.pid)

    def _launch_command(self, spec: NodeSpec) -> list[str]:
        """The system's command, under nodecontrol.launch when disk or clock faults are enabled."""
        command = self.system.command(spec)
        if not self.fault_kinds:
            return command
        launcher = [sys.executable, "-m", "nodecontrol.launch", "--pid-file", str(Path(spec.data_dir) / "broker.pid")]
        if "disk" in self.fault_kinds:
            log_dir = self._log_dir(spec)
            launcher += ["--faultfs", f"{log_dir}:{log_dir}:{self._faultfs_socket(spec.name)}"]
        if "clock" in self.fault_kinds:
            launcher += ["--faketime", str(self._faketime_file(spec.name))]
        return launcher + ["--"] + command

    def _log_dir(self, spec: NodeSpec) -> str:
        raw = self.system.storage_dir or self.system.properties.get("log.dirs") or self.extra_properties.get("log.dirs")
        if not raw:
            raise NodeControlError(f"disk faults need to know where {self.system.name!r} keeps its data: its system "
                                   "description has no [storage] dir")
        if "," in raw:
            raise NodeControlError(f"disk faults support one log directory; log.dirs is {raw!r}")
        return os.path.abspath(os.path.join(spec.data_dir, render(raw, spec.substitutions())))

    def _faultfs_socket(self, node: str) -> Path:
        return Path(self._specs[node].data_dir) / "faultfs.sock"

    def _faketime_file(self, node: str) -> Path:
        return Path(self._specs[node].data_dir) / "faketime"

    def _write_config(self, spec: NodeSpec) -> None:
        private = self.system.secret_files(spec)
        for path, text in self.system.rendered_files(spec, template_secrets(self.security)).items():
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            if path in private:  # a password: readable by this user only, removed with the run directory
                descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                os.fchmod(descriptor, 0o600)
                with os.fdopen(descriptor, "w") as handle:
                    handle.write(text)
            else:
                Path(path).write_text(text)
        if not self.system.config_file:
            return
        subs = spec.substitutions()
        props = {k: v.format(**subs) for k, v in self.system.properties.items()}
        props.update({k: v.format(**subs) for k, v in self.extra_properties.items()})
        if self.security is not None:  # paths into the secrets directory, taken as they are
            props.update(self.security.broker_properties(authorizer=True))
        Path(self.system.config_file.format(**subs)).write_text("".join(f"{k}={v}\n" for k, v in props.items()))

    def _run_hook(self, name: str, node: str) -> None:
        """The description's `setup` or `teardown` command for `node`, in its data dir; NodeControlError if it fails."""
        spec = self._specs[node]
        command = self.system.hook(name, spec)
        if command is None:
            return
        result = run_command(command, self.system.ready_timeout_s, cwd=spec.data_dir)
        if result.exit_status != 0:
            output = (result.stdout + result.stderr).strip()
            log.error("the %s command on %s failed; its output:\n%s", name, node, output)
            last = output.splitlines()[-1] if output else "(no output)"
            raise NodeControlError(f"the {name} command of {self.system.name!r} failed on {node} with exit status "
                                   f"{result.exit_status} ({' '.join(command)}); its last output line: {last}")

    def _ready_check(self, node: str) -> tuple[bool, str]:
        """The description's `ready` command for `node`: (exit 0, its last output line)."""
        spec = self._specs[node]
        command = self.system.hook("ready", spec)
        if command is None:
            return True, ""
        result = run_command(command, self.system.ready_timeout_s, cwd=spec.data_dir)
        lines = (result.stdout + result.stderr).strip().splitlines()
        return result.exit_status == 0, (lines[-1] if lines else f"exit {result.exit_status}")

    def wait_ready(self, nodes: list[str], timeout_s: float | None = None) -> None:
        """Poll each node's private port until it accepts a connection, then its `ready` command until it exits 0."""
        deadline = time.monotonic() + (timeout_s or self.system.ready_timeout_s)
        for node in nodes:
            self._wait_port(node, deadline, timeout_s)
        for node in nodes:
            while True:
                ready, last = self._ready_check(node)
                if ready:
                    break
                if time.monotonic() > deadline:
                    raise NodeControlError(f"{node} was not ready within {timeout_s or self.system.ready_timeout_s} s: "
                                           f"its ready command last said: {last}")
                time.sleep(0.25)

    def _wait_port(self, node: str, deadline: float, timeout_s: float | None) -> None:
        spec = self._specs[node]
        while True:
            proc = self._procs.get(node)
            if proc is not None and proc.poll() is not None:
                raise NodeControlError(f"{node} exited with status {proc.returncode} while starting; "
                                       f"last lines of its output:\n{self._tail(node)}")
            try:
                with socket.create_connection((spec.host, spec.port), timeout=0.5):
                    return
            except OSError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                raise NodeControlError(f"{node} did not accept connections on {spec.host}:{spec.port} within "
                                       f"{timeout_s or self.system.ready_timeout_s} s; last lines of its output:\n{self._tail(node)}")
            time.sleep(0.05)

    def _tail(self, node: str, lines: int = 20) -> str:
        path = Path(self._specs[node].data_dir) / "stdout.log"
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no output)"

    def _signal(self, node: str, sig: int) -> bool:
        proc = self._procs.get(node)
        if proc is None or proc.poll() is not None:
            return False
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return False
        return True

    def stop(self, node: str) -> None:
        self.check_node(node)
        with self._lock:
            proc = self._procs.get(node)
            if proc is None:
                return
            self._signal(node, signal.SIGCONT)
            if self.fault_kinds:
                # the launcher stops the broker, then unmounts; a group-wide signal would reach the
                # FUSE process too and could take the disk away from a broker that is still closing
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(self.system.stop_signal)
            else:
                self._signal(node, self.system.stop_signal)
            try:
                proc.wait(self.system.stop_timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s of %s; killing it", node, self.system.stop_timeout_s,
                            signal.Signals(self.system.stop_signal).name)
            self._hard_stop(node)

    def _hard_stop(self, node: str) -> None:
        proc = self._procs.pop(node, None)
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGCONT)
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # already exited
        proc.wait()
        _wait_group_gone(proc.pid, GROUP_EXIT_TIMEOUT_S)
        self._paused.discard(node)
        if "disk" in self.fault_kinds and node in self._specs:
            # the FUSE process died with the group: remove its dead mount now, not at the next start
            unmount_under(self._log_dir(self._specs[node]))

    def kill(self, node: str) -> None:
        self.check_node(node)
        with self._lock:
            self._hard_stop(node)
            log.info("killed %s", node)

    def pause(self, node: str) -> None:
        self.check_node(node)
        with self._lock:
            if self._signal(node, signal.SIGSTOP):
                self._paused.add(node)

    def resume(self, node: str) -> None:
        self.check_node(node)
        with self._lock:
            self._signal(node, signal.SIGCONT)
            self._paused.discard(node)

    def is_running(self, node: str) -> bool:
        self.check_node(node)
        proc = self._procs.get(node)
        return proc is not None and proc.poll() is None

    def is_paused(self, node: str) -> bool:
        return node in self._paused

    def exec(self, node: str, command: list[str], timeout_s: float = 60.0) -> ExecResult:
        self.check_node(node)
        return run_command(command, timeout_s)

    # ----- probes ------------------------------------------------------------------------

    def _source_address(self, party: str) -> str:
        """The address a party's traffic comes from, as the proxy tells parties apart."""
        return self.host if party == CLIENT else self._bind_host(self.nodes.index(party) + 1)

    def round_trips(self, links: list[tuple[str, str]], timeout_s: float) -> dict[tuple[str, str], float | None]:
        assert self.proxy is not None, "round_trips() before setup()"
        for src, dst in links:
            self.check_node(dst)
            if src != CLIENT:
                self.check_node(src)
        if not links:
            return {}
        client = self.client_security()
        # a peer reaches a listener of its own where the system has one ({internal_port}, plaintext); else the
        # proxy sends it to the client listener, which may speak TLS
        peers_on_client_listener = not self.system.uses_placeholder("internal_port")

        def round_trip(link):
            if client is not None and client.uses_tls and (link[0] == CLIENT or peers_on_client_listener):
                source = None if link[0] == CLIENT else self._source_address(link[0])
                return kafka_round_trip(self.host, self.proxy.ports[link[1]], timeout_s, source,
                                        ca_location=client.ca_location)
            return kafka_round_trip(self.host, self.proxy.ports[link[1]], timeout_s, self._source_address(link[0]))

        with concurrent.futures.ThreadPoolExecutor(max_workers=len(links), thread_name_prefix="probe") as pool:
            return dict(zip(links, pool.map(round_trip, links)))

    def clock_offset(self, node: str) -> dict:
        self.check_node(node)
        return clock_offset_of_pid_file(str(Path(self._specs[node].data_dir) / "broker.pid"))

    def observed_state(self, node: str) -> str:
        self.check_node(node)
        try:
            pgid = int((Path(self._specs[node].data_dir) / "node.pid").read_text())
        except (KeyError, OSError, ValueError):
            return "gone"  # never started here
        return group_state(pgid)

    # ----- network -----------------------------------------------------------------------

    def partition(self, grudge: Grudge) -> None:
        cuts = self.check_grudge(grudge)
        assert self.proxy is not None
        self.proxy.cut_links(cuts)

    def heal(self) -> None:
        if self.proxy is not None:
            self.proxy.heal()

    def slow_net(self, latency_ms: float, jitter_ms: float = 0.0, loss: float = 0.0, duplicate: float = 0.0,
                 reorder: float = 0.0) -> None:
        self.check_net_fractions(loss=loss, duplicate=duplicate, reorder=reorder)
        if duplicate or reorder:
            raise NodeControlError(f"slow_net duplicate={duplicate}, reorder={reorder}: the local backend's TCP "
                                   "proxies cannot duplicate or reorder packets (TCP hides both); use --backend docker")
        if loss >= 1.0:
            raise NodeControlError(f"slow_net loss={loss}: the local proxy accepts a loss fraction below 1 "
                                   "(use partition to drop everything)")
        assert self.proxy is not None
        self.proxy.slow(latency_ms, jitter_ms, loss)

    # ----- disk and clock ----------------------------------------------------------------

    def _disk_ctl(self, node: str, fault: str) -> dict:
        from nodecontrol.faultfs import FaultFsError, ctl

        try:
            return ctl(str(self._faultfs_socket(node)), fault)
        except FaultFsError as e:
            raise NodeControlError(f"disk {fault!r} on {node}: {e}") from None

    def _set_clock(self, node: str, offset_s: float) -> None:
        path = self._faketime_file(node)
        tmp = path.with_name(path.name + ".tmp")
        # libfaketime rereads the file on every call (FAKETIME_NO_CACHE): replace it whole, never half-written
        tmp.write_text(f"{offset_s:+.3f}\n")
        os.replace(tmp, path)
