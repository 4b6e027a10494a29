"""A replica fetcher whose leader is down logs its failures once per streak, not once per retry (ten a second)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

from broker.replication.fetcher import STREAK_LOG_S, ReplicaFetcher


class _Clock:
    def __init__(self):
        self.now_ns = 0

    def monotonic_ns(self) -> int:
        return self.now_ns


def test_a_streak_of_failures_is_logged_when_it_starts_then_every_ten_seconds(caplog):
    clock = _Clock()
    fetcher = ReplicaFetcher(SimpleNamespace(runtime=SimpleNamespace(clock=clock)), pool=None, source_id=2)
    caplog.set_level(logging.INFO, logger="broker.replication")
    for attempt in range(250):  # 25 s of failures, one every 100 ms
        fetcher._failed("connection to 127.0.0.1:9093 lost", 100)
        clock.now_ns += 100_000_000
    lines = [r.getMessage() for r in caplog.records if "fetcher for broker 2" in r.getMessage()]
    assert lines[0] == "fetcher for broker 2: connection to 127.0.0.1:9093 lost; retrying every 100 ms"
    assert len(lines) == 1 + 25 // STREAK_LOG_S, lines
    assert lines[1].startswith("fetcher for broker 2: still failing (101 attempts in 10 s)")
