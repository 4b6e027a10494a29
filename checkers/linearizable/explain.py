"""Counterexamples for non-linearizable histories, in two pure steps.

Step one (`analysis`) turns a failed search into data, shaped like Knossos's
analysis: the operation that cannot be linearized (`op`), the model states it
could have taken effect in (`counterexample.states`, `configs`), one longest
linearizable prefix (`counterexample.prefix`), and the last steps of a few paths
reaching those states (`final_paths`, each step an op and the model after it).
Step two (`sentence`) turns that data into one sentence, e.g.

    No linearization of the 12 operations before index 37 lets process 3's read
    of 4 (index 37) return 4: the register could only hold 1 or 2 at that point.

"the N operations before index I" are the operations of the (sub-)history that
completed before the failing operation's completion at index I: all of them
must take effect before it.

Thread-safety: pure functions. Sources: Knossos's `:op`, `:configs` and
`:final-paths` analysis fields; Elle's explainer split (data, then a sentence).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from checkers.core import to_jsonable
from checkers.linearizable.models import Model, ModelOp, show, thaw
from checkers.linearizable.wgl import MAX_BLOCK_STATES

# How many steps of each final path a report keeps (Knossos also shows only
# the end of each path: the part where the configurations diverge).
FINAL_PATH_STEPS = 10


def op_data(op: Any) -> dict | None:
    """A history op as a JSON-friendly map (its extra fields merged in)."""
    if op is None:
        return None
    return to_jsonable(op)


def _index(op: Any, position: int | None) -> Any:
    if op is None:
        return position
    value = op.get("index") if isinstance(op, dict) else getattr(op, "index", None)
    return position if value is None else value


def _sorted_states(states: list[Hashable]) -> list[Hashable]:
    try:
        return sorted(states)
    except TypeError:
        return sorted(states, key=repr)


def analysis(model: Model, operations: list, keys: frozenset | None, result: Any, initial_state: Hashable) -> dict:
    """Data for a failed search over `operations` (a list of `_Operation`).

    `model` and `initial_state` are those the search ran with (for a keyed
    sub-history, the model specialised to its `keys`).
    """
    blocked = operations[result.blocked_op]
    return_position = blocked.return_position
    completed_before = [
        o for o in operations if o.return_position is not None and o.return_position < return_position
    ]
    states = _sorted_states(result.blocked_states)
    final_paths = []
    configs = []
    for path in result.final_paths:
        in_path = {op_id for op_id, _ in path}
        final_paths.append(
            [
                {"op": op_data(operations[op_id].completion or operations[op_id].invoke), "model": model.state_data(s)}
                for op_id, s in path[-FINAL_PATH_STEPS:]
            ]
        )
        state = path[-1][1] if path else initial_state
        pending = [
            _index(o.invoke, o.call_position)
            for i, o in enumerate(operations)
            if i not in in_path and o.call_position < return_position
        ]
        configs.append({"model": model.state_data(state), "pending": pending})
    first_path = result.final_paths[0] if result.final_paths else []
    completion = blocked.completion
    counterexample = {
        "type": "nonlinearizable",
        "key": [thaw(k) for k in sorted(keys, key=repr)] if keys else None,
        "process": op_data(blocked.invoke)["process"],
        "f": blocked.model_op.f,
        "value": blocked.model_op.value,
        "outcome": blocked.model_op.outcome,
        "op_key": blocked.model_op.key,
        "index": _index(completion, return_position),
        "invoke_index": _index(blocked.invoke, blocked.call_position),
        "prefix_op_count": len(completed_before),
        "prefix": [_index(operations[op_id].invoke, operations[op_id].call_position) for op_id, _ in first_path],
        "states": [model.state_data(s) for s in states],
        "states_truncated": len(states) >= MAX_BLOCK_STATES,
        # the search merged states no read still to come could see (wgl.py): it could have held others of those
        "states_partial": bool(getattr(result, "blocked_states_partial", False)),
    }
    counterexample["explanation"] = sentence(model, counterexample, states)
    return {
        "op": op_data(completion),
        "configs": configs,
        "final_paths": final_paths,
        "counterexample": counterexample,
    }


def sentence(model: Model, data: dict, states: list[Hashable]) -> str:
    """The counterexample as one sentence."""
    op = ModelOp(data["f"], data["value"], data["outcome"], data["op_key"])
    n = data["prefix_op_count"]
    noun = "operation" if n == 1 else "operations"
    if data["key"]:
        # A sub-history of independent keys: only its operations were searched.
        word = "key" if len(data["key"]) == 1 else "keys"
        noun += f" on {word} " + ", ".join(show(k) for k in data["key"])
    return (
        f"No linearization of the {n} {noun} before index {data['index']} lets "
        f"process {data['process']}'s {model.describe_op(op)} (index {data['index']}) "
        f"{model.describe_outcome(op)}: {model.describe_states(states, op)}"
        + (" (or another value that no read still to come could see)" if data.get("states_partial") else "")
        + " at that point."
    )
