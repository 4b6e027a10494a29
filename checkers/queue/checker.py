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
   of keys still assigned, and an assign with `seek-to-beginning?` forgets
   the process's poll positions), `nonmonotonic-send` (a process's successive sends
   to a key go back), `int-poll-skip`, `int-nonmonotonic-poll`,
   `int-send-skip`, `int-nonmonotonic-send` (the same within one op; keys in
   the op's `rebalance-log` are exempt for polls; distances use the offsets
   the ops reported where known, which keeps a duplicated value from reading
   as a jump backwards; sends that go back are in order when a copy of the
   first lies before the second, a retry whose first attempt landed in order
   and is a `duplicate`), and transaction cycles
   `G0` (ww only), `G1c` (with a wr edge), with `-process` / `-realtime`
   variants when the cycle needs process or realtime order; and, from the
   watermarks the clients recorded (completion fields `high-watermarks` and
   `listed-high-watermarks`, absent from older histories, which then check as
   before), `read-above-watermark` (an op read an offset at or above the high
   watermark its client saw with that op) and `watermark-regression` (the high
   watermark ListOffsets gave the final reads lies at or below an offset
   already read or acknowledged under acks=all); `_Analysis._watermarks` gives
   the exact rules and why a new leader's lagging watermark (KIP-207) is neither.
4. What is allowed (reported under `allowed`, not as errors):
   always `int-send-skip` and `G0`/`G0-process`/`G0-realtime` (Kafka does not
   isolate writes: transactions interleave their sends); `G1c*` when ww
   dependencies are inferred (a cycle t0 <ww t1 <wr t0 is then normal);
   `poll-skip` and `nonmonotonic-poll` by a process consuming via `subscribe`
   (the group may rebalance between polls); under `at-most-once` also
   `lost-write` and `unseen`; under `at-least-once` also `duplicate`.

