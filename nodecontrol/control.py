"""Node control: the one interface through which nemeses and the runner act on a cluster.

Every backend (local processes, Docker, SSH) implements `NodeControl`; a
nemesis holds only this interface, never a process handle, a Docker client or an
SSH session. The verbs come in pairs that undo each other: `start`/`stop`
(SIGTERM) or `kill` (SIGKILL), `pause` (SIGSTOP)/`resume`, `partition`/`heal`,
`slow_net`/`heal`, `disk(node, fault)`/`disk(node, "heal")`, `clock(node, s)`/`clock(node, 0)`.

Disk and clock faults need the node to be started differently (under
`nodecontrol.launch`, with `nodecontrol.faultfs` mounted as its `log.dirs` and
libfaketime preloaded), so a backend must know before `setup()` that the run
wants them: whoever builds the run calls `control.enable_faults({"disk",
"clock"})` (only the kinds it needs; `nemeses.Nemesis.fault_kinds()` says which)
before `setup()`. A backend started without them refuses `disk`/`clock` with a
NodeControlError that says so. A backend that cannot do them at all (the base
class) refuses with an error naming the backend.

A *grudge* (Jepsen's word) maps a node to the parties whose traffic it drops:
`{"n1": {"n2", "n3"}}` means n1 receives nothing from n2 and n3. A party is a
node name or `"client"` (every workload client).

Thread-safety: implementations must tolerate calls from the runner thread and
the nemesis thread at once; each verb is atomic with respect to the others on
the same node.
"""

from __future__ import annotations

import abc
import concurrent.futures
import json
import logging
import subprocess
from dataclasses import dataclass
from typing import Callable, Mapping

log = logging.getLogger("nodecontrol.control")

CLIENT = "client"

Grudge = Mapping[str, "set[str] | frozenset[str] | list[str]"]


@dataclass(frozen=True)
class ExecResult:
    exit_status: int
    stdout: str
    stderr: str


class NodeControlError(RuntimeError):
    """A control action that could not be carried out; the message names the node and the action."""


# faults that change how a node is started; see enable_faults
PREPARED_FAULT_KINDS = ("disk", "clock")
# the verbs of `disk(node, fault)`: those of `python3 -m nodecontrol.faultfs ctl`
DISK_FAULTS = ("pause", "resume", "fail-writes", "fail-fsync", "lazy", "tear", "heal", "status")


