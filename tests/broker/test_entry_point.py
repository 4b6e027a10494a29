"""The broker's process entry points keep Hypothesis out (broker.keep_hypothesis_out): kio would import it and
register its strategies, which cost a broker started in a fresh directory 1.9 s and a 200 MiB memory peak, and
left a `.hypothesis` directory behind in the broker's working directory."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.broker.conftest import READY

ROOT = Path(__file__).resolve().parents[2]


def _pythonpath_env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}


def test_a_broker_started_in_a_fresh_directory_imports_no_hypothesis(tmp_path):
    pytest.importorskip("hypothesis")  # the dev extra installs it; without it there is nothing to keep out
    work = tmp_path / "cwd"
    work.mkdir()
    config = tmp_path / "server.properties"
    config.write_text(f"node.id=1\nlisteners=PLAINTEXT://127.0.0.1:0\nlog.dirs={tmp_path / 'logs'}\n")
    stderr_path = tmp_path / "stderr.txt"
    with open(stderr_path, "wb") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "broker", "--config", str(config)], cwd=work,
                                   stdout=subprocess.DEVNULL, stderr=stderr, env=_pythonpath_env())
    try:
        deadline = time.monotonic() + 30
        while not READY.search(stderr_path.read_text()):
            assert process.poll() is None, stderr_path.read_text()
            assert time.monotonic() < deadline, stderr_path.read_text()
            time.sleep(0.05)
        # the broker has imported every protocol schema it serves with by now (kio's types among them)
        assert not (work / ".hypothesis").exists(), "the broker imported Hypothesis (kio's strategies)"
    finally:
        process.terminate()
        process.wait(30)


def test_keep_hypothesis_out_leaves_an_imported_hypothesis_alone():
    hypothesis = pytest.importorskip("hypothesis")
    from broker import keep_hypothesis_out

    keep_hypothesis_out()
    assert sys.modules["hypothesis"] is hypothesis


def test_keep_hypothesis_out_makes_a_later_import_fail():
    code = ("import sys; from broker import keep_hypothesis_out; keep_hypothesis_out()\n"
            "try:\n    import hypothesis\nexcept ImportError:\n    print('refused')\n"
            "import kio.static.primitive; print('kio ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["refused", "kio", "ok"]
