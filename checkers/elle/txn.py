"""Machinery shared by the Elle-style transactional checkers.

What:
- ``check_options``: validates a checker's keyword options (Elle's hyphenated
  spellings such as ``consistency-models`` or ``wfr-keys?`` are accepted too)
  and rejects unknown ones with an error naming them and the accepted ones.
- ``collect_txns``: turns a history into ``Txn`` records, one per client
  invocation, with its outcome. ``ok`` and ``info`` transactions become graph
  nodes ``0..n-1`` (they may have happened); ``fail`` ones are kept apart
  (they did not happen, but reads of their writes are G1a).
- ``add_process_edges`` / ``add_realtime_edges``: Elle's process and realtime
  orders. Realtime is kept to Elle's transitive reduction: each transaction is
  linked from the ``ok`` transactions that completed before its invocation and
  are not already implied by a later one, so edges stay about
  concurrency x transactions.
- ``cycle_anomalies``: per SCC of the dependency graph, the typed cycle
  searches of ``graph.CYCLE_SPECS``, most severe first, skipping anomalies
  implied by ones already found, under a time budget per SCC; past it, a
  ``cycle-search-timeout`` case and a fallback cycle are reported.
- ``result_map``: Elle's result: ``valid`` (false if a prohibited anomaly was
  found, "unknown" if only ``cycle-search-timeout``/``empty-transaction-graph``,
  else true), ``anomaly_types``, ``anomalies``, ``not`` and ``also_not``.

Invariants: node ``i`` is ``txns[i]``; a transaction's witness op is its
completion (a synthesized ``info`` op, index -1, when the invocation never
completed, as ``History.pairs`` does).

Thread-safety: pure functions over their arguments; nothing is shared.

Sources: Kingsbury & Alvaro, "Elle", VLDB 2020 (sections 3-5: process and
realtime orders, cycle search in SCCs, result and model boundary); Adya's
thesis for the anomaly definitions.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from checkers.history import NEMESIS, History, Op, op_to_dict

from checkers.elle import consistency_models as cm
from checkers.elle.explain import (
    Keyword,
    cycle_witness,
    edn_repr,
    process_step,
    realtime_step,
)
from checkers.elle.graph import (
    ALL,
    CYCLE_SPECS,
    PROCESS,
    REALTIME,
    DependencyGraph,
    SearchTimeout,
    any_cycle,
    find_cycle,
)

#: Elle's default budget for searching one SCC for one kind of cycle is 1000 ms.
DEFAULT_CYCLE_SEARCH_TIMEOUT_S = 1.0


def check_options(
    checker: str, opts: Mapping[str, Any], accepted: Mapping[str, Any]
) -> dict[str, Any]:
    """Validated options: ``accepted`` defaults overridden by ``opts``.

    Keys may use Elle's spelling (``consistency-models``, ``wfr-keys?``).
    """
    result = dict(accepted)
    unknown = []
    for key, value in opts.items():
        name = key.replace("-", "_").rstrip("?")
        if name in accepted:
            result[name] = value
        else:
            unknown.append(key)
    if unknown:
        raise TypeError(
            f"{checker}: unknown option(s) {unknown!r}; accepted options are "
            f"{', '.join(sorted(accepted))}"
        )
    if result["consistency_models"] is not None:
        cm.validate_models(result["consistency_models"])
    if result["anomalies"] is not None:
        cm.validate_anomalies(result["anomalies"])
    timeout = result["cycle_search_timeout_s"]
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise ValueError(
            f"{checker}: cycle_search_timeout_s must be a positive number of seconds, "
            f"got {timeout!r}"
        )
    if not callable(result["clock"]):
        raise TypeError(f"{checker}: clock must be a callable returning seconds, got {result['clock']!r}")
    return result


#: Options every transactional checker takes, with their defaults.
COMMON_OPTIONS: dict[str, Any] = {
    "consistency_models": None,
    "anomalies": None,
    "cycle_search_timeout_s": DEFAULT_CYCLE_SEARCH_TIMEOUT_S,
    # Only the per-SCC search budget reads it; injectable for tests.
    "clock": time.monotonic,
}


@dataclass(slots=True)
class Txn:
    """One client transaction: its outcome, micro-ops, and where it sits."""

    node: int  # graph node, -1 for failed transactions
    op: Op  # the completion (witness) op
    invocation: Op
    type: str  # ok | info | fail
    value: list  # micro-ops [f, k, v]
    invoke_position: int
    complete_position: int  # -1 if it never completed
    # Checker-specific per-transaction data (rw-register: external reads and
    # writes), filled by the checker that owns this Txn.
    external: Any = None


def as_history(history: Any) -> History:
    """Accept a ``History``, a sequence of ``Op``s, or of Jepsen op maps."""
    if isinstance(history, History):
        return history
    items = list(history)
    if all(isinstance(op, Op) for op in items):
        return History(items)
    if all(isinstance(op, Mapping) for op in items):
        return History.from_dicts(items)
    raise TypeError(
        "history must be a checkers.history.History, a sequence of Op, or a sequence of "
        f"op maps; got {type(history).__name__}"
    )


def collect_txns(
    history: History, valid_mop: Callable[[Any], bool]
) -> tuple[list[Txn], list[Txn], list[Op]]:
    """(graph transactions, failed transactions, malformed ops).

    A malformed op is a client op whose value is not a list of micro-ops
    accepted by ``valid_mop``.
    """
    nodes: list[Txn] = []
    failed: list[Txn] = []
    malformed: list[Op] = []
    for position, op in enumerate(history):
        if op.process == NEMESIS or op.type != "invoke":
            continue
        complete = history.completion_position(position)
        if complete >= 0:
            completion = history[complete]
        else:
            completion = Op(-1, None, op.process, "info", op.f, op.value)
        value = completion.value if isinstance(completion.value, list) else op.value
        if not isinstance(value, list) or not all(valid_mop(mop) for mop in value):
            malformed.append(completion if complete >= 0 else op)
            continue
        if completion.type == "fail":
            failed.append(Txn(-1, completion, op, "fail", value, position, complete))
        else:
            nodes.append(
                Txn(len(nodes), completion, op, completion.type, value, position, complete)
            )
    return nodes, failed, malformed


def hashable(x: Any) -> bool:
    try:
        hash(x)
    except TypeError:
        return False
    return True


def malformed_result(checker: str, malformed: list[Op], accepted: str) -> dict[str, Any]:
    """Elle's ``unexpected-txn-micro-op-types`` verdict: unknown, with examples."""
    return unknown_result(
        "unexpected-txn-micro-op-types",
        f"{checker}: history contained operations whose value is not a list of "
        f"micro-ops {accepted}",
        examples=[_op_summary(op) for op in malformed[:8]],
    )


