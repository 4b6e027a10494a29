"""The Docker backend: every node is a container of the node image, on a network of its own.

`--backend docker`. For each run the backend (docker SDK for Python):

1. checks that a Docker daemon answers (`DockerUnavailable` names DOCKER_HOST or
   the socket) when it is built, before anything starts;
2. removes the leftovers of crashed runs: containers and networks labelled
   `org.logquake.owner=<host>:<pid>` whose harness process on this host is gone;
3. builds the node image when missing (harness/docker_command.py);
4. creates a bridge network labelled with the run, with a subnet of its own so
   that node `n<i>` keeps its address `<subnet>.<10+i>` across restarts (the
   partition rules name addresses);
5. creates one container per node (hostname `n<i>`, capability NET_ADMIN, and
   SYS_ADMIN with /dev/fuse when disk faults are enabled), writes the broker's
   configuration into it, and starts it. The broker gets two listeners, as the
   textbook compose file does: INTERNAL on the container network (replication and
   the controller quorum) and EXTERNAL, published on 127.0.0.1 only, for the
   clients, which run on this host.

Node control:
- kill is `docker kill`, pause/resume `docker pause`/`unpause`, stop `docker stop`
  (SIGTERM through the image's init, SIGKILL after the system's stop timeout),
  start `docker start` (same container, same data, same address);
- partitions: iptables DROP rules in each container's LOGQUAKE chain
  (harness/netshell.py); the party "client" is cut at the EXTERNAL port (its
  packets come from Docker's port proxy, never from a peer, so the port alone
  names them, whatever the daemon's proxy settings);
- slow_net: tc netem on each container's eth0. On a kernel without sch_netem
  (CONFIG_NET_SCH_NETEM unset) loss falls back to iptables' `statistic` match,
  and delay, duplication or reordering raise a NodeControlError that says what
  was not applied (and that the loss, if any, was);
- a restarted container gets a fresh network namespace, so the backend re-applies
  the current grudge and netem to it; a paused container cannot run commands, so
  a partition, heal or slow_net that reaches it while paused is applied by
  `resume`, before it runs again (apart from the moment between unpause and exec);
- disk and clock faults: the node runs under `nodecontrol.launch` inside its
  container, and `disk`/`clock` act through `exec`.

Nothing is left after teardown: containers (with their data) and the network are
removed; the iptables rules and qdiscs lived in the containers' namespaces.
Teardown also runs when the runner is interrupted (SIGINT, SIGTERM).

Thread-safety: one lock serialises control actions.
"""

from __future__ import annotations

import io
import ipaddress
import logging
import os
import shlex
import socket
import tarfile
import threading
import time
import uuid
from pathlib import Path

from harness import netshell
from nodecontrol.control import ExecResult, Grudge, NodeControl, NodeControlError
from nodecontrol.probe import kafka_answers, pid_alive
from harness.system import NodeSpec, System

log = logging.getLogger("harness.docker")

LABEL_RUN = "org.logquake.run"
LABEL_OWNER = "org.logquake.owner"
LABEL_NODE = "org.logquake.node"
INTERNAL_PORT = 9092
CLIENT_PORT = 9093
DATA_DIR = "/var/lib/logquake"
DEVICE = "eth0"
_ADDRESS_OFFSET = 10
# How often a run asks Docker for a free subnet when other networks keep taking the one it was given.
_NETWORK_ATTEMPTS = 5
_EXEC_START_FAILURES = ("OCI runtime exec failed", "write init-p", "error executing setns process")


def _exec_never_started(result: ExecResult) -> bool:
    """Whether an exec failed in the container runtime before the command started (exit 126)."""
    text = f"{result.stdout}\n{result.stderr}"
    return result.exit_status == 126 and any(marker in text for marker in _EXEC_START_FAILURES)


def owner_label() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _owner_alive(owner: str) -> bool:
    host, _, pid_text = owner.rpartition(":")
    if host != socket.gethostname():
        return True  # another machine's run: not ours to judge
    try:
        pid = int(pid_text)
    except ValueError:
        return False
    return pid == os.getpid() or pid_alive(pid)


