"""ACL management on the wire (issue 20, point 2, second slice): CreateAcls, DescribeAcls, DeleteAcls.

Real broker processes and real clients: confluent-kafka's AdminClient (v2 requests) and kafka-python's
KafkaAdminClient (v3) create literal and prefixed ACLs, describe them with ANY and MATCH filters and delete them
on a single node, whose ACLs survive a restart; on a 3-node cluster ACLs created through one node are described
by every node and survive a node's restart. Raw v1 requests check Kafka's error codes for what clients refuse to
send. Without `authorizer.class.name` every answer is SECURITY_DISABLED, as Kafka's. The clients here are super
users; what the ACLs allow and deny is tests/broker/test_acl_enforcement.py's.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest

from broker.controller.acls import AclControl, decode_filter, encode_binding, encode_filter
from broker.metadata.acls import (
    INVALID_REQUEST,
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    PatternType,
    ResourceType,
)
from broker.metadata.image import MetadataImage
from broker.protocol import apis
from broker.server.config import ConfigError, build_config

from . import kafka_requests as k
from .conftest import BrokerProcess
from .raw_client import RawClient
from .test_config import _run_broker
from .test_replication_process import Cluster

STANDARD = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
AUTHORIZER = {"authorizer.class.name": STANDARD}
# the tests' plaintext clients are User:ANONYMOUS; as the administrator they are super users (managing ACLs needs
# ALTER on the cluster, tests/broker/test_acl_enforcement.py); a cluster's replication on one listener needs it too
ADMIN = {**AUTHORIZER, "super.users": "User:admin;User:ANONYMOUS"}
SECURITY_DISABLED = 54


# ---- the controller operation, in process --------------------------------------------------------------------


class _Quorum:
    """What AclControl uses of a MetadataQuorum: the image, and propose (commit and apply at once)."""

    def __init__(self):
        self.image = MetadataImage()
        self.batches = []

    async def propose(self, records):
        self.batches.append(list(records))
        self.image = self.image.apply_all(records, self.image.offset + 1)
        return self.image.offset


class _Controller:
    def __init__(self):
        self.handlers = {}


def _binding(kind=ResourceType.TOPIC, name="orders", pattern=PatternType.LITERAL, principal="User:alice", host="*",
             operation=AclOperation.READ, permission=AclPermissionType.ALLOW) -> AclBinding:
    return AclBinding(kind, name, pattern, principal, host, operation, permission)


def test_controller_operations_commit_one_batch_and_answer_per_item():
    controller, quorum = _Controller(), _Quorum()
    ids = iter([uuid.UUID(int=1), uuid.UUID(int=1), uuid.UUID(int=2)])  # a repeated id is drawn again
    AclControl(controller, quorum, new_id=lambda: next(ids))
    literal, prefixed = _binding(), _binding(name="pay-", pattern=PatternType.PREFIXED, operation=AclOperation.WRITE)
    bad = _binding(kind=ResourceType.CLUSTER, name="other")
    answer = asyncio.run(controller.handlers["create_acls"](
        {"creations": [encode_binding(b) for b in (literal, bad, prefixed, literal)]}))
    assert [r["error_code"] for r in answer["results"]] == [0, INVALID_REQUEST, 0, 0]
    assert len(quorum.batches) == 1 and answer["metadata_offset"] == quorum.image.offset
    assert dict(quorum.image.acls) == {uuid.UUID(int=1): literal, uuid.UUID(int=2): prefixed}
    # a filter travels with None (ANY) strings and unknown codes read as UNKNOWN
    assert decode_filter(json.loads(json.dumps(encode_filter(AclBindingFilter())))) == AclBindingFilter()
    assert decode_filter({**encode_filter(AclBindingFilter()), "operation": 99}).operation == AclOperation.UNKNOWN
    match = AclBindingFilter(ResourceType.TOPIC, "pay-now", PatternType.MATCH)
    answer = asyncio.run(controller.handlers["delete_acls"]({"filters": [encode_filter(f) for f in (
        match, AclBindingFilter(operation=AclOperation.UNKNOWN), match)]}))
    assert [(r["error_code"], len(r["matching"])) for r in answer["results"]] == [(0, 1), (INVALID_REQUEST, 0), (0, 1)]
    assert dict(quorum.image.acls) == {uuid.UUID(int=1): literal} and len(quorum.batches) == 2
    answer = asyncio.run(controller.handlers["delete_acls"]({"filters": [encode_filter(match)]}))
    assert answer["results"][0]["matching"] == [] and len(quorum.batches) == 2  # nothing to remove: no record


# ---- configuration ----------------------------------------------------------------------------------------------


def test_acl_properties_are_typed_and_a_malformed_one_is_named():
    config = build_config({"node.id": "1"})
    assert (config.value("authorizer.class.name"), config.value("super.users"),
            config.value("allow.everyone.if.no.acl.found")) == ("", None, False)
    config = build_config({"node.id": "1", **AUTHORIZER, "super.users": " User:admin ;User:ops;",
                           "allow.everyone.if.no.acl.found": "true"})
    assert config.value("authorizer.class.name") == STANDARD
    assert config.value("super.users") == frozenset({"User:admin", "User:ops"})
    assert config.value("allow.everyone.if.no.acl.found") is True
    with pytest.raises(ConfigError, match="super.users.*'admin' is not a principal.*type:name"):
        build_config({"node.id": "1", "super.users": "User:ops;admin"})
    with pytest.raises(ConfigError, match="authorizer.class.name.*StandardAuthorizer"):
        build_config({"node.id": "1", "authorizer.class.name": "kafka.security.authorizer.AclAuthorizer"})
    with pytest.raises(ConfigError, match="allow.everyone.if.no.acl.found.*true or false"):
        build_config({"node.id": "1", "allow.everyone.if.no.acl.found": "yes"})


def test_the_process_exits_2_naming_a_malformed_super_users(tmp_path):
    proc = _run_broker(tmp_path, f"node.id=1\nlog.dirs={tmp_path}/logs\n", f"authorizer.class.name={STANDARD}",
                       "super.users=User:admin;root")
    assert proc.returncode == 2
    assert "super.users" in proc.stderr and "'root' is not a principal" in proc.stderr


# ---- a single node ------------------------------------------------------------------------------------------------


def _confluent(bootstrap):
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})


def _c_binding(kind, name, pattern, principal, operation, permission, host="*"):
    from confluent_kafka.admin import AclBinding as CBinding

    return CBinding(kind, name, pattern, principal, host, operation, permission)


def _c_filter(kind=None, name=None, pattern=None, principal=None, operation=None, permission=None):
    from confluent_kafka.admin import AclBindingFilter as CFilter, AclOperation as Op, AclPermissionType as Perm, \
        ResourcePatternType as Pat, ResourceType as Res

    return CFilter(kind or Res.ANY, name, pattern or Pat.ANY, principal, None, operation or Op.ANY, permission or Perm.ANY)


def _described(admin, acl_filter) -> set[tuple]:
    return {(b.restype.name, b.name, b.resource_pattern_type.name, b.principal, b.host, b.operation.name,
             b.permission_type.name) for b in admin.describe_acls(acl_filter, request_timeout=10).result()}


def test_confluent_and_kafka_python_manage_acls_on_a_single_node_and_they_survive_a_restart(tmp_path):
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AclOperation as Op, AclPermissionType as Perm, ResourcePatternType as Pat, \
        ResourceType as Res
    from kafka.admin import ACLFilter, ACLOperation, ACLPermissionType, ACLResourcePatternType, KafkaAdminClient, \
        ResourcePatternFilter, ResourceType as KRes

    broker = BrokerProcess(tmp_path / "b", overrides=ADMIN).start()
    try:
        admin = _confluent(broker.bootstrap)
        wanted = [
            _c_binding(Res.TOPIC, "orders", Pat.LITERAL, "User:alice", Op.READ, Perm.ALLOW),
            _c_binding(Res.TOPIC, "pay-", Pat.PREFIXED, "User:bob", Op.WRITE, Perm.ALLOW),
            _c_binding(Res.TOPIC, "*", Pat.LITERAL, "User:*", Op.DESCRIBE, Perm.DENY, host="10.0.0.9"),
            _c_binding(Res.GROUP, "g-", Pat.PREFIXED, "User:alice", Op.READ, Perm.ALLOW),
            _c_binding(Res.BROKER, "other", Pat.LITERAL, "User:bob", Op.ALTER, Perm.ALLOW),  # Kafka: INVALID_REQUEST
            _c_binding(Res.TOPIC, "orders", Pat.LITERAL, "alice", Op.READ, Perm.ALLOW),  # no principal type
        ]
        futures = admin.create_acls(wanted, request_timeout=10)
        for binding in wanted[:4]:
            assert futures[binding].result() is None
        for binding in wanted[4:]:
            with pytest.raises(KafkaException) as refused:
                futures[binding].result()
            assert refused.value.args[0].code() == KafkaError.INVALID_REQUEST
        assert "kafka-cluster" in str(futures[wanted[4]].exception())
        # creating an existing binding succeeds and adds nothing
        assert admin.create_acls(wanted[:1], request_timeout=10)[wanted[0]].result() is None
        everything = _described(admin, _c_filter())
        assert everything == {
            ("TOPIC", "orders", "LITERAL", "User:alice", "*", "READ", "ALLOW"),
            ("TOPIC", "pay-", "PREFIXED", "User:bob", "*", "WRITE", "ALLOW"),
            ("TOPIC", "*", "LITERAL", "User:*", "10.0.0.9", "DESCRIBE", "DENY"),
            ("GROUP", "g-", "PREFIXED", "User:alice", "*", "READ", "ALLOW"),
        }
        # MATCH: every pattern that covers the name (the prefix and the wildcard), not the other literal
        assert {b[1] for b in _described(admin, _c_filter(Res.TOPIC, "pay-eu", Pat.MATCH))} == {"pay-", "*"}
        assert {b[1] for b in _described(admin, _c_filter(Res.TOPIC, "orders", Pat.MATCH))} == {"orders", "*"}
        # ANY pattern type with a name compares the names as strings; a principal filter is exact
        assert {b[1] for b in _described(admin, _c_filter(Res.ANY, "pay-", Pat.ANY))} == {"pay-"}
        assert {(b[0], b[1]) for b in _described(admin, _c_filter(principal="User:alice"))} == {
            ("TOPIC", "orders"), ("GROUP", "g-")}
        assert _described(admin, _c_filter(Res.TOPIC, None, Pat.PREFIXED, operation=Op.READ)) == set()

        broker.stop()
        broker.start()
        admin = _confluent(broker.bootstrap)
        assert _described(admin, _c_filter()) == everything
        state = json.loads((tmp_path / "b" / "logs" / "__logquake_acls.json").read_text())
        assert len(state["records"]) == 4 and {r["type"] for r in state["records"]} == {"AccessControlEntry"}

        # delete with a filter: the answer lists what was removed
        deleted = admin.delete_acls([_c_filter(Res.ANY, None, Pat.PREFIXED)], request_timeout=10)
        [removed] = deleted.values()
        assert {(b.name, b.principal) for b in removed.result()} == {("pay-", "User:bob"), ("g-", "User:alice")}
        assert {b[1] for b in _described(admin, _c_filter())} == {"orders", "*"}

        # kafka-python (v3 requests) sees the same ACLs and deletes the rest
        kp = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        try:
            any_filter = ACLFilter(None, None, ACLOperation.ANY, ACLPermissionType.ANY,
                                   ResourcePatternFilter(KRes.ANY, None, ACLResourcePatternType.ANY))
            described, error = kp.describe_acls(any_filter)
            assert error.errno == 0 and {(a.resource_pattern.resource_name, a.principal) for a in described} == {
                ("orders", "User:alice"), ("*", "User:*")}
            [(_, matched, error)] = kp.delete_acls([ACLFilter(
                None, None, ACLOperation.ANY, ACLPermissionType.DENY,
                ResourcePatternFilter(KRes.TOPIC, "anything", ACLResourcePatternType.MATCH))])
            assert error.errno == 0 and [(a.resource_pattern.resource_name, a.host) for a in matched] == [("*", "10.0.0.9")]
        finally:
            kp.close()
        broker.stop()
        broker.start()
        assert {b[1] for b in _described(_confluent(broker.bootstrap), _c_filter())} == {"orders"}
        assert broker.alive()
    finally:
        broker.kill()


def test_without_an_authorizer_every_acl_api_answers_security_disabled(tmp_path):
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AclOperation as Op, AclPermissionType as Perm, ResourcePatternType as Pat, \
        ResourceType as Res
    from kafka.admin import ACLFilter, ACLOperation, ACLPermissionType, ACLResourcePatternType, KafkaAdminClient, \
        ResourcePatternFilter, ResourceType as KRes
    from kafka.errors import SecurityDisabledError

    broker = BrokerProcess(tmp_path / "b").start()
    try:
        admin = _confluent(broker.bootstrap)
        binding = _c_binding(Res.TOPIC, "orders", Pat.LITERAL, "User:alice", Op.READ, Perm.ALLOW)
        for future in [admin.create_acls([binding], request_timeout=10)[binding],
                       *admin.delete_acls([_c_filter()], request_timeout=10).values()]:
            with pytest.raises(KafkaException) as refused:
                future.result()
            assert refused.value.args[0].code() == KafkaError.SECURITY_DISABLED
        # confluent-kafka 2.16 does not surface DescribeAcls' response-level error (it gives []); kafka-python does
        kp = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        try:
            with pytest.raises(SecurityDisabledError, match="No Authorizer is configured on the broker"):
                kp.describe_acls(ACLFilter(None, None, ACLOperation.ANY, ACLPermissionType.ANY,
                                           ResourcePatternFilter(KRes.ANY, None, ACLResourcePatternType.ANY)))
        finally:
            kp.close()
        with RawClient(broker.port) as client:
            answer = client.call(_create_request([_binding()], version=1))
            assert [(r.error_code.value, r.error_message) for r in answer.results] == [
                (SECURITY_DISABLED, "No Authorizer is configured.")]
            answer = client.call(_describe_request(AclBindingFilter(), version=3))
            assert (answer.error_code.value, answer.error_message, answer.resources) == (
                SECURITY_DISABLED, "No Authorizer is configured on the broker", ())
            answer = client.call(_delete_request([AclBindingFilter(), AclBindingFilter()], version=2))
            assert [(r.error_code.value, r.error_message) for r in answer.filter_results] == [
                (SECURITY_DISABLED, "No Authorizer is configured.")] * 2
            versions = {v.api_key: (v.min_version, v.max_version) for v in client.call(k.api_versions()).api_keys}
            assert [versions[key] for key in (apis.DESCRIBE_ACLS, apis.CREATE_ACLS, apis.DELETE_ACLS)] == [(1, 3)] * 3
        assert not (tmp_path / "b" / "logs" / "__logquake_acls.json").exists()
    finally:
        broker.kill()


def _create_request(bindings, version):
    m = k.module("create_acls", version)
    return m.CreateAclsRequest(creations=tuple(m.AclCreation(
        resource_type=int(b.resource_type), resource_name=b.resource_name, resource_pattern_type=int(b.pattern_type),
        principal=b.principal, host=b.host, operation=int(b.operation), permission_type=int(b.permission))
        for b in bindings))


def _filter_fields(f: AclBindingFilter) -> dict:
    return dict(resource_type_filter=int(f.resource_type), resource_name_filter=f.resource_name,
                pattern_type_filter=int(f.pattern_type), principal_filter=f.principal, host_filter=f.host,
                operation=int(f.operation), permission_type=int(f.permission))


def _describe_request(acl_filter, version):
    return k.module("describe_acls", version).DescribeAclsRequest(**_filter_fields(acl_filter))


def _delete_request(filters, version):
    m = k.module("delete_acls", version)
    return m.DeleteAclsRequest(filters=tuple(m.DeleteAclsFilter(**_filter_fields(f)) for f in filters))


def test_raw_requests_get_kafka_errors_per_creation_and_filter(tmp_path):
    broker = BrokerProcess(tmp_path / "b", overrides=ADMIN).start()
    try:
        with RawClient(broker.port) as client:
            good = _binding(name="t", operation=AclOperation.ALL)
            user = _binding(kind=ResourceType.USER, name="User:carol", operation=AclOperation.CREATE_TOKENS)
            answer = client.call(_create_request([
                good, _binding(kind=ResourceType.UNKNOWN), _binding(kind=ResourceType.ANY),
                _binding(pattern=PatternType.MATCH), _binding(name=""), _binding(operation=AclOperation.ANY),
                _binding(permission=AclPermissionType.ANY), good, user], version=1))
            codes = [r.error_code.value for r in answer.results]
            assert codes == [0] + [INVALID_REQUEST] * 6 + [0, 0]
            assert all(r.error_message for r in answer.results[1:7]) and answer.results[0].error_message is None
            # DescribeAcls v1 (non-flexible) groups by resource pattern; UNKNOWN in a filter is INVALID_REQUEST
            answer = client.call(_describe_request(AclBindingFilter(), version=1))
            assert answer.error_code.value == 0
            assert [(r.resource_type, r.resource_name, r.pattern_type, [(a.principal, a.operation) for a in r.acls])
                    for r in answer.resources] == [(2, "t", 3, [("User:alice", 2)]),
                                                   (7, "User:carol", 3, [("User:alice", 13)])]
            answer = client.call(_describe_request(AclBindingFilter(permission=AclPermissionType.UNKNOWN), version=1))
            assert answer.error_code.value == INVALID_REQUEST and answer.resources == ()
            # two filters of one request may list the same ACL; it is removed once
            answer = client.call(_delete_request([
                AclBindingFilter(resource_type=ResourceType.TOPIC), AclBindingFilter(resource_name="t"),
                AclBindingFilter(pattern_type=PatternType.UNKNOWN)], version=1))
            assert [(r.error_code.value, [(a.resource_name, a.operation, a.error_code.value) for a in r.matching_acls])
                    for r in answer.filter_results] == [(0, [("t", 2, 0)]), (0, [("t", 2, 0)]), (INVALID_REQUEST, [])]
            answer = client.call(_describe_request(AclBindingFilter(), version=3))
            assert [r.resource_name for r in answer.resources] == ["User:carol"]
        assert broker.alive()
        assert "CreateAcls of ALLOW User:alice from * READ on UNKNOWN LITERAL 'orders' refused: invalid_request" in \
            broker.stderr_text()
    finally:
        broker.kill()


# ---- a cluster -----------------------------------------------------------------------------------------------------


def _described_at(port: int, acl_filter=AclBindingFilter()) -> set[tuple]:
    with RawClient(port) as client:
        answer = client.call(_describe_request(acl_filter, version=3))
    assert answer.error_code.value == 0, answer.error_message
    return {(r.resource_type, r.resource_name, r.pattern_type, a.principal, a.host, a.operation, a.permission_type)
            for r in answer.resources for a in r.acls}


def _wait_described(port: int, expected: set[tuple], what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if _described_at(port) == expected:
                return
        except OSError:
            pass  # a restarting node
        assert time.monotonic() < deadline, f"{what}: described {_described_at(port)}, expected {expected}"
        time.sleep(0.2)


def _row(b: AclBinding) -> tuple:
    return (int(b.resource_type), b.resource_name, int(b.pattern_type), b.principal, b.host, int(b.operation),
            int(b.permission))


@pytest.mark.slow
def test_acls_created_through_one_node_are_described_by_every_node_and_survive_a_restart(tmp_path):
    cluster = Cluster(tmp_path, 3, ADMIN)
    try:
        cluster.start()
        _create_describe_delete_restart(cluster)
    finally:
        cluster.stop()


def _create_describe_delete_restart(cluster: Cluster) -> None:
    from confluent_kafka.admin import ResourcePatternType as Pat, ResourceType as Res

    literal = _binding()
    prefixed = _binding(kind=ResourceType.TRANSACTIONAL_ID, name="tx-", pattern=PatternType.PREFIXED,
                        operation=AclOperation.WRITE)
    cluster_acl = _binding(kind=ResourceType.CLUSTER, name="kafka-cluster", principal="User:ops",
                           operation=AclOperation.ALTER_CONFIGS)
    deadline = time.monotonic() + 30
    while True:  # the first request may come before a controller is elected: REQUEST_TIMED_OUT, retried
        try:
            with RawClient(cluster.ports[1], timeout_s=30) as client:
                answer = client.call(_create_request([literal, prefixed, cluster_acl], version=2))
        except OSError:  # the node closes checked requests until its metadata caught up (broker.server.authorization)
            assert time.monotonic() < deadline, "node 1 closed every CreateAcls for 30 s"
            time.sleep(0.5)
            continue
        codes = [r.error_code.value for r in answer.results]
        if codes == [0, 0, 0] or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert codes == [0, 0, 0], [r.error_message for r in answer.results]
    expected = {_row(literal), _row(prefixed), _row(cluster_acl)}
    assert _described_at(cluster.ports[1]) == expected  # the answer waited until node 1 applied the records
    for node_id, port in cluster.ports.items():
        _wait_described(port, expected, f"node {node_id}")
    # confluent-kafka deletes through whichever node it picks and sees what was removed
    [removed] = cluster.admin().delete_acls([_c_filter(Res.TRANSACTIONAL_ID, "tx-9", Pat.MATCH)],
                                            request_timeout=20).values()
    assert [(b.name, b.resource_pattern_type.name) for b in removed.result()] == [("tx-", "PREFIXED")]
    expected.discard(_row(prefixed))
    for node_id, port in cluster.ports.items():
        _wait_described(port, expected, f"node {node_id} after the delete")
    node = cluster.nodes[2]
    node.stop()
    node.start(timeout_s=30)
    _wait_described(cluster.ports[2], expected, "node 2 after its restart")
