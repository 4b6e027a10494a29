"""The system under test, described as data, as Jepsen's `db` is.

A `System` says how to start node N of a Kafka-compatible broker: a command
line with placeholders, the files it reads, the log file it writes, how it
stops, and how the harness knows it is ready. Our broker is the built-in
default (`logquake_broker`); any other broker is described by a TOML file
(`--system FILE.toml`), documented whole in README ("Testing another broker")::

    name = "other-broker"
    start = "/opt/ob/bin/ob --id {node_id} --listen {host}:{port} --data {data_dir}"
    node_id = "{index + 100}"             # or node_ids = [101, 102, 103]; default: the node number
    ports = ["controller"]                # more ports per node: {port_controller}, {advertised_port_controller}
    peer = "{node_id}@{host}:{advertised_port_controller}"   # one entry of {peers}
    controllers = [1, 2, 3]               # node numbers in the controller quorum: {controller_peers}
    log_file = "{data_dir}/ob.log"
    stop_signal = "SIGTERM"
    stop_timeout_s = 15
    ready_timeout_s = 60
    ready = "ob-admin --bootstrap {host}:{port} health"   # polled until it exits 0 (after the port accepts)
    setup = "ob-storage format --id {cluster_id} --dir {data_dir}"  # once per node before its first start
    teardown = "..."                      # once per node when the cluster is removed
    version = "/opt/ob/bin/ob --version"  # its output goes into test.json ({python} and [vars] only)
    max_nodes = 5
    [files]                               # written before every start (paths relative to {data_dir})
    "ob.conf" = "id={node_id}\nvoters={controller_peers}\n"
    [vars]                                # placeholders of your own, overridable per node
    role = "broker"
    [node.1.vars]
    role = "broker,controller"
    [storage]
    dir = "{data_dir}/data"               # where disk faults mount their file system
    volatile = false                      # true: the broker keeps data in memory; a kill may lose it
    [security]                            # how `--security MODE` secures its client listener
    modes = ["tls", "sasl-scram", "sasl-scram-tls"]
    mechanism = "SCRAM-SHA-512"           # or SCRAM-SHA-256, PLAIN
    authorizer = true                     # it enforces ACLs in the SASL modes, User:{sasl_admin_user} super user
    [security.vars]                       # [vars] values in every secured run ...
    [security.sasl-scram-tls.vars]        # ... and in one mode
    acl = "on"

Placeholders are `{name}` or integer arithmetic on them, `{index * 10 + port}`
(`+ - * // %`, parentheses); `{{` and `}}` are literal braces. Every template
is checked when the file is read: an unknown name, arithmetic on text or a
stray brace is refused with the file, the key and the template.

Security (`--security MODE`, local backend): `{security_protocol}` (PLAINTEXT in
a plaintext run), `{security_mode}`, `{ssl_keystore}` (PEM key and chain),
`{ssl_certificate}`, `{ssl_key}`, `{ssl_ca}`, `{sasl_users_file}` (our users
file: `name:password` lines) are paths into the run's secrets directory, empty
where the mode has none; `{sasl_mechanism}`, `{sasl_user}` and
`{sasl_admin_user}` are always given. The passwords `{sasl_password}` and
`{sasl_admin_password}` only reach [files] texts: such a file is written with
mode 0600 and never collected into the run's store (it cannot be the
`log_file`), and no command line ever holds a password.

`{internal_port}` is a second port of the node, for its inter-broker listener:
on the local backend a system that uses it gets its peers' connections there
and its clients' on `{port}`, both through the one proxy port
`{advertised_port}` (on the other backends it is the port peers reach).

The harness talks to the system only through its client ports (the Kafka
protocol) and process control; nothing here knows our broker's internals.
Thread-safety: immutable values.
"""

from __future__ import annotations

import ast
import base64
import functools
import re
import shlex
import signal
import subprocess
import sys
import tomllib
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.security import (ADMIN_USER, MECHANISM, MECHANISMS, MODES, SECRET_PLACEHOLDERS, TEMPLATE_PLACEHOLDERS,
                              template_values, uses_sasl)

# the placeholders every backend fills (see NodeSpec.substitutions); ports of `ports = [...]` add their own
PLACEHOLDERS = ("index", "node_id", "nodes", "host", "port", "advertised_port", "data_dir", "peers",
                "controller_peers", "cluster_id", "python", "bind_host", "internal_port", *TEMPLATE_PLACEHOLDERS)