def reap_stale_runs(client) -> list[str]:
    """Remove the containers and networks of runs whose harness process on this host is gone."""
    from docker.errors import APIError, NotFound

    removed = []
    for container in client.containers.list(all=True, filters={"label": LABEL_OWNER}):
        if not _owner_alive(container.labels.get(LABEL_OWNER, "")):
            try:
                container.remove(force=True, v=True)
                removed.append(f"container {container.name}")
            except NotFound:
                pass  # already removed
            except APIError as e:
                if "already in progress" in str(e):
                    # another reaper got there first (a `logquake test` starting beside this one reaps the same
                    # leftovers): wait until it is gone, so that what this call returns is really gone
                    _wait_gone(container)
                else:
                    log.warning("could not remove leftover container %s: %s", container.name, e)
    for network in client.networks.list(filters={"label": LABEL_OWNER}):
        if not _owner_alive(network.attrs.get("Labels", {}).get(LABEL_OWNER, "")):
            try:
                network.remove()
                removed.append(f"network {network.name}")
            except NotFound:
                pass  # already removed
            except APIError as e:
                log.warning("could not remove leftover network %s: %s", network.name, e)
    for item in removed:
        log.warning("removed leftovers of a crashed run: %s", item)
    return removed


def _wait_gone(container, timeout_s: float = 60.0) -> None:
    """Wait until the engine no longer knows `container` (its removal is in progress elsewhere)."""
    from docker.errors import NotFound

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            container.reload()
        except NotFound:
            return
        time.sleep(0.2)
    log.warning("leftover container %s was still being removed after %.0f s", container.name, timeout_s)


def _free_port(taken: set[int]) -> int:
    from harness.backends.local import free_port

    return free_port(taken=taken)  # below the ephemeral range: still free when a stopped container starts again


