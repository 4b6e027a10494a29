"""Checker plumbing shared by every checker: merging verdicts, running several
checkers safely, and rendering result maps as JSON or EDN.

A checker is a pure function `history -> result map`; every result map has a
`"valid"` key that is `True`, `False` or `"unknown"`.

Invariants
- Merged validity: `False` beats `"unknown"`, which beats `True` (Jepsen's
  `merge-valid`): one broken promise makes the whole verdict false, and a
  checker that could not decide makes an otherwise clean verdict unknown.
- `run_checkers` never lets one checker's exception hide the others: the
  failing checker's result is `{"valid": "unknown", "error": <traceback>}`.

Thread-safety: pure functions; safe from any thread.

Sources: Jepsen's `jepsen.checker/compose` and `merge-valid`; Elle's result
maps (`:valid?`, `:anomaly-types`, `:anomalies`).
"""

from __future__ import annotations

import math
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from checkers.history import EdnKeyword, History, Op, edn_dumps, op_to_dict

__all__ = ["UNKNOWN", "VALIDITIES", "is_validity", "merge_valid", "results_to_edn", "run_checkers", "to_jsonable",
           "witnesses_omitted"]

UNKNOWN = "unknown"
VALIDITIES = (True, False, UNKNOWN)
_RANK = {True: 0, UNKNOWN: 1, False: 2}


def is_validity(v: Any) -> bool:
    """True for exactly True, False or "unknown" (not 0, 1 or None)."""
    return v is True or v is False or (isinstance(v, str) and v == UNKNOWN)


def merge_valid(*validities: Any) -> bool | str:
    """Merge verdicts: False beats "unknown" beats True; no verdicts is True."""
    worst: bool | str = True
    for v in validities:
        if not is_validity(v):
            raise ValueError(f"validity {v!r} is not one of True, False, {UNKNOWN!r}")
        if _RANK[v] > _RANK[worst]:
            worst = v
    return worst


# Witnesses a run or `logquake check` keeps per anomaly of the queue and pipeline checkers by default: counts stay
# exact, and a broker that breaks a million writes still gets a results file a person (and a report) can open.
MAX_WITNESSES = 100


def witnesses_omitted(counts: Mapping[str, int], kept: Mapping[str, list[Any]]) -> dict[str, int]:
    """anomaly name -> how many of its witnesses a result left out, from its exact counts and the witnesses it
    kept (a checker keeps the first `max_witnesses`); only names with some left out."""
    omitted = {name: count - len(kept.get(name, ())) for name, count in counts.items()}
    return {name: n for name, n in omitted.items() if n > 0}


def check_options(checker: str, opts: Mapping[str, Any], accepted: str, max_witnesses: Any) -> None:
    """Refuse a checker's unknown options (TypeError naming them and `accepted`) and a `max_witnesses` that is
    not a positive integer or None (ValueError): the checks every checker that keeps witnesses makes first."""
    if opts:
        raise TypeError(f"unknown option(s) {', '.join(sorted(opts))} for the {checker} checker; "
                        f"accepted: {accepted}")
    if max_witnesses is not None and (not isinstance(max_witnesses, int) or max_witnesses < 1):
        raise ValueError(f"max_witnesses must be a positive integer or None, got {max_witnesses!r}")


