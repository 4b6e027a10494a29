"""Another broker through `--system FILE.toml`: our own, described as if it were foreign.

`docs/systems/logquake-as-foreign.toml` starts each node from its command line only (`python -m broker
--config FILE`, the file written from the description's [files]), with broker ids 101-103, two listeners per
node (clients, and replication with the Raft quorum, each behind its own proxy port) and a readiness command
of its own. Role-targeted kills (the leader, the leader of a key, the active controller) must find their
node through the Kafka protocol and the description's ids, on the queue and on the pipeline workload; a
description whose ids are wrong must say so with the fault instead of aiming it at nobody. Secured as its
[security] table says (`--security sasl-scram-tls`, ACLs enforced), it stays VALID under kills and the run's
store holds neither password nor private key.
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


def test_a_described_broker_secured_with_sasl_scram_tls_under_kills_is_valid_and_its_store_holds_no_secret(
        tmp_path, monkeypatch):
    """`--security sasl-scram-tls` on the described broker: its [security] table and placeholders give it the run's
    certificate and, through a [files] text, its users; the harness grants the queue's ACLs as logquake-admin. The
    run is built in this process (as `logquake test` does) so the test learns the passwords and greps every file of
    the run's store for them and for a PEM private key."""
    import random

    from harness import security as security_module
    from harness.backends import local
    from harness.run_command import build_run
    from harness.spec import RunSpec

    made = []
    real_create = security_module.ClusterSecurity.create.__func__

    def remembered(cls, *args, **kwargs):
        made.append(real_create(cls, *args, **kwargs))
        return made[-1]

    monkeypatch.setattr(local.ClusterSecurity, "create", classmethod(remembered))
    seed = random.SystemRandom().randrange(2**31)
    spec = RunSpec(system=str(DESCRIPTION), security="sasl-scram-tls", nemesis=("kill",), time_limit_s=20.0,
                   nemesis_interval_s=5.0, rate=100.0, concurrency=4, seed=seed, store=str(tmp_path / "store"))
    outcome = build_run(spec.resolve()).run()
    assert outcome.valid is True, f"seed {seed}: {outcome.message}"

    [secrets] = made
    assert secrets.password and secrets.admin_password and not secrets.directory.exists()
    run_dir = outcome.run_dir
    files = [path for path in run_dir.rglob("*") if path.is_file()]
    assert {"test.json", "history.jsonl", "harness.log", "broker.log", "stdout.log"} <= {p.name for p in files}
    for path in files:
        data = path.read_bytes()
        assert secrets.password.encode() not in data, f"the password is in {path}"
        assert secrets.admin_password.encode() not in data, f"the admin password is in {path}"
        assert b"PRIVATE KEY" not in data, f"a private key is in {path}"
    assert "[secret] instead" not in (run_dir / "harness.log").read_text()  # the broker logged no password

    test = json.loads((run_dir / "test.json").read_text())
    assert test["security"]["security.protocol"] == "SASL_SSL" and test["security"]["super.users"] == \
        "User:logquake-admin"
    assert [g["operation"] for g in test["security"]["acls"]] == ["DESCRIBE", "READ", "WRITE"]
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    assert {"kill", "start"} <= {op["f"] for op in history if op["process"] == "nemesis"}, f"seed {seed}"
    assert sum(op["type"] == "ok" for op in history) > 100
    logs = "".join((run_dir / "nodes" / node / "broker.log").read_text() for node in ("n1", "n2", "n3"))
    assert "authenticated with SCRAM-SHA-512 as User:logquake\n" in logs
    assert "authenticated with SCRAM-SHA-512 as User:logquake-admin\n" in logs
