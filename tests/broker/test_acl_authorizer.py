"""The ACL model and the authorizer's decision (broker.metadata.acls): Kafka's rules one by one, plus Hypothesis.

Pure functions, no broker: deny over allow, ALL, the operations an ALLOW implies (and a DENY does not), literal,
wildcard and prefixed patterns, principal and host wildcards, super users, allow.everyone.if.no.acl.found, the
wire codes, filters (ANY, MATCH, exact), and the controller's create, delete and describe decisions.
"""

from __future__ import annotations

import itertools
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.metadata.acls import (
    CLUSTER_NAME,
    INVALID_REQUEST,
    NONE,
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    Authorizer,
    PatternType,
    ResourceType,
    authorize,
    binding_error,
    create_decision,
    delete_decision,
    describe,
    parse_super_users,
)

TOPIC, GROUP, CLUSTER = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.CLUSTER
LITERAL, PREFIXED, MATCH, ANY_PATTERN = PatternType.LITERAL, PatternType.PREFIXED, PatternType.MATCH, PatternType.ANY
ALLOW, DENY = AclPermissionType.ALLOW, AclPermissionType.DENY
Op = AclOperation
ALICE, BOB = "User:alice", "User:bob"
HOST = "10.0.0.1"


def acl(name="orders", operation=Op.READ, permission=ALLOW, principal=ALICE, host="*", pattern=LITERAL, kind=TOPIC):
    return AclBinding(kind, name, pattern, principal, host, operation, permission)


def allowed(acls, operation=Op.READ, name="orders", principal=ALICE, host=HOST, kind=TOPIC, **config):
    return authorize(acls, principal, host, operation, kind, name, **config)


def ids():
    """A deterministic id source: 00..01, 00..02, ..."""
    counter = itertools.count(1)
    return lambda: uuid.UUID(int=next(counter))


# ---- wire codes -------------------------------------------------------------------------------------------


def test_wire_codes_are_kafkas():
    assert {m.name: int(m) for m in ResourceType} == {
        "UNKNOWN": 0, "ANY": 1, "TOPIC": 2, "GROUP": 3, "CLUSTER": 4, "TRANSACTIONAL_ID": 5, "DELEGATION_TOKEN": 6,
        "USER": 7}
    assert {m.name: int(m) for m in PatternType} == {"UNKNOWN": 0, "ANY": 1, "MATCH": 2, "LITERAL": 3, "PREFIXED": 4}
    assert {m.name: int(m) for m in AclOperation} == {
        "UNKNOWN": 0, "ANY": 1, "ALL": 2, "READ": 3, "WRITE": 4, "CREATE": 5, "DELETE": 6, "ALTER": 7, "DESCRIBE": 8,
        "CLUSTER_ACTION": 9, "DESCRIBE_CONFIGS": 10, "ALTER_CONFIGS": 11, "IDEMPOTENT_WRITE": 12, "CREATE_TOKENS": 13,
        "DESCRIBE_TOKENS": 14}
    assert {m.name: int(m) for m in AclPermissionType} == {"UNKNOWN": 0, "ANY": 1, "DENY": 2, "ALLOW": 3}


def test_an_unknown_code_reads_as_unknown():
    assert ResourceType.from_code(99) is ResourceType.UNKNOWN
    assert AclOperation.from_code(15) is AclOperation.UNKNOWN  # Kafka 4's TWO_PHASE_COMMIT is not ours
    assert PatternType.from_code(-1) is PatternType.UNKNOWN
    assert AclPermissionType.from_code(3) is ALLOW


# ---- the decision -----------------------------------------------------------------------------------------


def test_no_acl_for_the_resource_means_the_flag_decides():
    acls = [acl(name="payments")]
    assert not allowed(acls)
    assert allowed(acls, allow_everyone_if_no_acl_found=True)
    assert not allowed([])
    assert allowed([], allow_everyone_if_no_acl_found=True)


def test_an_acl_for_someone_else_on_the_resource_takes_the_flag_away():
    acls = [acl(principal=BOB)]
    assert not allowed(acls, allow_everyone_if_no_acl_found=True)
    assert allowed(acls, principal=BOB, allow_everyone_if_no_acl_found=True)


def test_allow_for_the_operation_allows_only_it():
    acls = [acl(operation=Op.WRITE)]
    assert allowed(acls, Op.WRITE)
    assert not allowed(acls, Op.READ)
    assert not allowed(acls, Op.CREATE)


