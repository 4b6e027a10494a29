"""Fault campaigns: a matrix of fault tests from a TOML file, run one after another, resumable, summarised.

A campaign file names axes (each a list) and fixed settings::

    name = "smoke"
    time_limit = 10            # seconds of workload per run
    budget = "5m"              # the whole campaign: "90s", "5m", "2h" or seconds
    repeat = 1                 # random seeds per cell (recorded), or: seeds = [1, 2]
    rate = 100                 # fixed settings: rate, concurrency, nemesis_interval, recovery_timeout,
    concurrency = 4            #   replication_factor, min_insync_replicas, nodes_file

    [axes]                     # every combination is a cell
    delivery = ["at-least-once", "exactly-once"]
    nemesis = ["kill", "partition,pause"]
    # also: workload, backend, system ("ours" or a TOML path beside the file), nodes, client,
    # idempotent, broker_override (a list of tables), and any workload option (keys, subscribe, ...)

    [[exclude]]                # combinations that make no sense
    delivery = "exactly-once"
    client = "kafka-python"

Every cell is resolved into a `RunSpec` before anything runs; a cell that
cannot run is refused with the file, line and reason (exit 254).

A campaign lives in `STORE/campaigns/<name>/<started-at>/`: `plan.json` (the
cells and their seeds, decided at the start), `journal.jsonl` (a `start` and
an `end` line per run, appended and flushed as it goes), `campaign.toml` (a
copy of the file), and the outputs, rewritten after every run so that a killed
campaign still has them: `summary.json`, `junit.xml` and `index.html`.

Each run is a normal `logquake test --spec FILE` child process, stored in the
store like any run. The budget is the total time of the campaign's runs,
earlier sessions' included (with `--parallel N` runs overlap, so the wall
clock time is about the budget over N); a run is started only when its time
limit and 30 s of set-up and checking still fit. Resuming (`--resume DIR`) never runs a finished job again;
a job with a `start` and no `end` (the harness was killed, or the machine
rebooted) is marked interrupted, its child is stopped if it still runs, the
leftovers of crashed runs are removed, and it runs again from the start. The
budget counts the time already spent.

Verdicts: a job's verdict is its run's (valid, invalid, unknown); an
interrupted or crashed run is unknown, never valid. `--rerun-unknown N` runs
a job whose verdict is unknown again, up to N more times, keeping every
attempt; the job's verdict is its last attempt's. The campaign's exit status
is the worst verdict (Jepsen's codes: 1 invalid, else 2 unknown, else 0),
130 when interrupted.

Thread-safety: one campaign per process; `--parallel` runs children in
processes, driven from the main thread.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness.spec import RunSpec, SpecError
from workloads.core import workload_kinds

__all__ = ["Campaign", "CampaignError", "Job", "load_campaign", "run_campaign", "summarize"]

EXIT_VALID, EXIT_INVALID, EXIT_UNKNOWN, EXIT_BAD, EXIT_INTERRUPTED = 0, 1, 2, 254, 130
VERDICTS = ("valid", "invalid", "unknown")
_SPEC_AXES = {"workload": "workload", "delivery": "delivery", "nemesis": "nemesis", "backend": "backend",
              "system": "system", "nodes": "nodes", "client": "client", "idempotent": "idempotent",
              "broker_override": "broker_overrides"}
_FIXED = {"time_limit": "time_limit_s", "rate": "rate", "concurrency": "concurrency",
          "nemesis_interval": "nemesis_interval_s", "recovery_timeout": "recovery_timeout_s",
          "replication_factor": "replication_factor", "min_insync_replicas": "min_insync_replicas",
          "nodes_file": "nodes_file"}
_TOP = {"name", "description", "budget", "repeat", "seeds", "axes", "exclude", *_FIXED}


class CampaignError(ValueError):
    """A campaign file that cannot run: the message names the file, the line and the reason."""


@dataclass(frozen=True)
class Cell:
    id: str
    params: dict[str, Any]  # axis -> value, as the file gives it
    spec: RunSpec  # resolved


@dataclass(frozen=True)
class Job:
    """One run of the plan: a cell with one seed."""

    cell: Cell
    seed: int

    @property
    def key(self) -> str:
        return f"{self.cell.id}#{self.seed}"


@dataclass
class Campaign:
    name: str
    path: Path
    cells: list[Cell]
    seeds: list[int] | None  # None: `repeat` random seeds per cell
    repeat: int
    budget_s: float | None
    time_limit_s: float
    text: str = ""

    def jobs(self, seeds_by_cell: dict[str, list[int]]) -> list[Job]:
        return [Job(cell, seed) for cell in self.cells for seed in seeds_by_cell[cell.id]]


# ----- the campaign file -------------------------------------------------------------------------------


_ASSIGNED, _EXCLUDE, _AXES = r"\s*=", r"\[\[exclude\]\]", r"\[axes\]"


def _line_of(text: str, pattern: str) -> int:
    for number, line in enumerate(text.splitlines(), 1):
        if re.match(pattern, line.strip()):
            return number
    return 1


def parse_budget(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|m|h)\s*", str(value))
    if not match:
        raise CampaignError(f"{where}: budget {value!r} is not a duration; write e.g. \"90s\", \"5m\", \"2h\" or "
                            "a number of seconds")
    return float(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[match.group(2)]


def load_campaign(path: str | os.PathLike[str], store: str = "store") -> Campaign:
    """Read and check a campaign file; every cell is resolved, and CampaignError names file, line and reason."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise CampaignError(f"{path}: cannot read it ({e.strerror})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise CampaignError(f"{path}: not valid TOML: {e}") from None

    def where(key: str) -> str:
        return f"{path}:{_line_of(text, re.escape(key) + _ASSIGNED)}"

    unknown = sorted(set(data) - _TOP)
    if unknown:
        raise CampaignError(f"{where(unknown[0])}: unknown setting {unknown[0]!r}; campaign files know "
                            f"{', '.join(sorted(_TOP))}")
    name = data.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name or ""):
        raise CampaignError(f"{where('name')}: name must be a word of letters, digits, '.', '_' or '-', got {name!r}")
    axes = data.get("axes", {})
    if not isinstance(axes, dict):
        raise CampaignError(f"{path}:{_line_of(text, r'axes')}: axes must be a table ([axes])")
    option_names = {o.name for kind in workload_kinds().values() for o in kind.options}
    for axis, values in axes.items():
        if axis not in _SPEC_AXES and axis not in option_names:
            raise CampaignError(f"{where(axis)}: unknown axis {axis!r}; axes are "
                                f"{', '.join(sorted([*_SPEC_AXES, *option_names]))}")
        if not isinstance(values, list) or not values:
            raise CampaignError(f"{where(axis)}: axis {axis} must be a non-empty list, got {values!r}")
    excludes = data.get("exclude", [])
    if not isinstance(excludes, list) or not all(isinstance(e, dict) for e in excludes):
        raise CampaignError(f"{path}:{_line_of(text, _EXCLUDE)}: exclude must be tables ([[exclude]])")
    for rule in excludes:
        for axis in rule:
            if axis not in axes:
                raise CampaignError(f"{path}:{_line_of(text, _EXCLUDE)}: an exclude rule names {axis!r}, "
                                    "which is not an axis of this campaign")
    seeds = data.get("seeds")
    repeat = data.get("repeat", 1)
    if seeds is not None and ("repeat" in data or not isinstance(seeds, list)
                              or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds) or not seeds):
        raise CampaignError(f"{where('seeds')}: seeds must be a non-empty list of whole numbers, without repeat")
    if not isinstance(repeat, int) or isinstance(repeat, bool) or repeat < 1:
        raise CampaignError(f"{where('repeat')}: repeat must be a whole number of at least 1, got {repeat!r}")
    fixed: dict[str, Any] = {}
    for key, field_name in _FIXED.items():
        if key in data:
            fixed[field_name] = data[key]
    if "nodes_file" in fixed:
        fixed["nodes_file"] = str((path.parent / fixed["nodes_file"]).resolve())
    budget_s = parse_budget(data.get("budget"), where("budget"))
    names = list(axes)
    cells = []
    for values in itertools.product(*(axes[n] for n in names)):
        params = dict(zip(names, values))
        if any(all(params.get(k) == v for k, v in rule.items()) for rule in excludes):
            continue
        cell_id = ",".join(f"{k}={_show(v)}" for k, v in params.items() if len(axes[k]) > 1) or "default"
        try:
            spec = _cell_spec(params, fixed, option_names, path, store).resolve()
        except (SpecError, ValueError) as e:
            axis = next((a for a in names if a in str(e) or a.replace("_", "-") in str(e)), None)
            line = where(axis) if axis else f"{path}:{_line_of(text, _AXES)}"
            raise CampaignError(f"{line}: cell {cell_id} cannot run: {e} (exclude it with an [[exclude]] rule)") from None
        cells.append(Cell(cell_id, params, spec))
    if not cells:
        raise CampaignError(f"{path}: every combination is excluded: nothing to run")
    ids = [c.id for c in cells]
    if len(set(ids)) != len(ids):
        raise CampaignError(f"{path}: two cells have the same id; give the axes distinct values")
    return Campaign(name=name, path=path, cells=cells, seeds=seeds, repeat=repeat, budget_s=budget_s,
                    time_limit_s=float(fixed.get("time_limit_s", RunSpec.time_limit_s)), text=text)


