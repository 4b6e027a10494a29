"""logquake's Kafka-compatible broker.

A partitioned, append-only commit log that speaks the Kafka wire protocol, so
that unmodified clients (librdkafka, kafka-python, aiokafka, kcat) work against it.

Layers, lowest first: `broker.io` (the only way to the network, the disk, the
clock and randomness), `broker.protocol` (framing, message schemas, record
batches), `broker.log` (segmented partition logs), then `broker.server` (request
handling, configuration, the process). A layer never imports a higher one, and
the broker imports nothing else of the repository.
"""
