"""The Kafka queue checker: Jepsen's kafka-workload anomalies, judged per delivery mode.

Input: a `History` whose client ops are `send`, `poll` and `txn` ops with
micro-ops `["send", key, value]` (completed as `["send", key, [offset, value]]`,
offset None when unknown) and `["poll", {key: [[offset, value], ...]}]`, plus
`assign` / `subscribe` ops (value: list of keys) and any other ops (`crash`,
`debug-topic-partitions`, nemesis ops), which are ignored. Values are unique
per key (the workload never sends one value twice to a key).

Analysis, following the published definitions of jepsen.tests.kafka:
1. Writers and readers of every (key, value); the writes of ok, failed and
   info completions; the values read by ok polls.
2. A send *must have committed* if its op is ok, or info and some value it
   sent was read by an ok op. The log of each key maps offsets to values,
   built from the sends that must have committed (with known offsets) and
   from every poll (ok, info or fail: a poll is safe to trust even when its
   transaction aborts). One offset with several values is
   `inconsistent-offsets`. Dropping empty offsets gives the version order: a
   dense *index* per occupied offset.
3. Anomalies (each witness is a data map plus a sentence, see `explain`):
   `duplicate` (a value at several offsets), `G1a` (an ok poll read a value
   whose send failed), `precommitted-read` (an op polled a value it sent),
   `lost-write` (a must-have-committed send at or below the highest index
   that ok polls of its key reached, yet no ok poll read it), `unseen` (ok
   sends never read by any ok poll, per key), `poll-skip` /
   `nonmonotonic-poll` (one process's successive ok polls of a key jump
   forward over messages / go back; assign or subscribe keeps the state only
   of keys still assigned), `nonmonotonic-send` (a process's successive sends
   to a key go back), `int-poll-skip`, `int-nonmonotonic-poll`,
   `int-send-skip`, `int-nonmonotonic-send` (the same within one op; keys in
   the op's `rebalance-log` are exempt for polls; distances use the offsets
   the ops reported where known, which keeps a duplicated value from reading
   as a jump backwards), and transaction cycles
   `G0` (ww only), `G1c` (with a wr edge), with `-process` / `-realtime`
   variants when the cycle needs process or realtime order.
4. What is allowed (reported under `allowed`, not as errors):
   always `int-send-skip` and `G0`/`G0-process`/`G0-realtime` (Kafka does not
   isolate writes: transactions interleave their sends); `G1c*` when ww
   dependencies are inferred (a cycle t0 <ww t1 <wr t0 is then normal);
   `poll-skip` and `nonmonotonic-poll` by a process consuming via `subscribe`
   (the group may rebalance between polls); under `at-most-once` also
   `lost-write` and `unseen`; under `at-least-once` also `duplicate`.

Complexity: O(n log n) in the number of micro-op entries; cycle search is
over the strongly connected components of the dependency graph (networkx).
The realtime graph is built as a transitive reduction over the ops that have
data dependencies, so it stays linear in their number.

Thread-safety: pure functions; safe from any thread.

Sources: Jepsen `jepsen.tests.kafka` (Kingsbury, 2022; the Redpanda 21.10.1
analysis, jepsen.io/analyses/redpanda-21.10.1); Adya, "Weak Consistency"
(MIT PhD thesis, 1999) for G0, G1a, G1c; Elle (Kingsbury & Alvaro, VLDB
2020) for cycle classification with process and realtime edges.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import networkx as nx

from checkers.history import NEMESIS, History, Op, op_to_dict
from checkers.queue.explain import explain

__all__ = ["ANOMALY_NAMES", "DELIVERY_MODES", "check"]

DELIVERY_MODES = ("at-most-once", "at-least-once", "exactly-once")
CYCLE_NAMES = tuple(f"{base}{suffix}" for base in ("G0", "G1c") for suffix in ("", "-process", "-realtime"))
ANOMALY_NAMES = (
    "inconsistent-offsets",
    "duplicate",
    "G1a",
    "precommitted-read",
    "lost-write",
    "unseen",
    "poll-skip",
    "nonmonotonic-poll",
    "nonmonotonic-send",
    "int-poll-skip",
    "int-nonmonotonic-poll",
    "int-send-skip",
    "int-nonmonotonic-send",
    *CYCLE_NAMES,
)
_DATA_FS = frozenset({"send", "poll", "txn"})
_ASSIGN_FS = frozenset({"assign", "subscribe"})
_MODE_ALLOWED = {
    "at-most-once": frozenset({"lost-write", "unseen"}),
    "at-least-once": frozenset({"duplicate"}),
    "exactly-once": frozenset(),
}


class QueueHistoryError(ValueError):
    """A queue history whose values do not follow the kafka workload's shape."""


