"""The controller's side of CreateAcls and DeleteAcls (KIP-11, KIP-290, KIP-801): decide on the image, commit the records.

`AclControl` adds the `create_acls` and `delete_acls` operations to a
`QuorumController` (so they run, like every operation, one at a time on the
active controller once its log is applied), as KRaft's AclControlManager does:
the decision is broker.metadata.acls' `create_decision` / `delete_decision` on
the committed image's ACLs, and its AccessControlEntryRecords and
RemoveAccessControlEntryRecords are committed as one batch. The answer carries
each creation's or filter's result and the metadata offset the broker waits
for. DescribeAcls never comes here: every node answers it from its own image.

Ids: the controller draws each new ACL's id with uuid.uuid4 (`new_id`); that is
the controller's input, recorded in the log (the AccessControlEntryRecord holds
it), so replaying the log rebuilds the same ACLs with the same ids.

Bindings and filters travel to the controller as JSON objects of wire codes
(`encode_binding` / `decode_binding`, `encode_filter` / `decode_filter`);
a code this broker does not know decodes as UNKNOWN, as Kafka's `fromCode`.

Thread-safety: none; runs on the broker's event loop.
"""

from __future__ import annotations

import logging
import uuid
from typing import Callable

from broker.metadata.acls import AclBinding, AclBindingFilter, create_decision, delete_decision, from_codes

log = logging.getLogger("broker.controller")

CREATE_OPERATION = "create_acls"
DELETE_OPERATION = "delete_acls"


def encode_binding(binding: AclBinding | AclBindingFilter) -> dict:
    """A binding or a filter as a JSON object (enums as their wire codes, a filter's ANY string as null)."""
    return {"resource_type": int(binding.resource_type), "resource_name": binding.resource_name,
            "pattern_type": int(binding.pattern_type), "principal": binding.principal, "host": binding.host,
            "operation": int(binding.operation), "permission": int(binding.permission)}


def _decode(cls, item: dict):
    return from_codes(cls, item["resource_type"], item["resource_name"], item["pattern_type"], item["principal"],
                      item["host"], item["operation"], item["permission"])


def decode_binding(item: dict) -> AclBinding:
    return _decode(AclBinding, item)


def decode_filter(item: dict) -> AclBindingFilter:
    return _decode(AclBindingFilter, item)


encode_filter = encode_binding


class AclControl:
    def __init__(self, controller, quorum, new_id: Callable[[], uuid.UUID] = uuid.uuid4):
        self.quorum = quorum
        self.new_id = new_id
        controller.handlers[CREATE_OPERATION] = self.create
        controller.handlers[DELETE_OPERATION] = self.delete

    async def create(self, request: dict) -> dict:
        bindings = [decode_binding(item) for item in request["creations"]]
        results, records = create_decision(self.quorum.image.acls, bindings, self.new_id)
        offset = await self._commit(records, "created")
        return {"results": [{"error_code": code, "error_message": message} for code, message in results],
                "metadata_offset": offset}

    async def delete(self, request: dict) -> dict:
        filters = [decode_filter(item) for item in request["filters"]]
        results, records = delete_decision(self.quorum.image.acls, filters)
        offset = await self._commit(records, "removed")
        return {"results": [{"error_code": code, "error_message": message,
                             "matching": [encode_binding(binding) for binding in matching]}
                            for code, message, matching in results], "metadata_offset": offset}

    async def _commit(self, records, what: str) -> int:
        if not records:
            return self.quorum.image.offset
        offset = await self.quorum.propose(records)
        log.info("ACLs %s: %d", what, len(records))
        return offset
