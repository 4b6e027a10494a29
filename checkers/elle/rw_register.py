"""Elle's rw-register checker: isolation anomalies in transactions over registers.

What: ``check(history, ...)`` judges transactions of register writes and
reads, ``[["w", k, v], ["r", k, v]]`` (EDN ``[[:w 1 2] [:r 1 2]]``), where
every written value is unique per key and ``None`` (nil) is the initial state
of every register, and returns Elle's result map.

How (Kingsbury & Alvaro, "Elle", VLDB 2020, section 4.2): a register read
reveals which write it saw (wr edges: T1 wrote k = v, T2 read it), but unlike
a list it does not reveal the order of writes. The version order of each key
is therefore only partially known, and is built from sources chosen by
options, added one at a time:

- initial state (always): nil precedes every other value of every key;
- ``wfr_keys``: writes follow reads inside a transaction, so a transaction
  that externally read k = v1 and externally wrote k = v2 gives v1 < v2;
- ``sequential_keys``: each key is sequentially consistent, so along each
  process's ``ok`` transactions the last value a transaction saw of k
  precedes the first value the next transaction touching k saw;
- ``linearizable_keys``: each key is linearizable, so the same holds along
  realtime order (a transaction completed before the other's invocation).

A source that would make some key's version graph cyclic is left out and
reported as ``cyclic-versions`` (with the key, the values in the cycle, and
the sources that together made it). From each version edge v1 -> v2 of key k
come ww edges (writers of v1 to writers of v2) and rw edges (readers of v1 to
writers of v2); only *external* reads and writes count (a transaction's first
read of k before writing it, its last write of k).

Anomalies found without cycles: ``G1a`` (an ok read of a value only a failed
txn wrote), ``G1b`` (an ok read of a value another txn overwrote itself),
``internal`` (a read that disagrees with the txn's own earlier write or read
of that key), ``lost-update`` (two committed txns read the same value of k and
both wrote k).

Known difference from Elle: Elle explains a pair related by both wr and ww as
wr; this package uses one preference order for both checkers (ww first, see
``graph.preferred_rel``), so such a cycle may be named G0 where Elle names it
G1c. G0 implies G1c, so the verdict and ruled-out models are the same.

A value written by two ok transactions to one key makes reads of it
ambiguous: ``duplicate-writes`` is reported with ``valid: "unknown"``.

Step data: ``{"type": "ww"|"rw", "key", "value", "value'"}`` and
``{"type": "wr", "key", "value"}``.

Thread-safety: ``check`` is a pure function of its arguments.

Sources: Kingsbury & Alvaro, "Elle", VLDB 2020; Adya's thesis (version orders,
DSG, G0-G2); Cerone, Bernardi, Gotsman, CONCUR 2015 (INT: ``internal``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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

MOP_NAMES = frozenset({"w", "r"})
_ACCEPTED = "[\"w\", key, value] or [\"r\", key, value-or-nil] (hashable keys and values)"


def _valid_mop(mop: Any) -> bool:
    return (
        isinstance(mop, (list, tuple))
        and len(mop) == 3
        and mop[0] in MOP_NAMES
        and hashable(mop[1])
        and hashable(mop[2])
    )

OPTIONS: dict[str, Any] = {
    **COMMON_OPTIONS,
    "wfr_keys": False,
    "sequential_keys": False,
    "linearizable_keys": False,
}

_NONE = object()  # "no value known", as opposed to the nil value None

VersionGraphs = dict[Any, dict[Any, set[Any]]]  # key -> value -> later values


def check(
    history: Any,
    consistency_models: list[str] | None = None,
    anomalies: list[str] | None = None,
    cycle_search_timeout_s: float = COMMON_OPTIONS["cycle_search_timeout_s"],
    **opts: Any,
) -> dict[str, Any]:
    """Check an rw-register history; see the module docstring.

    Options besides those of ``list_append.check``: ``wfr_keys``,
    ``sequential_keys``, ``linearizable_keys`` (booleans, default False; Elle's
    ``:wfr-keys?`` etc. spellings are accepted too).
    """
    options = check_options(
        "rw_register.check",
        {
            "consistency_models": consistency_models,
            "anomalies": anomalies,
            "cycle_search_timeout_s": cycle_search_timeout_s,
            **opts,
        },
        OPTIONS,
    )
    for name in ("wfr_keys", "sequential_keys", "linearizable_keys"):
        if not isinstance(options[name], bool):
            raise TypeError(f"rw_register.check: {name} must be True or False, got {options[name]!r}")
    history = as_history(history)
    nodes, failed, malformed = collect_txns(history, _valid_mop)
    if malformed:
        return malformed_result("rw_register.check", malformed, _ACCEPTED)
    for txn in nodes + failed:
        txn.external = _external(txn)

    ok = [t for t in nodes if t.type == "ok"]
    found: dict[str, list[dict[str, Any]]] = {}

    def add(name: str, cases: list[dict[str, Any]]) -> None:
        if cases:
            found[name] = cases

    add("internal", [c for c in (_internal_case(t) for t in ok) if c is not None])
    add("G1a", _g1a_cases(ok, failed))
    add("G1b", _g1b_cases(ok, nodes + failed))
    add("lost-update", _lost_update_cases(ok))

    analysis = _Analysis(nodes)
    duplicate = analysis.duplicate_write()
    if duplicate is not None:
        return duplicate
    sources = [("initial-state", analysis.initial_state_versions)]
    if options["wfr_keys"]:
        sources.append(("wfr-keys", analysis.wfr_versions))
    if options["sequential_keys"]:
        sources.append(("sequential-keys", analysis.sequential_versions))
    if options["linearizable_keys"]:
        sources.append(("linearizable-keys", analysis.linearizable_versions))
    add("cyclic-versions", analysis.build_versions(sources))

    prohibited = cm.prohibited_anomaly_types(
        options["consistency_models"], options["anomalies"]
    )
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


def _external(txn: Txn) -> tuple[dict[Any, Any], dict[Any, Any]]:
    """(external reads, external writes): first reads not preceded by a write
    of the key in the txn, and last writes."""
    reads: dict[Any, Any] = {}
    writes: dict[Any, Any] = {}
    for f, k, v in txn.value:
        if f == "w":
            writes[k] = v
        elif k not in reads and k not in writes:
            reads[k] = v
    return reads, writes


def _ext(txn: Txn) -> tuple[dict[Any, Any], dict[Any, Any]]:
    return txn.external


def _internal_case(txn: Txn) -> dict[str, Any] | None:
    state: dict[Any, Any] = {}
    for f, k, v in txn.value:
        if f == "w":
            state[k] = v
            continue
        expected = state.get(k)
        if expected is not None and expected != v:
            return {"op": op_to_dict(txn.op), "mop": [f, k, v], "expected": expected}
        state[k] = v
    return None


def _g1a_cases(ok: list[Txn], failed: list[Txn]) -> list[dict[str, Any]]:
    failed_writes: dict[tuple[Any, Any], Txn] = {}
    for txn in failed:
        for f, k, v in txn.value:
            if f == "w":
                failed_writes[(k, v)] = txn
    cases = []
    if failed_writes:
        for txn in ok:
            for f, k, v in txn.value:
                writer = failed_writes.get((k, v)) if f == "r" else None
                if writer is not None:
                    cases.append(
                        {"op": op_to_dict(txn.op), "mop": [f, k, v], "writer": op_to_dict(writer.op)}
                    )
    return cases


def _g1b_cases(ok: list[Txn], txns: list[Txn]) -> list[dict[str, Any]]:
    intermediate: dict[tuple[Any, Any], Txn] = {}
    for txn in txns:
        last: dict[Any, Any] = {}
        for f, k, v in txn.value:
            if f == "w":
                if k in last:
                    intermediate[(k, last[k])] = txn
                last[k] = v
    cases = []
    if intermediate:
        for txn in ok:
            for f, k, v in txn.value:
                writer = intermediate.get((k, v)) if f == "r" else None
                if writer is not None and writer is not txn:
                    cases.append(
                        {"op": op_to_dict(txn.op), "mop": [f, k, v], "writer": op_to_dict(writer.op)}
                    )
    return cases


def _lost_update_cases(ok: list[Txn]) -> list[dict[str, Any]]:
    by_key: dict[Any, dict[Any, list[Txn]]] = {}
    for txn in ok:
        reads: dict[Any, Any] = {}
        written: set[Any] = set()
        for f, k, v in txn.value:
            if f == "w":
                if k not in written and k in reads:
                    by_key.setdefault(k, {}).setdefault(reads[k], []).append(txn)
                written.add(k)
            elif k not in reads and k not in written:
                reads[k] = v
    return [
        {"key": k, "value": value, "txns": [op_to_dict(t.op) for t in txns]}
        for k, by_value in by_key.items()
        for value, txns in by_value.items()
        if len(txns) >= 2
    ]


class _Analysis:
    """External-read/write indexes, version graphs, the graph and its explainer."""

    def __init__(self, nodes: list[Txn]) -> None:
        self.nodes = nodes
        self.ok = [t for t in nodes if t.type == "ok"]
        # key -> value -> ok nodes that externally wrote / read it.
        self.writers: dict[Any, dict[Any, list[int]]] = {}
        self.readers: dict[Any, dict[Any, list[int]]] = {}
        for txn in self.ok:
            reads, writes = _ext(txn)
            for k, v in writes.items():
                self.writers.setdefault(k, {}).setdefault(v, []).append(txn.node)
            for k, v in reads.items():
                self.readers.setdefault(k, {}).setdefault(v, []).append(txn.node)
        self.versions: VersionGraphs = {}

    def duplicate_write(self) -> dict[str, Any] | None:
        for k, by_value in self.writers.items():
            for v, writers in by_value.items():
                if len(writers) > 1:
                    return unknown_result(
                        "duplicate-writes",
                        f"key {edn_repr(k)} had value {edn_repr(v)} written by more than one "
                        "ok transaction; rw-register needs unique writes per key",
                        key=k,
                        value=v,
                        ops=[op_to_dict(self.nodes[n].op) for n in writers],
                    )
        return None

    # -- version-order sources: each returns key -> set of (v1, v2) ---------

    def initial_state_versions(self) -> dict[Any, set[tuple[Any, Any]]]:
        edges: dict[Any, set[tuple[Any, Any]]] = {}
        for txn in self.nodes:
            reads, writes = _ext(txn)
            pairs = list(writes.items())
            if txn.type == "ok":
                pairs += list(reads.items())
            for k, v in pairs:
                if v is not None:
                    edges.setdefault(k, set()).add((None, v))
        return edges

    def wfr_versions(self) -> dict[Any, set[tuple[Any, Any]]]:
        edges: dict[Any, set[tuple[Any, Any]]] = {}
        for txn in self.ok:
            reads, writes = _ext(txn)
            for k, v in reads.items():
                if v is not None and k in writes and writes[k] != v:
                    edges.setdefault(k, set()).add((v, writes[k]))
        return edges

    @staticmethod
    def _final_value(txn: Txn, k: Any) -> Any:
        reads, writes = _ext(txn)
        if txn.type == "ok":
            return writes[k] if k in writes else reads.get(k, _NONE)
        return writes.get(k, _NONE)

    @staticmethod
    def _first_value(txn: Txn, k: Any) -> Any:
        reads, writes = _ext(txn)
        if txn.type == "ok":
            return reads[k] if k in reads else writes.get(k, _NONE)
        return writes.get(k, _NONE)

    @staticmethod
    def _keys(txn: Txn) -> Iterable[Any]:
        reads, writes = _ext(txn)
        if txn.type == "ok":
            return set(reads) | set(writes)
        return writes.keys()  # an info txn's reads are unknown

    def sequential_versions(self) -> dict[Any, set[tuple[Any, Any]]]:
        # Along each process's ok txns, per key: last value seen by one txn
        # touching k precedes the first value seen by the next.
        edges: dict[Any, set[tuple[Any, Any]]] = {}
        last: dict[tuple[Any, Any], Txn] = {}
        for txn in sorted(self.ok, key=lambda t: t.invoke_position):
            for k in self._keys(txn):
                previous = last.get((txn.op.process, k))
                if previous is not None:
                    self._relate(edges, k, previous, txn)
                last[(txn.op.process, k)] = txn
        return edges

    def linearizable_versions(self) -> dict[Any, set[tuple[Any, Any]]]:
        # Per key, realtime order reduced as in add_realtime_edges: each txn
        # is related to the ok txns touching k that completed before its
        # invocation and are not followed by another such txn.
        events: dict[Any, list[tuple[int, int, Txn]]] = {}
        for txn in self.nodes:
            for k in self._keys(txn):
                bucket = events.setdefault(k, [])
                bucket.append((txn.invoke_position, 0, txn))
                if txn.type == "ok":
                    bucket.append((txn.complete_position, 1, txn))
        edges: dict[Any, set[tuple[Any, Any]]] = {}
        for k, bucket in events.items():
            bucket.sort(key=lambda e: (e[0], e[1]))
            frontier: list[Txn] = []
            latest_invocation = -1
            for _, kind, txn in bucket:
                if kind == 0:
                    for previous in frontier:
                        self._relate(edges, k, previous, txn)
                else:
                    latest_invocation = max(latest_invocation, txn.invoke_position)
                    frontier = [t for t in frontier if t.complete_position > latest_invocation]
                    frontier.append(txn)
        return edges

    def _relate(self, edges: dict[Any, set[tuple[Any, Any]]], k: Any, a: Txn, b: Txn) -> None:
        v1 = self._final_value(a, k)
        v2 = self._first_value(b, k)
        if v1 is not _NONE and v2 is not _NONE and v1 != v2:
            edges.setdefault(k, set()).add((v1, v2))

    def build_versions(self, sources: list[tuple[str, Any]]) -> list[dict[str, Any]]:
        """Merge sources in order; skip (and report) any that makes a cycle."""
        used: list[str] = []
        cases: list[dict[str, Any]] = []
        for name, source in sources:
            additions = source()
            cycles = []
            for k, pairs in additions.items():
                merged = {v: set(later) for v, later in self.versions.get(k, {}).items()}
                for v1, v2 in pairs:
                    merged.setdefault(v1, set()).add(v2)
                for component in _value_cycles(merged):
                    cycles.append({"key": k, "scc": component, "sources": used + [name]})
            if cycles:
                cases.extend(cycles)
                continue
            used.append(name)
            for k, pairs in additions.items():
                graph = self.versions.setdefault(k, {})
                for v1, v2 in pairs:
                    graph.setdefault(v1, set()).add(v2)
        return cases

    def graph(self) -> DependencyGraph:
        graph = DependencyGraph(len(self.nodes))
        link = graph.link
        for txn in self.ok:
            reads, _ = _ext(txn)
            for k, v in reads.items():
                for w in self.writers.get(k, {}).get(v, ()):
                    link(w, txn.node, WR)
        for k, versions in self.versions.items():
            writers = self.writers.get(k, {})
            readers = self.readers.get(k, {})
            for v1, later in versions.items():
                for v2 in later:
                    for b in writers.get(v2, ()):
                        for a in writers.get(v1, ()):
                            link(a, b, WW)
                        for a in readers.get(v1, ()):
                            link(a, b, RW)
        return graph

    def explain_step(self, rel: int, a: Txn, b: Txn) -> dict[str, Any]:
        a_reads, a_writes = _ext(a)
        b_reads, b_writes = _ext(b)
        if rel == WR:
            for k, v in a_writes.items():
                if k in b_reads and b_reads[k] == v:
                    return {"type": "wr", "key": k, "value": v}
        elif rel in (WW, RW):
            source = a_writes if rel == WW else a_reads
            for k, v in source.items():
                if k in b_writes and b_writes[k] in self.versions.get(k, {}).get(v, ()):
                    return {
                        "type": "ww" if rel == WW else "rw",
                        "key": k,
                        "value": v,
                        "value'": b_writes[k],
                    }
        else:
            return explain_common(rel, a, b)
        raise AssertionError(f"no {rel} dependency from {a.op} to {b.op}")


def _value_cycles(versions: Mapping[Any, set[Any]]) -> list[list[Any]]:
    """Cycles (as SCCs of values) in one key's version graph."""
    values = list(dict.fromkeys([v for v in versions] + [w for s in versions.values() for w in s]))
    number = {v: i for i, v in enumerate(values)}
    graph = DependencyGraph(len(values))
    for v, later in versions.items():
        for w in later:
            if v == w:
                continue
            graph.link(number[v], number[w], WW)
    return [[values[i] for i in component] for component in graph.strongly_connected_components()]


def render_step(step: Mapping[str, Any], a_name: str, b_name: str) -> str:
    """Elle's sentence for one rw-register step."""
    kind = step["type"]
    later = step.get("value'")
    if kind == "ww":
        return (
            f"{a_name} set key {edn_repr(step['key'])} to {edn_repr(step['value'])}, and "
            f"{b_name} set it to {edn_repr(later)}, which came later in the version order"
        )
    if kind == "rw":
        return (
            f"{a_name} read key {edn_repr(step['key'])} = {edn_repr(step['value'])}, and "
            f"{b_name} set it to {edn_repr(later)}, which came later in the version order"
        )
    if kind == "wr":
        return (
            f"{a_name} wrote {edn_repr(step['key'])} = {edn_repr(step['value'])}, "
            f"which was read by {b_name}"
        )
    return render_common_step(step, a_name, b_name)