def test_deny_wins_over_allow_in_any_order():
    for acls in ([acl(), acl(permission=DENY)], [acl(permission=DENY), acl()]):
        assert not allowed(acls)
    # a wildcard ALLOW does not beat a specific DENY, nor a specific ALLOW a wildcard DENY
    assert not allowed([acl(name="*", principal="User:*"), acl(permission=DENY)])
    assert not allowed([acl(), acl(name="*", principal="User:*", host="*", permission=DENY)])
    assert not allowed([acl(), acl(name="ord", pattern=PREFIXED, permission=DENY)])


def test_deny_for_another_operation_leaves_the_allow():
    assert allowed([acl(), acl(operation=Op.WRITE, permission=DENY)])


def test_all_matches_every_operation_in_allow_and_deny():
    for operation in (Op.READ, Op.WRITE, Op.DESCRIBE, Op.ALTER_CONFIGS, Op.IDEMPOTENT_WRITE, Op.CREATE_TOKENS):
        assert allowed([acl(operation=Op.ALL)], operation)
        assert not allowed([acl(operation=Op.ALL), acl(operation=Op.ALL, permission=DENY)], operation)
        assert not allowed([acl(operation=operation), acl(operation=Op.ALL, permission=DENY)], operation)


@pytest.mark.parametrize("operation", [Op.READ, Op.WRITE, Op.DELETE, Op.ALTER, Op.DESCRIBE])
def test_describe_is_implied_by_read_write_delete_alter(operation):
    assert allowed([acl(operation=operation)], Op.DESCRIBE)


@pytest.mark.parametrize("operation", [Op.CREATE, Op.ALTER_CONFIGS, Op.DESCRIBE_CONFIGS, Op.CLUSTER_ACTION,
                                       Op.IDEMPOTENT_WRITE])
def test_describe_is_not_implied_by_the_others(operation):
    assert not allowed([acl(operation=operation)], Op.DESCRIBE)


def test_describe_configs_is_implied_by_alter_configs_only():
    assert allowed([acl(operation=Op.ALTER_CONFIGS)], Op.DESCRIBE_CONFIGS)
    assert allowed([acl(operation=Op.DESCRIBE_CONFIGS)], Op.DESCRIBE_CONFIGS)
    assert not allowed([acl(operation=Op.ALTER)], Op.DESCRIBE_CONFIGS)
    assert not allowed([acl(operation=Op.DESCRIBE_CONFIGS)], Op.ALTER_CONFIGS)


def test_implication_goes_one_way_and_only_for_allow():
    assert not allowed([acl(operation=Op.DESCRIBE)], Op.READ)
    # a DENY READ does not deny DESCRIBE: the ALLOW DESCRIBE stands
    assert allowed([acl(operation=Op.DESCRIBE), acl(operation=Op.READ, permission=DENY)], Op.DESCRIBE)
    assert allowed([acl(operation=Op.WRITE), acl(operation=Op.READ, permission=DENY)], Op.DESCRIBE)
    assert allowed([acl(operation=Op.DESCRIBE_CONFIGS), acl(operation=Op.ALTER_CONFIGS, permission=DENY)],
                   Op.DESCRIBE_CONFIGS)
    # ... but a DENY DESCRIBE denies it, whatever ALLOW implies it
    assert not allowed([acl(operation=Op.READ), acl(operation=Op.DESCRIBE, permission=DENY)], Op.DESCRIBE)


def test_literal_wildcard_and_prefixed_patterns():
    assert allowed([acl(name="orders")], name="orders")
    assert not allowed([acl(name="orders")], name="orders2")
    assert not allowed([acl(name="order")], name="orders")  # a literal name is not a prefix
    assert allowed([acl(name="*")], name="orders")
    assert allowed([acl(name="ord", pattern=PREFIXED)], name="orders")
    assert allowed([acl(name="orders", pattern=PREFIXED)], name="orders")  # a name is a prefix of itself
    assert not allowed([acl(name="orders-", pattern=PREFIXED)], name="orders")
    assert not allowed([acl(name="rders", pattern=PREFIXED)], name="orders")
    # a prefixed "*" is not a wildcard: it covers names that start with "*"
    assert not allowed([acl(name="*", pattern=PREFIXED)], name="orders")
    assert allowed([acl(name="*", pattern=PREFIXED)], name="*stars")


