"""Authorization of every client request against the ACLs: Kafka's checks, in one place (KIP-11).

With an authorizer configured (`authorizer.class.name`, broker.server.acl_admin)
the router (broker.server.router) hands each request to `RequestGate.check`
before its handler: the gate asks the node's ACLs (broker.metadata.acls.Authorizer,
rebuilt when they change, so an ACL created or deleted counts from the next
request on every broker that applied it, without a restart) what the caller may
do, and then either lets the request through, answers it alone, or passes the
handler a request without the items the caller may not touch and adds their
errors to the answer. A refused item is never handed to a handler: a denied
produce appends nothing, a denied commit commits nothing, a denied topic is
not auto-created.

The caller is the connection's principal and host: `User:<name>` after SASL
(broker.server.sasl), on an SSL listener with a client certificate
`User:<the certificate's subject DN>` as RFC 2253 writes it (Kafka's
`ssl.principal.mapping.rules=DEFAULT`), else `User:ANONYMOUS`; the host is the
peer's address. Requests on the inter-broker listener of a node with two
listeners are not checked when that listener names nobody (PLAINTEXT, or SSL
without required client certificates: every caller there is User:ANONYMOUS):
only brokers and controllers reach it (our harness and proxy route only peers
there), and Kafka deployments list the broker principal in `super.users`. When
it authenticates (SASL_PLAINTEXT, SASL_SSL, or SSL with
`ssl.client.auth=required`) it is checked like any listener, as Kafka checks it:
the brokers' principal (their JAAS user, or their certificate's subject) must
then be in `super.users`, and any other user of the users file or certificate
of the CA that reaches it gets only its ACLs. On a node with one listener everything is checked,
replication included (a follower's Fetch needs CLUSTER_ACTION on the cluster, as
in Kafka), so such a cluster needs its broker principal, `User:ANONYMOUS` on a
PLAINTEXT listener, in `super.users`.

The checks and error codes are Kafka's (KafkaApis, AuthHelper), per API:
- Produce: WRITE on the transactional id if one is set, else every partition
  gets TRANSACTIONAL_ID_AUTHORIZATION_FAILED; WRITE on each topic, else
  TOPIC_AUTHORIZATION_FAILED for its partitions (with acks=0 the connection is
  closed, as for any failed acks=0 produce).
- Fetch: a consumer needs READ on each topic (TOPIC_AUTHORIZATION_FAILED per
  partition, topics named by id from v13); a follower needs CLUSTER_ACTION on the
  cluster, else every partition gets TOPIC_AUTHORIZATION_FAILED.
- ListOffsets, OffsetForLeaderEpoch (a consumer's): DESCRIBE on each topic;
  OffsetForLeaderEpoch from a replica: CLUSTER_ACTION.
- Metadata: a topic the caller may not DESCRIBE is TOPIC_AUTHORIZATION_FAILED
  when named and left out when all topics are asked; a named topic that does not
  exist and would be auto-created needs CREATE on the cluster or the topic, else
  TOPIC_AUTHORIZATION_FAILED and nothing is created; `topic_authorized_operations`
  is filled in when asked (v8+).
- CreateTopics: CREATE on the cluster or on the topic; DeleteTopics: DELETE on the
  topic (TOPIC_AUTHORIZATION_FAILED per topic).
- DescribeConfigs: DESCRIBE_CONFIGS on the topic (TOPIC_AUTHORIZATION_FAILED) or,
  for a broker or broker logger, on the cluster (CLUSTER_AUTHORIZATION_FAILED).
- FindCoordinator: DESCRIBE on the group (GROUP_AUTHORIZATION_FAILED) or the
  transactional id (TRANSACTIONAL_ID_AUTHORIZATION_FAILED).
- JoinGroup, SyncGroup, Heartbeat, LeaveGroup: READ on the group.
  OffsetCommit: READ on the group (every partition GROUP_AUTHORIZATION_FAILED)
  and on each topic. OffsetFetch: DESCRIBE on the group and on each topic (a
  topic left out when all are asked). DescribeGroups: DESCRIBE per group;
  DeleteGroups: DELETE per group; ListGroups: DESCRIBE on the cluster lists all,
  else the groups the caller may DESCRIBE.
- InitProducerId: WRITE on the transactional id; without one, IDEMPOTENT_WRITE on
  the cluster or WRITE on some topic, else CLUSTER_AUTHORIZATION_FAILED.
  AddPartitionsToTxn: WRITE on the transactional id, then WRITE on each topic
  (the denied ones TOPIC_AUTHORIZATION_FAILED, the rest OPERATION_NOT_ATTEMPTED).
  AddOffsetsToTxn: WRITE on the transactional id, READ on the group. EndTxn:
  WRITE on the transactional id. TxnOffsetCommit: WRITE on the transactional id,
  READ on the group and on each topic. DescribeTransactions: DESCRIBE per id;
  ListTransactions lists the ids the caller may DESCRIBE. DescribeProducers: READ
  per topic. WriteTxnMarkers: CLUSTER_ACTION.
- DescribeAcls: DESCRIBE on the cluster; CreateAcls, DeleteAcls: ALTER on the
  cluster (CLUSTER_AUTHORIZATION_FAILED). DescribeUserScramCredentials: DESCRIBE
  on the cluster; AlterUserScramCredentials: ALTER on the cluster.
- ApiVersions, SaslHandshake, SaslAuthenticate: no check.

A restarted cluster node replays its metadata log before its ACLs are current:
until its image holds this process's own registration it closes the connection
of every checked request (logged, as every refused request is), as Kafka opens
its client listeners only once its authorizer has loaded the metadata (KIP-801);
a stale image would otherwise refuse what a later ACL allows, and clients take
an authorization error as final but a closed connection as a reason to retry.

Each refusal logs one line (at most one a second per node) naming the principal,
the host, the operation and the resource, as Kafka's authorizer log does.

Sources: KIP-11, KIP-290, KIP-679 (idempotent writes), Kafka's KafkaApis and
AuthHelper, read for which operation each API asks and which error it answers;
the code is our own.

Thread-safety: none; the broker's event loop is the only caller.
"""

