"""Hand-made store run directories for the report tests.

Each builder writes the files `logquake test` writes (test.json,
schedule.json, history.jsonl, results.json) into a fresh run directory. The
failing run's results come from the real queue checker on a small
hand-written history with one lost write, so the report is tested against
the witness shapes the checker really produces.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from checkers.core import merge_valid, to_jsonable
from checkers.history import History, op_counts
from checkers.queue import check
from checkers.queue.delivery import parse_delivery

XSS = "<script>alert('x')</script>"
MS = 1_000_000  # nanoseconds per millisecond


def _write(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1) + "\n")


def _history_ops(with_xss: bool = True) -> list[dict]:
    """A queue history with a kill window and a partition window; op 11 sends value 2, which is lost."""
    ops: list[dict] = []

    def op(time_ms: float, process: Any, type_: str, f: str, value: Any, **extra: Any) -> None:
        d = {"index": len(ops), "time": int(time_ms * MS), "process": process, "type": type_, "f": f, "value": value}
        d.update(extra)
        ops.append(d)

    op(0, 0, "invoke", "send", [["send", 0, 1]])
    op(5, 0, "ok", "send", [["send", 0, [0, 1]]])
    op(6, 1, "invoke", "send", [["send", 1, XSS if with_xss else 100]])
    op(9, 1, "ok", "send", [["send", 1, [0, XSS if with_xss else 100]]])
    op(100, "nemesis", "info", "kill", {"at_s": 0.1, "package": "kill", "f": "kill", "target": "leader", "pick": 3})
    op(120, "nemesis", "info", "kill", {"killed": ["n2"]})
    op(130, 0, "invoke", "send", [["send", 0, 9]])
    op(180, 0, "info", "send", [["send", 0, 9]], error=["timeout", XSS if with_xss else "timed out"])
    op(200, "nemesis", "info", "start-partition",
       {"at_s": 0.2, "package": "partition", "f": "start-partition", "target": "majority", "shape": "halves",
        "pick": 1})
    op(210, "nemesis", "info", "start-partition", {"grudge": {"n1": ["n2", "n3"]}})
    op(250, 2, "invoke", "send", [["send", 0, 2]])
    op(300, 2, "ok", "send", [["send", 0, [1, 2]]])
    op(400, "nemesis", "info", "start", {"at_s": 0.4, "package": "kill", "f": "start", "target": "leader", "pick": 3})
    op(420, "nemesis", "info", "start", {"started": ["n2"]})
    op(450, 2, "invoke", "send", [["send", 0, 3]])
    op(470, 2, "ok", "send", [["send", 0, [2, 3]]])
    op(500, "nemesis", "info", "stop-partition", {"at_s": 0.5, "package": "partition", "f": "stop-partition",
                                                   "pick": 1})
    op(510, "nemesis", "info", "stop-partition", {"healed": True})
    op(520, 3, "invoke", "poll", [["poll"]])
    op(560, 3, "ok", "poll", [["poll", {"0": [[0, 1], [2, 3]], "1": [[0, XSS if with_xss else 100]]}]])
    op(570, 4, "invoke", "poll", [["poll"]])
    op(580, 4, "fail", "poll", [["poll"]], error="not-leader")
    op(600, "nemesis", "info", "heal", None)
    op(610, "nemesis", "info", "heal", {"kill": {}, "partition": {}})
    return ops


def _test_json(name: str, delivery: str) -> dict:
    # as logquake test writes it: the client mode, plus the idempotent flag (at-least-once-idempotent)
    mode = delivery.removesuffix("-idempotent")
    return {"name": name,
            "options": {"workload": "queue", "delivery": mode, "idempotent": mode != delivery,
                        "nemesis": ["partition", "kill"], "nodes": 3, "time_limit_s": 0.6, "seed": 42,
                        "client": "confluent"},
            "workload": {"name": "queue", "delivery": mode, "keys": 2, "acks": "all"},
            "versions": {"logquake": "0.1", "python": "3.11"}}


def _schedule() -> list[dict]:
    return [{"at_s": 0.1, "package": "kill", "f": "kill", "target": "leader", "pick": 3},
            {"at_s": 0.2, "package": "partition", "f": "start-partition", "target": "majority", "shape": "halves",
             "pick": 1},
            {"at_s": 0.4, "package": "kill", "f": "start", "target": "leader", "pick": 3},
            {"at_s": 0.5, "package": "partition", "f": "stop-partition", "target": "majority", "shape": "halves",
             "pick": 1}]


def write_run(store: Path, name: str, ops: list[dict], results: dict | None, delivery: str = "exactly-once",
              stamp: str = "20261127T050000.000") -> Path:
    run_dir = store / name / stamp
    run_dir.mkdir(parents=True)
    _write(run_dir / "test.json", _test_json(name, delivery))
    _write(run_dir / "schedule.json", _schedule())
    (run_dir / "history.jsonl").write_text("".join(json.dumps(op) + "\n" for op in ops))
    if results is not None:
        _write(run_dir / "results.json", results)
    return run_dir


def checked_results(ops: list[dict], delivery: str) -> dict:
    """results.json as the runner writes it: the real queue checker's result under "workload", the run's
    delivery and its op counts."""
    history = History.from_dicts(ops)
    results = to_jsonable({"workload": check(history, delivery=delivery)})
    results["valid"] = merge_valid(results["workload"]["valid"])
    results["delivery"] = parse_delivery(delivery).to_dict()
    results["counts"] = op_counts(ops)
    return results


def lost_write_run(store: Path, delivery: str = "exactly-once", name: str = "queue-lost") -> Path:
    ops = _history_ops()
    return write_run(store, name, ops, checked_results(ops, delivery), delivery)


def valid_run(store: Path, name: str = "queue-valid", stamp: str = "20261127T040000.000") -> Path:
    ops = [o for o in _history_ops(with_xss=False) if o["index"] not in (10, 11)]
    for i, o in enumerate(ops):
        o["index"] = i
    return write_run(store, name, ops, checked_results(ops, "exactly-once"), "exactly-once", stamp)


def interrupted_run(store: Path, name: str = "queue-interrupted") -> Path:
    ops = _history_ops()[:9]
    return write_run(store, name, ops, {"valid": "unknown", "reason": "interrupted",
                                        "message": "the test was interrupted; its history is kept " + XSS},
                     "at-least-once", "20261127T060000.000")


def empty_run(store: Path, name: str = "queue-empty") -> Path:
    return write_run(store, name, [], {"valid": "unknown", "reason": "crashed", "message": "Traceback: boom"},
                     "at-least-once", "20261127T070000.000")