_NUMERIC = frozenset({"index", "node_id", "nodes", "port", "advertised_port", "internal_port"})
_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")


class SystemDescriptionError(ValueError):
    """A system description that cannot be used; the message names the file, key and value."""


# ----- templates: placeholders with integer arithmetic ----------------------------------------------

_FIELD = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")
_OPERATORS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
              ast.FloorDiv: lambda a, b: a // b, ast.Mod: lambda a, b: a % b}


class TemplateError(ValueError):
    """A template that cannot be filled: the sentence names the placeholder or the expression."""


def _evaluate(expression: str, values: dict[str, Any]) -> Any:
    try:
        tree = ast.parse(expression.strip(), mode="eval").body
    except SyntaxError:
        raise TemplateError(f"bad placeholder {expression.strip()!r}: not a name or integer arithmetic") from None

    def number(value: Any, name: str) -> int:
        if isinstance(value, int) or (isinstance(value, str) and value.lstrip("-").isdigit()):
            return int(value)
        raise TemplateError(f"bad placeholder {expression.strip()!r}: arithmetic on {name!r}, which is text "
                            f"({value!r}), not a number")

    def walk(node: ast.AST, top: bool) -> Any:
        if isinstance(node, ast.Name):
            if node.id not in values:
                raise TemplateError(f"bad placeholder {node.id!r}; accepted placeholders: {', '.join(values)}")
            return values[node.id] if top else number(values[node.id], node.id)
        if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -walk(node.operand, False)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            left, right = walk(node.left, False), walk(node.right, False)
            if isinstance(node.op, (ast.FloorDiv, ast.Mod)) and right == 0:
                raise TemplateError(f"bad placeholder {expression.strip()!r}: division by zero")
            return _OPERATORS[type(node.op)](left, right)
        raise TemplateError(f"bad placeholder {expression.strip()!r}: only names, integers and + - * // % are "
                            "accepted")

    return walk(tree, True)


def render(template: str, values: dict[str, Any]) -> str:
    """`template` with each `{expression}` replaced by its value; TemplateError names what is wrong."""
    pieces = []
    last = 0
    for match in _FIELD.finditer(template):
        between = template[last:match.start()]
        if "{" in between or "}" in between:
            raise TemplateError(f"a stray brace in {template!r} (write {{{{ or }}}} for a literal one)")
        pieces.append(between)
        token = match.group(0)
        pieces.append("{" if token == "{{" else "}" if token == "}}" else str(_evaluate(match.group(1), values)))
        last = match.end()
    rest = template[last:]
    if "{" in rest or "}" in rest:
        raise TemplateError(f"a stray brace in {template!r} (write {{{{ or }}}} for a literal one)")
    return "".join(pieces) + rest