def test_patterns_of_another_resource_type_do_not_count():
    acls = [acl(name="*", kind=GROUP), acl(name="o", pattern=PREFIXED, kind=GROUP), acl(kind=GROUP)]
    assert not allowed(acls, kind=TOPIC)
    assert allowed(acls, kind=TOPIC, allow_everyone_if_no_acl_found=True)
    assert allowed(acls, kind=GROUP)


def test_many_prefix_lengths():
    acls = [acl(name="o", pattern=PREFIXED, operation=Op.READ), acl(name="orde", pattern=PREFIXED, operation=Op.WRITE),
            acl(name="ordersXL", pattern=PREFIXED, operation=Op.DELETE), acl(name="p", pattern=PREFIXED, permission=DENY)]
    authorizer = Authorizer(acls)
    assert authorizer.authorize(ALICE, HOST, Op.READ, TOPIC, "orders")
    assert authorizer.authorize(ALICE, HOST, Op.WRITE, TOPIC, "orders")
    assert not authorizer.authorize(ALICE, HOST, Op.DELETE, TOPIC, "orders")
    assert authorizer.authorize(ALICE, HOST, Op.DELETE, TOPIC, "ordersXL1")
    assert not authorizer.authorize(ALICE, HOST, Op.READ, TOPIC, "pay")
    assert sorted(b.resource_name for b in authorizer.covering(TOPIC, "ordersXL")) == ["o", "orde", "ordersXL"]


def test_principal_wildcard_is_user_star_only():
    assert allowed([acl(principal="User:*")])
    assert allowed([acl(principal="User:*")], principal="User:anyone")
    assert not allowed([acl(principal="Group:*")])
    assert not allowed([acl(principal="User:ALICE")])  # principals compare exactly


def test_host_must_match_or_be_the_wildcard():
    assert allowed([acl(host=HOST)])
    assert not allowed([acl(host="10.0.0.2")])
    assert allowed([acl(host="*")], host="192.168.1.7")
    assert not allowed([acl(), acl(host=HOST, permission=DENY)])
    assert allowed([acl(), acl(host="10.0.0.2", permission=DENY)])


def test_no_matching_acl_for_the_caller_is_deny_even_with_the_flag():
    assert not allowed([acl(host="10.0.0.2")], allow_everyone_if_no_acl_found=True)


def test_super_users_are_always_allowed():
    super_users = parse_super_users("User:admin")
    everything_denied = [acl(name="*", principal="User:*", operation=Op.ALL, permission=DENY)]
    assert allowed(everything_denied, Op.ALTER, principal="User:admin", super_users=super_users)
    assert not allowed(everything_denied, Op.ALTER, principal=ALICE, super_users=super_users)
    assert allowed([], Op.CLUSTER_ACTION, name=CLUSTER_NAME, kind=CLUSTER, principal="User:admin",
                   super_users=super_users)


def any_allowed(acls, operation=Op.WRITE, principal=ALICE, kind=TOPIC, **config) -> bool:
    return Authorizer(acls, **config).authorize_any(principal, HOST, operation, kind)


def test_authorize_any_needs_an_allow_no_deny_covers():
    """KIP-679: an idempotent producer without IDEMPOTENT_WRITE may still init if it may WRITE some topic."""
    assert any_allowed([acl(operation=Op.WRITE)])
    assert any_allowed([acl(name="pay-", pattern=PREFIXED, operation=Op.ALL)])
    assert not any_allowed([acl(operation=Op.READ)])  # another operation
    assert not any_allowed([acl(operation=Op.WRITE, principal=BOB)])  # another principal
    assert not any_allowed([acl(operation=Op.WRITE, host="10.9.9.9")])  # another host
    assert not any_allowed([acl(operation=Op.WRITE, kind=GROUP)])  # another resource type
    # a DENY of the caller covering the allowed pattern: by name, by prefix, or everything
    assert not any_allowed([acl(operation=Op.WRITE), acl(operation=Op.WRITE, permission=DENY)])
    assert not any_allowed([acl(operation=Op.WRITE), acl(name="ord", pattern=PREFIXED, operation=Op.WRITE, permission=DENY)])
    assert not any_allowed([acl(name="pay-eu", pattern=PREFIXED, operation=Op.WRITE),
                            acl(name="pay-", pattern=PREFIXED, operation=Op.ALL, permission=DENY)])
    assert not any_allowed([acl(operation=Op.WRITE), acl(name="*", operation=Op.WRITE, permission=DENY)])
    # a DENY of another topic, or of another caller, leaves the ALLOW
    assert any_allowed([acl(operation=Op.WRITE), acl(name="audit", operation=Op.WRITE, permission=DENY)])
    assert any_allowed([acl(operation=Op.WRITE), acl(name="*", operation=Op.WRITE, permission=DENY, principal=BOB)])
    # no ACL of the type: the flag; super users always
    assert not any_allowed([acl(kind=GROUP)]) and any_allowed([acl(kind=GROUP)], allow_everyone_if_no_acl_found=True)
    assert not any_allowed([acl(principal=BOB)], allow_everyone_if_no_acl_found=True)
    assert any_allowed([], principal="User:root", super_users=frozenset({"User:root"}))


