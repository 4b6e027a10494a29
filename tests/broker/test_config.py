"""Broker configuration: Kafka names and defaults, and bad input refused with exit 2 and a message naming it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from broker.server.config import ConfigError, LONG_MAX, build_config, load_config, parse_properties

from .conftest import ROOT


def test_defaults_are_kafkas():
    config = build_config({"node.id": "3"})
    assert config.node_id == 3
    # the one deliberate difference: the loopback address, where Kafka's PLAINTEXT://:9092 binds every interface
    assert [str(l) for l in config.listeners] == ["PLAINTEXT://127.0.0.1:9092"]
    assert config.advertised_listeners == config.listeners
    assert config.log_dirs == ("/tmp/kafka-logs",)
    assert config.num_partitions == 1
    assert config.default_replication_factor == 1
    assert config.auto_create_topics_enable is True
    assert config.message_max_bytes == 1048588
    assert config.socket_request_max_bytes == 104857600
    assert config.log_config.segment_bytes == 1 << 30
    assert config.log_config.roll_ms == 168 * 3_600_000
    assert config.log_config.retention_ms == 168 * 3_600_000
    assert config.log_config.retention_bytes == -1
    assert config.log_config.flush_interval_messages is None
    assert config.log_config.flush_interval_ms is None
    assert config.effective()["num.partitions"] == ("1", "default")


def test_properties_file_and_overrides():
    text = "# comment\nnode.id = 7\nlisteners=PLAINTEXT://127.0.0.1:9192\nlog.dir: /a\n! other comment\nlog.retention.minutes=5\nlog.roll.hours=2\n"
    config = load_config(text, "server.properties", ["log.dirs=/b,/c", "log.flush.interval.messages=1", "num.partitions=6"])
    assert config.node_id == 7
    assert config.listeners[0].host == "127.0.0.1" and config.listeners[0].port == 9192
    assert config.log_dirs == ("/b", "/c")
    assert config.log_config.retention_ms == 5 * 60_000
    assert config.log_config.roll_ms == 2 * 3_600_000
    assert config.log_config.flush_interval_messages == 1
    assert config.num_partitions == 6
    assert config.effective()["num.partitions"] == ("6", "static")


def test_ms_wins_over_hours_and_minutes():
    config = build_config({"node.id": "1", "log.retention.ms": "1000", "log.retention.hours": "1", "log.roll.ms": "50"})
    assert config.log_config.retention_ms == 1000
    assert config.log_config.roll_ms == 50
    assert build_config({"node.id": "1", "log.retention.ms": "-1"}).log_config.retention_ms == -1
    assert build_config({"node.id": "1", "log.flush.interval.messages": str(LONG_MAX)}).log_config.flush_interval_messages is None


@pytest.mark.parametrize(
    "raw, expected_fragments",
    [
        ({"node.id": "1", "log.segmnt.bytes": "5"}, ["log.segmnt.bytes", "'5'", "did you mean log.segment.bytes?"]),
        ({"node.id": "1", "completely.different": "5"}, ["completely.different", "accepted properties"]),
        ({"node.id": "1", "num.partitions": "six"}, ["num.partitions", "'six'", "integer"]),
        ({"node.id": "1", "num.partitions": "0"}, ["num.partitions", "'0'", ">= 1"]),
        ({"node.id": "1", "auto.create.topics.enable": "yes"}, ["auto.create.topics.enable", "'yes'", "true or false"]),
        ({"node.id": "1", "listeners": "127.0.0.1:9092"}, ["listeners", "NAME://host:port"]),
        ({"node.id": "1", "listeners": "SSL://127.0.0.1:9092"}, ["listener SSL uses SSL", "ssl.keystore.location"]),
        ({"node.id": "1", "listeners": "SASL_PLAINTEXT://127.0.0.1:9092"}, ["listener SASL_PLAINTEXT", "logquake.sasl.users.file is not set"]),
        ({"node.id": "1", "listeners": "SSL://127.0.0.1:9092", "ssl.keystore.location": "/k.pem",
          "controller.quorum.voters": "1@127.0.0.1:9092"}, ["ssl.truststore.location is missing", "inter-broker listener SSL uses SSL"]),
        ({"node.id": "1", "ssl.client.auth": "sometimes"}, ["ssl.client.auth", "none, requested or required"]),
        ({"node.id": "1", "default.replication.factor": "3"}, ["default.replication.factor", "'3'", "replication is not implemented yet"]),
        ({"node.id": "1", "logquake.debug.nonsense": "1"}, ["logquake.debug.nonsense", "logquake.debug.log.requests"]),
        ({"num.partitions": "1"}, ["node.id", "missing"]),
        ({"node.id": "1", "log.segment.bytes": "10"}, ["log.segment.bytes", "'10'", ">= 14"]),
    ],
)
def test_bad_properties_are_named(raw, expected_fragments):
    with pytest.raises(ConfigError) as info:
        build_config(raw)
    for fragment in expected_fragments:
        assert fragment in str(info.value)


def test_malformed_lines_and_overrides():
    with pytest.raises(ConfigError, match="line 2.*not a property"):
        parse_properties("node.id=1\njust words\n", "f.properties")
    with pytest.raises(ConfigError, match="--override 'nokey'"):
        load_config("node.id=1\n", "f", ["nokey"])


def _run_broker(tmp_path, file_text, *overrides):
    path = tmp_path / "server.properties"
    path.write_text(file_text)
    args = [sys.executable, "-m", "broker", "--config", str(path)]
    for override in overrides:
        args += ["--override", override]
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_process_exits_2_naming_an_unknown_property(tmp_path):
    proc = _run_broker(tmp_path, f"node.id=1\nlog.dirs={tmp_path}/logs\nlog.retention.hourz=3\n")
    assert proc.returncode == 2
    assert "log.retention.hourz" in proc.stderr and "'3'" in proc.stderr


def test_process_exits_2_naming_a_malformed_override(tmp_path):
    proc = _run_broker(tmp_path, f"node.id=1\nlog.dirs={tmp_path}/logs\n", "message.max.bytes=big")
    assert proc.returncode == 2
    assert "message.max.bytes" in proc.stderr and "'big'" in proc.stderr


def test_process_exits_2_on_a_missing_config_file(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "broker", "--config", str(tmp_path / "absent.properties")],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "absent.properties" in proc.stderr


def test_check_properties_names_the_closest_property_and_types_values():
    from broker.server.config import ConfigError, check_properties

    check_properties({"log.flush.interval.messages": "3", "logquake.debug.skip.dedup": "true"})
    with pytest.raises(ConfigError, match=r"did you mean log\.segment\.bytes\?"):
        check_properties({"log.segmnet.bytes": "100"})
    with pytest.raises(ConfigError, match="is not an integer"):
        check_properties({"log.segment.bytes": "big"})
