"""Sequential specifications (models) for linearizability checking.

A model is a deterministic state machine over immutable, hashable states. Each
operation of a history is turned into a `ModelOp` (its `f`, its value, its outcome
and, for keyed models, its key), and `step(state, op)` returns the next state or
`INCONSISTENT` when the operation cannot take effect in `state`. The search in
`wgl.py` calls `compile(op)`, a one-argument closure doing the same thing as
`step(state, op)`, because a closure per operation is much cheaper in the search's
inner loop than dispatching on `f` at every step.

Semantics follow Knossos (jepsen-io/knossos, `knossos.model`):
- `fail` operations had no effect, so they never reach a model (the caller drops
  them), except under the `porcupine-etcd` semantics where a failed `cas` is a
  compare that returned false: a `ModelOp` with outcome "fail" that is legal only
  when the register does not hold the expected value, and leaves it unchanged.
- `info` operations (crashed, timed out) may take effect at any later point or
  never; their value is the invocation's value. An `info` operation that can never
  change the state (a read) is dropped by the caller (`may_change_state`).
- A nil read (a read whose returned value is None) is always legal, unless the
  model is built with `nil_read_legal=False` (the porcupine-etcd semantics, where
  the register starts nil and a nil read says the key did not exist).
- An `ok` dequeue that returned None found the queue empty.
- An `info` dequeue has an unknown value: on a FIFO queue it removes the head; on
  an unordered queue it may remove any element, so `step` returns a `Choices`
  tuple of all possible next states (the only nondeterministic step).

Models: register, cas-register, multi-register, mutex, fifo-queue,
unordered-queue, set, kv (Porcupine's kv: per-key string registers starting "",
with get, put and append-concatenate).

Keyed models (kv, multi-register) name the keys each operation touches
(`keys_of`), so the checker can split a history into independent sub-histories
(P-compositionality, Horn & Kroening 2015; Herlihy & Wing's locality).

Thread-safety: models are immutable after construction; states are immutable.
Sources: Knossos `knossos.model`; Porcupine `porcupine/kv_test.go` and
`porcupine_test.go` (etcd model) for the kv and porcupine-etcd semantics.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any


class _Inconsistent:
    """The singleton returned by a step that cannot take effect."""

    _instance: "_Inconsistent | None" = None

    def __new__(cls) -> "_Inconsistent":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "INCONSISTENT"

    def __reduce__(self):
        return (_Inconsistent, ())


INCONSISTENT = _Inconsistent()


class Choices(tuple):
    """Several possible next states of a nondeterministic step (an info dequeue)."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class ModelOp:
    """One operation as a model sees it.

    `outcome` is "ok" (it happened, `value` is the completion's value), "info" (it
    may have happened, `value` is the invocation's value) or "fail" (only under the
    porcupine-etcd semantics: a cas whose compare returned false). `key` is the
    op's `key` field for keyed models such as kv, else None.
    """

    f: str
    value: Any
    outcome: str = "ok"
    key: Any = None


