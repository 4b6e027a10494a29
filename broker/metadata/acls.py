"""Kafka's ACLs as values, the authorizer's decision, and the controller's decisions on CreateAcls and DeleteAcls.

The model is KIP-11's (the pluggable authorizer): an ACL binding says that a
principal ("User:alice", or "User:*" for every user), connecting from a host
(an address, or "*" for every host), is allowed or denied one operation on a
resource pattern. KIP-290 added pattern types: a LITERAL pattern names one
resource ("*" names every resource of its type), a PREFIXED pattern names every
resource whose name starts with it. The enums carry Kafka's wire codes
(org.apache.kafka.common.resource.ResourceType and PatternType,
org.apache.kafka.common.acl.AclOperation and AclPermissionType); a code this
broker does not know reads as UNKNOWN, as Kafka's `fromCode` does. Kafka 4's
TWO_PHASE_COMMIT operation (code 15, KIP-939) is not here and reads as UNKNOWN.

`Authorizer.authorize` decides as KRaft's StandardAuthorizer (KIP-801) and
the older AclAuthorizer do:
- a super user (`super.users`, "User:a;User:b", compared as the whole
  principal string) is allowed everything, whatever the ACLs say;
- the ACLs that apply are those of the resource's type whose pattern covers
  the resource's name: a literal pattern equal to it, the literal "*", or a
  prefixed pattern it starts with;
- if no ACL applies to the resource at all, for any principal, the answer is
  `allow.everyone.if.no.acl.found` (default false);
- otherwise an ACL counts when its principal is the caller's or "User:*" and
  its host is the caller's or "*"; any DENY that counts for the operation
  wins over every ALLOW; without a DENY an ALLOW that counts allows, and
  without either the answer is deny (ACLs exist for the resource, just not
  for this caller);
- an ACL for ALL counts for every operation; an ALLOW (never a DENY) for
  READ, WRITE, DELETE or ALTER also allows DESCRIBE, and an ALLOW for
  ALTER_CONFIGS also allows DESCRIBE_CONFIGS. So a DENY READ leaves DESCRIBE
  to the other ACLs.

`AclBindingFilter` is Kafka's filter for DescribeAcls and DeleteAcls: ANY (or
None for a string) matches every value; a pattern type names the one type it
matches; MATCH with a resource name matches every binding whose pattern covers
that name (a literal equal to it, the literal "*", a prefix of it), while ANY
or a pattern type compares the names as strings. Principal and host compare as
strings: a filter for "User:alice" does not match a "User:*" binding.

`create_decision` and `delete_decision` are the controller's decisions (KRaft's
AclControlManager, plus the checks Kafka's broker makes before it forwards a
CreateAcls): pure functions of the ACLs of the image. A binding to create is
INVALID_REQUEST when its resource is CLUSTER but not named "kafka-cluster",
when its resource name is empty, when its resource type is UNKNOWN or ANY, its
pattern type is not LITERAL or PREFIXED, its operation is UNKNOWN or ANY, its
permission is not ALLOW or DENY, or its principal has no ":" between type and
name. Kafka accepts a PREFIXED pattern on the cluster resource (named
"kafka-cluster", so it covers just the cluster), and so does this. Creating a
binding that exists, or twice in one request, succeeds and writes one record.
A delete filter with an UNKNOWN resource type, pattern type, operation or
permission is INVALID_REQUEST; every other filter lists each binding it
matches (two filters of one request may list the same binding; it is removed
once). Ids (KRaft gives each ACL a Uuid) come from the caller's `new_id`, so
the records, not the image, hold the only randomness and a replay rebuilds the
same image. Not here: Kafka's bound of 10,000 records per request.
`from_codes` builds a binding or a filter from wire codes, as the APIs
(broker.server.acl_admin) and the controller's operation (broker.controller.acls)
receive them.

Sources: KIP-11, KIP-290, KIP-801; Kafka's StandardAuthorizerData,
AclControlManager, AclApis (createAcls), ResourcePatternFilter and
AccessControlEntryFilter, read for their behaviour; the code is our own.

Thread-safety: immutable values and pure functions; an `Authorizer` is not
changed after it is built.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Mapping, Sequence

from broker.metadata.records import AccessControlEntryRecord, RemoveAccessControlEntryRecord

NONE = 0
INVALID_REQUEST = 42

CLUSTER_NAME = "kafka-cluster"  # the one name of the CLUSTER resource
WILDCARD = "*"  # a literal resource name covering every name; a host matching every host
WILDCARD_PRINCIPAL = "User:*"


class _WireEnum(enum.IntEnum):
    @classmethod
    def from_code(cls, code: int):
        """The member with wire code `code`; UNKNOWN for a code this broker does not know."""
        try:
            return cls(code)
        except ValueError:
            return cls["UNKNOWN"]


class ResourceType(_WireEnum):
    UNKNOWN = 0
    ANY = 1
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4
    TRANSACTIONAL_ID = 5
    DELEGATION_TOKEN = 6
    USER = 7


class PatternType(_WireEnum):
    UNKNOWN = 0
    ANY = 1  # filters only
    MATCH = 2  # filters only
    LITERAL = 3
    PREFIXED = 4


class AclOperation(_WireEnum):
    UNKNOWN = 0
    ANY = 1  # filters only
    ALL = 2
    READ = 3
    WRITE = 4
    CREATE = 5
    DELETE = 6
    ALTER = 7
    DESCRIBE = 8
    CLUSTER_ACTION = 9
    DESCRIBE_CONFIGS = 10
    ALTER_CONFIGS = 11
    IDEMPOTENT_WRITE = 12
    CREATE_TOKENS = 13
    DESCRIBE_TOKENS = 14


class AclPermissionType(_WireEnum):
    UNKNOWN = 0
    ANY = 1  # filters only
    DENY = 2
    ALLOW = 3


# An ALLOW for one of these operations also allows the operation it is listed under (never a DENY).
IMPLIED_BY_ALLOW: Mapping[AclOperation, frozenset[AclOperation]] = {
    AclOperation.DESCRIBE: frozenset({AclOperation.READ, AclOperation.WRITE, AclOperation.DELETE, AclOperation.ALTER}),
    AclOperation.DESCRIBE_CONFIGS: frozenset({AclOperation.ALTER_CONFIGS}),
}


@dataclass(frozen=True)
class AclBinding:
    """One ACL: `permission` for `principal` from `host` to do `operation` on the resources of the pattern."""

    resource_type: ResourceType
    resource_name: str
    pattern_type: PatternType  # LITERAL or PREFIXED
    principal: str  # "User:alice", or WILDCARD_PRINCIPAL
    host: str  # an address, or WILDCARD
    operation: AclOperation
    permission: AclPermissionType

    def covers(self, resource_name: str) -> bool:
        """Whether this binding's pattern covers the resource called `resource_name` (of the binding's type)."""
        if self.pattern_type == PatternType.PREFIXED:
            return resource_name.startswith(self.resource_name)
        return self.resource_name in (resource_name, WILDCARD)


@dataclass(frozen=True)
class AclBindingFilter:
    """Kafka's AclBindingFilter: ANY, or None for a string, matches every value (see the module docstring for MATCH)."""

    resource_type: ResourceType = ResourceType.ANY
    resource_name: str | None = None
    pattern_type: PatternType = PatternType.ANY
    principal: str | None = None
    host: str | None = None
    operation: AclOperation = AclOperation.ANY
    permission: AclPermissionType = AclPermissionType.ANY

    def matches(self, binding: AclBinding) -> bool:
        if self.resource_type not in (ResourceType.ANY, binding.resource_type):
            return False
        if self.pattern_type not in (PatternType.ANY, PatternType.MATCH, binding.pattern_type):
            return False
        if self.resource_name is not None:
            if self.pattern_type == PatternType.MATCH:
                if not binding.covers(self.resource_name):
                    return False
            elif self.resource_name != binding.resource_name:
                return False
        return (self.principal in (None, binding.principal) and self.host in (None, binding.host)
                and self.operation in (AclOperation.ANY, binding.operation)
                and self.permission in (AclPermissionType.ANY, binding.permission))

    def unknown_part(self) -> str | None:
        """What makes this filter unusable (an UNKNOWN field), or None."""
        if self.resource_type == ResourceType.UNKNOWN or self.pattern_type == PatternType.UNKNOWN:
            return f"The resource pattern filter has an UNKNOWN field: {self.resource_type.name} {self.pattern_type.name}"
        if self.operation == AclOperation.UNKNOWN or self.permission == AclPermissionType.UNKNOWN:
            return f"The entry filter has an UNKNOWN field: {self.operation.name} {self.permission.name}"
        return None


