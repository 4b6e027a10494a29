"""Everything a report shows about one run, read leniently from its store directory.

A report must be drawn for any run the store holds, including runs that crashed
half-way: so every file is optional, a `history.jsonl` whose last line was cut
off (or any malformed line) is read up to what parses, and each problem found
is kept as a sentence in `RunData.problems` for the page to show. Nothing here
judges the history; verdicts come from `results.json` only.

Invariants
- `ops` keeps file order; `pairs` holds one `OpPair` per client invocation
  (completion None while pending) and one per nemesis invocation/completion pair.
- Times are seconds since the test started (the history stores nanoseconds).
- `windows` are nemesis fault windows, by `checkers.faults.fault_windows` (the
  rule the queue checker uses too): they open when a fault package starts
  (`kill`, `pause`, `start-*`, or an unknown f that is not a known undo) and
  close at that package's next undo (`start`, `resume`, `stop-*`, `reset-*`,
  `heal`); a window still open at the end of the history closes there.

Thread-safety: `load_run` builds a fresh `RunData`; nothing is shared.

Sources: Jepsen's op model and nemesis op pairs (jepsen.history,
jepsen.nemesis.combined); the store layout of `harness/store.py`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from checkers.faults import fault_kind, fault_windows
from checkers.history import NEMESIS, op_counts, read_op_maps
from checkers.queue.delivery import delivery_of, parse_delivery
from reports.fault_words import describe_nemesis

__all__ = ["FaultWindow", "OpPair", "RunData", "fault_kind", "load_run", "RAW_FILES"]

# The raw files a run may hold, in the order the report links them.
RAW_FILES = ("history.jsonl", "history.edn", "results.json", "results.edn", "test.json", "schedule.json",
             "harness.log")

class OpPair:
    """An invocation and its completion (None while pending), with times worked out once."""

    __slots__ = ("invoke", "complete", "process", "start_s", "end_s", "type", "latency_ms")

    def __init__(self, invoke: dict[str, Any], complete: dict[str, Any] | None):
        self.invoke = invoke
        self.complete = complete
        self.process = invoke.get("process")
        self.start_s = _seconds(invoke)
        self.end_s = None if complete is None else _seconds(complete)
        self.type = "pending" if complete is None else str(complete.get("type"))
        self.latency_ms = None if self.end_s is None else max(0.0, (self.end_s - self.start_s) * 1000.0)


@dataclass(frozen=True)
class FaultWindow:
    """A span of time during which one nemesis package's fault was in effect; `detail` says what was done."""

    kind: str
    start_s: float
    end_s: float
    f: str
    detail: str


@dataclass
class RunData:
    run_dir: Path
    test: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] | None = None
    schedule: list[Any] = field(default_factory=list)
    ops: list[dict[str, Any]] = field(default_factory=list)
    pairs: list[OpPair] = field(default_factory=list)
    nemesis_pairs: list[OpPair] = field(default_factory=list)
    windows: list[FaultWindow] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    op_time_s: dict[int, float] = field(default_factory=dict)
    duration_s: float = 0.0

    @property
    def name(self) -> str:
        name = self.test.get("name") if isinstance(self.test, dict) else None
        return str(name) if name else self.run_dir.parent.name

    @property
    def options(self) -> dict[str, Any]:
        options = self.test.get("options") if isinstance(self.test, dict) else None
        return options if isinstance(options, dict) else {}

    @property
    def workload(self) -> dict[str, Any]:
        workload = self.test.get("workload") if isinstance(self.test, dict) else None
        return workload if isinstance(workload, dict) else {}

    @property
    def delivery(self) -> str | None:
        for source in (self._checker_results(), [self.workload, self.options]):
            for item in source:
                if isinstance(item, dict) and isinstance(item.get("delivery"), str):
                    return item["delivery"]
        return None

    @property
    def delivery_label(self) -> str | None:
        """The delivery in words ("at-least-once with an idempotent producer"): results.json's `delivery`
        when the run recorded it, else decided from test.json's options by `checkers.queue.delivery`, else
        the bare name the checker recorded (old runs)."""
        results = self.results if isinstance(self.results, dict) else {}
        recorded = results.get("delivery")
        if isinstance(recorded, dict) and isinstance(recorded.get("label"), str):
            return recorded["label"]
        for decide, arg in ((delivery_of, self.options), (parse_delivery, self.delivery)):
            try:
                return decide(arg).label  # type: ignore[arg-type]
            except (ValueError, TypeError, AttributeError):
                continue
        return self.delivery

    @property
    def delivery_name(self) -> str | None:
        """The delivery's short name (`at-least-once-idempotent`), as `judge_promises` takes it."""
        results = self.results if isinstance(self.results, dict) else {}
        recorded = results.get("delivery")
        if isinstance(recorded, dict) and isinstance(recorded.get("name"), str):
            return recorded["name"]
        try:
            return delivery_of(self.options).name
        except (ValueError, TypeError):
            return self.delivery

    @property
    def counts(self) -> dict[str, int]:
        """Client operations by completion type: results.json's `counts`, else counted from the history the
        same way (`checkers.history.op_counts`), for runs stored before results.json had them."""
        results = self.results if isinstance(self.results, dict) else {}
        recorded = results.get("counts")
        if isinstance(recorded, dict) and all(isinstance(recorded.get(k), int) for k in ("total", "ok")):
            return dict(recorded)
        return op_counts(self.ops)

    def _checker_results(self) -> list[dict[str, Any]]:
        return [r for _, r in self.checker_results()]

    def checker_results(self) -> list[tuple[str, dict[str, Any]]]:
        """(name, result) for every checker in results.json (the `valid` key is the merged verdict)."""
        if not isinstance(self.results, dict):
            return []
        return [(k, v) for k, v in self.results.items() if isinstance(v, dict) and "valid" in v]

    @property
    def valid(self) -> Any:
        if not isinstance(self.results, dict):
            return "unknown"
        return self.results.get("valid", "unknown")


