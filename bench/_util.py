"""Shared helpers for the benchmarks: start a broker process, read its CPU time and peak memory.

Benchmarks print numbers and ratios; they assert nothing (speed targets are
judged from their output, never in timed unit tests).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def exit_on_sigterm() -> None:
    """Make SIGTERM (a `kill`, a job's timeout) end the benchmark as Ctrl-C does: through its `finally` blocks,
    which remove its temporary stores (Python's default for SIGTERM is to die on the spot)."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


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


@contextmanager
def peer_process(command: str, ready_timeout_s: float = 30.0):
    """Run another Kafka-compatible broker from its start command, in which `{port}` stands for a free port; yield
    it as a BrokerProcess once that port accepts connections, and stop its whole process group afterwards.

    The command runs without a shell (split as a shell would split it) in its own session, so a broker that forks
    is stopped with everything it started."""
    if "{port}" not in command:
        raise ValueError(f"the peer command {command!r} has no {{port}} for the port to listen on")
    port = free_port()
    argv = shlex.split(command.replace("{port}", str(port)))
    if not argv or shutil.which(argv[0]) is None:
        raise ValueError(f"the peer command's program {argv[0] if argv else command!r} is not found or not executable")
    data_dir = tempfile.mkdtemp(prefix="logquake-bench-peer-")
    proc = subprocess.Popen(argv, cwd=data_dir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    broker = BrokerProcess(proc, port, data_dir)

    def pump():
        for line in proc.stderr:
            if len(broker.lines) < 10_000:
                broker.lines.append(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        deadline = time.monotonic() + ready_timeout_s
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the peer {argv[0]} did not accept connections on port {port} within "
                                   f"{ready_timeout_s} s (exit status {proc.poll()}); its stderr:\n"
                                   f"{''.join(broker.lines[-30:])}")
            with socket.socket() as s:
                s.settimeout(0.5)
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield broker
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
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
