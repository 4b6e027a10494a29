"""Find role targets (partition leaders, the active controller) through the Kafka protocol.

Leaders come from a Metadata request; the active controller from DescribeQuorum
where the brokers serve it (`harness.quorum`: KRaft Kafka's Metadata and
DescribeCluster name a random broker as the controller), else from DescribeCluster
(KIP-700; Metadata's controller id where the broker does not serve it). Broker ids
map to node names through the ids the backend gave each node (`node_ids`: node ->
broker id; the system description's `node_id`/`node_ids`, by default the node
number), so this works against any Kafka-compatible broker whose ids are
described. Returns None when the cluster does not answer in time (a fault aimed
at an unknown leader then hits nobody, and the history says so); a broker id that
no node has raises UnknownBrokerId, which the runner records with the fault, so a
description with wrong ids is never silently aimed at nobody.

Thread-safety: one instance per nemesis thread.
"""

from __future__ import annotations

import logging

from workloads.client_security import confluent_settings

log = logging.getLogger("harness.targets")


class UnknownBrokerId(ValueError):
    """The cluster named a broker id that no node of the description has."""


class MetadataTargets:
    def __init__(self, bootstrap: str, topic: str | None, nodes: list[str], timeout_s: float = 5.0,
                 node_ids: dict[str, int] | None = None):
        self.bootstrap = bootstrap
        self.topic = topic
        self.nodes = nodes
        self.timeout_s = timeout_s
        ids = node_ids or {node: i for i, node in enumerate(nodes, 1)}
        self.node_of_id = {broker_id: node for node, broker_id in ids.items()}
        self._admin = None
        self._quorum_served: bool | None = None  # whether the brokers serve DescribeQuorum (None: not asked yet)

    def _client(self):
        from confluent_kafka.admin import AdminClient

        if self._admin is None:
            self._admin = AdminClient(confluent_settings({
                "bootstrap.servers": self.bootstrap, "socket.timeout.ms": int(self.timeout_s * 1000),
                "logger": logging.getLogger("librdkafka")}))
        return self._admin

    def _metadata(self):
        try:
            return self._client().list_topics(topic=self.topic, timeout=self.timeout_s)
        except Exception as e:  # a cluster under faults may not answer; the caller records "no target"
            log.warning("metadata request failed: %s", e)
            return None

    def _node(self, broker_id: int | None, role: str) -> str | None:
        if broker_id is None or broker_id < 0:
            return None  # no leader or controller right now
        node = self.node_of_id.get(broker_id)
        if node is None:
            raise UnknownBrokerId(f"the cluster names broker id {broker_id} as the {role}, but no node has that id "
                                  f"(the nodes' ids: {', '.join(f'{n}={i}' for i, n in sorted(self.node_of_id.items()))}); "
                                  "check node_id or node_ids in the --system description")
        return node

    def leader(self, key=None) -> str | None:
        md = self._metadata()
        if md is None or self.topic not in md.topics:
            return None
        number = int(key) if key is not None else 0
        partition = md.topics[self.topic].partitions.get(number)
        return self._node(partition.leader, f"leader of {self.topic}/{number}") if partition else None

    def successor(self, key=None) -> str | None:
        """The node the controller elects if the leader of the partition for `key` (default: the first) dies: the
        first replica, in replica order, that is in the ISR and is not the leader (Kafka's election rule, and
        ours: broker.controller.controller.choose_leader). None when the metadata names none."""
        md = self._metadata()
        if md is None or self.topic not in md.topics:
            return None
        number = int(key) if key is not None else 0
        partition = md.topics[self.topic].partitions.get(number)
        if partition is None:
            return None
        isr = set(partition.isrs)
        nxt = next((r for r in partition.replicas if r in isr and r != partition.leader), None)
        return self._node(nxt, f"next leader of {self.topic}/{number}")

    def _quorum_leader(self) -> int | None:
        """The KRaft quorum's leader from DescribeQuorum, asked of each bootstrap address in turn; None when the
        brokers do not serve it (remembered) or none answers now. QuorumError when it is served and answers an error."""
        from harness.quorum import quorum_leader

        if self._quorum_served is False:
            return None
        for address in self.bootstrap.split(","):
            host, _, port = address.rpartition(":")
            try:
                leader = quorum_leader(host, int(port), self.timeout_s)
            except OSError as e:  # this node is down or cut off: ask the next
                log.info("DescribeQuorum to %s failed: %s", address, e)
                continue
            self._quorum_served = leader is not None
            return leader
        return None

    def controller(self) -> str | None:
        """The active controller: the KRaft quorum's leader from DescribeQuorum where the brokers serve it (in
        KRaft mode Kafka's brokers answer Metadata and DescribeCluster with a random live broker as the
        controller), else DescribeCluster's controller (Metadata's where DescribeCluster is not served)."""
        leader = self._quorum_leader()
        if leader is not None:
            return self._node(leader, "active controller (DescribeQuorum's leader)")
        if self._quorum_served:
            return None  # served, but no node answered now
        controller_id = None
        try:
            description = self._client().describe_cluster(request_timeout=self.timeout_s).result(self.timeout_s + 1)
            controller_id = description.controller.id if description.controller is not None else -1
        except Exception as e:  # not served, or the cluster does not answer: Metadata next
            log.info("describe_cluster failed (%s); asking Metadata for the controller", e)
            md = self._metadata()
            controller_id = md.controller_id if md is not None else None
        return self._node(controller_id, "active controller")

    def primaries(self) -> list[str]:
        md = self._metadata()
        if md is None or self.topic not in md.topics:
            return []
        return sorted({n for number, p in md.topics[self.topic].partitions.items()
                       if (n := self._node(p.leader, f"leader of {self.topic}/{number}"))})
