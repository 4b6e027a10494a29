"""`logquake test`: run fault tests end to end and print a verdict.

The flags are generated from the declarations: the common options of
`harness.spec.COMMON_OPTIONS` and every registered workload's own options
(`workloads.core.WorkloadKind.options`), so an option cannot exist in one
place only. The flags become a `RunSpec`; `RunSpec.resolve()` checks it whole
(exit 254 with a sentence, before anything starts or is stored), and
`build_run(spec)` builds the run from the spec alone, which is what a replay
of a stored `test.json` does too.

Exit codes are Jepsen's: 0 valid, 1 invalid, 2 unknown, 254 bad arguments,
255 harness crash. With several runs (`--test-count`), the worst one wins.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import random
import sys
from pathlib import Path
from typing import Any

import nemeses
from harness.cli_args import ArgumentParser, key_value, positive_float, positive_int
from nodecontrol.control import NodeControlError
from harness.runner import EXIT_BAD_ARGUMENTS, EXIT_INVALID, EXIT_UNKNOWN, EXIT_VALID, EXIT_CRASH, FaultRun, Progress
from harness.spec import COMMON_OPTIONS, RunSpec, SpecError
from workloads.core import Option, workload_kinds

__all__ = ["build_parser", "build_run", "main", "print_summary", "spec_from_args"]

_WORKLOAD_DEST = "workload_option_"


def _argparse_type(option: Option):
    if option.kind is int:
        return positive_int
    if option.kind is float:
        return positive_float if option.name.endswith("_s") or option.name == "rate" else _number
    return str


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def _add_option(p: ArgumentParser, option: Option, dest: str, default: Any, owner: str = "") -> None:
    help_text = option.help + (f" ({owner})" if owner else "")
    if option.kind is bool:
        p.add_argument(option.flag, dest=dest, action="store_true", default=default, help=help_text)
        return
    if default is not None:
        help_text += " (default %(default)s)"
    p.add_argument(option.flag, dest=dest, type=_argparse_type(option), choices=option.choices, default=default,
                   metavar="SECONDS" if option.name.endswith("_s") else option.name.upper(), help=help_text)


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="logquake test",
        description="Start a cluster, drive it with real Kafka clients while faults fly, check the history "
                    "against the workload's promise, and write a report to the store.",
        epilog="Exit status: 0 valid, 1 invalid, 2 unknown, 254 bad arguments, 255 harness crash.",
    )
    kinds = workload_kinds()
    d = RunSpec()
    p.add_argument("--workload", choices=list(kinds), default=d.workload,
                   help="what the clients do (default %(default)s): "
                        + "; ".join(f"{name}: {kind.summary}" for name, kind in kinds.items()))
    for option in COMMON_OPTIONS:
        _add_option(p, option, option.name, getattr(d, option.name))
    owners: dict[str, list[str]] = {}
    declared: dict[str, Option] = {}
    for name, kind in kinds.items():
        for option in kind.options:
            owners.setdefault(option.name, []).append(name)
            declared[option.name] = option
    for name, option in declared.items():
        # None: not given (the workload's own default applies, and a flag of another workload is refused)
        _add_option(p, option, _WORKLOAD_DEST + name, None,
                    owner=f"workload {', '.join(owners[name])}; default {option.default}")
    p.add_argument("--nemesis", default=",".join(d.nemesis),
                   help=f"comma-separated faults from: {', '.join(nemeses.PACKAGES)}; or none (default %(default)s). "
                        "partition: network partitions; kill: SIGKILL and restart; pause: SIGSTOP/SIGCONT; "
                        "disk: a FUSE disk under log.dirs that stalls (pause-disk), fails with EIO (fail-disk) or "
                        "tears and loses un-fsynced writes at a power cut (lose-unfsynced), needs fuse3 (docker: "
                        "/dev/fuse, SYS_ADMIN); clock: wall-clock skew and strobe through libfaketime (the monotonic clock "
                        "is left true); packet: latency+jitter and loss on every link (duplicate/reorder need "
                        "--backend docker)")
    p.add_argument("--seed", type=int, default=None, help="seed of operations and fault schedule (default: random, printed)")
    p.add_argument("--nodes-file", default=None, metavar="FILE.toml",
                   help="--backend ssh: the hosts to run on, how to reach them and their addresses (TOML; see "
                        "harness/nodes_file.py); the cluster size is its number of nodes")
    p.add_argument("--accept-new-host-keys", action="store_true",
                   help="--backend ssh: accept hosts whose key is not in known_hosts, save their keys and log the "
                        "fingerprints (default: refuse them)")
    p.add_argument("--store", default=d.store, help="store directory (default %(default)s)")
    p.add_argument("--system", default=None, metavar="FILE.toml", help="test another Kafka-compatible broker described by this TOML file: its start command, ids, "
                        "ports, quorum, files and hooks (README: Testing another broker; default: ours)")
    p.add_argument("--broker-override", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                   help="broker property passed to every node (repeatable; our broker only)")
    p.add_argument("--test-count", type=positive_int, default=1, help="run the test this many times (seeds seed, seed+1, ...)")
    p.add_argument("--name", default=None, help="test name in the store (default: workload-delivery-faults)")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.add_argument("--schedule", default=None, metavar="FILE.json|FILE.toml",
                   help="run this fault schedule instead of one decided by the seed: a JSON list of events (the "
                        "format of a run's schedule.json) or TOML [[event]] tables, each with at_s, package, f and "
                        "optionally target (a role, leader-of:KEY, a node n2 or nodes:n1,n3), shape and pick; the "
                        "fault kinds are the packages it uses")
    p.add_argument("--spec", default=None, metavar="FILE.json",
                   help="run the test a JSON file describes: a stored run's test.json or a RunSpec's fields "
                        "(harness/spec.py); only --store, --seed, --quiet and --test-count may go with it")
    return p


# the flags that may go with --spec (everything else is in the spec)
_WITH_SPEC = ("--spec", "--store", "--seed", "--quiet", "--test-count")


def load_schedule(path: str) -> tuple[dict[str, Any], ...]:
    """The events of a schedule file (JSON list, or TOML with [[event]] tables); SpecError names the problem."""
    import json
    import tomllib

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise SpecError(f"--schedule {path}: cannot read it ({e.strerror})") from None
    try:
        if path.endswith(".toml"):
            events = tomllib.loads(text).get("event")
        else:
            events = json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as e:
        raise SpecError(f"--schedule {path} is not valid {'TOML' if path.endswith('.toml') else 'JSON'}: {e}") from None
    if not isinstance(events, list):
        raise SpecError(f"--schedule {path}: expected a list of events ({'[[event]] tables' if path.endswith('.toml') else 'a JSON array'})")
    return tuple(events)


def spec_from_file(path: str, argv: list[str], args: argparse.Namespace) -> RunSpec:
    """The spec in `path`, with --store and --seed applied when given; SpecError names what is wrong."""
    import json

    extra = sorted({a.split("=")[0] for a in argv if a.startswith("--") and a.split("=")[0] not in _WITH_SPEC})
    if extra:
        raise SpecError(f"--spec {path} describes the whole run; {', '.join(extra)} cannot go with it")
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise SpecError(f"--spec {path}: cannot read it ({e.strerror})") from None
    except ValueError as e:
        raise SpecError(f"--spec {path} is not JSON: {e}") from None
    if isinstance(document, dict) and "options" in document:
        spec = RunSpec.from_test_json(document)
    elif isinstance(document, dict):
        spec = RunSpec.from_json(document)
    else:
        raise SpecError(f"--spec {path} does not hold a JSON object")
    changes: dict[str, Any] = {}
    if any(a.split("=")[0] == "--store" for a in argv):
        changes["store"] = args.store
    if args.seed is not None:
        changes["seed"] = args.seed
    return dataclasses.replace(spec, **changes)


def spec_from_args(args: argparse.Namespace, seed: int) -> RunSpec:
    """The run the flags describe (not resolved yet)."""
    workload_options = {name[len(_WORKLOAD_DEST):]: value for name, value in vars(args).items()
                        if name.startswith(_WORKLOAD_DEST) and value is not None}
    common = {option.name: getattr(args, option.name) for option in COMMON_OPTIONS}
    return RunSpec(workload=args.workload, workload_options=workload_options,
                   nemesis=tuple(nemeses.parse_names(args.nemesis)), seed=seed,
                   schedule=load_schedule(args.schedule) if args.schedule else None,
                   nodes_file=str(Path(args.nodes_file).resolve()) if args.nodes_file else None,
                   system=args.system, broker_overrides=dict(args.broker_override), store=args.store, name=args.name,
                   **common)


def spec_to_argv(spec: RunSpec, schedule_path: str | None = None) -> list[str]:
    """The `logquake test` flags that describe `spec` (a resolved one): `spec_from_args` of them gives it back.

    A schedule is passed as `schedule_path`, a file holding `spec.schedule` (flags cannot hold events)."""
    argv = ["--workload", spec.workload]
    defaults = RunSpec()
    for option in COMMON_OPTIONS:
        value = getattr(spec, option.name)
        if option.kind is bool:
            if value:
                argv.append(option.flag)
        elif value is not None and (value != getattr(defaults, option.name) or option.name == "delivery"):
            argv += [option.flag, f"{value:g}" if isinstance(value, float) else str(value)]
    for name, value in spec.workload_options.items():
        option = next(o for o in spec.workload_kind().options if o.name == name)
        if option.kind is bool:
            if value:
                argv.append(option.flag)
        elif value is not None:
            argv += [option.flag, f"{value:g}" if isinstance(value, float) else str(value)]
    if spec.schedule is not None:
        if schedule_path is None:
            raise ValueError("a spec with a schedule needs the schedule's file to be described as flags")
        argv += ["--schedule", schedule_path]
    else:
        argv += ["--nemesis", ",".join(spec.nemesis) or "none"]
    argv += ["--seed", str(spec.seed)]
    for key, value in spec.broker_overrides.items():
        argv += ["--broker-override", f"{key}={value}"]
    for flag, value in (("--system", spec.system), ("--nodes-file", spec.nodes_file), ("--name", spec.name)):
        if value is not None:
            argv += [flag, value]
    if spec.store != defaults.store:
        argv += ["--store", spec.store]
    return argv


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging()
    nodes_file = None
    if args.backend == "ssh" and args.nodes_file:
        from harness.nodes_file import NodesFileError, load_nodes_file

        try:
            nodes_file = load_nodes_file(args.nodes_file)
        except NodesFileError as e:
            return _bad(str(e))
        explicit_nodes = any(a == "--nodes" or a.startswith("--nodes=") for a in argv)
        if explicit_nodes and args.nodes != len(nodes_file.nodes):
            return _bad(f"--nodes {args.nodes} but the nodes file {args.nodes_file} names {len(nodes_file.nodes)} "
                        "node(s); with --backend ssh the nodes file sets the cluster size (drop --nodes)")
        args.nodes = len(nodes_file.nodes)
    try:  # everything is checked before anything starts or is stored
        if args.spec:
            spec = spec_from_file(args.spec, argv, args).resolve()
        else:
            spec = spec_from_args(args, args.seed if args.seed is not None else random.randrange(1 << 31)).resolve()
    except (SpecError, ValueError) as e:
        return _bad(str(e))
    seed = spec.seed
    worst = EXIT_VALID
    for i in range(args.test_count):
        this = dataclasses.replace(spec, seed=seed + i)
        try:
            run = build_run(this, progress=Progress(enabled=not args.quiet), nodes_file=nodes_file,
                            accept_new_host_keys=args.accept_new_host_keys)
        except (ValueError, NodeControlError) as e:
            return _bad(str(e))
        except KeyboardInterrupt:
            # e.g. while the Docker image builds: nothing has started, nothing is left to clean
            sys.stderr.write("logquake test: interrupted before the test started; nothing ran\n")
            return EXIT_UNKNOWN
        print(f"logquake test: {this.store_name()} seed {this.seed}, {this.nodes} node(s), "
              f"{this.time_limit_s:g} s, faults: {', '.join(this.nemesis) or 'none'}", flush=True)
        outcome = run.run()
        print_summary(outcome)
        worst = _worse(worst, outcome.exit_code)
    return worst


def _bad(message: str) -> int:
    sys.stderr.write(f"logquake test: {message}\n")
    return EXIT_BAD_ARGUMENTS


def _configure_logging() -> None:
    """Warnings of the harness on stderr; everything, client libraries included, in the run's harness.log."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.addFilter(lambda record: not record.name.startswith(("librdkafka", "kafka")))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.WARNING)


