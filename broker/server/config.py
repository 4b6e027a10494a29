"""Broker configuration: a Java-properties file plus `--override key=value`.

Property names, types and defaults are Kafka's (the `KafkaConfig` table of the
Apache Kafka documentation, "Broker Configs"); only the properties this broker
acts on are accepted, so a typo never goes unnoticed. The `logquake.debug.*`
namespace is reserved for this broker's own debugging switches; an unknown name
in it is refused like any other unknown property.

Invariants: a `BrokerConfig` is immutable and fully validated; every value has
its Kafka type. `effective()` lists every known property with its value and
source, which is what DescribeConfigs answers for the broker resource.

Thread-safety: immutable after `load_config` returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from broker.log.config import LogConfig

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
        if scheme.upper() != "PLAINTEXT":
            raise ConfigError(
                f"property {name}={raw!r}: listener {item!r} uses security protocol {scheme!r}; only PLAINTEXT "
                "is implemented yet (TLS and SASL come later)"
            )
        port = _parse_int(name, port_text, 0, 65535)
        listeners.append(Listener(scheme.upper(), host.strip("[]"), port))
    if not listeners:
        raise ConfigError(f"property {name}={raw!r} names no listener; expected NAME://host:port")
    return tuple(listeners)


def _parse_dirs(name: str, raw: str) -> tuple[str, ...]:
    dirs = tuple(d.strip() for d in raw.split(",") if d.strip())
    if not dirs:
        raise ConfigError(f"property {name}={raw!r} names no directory; expected a comma-separated list of paths")
    return dirs


# name -> parser; a parser turns the raw string into the typed value or raises ConfigError.
def _int(minimum: int | None = None, maximum: int = LONG_MAX) -> Callable[[str, str], int]:
    return lambda name, raw: _parse_int(name, raw, minimum, maximum)


def _replication_factor(name: str, raw: str) -> int:
    value = _parse_int(name, raw, 1, 32767)
    if value > 1:
        raise ConfigError(
            f"property {name}={raw!r}: replication is not implemented yet, so the only accepted value is 1"
        )
    return value


PROPERTIES: dict[str, tuple[Callable[[str, str], object], str | None, str]] = {
    # name: (parser, Kafka's default as text or None for "no default", what it means)
    "node.id": (_int(0, 2**31 - 1), None, "this node's id (required)"),
    "listeners": (_parse_listeners, "PLAINTEXT://:9092", "addresses to listen on"),
    "advertised.listeners": (_parse_listeners, None, "addresses clients are told (default: listeners)"),
    "log.dirs": (_parse_dirs, None, "partition log directories (default: log.dir)"),
    "log.dir": (_parse_dirs, "/tmp/kafka-logs", "the log directory when log.dirs is unset"),
    "num.partitions": (_int(1, 2**31 - 1), "1", "partitions of an auto-created topic"),
    "default.replication.factor": (_replication_factor, "1", "replication factor of auto-created topics"),
    "auto.create.topics.enable": (_parse_bool, "true", "create a topic on first metadata request"),
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
    "socket.request.max.bytes": (_int(1, 2**31 - 1), "104857600", "largest request accepted"),
    # logquake's own debugging switches (reserved namespace)
    "logquake.debug.log.requests": (_parse_bool, "false", "log every request at DEBUG level"),
}
DEBUG_NAMESPACE = "logquake.debug."


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

    def effective(self) -> dict[str, tuple[str | None, str]]:
        return dict(self.entries)


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


def build_config(raw: dict[str, str]) -> BrokerConfig:
    """Validate raw properties and derive the typed config; raise ConfigError naming the culprit."""
    for name, value in raw.items():
        if name not in PROPERTIES:
            if name.startswith(DEBUG_NAMESPACE):
                known = sorted(k for k in PROPERTIES if k.startswith(DEBUG_NAMESPACE))
                raise ConfigError(
                    f"unknown debug property {name}={value!r}; the logquake.debug.* namespace accepts: {', '.join(known)}"
                )
            raise ConfigError(
                f"unknown property {name}={value!r}; accepted properties are: {', '.join(sorted(PROPERTIES))}"
            )
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
        )
    except ValueError as exc:
        raise ConfigError(f"log settings rejected: {exc}") from None
    entries["log.roll.ms"] = (str(roll_ms), entries["log.roll.ms"][1])
    entries["log.retention.ms"] = (str(retention_ms), entries["log.retention.ms"][1])
    log_dirs = typed["log.dirs"] if typed["log.dirs"] is not None else typed["log.dir"]
    entries["log.dirs"] = (",".join(log_dirs), entries["log.dirs"][1])
    listeners = typed["listeners"]
    advertised = typed["advertised.listeners"] if typed["advertised.listeners"] is not None else listeners
    entries["advertised.listeners"] = (",".join(map(str, advertised)), entries["advertised.listeners"][1])
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
    )


def load_config(properties_text: str, source: str, overrides: list[str]) -> BrokerConfig:
    raw = parse_properties(properties_text, source)
    for text in overrides:
        key, value = parse_override(text)
        raw[key] = value
    return build_config(raw)