def new_cluster_id() -> str:
    """A cluster id as Kafka's `kafka-storage.sh random-uuid` prints it: 16 random bytes, base64url, no padding."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


# ----- what a backend knows of one node ---------------------------------------------------------------


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
    index: int = 0  # the node number (n<index>); 0: the same as node_id (backends that number ids 1..N)
    ports: dict[str, int] = field(default_factory=dict)  # the extra ports of `ports = [...]`, by name
    advertised_ports: dict[str, int] = field(default_factory=dict)
    controller_peers: str = ""
    cluster_id: str = ""
    nodes: int = 0
    variables: dict[str, str] = field(default_factory=dict)  # the description's [vars], this node's values
    internal_port: int | None = None  # the inter-broker listener's port; None: the same as `port`
    security: dict[str, str] = field(default_factory=dict)  # harness.security.template_values (never a password)

    def substitutions(self) -> dict[str, Any]:
        subs: dict[str, Any] = dict(self.variables)
        subs.update(template_values(None))
        subs.update(self.security)
        subs.update({
            "index": self.index or self.node_id,
            "node_id": self.node_id,
            "nodes": self.nodes,
            "host": self.host,
            "port": self.port,
            "advertised_port": self.advertised_port,
            "data_dir": self.data_dir,
            "peers": self.peers,
            "controller_peers": self.controller_peers or self.peers,
            "cluster_id": self.cluster_id,
            "python": sys.executable,
            "bind_host": self.bind_host,
            "internal_port": self.port if self.internal_port is None else self.internal_port,
        })
        for name, port in self.ports.items():
            subs[f"port_{name}"] = port
        for name, port in self.advertised_ports.items():
            subs[f"advertised_port_{name}"] = port
        return subs


@dataclass(frozen=True)
class SystemSecurity:
    """A description's [security] table: how the described broker's client listener is secured."""

    modes: tuple[str, ...]  # the --security modes it supports
    mechanism: str = MECHANISM  # the SASL mechanism of its SASL modes
    authorizer: bool = False  # whether it enforces ACLs in the SASL modes (User:logquake-admin its super user)
    variables: dict[str, str] = field(default_factory=dict)  # [security.vars]: [vars] in every secured run
    mode_variables: dict[str, dict[str, str]] = field(default_factory=dict)  # [security.MODE.vars]


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
    # ----- a described broker (all optional; the defaults are what the first format could say) -----
    node_id: str = "{index}"  # a template of the broker id, or
    node_ids: tuple[int, ...] | None = None  # the ids, one per node number
    ports: tuple[str, ...] = ()  # more ports per node, each proxied like the first
    peer: str = "{node_id}@{host}:{advertised_port}"
    controllers: tuple[int, ...] | None = None  # node numbers of the controller quorum (None: every node)
    files: dict[str, str] = field(default_factory=dict)  # path template -> content template
    variables: dict[str, str] = field(default_factory=dict)
    node_variables: dict[int, dict[str, str]] = field(default_factory=dict)
    node_start: dict[int, list[str]] = field(default_factory=dict)  # [node.N] start = ...
    setup: list[str] | None = None
    teardown: list[str] | None = None
    ready: list[str] | None = None
    version: list[str] | None = None
    storage_dir: str | None = None  # where the broker keeps its log (disk faults mount there)
    volatile_storage: bool = False
    security: SystemSecurity | None = None  # [security]; None: a described broker cannot be secured
    description: dict[str, Any] | None = None  # the TOML as read (None: ours)

    @property
    def is_ours(self) -> bool:
        return self.description is None

    def command(self, node: NodeSpec) -> list[str]:
        subs = node.substitutions()
        return [render(part, subs) for part in self.node_start.get(node.index or node.node_id, self.start)]

    def uses_placeholder(self, name: str) -> bool:
        """Whether any template that reaches the broker names `{name}` (e.g. internal_port)."""
        return uses_placeholder(self, name)

    def log_path(self, node: NodeSpec) -> str | None:
        return render(self.log_file, node.substitutions()) if self.log_file else None

    def id_of(self, index: int) -> int:
        """The broker id of node number `index` (1-based)."""
        if self.node_ids is not None:
            if index > len(self.node_ids):
                raise SystemDescriptionError(f"system {self.name!r}: node_ids names {len(self.node_ids)} node(s); "
                                             f"there is no id for node {index}")
            return self.node_ids[index - 1]
        return int(render(self.node_id, {**self.variables_of(index), "index": index}))

    def variables_of(self, index: int, mode: str = "none") -> dict[str, str]:
        """[vars] of node number `index` in a run of security `mode`: [security.vars] and [security.MODE.vars]
        over [vars] in a secured run, [node.N.vars] over all."""
        secured: dict[str, str] = {}
        if mode != "none" and self.security is not None:
            secured = {**self.security.variables, **self.security.mode_variables.get(mode, {})}
        return {**self.variables, **secured, **self.node_variables.get(index, {})}

    @property
    def sasl_mechanism(self) -> str:
        return self.security.mechanism if self.security is not None else MECHANISM

    def enforces_acls(self, mode: str) -> bool:
        """Whether the brokers enforce ACLs in a run of security `mode`: ours in the SASL modes, a described one
        there too if its [security] says `authorizer = true`."""
        return uses_sasl(mode) and (self.is_ours or (self.security is not None and self.security.authorizer))

    def check_security(self, mode: str, path: str) -> None:
        """Refuse (SystemDescriptionError) `--security mode` for a described broker that does not say how."""
        if mode == "none" or self.is_ours:
            return
        if self.security is None:
            raise SystemDescriptionError(
                f"{path}: --security {mode} needs to know how {self.name!r} is secured, and the description has no "
                f"[security] table; add one, e.g. [security] modes = [\"{mode}\"] (with mechanism and authorizer), "
                "and secure its client listener with {security_protocol}, {ssl_keystore} (or {ssl_certificate} and "
                "{ssl_key}), {sasl_users_file} or [files] texts naming {sasl_password} (README, \"Testing another "
                "broker\")")
        if mode not in self.security.modes:
            raise SystemDescriptionError(f"{path}: [security] modes = {list(self.security.modes)} does not name "
                                         f"{mode!r}; add it if {self.name!r} can run that way")

    def peers(self, specs: list[NodeSpec]) -> tuple[str, str]:
        """{peers} and {controller_peers} for these nodes (their peers fields are not read)."""
        every = [render(self.peer, s.substitutions()) for s in specs]
        controllers = [entry for s, entry in zip(specs, every) if self.controllers is None or (s.index or s.node_id)
                       in self.controllers]
        return ",".join(every), ",".join(controllers)

    def rendered_files(self, node: NodeSpec, secrets: dict[str, str] | None = None) -> dict[str, str]:
        """path -> text of each [files] entry for this node; relative paths are in the node's data_dir. `secrets`
        (harness.security.template_secrets) fills the password placeholders, "" without it."""
        subs = node.substitutions()
        texts = {**subs, **dict.fromkeys(SECRET_PLACEHOLDERS, ""), **(secrets or {})}
        return {self._file_path(path, node, subs): render(text, texts) for path, text in self.files.items()}

    def secret_files(self, node: NodeSpec) -> set[str]:
        """The paths of this node's [files] whose texts name a password: written private, never collected."""
        subs = node.substitutions()
        return {self._file_path(path, node, subs) for path, text in self.files.items()
                if any(_names(text, name) for name in SECRET_PLACEHOLDERS)}

    @staticmethod
    def _file_path(path: str, node: NodeSpec, subs: dict[str, Any]) -> str:
        target = Path(render(path, subs))
        return str(target if target.is_absolute() else Path(node.data_dir) / target)

    def hook(self, name: str, node: NodeSpec) -> list[str] | None:
        command = getattr(self, name)
        return [render(part, node.substitutions()) for part in command] if command else None

    def version_text(self, timeout_s: float = 30.0) -> str | None:
        """The output of the description's `version` command (None when it has none; a sentence when it fails)."""
        if not self.version:
            return None
        command = [render(part, {**self.variables, "python": sys.executable}) for part in self.version]
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"unknown: {' '.join(command)} failed: {e}"
        text = (proc.stdout.strip() or proc.stderr.strip()).splitlines()
        if proc.returncode != 0:
            return f"unknown: {' '.join(command)} exited {proc.returncode}" + (f": {text[-1]}" if text else "")
        return text[0] if len(text) == 1 else "\n".join(text[:5])

    def features_beyond_one_port(self) -> list[str]:
        """The keys of the description that only the local backend carries out so far."""
        used = []
        for key, default in (("ports", ()), ("files", {}), ("setup", None), ("teardown", None), ("ready", None),
                             ("node_ids", None), ("controllers", None), ("node_start", {}),
                             ("node_variables", {}), ("variables", {})):
            if getattr(self, key) != default:
                used.append({"node_start": "node.N.start", "node_variables": "node.N.vars",
                             "variables": "vars"}.get(key, key))
        if self.node_id != "{index}":
            used.append("node_id")
        if self.peer != "{node_id}@{host}:{advertised_port}":
            used.append("peer")
        return used


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




