"""Elle's list-append checker: isolation anomalies in transactions over lists.

What: ``check(history, ...)`` judges a history of transactions whose micro-ops
are appends and reads of lists, ``[["append", k, v], ["r", k, [v1, v2]]]``
(EDN ``[[:append 1 2] [:r 1 [1 2]]]``), against consistency models, and
returns Elle's result map (see ``checkers.elle.txn.result_map``).

How (Kingsbury & Alvaro, "Elle", VLDB 2020, section 4): every appended value
is unique per key, so every read of a list reveals the order of the appends
before it. The longest read of each key gives its version order (other reads
must be prefixes of it, else ``incompatible-order``). From that order:
- ww: T1 appended the element just before one T2 appended;
- wr: T2 read a list whose last element T1 appended;
- rw: T1 read the list just before an element T2 appended (or read the empty
  initial state T2's first append ended);
plus Elle's process or realtime order when the chosen models need one. Cycles
in each strongly connected component are searched by type (G0, G1c,
G-single, G-nonadjacent, G2-item and their -process/-realtime variants).
Anomalies found without cycles:
- ``G1a`` aborted read: an ok read contains an element appended by a failed txn;
- ``G1b`` intermediate read: an ok read ends with an element that another txn
  appended and then followed with another append to the same key;
- ``internal``: a read inconsistent with the txn's own earlier read/appends;
- ``future-read``: a txn reads an element it appends later;
- ``dirty-update``: in the version order, a committed append lies on top of
  a failed one;
- ``duplicate-elements``: a read holds one element twice;
- ``incompatible-order``: two reads of a key that no single append order
  explains;
- ``lost-update``: two committed txns read the same state of a key and both
  appended to it.

Inputs Elle cannot analyse give ``valid: "unknown"`` with the reason as the
only anomaly: ``unexpected-txn-micro-op-types`` (a value that is not a list of
``append``/``r`` micro-ops) and ``duplicate-appends`` (a value appended twice
to one key: the version order would be ambiguous).

Step data for explanations: ``{"type": "ww", "key", "value", "value'"}``,
``{"type": "wr", "key", "value"}``, ``{"type": "rw", "key", "value",
"value'"}`` where an rw ``value`` of None means the empty initial state
(appended values are never None in a well-formed history).

Invariants: failed transactions are never graph nodes; ``info`` transactions
are, but their reads count only if non-nil.

Thread-safety: ``check`` is a pure function of its arguments.

Sources: Kingsbury & Alvaro, "Elle: Inferring Isolation Anomalies from
Experimental Observations", VLDB 2020; Adya's thesis (G0, G1a-c, G2, G-single);
Cerone, Bernardi, Gotsman, CONCUR 2015 (INT axiom: ``internal``); Bailis et
al., VLDB 2014 (lost update).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from checkers.history import op_to_dict

from checkers.elle import consistency_models as cm
from checkers.elle.explain import edn_repr, render_common_step
from checkers.elle.graph import REALTIME, RW, WR, WW, DependencyGraph
from checkers.elle.txn import (
    COMMON_OPTIONS,
    Txn,
    add_process_edges,
    add_realtime_edges,
    as_history,
    check_options,
    collect_txns,
    cycle_anomalies,
    explain_common,
    hashable,
    malformed_result,
    needed_order,
    result_map,
    unknown_result,
)

MOP_NAMES = frozenset({"append", "r"})
_ACCEPTED = "[\"append\", key, value] or [\"r\", key, list-or-nil] (hashable keys and values)"


def _valid_mop(mop: Any) -> bool:
    if not isinstance(mop, (list, tuple)) or len(mop) != 3:
        return False
    f, k, v = mop
    if not hashable(k):
        return False
    if f == "append":
        return hashable(v)
    if f == "r":
        return v is None or (isinstance(v, (list, tuple)) and all(hashable(e) for e in v))
    return False


class _Init:
    """The empty initial state of every list, before its first append."""

    def __repr__(self) -> str:
        return "INIT"


INIT = _Init()


def check(
    history: Any,
    consistency_models: list[str] | None = None,
    anomalies: list[str] | None = None,
    cycle_search_timeout_s: float = COMMON_OPTIONS["cycle_search_timeout_s"],
    **opts: Any,
) -> dict[str, Any]:
    """Check a list-append history; see the module docstring.

    ``consistency_models`` defaults to Elle's ``["strict-serializable"]``;
    ``anomalies`` adds specific anomalies to fail on;
    ``cycle_search_timeout_s`` bounds the search of each SCC. Other options:
    ``clock`` (the monotonic clock the budget reads). Unknown options raise
    TypeError naming them.
    """
    options = check_options(
        "list_append.check",
        {
            "consistency_models": consistency_models,
            "anomalies": anomalies,
            "cycle_search_timeout_s": cycle_search_timeout_s,
            **opts,
        },
        COMMON_OPTIONS,
    )
    history = as_history(history)
    nodes, failed, malformed = collect_txns(history, _valid_mop)
    if malformed:
        return malformed_result("list_append.check", malformed, _ACCEPTED)
    duplicate = _duplicate_append(nodes + failed)
    if duplicate is not None:
        return duplicate

    found: dict[str, list[dict[str, Any]]] = {}

    def add(name: str, cases: list[dict[str, Any]]) -> None:
        if cases:
            found[name] = cases

    ok = [t for t in nodes if t.type == "ok"]
    add("G1a", _g1a_cases(ok, failed))
    add("G1b", _g1b_cases(ok, nodes + failed))
    internal, future = _internal_cases(ok)
    add("internal", internal)
    add("future-read", future)
    add("duplicate-elements", _duplicate_cases(nodes))
    sorted_values = _sorted_values(nodes)
    add("incompatible-order", _incompatible_orders(sorted_values))
    add("lost-update", _lost_update_cases(ok))
    add("dirty-update", _dirty_update_cases(nodes, failed, sorted_values))

    prohibited = cm.prohibited_anomaly_types(
        options["consistency_models"], options["anomalies"]
    )
    analysis = _Analysis(nodes, sorted_values)
    graph = analysis.graph()
    order = needed_order(prohibited)
    if order == REALTIME:
        add_realtime_edges(graph, nodes)
    elif order:
        add_process_edges(graph, nodes)
    if graph.is_empty():
        found["empty-transaction-graph"] = [{"type": "empty-transaction-graph"}]
    for name, cases in cycle_anomalies(
        graph,
        nodes,
        analysis.explain_step,
        render_step,
        options["cycle_search_timeout_s"],
        options["clock"],
    ).items():
        found.setdefault(name, []).extend(cases)
    return result_map(found, options["consistency_models"], options["anomalies"])


def _duplicate_append(txns: list[Txn]) -> dict[str, Any] | None:
    written: dict[Any, set[Any]] = {}
    for txn in sorted(txns, key=lambda t: t.invoke_position):
        for f, k, v in txn.value:
            if f != "append":
                continue
            values = written.setdefault(k, set())
            if v in values:
                return unknown_result(
                    "duplicate-appends",
                    f"value {edn_repr(v)} appended to key {edn_repr(k)} multiple times; "
                    "list-append needs every appended value unique per key",
                    op=op_to_dict(txn.invocation),
                    key=k,
                    value=v,
                )
            values.add(v)
    return None


def _mop(f: str, k: Any, v: Any) -> list[Any]:
    return [f, k, list(v) if isinstance(v, (list, tuple)) else v]


def _g1a_cases(ok: list[Txn], failed: list[Txn]) -> list[dict[str, Any]]:
    failed_writes: dict[Any, dict[Any, Txn]] = {}
    for txn in failed:
        for f, k, v in txn.value:
            if f == "append":
                failed_writes.setdefault(k, {})[v] = txn
    if not failed_writes:
        return []
    cases = []
    for txn in ok:
        for f, k, v in txn.value:
            if f != "r" or not v or k not in failed_writes:
                continue
            writers = failed_writes[k]
            if writers.keys().isdisjoint(v):
                continue
            for element in v:
                writer = writers.get(element)
                if writer is not None:
                    cases.append(
                        {
                            "op": op_to_dict(txn.op),
                            "mop": _mop(f, k, v),
                            "writer": op_to_dict(writer.op),
                            "element": element,
                        }
                    )
    return cases


def _g1b_cases(ok: list[Txn], txns: list[Txn]) -> list[dict[str, Any]]:
    intermediate: dict[Any, dict[Any, Txn]] = {}
    for txn in txns:
        last: dict[Any, Any] = {}
        for f, k, v in txn.value:
            if f == "append":
                if k in last:
                    intermediate.setdefault(k, {})[last[k]] = txn
                last[k] = v
    if not intermediate:
        return []
    cases = []
    for txn in ok:
        for f, k, v in txn.value:
            if f != "r" or not v or k not in intermediate:
                continue
            writer = intermediate[k].get(v[-1])
            if writer is not None and writer is not txn:
                cases.append(
                    {
                        "op": op_to_dict(txn.op),
                        "mop": _mop(f, k, v),
                        "writer": op_to_dict(writer.op),
                        "element": v[-1],
                    }
                )
    return cases


def _internal_cases(ok: list[Txn]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    internal = []
    future = []
    for txn in ok:
        case = _internal_case(txn)
        if case is not None:
            internal.append(case)
        case = _future_read_case(txn)
        if case is not None:
            future.append(case)
    return internal, future


def _internal_case(txn: Txn) -> dict[str, Any] | None:
    # Expected state per key: (whether the prefix is known, the elements).
    # After appends alone the prefix is unknown: only the suffix is expected.
    state: dict[Any, tuple[bool, list[Any]]] = {}
    for f, k, v in txn.value:
        if f == "append":
            known, elements = state.get(k, (False, []))
            state[k] = (known, elements + [v])
            continue
        read = list(v) if v is not None else []
        expected = state.get(k)
        if expected is not None:
            known, elements = expected
            if known:
                mismatch = read != elements
            else:
                mismatch = len(read) < len(elements) or read[len(read) - len(elements):] != elements
            if mismatch:
                return {
                    "op": op_to_dict(txn.op),
                    "mop": _mop(f, k, v),
                    "expected": elements if known else ["..."] + elements,
                }
        state[k] = (True, read)
    return None


def _future_read_case(txn: Txn) -> dict[str, Any] | None:
    # Only an append after a read of the same key can be a future read, so
    # reads are kept whole and searched only then (reads can be long).
    reads: dict[Any, list[list[Any]]] = {}
    for mop in txn.value:
        f, k, v = mop
        if f == "append":
            for read in reads.get(k, ()):
                if v in read[2]:
                    return {"op": op_to_dict(txn.op), "mop": _mop(*read), "element": v}
        elif v:
            reads.setdefault(k, []).append(mop)
    return None


def _duplicate_cases(possible: list[Txn]) -> list[dict[str, Any]]:
    cases = []
    for txn in possible:
        for f, k, v in txn.value:
            if f != "r" or not v or len(v) < 2:
                continue
            if len(set(v)) == len(v):
                continue
            counts = Counter(v)
            duplicates = {e: n for e, n in counts.items() if n > 1}
            cases.append(
                {"op": op_to_dict(txn.op), "mop": _mop(f, k, v), "duplicates": duplicates}
            )
    return cases


def _sorted_values(possible: list[Txn]) -> dict[Any, list[tuple[Any, ...]]]:
    """Key -> distinct non-empty reads of it, shortest first.

    A key never read non-empty but appended exactly once has the one state
    ``(v,)`` (Elle's single-append inference).
    """
    # Dicts as ordered sets: equal-length reads stay in history order, so
    # reports are deterministic.
    observed: dict[Any, dict[tuple[Any, ...], None]] = {}
    appends: dict[Any, list[Any]] = {}
    for txn in possible:
        for f, k, v in txn.value:
            if f == "r":
                if v:
                    observed.setdefault(k, {})[tuple(v)] = None
            else:
                appends.setdefault(k, []).append(v)
    for k, values in appends.items():
        if k not in observed and len(values) == 1:
            observed[k] = {(values[0],): None}
    return {k: sorted(values, key=len) for k, values in observed.items()}


def _is_prefix(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    return len(a) <= len(b) and b[: len(a)] == a


def _incompatible_orders(sorted_values: Mapping[Any, list[tuple[Any, ...]]]) -> list[dict[str, Any]]:
    cases = []
    for k, values in sorted_values.items():
        for a, b in zip(values, values[1:]):
            if not _is_prefix(a, b):
                cases.append({"key": k, "values": [list(a), list(b)]})
                break
    return cases


def _lost_update_cases(ok: list[Txn]) -> list[dict[str, Any]]:
    # Two committed txns that read the same state of k and both appended to
    # k: one of the two updates is lost whatever their order.
    by_key: dict[Any, dict[Any, list[Txn]]] = {}
    for txn in ok:
        reads: dict[Any, Any] = {}
        written: set[Any] = set()
        for f, k, v in txn.value:
            if f == "append":
                if k not in written and k in reads:
                    by_key.setdefault(k, {}).setdefault(reads[k], []).append(txn)
                written.add(k)
            elif k not in reads and k not in written:
                reads[k] = tuple(v) if v is not None else None
    cases = []
    for k, by_value in by_key.items():
        for value, txns in by_value.items():
            if len(txns) >= 2:
                cases.append(
                    {
                        "key": k,
                        "value": list(value) if value is not None else None,
                        "txns": [op_to_dict(t.op) for t in txns],
                    }
                )
    return cases


def _dirty_update_cases(
    nodes: list[Txn], failed: list[Txn], sorted_values: Mapping[Any, list[tuple[Any, ...]]]
) -> list[dict[str, Any]]:
    """Committed appends on top of failed ones, walking each version order."""
    if not failed:
        return []
    if any(f == "r" and v for t in failed for f, _, v in t.value):
        # Failed txns' reads also witness orders (Elle reads all client ops).
        sorted_values = _sorted_values(nodes + failed)
    writers: dict[Any, dict[Any, Txn]] = {}
    for txn in nodes + failed:
        for f, k, v in txn.value:
            if f == "append":
                writers.setdefault(k, {})[v] = txn
    cases = []
    for k, values in sorted_values.items():
        t1_type, t1, versions = "ok", None, []
        for v in dict.fromkeys(values[-1]):
            t2 = writers.get(k, {}).get(v)
            if t2 is None:
                continue  # a value nobody appended; nothing to say about it
            pair = (t1_type, t2.type)
            if pair == ("fail", "ok"):
                cases.append(
                    {
                        "key": k,
                        "values": versions + [v],
                        "txns": [op_to_dict(t1.op), "...", op_to_dict(t2.op)],
                    }
                )
                t1_type, t1, versions = "ok", t2, [v]
            elif t2.type == "info":
                # Unknown outcome: keep the range we are in.
                versions = versions + [v]
            elif pair == ("fail", "fail"):
                versions = versions + [v]
            else:
                t1_type, t1, versions = t2.type, t2, [v]
    return cases


class _Analysis:
    """Version orders and indexes, the dependency graph, and its explainer."""

    def __init__(self, nodes: list[Txn], sorted_values: Mapping[Any, list[tuple[Any, ...]]]):
        self.nodes = nodes
        # Key -> (append order from the longest read, value -> position).
        self.orders: dict[Any, tuple[list[Any], dict[Any, int]]] = {}
        for k, values in sorted_values.items():
            order = list(dict.fromkeys(values[-1]))
            self.orders[k] = (order, {v: i for i, v in enumerate(order)})
        self.writer: dict[Any, dict[Any, int]] = {}
        self.readers: dict[Any, dict[Any, list[int]]] = {}
        for txn in nodes:
            for f, k, v in txn.value:
                if f == "append":
                    self.writer.setdefault(k, {})[v] = txn.node
                elif v is None and txn.type == "info":
                    continue  # an unknown read, not a read of the empty list
                else:
                    last = v[-1] if v else INIT
                    self.readers.setdefault(k, {}).setdefault(last, []).append(txn.node)

    def previous_element(self, k: Any, v: Any) -> Any:
        """The element appended just before ``v`` to ``k``, or INIT.

        An append never read still came after the last element ever read.
        """
        order = self.orders.get(k)
        if order is None:
            return INIT
        values, positions = order
        position = positions.get(v)
        if position is None:
            return values[-1] if values else INIT
        return values[position - 1] if position > 0 else INIT

    def graph(self) -> DependencyGraph:
        graph = DependencyGraph(len(self.nodes))
        link = graph.link
        writer = self.writer
        readers = self.readers
        for txn in self.nodes:
            node = txn.node
            for f, k, v in txn.value:
                if f == "append":
                    previous = self.previous_element(k, v)
                    if previous is not INIT:
                        w = writer.get(k, {}).get(previous)
                        if w is not None:
                            link(w, node, WW)
                    for r in readers.get(k, {}).get(previous, ()):
                        link(r, node, RW)
                elif v:
                    w = writer.get(k, {}).get(v[-1])
                    if w is not None:
                        link(w, node, WR)
        return graph

    def explain_step(self, rel: int, a: Txn, b: Txn) -> dict[str, Any]:
        for f, k, v in b.value:
            if rel == WR and f == "r" and v:
                if self.writer.get(k, {}).get(v[-1]) == a.node:
                    return {"type": "wr", "key": k, "value": v[-1]}
            elif rel in (WW, RW) and f == "append":
                previous = self.previous_element(k, v)
                if rel == WW:
                    if previous is not INIT and self.writer.get(k, {}).get(previous) == a.node:
                        return {"type": "ww", "key": k, "value": previous, "value'": v}
                elif a.node in self.readers.get(k, {}).get(previous, ()):
                    value = None if previous is INIT else previous
                    return {"type": "rw", "key": k, "value": value, "value'": v}
        if rel in (WW, WR, RW):
            raise AssertionError(f"no {rel} dependency from {a.op} to {b.op}")
        return explain_common(rel, a, b)


def render_step(step: Mapping[str, Any], a_name: str, b_name: str) -> str:
    """Elle's sentence for one list-append step."""
    kind = step["type"]
    appended = step.get("value'")
    if kind == "ww":
        return (
            f"{b_name} appended {edn_repr(appended)} after {a_name} "
            f"appended {edn_repr(step['value'])} to {edn_repr(step['key'])}"
        )
    if kind == "wr":
        return (
            f"{b_name} observed {a_name}'s append of {edn_repr(step['value'])} "
            f"to key {edn_repr(step['key'])}"
        )
    if kind == "rw":
        if step["value"] is None:
            return (
                f"{a_name} observed the initial (nil) state of {edn_repr(step['key'])}, "
                f"which {b_name} created by appending {edn_repr(appended)}"
            )
        return (
            f"{a_name} did not observe {b_name}'s append of "
            f"{edn_repr(appended)} to {edn_repr(step['key'])}"
        )
    return render_common_step(step, a_name, b_name)
