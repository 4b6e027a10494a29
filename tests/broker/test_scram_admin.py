"""SCRAM credentials in the metadata (KIP-554): AlterUserScramCredentials / DescribeUserScramCredentials.

Real broker processes and real clients: confluent-kafka's AdminClient alters and describes, a new SASL/SCRAM
client authenticates with the new password on a single node (across a restart) and on every node of a 3-node
cluster without a restart; raw requests check Kafka's error codes for what clients refuse to send.
"""

from __future__ import annotations

import random
import time

import pytest

from broker.metadata.image import MetadataImage
from broker.metadata.records import decode_batch, encode_batch
from broker.metadata.scram import (
    DUPLICATE_RESOURCE,
    RESOURCE_NOT_FOUND,
    UNACCEPTABLE_CREDENTIAL,
    UNSUPPORTED_SASL_MECHANISM,
    Deletion,
    Upsertion,
    alter_records,
    scram_credential,
)
from broker.protocol import apis
from broker.server.sasl import Credentials

from . import kafka_requests as k
from .conftest import BrokerProcess
from .test_replication_process import free_ports
from .raw_client import RawClient
from .test_sasl import _sasl_broker

USERS = "alice:alice-secret-1\nbob:b0b,=pw\n"


def _upsert(name, mechanism=1, iterations=4096, password="pw-1"):
    salt = random.randbytes(16)
    credential = scram_credential("SCRAM-SHA-256" if mechanism != 2 else "SCRAM-SHA-512", password, salt, iterations) \
        if mechanism in (1, 2) else None
    return Upsertion(name, mechanism, iterations, credential)


def test_alter_rules_records_and_image():
    bootstrap = Credentials({"alice": "a-pw-123"}, random.Random(1)).scram
    results, records = alter_records({}, False, bootstrap, [Deletion("alice", 2), Deletion("nobody", 1), Deletion("x", 7)],
                                     [_upsert("carol"), _upsert("alice"), _upsert("", 1), _upsert("dave", iterations=100),
                                      _upsert("erin", iterations=20000), _upsert("frank", mechanism=3)])
    assert results == [
        ("alice", DUPLICATE_RESOURCE, "A user credential cannot be altered twice in the same request"),
        ("nobody", RESOURCE_NOT_FOUND, "Attempt to delete a user credential that does not exist"),
        ("x", UNSUPPORTED_SASL_MECHANISM, "Unknown SCRAM mechanism 7; accepted: 1 (SCRAM-SHA-256), 2 (SCRAM-SHA-512)"),
        ("carol", 0, None),
        ("", UNACCEPTABLE_CREDENTIAL, "Username must not be empty"),
        ("dave", UNACCEPTABLE_CREDENTIAL, "Too few iterations: 100 (at least 4096)"),
        ("erin", UNACCEPTABLE_CREDENTIAL, "Too many iterations: 20000 (at most 16384)"),
        ("frank", UNSUPPORTED_SASL_MECHANISM, "Unknown SCRAM mechanism 3; accepted: 1 (SCRAM-SHA-256), 2 (SCRAM-SHA-512)"),
    ]
    # the first change writes the bootstrap users (alice, both mechanisms) and the bootstrap marker first
    assert [type(r).__name__ for r in records] == ["UserScramCredentialRecord"] * 2 + ["ScramBootstrapRecord",
                                                                                       "UserScramCredentialRecord"]
    assert decode_batch(encode_batch(records)) == tuple(records)
    image = MetadataImage().apply_all(records, 5)
    assert image.scram_bootstrapped and sorted(image.scram_credentials["SCRAM-SHA-256"]) == ["alice", "carol"]
    assert b"a-pw-123" not in encode_batch(records) and b"pw-1" not in encode_batch(records)
    results, records = alter_records(image.scram_credentials, True, None, [Deletion("alice", 2)], [])
    assert results == [("alice", 0, None)] and "alice" not in image.apply_all(records, 6).scram_credentials["SCRAM-SHA-512"]


def _admin(bootstrap, user="alice", password="alice-secret-1", mechanism="SCRAM-SHA-256"):
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap, "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": mechanism,
                        "sasl.username": user, "sasl.password": password, "log_level": 0})


def _set_password(admin, user, password, mechanism="SCRAM_SHA_256", iterations=8192):
    from confluent_kafka.admin import ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion

    upsertion = UserScramCredentialUpsertion(user, ScramCredentialInfo(getattr(ScramMechanism, mechanism), iterations),
                                             password.encode())
    for future in admin.alter_user_scram_credentials([upsertion], request_timeout=20).values():
        future.result()


def _authenticates(bootstrap, user, password, mechanism="SCRAM-SHA-256") -> bool:
    """Whether a new client authenticates at `bootstrap` (its Metadata needs an authenticated connection)."""
    from confluent_kafka import KafkaException

    try:
        _admin(bootstrap, user, password, mechanism).list_topics(timeout=8)
        return True
    except KafkaException:
        return False


