"""Segmented, indexed partition logs on disk, in Kafka's file format.

Modules, lowest first:
- `config`: `LogConfig`, the per-partition settings under Kafka's property names.
- `segment`: `LogSegment`, one `.log` file with its sparse `.index` and `.timeindex`.
- `log`: `PartitionLog`, a partition's segments: offsets, appends, reads, rolling,
  flush policy, retention, truncation and crash recovery.
- `manager`: `LogManager`, every partition log of the broker's `log.dirs`, and
  the clean-shutdown marker that decides whether logs are recovered at start.

All file and clock access goes through the `Runtime` passed in (`broker.io`).
Thread-safety: none; the broker drives the logs from its single event loop.
Sources: Apache Kafka's `LogManager`, `UnifiedLog`, `LogSegment`, `OffsetIndex`,
`TimeIndex`, `LogLoader`; KIP-33 (time index), KIP-107 (log start offset).
"""
