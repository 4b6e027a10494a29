"""The APIs this broker serves, their version ranges, and kio glue.

`SUPPORTED_VERSIONS` is the single list both ApiVersions advertises and the
request dispatcher enforces: a client never gets a version advertised that the
broker cannot decode. The ranges start at the lowest version kio knows (Kafka
4's baseline, KIP-896) and end at versions whose semantics this broker honours;
every client picks the highest version inside the range it also knows, which
covers aiokafka (non-flexible versions only), kafka-python 3.x and librdkafka 2.x.

Request and response bodies are decoded and encoded with kio's generated
entities (one class per API version, from Kafka's JSON message specs), except
the hot paths written by hand: Produce requests and responses
(`broker.protocol.produce`) and Fetch responses (`broker.protocol.fetch`), so
record bytes are passed through without copying or per-record work.

Thread-safety: the caches are filled idempotently; safe under the GIL.
"""

from __future__ import annotations

import datetime
import importlib
import io
from functools import lru_cache

from kio.index import load_request_schema, load_response_schema
from kio.serial import entity_reader, entity_writer

from broker.protocol.guard import check_body
from broker.protocol.produce import decode_produce_request
from broker.protocol.wire import MalformedRequestError

ZERO_MS = datetime.timedelta(0)  # throttle_time of every response: the broker never throttles

PRODUCE = 0
FETCH = 1
LIST_OFFSETS = 2
METADATA = 3
OFFSET_COMMIT = 8
OFFSET_FETCH = 9
FIND_COORDINATOR = 10
JOIN_GROUP = 11
HEARTBEAT = 12
LEAVE_GROUP = 13
SYNC_GROUP = 14
DESCRIBE_GROUPS = 15
LIST_GROUPS = 16
API_VERSIONS = 18
CREATE_TOPICS = 19
DELETE_TOPICS = 20
INIT_PRODUCER_ID = 22
OFFSET_FOR_LEADER_EPOCH = 23
ADD_PARTITIONS_TO_TXN = 24
ADD_OFFSETS_TO_TXN = 25
END_TXN = 26
WRITE_TXN_MARKERS = 27
TXN_OFFSET_COMMIT = 28
DESCRIBE_ACLS = 29
CREATE_ACLS = 30
DELETE_ACLS = 31
DESCRIBE_CONFIGS = 32
DELETE_GROUPS = 42
DESCRIBE_PRODUCERS = 61
DESCRIBE_TRANSACTIONS = 65
LIST_TRANSACTIONS = 66
SASL_HANDSHAKE = 17
SASL_AUTHENTICATE = 36
DESCRIBE_USER_SCRAM_CREDENTIALS = 50
ALTER_USER_SCRAM_CREDENTIALS = 51

API_NAMES = {
    PRODUCE: "Produce",
    FETCH: "Fetch",
    LIST_OFFSETS: "ListOffsets",
    METADATA: "Metadata",
    OFFSET_COMMIT: "OffsetCommit",
    OFFSET_FETCH: "OffsetFetch",
    FIND_COORDINATOR: "FindCoordinator",
    JOIN_GROUP: "JoinGroup",
    HEARTBEAT: "Heartbeat",
    LEAVE_GROUP: "LeaveGroup",
    SYNC_GROUP: "SyncGroup",
    DESCRIBE_GROUPS: "DescribeGroups",
    LIST_GROUPS: "ListGroups",
    DELETE_GROUPS: "DeleteGroups",
    API_VERSIONS: "ApiVersions",
    CREATE_TOPICS: "CreateTopics",
    DELETE_TOPICS: "DeleteTopics",
    INIT_PRODUCER_ID: "InitProducerId",
    OFFSET_FOR_LEADER_EPOCH: "OffsetForLeaderEpoch",
    ADD_PARTITIONS_TO_TXN: "AddPartitionsToTxn",
    ADD_OFFSETS_TO_TXN: "AddOffsetsToTxn",
    END_TXN: "EndTxn",
    WRITE_TXN_MARKERS: "WriteTxnMarkers",
    TXN_OFFSET_COMMIT: "TxnOffsetCommit",
    DESCRIBE_ACLS: "DescribeAcls",
    CREATE_ACLS: "CreateAcls",
    DELETE_ACLS: "DeleteAcls",
    DESCRIBE_CONFIGS: "DescribeConfigs",
    DESCRIBE_PRODUCERS: "DescribeProducers",
    DESCRIBE_TRANSACTIONS: "DescribeTransactions",
    LIST_TRANSACTIONS: "ListTransactions",
    SASL_HANDSHAKE: "SaslHandshake",
    SASL_AUTHENTICATE: "SaslAuthenticate",
    DESCRIBE_USER_SCRAM_CREDENTIALS: "DescribeUserScramCredentials",
    ALTER_USER_SCRAM_CREDENTIALS: "AlterUserScramCredentials",
}

