"""Peak memory and time of `logquake check` on a large queue history, valid and full of anomalies.

Writes two JSONL queue histories of about `--size-mb` MB each (default 500) into a temporary
folder, streaming them line by line so that the benchmark itself stays small:

- valid: 10 processes send to and poll 10 keys of a correct log (every send acknowledged at
  the offset it landed at, every poll reading the next messages of the keys it polls), then
  a final reader polls every key to its end, 1,000 messages per poll;
- anomalies: the same, except that every 5th acknowledged send lands twice (a `duplicate`)
  and every 7th is acknowledged but never lands (a `lost-write`, since later messages of its
  key are read; millions of witnesses in all).

Each history is checked by `python3 -m harness.cli check FILE --delivery exactly-once` in
a child process; its peak RSS comes from the kernel's accounting of that child (`os.wait4`),
and its wall time from the parent. The baseline, measured in the same run on the same
file, is a child that only reads the file with `json.loads` per line and keeps nothing:
the ratios say what checking costs beyond reading the bytes once. Target (issue 17):
under 2 GiB peak RSS for either history at 500 MB. Measured (2 shared cores, Python 3.11): 477 MiB,
3.8 million ops: valid 912 MiB and 364 s; with 434,000 anomalies 1,215 MiB and 435 s, results.json
10 MiB (before streaming and the witness cap, issue 17 measured 4.7 GB and 15.6 GB at 500 MB).

    python3 bench/check_memory.py [--size-mb 500] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_PEAK_RSS_MIB = 2048
PROCESSES = 10
KEYS = 10
FINAL_READ_BATCH = 1000
_BASELINE = ("import json, sys\n"
             "with open(sys.argv[1], encoding='utf-8') as f:\n"
             "    for line in f:\n"
             "        json.loads(line)\n")


def write_history(path: str, size_mb: float, anomalies: bool, seed: int = 1) -> int:
    """Write a queue history of about `size_mb` MB to `path`; return its number of ops.

    Deterministic for a seed (a linear congruential generator, so the file is the same on every
    Python). With `anomalies`, every 5th ok send lands twice and every 7th never lands.
    """
    budget = int(size_mb * 1_000_000)
    logs: list[list[int]] = [[] for _ in range(KEYS)]
    positions = [[0] * KEYS for _ in range(PROCESSES)]
    pending: dict[int, tuple[str, int, int]] = {}
    state = seed
    written = 0
    index = 0
    value = 0
    sends = 0
    final_read_bytes = 0  # what the final reads will take, about

    def random_below(n: int) -> int:
        nonlocal state
        state = (state * 6364136223846793005 + 1442695040888963407) & (2**64 - 1)
        return (state >> 33) % n

    with open(path, "w", encoding="utf-8") as out:
        def emit(process: int, type_: str, f: str, op_value: list) -> None:
            nonlocal index, written
            line = json.dumps({"index": index, "time": index * 1000, "process": process, "type": type_, "f": f,
                               "value": op_value}, separators=(",", ":")) + "\n"
            out.write(line)
            written += len(line)
            index += 1

        for p in range(PROCESSES):
            emit(p, "invoke", "assign", list(range(KEYS)))
            emit(p, "ok", "assign", list(range(KEYS)))
        # leave room for the final reads, which read every message once more
        while written + final_read_bytes < budget:
            p = random_below(PROCESSES)
            started = pending.pop(p, None)
            if started is None:
                if random_below(2):
                    value += 1
                    started = ("send", random_below(KEYS), value)
                    emit(p, "invoke", "send", [["send", started[1], value]])
                else:
                    started = ("poll", 0, 0)
                    emit(p, "invoke", "poll", [["poll"]])
                pending[p] = started
                continue
            f, k, v = started
            if f == "send":
                sends += 1
                log = logs[k]
                if anomalies and sends % 7 == 0:
                    emit(p, "ok", "send", [["send", k, [len(log), v]]])  # acknowledged at an offset it never got
                    continue
                copies = 2 if anomalies and sends % 5 == 0 else 1
                for _ in range(copies):
                    log.append(v)
                    final_read_bytes += len(str(len(log))) + len(str(v)) + 4
                emit(p, "ok", "send", [["send", k, [len(log) - copies, v]]])
                continue
            polled = {}
            for _ in range(3):
                k = random_below(KEYS)
                if k in polled:
                    continue
                start = positions[p][k]
                end = min(len(logs[k]), start + random_below(6))
                if end > start:
                    polled[k] = [[o, logs[k][o]] for o in range(start, end)]
                    positions[p][k] = end
            emit(p, "ok", "poll", [["poll", polled]])
        for p, (f, k, v) in sorted(pending.items()):
            emit(p, "info", f, [["send", k, v]] if f == "send" else [["poll"]])
        final = PROCESSES + 1
        for k, log in enumerate(logs):
            for start in range(0, len(log), FINAL_READ_BATCH):
                emit(final, "invoke", "poll", [["poll"]])
                emit(final, "ok", "poll", [["poll", {k: [[o, log[o]] for o in range(start, min(len(log), start + FINAL_READ_BATCH))]}]])
    return index


def measure(args: list[str]) -> dict:
    """Run a child process; its exit code, wall time, peak RSS (MiB) and the last line of its output."""
    start = time.perf_counter()
    child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    output = child.stdout.read() if child.stdout else ""
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    lines = output.strip().splitlines()
    return {"exit": child.returncode, "wall_s": time.perf_counter() - start, "peak_rss_mib": usage.ru_maxrss / 1024,
            "last_line": lines[-1] if lines else ""}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=float, default=500.0, help="size of each generated history (default 500)")
    parser.add_argument("--keep", default=None, help="write the histories and results here and keep them")
    args = parser.parse_args(argv)
    if args.size_mb <= 0:
        parser.error(f"--size-mb {args.size_mb} must be positive")
    folder = args.keep or tempfile.mkdtemp(prefix="logquake-bench-check-")
    os.makedirs(folder, exist_ok=True)
    print(f"logquake check memory benchmark (python {sys.version.split()[0]}, {os.cpu_count()} CPUs), "
          f"histories of ~{args.size_mb:g} MB in {folder}", flush=True)
    try:
        for name, anomalies in (("valid", False), ("anomalies", True)):
            path = os.path.join(folder, f"{name}.jsonl")
            start = time.perf_counter()
            ops = write_history(path, args.size_mb, anomalies)
            size_mib = os.path.getsize(path) / 2**20
            print(f"{name}: {ops:,} ops, {size_mib:,.1f} MiB, written in {time.perf_counter() - start:.1f} s", flush=True)
            baseline = measure([sys.executable, "-c", _BASELINE, path])
            check = measure([sys.executable, "-m", "harness.cli", "check", path, "--delivery", "exactly-once",
                             "--out", os.path.join(folder, f"{name}-results")])
            results = os.path.join(folder, f"{name}-results", "results.json")
            results_mib = os.path.getsize(results) / 2**20 if os.path.exists(results) else float("nan")
            print(f"  baseline (json.loads per line, nothing kept): {baseline['wall_s']:.1f} s, "
                  f"peak RSS {baseline['peak_rss_mib']:,.0f} MiB", flush=True)
            print(f"  logquake check: exit {check['exit']}, {check['wall_s']:.1f} s "
                  f"({check['wall_s'] / baseline['wall_s']:.1f}x the baseline), peak RSS {check['peak_rss_mib']:,.0f} MiB "
                  f"({check['peak_rss_mib'] / size_mib:.2f} MiB per MiB of history; target < {TARGET_PEAK_RSS_MIB}), "
                  f"results.json {results_mib:,.1f} MiB", flush=True)
            print(f"  last line: {check['last_line']}", flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
