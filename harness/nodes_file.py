"""The nodes file of the SSH backend (`logquake test --backend ssh --nodes-file FILE`).

A TOML file that names the hosts a test runs on, how the harness reaches them
over SSH, and the addresses the brokers use::

    user = "root"                       # defaults for every node
    key_file = "~/.ssh/id_ed25519"      # omit to use an SSH agent (or ~/.ssh/id_* keys)
    known_hosts = "~/.ssh/known_hosts"  # host keys are checked against this file
    run_dir = "/srv/logquake"           # where the project is installed and nodes keep their data
    python = "python3"                  # the hosts' Python, the same minor version as the harness's
    connect_timeout_s = 10              # for connecting, the SSH banner and authentication

    [[node]]
    name = "n1"
    ssh = "10.0.0.1:22"                 # where the harness connects (port defaults to 22)
    address = "10.0.0.1"                # the node's address for replication and controller traffic
    client = "10.0.0.1:9092"            # host:port clients use (default: address:9092)
    # client_listen = "0.0.0.0:9092"    # where the broker binds its client listener
    #                                   # (default: 0.0.0.0 and the port of `client`; differs behind NAT)
    # internal_port = 9093              # the inter-broker and controller listener, bound on `address`

Invariants of a parsed `NodesFile`: node names are unique and usable as
party names of a grudge; every port is 1..65535; the internal and client
listeners of a node never share a port; addresses of distinct nodes differ
(iptables tells nodes apart by source address). Unknown keys, a missing
key file and passwords are refused with an error naming the file, the line,
the node and what is accepted; passwords are not supported at all, so none can
leak into a log or a report.

Thread-safety: parsing is a pure function; the result is frozen.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

TOP_LEVEL_KEYS = ("user", "key_file", "known_hosts", "run_dir", "python", "connect_timeout_s", "node")
NODE_KEYS = ("name", "ssh", "address", "client", "client_listen", "internal_port", "user", "key_file")
DEFAULT_CLIENT_PORT = 9092
DEFAULT_INTERNAL_PORT = 9093
DEFAULT_RUN_DIR = "/srv/logquake"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_RESERVED_NAMES = ("client", "nemesis")


class NodesFileError(ValueError):
    """A nodes file that cannot be used; the message names the file, line, node, key and value."""


@dataclass(frozen=True)
class SshNode:
    """One host of the cluster and the addresses of the broker that runs on it."""

    name: str
    ssh_host: str
    ssh_port: int
    address: str
    client_host: str
    client_port: int
    client_listen_host: str
    client_listen_port: int
    internal_port: int
    user: str
    key_file: str | None  # None: an SSH agent or the default ~/.ssh keys

    @property
    def ssh_target(self) -> str:
        """user@host:port, as logs name the node (never a credential)."""
        return f"{self.user}@{self.ssh_host}:{self.ssh_port}"

    @property
    def client_bootstrap(self) -> str:
        return f"{_host_text(self.client_host)}:{self.client_port}"


@dataclass(frozen=True)
class NodesFile:
    path: str
    nodes: tuple[SshNode, ...]
    known_hosts: str
    run_dir: str
    python: str
    connect_timeout_s: float

    @property
    def names(self) -> list[str]:
        return [n.name for n in self.nodes]


def load_nodes_file(path: str) -> NodesFile:
    """Read and validate a nodes file; NodesFileError names what is wrong and what is accepted."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise NodesFileError(f"--nodes-file {path}: no such file") from None
    except OSError as e:
        raise NodesFileError(f"--nodes-file {path}: cannot be read: {e.strerror}") from None
    return parse_nodes_file(text, str(path))


