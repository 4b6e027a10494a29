"""The history model: `Op`, `History`, and their JSONL and EDN forms.

A history is the shared language of logquake: workloads record it, the harness
stores it, checkers judge it and reports render it. One operation is a map in
Jepsen's op model (`index`, `time`, `process`, `type`, `f`, `value`, plus any
other keys such as `error`), written one per line as JSON in `history.jsonl`
and importable from / exportable to Jepsen EDN.

Invariants
- `type` is one of `invoke`, `ok`, `fail`, `info`. A client process is
  sequential: it invokes, then completes with exactly one of `ok` (it
  happened), `fail` (it certainly did not happen) or `info` (unknown). A
  process that gets `info` is dead; its thread continues under a new process
  number, as in Jepsen. `History` pairs every completion with the pending
  invocation of its process and rejects a history that breaks this (a second
  invocation while one is pending, a completion with nothing pending) with a
  `HistoryError` that names the file and line.
- Nemesis ops (`process == "nemesis"`) are logged by Jepsen as `info`/`info`
  pairs (newer Jepsen) or `invoke`/`info` pairs; for the nemesis the first op
  of each pair is the invocation and the next one its completion, whatever
  their types.
- Ops whose `process` is missing (`None`, e.g. Elle's paper example) are
  paired in order as if they were one sequential process.
- `Op.index` is the op's position in the recorded history; loaders assign
  file order when the source has none. Realtime order is judged on positions
  in this `History` (which equal indexes for any history recorded in order).

Value conversion from EDN: keywords and symbols become `str` without the
colon (`:ok` -> "ok", `:append` -> "append"; a namespaced `:a/b` -> "a/b"),
vectors and lists become `list`, maps `dict` (keys converted too; a vector
used as a map key or set member becomes a `tuple`, to stay hashable), sets
`frozenset`, `nil` `None`, characters `str`; strings, integers, floats and
booleans are kept as they are; a tagged value (`#inst "..."`, `#uuid "..."`)
reads as its tagged form (the string). EDN strings and keywords therefore
read back the same: a checker never needs to care which one a foreign history
used. The reader is our own (`read_edn`: one regular expression and an
explicit stack, more than ten times faster than edn_format's PLY parser);
`edn_to_python` converts values that edn_format produced, for callers that
use it.

EDN writing rule (documented so other tools can rely on it): the op's keys are
keywords; `type`, `f` and a `"nemesis"` process are keywords; inside `value`,
a vector of one to three elements whose first element is a micro-op name from
`MICRO_OP_NAMES` (`append`, `r`, `w`, `send`, `poll`, ...) is written with that
name as a keyword, as Jepsen writes transactions (`[:append 3 1]`,
`[:send 2 17]`, `[:poll]`); an `error` value (or the first element of an `error` vector)
that looks like a keyword (`[a-z][a-z0-9-]*`) is written as a keyword. Every
other string is written as an EDN string. Because reading turns keywords back
into strings, JSONL -> EDN -> read gives the same `History`.

JSON limits: JSON map keys are strings, so an EDN map with integer keys (a
Jepsen kafka poll `{2 [[0 17]]}`) comes back from JSONL with string keys
(`{"2": [[0, 17]]}`); checkers that compare keys normalise them. Sets are
written to JSON as sorted lists.

Scale: JSONL is decoded in chunks (one JSON array per 8,192 lines) with the
cyclic garbage collector paused (`gc_paused`); a 1,000,000-op queue history
(150 MB) loads in about 8 s of CPU into about 0.95 GiB; EDN takes about 2.5
times longer. `History.stream_jsonl` keeps the ops in their file instead (16
bytes an op for where each line starts, plus the History's own 9 for pairing):
each pass over the ops reads the file again, and an op fetched by position is
read alone; `logquake check` streams large JSONL histories.

Hostile input: every reader refuses, with a `HistoryError` that names the file
and line (and the column where it helps), values nested more than
`MAX_NESTING_DEPTH` levels (Python's recursion would otherwise overflow in the
reader, or later in a checker), integers longer than Python converts
(`sys.get_int_max_str_digits`), ratios without a value (`1/0`), cut-off files
and bytes that are not UTF-8.

Thread-safety: `Op` and `History` are immutable after construction (do not
mutate op values) and may be shared between threads. `JsonlWriter` is
thread-safe: each `write` appends one whole line under a lock and flushes.

Sources: Jepsen's op model (jepsen.history; Kingsbury, "Jepsen" analyses), the
EDN spec (https://github.com/edn-format/edn), Porcupine's Jepsen log format
(github.com/anishathalye/porcupine, test_data/jepsen).
"""

from __future__ import annotations

import array
import contextlib
import datetime
import functools
import gc
import io
import json
import math
import os
import re
import sys
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, overload


__all__ = [
    "EMPTY",
    "EdnKeyword",
    "FORMATS",
    "MAX_NESTING_DEPTH",
    "MICRO_OP_NAMES",
    "NEMESIS",
    "OP_TYPES",
    "History",
    "HistoryError",
    "JsonlWriter",
    "Op",
    "detect_format",
    "edn_dumps",
    "edn_to_python",
    "gc_paused",
    "read_edn",
    "op_from_dict",
    "op_to_dict",
    "OpCounter",
    "completion",
    "describe_op_counts",
    "invocation",
    "op_counts",
]

EMPTY: Mapping[str, Any] = MappingProxyType({})
NEMESIS = "nemesis"
OP_TYPES = frozenset({"invoke", "ok", "fail", "info"})
FORMATS = ("auto", "jsonl", "edn", "edn-lines", "jepsen-log")
# How deep vectors, lists and maps may nest in one op (the op map itself is level 1). Jepsen's ops nest a
# few levels (a poll's value: [[:poll {key [[offset value]]}]] is 5 inside the op); a reader that
# recursed over a value 100,000 levels deep, or a checker that walks it, would overflow Python's stack.
MAX_NESTING_DEPTH = 100
_KNOWN_KEYS = ("index", "time", "process", "type", "f", "value")

# Micro-op names that Jepsen writes as keywords inside transaction values
# (Elle list-append and rw-register, the kafka workload, Knossos registers).
MICRO_OP_NAMES = frozenset(
    {"append", "r", "w", "send", "poll", "read", "write", "cas", "assign", "subscribe", "add", "get", "put"}
)
_KEYWORDISH = re.compile(r"^[a-z][a-z0-9-]*$")


class OpCounter:
    """The one count of operations every output shows: client operations by completion type.

    A client operation is an invocation by a process other than the nemesis
    (assigns, subscribes and final reads included); `total` counts
    invocations, `ok` / `fail` / `info` their completions, and `pending` the
    invocations without a completion yet (after a run: none, or those cut
    off by a crash). The harness's live progress line and the run's
    `results.json` count with this class, and the report shows the latter, so
    one run has one set of figures everywhere.
    """

    __slots__ = ("total", "ok", "fail", "info")

    def __init__(self) -> None:
        self.total = self.ok = self.fail = self.info = 0

    def add(self, process: Any, type_: str) -> None:
        """Count one op (an invocation or a completion) of `process`."""
        if process == NEMESIS:
            return
        if type_ == "invoke":
            self.total += 1
        elif type_ == "ok":
            self.ok += 1
        elif type_ == "fail":
            self.fail += 1
        elif type_ == "info":
            self.info += 1

    @property
    def pending(self) -> int:
        return max(0, self.total - self.ok - self.fail - self.info)

    def as_dict(self) -> dict[str, int]:
        return {"total": self.total, "ok": self.ok, "fail": self.fail, "info": self.info, "pending": self.pending}

    def __str__(self) -> str:
        return describe_op_counts(self.as_dict())


