"""Another broker through `--system FILE.toml`: our own, described as if it were foreign.

`docs/systems/logquake-as-foreign.toml` starts each node from its command line only (`python -m broker
--config FILE`, the file written from the description's [files]), with broker ids 101-103, two listeners per
node (clients, and replication with the Raft quorum, each behind its own proxy port) and a readiness command
of its own. Role-targeted kills (the leader, the leader of a key, the active controller) must find their
node through the Kafka protocol and the description's ids, on the queue and on the pipeline workload; a
description whose ids are wrong must say so with the fault instead of aiming it at nobody.
"""

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import run_logquake
from tests.e2e.detection import fresh_seed

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DESCRIPTION = Path(__file__).parents[2] / "docs" / "systems" / "logquake-as-foreign.toml"

LEADER_KILLS = """
[[event]]
at_s = 4
package = "kill"
f = "kill"
target = "leader"
[[event]]
at_s = 9
package = "kill"
f = "start"
[[event]]
at_s = 14
package = "kill"
f = "kill"
target = "leader-of:1"
[[event]]
at_s = 19
package = "kill"
f = "start"
[[event]]
at_s = 23
package = "kill"
f = "kill"
target = "controller"
[[event]]
at_s = 27
package = "kill"
f = "start"
"""


def _run(tmp_path, system: Path, schedule: str, *args: str, time_limit: str = "30"):
    seed = fresh_seed()
    (tmp_path / "schedule.toml").write_text(schedule)
    store = tmp_path / "store"
    out = run_logquake(["test", "--system", str(system), "--nodes", "3", "--schedule", str(tmp_path / "schedule.toml"),
                        "--time-limit", time_limit, "--seed", str(seed), "--store", str(store), "--quiet", *args],
                       timeout_s=400)
    run = (store / "latest").resolve()
    return seed, out, run


def _kills(run: Path) -> list:
    """The completion of every kill fault in the history: what it hit, or its error."""
    ops = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    return [op["value"] for op in ops if op["process"] == "nemesis" and op["f"] == "kill"
            and ("killed" in op["value"] or "error" in op["value"])]


def _assert_every_role_kill_landed(seed, out, run, store_name: str) -> None:
    assert out.returncode == 0, f"seed {seed}: exit {out.returncode}\n{out.stdout}\n{out.stderr[-3000:]}"
    assert run.parent.name == store_name  # the system's name keeps its runs apart from our broker's
    kills = _kills(run)
    assert len(kills) == 3 and all(len(k.get("killed", [])) == 1 and k["probe"]["confirmed"] for k in kills), \
        f"seed {seed}: {kills}"
    test = json.loads((run / "test.json").read_text())
    assert test["options"]["system_description"]["node_id"] == "{index + 100}"
    assert test["system"]["version"].startswith("logquake ") and test["system"]["volatile_storage"] is False
    assert (run / "nodes" / "n1" / "broker.log").stat().st_size > 0  # the description's log_file was collected


def test_leader_kills_on_the_queue_workload_land_on_the_leader_of_a_described_broker(tmp_path):
    seed, out, run = _run(tmp_path, DESCRIPTION, LEADER_KILLS)
    _assert_every_role_kill_landed(seed, out, run, "queue-at-least-once-kill-logquake-described")
    workload = json.loads((run / "results.json").read_text())["workload"]
    assert workload["valid"] is True and workload["stats"]["messages"] > 500, f"seed {seed}"


def test_leader_kills_on_the_pipeline_workload_land_on_the_leader_of_a_described_broker(tmp_path):
    seed, out, run = _run(tmp_path, DESCRIPTION, LEADER_KILLS, "--workload", "pipeline")
    _assert_every_role_kill_landed(seed, out, run, "pipeline-exactly-once-kill-logquake-described")
    workload = json.loads((run / "results.json").read_text())["workload"]
    assert workload["valid"] is True and workload["stats"]["acknowledged_inputs"] > 50, f"seed {seed}"
    assert [p["status"] for p in workload["promises"]] == ["held"] * 4


def test_a_description_whose_ids_are_wrong_says_so_with_the_fault(tmp_path):
    """The brokers run with ids 201-203 while the description says 101-103: the leader is no node's."""
    wrong = tmp_path / "wrong-ids.toml"
    wrong.write_text(DESCRIPTION.read_text().replace("node.id={node_id}", "node.id={node_id + 100}")
                     .replace('peer = "{node_id}@', 'peer = "{node_id + 100}@'))
    one_kill = "[[event]]\nat_s = 3\npackage = \"kill\"\nf = \"kill\"\ntarget = \"leader\"\n"
    seed, out, run = _run(tmp_path, wrong, one_kill, "--rate", "50", time_limit="8")
    assert out.returncode in (0, 2), f"seed {seed}: exit {out.returncode}\n{out.stdout}\n{out.stderr[-3000:]}"
    kills = _kills(run)
    assert len(kills) == 1 and "killed" not in kills[0], f"seed {seed}: {kills}"
    assert "UnknownBrokerId: the cluster names broker id 20" in kills[0]["error"], kills
    assert "no node has that id (the nodes' ids: n1=101, n2=102, n3=103)" in kills[0]["error"], kills
