"""The KRaft-style controller quorum: Raft driven on the event loop, and the active controller.

`storage` persists the Raft term, vote, commit index and log (crash-safe);
`quorum` drives `broker.raft.RaftNode` over the network and applies committed
metadata records to the `MetadataImage`; `controller` is the active
controller's logic (brokers, topics, partition leaders and ISR, producer id
blocks), run on the Raft leader only; `rpc` is the internal request codec;
`channel` is the broker-side client of the active controller (registration,
heartbeats, AlterPartition, forwarded admin requests).

Sources: KIP-500 (replace ZooKeeper with a self-managed quorum), KIP-595 (the
Raft protocol of the quorum), KIP-631 (the quorum-based controller), KIP-497
(AlterPartition), KIP-841 (fenced replicas leave the ISR).
"""
