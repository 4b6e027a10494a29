"""`logquake cluster` argument handling and generated node properties (fast; the live smoke test is in test_cluster.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cluster_command import cluster_properties, main


def test_generated_properties_name_every_voter():
    text = cluster_properties(2, 3, "127.0.0.1", 19000, Path("/data"), [("min.insync.replicas", "2")])
    assert text.splitlines() == [
        "node.id=2",
        "listeners=CLIENT://127.0.0.1:19001,INTERNAL://127.0.0.1:19004",
        "listener.security.protocol.map=CLIENT:PLAINTEXT,INTERNAL:PLAINTEXT",
        "inter.broker.listener.name=INTERNAL",
        "controller.listener.names=INTERNAL",
        "log.dirs=/data/node-2/logs",
        "controller.quorum.voters=1@127.0.0.1:19003,2@127.0.0.1:19004,3@127.0.0.1:19005",
        "default.replication.factor=3",
        "min.insync.replicas=2",
    ]
    assert "default.replication.factor=1" in cluster_properties(1, 1, "127.0.0.1", 19000, Path("/d"), [])


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["up", "--nodes", "0"], "'0' is out of range; expected 1 to 15 nodes"),
        (["up", "--nodes", "three"], "'three' is not a whole number"),
        (["up", "--base-port", "70000"], "'70000' is out of range"),
        (["up", "--base-port", "65520", "--nodes", "9"], "needs ports up to 65537"),
        (["up", "--override", "novalue"], "'novalue' is not of the form key=value"),
        (["status"], "--bootstrap"),
        (["down"], "invalid choice: 'down'"),
    ],
)
def test_bad_arguments_exit_254_naming_the_value(argv, fragment, capsys):
    with pytest.raises(SystemExit) as raised:
        main(argv)
    assert raised.value.code == 254
    assert fragment in capsys.readouterr().err


def test_status_of_an_unreachable_cluster_fails_with_the_address(capsys):
    assert main(["status", "--bootstrap", "127.0.0.1:1", "--timeout", "1"]) == 1
    assert "--bootstrap '127.0.0.1:1'" in capsys.readouterr().err
