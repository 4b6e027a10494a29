"""Cluster start-up time per backend, and the fixed cost of one `logquake test` run.

For each backend (local, docker, ssh: SSH into sshd containers reached on 127.0.0.1):

1. start-up: `setup()` of a fresh N-node cluster of our broker (until every node
   answers), then until the controller accepts a topic replicated on every node
   (CreateTopics validate_only, i.e. every broker registered and unfenced), then
   `teardown()`; median and max over `--repeats` clusters. Image builds are not
   counted: the Docker images are built (when missing) before the clock starts.
2. per-test overhead: one `logquake test --nemesis none --time-limit T` as a
   subprocess; its wall time minus T is what every test pays besides its
   workload (interpreter start, setup, recovery, final reads, checking, the
   report, teardown).

    python bench/startup.py [--nodes 3] [--repeats 3] [--time-limit 5] [--backends local,docker]

It prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nodecontrol.control import NodeControl  # noqa: E402
from harness.system import logquake_broker  # noqa: E402


def _local(nodes: int) -> NodeControl:
    from harness.backends.local import LocalCluster

    return LocalCluster(logquake_broker(None, nodes), nodes)


def _docker(nodes: int) -> NodeControl:
    from harness.backends.docker import DockerCluster

    control = DockerCluster(logquake_broker(None, nodes), nodes)
    control.prepare_image()  # built before the clock starts
    return control


_ssh_args = ["--backend", "ssh"]  # --nodes-file is added once the containers run
_ssh_containers: dict[int, str] = {}  # nodes -> nodes file of running sshd containers


def _ssh(nodes: int) -> NodeControl:
    """SSH into N sshd containers on 127.0.0.1 (tests/harness/test_ssh_cluster.py starts them, once per run of
    this script, and they are removed at exit); the project is installed on them before the clock starts."""
    import atexit

    from harness.backends.ssh import SshCluster
    from harness.nodes_file import load_nodes_file

    if nodes not in _ssh_containers:
        from tests.harness.test_ssh_cluster import start_ssh_containers

        started = time.monotonic()
        key_dir = Path(tempfile.mkdtemp(prefix="bench-ssh-"))  # the containers' key pair and nodes file
        atexit.register(shutil.rmtree, key_dir, True)
        nodes_file, _, cleanup, _ = start_ssh_containers(key_dir, count=nodes)
        atexit.register(cleanup)
        _ssh_containers[nodes] = str(nodes_file)
        _ssh_args[2:] = ["--nodes-file", str(nodes_file)]
        sys.stderr.write(f"ssh: {nodes} sshd containers up in {time.monotonic() - started:.1f} s (not counted)\n")
    control = SshCluster(logquake_broker(None, nodes), load_nodes_file(_ssh_containers[nodes]))
    started = time.monotonic()
    control.prepare()  # connect, upload and install before the clock starts, as images are built for docker
    sys.stderr.write(f"ssh: hosts checked and project installed (or found) in {time.monotonic() - started:.1f} s "
                     "(not counted)\n")
    return control


# name -> (a fresh, not yet set up cluster of N nodes; extra `logquake test` arguments)
BACKENDS: dict[str, tuple[Callable[[int], NodeControl], list[str]]] = {
    "local": (_local, ["--backend", "local"]),
    "docker": (_docker, ["--backend", "docker"]),
    "ssh": (_ssh, _ssh_args),
}


def wait_formed(bootstrap: str, nodes: int, timeout_s: float = 120.0) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap, "logger": logging.getLogger("librdkafka")})
    probe = NewTopic("bench-formation-probe", num_partitions=1, replication_factor=nodes)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin.create_topics([probe], validate_only=True, request_timeout=5)[probe.topic].result(10)
            return
        except Exception as e:  # not formed yet
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster did not form within {timeout_s} s: {e}") from e
            time.sleep(0.05)


def startup(name: str, nodes: int, repeats: int) -> dict[str, list[float]]:
    make, _ = BACKENDS[name]
    figures: dict[str, list[float]] = {"setup": [], "formed": [], "teardown": []}
    for _ in range(repeats):
        control = make(nodes)
        started = time.monotonic()
        try:
            control.setup()
            figures["setup"].append(time.monotonic() - started)
            wait_formed(control.bootstrap_servers(), nodes)
            figures["formed"].append(time.monotonic() - started)
        finally:
            stopping = time.monotonic()
            control.teardown()
            figures["teardown"].append(time.monotonic() - stopping)
    return figures


def overhead(name: str, nodes: int, time_limit_s: float) -> tuple[float, int]:
    _, args = BACKENDS[name]
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as store:
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "harness.cli", "test", *args, "--nodes", str(nodes),
                               "--nemesis", "none", "--time-limit", str(time_limit_s), "--seed", "1",
                               "--store", store, "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=900)
        elapsed = time.monotonic() - started
    if proc.returncode != 0:
        sys.stderr.write(f"{name}: logquake test exited {proc.returncode}:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}\n")
    return elapsed - time_limit_s, proc.returncode


def _summary(values: list[float]) -> str:
    return f"median {statistics.median(values):6.2f} s  max {max(values):6.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--time-limit", type=float, default=5.0, help="workload seconds of the overhead run")
    parser.add_argument("--backends", default=",".join(BACKENDS), help=f"comma-separated, from {', '.join(BACKENDS)}")
    args = parser.parse_args()
    names = [n.strip() for n in args.backends.split(",") if n.strip()]
    unknown = [n for n in names if n not in BACKENDS]
    if unknown:
        parser.error(f"--backends names {unknown}; accepted: {', '.join(BACKENDS)}")
    print(f"cluster start-up, {args.nodes} nodes of our broker, {args.repeats} clusters per backend")
    for name in names:
        figures = startup(name, args.nodes, args.repeats)
        print(f"  {name:7s} setup     {_summary(figures['setup'])}")
        print(f"  {name:7s} formed    {_summary(figures['formed'])}   (every broker unfenced)")
        print(f"  {name:7s} teardown  {_summary(figures['teardown'])}")
    print(f"per-test overhead: logquake test --nemesis none --time-limit {args.time_limit:g}, wall time minus the "
          "time limit")
    for name in names:
        seconds, code = overhead(name, args.nodes, args.time_limit)
        print(f"  {name:7s} {seconds:6.2f} s" + ("" if code == 0 else f"   (exit status {code})"))


if __name__ == "__main__":
    main()