def describe_op_counts(counts: Mapping[str, int]) -> str:
    """"579 operations: 560 ok, 1 fail, 18 info" (pending only when there are any)."""
    total = counts.get("total", 0)
    parts = [f"{counts.get('ok', 0)} ok", f"{counts.get('fail', 0)} fail", f"{counts.get('info', 0)} info"]
    if counts.get("pending"):
        parts.append(f"{counts['pending']} pending")
    return f"{total} operation{'' if total == 1 else 's'}: " + ", ".join(parts)


def op_counts(ops: Iterable[Any]) -> dict[str, int]:
    """`OpCounter.as_dict()` over a history's ops (`Op`s or op maps)."""
    counter = OpCounter()
    for op in ops:
        if isinstance(op, Op):
            counter.add(op.process, op.type)
        else:
            counter.add(op.get("process"), op.get("type"))
    return counter.as_dict()


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building millions of containers.

    Each collection walks every tracked object, and allocating a million op
    values triggers hundreds of them: reading a large history runs about three
    times faster without. Reference counting still frees everything; the
    collector's previous state is restored on exit. (Process-wide: other
    threads also see no cyclic collection meanwhile, which only delays it.)
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _without_gc(function: Any) -> Any:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with gc_paused():
            return function(*args, **kwargs)

    return wrapper


def _json_problem(error: BaseException) -> str:
    """Why a JSON text did not decode, in words (nesting and number limits included)."""
    if isinstance(error, json.JSONDecodeError):
        return f"{error.msg} at column {error.colno}"
    if isinstance(error, RecursionError):
        return "nested too deeply to read (arrays or maps inside one another hundreds of levels deep)"
    return str(error).split(";")[0]  # e.g. "Exceeds the limit (4300 digits) for integer string conversion..."


_JSON_BRACKETS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _json_too_deep(text: str) -> int | None:
    """The column (1-based) of the bracket that opens level MAX_NESTING_DEPTH + 1 of a JSON line; None if
    the line nests no deeper than that. Strings are skipped whole, so brackets inside them do not count."""
    depth = 0
    for m in _JSON_BRACKETS.finditer(text):
        c = text[m.start()]
        if c == "[" or c == "{":
            depth += 1
            if depth > MAX_NESTING_DEPTH:
                return m.start() + 1
        elif c == "]" or c == "}":
            depth -= 1
    return None


class HistoryError(ValueError):
    """A history that cannot be read or does not follow the op model.

    The message names the file (or `<lines>` / `<ops>`), the line or op, and
    what was expected.
    """


@dataclass(frozen=True, slots=True)
class Op:
    """One operation of a history, in Jepsen's op model.

    `time` is nanoseconds since the test started (None when the source has no
    times). `process` is an int for clients, "nemesis" for the nemesis, or
    None when the source has none. `extra` holds every other key (`error`,
    `node`, ...), read-only.
    """

    index: int
    time: int | None
    process: int | str | None
    type: str
    f: str | None
    value: Any
    extra: Mapping[str, Any] = field(default_factory=lambda: EMPTY)

    def __post_init__(self) -> None:
        # Keep `extra` read-only even when a caller passes a plain dict.
        if self.extra.__class__ is not MappingProxyType:
            object.__setattr__(self, "extra", MappingProxyType(dict(self.extra)) if self.extra else EMPTY)

    # Values are usually lists, which are unhashable; hash on the identifying
    # fields only (equal ops still have equal hashes).
    def __hash__(self) -> int:
        return hash((self.index, self.type, self.process, self.f))

    @property
    def is_invoke(self) -> bool:
        return self.type == "invoke"

    @property
    def is_ok(self) -> bool:
        return self.type == "ok"

    @property
    def is_fail(self) -> bool:
        return self.type == "fail"

    @property
    def is_info(self) -> bool:
        return self.type == "info"

    @property
    def is_client(self) -> bool:
        return self.process != NEMESIS

    def get(self, key: str, default: Any = None) -> Any:
        """The op's field or extra key `key`, like a Jepsen op map lookup."""
        if key in _KNOWN_KEYS:
            return getattr(self, key)
        return self.extra.get(key, default)

    def with_(self, **changes: Any) -> "Op":
        """A copy with some fields replaced (`extra` given as a plain dict is frozen)."""
        if "extra" in changes and not isinstance(changes["extra"], MappingProxyType):
            changes["extra"] = MappingProxyType(dict(changes["extra"])) if changes["extra"] else EMPTY
        return replace(self, **changes)

    @property
    def error(self) -> Any:
        """The completion's error (Jepsen's `:error`), None when it has none."""
        return self.extra.get("error")

    def __reduce__(self) -> tuple:
        # `extra` is a read-only view, which pickle cannot copy: rebuild from a plain dict (client processes
        # send ops over a pipe, see workloads.isolated)
        return (Op, (self.index, self.time, self.process, self.type, self.f, self.value, dict(self.extra)))


def read_op_maps(path: str | os.PathLike[str]) -> tuple[list[dict[str, Any]], list[int]]:
    """The op maps of a JSONL history read leniently, and the numbers of the lines that are not op maps.

    For a history that may be damaged (a crashed run's last line cut off): what parses is kept, in file
    order, with an `index` filled in where a line has none. `History.from_jsonl` is the strict reader
    of the same format; reports draw damaged runs through this one."""
    ops: list[dict[str, Any]] = []
    bad_lines: list[int] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line_number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                op = json.loads(line)
            except (ValueError, RecursionError):
                bad_lines.append(line_number)
                continue
            if not isinstance(op, dict) or "type" not in op:
                bad_lines.append(line_number)
                continue
            if not isinstance(op.get("index"), int):
                op["index"] = len(ops)
            ops.append(op)
    return ops, bad_lines


def invocation(f: str, value: Any, extra: Mapping[str, Any] | None = None) -> Op:
    """An operation a generator asks for: an `invoke` op without index, time or process yet.

    The harness gives it its process, and the recorder its index and time, when it is invoked."""
    return Op(-1, None, None, "invoke", f, value, extra or EMPTY)


def completion(type_: str, value: Any, error: Any = None, extra: Mapping[str, Any] | None = None) -> Op:
    """What a client answers: an `ok`, `fail` or `info` op (the harness adds the process and f)."""
    if type_ not in ("ok", "fail", "info"):
        raise ValueError(f"a completion is ok, fail or info, not {type_!r}")
    fields = dict(extra or ())
    if error is not None:
        fields["error"] = error
    return Op(-1, None, None, type_, None, value, fields)


# ---------------------------------------------------------------------------
# op <-> dict


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_KNOWN_KEY_SET = frozenset(_KNOWN_KEYS)
_OP_TYPE_NAMES = {t: t for t in OP_TYPES}
_intern = sys.intern


