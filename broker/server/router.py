"""The node's API router: one table from API key to handler, assembled once.

Each part of a node registers the APIs it answers, once, when the node is
built (`node_router`): the request handlers (Produce, Metadata, ...), Fetch,
the partition queries (ListOffsets, ...), topic administration
(DescribeConfigs, CreateTopics, ...), SASL's and the SCRAM credential APIs
(broker.server.scram_admin, whose credential source the server's SASL sessions
ask: `credential_source`), the ACL APIs (broker.server.acl_admin), the group coordinator's APIs, the transaction
coordinator's APIs and, on a node of a cluster, the cluster node's (Metadata,
CreateTopics, DeleteTopics, InitProducerId, which go through the controller).
FindCoordinator is one API
with several owners: it is dispatched on its key type (0 a group, 1 a
transactional id) to the coordinator that registered that type; a key type
nobody registered is answered INVALID_REQUEST for each key.

Registering an API twice, or anything after `seal`, raises: nothing patches
the table once the node serves. `seal` also checks that every API the broker
advertises has a handler. The server asks the sealed router for each request's
handler, so this is the one place where an authorizer or per-API request
metrics hook in: with `authorizer.class.name` set, `seal` puts every handler
behind broker.server.authorization's gate, which checks the caller's ACLs.

Handlers take (request header, decoded request) and return a response entity,
a list of pre-encoded chunks, None (no response: acks=0), or a coroutine that
yields one of those.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from kio.schema.errors import ErrorCode

from broker.protocol import apis

log = logging.getLogger("broker.server")

Handler = Callable[[Any, Any], Any]


class RouterError(RuntimeError):
    """A node was assembled wrongly (an API registered twice, late, or not at all)."""


class Router:
    def __init__(self) -> None:
        self._handlers: dict[int, tuple[Handler, str]] = {}
        self._coordinators: dict[int, tuple[Handler, str]] = {}
        self._sealed = False
        self.credential_source = None  # what SASL authentication asks (broker.server.scram_admin), set by node_router

    def register(self, owner: str, handlers: Mapping[int, Handler]) -> None:
        """Add `owner`'s handlers (API key -> handler)."""
        self._check_open(owner)
        for api_key, handler in handlers.items():
            if api_key == apis.FIND_COORDINATOR:
                raise RouterError(f"{owner}: FindCoordinator is registered per key type (register_coordinator)")
            if api_key in self._handlers:
                raise RouterError(f"{apis.API_NAMES[api_key]} registered twice: by {self._handlers[api_key][1]} and by {owner}")
            self._handlers[api_key] = (handler, owner)

    def register_coordinator(self, owner: str, key_type: int, find_coordinator: Handler) -> None:
        """`owner` answers FindCoordinator for keys of `key_type`."""
        self._check_open(owner)
        if key_type in self._coordinators:
            raise RouterError(f"FindCoordinator key type {key_type} registered twice: by "
                              f"{self._coordinators[key_type][1]} and by {owner}")
        self._coordinators[key_type] = (find_coordinator, owner)

    def seal(self, advertised: Mapping[int, Any] = apis.SUPPORTED_VERSIONS, gate=None) -> "Router":
        """Close the table; every advertised API must have a handler. With `gate` (an authorizer's
        broker.server.authorization.RequestGate) every handler is asked through it."""
        self._handlers[apis.FIND_COORDINATOR] = (self.find_coordinator, "router")
        missing = sorted(set(advertised) - set(self._handlers))
        if missing:
            raise RouterError("no handler for " + ", ".join(apis.API_NAMES[k] for k in missing))
        if gate is not None:
            self._handlers = {key: (gate.wrap(key, handler), owner) for key, (handler, owner) in self._handlers.items()}
        self._sealed = True
        return self

    def handler(self, api_key: int) -> Handler:
        return self._handlers[api_key][0]

    def owner(self, api_key: int) -> str:
        """Which part of the node answers `api_key` (diagnostics and tests)."""
        return self._handlers[api_key][1]

    async def dispatch(self, header, request):
        """Answer one decoded request (in-process: tests, a simulated runtime)."""
        body = self.handler(header.api_key)(header, request)
        if hasattr(body, "__await__"):
            body = await body
        return body

    def find_coordinator(self, header, request):
        key_type = getattr(request, "key_type", 0)  # v0 has no key type: groups only
        entry = self._coordinators.get(key_type)
        if entry is not None:
            return entry[0](header, request)
        return _unknown_key_type(header, request, key_type, sorted(self._coordinators))

    def _check_open(self, owner: str) -> None:
        if self._sealed:
            raise RouterError(f"{owner}: the router is sealed; register every API while the node is assembled")


def _unknown_key_type(header, request, key_type: int, served: list[int]):
    module = apis.response_module(apis.FIND_COORDINATOR, header.api_version)
    build = apis.build_entity
    message = f"FindCoordinator key_type={key_type} is not served; expected one of {served} (0 group, 1 transaction)"
    log.info("FindCoordinator refused: %s", message)
    error = ErrorCode.invalid_request
    if header.api_version >= 4:
        coordinators = tuple(build(module, "Coordinator", key=key, node_id=-1, host="", port=-1, error_code=error,
                                   error_message=message) for key in request.coordinator_keys)
        return build(module, "FindCoordinatorResponse", throttle_time=apis.ZERO_MS, coordinators=coordinators)
    return build(module, "FindCoordinatorResponse", throttle_time=apis.ZERO_MS, error_code=error, error_message=message,
                 node_id=-1, host="", port=-1)


def node_router(handlers, cluster=None) -> Router:
    """The sealed router of a node: `handlers` (RequestHandlers with its coordinators) and, in a cluster, `cluster`."""
    from broker.coordinator.group_handlers import KEY_TYPE_GROUP
    from broker.coordinator.txn_handlers import KEY_TYPE_TRANSACTION

    router = Router()
    from broker.server.sasl import SaslApis

    single_node = cluster is None
    router.register("request handlers", handlers.apis(single_node))
    router.register("fetch", handlers.fetch_apis.apis())
    router.register("partition queries", handlers.partition_queries.apis())
    router.register("topic administration", handlers.topic_admin.apis(single_node))
    router.register("SASL authentication", SaslApis().apis())
    from broker.server.scram_admin import scram_admin

    scram = scram_admin(handlers, cluster)
    router.register("SCRAM credentials", scram.apis())
    router.credential_source = scram.source
    from broker.server.acl_admin import acl_admin

    acl_apis = acl_admin(handlers, cluster)
    router.register("ACL administration", acl_apis.apis())
    router.register("group coordinator", handlers.group_apis.apis())
    router.register_coordinator("group coordinator", KEY_TYPE_GROUP, handlers.group_apis.find_coordinator)
    router.register("transaction coordinator", handlers.txn_apis.apis())
    router.register_coordinator("transaction coordinator", KEY_TYPE_TRANSACTION, handlers.txn_apis.find_coordinator)
    if cluster is not None:
        router.register("cluster node", cluster.apis())
    gate = None
    if acl_apis.enabled:
        from broker.server.authorization import RequestGate, TopicCatalog

        gate = RequestGate(handlers.config, acl_apis.store.acls, TopicCatalog(handlers, cluster), handlers.runtime.clock)
    return router.seal(gate=gate)
