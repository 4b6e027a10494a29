"""The committed-offsets checker: does a consumer group keep every offset commit the broker acknowledged?

Kafka promises that an OffsetCommit answered without error is durable: it was appended to the group's
`__consumer_offsets` partition and replicated like an acks=all write, so a later coordinator (after a
crash, a partition or a leader change) loads it. A commit that is lost sends consumers back to an older
offset after a failover (duplicates at best), and a group whose every commit is lost starts over.

History format (what `--workload offsets` records; client ops, paired invoke/completion):
- `offset-commit`: value `[group, offset]`, one commit of `offset` for the workload's one partition by
  the group's only committer. Each group has one committer, which commits 1, 2, 3, ... in turn and
  waits for each answer, so the commits of a group are ordered in time. `ok`: acknowledged; `fail`:
  certainly not committed (refused before it was sent); `info`: unknown (an error answer may still
  follow a write: Kafka answers COORDINATOR_NOT_AVAILABLE for a commit that timed out waiting for its
  replicas, and that record can still be replicated and loaded later).
- `offset-fetch` (final): after healing, an `ok` op whose value maps each group the run used to the
  offset the cluster holds for it now (None when it holds none). An `info` final read carries the
  groups it did read, the others are not judged.

Anomalies:
- `lost-commit`: a group's final offset is below an acknowledged commit of it, and is not the offset of
  any commit of unknown outcome (so no late write of an older commit can explain it): the broker lost
  an acknowledged commit. None counts as below everything.
- `unknown-commit`: a group's final offset is one that no commit of it asked for.
Nothing judges the offsets read during the run: a coordinator that was partitioned away and does not
know yet may answer an older offset, which Kafka allows (OffsetFetch is not linearizable).

Complexity: linear in the number of ops. Thread-safety: pure; safe from any thread.

Sources: Kafka's OffsetCommit/OffsetFetch semantics (the group coordinator writes offsets to
`__consumer_offsets` with acks=all, KIP-98's transactional offsets aside); Jepsen's "lost write" naming.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from checkers.core import check_options, promise_table, witnesses_omitted
from checkers.history import History, gc_paused, op_to_dict

__all__ = ["ANOMALY_NAMES", "PROMISES", "OffsetsHistoryError", "check"]

ANOMALY_NAMES = ("lost-commit", "unknown-commit")

# What a consumer group promises about its committed offsets, with the anomalies that break it.
PROMISES = (
    ("durable-commits", "an acknowledged offset commit survives crashes, partitions and coordinator changes",
     ("lost-commit",)),
    ("no-invented-offsets", "a group's committed offset is one that was committed", ("unknown-commit",)),
)


class OffsetsHistoryError(ValueError):
    """An offsets history whose values do not follow the format in the module doc."""


def check(history: History, *, max_witnesses: int | None = None, **opts: Any) -> dict[str, Any]:
    """Check an offsets history (see the module doc). Returns `{"valid", "anomaly_types", "anomalies",
    "stats", "promises"}` (+ `reason`, `message` without a verdict)."""
    check_options("offsets", opts, "max_witnesses", max_witnesses)
    with gc_paused():
        return _check(history, max_witnesses)


def _commit_value(op, where: str) -> tuple[str, int]:
    value = op.value
    if (not isinstance(value, (list, tuple)) or len(value) != 2 or not isinstance(value[0], str)
            or not isinstance(value[1], int) or isinstance(value[1], bool)):
        raise OffsetsHistoryError(f"{where}: an offset-commit's value is [group, offset], got {value!r}")
    return value[0], value[1]


def _check(history: History, max_witnesses: int | None) -> dict[str, Any]:
    ok: dict[str, list[tuple[int, int]]] = defaultdict(list)  # group -> [(offset, completion position)]
    unknown: dict[str, set[int]] = defaultdict(set)
    asked: dict[str, set[int]] = defaultdict(set)
    final: dict[str, int | None] | None = None
    final_position: int | None = None
    final_complete = False
    counts = {"ok": 0, "fail": 0, "info": 0}
    for inv, done in history.pairs():
        if inv.f == "offset-commit":
            group, offset = _commit_value(inv, f"op {inv.index}")
            asked[group].add(offset)
            kind = done.type
            counts[kind] = counts.get(kind, 0) + 1
            if kind == "ok":
                ok[group].append((offset, done.index))
            elif kind == "info":
                unknown[group].add(offset)
        elif inv.f == "offset-fetch" and done.type in ("ok", "info"):
            if not isinstance(done.value, dict):
                if done.type == "ok":
                    raise OffsetsHistoryError(f"op {done.index}: the final offset-fetch's value is a map of group "
                                              f"to offset, got {done.value!r}")
                continue
            final = {str(g): v for g, v in done.value.items()}
            final_position = done.index
            final_complete = done.type == "ok"
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    judged = 0
    by_index = {op.index: op for op in history} if final is not None else {}
    for group in sorted(asked):
        if final is None or group not in final:
            continue
        judged += 1
        now = final[group]
        if now is not None and (not isinstance(now, int) or isinstance(now, bool)):
            raise OffsetsHistoryError(f"op {final_position}: group {group} has offset {now!r}, not an int or None")
        acknowledged = max(ok[group], default=None)
        if now is not None and now not in asked[group]:
            found["unknown-commit"].append({"group": group, "final": now, "asked": sorted(asked[group]),
                                            "indexes": [final_position]})
        elif acknowledged is not None and (now is None or now < acknowledged[0]) and now not in unknown[group]:
            found["lost-commit"].append({"group": group, "final": now, "acknowledged": acknowledged[0],
                                         "indexes": [acknowledged[1], final_position]})
    anomalies: dict[str, list[dict[str, Any]]] = {}
    anomaly_counts = {name: len(found[name]) for name in ANOMALY_NAMES if found.get(name)}
    for name in ANOMALY_NAMES:
        for data in found.get(name, ())[:max_witnesses]:
            witness = {k: v for k, v in data.items() if k != "indexes"}
            witness["op_indexes"] = data["indexes"]
            witness["op_maps"] = [op_to_dict(by_index[i]) for i in data["indexes"] if i in by_index]
            witness["explanation"] = _explain(name, data)
            anomalies.setdefault(name, []).append(witness)
    stats = {"groups": len(asked), "groups_judged": judged, "commits": counts,
             "anomaly_counts": anomaly_counts, "witnesses_omitted": witnesses_omitted(anomaly_counts, anomalies),
             "ops": len(history)}
    result: dict[str, Any] = {"valid": not anomalies, "anomaly_types": sorted(anomalies), "anomalies": anomalies,
                              "stats": stats}
    if not anomalies:
        if final is None:
            result.update(valid="unknown", reason="final-reads-incomplete",
                          message="the final offset-fetch did not complete, so no group's offset could be judged")
        elif not counts["ok"]:
            result.update(valid="unknown", reason="no-completed-ops",
                          message="no offset commit was acknowledged, so there is nothing to judge")
        elif not final_complete:
            result.update(valid="unknown", reason="final-reads-incomplete",
                          message=f"the final offset-fetch read {judged} of {len(asked)} groups; the others "
                                  "may have lost commits")
    result["promises"] = promise_table(PROMISES, result)
    return result


def _explain(name: str, data: dict[str, Any]) -> str:
    if name == "lost-commit":
        now = "no offset" if data["final"] is None else f"offset {data['final']}"
        return (f"group {data['group']}: the broker acknowledged a commit of offset {data['acknowledged']}, but "
                f"after healing it holds {now}, and no commit of unknown outcome asked for that: an acknowledged "
                "commit was lost")
    return (f"group {data['group']} holds offset {data['final']} after healing, which none of its commits "
            f"({_short(data['asked'])}) asked for")


def _short(values: list[int]) -> str:
    return ", ".join(map(str, values)) if len(values) <= 8 else f"{values[0]} .. {values[-1]}, {len(values)} in all"
