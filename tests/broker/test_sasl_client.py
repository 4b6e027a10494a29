"""The broker's own SASL client (broker.server.sasl_client), its JAAS login (broker.server.jaas), the properties
that configure inter-broker security (broker.server.config) and the pool's session lifetime (broker.protocol.client).

The SCRAM and PLAIN clients are run against the server side (broker.server.sasl.SaslSession), token by token.
"""

from __future__ import annotations

import asyncio
import base64
import random
import subprocess
import sys

import pytest

from broker.protocol.client import AuthenticationError, ConnectionPool
from broker.server.config import ConfigError, build_config, check_properties
from broker.server.jaas import JaasError, JaasLogin, parse_jaas_config
from broker.server.sasl import AuthenticationFailed, Credentials, SaslSession
from broker.server.sasl_client import PlainClient, ScramClient, ScramError, mechanism_client

from .conftest import ROOT

SCRAM = "org.apache.kafka.common.security.scram.ScramLoginModule"
PLAIN = "org.apache.kafka.common.security.plain.PlainLoginModule"
SECRET = "s3cret-Pa55"


# ---- the JAAS login --------------------------------------------------------------------------------------------


def test_jaas_accepts_kafkas_forms():
    login = parse_jaas_config(f'{SCRAM} required username="broker" password="{SECRET}";', "SCRAM-SHA-512")
    assert login == JaasLogin("broker", SECRET)
    assert SECRET not in repr(login)
    # bare values, any control flag in any case, escapes inside quotes, line breaks
    login = parse_jaas_config(f'{PLAIN} REQUIRED\n  username=broker\n  password="a \\"q\\" \\\\ b;c=d" ;', "PLAIN")
    assert login == JaasLogin("broker", 'a "q" \\ b;c=d')
    assert parse_jaas_config(f"{SCRAM} optional password=x username=y;", "SCRAM-SHA-256") == JaasLogin("y", "x")


@pytest.mark.parametrize("text, words", [
    ("", "empty"),
    (f'{PLAIN} required username="b" password="{SECRET}";', "login module of SCRAM-SHA-512"),
    (f'username="b" password="{SECRET}";', "does not start with the login module"),
    (f'{SCRAM} username="b" password="{SECRET}";', "control flag"),
    (f'{SCRAM} mandatory username="b" password="{SECRET}";', "control flag"),
    (f'{SCRAM} required username="b" password="{SECRET}"', "does not end with ';'"),
    (f'{SCRAM} required username="b" password="{SECRET}"; {SCRAM} required;', "exactly one login module"),
    (f'{SCRAM} required username="b";', "option password is missing"),
    (f'{SCRAM} required username="" password="{SECRET}";', "option username is empty"),
    (f'{SCRAM} required username="b" password="{SECRET}" password="{SECRET}";', "given twice"),
    (f'{SCRAM} required username="b" password="{SECRET}" tokenauth="true";', "option 3"),
    (f'{SCRAM} required username="b" user_{SECRET}="{SECRET}" password="{SECRET}";', "logquake.sasl.users.file"),
    (f'{SCRAM} required username="b" password="{SECRET};', "not closed"),
    (f'{SCRAM} required username="b" password {SECRET};', "option 2"),
    (f'{SCRAM} required username="b" ="{SECRET}";', "option 2"),
])
def test_jaas_refuses_anything_else_without_repeating_the_value(text, words):
    with pytest.raises(JaasError) as caught:
        parse_jaas_config(text, "SCRAM-SHA-512")
    assert words in str(caught.value)
    assert SECRET not in str(caught.value)


# ---- SCRAM and PLAIN against the server side -------------------------------------------------------------------


def _run(client, session: SaslSession) -> None:
    challenge = None
    while True:
        token = client.step(challenge)
        answer = session.step(token)
        if client.done:
            client.finish(answer)
            return
        challenge = answer


def _session(mechanism: str, users=None) -> SaslSession:
    rng = random.Random(7)
    session = SaslSession(Credentials(users or {"broker": SECRET, "na=me,x": "pw,=1"}, rng), (mechanism,), rng, "peer")
    session.begin(mechanism, False)
    return session


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"])
def test_the_client_authenticates_to_the_server_side(mechanism):
    for user, password in (("broker", SECRET), ("na=me,x", "pw,=1")):
        session = _session(mechanism)
        _run(mechanism_client(mechanism, JaasLogin(user, password), random.Random(1)), session)
        assert session.principal == f"User:{user}"


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"])
def test_a_wrong_password_is_refused_by_the_server_side(mechanism):
    with pytest.raises(AuthenticationFailed):
        _run(mechanism_client(mechanism, JaasLogin("broker", "wrong"), random.Random(1)), _session(mechanism))