def unknown_result(error_type: str, message: str, **details: Any) -> dict[str, Any]:
    """A verdict of ``unknown`` because the history cannot be analysed."""
    return {
        "valid": "unknown",
        "anomaly_types": [error_type],
        "anomalies": {error_type: [{"message": message, **details}]},
        "not": [],
        "also_not": [],
    }


def _op_summary(op: Op) -> dict[str, Any]:
    return op_to_dict(op)


def add_process_edges(graph: DependencyGraph, txns: list[Txn]) -> None:
    """Link each ``ok`` transaction to the next ``ok`` one of its process."""
    last: dict[Any, int] = {}
    for txn in sorted(txns, key=lambda t: t.invoke_position):
        if txn.type != "ok" or txn.op.process is None:
            continue
        previous = last.get(txn.op.process)
        if previous is not None:
            graph.link(previous, txn.node, PROCESS)
        last[txn.op.process] = txn.node


def add_realtime_edges(graph: DependencyGraph, txns: list[Txn]) -> None:
    """Link T1 -> T2 when T1 completed ``ok`` before T2 was invoked.

    Transitive reduction as in Elle: a buffer holds the ``ok`` transactions
    completed so far that no later completed one follows; each invocation is
    linked from the whole buffer, and a completion evicts from the buffer the
    transactions that were linked to it.
    """
    events: list[tuple[int, int, int]] = []
    for txn in txns:
        events.append((txn.invoke_position, 0, txn.node))
        if txn.type == "ok":
            events.append((txn.complete_position, 1, txn.node))
    events.sort()
    buffer: set[int] = set()
    predecessors: dict[int, list[int]] = {}
    for _, kind, node in events:
        if kind == 0:
            if buffer:
                predecessors[node] = list(buffer)
                for previous in predecessors[node]:
                    graph.link(previous, node, REALTIME)
        else:
            for previous in predecessors.pop(node, ()):
                buffer.discard(previous)
            buffer.add(node)


def explain_common(rel: int, a: Txn, b: Txn) -> dict[str, Any]:
    """Step data for a process or realtime edge a -> b."""
    if rel == PROCESS:
        return process_step(a.op, b.op)
    if rel == REALTIME:
        return realtime_step(a.op, b.invocation)
    raise ValueError(f"not a process or realtime relationship: {rel!r}")


def needed_order(reportable: set[str]) -> int:
    """PROCESS, REALTIME or 0: which extra order the reportable anomalies need.

    Realtime subsumes process order (processes are sequential), so as in
    Elle one of the two is enough.
    """
    if any(name.endswith("-realtime") for name in reportable):
        return REALTIME
    if any(name.endswith("-process") for name in reportable):
        return PROCESS
    return 0


