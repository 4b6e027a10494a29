"""`logquake shrink RUN_DIR`: the smallest fault schedule and settings that still show a run's anomaly.

    logquake shrink RUN_DIR [--budget 30m] [--tries 3] [--anomaly TYPE]

RUN_DIR is a run of `logquake test` or of `logquake sim` (STORE/sim/<time>).

Delta debugging over the schedule's faults, then over the run's length, rate,
concurrency and keys (see harness/shrink.py). A candidate counts as failing
when one of `--tries` runs shows the anomaly (default: the original's most
severe). Prints each candidate as it goes; at three quarters of the budget
it stops with the smallest failing run found, and the rest confirms it (kept
if it fails in every one of `--tries` runs, three at least, else the failing
candidate before it, and so on). Writes RUN_DIR/shrink-<time>/ with shrunk.json,
schedule.json, command.txt (the exact `logquake test` command) and
shrink.html. Exit 0 after a shrink, 254 for bad arguments or a run that shows
no such anomaly.

A sim run shrinks under its seed (harness/sim_shrink.py): the simulation is
deterministic, so one run decides each candidate (`--tries` does not apply),
over the faults the run applied and then its duration; command.txt is the
`logquake sim --seed S --schedule ...` command.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from harness.cli_args import ArgumentParser, positive_int


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="logquake shrink", description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", metavar="RUN_DIR", help="a stored failing run (e.g. store/latest)")
    p.add_argument("--budget", default="30m", help="how long to search: 90s, 30m, 2h (default %(default)s)")
    p.add_argument("--tries", type=positive_int, default=3, help="runs per candidate (default %(default)s; a sim run needs one)")
    p.add_argument("--anomaly", default=None, help="the anomaly type to keep (default: the original's most severe)")
    p.add_argument("--verbose", action="store_true", help="show each candidate run's progress display")
    return p


def main(argv: list[str]) -> int:
    from harness.campaign import CampaignError, parse_budget
    from harness.run_command import _configure_logging
    from harness.shrink import shrink

    args = build_parser().parse_args(argv)
    try:
        budget_s = parse_budget(args.budget, "--budget")
    except CampaignError as e:
        sys.stderr.write(f"logquake shrink: {e}\n")
        return 254
    run_dir = Path(args.run_dir).resolve()
    if (run_dir / "test.json").is_file() and json.loads((run_dir / "test.json").read_text()).get("name") == "sim":
        from harness.sim_shrink import shrink_sim

        try:
            shrink_sim(run_dir, budget_s, args.anomaly, out=lambda line: print(line, flush=True))
        except (ValueError, OSError) as e:
            sys.stderr.write(f"logquake shrink: {e}\n")
            return 254
        return 0
    if not (run_dir / "test.json").is_file() or not (run_dir / "schedule.json").is_file():
        sys.stderr.write(f"logquake shrink: {run_dir} is not a stored run (no test.json and schedule.json)\n")
        return 254
    _configure_logging()
    try:
        shrink(run_dir, budget_s, args.tries, args.anomaly, out=lambda line: print(line, flush=True),
               quiet=not args.verbose)
    except (ValueError, OSError) as e:
        sys.stderr.write(f"logquake shrink: {e}\n")
        return 254
    return 0
