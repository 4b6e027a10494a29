"""Partition replication: leader epochs, follower fetching, ISR and high watermark, acks=all.

Modules: `epochs` (the leader epoch cache and its checkpoint), `partition`
(leader-side follower progress, HW and ISR rules), `truncation` (where a
follower cuts its log on a leader change), `fetcher` (follower fetch loops),
`manager` (`ReplicaManager`: becomes leader or follower from the metadata
image; the produce purgatory). Layer: above log and metadata, below server.
"""
