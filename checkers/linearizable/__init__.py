"""Knossos-style linearizability checking: `check(history, model) -> results map`.

`check` turns a Jepsen history into operations for a model (`models.py`), splits
keyed histories into independent sub-histories (P-compositionality: a history is
linearizable iff each sub-history over disjoint keys is; Herlihy & Wing 1990,
Horn & Kroening 2015), runs the Wing-Gong-Lowe search (`wgl.py`, which takes the
model's read-only operations eagerly) on each, and on failure builds a
counterexample like Knossos's: the operation that cannot be linearized, the
states the model could have been in when it had to take effect, one longest
linearizable prefix, and a sentence (`explain.py`).

Semantics (`semantics=`):
- "knossos" (default): `fail` ops had no effect and are dropped; `info` ops and
  invocations never completed may take effect at any point after their call, or
  never; a read of nil is always legal.
- "porcupine-etcd": as Porcupine reads Jepsen's etcd logs: a `fail` cas is a
  compare that returned false (it must take effect within its call and return, at
  a point where the register did not hold the expected value); other `fail` ops had
  no effect; a read of nil says the register was nil (it starts nil).

Budgets: `time_limit_s` and `memory_limit_bytes` bound the search; past either,
the verdict is "unknown" with a `reason`. The time budget is measured with
`time.monotonic()` inside the search: the one documented exception to the
checkers' no-clock rule. It can only turn a verdict into "unknown", never change
a true into a false. The memory budget bounds each sub-history's search cache,
whose size is estimated as the search goes (see `wgl.py`). It is per search so
that a verdict does not depend on how many workers ran: with a process pool, up
to `workers` searches (so `workers` budgets) are live at once.

Independent keys: with `independent=True`, every op value is a jepsen.independent
`[key, value]` tuple; each key's operations form their own history, checked
against the model from `initial`, as Jepsen's `independent/checker` does.

Parallelism: with several independent sub-histories and at least
`parallel_min_ops` operations, sub-histories are checked in a process pool of
`workers` processes (the platform's default start method, fork on Linux, each
fed one sub-history at a time through its own pipe; starting them and shipping
the sub-histories costs ~0.03 s, so small inputs stay in-process). Results are
taken in sub-history order and the first invalid one is reported, so the verdict
and counterexample do not depend on scheduling; the processes are then killed,
so no search outlives `check` (`_search_in_processes` says why not a
multiprocessing.Pool).

Thread-safety: `check` holds no global state; it may run in several threads.
Sources: Knossos (jepsen-io/knossos: `knossos.model`, `knossos.wgl`, its analysis
output), Porcupine (anishathalye/porcupine), Lowe 2017, Horn & Kroening 2015.
"""

from __future__ import annotations

import os
import time
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Any

from checkers.history import History
from checkers.linearizable import explain
from checkers.linearizable.models import MODELS, Model, ModelOp, freeze, make_model
from checkers.linearizable.wgl import SearchResult, search

SEMANTICS = ("knossos", "porcupine-etcd")
DEFAULT_MEMORY_LIMIT_BYTES = 1 << 30
_OPTIONS = {
    "workers": "number of processes for independent sub-histories (default: up to 2, the CPU count)",
    "parallel_min_ops": "fewest operations for which a process pool is used (default 1000)",
    "max_final_paths": "how many final paths a counterexample keeps (default 10)",
    "independent": "values are jepsen.independent [key, value] tuples; each key is its own history (default False)",
}

__all__ = ["check", "SEMANTICS", "MODELS"]


@dataclass
class _Operation:
    """One operation of the history, ready for a model."""

    model_op: ModelOp
    call_position: int
    return_position: int | None
    invoke: Any
    completion: Any | None
    where: tuple  # (index, process): names the op in error messages


def _fields(op: Any) -> tuple:
    """(process, type, f, value, key, index) of an Op, an op map or an op-like object."""
    if isinstance(op, dict):
        return (op.get("process"), op.get("type"), op.get("f"), op.get("value"), op.get("key"), op.get("index"))
    extra = getattr(op, "extra", None)
    key = extra.get("key") if extra else None
    return (op.process, op.type, op.f, op.value, key, getattr(op, "index", None))


