"""`logquake sim`: the real broker code under deterministic simulation, one or many seeds, checked as `logquake test` checks.

    logquake sim [--seed S] [--seeds N] [--nodes 3] [--duration 30s] [--faults crash,partition[,clients][,power][,link][,leader]]
                 [--workload queue|pipeline|offsets] [--delivery at-least-once|exactly-once] [--idempotent]
                 [--schedule FILE] [--broker-override KEY=VALUE ...] [--store store]

Each seed runs in a child interpreter, `python -m broker.sim` (the harness
never imports the broker: pyproject.toml's import contracts): a cluster of
the real broker nodes on a simulated network, disk and clock, the queue
workload (acks=all producers, assign-style consumers, final reads after
healing) and a fault schedule drawn from the seed (broker/sim/workload.py says
what is and is not simulated). The child writes the history; this command
judges it with the queue checker under the run's delivery, exactly as
`logquake check` judges a stored run: at-least-once (acks=all producers
without idempotence; `--idempotent`: at-least-once-idempotent) or, with
`--delivery exactly-once` (transactional producers that abort a tenth of
their transactions on purpose, read_committed consumers:
broker/sim/transactions.py), exactly-once, where a value of an aborted
transaction that a consumer read is G1a; `--idempotent` goes with
at-least-once only (254 otherwise). `delivery(args)` is the one place that
names the mode (test.json, the checker, the replay command).
`--workload pipeline` runs the read-process-write pipeline instead
(broker/sim/pipeline.py: an idempotent feeder, transactional processors in a
consumer group, processor crashes, pauses, aborts and leaves) and judges its
history with the pipeline checker (checkers.pipeline); it is exactly-once by
nature, so --delivery and --idempotent are refused with it (254).
`--workload offsets` runs the twin of `logquake test --workload offsets`
(broker/sim/offsets.py: committers that commit offsets 1, 2, ... for one
short-lived consumer group after another with plain OffsetCommits, no group
membership, and a final OffsetFetch of every group after healing) and judges
it with the offsets checker (checkers.offsets: an acknowledged commit lost is
`lost-commit`); it produces nothing, so --delivery and --idempotent are refused
with it too (254). `checker(args)` is the one place that says which checker
judges a workload, and under which key of results.json. The child also
checked the replication invariants after every step of the simulation
(broker/sim/invariants.py), and a seed that broke one is
INVALID whatever its history shows (results.json's `invariants`: the names
checked, the number of steps, the violations with seed and virtual time).
Each seed is stored as a run:

    STORE/sim/<timestamp>/  test.json (seed, options, the replay command) · history.jsonl ·
                            results.json · sim.log (the child's stderr) · verdict.txt (one line)

It prints one line per seed (a failing one names its anomalies and the exact
command that replays it) and, with several seeds, a summary with the ratio of
virtual to wall time. `--jobs N` simulates N seeds at once (each in its own
child interpreter, so N cores' worth); the lines still come in seed order and
every seed's history is the same as alone. Seeds run S, S+1, ..., S+N-1; without --seed, S is drawn
at random and printed, so every run can be replayed.

Exit codes (as `logquake test`): 0 every seed valid, 1 some seed invalid, 2
some verdict unknown and none invalid (a simulation that broke: its traceback
is in sim.log), 254 bad arguments, 130 interrupted.

Thread-safety: a command-line entry point. With `--jobs N`, N threads each run one seed at a time (a child
interpreter, then the checker on its history); making a seed's run directory is serialised by a lock.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import importlib
import json
import os
import random
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from harness.cli_args import ArgumentParser, key_value, positive_int
from harness.store import Store, write_json

EXIT_VALID, EXIT_INVALID, EXIT_UNKNOWN = 0, 1, 2
# what broker.sim.workload simulates (it refuses any other name too); a --schedule file may hold all but `leader`
KINDS = ("crash", "partition", "clients", "power", "link", "leader")
FAULTS = ("crash", "partition")  # its default: one node at a time
DELIVERIES = ("at-least-once", "exactly-once")  # what broker.sim.workload simulates of workloads/queue.py's modes
# broker.sim.workload's queue, broker.sim.pipeline's read-process-write, broker.sim.offsets's offset commits; each
# judged by the checker of its name (`checker`), whose result results.json keeps under that name
WORKLOADS = ("queue", "pipeline", "offsets")
# the workloads that run their own clients, and why the producer flags (--delivery, --idempotent) do not go with them
OWN_CLIENTS = {"pipeline": "is exactly-once by nature (an idempotent feeder, transactional processors)",
               "offsets": "commits consumer-group offsets and produces nothing"}
ACKS = "all"
ROOT = Path(__file__).resolve().parents[1]


def duration(text: str) -> float:
    from harness.campaign import CampaignError, parse_budget

    try:
        return parse_budget(text if not text.replace(".", "", 1).isdigit() else float(text), "--duration")
    except CampaignError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration; write e.g. 30s, 2m or 45") from None


def fault_list(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in KINDS]
    if unknown:
        raise argparse.ArgumentTypeError(f"{text!r}: {', '.join(unknown)} not simulated; choose from "
                                         f"{', '.join(KINDS)} (comma-separated), or 'none'")
    return names


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="logquake sim", description=__doc__.split("\n\n")[0],
                       epilog="exit codes: 0 every seed valid, 1 some invalid, 2 some unknown, 254 bad arguments")
    p.add_argument("--seed", type=int, default=None, help="the first seed (default: drawn at random and printed)")
    p.add_argument("--seeds", type=positive_int, default=1, help="how many seeds, from --seed on (default %(default)s)")
    p.add_argument("--nodes", type=positive_int, default=3, help="combined controller+broker nodes (default %(default)s)")
    p.add_argument("--duration", type=duration, default=30.0, metavar="DURATION",
                   help="virtual time of workload and faults per seed: 30s, 2m, 45 (default 30s)")
    p.add_argument("--faults", type=lambda t: () if t == "none" else fault_list(t), default=FAULTS,
                   help=f"comma-separated, of {', '.join(KINDS)}, or none (default: {','.join(FAULTS)}); power "
                        "crashes every node at once: add --broker-override log.flush.interval.messages=1, or "
                        "acknowledged writes not yet fsynced are lost on every replica, as Kafka's default allows")
    p.add_argument("--broker-override", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                   help="a broker property for every node, e.g. logquake.debug.ack.before.replication=true (repeatable)")
    p.add_argument("--workload", choices=WORKLOADS, default="queue",
                   help="queue (default): producers and consumers, checked by the queue checker; pipeline: "
                        "read-process-write exactly once (an idempotent feeder, transactional processors in a consumer "
                        "group with crashes, pauses, aborts and leaves), checked by the pipeline checker; offsets: "
                        "plain offset commits for one short-lived consumer group after another, checked by the "
                        "offsets checker (an acknowledged commit must survive)")
    p.add_argument("--delivery", choices=DELIVERIES, default="at-least-once",
                   help="at-least-once: acks=all producers, read_uncommitted consumers (default); exactly-once: "
                        "transactional producers (a tenth of the transactions aborted on purpose) and read_committed "
                        "consumers, checked as exactly-once (an aborted value read is G1a)")
    p.add_argument("--idempotent", action="store_true",
                   help="idempotent producers: a send is retried with its batch until acknowledged, and the history "
                        "is checked as at-least-once-idempotent (a duplicate is an anomaly)")
    p.add_argument("--schedule", type=schedule_file, default=None, metavar="FILE",
                   help="run these faults instead of drawing them from the seed: a JSON list of {at_s, kind, node, "
                        "hold_s[, peer]}, or a run's schedule.json (which replays that run byte for byte)")
    p.add_argument("--jobs", type=positive_int, default=1,
                   help="seeds simulated at once, each in its own child interpreter (default %(default)s; a seed keeps "
                        "one core busy, so more jobs than cores gains nothing); lines still come in seed order")
    p.add_argument("--store", default="store", help="store directory (default %(default)s)")
    return p


def read_schedule(path: Path, nodes: int) -> dict:
    """A sim schedule file checked against a cluster of `nodes`, as {"faults": [...], "end_s": S or None}; ValueError
    says what is wrong with it (naming the file and, for a bad fault, its number and text).

    The format is what every sim run writes as schedule.json (broker/sim/schedule.py describes it). Its rules live
    there alone, and the harness may not import the broker, so the check runs in a child interpreter, as the
    simulation itself does: `python -m broker.sim.schedule`. What comes back is the schedule as the simulation will
    apply it (each fault with all its fields, a link's `peer` resolved), so no reader here needs the rule that peer 0
    means the next node."""
    child = subprocess.run([sys.executable, "-m", "broker.sim.schedule", str(Path(path).resolve()),
                            "--nodes", str(nodes)], capture_output=True, env=_child_env(), cwd=ROOT)
    answer = _last_json_line(child.stdout)
    if isinstance(answer, dict) and child.returncode == 1 and "error" in answer:
        raise ValueError(answer["error"])
    if not isinstance(answer, dict) or child.returncode != 0 or "faults" not in answer:
        raise RuntimeError(f"python -m broker.sim.schedule broke (exit {child.returncode}): "
                           f"{child.stderr.decode('utf-8', 'replace')[-2000:]}")
    return answer


def schedule_file(text: str) -> Path:
    """--schedule's path, made absolute (the child interpreters run elsewhere); main checks what the file holds once
    --nodes is known."""
    return Path(text).resolve()


def _child_env() -> dict[str, str]:
    """The environment of a child interpreter that runs the broker: this checkout first on its path, so that the
    child runs the broker code of this harness whether or not it is installed."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}


def workload(args) -> str:
    """The simulated workload: one of WORKLOADS."""
    return args.workload


def checker(args) -> tuple[str, Callable]:
    """The checker that judges the workload's histories: (its name, which is also its key in results.json, a
    function of the history), as `logquake check` runs it on a stored run."""
    from checkers.core import MAX_WITNESSES

    name = workload(args)
    if name == "queue":
        from checkers.queue import check as check_queue

        mode = delivery(args)
        return name, lambda h: check_queue(h, delivery=mode, acks=ACKS, max_witnesses=MAX_WITNESSES)
    module = importlib.import_module(f"checkers.{name}")
    return name, lambda h: module.check(h, max_witnesses=MAX_WITNESSES)


def delivery(args) -> str:
    """The delivery mode the seeds' histories are checked under (one place: test.json, the checker, the replay). An
    offsets run records at-least-once, the only delivery of workloads/offsets.py; its checker takes no mode."""
    if workload(args) == "pipeline":
        return "exactly-once"
    return f"{args.delivery}-idempotent" if args.idempotent else args.delivery


def replay_command(args, seed: int, schedule: Path | None = None) -> str:
    """The command that replays `seed` (with `schedule`: the faults of that file, this run's stored copy)."""
    words = ["logquake", "sim", "--seed", str(seed), "--nodes", str(args.nodes), "--duration", f"{args.duration:g}s",
             "--faults", ",".join(args.faults) or "none"] + (["--idempotent"] if args.idempotent else [])
    if workload(args) != "queue":
        words += ["--workload", workload(args)]
    if schedule is not None:
        words += ["--schedule", str(schedule)]
    if args.delivery != "at-least-once":
        words += ["--delivery", args.delivery]
    for key, value in args.broker_override:
        words += ["--broker-override", f"{key}={value}"]
    return shlex.join(words)


def run_seed(args, seed: int, store: Store, store_lock: threading.Lock | None = None) -> dict:
    """Simulate `seed` in a child interpreter, check its history, store the run; the seed's result map.
    `store_lock`: held while the run's directory is made (the store's `latest` links), when seeds run at once."""
    with store_lock or contextlib.nullcontext():
        run_dir = store.new_run("sim").resolve()  # absolute: the child runs in the repository, not here
    history = run_dir / "history.jsonl"
    given = run_dir / "schedule.given.json" if args.schedule is not None else None
    if given is not None:  # this run's own copy: the replay command must not depend on a file that may change
        given.write_bytes(args.schedule.read_bytes())
    replay = replay_command(args, seed, given)
    write_json(run_dir / "test.json", {
        "name": "sim", "seed": seed, "replay": replay,
        "options": {"workload": workload(args), "delivery": args.delivery, "idempotent": args.idempotent,
                    "nodes": args.nodes,
                    "duration_s": args.duration, "faults": list(args.faults),
                    "broker_overrides": dict(args.broker_override),
                    "schedule": str(given) if given is not None else None},
        "workload": {"name": workload(args), "delivery": delivery(args), "acks": ACKS, "simulated": True}})
    command = [sys.executable, "-m", "broker.sim", "--seed", str(seed), "--nodes", str(args.nodes),
               "--duration-s", repr(args.duration), "--faults", ",".join(args.faults), "--history", str(history)]
    if args.idempotent:
        command.append("--idempotent")
    if workload(args) != "queue":
        command += ["--workload", workload(args)]
    elif args.delivery != "at-least-once":
        command += ["--delivery", args.delivery]
    for key, value in args.broker_override:
        command += ["--override", f"{key}={value}"]
    if given is not None:
        command += ["--schedule", str(given)]
    started = time.perf_counter()
    with open(run_dir / "sim.log", "wb") as log:
        child = subprocess.run(command, stdout=subprocess.PIPE, stderr=log, env=_child_env(), cwd=ROOT)
    wall_s = time.perf_counter() - started
    result: dict = {"seed": seed, "run_dir": str(run_dir), "replay": replay, "wall_s": wall_s}
    summary = _last_json_line(child.stdout)
    if child.returncode != 0 or summary is None or not history.is_file():
        result.update(valid="unknown", message=f"the simulation broke (exit {child.returncode}); see "
                                               f"{run_dir / 'sim.log'}")
    else:
        # the faults as applied, in the --schedule format: `logquake sim --schedule` of this file replays the seed
        write_json(run_dir / "schedule.json", {"faults": summary.pop("schedule", []),
                                               "end_s": summary.pop("schedule_end_s", None)})
        result["simulation"] = summary
        result.update(_judge(history, *checker(args)))
        result.update(_invariants(summary))
    write_json(run_dir / "results.json", result)
    (run_dir / "verdict.txt").write_text(verdict_line(result) + "\n", encoding="utf-8")
    return result


def _last_json_line(stdout: bytes) -> dict | None:
    for line in reversed(stdout.decode("utf-8", "replace").splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    return None


def _judge(history_path: Path, name: str, check: Callable) -> dict:
    """The verdict of checker `name` (`check`, a function of the history) on the stored history, as `logquake check`
    gives it for a stored run: {"valid", name: its result[, "message"]}, the checker's message surfaced when it
    reached no valid verdict."""
    from checkers.core import run_checkers, to_jsonable
    from checkers.history import History, HistoryError

    try:
        history = History.load(str(history_path), "jsonl")
    except HistoryError as error:
        return {"valid": "unknown", "message": f"cannot read the history: {error}"}
    merged = run_checkers(history, {name: check})
    checked = to_jsonable(merged[name])
    out = {"valid": merged["valid"], name: checked}
    if checked.get("message") and merged["valid"] is not True:
        out["message"] = checked["message"]
    return out


def _invariants(summary: dict) -> dict:
    """The per-step invariants the child checked (broker/sim/invariants.py): `invariants` for results.json, and
    valid False when one broke (whatever the history shows)."""
    invariants = summary.get("invariants")
    if invariants is None:
        return {}
    out: dict = {"invariants": {"checked": invariants["checked"], "checks": invariants["checks"],
                                "violations": invariants["violations"],
                                "violation_counts": invariants["violation_counts"]}}
    if invariants["violation_counts"]:
        out["valid"] = False
    return out


def verdict_line(result: dict) -> str:
    verdict = {True: "valid", False: "INVALID", "unknown": "unknown"}[result["valid"]]
    line = f"seed {result['seed']}: {verdict}"
    simulation = result.get("simulation")
    if simulation:
        virtual_s = simulation["virtual_s"]
        line += (f" ({simulation['ops']} ops; virtual {virtual_s:.1f} s in wall {result['wall_s']:.1f} s, "
                 f"{virtual_s / result['wall_s']:.1f}x; history sha256 {simulation['history_sha256'][:12]}")
        invariants = result.get("invariants")
        if invariants:
            line += f"; {len(invariants['checked']) - len(invariants['violation_counts'])} of " \
                    f"{len(invariants['checked'])} invariants held over {invariants['checks']} steps"
        line += ")"
    checked = next((result[name] for name in WORKLOADS if name in result), {})
    anomalies = checked.get("anomaly_types") or []
    if anomalies:
        counts = (checked.get("stats") or {}).get("anomaly_counts") or {}
        line += "; anomalies: " + ", ".join(f"{name} x{counts[name]}" if name in counts else name for name in anomalies)
    broken = (result.get("invariants") or {}).get("violation_counts") or {}
    if broken:
        line += "; invariants broken: " + ", ".join(f"{name} x{count}" for name, count in broken.items())
    if result.get("message") and result["valid"] is not True:
        line += f"; {result['message']}"
    if result["valid"] is not True:
        line += f"; replay: {result['replay']}"
    return line


def main(argv: list[str]) -> int:
    from checkers.core import merge_valid

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.workload in OWN_CLIENTS and (args.idempotent or args.delivery != "at-least-once"):
        parser.error(f"--workload {args.workload} {OWN_CLIENTS[args.workload]}: --delivery and --idempotent do not go "
                     "with it")
    if args.idempotent and args.delivery != "at-least-once":
        parser.error(f"--idempotent goes with --delivery at-least-once, not {args.delivery} (exactly-once producers "
                     "are idempotent already)")
    if args.schedule is not None:
        try:
            read_schedule(args.schedule, args.nodes)
        except ValueError as exc:  # it names the file, and a bad fault's number and text
            parser.error(f"--schedule {exc}")
    first = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    if args.seed is None:
        print(f"seeds from {first} (drawn at random)", flush=True)
    if "power" in args.faults and dict(args.broker_override).get("log.flush.interval.messages") != "1":
        sys.stderr.write("logquake sim: note: a power fault loses what no replica fsynced; without --broker-override "
                         "log.flush.interval.messages=1 the broker acknowledges writes before fsyncing them (Kafka's "
                         "default), so lost writes are expected, not a bug\n")
    store = Store(args.store)
    results = []
    started = time.perf_counter()
    seeds = range(first, first + args.seeds)
    if args.jobs == 1:
        for seed in seeds:
            results.append(run_seed(args, seed, store))
            print(verdict_line(results[-1]), flush=True)
    else:
        lock = threading.Lock()
        with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs, thread_name_prefix="sim-seed") as pool:
            futures = [pool.submit(run_seed, args, seed, store, lock) for seed in seeds]
            try:
                for future in futures:  # in seed order, each as soon as it and those before it are done
                    results.append(future.result())
                    print(verdict_line(results[-1]), flush=True)
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)  # the seeds running now end with their children
                raise
    valid = merge_valid(*(r["valid"] for r in results))
    if len(results) > 1:
        counts = {name: sum(1 for r in results if r["valid"] is value)
                  for name, value in (("valid", True), ("INVALID", False), ("unknown", "unknown"))}
        virtual_s = sum(r["simulation"]["virtual_s"] for r in results if r.get("simulation"))
        wall_s = time.perf_counter() - started
        print(f"{len(results)} seeds ({first}..{first + len(results) - 1}): "
              + ", ".join(f"{n} {name}" for name, n in counts.items())
              + f"; virtual {virtual_s:.1f} s in wall {wall_s:.1f} s ({virtual_s / wall_s:.1f}x, child start-up "
              f"and checking included{f', {args.jobs} at once' if args.jobs > 1 else ''})", flush=True)
    return {True: EXIT_VALID, False: EXIT_INVALID, "unknown": EXIT_UNKNOWN}[valid]