Complexity: O(n log n) in the number of micro-op entries. Nothing is stored
per op but a byte for ok and 8 for the process: the history is parsed in two
passes, so a streamed history (`History.stream_jsonl`) is read from its file a
few times and never held. Cycle search considers only the spans of history a
cycle can lie in (`_cycle_spans`: between an op and an earlier op that read
or followed its value; none when every send completes before its messages are
read), then trims the dependency graph (Kahn's algorithm, linear), so networkx
only sees the ops that may lie on a cycle; realtime order is encoded with one
virtual node per completion, so the graph stays linear in the number of ops. Measured on a
shared 2-core machine (load ~3): 1,000,000 ops (500k sends, 500k polls, 8
keys) checked in 19.5 s of CPU, peak RSS 1.4 GiB including the 0.95 GiB
history itself.

Thread-safety: pure functions; safe from any thread.

Sources: Jepsen `jepsen.tests.kafka` (Kingsbury, 2022; the Redpanda 21.10.1
analysis, jepsen.io/analyses/redpanda-21.10.1); Kafka's KIP-101, KIP-207 and
KIP-279 for the watermark rules; Adya, "Weak Consistency"
(MIT PhD thesis, 1999) for G0, G1a, G1c; Elle (Kingsbury & Alvaro, VLDB
2020) for cycle classification with process and realtime edges.
"""

from __future__ import annotations

import array
import bisect
import functools
import heapq
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from checkers.core import check_options, witnesses_omitted
from checkers.faults import nemesis_windows
from checkers.history import NEMESIS, History, Op, gc_paused, op_to_dict
from checkers.queue.delivery import DELIVERY_NAMES, Delivery, judge_promises, parse_delivery
from checkers.queue.explain import explain, summarize

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["ANOMALY_NAMES", "DELIVERY_MODES", "FINAL_READ_SHORT", "NEEDS_FINAL_READS", "check", "short_final_reads"]

DELIVERY_MODES = DELIVERY_NAMES
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
    "read-above-watermark",
    "watermark-regression",
    "hanging-transaction",
    "missing-marker",
    *CYCLE_NAMES,
)
_DATA_FS = frozenset({"send", "poll", "txn"})
_ASSIGN_FS = frozenset({"assign", "subscribe"})
# Completion fields with the watermarks a client saw (workloads.queue): key -> offset.
FETCHED_WATERMARKS = "high-watermarks"  # of the last fetch response, read back after the poll
LISTED_WATERMARKS = "listed-high-watermarks"  # ListOffsets answers of the final reads, after healing
# A final read that stopped (no progress for a while) below a watermark it listed: key -> [next offset it
# would have read, listed high watermark]. Its run's final reads are incomplete (see `check`).
FINAL_READ_SHORT = "final-read-short"
# With FINAL_READ_SHORT, from a read_committed final read: key -> the last stable offset ListOffsets gave it when
# it stopped, how long it had gone without progress, and the producers' transaction timeout.
LAST_STABLE_OFFSETS = "last-stable-offsets"
STALLED_S = "stalled-s"
TRANSACTION_TIMEOUT_MS = "transaction-timeout-ms"
# From a read_committed final read that completed, a second read of the same keys at read_uncommitted (every data
# record, aborted ones too, and no control record): key -> [[offset, value], ...], and key -> [first offset read
# from, offset read up to] (a high watermark listed after the read_committed read ended). The offsets in that
# range without a record are control records: the commit and abort markers (`_missing_markers`).
UNCOMMITTED_LOG = "read-uncommitted-log"
UNCOMMITTED_RANGE = "read-uncommitted-range"
# How many of a key's missing markers get a search for the likeliest window to name (`_likeliest_without`); the
# rest are named as the matching left them. The count is exact either way.
WITNESS_SEARCHES = 20
# How long after a fault ends a leader change it caused may still show in a client's cached high watermark
# (`read-above-watermark`): a new leader's high watermark catches up within a replication round, and a
# consumer's next fetch response (librdkafka waits at most fetch.wait.max.ms, 500 ms) replaces the cached one.
LEADER_SETTLE_S = 5.0
# Anomalies that only complete final reads can establish: without them an acknowledged send that no
# read returned may be lost or merely unread.
NEEDS_FINAL_READS = frozenset({"unseen"})


class QueueHistoryError(ValueError):
    """A queue history whose values do not follow the kafka workload's shape."""


@functools.lru_cache(maxsize=1 << 16)
def _norm_str_key(k: str) -> Any:
    body = k[1:] if k[:1] == "-" else k
    return int(k) if body.isdigit() else k


def _norm_key(k: Any) -> Any:
    # JSON map keys are strings: a poll read back from JSONL says "2" where the
    # send said 2. Treat integer-looking strings as integers so both agree.
    if isinstance(k, str):
        return _norm_str_key(k)
    if isinstance(k, list):
        return tuple(_hashable(x) for x in k)
    return k


def _hashable(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_hashable(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((repr(k), _hashable(x)) for k, x in v.items()))
    return v



_Pairs = dict  # key -> list of (offset | None, value), in micro-op order


def _parse(op: Op) -> tuple[_Pairs, _Pairs]:
    """(reads, writes) of one completion: key -> [(offset, value), ...] in mop order.

    Not stored: the analysis parses each op twice instead, which costs a few
    microseconds per op and keeps memory to the history itself.
    """
    reads: dict[Any, list[tuple[Any, Any]]] = {}
    writes: dict[Any, list[tuple[Any, Any]]] = {}
    value = op.value
    if value is None:
        return reads, writes
    if not isinstance(value, (list, tuple)):
        raise QueueHistoryError(f"op {op.index}: a {op.f} op's value must be a list of micro-ops, got {value!r:.100}")
    completed = op.type != "invoke"
    for mop in value:
        if not isinstance(mop, (list, tuple)) or not mop:
            raise QueueHistoryError(
                f"op {op.index}: expected a micro-op like [\"send\", k, v] or [\"poll\", ...], got {mop!r:.100}"
            )
        name = mop[0]
        if name == "send":
            if len(mop) != 3:
                raise QueueHistoryError(f"op {op.index}: expected [\"send\", key, value], got {mop!r:.100}")
            v = mop[2]
            offset = None
            if completed and isinstance(v, (list, tuple)):
                if len(v) != 2:
                    raise QueueHistoryError(
                        f"op {op.index}: a completed send is [\"send\", key, [offset, value]], got {mop!r:.100}"
                    )
                offset, v = v[0], v[1]
            if v.__class__ is list or v.__class__ is dict:
                v = _hashable(v)
            k = mop[1]
            if k.__class__ is not int:
                k = _norm_key(k)
            entry = writes.get(k)
            if entry is None:
                writes[k] = [(offset, v)]
            else:
                entry.append((offset, v))
        elif name == "poll":
            if len(mop) < 2 or mop[1] is None:
                continue  # an invocation's [poll], or a poll with no result
            results = mop[1]
            if not isinstance(results, Mapping):
                raise QueueHistoryError(
                    f"op {op.index}: a completed poll is [\"poll\", {{key: [[offset, value], ...]}}], got {mop!r:.100}"
                )
            for raw_key, pairs in results.items():
                if not pairs:
                    continue
                k = raw_key if raw_key.__class__ is int else _norm_key(raw_key)
                entry = reads.get(k)
                if entry is None:
                    entry = reads[k] = []
                for pair in pairs:
                    if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                        raise QueueHistoryError(
                            f"op {op.index}: poll results are [offset, value] pairs, got {pair!r:.100} for key {raw_key!r}"
                        )
                    v = pair[1]
                    if v.__class__ is list or v.__class__ is dict:
                        v = _hashable(v)
                    entry.append((pair[0], v))
        else:
            raise QueueHistoryError(
                f"op {op.index}: unknown micro-op {name!r} in {mop!r:.100}; expected \"send\" or \"poll\""
            )
    return reads, writes


def _value_sort_key(v: Any) -> tuple[int, Any]:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (0, v)
    return (1, repr(v))


_MISSING = object()


def _copies_in_order(order: _Order | None, v1: Any, v2: Any) -> bool:
    """Whether some copy of v1 lies before some copy of v2 in the log.

    A send acknowledged at an offset after a later send's may be a retry whose
    first attempt was written in order, before the later send, and whose answer
    was lost. Kafka's producer keeps its order only per connection: a batch in
    flight to a deposed leader is retried after the next batch has gone to the
    new one, even with max.in.flight.requests.per.connection=1. Those two sends
    are in order; the second copy is a `duplicate`, reported (or allowed) as such.
    """
    if order is None:
        return False
    first = order.duplicates.get(v1, (order.by_value.get(v1),))[0]
    last = order.by_value.get(v2)
    return first is not None and last is not None and first < last


class _Order:
    """The version order of one key: a dense index per occupied offset.

    `by_index[i]` is the value at the i-th occupied offset (the least value
    when the offset is inconsistent); `by_value[v]` the last index where v
    appears; `duplicates[v]` every index of a value seen at several offsets;
    `conflicts[offset]` every value of an inconsistent offset.
    """

    __slots__ = ("offsets", "index_of_offset", "by_index", "by_value", "duplicates", "conflicts")

    def __init__(self, log: dict[int, Any], conflicts: dict[int, set[Any]]) -> None:
        self.offsets: list[int] = sorted(log)
        self.index_of_offset: dict[int, int] = {}
        self.by_index: list[Any] = []
        self.by_value: dict[Any, int] = {}
        self.duplicates: dict[Any, list[int]] = {}
        self.conflicts = conflicts
        for index, offset in enumerate(self.offsets):
            self.index_of_offset[offset] = index
            values = sorted(conflicts[offset], key=_value_sort_key) if offset in conflicts else (log[offset],)
            self.by_index.append(values[0])
            for v in values:
                previous = self.by_value.get(v)
                if previous is not None:
                    self.duplicates.setdefault(v, [previous]).append(index)
                self.by_value[v] = index

    def values_at(self, index: int) -> Iterable[Any]:
        conflict = self.conflicts.get(self.offsets[index]) if self.conflicts else None
        return sorted(conflict, key=_value_sort_key) if conflict else (self.by_index[index],)

    def first_index(self, v: Any) -> int | None:
        dup = self.duplicates.get(v)
        return dup[0] if dup else self.by_value.get(v)


def check(
    history: History,
    delivery: str | Delivery = "exactly-once",
    *,
    ww_deps: bool = False,
    subscribe_allows_skips: bool = True,
    max_witnesses: int | None = None,
    final_reads_incomplete: str | None = None,
    acks: str | None = None,
    **opts: Any,
) -> dict[str, Any]:
    """Check a queue history; see the module doc for what is checked.

    `delivery`: a `Delivery` or one of `DELIVERY_MODES` (`checkers.queue.delivery`).
    `ww_deps`: infer write-write dependencies from log order for cycle search.
    `max_witnesses`: keep at most this many witnesses per anomaly, the first
    ones found (None keeps all; counts stay exact, and `stats["witnesses_omitted"]`
    / `stats["allowed_witnesses_omitted"]` say how many of each were left out). `final_reads_incomplete`: why the run's final reads
    did not complete, if they did not (None: whatever the history says, `short_final_reads`): then nothing can be called unseen, so a
    verdict that rests on that (VALID, or INVALID by `unseen` alone) is
    "unknown" and the "nothing lost" promise is unknown unless a lost write
    broke it; `unseen` is then left out of the anomalies (an INVALID run lists
    only its other ones) and counted in `stats["unjudged"]`. `acks`: the producers' acks ("0", "1" or "all"); None takes the
    delivery's ("1" for at-most-once, else "all"). Only sends acknowledged under
    acks=all count as committed for `watermark-regression`. Returns `{"valid", "delivery", "anomaly_types", "anomalies",
    "allowed", "promises", "stats"}` (+ `reason`, `message` when unknown for
    that reason); `stats["anomaly_summaries"]` says in one sentence what each
    anomaly's count counts.
    """
    if isinstance(delivery, str):
        delivery = parse_delivery(delivery)
    elif not isinstance(delivery, Delivery):
        raise ValueError(f"delivery must be a Delivery or one of {', '.join(DELIVERY_MODES)}, got {delivery!r}")
    check_options("queue", opts, "delivery, ww_deps, subscribe_allows_skips, max_witnesses, final_reads_incomplete, "
                  "acks", max_witnesses)
    if final_reads_incomplete is None:
        final_reads_incomplete = short_final_reads(history)
    if acks is None:
        acks = "1" if delivery.mode == "at-most-once" else "all"
    if acks not in ("0", "1", "all", "-1"):
        raise ValueError(f"acks {acks!r} is not accepted; expected 0, 1 or all")
    with gc_paused():
        return _Analysis(history, ww_deps, subscribe_allows_skips, acks in ("all", "-1")).result(
            delivery, max_witnesses, final_reads_incomplete)


def short_final_reads(history: History) -> str | None:
    """Why the final reads are incomplete, from the history itself: an ok final read that recorded keys it
    left below the high watermarks it listed (`FINAL_READ_SHORT`); None when there is none.

    The broker said those offsets were committed and the read could not get them (a stalled client, a
    partition without a leader, or records gone after ListOffsets answered), so an acknowledged send in
    that range was not shown lost; the field makes `logquake check` of a copied history agree with the run.
    """
    for op in history:
        short = op.extra.get(FINAL_READ_SHORT) if op.type == "ok" else None
        if isinstance(short, Mapping) and short:
            keys = ", ".join(f"key {k} at offset {pair[0]} of {pair[1]}" if isinstance(pair, (list, tuple))
                             and len(pair) == 2 else f"key {k}" for k, pair in sorted(short.items(), key=str))
            return f"the final read stopped below the high watermarks it listed ({keys})"
    return None


class _Analysis:
    def __init__(self, history: History, ww_deps: bool, subscribe_allows_skips: bool,
                 acks_commit: bool = True) -> None:
        self.history = history
        # a plain list (the fastest indexing in the hot loops), or a streamed history's file (each pass reads
        # it again, and the hot loops ask `self.ok` and `self.process_code` instead of fetching an op)
        self.ops = history.op_sequence()
        self.ok = bytearray(len(self.ops))  # 1 at the position of every ok completion of a data op
        # the process of every data op, as an integer (`_process_code`); 0 elsewhere
        self.process_code = array.array("q", bytes(8 * len(self.ops)))
        self._process_codes: dict[Any, int] = {}
        self.ww_deps = ww_deps
        self.subscribe_allows_skips = subscribe_allows_skips
        # anomaly name -> list of (data, op positions, allowed-by-rule flag)
        self.found: dict[str, list[tuple[dict[str, Any], list[int], bool]]] = defaultdict(list)
        self.stats: dict[str, Any] = {}
        self._pass_one()
        self._build_orders()
        self._order_anomalies()
        self._pass_two()
        self._cycles()
        self._watermarks(acks_commit)
        self._hanging_transactions()
        self._missing_markers()

    def _add(self, name: str, data: dict[str, Any], positions: Iterable[int], allowed: bool = False) -> None:
        self.found[name].append((data, list(dict.fromkeys(positions)), allowed))

    def _index(self, position: int) -> int:
        return self.ops[position].index

    def _data_positions(self) -> Iterable[tuple[int, Op]]:
        for position, op in enumerate(self.ops):
            if op.type != "invoke" and op.f in _DATA_FS and op.process != NEMESIS:
                yield position, op

    # -- pass one: writers, reads, logs ------------------------------------------------

    def _pass_one(self) -> None:
        self.writer_of: dict[Any, dict[Any, int]] = defaultdict(dict)  # key -> value -> completion position
        self.ok_reads: dict[Any, set[Any]] = defaultdict(set)
        self.failed_writes: dict[Any, set[Any]] = defaultdict(set)
        self.logs: dict[Any, dict[int, Any]] = defaultdict(dict)
        self.conflicts: dict[Any, dict[int, set[Any]]] = defaultdict(dict)
        self.committed_info: set[int] = set()
        info_sends: list[int] = []
        counts = {"ok": 0, "info": 0, "fail": 0}
        process_code, codes = self.process_code, self._process_codes
        for position, op in self._data_positions():
            counts[op.type] += 1
            if op.type == "ok":
                self.ok[position] = 1
            process = op.process
            # other values (None, a name, an integer out of range) get negative codes, one each
            code = process if process.__class__ is int and 0 <= process < 1 << 62 else codes.setdefault(
                process, -1 - len(codes))
            process_code[position] = code
            reads, writes = _parse(op)
            for k, pairs in writes.items():
                writers = self.writer_of[k]
                for offset, v in pairs:
                    writers[v] = position
                if op.type == "ok":
                    for offset, v in pairs:
                        if offset is not None:
                            self._log(k, offset, v)
                elif op.type == "fail":
                    self.failed_writes[k].update(v for _, v in pairs)
            if writes and op.type == "info":
                info_sends.append(position)
            ok = op.type == "ok"
            for k, pairs in reads.items():
                for offset, v in pairs:
                    if offset is not None:
                        self._log(k, offset, v)
                if ok:
                    self.ok_reads[k].update(v for _, v in pairs)
        # An info send committed if an ok poll read one of its values.
        for position in info_sends:
            _, writes = _parse(self.ops[position])
            if any(v in self.ok_reads.get(k, ()) for k, pairs in writes.items() for _, v in pairs):
                self.committed_info.add(position)
                for k, pairs in writes.items():
                    for offset, v in pairs:
                        if offset is not None:
                            self._log(k, offset, v)
        self.stats["data_ops"] = counts  # completions of the send, poll and txn ops judged here

    def _log(self, k: Any, offset: int, v: Any) -> None:
        log = self.logs[k]
        current = log.get(offset, _MISSING)
        if current is _MISSING:
            log[offset] = v
        elif current != v:
            self.conflicts[k].setdefault(offset, {current}).add(v)

    def committed(self, position: int) -> bool:
        """The send at `position` must have committed: ok, or info and read."""
        return self.ok[position] == 1 or position in self.committed_info

    def _build_orders(self) -> None:
        self.orders: dict[Any, _Order] = {
            k: _Order(log, self.conflicts.get(k, {})) for k, log in self.logs.items()
        }
        del self.logs
        self.stats["keys"] = len(self.orders)
        self.stats["messages"] = sum(len(o.offsets) for o in self.orders.values())

    # -- anomalies of the logs themselves ------------------------------------------------

    def _order_anomalies(self) -> None:
        needed_readers: set[tuple[Any, Any]] = set()
        duplicates = []
        for k in sorted(self.orders, key=_value_sort_key):
            order = self.orders[k]
            for offset in sorted(order.conflicts):
                values = sorted(order.conflicts[offset], key=_value_sort_key)
                writers = [self.writer_of[k][v] for v in values if v in self.writer_of.get(k, {})]
                self._add("inconsistent-offsets", {"key": k, "offset": offset, "values": values}, writers)
            for v, indexes in order.duplicates.items():
                duplicates.append((k, v, indexes))
                needed_readers.add((k, v))
        lost = []
        for k in sorted(self.ok_reads, key=_value_sort_key):
            reads = self.ok_reads[k]
            order = self.orders.get(k)
            if order is None:
                continue
            bound = -1
            for v in reads:
                index = order.first_index(v)
                if index is not None and index > bound:
                    bound = index
            if bound < 0:
                continue
            max_read_value = next((v for v in order.values_at(bound) if v in reads), order.by_index[bound])
            writers = self.writer_of.get(k, {})
            for index in range(bound + 1):
                for v in order.values_at(index):
                    if v in reads or order.by_value[v] > bound:
                        continue
                    writer = writers.get(v)
                    if writer is None or not self.committed(writer):
                        continue
                    lost.append((k, v, order.first_index(v), bound, writer, max_read_value))
                    needed_readers.add((k, max_read_value))
        readers = self._first_ok_readers(needed_readers)
        for k, v, indexes in duplicates:
            order = self.orders[k]
            positions = [p for p in (self.writer_of.get(k, {}).get(v), readers.get((k, v))) if p is not None]
            offsets = [order.offsets[i] for i in indexes]
            self._add("duplicate", {"key": k, "value": v, "count": len(indexes), "offsets": offsets}, positions)
        for k, v, index, bound, writer, max_read_value in lost:
            max_read = readers.get((k, max_read_value))
            data = {
                "key": k,
                "value": v,
                "index": index,
                "max_read_index": bound,
                "writer": self._index(writer),
                "max_read": self._index(max_read) if max_read is not None else None,
            }
            self._add("lost-write", data, [writer] + ([max_read] if max_read is not None else []))
        # unseen: acknowledged (ok) sends that no ok poll read.
        unseen_total = 0
        ok = self.ok
        for k in sorted(self.writer_of, key=_value_sort_key):
            reads = self.ok_reads.get(k, ())
            entries = [(v, p) for v, p in self.writer_of[k].items() if v not in reads and ok[p]]
            if not entries:
                continue
            entries.sort(key=lambda e: e[1])
            unseen_total += len(entries)
            values = [v for v, _ in entries]
            self._add(
                "unseen",
                {"key": k, "count": len(values), "values": values, "writers": [self._index(p) for _, p in entries]},
                [p for _, p in entries[:32]],
            )
        self.stats["unseen"] = unseen_total

    def _first_ok_readers(self, needed: set[tuple[Any, Any]]) -> dict[tuple[Any, Any], int]:
        found: dict[tuple[Any, Any], int] = {}
        if not needed:
            return found
        keys = {k for k, _ in needed}
        for position, op in self._data_positions():
            if op.type != "ok":
                continue
            reads, _ = _parse(op)
            for k, pairs in reads.items():
                if k in keys:
                    for _, v in pairs:
                        if (k, v) in needed and (k, v) not in found:
                            found[(k, v)] = position
            if len(found) == len(needed):
                break
        return found

    # -- pass two: per op and per process ------------------------------------------------

    def _delta(self, order: _Order | None, v1: Any, v2: Any, offset1: Any, offset2: Any) -> tuple[int, int | None, int | None]:
        """Distance from v1 to v2 in the version order (1 = adjacent).

        Uses the offsets the ops reported when both are known (so a duplicated
        value, which sits at several offsets, is placed where this op saw it),
        else each value's index as Jepsen does; 1 when unknown.
        """
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

    def _pass_two(self) -> None:
        h = self.ops
        ok_at = self.ok
        orders = self.orders
        committed_info = self.committed_info
        last_reads: dict[Any, dict[Any, tuple[int, Any, Any]]] = defaultdict(dict)  # process -> key -> (pos, offset, value)
        last_sends: dict[Any, dict[Any, tuple[int, Any, Any]]] = defaultdict(dict)
        subscribed: dict[Any, bool] = {}
        self.succ: dict[int, list[int]] = defaultdict(list)  # data dependency edges (wr, ww)
        for position, op in enumerate(h):
            if op.type == "invoke" or op.process == NEMESIS:
                continue
            process = op.process
            if op.f in _ASSIGN_FS:
                if op.type in ("ok", "info"):
                    keep = {_norm_key(k) for k in (op.value or ())}
                    if op.extra and (op.extra.get("seek-to-beginning?") or op.extra.get("seek_to_beginning")):
                        # The consumer rewinds to the log start on purpose:
                        # re-reading is then no nonmonotonic poll.
                        last_reads.pop(process, None)
                    for table in (last_reads, last_sends):
                        current = table.get(process)
                        if current:
                            table[process] = {k: e for k, e in current.items() if k in keep}
                    subscribed[process] = op.f == "subscribe"
                continue
            if op.f not in _DATA_FS:
                continue
            reads, writes = _parse(op)
            if not reads and not writes:
                continue
            ok = op.type == "ok"
            # G1a and precommitted reads
            if ok:
                for k, pairs in reads.items():
                    failed = self.failed_writes.get(k)
                    if failed:
                        for _, v in pairs:
                            if v in failed:
                                writer = self.writer_of[k][v]
                                self._add(
                                    "G1a",
                                    {"key": k, "value": v, "writer": self._index(writer), "reader": op.index},
                                    [writer, position],
                                )
            if reads and writes:
                for k, pairs in writes.items():
                    read_pairs = reads.get(k)
                    if read_pairs:
                        bad = {v for _, v in pairs}.intersection(v for _, v in read_pairs)
                        if bad:
                            v = min(bad, key=_value_sort_key)
                            self._add("precommitted-read", {"key": k, "value": v, "op": op.index}, [position])
            # per-process order of polls and sends
            if reads:
                table = last_reads[process]
                allowed = self.subscribe_allows_skips and subscribed.get(process, False)
                for k, pairs in reads.items():
                    previous = table.get(k)
                    if previous is not None:
                        previous_position, offset, v = previous
                        offset2, v2 = pairs[0]
                        order = orders.get(k)
                        delta, i1, i2 = self._delta(order, v, v2, offset, offset2)
                        if delta > 1:
                            self._add(
                                "poll-skip",
                                {"key": k, "process": process, "values": [v, v2], "delta": delta,
                                 "skipped": order.by_index[i1 + 1 : i2], "ops": [self._index(previous_position), op.index]},
                                [previous_position, position],
                                allowed,
                            )
                        elif delta < 1:
                            self._add(
                                "nonmonotonic-poll",
                                {"key": k, "process": process, "values": [v, v2], "delta": delta,
                                 "ops": [self._index(previous_position), op.index]},
                                [previous_position, position],
                                allowed,
                            )
                    if ok:
                        offset, v = pairs[-1]
                        table[k] = (position, offset, v)
            if writes and op.type != "fail":
                table = last_sends[process]
                for k, pairs in writes.items():
                    previous = table.get(k)
                    if previous is not None:
                        previous_position, offset, v = previous
                        offset2, v2 = pairs[0]
                        delta, _, _ = self._delta(orders.get(k), v, v2, offset, offset2)
                        if delta < 1 and not _copies_in_order(orders.get(k), v, v2):
                            self._add(
                                "nonmonotonic-send",
                                {"key": k, "process": process, "values": [v, v2], "delta": delta,
                                 "ops": [self._index(previous_position), op.index]},
                                [previous_position, position],
                            )
                    offset, v = pairs[-1]
                    table[k] = (position, offset, v)
            # within the op
            rebalanced: set[Any] = set()
            log = op.extra.get("rebalance-log") if op.extra else None
            if log:
                for event in log:
                    if isinstance(event, Mapping):
                        rebalanced.update(_norm_key(k) for k in event.get("keys", ()) or ())
            for kind, groups in (("poll", reads), ("send", writes)):
                for k, pairs in groups.items():
                    if len(pairs) < 2 or (kind == "poll" and k in rebalanced):
                        continue
                    order = orders.get(k)
                    for j in range(len(pairs) - 1):
                        (offset1, v1), (offset2, v2) = pairs[j], pairs[j + 1]
                        delta, i1, i2 = self._delta(order, v1, v2, offset1, offset2)
                        if delta > 1:
                            self._add(
                                f"int-{kind}-skip",
                                {"key": k, "values": [v1, v2], "delta": delta,
                                 "skipped": order.by_index[i1 + 1 : i2], "op": op.index},
                                [position],
                                kind == "send",
                            )
                        elif delta < 1 and not (kind == "send" and _copies_in_order(order, v1, v2)):
                            self._add(
                                f"int-nonmonotonic-{kind}",
                                {"key": k, "values": [v1, v2], "delta": delta, "op": op.index},
                                [position],
                            )
            # wr dependencies: the writer of each value read -> this ok op
            if ok and reads:
                sources = set()
                for k, pairs in reads.items():
                    writers = self.writer_of.get(k)
                    if writers:
                        for _, v in pairs:
                            writer = writers.get(v)
                            if writer is not None:
                                sources.add(writer)
                sources.discard(position)
                for writer in sources:
                    if ok_at[writer] or writer in committed_info:
                        self.succ[writer].append(position)
        if self.ww_deps:
            for k, order in self.orders.items():
                writers = self.writer_of.get(k, {})
                previous_writer = None
                for v in order.by_index:
                    writer = writers.get(v)
                    if writer is None or not self.committed(writer):
                        previous_writer = None
                        continue
                    if previous_writer is not None and previous_writer != writer:
                        self.succ[previous_writer].append(writer)
                    previous_writer = writer

    # -- watermarks ------------------------------------------------------------------------

    def _watermarks(self, acks_commit: bool) -> None:
        """`read-above-watermark` and `watermark-regression`, from the watermarks the clients recorded.

        Nothing happens for a history without watermark fields (one written
        before they were recorded, or by another harness).

        `read-above-watermark`: an ok op read offset o of key k, and the high
        watermark its client recorded for k with that same op (FETCHED_WATERMARKS)
        is h <= o. A broker serves consumers only below the high watermark, so
        o was not committed when it was served. Only the op's own observation
        counts: it is taken when the poll returns, from the fetch response that
        delivered its messages or a later one, and one leader's high watermark
        never decreases; a later observation may come from a new leader whose
        high watermark still lags the old one's (KIP-207 describes that lag), so
        it could be lower without anything being wrong. The same lag could reach
        the op's own observation if the leader changed while the poll ran: a read
        is therefore not reported when o was already shown committed before the
        op was invoked (an ok op had read an offset >= o of k, a high watermark
        > o had been recorded for k, or, under acks=all, a send to k had been
        acknowledged at an offset >= o). A client may also hold o, fetched from
        the old leader, while it already has the new leader's lagging high
        watermark, when its poll returns o from its prefetch queue: a read is
        therefore not reported either when a fault was in effect, or ended less
        than LEADER_SETTLE_S before, at some time between the invocation of the
        send that wrote o (before which o cannot have been fetched) and the
        completion of the op (`checkers.faults.nemesis_windows`). Faults are
        the only cause of leader changes this rule allows for: it assumes a
        broker that does not move leaders by itself (Kafka's
        auto.leader.rebalance.enable, a leader balancer), or one that does so
        only with its high watermarks caught up.

        `watermark-regression`: the high watermark ListOffsets gave the final
        reads for k (LISTED_WATERMARKS) is h <= o, where o is an offset of k that
        an ok op had already read, or (acks=all) a send had been acknowledged at,
        before those reads were invoked. Committed records stay committed (Kafka's
        replication protocol; KIP-101 and KIP-279 keep truncation above the high
        watermark), so offsets below it may never drop out of it. The high
        watermarks of fetch responses are not judged this way: a new leader's may
        lag below offsets already read or acknowledged for a moment (KIP-207),
        which is legal. ListOffsets is different: under KIP-207 a new leader
        answers OFFSET_NOT_AVAILABLE until its high watermark has reached the
        start of its epoch, and the final reads run after healing, once the
        cluster has settled (a broker that ignores KIP-207 is then past any lag
        too).
        """
        def is_watched(op: Op) -> bool:
            return bool(op.type == "ok" and op.extra
                        and (op.extra.get(FETCHED_WATERMARKS) or op.extra.get(LISTED_WATERMARKS)))

        if not any(is_watched(op) for _, op in self._data_positions()):
            return
        # key -> (completion position, offset shown committed, kind, op position) of every proof
        proofs: dict[Any, list[tuple[int, int, str, int]]] = defaultdict(list)
        for position, op in self._data_positions():
            if op.type != "ok":
                continue
            reads, writes = _parse(op)
            for groups, kind in ((reads, "read"), (writes if acks_commit else {}, "acknowledged")):
                for k, pairs in groups.items():
                    offsets = [o for o, _ in pairs if isinstance(o, int)]
                    if offsets:
                        proofs[k].append((position, max(offsets), kind, position))
            for k, high in _offset_map(op.extra.get(FETCHED_WATERMARKS) if op.extra else None).items():
                if high > 0:
                    proofs[k].append((position, high - 1, "watermark", position))
        data_proofs = _ProofIndex({k: [p for p in ps if p[2] != "watermark"] for k, ps in proofs.items()})
        all_proofs = _ProofIndex(proofs)
        fault_spans: list[tuple[int, int]] | None = None  # worked out when first needed
        for position, op in self._data_positions():  # read again, not kept: every ok poll of a run is watched
            if not is_watched(op):
                continue
            invoked = self.history.invocation_position(position)
            invoked = position if invoked < 0 else invoked
            reads, _ = _parse(op)
            for k, high in _offset_map(op.extra.get(FETCHED_WATERMARKS)).items():
                pairs = [(o, v) for o, v in reads.get(k, ()) if isinstance(o, int) and o >= high]
                proof = all_proofs.before(k, invoked)
                if proof is not None:
                    pairs = [(o, v) for o, v in pairs if o > proof[1]]
                if pairs:
                    fault_spans = self._fault_spans() if fault_spans is None else fault_spans
                    pairs = [(o, v) for o, v in pairs
                             if not any(first <= position and last >= self._written_at(k, v)
                                        for first, last in fault_spans)]
                if pairs:
                    self._add("read-above-watermark",
                              {"key": k, "process": op.process, "op": op.index, "watermark": high,
                               "offsets": [o for o, _ in pairs], "values": [v for _, v in pairs]},
                              [position])
            for k, high in _offset_map(op.extra.get(LISTED_WATERMARKS)).items():
                proof = data_proofs.before(k, invoked)
                if proof is None or proof[1] < high:
                    continue
                _, offset, kind, proof_position = proof
                self._add("watermark-regression",
                          {"key": k, "op": op.index, "watermark": high, "offset": offset, "kind": kind,
                           "witness": self._index(proof_position)},
                          [proof_position, position])

    def _written_at(self, k: Any, v: Any) -> int:
        """Position of the invocation of the send that wrote v to k; 0 when the history has no such send."""
        written = self.writer_of.get(k, {}).get(v)
        return 0 if written is None else max(0, self.history.invocation_position(written))

    def _fault_spans(self) -> list[tuple[int, int]]:
        """(first, last) position of each fault window of the history, the last position moved on to the last op
        less than LEADER_SETTLE_S after the window closed (ops without times are passed over)."""
        spans = []
        for _kind, first, last in nemesis_windows(self.history):
            closed = self.ops[last].time
            if closed is not None:
                limit = closed + int(LEADER_SETTLE_S * 1e9)
                while last + 1 < len(self.ops) and (self.ops[last + 1].time or 0) <= limit:
                    last += 1
            spans.append((first, last))
        return spans

    def _hanging_transactions(self) -> None:
        """`hanging-transaction`: a read_committed final read stopped at a key's last stable offset, below the
        high watermark it listed, after going without progress for at least two transaction timeouts while no
        other client op ran.

        The last stable offset is the first offset of the oldest transaction still open on the partition; a
        transaction whose producer died is aborted by its coordinator after its timeout, so one that still
        holds readers back after two, with nothing else running, was never going to end: the "hanging
        transaction" of KIP-890 (a commit answered without its markers, a marker lost). Every acknowledged
        record above it is out of read_committed readers' reach. Needs the fields a transactional final read
        records (LAST_STABLE_OFFSETS, STALLED_S, TRANSACTION_TIMEOUT_MS); nothing happens without them.
        """
        for position, op in self._data_positions():
            extra = op.extra or {}
            short = extra.get(FINAL_READ_SHORT)
            stable = _offset_map(extra.get(LAST_STABLE_OFFSETS))
            stalled_s, timeout_ms = extra.get(STALLED_S), extra.get(TRANSACTION_TIMEOUT_MS)
            if op.type != "ok" or not isinstance(short, Mapping) or not stable \
                    or not isinstance(stalled_s, (int, float)) or not isinstance(timeout_ms, int) \
                    or stalled_s < 2 * timeout_ms / 1000 or self.history.ran_beside(position):
                continue
            for raw_key, pair in short.items():
                k = _norm_key(raw_key)
                if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(type(x) is int for x in pair)):
                    continue
                reached, high = pair
                lso = stable.get(k)
                if lso is not None and reached >= lso and lso < high:
                    self._add("hanging-transaction", {"key": k, "op": op.index, "last_stable_offset": lso,
                                                      "high_watermark": high, "stalled_s": stalled_s,
                                                      "timeout_ms": timeout_ms}, [position])

    def _missing_markers(self) -> None:
        """`missing-marker`: a transaction that wrote a key has no commit or abort marker of its own there.

        KIP-98: the coordinator writes a transaction's marker to every partition it wrote once EndTxn is
        logged, and refuses the producer's next transaction (CONCURRENT_TRANSACTIONS) until every marker is
        written. So on each key, after the last record of a transaction that ended, its marker lies before
        the first record of its producer's next transaction on that key; and a transaction whose records lie
        below what a complete read_committed final read reached has ended, its marker below the high
        watermark listed after it. A marker refused and never sent again (a leader moving as it arrived)
        breaks this, often without any other anomaly: the producer's next transaction there continues the
        open one and its marker decides both, which hides the missing commit unless that one aborts.

        The read_uncommitted final read (`UNCOMMITTED_LOG`, `UNCOMMITTED_RANGE`) gives every record of a
        key; the offsets in its range without one are control records. A marker cannot be told from another,
        so each transaction needs its own control record inside its window (after its last record; before its
        producer's next record there, or the range's end): an interval-point matching, decided exactly by a
        sweep over the control records that gives each one to the open window that closes first. Each
        window it leaves without one counts a missing marker; the window named for it is the likeliest of
        those that could be left without (`_likeliest_without`). A transaction's producer is its process (workloads.queue gives
        each process its transactional.id, and replaces a process after an indeterminate op); an ok or
        failed (aborted) txn op has ended before the process's next op. Keys whose read_committed final read
        stopped short are left to `hanging-transaction`. Nothing happens without the fields.
        """
        finals = []
        for position, op in self._data_positions():
            extra = op.extra or {}
            log, spans = extra.get(UNCOMMITTED_LOG), extra.get(UNCOMMITTED_RANGE)
            if op.type == "ok" and isinstance(log, Mapping) and isinstance(spans, Mapping):
                finals.append((position, op, log, spans))
        if not finals:
            return
        txn_of: dict[Any, tuple[Any, int, int]] = {}  # value -> (process, its seq among the process's txns, position)
        seqs: dict[Any, int] = defaultdict(int)
        for position, op in self._data_positions():
            if op.f != "txn":
                continue
            process = op.process
            seq = seqs[process]
            seqs[process] = seq + 1
            for _key, pairs in _parse(op)[1].items():
                for _offset, v in pairs:
                    txn_of[v] = (process, seq, position)
        for final_position, final_op, log, spans in finals:
            short = final_op.extra.get(FINAL_READ_SHORT)
            short_keys = {_norm_key(k) for k in short} if isinstance(short, Mapping) else set()
            committed = _offset_map(final_op.extra.get(LISTED_WATERMARKS))
            for raw_key, records in log.items():
                k = _norm_key(raw_key)
                span = spans.get(raw_key)
                if k in short_keys or not isinstance(records, (list, tuple)) or not (
                        isinstance(span, (list, tuple)) and len(span) == 2 and all(type(x) is int for x in span)):
                    continue
                self._match_markers(k, records, span, committed.get(k), txn_of, final_position)

    def _match_markers(self, k: Any, records: Iterable, span: tuple[int, int], committed: int | None,
                       txn_of: Mapping[Any, tuple[Any, int, int]], final_position: int) -> None:
        start, end = span
        if not 0 <= start <= end or end - start > 2 * len(records) + 100_000:
            return  # not a range this read could have covered: most of it missing, not markers
        data: set[int] = set()
        # (process, seq) -> [first offset, last offset, position of its op]
        spans: dict[tuple[Any, int], list[int]] = {}
        for pair in records:
            if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and type(pair[0]) is int):
                continue
            offset, v = pair
            data.add(offset)
            owner = txn_of.get(_hashable(v) if v.__class__ in (list, dict) else v)
            if owner is None:
                continue
            process, seq, position = owner
            found = spans.get((process, seq))
            if found is None:
                spans[(process, seq)] = [offset, offset, position]
            else:
                found[0], found[1] = min(found[0], offset), max(found[1], offset)
        by_process: dict[Any, list[tuple[int, int, int, int]]] = defaultdict(list)
        for (process, seq), (first, last, position) in spans.items():
            by_process[process].append((seq, first, last, position))
        windows: list[tuple[int, int, dict[str, Any], list[int]]] = []  # (last, bound, witness data, positions)
        for process, txns in by_process.items():
            txns.sort()
            for i, (_seq, first, last, position) in enumerate(txns):
                if first < start or self.ops[position].type not in ("ok", "fail", "info"):
                    continue
                data_map: dict[str, Any] = {"key": k, "op": self._index(position), "process": process,
                                            "last_offset": last, "range": [start, end]}
                if i + 1 < len(txns):
                    next_first, next_position = txns[i + 1][1], txns[i + 1][3]
                    if next_first <= last or self.ops[position].type == "info":
                        continue  # out of order (another anomaly's business), or no next txn was due to wait
                    data_map.update(next_op=self._index(next_position), next_offset=next_first)
                    windows.append((last, next_first, data_map, [position, next_position]))
                elif committed is not None and last < committed <= end:
                    data_map.update(next_op=None, next_offset=None)
                    windows.append((last, end, data_map, [position, final_position]))
        if not windows:
            return
        windows.sort(key=lambda w: w[0])
        markers = [offset for offset in range(start, end) if offset not in data]
        matched_by: list[int] = [-1] * len(markers)  # marker index -> the window it was given to
        open_windows: list[tuple[int, int]] = []  # (bound, index into windows)
        unmatched: list[int] = []
        i = 0
        for m, marker in enumerate(markers):
            while i < len(windows) and windows[i][0] < marker:
                heapq.heappush(open_windows, (windows[i][1], i))
                i += 1
            while open_windows and open_windows[0][0] <= marker:
                unmatched.append(heapq.heappop(open_windows)[1])
            if open_windows:
                matched_by[m] = heapq.heappop(open_windows)[1]
        unmatched += [index for _, index in open_windows] + list(range(i, len(windows)))
        chosen: set[int] = set()
        for index in unmatched[:WITNESS_SEARCHES]:
            chosen.add(self._likeliest_without(index, windows, markers, matched_by, chosen))
        for index in unmatched:  # one name per missing marker: the rest as the sweep left them
            if len(chosen) == len(unmatched):
                break
            chosen.add(index)
        for index in sorted(chosen, key=lambda j: windows[j][0]):
            last, bound, data_map, positions = windows[index]
            inside = bisect.bisect_left(markers, bound) - bisect.bisect_right(markers, last)
            data_map.update(markers=len(markers), transactions=len(windows), inside=inside)
            self._add("missing-marker", data_map, positions)

    @staticmethod
    def _likeliest_without(index: int, windows: list, markers: list[int], matched_by: list[int],
                           taken: set[int]) -> int:
        """The window to name for a marker missing where the matching left window `index` without one.

        A maximum matching is not unique: any window reached from `index` by an alternating path (a control
        record inside it, the window that record went to, a control record inside that one, ...) can be the one
        left without, and the sweep's choice may lie far from where the marker went missing (a window that
        stays open to the end of the read). Of those, the one with the fewest control records inside (the
        earliest on a tie) is named: a transaction whose producer's next one came right after it, with no
        marker between, is the shape a lost marker leaves (Hopcroft and Karp's alternating paths)."""
        parent = list(range(len(markers) + 1))  # next marker not yet visited, path-halved

        def find(j: int) -> int:
            while parent[j] != j:
                parent[j] = parent[parent[j]]
                j = parent[j]
            return j

        seen, queue = {index}, [index]
        while queue:
            last, bound = windows[queue.pop()][:2]
            j = find(bisect.bisect_right(markers, last))
            while j < len(markers) and markers[j] < bound:
                parent[j] = j + 1
                owner = matched_by[j]
                if owner >= 0 and owner not in seen:
                    seen.add(owner)
                    queue.append(owner)
                j = find(j + 1)
        candidates = [w for w in seen if w not in taken] or [index]
        return min(candidates, key=lambda w: (bisect.bisect_left(markers, windows[w][1])
                                              - bisect.bisect_right(markers, windows[w][0]), windows[w][0]))

    # -- cycles ----------------------------------------------------------------------------

    def _cycles(self) -> None:
        """Find G0/G1c cycles over data edges, then with process, then realtime order.

        Each graph is first trimmed (Kahn's algorithm, both directions), which
        removes every op on no cycle in linear time; networkx finds the
        strongly connected components of what is left, usually nothing.
        Realtime order is encoded through a chain of virtual event nodes (one
        per completion): a -> event(a's completion) -> ... -> event(last
        completion before b's invocation) -> b, which has exactly the
        reachability of "a completed before b was invoked" in O(n) edges.
        """
        h = self.ops
        n = len(h)
        self.stats["dependency_edges"] = sum(len(t) for t in self.succ.values())
        spans = _cycle_spans(self.succ)
        if not spans:
            return
        has_edge = bytearray(n)
        for a, targets in self.succ.items():
            has_edge[a] = 1
            for b in targets:
                has_edge[b] = 1
        nodes = {p for start, end in spans for p in range(start, end + 1) if has_edge[p]}
        data_edges: dict[int, list[int]] = {}
        for a, targets in self.succ.items():
            if a in nodes:
                kept = [b for b in targets if b in nodes]
                if kept:
                    data_edges[a] = kept
        reported: set[int] = set()
        # Process order joins each op to the next op of its process that has a data edge (inside the spans
        # or not, as over the whole history), from ok completions only; kept when both ends are inside.
        process_edges: dict[int, list[int]] = defaultdict(list)
        last_of_process: dict[int, int] = {}
        process_code, ok, no_process = self.process_code, self.ok, self._process_codes.get(None)
        for p in range(n):
            if not has_edge[p]:
                continue
            code = process_code[p]
            if code == no_process:
                continue
            a = last_of_process.get(code)
            last_of_process[code] = p
            if a is not None and ok[a] and a in nodes and p in nodes:
                process_edges[a].append(p)
        del has_edge, last_of_process
        combined = (data_edges, process_edges)
        completions = sorted(p for p in nodes if ok[p])
        realtime_edges: dict[int, list[int]] = defaultdict(list)
        for a, b in zip(completions, completions[1:]):
            realtime_edges[n + a].append(n + b)
        for p in completions:
            realtime_edges[p].append(n + p)
        for p in nodes:
            invocation = self.history.invocation_position(p)
            j = bisect.bisect_left(completions, invocation if invocation >= 0 else p) - 1
            if j >= 0:
                realtime_edges[n + completions[j]].append(p)
        everything = (*combined, realtime_edges)
        # Every cycle of the smaller graphs is a cycle of this one: when
        # trimming leaves nothing here (any valid history), we are done.
        if not _trim(everything):
            return
        self._find_cycles((data_edges,), "", reported)
        self._find_cycles(combined, "-process", reported)
        self._find_cycles(everything, "-realtime", reported)

    def _find_cycles(self, graphs: _Graphs, suffix: str, reported: set[int]) -> None:
        remaining = _trim(graphs)
        if not remaining:
            return
        import networkx as nx  # here, not at the top: a valid history never gets this far, and it costs 0.1 s to import

        graph = nx.DiGraph()
        for a in remaining:
            for edges in graphs:
                for b in edges.get(a, ()):
                    if b in remaining:
                        graph.add_edge(a, b)
        n = len(self.history)
        # in history order (networkx yields components in an order that depends on how the graph was built)
        for component in sorted(nx.strongly_connected_components(graph), key=min):
            real = {p for p in component if p < n}
            if len(real) < 2 or real <= reported:
                continue
            if self._report_cycle(graph.subgraph(component), suffix):
                reported.update(real)

    def _report_cycle(self, component: nx.DiGraph, suffix: str) -> bool:
        """Report the shortest cycle through the component's lowest op.

        In the process and realtime passes, a cycle that does not need the
        new kind of edge was already reported by an earlier pass: skip it.
        """
        h = self.ops
        n = len(h)
        cycle_nodes = _shortest_cycle(component, min(p for p in component.nodes if p < n))
        real = [p for p in cycle_nodes if p < n]
        number = {p: i for i, p in enumerate(real)}
        steps = []
        kinds = set()
        for i, a in enumerate(real):
            b = real[(i + 1) % len(real)]
            # Did the cycle go a -> b directly, or through virtual event nodes?
            at = cycle_nodes.index(a)
            direct = cycle_nodes[(at + 1) % len(cycle_nodes)] == b
            step: dict[str, Any] = {"from": number[a], "to": number[b]}
            found = self._explain_edge(a, b) if direct else None
            if found is None and direct and suffix and h[a].process == h[b].process:
                found = {"type": "process", "process": h[a].process}
            if found is None:
                invocation = self.history.invocation_position(b)
                found = {"type": "realtime", "completed": h[a].index,
                         "invoked": h[invocation].index if invocation >= 0 else h[b].index}
            step = {"type": found.pop("type"), **step, **found}
            kinds.add(step["type"])
            steps.append(step)
        if suffix and suffix[1:] not in kinds:
            return False
        base = "G1c" if "wr" in kinds else "G0"
        name = base + ("-realtime" if "realtime" in kinds else "-process" if "process" in kinds else "")
        allowed = base == "G0" or self.ww_deps
        self._add(name, {"ops": [h[p].index for p in real], "steps": steps}, real, allowed)
        return True

    def _explain_edge(self, a: int, b: int) -> dict[str, Any] | None:
        """Why op a precedes op b through data: wr (b read a's value), else ww."""
        h = self.ops
        reads, writes = _parse(h[b])
        for k, pairs in reads.items():
            writers = self.writer_of.get(k, {})
            for _, v in pairs:
                if writers.get(v) == a:
                    return {"type": "wr", "key": k, "value": v}
        if self.ww_deps:
            for k, pairs in writes.items():
                order = self.orders.get(k)
                if order is None:
                    continue
                writers = self.writer_of.get(k, {})
                for _, v2 in pairs:
                    index = order.by_value.get(v2)
                    if index:
                        v1 = order.by_index[index - 1]
                        if writers.get(v1) == a:
                            return {"type": "ww", "key": k, "value": v1, "value_after": v2}
        return None

    # -- result -------------------------------------------------------------------

    def result(self, delivery: Delivery, max_witnesses: int | None,
               final_reads_incomplete: str | None = None) -> dict[str, Any]:
        h = self.ops
        mode_allowed = delivery.allowed
        anomalies: dict[str, list[dict[str, Any]]] = {}
        allowed: dict[str, list[dict[str, Any]]] = {}
        anomaly_counts: dict[str, int] = {}
        allowed_counts: dict[str, int] = {}
        summaries: dict[str, str] = {}
        for name in ANOMALY_NAMES:
            found = self.found.get(name, ())
            for is_allowed in (False, True):
                datas = [data for data, _, by_rule in found if (by_rule or name in mode_allowed) == is_allowed]
                if datas:
                    # an anomaly both reported and allowed (by rule) keeps the sentence of the reported ones
                    summaries.setdefault(name, summarize(name, datas))
            for data, positions, allowed_by_rule in found:
                is_allowed = allowed_by_rule or name in mode_allowed
                target = allowed if is_allowed else anomalies
                counts = allowed_counts if is_allowed else anomaly_counts
                counts[name] = counts.get(name, 0) + 1
                bucket = target.setdefault(name, [])
                if max_witnesses is not None and len(bucket) >= max_witnesses:
                    continue
                witness = dict(data)
                witness["op_indexes"] = [h[p].index for p in positions]
                witness["processes"] = [h[p].process for p in positions]
                witness["op_maps"] = [op_to_dict(h[p]) for p in positions]
                witness["explanation"] = explain(name, data)
                bucket.append(witness)
        judged = self.stats["data_ops"]["ok"] > 0
        valid: bool | str = False if anomalies else (True if judged else "unknown")
        stats = dict(self.stats)
        stats["anomaly_counts"] = anomaly_counts
        stats["allowed_counts"] = allowed_counts
        stats["witnesses_omitted"] = witnesses_omitted(anomaly_counts, anomalies)
        stats["allowed_witnesses_omitted"] = witnesses_omitted(allowed_counts, allowed)
        stats["anomaly_summaries"] = summaries
        stats["ops"] = len(h)
        result: dict[str, Any] = {
            "valid": valid,
            "delivery": delivery.name,
            "anomaly_types": sorted(anomalies),
            "anomalies": anomalies,
            "allowed": allowed,
            "stats": stats,
        }
        undecided: dict[str, str] = {}
        if not judged:
            result["reason"] = "no-completed-ops"
            result["message"] = "no send, poll or transaction completed ok, so there is nothing to judge"
        if final_reads_incomplete is not None:
            needs = NEEDS_FINAL_READS - mode_allowed
            if needs and (valid is True or (valid is False and set(anomalies) <= needs)):
                result["valid"] = "unknown"
                result["reason"] = "final-reads-incomplete"
                result["message"] = (f"{final_reads_incomplete}; without the final reads an acknowledged send that no "
                                     "read returned cannot be told lost or merely unread, so there is no verdict")
            if needs:
                # the anomalies the final reads were needed for are no evidence: they leave the anomaly list (an
                # INVALID run keeps its other anomalies), their counts stay in stats["unjudged"], and the
                # promises are judged without them
                unjudged = {n: anomaly_counts.get(n, len(anomalies[n])) for n in anomalies if n in needs}
                if unjudged:
                    result["anomalies"] = {n: w for n, w in anomalies.items() if n not in needs}
                    result["anomaly_types"] = sorted(result["anomalies"])
                    stats["anomaly_counts"] = {n: c for n, c in anomaly_counts.items() if n not in needs}
                    stats["witnesses_omitted"] = {n: c for n, c in stats["witnesses_omitted"].items() if n not in needs}
                    stats["anomaly_summaries"] = {n: t for n, t in summaries.items() if n not in needs}
                    stats["unjudged"] = unjudged
                undecided["lost"] = ("the final reads did not complete, so an acknowledged message that no read "
                                     "returned may be lost or merely unread")
                result["promises"] = judge_promises(result, delivery, undecided)
        result.setdefault("promises", judge_promises(result, delivery, undecided))
        return result