def _pairs(history: Any) -> list[tuple[Any, Any, int, int | None]]:
    """(invoke, completion or None, invoke position, completion position or None)."""
    ops = list(history)
    if isinstance(history, History):
        # History already paired every completion with its invocation.
        out = []
        invocation_position = history.invocation_position
        completion_position = history.completion_position
        for i, op in enumerate(ops):
            if invocation_position(i) == -1:
                j = completion_position(i)
                out.append((op, ops[j], i, j) if j != -1 else (op, None, i, None))
        return out
    # A plain sequence of op maps or objects: pair each invoke with the next
    # completion of the same process, as Jepsen does.
    open_by_process: dict[Any, int] = {}
    out_by_invoke: dict[int, list] = {}
    for i, op in enumerate(ops):
        process, kind = _fields(op)[:2]
        if process == "nemesis":
            continue
        if kind == "invoke":
            if process in open_by_process:
                raise ValueError(
                    f"history op {i}: process {process!r} invokes again before op "
                    f"{open_by_process[process]} completed; expected each process to be sequential"
                )
            open_by_process[process] = i
            out_by_invoke[i] = [op, None, i, None]
        elif kind in ("ok", "fail", "info"):
            if process not in open_by_process:
                raise ValueError(
                    f"history op {i}: a {kind!r} completion of process {process!r} with no invocation"
                )
            start = open_by_process.pop(process)
            out_by_invoke[start][1] = op
            out_by_invoke[start][3] = i
        else:
            raise ValueError(f"history op {i}: type {kind!r}; expected invoke, ok, fail or info")
    return [tuple(v) for _, v in sorted(out_by_invoke.items())]


def _split_independent(value: Any, index: Any, process: Any) -> tuple[Any, Any]:
    if isinstance(value, list | tuple) and len(value) == 2:
        return freeze(value[0]), value[1]
    raise ValueError(
        f"history op {index} (process {process!r}): value {value!r} is not a [key, value] tuple, "
        "as independent=True expects (jepsen.independent)"
    )


def _operations(history: Any, model: Model, semantics: str, independent: bool = False) -> list[_Operation]:
    out = []
    porcupine = semantics == "porcupine-etcd"
    for invoke, completion, call_position, return_position in _pairs(history):
        process, _, f, invoke_value, key, index = _fields(invoke)
        if process == "nemesis":
            continue
        if independent:
            key, invoke_value = _split_independent(invoke_value, index, process)
        if completion is None:
            kind = "info"
        else:
            _, kind, _, value, completion_key, completion_index = _fields(completion)
            if independent:
                if kind == "ok":
                    completion_key, value = _split_independent(value, completion_index, process)
                else:
                    completion_key = key
            if key is None:
                key = completion_key
            elif independent and completion_key != key:
                raise ValueError(
                    f"history op {completion_index} (process {process!r}): completion key {completion_key!r} "
                    f"differs from its invocation's key {key!r}"
                )
        if kind == "ok":
            model_op = ModelOp(f, value, "ok", key)
        elif kind == "info":
            model_op = ModelOp(f, invoke_value, "info", key)
            return_position = None
        elif kind == "fail":
            if porcupine and f == "cas":
                model_op = ModelOp(f, invoke_value, "fail", key)
            else:
                continue
        else:
            raise ValueError(
                f"history op {index if index is not None else return_position}: completion type {kind!r}; "
                "expected ok, fail or info"
            )
        where = (index if index is not None else call_position, process)
        if f not in model.fs:
            raise ValueError(
                f"history op {where[0]} (process {process!r}): f {f!r} is not an operation of model "
                f"{model.name!r}; expected one of {', '.join(model.fs)}"
            )
        if model_op.outcome == "info" and not model.may_change_state(model_op):
            continue
        out.append(_Operation(model_op, call_position, return_position, invoke, completion, where))
    return out


