"""DockerCluster.exec names an exited container (with its last output) when the container runtime could not
start a command in it, instead of the runtime's "write init-p: broken pipe". The Docker engine is replaced
here by a scripted `_exec_once`: what is under test is the rule around it; the real engine is exercised in
test_docker_backend.py."""

from __future__ import annotations

import pytest

from harness.backends.docker import DockerCluster, _exec_never_started
from nodecontrol.control import ExecResult, NodeControlError

NOT_STARTED = ExecResult(126, "OCI runtime exec failed: exec failed: unable to start container process: "
                              "error writing config to pipe: write init-p: broken pipe: unknown", "")


def scripted(result, running):
    cluster = DockerCluster.__new__(DockerCluster)
    cluster._exec_once = lambda node, command, timeout_s: result
    cluster.is_running = lambda node: running
    cluster._tail = lambda node: "No module named 'nodecontrol'"
    return cluster


def test_an_exited_container_is_named_with_its_last_output():
    with pytest.raises(NodeControlError, match="(?s)has exited.*No module named 'nodecontrol'"):
        scripted(NOT_STARTED, running=False).exec("n1", ["true"])


def test_a_running_container_s_result_is_returned_as_it_is():
    assert scripted(NOT_STARTED, running=True).exec("n1", ["true"]) == NOT_STARTED
    failed = ExecResult(126, "", "sh: permission denied")
    assert scripted(failed, running=False).exec("n1", ["x"]) == failed


@pytest.mark.parametrize("result, expected", [
    (NOT_STARTED, True),
    (ExecResult(126, "", "OCI runtime exec failed: error executing setns process: exit status 1"), True),
    (ExecResult(1, "OCI runtime exec failed", ""), False),
    (ExecResult(126, "", "cannot execute binary file"), False),
])
def test_which_results_count_as_never_started(result, expected):
    assert _exec_never_started(result) is expected