def _worse(a: int, b: int) -> int:
    order = [EXIT_VALID, EXIT_UNKNOWN, EXIT_INVALID, EXIT_CRASH]
    return max(a, b, key=lambda c: order.index(c) if c in order else len(order))


def build_run(spec: RunSpec, progress: Progress | None = None, nodes_file=None,
              accept_new_host_keys: bool = False) -> FaultRun:
    """Assemble a run from its spec (resolved here if it is not); ValueError or NodeControlError name a problem.

    Every part comes from a registry by name: the workload (`workloads.core.workload_kinds`), the backend
    (`harness.backends.BACKENDS`), the nemeses (`nemeses.PACKAGES`) and the system (ours, or a TOML file).
    For --backend ssh, `nodes_file` (harness.nodes_file.NodesFile) names the hosts; when not given it is
    read from `spec.nodes_file`.
    """
    from harness.backends import BACKENDS
    from harness.system import logquake_broker, refuse_faults_that_cannot_land, system_from_description
    from harness.targets import MetadataTargets

    spec = spec.resolve()
    if spec.system_description is not None:
        system = system_from_description(spec.system_description, spec.system or "--system")
        refuse_faults_that_cannot_land(system, spec.nemesis, spec.backend, spec.nodes)
    else:
        system = logquake_broker(spec.broker_overrides, spec.nodes)
    workload = spec.workload_kind().build(spec.workload_settings())
    if spec.backend == "ssh" and nodes_file is None:
        from harness.nodes_file import NodesFileError, load_nodes_file

        try:
            nodes_file = load_nodes_file(spec.nodes_file)
        except NodesFileError as e:
            raise ValueError(str(e)) from None
    control = BACKENDS[spec.backend](system, spec, nodes_file=nodes_file, accept_new_host_keys=accept_new_host_keys)
    nemesis = nemeses.build(list(spec.nemesis), interval_s=spec.nemesis_interval_s)
    control.enable_faults(nemeses.prepared_fault_kinds(nemesis))  # disk/clock change how nodes start
    topic = next(iter(workload.topics()), None)
    return FaultRun(spec, control, workload, nemesis,
                    targets_factory=lambda bootstrap: MetadataTargets(bootstrap, topic, control.nodes,
                                                                      node_ids=control.broker_ids()),
                    progress=progress)


