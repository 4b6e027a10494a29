"""Nemesis operations in words: "kill n2 (the leader)", "partition n1 | n2, n3".

The history records each fault twice: the scheduled event (`package`, `f`,
`target`, `shape` and a random `pick` that chose the victims) and then what
was done (`killed`, `paused`, `grudge`, `nodes`, ...). A reader wants the
second in a sentence, with the nodes that were hit; the `pick` number means
nothing to them and is never shown.

`describe_nemesis(f, scheduled, done)` makes that sentence for one nemesis op
pair; `describe_grudge` turns a partition's grudge (node -> the parties it
drops traffic from) into its components ("n1 | n2, n3") when the grudge is a
complete split, else into one clause per node.

Invariants: pure functions of plain data; any shape they do not know falls
back to the op's `f` and a short, sorted rendering of its value (never an
exception). The strings are not escaped here: the page escapes them.

Thread-safety: pure.

Sources: the completion values of nemeses/process.py, partition.py, disk.py,
clock.py and packet.py; Jepsen's grudges (jepsen.nemesis/complete-grudge).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["describe_grudge", "describe_nemesis", "describe_probe", "nodes_text"]

_TARGET_WORDS = {"leader": "the leader", "controller": "the controller", "one": "one node",
                 "minority": "a minority", "majority": "a majority", "all": "every node",
                 "primaries": "the partition leaders"}


_UNDO_KEYS = {"started", "resumed", "healed", "reset", "cleared"}


def _short(value: Any, limit: int = 120) -> str:
    text = json.dumps(value, separators=(", ", ": "), sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def nodes_text(nodes: Any) -> str:
    """"n1, n2" for a list of node names; "no node" for an empty list."""
    if isinstance(nodes, str):
        return nodes
    if not isinstance(nodes, Sequence) or not nodes:
        return "no node"
    return ", ".join(str(n) for n in nodes)


def describe_grudge(grudge: Any) -> str:
    """A partition's grudge in words: components when they split the nodes cleanly, else who drops whom."""
    if not isinstance(grudge, Mapping) or not grudge:
        return "nothing cut"
    drops = {str(n): {str(x) for x in (v or ())} for n, v in grudge.items() if isinstance(v, (list, tuple, set))}
    clients = sorted(n for n, v in drops.items() if "client" in v)
    peers = {n: v - {"client"} for n, v in drops.items()}
    parts = []
    if clients:
        parts.append(f"{nodes_text(clients)} cut off from the clients")
    peers = {n: v for n, v in peers.items() if v}
    if peers:
        everyone = set(peers) | {x for v in peers.values() for x in v}
        groups: list[set[str]] = []
        for n in sorted(everyone):
            group = everyone - peers.get(n, set())
            if group not in groups:
                groups.append(group)
        complete = (sum(len(g) for g in groups) == len(everyone)
                    and all(peers.get(n, set()) == everyone - g for g in groups for n in g))
        if complete and len(groups) > 1:
            ordered = sorted(groups, key=lambda g: (len(g), sorted(g)))
            parts.append(" | ".join(", ".join(sorted(g)) for g in ordered))
        else:
            parts.append("; ".join(f"{n} drops traffic from {nodes_text(sorted(v))}" for n, v in sorted(peers.items())))
    return "; ".join(parts) if parts else "nothing cut"


def _target(scheduled: Any) -> str:
    if not isinstance(scheduled, Mapping):
        return ""
    target = scheduled.get("target")
    shape = scheduled.get("shape")
    words = []
    if isinstance(shape, str):
        words.append(shape)
    if isinstance(target, str):
        words.append(_TARGET_WORDS.get(target, "target " + target))
    return f" ({', '.join(words)})" if words else ""


def _heal_all(done: Mapping[str, Any]) -> str:
    parts = []
    for package, value in done.items():
        if not isinstance(value, Mapping):
            continue
        if value.get("error"):
            parts.append(f"{package} failed: {value['error']}")
            continue
        sentence = _undo(str(package), value)
        if sentence:
            parts.append(sentence)
    return "heal everything: " + "; ".join(parts) if parts else "heal everything: nothing was left to undo"


def _undo(package: str, done: Mapping[str, Any]) -> str:
    """The words for an undo, or "" when it undid nothing."""
    if package in ("kill", "restart") or "started" in done and package != "disk":
        return f"restart {nodes_text(done.get('started'))}" if done.get("started") else ""
    if package == "pause" or "resumed" in done:
        return f"resume {nodes_text(done.get('resumed'))}" if done.get("resumed") else ""
    if package == "partition" or done.get("healed") is True:
        return "heal the network" if done.get("healed") else ""
    if package == "clock" or "reset" in done:
        return f"reset the clock of {nodes_text(done.get('reset'))}" if done.get("reset") else ""
    if package == "packet" or "cleared" in done:
        return "clear packet faults" if done.get("cleared") else ""
    if package == "disk":
        parts = []
        if done.get("healed"):
            parts.append(f"heal the disks of {nodes_text(done.get('healed'))}")
        if done.get("started"):
            parts.append(f"restart {nodes_text(done.get('started'))}")
        return ", ".join(parts)
    return _short(dict(done)) if done else ""


def per_node_total(per_node: Any) -> int:
    """The sum of a per-node map's numbers, as a nemesis records them (a node whose figure is unknown counts 0)."""
    if not isinstance(per_node, Mapping):
        return 0
    return sum(v for v in per_node.values() if isinstance(v, int) and not isinstance(v, bool))


