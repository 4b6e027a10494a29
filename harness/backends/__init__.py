"""Cluster backends, each an implementation of `nodecontrol.control.NodeControl`, found by name.

`BACKENDS[name](system, spec, nodes_file=..., accept_new_host_keys=...)` builds a backend's
cluster for a resolved `harness.spec.RunSpec`, ready to `setup()`: whatever can fail before a node
starts (no Docker daemon, an image that does not build, an SSH host that refuses us) fails here, as
a ValueError or NodeControlError with a sentence. A new backend is a module here and one entry.
Backends are imported when built, so a missing optional library breaks only its own backend.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["BACKENDS", "HEALERS"]


def _local(system, spec, **_: Any):
    from harness.backends.local import LocalCluster

    return LocalCluster(system, spec.nodes, seed=spec.seed, security=getattr(spec, "security", "none"))


def _docker(system, spec, **_: Any):
    from harness.backends.docker import DockerCluster

    control = DockerCluster(system, spec.nodes, seed=spec.seed)
    control.prepare_image()  # a missing daemon or an image that cannot be built fails here
    return control


def _ssh(system, spec, nodes_file=None, accept_new_host_keys: bool = False, **_: Any):
    from harness.backends.ssh import SshCluster

    if nodes_file is None:
        raise ValueError("--backend ssh needs --nodes-file FILE naming the hosts")
    control = SshCluster(system, nodes_file, accept_new_host_keys=accept_new_host_keys, seed=spec.seed)
    control.check_access()  # every host is reached and checked before any node starts
    return control


BACKENDS: dict[str, Callable[..., Any]] = {"local": _local, "docker": _docker, "ssh": _ssh}


def _heal_local(stale: list) -> list[str]:
    from harness.backends.local import reap_stale_runs

    return [f"run directory {d} and its processes and mounts" for d in reap_stale_runs()]


def _heal_docker(stale: list) -> list[str]:
    from harness.backends.docker import reap_stale_runs
    from harness.docker_command import DockerUnavailable, docker_client

    try:
        client = docker_client()
    except DockerUnavailable:
        return []  # no Docker engine here: nothing of ours can be running in it
    return reap_stale_runs(client)


def _heal_ssh(stale: list) -> list[str]:
    """The hosts of every nodes file a dead run of this backend named in its ledger."""
    from harness.backends.ssh import heal_hosts

    removed: list[str] = []
    for path in sorted({str(state.leftovers["nodes_file"]) for state in stale if state.leftovers.get("nodes_file")}):
        removed += heal_hosts(path)
    return removed


# What `logquake heal` (and the start of every run) calls to remove the clusters of harnesses that died: each
# gets the open ledgers of its backend's dead runs (harness.ledger.LedgerState) and returns what it removed.
# Local processes and Docker containers are found on this machine whatever the ledgers say; SSH hosts are the
# ones the ledgers' nodes files name.
HEALERS: dict[str, Callable[[list], list[str]]] = {"local": _heal_local, "docker": _heal_docker, "ssh": _heal_ssh}
