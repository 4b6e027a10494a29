"""Node control: the one interface through which nemeses and the runner act on a cluster.

Every backend (local processes, Docker, SSH) implements `NodeControl`; a
nemesis holds only this interface, never a process handle, a Docker client or an
SSH session. The verbs come in pairs that undo each other: `start`/`stop`
(SIGTERM) or `kill` (SIGKILL), `pause` (SIGSTOP)/`resume`, `partition`/`heal`,
`slow_net`/`heal`.

A *grudge* (Jepsen's word) maps a node to the parties whose traffic it drops:
`{"n1": {"n2", "n3"}}` means n1 receives nothing from n2 and n3. A party is a
node name or `"client"` (every workload client).

Thread-safety: implementations must tolerate calls from the runner thread and
the nemesis thread at once; each verb is atomic with respect to the others on
the same node.
"""

from __future__ import annotations

import abc
import subprocess
from dataclasses import dataclass
from typing import Mapping

CLIENT = "client"

Grudge = Mapping[str, "set[str] | frozenset[str] | list[str]"]


@dataclass(frozen=True)
class ExecResult:
    exit_status: int
    stdout: str
    stderr: str


class NodeControlError(RuntimeError):
    """A control action that could not be carried out; the message names the node and the action."""


class NodeControl(abc.ABC):
    """What every backend provides."""

    nodes: list[str]

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
    def slow_net(self, latency_ms: float, jitter_ms: float = 0.0, loss: float = 0.0) -> None: ...

    # --- helpers shared by backends ----------------------------------------------
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


def run_command(command: list[str], timeout_s: float) -> ExecResult:
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as e:
        raise NodeControlError(f"command {command} timed out after {timeout_s} s") from e
    except FileNotFoundError as e:
        raise NodeControlError(f"command {command[0]!r} not found") from e
    return ExecResult(proc.returncode, proc.stdout, proc.stderr)
