"""`logquake test --security sasl-scram-tls` end to end: real brokers with a SASL_SSL client listener, real clients,
real partitions, kills and pauses (issue 20's acceptance: `--nemesis partition,kill,pause`), the real checker; and a store that holds no secret (issue 20, point 4).

The run is built and run in this process (`build_run`, as `logquake test` does), so the test can learn the run's
passwords: it keeps the `ClusterSecurity` the local backend creates (the real one, only remembered), then greps every
file of the run's store directory for both passwords and for a PEM private key.

The brokers enforce ACLs: the workload runs as `logquake` with only the ACLs the queue workload declares. After the
final reads, while the cluster is still up, the workload's user asks to create a topic and is refused
(TOPIC_AUTHORIZATION_FAILED: it is no super user); the brokers' logs show that refusal and no other, so nothing the
workload needed was refused.
"""

from __future__ import annotations

import json
import random

import pytest

from harness import runner
from harness import security as security_module
from harness.backends import local
from harness.run_command import build_run
from harness.spec import RunSpec
from workloads.client_security import client_security, confluent_settings

pytestmark = pytest.mark.e2e


def test_a_sasl_scram_tls_run_under_kill_is_valid_and_its_store_holds_no_secret(tmp_path, monkeypatch):
    made = []
    real_create = security_module.ClusterSecurity.create.__func__

    def remembered(cls, *args, **kwargs):
        security = real_create(cls, *args, **kwargs)
        made.append(security)
        return security

    monkeypatch.setattr(local.ClusterSecurity, "create", classmethod(remembered))
    refusals = []
    real_final_reads = runner.FaultRun._recover_and_final_reads

    def final_reads_then_a_request_outside_the_acls(self):
        real_final_reads(self)
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient, NewTopic

        refusals.append(client_security().username)
        admin = AdminClient(confluent_settings({"bootstrap.servers": self.control.bootstrap_servers(), "log_level": 0}))
        try:
            admin.create_topics([NewTopic("not-granted", 1, 1)], request_timeout=15)["not-granted"].result(30)
            refusals.append("created")
        except KafkaException as e:
            refusals.append(e.args[0].name())

    monkeypatch.setattr(runner.FaultRun, "_recover_and_final_reads", final_reads_then_a_request_outside_the_acls)
    store = tmp_path / "store"
    seed = random.SystemRandom().randrange(2**31)  # a correct broker is VALID whatever the schedule
    spec = RunSpec(security="sasl-scram-tls", nemesis=("partition", "kill", "pause"), time_limit_s=24.0,
                   nemesis_interval_s=5.0, rate=100.0, concurrency=4, seed=seed, store=str(store)).resolve()
    outcome = build_run(spec).run()
    assert outcome.valid is True, f"seed {seed}: {outcome.message}"

    assert len(made) == 1
    secrets = made[0]
    assert secrets.password and len(secrets.password) >= 24
    assert secrets.admin_password and len(secrets.admin_password) >= 24 and secrets.admin_password != secrets.password
    assert not secrets.directory.exists()  # removed with the cluster
    run_dir = outcome.run_dir
    files = [path for path in run_dir.rglob("*") if path.is_file()]
    assert len(files) >= 8, files
    for path in files:
        data = path.read_bytes()
        assert secrets.password.encode() not in data, f"the password is in {path}"
        assert secrets.admin_password.encode() not in data, f"the admin password is in {path}"
        assert b"PRIVATE KEY" not in data, f"a private key is in {path}"

    test = json.loads((run_dir / "test.json").read_text())
    assert test["options"]["security"] == "sasl-scram-tls"
    assert test["security"] == {
        "mode": "sasl-scram-tls", "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "logquake", "super.users": "User:logquake-admin",
        "acls": [{"resource": "GROUP", "pattern": "LITERAL", "name": "logquake-logquake-queue", "operation": "DESCRIBE"},
                 {"resource": "TOPIC", "pattern": "LITERAL", "name": "logquake-queue", "operation": "READ"},
                 {"resource": "TOPIC", "pattern": "LITERAL", "name": "logquake-queue", "operation": "WRITE"}]}
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    assert {"kill", "start"} <= {op["f"] for op in history if op["process"] == "nemesis"}
    assert sum(op["type"] == "ok" for op in history) > 100
    # the workload's clients went through SCRAM on the secured listener, the harness's setup as its super user
    logs = "".join((run_dir / "nodes" / node / "broker.log").read_text() for node in ("n1", "n2", "n3"))
    assert "authenticated with SCRAM-SHA-512 as User:logquake\n" in logs
    assert "authenticated with SCRAM-SHA-512 as User:logquake-admin\n" in logs
    # the workload's user is no super user: a request outside its ACLs was refused, and it is the only refusal
    # the brokers logged (a refusal within a second of a logged one is counted on the next line, as "more")
    assert refusals == ["logquake", "TOPIC_AUTHORIZATION_FAILED"]
    denials = [line for line in logs.splitlines() if " is denied operation " in line]
    assert denials and all("User:logquake from host" in line and "on TOPIC not-granted (CreateTopics)" in line
                           and "more refusals" not in line for line in denials), denials