def binding_error(binding: AclBinding) -> str | None:
    """Why `binding` cannot be created (INVALID_REQUEST), or None; the checks in Kafka's order."""
    if binding.resource_type == ResourceType.CLUSTER and binding.resource_name != CLUSTER_NAME:
        return f"The CLUSTER resource can only be named {CLUSTER_NAME}, not {binding.resource_name!r}"
    if not binding.resource_name:
        return "The resource name must not be empty"
    if binding.resource_type in (ResourceType.UNKNOWN, ResourceType.ANY):
        return f"Invalid resourceType {binding.resource_type.name}; an ACL names one resource type"
    if binding.pattern_type not in (PatternType.LITERAL, PatternType.PREFIXED):
        return f"Invalid patternType {binding.pattern_type.name}; accepted: LITERAL, PREFIXED"
    if binding.operation in (AclOperation.UNKNOWN, AclOperation.ANY):
        return f"Invalid operation {binding.operation.name}; an ACL names one operation or ALL"
    if binding.permission not in (AclPermissionType.ALLOW, AclPermissionType.DENY):
        return f"Invalid permissionType {binding.permission.name}; accepted: ALLOW, DENY"
    if ":" not in binding.principal:
        return f"Cannot parse principal {binding.principal!r}: accepted: type:name, such as User:alice"
    return None