def _show(value: Any) -> str:
    if isinstance(value, str):
        return value.replace(",", "+")  # a fault mix, as test names write it
    if isinstance(value, dict):
        return ";".join(f"{k}={v}" for k, v in sorted(value.items())) or "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _cell_spec(params: dict[str, Any], fixed: dict[str, Any], option_names: set[str], path: Path,
               store: str) -> RunSpec:
    values: dict[str, Any] = dict(fixed)
    workload_options: dict[str, Any] = {}
    for axis, value in params.items():
        if axis in _SPEC_AXES:
            field_name = _SPEC_AXES[axis]
            if axis == "nemesis":
                value = tuple(n.strip() for n in str(value).split(",") if n.strip() and n.strip() != "none")
            elif axis == "system":
                value = None if value in ("ours", "", None) else str((path.parent / str(value)).resolve())
            elif axis == "broker_override":
                if not isinstance(value, dict):
                    raise SpecError(f"broker_override values must be tables of properties, got {value!r}")
                value = {str(k): str(v) for k, v in value.items()}
            values[field_name] = value
        else:
            workload_options[axis] = value
    return RunSpec(workload_options=workload_options, store=store, **values)


# ----- journal and plan ------------------------------------------------------------------------------


class Journal:
    """journal.jsonl: one JSON line per event, flushed and fsynced as it is written."""

    def __init__(self, path: Path):
        self.path = path

    def append(self, event: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(event, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def events(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a line cut short by a crash: the event it began never finished
        return out


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def project_version() -> dict[str, str | None]:
    """The logquake version and the git commit of the checkout it runs from (None outside git)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("logquake")
    except PackageNotFoundError:
        v = None
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"version": v, "commit": commit}


# ----- running -----------------------------------------------------------------------------------------


@dataclass
class Attempt:
    job: str
    cell: str
    seed: int
    attempt: int
    verdict: str  # valid | invalid | unknown | interrupted
    duration_s: float
    run_dir: str | None
    exit_code: int | None
    anomalies: dict[str, int] = field(default_factory=dict)
    reason: str = ""


def _attempts(events: list[dict[str, Any]]) -> tuple[list[Attempt], list[dict[str, Any]]]:
    """The ended attempts, and the started ones that never ended, from journal events in order."""
    ended: list[Attempt] = []
    open_starts: dict[tuple[str, int], dict[str, Any]] = {}
    for e in events:
        if e.get("event") == "start":
            open_starts[(e["job"], e["attempt"])] = e
        elif e.get("event") == "end":
            open_starts.pop((e["job"], e["attempt"]), None)
            ended.append(Attempt(job=e["job"], cell=e["cell"], seed=e["seed"], attempt=e["attempt"],
                                 verdict=e["verdict"], duration_s=e.get("duration_s", 0.0), run_dir=e.get("run_dir"),
                                 exit_code=e.get("exit_code"), anomalies=e.get("anomalies", {}),
                                 reason=e.get("reason", "")))
    return ended, list(open_starts.values())


def _verdict_of(code: int | None) -> str:
    return {0: "valid", 1: "invalid", 2: "unknown"}.get(code, "unknown")


def _read_run(run_dir: str | None) -> tuple[dict[str, int], str]:
    """anomaly name -> count, and the reason of an unknown verdict, from a run's results.json."""
    if not run_dir:
        return {}, "the run left no run directory"
    try:
        results = json.loads((Path(run_dir) / "results.json").read_text())
    except (OSError, ValueError):
        return {}, "the run wrote no results.json"
    counts: dict[str, int] = {}
    for name, result in results.items():
        if isinstance(result, dict):
            stats = result.get("stats") if isinstance(result.get("stats"), dict) else {}
            for anomaly, count in (stats.get("anomaly_counts") or {}).items():
                counts[anomaly] = counts.get(anomaly, 0) + int(count)
            if result.get("valid") is False and not stats.get("anomaly_counts"):
                counts[result.get("model") and "nonlinearizable" or f"{name}-invalid"] = 1
    reason = str(results.get("message") or results.get("reason") or "") if results.get("valid") not in (True, False) else ""
    return counts, reason.strip().splitlines()[-1] if reason.strip() else ""


class _Child:
    def __init__(self, job: Job, attempt: int, spec_path: Path, journal: Journal, log_path: Path):
        self.job, self.attempt = job, attempt
        self.started = time.monotonic()
        self.log = open(log_path, "w", encoding="utf-8")  # noqa: SIM115 (closed in finish)
        # a session of its own: a Ctrl-C at the terminal reaches the campaign only, which passes one SIGINT on
        # (two would cut the run's own clean-up short); a campaign killed outright leaves the run to --resume
        self.proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "test", "--spec", str(spec_path), "--quiet"],
                                     stdout=subprocess.PIPE, stderr=self.log, text=True, start_new_session=True)
        journal.append({"event": "start", "job": job.key, "cell": job.cell.id, "seed": job.seed, "attempt": attempt,
                        "pid": self.proc.pid, "at": _now()})

    def finish(self, journal: Journal, interrupted: bool) -> Attempt:
        out = self.proc.communicate()[0] or ""
        self.log.close()
        run_dir = next((line[len("store: "):].strip() for line in out.splitlines() if line.startswith("store: ")), None)
        code = self.proc.returncode
        verdict = "interrupted" if interrupted else _verdict_of(code)
        anomalies, reason = _read_run(run_dir)
        if verdict == "interrupted":
            reason = "the campaign was interrupted during this run"
        elif code not in (0, 1, 2):
            reason = f"logquake test exited {code}; see {self.log.name}"
        attempt = Attempt(job=self.job.key, cell=self.job.cell.id, seed=self.job.seed, attempt=self.attempt,
                          verdict=verdict, duration_s=round(time.monotonic() - self.started, 3), run_dir=run_dir,
                          exit_code=code, anomalies=anomalies, reason=reason)
        journal.append({"event": "end", **dataclasses.asdict(attempt), "at": _now()})
        return attempt


def campaign_dirs(store: str | os.PathLike[str], name: str) -> list[Path]:
    """Every campaign directory of `name` in the store, oldest first."""
    root = Path(store) / "campaigns" / name
    return sorted(p for p in root.glob("*") if (p / "plan.json").is_file()) if root.is_dir() else []


def unfinished(store: str | os.PathLike[str], name: str) -> Path | None:
    """The newest campaign of `name` whose plan has jobs without a final verdict, if any."""
    for directory in reversed(campaign_dirs(store, name)):
        plan = json.loads((directory / "plan.json").read_text())
        ended, _ = _attempts(Journal(directory / "journal.jsonl").events())
        done = {a.job for a in ended if a.verdict in VERDICTS}
        if not (directory / "finished").exists() and any(j["job"] not in done for j in plan["jobs"]):
            return directory
        return None
    return None


def run_campaign(campaign: Campaign, store: str, directory: Path | None = None, parallel: int = 1,
                 rerun_unknown: int = 0, out: Callable[[str], None] = print) -> tuple[int, Path]:
    """Run (or resume, when `directory` holds a plan) a campaign; return the exit status and its directory."""
    from harness.backends.local import reap_stale_runs

    if directory is None:
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        directory = Path(store) / "campaigns" / campaign.name / stamp
        directory.mkdir(parents=True, exist_ok=False)
        rng = random.Random()
        seeds = {c.id: list(campaign.seeds) if campaign.seeds else [rng.randrange(1 << 31) for _ in range(campaign.repeat)]
                 for c in campaign.cells}
        jobs = campaign.jobs(seeds)
        source = str(campaign.path.resolve()) if campaign.text else str(campaign.path)  # a file, or who built it
        plan = {"name": campaign.name, "campaign_file": source, "started_at": _now(),
                **project_version(), "budget_s": campaign.budget_s, "rerun_unknown": rerun_unknown,
                "cells": [{"id": c.id, "params": c.params, "spec": c.spec.to_json()} for c in campaign.cells],
                "jobs": [{"job": j.key, "cell": j.cell.id, "seed": j.seed} for j in jobs]}
        if campaign.text:
            (directory / "campaign.toml").write_text(campaign.text, encoding="utf-8")
        (directory / "plan.json").write_text(json.dumps(plan, indent=1) + "\n", encoding="utf-8")
        out(f"campaign {campaign.name}: {len(campaign.cells)} cell(s), {len(jobs)} run(s); in {directory}")
    else:
        plan = json.loads((directory / "plan.json").read_text())
        out(f"campaign {plan['name']}: resuming {directory}")
    journal = Journal(directory / "journal.jsonl")
    cells = {c["id"]: RunSpec.from_json(c["spec"]) for c in plan["cells"]}
    params = {c["id"]: c["params"] for c in plan["cells"]}
    jobs = [Job(Cell(j["cell"], params[j["cell"]], cells[j["cell"]]), j["seed"]) for j in plan["jobs"]]
    ended, dangling = _attempts(journal.events())
    for start in dangling:  # the harness stopped during these runs: stop their children, clean up, run again
        _stop_leftover(start.get("pid"))
        # the journal does not know when the harness died: the run's time limit stands for its time
        estimate = cells[start["cell"]].time_limit_s
        journal.append({"event": "end", "job": start["job"], "cell": start["cell"], "seed": start["seed"],
                        "attempt": start["attempt"], "verdict": "interrupted", "duration_s": estimate, "run_dir": None,
                        "exit_code": None, "anomalies": {}, "reason": "the harness stopped during this run",
                        "at": _now()})
    if dangling:
        reap_stale_runs()
    ended, _ = _attempts(journal.events())
    spec_dir = directory / "specs"
    spec_dir.mkdir(exist_ok=True)
    budget_s = plan.get("budget_s")
    spent = sum(a.duration_s for a in ended)
    parallel = max(1, min(parallel, os.cpu_count() or 1)) if all(j.cell.spec.backend == "local" for j in jobs) else 1

    def attempts_of(key: str) -> list[Attempt]:
        return [a for a in ended if a.job == key]

    def needs_run(job: Job) -> bool:
        return needs_another_run(attempts_of(job.key), rerun_unknown)

    write_outputs(directory)
    running: list[_Child] = []
    interrupted = False
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        while True:
            todo = [j for j in jobs if needs_run(j) and j.key not in {c.job.key for c in running}]
            while todo and len(running) < parallel:
                job = todo.pop(0)
                expected = job.cell.spec.time_limit_s + 30
                if budget_s is not None and spent + expected > budget_s:
                    todo = []
                    break
                attempt = len(attempts_of(job.key)) + 1 + sum(1 for c in running if c.job.key == job.key)
                spec_path = spec_dir / f"{_safe(job.key)}-{attempt}.json"
                spec_path.write_text(json.dumps(dataclasses.replace(job.cell.spec, seed=job.seed).to_json()) + "\n")
                running.append(_Child(job, attempt, spec_path, journal, spec_dir / f"{_safe(job.key)}-{attempt}.log"))
                _progress(out, jobs, ended, running, budget_s, spent, f"started {job.cell.id} seed {job.seed}")
            if not running:
                break
            child = _wait_any(running)
            running.remove(child)
            attempt = child.finish(journal, interrupted=False)
            ended.append(attempt)
            spent += attempt.duration_s
            write_outputs(directory)
            _progress(out, jobs, ended, running, budget_s, spent,
                      f"{attempt.cell} seed {attempt.seed}: {attempt.verdict.upper()} in {attempt.duration_s:.0f} s")
    except KeyboardInterrupt:
        interrupted = True
        for child in running:  # each run stops as after its own Ctrl-C: healed, torn down, its history kept
            if child.proc.poll() is None:
                child.proc.send_signal(signal.SIGINT)
        for child in running:
            try:
                child.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                child.proc.kill()
            ended.append(child.finish(journal, interrupted=True))
    finally:
        signal.signal(signal.SIGTERM, previous)
    if not interrupted:
        (directory / "finished").write_text(_now() + "\n")
    summary = write_outputs(directory)
    if interrupted:
        out(f"campaign interrupted; resume it with: logquake campaign run --resume {directory}")
        return EXIT_INTERRUPTED, directory
    totals = summary["totals"]
    out(f"campaign {plan['name']}: {totals['valid']} valid, {totals['invalid']} invalid, {totals['unknown']} unknown"
        + (f", {totals['not_run']} not run (budget)" if totals["not_run"] else "")
        + f"; {directory / 'index.html'}")
    if totals["invalid"]:
        return EXIT_INVALID, directory
    return (EXIT_UNKNOWN if totals["unknown"] or totals["not_run"] else EXIT_VALID), directory


def needs_another_run(attempts: list[Attempt], rerun_unknown: int) -> bool:
    """Whether a job runs (again): it has no verdict yet (never run, or only interrupted), or its last verdict is
    unknown and it has had at most `rerun_unknown` reruns for that."""
    final = [a for a in attempts if a.verdict in VERDICTS]
    if not final:
        return True
    unknowns = [a for a in final if a.verdict == "unknown"]
    return final[-1].verdict == "unknown" and len(unknowns) <= rerun_unknown


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text)[:120]