def test_confluent_admin_alters_and_describes_on_a_single_node_and_it_survives_a_restart(tmp_path):
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import ScramMechanism

    broker, _tls = _sasl_broker(tmp_path)
    try:
        admin = _admin(broker.bootstrap)
        # before any change the users file is what describe shows
        described = admin.describe_user_scram_credentials(request_timeout=10).result()
        assert sorted(described) == ["alice", "bob"]
        assert {(i.mechanism, i.iterations) for i in described["alice"].scram_credential_infos} == {
            (ScramMechanism.SCRAM_SHA_256, 4096), (ScramMechanism.SCRAM_SHA_512, 4096)}
        _set_password(admin, "carol", "carol-pw-9")
        _set_password(admin, "carol", "carol-pw-9", "SCRAM_SHA_512", 4096)
        _set_password(admin, "alice", "alice-new-pw-2")
        described = admin.describe_user_scram_credentials(["carol"], request_timeout=10)["carol"].result()
        assert {(i.mechanism, i.iterations) for i in described.scram_credential_infos} == {
            (ScramMechanism.SCRAM_SHA_256, 8192), (ScramMechanism.SCRAM_SHA_512, 4096)}
        with pytest.raises(KafkaException) as missing:
            admin.describe_user_scram_credentials(["nobody"], request_timeout=10)["nobody"].result()
        assert missing.value.args[0].code() == KafkaError.RESOURCE_NOT_FOUND
        assert _authenticates(broker.bootstrap, "carol", "carol-pw-9")
        assert _authenticates(broker.bootstrap, "carol", "carol-pw-9", "SCRAM-SHA-512")
        assert _authenticates(broker.bootstrap, "alice", "alice-new-pw-2")
        assert not _authenticates(broker.bootstrap, "alice", "alice-secret-1")
        assert _authenticates(broker.bootstrap, "bob", "b0b,=pw")  # bootstrapped from the users file with the change
        broker.stop()
        broker.start()
        assert _authenticates(broker.bootstrap, "carol", "carol-pw-9")
        assert not _authenticates(broker.bootstrap, "alice", "alice-secret-1")
        log = broker.stderr_text()
        assert "carol-pw-9" not in log and "alice-new-pw-2" not in log
        state = (tmp_path / "logs" / "__logquake_scram.json").read_text()
        assert "carol" in state and "carol-pw-9" not in state
    finally:
        broker.kill()


def _alter_request(deletions=(), upsertions=()):
    m = k.module("alter_user_scram_credentials", 0)
    return m.AlterUserScramCredentialsRequest(
        deletions=tuple(m.ScramCredentialDeletion(name=n, mechanism=mech) for n, mech in deletions),
        upsertions=tuple(m.ScramCredentialUpsertion(name=n, mechanism=mech, iterations=i, salt=s, salted_password=p)
                         for n, mech, i, s, p in upsertions))


def _describe_request(names):
    m = k.module("describe_user_scram_credentials", 0)
    return m.DescribeUserScramCredentialsRequest(users=None if names is None else tuple(m.UserName(name=n) for n in names))


def test_bad_alter_and_describe_requests_get_kafka_errors_and_never_crash(tmp_path):
    broker = BrokerProcess(tmp_path / "b").start()  # plaintext: no SASL needed to reach the APIs
    try:
        with RawClient(broker.port) as client:
            salted = b"\x01" * 32
            answer = client.call(_alter_request(
                deletions=[("ghost", 1), ("", 1), ("u9", 9)],
                upsertions=[("dup", 1, 4096, b"s" * 16, salted), ("dup", 2, 4096, b"s" * 16, salted),
                            ("weak", 1, 10, b"s" * 16, salted), ("nosalt", 1, 4096, b"", salted), ("ok", 1, 4096, b"s", salted)]))
            codes = {r.user: (r.error_code.value, r.error_message) for r in answer.results}
            assert codes == {
                "ghost": (RESOURCE_NOT_FOUND, "Attempt to delete a user credential that does not exist"),
                "": (UNACCEPTABLE_CREDENTIAL, "Username must not be empty"),
                "u9": (UNSUPPORTED_SASL_MECHANISM, "Unknown SCRAM mechanism 9; accepted: 1 (SCRAM-SHA-256), 2 (SCRAM-SHA-512)"),
                "dup": (DUPLICATE_RESOURCE, "A user credential cannot be altered twice in the same request"),
                "weak": (UNACCEPTABLE_CREDENTIAL, "Too few iterations: 10 (at least 4096)"),
                "nosalt": (UNACCEPTABLE_CREDENTIAL, "The salt and the salted password must not be empty"),
                "ok": (0, None),
            }
            answer = client.call(_describe_request(["ok", "ok", "ghost"]))
            assert {r.user: r.error_code.value for r in answer.results} == {"ghost": RESOURCE_NOT_FOUND,
                                                                            "ok": DUPLICATE_RESOURCE}
            answer = client.call(_describe_request(None))
            assert [(r.user, [(i.mechanism, i.iterations) for i in r.credential_infos]) for r in answer.results] == [
                ("ok", [(1, 4096)])]
        # a truncated Alter body closes that connection only (Kafka closes on a request it cannot parse)
        with RawClient(broker.port) as client:
            frame = client.request_bytes(_alter_request(upsertions=[("x", 1, 4096, b"s" * 16, b"p" * 32)]))
            body = frame[4:-20]
            client.send_bytes(len(body).to_bytes(4, "big") + body)
            assert client.is_closed_by_peer()
        with RawClient(broker.port) as client:
            assert client.call(k.api_versions()).error_code.value == 0
            versions = {v.api_key: (v.min_version, v.max_version) for v in client.call(k.api_versions()).api_keys}
            assert versions[apis.ALTER_USER_SCRAM_CREDENTIALS] == (0, 0) and versions[apis.DESCRIBE_USER_SCRAM_CREDENTIALS] == (0, 0)
        assert broker.alive()
        assert "malformed AlterUserScramCredentials v0 request" in broker.stderr_text()
    finally:
        broker.kill()


