"""Helpers for end-to-end runs of `logquake test` as a real subprocess.

The `backend` fixture runs a test once per backend: `local`, and `docker`
(marked docker and slow, so only `--all` runs it; the node image is built once
per session when missing).
"""

import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from harness.backends.local import RUN_ROOT

BACKENDS = [
    pytest.param("local", id="local"),
    pytest.param("docker", id="docker", marks=[pytest.mark.docker, pytest.mark.slow]),
]


@pytest.fixture(scope="session")
def docker_node_image():
    """The node image (and the base image), built when missing: `python -m pytest --all` works on a fresh machine."""
    from harness.docker_command import docker_client, ensure_node_image

    return ensure_node_image(docker_client())


@pytest.fixture(params=BACKENDS)
def backend(request):
    if request.param == "docker":
        request.getfixturevalue("docker_node_image")
    return request.param


def run_logquake(args, timeout_s=600, **kwargs):
    """Run `logquake ARGS` to its end; one that overstays `timeout_s` fails the test with every thread's stack."""
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGUSR1)  # harness.cli registers faulthandler on it
        try:
            out, err = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            out, err = "", ""
        proc.kill()
        more_out, more_err = proc.communicate()
        pytest.fail(f"logquake {' '.join(args)} did not end within {timeout_s} s; its stacks and output:\n"
                    f"{(err + more_err)[-20000:]}\n{(out + more_out)[-3000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def leftovers_of(pid: int, backend: str = "local") -> dict:
    """Processes and run directories (with docker: also containers and networks) a harness process `pid` left behind."""
    tag = f"run-{pid}-"
    procs = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if tag in cmdline:
            procs.append((int(entry.name), cmdline))
    dirs = sorted(str(p) for p in RUN_ROOT.glob(f"{tag}*")) if RUN_ROOT.is_dir() else []
    if backend != "docker":
        return {"processes": procs, "dirs": dirs}
    return {"processes": procs, "dirs": dirs, "docker": docker_leftovers_of(pid)}


def docker_leftovers_of(pid: int) -> list[str]:
    """Containers and networks labelled as owned by harness process `pid` on this host."""
    from harness.backends.docker import LABEL_OWNER
    from harness.docker_command import docker_client

    client = docker_client()
    label = f"{LABEL_OWNER}={socket.gethostname()}:{pid}"
    return ([f"container {c.name}" for c in client.containers.list(all=True, filters={"label": label})]
            + [f"network {n.name}" for n in client.networks.list(filters={"label": label})])


@pytest.fixture
def store(tmp_path):
    return tmp_path / "store"
