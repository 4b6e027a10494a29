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
- disk: the node's faultfs reports the mode that was asked for;
- packet: Kafka requests from the client to every running node, and across two
  links between nodes, take at least half the smallest delay asked for
  (latency - jitter; every shape carries one). Loss, duplication and reordering
  themselves are not measured: a fraction needs many samples, and a probe must
  stay under a second. netem's reorder lets a share of packets through without
  delay, so each link's slowest of `ROUND_TRIP_TRIES` round trips (made at once,
  on connections of their own) is compared;
- clock: the clock each target node's broker reads (libfaketime loaded in the
  broker process, and the offset its faketime variables give now) is the one
  asked for (`nemeses.clock`).

A package without a probe says so (confirmed None), which never counts as
landed or as not landed.

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

__all__ = ["Probe", "run_probe", "probe_partition", "probe_processes", "probe_delay", "CUT_SILENCE_S",
           "ANSWER_TIMEOUT_S"]

# how long a cut link must stay silent; a healthy link on this machine answers within milliseconds
CUT_SILENCE_S = 0.4
# how long a link that should be open may take to answer (a busy broker can be slow)
ANSWER_TIMEOUT_S = 1.5
# how long a killed or paused node's processes may take to be gone or stopped
STATE_SETTLE_S = 0.5
# links inside a side probed to show the probe itself reaches the cluster
INSIDE_LINKS = 2
# a delayed link must show at least this share of the smallest one-way delay asked for in a round trip (which
# crosses the shaped path at least once); an unshaped link on this machine answers within a few milliseconds
DELAY_SHARE = 0.5
# below this (in ms), a busy broker's own answer time could pass for the delay: no verdict
MIN_MEASURABLE_DELAY_MS = 4.0
ROUND_TRIP_TRIES = 2
# beyond three times the largest delay asked for, how long a delayed link may take to answer
DELAY_ANSWER_S = 0.3


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


def probe_delay(control: NodeControl, least_ms: float, most_ms: float) -> Probe:
    """Links are slowed: the slowest of `ROUND_TRIP_TRIES` round trips on each measured link (client to every
    running node, and up to `INSIDE_LINKS` links between nodes) is at least `DELAY_SHARE` of `least_ms`, the
    smallest one-way delay the shaping adds; `most_ms` is the largest, for the timeout."""
    if least_ms < MIN_MEASURABLE_DELAY_MS:
        return Probe(None, (f"a delay of at least {least_ms:g} ms is too small to tell from a broker's own "
                            "answer time",))
    running = [node for node in control.nodes if control.observed_state(node) == "running"]
    links = [(CLIENT, node) for node in running] + \
        [(a, b) for a in running for b in running if a != b][:INSIDE_LINKS]
    if not links:
        return Probe(None, ("no node is running: nothing to measure",))
    # a link another fault cuts never answers: the tries run at once, so it costs one timeout, not one per try
    timeout_s = DELAY_ANSWER_S + 3 * most_ms / 1000
    with concurrent.futures.ThreadPoolExecutor(max_workers=ROUND_TRIP_TRIES, thread_name_prefix="probe") as pool:
        tries = list(pool.map(lambda _: control.round_trips(links, timeout_s), range(ROUND_TRIP_TRIES)))
    slowest: dict[tuple[str, str], float] = {}
    for found in tries:
        for link, seconds in found.items():
            if seconds is not None:
                slowest[link] = max(seconds, slowest.get(link, 0.0))
    threshold_ms = DELAY_SHARE * least_ms
    if not slowest:
        return Probe(None, (f"no answer on any link ({', '.join(map(_link, links))}): nothing measured",))
    checks = [f"slowest of {ROUND_TRIP_TRIES} round trips (at least {threshold_ms:g} ms expected): "
              + ", ".join(f"{_link(link)} {seconds * 1000:.0f} ms" for link, seconds in slowest.items())]
    silent = [link for link in links if link not in slowest]
    if silent:
        checks.append(f"no answer: {', '.join(map(_link, silent))}")
    fast = [link for link, seconds in slowest.items() if seconds * 1000 < threshold_ms]
    if fast:
        checks.append(f"not slowed: {', '.join(map(_link, fast))}")
    return Probe(not fast, tuple(checks))
