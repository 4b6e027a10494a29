"""`logquake test --security sasl-scram-tls` end to end: real brokers with a SASL_SSL client listener, real clients,
a real leader kill, the real checker; and a store that holds no secret (issue 20, point 4).

The run is built and run in this process (`build_run`, as `logquake test` does), so the test can learn the run's
password: it keeps the `ClusterSecurity` the local backend creates (the real one, only remembered), then greps every
file of the run's store directory for the password and for a PEM private key.
"""

from __future__ import annotations

import json

import pytest

from harness import security as security_module
from harness.backends import local
from harness.run_command import build_run
from harness.spec import RunSpec

pytestmark = pytest.mark.e2e


def test_a_sasl_scram_tls_run_under_kill_is_valid_and_its_store_holds_no_secret(tmp_path, monkeypatch):
    made = []
    real_create = security_module.ClusterSecurity.create.__func__

    def remembered(cls, *args, **kwargs):
        security = real_create(cls, *args, **kwargs)
        made.append(security)
        return security

    monkeypatch.setattr(local.ClusterSecurity, "create", classmethod(remembered))
    store = tmp_path / "store"
    spec = RunSpec(security="sasl-scram-tls", nemesis=("kill",), time_limit_s=20.0, nemesis_interval_s=5.0,
                   rate=100.0, concurrency=4, seed=20, store=str(store)).resolve()
    outcome = build_run(spec).run()
    assert outcome.valid is True, outcome.message

    assert len(made) == 1
    secrets = made[0]
    assert secrets.password and len(secrets.password) >= 24
    assert not secrets.directory.exists()  # removed with the cluster
    run_dir = outcome.run_dir
    files = [path for path in run_dir.rglob("*") if path.is_file()]
    assert len(files) >= 8, files
    for path in files:
        data = path.read_bytes()
        assert secrets.password.encode() not in data, f"the password is in {path}"
        assert b"PRIVATE KEY" not in data, f"a private key is in {path}"

    test = json.loads((run_dir / "test.json").read_text())
    assert test["options"]["security"] == "sasl-scram-tls"
    assert test["security"] == {"mode": "sasl-scram-tls", "security.protocol": "SASL_SSL",
                                "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "logquake"}
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    assert {"kill", "start"} <= {op["f"] for op in history if op["process"] == "nemesis"}
    assert sum(op["type"] == "ok" for op in history) > 100
    # the workload's clients went through SCRAM on the secured listener
    logs = "".join((run_dir / "nodes" / node / "broker.log").read_text() for node in ("n1", "n2", "n3"))
    assert "authenticated with SCRAM-SHA-512 as User:logquake" in logs