from __future__ import annotations

import contextvars
import dataclasses
import logging
import uuid
from collections.abc import Callable
from typing import Any

from kio.schema.errors import ErrorCode

from broker.metadata.acls import CLUSTER_NAME, AclOperation, Authorizer, ResourceType
from broker.protocol import apis
from broker.server.listeners import CONNECTION_LISTENER

log = logging.getLogger("broker.server")

TOPIC = ResourceType.TOPIC
GROUP = ResourceType.GROUP
CLUSTER = ResourceType.CLUSTER
TXN = ResourceType.TRANSACTIONAL_ID
Op = AclOperation
ANONYMOUS = "User:ANONYMOUS"
AUTHORIZED_OPERATIONS_OMITTED = -2147483648  # Kafka's INT32_MIN: not asked
TOPIC_OPERATIONS = (Op.READ, Op.WRITE, Op.CREATE, Op.DELETE, Op.ALTER, Op.DESCRIBE, Op.DESCRIBE_CONFIGS, Op.ALTER_CONFIGS)
GROUP_OPERATIONS = (Op.READ, Op.DESCRIBE, Op.DELETE)

TOPIC_DENIED = ErrorCode.topic_authorization_failed
GROUP_DENIED = ErrorCode.group_authorization_failed
CLUSTER_DENIED = ErrorCode.cluster_authorization_failed
TXN_DENIED = ErrorCode.transactional_id_authorization_failed


@dataclasses.dataclass(frozen=True)
class Peer:
    """Who is on the other end of a connection, as far as TLS tells: its address and certificate principal."""
    host: str
    tls_principal: str | None = None


# Set by each connection's task (broker.server.server) once its TLS handshake, if any, is done.
CONNECTION_PEER: contextvars.ContextVar[Peer | None] = contextvars.ContextVar("connection_peer", default=None)

_RDN_NAMES = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU", "countryName": "C",
              "localityName": "L", "stateOrProvinceName": "ST", "streetAddress": "STREET", "domainComponent": "DC",
              "userId": "UID"}


def certificate_principal(certificate: dict | None) -> str | None:
    """`User:<subject DN>` of a peer certificate (ssl.SSLObject.getpeercert()), RFC 2253 order (last RDN first)
    and escaping, as Java's X500Principal.getName() gives it to Kafka's DEFAULT mapping rule; None without one."""
    if not certificate or not certificate.get("subject"):
        return None
    parts = []
    for rdn in reversed(certificate["subject"]):
        parts.append("+".join(f"{_RDN_NAMES.get(key, key)}={_escape_dn(value)}" for key, value in rdn))
    return "User:" + ",".join(parts)


def connection_peer(writer) -> Peer:
    """The Peer of a connection's stream writer (after its TLS handshake, if any)."""
    peer = writer.get_extra_info("peername")
    host = peer[0] if isinstance(peer, tuple) and peer else str(peer or "")
    tls = writer.get_extra_info("ssl_object")
    return Peer(host, certificate_principal(tls.getpeercert()) if tls is not None else None)


def _escape_dn(value: str) -> str:
    escaped = "".join("\\" + ch if ch in ',+"\\<>;' else ch for ch in value)
    if escaped.startswith((" ", "#")):
        escaped = "\\" + escaped
    if escaped.endswith(" ") and not escaped.endswith("\\ "):
        escaped = escaped[:-1] + "\\ "
    return escaped


def current_caller() -> tuple[str, str]:
    """(principal, host) of the request being served (principal ANONYMOUS, host "" outside any connection)."""
    from broker.server.sasl import CONNECTION_SASL

    peer = CONNECTION_PEER.get()
    session = CONNECTION_SASL.get()
    if session is not None and session.principal is not None:
        principal = session.principal
    elif peer is not None and peer.tls_principal is not None:
        principal = peer.tls_principal
    else:
        principal = ANONYMOUS
    return principal, peer.host if peer is not None else ""


@dataclasses.dataclass
class Forward:
    """Let the handler answer `request` (the caller's allowed part); `after` edits its answer; `kwargs` go to it."""
    request: Any
    after: Callable[[Any], Any] | None = None
    kwargs: dict | None = None


@dataclasses.dataclass
class Answer:
    """Answer with `body` without asking the handler."""
    body: Any