def _wait_any(running: list[_Child]) -> _Child:
    while True:
        for child in running:
            if child.proc.poll() is not None:
                return child
        time.sleep(0.2)


def _stop_leftover(pid: Any) -> None:
    """Stop a `logquake test` child left running by a campaign that died (it cleans up after itself on SIGTERM)."""
    if not isinstance(pid, int):
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return  # gone already
    if b"harness.cli" not in cmdline:
        return  # the pid was reused by something else
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.2)
    if Path(f"/proc/{pid}").exists():
        os.kill(pid, signal.SIGKILL)


def _progress(out, jobs, ended, running, budget_s, spent, what: str) -> None:
    done = {a.job for a in ended if a.verdict in VERDICTS}
    counts = {v: 0 for v in VERDICTS}
    last: dict[str, str] = {}
    for a in ended:
        if a.verdict in VERDICTS:
            last[a.job] = a.verdict
    for v in last.values():
        counts[v] += 1
    left = len(jobs) - len(done)
    mean = (sum(a.duration_s for a in ended) / len(ended)) if ended else None
    eta = f", ETA {_duration(mean * left / max(1, len(running) or 1))}" if mean and left else ""
    budget = f", budget left {_duration(max(0.0, budget_s - spent))}" if budget_s is not None else ""
    out(f"[{len(done)}/{len(jobs)} done, {len(running)} running] {what} | {counts['valid']} valid, "
        f"{counts['invalid']} invalid, {counts['unknown']} unknown{eta}{budget}")


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


