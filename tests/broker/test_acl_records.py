"""ACL metadata records (KIP-801's AccessControlEntryRecord and RemoveAccessControlEntryRecord) and the image's ACLs.

Round trips through the record and batch encoding, malformed records, the image applying and removing ACLs
(copy-on-write, replay gives equal images, broken invariants assert), and the controller's decisions carried out
through records: what describe sees after a create or delete is what the decision said.
"""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.metadata.acls import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    Authorizer,
    PatternType,
    ResourceType,
    binding_of,
    create_decision,
    delete_decision,
    describe,
    entry_record,
)
from broker.metadata.image import MetadataImage
from broker.metadata.records import (
    AccessControlEntryRecord,
    MetadataRecordError,
    RemoveAccessControlEntryRecord,
    decode_batch,
    decode_record,
    encode_batch,
)

from .test_acl_authorizer import ids

ALICE = "User:alice"
READ_ORDERS = AclBinding(ResourceType.TOPIC, "orders", PatternType.LITERAL, ALICE, "*", AclOperation.READ,
                         AclPermissionType.ALLOW)
WRITE_ANY = AclBinding(ResourceType.TOPIC, "*", PatternType.LITERAL, ALICE, "*", AclOperation.WRITE,
                       AclPermissionType.ALLOW)


codes = st.integers(-128, 127)  # int8 on Kafka's wire
texts = st.text(max_size=20)
entry_records = st.builds(AccessControlEntryRecord, st.uuids(), codes, texts, codes, texts, texts, codes, codes)
acl_records = st.one_of(entry_records, st.builds(RemoveAccessControlEntryRecord, st.uuids()))


@given(acl_records)
def test_record_round_trip(record):
    assert decode_record(record.encode()) == record


@given(st.lists(acl_records, max_size=8))
def test_batch_round_trip(batch):
    assert decode_batch(encode_batch(batch)) == tuple(batch)


def test_the_encoding_is_readable_json():
    record = entry_record(uuid.UUID(int=7), READ_ORDERS)
    assert record.encode() == (
        b'\x01{"host":"*","id":"00000000-0000-0000-0000-000000000007","operation":3,"pattern_type":3,'
        b'"permission_type":3,"principal":"User:alice","resource_name":"orders","resource_type":2,'
        b'"type":"AccessControlEntry"}')
    assert RemoveAccessControlEntryRecord(uuid.UUID(int=7)).encode() == (
        b'\x01{"id":"00000000-0000-0000-0000-000000000007","type":"RemoveAccessControlEntry"}')
    assert binding_of(record) == READ_ORDERS


@pytest.mark.parametrize("body, message", [
    (b'{"type":"RemoveAccessControlEntry","id":"nope"}', "RemoveAccessControlEntry record field id is 'nope'; accepted: a UUID string"),
    (b'{"type":"RemoveAccessControlEntry"}', "has fields []; accepted: exactly ['id']"),
    (b'{"type":"AccessControlEntry","id":"00000000-0000-0000-0000-000000000007","resource_type":"TOPIC",'
     b'"resource_name":"t","pattern_type":3,"principal":"User:a","host":"*","operation":3,"permission_type":3}',
     "AccessControlEntry record field resource_type is 'TOPIC'; accepted: an integer"),
    (b'{"type":"AccessControlEntry","id":"00000000-0000-0000-0000-000000000007","resource_type":2,'
     b'"resource_name":"t","pattern_type":3,"principal":7,"host":"*","operation":3,"permission_type":3}',
     "AccessControlEntry record field principal is 7; accepted: a string"),
])
def test_malformed_records_are_refused(body, message):
    with pytest.raises(MetadataRecordError) as error:
        decode_record(b"\x01" + body)
    assert message in str(error.value)


def test_the_image_adds_and_removes_acls_copy_on_write():
    first = uuid.UUID(int=1)
    empty = MetadataImage()
    one = empty.apply_all([entry_record(first, READ_ORDERS)], 1)
    assert empty.acls == {} and one.acls == {first: READ_ORDERS}
    two = one.apply(entry_record(uuid.UUID(int=2), WRITE_ANY))
    assert list(two.acls.values()) == [READ_ORDERS, WRITE_ANY]
    assert one.acls == {first: READ_ORDERS}
    back = two.apply(RemoveAccessControlEntryRecord(first))
    assert back.acls == {uuid.UUID(int=2): WRITE_ANY}
    assert two.topics is back.topics  # untouched maps are shared