def _op_from_mapping(d: Any, where: str | None, default_index: int | None) -> Op | None:
    """An Op from an op map, or HistoryError naming `where`.

    With `where` None this is the fast path for well-formed maps: it returns
    None instead of raising, and the caller retries with a location.
    """
    if where is None:
        if d.__class__ is not dict:
            return None
        op_type = d.get("type")
        if op_type not in OP_TYPES:
            return None
        index = d.get("index", default_index)
        time = d.get("time")
        process = d.get("process")
        f = d.get("f")
        if (
            index.__class__ is not int
            or (time is not None and time.__class__ is not int)
            or (process is not None and process.__class__ is not int and process.__class__ is not str)
            or (f is not None and f.__class__ is not str)
        ):
            return None
        # Share one string object for the names every op repeats (type, f,
        # micro-op names): a million-op history saves ~150 MB.
        op_type = _OP_TYPE_NAMES[op_type]
        if f is not None:
            f = _intern(f)
        value = d.get("value")
        if value.__class__ is list:
            for mop in value:
                if mop.__class__ is list and mop and mop[0].__class__ is str:
                    mop[0] = _intern(mop[0])
        if d.keys() <= _KNOWN_KEY_SET:
            return Op(index, time, process, op_type, f, value)
        return Op(index, time, process, op_type, f, value,
                  MappingProxyType({k: v for k, v in d.items() if k not in _KNOWN_KEY_SET}))
    if not isinstance(d, Mapping):
        raise HistoryError(f"{where}: expected a map with :type, got {_short(d)}")
    if "type" not in d:
        raise HistoryError(f"{where}: expected a map with :type, got {_short(dict(d))}")
    op_type = d["type"]
    if op_type not in OP_TYPES:
        raise HistoryError(
            f"{where}: :type must be one of invoke, ok, fail, info; got {_short(op_type)}"
        )
    index = d.get("index", default_index)
    if index is None:
        raise HistoryError(f"{where}: op has no :index and none can be assigned: {_short(dict(d))}")
    if not isinstance(index, int) or isinstance(index, bool):
        raise HistoryError(f"{where}: :index must be an integer, got {_short(index)}")
    time = d.get("time")
    if time is not None:
        if isinstance(time, float) and math.isfinite(time):
            time = int(time)
        elif not isinstance(time, int) or isinstance(time, bool):
            raise HistoryError(f"{where}: :time must be integer nanoseconds or absent, got {_short(time)}")
    process = d.get("process")
    if process is not None and (isinstance(process, bool) or not isinstance(process, (int, str))):
        raise HistoryError(f"{where}: :process must be an integer or \"nemesis\", got {_short(process)}")
    f = d.get("f")
    if f is not None and not isinstance(f, str):
        raise HistoryError(f"{where}: :f must be a name, got {_short(f)}")
    extra_keys = [k for k in d if k not in _KNOWN_KEYS]
    extra = MappingProxyType({k: d[k] for k in extra_keys}) if extra_keys else EMPTY
    return Op(index, time, process, op_type, f, d.get("value"), extra)


def op_from_dict(d: Mapping[str, Any], *, default_index: int | None = None) -> Op:
    """An `Op` from a Jepsen op map with string keys (as read from JSON).

    Raises `HistoryError` for a map without a valid `type`, or without an
    `index` when `default_index` is None.
    """
    return _op_from_mapping(d, "<op>", default_index)


def op_to_dict(op: Op) -> dict[str, Any]:
    """The op as a plain map (keys in Jepsen's order; `time`, `process`, `f`
    omitted when None; `value` always present)."""
    d: dict[str, Any] = {"index": op.index}
    if op.time is not None:
        d["time"] = op.time
    if op.process is not None:
        d["process"] = op.process
    d["type"] = op.type
    if op.f is not None:
        d["f"] = op.f
    d["value"] = op.value
    if op.extra:
        d.update(op.extra)
    return d


# ---------------------------------------------------------------------------
# EDN values


def edn_to_python(x: Any) -> Any:
    """Convert a value read by edn_format into plain Python (see module doc)."""
    # Imported here, not at the top: only callers holding edn_format values need it, and
    # importing it (a PLY parser, pyrfc3339) costs ~30 ms of every `logquake check`.
    from edn_format import Char, Keyword, Symbol

    # Keyword, Symbol and Char subclass str in edn_format: test them first.
    if isinstance(x, (Keyword, Symbol)):
        return x.name
    if isinstance(x, Char):
        return str.__str__(x)
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    if isinstance(x, Mapping):
        return {_edn_key(k): edn_to_python(v) for k, v in x.items()}
    if isinstance(x, (set, frozenset)):
        return frozenset(_edn_key(v) for v in x)
    if isinstance(x, Sequence):  # edn_format's ImmutableList, tuples, lists
        return [edn_to_python(v) for v in x]
    return x


def _edn_key(x: Any) -> Any:
    v = edn_to_python(x)
    if isinstance(v, list):
        return _freeze(v)
    if isinstance(v, dict):
        return tuple(sorted(v.items(), key=repr))
    return v


def _freeze(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_freeze(x) for x in v)
    return v