# ----- outputs -------------------------------------------------------------------------------------------


def summarize(directory: Path) -> dict[str, Any]:
    """summary.json of a campaign directory: every job with its attempts and final verdict, and totals."""
    plan = json.loads((directory / "plan.json").read_text())
    ended, dangling = _attempts(Journal(directory / "journal.jsonl").events())
    cell_params = {c["id"]: c["params"] for c in plan["cells"]}
    rows = []
    totals = {"valid": 0, "invalid": 0, "unknown": 0, "not_run": 0}
    for job in plan["jobs"]:
        attempts = [a for a in ended if a.job == job["job"]]
        final = [a for a in attempts if a.verdict in VERDICTS]
        running = any(d["job"] == job["job"] for d in dangling)
        verdict = final[-1].verdict if final else ("running" if running else "not run")
        last = final[-1] if final else None
        if verdict in VERDICTS:
            totals[verdict] += 1
        else:
            totals["not_run"] += 1
        rows.append({
            "job": job["job"], "cell": job["cell"], "params": cell_params[job["cell"]], "seed": job["seed"],
            "verdict": verdict, "anomalies": last.anomalies if last else {},
            "anomaly_types": sorted(last.anomalies) if last else [],
            "duration_s": last.duration_s if last else None, "run_dir": last.run_dir if last else None,
            "report": str(Path(last.run_dir) / "report.html") if last and last.run_dir else None,
            "reason": last.reason if last else "",
            "attempts": [dataclasses.asdict(a) for a in attempts],
        })
    return {"name": plan["name"], "started_at": plan["started_at"], "campaign_file": plan["campaign_file"],
            "version": plan.get("version"), "commit": plan.get("commit"), "directory": str(directory),
            "finished": (directory / "finished").exists(), "totals": totals, "jobs": rows}