def _disk_crash(done: Mapping[str, Any]) -> str:
    total = per_node_total(done.get("unfsynced_bytes_lost"))
    held = f", losing {total} un-fsynced bytes" if total else ", losing their un-fsynced writes"
    torn = per_node_total(done.get("torn_writes"))
    held += f" and tearing {torn} write(s)" if torn else ""
    return f"crash {nodes_text(done.get('killed'))} with lazy disks{held}, then restart them"


def _packet(done: Mapping[str, Any]) -> str:
    parts = []
    if done.get("latency_ms") is not None:
        jitter = f" ± {done['jitter_ms']:g} ms" if isinstance(done.get("jitter_ms"), (int, float)) and done[
            "jitter_ms"] else ""
        parts.append(f"{done['latency_ms']:g} ms latency{jitter}" if isinstance(done["latency_ms"], (int, float))
                     else f"latency {done['latency_ms']}")
    for name in ("loss", "duplicate", "reorder"):
        value = done.get(name)
        if isinstance(value, (int, float)) and value:
            parts.append(f"{value * 100:g}% {name}")
    return f"packet {done.get('fault', 'fault')}: " + (", ".join(parts) or "on") + " on every link"


def _clock(done: Mapping[str, Any]) -> str:
    offset = done.get("offset_s")
    nodes = nodes_text(done.get("nodes"))
    if done.get("fault") == "strobe" and isinstance(offset, list) and offset:
        period = done.get("period_s")
        every = f" every {period:g} s" if isinstance(period, (int, float)) else ""
        return f"strobe the wall clock of {nodes} by ±{abs(offset[0]):g} s{every}"
    if isinstance(offset, (int, float)):
        return f"skew the wall clock of {nodes} by {offset:+g} s"
    return f"clock {done.get('fault', 'fault')} on {nodes}"


def describe_nemesis(f: str, scheduled: Any, done: Any, probe_detail: bool = True) -> str:
    """One sentence for a nemesis op pair: its invocation's value (`scheduled`) and its completion's (`done`),
    followed by what the fault's probe measured (nemeses.probe). With `probe_detail` False (fault bands and
    anomaly context), the probe is named only when the fault did not land."""
    sentence = _describe_fault(f, scheduled, done)
    probe = done.get("probe") if isinstance(done, Mapping) else None
    if not isinstance(probe, Mapping) or not probe_detail and probe.get("confirmed") is not False:
        return sentence
    return f"{sentence}. {describe_probe(probe)}"


def describe_probe(probe: Mapping) -> str:
    """The probe's outcome in words: landed, did NOT land, or not measured, with what was measured."""
    checks = "; ".join(str(c) for c in probe.get("checks") or ())
    took = probe.get("took_s")
    took_text = f" in {took:g} s" if isinstance(took, (int, float)) else ""
    confirmed = probe.get("confirmed")
    head = ("Probe: landed" if confirmed is True else "Probe: did NOT land" if confirmed is False
            else "Probe: not measured")
    return f"{head}{took_text} ({checks})" if checks else f"{head}{took_text}"


def _describe_fault(f: str, scheduled: Any, done: Any) -> str:
    target = _target(scheduled)
    package = scheduled.get("package") if isinstance(scheduled, Mapping) else None
    if f == "heal":
        return _heal_all(done) if isinstance(done, Mapping) else "heal everything"
    if done is None:
        return f"{f}{target}: no completion recorded"
    if not isinstance(done, Mapping):
        return f"{f}{target}: {_short(done)}"
    if done.get("error"):
        return f"{f}{target} failed: {done['error']}"
    if "killed" in done and done.get("fault") == "lose-unfsynced":
        return _disk_crash(done)
    if "killed" in done and done.get("lagged"):
        return (f"kill {nodes_text(done['killed'])}{target} while {nodes_text(done['lagged'])} lagged behind it "
                f"(paused {done.get('lag_s', '?')} s, then resumed)")
    if "killed" in done:
        return f"kill {nodes_text(done['killed'])}{target}"
    if "stopped" in done:
        return f"stop {nodes_text(done['stopped'])}{target} gracefully (SIGTERM)"
    if "paused" in done:
        return f"pause {nodes_text(done['paused'])}{target}"
    if "grudge" in done:
        bridged = " (the other nodes hear both sides)" if isinstance(scheduled, Mapping) and scheduled.get(
            "shape") == "bridge" and done["grudge"] else ""
        return f"partition{target}: {describe_grudge(done['grudge'])}{bridged}"
    if package == "clock" or "clocks" in done:
        if "reset" in done:
            return _undo("clock", done) or "reset clocks: none was skewed"
        return _clock(done)
    if package == "packet" or "latency_ms" in done:
        if "cleared" in done:
            return _undo("packet", done) or "clear packet faults: none was active"
        return _packet(done)
    if package == "disk" and "nodes" in done:
        return f"disk fault {done.get('fault', '')} on {nodes_text(done['nodes'])}".replace("  ", " ")
    if package in ("kill", "restart", "pause", "partition", "clock", "packet", "disk") or set(done) & _UNDO_KEYS:
        return _undo(str(package or f), done) or f"{f}: nothing to undo"
    return f"{f}{target}: {_short(dict(done))}"