class TopicCatalog:
    """The topics a node knows (names and ids), for checks that must tell a missing topic or name one by id."""

    def __init__(self, handlers, cluster=None):
        self.handlers = handlers
        self.cluster = cluster

    def exists(self, name: str) -> bool:
        if self.cluster is not None:
            return name in self.cluster.quorum.image.topics
        return name in self.handlers.topics.by_name

    def ready(self) -> bool:
        """Whether this node's metadata (its ACLs among it) is current: on a restarted cluster node, not until its
        image holds this process's own registration (broker.replication.manager's `caught_up`)."""
        manager = getattr(self.cluster, "replica_manager", None) if self.cluster is not None else None
        return manager is None or manager.caught_up

    def name_of(self, topic_id: uuid.UUID) -> str | None:
        if self.cluster is not None:
            return self.cluster.quorum.image.topic_names_by_id.get(topic_id)
        info = self.handlers.topics.by_id.get(topic_id)
        return info.name if info is not None else None


class Check:
    """One request's questions to the authorizer, for its caller."""

    def __init__(self, gate: "RequestGate", principal: str, host: str, api_key: int):
        self.gate = gate
        self.authorizer = gate.authorizer()
        self.principal = principal
        self.host = host
        self.api_key = api_key

    def allows(self, operation: Op, resource_type: ResourceType, name: str, *, log_denial: bool = True) -> bool:
        allowed = self.authorizer.authorize(self.principal, self.host, operation, resource_type, name)
        if not allowed and log_denial:
            self.gate.log_denial(self, operation, resource_type, name)
        return allowed

    def cluster(self, operation: Op, *, log_denial: bool = True) -> bool:
        return self.allows(operation, CLUSTER, CLUSTER_NAME, log_denial=log_denial)

    def may_create_topic(self, name: str) -> bool:
        return self.cluster(Op.CREATE, log_denial=False) or self.allows(Op.CREATE, TOPIC, name)

    def operations(self, resource_type: ResourceType, name: str, candidates) -> int:
        """Kafka's authorized-operations bit field (bit = operation code) of the resource, for this caller."""
        return sum(1 << int(op) for op in candidates if self.allows(op, resource_type, name, log_denial=False))


class RequestGate:
    """Authorization in front of every handler of a node (see the module docstring)."""

    def __init__(self, config, acls: Callable[[], Any], catalog: TopicCatalog, clock):
        self.config = config
        self.clock = clock  # the runtime's (broker.io): the refusal log's pace
        self.acls = acls  # () -> the node's current ACLs (a mapping id -> binding; replaced when they change)
        self.catalog = catalog
        self.super_users = frozenset(config.value("super.users") or ())  # parsed at start (broker.server.config)
        self.allow_if_no_acl = bool(config.value("allow.everyone.if.no.acl.found"))
        self._cached: tuple[Any, Authorizer] | None = None
        self._last_log_ns: int | None = None
        self._quiet = 0

    def authorizer(self) -> Authorizer:
        current = self.acls()
        if self._cached is None or self._cached[0] is not current:
            self._cached = (current, Authorizer(current.values(), super_users=self.super_users,
                                                allow_everyone_if_no_acl_found=self.allow_if_no_acl))
        return self._cached[1]

    def trusted(self) -> bool:
        """A request on the separate inter-broker listener of a node, when that listener names nobody (see the
        module docstring): PLAINTEXT, or SSL without client certificates required."""
        listener = CONNECTION_LISTENER.get()
        if listener is None or len(self.config.listeners) < 2 or self.config.is_client_listener(listener):
            return False
        protocol = self.config.value("listener.security.protocol.map").get(listener, "PLAINTEXT")
        return protocol == "PLAINTEXT" or (protocol == "SSL" and self.config.value("ssl.client.auth") != "required")

    def wrap(self, api_key: int, handler):
        rule = RULES.get(api_key)
        if rule is None:
            return handler

        def gated(header, request):
            if self.trusted():
                return handler(header, request)
            principal, host = current_caller()
            if not self.catalog.ready():
                raise _close(f"{apis.API_NAMES[api_key]} from {principal} before this node's metadata, and so its "
                             "ACLs, caught up after its start; a client retries elsewhere or later")
            outcome = rule(Check(self, principal, host, api_key), header, request)
            if outcome is None:
                return handler(header, request)
            if isinstance(outcome, Answer):
                return outcome.body
            body = handler(header, outcome.request, **(outcome.kwargs or {}))
            if outcome.after is None:
                return body
            if hasattr(body, "__await__"):
                return _then(body, outcome.after)
            return outcome.after(body)

        return gated

    def log_denial(self, check: Check, operation: Op, resource_type: ResourceType, name: str) -> None:
        now_ns = self.clock.monotonic_ns()
        if self._last_log_ns is not None and now_ns - self._last_log_ns < 1_000_000_000:
            self._quiet += 1
            return
        more = f" ({self._quiet} more refusals since the last line)" if self._quiet else ""
        self._last_log_ns, self._quiet = now_ns, 0
        log.info("Principal %s from host %s is denied operation %s on %s %s (%s)%s", check.principal,
                 check.host or "-", operation.name, resource_type.name, name, apis.API_NAMES[check.api_key], more)


