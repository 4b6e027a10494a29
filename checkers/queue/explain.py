"""Sentences for queue anomalies, built from each witness's data.

Every witness is first a plain data map (key, values, op indexes, deltas), then
`explain(anomaly, data)` renders one sentence from it, in the manner of
Elle's two-step explainers (data first, prose second), so that tests assert
exact sentences and reports can show either form.

Invariants: pure functions of the data map; the sentence names every op by
its history index (`op 17`) and every value as it appears in the history.

Thread-safety: pure; safe from any thread.

Sources: Elle's `DataExplainer` protocol (explain-pair-data, then
render-explanation), jepsen.tests.kafka's error maps.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["explain", "fmt", "summarize"]


def fmt(value: Any) -> str:
    """A value as the sentences show it: numbers bare, strings quoted, lists in brackets."""
    if isinstance(value, str):
        return '"' + value + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(fmt(v) for v in value) + "]"
    if value is None:
        return "nil"
    return str(value)


def _list(values: Sequence[Any], limit: int = 8) -> str:
    shown = ", ".join(fmt(v) for v in values[:limit])
    if len(values) > limit:
        shown += f", ... ({len(values) - limit} more)"
    return shown


def _messages(n: int) -> str:
    return f"{n} message" if n == 1 else f"{n} messages"


def _inconsistent_offsets(d: Mapping[str, Any]) -> str:
    return (
        f"Offset {d['offset']} of key {fmt(d['key'])} holds {len(d['values'])} different values: "
        f"{_list(d['values'])}."
    )


def _duplicate(d: Mapping[str, Any]) -> str:
    return (
        f"Value {fmt(d['value'])} appears {d['count']} times in key {fmt(d['key'])}, "
        f"at offsets {_list(d['offsets'])}."
    )


def _g1a(d: Mapping[str, Any]) -> str:
    return (
        f"Op {d['reader']} polled {fmt(d['value'])} from key {fmt(d['key'])}, "
        f"but op {d['writer']}, which sent it, failed."
    )


def _precommitted_read(d: Mapping[str, Any]) -> str:
    return (
        f"Op {d['op']} polled {fmt(d['value'])} from key {fmt(d['key'])}, "
        "a message it sent itself, before its transaction committed."
    )


def _lost_write(d: Mapping[str, Any]) -> str:
    return (
        f"Op {d['writer']} sent {fmt(d['value'])} to key {fmt(d['key'])} (log index {d['index']}), "
        f"and no poll observed it, although op {d['max_read']} polled a message at log index "
        f"{d['max_read_index']}, after it."
    )


def _unseen(d: Mapping[str, Any]) -> str:
    return (
        f"{_messages(d['count'])} sent to key {fmt(d['key'])} and acknowledged "
        f"{'was' if d['count'] == 1 else 'were'} never polled: {_list(d['values'])}."
    )


def _poll_skip(d: Mapping[str, Any]) -> str:
    return (
        f"Process {fmt(d['process'])} polled {fmt(d['values'][0])} from key {fmt(d['key'])} in op "
        f"{d['ops'][0]}, then {fmt(d['values'][1])} in op {d['ops'][1]}, skipping "
        f"{_messages(len(d['skipped']))}: {_list(d['skipped'])}."
    )


def _nonmonotonic_poll(d: Mapping[str, Any]) -> str:
    return (
        f"Process {fmt(d['process'])} polled {fmt(d['values'][0])} from key {fmt(d['key'])} in op "
        f"{d['ops'][0]}, then {fmt(d['values'][1])} in op {d['ops'][1]}, "
        f"{_backwards(d['delta'])}."
    )


def _nonmonotonic_send(d: Mapping[str, Any]) -> str:
    return (
        f"Process {fmt(d['process'])} sent {fmt(d['values'][0])} to key {fmt(d['key'])} in op "
        f"{d['ops'][0]}, then {fmt(d['values'][1])} in op {d['ops'][1]}, "
        f"{_backwards(d['delta'])}."
    )


def _backwards(delta: int) -> str:
    if delta == 0:
        return "the same position in the log"
    steps = -delta
    return f"{steps} position{'s' if steps != 1 else ''} earlier in the log"


def _int_poll_skip(d: Mapping[str, Any]) -> str:
    return (
        f"Op {d['op']} polled {fmt(d['values'][0])} then {fmt(d['values'][1])} from key "
        f"{fmt(d['key'])}, skipping {_messages(len(d['skipped']))}: {_list(d['skipped'])}."
    )


def _int_nonmonotonic_poll(d: Mapping[str, Any]) -> str:
    return (
        f"Op {d['op']} polled {fmt(d['values'][0])} then {fmt(d['values'][1])} from key "
        f"{fmt(d['key'])}, {_backwards(d['delta'])}."
    )


def _int_send_skip(d: Mapping[str, Any]) -> str:
    return (
        f"Op {d['op']} sent {fmt(d['values'][0])} then {fmt(d['values'][1])} to key "
        f"{fmt(d['key'])}, but {_messages(len(d['skipped']))} "
        f"{'lies' if len(d['skipped']) == 1 else 'lie'} between them in the log: "
        f"{_list(d['skipped'])}."
    )


def _int_nonmonotonic_send(d: Mapping[str, Any]) -> str:
    return (
        f"Op {d['op']} sent {fmt(d['values'][0])} then {fmt(d['values'][1])} to key "
        f"{fmt(d['key'])}, but the second landed {_backwards(d['delta'])}."
    )


def _read_above_watermark(d: Mapping[str, Any]) -> str:
    offsets = d["offsets"]
    where = f"offset {offsets[0]}" if len(offsets) == 1 else f"offsets {_list(offsets)}"
    return (
        f"Op {d['op']} (process {fmt(d['process'])}) polled {_list(d['values'])} from key {fmt(d['key'])} at "
        f"{where}, but the high watermark its client saw with that poll was {d['watermark']}: the broker "
        "served records it had not yet committed."
    )


def _watermark_regression(d: Mapping[str, Any]) -> str:
    how = "polled a message at" if d["kind"] == "read" else "been acknowledged (acks=all) for a message at"
    return (
        f"The final reads of op {d['op']} were given a high watermark of {d['watermark']} for key "
        f"{fmt(d['key'])}, but op {d['witness']} had already {how} offset {d['offset']} of it: the "
        "committed part of the log went backwards."
    )


def _hanging_transaction(d: Mapping[str, Any]) -> str:
    return (
        f"The final read of op {d['op']} stopped at offset {d['last_stable_offset']} of key {fmt(d['key'])}, its "
        f"last stable offset, below the high watermark {d['high_watermark']}, and went {d['stalled_s']:g} s "
        f"without progress with no other client running, past twice the transaction timeout "
        f"({d['timeout_ms']} ms): a transaction there was never committed nor aborted, so read_committed "
        "readers never see what follows it."
    )


def _missing_marker(d: Mapping[str, Any]) -> str:
    before = (f"offset {d['next_offset']}, where op {d['next_op']}, its producer's next transaction, wrote key "
              f"{fmt(d['key'])}" if d.get("next_op") is not None else
              f"offset {d['range'][1]}, the end of the final read_uncommitted read (every transaction below "
              "where the complete read_committed final read reached had ended by then)")
    return (
        f"Op {d['op']} (process {fmt(d['process'])}) wrote key {fmt(d['key'])} up to offset {d['last_offset']}, so "
        f"its commit or abort marker lies after that offset and before {before}. Read at read_uncommitted from "
        f"offset {d['range'][0]} to {d['range'][1]}, the key has {_n(d['markers'], 'control record')} for "
        f"{_n(d['transactions'], 'such transaction window')}: too few to give every window one of its own, so some "
        "transaction never ended on this partition (a marker refused and not sent again) and a later "
        f"marker decided its records. This window is one that can be left without (of those, the one with the "
        f"fewest control records inside: {d.get('inside', '?')})."
    )


def _step(step: Mapping[str, Any]) -> str:
    a, b = f"T{step['from'] + 1}", f"T{step['to'] + 1}"
    kind = step["type"]
    if kind == "wr":
        return f"{a} sent {fmt(step['value'])} to key {fmt(step['key'])}, which was polled by {b}"
    if kind == "ww":
        return (
            f"{a} sent {fmt(step['value'])} to key {fmt(step['key'])} before {b} sent "
            f"{fmt(step['value_after'])}"
        )
    if kind == "process":
        return f"{a} and {b} ran in that order on process {fmt(step['process'])}"
    if kind == "realtime":
        return f"{a} completed (op {step['completed']}) before {b} was invoked (op {step['invoked']})"
    raise ValueError(f"unknown dependency type {kind!r} in a cycle step; expected wr, ww, process or realtime")


def _cycle(d: Mapping[str, Any]) -> str:
    names = ", ".join(f"T{i + 1} = op {index}" for i, index in enumerate(d["ops"]))
    steps = "; ".join(_step(s) for s in d["steps"])
    return f"Let {names}. Then {steps}: a cycle."


_EXPLAINERS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "inconsistent-offsets": _inconsistent_offsets,
    "duplicate": _duplicate,
    "G1a": _g1a,
    "precommitted-read": _precommitted_read,
    "lost-write": _lost_write,
    "unseen": _unseen,
    "poll-skip": _poll_skip,
    "nonmonotonic-poll": _nonmonotonic_poll,
    "nonmonotonic-send": _nonmonotonic_send,
    "int-poll-skip": _int_poll_skip,
    "int-nonmonotonic-poll": _int_nonmonotonic_poll,
    "int-send-skip": _int_send_skip,
    "int-nonmonotonic-send": _int_nonmonotonic_send,
    "read-above-watermark": _read_above_watermark,
    "watermark-regression": _watermark_regression,
    "hanging-transaction": _hanging_transaction,
    "missing-marker": _missing_marker,
}
for _name in ("G0", "G1c"):
    for _suffix in ("", "-process", "-realtime"):
        _EXPLAINERS[_name + _suffix] = _cycle


def explain(anomaly: str, data: Mapping[str, Any]) -> str:
    """The sentence for one witness of `anomaly`, from its data map."""
    try:
        explainer = _EXPLAINERS[anomaly]
    except KeyError:
        raise ValueError(f"no explainer for anomaly {anomaly!r}; known: {', '.join(sorted(_EXPLAINERS))}") from None
    return explainer(data)


def _n(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else (many or one + 's')}"


def _keys(datas: Sequence[Mapping[str, Any]]) -> str:
    keys = {repr(d.get("key")) for d in datas if "key" in d}
    return f", on {_n(len(keys), 'key')}" if keys else ""


def _distinct(datas: Sequence[Mapping[str, Any]], field: str = "value") -> int:
    return len({(repr(d.get("key")), repr(d.get(field))) for d in datas})


def _summary_lost_write(ds: Sequence[Mapping[str, Any]]) -> str:
    return f"{_n(len(ds), 'acknowledged message')} lost (later messages of the same key were read){_keys(ds)}"


def _summary_unseen(ds: Sequence[Mapping[str, Any]]) -> str:
    total = sum(int(d.get("count", 0)) for d in ds)
    return f"{_n(total, 'acknowledged message')} never read{_keys(ds)}"


def _summary_g1a(ds: Sequence[Mapping[str, Any]]) -> str:
    return (f"{_n(len(ds), 'read')} of {_n(_distinct(ds), 'message')} whose send failed or was aborted"
            f"{_keys(ds)}")


def _summary_precommitted(ds: Sequence[Mapping[str, Any]]) -> str:
    ops = len({d.get("op") for d in ds})
    return f"{_n(ops, 'transaction')} read {_n(len(ds), 'message')} of their own before committing{_keys(ds)}"


def _summary_duplicate(ds: Sequence[Mapping[str, Any]]) -> str:
    extra = sum(max(0, int(d.get("count", 2)) - 1) for d in ds)
    return f"{_n(len(ds), 'message')} stored more than once ({_n(extra, 'extra copy', 'extra copies')}){_keys(ds)}"


def _summary_inconsistent(ds: Sequence[Mapping[str, Any]]) -> str:
    return f"{_n(len(ds), 'offset')} holding more than one value{_keys(ds)}"


def _summary_poll_skip(ds: Sequence[Mapping[str, Any]]) -> str:
    skipped = sum(len(d.get("skipped") or ()) for d in ds)
    return f"{_n(len(ds), 'poll')} that skipped past {_n(skipped, 'message')} in all{_keys(ds)}"


def _summary_nonmonotonic(what: str) -> Callable[[Sequence[Mapping[str, Any]]], str]:
    def summary(ds: Sequence[Mapping[str, Any]]) -> str:
        processes = len({repr(d.get("process")) for d in ds})
        return f"{_n(len(ds), what)} that went back in the log, by {_n(processes, 'process', 'processes')}{_keys(ds)}"
    return summary


def _summary_internal(what: str) -> Callable[[Sequence[Mapping[str, Any]]], str]:
    def summary(ds: Sequence[Mapping[str, Any]]) -> str:
        return f"{_n(len({d.get('op') for d in ds}), 'op')} {what}{_keys(ds)}"
    return summary


def _summary_read_above_watermark(ds: Sequence[Mapping[str, Any]]) -> str:
    messages = sum(len(d.get("offsets") or ()) for d in ds)
    return f"{_n(len(ds), 'poll')} that returned {_n(messages, 'message')} above the high watermark{_keys(ds)}"


def _summary_watermark_regression(ds: Sequence[Mapping[str, Any]]) -> str:
    return f"{_n(len(ds), 'high watermark')} below an offset already read or acknowledged{_keys(ds)}"


def _summary_hanging_transaction(ds: Sequence[Mapping[str, Any]]) -> str:
    return f"{_n(len(ds), 'key')} whose final read a transaction that never ended held back for good"


def _summary_missing_marker(ds: Sequence[Mapping[str, Any]]) -> str:
    return f"{_n(len(ds), 'transaction')} with no commit or abort marker of its own{_keys(ds)}"


def _summary_cycle(ds: Sequence[Mapping[str, Any]]) -> str:
    ops = len({o for d in ds for o in d.get("ops", ())})
    return f"{_n(len(ds), 'dependency cycle')} through {_n(ops, 'transaction')}"


_SUMMARIES: dict[str, Callable[[Sequence[Mapping[str, Any]]], str]] = {
    "lost-write": _summary_lost_write,
    "unseen": _summary_unseen,
    "G1a": _summary_g1a,
    "precommitted-read": _summary_precommitted,
    "duplicate": _summary_duplicate,
    "inconsistent-offsets": _summary_inconsistent,
    "poll-skip": _summary_poll_skip,
    "nonmonotonic-poll": _summary_nonmonotonic("poll"),
    "nonmonotonic-send": _summary_nonmonotonic("send"),
    "int-poll-skip": _summary_internal("whose polls skipped within the op"),
    "int-nonmonotonic-poll": _summary_internal("whose polls went back within the op"),
    "int-send-skip": _summary_internal("whose sends were interleaved with other messages"),
    "int-nonmonotonic-send": _summary_internal("whose sends landed out of order within the op"),
    "read-above-watermark": _summary_read_above_watermark,
    "watermark-regression": _summary_watermark_regression,
    "hanging-transaction": _summary_hanging_transaction,
    "missing-marker": _summary_missing_marker,
}


def summarize(anomaly: str, datas: Sequence[Mapping[str, Any]]) -> str:
    """One sentence that says what the count of `anomaly` counts, from all its witnesses' data maps.

    A witness of `unseen` is a key with many messages and one of G1a is one read, so "× N" alone
    misleads; the sentence names the unit ("297 reads of 27 messages whose send failed or was
    aborted, on 4 keys")."""
    summary = _SUMMARIES.get(anomaly)
    if summary is None:
        if anomaly.startswith(("G0", "G1c")):
            return _summary_cycle(datas)
        return _n(len(datas), "witness", "witnesses")
    return summary(datas)
