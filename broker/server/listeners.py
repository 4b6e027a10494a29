"""Which listener a connection arrived on, and which APIs that listener serves.

Kafka scopes every API to listener types (KIP-500, KIP-590, KIP-631): a broker
listener serves the client and broker APIs, a controller listener
(`controller.listener.names`) the controller's; a request whose API is not
enabled on its listener is refused by closing the connection (Kafka's
SocketServer throws InvalidRequestException "Received request api key ... which
is not enabled"), and ApiVersions lists only the APIs of the listener it is
asked on. Kafka has ACLs (ClusterAction) on top, and so has this broker when an
authorizer is configured (broker.server.authorization); without one the
listener is the only thing between a client and the broker-internal APIs.

Here (combined nodes only, broker.server.config): the inter-broker listener is
also the controllers' listener and serves everything; every other listener is a
*client listener* and serves only client APIs. Broker-internal are the Raft and
controller RPCs (api keys 30000+, broker.controller.rpc, which carry broker
registration and heartbeats, AlterPartition and AllocateProducerIds),
WriteTxnMarkers (`apis.BROKER_ONLY_APIS`) and a Fetch from a replica
(replica_id >= 0), whose fetch offsets move the ISR and the high watermark.
With a single listener there is no client listener: it serves everything, as
Kafka's inter-broker listener does, and the node warns at start-up.

`CONNECTION_LISTENER` is set by each connection's task (broker.server.server),
so a handler can tell where its request came from without a parameter.

Thread-safety: a context variable; each connection task has its own value.
"""

from __future__ import annotations

import contextvars

from broker.protocol import apis

# The name of the listener the current connection arrived on (set per connection task).
CONNECTION_LISTENER: contextvars.ContextVar[str | None] = contextvars.ContextVar("connection_listener", default=None)


def on_client_listener(config) -> bool:
    """Whether the current request arrived on a client listener (False outside any connection)."""
    name = CONNECTION_LISTENER.get()
    return name is not None and config.is_client_listener(name)


def advertised_versions(config) -> dict[int, tuple[int, int]]:
    """The API version ranges ApiVersions lists on the current connection's listener."""
    return apis.CLIENT_VERSIONS if on_client_listener(config) else apis.SUPPORTED_VERSIONS


def tls_context(config):
    """The TLS context of the node's SSL listeners, from its ssl.* properties (broker.io.tls)."""
    from broker.io.tls import server_context

    return server_context(config.value("ssl.keystore.location"), config.value("ssl.key.password"),
                          config.value("ssl.truststore.location"), config.value("ssl.client.auth"))


def inter_broker_tls_context(config):
    """The TLS context of the node's connections to its peers when its inter-broker listener is SSL or SASL_SSL
    in a cluster (broker.io.tls.client_context), else None."""
    if not config.cluster_mode or config.security_protocol(config.inter_broker_listener_name) not in ("SSL", "SASL_SSL"):
        return None
    from broker.io.tls import client_context

    return client_context(config.value("ssl.keystore.location"), config.value("ssl.key.password"),
                          config.value("ssl.truststore.location"),
                          config.value("ssl.endpoint.identification.algorithm") == "https")