# api_key -> (min_version, max_version), inclusive.
SUPPORTED_VERSIONS: dict[int, tuple[int, int]] = {
    PRODUCE: (3, 11),  # v12 changes transaction semantics (KIP-890), v13 addresses topics by id
    FETCH: (4, 16),  # v13+ addresses topics by id; v17 is for KRaft replicas
    LIST_OFFSETS: (1, 6),  # v7 adds MAX_TIMESTAMP (-3), not served
    METADATA: (0, 12),
    OFFSET_COMMIT: (2, 9),  # v10 is KIP-848's (new consumer protocol), not served
    OFFSET_FETCH: (1, 9),
    FIND_COORDINATOR: (0, 4),
    JOIN_GROUP: (2, 9),  # the classic protocol (broker.coordinator.group)
    HEARTBEAT: (0, 4),
    LEAVE_GROUP: (0, 5),
    SYNC_GROUP: (0, 5),
    DESCRIBE_GROUPS: (0, 5),
    LIST_GROUPS: (0, 5),
    DELETE_GROUPS: (0, 2),
    API_VERSIONS: (0, 3),
    CREATE_TOPICS: (2, 7),
    DELETE_TOPICS: (1, 6),
    INIT_PRODUCER_ID: (0, 4),
    OFFSET_FOR_LEADER_EPOCH: (2, 4),  # followers' truncation (KIP-101/279) and clients' (KIP-320)
    # transactions (KIP-98, KIP-447); the next versions belong to KIP-890 (server-side verification, TV2)
    ADD_PARTITIONS_TO_TXN: (0, 3),  # v4+ is the brokers' batched verification form
    ADD_OFFSETS_TO_TXN: (0, 3),
    END_TXN: (0, 3),
    WRITE_TXN_MARKERS: (1, 1),  # broker to broker; v2 carries the transaction version (KIP-890)
    TXN_OFFSET_COMMIT: (0, 3),
    DESCRIBE_CONFIGS: (1, 4),
    # the hanging-transaction tooling (KIP-664); ListTransactions v1 adds the duration filter (KIP-994),
    # v2 the transactional-id pattern (KIP-1152, not served)
    DESCRIBE_PRODUCERS: (0, 0),
    DESCRIBE_TRANSACTIONS: (0, 0),
    LIST_TRANSACTIONS: (0, 1),
    # SASL on SASL_* listeners (broker.server.sasl); after a v0 handshake the tokens travel unframed (KIP-43)
    SASL_HANDSHAKE: (0, 1),
    SASL_AUTHENTICATE: (0, 2),
    # SCRAM credentials in the metadata log (KIP-554; broker.server.scram_admin); v0 is Kafka's only version
    DESCRIBE_USER_SCRAM_CREDENTIALS: (0, 0),
    ALTER_USER_SCRAM_CREDENTIALS: (0, 0),
    # ACL management (KIP-11, KIP-290; broker.server.acl_admin): v1 is Kafka 4's baseline (KIP-896), v2 the first
    # flexible version (librdkafka 2.x sends it), v3 adds the USER resource type (kafka-python 3 sends it)
    DESCRIBE_ACLS: (1, 3),
    CREATE_ACLS: (1, 3),
    DELETE_ACLS: (1, 3),
}

