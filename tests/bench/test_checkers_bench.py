"""bench/checkers.py's whole-process case, so that it cannot rot: it times `logquake check` on every kv
history of the shared data and on the generated 50-client ones (two seeds here, to stay quick), each
verdict is the expected one (exit 0 for the valid histories, 1 for the invalid), and it sums up the
generated ones (median, worst). Its speed is the benchmark's to report, not this test's."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_whole_process_case_checks_every_kv_history_with_the_expected_verdict():
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "checkers.py"), "--only", "process", "--kv-seeds", "2"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    lines = re.findall(r"^  (\S+): ([\d.]+) s \(([\d.]+)x the interpreter; target < 0.5 s\), (.+)$", run.stdout, re.M)
    manifest = json.loads((ROOT / "tests" / "data" / "histories" / "manifest.json").read_text())
    shared = [entry["file"] for entry in manifest if entry["model"] == "kv"]
    generated = [f"kv-50-clients-seed-{seed}-{kind}.jsonl" for seed in (3, 4) for kind in ("valid", "invalid")]
    assert [name for name, *_ in lines] == [*shared, *generated]
    assert all(verdict == "as expected" for *_, verdict in lines), run.stdout
    summary = re.search(r"^  generated 50-client kv histories, seeds 3-4, valid and invalid \(4\): "
                        r"median ([\d.]+) s, worst ([\d.]+) s \((\S+)\); target < 0.5 s each: (\d+) over$",
                        run.stdout, re.M)
    assert summary, run.stdout
    times = {name: float(seconds) for name, seconds, *_ in lines}
    assert float(summary[2]) == max(times[name] for name in generated) == times[summary[3]]
    assert "baseline: the interpreter alone" in run.stdout
