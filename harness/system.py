"""The system under test, described as data, as Jepsen's `db` is.

A `System` says how to start node N of a Kafka-compatible broker: a command
line with placeholders, the log file it writes, how it stops, and what
properties it takes. Our broker is the built-in default; any other broker is
described by a TOML file (`--system FILE.toml`)::

    name = "other-broker"
    # placeholders: {node_id} {host} {port} {advertised_port} {data_dir} {peers} {python}
    start = "/opt/ob/bin/ob --id {node_id} --listen {host}:{port} --advertise {host}:{advertised_port} --data {data_dir}"
    log_file = "{data_dir}/ob.log"        # optional; stdout and stderr are always captured too
    stop_signal = "SIGTERM"               # SIGTERM (default) or SIGINT
    stop_timeout_s = 15                   # then SIGKILL
    ready_timeout_s = 60                  # how long the client port may take to accept connections
    max_nodes = 1                         # optional: how many nodes this description supports

`{peers}` expands to `node_id@host:advertised_port` entries joined by commas.
`{internal_port}` is a second port of the node, for its inter-broker listener:
on the local backend a system that uses it gets its peers' connections there
and its clients' on `{port}`, both through the one proxy port
`{advertised_port}` (on the other backends it is the port peers reach).
The harness talks to the system only through its client port (the Kafka
protocol) and process control; nothing here knows our broker's internals.
"""

from __future__ import annotations

import functools
import shlex
import signal
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

PLACEHOLDERS = ("node_id", "host", "port", "advertised_port", "data_dir", "peers", "python", "bind_host", "internal_port")


class SystemDescriptionError(ValueError):
    """A system description that cannot be used; the message names the file, key and value."""


@dataclass(frozen=True)
class NodeSpec:
    """Everything needed to start one node."""

    name: str
    node_id: int
    host: str
    port: int
    advertised_port: int
    data_dir: str
    bind_host: str
    peers: str
    internal_port: int | None = None  # the inter-broker listener's port; None: the same as `port`

    def substitutions(self) -> dict[str, str]:
        return {
            "node_id": str(self.node_id),
            "host": self.host,
            "port": str(self.port),
            "advertised_port": str(self.advertised_port),
            "data_dir": self.data_dir,
            "peers": self.peers,
            "python": sys.executable,
            "bind_host": self.bind_host,
            "internal_port": str(self.port if self.internal_port is None else self.internal_port),
        }


@dataclass(frozen=True)
class System:
    name: str
    start: list[str]
    log_file: str | None = None
    stop_signal: int = signal.SIGTERM
    stop_timeout_s: float = 15.0
    ready_timeout_s: float = 60.0
    max_nodes: int | None = None
    max_nodes_reason: str = ""
    config_file: str | None = None  # for ours: server.properties written from `properties`
    properties: dict[str, str] = field(default_factory=dict)
    supports_overrides: bool = False

    def command(self, node: NodeSpec) -> list[str]:
        subs = node.substitutions()
        return [part.format(**subs) for part in self.start]

    def uses_placeholder(self, name: str) -> bool:
        """Whether `{name}` appears in the start command, the log file or a property (e.g. internal_port)."""
        texts = [*self.start, self.log_file or "", self.config_file or "", *self.properties.values()]
        return any("{" + name + "}" in text for text in texts)

    def log_path(self, node: NodeSpec) -> str | None:
        return self.log_file.format(**node.substitutions()) if self.log_file else None


@functools.lru_cache(maxsize=64)
def _check_overrides(items: tuple[tuple[str, str], ...]) -> str | None:
    proc = subprocess.run([sys.executable, "-m", "broker", "--check",
                           *(a for key, value in items for a in ("--override", f"{key}={value}"))],
                          capture_output=True, text=True, timeout=120)
    if proc.returncode == 0:
        return None
    message = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
    return message.removeprefix("configuration error: ")


def check_broker_overrides(overrides: dict[str, str]) -> None:
    """Refuse (ValueError) a property our broker does not know or a value of the wrong type, before any node starts.

    The broker's own table decides (`python -m broker --check`): the harness never imports broker internals."""
    if overrides:
        problem = _check_overrides(tuple(sorted(overrides.items())))
        if problem:
            raise ValueError(f"--broker-override: {problem}")