def parse_super_users(value: str | None) -> frozenset[str]:
    """`super.users`: principals separated by ";" (blanks around them and empty entries ignored).

    ValueError naming the entry when one has no ":" between the principal type and name.
    """
    users = set()
    for entry in (value or "").split(";"):
        principal = entry.strip()
        if not principal:
            continue
        if ":" not in principal:
            raise ValueError(f"super.users entry {principal!r} is not a principal; accepted: type:name, such as User:admin")
        users.add(principal)
    return frozenset(users)


class Authorizer:
    """The decision of KRaft's StandardAuthorizer over a fixed set of ACLs (rules in the module docstring).

    Bindings are indexed by (resource type, name) for literal patterns and by (resource type, prefix) for
    prefixed ones, so a decision looks up the name, "*" and one key per prefix length in use.
    """

    __slots__ = ("_literal", "_prefixed", "_prefix_lengths", "super_users", "allow_everyone_if_no_acl_found")

    def __init__(self, acls: Iterable[AclBinding], *, super_users: frozenset[str] = frozenset(),
                 allow_everyone_if_no_acl_found: bool = False):
        literal: dict[tuple[ResourceType, str], list[AclBinding]] = {}
        prefixed: dict[tuple[ResourceType, str], list[AclBinding]] = {}
        lengths: dict[ResourceType, set[int]] = {}
        for binding in acls:
            key = (binding.resource_type, binding.resource_name)
            if binding.pattern_type == PatternType.PREFIXED:
                prefixed.setdefault(key, []).append(binding)
                lengths.setdefault(binding.resource_type, set()).add(len(binding.resource_name))
            else:
                literal.setdefault(key, []).append(binding)
        self._literal = {key: tuple(bindings) for key, bindings in literal.items()}
        self._prefixed = {key: tuple(bindings) for key, bindings in prefixed.items()}
        self._prefix_lengths = {kind: tuple(sorted(found)) for kind, found in lengths.items()}
        self.super_users = frozenset(super_users)
        self.allow_everyone_if_no_acl_found = allow_everyone_if_no_acl_found

    def covering(self, resource_type: ResourceType, resource_name: str) -> Iterator[AclBinding]:
        """Every binding whose pattern covers the resource, for any principal, host and operation."""
        yield from self._literal.get((resource_type, resource_name), ())
        if resource_name != WILDCARD:
            yield from self._literal.get((resource_type, WILDCARD), ())
        for length in self._prefix_lengths.get(resource_type, ()):
            if length > len(resource_name):
                break
            yield from self._prefixed.get((resource_type, resource_name[:length]), ())

    def authorize(self, principal: str, host: str, operation: AclOperation, resource_type: ResourceType,
                  resource_name: str) -> bool:
        assert operation not in (AclOperation.UNKNOWN, AclOperation.ANY), f"authorize asked about {operation!r}"
        assert resource_type not in (ResourceType.UNKNOWN, ResourceType.ANY), f"authorize asked about {resource_type!r}"
        if principal in self.super_users:
            return True
        any_acl = allowed = False
        for acl in self.covering(resource_type, resource_name):
            any_acl = True
            if acl.principal not in (principal, WILDCARD_PRINCIPAL) or acl.host not in (host, WILDCARD):
                continue
            if acl.permission == AclPermissionType.DENY:
                if acl.operation in (AclOperation.ALL, operation):
                    return False
            elif acl.operation in (AclOperation.ALL, operation) or acl.operation in IMPLIED_BY_ALLOW.get(operation, ()):
                allowed = True
        return allowed if any_acl else self.allow_everyone_if_no_acl_found

    def authorize_any(self, principal: str, host: str, operation: AclOperation, resource_type: ResourceType) -> bool:
        """Whether the caller may do `operation` on some resource of the type (KIP-679's authorizeByResourceType,
        which an idempotent producer without IDEMPOTENT_WRITE on the cluster is asked): a super user may; a DENY
        of the caller on the literal "*" forbids all; otherwise an ALLOW of the caller whose pattern no DENY of
        the caller covers (a literal denied by name or by a shorter-or-equal prefix, a prefix within a denied
        prefix) allows; with no ACL of the type at all, `allow.everyone.if.no.acl.found` decides."""
        if principal in self.super_users:
            return True
        any_acl = False
        allows: list[AclBinding] = []
        denied_names: set[str] = set()
        denied_prefixes: list[str] = []
        for table in (self._literal, self._prefixed):
            for (kind, _), bindings in table.items():
                if kind != resource_type:
                    continue
                for acl in bindings:
                    any_acl = True
                    if (acl.principal not in (principal, WILDCARD_PRINCIPAL) or acl.host not in (host, WILDCARD)
                            or acl.operation not in (AclOperation.ALL, operation)):
                        continue
                    if acl.permission != AclPermissionType.DENY:
                        allows.append(acl)
                    elif acl.pattern_type == PatternType.PREFIXED:
                        denied_prefixes.append(acl.resource_name)
                    else:
                        denied_names.add(acl.resource_name)
        if not any_acl:
            return self.allow_everyone_if_no_acl_found
        if WILDCARD in denied_names:
            return False
        for acl in allows:
            name = acl.resource_name
            if any(name.startswith(prefix) for prefix in denied_prefixes):
                continue
            if acl.pattern_type != PatternType.PREFIXED and name in denied_names:
                continue
            return True
        return False


