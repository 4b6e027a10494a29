"""CreateAcls (API key 30), DescribeAcls (29) and DeleteAcls (31): ACL management on the wire (KIP-11, KIP-290).

The ACLs live where the node's metadata lives, as the SCRAM credentials do
(broker.server.scram_admin):
- on a cluster node, in the metadata log (`ClusterAclStore`): CreateAcls and
  DeleteAcls are forwarded to the active controller (broker.controller.acls),
  which decides on its image and commits AccessControlEntryRecords /
  RemoveAccessControlEntryRecords (KIP-801); the answer waits until this node
  applied them. DescribeAcls is answered from this node's image, so every node
  describes the ACLs once it applied the records: no restart;
- on a single node, in `__logquake_acls.json` in the first log directory
  (`LocalAclStore`), the same records (one per ACL, with its id) replaced
  atomically (broker.io.persist), as the single node keeps its topic table.

The decisions and their error codes are broker.metadata.acls' (Kafka's
AclControlManager and AclApis): a binding Kafka refuses to create and a filter
with an UNKNOWN field get INVALID_REQUEST for that creation or filter; creating
an existing binding succeeds. DescribeAcls groups the matching bindings by
resource pattern, in creation order. A controller that cannot be reached
answers REQUEST_TIMED_OUT (or its own error) for every creation or filter; a
single node whose state file cannot be written answers UNKNOWN_SERVER_ERROR
and changes nothing.

Configuration (broker.server.config): `authorizer.class.name` empty (Kafka's
default) means no authorizer, and then all three APIs answer SECURITY_DISABLED
as Kafka does ("No Authorizer is configured." per creation or filter; "No
Authorizer is configured on the broker" for DescribeAcls);
`org.apache.kafka.metadata.authorizer.StandardAuthorizer` enables them.
`super.users` and `allow.everyone.if.no.acl.found` are validated at start.

Enforcement is broker.server.authorization's: with an authorizer every
request, these three included (ALTER on the cluster to create or delete,
DESCRIBE to describe), is checked against the store's ACLs. Not here: Kafka's
bound of 10,000 records per request.

Thread-safety: none; the broker's event loop is the only caller.
"""

from __future__ import annotations

import logging
import uuid

from kio.schema.errors import ErrorCode

from broker.controller.acls import CREATE_OPERATION, DELETE_OPERATION, AclControl, decode_binding, encode_binding, \
    encode_filter
from broker.metadata.acls import AclBinding, AclBindingFilter, create_decision, delete_decision, describe, entry_record, \
    from_codes
from broker.metadata.errors import ControllerError
from broker.metadata.records_file import read_image, write_records
from broker.protocol import apis

log = logging.getLogger("broker.server")

DESCRIBE_ACLS = apis.DESCRIBE_ACLS
CREATE_ACLS = apis.CREATE_ACLS
DELETE_ACLS = apis.DELETE_ACLS
STATE_FILE = "__logquake_acls.json"
NO_AUTHORIZER = "No Authorizer is configured."  # Kafka's words for CreateAcls and DeleteAcls
NO_AUTHORIZER_DESCRIBE = "No Authorizer is configured on the broker"  # and for DescribeAcls


class ClusterAclStore:
    """The metadata log's ACLs (the node's image); changes go through the active controller."""

    def __init__(self, cluster):
        self.cluster = cluster
        AclControl(cluster.controller, cluster.quorum)

    def acls(self):
        return self.cluster.quorum.image.acls

    async def create(self, bindings):
        results = await self._call({"op": CREATE_OPERATION, "creations": [encode_binding(b) for b in bindings]})
        return [(r["error_code"], r["error_message"]) for r in results]

    async def delete(self, filters):
        results = await self._call({"op": DELETE_OPERATION, "filters": [encode_filter(f) for f in filters]})
        return [(r["error_code"], r["error_message"], tuple(decode_binding(b) for b in r["matching"])) for r in results]

    async def _call(self, request: dict) -> list[dict]:
        answer = await self.cluster.channel.call(request)
        if answer.get("error_code"):
            raise ControllerError(answer.get("error_message") or "the controller refused", answer["error_code"])
        if not await self.cluster.wait_applied(answer["metadata_offset"]):
            log.warning("ACLs committed at metadata offset %d are not applied here yet", answer["metadata_offset"])
        return answer["results"]


class LocalAclStore:
    """A single node's ACLs: the same records in one atomically replaced file (None directory: memory)."""

    def __init__(self, runtime, directory: str | None):
        self.runtime = runtime
        self.directory = directory
        self.image = read_image(runtime.disk, directory, STATE_FILE)  # only its ACL part is used

    def acls(self):
        return self.image.acls

    async def create(self, bindings):
        # uuid4: this node is its own controller; the ids are recorded in the file with their ACLs
        results, records = create_decision(self.image.acls, bindings, uuid.uuid4)
        self._apply(records)
        return results

    async def delete(self, filters):
        results, records = delete_decision(self.image.acls, filters)
        self._apply(records)
        return results

    def _apply(self, records) -> None:
        if not records:
            return
        new = self.image.apply_all(records, 0)
        write_records(self.runtime.disk, self.directory, STATE_FILE,
                      [entry_record(acl_id, binding) for acl_id, binding in new.acls.items()])
        self.image = new
        log.info("ACLs changed: %d now", len(new.acls))


