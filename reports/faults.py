"""What the faults of a run did, in words: notes the report shows next to the verdict.

Two pure steps, as Elle's explainers: `fault_notes_data(run)` reads the nemesis
operations and results into plain data; `explain_*` turns each datum into one
sentence (tests assert the exact sentence). Nothing here judges a run: the
checkers did that, and results.json says it; these notes say why a verdict is
what the faults should produce (or not).

- Disk: a `lose-unfsynced` crash (lazy disks, then a kill) with anomalies that
  show lost data (`lost-write`, `inconsistent-offsets`, `unseen`) gets a note
  that names the crash, the un-fsynced bytes the killed file systems held, and
  the broker's `log.flush.interval.messages`: unset (Kafka's default, no
  fsync) the loss is what the fault does when every replica crashes at once;
  set, the loss is the broker's.
- Clock: which clock the clock faults moved (the wall clock only; see
  nodecontrol.launch).

Processor faults (the pipeline workload's faults on its own processes, carried
by client ops rather than nemesis ops): `processor_faults(run)` lists each with
its time, process, what was done to the processor, and how its op ended.

And the faults around a moment: `fault_context(windows, start_s, end_s)`
finds the fault windows in effect at some time of [start_s, end_s] (a
witness's ops, from the first invocation to the last completion) and those
that ended at most `LOOKBACK_S` seconds before it began (a fault often shows
just after it is undone: a restarted node truncating its log, a healed
partition's leader stepping down); `explain_fault_context` says it in one
sentence that names which of the two each fault is.

Thread-safety: pure functions over a loaded RunData.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Mapping

from reports.fault_words import per_node_total
from reports.run_data import FaultWindow, RunData

__all__ = ["LOOKBACK_S", "LOSS_ANOMALIES", "FaultContext", "explain_clock", "explain_disk_loss",
           "explain_fault_context", "fault_context", "listed", "fault_notes", "fault_notes_data",
           "processor_faults", "window_text"]

LOOKBACK_S = 5.0
_LISTED = 4  # faults named per group; the rest are counted

LOSS_ANOMALIES = ("lost-write", "inconsistent-offsets", "unseen", "watermark-regression")
# How a loss shows through the anomalies whose names do not say it
_HOW_LOSS_SHOWS = {
    "inconsistent-offsets": "an offset read with one value before the crash and another after it is an acknowledged "
                            "write lost, and its offset reused",
    "watermark-regression": "a high watermark a client saw went back: records below it, committed, are gone",
}


def _crashes(run: RunData) -> list[dict[str, Any]]:
    crashes = []
    for pair in run.nemesis_pairs:
        done = pair.complete.get("value") if pair.complete is not None else None
        if not (isinstance(done, Mapping) and done.get("fault") == "lose-unfsynced" and done.get("killed")):
            continue
        # a history recorded before crashes tore writes has only `unfsynced_bytes_lost`: everything held was lost
        held, lost, torn = (per_node_total(done.get(name)) for name in
                            ("unfsynced_bytes_held" if "unfsynced_bytes_held" in done else "unfsynced_bytes_lost",
                             "unfsynced_bytes_lost", "torn_writes"))
        crashes.append({"at_s": round(pair.start_s, 1), "nodes": list(done["killed"]), "unfsynced_bytes": held,
                        "lost_bytes": lost, "torn_writes": torn})
    return crashes


_CRASH_WORDS = {
    "after-produce": "SIGKILL after its writes, before its offsets (killed mid-transaction)",
    "after-offsets": "SIGKILL after its writes and offsets, before the commit",
}


def _processor_fault(op: Mapping[str, Any]) -> str | None:
    """What a client op's invocation asked to do to its processor, in words; None for no processor fault."""
    if op.get("f") == "leave":
        return "leaves the group (membership churn)"
    if op.get("f") != "process":
        return None
    if op.get("crash"):
        return _CRASH_WORDS.get(str(op["crash"]), f"SIGKILL ({op['crash']})")
    if op.get("pause_s"):
        return (f"SIGSTOP for {op['pause_s']} s after its writes, before its offsets: past the group's session "
                "timeout, so it resumes as a zombie")
    if op.get("abort"):
        return "aborts on purpose after adding its offsets, then leaves the group"
    return None


def processor_faults(run: RunData) -> list[dict[str, Any]]:
    """One map per processor fault in the history: `at_s`, `process`, `fault` (words), `outcome`, `error`."""
    rows = []
    for pair in run.pairs:
        words = _processor_fault(pair.invoke)
        if words is None:
            continue
        done = pair.complete
        outcome = pair.type if done is not None else "no completion (the process was killed)"
        value = done.get("value") if done is not None else None
        if isinstance(value, Mapping) and value.get("consumed") == {}:
            words += " (it had no batch: idle, the fault hit no transaction)"
        rows.append({"at_s": round(pair.start_s, 2), "process": pair.process, "fault": words, "outcome": outcome,
                     "error": done.get("error") if done is not None else None})
    return rows