def parse_nodes_file(text: str, path: str = "<nodes file>") -> NodesFile:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise NodesFileError(f"{path}: not valid TOML: {e}") from None
    lines = text.splitlines()
    node_headers = [i for i, line in enumerate(lines) if re.match(r"^\s*\[\[\s*node\s*\]\]", line)]

    def where(key: str, node_index: int | None) -> str:
        """'line N' of the key's first assignment in the top level or in the node's table."""
        if node_index is None:
            start, end = 0, (node_headers[0] if node_headers else len(lines))
        elif node_index < len(node_headers):
            start = node_headers[node_index]
            end = node_headers[node_index + 1] if node_index + 1 < len(node_headers) else len(lines)
        else:
            return ""
        pattern = re.compile(rf'^\s*["\']?{re.escape(key)}["\']?\s*=')
        for i in range(start, end):
            if pattern.match(lines[i]):
                return f" (line {i + 1})"
        return ""

    _refuse_passwords(raw, path, where, None)
    unknown = [k for k in raw if k not in TOP_LEVEL_KEYS]
    if unknown:
        key = unknown[0]
        raise NodesFileError(f"{path}{where(key, None)}: unknown key {key!r}; accepted top-level keys are "
                             f"{', '.join(TOP_LEVEL_KEYS)} (and, in each [[node]], {', '.join(NODE_KEYS)})")
    default_user = _text(raw, "user", path, "", where, None, default="root")
    default_key = _key_file(raw.get("key_file"), path, where("key_file", None), "key_file")
    known_hosts = os.path.expanduser(_text(raw, "known_hosts", path, "", where, None, default="~/.ssh/known_hosts"))
    run_dir = _text(raw, "run_dir", path, "", where, None, default=DEFAULT_RUN_DIR)
    if not run_dir.startswith("/") or run_dir.rstrip("/") in ("", "/"):
        raise NodesFileError(f"{path}{where('run_dir', None)}: run_dir {run_dir!r} must be an absolute path "
                             "other than /, e.g. /srv/logquake (teardown removes the run's directory under it)")
    python = _text(raw, "python", path, "", where, None, default="python3")
    timeout = raw.get("connect_timeout_s", 10)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise NodesFileError(f"{path}{where('connect_timeout_s', None)}: connect_timeout_s must be a positive "
                             f"number of seconds, got {timeout!r}")
    tables = raw.get("node")
    if not isinstance(tables, list) or not tables:
        raise NodesFileError(f"{path}: no nodes; add one [[node]] table per host, with name, ssh and address")
    nodes: list[SshNode] = []
    for index, table in enumerate(tables):
        nodes.append(_parse_node(table, index, path, where, default_user, default_key))
    _check_distinct(nodes, path)
    return NodesFile(path, tuple(nodes), known_hosts, run_dir.rstrip("/"), python, float(timeout))


def _parse_node(table: dict, index: int, path: str, where, default_user: str,
                default_key: str | None) -> SshNode:
    label = f"node {table.get('name')!r}" if isinstance(table.get("name"), str) else f"[[node]] number {index + 1}"
    _refuse_passwords(table, path, where, index)
    for key in table:
        if key not in NODE_KEYS:
            raise NodesFileError(f"{path}{where(key, index)}: {label}: unknown key {key!r}; accepted keys of a "
                                 f"[[node]] are {', '.join(NODE_KEYS)}")
    for key in ("name", "ssh", "address"):
        if key not in table:
            raise NodesFileError(f"{path}: {label}: {key!r} is required (keys of a [[node]]: "
                                 f"{', '.join(NODE_KEYS)})")
    ctx = f"{path}{{where}}: {label}"
    name = _text(table, "name", path, f": {label}", where, index)
    if not _NAME_RE.match(name) or name in _RESERVED_NAMES:
        raise NodesFileError(f"{path}{where('name', index)}: {label}: name {name!r} is not accepted; use letters, "
                             f"digits, '_', '.', '-' (not {' or '.join(_RESERVED_NAMES)}), e.g. 'n1'")
    ssh_host, ssh_port = _host_port(_text(table, "ssh", path, f": {label}", where, index), 22,
                                    ctx.format(where=where("ssh", index)), "ssh")
    address = _text(table, "address", path, f": {label}", where, index)
    if ":" in address.strip("[]") and not address.startswith("[") and address.count(":") == 1:
        raise NodesFileError(f"{path}{where('address', index)}: {label}: address {address!r} must be a host "
                             "without a port (the ports are client and internal_port)")
    address = address.strip("[]")
    client_text = table.get("client", f"{_host_text(address)}:{DEFAULT_CLIENT_PORT}")
    if not isinstance(client_text, str):
        raise NodesFileError(f"{path}{where('client', index)}: {label}: client must be a \"host:port\" string, "
                             f"got {client_text!r}")
    client_host, client_port = _host_port(client_text, None, ctx.format(where=where("client", index)), "client")
    listen_text = table.get("client_listen", f"0.0.0.0:{client_port}")
    if not isinstance(listen_text, str):
        raise NodesFileError(f"{path}{where('client_listen', index)}: {label}: client_listen must be a "
                             f"\"host:port\" string, got {listen_text!r}")
    listen_host, listen_port = _host_port(listen_text, None, ctx.format(where=where("client_listen", index)),
                                          "client_listen")
    internal_port = table.get("internal_port", DEFAULT_INTERNAL_PORT)
    if isinstance(internal_port, bool) or not isinstance(internal_port, int) or not 1 <= internal_port <= 65535:
        raise NodesFileError(f"{path}{where('internal_port', index)}: {label}: internal_port must be a port "
                             f"number 1..65535, got {internal_port!r}")
    if internal_port == listen_port:
        raise NodesFileError(f"{path}{where('internal_port', index)}: {label}: internal_port {internal_port} is "
                             f"also the client listener's port; the two listeners need different ports")
    user = _text(table, "user", path, f": {label}", where, index, default=default_user)
    key_file = _key_file(table["key_file"], path, where("key_file", index), f"{label}: key_file") \
        if "key_file" in table else default_key
    return SshNode(name, ssh_host, ssh_port, address, client_host, client_port, listen_host, listen_port,
                   internal_port, user, key_file)