def authorize(acls: Iterable[AclBinding], principal: str, host: str, operation: AclOperation,
              resource_type: ResourceType, resource_name: str, *, super_users: frozenset[str] = frozenset(),
              allow_everyone_if_no_acl_found: bool = False) -> bool:
    """One decision over `acls` (builds the index each time: for a single question; keep an `Authorizer` otherwise)."""
    return Authorizer(acls, super_users=super_users, allow_everyone_if_no_acl_found=allow_everyone_if_no_acl_found) \
        .authorize(principal, host, operation, resource_type, resource_name)


Acls = Mapping[uuid.UUID, AclBinding]  # the ACLs of a metadata image, by id


def entry_record(acl_id: uuid.UUID, binding: AclBinding) -> AccessControlEntryRecord:
    return AccessControlEntryRecord(acl_id, int(binding.resource_type), binding.resource_name, int(binding.pattern_type),
                                    binding.principal, binding.host, int(binding.operation), int(binding.permission))


def from_codes(cls, resource_type: int, resource_name, pattern_type: int, principal, host, operation: int,
               permission: int):
    """An AclBinding or AclBindingFilter (`cls`) from Kafka's wire codes (a code not known here reads as UNKNOWN)."""
    return cls(ResourceType.from_code(int(resource_type)), resource_name, PatternType.from_code(int(pattern_type)),
               principal, host, AclOperation.from_code(int(operation)), AclPermissionType.from_code(int(permission)))