def promise_table(promises: Sequence[tuple[str, str, Sequence[str]]],
                  result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The promise rows of a checker result, in the queue checker's row shape (`id`, `promise`, `status`,
    `anomalies`, `allowed`, `reason`), for checkers whose promises are each broken by any of their anomalies:
    `promises` lists (id, words, anomaly names); a promise is broken by any of them (counted in
    `result["stats"]["anomaly_counts"]`), unknown when the result has no verdict, else held. Broken rows first."""
    counts = result.get("stats", {}).get("anomaly_counts", {})
    rows = []
    for pid, words, names in promises:
        broken = {n: counts[n] for n in names if counts.get(n)}
        if broken:
            status, reason = "broken", "broken by " + ", ".join(f"{n} ({c})" for n, c in broken.items())
        elif result.get("valid") not in (True, False):
            status, reason = "unknown", result.get("message") or "the checker reached no verdict"
        else:
            status, reason = "held", "no anomaly breaks it"
        rows.append({"id": pid, "promise": words, "status": status, "anomalies": broken, "allowed": {},
                     "reason": reason})
    return sorted(rows, key=lambda row: row["status"] != "broken")


def run_checkers(
    history: History,
    checkers: Mapping[str, Callable[[History], Mapping[str, Any]]],
) -> dict[str, Any]:
    """Run each checker on `history`; return `{"valid": merged, name: result, ...}`.

    A checker that raises, or returns something without a valid `"valid"`,
    gets `{"valid": "unknown", "error": ...}`; the others still run.
    """
    if "valid" in checkers:
        raise ValueError('a checker may not be named "valid": that key holds the merged verdict')
    results: dict[str, Any] = {}
    for name, check in checkers.items():
        try:
            result = check(history)
        except Exception:  # one checker's bug must not hide the others' verdicts
            results[name] = {"valid": UNKNOWN, "error": traceback.format_exc()}
            continue
        if not isinstance(result, Mapping) or not is_validity(result.get("valid")):
            results[name] = {
                "valid": UNKNOWN,
                "error": f"checker {name!r} returned {result!r:.200}, expected a map with valid True/False/'unknown'",
            }
            continue
        results[name] = dict(result)
    return {"valid": merge_valid(*(r["valid"] for r in results.values())), **results}


def _sort_key(x: Any) -> tuple[str, Any]:
    # Mixed-type sets sort by type name first so that sorting never raises.
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return ("0number", x)
    if isinstance(x, str):
        return ("1str", x)
    return (type(x).__name__, repr(x))


def to_jsonable(x: Any) -> Any:
    """A deep copy of a result map that `json.dumps` accepts.

    Sets become sorted lists, tuples lists, ops op maps, histories lists of op
    maps, map keys strings (non-string keys via `str`), NaN/infinite floats
    strings.
    """
    if x is None or isinstance(x, (bool, int, str)):
        return x
    if isinstance(x, float):
        return x if math.isfinite(x) else str(x)
    if isinstance(x, Op):
        return to_jsonable(op_to_dict(x))
    if isinstance(x, History):
        return [to_jsonable(op_to_dict(op)) for op in x]
    if isinstance(x, Mapping):
        return {(k if isinstance(k, str) else str(to_jsonable(k))): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (set, frozenset)):
        return [to_jsonable(v) for v in sorted(x, key=_sort_key)]
    if isinstance(x, (list, tuple)):
        return [to_jsonable(v) for v in x]
    return str(x)


def _edn_keyed(x: Any) -> Any:
    if isinstance(x, Op):
        return x
    if isinstance(x, History):
        return list(x)
    if isinstance(x, Mapping):
        out: dict[Any, Any] = {}
        for k, v in x.items():
            if k == "valid":
                # Jepsen spells the verdict :valid?, with :unknown for undecided.
                out[EdnKeyword("valid?")] = EdnKeyword(UNKNOWN) if v == UNKNOWN else _edn_keyed(v)
            elif isinstance(k, str) and k and not any(c.isspace() or c in '()[]{}",;\\' for c in k):
                # Python's snake_case keys become Clojure's kebab-case keywords.
                out[EdnKeyword(k.replace("_", "-"))] = _edn_keyed(v)
            else:
                out[_edn_keyed(k)] = _edn_keyed(v)
        return out
    if isinstance(x, (set, frozenset)):
        return frozenset(x)
    if isinstance(x, (list, tuple)):
        return [_edn_keyed(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return x
    return x


def results_to_edn(result: Mapping[str, Any]) -> str:
    """A result map as EDN with keyword keys (`"valid"` is written `:valid?`,
    and the verdict "unknown" as `:unknown`, as Jepsen writes them; snake_case
    keys become kebab-case keywords, `anomaly_types` -> `:anomaly-types`); string
    values stay strings, ops are written as Jepsen op maps."""
    return edn_dumps(_edn_keyed(result)) + "\n"
