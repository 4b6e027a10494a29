"""Did the faults land? A checker of the nemesis's probes.

Right after starting a fault the harness measures that it is in effect
(`nemeses.probe`) and records the outcome in the completion of the nemesis op:
`{"probe": {"package", "confirmed", "checks", "took_s"}}`, where `confirmed` is
True (in effect), False (measured not in effect) or None (no measurement).

A run in which the faults of a kind never landed tested nothing of that kind, so
it cannot pass: when a kind (a fault package) has unconfirmed faults and not a
single confirmed one, the verdict is "unknown" and the message names the faults
that did not land. Faults that were not measured (confirmed None) count neither
way. Some unconfirmed faults beside confirmed ones of the same kind are listed,
without changing the verdict. A history without probes (older runs, other
tools' histories) is valid here: this checker judges only what was measured.

It also says when each fault was in effect (`fault_windows`, `nemesis_windows`),
for the report's fault bands and for the checkers' rules that must allow for a
leader change.

Pure: history in, result map out; safe from any thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from checkers.core import UNKNOWN
from checkers.history import NEMESIS, History

__all__ = ["LOSS_ANOMALIES", "check_faults_landed", "excuse_volatile_losses", "fault_kind", "fault_probes",
           "fault_windows", "is_undo", "nemesis_windows", "nodes_killed"]

# Nemesis fs that undo a fault; everything else a nemesis does opens one.
_UNDO_FS = frozenset({"start", "resume", "heal", "stop", "recover", "reset"})
_UNDO_PREFIXES = ("stop-", "reset-", "heal-", "resume-", "recover-")
# When an op carries no package name, its f tells the package (the undo fs of
# the kill and pause packages are ambiguous otherwise).
_PACKAGE_OF_F = {"kill": "kill", "start": "kill", "shutdown": "restart", "pause": "pause", "resume": "pause"}


def fault_kind(f: str, value: Any) -> str:
    """The nemesis package an op belongs to: the event's `package`, else guessed from its f."""
    if isinstance(value, dict) and isinstance(value.get("package"), str):
        return value["package"]
    if f in _PACKAGE_OF_F:
        return _PACKAGE_OF_F[f]
    for prefix in ("start-", "stop-", "reset-", "heal-", "resume-", "recover-"):
        if f.startswith(prefix):
            return f[len(prefix):]
    return f


def is_undo(f: str) -> bool:
    """Whether a nemesis op with this f ends a fault (anything else a nemesis does starts one)."""
    return f in _UNDO_FS or f.startswith(_UNDO_PREFIXES)


def fault_windows(events: Sequence[tuple[str, Any, float, float | None]], run_end: float
                  ) -> list[tuple[str, float, float, int]]:
    """When each nemesis package's fault was in effect: (kind, start, end, index of the event that opened it).

    `events` are the nemesis's op pairs in history order, each as (f, scheduled value, start, end), end None
    while the pair is pending; start and end are any one measure (seconds, positions). A window opens when a
    package starts a fault (`kill`, `pause`, `start-*`, or any f that is not a known undo) and closes at that
    package's next undo (`start`, `resume`, `stop-*`, `reset-*`, `heal-*`, ...); `heal` closes every open
    window; a window still open at the end closes at `run_end` (or its own start, if later). Sorted by start,
    then kind."""
    windows: list[tuple[str, float, float, int]] = []
    open_windows: dict[str, tuple[float, int]] = {}
    for i, (f, value, start, end) in enumerate(events):
        end = start if end is None else end
        if f == "heal":
            windows += [(kind, opened, end, j) for kind, (opened, j) in open_windows.items()]
            open_windows.clear()
            continue
        kind = fault_kind(f, value)
        if is_undo(f):
            if kind in open_windows:
                opened, j = open_windows.pop(kind)
                windows.append((kind, opened, end, j))
        elif kind not in open_windows:  # a second start of a package in effect opens nothing new
            open_windows[kind] = (start, i)
    windows += [(kind, opened, max(run_end, opened), j) for kind, (opened, j) in open_windows.items()]
    windows.sort(key=lambda w: (w[1], w[0]))
    return windows