# ----- reading a description --------------------------------------------------------------------------

_KEYS = ("name", "start", "log_file", "stop_signal", "stop_timeout_s", "ready_timeout_s", "max_nodes", "node_id",
         "node_ids", "ports", "peer", "controllers", "files", "vars", "node", "setup", "teardown", "ready",
         "version", "storage", "security")


def load_system(path: str) -> System:
    """Read a TOML system description, refusing anything it cannot use."""
    return system_from_description(read_description(path), path)


def read_description(path: str) -> dict[str, Any]:
    """The TOML of a description file, as data (what test.json records); SystemDescriptionError when unreadable."""
    p = Path(path)
    try:
        return tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise SystemDescriptionError(f"--system {path}: no such file") from None
    except OSError as e:
        raise SystemDescriptionError(f"--system {path}: cannot read it ({e.strerror})") from None
    except tomllib.TOMLDecodeError as e:
        raise SystemDescriptionError(f"--system {path}: not valid TOML: {e}") from None


def _command(raw: Any, where: str) -> list[str]:
    parts = shlex.split(raw) if isinstance(raw, str) else raw
    if not isinstance(parts, list) or not parts or not all(isinstance(x, str) for x in parts):
        raise SystemDescriptionError(f"{where} must be a command string or a list of strings, got {raw!r}")
    return parts