async def _then(body, after):
    return after(await body)


# ---- building answers ---------------------------------------------------------------------------------------------

def _module(api_key: int, header):
    return apis.response_module(api_key, header.api_version)


_NEUTRAL = {"int8": -1, "int16": -1, "int32": -1, "int64": -1, "uint16": 0, "string": "", "bytes": b"",
            "bool": False, "uuid": uuid.UUID(int=0), "float64": 0.0, "records": None}


def error_response(api_key: int, header, error: ErrorCode, message: str | None = None, **values):
    """The whole-request error answer of an API: `error` in its error_code, neutral values elsewhere
    (-1 for numbers, as Kafka answers an unknown producer id or generation, empty strings and lists)."""
    module = _module(api_key, header)
    cls = apis.response_class(api_key, header.api_version)
    fields = {}
    for f in dataclasses.fields(cls):
        if f.name in values or (f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING):
            continue
        kind = f.metadata.get("kafka_type")
        if f.name == "error_code":
            fields[f.name] = error
        elif f.name == "error_message":
            fields[f.name] = message
        elif kind == "timedelta_i32":
            fields[f.name] = apis.ZERO_MS
        elif kind is None:  # a list of entities
            fields[f.name] = ()
        else:
            fields[f.name] = _NEUTRAL.get(kind, None)
    fields.update(values)
    if "error_message" in cls.__dataclass_fields__ and "error_message" not in fields:
        fields["error_message"] = message
    return apis.build_entity(module, cls.__name__, **fields)


def _replace(entity, **changes):
    return dataclasses.replace(entity, **changes)


def _split(items, allowed: Callable[[Any], bool]):
    kept, denied = [], []
    for item in items:
        (kept if allowed(item) else denied).append(item)
    return tuple(kept), denied


def _partition_errors(module, topic_class: str, partition_class: str, list_field: str, topics, error: ErrorCode, *,
                      name_field: str = "name", partitions_of=lambda t: t.partitions, index_of=lambda p: p.partition_index,
                      index_field: str = "partition_index", error_field: str = "error_code", **partition_values):
    """An error entry per partition of `topics` (request entities), as the response's topic entities."""
    build = apis.build_entity
    return tuple(build(module, topic_class, **{name_field: getattr(t, name_field), list_field: tuple(
        build(module, partition_class, **{index_field: index_of(p), error_field: error}, **partition_values)
        for p in partitions_of(t))}) for t in topics)


def _append_field(field: str, extra: tuple):
    def after(response):
        if not extra:
            return response
        return _replace(response, **{field: tuple(getattr(response, field)) + tuple(extra)})
    return after


# ---- the rules, per API -------------------------------------------------------------------------------------------

def produce(check: Check, header, request):
    from broker.protocol.produce import PartitionProduceResult

    txn = request.transactional_id
    if txn is not None and not check.allows(Op.WRITE, TXN, txn):
        kept, denied = (), list(request.topic_data)
        error = TXN_DENIED
    else:
        kept, denied = _split(request.topic_data, lambda t: check.allows(Op.WRITE, TOPIC, t.name))
        error = TOPIC_DENIED
    if not denied:
        return None
    results = [(t.name, [PartitionProduceResult(p.index, error.value, -1, -1, None) for p in t.partition_data])
               for t in denied]
    return Forward(_replace(request, topic_data=kept), kwargs={"denied": results})


def fetch(check: Check, header, request):
    from broker.protocol.fetch import FetchPartitionResult, FetchTopicResult, encode_fetch_response
    from broker.server.fetch import fetch_replica_id

    version = header.api_version
    if fetch_replica_id(request, version) >= 0:
        if check.cluster(Op.CLUSTER_ACTION):
            return None
        return Answer(encode_fetch_response(version, [FetchTopicResult(
            t.topic if version < 13 else "", t.topic_id if version >= 13 else uuid.UUID(int=0),
            [FetchPartitionResult(p.partition, TOPIC_DENIED.value) for p in t.partitions]) for t in request.topics],
            session_id=0))
    else:
        def name_of(topic):
            return check.gate.catalog.name_of(topic.topic_id) if version >= 13 else topic.topic

        # a topic id the node does not know is the handler's to answer (UNKNOWN_TOPIC_ID)
        kept, denied = _split(request.topics, lambda t: name_of(t) is None or check.allows(Op.READ, TOPIC, name_of(t)))
    if not denied:
        return None
    results = [FetchTopicResult(t.topic if version < 13 else "", t.topic_id if version >= 13 else uuid.UUID(int=0),
                                [FetchPartitionResult(p.partition, TOPIC_DENIED.value) for p in t.partitions])
               for t in denied]
    return Forward(_replace(request, topics=kept), kwargs={"denied": results})


def list_offsets(check: Check, header, request):
    kept, denied = _split(request.topics, lambda t: check.allows(Op.DESCRIBE, TOPIC, t.name))
    if not denied:
        return None
    module = _module(apis.LIST_OFFSETS, header)
    extra = _partition_errors(module, "ListOffsetsTopicResponse", "ListOffsetsPartitionResponse", "partitions", denied,
                              TOPIC_DENIED, timestamp=-1, offset=-1, leader_epoch=-1)
    return Forward(_replace(request, topics=kept), _append_field("topics", extra))


