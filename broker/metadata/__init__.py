"""Cluster metadata: the records the controller quorum commits and the image they build.

`records` defines the metadata records (KIP-631's record types, in a compact
form of our own), `image` the immutable `MetadataImage` every broker builds by
applying committed records in log order, `channel` the interface brokers use to
ask the active controller for changes (AlterPartition), and `errors` the
exceptions those requests raise.

This package sits below `replication` and `controller` in the broker's layers;
it imports nothing above `broker.protocol`.
"""