def test_broken_acl_records_assert():
    image = MetadataImage().apply(entry_record(uuid.UUID(int=1), READ_ORDERS))
    with pytest.raises(AssertionError, match="added twice"):
        image.apply(entry_record(uuid.UUID(int=1), WRITE_ANY))
    with pytest.raises(AssertionError, match="removal of unknown ACL id"):
        image.apply(RemoveAccessControlEntryRecord(uuid.UUID(int=2)))
    bad = AccessControlEntryRecord(uuid.UUID(int=3), 1, "t", 3, ALICE, "*", 3, 3)  # resource type ANY
    with pytest.raises(AssertionError, match="Invalid resourceType ANY"):
        image.apply(bad)


def test_decisions_carried_out_through_records():
    new_id = ids()
    image = MetadataImage()
    results, records = create_decision(image.acls, [READ_ORDERS, WRITE_ANY, READ_ORDERS], new_id)
    assert [code for code, _ in results] == [0, 0, 0]
    image = image.apply_all(decode_batch(encode_batch(records)), 1)
    assert describe(image.acls, AclBindingFilter()) == (0, None, (READ_ORDERS, WRITE_ANY))
    authorizer = Authorizer(image.acls.values())
    assert authorizer.authorize(ALICE, "10.0.0.1", AclOperation.DESCRIBE, ResourceType.TOPIC, "orders")
    assert not authorizer.authorize(ALICE, "10.0.0.1", AclOperation.READ, ResourceType.TOPIC, "payments")

    # the same bindings again: nothing to write
    assert create_decision(image.acls, [WRITE_ANY], new_id)[1] == []

    results, records = delete_decision(image.acls, [AclBindingFilter(ResourceType.TOPIC, "payments",
                                                                     PatternType.MATCH)])
    assert results == [(0, None, (WRITE_ANY,))]
    image = image.apply_all(records, 2)
    assert list(image.acls.values()) == [READ_ORDERS]
    assert not Authorizer(image.acls.values()).authorize(ALICE, "10.0.0.1", AclOperation.WRITE, ResourceType.TOPIC,
                                                          "payments")
    assert Authorizer(image.acls.values(), allow_everyone_if_no_acl_found=True).authorize(
        ALICE, "10.0.0.1", AclOperation.WRITE, ResourceType.TOPIC, "payments")


bindings = st.builds(AclBinding, st.sampled_from([ResourceType.TOPIC, ResourceType.GROUP]),
                     st.sampled_from(["a", "ab", "b", "*"]), st.sampled_from([PatternType.LITERAL, PatternType.PREFIXED]),
                     st.sampled_from([ALICE, "User:*"]), st.sampled_from(["*", "10.0.0.1"]),
                     st.sampled_from([AclOperation.READ, AclOperation.ALL]),
                     st.sampled_from([AclPermissionType.ALLOW, AclPermissionType.DENY]))
filters = st.builds(AclBindingFilter, st.sampled_from([ResourceType.ANY, ResourceType.TOPIC]),
                    st.none() | st.sampled_from(["a", "ab", "*"]),
                    st.sampled_from([PatternType.ANY, PatternType.MATCH, PatternType.LITERAL, PatternType.PREFIXED]),
                    st.none() | st.just(ALICE), st.none(), st.sampled_from([AclOperation.ANY, AclOperation.READ]))


@given(st.lists(st.lists(bindings, max_size=5), max_size=4), st.lists(filters, max_size=3))
def test_replaying_the_decisions_gives_equal_images_and_what_they_said(creations, deletions):
    new_id = ids()
    image, log = MetadataImage(), []
    for request in creations:
        _, records = create_decision(image.acls, request, new_id)
        log.append(records)
        image = image.apply_all(records, len(log))
    assert set(image.acls.values()) == {b for request in creations for b in request}
    assert len(image.acls) == len(set(image.acls.values()))  # no binding twice
    results, records = delete_decision(image.acls, deletions)
    log.append(records)
    image = image.apply_all(records, len(log))
    gone = {b for _, _, matched in results for b in matched}
    assert set(image.acls.values()) == {b for request in creations for b in request} - gone
    replayed = MetadataImage()
    for offset, records in enumerate(log, 1):
        replayed = replayed.apply_all(decode_batch(encode_batch(records)), offset)
    assert replayed == image
    assert list(replayed.acls.items()) == list(image.acls.items())  # the creation order too