def offset_for_leader_epoch(check: Check, header, request):
    module = _module(apis.OFFSET_FOR_LEADER_EPOCH, header)
    if getattr(request, "replica_id", -1) >= 0:  # a follower (v3+)
        if check.cluster(Op.CLUSTER_ACTION):
            return None
        kept, denied = (), list(request.topics)
    else:
        kept, denied = _split(request.topics, lambda t: check.allows(Op.DESCRIBE, TOPIC, t.topic))
    if not denied:
        return None
    extra = _partition_errors(module, "OffsetForLeaderTopicResult", "EpochEndOffset", "partitions", denied, TOPIC_DENIED,
                              name_field="topic", index_of=lambda p: p.partition, index_field="partition",
                              leader_epoch=-1, end_offset=-1)
    return Forward(_replace(request, topics=kept), _append_field("topics", extra))


def metadata(check: Check, header, request):
    module = _module(apis.METADATA, header)
    version = header.api_version
    asked_all = request.topics is None or (version == 0 and len(request.topics) == 0)
    operations = bool(getattr(request, "include_topic_authorized_operations", False))
    denied: list[str] = []
    kept = request.topics
    if not asked_all:
        auto_create = getattr(request, "allow_auto_topic_creation", True) and check.gate.config.auto_create_topics_enable
        catalog = check.gate.catalog

        def allowed(topic) -> bool:
            if topic.name is None:  # named by id (v10+): checked on the answer, which names it
                return True
            if not check.allows(Op.DESCRIBE, TOPIC, topic.name):
                return False
            return not auto_create or catalog.exists(topic.name) or check.may_create_topic(topic.name)

        kept, refused = _split(request.topics, allowed)
        denied = [t.name for t in refused]
    # Metadata v0 reads an empty list as "every topic": when every named topic is refused, the handler's
    # answer (all topics) is dropped and only the refusals are sent
    nothing_kept = not asked_all and not kept

    def after(response):
        topics = []
        for topic in () if nothing_kept else response.topics:
            if topic.name and not check.allows(Op.DESCRIBE, TOPIC, topic.name, log_denial=not asked_all):
                if not asked_all:
                    topics.append(_denied_topic(module, topic.name))
                continue
            if operations:
                topic = _replace(topic, topic_authorized_operations=check.operations(TOPIC, topic.name, TOPIC_OPERATIONS))
            topics.append(topic)
        topics.extend(_denied_topic(module, name) for name in denied)
        return _replace(response, topics=tuple(topics))

    return Forward(request if asked_all else _replace(request, topics=kept), after)


def _denied_topic(module, name: str):
    return apis.build_entity(module, "MetadataResponseTopic", error_code=TOPIC_DENIED, name=name,
                             topic_id=uuid.UUID(int=0), is_internal=False, partitions=(),
                             topic_authorized_operations=AUTHORIZED_OPERATIONS_OMITTED)


def create_topics(check: Check, header, request):
    if check.cluster(Op.CREATE, log_denial=False):
        return None
    kept, denied = _split(request.topics, lambda t: check.allows(Op.CREATE, TOPIC, t.name))
    if not denied:
        return None
    module = _module(apis.CREATE_TOPICS, header)
    extra = tuple(apis.build_entity(module, "CreatableTopicResult", name=t.name, topic_id=uuid.UUID(int=0),
                                    error_code=TOPIC_DENIED, error_message=f"Authorization failed for topic {t.name}",
                                    topic_config_error_code=ErrorCode.none, num_partitions=-1, replication_factor=-1,
                                    configs=()) for t in denied)
    return Forward(_replace(request, topics=kept), _append_field("topics", extra))


def delete_topics(check: Check, header, request):
    module = _module(apis.DELETE_TOPICS, header)
    build = apis.build_entity
    if header.api_version >= 6:
        def name_of(t):
            return t.name if t.name is not None else check.gate.catalog.name_of(t.topic_id)

        kept, denied = _split(request.topics, lambda t: name_of(t) is None or check.allows(Op.DELETE, TOPIC, name_of(t)))
        extra = tuple(build(module, "DeletableTopicResult", name=t.name, topic_id=t.topic_id, error_code=TOPIC_DENIED,
                            error_message=None) for t in denied)
        field = "topics"
    else:
        kept, denied = _split(request.topic_names, lambda name: check.allows(Op.DELETE, TOPIC, name))
        extra = tuple(build(module, "DeletableTopicResult", name=name, topic_id=uuid.UUID(int=0),
                            error_code=TOPIC_DENIED, error_message=None) for name in denied)
        field = "topic_names"
    if not denied:
        return None
    return Forward(_replace(request, **{field: kept}), _append_field("responses", extra))


CONFIG_TOPIC, CONFIG_BROKER, CONFIG_BROKER_LOGGER = 2, 4, 8