def _compile_steps(model: Model, model_ops: list[ModelOp], wheres: list[tuple]) -> list:
    """Each op's step closure; an op the model cannot run raises ValueError naming it."""
    steps = []
    for op, (index, process) in zip(model_ops, wheres):
        try:
            steps.append(model.compile(op))
        except ValueError as e:
            raise ValueError(f"history op {index} (process {process!r}): {e}") from None
    return steps


def _components(
    model: Model, operations: list[_Operation], independent: bool = False
) -> list[tuple[frozenset | None, list[_Operation]]]:
    """Split operations into groups over disjoint keys (one group if the model is not keyed)."""
    if independent:
        keys = [frozenset((o.model_op.key,)) for o in operations]
    else:
        keys = [model.keys_of(o.model_op) for o in operations]
    if not operations or any(k is None for k in keys):
        return [(None, operations)]
    parent: dict[Hashable, Hashable] = {}

    def find(x):
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for ks in keys:
        ks = list(ks)
        for k in ks[1:]:
            parent[find(k)] = find(ks[0])
        if ks:
            find(ks[0])
    groups: dict[Hashable, list[_Operation]] = {}
    group_keys: dict[Hashable, set] = {}
    for o, ks in zip(operations, keys):
        if not ks:
            root = None
        else:
            root = find(next(iter(ks)))
        groups.setdefault(root, []).append(o)
    for k in parent:
        group_keys.setdefault(find(k), set()).add(k)
    # Groups in order of their first call, so results do not depend on hashing.
    return [(frozenset(group_keys.get(root, ())), ops) for root, ops in groups.items()]


def _search_component(
    model_name: str,
    nil_read_legal: bool,
    keys: frozenset | None,
    initial_state: Hashable,
    model_ops: list[tuple],
    wheres: list[tuple],
    events: list[tuple[int, bool]],
    deadline: float | None,
    max_cache_bytes: int,
    max_final_paths: int,
) -> SearchResult:
    """One sub-history's search; a top-level function so a process pool can run it.

    `deadline` is a time.monotonic() value of the parent process: on Linux the
    monotonic clock (CLOCK_MONOTONIC) is shared by all processes of the machine.
    `model_ops` are (f, value, outcome, key) tuples: cheaper to pickle than ModelOps.
    `keys` (None for an unkeyed history) and `initial_state` are as `_sub_model` takes them.
    """
    model, initial_state = _sub_model(make_model(model_name, nil_read_legal=nil_read_legal), keys, initial_state)
    ops = [ModelOp(*op) for op in model_ops]
    steps = _compile_steps(model, ops, wheres)
    return search(events, steps, initial_state, deadline, max_cache_bytes, max_final_paths,
                  read_only=[not model.may_change_state(op) for op in ops], string_hints=_string_hints(model, ops))


def _string_hints(model: Model, ops: list[ModelOp]) -> list[tuple[str, Any]] | None:
    """The model's string hints for the ops (wgl's dead-state pruning), or None if it gives none."""
    hints = [model.string_hint(op) for op in ops]
    return hints if hints and all(h is not None for h in hints) else None


def _search_worker(conn: Any) -> None:
    """A search process: runs `_search_component` on each task it receives, until None."""
    while True:
        task = conn.recv()
        if task is None:
            return
        try:
            result = _search_component(*task)
        except Exception as e:  # the parent raises it, as if the search had run there
            conn.send((False, e))
        else:
            conn.send((True, result))


