"""harness.quorum: DescribeQuorum on the wire, against bytes laid out by hand from Kafka's message specs
(DescribeQuorumRequest.json / DescribeQuorumResponse.json, ApiVersions v0), and a stand-in broker that
serves them over TCP. Not run against an Apache Kafka here: none is installed on this machine."""

import socket
import struct
import threading

import pytest

from harness.quorum import QuorumError, describe_quorum_request, parse_describe_quorum, quorum_leader, served_versions
from harness.targets import MetadataTargets


def _response_v0(leader: int, error: int = 0, partition_error: int = 0, correlation_id: int = 2) -> bytes:
    topic = b"__cluster_metadata"
    return (struct.pack(">i", correlation_id) + b"\x00"  # response header v1: no tags
            + struct.pack(">h", error)
            + b"\x02" + bytes([len(topic) + 1]) + topic  # one topic
            + b"\x02" + struct.pack(">ihii", 0, partition_error, leader, 7)  # one partition: index, error, leader, epoch
            + struct.pack(">q", 100) + b"\x01\x01\x01" + b"\x00" + b"\x00" + b"\x00")


def _response_v2(leader: int) -> bytes:
    topic = b"__cluster_metadata"
    return (struct.pack(">i", 2) + b"\x00" + struct.pack(">h", 0) + b"\x00"  # error code, null error message
            + b"\x02" + bytes([len(topic) + 1]) + topic
            + b"\x02" + struct.pack(">ih", 0, 0) + b"\x00" + struct.pack(">ii", leader, 7))


def test_the_request_is_laid_out_as_kafkas_spec_says():
    request = describe_quorum_request(1, correlation_id=9)
    size, api_key, version, correlation_id, client_id_length = struct.unpack_from(">ihhih", request)
    assert (size, api_key, version, correlation_id) == (len(request) - 4, 55, 1, 9)
    body = request[4 + 10 + client_id_length:]
    assert body == b"\x00" + b"\x02" + b"\x13__cluster_metadata" + b"\x02" + b"\x00\x00\x00\x00" + b"\x00\x00\x00"


def test_the_leader_is_read_from_each_version_and_errors_are_said():
    assert parse_describe_quorum(_response_v0(102), 0) == 102
    assert parse_describe_quorum(_response_v0(3), 1) == 3
    assert parse_describe_quorum(_response_v2(5), 2) == 5
    with pytest.raises(QuorumError, match="error code 41"):
        parse_describe_quorum(_response_v0(1, error=41), 0)
    with pytest.raises(QuorumError, match="error code 6 for __cluster_metadata-0"):
        parse_describe_quorum(_response_v0(1, partition_error=6), 0)
    with pytest.raises(QuorumError, match="cut short"):
        parse_describe_quorum(_response_v0(1)[:20], 0)


def test_api_versions_say_whether_describe_quorum_is_served():
    payload = struct.pack(">ihi", 1, 0, 2) + struct.pack(">hhh", 18, 0, 3) + struct.pack(">hhh", 55, 0, 1)
    assert served_versions(payload, 55) == (0, 1) and served_versions(payload, 60) is None


class _StandIn:
    """A TCP server answering ApiVersions v0 (with or without key 55) and DescribeQuorum v1."""

    def __init__(self, serves_quorum: bool, leader: int):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.serves_quorum, self.leader = serves_quorum, leader
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def address(self) -> str:
        return "127.0.0.1:%d" % self.server.getsockname()[1]

    def _serve(self):
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                while size := conn.recv(4):
                    request = conn.recv(struct.unpack(">i", size)[0])
                    api_key, version, correlation_id = struct.unpack_from(">hhi", request)
                    if api_key == 18:
                        keys = [(18, 0, 3)] + ([(55, 0, 1)] if self.serves_quorum else [])
                        payload = struct.pack(">ihi", correlation_id, 0, len(keys)) + b"".join(
                            struct.pack(">hhh", *k) for k in keys)
                    else:
                        assert (api_key, version) == (55, 1)
                        payload = _response_v0(self.leader, correlation_id=correlation_id)
                    conn.sendall(struct.pack(">i", len(payload)) + payload)

    def close(self):
        self.server.close()


def test_the_controller_is_the_quorum_leader_where_describe_quorum_is_served():
    kraft = _StandIn(serves_quorum=True, leader=102)
    ours = _StandIn(serves_quorum=False, leader=0)
    try:
        host, port = kraft.address.split(":")
        assert quorum_leader(host, int(port)) == 102
        host, port = ours.address.split(":")
        assert quorum_leader(host, int(port)) is None  # not served: the caller asks DescribeCluster
        targets = MetadataTargets("127.0.0.1:1," + kraft.address, None, ["n1", "n2", "n3"],
                                  node_ids={"n1": 101, "n2": 102, "n3": 103})
        assert targets.controller() == "n2"  # the first address refuses; the second answers
    finally:
        kraft.close()
        ours.close()