def _stored_security(run_dir) -> dict | None:
    """test.json's security section of a stored run (None: a plaintext run, or none stored)."""
    try:
        security = json.loads((run_dir / "test.json").read_text()).get("security")
    except (TypeError, OSError, ValueError, AttributeError):
        return None
    return security if isinstance(security, dict) and "mode" in security else None


def print_summary(outcome) -> None:
    from checkers.history import describe_op_counts
    from checkers.queue.delivery import ANOMALY_ORDER

    results = outcome.results or {}
    verdict = {True: "VALID", False: "INVALID"}.get(outcome.valid, "UNKNOWN")
    delivery = results.get("delivery") if isinstance(results.get("delivery"), dict) else {}
    print(f"\nverdict: {verdict}" + (f" under {delivery['label']}" if delivery.get("label") else ""))
    if isinstance(results.get("counts"), dict):
        print(f"  {describe_op_counts(results['counts'])}")
    workload = results.get("workload", {}) if isinstance(results.get("workload"), dict) else {}
    stats = workload.get("stats") if isinstance(workload.get("stats"), dict) else {}
    summaries = stats.get("anomaly_summaries") or {}

    def ordered(names):
        return sorted(names, key=lambda n: (ANOMALY_ORDER.index(n) if n in ANOMALY_ORDER else len(ANOMALY_ORDER), n))

    for bucket, prefix in (("anomalies", "anomaly"), ("allowed", "allowed by the delivery mode:")):
        group = workload.get(bucket) or {}
        for name in ordered(group):
            print(f"  {prefix} {name}: {summaries.get(name) or len(group[name])}")
    if not isinstance(workload.get("anomalies"), dict):  # a checker that names no anomalies, e.g. linearizability
        for promise in workload.get("promises") or ():
            if promise.get("status") == "broken":
                print(f"  broken promise: {promise.get('promise')}: {promise.get('reason')}")
    security = _stored_security(outcome.run_dir)
    if security:
        print(f"  security: {security['mode']} ({security['security.protocol']}"
              + (f", {security['sasl.mechanism']}" if "sasl.mechanism" in security else "") + ")"
              + (f"; ACLs: {security['acls']}" if isinstance(security.get("acls"), str) else ""))
    if outcome.message and outcome.valid == "unknown":
        print(f"  {outcome.message.strip().splitlines()[-1]}")
    for err in results.get("harness_errors", []):
        print(f"  harness: {err}")
    if outcome.run_dir is not None and outcome.valid is not True:
        from reports.node_errors import node_errors

        errors = node_errors(outcome.run_dir)
        if errors:  # beside a red or unknown verdict, what the brokers said went wrong (all of it in the report)
            first = errors[0]
            more = f" (and {len(errors) - 1} more distinct line(s))" if len(errors) > 1 else ""
            print(f"  the brokers logged errors{more}; the first: {first['node']}: {first['message'][:200]}")
    if outcome.run_dir is not None:
        print(f"store: {outcome.run_dir}")
        report = outcome.run_dir / "report.html"
        if report.exists():
            print(f"report: {report}")
