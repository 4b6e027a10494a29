"""Fuzzing the SASL and TLS handshakes of a running broker: it refuses or closes, never crashes or hangs,
and the next well-behaved client authenticates and is served."""

from __future__ import annotations

import contextlib
import ssl
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.tls import make_tls_files

from . import kafka_requests as req
from .conftest import BrokerProcess
from .raw_client import RawClient, encode_request_frame
from .test_fuzz import _frame, _send_and_drain

PASSWORD = "fuzz-secret-9"


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    directory = tmp_path_factory.mktemp("fuzz-security")
    tls = make_tls_files(str(directory / "tls"))
    users = directory / "users.txt"
    users.write_text(f"alice:{PASSWORD}\n")
    brokers = {}
    for protocol in ("SASL_PLAINTEXT", "SSL"):
        properties = (f"node.id=1\nlisteners={protocol}://127.0.0.1:0\nlog.dirs={directory / protocol / 'logs'}\n"
                      f"logquake.sasl.users.file={users}\nssl.keystore.location={tls.broker_keystore}\n")
        brokers[protocol] = BrokerProcess(directory / protocol, properties=properties).start()
    try:
        yield brokers, tls
    finally:
        for broker in brokers.values():
            broker.kill()
            assert "Traceback" not in broker.stderr_text(), broker.stderr_text()[-3000:]


def _authenticated_call(port: int) -> int:
    """PLAIN over SaslHandshake v1 and SaslAuthenticate, then ApiVersions: its error code."""
    handshake, authenticate = req.module("sasl_handshake", 1), req.module("sasl_authenticate", 2)
    with RawClient(port) as client:
        assert client.call(handshake.SaslHandshakeRequest(mechanism="PLAIN")).error_code == 0
        answer = client.call(authenticate.SaslAuthenticateRequest(auth_bytes=b"\x00alice\x00" + PASSWORD.encode()))
        assert answer.error_code == 0, answer
        return client.call(req.api_versions(3)).error_code


def _scram_first(user: str, nonce: str) -> bytes:
    return f"n,,n={user},r={nonce}".encode()


tokens = st.one_of(
    st.binary(max_size=120),
    st.builds(_scram_first, st.text(max_size=12), st.text(max_size=12)),
    st.builds(lambda a, b, c: b"\x00".join([a, b, c]), st.binary(max_size=8), st.binary(max_size=8), st.binary(max_size=8)),
    st.sampled_from([b"c=biws,r=x,p=", b"c=,r=,p=!!!", b"n,a=alice,n=alice,r=1", b"n,,n=alice,r=1,tokenauth=true"]),
)
mechanisms = st.one_of(st.sampled_from(["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI", ""]), st.text(max_size=20))


def _sasl_conversation(version: int, mechanism: str, steps: list[bytes], then_request: bool) -> bytes:
    """A handshake (v0 or v1), tokens (framed as SaslAuthenticate after v1, bare after v0) and maybe a request."""
    handshake = req.module("sasl_handshake", version).SaslHandshakeRequest(mechanism=mechanism)
    data = encode_request_frame(handshake, 1)
    authenticate = req.module("sasl_authenticate", 1)
    for number, token in enumerate(steps, 2):
        data += encode_request_frame(authenticate.SaslAuthenticateRequest(auth_bytes=token), number) if version else _frame(token)
    if then_request:
        data += encode_request_frame(req.metadata(["x"]), 9)
    return data


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(version=st.integers(0, 1), mechanism=mechanisms, steps=st.lists(tokens, max_size=3), then_request=st.booleans(),
       garbage=st.binary(max_size=40))
def test_sasl_handshakes_never_break_the_broker(secured, version, mechanism, steps, then_request, garbage):
    brokers, _ = secured
    broker = brokers["SASL_PLAINTEXT"]
    _send_and_drain(broker.port, _sasl_conversation(version, mechanism, steps, then_request) + garbage)
    assert broker.alive(), broker.stderr_text()[-3000:]
    assert _authenticated_call(broker.port) == 0


def _client_hello() -> bytes:
    """The first flight of a real TLS client (its ClientHello records)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    connection = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname="localhost")
    with contextlib.suppress(ssl.SSLWantReadError):  # it waits for the server's answer, which never comes
        connection.do_handshake()
    return outgoing.read()


HELLO = _client_hello()


@st.composite
def tls_noise(draw):
    kind = draw(st.sampled_from(["random", "record", "hello-cut", "hello-flip"]))
    if kind == "random":
        return draw(st.binary(max_size=300))
    if kind == "record":  # a TLS record header of any type, version and length, with noise behind it
        return struct.pack(">BHH", draw(st.integers(0, 255)), draw(st.integers(0, 0xFFFF)),
                           draw(st.integers(0, 0xFFFF))) + draw(st.binary(max_size=200))
    hello = bytearray(HELLO)
    if kind == "hello-cut":
        return bytes(hello[:draw(st.integers(0, len(hello) - 1))])
    for _ in range(draw(st.integers(1, 6))):
        hello[draw(st.integers(0, len(hello) - 1))] ^= draw(st.integers(1, 255))
    return bytes(hello)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(noise=tls_noise())
def test_tls_handshakes_never_break_the_broker(secured, noise):
    brokers, tls = secured
    broker = brokers["SSL"]
    _send_and_drain(broker.port, noise)
    assert broker.alive(), broker.stderr_text()[-3000:]
    with RawClient(broker.port, ssl_context=ssl.create_default_context(cafile=tls.ca)) as client:
        assert client.call(req.api_versions(3)).error_code == 0