def _norm_key(k: Any) -> Any:
    # JSON map keys are strings: a poll read back from JSONL says "2" where the
    # send said 2. Treat integer-looking strings as integers so both agree.
    if isinstance(k, str):
        body = k[1:] if k[:1] == "-" else k
        if body.isdigit():
            return int(k)
        return k
    if isinstance(k, list):
        return tuple(k)
    return k


def _hashable(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_hashable(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((repr(k), _hashable(x)) for k, x in v.items()))
    return v


class _Parsed:
    """Reads and writes of one completion, grouped by key, in mop order."""

    __slots__ = ("reads", "read_pairs", "writes", "write_offsets")

    def __init__(self) -> None:
        self.reads: dict[Any, list[Any]] = {}
        self.read_pairs: dict[Any, list[tuple[int | None, Any]]] = {}
        self.writes: dict[Any, list[Any]] = {}
        self.write_offsets: dict[Any, list[int | None]] = {}


def _parse(op: Op) -> _Parsed:
    parsed = _Parsed()
    value = op.value
    if value is None:
        return parsed
    if not isinstance(value, (list, tuple)):
        raise QueueHistoryError(
            f"op {op.index}: a {op.f} op's value must be a list of micro-ops, got {value!r:.100}"
        )
    for mop in value:
        if not isinstance(mop, (list, tuple)) or not mop:
            raise QueueHistoryError(f"op {op.index}: expected a micro-op like [\"send\", k, v] or [\"poll\", ...], got {mop!r:.100}")
        name = mop[0]
        if name == "send":
            if len(mop) != 3:
                raise QueueHistoryError(f"op {op.index}: expected [\"send\", key, value], got {mop!r:.100}")
            k = _norm_key(mop[1])
            v = mop[2]
            offset = None
            if isinstance(v, (list, tuple)) and op.type != "invoke":
                if len(v) != 2:
                    raise QueueHistoryError(
                        f"op {op.index}: a completed send is [\"send\", key, [offset, value]], got {mop!r:.100}"
                    )
                offset, v = v[0], v[1]
            v = _hashable(v)
            parsed.writes.setdefault(k, []).append(v)
            parsed.write_offsets.setdefault(k, []).append(offset)
        elif name == "poll":
            if len(mop) < 2 or mop[1] is None:
                continue  # an invocation's [poll], or a poll with no result
            results = mop[1]
            if not isinstance(results, Mapping):
                raise QueueHistoryError(
                    f"op {op.index}: a completed poll is [\"poll\", {{key: [[offset, value], ...]}}], got {mop!r:.100}"
                )
            for raw_key, pairs in results.items():
                k = _norm_key(raw_key)
                reads = parsed.reads.setdefault(k, [])
                read_pairs = parsed.read_pairs.setdefault(k, [])
                for pair in pairs or ():
                    if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                        raise QueueHistoryError(
                            f"op {op.index}: poll results are [offset, value] pairs, got {pair!r:.100} for key {raw_key!r}"
                        )
                    v = _hashable(pair[1])
                    reads.append(v)
                    read_pairs.append((pair[0], v))
        else:
            raise QueueHistoryError(
                f"op {op.index}: unknown micro-op {name!r} in {mop!r:.100}; expected \"send\" or \"poll\""
            )
    return parsed


class _Order:
    """The version order of one key: dense indexes over occupied offsets."""

    __slots__ = ("by_index", "by_value", "log_values", "first_index", "last_index", "offsets", "index_of_offset")

    def __init__(self, log: dict[int, set[Any]]) -> None:
        self.offsets: list[int] = sorted(log)
        self.index_of_offset: dict[int, int] = {offset: i for i, offset in enumerate(self.offsets)}
        self.by_index: list[Any] = []
        self.by_value: dict[Any, int] = {}
        self.log_values: list[list[Any]] = []  # per index: the values at that offset
        self.first_index: dict[Any, int] = {}
        self.last_index: dict[Any, int] = {}
        for index, offset in enumerate(self.offsets):
            values = sorted(log[offset], key=_value_sort_key)
            self.log_values.append(values)
            self.by_index.append(values[0])
            for v in values:
                self.first_index.setdefault(v, index)
                self.last_index[v] = index
            # A duplicated value maps to its last index, as Jepsen's index-seq does.
            self.by_value[values[0]] = index


def _value_sort_key(v: Any) -> tuple[int, Any]:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (0, v)
    return (1, repr(v))


def check(
    history: History,
    delivery: str = "exactly-once",
    *,
    ww_deps: bool = False,
    subscribe_allows_skips: bool = True,
    max_witnesses: int | None = None,
    **opts: Any,
) -> dict[str, Any]:
    """Check a queue history; see the module doc for what is checked.

    `delivery`: one of `DELIVERY_MODES`. `ww_deps`: infer write-write
    dependencies from log order for cycle search. `max_witnesses`: keep at
    most this many witnesses per anomaly (None keeps all; counts stay exact).
    Returns `{"valid", "delivery", "anomaly_types", "anomalies", "allowed",
    "stats"}`.
    """
    if delivery not in DELIVERY_MODES:
        raise ValueError(f"delivery {delivery!r} is not known; expected one of {', '.join(DELIVERY_MODES)}")
    if opts:
        raise TypeError(f"unknown option(s) {', '.join(sorted(opts))} for the queue checker; "
                        "accepted: delivery, ww_deps, subscribe_allows_skips, max_witnesses")
    if max_witnesses is not None and (not isinstance(max_witnesses, int) or max_witnesses < 1):
        raise ValueError(f"max_witnesses must be a positive integer or None, got {max_witnesses!r}")
    return _Analysis(history, ww_deps, subscribe_allows_skips).result(delivery, max_witnesses)


class _Analysis:
    def __init__(self, history: History, ww_deps: bool, subscribe_allows_skips: bool) -> None:
        self.history = history
        self.ww_deps = ww_deps
        self.subscribe_allows_skips = subscribe_allows_skips
        # anomaly name -> list of (data, op positions, allowed-by-rule flag)
        self.found: dict[str, list[tuple[dict[str, Any], list[int], bool]]] = defaultdict(list)
        self.stats: dict[str, Any] = {}
        self._collect()
        self._version_orders()
        self._simple_anomalies()
        self._lost_and_unseen()
        self._process_anomalies()
        self._internal_anomalies()
        self._cycles()

    # -- collection ---------------------------------------------------------------

    def _collect(self) -> None:
        h = self.history
        self.parsed: dict[int, _Parsed] = {}  # completion position -> reads/writes
        self.writer_of: dict[tuple[Any, Any], int] = {}
        self.ok_reads: dict[Any, set[Any]] = defaultdict(set)
        self.readers_of: dict[tuple[Any, Any], int] = {}  # first ok reader
        self.failed_writes: dict[Any, set[Any]] = defaultdict(set)
        counts = {"ok": 0, "info": 0, "fail": 0}
        for position, op in enumerate(h):
            if op.type == "invoke" or op.process == NEMESIS or op.f not in _DATA_FS:
                continue
            counts[op.type] += 1
            parsed = _parse(op)
            if not parsed.reads and not parsed.writes:
                continue
            self.parsed[position] = parsed
            for k, vs in parsed.writes.items():
                for v in vs:
                    self.writer_of[(k, v)] = position
                    if op.type == "fail":
                        self.failed_writes[k].add(v)
            if op.type == "ok":
                for k, vs in parsed.reads.items():
                    reads = self.ok_reads[k]
                    for v in vs:
                        reads.add(v)
                        self.readers_of.setdefault((k, v), position)
        self.stats["completions"] = counts

    def must_have_committed(self, position: int) -> bool:
        op = self.history[position]
        if op.type == "ok":
            return True
        if op.type != "info":
            return False
        for k, vs in self.parsed[position].writes.items():
            reads = self.ok_reads.get(k)
            if reads and any(v in reads for v in vs):
                return True
        return False

    def _version_orders(self) -> None:
        logs: dict[Any, dict[int, set[Any]]] = defaultdict(dict)
        self.committed: set[int] = set()
        for position, parsed in self.parsed.items():
            if parsed.writes and self.must_have_committed(position):
                self.committed.add(position)
                for k, offsets in parsed.write_offsets.items():
                    log = logs[k]
                    for offset, v in zip(offsets, parsed.writes[k]):
                        if offset is not None:
                            log.setdefault(offset, set()).add(v)
            for k, pairs in parsed.read_pairs.items():
                log = logs[k]
                for offset, v in pairs:
                    if offset is not None:
                        log.setdefault(offset, set()).add(v)
        self.orders: dict[Any, _Order] = {k: _Order(log) for k, log in logs.items()}
        for k, log in logs.items():
            for offset in sorted(log):
                if len(log[offset]) > 1:
                    values = sorted(log[offset], key=_value_sort_key)
                    writers = [self.writer_of[(k, v)] for v in values if (k, v) in self.writer_of]
                    self._add("inconsistent-offsets", {"key": k, "offset": offset, "values": values}, writers)
        self.stats["keys"] = len(self.orders)

    def _add(self, name: str, data: dict[str, Any], positions: Iterable[int], allowed: bool = False) -> None:
        self.found[name].append((data, list(dict.fromkeys(positions)), allowed))

    def _index(self, position: int) -> int:
        return self.history[position].index

    # -- anomalies ----------------------------------------------------------------

    def _simple_anomalies(self) -> None:
        for k, order in self.orders.items():
            seen: dict[Any, list[int]] = {}
            for index, values in enumerate(order.log_values):
                for v in values:
                    seen.setdefault(v, []).append(index)
            for v, indexes in seen.items():
                if len(indexes) > 1:
                    offsets = [order.offsets[i] for i in indexes]
                    positions = [p for p in (self.writer_of.get((k, v)), self.readers_of.get((k, v))) if p is not None]
                    self._add("duplicate", {"key": k, "value": v, "count": len(indexes), "offsets": offsets}, positions)
        for position, parsed in self.parsed.items():
            op = self.history[position]
            if op.type == "ok":
                for k, vs in parsed.reads.items():
                    failed = self.failed_writes.get(k)
                    if failed:
                        for v in vs:
                            if v in failed:
                                writer = self.writer_of[(k, v)]
                                self._add(
                                    "G1a",
                                    {"key": k, "value": v, "writer": self._index(writer), "reader": op.index},
                                    [writer, position],
                                )
            if parsed.reads and parsed.writes:
                for k, vs in parsed.writes.items():
                    reads = parsed.reads.get(k)
                    if reads:
                        bad = set(vs).intersection(reads)
                        if bad:
                            v = min(bad, key=_value_sort_key)
                            self._add("precommitted-read", {"key": k, "value": v, "op": op.index}, [position])

    def _lost_and_unseen(self) -> None:
        unseen_total = 0
        for k, reads in self.ok_reads.items():
            order = self.orders.get(k)
            if order is None:
                continue
            bound = max((order.first_index[v] for v in reads if v in order.first_index), default=-1)
            if bound < 0:
                continue
            max_read = next(
                (self.readers_of[(k, v)] for v in order.log_values[bound] if (k, v) in self.readers_of), None
            )
            for index in range(bound + 1):
                for v in order.log_values[index]:
                    if v in reads or order.last_index[v] > bound:
                        continue
                    writer = self.writer_of.get((k, v))
                    if writer is None or not self.must_have_committed(writer):
                        continue
                    data = {
                        "key": k,
                        "value": v,
                        "index": order.first_index[v],
                        "max_read_index": bound,
                        "writer": self._index(writer),
                        "max_read": self._index(max_read) if max_read is not None else None,
                    }
                    self._add("lost-write", data, [writer] + ([max_read] if max_read is not None else []))
        # unseen: acknowledged (ok) sends never read by an ok poll.
        unseen: dict[Any, list[tuple[Any, int]]] = defaultdict(list)
        for position, parsed in self.parsed.items():
            if self.history[position].type != "ok":
                continue
            for k, vs in parsed.writes.items():
                reads = self.ok_reads.get(k, ())
                for v in vs:
                    if v not in reads:
                        unseen[k].append((v, position))
        for k in sorted(unseen, key=_value_sort_key):
            entries = unseen[k]
            unseen_total += len(entries)
            values = [v for v, _ in entries]
            self._add(
                "unseen",
                {"key": k, "count": len(values), "values": values, "writers": [self._index(p) for _, p in entries]},
                [p for _, p in entries[:32]],
            )
        self.stats["unseen"] = unseen_total

    def _delta(
        self, k: Any, v1: Any, v2: Any, offset1: int | None = None, offset2: int | None = None
    ) -> tuple[int, int | None, int | None]:
        """Distance from v1 to v2 in the version order of k (1 = adjacent).

        Uses the offsets the op itself reported when both are known (so a
        duplicated value, which sits at several offsets, is placed where this
        op saw it), else each value's index as Jepsen does; 1 when unknown.
        """
        order = self.orders.get(k)
        if order is None:
            return 1, None, None
        if offset1 is not None and offset2 is not None:
            i1 = order.index_of_offset.get(offset1)
            i2 = order.index_of_offset.get(offset2)
        else:
            i1 = order.by_value.get(v1)
            i2 = order.by_value.get(v2)
        if i1 is None or i2 is None:
            return 1, i1, i2
        return i2 - i1, i1, i2

    def _process_anomalies(self) -> None:
        h = self.history
        last_reads: dict[Any, dict[Any, int]] = defaultdict(dict)  # process -> key -> position
        last_sends: dict[Any, dict[Any, int]] = defaultdict(dict)
        subscribed: dict[Any, bool] = {}
        for position, op in enumerate(h):
            if op.type == "invoke" or op.process == NEMESIS:
                continue
            process = op.process
            if op.f in _ASSIGN_FS:
                if op.type in ("ok", "info"):
                    keep = {_norm_key(k) for k in (op.value or ())}
                    for table in (last_reads, last_sends):
                        current = table[process]
                        table[process] = {k: p for k, p in current.items() if k in keep}
                    subscribed[process] = op.f == "subscribe"
                continue
            parsed = self.parsed.get(position)
            if parsed is None:
                continue
            if parsed.reads:
                reads_table = last_reads[process]
                for k, vs in parsed.reads.items():
                    if not vs:
                        continue
                    previous = reads_table.get(k)
                    if previous is not None:
                        offset, v = self.parsed[previous].read_pairs[k][-1]
                        v2 = vs[0]
                        delta, i1, i2 = self._delta(k, v, v2, offset, parsed.read_pairs[k][0][0])
                        allowed = self.subscribe_allows_skips and subscribed.get(process, False)
                        if delta > 1:
                            skipped = self.orders[k].by_index[i1 + 1 : i2]
                            self._add(
                                "poll-skip",
                                {"key": k, "process": process, "values": [v, v2], "delta": delta,
                                 "skipped": skipped, "ops": [self._index(previous), op.index]},
                                [previous, position],
                                allowed,
                            )
                        elif delta < 1:
                            self._add(
                                "nonmonotonic-poll",
                                {"key": k, "process": process, "values": [v, v2], "delta": delta,
                                 "ops": [self._index(previous), op.index]},
                                [previous, position],
                                allowed,
                            )
                    if op.type == "ok":
                        reads_table[k] = position
            if parsed.writes and op.type in ("ok", "info"):
                sends_table = last_sends[process]
                for k, vs in parsed.writes.items():
                    previous = sends_table.get(k)
                    if previous is not None:
                        v = self.parsed[previous].writes[k][-1]
                        offset = self.parsed[previous].write_offsets[k][-1]
                        delta, _, _ = self._delta(k, v, vs[0], offset, parsed.write_offsets[k][0])
                        if delta < 1:
                            self._add(
                                "nonmonotonic-send",
                                {"key": k, "process": process, "values": [v, vs[0]], "delta": delta,
                                 "ops": [self._index(previous), op.index]},
                                [previous, position],
                            )
                    sends_table[k] = position

    def _internal_anomalies(self) -> None:
        for position, parsed in self.parsed.items():
            op = self.history[position]
            rebalanced: set[Any] = set()
            log = op.extra.get("rebalance-log") if op.extra else None
            if log:
                for event in log:
                    if isinstance(event, Mapping):
                        rebalanced.update(_norm_key(k) for k in event.get("keys", ()) or ())
            for kind, groups in (("poll", parsed.reads), ("send", parsed.writes)):
                for k, vs in groups.items():
                    if kind == "poll" and k in rebalanced:
                        continue
                    if kind == "poll":
                        offsets = [offset for offset, _ in parsed.read_pairs[k]]
                    else:
                        offsets = parsed.write_offsets[k]
                    for j in range(len(vs) - 1):
                        v1, v2 = vs[j], vs[j + 1]
                        delta, i1, i2 = self._delta(k, v1, v2, offsets[j], offsets[j + 1])
                        if delta > 1:
                            skipped = self.orders[k].by_index[i1 + 1 : i2]
                            self._add(
                                f"int-{kind}-skip",
                                {"key": k, "values": [v1, v2], "delta": delta, "skipped": skipped, "op": op.index},
                                [position],
                                kind == "send",
                            )
                        elif delta < 1:
                            self._add(
                                f"int-nonmonotonic-{kind}",
                                {"key": k, "values": [v1, v2], "delta": delta, "op": op.index},
                                [position],
                            )

    # -- cycles -------------------------------------------------------------------

    def _cycles(self) -> None:
        h = self.history
        graph = nx.DiGraph()
        # wr: the writer of each value read -> each ok op that read it.
        for position, parsed in self.parsed.items():
            op = h[position]
            if op.type != "ok":
                continue
            for k, vs in parsed.reads.items():
                for v in vs:
                    writer = self.writer_of.get((k, v))
                    if writer is None or writer == position or writer not in self.committed:
                        continue
                    _link(graph, writer, position, "wr", k, v, None)
        if self.ww_deps:
            for k, order in self.orders.items():
                previous_writer = None
                previous_value = None
                for v in order.by_index:
                    writer = self.writer_of.get((k, v))
                    if writer is None or writer not in self.committed:
                        previous_writer = None
                        continue
                    if previous_writer is not None and previous_writer != writer:
                        _link(graph, previous_writer, writer, "ww", k, previous_value, v)
                    previous_writer, previous_value = writer, v
        self.stats["dependency_edges"] = graph.number_of_edges()
        in_data_cycle: set[int] = set()
        for component in nx.strongly_connected_components(graph):
            if len(component) > 1:
                in_data_cycle.update(component)
                self._report_cycle(graph.subgraph(component), "")
        if graph.number_of_nodes() == 0:
            return
        nodes = sorted(graph.nodes)
        ordered = _order_edges(h, nodes)
        for suffix, extra_edges in ordered:
            augmented = graph.copy()
            for a, b, data in extra_edges:
                if not augmented.has_edge(a, b):
                    augmented.add_edge(a, b, deps={})
                augmented[a][b]["deps"].setdefault(data["type"], data)
            for component in nx.strongly_connected_components(augmented):
                if len(component) > 1 and not component <= in_data_cycle:
                    if self._report_cycle(augmented.subgraph(component), suffix):
                        in_data_cycle.update(component)

    def _report_cycle(self, component: nx.DiGraph, suffix: str) -> bool:
        """Report the shortest cycle through the component's lowest op.

        In the process and realtime passes, a cycle that does not need the
        new kind of edge was already reported by an earlier pass: skip it.
        """
        cycle = _shortest_cycle(component)
        steps = []
        kinds = set()
        node_positions = [a for a, _ in cycle]
        number = {p: i for i, p in enumerate(node_positions)}
        for a, b in cycle:
            deps = component[a][b]["deps"]
            for preferred in ("wr", "ww", "process", "realtime"):
                if preferred in deps:
                    kind = preferred
                    break
            d = deps[kind]
            kinds.add(kind)
            step = {"type": kind, "from": number[a], "to": number[b]}
            if kind in ("wr", "ww"):
                step["key"] = d["key"]
                step["value"] = d["value"]
                if kind == "ww":
                    step["value_after"] = d["value_after"]
            elif kind == "process":
                step["process"] = self.history[a].process
            else:
                step["completed"] = self._index(a)
                step["invoked"] = d["invoked"]
            steps.append(step)
        if suffix and suffix[1:] not in kinds:
            return False
        base = "G1c" if "wr" in kinds else "G0"
        name = base + ("-realtime" if "realtime" in kinds else "-process" if "process" in kinds else "")
        allowed = base == "G0" or self.ww_deps
        data = {"ops": [self._index(p) for p in node_positions], "steps": steps}
        self._add(name, data, node_positions, allowed)
        return True

    # -- result -------------------------------------------------------------------

    def result(self, delivery: str, max_witnesses: int | None) -> dict[str, Any]:
        h = self.history
        mode_allowed = _MODE_ALLOWED[delivery]
        anomalies: dict[str, list[dict[str, Any]]] = {}
        allowed: dict[str, list[dict[str, Any]]] = {}
        counts: dict[str, int] = {}
        for name in ANOMALY_NAMES:
            for data, positions, allowed_by_rule in self.found.get(name, ()):
                target = allowed if (allowed_by_rule or name in mode_allowed) else anomalies
                bucket = target.setdefault(name, [])
                key = name if target is anomalies else "allowed:" + name
                counts[key] = counts.get(key, 0) + 1
                if max_witnesses is not None and len(bucket) >= max_witnesses:
                    continue
                witness = dict(data)
                witness["op_indexes"] = [h[p].index for p in positions]
                witness["processes"] = [h[p].process for p in positions]
                witness["op_maps"] = [op_to_dict(h[p]) for p in positions]
                witness["explanation"] = explain(name, data)
                bucket.append(witness)
        judged = self.stats["completions"]["ok"] > 0
        valid: bool | str = False if anomalies else (True if judged else "unknown")
        stats = dict(self.stats)
        stats["anomaly_counts"] = {k: v for k, v in counts.items() if not k.startswith("allowed:")}
        stats["allowed_counts"] = {k[len("allowed:"):]: v for k, v in counts.items() if k.startswith("allowed:")}
        stats["ops"] = len(h)
        return {
            "valid": valid,
            "delivery": delivery,
            "anomaly_types": sorted(anomalies),
            "anomalies": anomalies,
            "allowed": allowed,
            "stats": stats,
        }


def _link(graph: nx.DiGraph, a: int, b: int, kind: str, key: Any, value: Any, value_after: Any) -> None:
    if not graph.has_edge(a, b):
        graph.add_edge(a, b, deps={})
    deps = graph[a][b]["deps"]
    if kind not in deps:
        deps[kind] = {"type": kind, "key": key, "value": value, "value_after": value_after}


def _order_edges(h: History, nodes: list[int]) -> list[tuple[str, list[tuple[int, int, dict[str, Any]]]]]:
    """Process-order edges, then realtime edges, among the given completion positions.

    Realtime edges form a transitive reduction: an op links from the
    frontier of ops that completed (ok) before its invocation and are not
    already implied by another frontier op, which keeps the edge count small.
    """
    by_process: dict[Any, list[int]] = defaultdict(list)
    for p in nodes:
        by_process[h[p].process].append(p)
    process_edges = []
    for process, positions in by_process.items():
        if process is None:
            continue
        for a, b in zip(positions, positions[1:]):
            if h[a].type == "ok":
                process_edges.append((a, b, {"type": "process"}))
    # Realtime: walk events in history order. An invocation links from the
    # current frontier; a completion joins the frontier and evicts the ops it
    # follows (they are implied through it).
    events: list[tuple[int, int, int]] = []  # (history position, kind, node); kind 0 = invoke, 1 = complete
    for p in nodes:
        invocation = h.invocation_position(p)
        events.append((invocation if invocation >= 0 else p, 0, p))
        if h[p].type == "ok":
            events.append((p, 1, p))
    events.sort()
    frontier: set[int] = set()
    preds: dict[int, set[int]] = {}
    realtime_edges = []
    for position, kind, node in events:
        if kind == 0:
            preds[node] = set(frontier)
            for a in frontier:
                realtime_edges.append((a, node, {"type": "realtime", "invoked": h[position].index}))
        else:
            frontier -= preds.get(node, set())
            frontier.add(node)
    return [("-process", process_edges), ("-realtime", process_edges + realtime_edges)]


def _shortest_cycle(component: nx.DiGraph) -> list[tuple[int, int]]:
    """A short cycle in a strongly connected component, as (a, b) edges, starting at its lowest node."""
    start = min(component.nodes)
    best: list[int] | None = None
    for successor in component.successors(start):
        try:
            path = nx.shortest_path(component, successor, start)
        except nx.NetworkXNoPath:
            continue
        if best is None or len(path) < len(best):
            best = path
    assert best is not None, "a strongly connected component with more than one node has a cycle"
    nodes = [start] + best[:-1]
    return [(nodes[i], nodes[(i + 1) % len(nodes)]) for i in range(len(nodes))]