def _search_in_processes(tasks: list[tuple], workers: int) -> list[SearchResult]:
    """`_search_component` of each task in up to `workers` processes, each fed one task at a time
    through its own pipe. Returns the results in task order up to the first invalid one (or all), so
    they do not depend on scheduling; then kills the processes, so no search outlives `check`.

    Why not multiprocessing.Pool: Pool.terminate() SIGTERMs workers that may be holding the lock of
    the shared result queue while sending a result; the pool's task-handler thread then waits for
    that lock forever (seen: `logquake check` hung in terminate() once searches returned within
    milliseconds of each other). A pipe per process shares no lock."""
    # Imported here: a small history checked in-process does not pay for it.
    import multiprocessing
    from multiprocessing.connection import wait

    ctx = multiprocessing.get_context()
    procs = []
    try:
        for _ in range(min(workers, len(tasks))):
            parent_end, child_end = ctx.Pipe()
            proc = ctx.Process(target=_search_worker, args=(child_end,), daemon=True)
            proc.start()
            child_end.close()
            procs.append((proc, parent_end))
        done: dict[int, SearchResult] = {}
        running: dict[Any, int] = {}
        next_task = 0
        idle = [conn for _, conn in procs]
        while True:
            while idle and next_task < len(tasks):
                conn = idle.pop()
                conn.send(tasks[next_task])
                running[conn] = next_task
                next_task += 1
            # The answer so far: the results in task order, up to the first invalid one.
            ordered = []
            for i in range(len(tasks)):
                if i not in done:
                    break
                ordered.append(done[i])
                if done[i].valid is False:
                    return ordered
            if len(ordered) == len(tasks):
                return ordered
            for conn in wait(list(running)):
                try:
                    ok, value = conn.recv()
                except EOFError:
                    raise RuntimeError("a search process died before answering") from None
                if not ok:
                    raise value
                done[running.pop(conn)] = value
                idle.append(conn)
    finally:
        for proc, conn in procs:
            proc.kill()
            conn.close()
        for proc, _ in procs:
            proc.join()


def _sub_model(model: Model, keys: frozenset | None, initial_state: Hashable) -> tuple[Model, Hashable]:
    """The model and first state for a sub-history over `keys` (None: the whole history)."""
    if keys is None:
        return model, initial_state
    return model.specialize(keys, initial_state)


def _events(operations: list[_Operation]) -> list[tuple[int, bool]]:
    points = []
    for i, o in enumerate(operations):
        points.append((o.call_position, 0, i, True))
        if o.return_position is not None:
            points.append((o.return_position, 1, i, False))
    points.sort()
    return [(i, call) for _, _, i, call in points]


