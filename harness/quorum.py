"""The active controller of a KRaft cluster, from DescribeQuorum (KIP-595, KIP-836), spoken on the wire.

Why: in KRaft mode Kafka answers Metadata and DescribeCluster with a random live
broker as the "controller" (KafkaApis in KRaft mode: clients cannot reach the controllers), so a
`controller` fault aimed by those answers would hit a random node and say nothing.
DescribeQuorum (API key 55) names the leader of the `__cluster_metadata` partition,
the active controller; brokers forward it to the controllers (KIP-836). Neither
confluent-kafka nor kafka-python sends it, so this module does, with the socket
module alone: ApiVersions v0 first (is key 55 served, in which versions?), then
DescribeQuorum v0-v2 (flexible versions: request header v2, response header v1).
Message layouts are Kafka's `DescribeQuorumRequest.json` and
`DescribeQuorumResponse.json`; only the fields up to `LeaderId` are read.

`quorum_leader(host, port)` returns the leader's broker id, or None when the broker
does not serve DescribeQuorum (ours does not: the caller then asks DescribeCluster);
QuorumError when it serves it and the answer is an error or cannot be read.

Thread-safety: no shared state.
"""

from __future__ import annotations

import socket
import struct

__all__ = ["DESCRIBE_QUORUM", "QuorumError", "describe_quorum_request", "parse_describe_quorum", "quorum_leader",
           "read_exactly", "served_versions"]

API_VERSIONS = 18
DESCRIBE_QUORUM = 55
METADATA_TOPIC = "__cluster_metadata"
CLIENT_ID = b"logquake-targets"


class QuorumError(RuntimeError):
    """A DescribeQuorum answer that names no leader: an error code, or bytes that do not parse."""


def _uvarint(value: int) -> bytes:
    """Kafka's unsigned varint (the broker has its own encoder; the harness never imports the broker)."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.at = 0

    def take(self, fmt: str):
        size = struct.calcsize(fmt)
        if self.at + size > len(self.data):
            raise QuorumError(f"DescribeQuorum answer cut short at byte {self.at} of {len(self.data)}")
        values = struct.unpack_from(fmt, self.data, self.at)
        self.at += size
        return values[0] if len(values) == 1 else values

    def uvarint(self) -> int:
        shift = value = 0
        while True:
            byte = self.take(">B")
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7

    def compact_string(self) -> str | None:
        length = self.uvarint() - 1
        if length < 0:
            return None
        text = self.data[self.at:self.at + length].decode("utf-8", "replace")
        self.at += length
        return text

    def skip_tags(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()  # tag
            self.at += self.uvarint()  # its size


def _request(api_key: int, version: int, correlation_id: int, body: bytes, flexible: bool) -> bytes:
    header = struct.pack(">hhih", api_key, version, correlation_id, len(CLIENT_ID)) + CLIENT_ID
    if flexible:
        header += _uvarint(0)  # request header v2: no tagged fields
    message = header + body
    return struct.pack(">i", len(message)) + message


def describe_quorum_request(version: int, correlation_id: int = 2) -> bytes:
    """DescribeQuorum for partition 0 of __cluster_metadata (every version is flexible)."""
    topic = METADATA_TOPIC.encode()
    body = (_uvarint(2) + _uvarint(len(topic) + 1) + topic  # one topic
            + _uvarint(2) + struct.pack(">i", 0) + _uvarint(0)  # one partition, its tags
            + _uvarint(0) + _uvarint(0))  # the topic's tags, the request's tags
    return _request(DESCRIBE_QUORUM, version, correlation_id, body, flexible=True)


def parse_describe_quorum(payload: bytes, version: int) -> int:
    """The leader id in a DescribeQuorum response's payload (after the size); QuorumError on an error."""
    r = _Reader(payload)
    r.take(">i")  # correlation id
    r.skip_tags()  # response header v1
    error = r.take(">h")
    if version >= 2:
        r.compact_string()  # ErrorMessage
    if error:
        raise QuorumError(f"DescribeQuorum answered error code {error}")
    if r.uvarint() - 1 < 1:
        raise QuorumError("DescribeQuorum answered no topic")
    r.compact_string()  # TopicName
    if r.uvarint() - 1 < 1:
        raise QuorumError("DescribeQuorum answered no partition")
    r.take(">i")  # PartitionIndex
    partition_error = r.take(">h")
    if version >= 2:
        r.compact_string()  # ErrorMessage
    if partition_error:
        raise QuorumError(f"DescribeQuorum answered error code {partition_error} for {METADATA_TOPIC}-0")
    return r.take(">i")


def _exchange(sock: socket.socket, request: bytes) -> bytes:
    sock.sendall(request)
    size = struct.unpack(">i", read_exactly(sock, 4))[0]
    return read_exactly(sock, size)


def read_exactly(connection: socket.socket, size: int) -> bytes:
    """`size` bytes from the connection; ConnectionError when it closes first."""
    chunks = bytearray()
    while len(chunks) < size:
        chunk = connection.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(chunks)} of {size} bytes")
        chunks += chunk
    return bytes(chunks)


def served_versions(payload: bytes, api_key: int) -> tuple[int, int] | None:
    """(min, max) versions of `api_key` in an ApiVersions v0 response's payload; None when not served."""
    r = _Reader(payload)
    r.take(">i")  # correlation id
    if r.take(">h"):
        raise QuorumError("ApiVersions answered an error")
    for _ in range(r.take(">i")):
        key, low, high = r.take(">hhh")
        if key == api_key:
            return low, high
    return None


def quorum_leader(host: str, port: int, timeout_s: float = 5.0) -> int | None:
    """The broker id of the active controller, or None when the broker does not serve DescribeQuorum.

    On a secured client listener (`workloads.client_security`) the connection speaks TLS where the listener
    does; ApiVersions is answered before SASL authentication, but DescribeQuorum is not, and this module
    does not authenticate: a SASL listener that serves DescribeQuorum gets QuorumError saying so."""
    from workloads.client_security import client_security

    security = client_security()
    with socket.create_connection((host, port), timeout=timeout_s) as raw:
        sock = raw
        if security is not None and security.uses_tls:
            import ssl

            sock = ssl.create_default_context(cafile=security.ca_location).wrap_socket(raw, server_hostname=host)
        sock.settimeout(timeout_s)
        versions = served_versions(_exchange(sock, _request(API_VERSIONS, 0, 1, b"", flexible=False)),
                                   DESCRIBE_QUORUM)
        if versions is None:
            return None
        if security is not None and security.uses_sasl:
            raise QuorumError("the broker serves DescribeQuorum, but this harness does not authenticate its own "
                              "DescribeQuorum connection with SASL yet, so it cannot ask it on a SASL listener")
        low, high = versions
        version = min(high, 2)
        if version < low:
            raise QuorumError(f"the broker serves DescribeQuorum v{low}-v{high}, none of which this harness speaks (v0-v2)")
        return parse_describe_quorum(_exchange(sock, describe_quorum_request(version)), version)