def test_super_users_parsing():
    assert parse_super_users(None) == frozenset()
    assert parse_super_users("") == frozenset()
    assert parse_super_users(" User:a ; User:b;;User:c:d ") == {"User:a", "User:b", "User:c:d"}
    # a comma is not a separator: one principal named "a,User:b"
    assert parse_super_users("User:a,User:b") == {"User:a,User:b"}
    with pytest.raises(ValueError, match=r"super.users entry 'admin' is not a principal; accepted: type:name"):
        parse_super_users("User:a;admin")


def test_a_star_in_super_users_is_not_a_wildcard():
    assert not allowed([acl(principal=BOB)], principal=ALICE, super_users=parse_super_users("User:*"))


def test_authorize_refuses_filter_values():
    with pytest.raises(AssertionError):
        allowed([], Op.ANY)
    with pytest.raises(AssertionError):
        allowed([], kind=ResourceType.ANY)


# ---- filters ------------------------------------------------------------------------------------------------


BINDINGS = [
    acl("orders"),  # 0
    acl("*"),  # 1
    acl("ord", pattern=PREFIXED),  # 2
    acl("orders", pattern=PREFIXED, operation=Op.WRITE, permission=DENY),  # 3
    acl("payments", principal=BOB, host=HOST),  # 4
    acl("orders", kind=GROUP),  # 5
    acl(CLUSTER_NAME, kind=CLUSTER, operation=Op.ALTER),  # 6
]


def matched(acl_filter):
    return [n for n, b in enumerate(BINDINGS) if acl_filter.matches(b)]


def test_filter_any_matches_everything():
    assert matched(AclBindingFilter()) == list(range(len(BINDINGS)))


def test_filter_match_finds_every_pattern_covering_a_name():
    assert matched(AclBindingFilter(TOPIC, "orders", MATCH)) == [0, 1, 2, 3]
    assert matched(AclBindingFilter(TOPIC, "ordinal", MATCH)) == [1, 2]
    assert matched(AclBindingFilter(ResourceType.ANY, "orders", MATCH)) == [0, 1, 2, 3, 5]
    assert matched(AclBindingFilter(TOPIC, None, MATCH)) == [0, 1, 2, 3, 4]


def test_filter_any_or_a_pattern_type_compares_names_exactly():
    assert matched(AclBindingFilter(TOPIC, "orders", ANY_PATTERN)) == [0, 3]
    assert matched(AclBindingFilter(TOPIC, "orders", LITERAL)) == [0]
    assert matched(AclBindingFilter(TOPIC, "orders", PREFIXED)) == [3]
    assert matched(AclBindingFilter(TOPIC, "*", LITERAL)) == [1]  # only the wildcard binding itself
    assert matched(AclBindingFilter(TOPIC, "ord", LITERAL)) == []


def test_filter_entry_fields_compare_exactly():
    assert matched(AclBindingFilter(principal=BOB)) == [4]
    assert matched(AclBindingFilter(principal="User:*")) == []  # not a wildcard in a filter
    assert matched(AclBindingFilter(host=HOST)) == [4]
    assert matched(AclBindingFilter(operation=Op.WRITE)) == [3]
    assert matched(AclBindingFilter(operation=Op.DESCRIBE)) == []  # no implication in filters
    assert matched(AclBindingFilter(permission=DENY)) == [3]
    assert matched(AclBindingFilter(CLUSTER, CLUSTER_NAME, LITERAL, ALICE, "*", Op.ALTER, ALLOW)) == [6]


# ---- create, delete, describe -----------------------------------------------------------------------------