def freeze(value: Any) -> Hashable:
    """A hashable equivalent of a value read from a history (lists become tuples)."""
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted(((freeze(k), freeze(v)) for k, v in value.items()), key=repr))
    if isinstance(value, set | frozenset):
        return frozenset(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """A JSON-friendly equivalent of a state (tuples become lists, sets sorted lists)."""
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    if isinstance(value, frozenset | set):
        return sorted((thaw(v) for v in value), key=repr)
    return value


def show(value: Any) -> str:
    """A value as a sentence prints it: nil for None, strings quoted, lists bracketed."""
    if value is None:
        return "nil"
    if isinstance(value, str):
        return '"' + value.replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(show(v) for v in value) + "]"
    if isinstance(value, frozenset | set):
        return "#{" + ", ".join(show(v) for v in sorted(value, key=repr)) + "}"
    return str(value)


def join_or(words: list[str], limit: int = 10) -> str:
    """'a', 'a or b', 'a, b or c'; past `limit` words, 'a, b, ... or 7 other values'."""
    if not words:
        return "nothing"
    if len(words) > limit:
        words = words[:limit] + [f"{len(words) - limit} other values"]
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " or " + words[-1]


class Model:
    """Base class: subclasses set `name`, `noun`, `fs` and write `_compile`."""

    name = ""
    noun = ""
    fs: tuple[str, ...] = ()
    # Operations that never change the state; an info one of them is dropped.
    read_fs: tuple[str, ...] = ()

    def __init__(self, nil_read_legal: bool = True) -> None:
        self.nil_read_legal = nil_read_legal

    def initial_state(self, initial: Any) -> Hashable:
        return freeze(initial)

    def compile(self, op: ModelOp) -> Callable[[Hashable], Any]:
        """A closure `state -> next state | INCONSISTENT | Choices` for one operation.

        An operation the model cannot run raises ValueError saying what it
        expected; the caller adds where in the history the operation is.
        """
        if op.f not in self.fs:
            raise ValueError(
                f"f {op.f!r} is not an operation of model {self.name!r}; expected one of {', '.join(self.fs)}"
            )
        return self._compile(op)

    def _compile(self, op: ModelOp) -> Callable[[Hashable], Any]:
        raise TypeError(f"model {self.name!r} defines no steps")

    def step(self, state: Hashable, op: ModelOp) -> Any:
        return self.compile(op)(state)

    def may_change_state(self, op: ModelOp) -> bool:
        return op.f not in self.read_fs

    def keys_of(self, op: ModelOp) -> frozenset | None:
        """Keys the operation touches, or None when the model is not keyed."""
        return None

    def string_hint(self, op: ModelOp) -> tuple[str, Any] | None:
        """What the op does to a string state, for wgl's dead-state pruning
        (`wgl.search`'s `string_hints`), or None: this model's states are not strings."""
        return None

    def restrict(self, state: Hashable, keys: frozenset) -> Hashable:
        """The part of a keyed state over `keys` (for one independent sub-history)."""
        return state

    def specialize(self, keys: frozenset, state: Hashable) -> tuple["Model", Hashable]:
        """A model and first state for a sub-history touching only `keys`.

        By default this model over the part of `state` on `keys`; a keyed model
        may return a cheaper one (kv over one key keeps just that key's string).
        """
        return self, self.restrict(state, keys)

    # -- explanations ------------------------------------------------------
    def describe_op(self, op: ModelOp) -> str:
        """'read of 4', 'write of 3', 'cas from 1 to 2': what the op was."""
        return f"{op.f} of {show(op.value)}" if op.value is not None else op.f

    def describe_outcome(self, op: ModelOp) -> str:
        """What the history says happened: 'return 4', 'take effect'."""
        if op.outcome == "fail":
            return "fail"
        return "take effect"

    def describe_states(self, states: list[Hashable], op: ModelOp) -> str:
        return f"the {self.noun} could only hold {join_or([show(s) for s in states])}"

    def state_data(self, state: Hashable) -> Any:
        return thaw(state)


def _read_step(v: Any, nil_legal: bool) -> Callable:
    if v is None and nil_legal:
        return lambda s: s

    def read(s):
        return s if s == v else INCONSISTENT

    return read


class Register(Model):
    """A read/write register (Knossos `register`)."""

    name = "register"
    noun = "register"
    fs = ("read", "write")
    read_fs = ("read",)

    def _compile(self, op):
        v = freeze(op.value)
        if op.f == "read":
            return _read_step(v, self.nil_read_legal)
        return lambda s: v

    def describe_op(self, op):
        if op.f == "read":
            return f"read of {show(op.value)}"
        return f"write of {show(op.value)}"

    def describe_outcome(self, op):
        if op.f == "read":
            return f"return {show(op.value)}"
        return "take effect"


class CasRegister(Register):
    """A register with compare-and-set (Knossos `cas-register`); cas value is [old, new]."""

    name = "cas-register"
    fs = ("read", "write", "cas")

    def _compile(self, op):
        if op.f != "cas":
            return super()._compile(op)
        value = op.value
        if not (isinstance(value, list | tuple) and len(value) == 2):
            raise ValueError(f"a cas value must be [old, new], got {value!r}")
        old, new = freeze(value[0]), freeze(value[1])
        if op.outcome == "fail":
            # porcupine-etcd: the compare ran and returned false.
            return lambda s: INCONSISTENT if s == old else s
        return lambda s: new if s == old else INCONSISTENT

    def describe_op(self, op):
        if op.f == "cas" and isinstance(op.value, list | tuple) and len(op.value) == 2:
            return f"cas from {show(op.value[0])} to {show(op.value[1])}"
        return super().describe_op(op)

    def describe_outcome(self, op):
        if op.f == "cas":
            return "fail" if op.outcome == "fail" else "succeed"
        return super().describe_outcome(op)


class Mutex(Model):
    """A lock (Knossos `mutex`): acquire when free, release when held. States: False, True."""

    name = "mutex"
    noun = "mutex"
    fs = ("acquire", "release")

    def initial_state(self, initial):
        if initial is None:
            return False
        if not isinstance(initial, bool):
            raise ValueError(f"initial {initial!r} is not a mutex state; expected True (held), False or None")
        return initial

    def _compile(self, op):
        if op.f == "acquire":
            return lambda s: INCONSISTENT if s else True
        return lambda s: False if s else INCONSISTENT

    def describe_op(self, op):
        return op.f

    def describe_states(self, states, op):
        words = ["held" if s else "free" for s in states]
        return f"the mutex could only be {join_or(words)}"


class FifoQueue(Model):
    """A FIFO queue (Knossos `fifo-queue`): enqueue v; dequeue returns the head. State: tuple."""

    name = "fifo-queue"
    noun = "queue"
    fs = ("enqueue", "dequeue")

    def initial_state(self, initial):
        if initial is None:
            return ()
        if not isinstance(initial, list | tuple):
            raise ValueError(f"initial {initial!r} is not a queue; expected a list (head first) or None")
        return freeze(initial)

    def _compile(self, op):
        v = freeze(op.value)
        if op.f == "enqueue":
            return lambda s: s + (v,)
        if op.outcome == "info":
            # Unknown value: it took the head, if there was one.
            return lambda s: s[1:] if s else INCONSISTENT
        if v is None:
            return lambda s: INCONSISTENT if s else s
        return lambda s: s[1:] if s and s[0] == v else INCONSISTENT

    def describe_op(self, op):
        if op.f == "dequeue":
            return "dequeue" if op.outcome == "info" else f"dequeue of {show(op.value)}"
        return f"enqueue of {show(op.value)}"

    def describe_outcome(self, op):
        if op.f == "dequeue" and op.outcome == "ok":
            return "return " + ("nothing" if op.value is None else show(op.value))
        return "take effect"

    def describe_states(self, states, op):
        words = [show(s) if s else "nothing" for s in states]
        return f"the {self.noun} could only hold {join_or(words)}"


def _multiset_add(s: tuple, v: Any) -> tuple:
    return tuple(sorted(s + (v,), key=repr))


def _multiset_remove(s: tuple, v: Any) -> Any:
    for i, x in enumerate(s):
        if x == v:
            return s[:i] + s[i + 1 :]
    return INCONSISTENT


class UnorderedQueue(FifoQueue):
    """A queue without order (Knossos `unordered-queue`): dequeue returns any element.

    The state is a multiset: a tuple sorted by repr, so equal multisets are equal states.
    """

    name = "unordered-queue"

    def initial_state(self, initial):
        return tuple(sorted(super().initial_state(initial), key=repr))

    def _compile(self, op):
        v = freeze(op.value)
        if op.f == "enqueue":
            return lambda s: _multiset_add(s, v)
        if op.outcome == "info":

            def dequeue_any(s):
                if not s:
                    return INCONSISTENT
                return Choices(dict.fromkeys(s[:i] + s[i + 1 :] for i in range(len(s))))

            return dequeue_any
        if v is None:
            return lambda s: INCONSISTENT if s else s
        return lambda s: _multiset_remove(s, v)


class SetModel(Model):
    """A grow-only set (Knossos `set`): add v; read returns the whole set."""

    name = "set"
    noun = "set"
    fs = ("add", "read")
    read_fs = ("read",)

    def initial_state(self, initial):
        if initial is None:
            return frozenset()
        if not isinstance(initial, list | tuple | set | frozenset):
            raise ValueError(f"initial {initial!r} is not a set; expected a list or set of elements, or None")
        return frozenset(freeze(v) for v in initial)

    def _compile(self, op):
        if op.f == "add":
            v = freeze(op.value)
            return lambda s: s | {v}
        if op.value is None:
            if self.nil_read_legal:
                return lambda s: s
            expected = frozenset()
        elif isinstance(op.value, list | tuple | set | frozenset):
            expected = frozenset(freeze(v) for v in op.value)
        else:
            raise ValueError(f"a set read must return a list or set, got {op.value!r}")
        return lambda s: s if s == expected else INCONSISTENT

    def describe_op(self, op):
        if op.f == "read":
            return f"read of {show(frozenset(freeze(v) for v in op.value or ()))}"
        return f"add of {show(op.value)}"

    def describe_outcome(self, op):
        if op.f == "read":
            return f"return {show(frozenset(freeze(v) for v in op.value or ()))}"
        return "take effect"


def _map_get(state: tuple, key: Any, default: Any) -> Any:
    for k, v in state:
        if k == key:
            return v
    return default


def _map_set(state: tuple, key: Any, value: Any) -> tuple:
    items = [(k, v) for k, v in state if k != key]
    items.append((key, value))
    return tuple(sorted(items, key=lambda kv: repr(kv[0])))


class MultiRegister(Model):
    """Registers named by keys, read and written in transactions (Knossos `multi-register`).

    An op is `f = "txn"` with value `[["read", k, v], ["write", k, v], ...]`; reads
    of nil are always legal (unless `nil_read_legal=False`). The state is a map
    (a tuple of (key, value) pairs sorted by repr of the key); keys absent from
    `initial` hold None.
    """

    name = "multi-register"
    noun = "registers"
    fs = ("txn",)

    def initial_state(self, initial):
        if initial is None:
            return ()
        if not isinstance(initial, dict):
            raise ValueError(f"initial {initial!r} is not a map; expected a dict of key -> value, or None")
        return tuple(sorted(((freeze(k), freeze(v)) for k, v in initial.items()), key=lambda kv: repr(kv[0])))

    def _micro_ops(self, op):
        value = op.value
        if not isinstance(value, list | tuple):
            raise ValueError(f"a txn value must be a list of [f, key, value], got {value!r}")
        out = []
        for mop in value:
            if not (isinstance(mop, list | tuple) and len(mop) == 3 and mop[0] in ("read", "write")):
                raise ValueError(f"micro-op {mop!r} is not [\"read\"|\"write\", key, value]")
            out.append((mop[0], freeze(mop[1]), freeze(mop[2])))
        return out

    def _compile(self, op):
        mops = self._micro_ops(op)
        nil_legal = self.nil_read_legal

        def txn(s):
            for f, k, v in mops:
                if f == "write":
                    s = _map_set(s, k, v)
                elif (v is not None or not nil_legal) and _map_get(s, k, None) != v:
                    return INCONSISTENT
            return s

        return txn

    def may_change_state(self, op):
        return any(m[0] == "write" for m in op.value or ())

    def keys_of(self, op):
        return frozenset(freeze(m[1]) for m in op.value or ())

    def restrict(self, state, keys):
        return tuple((k, v) for k, v in state if k in keys)

    def describe_op(self, op):
        mops = [m for m in op.value or () if isinstance(m, list | tuple) and len(m) == 3]
        return "txn " + "; ".join(f"{m[0]} {show(m[1])} {show(m[2])}" for m in mops)

    def describe_states(self, states, op):
        words = ["{" + ", ".join(f"{show(k)} {show(v)}" for k, v in s) + "}" for s in states]
        return f"the registers could only hold {join_or(words)}"

    def state_data(self, state):
        return [[thaw(k), thaw(v)] for k, v in state]


class KV(Model):
    """Porcupine's kv store: per key a string, "" at first; get, put, append (concatenate).

    The key is the op's `key` field (`ModelOp.key`). The state is a map like
    MultiRegister's; keys absent from `initial` hold "". A get that returned None
    (an unknown result) is legal.
    """

    name = "kv"
    noun = "store"
    fs = ("get", "put", "append")
    read_fs = ("get",)

    def initial_state(self, initial):
        if initial is None:
            return ()
        if not isinstance(initial, dict):
            raise ValueError(f"initial {initial!r} is not a map; expected a dict of key -> string, or None")
        return tuple(sorted(((freeze(k), v) for k, v in initial.items()), key=lambda kv: repr(kv[0])))

    def _compile(self, op):
        k = freeze(op.key)
        v = op.value
        if op.f == "get":
            if v is None:
                return lambda s: s
            return lambda s: s if _map_get(s, k, "") == v else INCONSISTENT
        if not isinstance(v, str):
            raise ValueError(f"a kv {op.f} value must be a string, got {v!r}")
        if op.f == "put":
            return lambda s: _map_set(s, k, v)
        return lambda s: _map_set(s, k, _map_get(s, k, "") + v)

    def keys_of(self, op):
        return frozenset((freeze(op.key),))

    def restrict(self, state, keys):
        return tuple((k, v) for k, v in state if k in keys)

    def describe_op(self, op):
        if op.f == "get":
            return f"get of key {show(op.key)}"
        return f"{op.f} of {show(op.value)} to key {show(op.key)}"

    def describe_outcome(self, op):
        if op.f == "get":
            return f"return {show(op.value)}"
        return "take effect"

    def describe_states(self, states, op):
        key = freeze(op.key)
        values = list(dict.fromkeys(_map_get(s, key, "") for s in states))
        return f"key {show(op.key)} could only hold {join_or([show(v) for v in values])}"

    def state_data(self, state):
        return {str(k): v for k, v in state}

    def specialize(self, keys, state):
        if len(keys) != 1:
            return super().specialize(keys, state)
        (key,) = keys
        return KVKey(key, nil_read_legal=self.nil_read_legal), _map_get(state, key, "")


class KVKey(KV):
    """kv over a single key: the state is that key's string, which saves
    rebuilding a map at every step of the search (kv histories split by key)."""

    def __init__(self, key: Any, nil_read_legal: bool = True) -> None:
        super().__init__(nil_read_legal=nil_read_legal)
        self.key = key

    def _compile(self, op):
        if freeze(op.key) != self.key:
            raise ValueError(f"key {op.key!r} is not this sub-history's key {self.key!r}")
        v = op.value
        if op.f == "get":
            if v is None:
                return lambda s: s
            return lambda s: s if s == v else INCONSISTENT
        if not isinstance(v, str):
            raise ValueError(f"a kv {op.f} value must be a string, got {v!r}")
        if op.f == "put":
            return lambda s: v
        return lambda s: s + v

    def keys_of(self, op):
        return frozenset((self.key,))

    def string_hint(self, op):
        # A get compares (observe), a put replaces (reset), an append extends; a
        # get of an unknown (None) value returns the state, and a get of a
        # non-string can never take effect: both fit "extend".
        if op.f == "get":
            return ("observe", op.value) if isinstance(op.value, str) else ("extend", None)
        if op.f == "put":
            return ("reset", op.value)
        return ("extend", None)

    def restrict(self, state, keys):
        return state

    def specialize(self, keys, state):
        return self, state

    def describe_states(self, states, op):
        values = list(dict.fromkeys(states))
        return f"key {show(op.key)} could only hold {join_or([show(v) for v in values])}"

    def state_data(self, state):
        return {str(self.key): state}


MODELS: dict[str, type[Model]] = {
    m.name: m for m in (Register, CasRegister, MultiRegister, Mutex, FifoQueue, UnorderedQueue, SetModel, KV)
}


def make_model(name: str, nil_read_legal: bool = True) -> Model:
    """The model called `name`; an unknown name raises ValueError listing the known ones."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(sorted(MODELS))}")
    return MODELS[name](nil_read_legal=nil_read_legal)


def model_names() -> Iterable[str]:
    return sorted(MODELS)
