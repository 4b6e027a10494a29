"""Broker configuration: a Java-properties file plus `--override key=value`.

Property names, types and defaults are Kafka's (the `KafkaConfig` table of the
Apache Kafka documentation, "Broker Configs"); only the properties this broker
acts on are accepted, so a typo never goes unnoticed. The `logquake.debug.*`
namespace is reserved for this broker's own debugging switches; an unknown name
in it is refused like any other unknown property.

Cluster mode: setting `controller.quorum.voters` (`id@host:port,...`) makes
the node a combined broker and controller (`process.roles=broker,controller`,
the only roles implemented; `broker` or `controller` alone is refused with a
message saying so). Deviation from Kafka: controllers do not get a listener
of their own; `controller.listener.names` may name only the inter-broker
listener, and the voter addresses are the nodes' inter-broker listeners. With
one listener, one port per node carries client, replication and controller
traffic, and clients can reach the internal APIs (the node warns); every
backend of the harness and `logquake cluster up` give clients a listener of
their own. Without voters the node is the one-node cluster of the foundation,
unchanged.

Listeners (Kafka's `listeners`, `advertised.listeners`,
`listener.security.protocol.map`, `inter.broker.listener.name`): a listener
has a name (e.g. INTERNAL, EXTERNAL) that the protocol map maps to a security
protocol: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL, the inter-broker listener
included. Its protocol is also what the node speaks to its peers: SSL needs
`ssl.truststore.location` (the CA the peers' certificates chain to;
`ssl.endpoint.identification.algorithm`, `https` or empty, checks their names),
SASL needs `sasl.mechanism.inter.broker.protocol` (PLAIN, SCRAM-SHA-256 or
SCRAM-SHA-512; Kafka's default GSSAPI is refused), enabled in
`sasl.enabled.mechanisms`, and the node's own credentials in
`listener.name.<listener>.<mechanism>.sasl.jaas.config` (both lowercased,
broker.server.jaas; the only listener-prefixed property accepted, refused for
any other listener or mechanism since nothing would read it, and not listed by
DescribeConfigs). A cluster node may have two
listeners, as in a Docker network: the inter-broker one, whose advertised
address must be this node's controller.quorum.voters entry, and one for
clients. Deviations from Kafka, from registering one endpoint per broker
(broker.server.cluster): at most two listeners, and the second needs cluster
mode; see broker.server.cluster for how each is answered. The client listener
serves client APIs only; the inter-broker listener, which is also the
controllers' (`controller.listener.names` may name only it), serves the
broker-internal ones too (broker.server.listeners).

Bind address: `listeners` defaults to PLAINTEXT://127.0.0.1:9092, the
loopback address, where Kafka's default binds every interface: nothing here is
authenticated, so reaching other machines is a deliberate choice (an empty
host or 0.0.0.0 binds every interface, as in Kafka).

Invariants: a `BrokerConfig` is immutable and fully validated; every value has
its Kafka type. `effective()` lists every known property with its value and
source, which is what DescribeConfigs answers for the broker resource.

Thread-safety: immutable after `load_config` returns.
"""

from __future__ import annotations

import difflib
import re

from dataclasses import dataclass, field
from typing import Callable

from broker.log.config import LogConfig
from broker.metadata.acls import parse_super_users
from broker.server.jaas import LOGIN_MODULES, JaasError, JaasLogin, parse_jaas_config

LONG_MAX = (1 << 63) - 1


class ConfigError(ValueError):
    """A property that is unknown, malformed or out of range; the message names it."""


@dataclass(frozen=True, slots=True)
class Listener:
    name: str  # the listener name, e.g. PLAINTEXT
    host: str  # "" binds every interface
    port: int

    def __str__(self) -> str:
        return f"{self.name}://{self.host}:{self.port}"


def _parse_int(name: str, raw: str, minimum: int | None = None, maximum: int = LONG_MAX) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"property {name}={raw!r} is not an integer; expected a whole number") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"property {name}={raw!r} is below the minimum; expected an integer >= {minimum}")
    if value > maximum:
        raise ConfigError(f"property {name}={raw!r} is above the maximum; expected an integer <= {maximum}")
    return value