def write_outputs(directory: Path) -> dict[str, Any]:
    """Rewrite summary.json, junit.xml and index.html from the journal (atomically each)."""
    from reports.campaign import campaign_index_html, junit_xml

    summary = summarize(directory)
    for name, text in (("summary.json", json.dumps(summary, indent=1) + "\n"), ("junit.xml", junit_xml(summary)),
                       ("index.html", campaign_index_html(summary))):
        tmp = directory / (name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, directory / name)
    return summary


# ----- trends across nights ------------------------------------------------------------------------------


def analyze_trends(summaries: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """Verdicts of each cell night by night, and which cells regressed or are flaky.

    A cell is *flaky* when some commit saw it both valid and invalid (two seeds, two nights, or a rerun);
    it *regressed* when it was valid on every run of the nights before some night and invalid on that
    night, whose commit it never passed on: the page names that night and the commits on both sides.
    Unknown verdicts count for neither (they say nothing about the broker).
    """
    nights = sorted(summaries, key=lambda s: s["started_at"])
    marks: dict[str, list[dict[str, Any]]] = {}
    for n, night in enumerate(nights):
        for job in night["jobs"]:
            marks.setdefault(job["cell"], []).append({"night": n, "seed": job["seed"], "verdict": job["verdict"],
                                                      "commit": night.get("commit"), "report": job.get("report"),
                                                      "params": job["params"]})
    cells = []
    for cell_id, cell_marks in marks.items():
        by_commit: dict[Any, set[str]] = {}
        for m in cell_marks:
            by_commit.setdefault(m["commit"], set()).add(m["verdict"])
        flaky = [c for c, vs in by_commit.items() if {"valid", "invalid"} <= vs]
        turned = None
        first_invalid = next((m for m in cell_marks if m["verdict"] == "invalid"), None)
        if first_invalid is not None:
            before = [m for m in cell_marks if m["night"] < first_invalid["night"]]
            decided_before = [m for m in before if m["verdict"] in ("valid", "invalid")]
            if decided_before and all(m["verdict"] == "valid" for m in decided_before) \
                    and first_invalid["commit"] not in {m["commit"] for m in decided_before} \
                    and first_invalid["commit"] not in flaky:
                turned = {"night": first_invalid["night"], "started_at": nights[first_invalid["night"]]["started_at"],
                          "last_valid_commit": decided_before[-1]["commit"],
                          "first_invalid_commit": first_invalid["commit"]}
        decided = {m["verdict"] for m in cell_marks if m["verdict"] in ("valid", "invalid")}
        status = ("regressed" if turned else "flaky" if flaky else "invalid" if decided == {"invalid"}
                  else "valid" if decided == {"valid"} else "mixed" if decided else "unknown")
        cells.append({"id": cell_id, "marks": cell_marks, "status": status, "turned": turned, "flaky_commits": flaky})

    def rates(axis_of: Callable[[dict[str, Any]], str]) -> dict[str, list[tuple[int, float]]]:
        series: dict[str, list[tuple[int, float]]] = {}
        for n, night in enumerate(nights):
            groups: dict[str, list[str]] = {}
            for job in night["jobs"]:
                if job["verdict"] in ("valid", "invalid"):
                    groups.setdefault(axis_of(job), []).append(job["verdict"])
            for key, verdicts in groups.items():
                series.setdefault(key, []).append((n, verdicts.count("invalid") / len(verdicts)))
        return series

    return {"name": name, "nights": [{"started_at": s["started_at"], "commit": s.get("commit"),
                                      "directory": s.get("directory")} for s in nights],
            "cells": sorted(cells, key=lambda c: ({"regressed": 0, "flaky": 1}.get(c["status"], 2), c["id"])),
            "rate_by_fault": rates(lambda j: str(j["params"].get("nemesis", j.get("nemesis", "default")))),
            "rate_by_delivery": rates(lambda j: str(j["params"].get("delivery", "default")))}


def load_summaries(store: str | os.PathLike[str], name: str) -> list[dict[str, Any]]:
    """Every campaign summary of `name` in the store (each rebuilt from its journal), oldest first."""
    return [summarize(d) for d in campaign_dirs(store, name)]