def logquake_broker(overrides: dict[str, str] | None = None, node_count: int = 1) -> System:
    """Our own broker: `python -m broker --config {data_dir}/server.properties`.

    Every node is a combined broker and controller with two listeners: CLIENT
    (`{port}`) for clients and INTERNAL (`{internal_port}`) for replication and
    the controller quorum, so a client never reaches the broker-internal APIs
    (Raft, controller RPCs, WriteTxnMarkers). Both advertise the node's proxied
    address, which is also its quorum voter address: controller traffic crosses
    the fault proxy like replication and client traffic, and each node's
    outgoing connections leave from its own `{bind_host}` so the proxy can tell
    the nodes apart (and sends them to INTERNAL).
    """
    properties = {
        "node.id": "{node_id}",
        "listeners": "CLIENT://{host}:{port},INTERNAL://{host}:{internal_port}",
        "advertised.listeners": "CLIENT://{host}:{advertised_port},INTERNAL://{host}:{advertised_port}",
        "listener.security.protocol.map": "CLIENT:PLAINTEXT,INTERNAL:PLAINTEXT",
        "inter.broker.listener.name": "INTERNAL",
        "controller.listener.names": "INTERNAL",
        "log.dirs": "{data_dir}/logs",
        "controller.quorum.voters": "{peers}",
        "logquake.outbound.address": "{bind_host}",
        "default.replication.factor": str(min(3, node_count)),
        # fail over within a few seconds, so faults of a short test are felt and healed
        "broker.session.timeout.ms": "4000",
        "broker.heartbeat.interval.ms": "500",
        "replica.lag.time.max.ms": "5000",
        "replica.fetch.backoff.ms": "100",
        # consumer groups of a short test: no initial rebalance delay, short sessions allowed
        "group.initial.rebalance.delay.ms": "0",
        "group.min.session.timeout.ms": "1000",
        "offsets.topic.num.partitions": "10",
        # transactions of a short test: few state partitions, and a transaction
        # left open by a replaced client is aborted within a second of its timeout
        "transaction.state.log.num.partitions": "10",
        "transaction.abort.timed.out.transaction.cleanup.interval.ms": "1000",
    }
    properties.update(overrides or {})
    return System(
        name="logquake",
        start=["{python}", "-m", "broker", "--config", "{data_dir}/server.properties"],
        log_file="{data_dir}/logs/broker.log",
        config_file="{data_dir}/server.properties",
        properties=properties,
        supports_overrides=True,
    )


def load_system(path: str) -> System:
    """Read a TOML system description, refusing anything it cannot use."""
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise SystemDescriptionError(f"--system {path}: no such file") from None
    except tomllib.TOMLDecodeError as e:
        raise SystemDescriptionError(f"--system {path}: not valid TOML: {e}") from None
    known = {"name", "start", "log_file", "stop_signal", "stop_timeout_s", "ready_timeout_s", "max_nodes"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise SystemDescriptionError(f"{path}: unknown key(s) {unknown}; accepted keys are {sorted(known)}")
    if "start" not in raw:
        raise SystemDescriptionError(f"{path}: 'start' is required: the command that starts node N, with placeholders {{{'}, {'.join(PLACEHOLDERS)}}}")
    start = raw["start"]
    parts = shlex.split(start) if isinstance(start, str) else start
    if not isinstance(parts, list) or not parts or not all(isinstance(x, str) for x in parts):
        raise SystemDescriptionError(f"{path}: 'start' must be a command string or a list of strings, got {start!r}")
    for part in parts + ([raw["log_file"]] if "log_file" in raw else []):
        try:
            part.format(**{k: "" for k in PLACEHOLDERS})
        except (KeyError, IndexError, ValueError) as e:
            raise SystemDescriptionError(f"{path}: bad placeholder {e} in {part!r}; accepted placeholders: {', '.join(PLACEHOLDERS)}") from None
    stop_name = raw.get("stop_signal", "SIGTERM")
    if stop_name not in ("SIGTERM", "SIGINT"):
        raise SystemDescriptionError(f"{path}: stop_signal {stop_name!r} is not accepted; use SIGTERM or SIGINT")
    for key in ("stop_timeout_s", "ready_timeout_s"):
        if key in raw and (not isinstance(raw[key], (int, float)) or raw[key] <= 0):
            raise SystemDescriptionError(f"{path}: {key} must be a positive number of seconds, got {raw[key]!r}")
    max_nodes = raw.get("max_nodes")
    if max_nodes is not None and (not isinstance(max_nodes, int) or max_nodes < 1):
        raise SystemDescriptionError(f"{path}: max_nodes must be a positive integer, got {max_nodes!r}")
    return System(
        name=str(raw.get("name", p.stem)),
        start=parts,
        log_file=raw.get("log_file"),
        stop_signal=getattr(signal, stop_name),
        stop_timeout_s=float(raw.get("stop_timeout_s", 15.0)),
        ready_timeout_s=float(raw.get("ready_timeout_s", 60.0)),
        max_nodes=max_nodes,
    )