def describe_configs(check: Check, header, request):
    def allowed(resource) -> bool:
        if resource.resource_type == CONFIG_TOPIC:
            return check.allows(Op.DESCRIBE_CONFIGS, TOPIC, resource.resource_name)
        if resource.resource_type in (CONFIG_BROKER, CONFIG_BROKER_LOGGER):
            return check.cluster(Op.DESCRIBE_CONFIGS)
        return True

    kept, denied = _split(request.resources, allowed)
    if not denied:
        return None
    module = _module(apis.DESCRIBE_CONFIGS, header)
    extra = tuple(apis.build_entity(
        module, "DescribeConfigsResult", error_code=TOPIC_DENIED if r.resource_type == CONFIG_TOPIC else CLUSTER_DENIED,
        error_message=None, resource_type=r.resource_type, resource_name=r.resource_name, configs=()) for r in denied)
    return Forward(_replace(request, resources=kept), _append_field("results", extra))


def find_coordinator(check: Check, header, request):
    key_type = getattr(request, "key_type", 0)
    resource, error = (TXN, TXN_DENIED) if key_type == 1 else (GROUP, GROUP_DENIED)
    if key_type not in (0, 1):
        return None  # the router answers INVALID_REQUEST
    if header.api_version < 4:
        if check.allows(Op.DESCRIBE, resource, request.key):
            return None
        return Answer(error_response(apis.FIND_COORDINATOR, header, error, node_id=-1, host="", port=-1))
    kept, denied = _split(request.coordinator_keys, lambda key: check.allows(Op.DESCRIBE, resource, key))
    if not denied:
        return None
    module = _module(apis.FIND_COORDINATOR, header)
    extra = tuple(apis.build_entity(module, "Coordinator", key=key, node_id=-1, host="", port=-1, error_code=error,
                                    error_message=None) for key in denied)
    if not kept:
        return Answer(apis.build_entity(module, "FindCoordinatorResponse", throttle_time=apis.ZERO_MS, coordinators=extra))
    return Forward(_replace(request, coordinator_keys=kept), _append_field("coordinators", extra))


def _group_member(api_key: int):
    def rule(check: Check, header, request):
        if check.allows(Op.READ, GROUP, request.group_id):
            return None
        return Answer(error_response(api_key, header, GROUP_DENIED))
    return rule


def offset_commit(check: Check, header, request):
    module = _module(apis.OFFSET_COMMIT, header)

    def errors(topics, error):
        return _partition_errors(module, "OffsetCommitResponseTopic", "OffsetCommitResponsePartition", "partitions",
                                 topics, error)

    if not check.allows(Op.READ, GROUP, request.group_id):
        return Answer(error_response(apis.OFFSET_COMMIT, header, GROUP_DENIED, topics=errors(request.topics, GROUP_DENIED)))
    kept, denied = _split(request.topics, lambda t: check.allows(Op.READ, TOPIC, t.name))
    if not denied:
        return None
    return Forward(_replace(request, topics=kept), _append_field("topics", errors(denied, TOPIC_DENIED)))


def txn_offset_commit(check: Check, header, request):
    module = _module(apis.TXN_OFFSET_COMMIT, header)

    def errors(topics, error):
        return _partition_errors(module, "TxnOffsetCommitResponseTopic", "TxnOffsetCommitResponsePartition",
                                 "partitions", topics, error)

    if not check.allows(Op.WRITE, TXN, request.transactional_id):
        return Answer(error_response(apis.TXN_OFFSET_COMMIT, header, TXN_DENIED, topics=errors(request.topics, TXN_DENIED)))
    if not check.allows(Op.READ, GROUP, request.group_id):
        return Answer(error_response(apis.TXN_OFFSET_COMMIT, header, GROUP_DENIED,
                                     topics=errors(request.topics, GROUP_DENIED)))
    kept, denied = _split(request.topics, lambda t: check.allows(Op.READ, TOPIC, t.name))
    if not denied:
        return None
    return Forward(_replace(request, topics=kept), _append_field("topics", errors(denied, TOPIC_DENIED)))


def offset_fetch(check: Check, header, request):
    """Read-only: the handler answers, and the answer loses what the caller may not DESCRIBE."""
    version = header.api_version
    module = _module(apis.OFFSET_FETCH, header)

    def topics_of(topics, asked_all: bool, topic_class: str, partition_class: str):
        out = []
        for topic in topics:
            if check.allows(Op.DESCRIBE, TOPIC, topic.name, log_denial=not asked_all):
                out.append(topic)
            elif not asked_all:
                out.append(_replace(topic, partitions=tuple(
                    apis.build_entity(module, partition_class, partition_index=p.partition_index, committed_offset=-1,
                                      committed_leader_epoch=-1, metadata="", error_code=TOPIC_DENIED)
                    for p in topic.partitions)))
        return tuple(out)

    if version >= 8:
        asked = {g.group_id: g.topics is None for g in request.groups}

        def after(response):
            groups = []
            for group in response.groups:
                if not check.allows(Op.DESCRIBE, GROUP, group.group_id):
                    groups.append(_replace(group, error_code=GROUP_DENIED, topics=()))
                else:
                    groups.append(_replace(group, topics=topics_of(group.topics, asked.get(group.group_id, True),
                                                                    "OffsetFetchResponseTopics",
                                                                    "OffsetFetchResponsePartitions")))
            return _replace(response, groups=tuple(groups))
        return Forward(request, after)
    if not check.allows(Op.DESCRIBE, GROUP, request.group_id):
        if version < 2:
            topics = _partition_errors(module, "OffsetFetchResponseTopic", "OffsetFetchResponsePartition", "partitions",
                                       request.topics or (), GROUP_DENIED, partitions_of=lambda t: t.partition_indexes,
                                       index_of=lambda p: p, committed_offset=-1, metadata="")
            return Answer(error_response(apis.OFFSET_FETCH, header, GROUP_DENIED, topics=topics))
        return Answer(error_response(apis.OFFSET_FETCH, header, GROUP_DENIED))

    def after_one(response):
        return _replace(response, topics=topics_of(response.topics, request.topics is None, "OffsetFetchResponseTopic",
                                                   "OffsetFetchResponsePartition"))
    return Forward(request, after_one)