def system_from_description(raw: dict[str, Any], path: str) -> System:
    """A System from a description's data (read from `path`, which the sentences name)."""
    unknown = sorted(set(raw) - set(_KEYS))
    if unknown:
        raise SystemDescriptionError(f"{path}: unknown key(s) {unknown}; accepted keys are {sorted(_KEYS)}")
    if "start" not in raw:
        raise SystemDescriptionError(f"{path}: 'start' is required: the command that starts node N, with placeholders "
                                     f"{{{'}, {'.join(PLACEHOLDERS)}}}")
    start = _command(raw["start"], f"{path}: 'start'")
    stop_name = raw.get("stop_signal", "SIGTERM")
    if stop_name not in ("SIGTERM", "SIGINT"):
        raise SystemDescriptionError(f"{path}: stop_signal {stop_name!r} is not accepted; use SIGTERM or SIGINT")
    for key in ("stop_timeout_s", "ready_timeout_s"):
        if key in raw and (not isinstance(raw[key], (int, float)) or isinstance(raw[key], bool) or raw[key] <= 0):
            raise SystemDescriptionError(f"{path}: {key} must be a positive number of seconds, got {raw[key]!r}")
    max_nodes = raw.get("max_nodes")
    if max_nodes is not None and (not isinstance(max_nodes, int) or isinstance(max_nodes, bool) or max_nodes < 1):
        raise SystemDescriptionError(f"{path}: max_nodes must be a positive integer, got {max_nodes!r}")

    ports = raw.get("ports", [])
    if not isinstance(ports, list) or not all(isinstance(n, str) and _NAME.match(n) for n in ports) \
            or len(set(ports)) != len(ports):
        raise SystemDescriptionError(f"{path}: ports must be a list of distinct names (lower case letters, digits, _), "
                                     f"each adding placeholders {{port_NAME}} and {{advertised_port_NAME}}; got {ports!r}")
    node_ids = raw.get("node_ids")
    if node_ids is not None:
        if "node_id" in raw:
            raise SystemDescriptionError(f"{path}: give node_id (a template) or node_ids (a list), not both")
        if not isinstance(node_ids, list) or not node_ids or not all(
                isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in node_ids) \
                or len(set(node_ids)) != len(node_ids):
            raise SystemDescriptionError(f"{path}: node_ids must be a list of distinct broker ids (integers >= 0), "
                                         f"one per node in node order; got {node_ids!r}")
        if max_nodes is not None and len(node_ids) < max_nodes:
            raise SystemDescriptionError(f"{path}: node_ids names {len(node_ids)} id(s) but max_nodes is {max_nodes}")
        max_nodes = len(node_ids) if max_nodes is None else max_nodes
    controllers = raw.get("controllers")
    if controllers is not None and (not isinstance(controllers, list) or not controllers or not all(
            isinstance(i, int) and not isinstance(i, bool) and i >= 1 for i in controllers)):
        raise SystemDescriptionError(f"{path}: controllers must be a list of node numbers (1 is n1), the nodes of the "
                                     f"controller quorum; got {controllers!r}")

    variables = _variables(raw.get("vars", {}), f"{path}: [vars]")
    node_variables: dict[int, dict[str, str]] = {}
    node_start: dict[int, list[str]] = {}
    nodes_table = raw.get("node", {})
    if not isinstance(nodes_table, dict):
        raise SystemDescriptionError(f"{path}: [node] must be tables [node.N] of node numbers")
    for key, table in nodes_table.items():
        if not key.isdigit() or int(key) < 1 or not isinstance(table, dict):
            raise SystemDescriptionError(f"{path}: [node.{key}]: expected a node number (1 is n1) naming a table")
        extra = sorted(set(table) - {"start", "vars"})
        if extra:
            raise SystemDescriptionError(f"{path}: [node.{key}] has unknown key(s) {extra}; accepted: start, vars")
        if "start" in table:
            node_start[int(key)] = _command(table["start"], f"{path}: [node.{key}] start")
        if "vars" in table:
            node_variables[int(key)] = _variables(table["vars"], f"{path}: [node.{key}.vars]")
            undeclared = sorted(set(node_variables[int(key)]) - set(variables))
            if undeclared:
                raise SystemDescriptionError(f"{path}: [node.{key}.vars] sets {undeclared}, which [vars] does not "
                                             "declare (give every variable a default in [vars])")
    files = raw.get("files", {})
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise SystemDescriptionError(f"{path}: [files] maps a path to the text written there before each start; "
                                     f"got {files!r}")
    storage = raw.get("storage", {})
    if not isinstance(storage, dict) or sorted(set(storage) - {"dir", "volatile"}):
        raise SystemDescriptionError(f"{path}: [storage] takes dir (where the broker keeps its log) and volatile "
                                     f"(true or false); got {storage!r}")
    if "dir" in storage and not isinstance(storage["dir"], str):
        raise SystemDescriptionError(f"{path}: [storage] dir must be a path template, got {storage['dir']!r}")
    if not isinstance(storage.get("volatile", False), bool):
        raise SystemDescriptionError(f"{path}: [storage] volatile must be true or false, got {storage['volatile']!r}")
    security = _security(raw["security"], f"{path}: [security]", variables) if "security" in raw else None
    hooks = {key: _command(raw[key], f"{path}: '{key}'") if key in raw else None
             for key in ("setup", "teardown", "ready", "version")}
    for key in ("name", "log_file", "node_id", "peer"):
        if key in raw and not isinstance(raw[key], str):
            raise SystemDescriptionError(f"{path}: {key} must be a string, got {raw[key]!r}")

    system = System(
        name=str(raw.get("name", Path(path).stem)),
        start=start,
        log_file=raw.get("log_file"),
        stop_signal=getattr(signal, stop_name),
        stop_timeout_s=float(raw.get("stop_timeout_s", 15.0)),
        ready_timeout_s=float(raw.get("ready_timeout_s", 60.0)),
        max_nodes=max_nodes,
        node_id=raw.get("node_id", "{index}"),
        node_ids=tuple(node_ids) if node_ids is not None else None,
        ports=tuple(ports),
        peer=raw.get("peer", "{node_id}@{host}:{advertised_port}"),
        controllers=tuple(controllers) if controllers is not None else None,
        files=dict(files),
        variables=variables,
        node_variables=node_variables,
        node_start=node_start,
        setup=hooks["setup"], teardown=hooks["teardown"], ready=hooks["ready"], version=hooks["version"],
        storage_dir=storage.get("dir"),
        volatile_storage=storage.get("volatile", False),
        security=security,
        description=raw,
    )
    _check_templates(system, path)
    return system


