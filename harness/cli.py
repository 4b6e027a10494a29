"""The `logquake` command line.

Subcommands:

- `logquake test ...`: run fault tests (see `logquake test --help`).
- `logquake cluster up|status`: a local cluster in the foreground, and its state.
- `logquake serve [STORE]`: browse stored runs in a web browser.
- `logquake broker ...`: run one broker node (the same as `python -m broker`).
- `logquake check FILE...`: check recorded histories (see `logquake check --help`).
- `logquake docker base|build`: the images of the Docker backend (see `logquake docker --help`).
- `logquake campaign run|trends`: a matrix of fault tests from a TOML file, and trends across nights.
- `logquake scorecard`: the detection rate of every planted bug under the default fault mix.
- `logquake replay RUN_DIR`: a stored run again, with its seed and fault schedule (by role or by node).
- `logquake shrink RUN_DIR`: delta debugging over a failing run's faults and settings.
- `logquake heal [STORE]`: undo what harnesses that died left in effect.
- `logquake sim ...`: the real broker code under deterministic simulation, one or many seeds.

Each subcommand lives in its own module; this file only dispatches, so that
`logquake --help` stays cheap and a broken optional part cannot break the rest.
The broker runs in its own interpreter (`python -m broker`): the harness never
imports broker internals.
"""

from __future__ import annotations

import faulthandler
import io
import os
import signal
import sys

USAGE = """usage: logquake <command> [options]

commands:
  test      run a fault test:  logquake test [--workload queue --delivery at-least-once --nemesis partition,kill,pause ...]
  cluster   run a local cluster:  logquake cluster up --nodes 3  |  logquake cluster status --bootstrap host:port
  serve     browse the store:  logquake serve [STORE] [--port 8080]
  broker    run one broker node:  logquake broker --config server.properties [--override key=value ...]
  check     check recorded histories:  logquake check FILE [FILE ...] [--checker ...]
  docker    build the Docker backend's images:  logquake docker base [--force]  |  logquake docker build
  campaign  run a matrix of fault tests:  logquake campaign run campaigns/smoke.toml  |  logquake campaign trends
  scorecard how often the default faults catch each planted bug:  logquake scorecard [--seeds 10]
  replay    run a stored test again, same seed and faults:  logquake replay store/latest [--times 3] [--by node]
  shrink    the smallest schedule that still fails:  logquake shrink store/latest [--budget 30m] [--tries 3]
  heal      undo what a killed harness left in effect (rules, paused nodes, mounts):  logquake heal [STORE]
  sim       the real broker under deterministic simulation:  logquake sim --seed 1 [--seeds 10] [--duration 30s]

Run `logquake <command> --help` for the options of one command; `logquake --version` for the version.
"""

EXIT_BAD_ARGUMENTS = 254
EXIT_INTERRUPTED = 130
EXIT_CRASH = 255  # the exit status of a crash of logquake itself, for every command (1 means INVALID)


def _run_broker(argv: list[str]) -> int:
    os.execv(sys.executable, [sys.executable, "-m", "broker", *argv])
    return 255  # not reached


def _command(module: str):
    """The entry point `main(argv)` of `harness.<module>`, imported only when its command runs."""
    def run(argv: list[str]) -> int:
        import importlib

        return importlib.import_module(f"harness.{module}").main(argv)
    return run


COMMANDS = {
    "test": _command("run_command"),
    "cluster": _command("cluster_command"),
    "serve": _command("serve_command"),
    "broker": _run_broker,
    "check": _command("check_command"),
    "docker": _command("docker_command"),
    "campaign": _command("campaign_command"),
    "scorecard": _command("scorecard_command"),
    "replay": _command("replay_command"),
    "shrink": _command("shrink_command"),
    "heal": _command("heal_command"),
    "sim": _command("sim_command"),
}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0
    if args[0] in ("--version", "version"):
        from harness.campaign import project_version

        v = project_version()
        sys.stdout.write(f"logquake {v['version'] or '(not installed)'}"
                         + (f" (git {v['commit'][:12]})" if v["commit"] else "") + "\n")
        return 0
    command, rest = args[0], args[1:]
    # `kill -USR1 <pid>` prints every thread's stack to stderr: how to see where a
    # stuck run is stuck (the e2e tests do it before killing a run that overstays).
    try:
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    except (io.UnsupportedOperation, AttributeError, ValueError):
        pass  # stderr is no file (called in-process with captured output): no stack dumps then
    # A shell starts background jobs (`cmd &`, nohup, many init scripts) with SIGINT ignored, and Python keeps
    # it so: a campaign's SIGINT to its runs, or `kill -INT`, would then go unheard and a run could not stop
    # cleanly. Every logquake command stops cleanly on SIGINT, so it listens to it wherever it was started.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    runner = COMMANDS.get(command)
    if runner is None:
        sys.stderr.write(f"logquake: unknown command {command!r}; expected one of: {', '.join(COMMANDS)}\n\n{USAGE}")
        return EXIT_BAD_ARGUMENTS
    try:
        return runner(rest)
    except KeyboardInterrupt:
        sys.stderr.write("logquake: interrupted\n")
        return EXIT_INTERRUPTED
    except Exception:  # a bug of ours: never let Python's exit status 1 pass for an INVALID verdict
        import traceback

        sys.stderr.write(f"logquake {command}: internal error (a bug of logquake; please report it with this "
                         f"trace):\n{traceback.format_exc()}")
        return EXIT_CRASH


if __name__ == "__main__":
    sys.exit(main())
