"""The pipeline checker: did a read-process-write pipeline copy every input record exactly once?

A pipeline (Kafka's exactly-once claim, KIP-98 and KIP-447) consumes from an input topic, writes to an
output topic and commits its input offsets in the same transaction. After crashes, restarts, zombies
and rebalances, every acknowledged input must appear in the committed output exactly once, in the
order of its input partition, and nothing aborted may be visible at read_committed.

History format (what `--workload pipeline` records; client ops, paired invoke/completion):

- `send` (the producer that fills the input topic), as the queue workload's: completion value
  `[["send", partition, [offset, value]], ...]` (offset None when unknown). Input values are unique.
- `process` (one processor transaction): completion value a map
  `{"consumed": {partition: [[offset, value], ...]}, "produced": [[output_partition, value], ...],
  "offsets": {partition: next_offset}}`, where `produced` lists the records the transaction wrote, each
  carrying the value of the input it copies, and `offsets` the input offsets it committed with
  `send_offsets_to_transaction`. `ok`: committed; `fail`: certainly aborted (or fenced before commit);
  `info`: unknown. Other keys (`processor`, `generation`, `producer-epoch`) are carried along.
- `read-output` (final): an ok op whose value maps each output partition to its `[[offset, value], ...]`,
  read at read_committed from the start to the end of every output partition, after the processors
  drained the input.
- `committed-offsets` (final): an ok op whose value maps each input partition to the group's committed
  offset at the end.

Anomalies, each witness a data map and a sentence (`checkers.pipeline.explain`):
- `lost-input`: an acknowledged input absent from the committed output although the group's final
  committed offset of its partition is past it (its offsets were committed without its write);
- `duplicate-output`: an input copied into the committed output more than once;
- `aborted-output`: an output record visible at read_committed that only aborted transactions wrote;
- `unknown-output`: an output record that no transaction wrote and no send produced the input of;
- `txn-output-missing`: a committed transaction whose writes are not all in the committed output
  (atomicity: its offsets are committed, its writes are not);
- `double-commit`: an input consumed by two committed transactions (a zombie that was not fenced);
- `reordered-output`: two records of one input partition written to one output partition in the
  opposite order;
- `hanging-transaction`: at the end, with no other client op running, an output partition's last stable
  offset stayed below its high watermark for at least two transaction timeouts: a transaction that
  was never committed nor aborted holds read_committed readers back for ever (the "hanging
  transaction" of KIP-890). Judged from the final `read-output` when it is `info` with the value
  `{"last-stable-offsets": {p: lso}, "high-watermarks": {p: hw}, "waited-s": s,
  "transaction-timeout-ms": ms}`.
`stats["processor_faults"]` counts the processor faults the invocations asked for (`crash`, `pause_s`,
`abort` on `process` ops, and `leave` ops) and the paused ones that came back and were fenced (fail).
An acknowledged input that is neither in the output nor covered by the committed offsets was not
processed by the end: counted in `stats["unprocessed"]`; when there are any, or the final reads are
missing, a history with no anomaly has no verdict ("unknown"), since a loss cannot be told apart
from work left undone.

Complexity: linear in the number of records, plus a sort per (input, output) partition pair.

Thread-safety: pure; safe from any thread.

Sources: Kafka's `transactions_test.py` system test (copy, then compare output with input) and KIP-98 /
KIP-447 for what exactly-once promises; Jepsen's queue anomalies for the naming style.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from checkers.core import check_options, promise_table, witnesses_omitted
from checkers.history import NEMESIS, History, gc_paused, op_to_dict
from checkers.pipeline.explain import explain, summarize

__all__ = ["ANOMALY_NAMES", "PROMISES", "PipelineHistoryError", "check", "judge_promises"]

ANOMALY_NAMES = ("lost-input", "duplicate-output", "aborted-output", "unknown-output", "txn-output-missing",
                 "double-commit", "reordered-output", "hanging-transaction")


class PipelineHistoryError(ValueError):
    """A pipeline history whose values do not follow the format in the module doc."""


def _key(k: Any) -> Any:
    """Partitions as ints where they look like ints (JSON map keys are strings)."""
    if isinstance(k, str) and k.lstrip("-").isdigit():
        return int(k)
    return k


def _hashable(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_hashable(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((str(k), _hashable(x)) for k, x in v.items()))
    return v


def _records(raw: Any, where: str) -> dict[Any, list[tuple[int, Any]]]:
    if not isinstance(raw, Mapping):
        raise PipelineHistoryError(f"{where}: expected a map of partition to [[offset, value], ...], got {raw!r}")
    out: dict[Any, list[tuple[int, Any]]] = {}
    for partition, pairs in raw.items():
        if not isinstance(pairs, (list, tuple)):
            raise PipelineHistoryError(f"{where}: partition {partition!r} holds {pairs!r}, not a list of pairs")
        rows = []
        for pair in pairs:
            if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not isinstance(pair[0], int):
                raise PipelineHistoryError(f"{where}: {pair!r} is not an [offset, value] pair")
            rows.append((pair[0], _hashable(pair[1])))
        out[_key(partition)] = rows
    return out


def check(history: History, *, max_witnesses: int | None = None, **opts: Any) -> dict[str, Any]:
    """Check a pipeline history (see the module doc). Returns `{"valid", "anomaly_types", "anomalies",
    "stats"}` (+ `reason`, `message` when there is no verdict); each witness has its data, the indexes of
    its ops and an `explanation`."""
    check_options("pipeline", opts, "max_witnesses", max_witnesses)
    with gc_paused():
        return _Analysis(history).result(max_witnesses)


class _Analysis:
    def __init__(self, history: History):
        self.h = history
        # input value -> (partition, offset or None, send type, op position)
        self.inputs: dict[Any, tuple[Any, int | None, str, int]] = {}
        self.txns: list[tuple[int, str, dict]] = []  # (position, type, parsed value)
        self.output: list[tuple[Any, int, Any]] | None = None  # (output partition, offset, value)
        self.output_position: int | None = None
        self.committed: dict[Any, int] | None = None
        self.committed_position: int | None = None
        self.stuck_position: int | None = None  # a final read-output that found transactions left open
        self.found: dict[str, list[tuple[dict, list[int]]]] = defaultdict(list)
        self.faults: dict[str, int] = dict.fromkeys(("kills", "pauses", "zombies fenced", "aborts on purpose",
                                                     "leaves"), 0)
        self._parse()

    def _parse(self) -> None:
        paused: set[Any] = set()  # processes whose open process op paused its processor
        for position, op in enumerate(self.h):
            if op.process == NEMESIS:
                continue
            if op.type == "invoke":
                self._count_fault(op, paused)
                continue
            if op.f == "process" and op.process in paused:
                paused.discard(op.process)
                if op.type == "fail":
                    self.faults["zombies fenced"] += 1
            where = f"op {op.index} ({op.f})"
            if op.f == "send":
                for micro in op.value or ():
                    if not isinstance(micro, (list, tuple)) or len(micro) != 3 or micro[0] != "send":
                        raise PipelineHistoryError(f"{where}: {micro!r} is not a [\"send\", partition, value] micro-op")
                    done = micro[2]
                    if isinstance(done, (list, tuple)) and len(done) == 2 and op.type == "ok":
                        offset, value = done
                    else:
                        offset, value = None, done
                    value = _hashable(value)
                    if value in self.inputs and self.inputs[value][2] == "ok":
                        continue  # a value is sent once; keep its acknowledgement
                    self.inputs[value] = (_key(micro[1]), offset, op.type, position)
            elif op.f == "process":
                if op.type == "ok" or op.value:
                    txn = self._txn(op.value, where)
                    if txn["consumed"] or txn["produced"] or txn["offsets"]:  # an empty poll wrote nothing
                        self.txns.append((position, op.type, txn))
            elif op.f == "read-output" and op.type == "ok":
                self.output = [(p, o, v) for p, rows in _records(op.value, where).items() for o, v in rows]
                self.output_position = position
            elif op.f == "read-output" and isinstance(op.value, Mapping) and "last-stable-offsets" in op.value:
                self.stuck_position = position
            elif op.f == "committed-offsets" and op.type == "ok":
                if not isinstance(op.value, Mapping):
                    raise PipelineHistoryError(f"{where}: expected a map of partition to offset, got {op.value!r}")
                self.committed = {_key(p): o for p, o in op.value.items() if isinstance(o, int)}
                self.committed_position = position

    def _count_fault(self, op: Any, paused: set[Any]) -> None:
        """Processor faults the workload asked for (the invocation's `crash`, `pause_s`, `abort`; `leave` ops)."""
        if op.f == "leave":
            self.faults["leaves"] += 1
        elif op.f == "process":
            if op.extra.get("crash"):
                self.faults["kills"] += 1
            if op.extra.get("pause_s"):
                self.faults["pauses"] += 1
                paused.add(op.process)
            if op.extra.get("abort"):
                self.faults["aborts on purpose"] += 1

    @staticmethod
    def _txn(value: Any, where: str) -> dict:
        if not isinstance(value, Mapping):
            raise PipelineHistoryError(f"{where}: a process completion must be a map with consumed, produced and "
                                       f"offsets, got {value!r}")
        produced = value.get("produced") or []
        if not all(isinstance(x, (list, tuple)) and len(x) == 2 for x in produced):
            raise PipelineHistoryError(f"{where}: produced must be [[output_partition, value], ...], got {produced!r}")
        return {"consumed": _records(value.get("consumed") or {}, where),
                "produced": [(_key(p), _hashable(v)) for p, v in produced],
                "offsets": {_key(p): o for p, o in (value.get("offsets") or {}).items()}}

    def _report(self, name: str, data: dict, positions: list[int]) -> None:
        self.found[name].append((data, positions))

    def _hanging(self) -> None:
        """A final read that waited two transaction timeouts, alone, with a last stable offset below the HW."""
        position = self.stuck_position
        if position is None:
            return
        seen = self.h[position].value
        where = f"op {self.h[position].index} (read-output)"
        try:
            stable = {_key(p): int(o) for p, o in seen["last-stable-offsets"].items()}
            high = {_key(p): int(o) for p, o in seen["high-watermarks"].items()}
            waited_s, timeout_ms = float(seen["waited-s"]), int(seen["transaction-timeout-ms"])
        except (KeyError, TypeError, ValueError, AttributeError):
            raise PipelineHistoryError(f"{where}: expected last-stable-offsets, high-watermarks, waited-s and "
                                       f"transaction-timeout-ms, got {seen!r}") from None
        if waited_s < 2 * timeout_ms / 1000:
            return
        if self.h.ran_beside(position):  # another client op may have kept a transaction going: proves nothing
            return
        held = sorted(([p, stable[p], high[p]] for p in stable if p in high and stable[p] < high[p]), key=repr)
        if held:
            self._report("hanging-transaction", {"partitions": held, "waited_s": waited_s, "timeout_ms": timeout_ms},
                         [position])

    def _analyse(self) -> None:
        self._hanging()
        writers: dict[Any, list[tuple[int, str]]] = defaultdict(list)  # value -> [(txn position, type)]
        consumers: dict[Any, list[int]] = defaultdict(list)  # value -> ok txn positions that consumed it
        input_offset: dict[Any, tuple[Any, int]] = {}
        for value, (partition, offset, _, _) in self.inputs.items():
            if offset is not None:
                input_offset[value] = (partition, offset)
        for position, type_, txn in self.txns:
            for output_partition, value in txn["produced"]:
                writers[value].append((position, type_))
            for partition, rows in txn["consumed"].items():
                for offset, value in rows:
                    input_offset.setdefault(value, (partition, offset))
                    if type_ == "ok":
                        consumers[value].append(position)
        output = self.output or []
        places: dict[Any, list[tuple[Any, int]]] = defaultdict(list)
        for output_partition, offset, value in output:
            places[value].append((output_partition, offset))
        for value, where in places.items():
            if len(where) > 1:
                self._report("duplicate-output", {"value": value, "places": sorted(where)}, [self.output_position])
        for output_partition, offset, value in output:
            wrote = writers.get(value, [])
            if wrote and all(t == "fail" for _, t in wrote):
                self._report("aborted-output", {"value": value, "output_partition": output_partition,
                                                "output_offset": offset,
                                                "txn_ops": [self.h[p].index for p, _ in wrote]},
                             [self.output_position] + [p for p, _ in wrote])
            elif not wrote and value not in self.inputs:
                self._report("unknown-output", {"value": value, "output_partition": output_partition,
                                                "output_offset": offset}, [self.output_position])
        for value, positions in consumers.items():
            if len(positions) > 1:
                partition, offset = input_offset.get(value, (None, None))
                self._report("double-commit", {"value": value, "partition": partition, "offset": offset,
                                               "txn_ops": [self.h[p].index for p in positions]}, positions)
        if self.output is not None:
            for position, type_, txn in self.txns:
                if type_ != "ok" or not txn["produced"]:
                    continue
                missing = [v for _, v in txn["produced"] if v not in places]
                if missing:
                    self._report("txn-output-missing", {"txn_op": self.h[position].index, "missing": missing,
                                                        "produced": len(txn["produced"])},
                                 [position, self.output_position])
        self.unprocessed = []
        if self.output is not None:
            for value, (partition, offset, type_, position) in self.inputs.items():
                if type_ != "ok" or value in places:
                    continue
                committed = (self.committed or {}).get(partition)
                if offset is not None and committed is not None and committed > offset:
                    self._report("lost-input", {"value": value, "partition": partition, "offset": offset,
                                                "committed": committed},
                                 [position, self.output_position, self.committed_position])
                else:
                    self.unprocessed.append(value)
        # order: within one output partition, the records of one input partition keep their input order
        by_pair: dict[tuple[Any, Any], list[tuple[int, int]]] = defaultdict(list)
        for output_partition, out_offset, value in output:
            if value in input_offset and len(places[value]) == 1:
                partition, offset = input_offset[value]
                by_pair[(partition, output_partition)].append((out_offset, offset))
        for (partition, output_partition), rows in sorted(by_pair.items(), key=repr):
            rows.sort()
            for (out_a, in_a), (out_b, in_b) in zip(rows, rows[1:]):
                if in_b < in_a:
                    self._report("reordered-output", {"partition": partition, "output_partition": output_partition,
                                                      "offsets": [in_b, in_a], "output_offsets": [out_b, out_a]},
                                 [self.output_position])

    def result(self, max_witnesses: int | None) -> dict[str, Any]:
        self._analyse()
        anomalies: dict[str, list[dict]] = {}
        counts: dict[str, int] = {}
        summaries: dict[str, str] = {}
        for name in ANOMALY_NAMES:
            found = self.found.get(name)
            if not found:
                continue
            counts[name] = len(found)
            summaries[name] = summarize(name, [d for d, _ in found])
            for data, positions in found[:max_witnesses]:
                positions = [p for p in positions if p is not None]
                witness = dict(data)
                witness["op_indexes"] = [self.h[p].index for p in positions]
                witness["op_maps"] = [op_to_dict(self.h[p]) for p in positions]
                witness["explanation"] = explain(name, data)
                anomalies.setdefault(name, []).append(witness)
        acknowledged = sum(1 for _, _, t, _ in self.inputs.values() if t == "ok")
        stats = {
            "inputs": len(self.inputs), "acknowledged_inputs": acknowledged,
            "transactions": {t: sum(1 for _, ty, _ in self.txns if ty == t) for t in ("ok", "fail", "info")},
            "output_records": len(self.output or []), "unprocessed": len(self.unprocessed),
            "processor_faults": dict(self.faults),
            "anomaly_counts": counts, "witnesses_omitted": witnesses_omitted(counts, anomalies),
            "anomaly_summaries": summaries, "ops": len(self.h),
        }
        result: dict[str, Any] = {"valid": not anomalies, "anomaly_types": sorted(anomalies), "anomalies": anomalies,
                                  "stats": stats}
        if anomalies:
            result["promises"] = judge_promises(result)
            return result
        if self.output is None or self.committed is None:
            missing = [name for name, got in (("read-output", self.output), ("committed-offsets", self.committed))
                       if got is None]
            result.update(valid="unknown", reason="final-reads-incomplete",
                          message=f"the final {' and '.join(missing)} read did not complete, so an input missing "
                                  "from the output cannot be told lost or unprocessed")
        elif self.unprocessed:
            result.update(valid="unknown", reason="input-not-drained",
                          message=f"{len(self.unprocessed)} acknowledged input(s) were neither in the output nor "
                                  "behind the group's committed offsets at the end: not processed yet, so whether "
                                  "they would be lost is not known")
        elif not acknowledged:
            result.update(valid="unknown", reason="no-completed-ops",
                          message="no input send was acknowledged, so there is nothing to judge")
        result["promises"] = judge_promises(result)
        return result


# What exactly-once read-process-write promises, each with the anomalies that break it (most severe first).
PROMISES = (
    ("exactly-once", "every acknowledged input is in the committed output exactly once",
     ("lost-input", "duplicate-output", "double-commit", "txn-output-missing")),
    ("isolation", "nothing an aborted or unknown transaction wrote is visible at read_committed",
     ("aborted-output", "unknown-output")),
    ("order", "the records of one input partition keep their order in each output partition", ("reordered-output",)),
    ("transactions-end", "every transaction commits or aborts within its timeout: none holds read_committed readers "
     "back for ever", ("hanging-transaction",)),
)


def judge_promises(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The promise table of a pipeline result (`checkers.core.promise_table`)."""
    return promise_table(PROMISES, result)
