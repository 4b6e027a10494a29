"""bench/checkers.py's whole-process case, so that it cannot rot: it times `logquake check` on every kv
history of the shared data and on the generated 50-client ones, and each verdict is the expected one
(exit 0 for the valid histories, 1 for the invalid). Its speed is the benchmark's to report, not this test's."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_whole_process_case_checks_every_kv_history_with_the_expected_verdict():
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "checkers.py"), "--only", "process"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    lines = re.findall(r"^  (\S+): ([\d.]+) s \(([\d.]+)x the interpreter; target < 0.5 s\), (.+)$", run.stdout, re.M)
    manifest = json.loads((ROOT / "tests" / "data" / "histories" / "manifest.json").read_text())
    shared = [entry["file"] for entry in manifest if entry["model"] == "kv"]
    assert [name for name, *_ in lines] == [*shared, "kv-50-clients-valid.jsonl", "kv-50-clients-invalid.jsonl"]
    assert all(verdict == "as expected" for *_, verdict in lines), run.stdout
    assert "baseline: the interpreter alone" in run.stdout
