"""Shell commands that control a node from inside its own host: partitions, heal, netem, signals.

Backends that reach a node through a shell (Docker's `exec`, an SSH session)
build their commands here, so the Docker and SSH backends inject the same
faults the same way. Every function is pure: it returns an argv list (run it
without a shell) or a shell string (run with `sh -c`), and never runs anything.

Partitions (Jepsen's approach, `jepsen.net/iptables`): a node drops, on its
INPUT path, packets from the addresses of the parties it holds a grudge
against. Our rules live in a dedicated chain, `LOGQUAKE`, jumped to from
INPUT; heal flushes that chain and teardown deletes it, so we never touch a
rule we did not write. Dropping inbound packets cuts TCP both ways in practice
(the SYN-ACK or the ACK of the other side is dropped), as in Jepsen.

The party `"client"` (nodecontrol/control.py) has no address of its own: clients
reach a node's client listener through a published port, so its packets come
from the Docker gateway (or from anywhere, over SSH). A client cut therefore
drops TCP packets to the client listener's port, from the client address when
one is known.

Network slowness: `tc qdisc ... root netem` on the node's interface, with
delay, jitter, loss, duplication and reordering (netem(8)). Fractions are given
as 0..1 and written as percentages. Reordering needs a delay (netem sends the
reordered packets at once and delays the rest). Kernels built without
sch_netem (CONFIG_NET_SCH_NETEM) answer "Specified qdisc kind is unknown";
for them `loss_rules_argv` drops a random fraction of packets with iptables'
`statistic` match, in the chain `LOGQUAKE-LOSS`.

Process signals: a node process started by `start_in_background` records its
process group id in a pid file; kill, pause and resume signal the whole group.

Thread-safety: pure functions, no state.
Sources: iptables(8), iptables-extensions(8), tc-netem(8); Jepsen `jepsen.net`.
"""

from __future__ import annotations

import shlex
from typing import Iterable, Mapping

CHAIN = "LOGQUAKE"
LOSS_CHAIN = "LOGQUAKE-LOSS"  # random drops standing in for netem loss on kernels without sch_netem
CLIENT = "client"  # the party name of every workload client, as in nodecontrol/control.py
SIGNALS = ("TERM", "KILL", "STOP", "CONT", "INT")
NETEM_VERBS = ("add", "change", "replace")


class NetShellError(ValueError):
    """A command that cannot be built from the given input; the message names the input and its value."""


# --- iptables -----------------------------------------------------------------------------


def chain_setup_shell() -> str:
    """Create our chains and jump to them first from INPUT; idempotent (safe to run twice)."""
    return "; ".join(f"iptables -w -N {chain} 2>/dev/null || true; "
                     f"iptables -w -C INPUT -j {chain} 2>/dev/null || iptables -w -I INPUT 1 -j {chain}"
                     for chain in (CHAIN, LOSS_CHAIN))


def chain_teardown_shell() -> str:
    """Remove the jumps and the chains; succeeds when they are already gone (also under `set -e`)."""
    return "; ".join(f"while iptables -w -D INPUT -j {chain} 2>/dev/null; do :; done; "
                     f"iptables -w -F {chain} 2>/dev/null || true; iptables -w -X {chain} 2>/dev/null || true"
                     for chain in (CHAIN, LOSS_CHAIN))


def heal_partition_argv() -> list[str]:
    """Flush the LOGQUAKE chain: every cut made by `drop_rules_argv` goes away."""
    return ["iptables", "-w", "-F", CHAIN]


def loss_rules_argv(loss: float) -> list[list[str]]:
    """Replace the random-drop rule with one that drops `loss` (0..1) of inbound packets (iptables `statistic`).

    Used where the kernel has no netem: loss alone, applied on input rather
    than output, which for a symmetric cut between nodes makes no difference.
    """
    loss = _fraction("loss", loss)
    commands = [["iptables", "-w", "-F", LOSS_CHAIN]]
    if loss:
        commands.append(["iptables", "-w", "-A", LOSS_CHAIN, "-m", "statistic", "--mode", "random",
                         "--probability", f"{loss:.6g}", "-j", "DROP"])
    return commands


def drop_rules_argv(grudge: Mapping[str, Iterable[str]], node: str, addresses: Mapping[str, str],
                    client_port: int | None = None, client_address: str | None = None) -> list[list[str]]:
    """The iptables commands to run on `node` so that it receives nothing from the parties it holds a grudge against.

    `addresses` maps node names to the address their packets come from. For the
    party "client", `client_port` (the client listener's port inside the node)
    is required; `client_address` narrows the cut to packets from that source.
    """
    if not isinstance(client_port, (int, type(None))) or (client_port is not None and not 0 < client_port < 65536):
        raise NetShellError(f"client_port must be a TCP port (1..65535) or None, got {client_port!r}")
    commands = []
    for source in sorted(grudge.get(node, ())):
        if source == node:
            continue
        if source == CLIENT:
            if client_port is None:
                raise NetShellError(f"grudge of {node!r} names {CLIENT!r}, but no client_port was given to cut")
            rule = ["iptables", "-w", "-A", CHAIN, "-p", "tcp", "--dport", str(client_port)]
            if client_address:
                rule += ["-s", client_address]
            commands.append(rule + ["-j", "DROP"])
            continue
        address = addresses.get(source)
        if not address:
            raise NetShellError(f"grudge of {node!r} names {source!r}, whose address is unknown; "
                                f"known addresses: {dict(addresses)}")
        commands.append(["iptables", "-w", "-A", CHAIN, "-s", address, "-j", "DROP"])
    return commands