def check(
    history: Iterable,
    model: str,
    initial: Any = None,
    time_limit_s: float | None = None,
    memory_limit_bytes: int | None = None,
    semantics: str = "knossos",
    **opts: Any,
) -> dict:
    """Check that `history` is linearizable with respect to `model`.

    history: a checkers.history.History, or a sequence of Jepsen op maps.
    model: one of `MODELS` (register, cas-register, multi-register, mutex,
    fifo-queue, unordered-queue, set, kv). initial: the model's first state (None:
    register nil, mutex free, empty queue/set/map; kv keys start "").
    time_limit_s, memory_limit_bytes: budgets after which the verdict is "unknown"
    (memory defaults to 1 GiB of search cache per sub-history search, one per
    worker). semantics: "knossos" or "porcupine-etcd" (see the module docstring).
    opts: workers, parallel_min_ops, max_final_paths, independent.

    Returns {"valid": True|False|"unknown", "model", "analyzer": "wgl",
    "semantics", "op_count", "sub_history_count", "cache_entries"}, plus on
    False "op" (the completion that cannot be linearized), "configs" (model
    state and pending invocation indexes at that point), "final_paths" and
    "counterexample" (with its "explanation" sentence; see `explain.py`), and on
    "unknown" a "reason".
    """
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; expected one of {', '.join(sorted(MODELS))}")
    if semantics not in SEMANTICS:
        raise ValueError(f"unknown semantics {semantics!r}; expected one of {', '.join(SEMANTICS)}")
    unknown_opts = sorted(set(opts) - set(_OPTIONS))
    if unknown_opts:
        raise ValueError(
            f"unknown option {unknown_opts[0]!r} (value {opts[unknown_opts[0]]!r}); expected one of "
            + "; ".join(f"{k}: {v}" for k, v in _OPTIONS.items())
        )
    if time_limit_s is not None and not (isinstance(time_limit_s, int | float) and time_limit_s > 0):
        raise ValueError(f"time_limit_s {time_limit_s!r} must be a positive number of seconds, or None")
    if memory_limit_bytes is None:
        memory_limit_bytes = DEFAULT_MEMORY_LIMIT_BYTES
    if not (isinstance(memory_limit_bytes, int) and memory_limit_bytes > 0):
        raise ValueError(f"memory_limit_bytes {memory_limit_bytes!r} must be a positive int, or None")
    workers = opts.get("workers", min(2, os.cpu_count() or 1))
    if not (isinstance(workers, int) and workers >= 1):
        raise ValueError(f"workers {workers!r} must be an int >= 1")
    parallel_min_ops = opts.get("parallel_min_ops", 1000)
    if not (isinstance(parallel_min_ops, int) and parallel_min_ops >= 0):
        raise ValueError(f"parallel_min_ops {parallel_min_ops!r} must be an int >= 0")
    max_final_paths = opts.get("max_final_paths", 10)
    if not (isinstance(max_final_paths, int) and max_final_paths >= 1):
        raise ValueError(f"max_final_paths {max_final_paths!r} must be an int >= 1")
    independent = opts.get("independent", False)
    if not isinstance(independent, bool):
        raise ValueError(f"independent {independent!r} must be True or False")
    if independent and model in ("kv", "multi-register"):
        raise ValueError(
            f"independent=True splits [key, value] values, but model {model!r} is already keyed; "
            "expected independent=False with it"
        )

    start = time.monotonic()
    nil_read_legal = semantics != "porcupine-etcd"
    the_model = make_model(model, nil_read_legal=nil_read_legal)
    initial_state = the_model.initial_state(initial)
    operations = _operations(history, the_model, semantics, independent)
    components = _components(the_model, operations, independent)
    base = {
        "model": model,
        "analyzer": "wgl",
        "semantics": semantics,
        "op_count": len(operations),
        "sub_history_count": len(components),
    }

    def task(keys, ops):
        # Every independent key starts from `initial`; keyed models' components
        # from their part of it.
        return (None if independent else keys), initial_state, _events(ops)

    deadline = None if time_limit_s is None else start + time_limit_s

    results: list[tuple[int, SearchResult]] = []
    use_pool = workers > 1 and len(components) > 1 and len(operations) >= parallel_min_ops
    if use_pool:
        args = []
        for keys, ops in components:
            sub_keys, state, events = task(keys, ops)
            if sub_keys is not None:
                state = the_model.restrict(state, sub_keys)  # less to pickle
            args.append((
                model,
                nil_read_legal,
                sub_keys,
                state,
                [(o.model_op.f, o.model_op.value, o.model_op.outcome, o.model_op.key) for o in ops],
                [o.where for o in ops],
                events,
                deadline,
                memory_limit_bytes,
                max_final_paths,
            ))
        results = list(enumerate(_search_in_processes(args, workers)))
    else:
        for i, (keys, ops) in enumerate(components):
            sub_keys, state, events = task(keys, ops)
            if deadline is not None and time.monotonic() > deadline:
                results.append((i, SearchResult("unknown", reason="time limit reached before this sub-history")))
                continue
            sub_model, state = _sub_model(the_model, sub_keys, state)
            steps = _compile_steps(sub_model, [o.model_op for o in ops], [o.where for o in ops])
            model_ops = [o.model_op for o in ops]
            result = search(events, steps, state, deadline, memory_limit_bytes, max_final_paths,
                            read_only=[not sub_model.may_change_state(op) for op in model_ops],
                            string_hints=_string_hints(sub_model, model_ops))
            results.append((i, result))
            if result.valid is False:
                break

    out = dict(base)
    out["cache_entries"] = sum(r.cache_entries for _, r in results)
    failed = [(i, r) for i, r in results if r.valid is False]
    unknown = [(i, r) for i, r in results if r.valid == "unknown"]
    if failed:
        i, result = failed[0]
        keys, ops = components[i]
        sub_model, state = _sub_model(the_model, None if independent else keys, initial_state)
        out["valid"] = False
        out.update(explain.analysis(sub_model, ops, keys, result, state))
    elif unknown:
        out["valid"] = "unknown"
        out["reason"] = unknown[0][1].reason
    else:
        out["valid"] = True
    return out
