"""A minimal blocking Kafka client over a raw socket, for tests that hand-build requests.

It frames kio request entities with a header of the right version and decodes
responses with kio, or sends arbitrary bytes for the malformed-input tests.
"""

from __future__ import annotations

import socket
import struct

from broker.protocol import apis
from broker.protocol.wire import RequestHeader, encode_request_header

_INT32 = struct.Struct(">i")


def encode_request_frame(request, correlation_id: int, client_id: str | None = "raw-client") -> bytes:
    """Frame a kio request entity: size prefix, header v1 or v2 (by the version's flexibility), body."""
    api_key, version = int(request.__api_key__), int(request.__version__)
    header = RequestHeader(api_key, version, correlation_id, client_id, 0)
    body = encode_request_header(header, apis.is_flexible(api_key, version)) + apis.encode_request(request)
    return _INT32.pack(len(body)) + body


class RawClient:
    def __init__(self, port: int, host: str = "127.0.0.1", timeout_s: float = 10.0, ssl_context=None):
        self.sock = socket.create_connection((host, port), timeout=timeout_s)
        if ssl_context is not None:
            self.sock = ssl_context.wrap_socket(self.sock, server_hostname=host)
        self.correlation_id = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "RawClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def send_bytes(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request_bytes(self, request, client_id: str | None = "raw-client") -> bytes:
        self.correlation_id += 1
        return encode_request_frame(request, self.correlation_id, client_id)

    def send(self, request) -> int:
        self.send_bytes(self.request_bytes(request))
        return self.correlation_id

    def receive_frame(self) -> bytes:
        size = _INT32.unpack(self._read_exactly(4))[0]
        return self._read_exactly(size)

    def receive(self, api_key: int, version: int, correlation_id: int | None = None):
        data = self.receive_frame()
        (got_id,) = _INT32.unpack_from(data, 0)
        if correlation_id is not None:
            assert got_id == correlation_id, f"correlation id {got_id}, expected {correlation_id}"
        offset = 4 + (1 if apis.response_header_flexible(api_key, version) else 0)
        return apis.decode_response(api_key, version, data, offset)

    def call(self, request):
        correlation_id = self.send(request)
        return self.receive(int(request.__api_key__), int(request.__version__), correlation_id)

    def is_closed_by_peer(self, timeout_s: float = 5.0) -> bool:
        """True if the broker closed the connection (EOF or reset) within the timeout."""
        self.sock.settimeout(timeout_s)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def _read_exactly(self, size: int) -> bytes:
        chunks = bytearray()
        while len(chunks) < size:
            chunk = self.sock.recv(size - len(chunks))
            if not chunk:
                raise ConnectionError(f"connection closed after {len(chunks)} of {size} bytes")
            chunks += chunk
        return bytes(chunks)
