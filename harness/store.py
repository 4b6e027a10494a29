"""The store: one directory per run, laid out as Jepsen lays it out.

    store/<test-name>/<timestamp>/
        test.json          every parameter, the seed, versions
        history.jsonl      streamed while the test runs (a crashed run keeps it)
        history.edn        the same history in Jepsen's EDN
        schedule.json      the nemesis schedule, decided before the run
        results.json       the checkers' verdicts
        report.html        what a person reads
        nodes/<node>/...   node logs
    store/<test-name>/latest -> <timestamp>
    store/latest -> <test-name>/<timestamp>

Thread-safety: a Store is used by the runner thread only.
"""

from __future__ import annotations

import datetime
import json
import os
import threading
from pathlib import Path


class Store:
    def __init__(self, root: str | os.PathLike = "store"):
        self.root = Path(root)

    def new_run(self, test_name: str, now: datetime.datetime | None = None) -> Path:
        now = now or datetime.datetime.now()
        stamp = now.strftime("%Y%m%dT%H%M%S.%f")[:-3]
        run_dir = self.root / test_name / stamp
        (self.root / test_name).mkdir(parents=True, exist_ok=True)
        n = 1
        while True:  # two runs of one test that start in the same millisecond (a campaign's --parallel)
            try:
                run_dir.mkdir()
                break
            except FileExistsError:
                n += 1
                stamp = now.strftime("%Y%m%dT%H%M%S.%f")[:-3] + f"-{n}"
                run_dir = self.root / test_name / stamp
        self._point(self.root / test_name / "latest", Path(stamp))
        self._point(self.root / "latest", Path(test_name) / stamp)
        return run_dir

    @staticmethod
    def _point(link: Path, target: Path) -> None:
        # a name of this process and thread's own: two runs pointing `latest` at once (a campaign's --parallel,
        # `logquake sim --jobs`) must not remove each other's link half made
        tmp = link.with_name(f"{link.name}.{os.getpid()}-{threading.get_ident()}.tmp")
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        tmp.symlink_to(target)
        os.replace(tmp, link)

    def runs(self) -> list[Path]:
        """Every run directory (one holding test.json), newest first."""
        if not self.root.is_dir():
            return []
        found = [p.parent for p in self.root.glob("*/*/test.json") if not p.parent.is_symlink()]
        return sorted(found, key=lambda p: p.name, reverse=True)


def write_json(path: Path, data) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")
    os.replace(tmp, path)


def _json_default(x):
    if isinstance(x, (set, frozenset)):
        return sorted(x, key=repr)
    if isinstance(x, Path):
        return str(x)
    return repr(x)