# Broker-to-broker APIs among the Kafka ones: served only on the inter-broker and controller
# listeners, never advertised to clients (broker.server.listeners). Kafka's own (KIP-500, KIP-590,
# KIP-631) scope each API to listener types the same way; the internal api keys 30000+ of
# broker.controller.rpc are broker-only too. A follower Fetch (replica_id >= 0) is broker-only as well.
BROKER_ONLY_APIS = frozenset({WRITE_TXN_MARKERS})
CLIENT_VERSIONS: dict[int, tuple[int, int]] = {
    key: bounds for key, bounds in SUPPORTED_VERSIONS.items() if key not in BROKER_ONLY_APIS
}


def is_supported(api_key: int, api_version: int) -> bool:
    bounds = SUPPORTED_VERSIONS.get(api_key)
    return bounds is not None and bounds[0] <= api_version <= bounds[1]


@lru_cache(maxsize=None)
def request_class(api_key: int, api_version: int):
    return load_request_schema(api_key, api_version)


@lru_cache(maxsize=None)
def response_class(api_key: int, api_version: int):
    return load_response_schema(api_key, api_version)


def response_module(api_key: int, api_version: int):
    """The kio module of a response's schema version (its entity classes: the response and its parts)."""
    return importlib.import_module(response_class(api_key, api_version).__module__)


def build_entity(module, class_name: str, **values):
    """Instantiate a kio entity of `module`'s version, passing only the fields that version has."""
    cls = getattr(module, class_name)
    names = cls.__dataclass_fields__
    return cls(**{k: v for k, v in values.items() if k in names})


@lru_cache(maxsize=None)
def is_flexible(api_key: int, api_version: int) -> bool:
    """Whether the request (and so its header) uses KIP-482 flexible encoding."""
    return bool(request_class(api_key, api_version).__flexible__)


def response_header_flexible(api_key: int, api_version: int) -> bool:
    # KIP-511: ApiVersions answers with header v0 whatever its version, so that
    # a client that sent an unsupported version can still read the answer.
    if api_key == API_VERSIONS:
        return False
    return is_flexible(api_key, api_version)


@lru_cache(maxsize=None)
def _reader(cls):
    return entity_reader(cls)


@lru_cache(maxsize=None)
def _writer(cls):
    return entity_writer(cls)


def decode_request(api_key: int, api_version: int, buf, offset: int):
    """Decode the request body at `offset`.

    Bytes after the body are ignored, as Kafka's own parser does: librdkafka
    2.x, for one, sends Metadata v12 requests with three bytes past the end of
    the schema (listing all topics through its AdminClient).
    """
    if api_key == PRODUCE:
        # the hot path: records come out as slices of `buf`, not copies (see broker.protocol.produce)
        return decode_produce_request(buf, offset, api_version)
    cls = request_class(api_key, api_version)
    # kio's native reader trusts array lengths (a huge one aborts the process), so
    # every length is checked against the bytes actually present first.
    check_body(cls, buf, offset)
    try:
        entity, size = _reader(cls)(buf, offset)
    except MalformedRequestError:
        raise
    except Exception as exc:  # kio raises assorted errors (ValueError, UnicodeDecodeError, its own) on bad bytes
        raise MalformedRequestError(
            f"cannot decode {API_NAMES.get(api_key, api_key)} v{api_version} body: {type(exc).__name__}: {exc}"
        ) from None
    return entity


def encode_entity(entity) -> bytes:
    out = io.BytesIO()
    _writer(type(entity))(out, entity)
    return out.getvalue()


def encode_request(entity) -> bytes:
    """Encode a request body (used by tests and tools that speak to the broker)."""
    return encode_entity(entity)


def decode_response(api_key: int, api_version: int, buf, offset: int = 0):
    cls = response_class(api_key, api_version)
    entity, _size = _reader(cls)(buf, offset)
    return entity
