"""`logquake test`: run fault tests end to end and print a verdict.

Exit codes are Jepsen's: 0 valid, 1 invalid, 2 unknown, 254 bad arguments,
255 harness crash. With several runs (`--test-count`), the worst one wins.
"""

from __future__ import annotations

import logging
import random
import sys
from pathlib import Path

import nemeses
from harness.control import NodeControlError
from harness.cli_args import ArgumentParser, key_value, positive_float, positive_int
from harness.runner import (EXIT_BAD_ARGUMENTS, EXIT_CRASH, EXIT_INVALID, EXIT_UNKNOWN, EXIT_VALID, Progress,
                            TestOptions, TestRun)
from workloads.core import DELIVERY_MODES

BACKENDS = ("local", "docker", "ssh")
WORKLOADS = ("queue",)


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="logquake test",
        description="Start a cluster, drive it with real Kafka clients while faults fly, check the history "
                    "against the delivery mode's promise, and write a report to the store.",
        epilog="Exit status: 0 valid, 1 invalid, 2 unknown, 254 bad arguments, 255 harness crash.",
    )
    d = TestOptions()
    p.add_argument("--workload", choices=WORKLOADS, default=d.workload, help="what the clients do (default %(default)s)")
    p.add_argument("--delivery", choices=DELIVERY_MODES, default=d.delivery,
                   help="delivery mode: client settings and the promise the checker holds the run to (default %(default)s)")
    p.add_argument("--nemesis", default=",".join(d.nemesis),
                   help=f"comma-separated faults from: {', '.join(nemeses.PACKAGES)}; or none (default %(default)s). "
                        "partition: network partitions; kill: SIGKILL and restart; pause: SIGSTOP/SIGCONT; "
                        "disk: a FUSE disk under log.dirs that stalls (pause-disk), fails with EIO (fail-disk) or "
                        "loses un-fsynced writes at a kill (lose-unfsynced), needs fuse3 (docker: /dev/fuse, "
                        "SYS_ADMIN); clock: wall-clock skew and strobe through libfaketime (the monotonic clock "
                        "is left true); packet: latency+jitter and loss on every link (duplicate/reorder need "
                        "--backend docker)")
    p.add_argument("--nemesis-interval", type=positive_float, default=d.nemesis_interval_s, metavar="SECONDS",
                   help="mean seconds between faults of one kind (default %(default)s)")
    p.add_argument("--nodes", type=positive_int, default=d.nodes, help="cluster size (default %(default)s)")
    p.add_argument("--time-limit", type=positive_float, default=d.time_limit_s, metavar="SECONDS",
                   help="seconds of workload under faults, before healing and final reads (default %(default)s)")
    p.add_argument("--rate", type=positive_float, default=d.rate, help="operations per second, all workers together (default %(default)s)")
    p.add_argument("--concurrency", type=positive_int, default=d.concurrency, help="worker threads, one client each (default %(default)s)")
    p.add_argument("--keys", type=positive_int, default=d.keys, help="keys (topic-partitions) the queue workload uses (default %(default)s)")
    p.add_argument("--replication-factor", type=positive_int, default=None,
                   help="replication factor of the workload topic (default: min(3, nodes))")
    p.add_argument("--min-insync-replicas", type=positive_int, default=None,
                   help="min.insync.replicas of the workload topic (default: 2 when the replication factor is at "
                        "least 3, else 1)")
    p.add_argument("--acks", choices=("0", "1", "all"), default=None,
                   help="override the producer acks of the delivery mode (e.g. 0 for at-most-once)")
    p.add_argument("--idempotent", action="store_true",
                   help="at-least-once with the idempotent producer: retries must not duplicate, and the checker "
                        "says so")
    p.add_argument("--subscribe", action="store_true",
                   help="mix subscribe ops (consumer-group membership) into the queue workload; needs a broker "
                        "with consumer groups")
    p.add_argument("--seed", type=int, default=None, help="seed of operations and fault schedule (default: random, printed)")
    p.add_argument("--backend", choices=BACKENDS, default=d.backend, help="where nodes run (default %(default)s)")
    p.add_argument("--nodes-file", default=None, metavar="FILE.toml",
                   help="--backend ssh: the hosts to run on, how to reach them and their addresses (TOML; see "
                        "harness/nodes_file.py); the cluster size is its number of nodes")
    p.add_argument("--accept-new-host-keys", action="store_true",
                   help="--backend ssh: accept hosts whose key is not in known_hosts, save their keys and log the "
                        "fingerprints (default: refuse them)")
    p.add_argument("--client", choices=("confluent", "kafka-python"), default=d.client, help="Kafka client library (default %(default)s)")
    p.add_argument("--store", default=d.store, help="store directory (default %(default)s)")
    p.add_argument("--system", default=None, metavar="FILE.toml", help="describe another Kafka-compatible broker to test (default: ours)")
    p.add_argument("--broker-override", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                   help="broker property passed to every node (repeatable; our broker only)")
    p.add_argument("--recovery-timeout", type=positive_float, default=d.recovery_timeout_s, metavar="SECONDS",
                   help="how long the cluster may take to recover after healing (default %(default)s)")
    p.add_argument("--test-count", type=positive_int, default=1, help="run the test this many times (seeds seed, seed+1, ...)")
    p.add_argument("--name", default=None, help="test name in the store (default: workload-delivery-faults)")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging()
    try:
        fault_names = nemeses.parse_names(args.nemesis)
    except ValueError as e:
        sys.stderr.write(f"logquake test: {e}\n")
        return EXIT_BAD_ARGUMENTS
    nodes_file = None
    if args.backend == "ssh" or args.nodes_file:
        from harness.nodes_file import NodesFileError, load_nodes_file

        if args.backend != "ssh" or not args.nodes_file:
            sys.stderr.write("logquake test: --backend ssh and --nodes-file FILE go together (the nodes file names "
                             f"the SSH hosts); got --backend {args.backend} and --nodes-file {args.nodes_file}\n")
            return EXIT_BAD_ARGUMENTS
        try:
            nodes_file = load_nodes_file(args.nodes_file)
        except NodesFileError as e:
            sys.stderr.write(f"logquake test: {e}\n")
            return EXIT_BAD_ARGUMENTS
        explicit_nodes = any(a == "--nodes" or a.startswith("--nodes=") for a in argv)
        if explicit_nodes and args.nodes != len(nodes_file.nodes):
            sys.stderr.write(f"logquake test: --nodes {args.nodes} but the nodes file {args.nodes_file} names "
                             f"{len(nodes_file.nodes)} node(s); with --backend ssh the nodes file sets the cluster "
                             "size (drop --nodes)\n")
            return EXIT_BAD_ARGUMENTS
        args.nodes = len(nodes_file.nodes)
    if args.system and args.broker_override:
        sys.stderr.write("logquake test: --broker-override applies to our broker only; put another broker's "
                         "settings in its --system file\n")
        return EXIT_BAD_ARGUMENTS
    seed = args.seed if args.seed is not None else random.randrange(1 << 31)
    worst = EXIT_VALID
    for i in range(args.test_count):
        options = TestOptions(
            workload=args.workload, delivery=args.delivery, nemesis=fault_names, nodes=args.nodes,
            time_limit_s=args.time_limit, rate=args.rate, concurrency=args.concurrency, seed=seed + i,
            backend=args.backend, nodes_file=str(Path(args.nodes_file).resolve()) if args.nodes_file else None,
            client=args.client, store=args.store, system=args.system,
            broker_overrides=dict(args.broker_override), nemesis_interval_s=args.nemesis_interval,
            recovery_timeout_s=args.recovery_timeout, keys=args.keys,
            replication_factor=args.replication_factor or min(3, args.nodes),
            min_insync_replicas=args.min_insync_replicas, acks=args.acks,
            idempotent=args.idempotent, subscribe=args.subscribe, name=args.name,
        )
        try:
            run = build_run(options, progress=Progress(enabled=not args.quiet), nodes_file=nodes_file,
                            accept_new_host_keys=args.accept_new_host_keys)
        except (ValueError, NodeControlError) as e:
            sys.stderr.write(f"logquake test: {e}\n")
            return EXIT_BAD_ARGUMENTS
        except KeyboardInterrupt:
            # e.g. while the Docker image builds: nothing has started, nothing is left to clean
            sys.stderr.write("logquake test: interrupted before the test started; nothing ran\n")
            return EXIT_UNKNOWN
        print(f"logquake test: {options.test_name()} seed {options.seed}, {options.nodes} node(s), "
              f"{options.time_limit_s:g} s, faults: {', '.join(fault_names) or 'none'}", flush=True)
        outcome = run.run()
        print_summary(outcome)
        worst = _worse(worst, outcome.exit_code)
    return worst


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


