"""Cluster-mode configuration: voters, roles, timeouts; the one-node mode is unchanged."""

from __future__ import annotations

import pytest

from broker.server.config import ConfigError, load_config

BASE = "node.id=2\nlisteners=PLAINTEXT://127.0.0.1:9002\n"
VOTERS = "controller.quorum.voters=1@127.0.0.1:9001,2@127.0.0.1:9002,3@[::1]:9003\n"


def test_voters_make_a_combined_node_with_kafka_defaults():
    config = load_config(BASE + VOTERS + "default.replication.factor=3\n", "test", [])
    assert config.cluster_mode
    assert config.controller_quorum_voters == {1: ("127.0.0.1", 9001), 2: ("127.0.0.1", 9002), 3: ("::1", 9003)}
    assert config.process_roles == ("broker", "controller")
    assert (config.broker_session_timeout_ms, config.broker_heartbeat_interval_ms) == (9000, 2000)
    assert config.controller_quorum_election_timeout_ms == 1000
    assert (config.replica_lag_time_max_ms, config.min_insync_replicas, config.unclean_leader_election_enable) == (30000, 1, False)
    assert config.default_replication_factor == 3
    assert config.outbound_address is None
    assert config.entries["process.roles"] == ("broker,controller", "default")


def test_one_node_mode_is_the_default():
    config = load_config("node.id=1\n", "test", [])
    assert not config.cluster_mode and config.controller_quorum_voters is None


def test_overrides_reach_the_cluster_settings():
    config = load_config(BASE + VOTERS, "test", [
        "broker.session.timeout.ms=3000", "broker.heartbeat.interval.ms=500", "min.insync.replicas=2",
        "unclean.leader.election.enable=true", "logquake.outbound.address=127.0.0.2", "controller.listener.names=PLAINTEXT",
        "process.roles=controller,broker",
    ])
    assert (config.broker_session_timeout_ms, config.broker_heartbeat_interval_ms) == (3000, 500)
    assert config.min_insync_replicas == 2 and config.unclean_leader_election_enable
    assert config.outbound_address == "127.0.0.2"


@pytest.mark.parametrize(
    "extra, fragments",
    [
        ("process.roles=broker\n", ["process.roles='broker'", "only combined nodes"]),
        ("process.roles=controller\n", ["process.roles='controller'", "only combined nodes"]),
        ("process.roles=observer\n", ["process.roles='observer'", "expected broker, controller"]),
        ("controller.listener.names=CONTROLLER\n", ["controller.listener.names='CONTROLLER'", "PLAINTEXT"]),
        ("broker.heartbeat.interval.ms=9000\n", ["broker.heartbeat.interval.ms=9000", "below broker.session.timeout.ms=9000"]),
    ],
)
def test_cluster_settings_are_validated(extra, fragments):
    with pytest.raises(ConfigError) as raised:
        load_config(BASE + VOTERS + extra, "test", [])
    for fragment in fragments:
        assert fragment in str(raised.value)


@pytest.mark.parametrize(
    "voters, fragments",
    [
        ("1@127.0.0.1:9001,3@127.0.0.1:9003", ["node.id=2 is not among controller.quorum.voters"]),
        ("1@127.0.0.1", ["voter '1@127.0.0.1' is malformed", "id@host:port"]),
        ("x@127.0.0.1:9001", ["'x' is not an integer"]),
        ("2@127.0.0.1:9002,2@127.0.0.1:9003", ["names voter 2 twice"]),
        ("", ["names no voter"]),
    ],
)
def test_bad_voters_are_named(voters, fragments):
    with pytest.raises(ConfigError) as raised:
        load_config(BASE + f"controller.quorum.voters={voters}\n", "test", [])
    for fragment in fragments:
        assert fragment in str(raised.value)


def test_roles_and_replication_need_voters():
    with pytest.raises(ConfigError, match="process.roles='broker' needs controller.quorum.voters"):
        load_config("node.id=1\nprocess.roles=broker\n", "test", [])
    with pytest.raises(ConfigError, match="default.replication.factor='2'"):
        load_config("node.id=1\ndefault.replication.factor=2\n", "test", [])
