"""`logquake heal [STORE]`: undo what harnesses that died left in effect.

    logquake heal [STORE] [--json]

A harness killed with SIGKILL (or by a crash of the machine under it) cannot heal
its faults: brokers stay paused, partitions cut, FUSE mounts mounted. Every run
writes its faults down in a ledger before applying them (`harness/ledger.py`);
this command reads the open ledgers of STORE whose harness is gone, prints the
faults each left in effect, then removes the clusters of dead harnesses on every
backend (local processes and mounts, Docker containers and networks, and on the
SSH hosts of the nodes files the dead runs named: their brokers, mounts and run
dirs, and the iptables chains and netem of a host no run uses any more), which
undoes every fault with them, and closes the ledgers. Runs of harnesses that
are still alive are never touched. The start of every `logquake test` does the
same for the backends that dead runs used (SSH hosts only for an SSH run).

Exit status: 0 when everything found was healed (or nothing was found), 1 when
some backend could not be healed, 254 for bad arguments.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from harness.cli_args import ArgumentParser

EXIT_BAD_ARGUMENTS = 254


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="logquake heal", description=__doc__.split("\n\n")[0],
                       epilog="Exit status: 0 healed (or nothing to heal), 1 a backend could not be healed, "
                              "254 bad arguments.")
    p.add_argument("store", nargs="?", default="store", help="the store whose runs to heal (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print what was found and removed as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from harness.backends import HEALERS
    from harness.ledger import heal_store

    if not Path(args.store).is_dir():
        build_parser().error(f"STORE {args.store!r} is not a directory")
    lines: list[str] = []
    outcome = heal_store(Path(args.store), HEALERS, say=lines.append if args.json else print)
    if args.json:
        print(json.dumps(outcome, indent=2))
    elif not outcome["runs"] and not outcome["removed"] and not outcome["errors"]:
        print(f"nothing to heal: no dead harness left faults or clusters behind ({args.store})")
    else:
        print(f"healed: {len(outcome['runs'])} run(s) of dead harnesses, {len(outcome['removed'])} thing(s) removed")
    return 1 if outcome["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