def _parse_bool(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    raise ConfigError(f"property {name}={raw!r} is not a boolean; expected true or false")


def _parse_listeners(name: str, raw: str) -> tuple[Listener, ...]:
    listeners = []
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        scheme, sep, rest = item.partition("://")
        host, colon, port_text = rest.rpartition(":")
        if not sep or not colon or not scheme:
            raise ConfigError(
                f"property {name}={raw!r}: listener {item!r} is malformed; expected NAME://host:port, "
                "e.g. PLAINTEXT://127.0.0.1:9092"
            )
        port = _parse_int(name, port_text, 0, 65535)
        listener_name = scheme.strip().upper()
        if any(l.name == listener_name for l in listeners):
            raise ConfigError(f"property {name}={raw!r} names listener {listener_name} twice; expected distinct names")
        listeners.append(Listener(listener_name, host.strip("[]"), port))
    if not listeners:
        raise ConfigError(f"property {name}={raw!r} names no listener; expected NAME://host:port")
    return tuple(listeners)


SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")


def _parse_protocol_map(name: str, raw: str) -> dict[str, str]:
    """`NAME:PROTOCOL,...` (Kafka's listener.security.protocol.map)."""
    mapping: dict[str, str] = {}
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        listener_name, colon, protocol = item.partition(":")
        protocol = protocol.strip().upper()
        if not colon or not listener_name.strip() or protocol not in SECURITY_PROTOCOLS:
            raise ConfigError(f"property {name}={raw!r}: entry {item!r} is malformed; expected NAME:PROTOCOL with "
                              f"PROTOCOL one of {', '.join(SECURITY_PROTOCOLS)}, e.g. INTERNAL:PLAINTEXT")
        mapping[listener_name.strip().upper()] = protocol
    return mapping


def _parse_store_type(name: str, raw: str) -> str:
    kind = raw.strip().upper()
    if kind != "PEM":
        raise ConfigError(f"property {name}={raw!r}: only PEM stores are supported (JKS and PKCS12 are Java formats); "
                          "convert the store to one PEM file, e.g. with openssl pkcs12 -nodes")
    return kind


def _parse_mechanisms(name: str, raw: str) -> tuple[str, ...]:
    served = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
    mechanisms = tuple(m.strip().upper() for m in raw.split(",") if m.strip())
    unknown = [m for m in mechanisms if m not in served]
    if unknown or not mechanisms:
        raise ConfigError(f"property {name}={raw!r}: {', '.join(unknown) or 'no mechanism'} is not served; expected "
                          f"some of {', '.join(served)} (GSSAPI and OAUTHBEARER are not implemented)")
    return mechanisms


def _parse_endpoint_identification(name: str, raw: str) -> str:
    value = raw.strip().lower()
    if value not in ("https", ""):
        raise ConfigError(f"property {name}={raw!r} is invalid; expected https (check the peer's host name, Kafka's "
                          "default) or empty (do not)")
    return value


INTER_BROKER_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def _parse_inter_broker_mechanism(name: str, raw: str) -> str:
    # Kafka's default GSSAPI passes here and is refused by build_config only when the inter-broker listener is SASL
    value = raw.strip().upper()
    if value not in (*INTER_BROKER_MECHANISMS, "GSSAPI"):
        raise ConfigError(f"property {name}={raw!r} is not served; expected one of {', '.join(INTER_BROKER_MECHANISMS)}")
    return value


def _parse_client_auth(name: str, raw: str) -> str:
    value = raw.strip().lower()
    if value not in ("none", "requested", "required"):
        raise ConfigError(f"property {name}={raw!r} is invalid; expected none, requested or required")
    return value


def _parse_dirs(name: str, raw: str) -> tuple[str, ...]:
    dirs = tuple(d.strip() for d in raw.split(",") if d.strip())
    if not dirs:
        raise ConfigError(f"property {name}={raw!r} names no directory; expected a comma-separated list of paths")
    return dirs


# name -> parser; a parser turns the raw string into the typed value or raises ConfigError.
def _int(minimum: int | None = None, maximum: int = LONG_MAX) -> Callable[[str, str], int]:
    return lambda name, raw: _parse_int(name, raw, minimum, maximum)


def _replication_factor(name: str, raw: str) -> int:
    # > 1 needs a cluster (controller.quorum.voters); build_config checks that.
    return _parse_int(name, raw, 1, 32767)


PROCESS_ROLES = ("broker", "controller")


def _parse_roles(name: str, raw: str) -> tuple[str, ...]:
    roles = tuple(sorted({r.strip() for r in raw.split(",") if r.strip()}))
    if not roles or any(r not in PROCESS_ROLES for r in roles):
        raise ConfigError(f"property {name}={raw!r} is invalid; expected broker, controller, or broker,controller")
    return roles


def _parse_voters(name: str, raw: str) -> dict[int, tuple[str, int]]:
    """`id@host:port,...` (Kafka's controller.quorum.voters syntax)."""
    voters: dict[int, tuple[str, int]] = {}
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        node, at, address = item.partition("@")
        host, colon, port_text = address.rpartition(":")
        if not at or not colon or not host:
            raise ConfigError(f"property {name}={raw!r}: voter {item!r} is malformed; expected id@host:port, e.g. 1@127.0.0.1:9092")
        node_id = _parse_int(name, node, 0, 2**31 - 1)
        if node_id in voters:
            raise ConfigError(f"property {name}={raw!r} names voter {node_id} twice; expected distinct ids")
        voters[node_id] = (host.strip("[]"), _parse_int(name, port_text, 1, 65535))
    if not voters:
        raise ConfigError(f"property {name}={raw!r} names no voter; expected id@host:port,...")
    return voters


def _parse_text(name: str, raw: str) -> str:
    return raw.strip()


STANDARD_AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"


def _parse_authorizer(name: str, raw: str) -> str:
    value = raw.strip()
    if value not in ("", STANDARD_AUTHORIZER):
        raise ConfigError(f"property {name}={raw!r} is not served; expected {STANDARD_AUTHORIZER} (KRaft's ACL "
                          "authorizer) or empty for no authorizer")
    return value


def _parse_super_users(name: str, raw: str) -> frozenset[str]:
    try:
        return parse_super_users(raw)
    except ValueError as exc:
        raise ConfigError(f"property {name}={raw!r}: {exc}") from None


PROPERTIES: dict[str, tuple[Callable[[str, str], object], str | None, str]] = {
    # name: (parser, Kafka's default as text or None for "no default", what it means)
    "node.id": (_int(0, 2**31 - 1), None, "this node's id (required)"),
    # Kafka's default is PLAINTEXT://:9092 (every interface); without an authorizer this broker lets every
    # client do everything, so it binds the loopback address unless a listener names another (0.0.0.0, or an empty host, binds every interface)
    "listeners": (_parse_listeners, "PLAINTEXT://127.0.0.1:9092", "addresses to listen on"),
    "advertised.listeners": (_parse_listeners, None, "addresses clients are told (default: listeners)"),
    "listener.security.protocol.map": (_parse_protocol_map, "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL",
                                       "security protocol of each listener name"),
    # TLS of SSL listeners (broker.io.tls): PEM files, as KIP-651 allows
    "ssl.keystore.type": (_parse_store_type, "PEM", "format of the keystore: PEM"),
    "ssl.keystore.location": (_parse_text, None, "PEM file with the private key and the certificate chain of SSL listeners"),
    "ssl.key.password": (_parse_text, None, "password of the keystore's private key, if it is encrypted (sensitive)"),
    "ssl.truststore.type": (_parse_store_type, "PEM", "format of the truststore: PEM"),
    "ssl.truststore.location": (_parse_text, None, "PEM file of the CA certificates client certificates must chain to"),
    "ssl.client.auth": (_parse_client_auth, "none", "client certificates on SSL listeners: none, requested or required"),
    "ssl.endpoint.identification.algorithm": (_parse_endpoint_identification, "https", "https: a node checks that its "
                                              "peers' certificates name the host it dialled (SSL inter-broker listener); empty: it does not"),
    # SASL of SASL_PLAINTEXT and SASL_SSL listeners (broker.server.sasl)
    "sasl.enabled.mechanisms": (_parse_mechanisms, "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
                                "SASL mechanisms clients may use: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"),
    "sasl.mechanism.inter.broker.protocol": (_parse_inter_broker_mechanism, "GSSAPI", "the mechanism a node "
                                             "authenticates with to its peers (SASL inter-broker listener); GSSAPI is not implemented"),
    "logquake.sasl.users.file": (_parse_text, None, "file of name:password lines: the users SASL authenticates"),
    "logquake.sasl.scram.iterations": (_int(4096, 2**31 - 1), "4096", "PBKDF2 iterations of the SCRAM credentials"),
    # ACLs (broker.server.acl_admin: CreateAcls, DescribeAcls, DeleteAcls; enforced by broker.server.authorization)
    "authorizer.class.name": (_parse_authorizer, "", f"{STANDARD_AUTHORIZER} enables the ACL APIs; empty: no authorizer"),
    "super.users": (_parse_super_users, None, "principals allowed everything, e.g. User:admin;User:ops"),
    "allow.everyone.if.no.acl.found": (_parse_bool, "false", "allow a request on a resource no ACL covers"),
    "connections.max.reauth.ms": (_int(0, 2**63 - 1), "0", "a SASL session lasts this long before the client must "
                                  "re-authenticate (KIP-368); 0: forever"),
    "inter.broker.listener.name": (_parse_text, None, "the listener brokers replicate over (default: the only listener, or PLAINTEXT)"),
    "log.dirs": (_parse_dirs, None, "partition log directories (default: log.dir)"),
    "log.dir": (_parse_dirs, "/tmp/kafka-logs", "the log directory when log.dirs is unset"),
    "num.partitions": (_int(1, 2**31 - 1), "1", "partitions of an auto-created topic"),
    "default.replication.factor": (_replication_factor, "1", "replication factor of auto-created topics"),
    "auto.create.topics.enable": (_parse_bool, "true", "create a topic on first metadata request"),
    # KIP-578's name (Kafka never shipped it: unbounded there); CreateTopics and auto-creation beyond it get POLICY_VIOLATION
    "max.broker.partitions": (_int(1, 2**31 - 1), "4000", "partition replicas one broker may hold"),
    "log.segment.bytes": (_int(14, 2**31 - 1), "1073741824", "segment size"),
    "log.roll.ms": (_int(1), None, "segment age before a roll (default: log.roll.hours)"),
    "log.roll.hours": (_int(1, 2**31 - 1), "168", "segment age before a roll, in hours"),
    "log.retention.ms": (_int(-1), None, "retention by time; -1 keeps forever"),
    "log.retention.minutes": (_int(-1, 2**31 - 1), None, "retention by time, in minutes"),
    "log.retention.hours": (_int(-1, 2**31 - 1), "168", "retention by time, in hours"),
    "log.retention.bytes": (_int(-1), "-1", "retention by size per partition; -1 no limit"),
    "log.flush.interval.messages": (_int(1), str(LONG_MAX), "messages between fsyncs"),
    "log.flush.interval.ms": (_int(0), None, "milliseconds between fsyncs (default: never by time)"),
    "log.index.interval.bytes": (_int(0, 2**31 - 1), "4096", "bytes between offset index entries"),
    "message.max.bytes": (_int(0, 2**31 - 1), "1048588", "largest record batch accepted"),
    # KIP-937 (INVALID_TIMESTAMP outside [now - before, now + after]); after: Kafka 4's one hour (KIP-1030)
    "log.message.timestamp.before.max.ms": (_int(0), str(LONG_MAX), "how far in the past a produced timestamp may lie"),
    "log.message.timestamp.after.max.ms": (_int(0), "3600000", "how far in the future a produced timestamp may lie"),
    "socket.request.max.bytes": (_int(1, 2**31 - 1), "104857600", "largest request accepted"),
    # connection limits (broker.server.server); Kafka's names, deliberate defaults where Kafka has none
    "connections.max.idle.ms": (_int(1), "600000", "a connection that sends no request for this long is closed"),
    "max.connections": (_int(1, 2**31 - 1), "1000", "open connections on the client listeners (Kafka: unbounded)"),
    "max.connections.per.ip": (_int(1, 2**31 - 1), str(2**31 - 1), "open connections from one address"),
    "queued.max.request.bytes": (_int(-1), "209715200", "request bytes buffered over all connections (-1: no limit)"),
    "logquake.request.read.timeout.ms": (_int(1), "30000", "time from a request's first byte to its last"),
    "logquake.max.open.files": (_int(-1, 2**31 - 1), "-1", "files (segments...) open at once; -1: half of ulimit -n"),
    # cluster mode (KRaft-style controller quorum, combined broker+controller nodes)
    "process.roles": (_parse_roles, None, "broker,controller (default: combined when controller.quorum.voters is set)"),
    "controller.quorum.voters": (_parse_voters, None, "id@host:port,... of the controller quorum (unset: one-node cluster)"),
    "controller.listener.names": (_parse_text, None, "the listener controllers use; may be the PLAINTEXT listener itself"),
    "broker.session.timeout.ms": (_int(1, 2**31 - 1), "9000", "a broker silent this long is fenced"),
    "broker.heartbeat.interval.ms": (_int(1, 2**31 - 1), "2000", "time between broker heartbeats to the controller"),
    "controller.quorum.election.timeout.ms": (_int(10, 2**31 - 1), "1000", "Raft election timeout (minimum)"),
    "controller.quorum.fetch.timeout.ms": (_int(1, 2**31 - 1), "2000", "timeout of one Raft request between controllers"),
    "replica.lag.time.max.ms": (_int(1), "30000", "a follower not caught up for this long leaves the ISR"),
    "replica.fetch.backoff.ms": (_int(0), "1000", "how long a follower waits before fetching again after an error"),
    "min.insync.replicas": (_int(1, 2**31 - 1), "1", "ISR size below which acks=all produce fails"),
    "unclean.leader.election.enable": (_parse_bool, "false", "elect an out-of-sync replica when no ISR member is alive"),
    # consumer groups (broker.coordinator.group)
    "offsets.topic.num.partitions": (_int(1, 2**31 - 1), "50", "partitions of the internal __consumer_offsets topic"),
    "offsets.topic.replication.factor": (_int(1, 2**15 - 1), "3", "replicas of __consumer_offsets (at most the live brokers)"),
    "group.initial.rebalance.delay.ms": (_int(0, 2**31 - 1), "3000", "wait for more members before the first rebalance of an empty group"),
    "group.min.session.timeout.ms": (_int(0, 2**31 - 1), "6000", "smallest session.timeout.ms a member may ask for"),
    "group.max.session.timeout.ms": (_int(0, 2**31 - 1), "1800000", "largest session.timeout.ms a member may ask for"),
    # transactions (broker.coordinator.txn_handlers; KIP-98)
    "transaction.state.log.num.partitions": (_int(1, 2**31 - 1), "50", "partitions of the internal __transaction_state topic"),
    "transaction.state.log.replication.factor": (_int(1, 2**15 - 1), "3", "replicas of __transaction_state (at most the live brokers)"),
    "transaction.max.timeout.ms": (_int(1, 2**31 - 1), "900000", "largest transaction.timeout.ms a producer may ask for"),
    "transaction.abort.timed.out.transaction.cleanup.interval.ms": (_int(1, 2**31 - 1), "10000", "how often transactions past their timeout are aborted"),
    "logquake.outbound.address": (_parse_text, None, "local address every outgoing connection binds to"),
    # logquake's own debugging switches (reserved namespace)
    "logquake.debug.log.requests": (_parse_bool, "false", "log every request at DEBUG level"),
    # planted bugs, for checking that the harness finds them; replication ones: see broker.replication.manager
    "logquake.debug.ack.before.replication": (_parse_bool, "false", "acks=all answers after the local append (bug)"),
    "logquake.debug.read.above.hwm": (_parse_bool, "false", "consumers may read up to the log end offset (bug)"),
    "logquake.debug.skip.truncation": (_parse_bool, "false", "followers never truncate on a leader change (bug)"),
    "logquake.debug.skip.dedup": (_parse_bool, "false", "the leader skips idempotent sequence dedup (bug)"),
    "logquake.debug.read.uncommitted": (_parse_bool, "false", "read_committed fetches see aborted and open transactions (bug)"),
    "logquake.debug.hwm.past.isr": (_parse_bool, "false", "the high watermark follows the fastest ISR follower, not the slowest (bug)"),
    "logquake.debug.fenced.leader.acks": (_parse_bool, "false", "acks=all waiting when leadership is lost is answered OK (bug)"),
    "logquake.debug.stale.epoch.fetch": (_parse_bool, "false", "a Fetch naming an older leader epoch is served, not fenced (bug)"),
    # planted storage bugs (see broker.log.config: they travel in the LogConfig to the log and its segments)
    "logquake.debug.skip.fsync": (_parse_bool, "false", "a flush moves the recovery point without fsyncing the segments (bug)"),
    "logquake.debug.index.off.by.one": (_parse_bool, "false", "an offset index lookup starts one entry too late (bug)"),
    "logquake.debug.keep.torn.tail": (_parse_bool, "false", "log recovery keeps a torn tail in the segment; later batches go after it (bug)"),
    # planted coordinator bugs (see broker.coordinator.txn_coordinator and broker.coordinator.group)
    "logquake.debug.partial.commit.markers": (_parse_bool, "false", "transaction markers that failed are not sent again (bug)"),
    "logquake.debug.commit.before.replication": (_parse_bool, "false", "OffsetCommit answers before its record is replicated (bug)"),
    "logquake.debug.aborted.offsets.visible": (_parse_bool, "false", "an aborted transaction's offsets are committed as if it had committed (bug)"),
    "logquake.debug.unfenced.txn.offsets": (_parse_bool, "false", "TxnOffsetCommit skips the member and generation check, so zombies commit (bug)"),
    "logquake.debug.epoch.bump.unfenced": (_parse_bool, "false", "InitProducerId bumps the epoch of an ongoing transaction without aborting it (bug)"),
    "logquake.debug.abort.marker.lost": (_parse_bool, "false", "a new leader's producer state replays commit markers but skips abort markers (bug)"),
    "logquake.debug.double.assignment": (_parse_bool, "false", "SyncGroup answers a follower with its previous generation's assignment (bug)"),
}
DEBUG_NAMESPACE = "logquake.debug."
# Properties whose values are secrets: DescribeConfigs answers them as sensitive, without the value (as Kafka does).
SENSITIVE_PROPERTIES = frozenset({"ssl.key.password"})


@dataclass(frozen=True)
class BrokerConfig:
    node_id: int
    listeners: tuple[Listener, ...]
    advertised_listeners: tuple[Listener, ...]
    log_dirs: tuple[str, ...]
    num_partitions: int
    default_replication_factor: int
    auto_create_topics_enable: bool
    message_max_bytes: int
    socket_request_max_bytes: int
    log_config: LogConfig
    debug_log_requests: bool
    # every known property: name -> (value as text or None, source: "default" / "static")
    entries: dict[str, tuple[str | None, str]] = field(default_factory=dict)
    # cluster mode; controller_quorum_voters None is the one-node mode of the foundation
    process_roles: tuple[str, ...] = ("broker", "controller")
    controller_quorum_voters: dict[int, tuple[str, int]] | None = None
    broker_session_timeout_ms: int = 9000
    broker_heartbeat_interval_ms: int = 2000
    controller_quorum_election_timeout_ms: int = 1000
    controller_quorum_fetch_timeout_ms: int = 2000
    replica_lag_time_max_ms: int = 30000
    replica_fetch_backoff_ms: int = 1000
    min_insync_replicas: int = 1
    unclean_leader_election_enable: bool = False
    max_broker_partitions: int = 4000
    log_message_timestamp_before_max_ms: int = LONG_MAX
    log_message_timestamp_after_max_ms: int = 3_600_000
    connections_max_idle_ms: int = 600_000
    max_connections: int = 1000
    max_connections_per_ip: int = 2**31 - 1
    queued_max_request_bytes: int = 209_715_200
    request_read_timeout_ms: int = 30_000
    max_open_files: int = -1
    outbound_address: str | None = None
    inter_broker_listener_name: str = "PLAINTEXT"
    # listener name -> security protocol (PLAINTEXT, SSL, SASL_*), from listener.security.protocol.map
    listener_protocols: dict[str, str] = field(default_factory=dict)
    # the node's own credentials on a SASL inter-broker listener (listener.name.<l>.<m>.sasl.jaas.config)
    inter_broker_login: JaasLogin | None = None

    def security_protocol(self, listener_name: str) -> str:
        return self.listener_protocols.get(listener_name, "PLAINTEXT")

    @property
    def cluster_mode(self) -> bool:
        return self.controller_quorum_voters is not None

    def advertised_listener(self, name: str) -> Listener:
        """The advertised address of listener `name` (validated to exist)."""
        return next(l for l in self.advertised_listeners if l.name == name)

    def is_client_listener(self, name: str) -> bool:
        """Whether listener `name` serves clients only: every listener but the inter-broker one, which is also the
        controllers' (broker.server.listeners says which APIs each kind serves)."""
        return name != self.inter_broker_listener_name

    @property
    def client_listener_name(self) -> str:
        """The listener whose advertised addresses brokers register: the one that is not inter-broker, if any."""
        others = [l.name for l in self.listeners if l.name != self.inter_broker_listener_name]
        return others[0] if others else self.inter_broker_listener_name

    def effective(self) -> dict[str, tuple[str | None, str]]:
        return dict(self.entries)

    def value(self, name: str):
        """A property's typed value, parsed by the table entry that validated it at load (None when unset)."""
        if name not in PROPERTIES:
            raise ValueError(f"{name!r} is not a broker property")
        parser, default, _ = PROPERTIES[name]
        raw = self.entries.get(name, (default, "default"))[0]
        return None if raw is None else parser(name, raw)


def debug_switch(config: BrokerConfig, name: str) -> bool:
    """The value of a boolean `logquake.debug.*` property (validated at load, so only true/false remain)."""
    if not name.startswith(DEBUG_NAMESPACE) or name not in PROPERTIES:
        raise ValueError(f"{name!r} is not a logquake.debug.* property")
    value = config.entries.get(name, (None, "default"))[0]
    return value is not None and value.strip().lower() == "true"


def planted_bugs(config: BrokerConfig) -> list[str]:
    """The planted-bug properties (description ending in "(bug)") switched on in `config`, in table order."""
    return [name for name, (_, _, what) in PROPERTIES.items() if what.endswith("(bug)") and debug_switch(config, name)]


def parse_properties(text: str, source: str) -> dict[str, str]:
    """Parse Java-properties text: `key=value` or `key: value`, `#`/`!` comments, `\\` continuations."""
    result: dict[str, str] = {}
    pending = ""
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not pending and (not stripped or stripped[0] in "#!"):
            continue
        if stripped.endswith("\\") and not stripped.endswith("\\\\"):
            pending += stripped[:-1]
            continue
        logical = pending + stripped
        pending = ""
        cut = min((i for i in (logical.find("="), logical.find(":")) if i >= 0), default=-1)
        if cut < 0:
            raise ConfigError(f"{source} line {number}: {logical!r} is not a property; expected key=value")
        key, value = logical[:cut].strip(), logical[cut + 1 :].strip()
        if not key:
            raise ConfigError(f"{source} line {number}: {logical!r} has an empty key; expected key=value")
        result[key] = value
    return result


def parse_override(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--override {text!r} is malformed; expected --override key=value")
    return key.strip(), value.strip()


def _unknown(name: str, value: str) -> ConfigError:
    """The error for a property name the broker does not know, with the closest known names (and its value, unless
    the name suggests a secret)."""
    close = difflib.get_close_matches(name, list(PROPERTIES), n=3, cutoff=0.75)
    if any(word in name.lower() for word in ("password", "jaas", "secret")) or SENSITIVE_PROPERTIES & set(close):
        value = "(not shown)"
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    if name.startswith(DEBUG_NAMESPACE):
        known = sorted(k for k in PROPERTIES if k.startswith(DEBUG_NAMESPACE))
        return ConfigError(f"unknown debug property {name}={value!r}{hint} (the logquake.debug.* namespace accepts: "
                           f"{', '.join(known)})")
    return ConfigError(f"unknown property {name}={value!r}{hint}" if close else
                       f"unknown property {name}={value!r}; accepted properties are: {', '.join(sorted(PROPERTIES))}")


_JAAS_NAME = re.compile(r"listener\.name\.([^.]+)\.([^.]+)\.sasl\.jaas\.config", re.IGNORECASE)


def _jaas_properties(raw: dict[str, str]) -> dict[str, tuple[str, str]]:
    """The `listener.name.<listener>.<mechanism>.sasl.jaas.config` properties: name -> (LISTENER, MECHANISM)."""
    found = {}
    for name in raw:
        match = _JAAS_NAME.fullmatch(name)
        if match is None:
            continue
        listener, mechanism = match.group(1), match.group(2)
        expected = f"listener.name.{listener.lower()}.{mechanism.lower()}.sasl.jaas.config"
        if name != expected:
            raise ConfigError(f"property {name}: Kafka reads listener-prefixed properties with the listener and the "
                              f"mechanism lowercased; expected {expected}")
        if mechanism.upper() not in INTER_BROKER_MECHANISMS:
            raise ConfigError(f"property {name}: {mechanism.upper()} is not a mechanism this broker authenticates "
                              f"with; expected one of {', '.join(m.lower() for m in INTER_BROKER_MECHANISMS)}")
        found[name] = (listener.upper(), mechanism.upper())
    return found


def _jaas_login(name: str, raw: str, mechanism: str) -> JaasLogin:
    try:
        return parse_jaas_config(raw, mechanism)
    except JaasError as exc:  # its message never repeats the value (the password)
        raise ConfigError(f"property {name} is malformed: {exc}") from None


def check_properties(raw: dict[str, str]) -> None:
    """Check names and values of some properties alone (no node.id needed); raise ConfigError naming the first wrong
    one. This is what `python -m broker --check` runs, so that a harness can refuse a typo before a node starts."""
    jaas = _jaas_properties(raw)
    for name, value in raw.items():
        if name in jaas:
            _jaas_login(name, value, jaas[name][1])
        elif name not in PROPERTIES:
            raise _unknown(name, value)
        else:
            PROPERTIES[name][0](name, value)


def build_config(raw: dict[str, str]) -> BrokerConfig:
    """Validate raw properties and derive the typed config; raise ConfigError naming the culprit."""
    jaas = _jaas_properties(raw)
    for name, value in raw.items():
        if name not in PROPERTIES and name not in jaas:
            raise _unknown(name, value)
    typed: dict[str, object] = {}
    entries: dict[str, tuple[str | None, str]] = {}
    for name, (parser, default, _) in PROPERTIES.items():
        if name in raw:
            typed[name] = parser(name, raw[name])
            entries[name] = (raw[name], "static")
        elif default is not None:
            typed[name] = parser(name, default)
            entries[name] = (default, "default")
        else:
            typed[name] = None
            entries[name] = (None, "default")
    if typed["node.id"] is None:
        raise ConfigError("property node.id is missing; expected a non-negative integer, e.g. node.id=1")

    hour_ms = 3_600_000
    roll_ms = typed["log.roll.ms"] if typed["log.roll.ms"] is not None else typed["log.roll.hours"] * hour_ms
    if typed["log.retention.ms"] is not None:
        retention_ms = typed["log.retention.ms"]
    elif typed["log.retention.minutes"] is not None:
        retention_ms = typed["log.retention.minutes"] * 60_000
    else:
        retention_ms = typed["log.retention.hours"] * hour_ms
    if retention_ms < 0:
        retention_ms = -1
    flush_messages = typed["log.flush.interval.messages"]
    try:
        log_config = LogConfig(
            segment_bytes=typed["log.segment.bytes"],
            roll_ms=roll_ms,
            retention_ms=retention_ms,
            retention_bytes=typed["log.retention.bytes"],
            flush_interval_messages=None if flush_messages == LONG_MAX else flush_messages,
            flush_interval_ms=typed["log.flush.interval.ms"],
            index_interval_bytes=typed["log.index.interval.bytes"],
            debug_skip_fsync=typed["logquake.debug.skip.fsync"],
            debug_index_off_by_one=typed["logquake.debug.index.off.by.one"],
            debug_keep_torn_tail=typed["logquake.debug.keep.torn.tail"],
        )
    except ValueError as exc:
        raise ConfigError(f"log settings rejected: {exc}") from None
    entries["log.roll.ms"] = (str(roll_ms), entries["log.roll.ms"][1])
    entries["log.retention.ms"] = (str(retention_ms), entries["log.retention.ms"][1])
    log_dirs = typed["log.dirs"] if typed["log.dirs"] is not None else typed["log.dir"]
    entries["log.dirs"] = (",".join(log_dirs), entries["log.dirs"][1])
    listeners = typed["listeners"]
    advertised = _advertised(listeners, typed["advertised.listeners"], raw.get("advertised.listeners"))
    entries["advertised.listeners"] = (",".join(map(str, advertised)), entries["advertised.listeners"][1])
    inter_broker = _inter_broker_listener(listeners, typed, raw)
    entries["inter.broker.listener.name"] = (inter_broker, entries["inter.broker.listener.name"][1])
    voters = typed["controller.quorum.voters"]
    protocols = {l.name: typed["listener.security.protocol.map"][l.name] for l in listeners}
    if voters is not None and protocols[inter_broker] in ("SSL", "SASL_SSL") and not typed["ssl.truststore.location"]:
        raise ConfigError(f"property ssl.truststore.location is missing: inter-broker listener {inter_broker} uses "
                          f"{protocols[inter_broker]}, and a node checks its peers' certificates against it; expected "
                          "a PEM file of the CA certificates")
    login = _inter_broker_login(raw, jaas, inter_broker, protocols[inter_broker], typed, voters is not None)
    roles = typed["process.roles"] if typed["process.roles"] is not None else PROCESS_ROLES
    entries["process.roles"] = (",".join(roles), entries["process.roles"][1])
    if voters is None:
        if typed["default.replication.factor"] > 1:
            raise ConfigError(
                f"property default.replication.factor={raw['default.replication.factor']!r}: replication is not "
                "implemented yet on a one-node broker; set controller.quorum.voters for a cluster, or use 1"
            )
        if typed["process.roles"] is not None and roles != PROCESS_ROLES:
            raise ConfigError(
                f"property process.roles={raw['process.roles']!r} needs controller.quorum.voters; "
                "a one-node broker is always broker,controller"
            )
        if len(listeners) > 1:
            raise ConfigError(
                f"property listeners={raw['listeners']!r}: several listeners need cluster mode "
                "(controller.quorum.voters); a one-node broker has one listener"
            )
    else:
        if roles != PROCESS_ROLES:
            raise ConfigError(
                f"property process.roles={raw['process.roles']!r} is not supported yet: only combined nodes "
                "(process.roles=broker,controller) are implemented"
            )
        if typed["node.id"] not in voters:
            raise ConfigError(
                f"property node.id={typed['node.id']} is not among controller.quorum.voters "
                f"{raw['controller.quorum.voters']!r}; combined nodes must be voters"
            )
        names = typed["controller.listener.names"]
        if names is not None and any(n.strip().upper() not in {l.name for l in listeners} for n in names.split(",")):
            raise ConfigError(
                f"property controller.listener.names={names!r} names a listener that is not in listeners; "
                f"accepted: {', '.join(sorted({l.name for l in listeners}))} (controllers share the broker's listener)"
            )
        if names is not None and len(listeners) > 1 and {n.strip().upper() for n in names.split(",")} != {inter_broker}:
            raise ConfigError(
                f"property controller.listener.names={names!r} must name the inter-broker listener {inter_broker} "
                "alone: controllers of combined nodes share it, and the other listener serves clients only"
            )
        if len(listeners) > 1 and voters[typed["node.id"]] != _address(advertised, inter_broker):
            host, port = voters[typed["node.id"]]
            raise ConfigError(
                f"property controller.quorum.voters names {host}:{port} for node {typed['node.id']}, but its "
                f"inter-broker listener {inter_broker} advertises {_address(advertised, inter_broker)[0]}:"
                f"{_address(advertised, inter_broker)[1]}; with several listeners a voter's address must be its "
                "inter-broker listener"
            )
    if typed["logquake.max.open.files"] == 0:
        raise ConfigError("property logquake.max.open.files=0 leaves no file open; expected -1 (half of ulimit -n) "
                          "or a number >= 1")
    queued = typed["queued.max.request.bytes"]
    if queued != -1 and queued < typed["socket.request.max.bytes"]:
        raise ConfigError(
            f"property queued.max.request.bytes={queued} is below socket.request.max.bytes="
            f"{typed['socket.request.max.bytes']}: the largest request accepted could never be read; expected -1 or a "
            "value >= socket.request.max.bytes"
        )
    if typed["broker.heartbeat.interval.ms"] >= typed["broker.session.timeout.ms"]:
        raise ConfigError(
            f"property broker.heartbeat.interval.ms={typed['broker.heartbeat.interval.ms']} must be below "
            f"broker.session.timeout.ms={typed['broker.session.timeout.ms']}"
        )
    return BrokerConfig(
        node_id=typed["node.id"],
        listeners=listeners,
        advertised_listeners=advertised,
        log_dirs=log_dirs,
        num_partitions=typed["num.partitions"],
        default_replication_factor=typed["default.replication.factor"],
        auto_create_topics_enable=typed["auto.create.topics.enable"],
        message_max_bytes=typed["message.max.bytes"],
        socket_request_max_bytes=typed["socket.request.max.bytes"],
        log_config=log_config,
        debug_log_requests=typed["logquake.debug.log.requests"],
        entries=entries,
        process_roles=roles,
        controller_quorum_voters=voters,
        broker_session_timeout_ms=typed["broker.session.timeout.ms"],
        broker_heartbeat_interval_ms=typed["broker.heartbeat.interval.ms"],
        controller_quorum_election_timeout_ms=typed["controller.quorum.election.timeout.ms"],
        controller_quorum_fetch_timeout_ms=typed["controller.quorum.fetch.timeout.ms"],
        replica_lag_time_max_ms=typed["replica.lag.time.max.ms"],
        replica_fetch_backoff_ms=typed["replica.fetch.backoff.ms"],
        min_insync_replicas=typed["min.insync.replicas"],
        unclean_leader_election_enable=typed["unclean.leader.election.enable"],
        max_broker_partitions=typed["max.broker.partitions"],
        log_message_timestamp_before_max_ms=typed["log.message.timestamp.before.max.ms"],
        log_message_timestamp_after_max_ms=typed["log.message.timestamp.after.max.ms"],
        connections_max_idle_ms=typed["connections.max.idle.ms"],
        max_connections=typed["max.connections"],
        max_connections_per_ip=typed["max.connections.per.ip"],
        queued_max_request_bytes=typed["queued.max.request.bytes"],
        request_read_timeout_ms=typed["logquake.request.read.timeout.ms"],
        max_open_files=typed["logquake.max.open.files"],
        outbound_address=typed["logquake.outbound.address"] or None,
        inter_broker_listener_name=inter_broker,
        listener_protocols=protocols,
        inter_broker_login=login,
    )


def _inter_broker_login(raw: dict[str, str], jaas: dict[str, tuple[str, str]], inter_broker: str, protocol: str,
                        typed: dict, cluster: bool) -> JaasLogin | None:
    """The node's own credentials for its SASL inter-broker listener (the module docstring), or None."""
    mechanism = typed["sasl.mechanism.inter.broker.protocol"]
    sasl = protocol.startswith("SASL_")
    wanted = f"listener.name.{inter_broker.lower()}.{mechanism.lower()}.sasl.jaas.config"
    if sasl and cluster and mechanism == "GSSAPI":
        raw_value = raw.get("sasl.mechanism.inter.broker.protocol")
        raise ConfigError(f"property sasl.mechanism.inter.broker.protocol={raw_value or 'GSSAPI'!r}"
                          f"{'' if raw_value else ' (Kafka default)'}: GSSAPI (Kerberos) is not implemented; inter-broker "
                          f"listener {inter_broker} uses {protocol}, so set it to one of {', '.join(INTER_BROKER_MECHANISMS)}")
    for name in jaas:
        if not sasl or name != wanted:
            reads = (f"only {wanted} is, the node's own credentials" if sasl else
                     f"none is, since inter-broker listener {inter_broker} uses {protocol}")
            raise ConfigError(f"property {name} would not be read: of the sasl.jaas.config properties {reads} (the "
                              "users SASL authenticates come from logquake.sasl.users.file)")
    if not sasl:
        return None
    if cluster and mechanism not in typed["sasl.enabled.mechanisms"]:
        raise ConfigError(f"property sasl.mechanism.inter.broker.protocol={mechanism} is not in sasl.enabled.mechanisms="
                          f"{','.join(typed['sasl.enabled.mechanisms'])}: the peers would refuse it (Kafka's rule)")
    if wanted not in raw:
        if not cluster:
            return None  # one node: no peer to authenticate to
        module = LOGIN_MODULES[mechanism]
        raise ConfigError(f"property {wanted} is missing: inter-broker listener {inter_broker} uses {protocol} with "
                          f"{mechanism}; expected the node's own credentials, e.g. {wanted}={module} required "
                          'username="broker" password="...";')
    return _jaas_login(wanted, raw[wanted], mechanism)


def _advertised(listeners: tuple[Listener, ...], given: tuple[Listener, ...] | None, raw: str | None) -> tuple[Listener, ...]:
    """Each listener's advertised address: the advertised.listeners entry of the same name, else its own."""
    given = given or ()
    names = {l.name for l in listeners}
    unknown = [l.name for l in given if l.name not in names]
    if unknown:
        raise ConfigError(f"property advertised.listeners={raw!r} names {', '.join(unknown)}, which is not in "
                          f"listeners; accepted names: {', '.join(sorted(names))}")
    by_name = {l.name: l for l in given}
    return tuple(by_name.get(l.name, l) for l in listeners)


def _inter_broker_listener(listeners: tuple[Listener, ...], typed: dict, raw: dict[str, str]) -> str:
    protocols = typed["listener.security.protocol.map"]
    for listener in listeners:
        protocol = protocols.get(listener.name)
        if protocol is None:
            raise ConfigError(f"property listeners={raw.get('listeners', '')!r}: listener {listener.name} is not in "
                              f"listener.security.protocol.map; add {listener.name}:PLAINTEXT to it")
        if protocol in ("SASL_PLAINTEXT", "SASL_SSL") and not typed["logquake.sasl.users.file"]:
            raise ConfigError(f"listener {listener.name} uses {protocol} but logquake.sasl.users.file is not set; "
                              "expected a file of name:password lines (the users SASL authenticates)")
        if protocol in ("SSL", "SASL_SSL") and not typed["ssl.keystore.location"]:
            raise ConfigError(f"listener {listener.name} uses SSL but ssl.keystore.location is not set; expected a PEM "
                              "file with the broker's private key and certificate chain")
    if len(listeners) > 1 and any(l.port == 0 for l in listeners):
        raise ConfigError(f"property listeners={raw.get('listeners', '')!r}: port 0 (any free port) is accepted "
                          "only with a single listener; give every listener its port")
    if len(listeners) > 2:
        raise ConfigError(f"property listeners={raw.get('listeners', '')!r} names {len(listeners)} listeners; at "
                          "most two are supported: the inter-broker one and one for clients")
    names = [l.name for l in listeners]
    name = typed["inter.broker.listener.name"]
    if name is None:
        if len(names) == 1:
            return names[0]
        if "PLAINTEXT" in names:
            return "PLAINTEXT"
        raise ConfigError(f"property inter.broker.listener.name is missing; with listeners {', '.join(names)} "
                          "it must name the one brokers replicate over")
    name = name.upper()
    if name not in names:
        raise ConfigError(f"property inter.broker.listener.name={raw['inter.broker.listener.name']!r} is not in "
                          f"listeners; accepted: {', '.join(names)}")
    return name


def _address(listeners: tuple[Listener, ...], name: str) -> tuple[str, int]:
    listener = next(l for l in listeners if l.name == name)
    return listener.host, listener.port


def load_config(properties_text: str, source: str, overrides: list[str]) -> BrokerConfig:
    raw = parse_properties(properties_text, source)
    for text in overrides:
        key, value = parse_override(text)
        raw[key] = value
    return build_config(raw)
