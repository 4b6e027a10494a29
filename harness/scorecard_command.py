"""`logquake scorecard`: how often the default fault mix catches each bug planted in our broker.

    logquake scorecard [--bugs all|NAME,...] [--seeds N] [--time-limit S] [--backend local|docker]
                       [--store store] [--parallel N]

Runs every chosen planted bug N times with fresh random seeds and the default
fault mix, plus the correct broker on the same seeds as a control, and writes
scorecard.json and scorecard.html in STORE/campaigns/scorecard/TIME/ (see
harness/scorecard.py). Exit status: 0, or 1 when a control run was INVALID (a
false alarm), 130 when interrupted, 254 for bad flags. Running time: about
(number of bugs + control settings) x N x (time limit + 30 s) over --parallel.
"""

from __future__ import annotations

import sys

from harness.cli_args import ArgumentParser, positive_float, positive_int


def build_parser() -> ArgumentParser:
    from harness.scorecard import PLANTED_BUGS

    p = ArgumentParser(prog="logquake scorecard", description=__doc__.split("\n\n")[0],
                       epilog="planted bugs: " + "; ".join(f"{b.name}: {b.what}" for b in PLANTED_BUGS))
    p.add_argument("--bugs", default="all", help="all, or a comma-separated list of bug names (default %(default)s)")
    p.add_argument("--seeds", type=positive_int, default=10, help="runs per bug, each with a fresh random seed (default %(default)s)")
    p.add_argument("--time-limit", type=positive_float, default=60.0, metavar="SECONDS",
                   help="seconds of workload per run (default %(default)s)")
    p.add_argument("--backend", choices=("local", "docker"), default="local", help="where nodes run (default %(default)s)")
    p.add_argument("--store", default="store", help="store directory (default %(default)s)")
    p.add_argument("--parallel", type=positive_int, default=1, help="runs at once, local backend only (default %(default)s)")
    return p


def main(argv: list[str]) -> int:
    from harness.scorecard import PLANTED_BUGS, run_scorecard

    args = build_parser().parse_args(argv)
    names = None
    if args.bugs != "all":
        names = [n.strip() for n in args.bugs.split(",") if n.strip()]
        known = {b.name for b in PLANTED_BUGS} | {b.prop for b in PLANTED_BUGS}
        unknown = [n for n in names if n not in known]
        if unknown or not names:
            sys.stderr.write(f"logquake scorecard: --bugs {args.bugs!r}: unknown bug(s) {unknown}; known: "
                             f"{', '.join(b.name for b in PLANTED_BUGS)}\n")
            return 254
    code, _ = run_scorecard(names, args.seeds, args.time_limit, args.backend, args.store, parallel=args.parallel,
                            out=lambda line: print(line, flush=True))
    return code
