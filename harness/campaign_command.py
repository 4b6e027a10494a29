"""`logquake campaign run|trends`: run a fault campaign from a TOML file, and read trends across nights.

    logquake campaign run FILE.toml [--store store] [--parallel N] [--rerun-unknown N] [--new]
    logquake campaign run --resume DIR [--parallel N] [--rerun-unknown N]
    logquake campaign trends [STORE] [--name NAME] [--out FILE.html]

`run` exits with the worst verdict (0 valid, 1 invalid, 2 unknown or runs left
out by the budget), 130 when interrupted (resume it with `--resume DIR`), 254
for a campaign file that cannot run (file, line and reason on stderr, before
anything starts). See harness/campaign.py for the file format and the
directory a campaign keeps. `trends` writes
`STORE/campaigns/NAME/trends.html` (or `--out`) and prints the cells that
regressed or are flaky.

Thread-safety: a command-line entry point.
"""

from __future__ import annotations

import sys
from pathlib import Path

from harness.cli_args import ArgumentParser, positive_int

EXIT_BAD_ARGUMENTS = 254


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="logquake campaign", description="Run fault campaigns and read their trends.")
    sub = p.add_subparsers(dest="command", required=True, metavar="run|trends")
    run = sub.add_parser("run", help="run (or resume) a campaign file", description=__doc__.split("\n\n")[0])
    run.add_argument("file", nargs="?", metavar="FILE.toml", help="the campaign file (see campaigns/*.toml)")
    run.add_argument("--store", default="store", help="store directory (default %(default)s)")
    run.add_argument("--resume", metavar="DIR", help="continue the campaign in DIR (STORE/campaigns/NAME/TIME)")
    run.add_argument("--new", action="store_true", help="start afresh even when an unfinished campaign of this "
                                                         "file exists (default: resume it when asked on a terminal)")
    run.add_argument("--parallel", type=positive_int, default=1,
                     help="runs at once, local backend only, at most one per core (default %(default)s)")
    run.add_argument("--rerun-unknown", type=int, default=0, metavar="N",
                     help="run a job whose verdict is unknown again, up to N times, keeping every attempt")
    trends = sub.add_parser("trends", help="verdicts of every cell night by night; regressed and flaky cells")
    trends.add_argument("store", nargs="?", default="store", help="store directory (default %(default)s)")
    trends.add_argument("--name", default=None, help="campaign name (default: every campaign in the store)")
    trends.add_argument("--out", default=None, metavar="FILE.html",
                        help="where to write the page (default STORE/campaigns/NAME/trends.html)")
    for parser in (run, trends):
        parser.error = p.error  # bad flags exit 254 like every logquake command
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        return _run(args)
    return _trends(args)


def _run(args) -> int:
    import json

    from harness.campaign import CampaignError, load_campaign, run_campaign, unfinished

    if args.rerun_unknown < 0:
        return _bad(f"--rerun-unknown {args.rerun_unknown}: must be 0 or more")
    if args.resume:
        directory = Path(args.resume)
        if not (directory / "plan.json").is_file():
            return _bad(f"--resume {args.resume}: no campaign there (no plan.json)")
        plan = json.loads((directory / "plan.json").read_text())
        try:
            campaign = load_campaign(plan["campaign_file"], store=str(directory.parent.parent.parent))
        except CampaignError:
            campaign = None  # the file changed or is gone: the plan alone is enough to resume
        store = str(directory.parent.parent.parent)
    else:
        if not args.file:
            return _bad("campaign run needs a campaign FILE.toml, or --resume DIR")
        try:
            campaign = load_campaign(args.file, store=args.store)
        except CampaignError as e:
            return _bad(str(e))
        store = args.store
        directory = None
        left = unfinished(store, campaign.name)
        if left is not None and not args.new:
            if sys.stdin.isatty():
                answer = input(f"an unfinished campaign {campaign.name} is in {left}; resume it? [Y/n] ").strip()
                directory = left if answer.lower() in ("", "y", "yes") else None
            else:
                print(f"note: an unfinished campaign {campaign.name} is in {left}; starting a new one "
                      f"(resume that one with --resume {left})", flush=True)
    if campaign is None and directory is None:
        return _bad("nothing to run")
    code, _ = run_campaign(campaign, store, directory=directory, parallel=args.parallel,
                           rerun_unknown=args.rerun_unknown, out=lambda line: print(line, flush=True))
    return code


def _trends(args) -> int:
    from harness.campaign import analyze_trends, load_summaries
    from reports.campaign import trends_html

    root = Path(args.store) / "campaigns"
    names = [args.name] if args.name else sorted(p.name for p in root.glob("*") if p.is_dir()) if root.is_dir() else []
    if not names:
        return _bad(f"no campaigns in {root}")
    for name in names:
        summaries = load_summaries(args.store, name)
        if not summaries:
            return _bad(f"no campaign named {name!r} in {root}")
        analysis = analyze_trends(summaries, name)
        out = Path(args.out) if args.out and len(names) == 1 else root / name / "trends.html"
        out.write_text(trends_html(analysis), encoding="utf-8")
        print(f"{name}: {len(summaries)} night(s); trends in {out}")
        for cell in analysis["cells"]:
            if cell["status"] == "regressed":
                t = cell["turned"]
                print(f"  regressed: {cell['id']} on night {t['night'] + 1} ({t['started_at'][:16]}), "
                      f"commit {(t['last_valid_commit'] or '?')[:12]} -> {(t['first_invalid_commit'] or '?')[:12]}")
            elif cell["status"] == "flaky":
                print(f"  flaky: {cell['id']} (both verdicts on {', '.join(c[:12] for c in cell['flaky_commits'])})")
    return 0


def _bad(message: str) -> int:
    sys.stderr.write(f"logquake campaign: {message}\n")
    return EXIT_BAD_ARGUMENTS
