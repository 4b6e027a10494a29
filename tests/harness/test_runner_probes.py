"""A run whose kills never hold is UNKNOWN: three real brokers, and a node supervisor that restarts a node
the moment it is killed ("someone else" restarting it). The kill's probe finds the node running and its
port answering; the run's verdict says which kill did not land."""

from __future__ import annotations

import pytest

from harness.backends.local import LocalCluster
from harness.run_command import build_run
from harness.spec import RunSpec
from harness.system import logquake_broker

pytestmark = pytest.mark.slow

KILL_N2 = [{"at_s": 2, "package": "kill", "f": "kill", "target": "n2"},
           {"at_s": 5, "package": "kill", "f": "start"}]


class RestartedBySomeoneElse(LocalCluster):
    def kill(self, node):
        super().kill(node)
        self.start(node)
        self.wait_ready([node])


def test_a_run_whose_kill_never_holds_is_unknown_and_names_it(tmp_path):
    spec = RunSpec(nodes=3, nemesis=("kill",), schedule=tuple(KILL_N2), time_limit_s=7, store=str(tmp_path),
                   rate=50, concurrency=2)
    run = build_run(spec)
    run.control = RestartedBySomeoneElse(logquake_broker({}, 3), 3)
    outcome = run.run()
    assert outcome.valid == "unknown", outcome.message
    faults = outcome.results["faults"]
    assert faults["never_landed"] == ["kill"] and faults["unconfirmed"][0]["f"] == "kill"
    assert "n2: running" in faults["unconfirmed"][0]["checks"][0]
    assert "faults of kind kill never landed" in outcome.message


def test_a_run_whose_cluster_never_starts_ends_as_a_crash_with_its_reason(tmp_path):
    # no ledger is written before the cluster is up: teardown and the verdict must not trip over its absence
    system = tmp_path / "dead.toml"
    system.write_text('name = "dead"\nstart = "{python} -c \\"raise SystemExit(3)\\""\nready_timeout_s = 10\n')
    run = build_run(RunSpec(system=str(system), nodes=1, nemesis=(), time_limit_s=2, store=str(tmp_path / "s")))
    outcome = run.run()
    assert outcome.exit_code == 255 and outcome.results["reason"] == "crashed", outcome.message
    assert "AttributeError" not in outcome.message and "n1 exited with status 3 while starting" in outcome.message
    assert run.ledger is None