def _offset_map(raw: Any) -> dict[Any, int]:
    """A recorded key -> offset map with keys as the sends name them (JSON made them strings); other
    entries (not an integer offset) are dropped."""
    if not isinstance(raw, Mapping):
        return {}
    return {_norm_key(k): o for k, o in raw.items() if o.__class__ is int}


def _cycle_spans(succ: Mapping[int, list[int]]) -> list[tuple[int, int]]:
    """The disjoint spans of history positions, sorted, outside which no op lies on a dependency cycle.

    Rank each op by its completion position p and the virtual event node of a completion c by c + 1/2.
    Process edges (a completed, then the process invoked b) and the realtime chain (a -> event(a) ->
    event(next completion) -> ... -> b) only go up in rank; so does a data edge a -> b with a < b. Along
    a cycle the ranks go up and down by the same amounts, and they can only go down along *backward*
    data edges (b < a: an op read, or wrote after, a value whose send completed later). Every rank y
    that a cycle passes is therefore crossed downwards by one of its backward edges, so y lies in the
    span [b, a] of that edge: ops outside the union of those spans are on no cycle. A history whose
    sends all complete before their messages are read has no backward edge and no cycle to look for;
    the graphs are then built over the spans only, which is what keeps the search's memory small.
    """
    backward = sorted((b, a) for a, targets in succ.items() for b in targets if b < a)
    spans: list[tuple[int, int]] = []
    for start, end in backward:
        if spans and start <= spans[-1][1]:
            if end > spans[-1][1]:
                spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
    return spans