def test_an_unreadable_users_file_refuses_the_first_alteration_instead_of_dropping_its_users(tmp_path):
    broker = BrokerProcess(tmp_path / "b", overrides={"logquake.sasl.users.file": str(tmp_path / "missing.txt")}).start()
    try:
        with RawClient(broker.port) as client:
            answer = client.call(_alter_request(upsertions=[("carol", 1, 4096, b"s" * 16, b"p" * 32)]))
            [result] = answer.results
            assert result.error_code.value == -1 and "the users file cannot bootstrap the SCRAM credentials" in \
                result.error_message and "cannot be read" in result.error_message
            assert client.call(_describe_request(["carol"])).results[0].error_code.value == RESOURCE_NOT_FOUND
        assert broker.alive()
    finally:
        broker.kill()


def _sasl_cluster(tmp_path, size=3):
    users = tmp_path / "users.txt"
    users.write_text(USERS)
    ports = free_ports(2 * size)
    internal = dict(zip(range(1, size + 1), ports[:size]))
    client = dict(zip(range(1, size + 1), ports[size:]))
    voters = ",".join(f"{i}@127.0.0.1:{port}" for i, port in internal.items())
    nodes = {}
    for node_id in internal:
        properties = "\n".join([
            f"node.id={node_id}",
            f"listeners=INTERNAL://127.0.0.1:{internal[node_id]},CLIENT://127.0.0.1:{client[node_id]}",
            "listener.security.protocol.map=INTERNAL:PLAINTEXT,CLIENT:SASL_PLAINTEXT",
            "inter.broker.listener.name=INTERNAL",
            "controller.listener.names=INTERNAL",
            f"controller.quorum.voters={voters}",
            f"log.dirs={tmp_path}/node{node_id}/logs",
            f"logquake.sasl.users.file={users}",
            "broker.session.timeout.ms=3000",
            "broker.heartbeat.interval.ms=500",
        ]) + "\n"
        nodes[node_id] = BrokerProcess(tmp_path / f"node{node_id}", properties=properties)
    return nodes, client


def test_a_credential_altered_on_one_node_authenticates_on_every_node_of_a_cluster(tmp_path):
    nodes, client_ports = _sasl_cluster(tmp_path)
    try:
        for node in nodes.values():
            node.start(timeout_s=30)
        bootstraps = {i: f"127.0.0.1:{port}" for i, port in client_ports.items()}
        deadline = time.monotonic() + 30
        while not all(_authenticates(b, "alice", "alice-secret-1") for b in bootstraps.values()):
            assert time.monotonic() < deadline, "the cluster did not serve SASL clients within 30 s"
        admin = _admin(bootstraps[2])
        _set_password(admin, "carol", "carol-cluster-pw")
        _set_password(admin, "alice", "alice-rotated-pw")
        for node_id, bootstrap in bootstraps.items():
            # the answer waited for node 2's image; the others apply the same records within a heartbeat or so
            # (two alterations, two commits: a node may have applied the first only)
            deadline = time.monotonic() + 20
            while not (_authenticates(bootstrap, "carol", "carol-cluster-pw")
                       and _authenticates(bootstrap, "alice", "alice-rotated-pw")):
                assert time.monotonic() < deadline, f"node {node_id} does not know the new credentials"
            assert not _authenticates(bootstrap, "alice", "alice-secret-1"), node_id
            assert "authenticated with SCRAM-SHA-256 as User:carol" in nodes[node_id].stderr_text()
        carol = _admin(bootstraps[3], "carol", "carol-cluster-pw")  # kept: a destroyed client fails its futures
        described = carol.describe_user_scram_credentials(request_timeout=10).result()
        assert sorted(described) == ["alice", "bob", "carol"]
        for node in nodes.values():
            assert node.alive()
            assert "carol-cluster-pw" not in node.stderr_text() and "alice-rotated-pw" not in node.stderr_text()
    finally:
        for node in nodes.values():
            node.kill()
