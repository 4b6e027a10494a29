"""A topic's own log settings apply again after a restart (they used to fall back to the broker's defaults)."""

from broker.io import Runtime
from broker.log.manager import LogManager
from broker.server.node import build_handlers
from broker.server.config import build_config


def _handlers(log_dir):
    config = build_config({"node.id": "1", "listeners": "PLAINTEXT://127.0.0.1:0", "log.dirs": str(log_dir)})
    runtime = Runtime.real()
    storage = LogManager([str(log_dir)], config.log_config, runtime)
    return build_handlers(config, runtime, storage, str(log_dir)), storage


def test_topic_log_configs_survive_a_restart(tmp_path):
    handlers, storage = _handlers(tmp_path)
    handlers.load()
    info = handlers.topics.create("configured", 1, {"segment.bytes": "1048576", "retention.ms": "60000"})
    storage.create(info.name, 0, handlers.topic_admin.topic_log_config(info.configs))
    storage.close(clean=True)

    handlers, storage = _handlers(tmp_path)
    handlers.load()
    reopened = storage.get("configured", 0)
    assert reopened.config.segment_bytes == 1048576
    assert reopened.config.retention_ms == 60000
    storage.close(clean=True)