@pytest.mark.parametrize("binding, message", [
    (acl("other", kind=CLUSTER), "The CLUSTER resource can only be named kafka-cluster, not 'other'"),
    (acl(""), "The resource name must not be empty"),
    (acl(kind=ResourceType.ANY), "Invalid resourceType ANY; an ACL names one resource type"),
    (acl(kind=ResourceType.UNKNOWN), "Invalid resourceType UNKNOWN; an ACL names one resource type"),
    (acl(pattern=MATCH), "Invalid patternType MATCH; accepted: LITERAL, PREFIXED"),
    (acl(pattern=ANY_PATTERN), "Invalid patternType ANY; accepted: LITERAL, PREFIXED"),
    (acl(pattern=PatternType.UNKNOWN), "Invalid patternType UNKNOWN; accepted: LITERAL, PREFIXED"),
    (acl(operation=Op.ANY), "Invalid operation ANY; an ACL names one operation or ALL"),
    (acl(operation=Op.UNKNOWN), "Invalid operation UNKNOWN; an ACL names one operation or ALL"),
    (acl(permission=AclPermissionType.ANY), "Invalid permissionType ANY; accepted: ALLOW, DENY"),
    (acl(permission=AclPermissionType.UNKNOWN), "Invalid permissionType UNKNOWN; accepted: ALLOW, DENY"),
    (acl(principal="alice"), "Cannot parse principal 'alice': accepted: type:name, such as User:alice"),
])
def test_create_validation_errors(binding, message):
    assert binding_error(binding) == message
    results, records = create_decision({}, [binding], ids())
    assert results == [(INVALID_REQUEST, message)]
    assert records == []


def test_create_accepts_what_kafka_accepts():
    for binding in (acl(CLUSTER_NAME, kind=CLUSTER, pattern=PREFIXED, operation=Op.IDEMPOTENT_WRITE),
                    acl("*", pattern=PREFIXED), acl(principal="Group:ops"), acl(principal="User:"),
                    acl(kind=ResourceType.USER, operation=Op.CREATE_TOKENS), acl(host="::1")):
        assert binding_error(binding) is None, binding


def test_create_writes_one_record_per_new_binding():
    existing = {uuid.UUID(int=1): acl()}
    bad = acl(operation=Op.ANY)
    new, other = acl(operation=Op.WRITE), acl(name="*", permission=DENY)
    results, records = create_decision(existing, [acl(), new, bad, new, other], ids())
    assert results == [(NONE, None), (NONE, None), (INVALID_REQUEST, "Invalid operation ANY; an ACL names one "
                                                                     "operation or ALL"), (NONE, None), (NONE, None)]
    # the existing binding writes nothing; the id source's first id is taken, so it is drawn again
    assert [(r.id.int, r.resource_name, r.operation, r.permission_type) for r in records] == [
        (2, "orders", int(Op.WRITE), int(ALLOW)), (3, "*", int(Op.READ), int(DENY))]


def test_create_refuses_an_id_source_that_never_gives_a_fresh_id():
    with pytest.raises(AssertionError, match="not random"):
        create_decision({uuid.UUID(int=1): acl()}, [acl(operation=Op.WRITE)], lambda: uuid.UUID(int=1))


def test_delete_lists_the_matches_of_each_filter_and_removes_each_acl_once():
    existing = {uuid.UUID(int=n + 1): b for n, b in enumerate(BINDINGS)}
    filters = [AclBindingFilter(TOPIC, "orders", MATCH), AclBindingFilter(permission=DENY),
               AclBindingFilter(TOPIC, "nothing", LITERAL), AclBindingFilter(operation=Op.UNKNOWN),
               AclBindingFilter(ResourceType.UNKNOWN)]
    results, records = delete_decision(existing, filters)
    assert results == [
        (NONE, None, tuple(BINDINGS[:4])),
        (NONE, None, (BINDINGS[3],)),  # listed again: each filter sees every ACL
        (NONE, None, ()),
        (INVALID_REQUEST, "The entry filter has an UNKNOWN field: UNKNOWN ANY", ()),
        (INVALID_REQUEST, "The resource pattern filter has an UNKNOWN field: UNKNOWN ANY", ()),
    ]
    assert [r.id.int for r in records] == [1, 2, 3, 4]