def fault_notes_data(run: RunData) -> list[dict[str, Any]]:
    """Plain data, one map per note: `{"type": "disk-loss", ...}` or `{"type": "clock", ...}`."""
    notes = []
    crashes = _crashes(run)
    shown = []
    for _, result in run.checker_results():
        anomalies = result.get("anomalies") if isinstance(result.get("anomalies"), Mapping) else {}
        shown += [name for name in LOSS_ANOMALIES if anomalies.get(name) and name not in shown]
    if crashes and shown:
        overrides = run.options.get("broker_overrides") if isinstance(run.options.get("broker_overrides"), Mapping) \
            else {}
        notes.append({"type": "disk-loss", "crashes": crashes, "anomalies": shown,
                      "flush_interval_messages": overrides.get("log.flush.interval.messages")})
    if any(w.kind == "clock" for w in run.windows):
        notes.append({"type": "clock", "clocks": "wall"})
    return notes


def explain_disk_loss(note: Mapping[str, Any]) -> str:
    crashes = note["crashes"]
    first = crashes[0]
    nodes = ", ".join(first["nodes"])
    more = f" ({len(crashes)} such crashes in all)" if len(crashes) > 1 else ""
    held = f"{first['unfsynced_bytes']} un-fsynced bytes" if first["unfsynced_bytes"] else "their un-fsynced writes"
    if first.get("lost_bytes") is not None and first["lost_bytes"] != first["unfsynced_bytes"]:
        torn = f", {first['torn_writes']} write(s) torn" if first.get("torn_writes") else ""
        held += f" ({first['lost_bytes']} of them lost{torn})"
    anomalies = ", ".join(note["anomalies"])
    how = "; ".join(_HOW_LOSS_SHOWS[name] for name in note["anomalies"] if name in _HOW_LOSS_SHOWS)
    head = (f"The disk nemesis crashed {nodes} at {first['at_s']} s while their file systems held {held} in "
            f"memory, as a power loss would{more}; {anomalies} is how the lost data shows"
            + (f" ({how})." if how else "."))
    flush = note["flush_interval_messages"]
    if flush is None:
        return head + (" log.flush.interval.messages was unset (Kafka's default: no fsync, durability rests on "
                       "replication), so when every replica of a partition loses its un-fsynced tail at once, "
                       "acknowledged writes are gone: this is the fault doing what it models, not a broker bug.")
    return head + (f" log.flush.interval.messages was {flush}, so the broker should have fsynced what it "
                   "acknowledged: a loss here points at the broker (or at fsyncs the disk did not honour).")


def explain_clock(note: Mapping[str, Any]) -> str:
    return ("Clock faults moved each target's wall clock only (CLOCK_REALTIME: record timestamps, time indexes, "
            "time-based retention); the monotonic clock, which timeouts should use, was left true.")


def fault_notes(run: RunData) -> list[str]:
    """The sentences, in the order of fault_notes_data."""
    explain = {"disk-loss": explain_disk_loss, "clock": explain_clock}
    return [explain[note["type"]](note) for note in fault_notes_data(run)]


@dataclass(frozen=True)
class FaultContext:
    """The faults around a span of time: in effect during it, or ended shortly before it began."""

    start_s: float
    end_s: float
    during: tuple[FaultWindow, ...]
    before: tuple[FaultWindow, ...]
    last_before: FaultWindow | None  # the latest window that ended earlier still, for the "none" sentence
    lookback_s: float = LOOKBACK_S


def fault_context(windows: Sequence[FaultWindow], start_s: float, end_s: float,
                  lookback_s: float = LOOKBACK_S) -> FaultContext:
    """Windows overlapping [start_s, end_s], and windows that ended in [start_s - lookback_s, start_s)."""
    end_s = max(end_s, start_s)
    during = tuple(w for w in windows if w.start_s <= end_s and w.end_s >= start_s)
    ended = [w for w in windows if w.end_s < start_s]
    before = tuple(w for w in ended if w.end_s >= start_s - lookback_s)
    earlier = [w for w in ended if w.end_s < start_s - lookback_s]
    last = max(earlier, key=lambda w: w.end_s) if earlier else None
    return FaultContext(start_s, end_s, during, before, last, lookback_s)


def window_text(w: FaultWindow) -> str:
    """"kill n2 (the leader), 0.10–0.42 s"."""
    return f"{w.detail}, {w.start_s:.2f}–{w.end_s:.2f} s"


def listed(windows: Sequence[FaultWindow], show: Callable[[FaultWindow], str]) -> str:
    """The first few windows, shown and joined by "; ", then how many more."""
    shown = "; ".join(show(w) for w in windows[:_LISTED])
    return shown + (f"; and {len(windows) - _LISTED} more" if len(windows) > _LISTED else "")


def explain_fault_context(ctx: FaultContext, show: Callable[[FaultWindow], str] = window_text,
                          esc: Callable[[str], str] = str) -> str:
    """One sentence: "During it: X. Just before it (ended within 5 s): Y." or why there is none.

    `show` renders one window and `esc` the words around it (the page passes HTML versions of both)."""
    parts = []
    if ctx.during:
        parts.append(esc("In effect during it: ") + listed(ctx.during, show) + ".")
    if ctx.before:
        def show_gap(w: FaultWindow) -> str:
            return show(w) + esc(f" ({ctx.start_s - w.end_s:.2f} s before)")
        parts.append(esc(f"Ended within {ctx.lookback_s:g} s before it began: ") + listed(ctx.before, show_gap) + ".")
    if parts:
        return " ".join(parts)
    text = esc(f"No fault was in effect during it, nor in the {ctx.lookback_s:g} s before it")
    if ctx.last_before is not None:
        gap = ctx.start_s - ctx.last_before.end_s
        return text + esc(f"; the last one ended {gap:.2f} s before: ") + show(ctx.last_before) + "."
    return text + esc(".")