class _ProofIndex:
    """Per key, the highest offset shown committed by completions before a history position."""

    def __init__(self, proofs: Mapping[Any, list[tuple[int, int, str, int]]]) -> None:
        self.positions: dict[Any, list[int]] = {}
        self.best: dict[Any, list[tuple[int, int, str, int]]] = {}
        for k, entries in proofs.items():
            entries = sorted(entries)
            best: list[tuple[int, int, str, int]] = []
            for entry in entries:
                best.append(entry if not best or entry[1] > best[-1][1] else best[-1])
            self.positions[k] = [e[0] for e in entries]
            self.best[k] = best

    def before(self, k: Any, position: int) -> tuple[int, int, str, int] | None:
        """The proof of the highest offset among completions at positions < `position`, or None."""
        positions = self.positions.get(k)
        if not positions:
            return None
        i = bisect.bisect_left(positions, position)
        return self.best[k][i - 1] if i else None


_Graphs = tuple  # of dict[int, list[int]]: adjacency lists whose union is one graph


def _trim(graphs: _Graphs) -> set[int]:
    """Nodes that may lie on a cycle of the union of `graphs`: repeatedly drop
    nodes without predecessors, then nodes without successors (Kahn's
    algorithm). Linear in nodes and edges; the graphs are never copied."""
    indegree: dict[int, int] = defaultdict(int)
    nodes: set[int] = set()
    for graph in graphs:
        nodes.update(graph)
        for targets in graph.values():
            for b in targets:
                indegree[b] += 1
    nodes.update(indegree)  # the targets
    stack = [p for p in nodes if indegree[p] == 0]
    while stack:
        a = stack.pop()
        for graph in graphs:
            for b in graph.get(a, ()):
                indegree[b] -= 1
                if indegree[b] == 0:
                    stack.append(b)
    remaining = {p for p in nodes if indegree[p] > 0}
    del indegree, nodes
    if not remaining:
        return remaining
    outdegree: dict[int, int] = defaultdict(int)
    predecessors: dict[int, list[int]] = defaultdict(list)
    for a in remaining:
        for graph in graphs:
            for b in graph.get(a, ()):
                if b in remaining:
                    outdegree[a] += 1
                    predecessors[b].append(a)
    stack = [p for p in remaining if outdegree[p] == 0]
    while stack:
        b = stack.pop()
        remaining.discard(b)
        for a in predecessors.get(b, ()):
            outdegree[a] -= 1
            if outdegree[a] == 0:
                stack.append(a)
    return remaining


def _shortest_cycle(component: nx.DiGraph, start: int) -> list[int]:
    """The nodes of a shortest cycle through `start`, beginning with it."""
    import networkx as nx  # imported by _find_cycles already; see there

    best: list[int] | None = None
    for successor in component.successors(start):
        try:
            path = nx.shortest_path(component, successor, start)
        except nx.NetworkXNoPath:
            continue
        if best is None or len(path) < len(best):
            best = path
    assert best is not None, "every node of a strongly connected component lies on a cycle"
    return [start] + best[:-1]
