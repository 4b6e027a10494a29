"""The fault proxy against real TCP echo servers standing in for nodes."""

import socket
import socketserver
import threading
import time

import pytest

from harness.proxy import CLIENT, FaultProxy


class _Echo(socketserver.BaseRequestHandler):
    def handle(self):
        while True:
            data = self.request.recv(65536)
            if not data:
                return
            self.request.sendall(data)


class _EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture
def proxy():
    servers = {name: _EchoServer(("127.0.0.1", 0), _Echo) for name in ("a", "b", "c")}
    for server in servers.values():
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    upstreams = {name: server.server_address for name, server in servers.items()}
    p = FaultProxy(upstreams, sources={"127.0.0.2": "a", "127.0.0.3": "b", "127.0.0.4": "c"})
    p.start()
    try:
        yield p
    finally:
        p.stop()
        for server in servers.values():
            server.shutdown()
            server.server_close()


def _connect(proxy, src_ip, dst):
    sock = socket.create_connection(("127.0.0.1", proxy.ports[dst]), timeout=5, source_address=(src_ip, 0))
    return sock


def _echo(sock, payload=b"ping", timeout=2.0):
    sock.settimeout(timeout)
    sock.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def test_connections_are_attributed_to_their_source_node(proxy):
    with _connect(proxy, "127.0.0.2", "b") as s1, _connect(proxy, "127.0.0.1", "b") as s2:
        assert _echo(s1) == b"ping"
        assert _echo(s2, b"pong") == b"pong"
    assert proxy.bytes_forwarded[("a", "b")] == 4
    assert proxy.bytes_forwarded[("b", "a")] == 4
    assert proxy.bytes_forwarded[(CLIENT, "b")] == 4


def test_a_cut_link_carries_no_bytes_while_the_others_keep_working(proxy):
    ab = _connect(proxy, "127.0.0.2", "b")
    ac = _connect(proxy, "127.0.0.2", "c")
    cb = _connect(proxy, "127.0.0.4", "b")
    assert _echo(ab) == b"ping"
    proxy.cut("a", "b")
    proxy.cut("b", "a")
    before = proxy.bytes_forwarded[("a", "b")]
    with pytest.raises(socket.timeout):
        _echo(ab, b"held", timeout=0.5)
    assert proxy.bytes_forwarded[("a", "b")] == before
    # a new connection on the cut link does not get through either
    late = _connect(proxy, "127.0.0.2", "b")
    with pytest.raises(socket.timeout):
        _echo(late, b"late", timeout=0.3)
    # other links are untouched
    assert _echo(ac, b"to-c") == b"to-c"
    assert _echo(cb, b"c-to-b") == b"c-to-b"
    proxy.heal()
    # the held bytes arrive after healing, in order, nothing lost
    ab.settimeout(2)
    assert ab.recv(100) == b"held"
    late.settimeout(2)
    assert late.recv(100) == b"late"
    for s in (ab, ac, cb, late):
        s.close()


def test_one_way_cut_stops_only_one_direction(proxy):
    proxy.cut("b", "a")  # b's packets to a are dropped; a's to b still arrive
    s = _connect(proxy, "127.0.0.2", "b")
    time.sleep(0.1)
    s.settimeout(0.5)
    # the connection a -> b is held at connect time because the return path is cut
    with pytest.raises(socket.timeout):
        _echo(s, b"x", timeout=0.5)
    proxy.heal()
    assert s.recv(10) == b"x"
    s.close()


def test_reset_closes_existing_connections(proxy):
    s = _connect(proxy, "127.0.0.2", "b")
    assert _echo(s) == b"ping"
    proxy.cut("a", "b", reset=True)
    s.settimeout(2)
    try:
        data = s.recv(10)
    except ConnectionResetError:
        data = b""
    assert data == b""
    s.close()


def test_latency_is_added_per_direction(proxy):
    proxy.slow(latency_ms=100)
    s = _connect(proxy, "127.0.0.1", "a")
    start = time.monotonic()
    assert _echo(s, b"slow") == b"slow"
    elapsed = time.monotonic() - start
    assert elapsed >= 0.19, elapsed
    proxy.heal()
    start = time.monotonic()
    assert _echo(s, b"fast") == b"fast"
    assert time.monotonic() - start < 0.15
    s.close()


def test_bad_arguments_are_refused_with_a_clear_error(proxy):
    with pytest.raises(ValueError, match="'z' is not a node"):
        proxy.cut("a", "z")
    with pytest.raises(ValueError, match="loss must be a fraction"):
        proxy.slow(loss=1.5)
