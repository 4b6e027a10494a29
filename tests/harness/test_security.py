"""`--security` in the harness (issue 20, points 3 and 4): the secrets it makes, `cluster up --security` with a real
confluent-kafka client, the refusals before anything starts, and the settings each client library gets.

The end-to-end run (`logquake test --security sasl-scram-tls`, whose store must hold no secret) is in
tests/e2e/test_security_run.py.
"""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from harness.run_command import main as run_test_command
from harness.security import AUTHORIZER, MODES, ClusterSecurity, describe_mode
from tests.broker.conftest import ROOT
from tests.broker.test_cluster import free_port_block
from workloads import client_security as cs


@pytest.mark.parametrize("mode", list(MODES))
def test_secrets_live_in_a_private_directory_and_only_the_description_is_stored(tmp_path, mode):
    security = ClusterSecurity.create(mode, tmp_path / "secrets")
    assert stat.S_IMODE(os.stat(security.directory).st_mode) == 0o700
    for path in security.directory.iterdir():
        if path.name != "ca.pem" and path.name != "client.pem":
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    described = security.describe()
    assert described == describe_mode(mode)
    assert str(security.directory) not in repr(described)  # a path into the secrets is not stored either
    properties = security.broker_properties()
    enforcing = security.broker_properties(authorizer=True)
    assert properties["listener.security.protocol.map"] == f"CLIENT:{MODES[mode]},INTERNAL:PLAINTEXT"
    assert "authorizer.class.name" not in properties and "super.users" not in properties  # `cluster up`'s nodes
    if security.password is not None:  # SASL: two users, the workload's and the harness's own super user
        passwords = (security.password, security.admin_password)
        assert min(map(len, passwords)) >= 24 and security.password != security.admin_password
        for password in passwords:  # a password never shows in a repr (a log line or a traceback)
            assert password not in (repr(security) + repr(security.client()) + repr(security.admin_client())
                                    + repr(described) + repr(enforcing))
        assert security.users_file.read_text() == (f"logquake:{security.password}\n"
                                                   f"logquake-admin:{security.admin_password}\n")
        assert described == {"mode": mode, "security.protocol": MODES[mode], "sasl.mechanism": "SCRAM-SHA-512",
                              "sasl.username": "logquake", "super.users": "User:logquake-admin"}
        assert (security.client().username, security.client().password) == ("logquake", security.password)
        assert (security.admin_client().username, security.admin_client().password) == ("logquake-admin",
                                                                                         security.admin_password)
        # a test run's nodes enforce ACLs, the harness's user their one super user
        assert enforcing == {**properties, "authorizer.class.name": AUTHORIZER, "super.users": "User:logquake-admin"}
    else:  # TLS alone: no users, so no ACLs either
        assert security.admin_client() == security.client() and enforcing == properties
        assert not security.enforces_acls
    security.remove()
    assert not security.directory.exists()