def binding_of(record: AccessControlEntryRecord) -> AclBinding:
    return from_codes(AclBinding, record.resource_type, record.resource_name, record.pattern_type, record.principal,
                      record.host, record.operation, record.permission_type)


def create_decision(existing: Acls, bindings: Sequence[AclBinding], new_id: Callable[[], uuid.UUID]):
    """Per binding (error code, message), in request order, and the AccessControlEntryRecords to write.

    `new_id` gives candidate ids (uuid.uuid4 in a controller, a seeded source in a test); one already used
    by an ACL, or by this decision, is drawn again.
    """
    present = set(existing.values())
    used = set(existing)
    results: list[tuple[int, str | None]] = []
    records: list[AccessControlEntryRecord] = []
    for binding in bindings:
        message = binding_error(binding)
        if message is not None:
            results.append((INVALID_REQUEST, message))
            continue
        results.append((NONE, None))
        if binding in present:
            continue
        present.add(binding)
        acl_id = _fresh_id(new_id, used)
        used.add(acl_id)
        records.append(entry_record(acl_id, binding))
    return results, records


def _fresh_id(new_id: Callable[[], uuid.UUID], used: set[uuid.UUID]) -> uuid.UUID:
    for _ in range(1000):
        acl_id = new_id()
        if acl_id not in used:
            return acl_id
    raise AssertionError(f"the ACL id source gave 1000 ids in use in a row (last {acl_id}); it is not random")


def delete_decision(existing: Acls, filters: Sequence[AclBindingFilter]):
    """Per filter (error code, message, the bindings it matches), and the RemoveAccessControlEntryRecords to write.

    Each filter sees every ACL of `existing` (not what earlier filters left); an ACL is removed once.
    """
    results: list[tuple[int, str | None, tuple[AclBinding, ...]]] = []
    records: list[RemoveAccessControlEntryRecord] = []
    removed: set[uuid.UUID] = set()
    for acl_filter in filters:
        message = acl_filter.unknown_part()
        if message is not None:
            results.append((INVALID_REQUEST, message, ()))
            continue
        matched = [(acl_id, binding) for acl_id, binding in existing.items() if acl_filter.matches(binding)]
        results.append((NONE, None, tuple(binding for _, binding in matched)))
        for acl_id, _ in matched:
            if acl_id not in removed:
                removed.add(acl_id)
                records.append(RemoveAccessControlEntryRecord(acl_id))
    return results, records


def describe(existing: Acls, acl_filter: AclBindingFilter) -> tuple[int, str | None, tuple[AclBinding, ...]]:
    """DescribeAcls: (error code, message, the bindings `acl_filter` matches, in the order they were created)."""
    message = acl_filter.unknown_part()
    if message is not None:
        return INVALID_REQUEST, message, ()
    return NONE, None, tuple(binding for binding in existing.values() if acl_filter.matches(binding))
