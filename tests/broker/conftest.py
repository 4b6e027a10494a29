"""A real broker process for tests: `python -m broker` on 127.0.0.1, a free port, a tmp log dir.

`BrokerProcess.start` waits for the `broker <id> listening on host:port` line
(stderr goes to a file, so a chatty broker can never block on a full pipe);
every fixture stops or kills its broker in a finally block.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
READY = re.compile(r"broker (\d+) listening on ([^:\s]+):(\d+)")


class BrokerProcess:
    def __init__(self, directory: Path, overrides: dict[str, str] | None = None, properties: str | None = None,
                 open_files_limit: int | None = None):
        self.directory = directory
        self.open_files_limit = open_files_limit  # RLIMIT_NOFILE of the broker process (ulimit -n), to reach it quickly
        self.log_dir = directory / "logs"
        self.config_path = directory / "server.properties"
        self.stderr_path = directory / "stderr.txt"
        self.overrides = dict(overrides or {})
        self.properties = properties
        self.process: subprocess.Popen | None = None
        self.port: int | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 20.0) -> "BrokerProcess":
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.properties is None:
            listener = f"PLAINTEXT://127.0.0.1:{self.port or 0}"
            self.config_path.write_text(f"node.id=1\nlisteners={listener}\nlog.dirs={self.log_dir}\n")
        else:
            self.config_path.write_text(self.properties)
        args = [sys.executable, "-m", "broker", "--config", str(self.config_path)]
        for key, value in self.overrides.items():
            args += ["--override", f"{key}={value}"]
        offset = len(self.stderr_text())
        stderr = open(self.stderr_path, "ab")
        try:
            self.process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr,
                                            preexec_fn=self._limit_open_files if self.open_files_limit else None)
        finally:
            stderr.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            match = READY.search(self.stderr_text()[offset:])
            if match:
                self.port = int(match.group(3))
                return self
            if self.process.poll() is not None:
                raise RuntimeError(f"broker exited with {self.process.returncode} before it was ready:\n{self.stderr_text()}")
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"broker not ready within {timeout_s} s:\n{self.stderr_text()}")

    def _limit_open_files(self) -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_NOFILE, (self.open_files_limit, self.open_files_limit))

    def stderr_text(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM and wait; return the exit status."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(f"broker did not stop within {timeout_s} s of SIGTERM:\n{self.stderr_text()[-3000:]}")
        return self.process.returncode

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def restart(self) -> "BrokerProcess":
        """Start again on the same port and log dir (after stop or kill)."""
        return self.start()


@pytest.fixture
def broker_factory(tmp_path):
    started: list[BrokerProcess] = []

    def make(overrides: dict[str, str] | None = None, name: str = "broker",
             open_files_limit: int | None = None) -> BrokerProcess:
        process = BrokerProcess(tmp_path / name, overrides, open_files_limit=open_files_limit)
        started.append(process)
        return process.start()

    try:
        yield make
    finally:
        for process in started:
            process.kill()
            # shown by pytest only when the test failed
            print(f"---- stderr of {process.directory.name} ----\n{process.stderr_text()[-6000:]}")


@pytest.fixture
def broker(broker_factory) -> BrokerProcess:
    return broker_factory()