def _filter_of(item) -> AclBindingFilter:
    """A DescribeAcls request or a DeleteAcls filter (the same fields) as a filter."""
    return from_codes(AclBindingFilter, item.resource_type_filter, item.resource_name_filter, item.pattern_type_filter,
                      item.principal_filter, item.host_filter, item.operation, item.permission_type)


def _binding_of(creation) -> AclBinding:
    return from_codes(AclBinding, creation.resource_type, creation.resource_name, creation.resource_pattern_type,
                      creation.principal, creation.host, creation.operation, creation.permission_type)


def _text(acl: AclBinding | AclBindingFilter) -> str:
    """A binding or filter in one line for the log (None, a filter's ANY string, as "ANY")."""
    return (f"{acl.permission.name} {acl.principal or 'ANY'} from {acl.host or 'ANY'} {acl.operation.name} on "
            f"{acl.resource_type.name} {acl.pattern_type.name} {'ANY' if acl.resource_name is None else repr(acl.resource_name)}")


class AclAdminApis:
    """The three ACL APIs over a store (`ClusterAclStore` or `LocalAclStore`); `enabled`: an authorizer is configured."""

    def __init__(self, store, enabled: bool):
        self.store = store
        self.enabled = enabled

    def apis(self) -> dict:
        return {DESCRIBE_ACLS: self.describe, CREATE_ACLS: self.create, DELETE_ACLS: self.delete}

    def describe(self, header, request):
        module = apis.response_module(DESCRIBE_ACLS, header.api_version)
        build = apis.build_entity
        if not self.enabled:
            return build(module, "DescribeAclsResponse", throttle_time=apis.ZERO_MS, error_code=ErrorCode.security_disabled,
                         error_message=NO_AUTHORIZER_DESCRIBE, resources=())
        code, message, bindings = describe(self.store.acls(), _filter_of(request))
        patterns: dict[tuple, list[AclBinding]] = {}
        for binding in bindings:
            patterns.setdefault((binding.resource_type, binding.resource_name, binding.pattern_type), []).append(binding)
        resources = tuple(
            build(module, "DescribeAclsResource", resource_type=int(kind), resource_name=name, pattern_type=int(pattern),
                  acls=tuple(build(module, "AclDescription", principal=b.principal, host=b.host, operation=int(b.operation),
                                   permission_type=int(b.permission)) for b in found))
            for (kind, name, pattern), found in patterns.items())
        return build(module, "DescribeAclsResponse", throttle_time=apis.ZERO_MS, error_code=ErrorCode(code),
                     error_message=message, resources=resources)

    async def create(self, header, request):
        module = apis.response_module(CREATE_ACLS, header.api_version)
        bindings = [_binding_of(creation) for creation in request.creations]
        results = await self._change("CreateAcls", self.store.create, bindings, lambda code, message: (code, message))
        for binding, (code, message) in zip(bindings, results):
            if code:
                log.info("CreateAcls of %s refused: %s (%s)", _text(binding), ErrorCode(code).name, message)
        return apis.build_entity(module, "CreateAclsResponse", throttle_time=apis.ZERO_MS, results=tuple(
            apis.build_entity(module, "AclCreationResult", error_code=ErrorCode(code), error_message=message)
            for code, message in results))

    async def delete(self, header, request):
        module = apis.response_module(DELETE_ACLS, header.api_version)
        build = apis.build_entity
        filters = [_filter_of(item) for item in request.filters]
        results = await self._change("DeleteAcls", self.store.delete, filters, lambda code, message: (code, message, ()))
        for acl_filter, (code, message, _) in zip(filters, results):
            if code:
                log.info("DeleteAcls with filter %s refused: %s (%s)", _text(acl_filter), ErrorCode(code).name, message)
        return build(module, "DeleteAclsResponse", throttle_time=apis.ZERO_MS, filter_results=tuple(
            build(module, "DeleteAclsFilterResult", error_code=ErrorCode(code), error_message=message, matching_acls=tuple(
                build(module, "DeleteAclsMatchingAcl", error_code=ErrorCode.none, error_message=None,
                      resource_type=int(b.resource_type), resource_name=b.resource_name, pattern_type=int(b.pattern_type),
                      principal=b.principal, host=b.host, operation=int(b.operation), permission_type=int(b.permission))
                for b in matching))
            for code, message, matching in results))

    async def _change(self, name: str, change, items: list, failed):
        """`change(items)`'s results, or `failed(code, message)` for every item when it cannot be made."""
        if not self.enabled:
            return [failed(ErrorCode.security_disabled.value, NO_AUTHORIZER) for _ in items]
        try:
            return await change(items)
        except ControllerError as exc:
            log.warning("%s failed: %s", name, exc)
            return [failed(exc.error_code, str(exc)) for _ in items]
        except OSError as exc:  # a single node's state file cannot be written (full disk): nothing changed
            log.warning("%s failed: %s cannot be written: %s", name, STATE_FILE, exc)
            return [failed(ErrorCode.unknown_server_error.value, f"the ACLs cannot be stored: {exc.strerror or exc}")
                    for _ in items]


def acl_admin(handlers, cluster) -> AclAdminApis:
    """The ACL APIs of a node: on the metadata log in a cluster, else on the node's state file."""
    store = ClusterAclStore(cluster) if cluster is not None else LocalAclStore(handlers.runtime, handlers.topics.directory)
    return AclAdminApis(store, bool(handlers.config.value("authorizer.class.name")))