# --- tc netem ------------------------------------------------------------------------------


def _fraction(name: str, value: float) -> float:
    if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise NetShellError(f"{name} must be a fraction between 0 and 1, got {value!r}")
    return float(value)


def _percent(value: float) -> str:
    return f"{value * 100:.4g}%"


def netem_argv(device: str, latency_ms: float, jitter_ms: float = 0.0, loss: float = 0.0,
               duplicate: float = 0.0, reorder: float = 0.0, verb: str = "replace") -> list[str]:
    """`tc qdisc <verb> dev <device> root netem ...`; `replace` adds or changes, whichever applies."""
    if verb not in NETEM_VERBS:
        raise NetShellError(f"netem verb must be one of {NETEM_VERBS}, got {verb!r}")
    if not device or any(c.isspace() for c in device):
        raise NetShellError(f"device must be an interface name, got {device!r}")
    for name, value in (("latency_ms", latency_ms), ("jitter_ms", jitter_ms)):
        if not isinstance(value, (int, float)) or value < 0:
            raise NetShellError(f"{name} must be a number of milliseconds >= 0, got {value!r}")
    loss, duplicate, reorder = _fraction("loss", loss), _fraction("duplicate", duplicate), _fraction("reorder", reorder)
    if jitter_ms and not latency_ms:
        raise NetShellError(f"jitter_ms={jitter_ms!r} needs latency_ms > 0: netem jitters a delay")
    if reorder and not latency_ms:
        raise NetShellError(f"reorder={reorder!r} needs latency_ms > 0: netem reorders by not delaying some packets")
    argv = ["tc", "qdisc", verb, "dev", device, "root", "netem", "limit", "100000"]
    if latency_ms:
        argv += ["delay", f"{latency_ms:g}ms"]
        if jitter_ms:
            argv += [f"{jitter_ms:g}ms"]
    if loss:
        argv += ["loss", _percent(loss)]
    if duplicate:
        argv += ["duplicate", _percent(duplicate)]
    if reorder:
        argv += ["reorder", _percent(reorder)]
    return argv


def netem_delete_shell(device: str) -> str:
    """Delete the root qdisc of `device`; succeeds when there is none (the kernel default remains)."""
    if not device or any(c.isspace() for c in device):
        raise NetShellError(f"device must be an interface name, got {device!r}")
    return f"tc qdisc del dev {shlex.quote(device)} root 2>/dev/null || true"


def heal_shell(device: str) -> str:
    """Undo every partition and netem on a node: flush our chains and delete the qdisc."""
    return (f"{shlex.join(heal_partition_argv())} 2>/dev/null || true; iptables -w -F {LOSS_CHAIN} 2>/dev/null || true; "
            f"{netem_delete_shell(device)}")


# --- processes ----------------------------------------------------------------------------


def start_in_background_shell(argv: list[str], pid_file: str, log_file: str, cwd: str | None = None,
                              env: Mapping[str, str] | None = None) -> str:
    """Start argv in a new session, detached, its output appended to log_file, its process group id in pid_file."""
    if not argv:
        raise NetShellError("argv must name a command, got an empty list")
    exports = "".join(f"export {k}={shlex.quote(v)}; " for k, v in (env or {}).items())
    inner = f"echo $$ > {shlex.quote(pid_file)}; {exports}exec {shlex.join(argv)}"
    cd = f"cd {shlex.quote(cwd)} && " if cwd else ""
    return (f"{cd}setsid sh -c {shlex.quote(inner)} >> {shlex.quote(log_file)} 2>&1 < /dev/null & "
            f"while [ ! -s {shlex.quote(pid_file)} ]; do sleep 0.01; done")


def signal_pid_file_shell(pid_file: str, signal_name: str) -> str:
    """Send SIG<signal_name> to the process group whose id is in pid_file; exit 1 when none runs."""
    name = signal_name.upper().removeprefix("SIG")
    if name not in SIGNALS:
        raise NetShellError(f"signal must be one of {SIGNALS}, got {signal_name!r}")
    q = shlex.quote(pid_file)
    return f'[ -s {q} ] && kill -s {name} -- -"$(cat {q})" 2>/dev/null'


def pid_file_running_shell(pid_file: str) -> str:
    """Exit 0 when the process group in pid_file still has a process."""
    q = shlex.quote(pid_file)
    return f'[ -s {q} ] && kill -s 0 -- -"$(cat {q})" 2>/dev/null'