def test_scram_client_messages_follow_rfc_5802():
    client = ScramClient("SCRAM-SHA-256", "a=b,c", "pw", "cnonce")
    assert client.step(None) == b"n,,n=a=3Db=2Cc,r=cnonce"
    final = client.step(f"r=cnonceSNONCE,s={base64.b64encode(b'salt').decode()},i=4096".encode()).decode()
    assert final.startswith("c=biws,r=cnonceSNONCE,p=")
    plain = PlainClient("u", "p")
    assert plain.step(None) == b"\x00u\x00p"
    plain.finish(b"")  # a PLAIN success carries no final message
    with pytest.raises(ScramError, match="PLAIN expects an empty final answer"):
        plain.finish(b"v=unexpected")


@pytest.mark.parametrize("server_first, words", [
    ("r=othernonce,s=c2FsdA==,i=4096", "does not extend"),
    ("r=cnonce,s=c2FsdA==,i=4096", "does not extend"),  # the server added nothing
    ("r=cnonceS,s=c2FsdA==,i=1024", "4096"),
    ("r=cnonceS,s=!!,i=4096", "salt"),
    ("m=ext,r=cnonceS,s=c2FsdA==,i=4096", "mandatory extension"),
])
def test_the_scram_client_refuses_a_bad_server_first_message(server_first, words):
    client = ScramClient("SCRAM-SHA-256", "u", "pw", "cnonce")
    client.step(None)
    with pytest.raises(ScramError, match=words):
        client.step(server_first.encode())


def test_the_scram_client_checks_the_server_signature():
    """A server that does not know the credential (here: answers with a wrong signature) is refused."""
    session = _session("SCRAM-SHA-512")
    client = mechanism_client("SCRAM-SHA-512", JaasLogin("broker", SECRET), random.Random(1))
    final = client.step(session.step(client.step(None)))
    good = session.step(final)
    forged = b"v=" + base64.b64encode(bytes(64))
    with pytest.raises(ScramError, match="server signature"):
        client.finish(forged)
    with pytest.raises(ScramError, match="refused: invalid-proof"):
        client.finish(b"e=invalid-proof")
    client.finish(good)


# ---- configuration ---------------------------------------------------------------------------------------------


def _cluster_raw(protocol: str, **extra) -> dict[str, str]:
    raw = {"node.id": "1", "listeners": "CLIENT://127.0.0.1:9092,INTERNAL://127.0.0.1:9093",
           "listener.security.protocol.map": f"CLIENT:PLAINTEXT,INTERNAL:{protocol}",
           "inter.broker.listener.name": "INTERNAL", "controller.listener.names": "INTERNAL",
           "controller.quorum.voters": "1@127.0.0.1:9093", "log.dirs": "/tmp/unused",
           "ssl.keystore.location": "/tmp/keystore.pem", "logquake.sasl.users.file": "/tmp/users.txt"}
    raw.update({key.replace("_", "."): value for key, value in extra.items()})
    return raw


JAAS_512 = "listener.name.internal.scram-sha-512.sasl.jaas.config"


def _sasl_raw(**extra) -> dict[str, str]:
    raw = _cluster_raw("SASL_SSL", ssl_truststore_location="/tmp/ca.pem")
    raw.update({"sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
                JAAS_512: f'{SCRAM} required username="broker" password="{SECRET}";'})
    raw.update(extra)
    return raw


def test_an_ssl_inter_broker_listener_needs_a_truststore():
    with pytest.raises(ConfigError, match="ssl.truststore.location is missing"):
        build_config(_cluster_raw("SSL"))
    config = build_config(_cluster_raw("SSL", ssl_truststore_location="/tmp/ca.pem"))
    assert config.security_protocol("INTERNAL") == "SSL" and config.inter_broker_login is None
    assert config.value("ssl.endpoint.identification.algorithm") == "https"
    raw = _cluster_raw("SSL", ssl_truststore_location="/tmp/ca.pem")
    raw["ssl.endpoint.identification.algorithm"] = ""
    assert build_config(raw).value("ssl.endpoint.identification.algorithm") == ""
    raw["ssl.endpoint.identification.algorithm"] = "http"
    with pytest.raises(ConfigError, match="ssl.endpoint.identification.algorithm"):
        build_config(raw)