class DockerCluster(NodeControl):
    def __init__(self, system: System, node_count: int, seed: int = 0, image: str | None = None,
                 extra_properties: dict[str, str] | None = None):
        from harness.docker_command import DockerUnavailable, docker_client

        self.check_cluster_size(system, node_count)
        if not system.config_file or "listeners" not in system.properties:
            raise NodeControlError(f"--backend docker runs our broker only so far: it builds the node image from "
                                   f"this repository and sets Kafka's listener properties itself, which a --system "
                                   f"description cannot ask of another broker; test {system.name!r} with --backend "
                                   "local (every description key) or --backend ssh (the first description format)")
        try:
            self.client = docker_client()
        except DockerUnavailable as e:
            raise NodeControlError(f"--backend docker: {e}") from None
        self.system = system
        self.nodes = [f"n{i}" for i in range(1, node_count + 1)]
        self.seed = seed
        self.image = image
        self.extra_properties = dict(extra_properties or {})
        self.run_id = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.labels = {LABEL_RUN: self.run_id, LABEL_OWNER: owner_label()}
        self._lock = threading.RLock()
        self.network = None
        self.addresses: dict[str, str] = {}
        self.client_ports: dict[str, int] = {}
        self._containers: dict = {}
        self._grudge: dict[str, set[str]] = {}
        self._netem: list[str] | None = None  # the netem argv in force, re-applied to restarted nodes
        self._loss_rules: list[list[str]] | None = None
        self._netem_supported: bool | None = None
        # paused nodes whose rules lag behind the state above: a frozen container cannot exec, and
        # thawing it for a moment would let it run; resume() brings them up to date before they run on
        self._stale: set[str] = set()

    # ----- lifecycle -------------------------------------------------------------

    def prepare_image(self) -> str:
        """Build the base and node images when missing (minutes the first time); returns the node image."""
        from harness.docker_command import ImageBuildError, ensure_node_image

        if self.image is None:
            try:
                self.image = ensure_node_image(self.client)
            except ImageBuildError as e:
                raise NodeControlError(f"--backend docker: {e}") from None
        return self.image

    def setup(self) -> None:
        reap_stale_runs(self.client)
        self.prepare_image()
        self._create_network()
        for i, node in enumerate(self.nodes, 1):
            self._create_container(i, node)
        for node in self.nodes:
            self.start(node)
        self.wait_ready(self.nodes)
        self.wait_formed()

    def wait_formed(self, timeout_s: float | None = None) -> None:
        """Poll until the controller accepts a topic replicated on every node (CreateTopics, validate_only).

        Answering requests is not yet being a member: a broker lists itself in
        Metadata while the controller still counts it fenced, and a topic
        created then is refused. Kafka's controller checks the replication
        factor against the registered, unfenced brokers in validate_only mode
        too, so this asks exactly "can every node hold a replica now?".
        """
        from confluent_kafka.admin import AdminClient, NewTopic

        timeout_s = timeout_s or self.system.ready_timeout_s
        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers(), "logger": logging.getLogger("librdkafka")})
        probe = NewTopic("logquake-formation-probe", num_partitions=1, replication_factor=len(self.nodes))
        deadline = time.monotonic() + timeout_s
        last = "no answer yet"
        while time.monotonic() < deadline:
            try:
                admin.create_topics([probe], validate_only=True, request_timeout=5)[probe.topic].result(10)
                return
            except Exception as e:  # not formed yet: fenced brokers, no controller, no answer
                last = str(e)
            time.sleep(0.2)
        raise NodeControlError(f"the cluster did not accept a topic with replication factor {len(self.nodes)} "
                               f"within {timeout_s} s of starting: {last}")

    def leftovers(self) -> dict:
        return {"run_id": self.run_id, "labels": dict(self.labels)}

    def _create_network(self) -> None:
        """A bridge network with an explicit subnet, so containers can keep fixed addresses.

        Docker gives fixed addresses only on a network created with a subnet; we let
        Docker pick a free one first, then create the run's network with it. Another
        run (a campaign's parallel job, another harness) may take that subnet in
        between; Docker then refuses ours as overlapping, and we ask again.
        """
        import docker.errors
        from docker.types import IPAMConfig, IPAMPool

        name = f"logquake-{self.run_id}"
        for attempt in range(1, _NETWORK_ATTEMPTS + 1):
            probe = self.client.networks.create(name, driver="bridge", labels=self.labels)
            try:
                config = probe.attrs["IPAM"]["Config"][0]
                subnet, gateway = config["Subnet"], config.get("Gateway")
            finally:
                probe.remove()
            ipam = IPAMConfig(pool_configs=[IPAMPool(subnet=subnet, gateway=gateway)])
            try:
                self.network = self.client.networks.create(name, driver="bridge", ipam=ipam, labels=self.labels)
                break
            except docker.errors.APIError as error:
                if "overlap" not in str(error) or attempt == _NETWORK_ATTEMPTS:
                    raise
                log.info("subnet %s was taken by another network meanwhile; asking Docker for another", subnet)
        net = ipaddress.ip_network(subnet)
        self.addresses = {node: str(net.network_address + _ADDRESS_OFFSET + i) for i, node in enumerate(self.nodes, 1)}

    def _spec(self, i: int, node: str) -> NodeSpec:
        peers = ",".join(f"{j}@{self.addresses[n]}:{INTERNAL_PORT}" for j, n in enumerate(self.nodes, 1))
        return NodeSpec(node, i, self.addresses[node], INTERNAL_PORT, INTERNAL_PORT, DATA_DIR, self.addresses[node],
                        peers, internal_port=INTERNAL_PORT)

    def properties(self, i: int, node: str) -> dict[str, str]:
        """The broker's properties in the container: the system's, with two listeners."""
        subs = self._spec(i, node).substitutions()
        subs["python"] = "python3"
        props = {k: v.format(**subs) for k, v in self.system.properties.items()}
        props.update({k: v.format(**subs) for k, v in self.extra_properties.items()})
        props.pop("logquake.outbound.address", None)  # each container has one address; nothing to choose
        address = self.addresses[node]
        props.update({
            "listeners": f"INTERNAL://0.0.0.0:{INTERNAL_PORT},EXTERNAL://0.0.0.0:{CLIENT_PORT}",
            "advertised.listeners": f"INTERNAL://{address}:{INTERNAL_PORT},"
                                    f"EXTERNAL://127.0.0.1:{self.client_ports[node]}",
            "listener.security.protocol.map": "INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT",
            "inter.broker.listener.name": "INTERNAL",
            "controller.listener.names": "INTERNAL",
        })
        return props

    def _command(self, spec: NodeSpec) -> list[str]:
        subs = spec.substitutions()
        subs["python"] = "python3"
        command = [part.format(**subs) for part in self.system.start]
        if not self.fault_kinds:
            return command
        launcher = ["python3", "-m", "nodecontrol.launch", "--pid-file", f"{DATA_DIR}/broker.pid"]
        if "disk" in self.fault_kinds:
            log_dir = self.system.properties.get("log.dirs", "{data_dir}/logs").format(**subs).split(",")[0]
            launcher += ["--faultfs", f"{log_dir}:{log_dir}:{DATA_DIR}/faultfs.sock"]
        if "clock" in self.fault_kinds:
            launcher += ["--faketime", f"{DATA_DIR}/faketime"]
        return launcher + ["--"] + command

    def _create_container(self, i: int, node: str) -> None:
        self.client_ports[node] = _free_port({port for other, port in self.client_ports.items() if other != node})
        spec = self._spec(i, node)
        api = self.client.api
        cap_add = ["NET_ADMIN"]
        devices = []
        security_opt = []
        if "disk" in self.fault_kinds:
            cap_add.append("SYS_ADMIN")
            devices.append("/dev/fuse:/dev/fuse:rwm")
            security_opt.append("apparmor:unconfined")
        host_config = api.create_host_config(
            port_bindings={CLIENT_PORT: ("127.0.0.1", self.client_ports[node])},
            cap_add=cap_add, devices=devices or None, security_opt=security_opt or None, init=True,
        )
        networking = api.create_networking_config({
            self.network.name: api.create_endpoint_config(ipv4_address=self.addresses[node], aliases=[node]),
        })
        created = api.create_container(
            self.image, command=self._command(spec), hostname=node, name=f"logquake-{self.run_id}-{node}",
            labels={**self.labels, LABEL_NODE: node}, host_config=host_config, networking_config=networking,
            ports=[CLIENT_PORT], working_dir=DATA_DIR, stop_signal=_signal_name(self.system.stop_signal),
        )
        container = self.client.containers.get(created["Id"])
        self._containers[node] = container
        config_path = self.system.config_file.format(**spec.substitutions())
        files = {config_path: "".join(f"{k}={v}\n" for k, v in self.properties(i, node).items())}
        if "clock" in self.fault_kinds:
            files[f"{DATA_DIR}/faketime"] = "+0.000\n"
        _put_files(container, files)

    def teardown(self) -> None:
        from docker.errors import APIError, NotFound

        with self._lock:
            errors = []
            for container in self.client.containers.list(all=True, filters={"label": f"{LABEL_RUN}={self.run_id}"}):
                try:
                    container.remove(force=True, v=True)
                except NotFound:
                    pass  # already removed
                except APIError as e:
                    errors.append(f"container {container.name}: {e}")
            for network in self.client.networks.list(filters={"label": f"{LABEL_RUN}={self.run_id}"}):
                try:
                    network.remove()
                except NotFound:
                    pass  # already removed
                except APIError as e:
                    errors.append(f"network {network.name}: {e}")
            self._containers.clear()
            self.network = None
            self._grudge.clear()
            self._netem = None
            self._loss_rules = None
            self._stale.clear()
            if errors:
                raise NodeControlError("teardown could not remove: " + "; ".join(errors))

    def bootstrap_servers(self) -> str:
        assert self.client_ports, "bootstrap_servers() before setup()"
        return ",".join(f"127.0.0.1:{self.client_ports[node]}" for node in self.nodes)

    def node_bootstrap(self, node: str) -> str:
        self.check_node(node)
        return f"127.0.0.1:{self.client_ports[node]}"

    def collect(self, dest_dir: str) -> list[str]:
        from docker.errors import APIError, NotFound

        written = []
        for i, node in enumerate(self.nodes, 1):
            container = self._containers.get(node)
            if container is None:
                continue
            out = Path(dest_dir) / node
            out.mkdir(parents=True, exist_ok=True)
            try:
                (out / "stdout.log").write_bytes(container.logs(stdout=True, stderr=True))
                written.append(str(out / "stdout.log"))
                log_path = self.system.log_path(self._spec(i, node))
                if log_path:
                    data, _ = container.get_archive(log_path)
                    with tarfile.open(fileobj=io.BytesIO(b"".join(data))) as tar:
                        for member in tar.getmembers():
                            if member.isfile():
                                target = out / Path(member.name).name
                                target.write_bytes(tar.extractfile(member).read())
                                written.append(str(target))
            except (NotFound, APIError) as e:
                log.warning("collecting the logs of %s: %s", node, e)
        return written

    # ----- process control -----------------------------------------------------------

    def _container(self, node: str):
        self.check_node(node)
        container = self._containers.get(node)
        if container is None:
            raise NodeControlError(f"{node}: no container (setup has not run, or teardown has)")
        return container

    def _status(self, node: str) -> str:
        container = self._container(node)
        container.reload()
        return container.status

    def start(self, node: str) -> None:
        from docker.errors import APIError

        with self._lock:
            container = self._container(node)
            status = self._status(node)
            if status in ("running", "paused"):
                return
            try:
                container.start()
            except APIError as e:
                raise NodeControlError(f"could not start {node}: {e}") from None
            # a new network namespace: our chains, the grudge and netem must be set up again
            self._exec_shell(node, netshell.chain_setup_shell(), "preparing iptables")
            self._apply_grudge(node, self._grudge.get(node, set()))
            self._apply_slow(node)
            self._stale.discard(node)
            log.info("started %s", node)

    def wait_ready(self, nodes: list[str], timeout_s: float | None = None) -> None:
        """Poll each node's client port with ApiVersions until the broker answers."""
        timeout_s = timeout_s or self.system.ready_timeout_s
        deadline = time.monotonic() + timeout_s
        for node in nodes:
            while not kafka_answers("127.0.0.1", self.client_ports[node]):
                if self._status(node) not in ("running", "created", "restarting"):
                    raise NodeControlError(f"{node} exited while starting; last lines of its output:\n"
                                           f"{self._tail(node)}")
                if time.monotonic() > deadline:
                    raise NodeControlError(f"{node} did not answer on 127.0.0.1:{self.client_ports[node]} within "
                                           f"{timeout_s} s; last lines of its output:\n{self._tail(node)}")
                time.sleep(0.1)

    def _tail(self, node: str, lines: int = 20) -> str:
        try:
            return self._container(node).logs(tail=lines).decode(errors="replace")
        except Exception as e:  # the tail only decorates an error message
            return f"(no output: {e})"

    def stop(self, node: str) -> None:
        with self._lock:
            container = self._container(node)
            if self._status(node) == "paused":
                container.unpause()
            if self._status(node) == "running":
                container.stop(timeout=int(self.system.stop_timeout_s))

    def kill(self, node: str) -> None:
        from docker.errors import APIError

        with self._lock:
            container = self._container(node)
            status = self._status(node)
            if status not in ("running", "paused"):
                return
            try:
                container.kill()
            except APIError:
                # an older engine refuses to kill a paused container: thaw it, then kill
                container.unpause()
                container.kill()
            container.wait(timeout=30)
            log.info("killed %s", node)

    def pause(self, node: str) -> None:
        with self._lock:
            if self._status(node) == "running":
                self._container(node).pause()

    def resume(self, node: str) -> None:
        with self._lock:
            if self._status(node) == "paused":
                self._container(node).unpause()
            if node in self._stale:
                self._stale.discard(node)
                self._exec_shell(node, netshell.heal_shell(DEVICE), "healing the network")
                self._apply_grudge(node, self._grudge.get(node, set()))
                self._apply_slow(node)

    def is_running(self, node: str) -> bool:
        return self._status(node) in ("running", "paused")

    def is_paused(self, node: str) -> bool:
        return self._status(node) == "paused"

    def exec(self, node: str, command: list[str], timeout_s: float = 60.0) -> ExecResult:
        """Run ``command`` in ``node``'s container.

        When the container runtime could not start the command (exit status 126 with an OCI runtime
        message) because the container has exited, that is said, with the last lines of its output,
        instead of the runtime's "write init-p: broken pipe". The node image once lacked a package and its
        broker exited at once; this is how that read in CI.
        """
        result = self._exec_once(node, command, timeout_s)
        if _exec_never_started(result) and not self.is_running(node):
            raise NodeControlError(f"exec {command} on {node}: the container has exited; last lines of its "
                                   f"output:\n{self._tail(node)}")
        return result

    # ----- probes ------------------------------------------------------------------------

    def round_trips(self, links: list[tuple[str, str]], timeout_s: float) -> dict[tuple[str, str], float | None]:
        """Client links are probed from this host through the node's published port; a node's links from
        inside its container."""
        return self.round_trips_by_source(
            links, timeout_s, client_address=lambda dst: ("127.0.0.1", self.client_ports[dst]),
            run_on=lambda src, argv: self.exec(src, argv, timeout_s=timeout_s + 10),
            peer_address=lambda dst: f"{self.addresses[dst]}:{INTERNAL_PORT}")

    def clock_offset(self, node: str) -> dict:
        return self.clock_offset_by_exec(node, f"{DATA_DIR}/broker.pid")

    def observed_state(self, node: str) -> str:
        status = self._status(node)
        return status if status in ("running", "paused") else "gone"

    def _exec_once(self, node: str, command: list[str], timeout_s: float) -> ExecResult:
        container = self._container(node)
        result: dict = {}

        def run():
            try:
                result["value"] = container.exec_run(command, demux=True)
            except Exception as e:  # reported to the caller below
                result["error"] = e

        worker = threading.Thread(target=run, name=f"exec-{node}", daemon=True)
        worker.start()
        worker.join(timeout_s)
        if worker.is_alive():
            raise NodeControlError(f"exec {command} on {node} timed out after {timeout_s} s")
        if "error" in result:
            raise NodeControlError(f"exec {command} on {node} failed: {result['error']}")
        exit_code, (stdout, stderr) = result["value"]
        return ExecResult(exit_code, (stdout or b"").decode(errors="replace"), (stderr or b"").decode(errors="replace"))

    def _exec_shell(self, node: str, script: str, what: str) -> ExecResult:
        result = self.exec(node, ["sh", "-c", script], timeout_s=30)
        if result.exit_status != 0:
            raise NodeControlError(f"{what} on {node} failed (exit status {result.exit_status}): "
                                   f"{(result.stderr or result.stdout).strip()}")
        return result

    # ----- network -----------------------------------------------------------------------

    def partition(self, grudge: Grudge) -> None:
        self.check_grudge(grudge)
        with self._lock:
            for node in self.nodes:
                new = {src for src in grudge.get(node, ()) if src != node} - self._grudge.get(node, set())
                if not new:
                    continue
                self._grudge.setdefault(node, set()).update(new)
                status = self._status(node)
                if status == "running":
                    self._apply_grudge(node, new)
                elif status == "paused":
                    self._stale.add(node)

    def _apply_grudge(self, node: str, sources: set[str]) -> None:
        if not sources:
            return
        try:
            commands = netshell.drop_rules_argv({node: sources}, node, self.addresses, client_port=CLIENT_PORT)
        except netshell.NetShellError as e:
            raise NodeControlError(f"partition of {node}: {e}") from None
        self._exec_shell(node, "; ".join(shlex.join(c) for c in commands) or "true", "adding iptables rules")

    def heal(self) -> None:
        with self._lock:
            self._grudge.clear()
            self._netem = None
            self._loss_rules = None
            for node in self.nodes:
                if node not in self._containers:
                    continue
                status = self._status(node)
                if status == "running":
                    self._exec_shell(node, netshell.heal_shell(DEVICE), "healing the network")
                elif status == "paused":
                    self._stale.add(node)

    def slow_net(self, latency_ms: float, jitter_ms: float = 0.0, loss: float = 0.0, duplicate: float = 0.0,
                 reorder: float = 0.0) -> None:
        self.check_net_fractions(loss=loss, duplicate=duplicate, reorder=reorder)
        try:
            argv = netshell.netem_argv(DEVICE, latency_ms, jitter_ms, loss, duplicate, reorder)
        except netshell.NetShellError as e:
            raise NodeControlError(f"slow_net: {e}") from None
        with self._lock:
            if not (latency_ms or jitter_ms or loss or duplicate or reorder):
                # nothing to shape: remove the qdisc and the loss rules rather than install an idle netem
                self._netem, self._loss_rules = None, None
                clear = f"{netshell.netem_delete_shell(DEVICE)}; {shlex.join(netshell.loss_rules_argv(0.0)[0])}"
                for node in self.nodes:
                    status = self._status(node)
                    if status == "running":
                        self._exec_shell(node, clear, "clearing netem and loss rules")
                    elif status == "paused":
                        self._stale.add(node)
                return
            if self._netem_supported is None:
                self._netem_supported = self._probe_netem()
            unsupported = ""
            if self._netem_supported:
                self._netem, self._loss_rules = argv, None
            else:
                shaped = {k: v for k, v in (("latency_ms", latency_ms), ("jitter_ms", jitter_ms),
                                            ("duplicate", duplicate), ("reorder", reorder)) if v}
                if shaped:
                    unsupported = (f"slow_net: this kernel has no netem qdisc (CONFIG_NET_SCH_NETEM is not set; tc "
                                   f"says 'Specified qdisc kind is unknown'), so {shaped} cannot be applied here"
                                   + (f"; only loss={loss} was applied, by iptables' statistic match" if loss else ""))
                    if not loss:
                        raise NodeControlError(unsupported)
                self._netem, self._loss_rules = None, netshell.loss_rules_argv(loss)
            for node in self.nodes:
                status = self._status(node)
                if status == "running":
                    self._apply_slow(node)
                elif status == "paused":
                    self._stale.add(node)
            if unsupported:
                # the loss is in force (heal or slow_net(0) removes it); the caller learns what is missing
                raise NodeControlError(unsupported)

    def _probe_netem(self) -> bool:
        """Whether the kernel has netem: try it on a running container's loopback."""
        for node in self.nodes:
            if self._status(node) == "running":
                result = self.exec(node, ["sh", "-c", "tc qdisc add dev lo root netem delay 0ms && "
                                                      "tc qdisc del dev lo root"], timeout_s=30)
                return result.exit_status == 0
        raise NodeControlError("slow_net: no node is running to apply it to")

    def _apply_slow(self, node: str) -> None:
        if self._netem is not None:
            self._exec_shell(node, shlex.join(self._netem), "tc netem")
        elif self._loss_rules is not None:
            self._exec_shell(node, "; ".join(shlex.join(c) for c in self._loss_rules), "iptables loss rules")

    # ----- disk and clock ------------------------------------------------------------------

    def _disk_ctl(self, node: str, fault: str) -> dict:
        if self._status(node) != "running":
            raise NodeControlError(f"disk {fault!r} on {node}: the container is paused, so nothing can run in it")
        result = self.exec(node, ["python3", "-m", "nodecontrol.faultfs", "ctl", f"{DATA_DIR}/faultfs.sock", fault])
        return self.disk_ctl_status(node, fault, result)

    def _set_clock(self, node: str, offset_s: float) -> None:
        if self._status(node) != "running":
            raise NodeControlError(f"clock {offset_s:+} s on {node}: the container is paused, so nothing can run in it")
        path = f"{DATA_DIR}/faketime"
        # libfaketime rereads the file on every call: replace it whole, never half-written
        self._exec_shell(node, f"printf '%s\\n' {offset_s:+.3f} > {path}.tmp && mv {path}.tmp {path}",
                         "setting the clock")


def _signal_name(signum: int) -> str:
    import signal

    return signal.Signals(signum).name


def _put_files(container, files: dict[str, str]) -> None:
    """Write text files into a (created, not yet started) container, making their directories."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        directories = set()
        for path in files:
            parent = Path(path.lstrip("/")).parent
            while str(parent) not in ("", "."):
                directories.add(str(parent))
                parent = parent.parent
        for directory in sorted(directories):
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
        for path, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    if not container.put_archive("/", buffer.getvalue()):
        raise NodeControlError(f"could not write {sorted(files)} into container {container.name}")
