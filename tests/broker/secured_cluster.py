"""A 3-node cluster of real broker processes whose CLIENT listener is secured (SASL, optionally over TLS).

Users `admin` and `alice` (passwords `<user>-secret-1`) authenticate with SCRAM-SHA-512; INTERNAL (replication,
the controller quorum) is PLAINTEXT. Used by the ACL and SASL tests that need more than one node.
"""

from __future__ import annotations

from harness.cluster_command import cluster_properties
from harness.tls import make_tls_files

from .conftest import BrokerProcess
from .test_cluster import free_port_block

NODES = 3


class SecuredCluster:
    """Three combined nodes: CLIENT `protocol` (SASL_PLAINTEXT or SASL_SSL, SCRAM-SHA-512), INTERNAL PLAINTEXT,
    and `overrides` (property, value) pairs."""

    def __init__(self, directory, protocol: str = "SASL_PLAINTEXT", overrides=()):
        self.directory = directory
        self.protocol = protocol
        self.base = free_port_block(2 * NODES)
        users = directory / "users.txt"
        directory.mkdir(parents=True, exist_ok=True)
        users.write_text("admin:admin-secret-1\nalice:alice-secret-1\n")
        security = {"listener.security.protocol.map": f"CLIENT:{protocol},INTERNAL:PLAINTEXT",
                    "sasl.enabled.mechanisms": "SCRAM-SHA-512", "logquake.sasl.users.file": str(users)}
        self.tls = None
        if protocol == "SASL_SSL":
            self.tls = make_tls_files(str(directory / "tls"))
            security["ssl.keystore.location"] = self.tls.broker_keystore
        overrides = [("broker.session.timeout.ms", "3000"), ("broker.heartbeat.interval.ms", "500"), *overrides]
        self.nodes = []
        for node_id in range(1, NODES + 1):
            node = BrokerProcess(directory / f"node{node_id}", properties=cluster_properties(
                node_id, NODES, "127.0.0.1", self.base, directory, overrides, security))
            self.nodes.append(node)

    def bootstrap(self, node: int | None = None) -> str:
        ports = [self.base + i for i in range(NODES)] if node is None else [self.base + node - 1]
        return ",".join(f"127.0.0.1:{port}" for port in ports)

    def settings(self, user: str, node: int | None = None) -> dict:
        settings = {"bootstrap.servers": self.bootstrap(node), "security.protocol": self.protocol,
                    "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": user, "sasl.password": f"{user}-secret-1",
                    "log_level": 0}
        if self.tls is not None:
            settings["ssl.ca.location"] = self.tls.ca
        return settings

    def start(self) -> "SecuredCluster":
        for node in self.nodes:
            node.start(timeout_s=30)
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()