class EdnKeyword:
    """Marks a string to be written as an EDN keyword by `edn_dumps`."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


_EDN_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
_EDN_ESCAPE_RE = re.compile(r'["\\\n\t\r]')


def _edn_str(s: str) -> str:
    return '"' + _EDN_ESCAPE_RE.sub(lambda m: _EDN_ESCAPES[m.group()], s) + '"'


def _edn_write(x: Any, out: list[str]) -> None:
    if x is None:
        out.append("nil")
    elif x is True:
        out.append("true")
    elif x is False:
        out.append("false")
    elif isinstance(x, EdnKeyword):
        out.append(":" + x.name)
    elif isinstance(x, int):
        out.append(str(x))
    elif isinstance(x, float):
        if math.isnan(x):
            out.append("##NaN")
        elif math.isinf(x):
            out.append("##Inf" if x > 0 else "##-Inf")
        else:
            out.append(repr(x))
    elif isinstance(x, str):
        out.append(_edn_str(x))
    elif isinstance(x, (list, tuple)):
        out.append("[")
        for i, v in enumerate(x):
            if i:
                out.append(" ")
            _edn_write(v, out)
        out.append("]")
    elif isinstance(x, Mapping):
        out.append("{")
        for i, (k, v) in enumerate(x.items()):
            if i:
                out.append(", ")
            _edn_write(k, out)
            out.append(" ")
            _edn_write(v, out)
        out.append("}")
    elif isinstance(x, (set, frozenset)):
        out.append("#{")
        for i, v in enumerate(sorted(x, key=repr)):
            if i:
                out.append(" ")
            _edn_write(v, out)
        out.append("}")
    elif isinstance(x, Op):
        out.append(_op_to_edn(x))
    elif isinstance(x, datetime.datetime):
        out.append("#inst " + _edn_str(x.isoformat()))
    elif isinstance(x, uuid.UUID):
        out.append("#uuid " + _edn_str(str(x)))
    else:
        raise HistoryError(f"cannot write {_short(x)} (a {type(x).__name__}) as EDN")


def edn_dumps(x: Any) -> str:
    """Plain Python as EDN text; wrap a string in `EdnKeyword` to write a keyword.

    Ops inside `x` are written as op maps with the module doc's keyword rule.
    """
    out: list[str] = []
    _edn_write(x, out)
    return "".join(out)


def _keywordize_value(x: Any) -> Any:
    """Apply the micro-op keyword rule (see module doc) inside an op value."""
    if isinstance(x, (list, tuple)):
        if 1 <= len(x) <= 3 and isinstance(x[0], str) and x[0] in MICRO_OP_NAMES:
            return [EdnKeyword(x[0])] + [_keywordize_value(v) for v in x[1:]]
        return [_keywordize_value(v) for v in x]
    return x


def _keywordize_error(x: Any) -> Any:
    if isinstance(x, str) and _KEYWORDISH.match(x):
        return EdnKeyword(x)
    if isinstance(x, (list, tuple)) and x and isinstance(x[0], str) and _KEYWORDISH.match(x[0]):
        return [EdnKeyword(x[0]), *x[1:]]
    return x


def _op_to_edn(op: Op) -> str:
    m: dict[Any, Any] = {EdnKeyword("index"): op.index}
    if op.time is not None:
        m[EdnKeyword("time")] = op.time
    if op.process is not None:
        m[EdnKeyword("process")] = EdnKeyword(op.process) if op.process == NEMESIS else op.process
    m[EdnKeyword("type")] = EdnKeyword(op.type)
    if op.f is not None:
        m[EdnKeyword("f")] = EdnKeyword(op.f) if _KEYWORDISH.match(op.f) else op.f
    m[EdnKeyword("value")] = _keywordize_value(op.value)
    for k, v in op.extra.items():
        key = EdnKeyword(k) if isinstance(k, str) and _KEYWORDISH.match(k) else k
        m[key] = _keywordize_error(v) if k == "error" else v
    out: list[str] = []
    _edn_write(m, out)
    return "".join(out)


# ---------------------------------------------------------------------------
# EDN reader
#
# A small EDN reader that yields plain Python directly (see the module doc for
# the conversion). edn_format parses the same language but with a PLY parser
# at about 3,000 ops per second; histories have millions of ops, so this
# reader tokenises with one regular expression and builds values with an
# explicit stack. It also reports the line of every top-level form, which
# error messages need.

_EDN_INT = re.compile(r"^[+-]?\d+N?$")
_EDN_FLOAT = re.compile(r"^[+-]?\d+(?:\.\d*)?(?:[eE][+-]?\d+)?M?$")
_EDN_RATIO = re.compile(r"^[+-]?\d+/\d+$")
_EDN_CHARS = {"newline": "\n", "space": " ", "tab": "\t", "return": "\r", "formfeed": "\f", "backspace": "\b"}
_EDN_STRING_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "b": "\b", "f": "\f", "/": "/"}
_EDN_STRING_ESCAPE_RE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)", re.DOTALL)
_EDN_CLOSERS = {"[": "]", "(": ")", "{": "}", "#{": "}"}


class _EdnSyntaxError(ValueError):
    def __init__(self, position: int, message: str) -> None:
        super().__init__(message)
        self.position = position


def _edn_atom(text: str, position: int) -> Any:
    if text[0] == ":":
        if len(text) == 1:
            raise _EdnSyntaxError(position, "a lone ':' is not a keyword")
        return text[1:]
    if text == "nil":
        return None
    if text == "true":
        return True
    if text == "false":
        return False
    c = text[0]
    if c.isdigit() or (c in "+-" and len(text) > 1 and text[1].isdigit()):
        if _EDN_INT.match(text):
            digits = text.rstrip("N").lstrip("+-")
            if len(digits) > sys.get_int_max_str_digits() > 0:
                raise _EdnSyntaxError(position, f"an integer of {len(digits)} digits is longer than the "
                                                f"{sys.get_int_max_str_digits()} digits a history may hold")
            return int(text.rstrip("N"))
        if _EDN_FLOAT.match(text):
            return float(text.rstrip("M"))
        if _EDN_RATIO.match(text):
            numerator, denominator = text.split("/")
            try:
                return int(numerator) / int(denominator)
            except (ValueError, ArithmeticError) as error:  # digits past the int limit, n/0, a float overflow
                raise _EdnSyntaxError(position, f"the ratio {_short(text, 40)} has no value here ({error})") from None
        raise _EdnSyntaxError(position, f"{text!r} is not a valid EDN number")
    return text  # a symbol


def _edn_unescape(body: str) -> str:
    if "\\" not in body:
        return body

    def one(m: re.Match[str]) -> str:
        e = m.group(1)
        if e[0] == "u" and len(e) == 5:
            return chr(int(e[1:], 16))
        return _EDN_STRING_ESCAPES.get(e, e)

    return _EDN_STRING_ESCAPE_RE.sub(one, body)


def _hashable(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_hashable(x) for x in v)
    if isinstance(v, dict):
        return tuple((_hashable(k), _hashable(x)) for k, x in v.items())
    return v


def _edn_build(opener: str, items: list[Any], position: int) -> Any:
    if opener in "[(":
        return items
    if opener == "{":
        if len(items) % 2:
            raise _EdnSyntaxError(position, "a map needs an even number of forms (key value pairs)")
        return {_hashable(items[i]): items[i + 1] for i in range(0, len(items), 2)}
    return frozenset(_hashable(x) for x in items)


# One token per match, with the whitespace and comments before it; group
# numbers are tested as integers in the hot loop below.
_EDN_NEXT = re.compile(
    r"""
    (?:[\s,]+|;[^\n]*)*
    (?:
        ([^\s,\[\](){}"\\;\#][^\s,\[\](){}"\\;]*)            # 1 atom
      | (\#\{|[\[({])                                          # 2 open
      | ([\])}])                                               # 3 close
      | ("(?:[^"\\]|\\.)*")                                    # 4 string
      | (\#_)                                                  # 5 discard
      | (\#\#(?:NaN|Inf|-Inf))                                 # 6 special
      | (\#[A-Za-z][^\s,\[\](){}"\\;]*)                        # 7 tag
      | (\\(?:newline|space|tab|return|formfeed|backspace|u[0-9a-fA-F]{4}|[^\s]))  # 8 char
    )
    """,
    re.VERBOSE | re.DOTALL,
)
_EDN_TRAILING = re.compile(r"(?:[\s,]+|;[^\n]*)*\Z")
_EDN_SPECIALS = {"##NaN": math.nan, "##Inf": math.inf, "##-Inf": -math.inf}


def read_edn(text: str, *, unwrap: bool = False) -> list[tuple[Any, int]]:
    """Read every EDN form in `text`, as (value, start offset) pairs.

    With `unwrap`, `text` must hold one vector or list, and its elements are
    returned instead. Tagged values (`#inst "..."`) read as the tagged value;
    `#_` discards the next form. Raises `_EdnSyntaxError` with an offset.
    """
    # Each frame: [opener, items, start offset]
    stack: list[list[Any]] = []
    items: list[Any] | None = None  # the innermost open collection's items
    top: list[tuple[Any, int]] = []
    prefixes: list[str] = []  # pending tag or discard, innermost last
    prefix_depth: list[int] = []
    element_starts: list[int] = []
    unwrapped = False
    position = 0
    n = len(text)
    match = _EDN_NEXT.match
    while position < n:
        m = match(text, position)
        if m is None:
            if _EDN_TRAILING.match(text, position):
                break
            # Point at the offending character, past any whitespace.
            bad = position
            while bad < n and (text[bad].isspace() or text[bad] == ","):
                bad += 1
            raise _EdnSyntaxError(bad, f"unexpected character {text[bad]!r}" if bad < n else "unexpected end")
        position = m.end()
        kind = m.lastindex
        if kind == 1:
            token = m.group(1)
            c = token[0]
            if c == ":":
                if len(token) == 1:
                    raise _EdnSyntaxError(m.start(1), "a lone ':' is not a keyword")
                value: Any = token[1:]
            elif "0" <= c <= "9" or c == "-" or c == "+":
                try:
                    value = int(token)
                except ValueError:
                    value = _edn_atom(token, m.start(1))
            else:
                value = _edn_atom(token, m.start(1))
        elif kind == 2:
            if unwrap and not stack and top:
                raise _EdnSyntaxError(m.start(2), "expected one vector of ops, found a second top-level form")
            if len(stack) >= MAX_NESTING_DEPTH + unwrap:  # the vector that holds the ops is no level of an op
                raise _EdnSyntaxError(m.start(2), f"nested too deeply: more than {MAX_NESTING_DEPTH} levels of "
                                                  "vectors, lists, sets or maps inside one another (an op nests a "
                                                  "few levels)")
            items = []
            stack.append([m.group(2), items, m.start(2)])
            continue
        elif kind == 3:
            if not stack:
                raise _EdnSyntaxError(m.start(3), f"unmatched {m.group(3)!r}")
            opener, closed, open_start = stack.pop()
            if _EDN_CLOSERS[opener] != m.group(3):
                raise _EdnSyntaxError(m.start(3), f"{opener!r} closed by {m.group(3)!r}")
            items = stack[-1][1] if stack else None
            if unwrap and not stack:
                if opener not in "[(":
                    raise _EdnSyntaxError(open_start, "expected a vector or list of op maps")
                top.append((closed, open_start))
                unwrapped = True
                continue
            value = _edn_build(opener, closed, open_start)
            start = open_start
            # fall through to placing the value, with its own start offset
            if prefix_depth and prefix_depth[-1] == len(stack):
                if _edn_prefixed_drop(prefixes, prefix_depth, len(stack)):
                    continue
            if items is not None:
                items.append(value)
                if unwrap and len(stack) == 1:
                    element_starts.append(start)
            else:
                top.append((value, start))
            continue
        elif kind == 4:
            body = m.group(4)[1:-1]
            value = _edn_unescape(body) if "\\" in body else body
        elif kind == 5 or kind == 7:
            # Both apply to the next form at this depth: `#_` drops it, a tag
            # is dropped and the form kept as read.
            prefixes.append("#_" if kind == 5 else "tag")
            prefix_depth.append(len(stack))
            continue
        elif kind == 6:
            value = _EDN_SPECIALS[m.group(6)]
        else:
            body = m.group(8)[1:]
            value = _EDN_CHARS.get(body) or (chr(int(body[1:], 16)) if len(body) == 5 and body[0] == "u" else body)
        if prefix_depth and prefix_depth[-1] == len(stack):
            if _edn_prefixed_drop(prefixes, prefix_depth, len(stack)):
                continue
        if items is not None:
            items.append(value)
            if unwrap and len(stack) == 1:
                element_starts.append(m.start(kind))
        else:
            top.append((value, m.start(kind)))
    if stack:
        raise _EdnSyntaxError(stack[-1][2], f"{stack[-1][0]!r} is never closed")
    if prefixes:
        raise _EdnSyntaxError(n, "a tag or #_ is not followed by a form")
    if unwrap:
        if not unwrapped:
            where = top[0][1] if top else 0
            raise _EdnSyntaxError(where, "expected a vector or list of op maps")
        return list(zip(top[0][0], element_starts))
    return top


def _edn_prefixed_drop(prefixes: list[str], prefix_depth: list[int], depth: int) -> bool:
    """Consume the prefixes pending at `depth` for one form; True if it is discarded."""
    while prefix_depth and prefix_depth[-1] == depth:
        prefix = prefixes.pop()
        prefix_depth.pop()
        if prefix == "#_":
            return True
    return False


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _edn_error(name: str, text: str, error: _EdnSyntaxError) -> HistoryError:
    """The HistoryError of an EDN syntax error: the file, the line and column of the offending character."""
    column = error.position - (text.rfind("\n", 0, error.position) + 1) + 1
    return HistoryError(f"{name} line {_line_of(text, error.position)} column {column}: invalid EDN: {error}")


# ---------------------------------------------------------------------------
# JSON values


def _json_default(x: Any) -> Any:
    if isinstance(x, (set, frozenset)):
        return sorted(x, key=repr)
    if isinstance(x, Mapping):
        return dict(x)
    if isinstance(x, datetime.datetime):
        return x.isoformat()
    if isinstance(x, uuid.UUID):
        return str(x)
    raise TypeError(f"cannot write {_short(x)} (a {type(x).__name__}) as JSON")


def _jsonable_keys(x: Any) -> Any:
    """Deep copy with every map key made a JSON key (for the rare tuple key)."""
    if isinstance(x, Mapping):
        return {
            (k if isinstance(k, (str, int, float, bool)) or k is None else json.dumps(k, default=_json_default)): _jsonable_keys(v)
            for k, v in x.items()
        }
    if isinstance(x, (list, tuple)):
        return [_jsonable_keys(v) for v in x]
    if isinstance(x, (set, frozenset)):
        return sorted((_jsonable_keys(v) for v in x), key=repr)
    return x


def _op_to_json_line(op: Op | Mapping[str, Any]) -> str:
    d = op_to_dict(op) if isinstance(op, Op) else dict(op)
    try:
        return json.dumps(d, default=_json_default, separators=(", ", ": "), allow_nan=False)
    except (TypeError, ValueError) as error:
        try:
            return json.dumps(_jsonable_keys(d), default=_json_default, separators=(", ", ": "))
        except (TypeError, ValueError):
            raise HistoryError(f"op {_short(d)} cannot be written as JSON: {error}") from error


# ---------------------------------------------------------------------------
# JSONL reading


_JSONL_CHUNK_LINES = 8192
_JSON_WHITESPACE = " \t\r\n"  # JSON's own (RFC 8259): a line of only these is blank


def _jsonl_ops(name: str, lines: Iterable[tuple[int, int, str]]) -> Iterator[tuple[int, int, Op]]:
    """(line number, byte offset, op) of each (line number, byte offset, text) of a JSONL history, in
    order; blank lines skipped, an op's index defaulting to its position.

    Lines are decoded in chunks, each chunk as one JSON array (one C call instead of one per line); a
    chunk that fails is decoded line by line to name the bad line. A line that could nest deeper than
    `MAX_NESTING_DEPTH` is refused before the decoder recurses into it.
    """
    chunk: list[str] = []
    chunk_lines: list[tuple[int, int]] = []
    count = str.count
    position = 0
    for number, offset, line in lines:
        text = line.strip(_JSON_WHITESPACE)
        if not text:
            continue
        # only a line with that many brackets can nest that deep: one C scan each, the exact one rarely
        if count(text, "[") + count(text, "{") > MAX_NESTING_DEPTH:
            column = _json_too_deep(text)
            if column is not None:
                raise HistoryError(f"{name} line {number} column {column}: nested too deeply: more than "
                                   f"{MAX_NESTING_DEPTH} levels of arrays or maps inside one another (an op "
                                   "nests a few levels)")
        chunk.append(text)
        chunk_lines.append((number, offset))
        if len(chunk) < _JSONL_CHUNK_LINES:
            continue
        for number_offset, op in zip(chunk_lines, _decode_jsonl_chunk(name, chunk, chunk_lines, position)):
            yield number_offset[0], number_offset[1], op
        position += len(chunk)
        chunk.clear()
        chunk_lines.clear()
    if chunk:
        for number_offset, op in zip(chunk_lines, _decode_jsonl_chunk(name, chunk, chunk_lines, position)):
            yield number_offset[0], number_offset[1], op


def _decode_jsonl_chunk(name: str, chunk: list[str], chunk_lines: list[tuple[int, int]], position: int) -> list[Op]:
    decoded: Any = None
    try:
        decoded = json.loads("[" + ",".join(chunk) + "]")
    except (ValueError, RecursionError):  # the line-by-line pass below names the bad line
        decoded = None
    if decoded is None or len(decoded) != len(chunk):
        decoded = []
        for (number, _), text in zip(chunk_lines, chunk):
            try:
                decoded.append(json.loads(text))
            except (ValueError, RecursionError) as error:
                raise HistoryError(f"{name} line {number}: expected a JSON op map, got {_short(text)} "
                                   f"({_json_problem(error)})") from None
    return [_op_from_mapping(d, None, position + i) or _op_from_mapping(d, f"{name} line {number}", position + i)
            for i, (d, (number, _)) in enumerate(zip(decoded, chunk_lines))]


def _numbered_utf8_lines(name: str, binary: Iterable[bytes]) -> Iterator[tuple[int, int, str]]:
    """(line number, byte offset, text) of each line of a binary file."""
    offset = 0
    for number, raw in enumerate(binary, 1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise HistoryError(f"{name} line {number}: expected a UTF-8 text history, got undecodable bytes "
                               f"({error.reason})") from None
        yield number, offset, text
        offset += len(raw)


class _StreamedJsonlOps(Sequence[Op]):
    """The ops of a JSONL file, read from the file on each pass: what stays in memory is the byte offset
    and line number of each op (16 bytes an op).

    Built by one quick pass over the file that notes where each line that is not blank starts; the
    `History` built on it then decodes every op once, so a file that `History.from_jsonl` refuses is
    refused with the same sentence. An op fetched by position is read and decoded alone
    (a few microseconds; the last few thousand are cached, as checkers fetch the same ops again while
    explaining them). Not thread-safe: one file handle serves every fetch.
    """

    _CACHED_OPS = 4096

    def __init__(self, name: str) -> None:
        self.name = name
        self.offsets = array.array("q")
        self.line_numbers = array.array("q")
        self._cache: dict[int, Op] = {}
        try:
            self._file = open(name, "rb")
        except OSError as error:
            raise HistoryError(f"{name}: cannot read the history ({error.strerror})") from None
        self._stamp = self._stat()
        offset = 0
        blank = _JSON_WHITESPACE.encode()
        for number, raw in enumerate(self._file, 1):
            if raw.strip(blank):
                self.offsets.append(offset)
                self.line_numbers.append(number)
            offset += len(raw)

    def _stat(self) -> tuple[int, int]:
        stat = os.fstat(self._file.fileno())
        return stat.st_size, stat.st_mtime_ns

    def _unchanged(self) -> None:
        if self._stat() != self._stamp:
            raise HistoryError(f"{self.name}: the history changed while it was being checked; check a copy "
                               "that nothing writes to")

    def __len__(self) -> int:
        return len(self.offsets)

    def __iter__(self) -> Iterator[Op]:
        self._unchanged()
        count = 0
        with open(self.name, "rb") as binary:
            for _, _, op in _jsonl_ops(self.name, _numbered_utf8_lines(self.name, binary)):
                count += 1
                yield op
        if count != len(self.offsets):  # the stamp cannot see a rewrite of the same size within a clock tick
            raise HistoryError(f"{self.name}: the history changed while it was being checked; check a copy "
                               "that nothing writes to")

    @overload
    def __getitem__(self, i: int) -> Op: ...

    @overload
    def __getitem__(self, i: slice) -> list[Op]: ...

    def __getitem__(self, i: int | slice) -> Op | list[Op]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        op = self._cache.get(i)
        if op is not None:
            return op
        if not 0 <= i < len(self):
            raise IndexError(f"op position {i} is outside the history's {len(self)} ops")
        self._unchanged()
        self._file.seek(self.offsets[i])
        text = self._file.readline().decode("utf-8").strip(_JSON_WHITESPACE)  # checked by the first pass
        op = _decode_jsonl_chunk(self.name, [text], [(self.line_numbers[i], self.offsets[i])], i)[0]
        if len(self._cache) >= self._CACHED_OPS:
            self._cache.clear()
        self._cache[i] = op
        return op


# ---------------------------------------------------------------------------
# History


class History(Sequence[Op]):
    """An immutable sequence of ops with invocations paired to completions.

    Construction pairs each completion with the pending invocation of its
    process (see the module doc for nemesis and process-less ops) and raises
    `HistoryError` for a history a sequential process could not produce.
    `source` (a file name) and `lines` (the line of each op) only improve
    error messages.
    """

    __slots__ = ("_ops", "_partner", "_is_invocation", "_position_of_index", "source")

    def __init__(
        self,
        ops: Iterable[Op],
        *,
        source: str | None = None,
        lines: Sequence[int] | None = None,
    ) -> None:
        # a streamed history's ops stay in their file (`History.stream_jsonl`): every pass reads them again
        self._ops: Sequence[Op] = ops if isinstance(ops, _StreamedJsonlOps) else list(ops)
        self.source = source
        n = len(self._ops)
        name = source or "<ops>"

        def where(position: int, op: Op | None = None) -> str:
            if lines is not None:
                return f"{name} line {lines[position]}"
            return f"{name} op {(op or self._ops[position]).index}"

        # One pass (a streamed history reads its file once here). Indexes equal positions in any history
        # recorded in order; from the first one that does not, every index is mapped to its position.
        position_of_index: dict[int, int] | None = None
        partner = array.array("q", bytes(8 * n))  # 8 bytes an op, where a list of ints took about 36
        is_invocation = bytearray(n)
        pending: dict[Any, int] = {}
        for position, op in enumerate(self._ops):
            if not isinstance(op, Op):
                raise HistoryError(f"{name}: element {position} is not an Op: {_short(op)}")
            if position_of_index is None and op.index != position:
                position_of_index = {i: i for i in range(position)}
            if position_of_index is not None:
                if op.index in position_of_index:
                    raise HistoryError(
                        f"{where(position, op)}: duplicate :index {op.index} "
                        f"(also at {where(position_of_index[op.index])}); indexes must be unique"
                    )
                position_of_index[op.index] = position
            partner[position] = -1
            process = op.process
            if process == NEMESIS:
                started = pending.pop(process, None)
                if started is None:
                    pending[process] = position
                    is_invocation[position] = 1
                else:
                    partner[started] = position
                    partner[position] = started
                continue
            if op.type == "invoke":
                if process in pending:
                    raise HistoryError(
                        f"{where(position, op)}: process {process!r} invokes {op.f!r} while its "
                        f"invocation at {where(pending[process])} has not completed; "
                        "expected each process to be sequential (invoke, then ok/fail/info)"
                    )
                pending[process] = position
                is_invocation[position] = 1
            else:
                started = pending.pop(process, None)
                if started is None:
                    raise HistoryError(
                        f"{where(position, op)}: {op.type} of {op.f!r} for process {process!r} "
                        "has no pending invocation; expected an :invoke by the same process before it"
                    )
                partner[started] = position
                partner[position] = started
        self._position_of_index = position_of_index
        self._partner = partner
        self._is_invocation = is_invocation

    # -- Sequence -----------------------------------------------------------

    @overload
    def __getitem__(self, i: int) -> Op: ...

    @overload
    def __getitem__(self, i: slice) -> list[Op]: ...

    def __getitem__(self, i: int | slice) -> Op | list[Op]:
        return self._ops[i]

    def __len__(self) -> int:
        return len(self._ops)

    def __iter__(self) -> Iterator[Op]:
        return iter(self._ops)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, History):
            return len(self) == len(other) and all(a == b for a, b in zip(self._ops, other._ops))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"History({len(self._ops)} ops{', from ' + self.source if self.source else ''})"

    @property
    def streamed(self) -> bool:
        """Whether the ops stay in their file (`stream_jsonl`): each pass over them reads it again."""
        return isinstance(self._ops, _StreamedJsonlOps)

    def op_sequence(self) -> Sequence[Op]:
        """The ops by position: a plain list (the fastest indexing) unless the history is streamed."""
        return self._ops

    # -- positions and pairs ---------------------------------------------------

    def position(self, op: Op) -> int:
        """The op's position in this history (its index when recorded in order)."""
        if self._position_of_index is None:
            position = op.index
        else:
            position = self._position_of_index.get(op.index, -1)
        if 0 <= position < len(self._ops) and (self._ops[position] is op or self._ops[position] == op):
            return position
        raise ValueError(f"op {_short(op)} is not in this history")

    def is_invocation(self, op: Op) -> bool:
        """True for an invoke (and the first op of each nemesis pair)."""
        return bool(self._is_invocation[self.position(op)])

    def completion(self, op: Op) -> Op | None:
        """The completion of invocation `op`; None if it never completed (or
        `op` is itself a completion)."""
        position = self.position(op)
        other = self._partner[position]
        return self._ops[other] if other > position else None

    def invocation(self, op: Op) -> Op | None:
        """The invocation that completion `op` completes; None for an invocation."""
        position = self.position(op)
        other = self._partner[position]
        return self._ops[other] if 0 <= other < position else None

    def completion_position(self, position: int) -> int:
        """Position of the completion of the invocation at `position`, or -1."""
        other = self._partner[position]
        return other if other > position else -1

    def invocation_position(self, position: int) -> int:
        """Position of the invocation of the completion at `position`, or -1."""
        other = self._partner[position]
        return other if 0 <= other < position else -1

    def ran_beside(self, position: int) -> bool:
        """Whether a client op other than the one completed at `position` was in progress at some time between
        that op's invocation and its completion, or never completed (it may have held a transaction open)."""
        invoked = self.invocation_position(position)
        for other in range(position):
            op = self._ops[other]
            if op.type != "invoke" or op.process == NEMESIS or other == invoked:
                continue
            done = self.completion_position(other)
            if done < 0 or done > invoked:
                return True
        return False

    def pairs(self) -> Iterator[tuple[Op, Op]]:
        """(invocation, completion) for every invocation, in invocation order.

        An invocation that never completed is paired with a synthesized `info`
        op (same process, f and value; index -1, time None): its outcome is
        unknown, as in Jepsen.
        """
        ops, partner, is_invocation = self._ops, self._partner, self._is_invocation
        for position, op in enumerate(ops):
            if not is_invocation[position]:
                continue
            other = partner[position]
            if other > position:
                yield op, ops[other]
            else:
                yield op, Op(-1, None, op.process, "info", op.f, op.value)

    def realtime_precedes(self, a: Op, b: Op) -> bool:
        """True when `a` certainly finished before `b` began: `a` completed
        with ok or fail and that completion comes before `b`'s invocation.

        An `info` (or missing) completion bounds nothing: the op may take
        effect at any later time, so it precedes nothing in realtime.
        `a` and `b` may be given as invocations or completions.
        """
        pa = self.position(a)
        if self._is_invocation[pa]:
            pa = self._partner[pa]
            if pa < 0:
                return False
        if self._ops[pa].type == "info" or (self._ops[pa].process == NEMESIS):
            return False
        pb = self.position(b)
        if not self._is_invocation[pb]:
            pb = self._partner[pb]
        return 0 <= pa < pb

    # -- views --------------------------------------------------------------

    def filter(self, predicate: Any) -> "History":
        """A history of the ops for which `predicate(op)` is true (indexes kept).

        Keep whole pairs: dropping one op of a pair makes the result invalid.
        """
        return History((op for op in self._ops if predicate(op)), source=self.source)

    def client_ops(self) -> "History":
        """The history without nemesis ops."""
        return History((op for op in self._ops if op.process != NEMESIS), source=self.source)

    def processes(self) -> list[Any]:
        """Distinct processes in order of first appearance."""
        return list(dict.fromkeys(op.process for op in self._ops))

    def by_process(self) -> dict[Any, list[Op]]:
        """Ops grouped by process, each list in history order."""
        groups: dict[Any, list[Op]] = {}
        for op in self._ops:
            groups.setdefault(op.process, []).append(op)
        return groups

    # -- reading ------------------------------------------------------------

    @classmethod
    @_without_gc
    def from_dicts(cls, dicts: Iterable[Mapping[str, Any]], *, source: str | None = None) -> "History":
        """A history from Jepsen op maps with string keys (indexes assigned in
        order when absent)."""
        name = source or "<ops>"
        ops = [_op_from_mapping(d, f"{name} op {i}", i) for i, d in enumerate(dicts)]
        return cls(ops, source=source)

    @classmethod
    @_without_gc
    def from_jsonl(cls, path_or_lines: str | os.PathLike[str] | Iterable[str]) -> "History":
        """Read one JSON op map per line (blank lines skipped).

        Lines are decoded in chunks, each chunk as one JSON array (one C call
        instead of one per line); a chunk that fails is decoded line by line
        to name the bad line.
        """
        if isinstance(path_or_lines, (str, os.PathLike)):
            name = os.fspath(path_or_lines)
            try:
                with open(name, encoding="utf-8") as f:
                    return cls._from_jsonl_lines(name, f)
            except UnicodeDecodeError as error:
                raise HistoryError(
                    f"{name}: expected a UTF-8 text history, got undecodable bytes ({error.reason})"
                ) from None
        if isinstance(path_or_lines, (bytes, bytearray)):
            raise HistoryError("expected a path or an iterable of text lines, got bytes")
        return cls._from_jsonl_lines("<lines>", path_or_lines)

    @classmethod
    def _from_jsonl_lines(cls, name: str, lines: Iterable[str]) -> "History":
        ops: list[Op] = []
        line_numbers = array.array("q")
        for number, _, op in _jsonl_ops(name, ((number, 0, line) for number, line in enumerate(lines, 1))):
            ops.append(op)
            line_numbers.append(number)
        return cls(ops, source=name, lines=line_numbers)

    @classmethod
    @_without_gc
    def stream_jsonl(cls, path: str | os.PathLike[str]) -> "History":
        """A JSONL history whose ops stay in the file: it keeps about 25 bytes an op (where `from_jsonl`
        keeps every op, some 750 bytes each for a queue history), and each pass over the ops, or op
        fetched by position, reads the file again (about as fast as `from_jsonl` reads it).

        For histories too large to hold: `logquake check` streams large JSONL files. The file must not
        change while the history is in use; a pass that finds it changed raises `HistoryError`.
        """
        ops = _StreamedJsonlOps(os.fspath(path))
        return cls(ops, source=ops.name, lines=ops.line_numbers)

    @classmethod
    @_without_gc
    def from_edn_lines(cls, path_or_lines: str | os.PathLike[str] | Iterable[str]) -> "History":
        """Read EDN op maps, one after another (one per line as Elle and
        Porcupine store them); `;` comments and blank lines skipped."""
        name, lines = _open_lines(path_or_lines)
        text = "".join(lines)
        try:
            forms = read_edn(text)
        except _EdnSyntaxError as error:
            raise _edn_error(name, text, error) from None
        return cls._from_forms(forms, text, name)

    @classmethod
    @_without_gc
    def from_edn(cls, path_or_lines: str | os.PathLike[str] | Iterable[str]) -> "History":
        """Read an EDN vector (or list) of op maps, as Knossos stores histories."""
        name, lines = _open_lines(path_or_lines)
        text = "".join(lines)
        try:
            forms = read_edn(text, unwrap=True)
        except _EdnSyntaxError as error:
            raise _edn_error(name, text, error) from None
        return cls._from_forms(forms, text, name)

    @classmethod
    def _from_forms(cls, forms: list[tuple[Any, int]], text: str, name: str) -> "History":
        ops: list[Op] = []
        line_numbers: list[int] = []
        line, last_offset = 1, 0
        for form, offset in forms:
            # Offsets grow, so count newlines incrementally (linear overall).
            line += text.count("\n", last_offset, offset)
            last_offset = offset
            ops.append(_op_from_mapping(form, f"{name} line {line}", len(ops)))
            line_numbers.append(line)
        return cls(ops, source=name, lines=line_numbers)

    @classmethod
    @_without_gc
    def from_jepsen_log(cls, path_or_lines: str | os.PathLike[str] | Iterable[str]) -> "History":
        """Read an old Jepsen console log (Porcupine's etcd data): lines
        `INFO  jepsen.util - <process>\\t:<type>\\t:<f>\\t<value>`, value in EDN.

        Other log lines (other loggers, non-op messages) are skipped; ops get
        indexes in file order and no time.
        """
        name, lines = _open_lines(path_or_lines)
        ops: list[Op] = []
        line_numbers: list[int] = []
        marker = "jepsen.util - "
        for number, line in enumerate(lines, 1):
            at = line.find(marker)
            if at < 0:
                continue
            fields = line[at + len(marker) :].rstrip("\r\n").split("\t")
            if len(fields) < 3 or fields[1] not in (":invoke", ":ok", ":fail", ":info"):
                continue
            where = f"{name} line {number}"
            process_text = fields[0].strip()
            process: int | str
            if process_text.startswith(":"):
                process = process_text[1:]
            else:
                try:
                    process = int(process_text)
                except ValueError:
                    raise HistoryError(
                        f"{where}: expected a process number or :nemesis, got {_short(process_text)}"
                    ) from None
            f_text = fields[2].strip()
            f = f_text[1:] if f_text.startswith(":") else f_text
            value_text = "\t".join(fields[3:]).strip()
            value = _parse_edn_scalar(value_text, where)
            ops.append(Op(len(ops), None, process, fields[1][1:], f, value))
            line_numbers.append(number)
        return cls(ops, source=name, lines=line_numbers)

    @classmethod
    def load(cls, path: str | os.PathLike[str], format: str = "auto") -> "History":
        """Read a history file; `format` is one of `FORMATS` ("auto" sniffs it)."""
        if format not in FORMATS:
            raise HistoryError(f"format {format!r} is not known; expected one of {', '.join(FORMATS)}")
        path = os.fspath(path)
        if format == "auto":
            format = detect_format(path)
        reader = {
            "jsonl": cls.from_jsonl,
            "edn": cls.from_edn,
            "edn-lines": cls.from_edn_lines,
            "jepsen-log": cls.from_jepsen_log,
        }[format]
        return reader(path)

    # -- writing ------------------------------------------------------------

    def to_jsonl(self, path: str | os.PathLike[str]) -> None:
        """Write one JSON op map per line (overwrites `path`)."""
        with open(path, "w", encoding="utf-8") as out:
            for op in self._ops:
                out.write(_op_to_json_line(op))
                out.write("\n")

    def to_edn(self, path: str | os.PathLike[str]) -> None:
        """Write an EDN vector with one op map per line (the module doc's keyword rule)."""
        with open(path, "w", encoding="utf-8") as out:
            out.write("[")
            for i, op in enumerate(self._ops):
                if i:
                    out.write("\n ")
                out.write(_op_to_edn(op))
            out.write("]\n")

    def to_edn_string(self) -> str:
        buffer = io.StringIO()
        buffer.write("[")
        for i, op in enumerate(self._ops):
            if i:
                buffer.write("\n ")
            buffer.write(_op_to_edn(op))
        buffer.write("]\n")
        return buffer.getvalue()


# ---------------------------------------------------------------------------
# reading helpers


def _open_lines(path_or_lines: Any) -> tuple[str, list[str]]:
    if isinstance(path_or_lines, (str, os.PathLike)):
        path = os.fspath(path_or_lines)
        try:
            with open(path, encoding="utf-8") as f:
                return path, f.read().splitlines(keepends=True)
        except UnicodeDecodeError as error:
            raise HistoryError(f"{path}: expected a UTF-8 text history, got undecodable bytes ({error.reason})") from None
    if isinstance(path_or_lines, (bytes, bytearray)):
        raise HistoryError("expected a path or an iterable of text lines, got bytes")
    lines = [line if line.endswith("\n") else line + "\n" for line in path_or_lines]
    return "<lines>", lines


def _first_form_char(text: str) -> int:
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace() or c == ",":
            i += 1
        elif c == ";":
            nl = text.find("\n", i)
            if nl < 0:
                return -1
            i = nl + 1
        else:
            return i
    return -1


_INT_RE = re.compile(r"^-?\d+$")


def _parse_edn_scalar(text: str, where: str) -> Any:
    if not text or text == "nil":
        return None
    if _INT_RE.match(text):
        try:
            return int(text)
        except ValueError as error:  # more digits than Python converts (sys.get_int_max_str_digits)
            raise HistoryError(f"{where}: expected one EDN value, got {_short(text)} ({_json_problem(error)})") from None
    try:
        forms = read_edn(text)
    except _EdnSyntaxError as error:
        raise HistoryError(f"{where}: expected one EDN value, got {_short(text)} ({error})") from None
    if len(forms) != 1:
        raise HistoryError(f"{where}: expected one EDN value, got {_short(text)}")
    return forms[0][0]


def detect_format(path: str) -> str:
    """Guess a history file's format from its name and first op line."""
    lower = path.lower()
    if lower.endswith((".jsonl", ".json")):
        return "jsonl"
    if lower.endswith(".log"):
        return "jepsen-log"
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            head = f.read(65536)
    except OSError as error:
        raise HistoryError(f"{path}: cannot read the history ({error.strerror})") from None
    if "jepsen.util - " in head:
        return "jepsen-log"
    start = _first_form_char(head)
    if start < 0:
        raise HistoryError(f"{path}: cannot detect the format of an empty history; pass --format")
    rest = head[start : start + 2]
    if rest.startswith("{\""):
        return "jsonl"
    if rest[0] in "[(":
        return "edn"
    if rest[0] == "{":
        return "edn-lines"
    raise HistoryError(
        f"{path}: cannot detect the history format from {_short(head[start:start + 40])}; "
        f"expected JSONL, EDN, EDN lines or a Jepsen log (pass --format one of {', '.join(FORMATS[1:])})"
    )


# ---------------------------------------------------------------------------
# streaming writer


class JsonlWriter:
    """Appends ops to a JSONL history while a test runs, one flushed line each.

    Thread-safe: `write` holds a lock for the whole line, so concurrent
    workers never interleave partial lines. Accepts `Op`s or op maps.
    """

    def __init__(self, path: str | os.PathLike[str], *, append: bool = True) -> None:
        self.path = os.fspath(path)
        self._file = open(self.path, "a" if append else "w", encoding="utf-8")
        self._lock = threading.Lock()
        self.count = 0

    def write(self, op: Op | Mapping[str, Any]) -> None:
        if isinstance(op, Mapping) and "type" not in op:
            raise HistoryError(f"{self.path}: refusing to write an op map without :type: {_short(dict(op))}")
        line = _op_to_json_line(op) + "\n"
        with self._lock:
            if self._file.closed:
                raise HistoryError(f"{self.path}: the history writer is closed")
            self._file.write(line)
            self._file.flush()
            self.count += 1

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.close()

    def __enter__(self) -> "JsonlWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