def _check_distinct(nodes: list[SshNode], path: str) -> None:
    seen: dict[str, str] = {}
    for node in nodes:
        if node.name in seen:
            raise NodesFileError(f"{path}: node name {node.name!r} appears twice; names must be unique")
        seen[node.name] = node.name
    by_address: dict[str, str] = {}
    for node in nodes:
        if node.address in by_address:
            raise NodesFileError(f"{path}: nodes {by_address[node.address]!r} and {node.name!r} share the address "
                                 f"{node.address!r}; partitions tell nodes apart by address, so each needs its own")
        by_address[node.address] = node.name


def _refuse_passwords(table: dict, path: str, where, index: int | None) -> None:
    for key in table:
        if "password" in key.lower() or "passphrase" in key.lower():
            # never echo the value: it is a secret
            raise NodesFileError(f"{path}{where(key, index)}: {key!r} is not accepted: passwords are not "
                                 "supported; authenticate with key_file (an unencrypted key) or an SSH agent")


def _text(table: dict, key: str, path: str, label: str, where, index: int | None, default: str | None = None) -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise NodesFileError(f"{path}{where(key, index)}{label}: {key} must be a non-empty string, got {value!r}")
    return value.strip()


def _key_file(value, path: str, line: str, label: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise NodesFileError(f"{path}{line}: {label} must be the path of a private key file, got {value!r}")
    expanded = os.path.expanduser(value.strip())
    if not os.path.isfile(expanded):
        raise NodesFileError(f"{path}{line}: {label} {value!r} does not exist (expanded: {expanded}); give the "
                             "path of a private key, or omit key_file to use an SSH agent")
    return expanded


def _host_port(text: str, default_port: int | None, context: str, key: str) -> tuple[str, int]:
    """Split host:port ([v6]:port for IPv6); the port is required unless default_port is given."""
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else None
        if not sep or (rest and not rest.startswith(":")):
            raise NodesFileError(f"{context}: {key} {text!r} is malformed; expected host:port or [v6-address]:port")
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host, port_text = text, None
    if not host:
        raise NodesFileError(f"{context}: {key} {text!r} has no host; expected host:port")
    if port_text is None:
        if default_port is None:
            raise NodesFileError(f"{context}: {key} {text!r} has no port; expected host:port, e.g. 10.0.0.1:9092")
        return host, default_port
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise NodesFileError(f"{context}: {key} {text!r} has a bad port {port_text!r}; expected 1..65535")
    return host, int(port_text)


def _host_text(host: str) -> str:
    return f"[{host}]" if ":" in host else host
