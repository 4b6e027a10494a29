"""Probes: right after a fault starts, measure that it is in effect.

A fault that was asked for is not a fault that landed. Each package's `probe`
checks its fault through measurements the backend makes now
(`NodeControl.reaches`, `observed_state`, the disk's own status), never through
the backend's record of what it did:

- partition: a Kafka request across every cut link (both ends up) gets no answer
  for `CUT_SILENCE_S`, and one across a link the grudge left open does answer
  (without that second check, a probe that reaches nothing would confirm every
  cut);
- kill: the node's processes are gone and its port does not answer;
- pause: every process of the node is stopped;
- disk: the node's faultfs reports the mode that was asked for.

Clock and packet faults have no probe yet; their probes say so (confirmed
None), which never counts as landed or as not landed.

The outcome is recorded with the fault, in the completion of its nemesis op
(`"probe": {"package", "confirmed", "checks", "took_s"}`): `confirmed` is True
(measured in effect), False (measured not in effect: the fault did not land) or
None (no measurement could be made). `checkers.faults` turns faults that never
landed into an UNKNOWN verdict.

Thread-safety: called from the nemesis thread; probes of several links run at
once inside the backend.
"""

from __future__ import annotations

import concurrent.futures
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nodecontrol.control import CLIENT, NodeControl, NodeControlError

if TYPE_CHECKING:
    from nemeses.core import FaultEvent, FaultPackage

__all__ = ["Probe", "run_probe", "probe_partition", "probe_processes", "CUT_SILENCE_S", "ANSWER_TIMEOUT_S"]

# how long a cut link must stay silent; a healthy link on this machine answers within milliseconds
CUT_SILENCE_S = 0.4
# how long a link that should be open may take to answer (a busy broker can be slow)
ANSWER_TIMEOUT_S = 1.5
# how long a killed or paused node's processes may take to be gone or stopped
STATE_SETTLE_S = 0.5
# links inside a side probed to show the probe itself reaches the cluster
INSIDE_LINKS = 2


@dataclass(frozen=True)
class Probe:
    confirmed: bool | None  # in effect / not in effect / not measured
    checks: tuple[str, ...]  # what was measured, a line each


def run_probe(package: "FaultPackage", event: "FaultEvent", result: dict, control: NodeControl) -> dict:
    """The package's probe of a fault it just started, as recorded in the history (never raises)."""
    started = time.monotonic()
    try:
        probe = package.probe(event, result, control)
    except NodeControlError as e:
        probe = Probe(None, (f"no probe made: {e}",))
    except Exception as e:  # a broken probe must not stop the run; it is recorded as not made
        probe = Probe(None, (f"the probe failed: {type(e).__name__}: {e}",))
    if probe is None:
        probe = Probe(None, (f"{package.name} faults have no probe yet",))
    return {"package": package.name, "confirmed": probe.confirmed, "checks": list(probe.checks),
            "took_s": round(time.monotonic() - started, 3)}


def _link(link: tuple[str, str]) -> str:
    return f"{link[0]}->{link[1]}"


def probe_partition(grudge: dict, control: NodeControl) -> Probe:
    """Every cut link whose ends are up is silent, and a link the grudge left open answers."""
    cut = sorted({(src, dst) for dst, sources in grudge.items() for src in sources if src != dst})
    if not cut:
        return Probe(None, ("the grudge cuts no link",))
    states = {node: control.observed_state(node) for node in control.nodes}

    def up(party: str) -> bool:
        return party == CLIENT or states.get(party) == "running"

    measured = [link for link in cut if up(link[0]) and up(link[1])]
    if not measured:
        return Probe(None, ("every cut link has a node down at one end: nothing to measure",))
    cut_set = set(cut)
    inside = [(a, b) for a in control.nodes for b in control.nodes
              if a != b and (a, b) not in cut_set and up(a) and up(b)][:INSIDE_LINKS]
    with concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="probe") as pool:
        across = pool.submit(control.reaches, measured, CUT_SILENCE_S)
        within = pool.submit(control.reaches, inside, ANSWER_TIMEOUT_S) if inside else None
        answered = across.result()
        open_answers = within.result() if within else {}
    still_open = [link for link in measured if answered[link]]
    checks = []
    if still_open:
        checks.append(f"answered across the cut: {', '.join(map(_link, still_open))}")
    else:
        checks.append(f"silent for {CUT_SILENCE_S:g} s across the cut: {', '.join(map(_link, measured))}")
    skipped = [link for link in cut if link not in measured]
    if skipped:
        checks.append(f"not measured (a node down at one end): {', '.join(map(_link, skipped))}")
    if inside:
        working = [link for link in inside if open_answers[link]]
        checks.append(f"answered inside a side: {', '.join(map(_link, working))}" if working else
                      f"no answer inside a side either ({', '.join(map(_link, inside))}): the probe reaches nothing")
        if not working and not still_open:
            return Probe(None, tuple(checks))
    return Probe(not still_open, tuple(checks))


def probe_processes(nodes: list[str], control: NodeControl, want: str) -> Probe:
    """Every node's processes are in the state `want` (`gone` after a kill, `paused` after a pause); a killed
    node's port must not answer either."""
    if not nodes:
        return Probe(None, ("the fault hit no node",))
    # a signal is delivered asynchronously: give the processes a moment to reach the state
    deadline = time.monotonic() + STATE_SETTLE_S
    while True:
        states = {node: control.observed_state(node) for node in nodes}
        if all(state in (want, "gone") for state in states.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    answering = []
    if want == "gone":
        answers = control.reaches([(CLIENT, node) for node in nodes], CUT_SILENCE_S)
        answering = [node for node in nodes if answers[(CLIENT, node)]]
    checks = [", ".join(f"{node}: {states[node]}" for node in nodes)]
    if want == "paused":  # a node another fault has killed has nothing to pause: it says nothing either way
        nodes = [node for node in nodes if states[node] != "gone"]
        if not nodes:
            return Probe(None, (checks[0] + " (down already: nothing to pause)",))
    wrong = [node for node in nodes if states[node] != want]
    if answering:
        checks.append(f"still answering on its port: {', '.join(answering)}")
    elif want == "gone":
        checks.append(f"port silent: {', '.join(nodes)}")
    return Probe(not wrong and not answering, tuple(checks))