def cycle_anomalies(
    graph: DependencyGraph,
    txns: list[Txn],
    explain_step: Callable[[int, Txn, Txn], dict[str, Any]],
    render_step: Callable[[Mapping[str, Any], str, str], str],
    timeout_s: float,
    clock: Callable[[], float],
) -> dict[str, list[dict[str, Any]]]:
    """Cycle anomalies found in each SCC of ``graph``, by type."""
    present = 0
    for succ in graph.out:
        for rels in succ.values():
            present |= rels
    specs = [s for s in CYCLE_SPECS if not s.variant or s.variant & present]
    found: dict[str, list[dict[str, Any]]] = {}

    def witness(cycle: list[tuple[int, int]]) -> dict[str, Any]:
        members = [txns[node] for node, _ in cycle]
        rels = [rel for _, rel in cycle]
        steps = [
            explain_step(rel, members[i], members[(i + 1) % len(members)])
            for i, rel in enumerate(rels)
        ]
        return cycle_witness([t.op for t in members], rels, steps, render_step)

    for component in graph.strongly_connected_components(ALL):
        deadline = clock() + timeout_s
        implied: set[str] = set()
        searched: list[str] = []
        types_here: set[str] = set()
        try:
            for spec in specs:
                if spec.name in implied:
                    continue
                searched.append(spec.name)
                cycle = find_cycle(graph, component, spec, deadline, clock)
                if cycle is not None:
                    case = witness(cycle)
                    found.setdefault(case["type"], []).append(case)
                    types_here.add(case["type"])
                    implied |= cm.all_implied_anomalies([spec.name])
        except SearchTimeout:
            found.setdefault("cycle-search-timeout", []).append(
                {
                    "type": "cycle-search-timeout",
                    "anomaly_spec_type": searched[-1],
                    "does_not_contain": [t for t in searched[:-1] if t not in types_here],
                    "scc_size": len(component),
                }
            )
            case = witness(any_cycle(graph, component, ALL))
            if case["type"] not in types_here:
                found.setdefault(case["type"], []).append(case)
    return found


def result_map(
    anomalies: Mapping[str, list[Any]],
    consistency_models: Iterable[str] | None,
    anomaly_names: Iterable[str] | None,
) -> dict[str, Any]:
    """Elle's verdict for ``anomalies`` found when checking the given models."""
    prohibited = cm.prohibited_anomaly_types(consistency_models, anomaly_names)
    reportable = prohibited | cm.UNKNOWN_ANOMALY_TYPES
    reported = {k: v for k, v in anomalies.items() if k in reportable and v}
    if not reported:
        return {"valid": True, "anomaly_types": [], "anomalies": {}, "not": [], "also_not": []}
    valid: bool | str = False if any(k in prohibited for k in reported) else "unknown"
    boundary = cm.boundary([k for k, v in anomalies.items() if v])
    return {
        "valid": valid,
        "anomaly_types": sorted(reported),
        "anomalies": {k: reported[k] for k in sorted(reported)},
        "not": boundary["not"],
        "also_not": boundary["also_not"],
    }


def result_to_edn(result: Mapping[str, Any]) -> str:
    """The result in EDN with Elle's keyword names, e.g.
    ``{:valid? false, :anomaly-types (:G-single), :anomalies {:G-single [...]},
    :not #{:consistent-view}, :also-not #{...}}``.

    String map keys inside anomalies become keywords with ``_`` turned into
    ``-`` (``scc_size`` -> ``:scc-size``); other keys stay as they are. A valid result prints as Elle prints it:
    ``{:valid? true}``.
    """
    valid = result["valid"]
    if valid is True and not result.get("anomaly_types"):
        return "{:valid? true}"
    valid_text = "true" if valid is True else "false" if valid is False else ":unknown"

    def convert(x: Any) -> Any:
        if isinstance(x, Mapping):
            return {
                Keyword(k.replace("_", "-")) if isinstance(k, str) else k: convert(v)
                for k, v in x.items()
            }
        if isinstance(x, (list, tuple)):
            return [convert(v) for v in x]
        return x

    anomalies = result.get("anomalies", {})
    parts = [
        f":valid? {valid_text}",
        ":anomaly-types (" + " ".join(":" + t for t in result.get("anomaly_types", [])) + ")",
        ":anomalies {"
        + ", ".join(f":{t} {edn_repr(convert(cases))}" for t, cases in anomalies.items())
        + "}",
        ":not #{" + " ".join(":" + m for m in result.get("not", [])) + "}",
        ":also-not #{" + " ".join(":" + m for m in result.get("also_not", [])) + "}",
    ]
    return "{" + ", ".join(parts) + "}"