def test_describe():
    existing = {uuid.UUID(int=n + 1): b for n, b in enumerate(BINDINGS)}
    assert describe(existing, AclBindingFilter()) == (NONE, None, tuple(BINDINGS))
    assert describe(existing, AclBindingFilter(GROUP)) == (NONE, None, (BINDINGS[5],))
    assert describe(existing, AclBindingFilter(TOPIC, "payments", MATCH, principal=BOB)) == (NONE, None, (BINDINGS[4],))
    assert describe(existing, AclBindingFilter(pattern_type=PatternType.UNKNOWN)) == (
        INVALID_REQUEST, "The resource pattern filter has an UNKNOWN field: ANY UNKNOWN", ())


# ---- properties ---------------------------------------------------------------------------------------------

names = st.sampled_from(["o", "or", "orders", "orders2", "p", "*"])
principals = st.sampled_from([ALICE, BOB, "User:*"])
hosts = st.sampled_from(["*", HOST, "10.0.0.2"])
operations = st.sampled_from([op for op in AclOperation if op not in (Op.UNKNOWN, Op.ANY)])
asked_operations = st.sampled_from([op for op in AclOperation if op not in (Op.UNKNOWN, Op.ANY, Op.ALL)])
kinds = st.sampled_from([TOPIC, GROUP])
bindings = st.builds(AclBinding, kinds, names, st.sampled_from([LITERAL, PREFIXED]), principals, hosts, operations,
                     st.sampled_from([ALLOW, DENY]))
questions = st.tuples(st.sampled_from([ALICE, BOB, "User:carol"]), st.sampled_from([HOST, "10.0.0.2"]),
                      asked_operations, kinds, names)


@given(st.lists(bindings, max_size=12), questions, st.booleans(), st.booleans(), st.data())
def test_a_deny_for_the_caller_is_never_overridden(acls, question, flag, is_super, data):
    principal, host, operation, kind, name = question
    # every pattern that covers the name: itself, the wildcard, each of its prefixes
    patterns = [(name, LITERAL), ("*", LITERAL)] + [(name[:length], PREFIXED) for length in range(1, len(name) + 1)]
    pattern_name, pattern_type = data.draw(st.sampled_from(patterns))
    deny = AclBinding(kind, pattern_name, pattern_type, data.draw(st.sampled_from([principal, "User:*"])),
                      data.draw(st.sampled_from([host, "*"])), data.draw(st.sampled_from([operation, Op.ALL])), DENY)
    position = data.draw(st.integers(0, len(acls)))
    with_deny = [*acls[:position], deny, *acls[position:]]
    super_users = frozenset({principal}) if is_super else frozenset()
    decision = authorize(with_deny, principal, host, operation, kind, name, super_users=super_users,
                         allow_everyone_if_no_acl_found=flag)
    assert decision is is_super


def reference_decision(acls, principal, host, operation, kind, name, flag):
    """The rules read straight off the module docstring, over a plain list: what the index must agree with."""
    covering = [b for b in acls if b.resource_type == kind and b.covers(name)]
    if not covering:
        return flag
    mine = [b for b in covering if b.principal in (principal, "User:*") and b.host in (host, "*")]
    if any(b.permission == DENY and b.operation in (operation, Op.ALL) for b in mine):
        return False
    implied = {Op.DESCRIBE: {Op.READ, Op.WRITE, Op.DELETE, Op.ALTER}, Op.DESCRIBE_CONFIGS: {Op.ALTER_CONFIGS}}
    return any(b.permission == ALLOW and (b.operation in (operation, Op.ALL) or b.operation in implied.get(operation, ()))
               for b in mine)


@given(st.lists(bindings, max_size=16), questions, st.booleans())
def test_the_index_decides_as_a_scan_of_every_acl(acls, question, flag):
    principal, host, operation, kind, name = question
    assert authorize(acls, principal, host, operation, kind, name, allow_everyone_if_no_acl_found=flag) == \
        reference_decision(acls, principal, host, operation, kind, name, flag)


@given(st.lists(bindings, max_size=12), kinds, names)
def test_match_filter_finds_exactly_the_covering_acls(existing_list, kind, name):
    existing = {uuid.UUID(int=n + 1): b for n, b in enumerate(existing_list)}
    _, _, found = describe(existing, AclBindingFilter(kind, name, MATCH))
    assert list(found) == [b for b in existing_list if b.resource_type == kind and b.covers(name)]
    assert sorted(found, key=repr) == sorted(Authorizer(existing_list).covering(kind, name), key=repr)
