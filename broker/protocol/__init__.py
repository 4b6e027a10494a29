"""The Kafka wire protocol: framing, request and response schemas, record batches."""