def test_each_client_library_gets_the_security_settings(tmp_path):
    security = ClusterSecurity.create("sasl-scram-tls", tmp_path / "secrets")
    client = security.client()
    try:
        cs.use_client_security(client)
        assert cs.confluent_settings({"bootstrap.servers": "b"}) == {
            "bootstrap.servers": "b", "security.protocol": "SASL_SSL", "ssl.ca.location": security.tls.ca,
            "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "logquake", "sasl.password": security.password}
        kafka_python = cs.python_client_settings("kafka-python", {"acks": 1})
        assert kafka_python["ssl_cafile"] == security.tls.ca and kafka_python["sasl_plain_password"] == security.password
        aiokafka = cs.python_client_settings("aiokafka", {})
        assert aiokafka["security_protocol"] == "SASL_SSL" and aiokafka["ssl_context"] is not None
    finally:
        cs.use_client_security(None)
        security.remove()
    assert cs.confluent_settings({"a": 1}) == {"a": 1}


@pytest.mark.parametrize("argv, fragment", [
    (["--security", "tls", "--backend", "docker"], "--security tls is not supported yet on this backend (--backend docker)"),
    (["--security", "sasl-scram", "--backend", "ssh", "--nodes-file", "NODES"], "not supported yet on this backend (--backend ssh)"),
    (["--security", "sasl-scram-tls", "--system", "PLAIN_SYSTEM"],
     "plain.toml: --security sasl-scram-tls needs to know how 'plain' is secured, and the description has no "
     "[security] table; add one, e.g. [security] modes = [\"sasl-scram-tls\"]"),
    (["--security", "tls", "--system", "SASL_ONLY_SYSTEM"],
     "sasl-only.toml: [security] modes = ['sasl-scram'] does not name 'tls'; add it if 'sasl-only' can run that way"),
])
def test_security_where_it_is_not_supported_is_refused_before_anything_starts(argv, fragment, capsys, tmp_path):
    nodes_file = tmp_path / "nodes.toml"  # three hosts that do not exist: nothing may try to reach them
    nodes_file.write_text("".join(f'[[node]]\nname = "n{i}"\nssh = "192.0.2.{i}:22"\naddress = "192.0.2.{i}"\n\n'
                                  for i in (1, 2, 3)))
    start = 'start = "ob --port {port}"\n'
    (tmp_path / "plain.toml").write_text(start)
    (tmp_path / "sasl-only.toml").write_text(start + '[security]\nmodes = ["sasl-scram"]\n')
    files = {"NODES": nodes_file, "PLAIN_SYSTEM": tmp_path / "plain.toml", "SASL_ONLY_SYSTEM": tmp_path / "sasl-only.toml"}
    argv = [str(files.get(a, a)) for a in argv]
    code = run_test_command([*argv, "--store", str(tmp_path / "store"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 254, err
    assert fragment in err
    assert not (tmp_path / "store").exists()


def test_an_unknown_security_mode_is_refused(capsys, tmp_path):
    with pytest.raises(SystemExit) as raised:
        run_test_command(["--security", "kerberos", "--store", str(tmp_path / "store")])
    assert raised.value.code == 254
    assert "--security: invalid choice: 'kerberos'" in capsys.readouterr().err
    from harness.cluster_command import main as cluster_main

    with pytest.raises(SystemExit) as raised:
        cluster_main(["up", "--security", "ssl"])
    assert raised.value.code == 254


@pytest.mark.slow
def test_cluster_up_with_sasl_scram_tls_prints_settings_a_real_client_uses(tmp_path):
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    base = free_port_block(6)
    up = subprocess.Popen([sys.executable, "-m", "harness.cluster_command", "up", "--nodes", "3", "--base-port", str(base),
                           "--security", "sasl-scram-tls"],
                          cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        while True:
            line = up.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
            if line.startswith("cluster up:"):
                break
        secrets_dir = Path(re.search(r"^secrets directory: (\S+) \(mode 0700", lines[0]).group(1))
        assert stat.S_IMODE(os.stat(secrets_dir).st_mode) == 0o700
        settings = dict(line.strip().split("=", 1) for line in lines if re.match(r"  [a-z.]+=", line))
        assert settings["bootstrap.servers"] == f"127.0.0.1:{base},127.0.0.1:{base + 1},127.0.0.1:{base + 2}"
        assert {k: settings[k] for k in ("security.protocol", "sasl.mechanism", "sasl.username")} == {
            "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "logquake"}
        assert settings["ssl.ca.location"].startswith(str(secrets_dir))
        password = settings["sasl.password"]
        assert sum(password in line for line in lines) == 1  # printed once
        assert any(line.startswith("  # the password") for line in lines)

        topic = f"secured-{uuid.uuid4().hex[:8]}"
        admin = AdminClient({**settings, "log_level": 0})
        admin.create_topics([NewTopic(topic, 1, 3)])[topic].result(30)
        producer = Producer({**settings, "acks": "all", "log_level": 0})
        for i in range(3):
            producer.produce(topic, f"m{i}".encode())
        assert producer.flush(30) == 0
        consumer = Consumer({**settings, "group.id": "secured", "auto.offset.reset": "earliest", "log_level": 0})
        consumer.subscribe([topic])
        got = []
        for _ in range(60):
            message = consumer.poll(1)
            if message is not None and message.error() is None:
                got.append(message.value())
            if len(got) == 3:
                break
        consumer.close()
        assert got == [b"m0", b"m1", b"m2"]
        # without the settings the client listener does not serve a plaintext client
        plain = AdminClient({"bootstrap.servers": settings["bootstrap.servers"], "log_level": 0})
        with pytest.raises(Exception):
            plain.list_topics(timeout=3)
    finally:
        up.send_signal(signal.SIGINT)
        rest = up.communicate(timeout=60)[0]
    assert up.returncode == 0, rest
    assert f"removed the secrets directory {secrets_dir}" in rest
    assert not secrets_dir.exists() and not secrets_dir.parent.exists()


@pytest.mark.slow
def test_the_local_backend_serves_tls_through_the_fault_proxy_and_probes_client_links_over_it():
    from harness.backends.local import LocalCluster
    from harness.system import logquake_broker
    from nodecontrol.control import CLIENT
    from nodecontrol.probe import kafka_round_trip

    cluster = LocalCluster(logquake_broker({}, 1), 1, security="tls")
    try:
        cluster.setup()
        secrets_dir = cluster.security.directory
        assert secrets_dir.parent == cluster.run_dir and stat.S_IMODE(os.stat(secrets_dir).st_mode) == 0o700
        assert cluster.client_security().protocol == "SSL"
        # the proxy forwards the TLS bytes untouched: a TLS client's ApiVersions is answered through it ...
        assert cluster.round_trips([(CLIENT, "n1")], 5.0)[(CLIENT, "n1")] is not None
        # ... and a plaintext one is not: the listener behind the proxy port is TLS
        assert kafka_round_trip("127.0.0.1", cluster.proxy.ports["n1"], 2.0) is None
        cluster.partition({CLIENT: {"n1"}, "n1": {CLIENT}})
        assert cluster.round_trips([(CLIENT, "n1")], 1.0)[(CLIENT, "n1")] is None  # a cut client link is silent
        cluster.heal()
    finally:
        cluster.teardown()
    assert not secrets_dir.exists()


def test_a_workload_that_declares_no_acls_is_refused_where_the_brokers_enforce_them(monkeypatch, capsys, tmp_path):
    from harness.spec import RunSpec, SpecError
    from workloads.queue import QueueWorkload

    monkeypatch.setattr(QueueWorkload, "acls", lambda self: None)
    code = run_test_command(["--security", "sasl-scram", "--store", str(tmp_path / "store"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 254, err
    assert "workload queue declares no ACLs (Workload.acls), so it cannot run under --security sasl-scram" in err
    assert not (tmp_path / "store").exists()
    with pytest.raises(SpecError):
        RunSpec(security="sasl-scram-tls").resolve()
    assert RunSpec(security="tls").resolve().security == "tls"  # TLS alone has no users, so no ACLs


def test_the_workloads_grants_become_allow_bindings_for_its_user_with_the_topics_last():
    from confluent_kafka.admin import AclOperation, AclPermissionType, ResourcePatternType, ResourceType

    from harness.acls import bindings, ordered
    from workloads.queue import QueueWorkload

    grants = QueueWorkload(delivery="exactly-once").acls()
    assert [g.resource for g in ordered(grants + grants)] == ["GROUP", "GROUP", "TRANSACTIONAL_ID", "TOPIC", "TOPIC"]
    made = bindings(grants, "User:logquake")
    assert len(made) == 5 and made[-1].restype == ResourceType.TOPIC
    assert {(b.principal, b.host, b.permission_type) for b in made} == {("User:logquake", "*", AclPermissionType.ALLOW)}
    prefixed = [b for b in made if b.restype == ResourceType.TRANSACTIONAL_ID]
    assert [(b.name, b.resource_pattern_type, b.operation) for b in prefixed] == [
        ("logquake-logquake-queue-", ResourcePatternType.PREFIXED, AclOperation.WRITE)]
    # Kafka's CLUSTER resource is librdkafka's BROKER (both 4)
    cluster = bindings(QueueWorkload(idempotent=True).acls(), "User:logquake")[0]
    assert (cluster.restype, cluster.name, cluster.operation) == (ResourceType.BROKER, "kafka-cluster",
                                                                   AclOperation.IDEMPOTENT_WRITE)
