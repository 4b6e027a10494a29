"""Explaining dependency cycles, in two pure steps: data, then a sentence.

What: a cycle T1 -> T2 -> ... -> T1 is explained by one *step* per edge, a
small map saying why the second transaction depends on the first, e.g.
``{"type": "ww", "key": 1, "value": 2, "value'": 3}``; each checker builds
its ww/wr/rw steps, and this module builds process and realtime steps. The
steps are then rendered as Elle renders them::

    Let:
      T1 = {:index 7, :type :ok, :value [[:append 250 10] ...]}
      T2 = {:index 3, ...}

    Then:
      - T1 < T2, because T1 did not observe T2's append of 8 to 255.
      - However, T2 < T1, because ...: a contradiction!

Values are printed as EDN (``edn_repr``): integers as themselves, ``None`` as
``nil``, lists as ``[a b]``, and a string that looks like a keyword
(``[a-z][a-z0-9-]*``, e.g. a key ``x`` read from ``:x``) as ``:x``; other
strings are quoted. Histories read from EDN turn keywords into strings, so this
is how Elle would have printed them.

Invariants: rendering is a pure function of the step data and the op; the
witness returned by ``cycle_witness`` is JSON-able (plain dicts, lists, str,
int, None) apart from op values, which are kept as the history holds them.

Thread-safety: pure functions, no shared state.

Sources: Kingsbury & Alvaro, "Elle", VLDB 2020, section 5 (explanations of
cycles as chains of justified dependencies); jepsen-io/elle's explanation
format (``Let:``/``Then:``, "a contradiction!"), reproduced so that Jepsen
users read familiar text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from checkers.history import Op, op_to_dict

from checkers.elle.graph import REL_NAMES, classify

_KEYWORDISH = re.compile(r"^[a-zA-Z][a-zA-Z0-9_*+!?<>=/.-]*$")


class Keyword(str):
    """A string that ``edn_repr`` always prints as a keyword (``:value'``)."""


def edn_repr(x: Any) -> str:
    """``x`` printed as EDN (see the module docstring for strings)."""
    if isinstance(x, Keyword):
        return ":" + str.__str__(x)
    if x is None:
        return "nil"
    if x is True:
        return "true"
    if x is False:
        return "false"
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        return repr(x)
    if isinstance(x, str):
        if _KEYWORDISH.match(x) and x not in ("nil", "true", "false"):
            return ":" + x
        return '"' + x.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(x, Mapping):
        return "{" + ", ".join(f"{edn_repr(k)} {edn_repr(v)}" for k, v in x.items()) + "}"
    if isinstance(x, (set, frozenset)):
        return "#{" + " ".join(sorted(edn_repr(v) for v in x)) + "}"
    if isinstance(x, (list, tuple)):
        return "[" + " ".join(edn_repr(v) for v in x) + "]"
    return str(x)


def op_repr(op: Op) -> str:
    """The op as Jepsen prints it: ``{:index 1, :time 5, :type :ok, ...}``."""
    parts = [f":index {op.index}"]
    if op.time is not None:
        parts.append(f":time {op.time}")
    parts.append(f":type :{op.type}")
    if op.process is not None:
        parts.append(f":process {edn_repr(op.process)}")
    if op.f is not None:
        parts.append(f":f :{op.f}")
    parts.append(f":value {edn_repr(op.value)}")
    return "{" + ", ".join(parts) + "}"


def process_step(a: Op, b: Op) -> dict[str, Any]:
    """Why ``b`` follows ``a`` in process order."""
    return {"type": "process", "process": a.process}


def realtime_step(a: Op, b_invocation: Op) -> dict[str, Any]:
    """Why ``b`` follows ``a`` in realtime: ``a`` completed before ``b`` was invoked."""
    return {
        "type": "realtime",
        "a_index": a.index,
        "a_time": a.time,
        "b_index": b_invocation.index,
        "b_time": b_invocation.time,
    }


def render_common_step(step: Mapping[str, Any], a_name: str, b_name: str) -> str:
    """Sentence for a process or realtime step."""
    if step["type"] == "process":
        return f"process {edn_repr(step['process'])} executed {a_name} before {b_name}"
    if step["type"] == "realtime":
        when = ""
        if step["a_time"] is not None and step["b_time"] is not None:
            delta_ns = step["b_time"] - step["a_time"]
            # Times are approximate; the order of indexes is what counts.
            when = f" {delta_ns / 1e9:.3f} seconds" if delta_ns > 0 else " just"
        return (
            f"{a_name} completed at index {step['a_index']},{when} before the "
            f"invocation of {b_name}, at index {step['b_index']}"
        )
    raise ValueError(f"not a process or realtime step: {dict(step)!r}")


def render_cycle(
    ops: Sequence[Op],
    steps: Sequence[Mapping[str, Any]],
    render_step: Callable[[Mapping[str, Any], str, str], str],
) -> str:
    """Elle's text for a cycle of ``ops`` (first not repeated) and its ``steps``."""
    names = [f"T{i + 1}" for i in range(len(ops))]
    lines = ["Let:"]
    lines += [f"  {name} = {op_repr(op)}" for name, op in zip(names, ops)]
    lines += ["", "Then:"]
    for i, step in enumerate(steps):
        a_name, b_name = names[i], names[(i + 1) % len(names)]
        reason = f"{a_name} < {b_name}, because {render_step(step, a_name, b_name)}"
        if i == len(steps) - 1:
            lines.append(f"  - However, {reason}: a contradiction!")
        else:
            lines.append(f"  - {reason}.")
    return "\n".join(lines)


def cycle_witness(
    ops: Sequence[Op],
    rels: Sequence[int],
    steps: Sequence[dict[str, Any]],
    render_step: Callable[[Mapping[str, Any], str, str], str],
) -> dict[str, Any]:
    """The witness of a cycle: its type, ops, typed edges, steps and text.

    ``rels[i]`` is the relationship of the edge ``ops[i] -> ops[i+1]`` (the
    last closing back to ``ops[0]``) and ``steps[i]`` its explanation data.
    ``cycle`` repeats the first op at the end, as Elle does.
    """
    return {
        "type": classify(list(rels)),
        "cycle": [op_to_dict(op) for op in ops] + [op_to_dict(ops[0])],
        "edges": [REL_NAMES[rel] for rel in rels],
        "steps": list(steps),
        "explanation": render_cycle(ops, steps, render_step),
    }