def _variables(table: Any, where: str) -> dict[str, str]:
    if not isinstance(table, dict):
        raise SystemDescriptionError(f"{where} must be a table of name = value")
    out = {}
    for name, value in table.items():
        if not _NAME.match(name) or name in (*PLACEHOLDERS, *SECRET_PLACEHOLDERS) \
                or name.startswith(("port_", "advertised_port_")):
            raise SystemDescriptionError(f"{where}: {name!r} cannot name a variable (lower case letters, digits and _, "
                                         f"not one of the placeholders {', '.join(PLACEHOLDERS)})")
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise SystemDescriptionError(f"{where}: {name} = {value!r}; a variable is a string or an integer")
        out[name] = value
    return out


def _security(table: Any, where: str, declared: dict[str, str]) -> SystemSecurity:
    """A [security] table, refused with a sentence when it is not one this harness can carry out."""
    if not isinstance(table, dict):
        raise SystemDescriptionError(f"{where} must be a table (modes, mechanism, authorizer, vars)")
    unknown = sorted(set(table) - {"modes", "mechanism", "authorizer", "vars", *MODES})
    if unknown:
        raise SystemDescriptionError(f"{where} has unknown key(s) {unknown}; accepted: modes, mechanism, authorizer, "
                                     f"vars, and a table per mode ({', '.join(MODES)}) with its vars")
    modes = table.get("modes")
    if not isinstance(modes, list) or not modes or not all(m in MODES for m in modes) or len(set(modes)) != len(modes):
        raise SystemDescriptionError(f"{where}: modes must list the --security modes the broker supports, some of "
                                     f"{', '.join(MODES)}; got {modes!r}")
    mechanism = table.get("mechanism", MECHANISM)
    if mechanism not in MECHANISMS:
        raise SystemDescriptionError(f"{where}: mechanism {mechanism!r} is not one the harness's clients use; "
                                     f"expected one of {', '.join(MECHANISMS)}")
    if not isinstance(table.get("authorizer", False), bool):
        raise SystemDescriptionError(f"{where}: authorizer must be true (the broker enforces ACLs in the SASL modes, "
                                     f"User:{ADMIN_USER} its super user) or false, got {table['authorizer']!r}")

    def overrides(raw: Any, name: str) -> dict[str, str]:
        values = _variables(raw, f"{where[:-1]}.{name}]")
        undeclared = sorted(set(values) - set(declared))
        if undeclared:
            raise SystemDescriptionError(f"{where[:-1]}.{name}] sets {undeclared}, which [vars] does not declare (give "
                                         "every variable a default in [vars])")
        return values

    mode_variables = {}
    for mode in MODES:
        if mode in table:
            if mode not in modes or not isinstance(table[mode], dict) or set(table[mode]) - {"vars"}:
                raise SystemDescriptionError(f"{where[:-1]}.{mode}] takes vars only, for a mode that modes lists; "
                                             f"got {table[mode]!r} with modes = {modes!r}")
            mode_variables[mode] = overrides(table[mode].get("vars", {}), f"{mode}.vars")
    return SystemSecurity(tuple(modes), mechanism, table.get("authorizer", False),
                          overrides(table.get("vars", {}), "vars"), mode_variables)


