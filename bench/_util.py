"""Shared helpers for the benchmarks: start a broker process, read its CPU time and peak memory.

Benchmarks print numbers and ratios; they assert nothing (speed targets are
judged from their output, never in timed unit tests).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class BrokerProcess:
    proc: subprocess.Popen
    port: int
    data_dir: str
    lines: list[str] = field(default_factory=list)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def cpu_s(self) -> float:
        """User + system CPU seconds the process has used so far (from /proc/PID/stat)."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S

    def peak_rss_mib(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            match = re.search(r"VmHWM:\s+(\d+) kB", f.read())
        return int(match.group(1)) / 1024 if match else float("nan")


@contextmanager
def broker_process(module: str = "broker", extra_args: list[str] | None = None, overrides: dict | None = None,
                   ready_timeout_s: float = 30.0, port: int | None = None, advertised_port: int | None = None):
    """Run `python -m <module>` on a free port with a temp log dir; stop it and remove the dir afterwards."""
    port = port or free_port()
    data_dir = tempfile.mkdtemp(prefix="logquake-bench-")
    args = [sys.executable, "-m", module]
    if module == "broker":
        props = {
            "node.id": "1",
            "listeners": f"PLAINTEXT://127.0.0.1:{port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{advertised_port or port}",
            "log.dirs": os.path.join(data_dir, "logs"),
            **(overrides or {}),
        }
        config_path = os.path.join(data_dir, "server.properties")
        with open(config_path, "w") as f:
            f.writelines(f"{k}={v}\n" for k, v in props.items())
        args += ["--config", config_path]
    else:
        args += ["--port", str(port)]
    args += extra_args or []
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    broker = BrokerProcess(proc, port, data_dir)
    ready = threading.Event()

    def pump():
        for line in proc.stderr:
            if len(broker.lines) < 10_000:
                broker.lines.append(line)
            if "listening on" in line:
                ready.set()

    threading.Thread(target=pump, daemon=True).start()
    try:
        deadline = time.monotonic() + ready_timeout_s
        while not ready.wait(0.05):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"{module} did not report 'listening on' within {ready_timeout_s} s "
                    f"(exit status {proc.poll()}); its stderr:\n{''.join(broker.lines[-30:])}"
                )
        yield broker
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(data_dir, ignore_errors=True)


def read_bootstrap(proc: subprocess.Popen, timeout_s: float = 90.0) -> str:
    """The addresses of `logquake cluster up`'s `bootstrap:` line, printed once every broker is registered."""
    deadline = time.monotonic() + timeout_s
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if line.startswith("bootstrap:"):
            return line.split("bootstrap:", 1)[1].strip()
    raise RuntimeError(f"logquake cluster up printed no bootstrap line; it printed {''.join(seen)!r}")