def _seconds(op: dict[str, Any]) -> float:
    t = op.get("time")
    return t / 1e9 if isinstance(t, (int, float)) and not isinstance(t, bool) else 0.0


def _read_json(run: RunData, name: str) -> Any:
    path = run.run_dir / name
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8", errors="replace"))
    except (OSError, ValueError) as e:
        run.problems.append(f"{name} could not be read: {e}")
        return None


def load_run(run_dir: str | Path) -> RunData:
    """Read a run directory; missing or damaged files become `problems`, never exceptions."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {str(run_dir)!r} does not exist or is not a directory")
    run = RunData(run_dir)
    test = _read_json(run, "test.json")
    if isinstance(test, dict):
        run.test = test
    elif test is None and not (run_dir / "test.json").exists():
        run.problems.append("test.json is missing: the test parameters are unknown")
    results = _read_json(run, "results.json")
    if isinstance(results, dict):
        run.results = results
    elif results is not None:
        run.problems.append(f"results.json holds {type(results).__name__}, not a map of results")
    elif not (run_dir / "results.json").exists():
        run.problems.append("results.json is missing: the run has no verdict (still running, or it crashed)")
    schedule = _read_json(run, "schedule.json")
    if isinstance(schedule, list):
        run.schedule = schedule
    _read_history(run)
    _pair(run)
    _fault_windows(run)
    return run


def _read_history(run: RunData) -> None:
    path = run.run_dir / "history.jsonl"
    if not path.is_file():
        run.problems.append("history.jsonl is missing: no operations to draw")
        return
    ops, bad_lines = read_op_maps(path)
    run.ops.extend(ops)
    if bad_lines:
        shown = ", ".join(str(n) for n in bad_lines[:10]) + (" ..." if len(bad_lines) > 10 else "")
        run.problems.append(f"history.jsonl: {len(bad_lines)} line(s) are not op maps and were skipped (line {shown})")


def _pair(run: RunData) -> None:
    pending: dict[Any, dict[str, Any]] = {}
    nemesis_pending: dict[str, Any] | None = None
    orphans = 0
    for op in run.ops:
        t = _seconds(op)
        run.op_time_s[op["index"]] = t
        run.duration_s = max(run.duration_s, t)
        process = op.get("process")
        if process == NEMESIS:
            # Nemesis ops come in pairs: the scheduled event, then what was done.
            if nemesis_pending is None:
                nemesis_pending = op
            else:
                run.nemesis_pairs.append(OpPair(nemesis_pending, op))
                nemesis_pending = None
            continue
        if op.get("type") == "invoke":
            if process in pending:
                run.pairs.append(OpPair(pending.pop(process), None))
            pending[process] = op
        else:
            invoke = pending.pop(process, None)
            if invoke is None:
                orphans += 1
                continue
            run.pairs.append(OpPair(invoke, op))
    run.pairs.extend(OpPair(op, None) for op in pending.values())
    if nemesis_pending is not None:
        run.nemesis_pairs.append(OpPair(nemesis_pending, None))
    if orphans:
        run.problems.append(f"history.jsonl: {orphans} completion(s) had no pending invocation and are not drawn")
    run.pairs.sort(key=lambda p: p.invoke["index"])


def _fault_windows(run: RunData) -> None:
    pairs = run.nemesis_pairs
    events = [(str(p.invoke.get("f")), p.invoke.get("value"), p.start_s, p.end_s) for p in pairs]
    for kind, start_s, end_s, i in fault_windows(events, run.duration_s):
        opener = pairs[i]
        done = opener.complete.get("value") if opener.complete is not None else None
        f = str(opener.invoke.get("f"))
        run.windows.append(FaultWindow(kind, start_s, end_s, f,
                                       describe_nemesis(f, opener.invoke.get("value"), done, probe_detail=False)))

