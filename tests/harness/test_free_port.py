"""harness.backends.local.free_port: the ports of one cluster are chosen before any node binds them, so a
port already chosen for the run (`taken`) is never chosen again (two listeners of one run once drew the same
port and the node failed with "address already in use")."""

from __future__ import annotations

import socket

from harness.backends import local


class _Draws:
    """A stand-in for random.SystemRandom whose randrange returns the given ports in turn."""

    def __init__(self, ports):
        self.ports = list(ports)

    def randrange(self, low, high):
        port = self.ports.pop(0)
        assert low <= port < high
        return port


def _two_free_ports() -> list[int]:
    low, _ = local._ephemeral_range()
    ports = []
    for port in range(low - 500, low):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
        if len(ports) == 2:
            return ports
    raise AssertionError("no two free ports below the ephemeral range")


def test_a_port_already_taken_for_the_run_is_drawn_again_not_returned(monkeypatch):
    first, second = _two_free_ports()
    monkeypatch.setattr(local.random, "SystemRandom", lambda: _Draws([first, first, second]))
    taken: set[int] = set()
    assert local.free_port("127.0.0.1", taken) == first
    assert local.free_port("127.0.0.1", taken) == second  # `first` drawn again, skipped
    assert taken == {first, second}


def test_without_taken_the_same_free_port_may_come_back(monkeypatch):
    first, _ = _two_free_ports()
    monkeypatch.setattr(local.random, "SystemRandom", lambda: _Draws([first, first]))
    assert local.free_port("127.0.0.1") == first
    assert local.free_port("127.0.0.1") == first