def describe_groups(check: Check, header, request):
    operations = bool(getattr(request, "include_authorized_operations", False))
    denied = {g for g in request.groups if not check.allows(Op.DESCRIBE, GROUP, g)}

    def after(response):
        groups = []
        for group in response.groups:
            if group.group_id in denied:
                group = _replace(group, error_code=GROUP_DENIED, group_state="", protocol_type="", protocol_data="",
                                 members=())
            elif operations:
                group = _replace(group, authorized_operations=check.operations(GROUP, group.group_id, GROUP_OPERATIONS))
            groups.append(group)
        return _replace(response, groups=tuple(groups))

    if not denied and not operations:
        return None
    return Forward(request, after)


def delete_groups(check: Check, header, request):
    kept, denied = _split(request.groups_names, lambda g: check.allows(Op.DELETE, GROUP, g))
    if not denied:
        return None
    module = _module(apis.DELETE_GROUPS, header)
    extra = tuple(apis.build_entity(module, "DeletableGroupResult", group_id=g, error_code=GROUP_DENIED) for g in denied)
    return Forward(_replace(request, groups_names=kept), _append_field("results", extra))


def list_groups(check: Check, header, request):
    if check.cluster(Op.DESCRIBE, log_denial=False):
        return None
    return Forward(request, lambda response: _replace(response, groups=tuple(
        g for g in response.groups if check.allows(Op.DESCRIBE, GROUP, g.group_id, log_denial=False))))


def init_producer_id(check: Check, header, request):
    txn = request.transactional_id
    if txn is not None:
        if check.allows(Op.WRITE, TXN, txn):
            return None
        return Answer(error_response(apis.INIT_PRODUCER_ID, header, TXN_DENIED))
    if check.cluster(Op.IDEMPOTENT_WRITE, log_denial=False) or check.authorizer.authorize_any(
            check.principal, check.host, Op.WRITE, TOPIC):
        return None
    check.gate.log_denial(check, Op.IDEMPOTENT_WRITE, CLUSTER, CLUSTER_NAME)
    return Answer(error_response(apis.INIT_PRODUCER_ID, header, CLUSTER_DENIED))


def add_partitions_to_txn(check: Check, header, request):
    module = _module(apis.ADD_PARTITIONS_TO_TXN, header)

    def errors(topics, error):
        return _partition_errors(module, "AddPartitionsToTxnTopicResult", "AddPartitionsToTxnPartitionResult",
                                 "results_by_partition", topics, error, partitions_of=lambda t: t.partitions,
                                 index_of=lambda p: p, error_field="partition_error_code")

    topics = request.v3_and_below_topics
    if not check.allows(Op.WRITE, TXN, request.v3_and_below_transactional_id):
        results = errors(topics, TXN_DENIED)
    else:
        kept, denied = _split(topics, lambda t: check.allows(Op.WRITE, TOPIC, t.name))
        if not denied:
            return None
        results = errors(denied, TOPIC_DENIED) + errors(kept, ErrorCode.operation_not_attempted)
    return Answer(error_response(apis.ADD_PARTITIONS_TO_TXN, header, ErrorCode.none,
                                 results_by_topic_v3_and_below=results))


def add_offsets_to_txn(check: Check, header, request):
    if not check.allows(Op.WRITE, TXN, request.transactional_id):
        return Answer(error_response(apis.ADD_OFFSETS_TO_TXN, header, TXN_DENIED))
    if not check.allows(Op.READ, GROUP, request.group_id):
        return Answer(error_response(apis.ADD_OFFSETS_TO_TXN, header, GROUP_DENIED))
    return None


def end_txn(check: Check, header, request):
    if check.allows(Op.WRITE, TXN, request.transactional_id):
        return None
    return Answer(error_response(apis.END_TXN, header, TXN_DENIED))


def describe_transactions(check: Check, header, request):
    kept, denied = _split(request.transactional_ids, lambda t: check.allows(Op.DESCRIBE, TXN, t))
    if not denied:
        return None
    module = _module(apis.DESCRIBE_TRANSACTIONS, header)
    extra = tuple(apis.build_entity(module, "TransactionState", error_code=TXN_DENIED, transactional_id=t,
                                    transaction_state="", transaction_timeout=-1, transaction_start_time=-1,
                                    producer_id=-1, producer_epoch=-1, topics=()) for t in denied)
    return Forward(_replace(request, transactional_ids=kept), _append_field("transaction_states", extra))


