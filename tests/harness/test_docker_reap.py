"""`reap_stale_runs` around the Docker engine's answers (a stand-in client: the engine itself is exercised by
tests/harness/test_docker_backend.py and the heal tests)."""

from __future__ import annotations

import socket

from docker.errors import APIError, NotFound

from harness.backends.docker import LABEL_OWNER, reap_stale_runs


class _Container:
    def __init__(self, name: str, remove_error: Exception | None = None, reloads_until_gone: int = 0):
        self.name = name
        self.labels = {LABEL_OWNER: f"{socket.gethostname()}:999999999"}  # no such process: a dead harness
        self.remove_error = remove_error
        self.reloads_left = reloads_until_gone
        self.reloads = 0

    def remove(self, force: bool, v: bool) -> None:
        if self.remove_error is not None:
            raise self.remove_error

    def reload(self) -> None:
        self.reloads += 1
        if self.reloads > self.reloads_left:
            raise NotFound("gone")


class _Client:
    def __init__(self, containers):
        self.containers = type("Containers", (), {"list": lambda _self, **_: containers})()
        self.networks = type("Networks", (), {"list": lambda _self, **_: []})()


def test_a_container_another_reaper_is_removing_is_waited_for_and_not_claimed():
    """A `logquake test` starting beside a heal reaps the same leftovers: the engine answers the second remover
    "removal ... already in progress". The heal waits until the container is gone and does not list it."""
    busy = _Container("logquake-1-abc-n1", APIError("removal of container abc is already in progress"),
                      reloads_until_gone=2)
    plain = _Container("logquake-1-abc-n2")
    assert reap_stale_runs(_Client([busy, plain])) == ["container logquake-1-abc-n2"]
    assert busy.reloads == 3  # asked until the engine no longer knew it


def test_another_engine_error_is_logged_and_not_claimed(caplog):
    broken = _Container("logquake-1-abc-n3", APIError("device or resource busy"))
    assert reap_stale_runs(_Client([broken])) == []
    assert broken.reloads == 0
    assert "could not remove leftover container logquake-1-abc-n3" in caplog.text