def test_a_sasl_inter_broker_listener_needs_a_mechanism_and_credentials():
    config = build_config(_sasl_raw())
    assert config.inter_broker_login == JaasLogin("broker", SECRET)
    assert SECRET not in repr(config)
    assert not any(SECRET in str(value) for value, _ in config.effective().values())  # DescribeConfigs
    # Kafka's default GSSAPI is refused by name
    raw = _sasl_raw()
    del raw["sasl.mechanism.inter.broker.protocol"]
    with pytest.raises(ConfigError, match="sasl.mechanism.inter.broker.protocol='GSSAPI' \\(Kafka default\\).*GSSAPI"):
        build_config(raw)
    with pytest.raises(ConfigError, match=f"property {JAAS_512} is missing"):
        build_config({k: v for k, v in _sasl_raw().items() if k != JAAS_512})
    with pytest.raises(ConfigError, match="not in sasl.enabled.mechanisms"):
        build_config(_sasl_raw(**{"sasl.enabled.mechanisms": "PLAIN"}))
    with pytest.raises(ConfigError, match="sasl.mechanism.inter.broker.protocol='OAUTHBEARER'"):
        build_config(_sasl_raw(**{"sasl.mechanism.inter.broker.protocol": "OAUTHBEARER"}))


@pytest.mark.parametrize("name, value, words", [
    (JAAS_512, f'{SCRAM} required username="broker" password="{SECRET}"', f"property {JAAS_512} is malformed"),
    (JAAS_512, f'{PLAIN} required username="broker" password="{SECRET}";', "login module of SCRAM-SHA-512"),
    ("listener.name.client.scram-sha-512.sasl.jaas.config", f'{SCRAM} required username="b" password="{SECRET}";',
     "would not be read"),
    ("listener.name.internal.plain.sasl.jaas.config", f'{PLAIN} required username="b" password="{SECRET}";',
     f"only {JAAS_512} is"),
    ("listener.name.INTERNAL.scram-sha-512.sasl.jaas.config", f'{SCRAM} required username="b" password="{SECRET}";',
     f"expected {JAAS_512}"),
    ("listener.name.internal.gssapi.sasl.jaas.config", f'x required password="{SECRET}";', "GSSAPI is not a mechanism"),
    ("listener.name.internal.scram-sha-512.sasl.jaas.conf", f'{SCRAM} required password="{SECRET}";', "not shown"),
    ("ssl.key.pasword", SECRET, "ssl.key.password"),
])
def test_a_wrong_jaas_property_is_named_and_its_value_never_shown(name, value, words):
    with pytest.raises(ConfigError) as caught:
        build_config(_sasl_raw(**{name: value}))
    assert words in str(caught.value)
    assert SECRET not in str(caught.value)


def test_jaas_properties_are_refused_unless_the_inter_broker_listener_is_sasl():
    raw = _cluster_raw("SSL", ssl_truststore_location="/tmp/ca.pem")
    raw["listener.name.internal.plain.sasl.jaas.config"] = f'{PLAIN} required username="b" password="{SECRET}";'
    with pytest.raises(ConfigError, match="uses SSL"):
        build_config(raw)


def test_the_check_command_accepts_and_checks_the_jaas_property():
    check_properties({JAAS_512: f'{SCRAM} required username="b" password="{SECRET}";'})
    with pytest.raises(ConfigError, match="malformed"):
        check_properties({JAAS_512: f'{SCRAM} required username="b";'})
    done = subprocess.run([sys.executable, "-m", "broker", "--check", "--override", f"{JAAS_512}={SCRAM} required;"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and JAAS_512 in done.stderr


# ---- the pool reconnects before a session expires (KIP-368) ----------------------------------------------------


class _Clock:
    def __init__(self):
        self.now_ns = 0

    def monotonic_ns(self) -> int:
        return self.now_ns


def test_the_pool_replaces_a_connection_at_85_percent_of_its_session_and_backs_off_after_a_refusal():
    async def scenario():
        accepted = []

        async def serve(reader, writer):
            accepted.append(writer)
            await reader.read()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        from broker.io import Runtime

        runtime = Runtime.real()
        runtime.clock = _Clock()
        sessions = []

        async def authenticate(connection, timeout_s):
            sessions.append(connection)
            return 10_000  # ms

        pool = ConnectionPool(runtime, "test", None, authenticate)
        first = await pool.connection("127.0.0.1", port)
        runtime.clock.now_ns = 8_400 * 1_000_000
        assert await pool.connection("127.0.0.1", port) is first
        runtime.clock.now_ns = 8_500 * 1_000_000
        second = await pool.connection("127.0.0.1", port)
        assert second is not first and first.closed and not second.closed
        assert sessions == [first, second]
        await pool.close_all()

        # a refusal: the destination is not dialled again for a second
        async def refuse(connection, timeout_s):
            sessions.append("refused")
            raise AuthenticationError("refused")

        pool = ConnectionPool(runtime, "test", None, refuse)
        for _ in range(3):
            with pytest.raises(AuthenticationError):
                await pool.connection("127.0.0.1", port)
        assert sessions.count("refused") == 1
        runtime.clock.now_ns += 1_000_000_000
        with pytest.raises(AuthenticationError):
            await pool.connection("127.0.0.1", port)
        assert sessions.count("refused") == 2
        server.close()

    asyncio.run(scenario())
