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
  harness.node_launch).

Thread-safety: pure functions over a loaded RunData.
"""

from __future__ import annotations

from typing import Any, Mapping

from reports.run_data import RunData

__all__ = ["LOSS_ANOMALIES", "explain_clock", "explain_disk_loss", "fault_notes", "fault_notes_data"]

LOSS_ANOMALIES = ("lost-write", "inconsistent-offsets", "unseen")


def _crashes(run: RunData) -> list[dict[str, Any]]:
    crashes = []
    for pair in run.nemesis_pairs:
        done = pair.complete.get("value") if pair.complete is not None else None
        if not (isinstance(done, Mapping) and done.get("fault") == "lose-unfsynced" and done.get("killed")):
            continue
        lost = done.get("unfsynced_bytes_lost") if isinstance(done.get("unfsynced_bytes_lost"), Mapping) else {}
        crashes.append({"at_s": round(pair.start_s, 1), "nodes": list(done["killed"]),
                        "unfsynced_bytes": sum(v for v in lost.values() if isinstance(v, int))})
    return crashes


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
    anomalies = ", ".join(note["anomalies"])
    head = (f"The disk nemesis crashed {nodes} at {first['at_s']} s while their file systems held {held} in "
            f"memory, as a power loss would{more}; {anomalies} is how the lost data shows (an offset read "
            "with one value before the crash and another after it is an acknowledged write lost, and its offset "
            "reused).")
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