class NodeControl(abc.ABC):
    """What every backend provides."""

    nodes: list[str]
    fault_kinds: frozenset[str] = frozenset()

    # --- fault preparation (before setup) ---------------------------------------------
    def enable_faults(self, kinds) -> None:
        """Say, before `setup()`, which prepared fault kinds (`disk`, `clock`) the run will use."""
        kinds = frozenset(kinds)
        unknown = sorted(kinds - set(PREPARED_FAULT_KINDS))
        if unknown:
            raise NodeControlError(f"enable_faults: unknown fault kind(s) {unknown}; accepted: "
                                   f"{', '.join(PREPARED_FAULT_KINDS)}")
        self.fault_kinds = kinds

    # --- cluster lifecycle ---------------------------------------------------
    @abc.abstractmethod
    def setup(self) -> None:
        """Create what the nodes need (dirs, networks, proxies) and start every node; wait until ready."""

    @abc.abstractmethod
    def teardown(self) -> None:
        """Stop every node and remove everything setup created, except what `collect` copied out.
        Idempotent and safe to call after a partial setup."""

    @abc.abstractmethod
    def bootstrap_servers(self) -> str:
        """host:port,... that clients use."""

    @abc.abstractmethod
    def collect(self, dest_dir: str) -> list[str]:
        """Copy each node's logs into dest_dir/<node>/; returns the files written."""

    # --- per-node process control ---------------------------------------------
    @abc.abstractmethod
    def start(self, node: str) -> None: ...

    @abc.abstractmethod
    def stop(self, node: str) -> None:
        """Graceful stop (SIGTERM), SIGKILL after the system's stop timeout."""

    @abc.abstractmethod
    def kill(self, node: str) -> None: ...

    @abc.abstractmethod
    def pause(self, node: str) -> None: ...

    @abc.abstractmethod
    def resume(self, node: str) -> None: ...

    @abc.abstractmethod
    def is_running(self, node: str) -> bool: ...

    @abc.abstractmethod
    def exec(self, node: str, command: list[str], timeout_s: float = 60.0) -> ExecResult: ...

    # --- network ---------------------------------------------------------------
    @abc.abstractmethod
    def partition(self, grudge: Grudge) -> None:
        """Add the grudge's cuts to whatever is already cut."""

    @abc.abstractmethod
    def heal(self) -> None:
        """Undo every partition and slow_net."""

    @abc.abstractmethod
    def slow_net(self, latency_ms: float, jitter_ms: float = 0.0, loss: float = 0.0, duplicate: float = 0.0,
                 reorder: float = 0.0) -> None:
        """Delay (latency_ms +- jitter_ms), drop (loss), duplicate or reorder packets between every party;
        loss, duplicate and reorder are fractions in [0, 1]. `heal` undoes it."""

    # --- disk and clock (need enable_faults before setup) ----------------------------
    def disk(self, node: str, fault: str) -> dict:
        """Fault `node`'s disk: one of DISK_FAULTS (`heal` ends every disk fault); returns the faultfs status.

        Checks the node, the fault and the preparation, then hands over to the backend's `_disk_ctl`."""
        if type(self)._disk_ctl is NodeControl._disk_ctl:
            return self._disk_ctl(node, fault)  # refuses, naming the backend, before any other check
        self.check_node(node)
        self.check_disk_fault(fault)
        self.check_prepared("disk", node)
        if not self.is_running(node):
            raise NodeControlError(f"disk {fault!r} on {node}: the node is not running, so its disk is not mounted")
        return self._disk_ctl(node, fault)

    def _disk_ctl(self, node: str, fault: str) -> dict:
        """Send `fault` to the faultfs control socket of `node` (a running node); return its status.
        Backends that mount faultfs override this; here it refuses."""
        raise NodeControlError(f"the {type(self).__name__} backend cannot fault disks (disk {fault!r} on {node})")

    @staticmethod
    def disk_ctl_status(node: str, fault: str, result: ExecResult) -> dict:
        """The status printed by `python3 -m nodecontrol.faultfs ctl` run on a node, or the error it printed."""
        if result.exit_status != 0:
            raise NodeControlError(f"disk {fault!r} on {node}: {(result.stderr or result.stdout).strip()}")
        try:
            return json.loads(result.stdout)
        except ValueError:
            return {"output": result.stdout.strip()}

    def clock(self, node: str, offset_s: float) -> None:
        """Set `node`'s wall clock to the true time + offset_s (0 resets it).

        Checks the node, the preparation and the offset, then hands over to the backend's `_set_clock`."""
        if type(self)._set_clock is NodeControl._set_clock:
            return self._set_clock(node, offset_s)  # refuses, naming the backend, before any other check
        self.check_node(node)
        self.check_prepared("clock", node)
        if not isinstance(offset_s, (int, float)) or offset_s != offset_s or abs(offset_s) > 10 * 365 * 86400:
            raise NodeControlError(f"clock offset_s={offset_s!r} on {node}: expected a number of seconds within "
                                   "ten years either way")
        self._set_clock(node, float(offset_s))
        log.info("clock of %s set to %+.3f s", node, offset_s)

    def _set_clock(self, node: str, offset_s: float) -> None:
        """Rewrite `node`'s faketime offset file whole (libfaketime rereads it on every call).
        Backends that start nodes under libfaketime override this; here it refuses."""
        raise NodeControlError(f"the {type(self).__name__} backend cannot skew clocks (clock {offset_s:+} s on {node})")

    def leftovers(self) -> dict:
        """What this backend knows of the cluster a run set up, for the fault ledger (harness.ledger) and for
        a person reading it: where its processes, containers or directories are."""
        return {}

    # --- probes: is a fault really in effect? (nemeses.probe) ---------------------------
    def reaches(self, links: list[tuple[str, str]], timeout_s: float) -> dict[tuple[str, str], bool]:
        """For each directed link (source, destination), whether a Kafka request sent now from the source
        (a node, or `client`) gets an answer from the destination within timeout_s (see `round_trips`)."""
        return {link: seconds is not None for link, seconds in self.round_trips(links, timeout_s).items()}

    def round_trips(self, links: list[tuple[str, str]], timeout_s: float) -> dict[tuple[str, str], float | None]:
        """For each directed link (source, destination), the seconds a Kafka request sent now from the source
        (a node, or `client`) over a new connection takes to be answered by the destination, or None when no
        answer came within timeout_s. Measured over the network the fault acts on, never read from the
        backend's own bookkeeping; the links are probed at once. A backend that cannot probe refuses with
        NodeControlError (the probe is then recorded as not made, never as confirmed)."""
        raise NodeControlError(f"the {type(self).__name__} backend cannot probe links")

    def round_trips_by_source(self, links: list[tuple[str, str]], timeout_s: float,
                              client_address: Callable[[str], tuple[str, int]],
                              run_on: Callable[[str, list[str]], ExecResult], peer_address: Callable[[str], str],
                              python: str = "python3") -> dict[tuple[str, str], float | None]:
        """`round_trips` for backends whose nodes are hosts or containers: client links are probed from this
        machine to `client_address(node)`; a node's links by running `python -m nodecontrol.probe` on it
        (`run_on(node, argv)`) against `peer_address(dst)`, one command per source node, all at once."""
        from nodecontrol.probe import round_trips_all

        by_source: dict[str, list[str]] = {}
        for src, dst in links:
            self.check_node(dst)
            by_source.setdefault(src, []).append(dst)

        def probe(src: str) -> list[float | None]:
            dsts = by_source[src]
            if src == CLIENT:
                return round_trips_all([client_address(d) for d in dsts], timeout_s)
            self.check_node(src)
            result = run_on(src, [python, "-m", "nodecontrol.probe", "--timeout", f"{timeout_s:g}",
                                  *(peer_address(d) for d in dsts)])
            try:
                found = json.loads(result.stdout)
                if not isinstance(found, list) or len(found) != len(dsts) or \
                        not all(a is None or type(a) in (int, float) for a in found):
                    raise ValueError(found)
                return [None if a is None else float(a) for a in found]
            except ValueError:
                raise NodeControlError(f"probing links from {src} failed (exit status {result.exit_status}): "
                                       f"{(result.stderr or result.stdout).strip()[:300]}") from None

        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(by_source)),
                                                   thread_name_prefix="probe") as pool:
            found = {src: pool.submit(probe, src) for src in by_source}
            answers = {(src, dst): a for src, future in found.items() for dst, a in zip(by_source[src], future.result())}
        return {link: answers[link] for link in links}

    def clock_offset(self, node: str) -> dict:
        """The wall clock `node`'s broker process reads, measured where it runs (`nodecontrol.probe.clock_offset`:
        libfaketime mapped into the process, and the offset its faketime variables give now). A backend that
        cannot measure refuses with NodeControlError."""
        raise NodeControlError(f"the {type(self).__name__} backend cannot measure clocks")

    def clock_offset_by_exec(self, node: str, pid_file: str, python: str = "python3") -> dict:
        """`clock_offset` for backends whose nodes are hosts or containers: `python -m nodecontrol.probe
        --clock-of PID_FILE` run on the node."""
        result = self.exec(node, [python, "-m", "nodecontrol.probe", "--clock-of", pid_file], timeout_s=30)
        try:
            found = json.loads(result.stdout)
            if not isinstance(found, dict):
                raise ValueError(found)
            return found
        except ValueError:
            raise NodeControlError(f"measuring the clock of {node} failed (exit status {result.exit_status}): "
                                   f"{(result.stderr or result.stdout).strip()[:300]}") from None

    def observed_state(self, node: str) -> str:
        """`running`, `paused` or `gone`: what the operating system (or container engine) says of the node's
        processes now, not what this backend last did to them."""
        raise NodeControlError(f"the {type(self).__name__} backend cannot observe process states")

    def broker_ids(self) -> dict[str, int]:
        """node -> the broker id it runs with (what Metadata calls it); by default the node number."""
        return {node: i for i, node in enumerate(self.nodes, 1)}

    # --- helpers shared by backends ----------------------------------------------
    @staticmethod
    def check_cluster_size(system, node_count: int) -> None:
        """Refuse a cluster size below one or above what the system description supports."""
        if node_count < 1:
            raise NodeControlError(f"--nodes must be at least 1, got {node_count}")
        if system.max_nodes is not None and node_count > system.max_nodes:
            reason = f": {system.max_nodes_reason}" if system.max_nodes_reason else ""
            raise NodeControlError(f"system {system.name!r} supports at most {system.max_nodes} node(s); "
                                   f"asked for {node_count}{reason}")

    def check_prepared(self, kind: str, node: str) -> None:
        if kind not in self.fault_kinds:
            raise NodeControlError(f"{kind} faults on {node}: this cluster was set up without them; call "
                                   f"enable_faults({{{kind!r}}}) before setup() (logquake test does so for "
                                   f"--nemesis {kind})")

    @staticmethod
    def check_disk_fault(fault: str) -> None:
        if fault not in DISK_FAULTS:
            raise NodeControlError(f"disk fault {fault!r} is not known; accepted: {', '.join(DISK_FAULTS)}")

    @staticmethod
    def check_net_fractions(**fractions: float) -> None:
        for name, value in fractions.items():
            if not 0.0 <= value <= 1.0:
                raise NodeControlError(f"slow_net {name}={value!r}: must be a fraction between 0 and 1")

    def check_node(self, node: str) -> None:
        if node not in self.nodes:
            raise NodeControlError(f"no node {node!r} in this cluster; nodes are {self.nodes}")

    def check_grudge(self, grudge: Grudge) -> list[tuple[str, str]]:
        """Validate a grudge and return its directed cuts as (source, destination) pairs."""
        parties = set(self.nodes) | {CLIENT}
        cuts = []
        for dst, sources in grudge.items():
            if dst not in parties:
                raise NodeControlError(f"grudge names {dst!r}, which is not a node or {CLIENT!r}; nodes are {self.nodes}")
            for src in sources:
                if src not in parties:
                    raise NodeControlError(f"grudge of {dst!r} names {src!r}, which is not a node or {CLIENT!r}")
                if src != dst:
                    cuts.append((src, dst))
        return cuts


def run_command(command: list[str], timeout_s: float, cwd: str | None = None) -> ExecResult:
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, cwd=cwd)
    except subprocess.TimeoutExpired as e:
        raise NodeControlError(f"command {command} timed out after {timeout_s} s") from e
    except FileNotFoundError as e:
        raise NodeControlError(f"command {command[0]!r} not found") from e
    return ExecResult(proc.returncode, proc.stdout, proc.stderr)