def list_transactions(check: Check, header, request):
    return Forward(request, lambda response: _replace(response, transaction_states=tuple(
        t for t in response.transaction_states if check.allows(Op.DESCRIBE, TXN, t.transactional_id, log_denial=False))))


def describe_producers(check: Check, header, request):
    kept, denied = _split(request.topics, lambda t: check.allows(Op.READ, TOPIC, t.name))
    if not denied:
        return None
    module = _module(apis.DESCRIBE_PRODUCERS, header)
    extra = _partition_errors(module, "TopicResponse", "PartitionResponse", "partitions", denied, TOPIC_DENIED,
                              partitions_of=lambda t: t.partition_indexes, index_of=lambda p: p, error_message=None,
                              active_producers=())
    return Forward(_replace(request, topics=kept), _append_field("topics", extra))


def write_txn_markers(check: Check, header, request):
    if check.cluster(Op.CLUSTER_ACTION):
        return None
    raise _close(f"WriteTxnMarkers from {check.principal} without CLUSTER_ACTION on the cluster")


def _close(message: str):
    from broker.server.handlers import CloseConnection

    return CloseConnection(message)


def describe_acls(check: Check, header, request):
    if check.cluster(Op.DESCRIBE):
        return None
    return Answer(error_response(apis.DESCRIBE_ACLS, header, CLUSTER_DENIED, "Cluster authorization failed."))


def create_acls(check: Check, header, request):
    if check.cluster(Op.ALTER):
        return None
    module = _module(apis.CREATE_ACLS, header)
    return Answer(error_response(apis.CREATE_ACLS, header, ErrorCode.none, results=tuple(
        apis.build_entity(module, "AclCreationResult", error_code=CLUSTER_DENIED, error_message=None)
        for _ in request.creations)))


def delete_acls(check: Check, header, request):
    if check.cluster(Op.ALTER):
        return None
    module = _module(apis.DELETE_ACLS, header)
    return Answer(error_response(apis.DELETE_ACLS, header, ErrorCode.none, filter_results=tuple(
        apis.build_entity(module, "DeleteAclsFilterResult", error_code=CLUSTER_DENIED, error_message=None,
                          matching_acls=()) for _ in request.filters)))


def describe_scram(check: Check, header, request):
    if check.cluster(Op.DESCRIBE):
        return None
    return Answer(error_response(apis.DESCRIBE_USER_SCRAM_CREDENTIALS, header, CLUSTER_DENIED))


def alter_scram(check: Check, header, request):
    if check.cluster(Op.ALTER):
        return None
    module = _module(apis.ALTER_USER_SCRAM_CREDENTIALS, header)
    users = dict.fromkeys([d.name for d in request.deletions] + [u.name for u in request.upsertions])
    return Answer(error_response(apis.ALTER_USER_SCRAM_CREDENTIALS, header, ErrorCode.none, results=tuple(
        apis.build_entity(module, "AlterUserScramCredentialsResult", user=user, error_code=CLUSTER_DENIED,
                          error_message=None) for user in users)))


RULES: dict[int, Callable[[Check, Any, Any], Any]] = {
    apis.PRODUCE: produce,
    apis.FETCH: fetch,
    apis.LIST_OFFSETS: list_offsets,
    apis.METADATA: metadata,
    apis.OFFSET_COMMIT: offset_commit,
    apis.OFFSET_FETCH: offset_fetch,
    apis.FIND_COORDINATOR: find_coordinator,
    apis.JOIN_GROUP: _group_member(apis.JOIN_GROUP),
    apis.HEARTBEAT: _group_member(apis.HEARTBEAT),
    apis.LEAVE_GROUP: _group_member(apis.LEAVE_GROUP),
    apis.SYNC_GROUP: _group_member(apis.SYNC_GROUP),
    apis.DESCRIBE_GROUPS: describe_groups,
    apis.LIST_GROUPS: list_groups,
    apis.CREATE_TOPICS: create_topics,
    apis.DELETE_TOPICS: delete_topics,
    apis.INIT_PRODUCER_ID: init_producer_id,
    apis.OFFSET_FOR_LEADER_EPOCH: offset_for_leader_epoch,
    apis.ADD_PARTITIONS_TO_TXN: add_partitions_to_txn,
    apis.ADD_OFFSETS_TO_TXN: add_offsets_to_txn,
    apis.END_TXN: end_txn,
    apis.WRITE_TXN_MARKERS: write_txn_markers,
    apis.TXN_OFFSET_COMMIT: txn_offset_commit,
    apis.DESCRIBE_ACLS: describe_acls,
    apis.CREATE_ACLS: create_acls,
    apis.DELETE_ACLS: delete_acls,
    apis.DESCRIBE_CONFIGS: describe_configs,
    apis.DELETE_GROUPS: delete_groups,
    apis.DESCRIBE_USER_SCRAM_CREDENTIALS: describe_scram,
    apis.ALTER_USER_SCRAM_CREDENTIALS: alter_scram,
    apis.DESCRIBE_PRODUCERS: describe_producers,
    apis.DESCRIBE_TRANSACTIONS: describe_transactions,
    apis.LIST_TRANSACTIONS: list_transactions,
}
UNCHECKED = frozenset({apis.API_VERSIONS, apis.SASL_HANDSHAKE, apis.SASL_AUTHENTICATE})