def build_run(options: TestOptions, progress: Progress | None = None, nodes_file=None,
              accept_new_host_keys: bool = False) -> TestRun:
    """Assemble the parts of a run from its options; ValueError names a bad option.

    For --backend ssh, `nodes_file` (harness.nodes_file.NodesFile) names the hosts, and every host is
    reached and checked here, so a bad host, key or host key fails before any node starts.
    """
    from harness.backends.local import LocalCluster
    from harness.system import SystemDescriptionError, load_system, logquake_broker
    from harness.targets import MetadataTargets
    from workloads.queue import QueueWorkload

    if options.system:
        try:
            system = load_system(options.system)
        except SystemDescriptionError as e:
            raise ValueError(str(e)) from None
    else:
        system = logquake_broker(options.broker_overrides, options.nodes)
    replication_factor = options.replication_factor or 1
    min_insync = options.min_insync_replicas or (2 if replication_factor >= 3 else 1)
    if min_insync > replication_factor:
        raise ValueError(f"--min-insync-replicas {min_insync} is larger than the replication factor "
                         f"{replication_factor}: every acks=all write would fail")
    workload = QueueWorkload(delivery=options.delivery, keys=options.keys, client=options.client,
                             replication_factor=replication_factor, acks=options.acks,
                             topic_config={"min.insync.replicas": str(min_insync)},
                             idempotent=options.idempotent, subscribe=options.subscribe)
    if options.backend == "ssh":
        control = _ssh_cluster(system, options, nodes_file, accept_new_host_keys)
    elif options.backend == "docker":
        from harness.backends.docker import DockerCluster

        # a missing daemon or an image that cannot be built fails here, before any node starts
        control = DockerCluster(system, options.nodes, seed=options.seed)
        control.prepare_image()
    else:
        control = LocalCluster(system, options.nodes, seed=options.seed)
    nemesis = nemeses.build(options.nemesis, interval_s=options.nemesis_interval_s)
    control.enable_faults(nemeses.prepared_fault_kinds(nemesis))  # disk/clock change how nodes start
    return TestRun(options, control, workload, nemesis,
                   targets_factory=lambda bootstrap: MetadataTargets(bootstrap, workload.topic, control.nodes),
                   progress=progress)


def _ssh_cluster(system, options: TestOptions, nodes_file, accept_new_host_keys: bool):
    from harness.backends.ssh import SshCluster

    if nodes_file is None:
        raise ValueError("--backend ssh needs --nodes-file FILE naming the hosts")
    control = SshCluster(system, nodes_file, accept_new_host_keys=accept_new_host_keys, seed=options.seed)
    control.check_access()
    return control


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
    if outcome.message and outcome.valid == "unknown":
        print(f"  {outcome.message.strip().splitlines()[-1]}")
    for err in results.get("harness_errors", []):
        print(f"  harness: {err}")
    if outcome.run_dir is not None:
        print(f"store: {outcome.run_dir}")
        report = outcome.run_dir / "report.html"
        if report.exists():
            print(f"report: {report}")