def nemesis_windows(history: History) -> list[tuple[str, int, int]]:
    """`fault_windows` of a history in positions: (kind, position of the op that opened the fault, position of
    the op that undid it, or the history's last position). The nemesis's ops pair up in order (the scheduled
    event, then what was done, as Jepsen logs them); a last unpaired op counts as pending."""
    nemesis = [position for position, op in enumerate(history) if op.process == NEMESIS]
    ops = [history[position] for position in nemesis]
    events = [(str(ops[i].f), ops[i].value, nemesis[i], nemesis[i + 1] if i + 1 < len(nemesis) else None)
              for i in range(0, len(nemesis), 2)]
    return [(kind, start, end) for kind, start, end, _ in fault_windows(events, len(history) - 1)]


def _get(value: Any, key: str) -> Any:
    if not isinstance(value, dict):
        return None
    for k, v in value.items():
        if str(k).lstrip(":") == key:
            return v
    return None


def fault_probes(history: History) -> list[dict]:
    """The probes the nemesis recorded, in history order, each with the time (s) and the op's `f`."""
    probes = []
    for op in history:
        if op.process != "nemesis" or op.type != "info":
            continue
        probe = _get(op.value, "probe")
        if not isinstance(probe, dict):
            continue
        probes.append({"f": op.f, "at_s": None if op.time is None else round(op.time / 1e9, 3),
                       "package": _get(probe, "package"), "confirmed": _get(probe, "confirmed"),
                       "checks": list(_get(probe, "checks") or []), "took_s": _get(probe, "took_s")})
    return probes


def check_faults_landed(history: History) -> dict[str, Any]:
    """Valid unless the faults of some kind were measured and none of them landed (then unknown)."""
    probes = fault_probes(history)
    by_kind: dict[str, dict[str, int]] = {}
    for probe in probes:
        counts = by_kind.setdefault(str(probe["package"]), {"confirmed": 0, "unconfirmed": 0, "not_measured": 0})
        key = {True: "confirmed", False: "unconfirmed"}.get(probe["confirmed"], "not_measured")
        counts[key] += 1
    unconfirmed = [p for p in probes if p["confirmed"] is False]
    never = sorted(kind for kind, c in by_kind.items() if c["unconfirmed"] and not c["confirmed"])
    took = [p["took_s"] for p in probes if isinstance(p["took_s"], (int, float))]
    result: dict[str, Any] = {
        "valid": UNKNOWN if never else True,
        "probed": len(probes),
        "by_kind": by_kind,
        "unconfirmed": unconfirmed,
        "never_landed": never,
        "max_probe_s": max(took) if took else None,
    }
    if never:
        listed = "; ".join(f"{p['f']} at {p['at_s']} s ({'; '.join(p['checks'])})" for p in unconfirmed
                           if p["package"] in never)
        result["reason"] = "faults-not-landed"
        result["message"] = (f"faults of kind {', '.join(never)} never landed, so the run tested nothing of "
                             f"{'that kind' if len(never) == 1 else 'those kinds'}: {listed}")
    return result


# Anomalies that are losses of acknowledged data, in the queue and the pipeline checkers' names.
LOSS_ANOMALIES = ("lost-write", "unseen", "lost-input", "txn-output-missing")


def nodes_killed(history: History) -> list[str]:
    """Every node a kill fault hit (nemesis completions with `killed`), in history order, repeats kept."""
    killed: list[str] = []
    for op in history:
        if op.process == "nemesis" and op.type == "info":
            nodes = _get(op.value, "killed")
            if isinstance(nodes, list):
                killed += [str(n) for n in nodes]
    return killed


def excuse_volatile_losses(result: dict[str, Any], history: History) -> dict[str, Any]:
    """A workload result of a system that declares volatile storage: losses after kills are not its fault.

    Such a system promises nothing across a kill (its data lives in memory), so when the run killed nodes,
    lost acknowledged data is not a broken promise of the broker: a result invalid only through loss
    anomalies becomes unknown, with the sentence; the anomalies stay listed. Any other anomaly keeps the
    result invalid, and a run without kills keeps its verdict (nothing excuses a loss there)."""
    anomalies = result.get("anomalies")
    killed = nodes_killed(history)
    if result.get("valid") is not False or not isinstance(anomalies, dict) or not killed:
        return result
    losses = sorted(name for name in anomalies if name in LOSS_ANOMALIES)
    if not losses or set(anomalies) - set(LOSS_ANOMALIES):
        return result
    excused = dict(result)
    excused["valid"] = UNKNOWN
    excused["reason"] = "volatile-storage-losses"
    excused["message"] = (f"{', '.join(losses)} after {len(killed)} kill(s) of {', '.join(sorted(set(killed)))}: the "
                          "system description declares volatile storage ([storage] volatile = true), so data lost "
                          "across a kill is not blamed on the broker")
    return excused
