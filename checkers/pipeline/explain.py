"""Sentences for pipeline anomalies, built from each witness's data map (data first, prose second, as
Elle's explainers and `checkers.queue.explain` do), so tests assert exact sentences.

Thread-safety: pure; safe from any thread.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from checkers.queue.explain import fmt

__all__ = ["explain", "summarize"]


def _ops(indexes: Sequence[int]) -> str:
    return ", ".join(f"op {i}" for i in indexes)


def _where(d: Mapping[str, Any]) -> str:
    return f"input partition {fmt(d['partition'])} offset {d['offset']}"


def _lost_input(d: Mapping[str, Any]) -> str:
    return (f"Input {fmt(d['value'])} ({_where(d)}) was acknowledged, and the group committed offset "
            f"{d['committed']} of that partition, past it, but no committed output carries it.")


def _duplicate_output(d: Mapping[str, Any]) -> str:
    places = ", ".join(f"partition {fmt(p)} offset {o}" for p, o in d["places"])
    return f"Input {fmt(d['value'])} appears {len(d['places'])} times in the committed output: {places}."


def _aborted_output(d: Mapping[str, Any]) -> str:
    return (f"Output {fmt(d['value'])} at partition {fmt(d['output_partition'])} offset {d['output_offset']} was "
            f"read at read_committed, but every transaction that wrote it was aborted ({_ops(d['txn_ops'])}).")


def _unknown_output(d: Mapping[str, Any]) -> str:
    return (f"Output {fmt(d['value'])} at partition {fmt(d['output_partition'])} offset {d['output_offset']} "
            f"was written by no transaction of the history and copies no input that was sent.")


def _txn_output_missing(d: Mapping[str, Any]) -> str:
    return (f"Transaction op {d['txn_op']} committed, with its input offsets, but "
            f"{len(d['missing'])} of the {d['produced']} records it wrote are not in the committed output: "
            f"{', '.join(fmt(v) for v in d['missing'][:8])}.")


def _double_commit(d: Mapping[str, Any]) -> str:
    return (f"Input {fmt(d['value'])} ({_where(d)}) was consumed by {len(d['txn_ops'])} committed transactions "
            f"({_ops(d['txn_ops'])}): a processor whose partitions had moved (a zombie) was not fenced.")


def _reordered_output(d: Mapping[str, Any]) -> str:
    return (f"Input partition {fmt(d['partition'])} offsets {d['offsets'][0]} then {d['offsets'][1]} came out in "
            f"output partition {fmt(d['output_partition'])} at offsets {d['output_offsets'][0]} then "
            f"{d['output_offsets'][1]}: the later input was written first.")


def _hanging_transaction(d: Mapping[str, Any]) -> str:
    held = ", ".join(f"partition {fmt(p)} (last stable offset {lso}, high watermark {hw})" for p, lso, hw in d["partitions"])
    return (f"At the end, with no processor running, {held} stayed held back for {d['waited_s']:.0f} s, more than "
            f"twice the transaction timeout of {d['timeout_ms'] / 1000:g} s: a transaction that was never committed "
            f"nor aborted keeps read_committed readers from everything after it.")


_EXPLAINERS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "lost-input": _lost_input,
    "duplicate-output": _duplicate_output,
    "aborted-output": _aborted_output,
    "unknown-output": _unknown_output,
    "txn-output-missing": _txn_output_missing,
    "double-commit": _double_commit,
    "reordered-output": _reordered_output,
    "hanging-transaction": _hanging_transaction,
}

_UNITS = {
    "lost-input": "acknowledged input{s} never in the committed output, though the group committed past {them}",
    "duplicate-output": "input{s} copied more than once into the committed output",
    "aborted-output": "output record{s} of aborted transactions visible at read_committed",
    "unknown-output": "output record{s} that no transaction wrote",
    "txn-output-missing": "committed transaction{s} whose writes are missing from the output",
    "double-commit": "input{s} consumed by more than one committed transaction",
    "reordered-output": "pair{s} of one input partition's records written out of order",
    "hanging-transaction": "final read{s} held back by a transaction that never ended",
}


def explain(anomaly: str, data: Mapping[str, Any]) -> str:
    """The sentence for one witness of `anomaly`."""
    try:
        return _EXPLAINERS[anomaly](data)
    except KeyError:
        raise ValueError(f"no explainer for anomaly {anomaly!r}; known: {', '.join(sorted(_EXPLAINERS))}") from None


def summarize(anomaly: str, datas: Sequence[Mapping[str, Any]]) -> str:
    """What the count of `anomaly` counts, in one sentence fragment ("3 inputs copied more than once ...")."""
    n = len(datas)
    unit = _UNITS[anomaly].format(s="" if n == 1 else "s", them="it" if n == 1 else "them")
    return f"{n} {unit}"