def _names(template: str, name: str) -> bool:
    """Whether `template` names the placeholder `name` (alone or in arithmetic)."""
    return re.search(r"\{[^{}]*\b" + name + r"\b[^{}]*\}", str(template)) is not None


def _check_templates(system: System, path: str) -> None:
    """Fill every template with stand-in values, so a typo is refused before any node starts."""
    sample: dict[str, Any] = {name: (1 if name in _NUMERIC else "x") for name in PLACEHOLDERS}
    sample.update({f"port_{n}": 1 for n in system.ports})
    sample.update({f"advertised_port_{n}": 1 for n in system.ports})
    secrets = dict.fromkeys(SECRET_PLACEHOLDERS, "x")
    templates: list[tuple[str, str, dict[str, Any]]] = []
    modes = ("none", *(system.security.modes if system.security is not None else ()))
    for index, mode in sorted({(i, m) for i in set(system.node_variables) | {1} for m in modes}):
        values = {**sample, **system.variables_of(index, mode)}
        templates += [("start", part, values) for part in system.node_start.get(index, system.start)]
        templates += [(f"files {p!r}", t, {**values, **secrets}) for p, t in system.files.items()]
        templates += [(f"files path {p!r}", p, values) for p in system.files]
        for key in ("log_file", "peer", "storage_dir"):
            if getattr(system, key):
                templates.append(({"storage_dir": "storage dir"}.get(key, key), getattr(system, key), values))
        for key in ("setup", "teardown", "ready"):
            templates += [(key, part, values) for part in getattr(system, key) or ()]
    templates += [("version", part, {**system.variables, "python": "x"}) for part in system.version or ()]
    templates.append(("node_id", system.node_id, {**system.variables, "index": 1}))
    for key, template, values in templates:
        secret = next((name for name in SECRET_PLACEHOLDERS if _names(template, name) and name not in values), None)
        if secret:
            raise SystemDescriptionError(f"{path}: {key}: {{{secret}}} may only be named in [files] texts (written "
                                         "private into the node's directory, never collected), not in a command, "
                                         f"path or setting that may be logged (in {template!r})")
        try:
            render(template, values)
        except TemplateError as e:
            raise SystemDescriptionError(f"{path}: {key}: {e} (in {template!r})") from None
    spec = NodeSpec("n1", 1, "x", 1, 1, "/data", "x", "", ports=dict.fromkeys(system.ports, 1),
                    advertised_ports=dict.fromkeys(system.ports, 1), variables=system.variables_of(1))
    collected = system.secret_files(spec) & {system.log_path(spec), "/data/stdout.log"}
    if collected:
        raise SystemDescriptionError(f"{path}: [files] {collected.pop().removeprefix('/data/')!r} names a password "
                                     "and is also the log collected into the run's store (log_file or stdout.log), "
                                     "which must never hold one")
    if system.node_ids is None:
        try:
            ids = [system.id_of(i) for i in range(1, 4)]
        except (TemplateError, ValueError) as e:
            raise SystemDescriptionError(f"{path}: node_id {system.node_id!r} does not give an integer: {e}") from None
        if len(set(ids)) != len(ids):
            raise SystemDescriptionError(f"{path}: node_id {system.node_id!r} gives nodes 1-3 the ids {ids}; every "
                                         "node needs its own")


