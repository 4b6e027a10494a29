"""A described broker's `[security]` table (`--system FILE.toml --security MODE`, issue 20 point 4): what it may
say, the placeholders each mode fills, where the passwords may go (only [files] texts, written private and never
collected), the refusals before anything starts, and what test.json and the summary say. Pure: no broker starts.

The end-to-end run (our broker described as a foreign one, `--security sasl-scram-tls` under kills) is in
tests/e2e/test_foreign_system.py.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest

from harness.backends.local import LocalCluster
from harness.run_command import build_run
from harness.run_command import main as run_test_command
from harness.runner import NO_AUTHORIZER
from harness.security import MODES, ClusterSecurity, describe_mode
from harness.spec import RunSpec
from harness.system import NodeSpec, SystemDescriptionError, load_system

EXAMPLE = Path(__file__).parents[2] / "docs" / "systems" / "logquake-as-foreign.toml"
BASE = 'start = "ob --port {port} --bind {bind_host}"\n'


def _load(tmp_path, text: str):
    path = tmp_path / "system.toml"
    path.write_text(text)
    return load_system(str(path))


def _node(data_dir, security=None, system=None, mode="none") -> NodeSpec:
    from harness.security import template_values

    return NodeSpec("n1", 101, "127.0.0.1", 5, 6, str(data_dir), "127.0.0.11", "", index=1,
                    ports={"internal": 7}, advertised_ports={"internal": 8},
                    variables=system.variables_of(1, mode) if system else {},
                    security=template_values(security, system.sasl_mechanism if system else "SCRAM-SHA-512"))


def _properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def test_the_example_says_how_our_broker_is_secured_in_each_mode(tmp_path):
    system = load_system(str(EXAMPLE))
    assert system.security.modes == tuple(MODES) and system.sasl_mechanism == "SCRAM-SHA-512"
    assert [system.enforces_acls(m) for m in ("none", "tls", "sasl-scram", "sasl-scram-tls")] == [False, False, True, True]
    assert system.variables_of(1)["authorizer"] == "" and system.variables_of(1, "tls")["authorizer"] == ""
    assert system.variables_of(1, "sasl-scram-tls") == {"users_file": "users", "authorizer":
                                                        "org.apache.kafka.metadata.authorizer.StandardAuthorizer"}

    security = ClusterSecurity.create("sasl-scram-tls", tmp_path / "secrets", mechanism=system.sasl_mechanism)
    from harness.security import template_secrets

    node = _node(tmp_path / "n1", security, system, "sasl-scram-tls")
    files = system.rendered_files(node, template_secrets(security))
    properties = _properties(files[str(tmp_path / "n1" / "server.properties")])
    assert properties["listener.security.protocol.map"] == "EXTERNAL:SASL_SSL,INTERNAL:PLAINTEXT"
    assert properties["ssl.keystore.location"] == security.tls.broker_keystore
    assert properties["sasl.enabled.mechanisms"] == "SCRAM-SHA-512" and properties["logquake.sasl.users.file"] == "users"
    assert properties["super.users"] == "User:logquake-admin"
    assert properties["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert files[str(tmp_path / "n1" / "users")] == (f"logquake:{security.password}\n"
                                                     f"logquake-admin:{security.admin_password}\n")
    assert system.secret_files(node) == {str(tmp_path / "n1" / "users")}
    # no password reaches a command: the ready check gets the CA's path, the start command nothing secret
    commands = " ".join(system.command(node) + system.hook("ready", node))
    assert security.password not in commands and security.admin_password not in commands
    assert security.tls.ca in commands
    security.remove()

    plain = system.rendered_files(_node(tmp_path / "n1", None, system))  # a plaintext run: the same file
    properties = _properties(plain[str(tmp_path / "n1" / "server.properties")])
    assert properties["listener.security.protocol.map"] == "EXTERNAL:PLAINTEXT,INTERNAL:PLAINTEXT"
    assert properties["ssl.keystore.location"] == "" and properties["logquake.sasl.users.file"] == ""
    assert properties["authorizer.class.name"] == "" and plain[str(tmp_path / "n1" / "users")] == "logquake:\nlogquake-admin:\n"


@pytest.mark.parametrize("mode", list(MODES))
def test_each_mode_fills_the_paths_it_has_and_leaves_the_others_empty(tmp_path, mode):
    security = ClusterSecurity.create(mode, tmp_path / "secrets", mechanism="SCRAM-SHA-256")
    system = _load(tmp_path, BASE + '[security]\nmodes = ["tls", "sasl-scram", "sasl-scram-tls"]\n'
                   'mechanism = "SCRAM-SHA-256"\n[files]\n"c" = "{security_mode} {security_protocol} '
                   '{ssl_keystore}|{ssl_certificate}|{ssl_key}|{ssl_ca}|{sasl_mechanism}|{sasl_users_file}|'
                   '{sasl_user}|{sasl_admin_user}"\n')
    text = system.rendered_files(_node(tmp_path, security, system, mode))[str(tmp_path / "c")]
    tls, sasl = security.tls, security.users_file
    assert text == (f"{mode} {MODES[mode]} {tls.broker_keystore if tls else ''}|{tls.broker_certificate if tls else ''}|"
                    f"{tls.broker_key if tls else ''}|{tls.ca if tls else ''}|SCRAM-SHA-256|{sasl or ''}|"
                    "logquake|logquake-admin")
    if tls:  # the separate certificate and key files hold the keystore's chain and key
        chain, key = Path(tls.broker_certificate).read_text(), Path(tls.broker_key).read_text()
        assert "PRIVATE KEY" not in chain and "PRIVATE KEY" in key
        assert Path(tls.broker_keystore).read_text() == key + chain
    assert security.client().mechanism == ("SCRAM-SHA-256" if sasl else None)
    security.remove()


@pytest.mark.parametrize("text, message", [
    ('[security]\nmodes = ["ssl"]\n', "[security]: modes must list the --security modes the broker supports, some of "
                                      "tls, sasl-scram, sasl-scram-tls; got ['ssl']"),
    ("[security]\nmechanism = \"PLAIN\"\n", "modes must list the --security modes"),
    ('[security]\nmodes = ["tls"]\nmechanism = "GSSAPI"\n', "mechanism 'GSSAPI' is not one the harness's clients use; "
                                                           "expected one of SCRAM-SHA-512, SCRAM-SHA-256, PLAIN"),
    ('[security]\nmodes = ["tls"]\nauthorizer = "yes"\n', "authorizer must be true"),
    ('[security]\nmodes = ["tls"]\nkeystore = "k"\n', "[security] has unknown key(s) ['keystore']"),
    ('[security]\nmodes = ["tls"]\n[security.vars]\nacl = "x"\n',
     "[security.vars] sets ['acl'], which [vars] does not declare"),
    ('[vars]\nacl = ""\n[security]\nmodes = ["tls"]\n[security.sasl-scram.vars]\nacl = "x"\n',
     "[security.sasl-scram] takes vars only, for a mode that modes lists"),
    ('[security]\nmodes = ["tls"]\n[files]\n"c" = "{ssl_keystor}"\n', "bad placeholder 'ssl_keystor'"),
    ('setup = "make-users {sasl_password}"\n', "setup: {sasl_password} may only be named in [files] texts"),
    ('ready = ["check", "--password={sasl_admin_password}"]\n', "ready: {sasl_admin_password} may only be named in [files]"),
    ('[files]\n"{sasl_password}.txt" = "x"\n', "files path '{sasl_password}.txt': {sasl_password} may only be named"),
    ('log_file = "{data_dir}/jaas.conf"\n[files]\n"jaas.conf" = "password={sasl_password}"\n',
     "[files] 'jaas.conf' names a password and is also the log collected into the run's store"),
    ('[files]\n"stdout.log" = "{sasl_admin_password}"\n', "[files] 'stdout.log' names a password"),
    ('[vars]\nsasl_password = "x"\n', "'sasl_password' cannot name a variable"),
])
def test_a_security_table_or_a_password_where_it_could_leak_is_refused(tmp_path, text, message):
    with pytest.raises(SystemDescriptionError, match=re.escape(message)):
        _load(tmp_path, BASE + text)


def test_a_described_broker_that_cannot_take_the_mode_is_refused_by_the_local_backend_too(tmp_path):
    with pytest.raises(SystemDescriptionError, match=re.escape("has no [security] table")):
        LocalCluster(_load(tmp_path, BASE), 1, security="tls")
    LocalCluster(_load(tmp_path, BASE), 1)  # plaintext needs no [security]


def test_files_with_a_password_are_private_and_never_collected_and_a_logged_password_is_replaced(tmp_path, caplog):
    system = _load(tmp_path, BASE + 'log_file = "{data_dir}/broker.log"\n[security]\nmodes = ["sasl-scram"]\n'
                   'mechanism = "PLAIN"\n[files]\n"jaas.conf" = "user_{sasl_user}=\\"{sasl_password}\\""\n'
                   '"plain.conf" = "protocol={security_protocol}"\n')
    cluster = LocalCluster(system, 1, security="sasl-scram")
    cluster.security = ClusterSecurity.create("sasl-scram", tmp_path / "secrets", mechanism="PLAIN", acls=False)
    assert not cluster.enforces_acls and cluster.client_security().mechanism == "PLAIN"
    data = tmp_path / "n1"
    data.mkdir()
    spec = _node(data, cluster.security, system, "sasl-scram")
    cluster._specs = {"n1": spec}
    cluster._write_config(spec)
    jaas = data / "jaas.conf"
    assert jaas.read_text() == f'user_logquake="{cluster.security.password}"'
    assert stat.S_IMODE(os.stat(jaas).st_mode) == 0o600
    assert (data / "plain.conf").read_text() == "protocol=SASL_PLAINTEXT"
    (data / "stdout.log").write_text(f"starting with password {cluster.security.admin_password}\n")
    (data / "broker.log").write_text("nothing secret\n")
    store = tmp_path / "store"
    written = cluster.collect(str(store))
    assert sorted(Path(p).name for p in written) == ["broker.log", "stdout.log"]
    assert (store / "n1" / "stdout.log").read_text() == "starting with password [secret]\n"
    assert "stdout.log of n1 held a password of the run; the copy says [secret] instead" in caplog.text
    cluster.security.remove()


def test_run_spec_refuses_docker_and_accepts_a_system_that_says_how(tmp_path):
    secured = tmp_path / "secured.toml"
    secured.write_text(BASE + '[security]\nmodes = ["sasl-scram"]\n')
    spec = RunSpec(security="sasl-scram", system=str(secured), store=str(tmp_path / "store")).resolve()
    assert spec.system_description["security"] == {"modes": ["sasl-scram"]}
    code = run_test_command(["--security", "tls", "--backend", "docker", "--store", str(tmp_path / "store"), "--quiet"])
    assert code == 254


def test_test_json_says_when_a_described_broker_enforces_no_acls(tmp_path):
    path = tmp_path / "open.toml"
    path.write_text(BASE + '[security]\nmodes = ["sasl-scram-tls"]\nmechanism = "PLAIN"\n')
    run = build_run(RunSpec(security="sasl-scram-tls", system=str(path), store=str(tmp_path / "store")))
    assert run.description()["security"] == {"mode": "sasl-scram-tls", "security.protocol": "SASL_SSL",
                                             "sasl.mechanism": "PLAIN", "sasl.username": "logquake",
                                             "authorizer": False, "acls": NO_AUTHORIZER}
    path.write_text(BASE + '[security]\nmodes = ["sasl-scram"]\nauthorizer = true\n')
    described = build_run(RunSpec(security="sasl-scram", system=str(path), store=str(tmp_path / "s"))).description()
    assert described["security"]["super.users"] == "User:logquake-admin" and described["security"]["acls"]
    assert describe_mode("sasl-scram", "SCRAM-SHA-256", acls=False) == {
        "mode": "sasl-scram", "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": "logquake"}


def test_the_summary_names_the_mode_and_a_missing_authorizer(tmp_path, capsys):
    from harness.run_command import print_summary
    from harness.runner import RunOutcome

    (tmp_path / "test.json").write_text(json.dumps({"security": {
        "mode": "sasl-scram", "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN", "acls": NO_AUTHORIZER}}))
    print_summary(RunOutcome(exit_code=0, valid=True, run_dir=tmp_path, results={}))
    assert f"  security: sasl-scram (SASL_PLAINTEXT, PLAIN); ACLs: {NO_AUTHORIZER}\n" in capsys.readouterr().out
