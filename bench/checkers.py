"""Checking time and peak memory of every checker, on generated and shared histories.

Each case runs in a fresh child process, so its peak RSS (ru_maxrss) is its own:

- queue: a generated Kafka queue history of N ops (default 1,000,000 history
  entries; 10 processes, 10 keys, sends and polls, final reads), checked under
  at-least-once. Target: under 30 s and 2 GiB.
- list-append: a generated Elle list-append history of 100,000 transactions at
  concurrency 20 (1-4 micro-ops each, 10 active keys, at most 32 appends per key,
  as Elle's generator does), strict-serializable. Target: under 60 s.
- linearizable kv: 50 concurrent clients, 2,000 operations over 10 keys (get,
  put, append), once valid and once with one stale read. Target: under 60 s each.
- shared: every history of tests/data/histories with its checker.
- process: `logquake check` as a user runs it, whole process included (interpreter start, imports,
  loading, checking, writing results), on each kv history of the shared data and on generated
  50-client kv histories as above, valid and invalid, of `--kv-seeds N` seeds (default 40: seeds 3 to
  42, 80 histories), then their median and worst: one seed's time says little, since how much a history
  costs the search varies a lot from seed to seed (seed 32's invalid one took 7 s until 2026-12-07, when
  the default was 10 seeds and did not reach it). Measured on 2026-12-07 at the default: median 0.25 s,
  worst 0.28 s of the 80, the shared kv histories 0.17-0.19 s, the interpreter alone 0.04-0.05 s. Target: each under 0.5 s. The baseline in
  the same run is the interpreter starting and exiting (`python -c pass`), so the ratio says what
  checking adds.
- pipeline: a generated read-process-write history of N input records (default 1,000,000; sends of 4
  records from 10 processes over 4 input partitions, transactions of 50 records re-keyed over 4 output
  partitions, the final output read and committed offsets). Target: under 60 s and 2 GiB. Baseline in
  the same child: building the History from its maps, so the ratio says what checking adds to loading.

The generated histories come from simulating a correct system (effects applied
atomically at a random point inside each operation), so the valid ones are
valid by construction.

    python bench/checkers.py [--only queue,list-append,linearizable,shared,process,pipeline] [--queue-ops 1000000]
        [--pipeline-records 1000000] [--kv-seeds 40]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = ROOT / "tests" / "data" / "histories"


# ----- generators ----------------------------------------------------------------------


def queue_history(n_ops: int, processes: int = 10, keys: int = 10, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    logs: list[list[int]] = [[] for _ in range(keys)]
    positions = [[0] * keys for _ in range(processes)]
    pending: dict[int, dict] = {}
    ops: list[dict] = []
    value = 0
    t = 0

    def emit(op):
        nonlocal t
        t += 1000
        op["index"] = len(ops)
        op["time"] = t
        ops.append(op)

    for p in range(processes):
        emit({"process": p, "type": "invoke", "f": "assign", "value": list(range(keys))})
        emit({"process": p, "type": "ok", "f": "assign", "value": list(range(keys))})
    while len(ops) < n_ops - 2:
        p = rng.randrange(processes)
        inv = pending.pop(p, None)
        if inv is None:
            if rng.random() < 0.5:
                value += 1
                inv = {"process": p, "type": "invoke", "f": "send", "value": [["send", rng.randrange(keys), value]]}
            else:
                inv = {"process": p, "type": "invoke", "f": "poll", "value": [["poll"]]}
            pending[p] = inv
            emit(dict(inv))
            continue
        if inv["f"] == "send":
            (_, k, v), = inv["value"]
            logs[k].append(v)
            emit({"process": p, "type": "ok", "f": "send", "value": [["send", k, [len(logs[k]) - 1, v]]]})
        else:
            polled = {}
            for k in rng.sample(range(keys), 3):
                start = positions[p][k]
                end = min(len(logs[k]), start + rng.randint(0, 5))
                if end > start:
                    polled[k] = [[o, logs[k][o]] for o in range(start, end)]
                    positions[p][k] = end
            emit({"process": p, "type": "ok", "f": "poll", "value": [["poll", polled]]})
    for p, inv in sorted(pending.items()):
        emit({"process": p, "type": "info", "f": inv["f"], "value": inv["value"]})
    final = processes + 1
    everything = {k: [[o, v] for o, v in enumerate(log)] for k, log in enumerate(logs) if log}
    emit({"process": final, "type": "invoke", "f": "poll", "value": [["poll"]]})
    emit({"process": final, "type": "ok", "f": "poll", "value": [["poll", everything]]})
    # sends of the pending ops that were never applied are info: fine, they were never acknowledged
    return ops


def list_append_history(n_txns: int, concurrency: int = 20, seed: int = 2) -> list[dict]:
    rng = random.Random(seed)
    state: dict[int, list[int]] = {}
    active = list(range(10))
    next_key = 10
    appends: dict[int, int] = {}
    pending: dict[int, list] = {}
    ops: list[dict] = []
    done = 0

    def emit(op):
        op["index"] = len(ops)
        op["time"] = len(ops) * 1000
        ops.append(op)

    while done < n_txns or pending:
        p = rng.randrange(concurrency)
        if p not in pending:
            if done + len(pending) >= n_txns:
                continue
            txn = []
            for _ in range(rng.randint(1, 4)):
                k = rng.choice(active)
                if rng.random() < 0.5:
                    appends[k] = appends.get(k, 0) + 1
                    txn.append(["append", k, appends[k]])
                    if appends[k] >= 32:
                        active[active.index(k)] = next_key
                        next_key += 1
                else:
                    txn.append(["r", k, None])
            pending[p] = txn
            emit({"process": p, "type": "invoke", "f": "txn", "value": [list(m) for m in txn]})
            continue
        txn = pending.pop(p)
        result = []
        for f, k, v in txn:
            if f == "append":
                state.setdefault(k, []).append(v)
                result.append([f, k, v])
            else:
                result.append([f, k, list(state.get(k, []))])
        emit({"process": p, "type": "ok", "f": "txn", "value": result})
        done += 1
    return ops


def kv_history(clients: int = 50, n_ops: int = 2000, keys: int = 10, seed: int = 3, corrupt: bool = False) -> list[dict]:
    rng = random.Random(seed)
    per_client = n_ops // clients
    events = []  # (time, kind, client, op_number)
    plans = []
    for c in range(clients):
        t = rng.uniform(0, 10)
        for i in range(per_client):
            start = t
            end = start + rng.uniform(0.5, 20)
            effect = rng.uniform(start, end)
            f = rng.choice(("get", "put", "append"))
            key = str(rng.randrange(keys))
            value = f"x{c}.{i}" if f != "get" else None
            plans.append({"client": c, "f": f, "key": key, "value": value, "start": start, "end": end, "effect": effect})
            t = end + rng.uniform(0.01, 2)
    state: dict[str, str] = {}
    for plan in sorted(plans, key=lambda p: p["effect"]):
        if plan["f"] == "put":
            state[plan["key"]] = plan["value"]
        elif plan["f"] == "append":
            state[plan["key"]] = state.get(plan["key"], "") + plan["value"]
        else:
            plan["result"] = state.get(plan["key"], "")
    if corrupt:
        gets = [p for p in plans if p["f"] == "get" and p["result"]]
        victim = gets[len(gets) // 2]
        victim["result"] = victim["result"] + "-never-written"
    for plan in plans:
        events.append((plan["start"], 0, plan))
        events.append((plan["end"], 1, plan))
    ops = []
    for when, kind, plan in sorted(events, key=lambda e: (e[0], e[1])):
        if kind == 0:
            ops.append({"process": plan["client"], "type": "invoke", "f": plan["f"], "key": plan["key"], "value": plan["value"]})
        else:
            value = plan.get("result") if plan["f"] == "get" else plan["value"]
            ops.append({"process": plan["client"], "type": "ok", "f": plan["f"], "key": plan["key"], "value": value})
    for i, op in enumerate(ops):
        op["index"] = i
        op["time"] = i * 1000
    return ops


def pipeline_history(n_records: int, partitions: int = 4, outputs: int = 4, batch: int = 50, per_send: int = 4,
                     processes: int = 10, seed: int = 4) -> list[dict]:
    """A pipeline history that a correct broker and processors would produce: every input copied once."""
    rng = random.Random(seed)
    ops: list[dict] = []

    def pair(process, f, inv_value, done_value):
        for type_, value in (("invoke", inv_value), ("ok", done_value)):
            ops.append({"index": len(ops), "time": len(ops) * 1000, "process": process, "type": type_, "f": f,
                        "value": value})

    logs: list[list[int]] = [[] for _ in range(partitions)]
    for first in range(1, n_records + 1, per_send):
        p = rng.randrange(partitions)
        values = list(range(first, min(first + per_send, n_records + 1)))
        start = len(logs[p])
        logs[p].extend(values)
        pair(rng.randrange(processes), "send", [["send", p, v] for v in values],
             [["send", p, [start + i, v]] for i, v in enumerate(values)])
    output: dict[int, list] = {o: [] for o in range(outputs)}
    for p, log in enumerate(logs):
        for start in range(0, len(log), batch):
            rows = [[start + i, v] for i, v in enumerate(log[start:start + batch])]
            produced = [[v % outputs, v] for _, v in rows]
            for o, v in produced:
                output[o].append([len(output[o]), v])
            pair(rng.randrange(processes), "process", None,
                 {"consumed": {p: rows}, "produced": produced, "offsets": {p: start + len(rows)}})
    pair(processes, "read-output", None, output)
    pair(processes, "committed-offsets", None, {p: len(log) for p, log in enumerate(logs)})
    return ops


# ----- cases (each runs in a child process) ------------------------------------------------


def case_pipeline(n_records: int) -> dict:
    from checkers.history import History
    from checkers.pipeline import check

    rows = pipeline_history(n_records)
    t0 = time.perf_counter()
    history = History.from_dicts(rows)
    t1 = time.perf_counter()
    del rows  # a check loads its history from a file; the generator's maps are not part of it
    result = check(history)
    t2 = time.perf_counter()
    return {"ops": len(history), "valid": result["valid"], "output_records": result["stats"]["output_records"],
            "build_s": t1 - t0, "check_s": t2 - t1}


def case_queue(n_ops: int) -> dict:
    from checkers.history import History
    from checkers.queue import check

    t0 = time.perf_counter()
    history = History.from_dicts(queue_history(n_ops))
    t1 = time.perf_counter()
    result = check(history, delivery="at-least-once")
    t2 = time.perf_counter()
    return {"ops": len(history), "valid": result["valid"], "build_s": t1 - t0, "check_s": t2 - t1}


def case_list_append(n_txns: int) -> dict:
    from checkers.elle.list_append import check
    from checkers.history import History

    t0 = time.perf_counter()
    history = History.from_dicts(list_append_history(n_txns))
    t1 = time.perf_counter()
    result = check(history, consistency_models=["strict-serializable"])
    t2 = time.perf_counter()
    return {"ops": len(history), "valid": result["valid"], "anomalies": result.get("anomaly_types"),
            "build_s": t1 - t0, "check_s": t2 - t1}


def case_kv(corrupt: bool) -> dict:
    from checkers.history import History
    from checkers.linearizable import check

    t0 = time.perf_counter()
    history = History.from_dicts(kv_history(corrupt=corrupt))
    t1 = time.perf_counter()
    result = check(history, "kv", time_limit_s=120)
    t2 = time.perf_counter()
    return {"ops": len(history), "valid": result["valid"], "build_s": t1 - t0, "check_s": t2 - t1}


def case_shared() -> dict:
    from checkers.elle import list_append
    from checkers.history import History
    from checkers.linearizable import check as linearizable

    manifest = json.loads((SHARED / "manifest.json").read_text())
    t0 = time.perf_counter()
    per_source: dict[str, float] = {}
    agree = 0
    for entry in manifest:
        start = time.perf_counter()
        history = History.load(SHARED / entry["file"], format=entry["format"])
        if entry["source"] == "elle":
            result = list_append.check(history, consistency_models=entry["consistency_models"])
        else:
            if entry["semantics"].startswith("porcupine-etcd"):
                opts = {"semantics": "porcupine-etcd", "initial": None}
            elif entry["model"] == "kv" or entry["model"] == "mutex":
                opts = {"semantics": "knossos", "initial": None}
            else:
                opts = {"semantics": "knossos", "initial": 0}
            result = linearizable(history, entry["model"], time_limit_s=60, **opts)
        agree += result["valid"] is entry["expected_valid"]
        key = f"{entry['source']}/{entry['model']}"
        per_source[key] = per_source.get(key, 0.0) + time.perf_counter() - start
    return {"histories": len(manifest), "agree": agree, "check_s": time.perf_counter() - t0, "per_source_s": per_source}


def _timed_process(argv: list[str], runs: int = 3) -> tuple[float, int]:
    """Best wall time of `runs` runs of a command (the first run of all warms the bytecode cache), and its exit code."""
    best, code = float("inf"), -1
    for _ in range(runs):
        start = time.perf_counter()
        code = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT).returncode
        best = min(best, time.perf_counter() - start)
    return best, code


# The first seed of the generated histories `--only process` times (kv_history's default).
FIRST_KV_SEED = 3


def case_process(kv_seeds: int = 40) -> list[tuple[str, float, int, int]]:
    """(history, best seconds, exit code, expected exit code) of `logquake check` on every shared kv
    history, then on the generated 50-client ones of seeds FIRST_KV_SEED .. + kv_seeds - 1, each
    valid and invalid."""
    from checkers.history import History

    check = [sys.executable, "-c", "import sys; from harness.cli import main; sys.exit(main())", "check",
             "--checker", "linearizable", "--model", "kv"]
    with tempfile.TemporaryDirectory(prefix="bench-check-") as tmp:
        cases = []
        for entry in json.loads((SHARED / "manifest.json").read_text()):
            if entry["model"] == "kv":
                cases.append((entry["file"], SHARED / entry["file"], 0 if entry["expected_valid"] else 1))
        for seed in range(FIRST_KV_SEED, FIRST_KV_SEED + kv_seeds):
            for corrupt in (False, True):
                path = Path(tmp) / f"kv-50-clients-seed-{seed}-{'invalid' if corrupt else 'valid'}.jsonl"
                History.from_dicts(kv_history(seed=seed, corrupt=corrupt)).to_jsonl(path)
                cases.append((path.name, path, 1 if corrupt else 0))
        _timed_process([*check, "--out", str(Path(tmp) / "warm"), str(cases[0][1])], runs=1)
        results = []
        for i, (name, path, expected) in enumerate(cases):
            seconds, code = _timed_process([*check, "--out", str(Path(tmp) / f"out-{i}"), str(path)])
            results.append((name, seconds, code, expected))
        return results


def _child(fn, args, queue):
    try:
        result = fn(*args)
    except Exception as e:  # reported, not hidden
        result = {"error": f"{type(e).__name__}: {e}"}
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put(result)


def run_case(fn, *args) -> dict:
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(fn, args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="queue,list-append,linearizable,shared,process,pipeline")
    parser.add_argument("--pipeline-records", type=int, default=1_000_000)
    parser.add_argument("--queue-ops", type=int, default=1_000_000)
    parser.add_argument("--txns", type=int, default=100_000)
    parser.add_argument("--kv-seeds", type=int, default=40,
                        help=f"--only process: generated kv histories of this many seeds from {FIRST_KV_SEED}, "
                             "each valid and invalid (default %(default)s)")
    args = parser.parse_args()
    if args.kv_seeds < 0:
        parser.error(f"--kv-seeds {args.kv_seeds}: expected a number of seeds >= 0")
    only = set(args.only.split(","))
    print(f"checker benchmark (python {sys.version.split()[0]}, {os.cpu_count()} CPUs)", flush=True)
    if "queue" in only:
        r = run_case(case_queue, args.queue_ops)
        print(f"queue, {args.queue_ops:,} history entries, at-least-once: {r}", flush=True)
        if "check_s" in r:
            print(f"  -> check {r['check_s']:.1f} s (target < 30 s), peak RSS {r['peak_rss_mib']:.0f} MiB (target < 2048), valid={r['valid']}")
    if "list-append" in only:
        r = run_case(case_list_append, args.txns)
        print(f"list-append, {args.txns:,} txns at concurrency 20: {r}", flush=True)
        if "check_s" in r:
            print(f"  -> check {r['check_s']:.1f} s (target < 60 s), peak RSS {r['peak_rss_mib']:.0f} MiB, valid={r['valid']}")
    if "linearizable" in only:
        for corrupt in (False, True):
            r = run_case(case_kv, corrupt)
            label = "invalid (one stale read)" if corrupt else "valid"
            print(f"linearizable kv, 50 clients, 2,000 ops, 10 keys, {label}: {r}", flush=True)
            if "check_s" in r:
                print(f"  -> check {r['check_s']:.2f} s (target < 60 s; Porcupine ~0.2 s valid / 0.04 s invalid on its own 50-client data), valid={r['valid']}")
    if "shared" in only:
        r = run_case(case_shared)
        print(f"shared histories: {r}", flush=True)
        if "check_s" in r:
            etcd = r["per_source_s"].get("porcupine/cas-register", 0.0)
            print(f"  -> {r['agree']}/{r['histories']} verdicts as expected, total {r['check_s']:.2f} s; "
                  f"the 52 Porcupine etcd logs here: {etcd:.2f} s (Porcupine: ~0.4 s for all 102 of its etcd logs)")
    if "process" in only:
        baseline, _ = _timed_process([sys.executable, "-c", "pass"])
        if sys.flags.dont_write_bytecode:
            print("  (PYTHONDONTWRITEBYTECODE is set: every process compiles the project from source, as users' do not)")
        print(f"logquake check, whole process, best of 3 (baseline: the interpreter alone, {baseline:.2f} s):")
        generated = []
        for name, seconds, code, expected in case_process(args.kv_seeds):
            verdict = "as expected" if code == expected else f"EXIT {code}, expected {expected}"
            print(f"  {name}: {seconds:.2f} s ({seconds / baseline:.1f}x the interpreter; target < 0.5 s), {verdict}",
                  flush=True)
            if name.startswith("kv-50-clients-seed-"):
                generated.append((seconds, name))
        if generated:
            worst, worst_name = max(generated)
            over = sum(1 for seconds, _ in generated if seconds >= 0.5)
            last = FIRST_KV_SEED + args.kv_seeds - 1
            print(f"  generated 50-client kv histories, seeds {FIRST_KV_SEED}-{last}, valid and invalid "
                  f"({len(generated)}): median {statistics.median(s for s, _ in generated):.2f} s, "
                  f"worst {worst:.2f} s ({worst_name}); target < 0.5 s each: {over} over")
    if "pipeline" in only:
        r = run_case(case_pipeline, args.pipeline_records)
        print(f"pipeline, {args.pipeline_records:,} input records: {r}", flush=True)
        if "check_s" in r:
            print(f"  -> check {r['check_s']:.1f} s (target < 60 s; {r['check_s'] / r['build_s']:.2f}x the "
                  f"{r['build_s']:.1f} s of building the History), peak RSS {r['peak_rss_mib']:.0f} MiB "
                  f"(target < 2048), valid={r['valid']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