def check_cluster_shape(system: System, nodes: int) -> None:
    """Refuse (SystemDescriptionError) a cluster size the description cannot carry out."""
    if system.max_nodes is not None and nodes > system.max_nodes:
        raise SystemDescriptionError(f"system {system.name!r} supports at most {system.max_nodes} node(s); asked for "
                                     f"{nodes}")
    if system.controllers is not None:
        beyond = [i for i in system.controllers if i > nodes]
        if beyond:
            raise SystemDescriptionError(f"system {system.name!r}: controllers names node(s) {beyond}, beyond the "
                                         f"{nodes} node(s) of this run")
    for index in set(system.node_variables) | set(system.node_start):
        if index > nodes:
            raise SystemDescriptionError(f"system {system.name!r}: [node.{index}] describes a node beyond the "
                                         f"{nodes} node(s) of this run")


# ----- faults that cannot land on a described broker ------------------------------------------------------

_GO_BUILDINFO = b"\xff Go buildinf:"


def why_libfaketime_cannot_reach(executable: str) -> str | None:
    """Why LD_PRELOAD (libfaketime) would not change the clock `executable` reads; None when it would, or when
    the file is not an ELF binary (a script: what it runs is not known here, and the clock probe tells)."""
    import mmap
    import struct

    try:
        with open(executable, "rb") as f:
            header = f.read(64)
            if header[:4] != b"\x7fELF":
                return None
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                if data.find(_GO_BUILDINFO) >= 0:
                    return (f"{executable} is a Go program, which reads the clock through the vDSO without libc, "
                            "so libfaketime cannot change it")
                is_64, little = header[4] == 2, header[5] == 1
                order = "<" if little else ">"
                if is_64:
                    phoff, = struct.unpack_from(order + "Q", header, 32)
                    phentsize, phnum = struct.unpack_from(order + "HH", header, 54)
                else:
                    phoff, = struct.unpack_from(order + "I", header, 28)
                    phentsize, phnum = struct.unpack_from(order + "HH", header, 42)
                for i in range(phnum):
                    p_type, = struct.unpack_from(order + "I", data, phoff + i * phentsize)
                    if p_type == 3:  # PT_INTERP: a dynamic loader, which honours LD_PRELOAD
                        return None
                return (f"{executable} is statically linked (no program interpreter), so the dynamic loader never "
                        "loads libfaketime through LD_PRELOAD")
    except (OSError, ValueError, struct.error):
        return None


def uses_placeholder(system: System, name: str) -> bool:
    """Whether any template of the description that reaches the broker names the placeholder `name`."""
    templates = [*system.start, *(p for s in system.node_start.values() for p in s), *system.files.values(),
                 *system.files, *system.variables.values(), *(v for t in system.node_variables.values() for v in t.values()),
                 system.log_file or "", system.config_file or "", *system.properties.values()]
    return any(_names(t, name) for t in templates)


def refuse_faults_that_cannot_land(system: System, nemesis: tuple[str, ...] | list[str], backend: str,
                                   nodes: int = 1) -> None:
    """Refuse (SystemDescriptionError, exit 254) a fault or backend that a described broker cannot take."""
    import shutil

    if "partition" in nemesis and backend == "local" and nodes > 1 and not uses_placeholder(system, "bind_host"):
        raise SystemDescriptionError(
            f"system {system.name!r}: partitions between nodes cannot land: the local fault proxy tells a node's "
            "connections to its peers from a client's by their source address, {bind_host}, which the description "
            "never gives the broker (its outgoing-address setting); give it, or drop partition from --nemesis "
            "(kill, pause and clock faults need no address)")

    if backend == "ssh":
        beyond = system.features_beyond_one_port()
        if beyond:
            raise SystemDescriptionError(f"system {system.name!r}: --backend ssh carries out the first description "
                                         f"format only (start, log_file, stop and ready timeouts, max_nodes); this one "
                                         f"uses {', '.join(beyond)}, which only --backend local carries out so far")
    if "disk" in nemesis and not system.storage_dir:
        raise SystemDescriptionError(f"system {system.name!r}: disk faults mount their file system where the broker "
                                     "keeps its log; say where with [storage] dir = \"{data_dir}/...\"")
    if "clock" in nemesis and backend == "local":
        sample: dict[str, Any] = {name: (1 if name in _NUMERIC else "x") for name in PLACEHOLDERS}
        sample["python"] = sys.executable
        for start in [system.start, *system.node_start.values()]:
            try:
                program = render(start[0], sample)
            except TemplateError:
                continue  # the executable's name depends on the node: the clock probe tells
            path = shutil.which(program) or program
            reason = why_libfaketime_cannot_reach(path)
            if reason:
                raise SystemDescriptionError(f"system {system.name!r}: clock faults cannot land: {reason}; drop clock "
                                             "from --nemesis for this broker")
