"""Find role targets (partition leaders, the active controller) through the Kafka Metadata API.

Node names map to broker ids by position: node `n<i>` is broker id `i`, which is
how every backend numbers the `{node_id}` placeholder. Works against any
Kafka-compatible broker; returns None when the cluster does not answer in time
(a fault aimed at an unknown leader then hits nobody, and says so).
"""

from __future__ import annotations

import logging

log = logging.getLogger("harness.targets")


class MetadataTargets:
    def __init__(self, bootstrap: str, topic: str | None, nodes: list[str], timeout_s: float = 5.0):
        self.bootstrap = bootstrap
        self.topic = topic
        self.nodes = nodes
        self.timeout_s = timeout_s
        self._admin = None

    def _metadata(self):
        from confluent_kafka.admin import AdminClient

        if self._admin is None:
            self._admin = AdminClient({"bootstrap.servers": self.bootstrap, "socket.timeout.ms": int(self.timeout_s * 1000),
                                       "logger": logging.getLogger("librdkafka")})
        try:
            return self._admin.list_topics(topic=self.topic, timeout=self.timeout_s)
        except Exception as e:  # a cluster under faults may not answer; the caller records "no target"
            log.warning("metadata request failed: %s", e)
            return None

    def _node(self, broker_id: int | None) -> str | None:
        if broker_id is None or broker_id < 1 or broker_id > len(self.nodes):
            return None
        return f"n{broker_id}"

    def leader(self, key=None) -> str | None:
        md = self._metadata()
        if md is None or self.topic not in md.topics:
            return None
        partitions = md.topics[self.topic].partitions
        partition = partitions.get(int(key) if key is not None else 0)
        return self._node(partition.leader) if partition else None

    def controller(self) -> str | None:
        md = self._metadata()
        return self._node(md.controller_id) if md is not None else None

    def primaries(self) -> list[str]:
        md = self._metadata()
        if md is None or self.topic not in md.topics:
            return []
        return sorted({n for p in md.topics[self.topic].partitions.values() if (n := self._node(p.leader))})
