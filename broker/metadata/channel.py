"""The broker's channel to the active controller, as the replication layer sees it.

`ControllerChannel` is the interface; `broker.controller.channel.QuorumControllerChannel`
implements it by sending internal RPCs to whichever node is the active
controller (retrying when leadership moves). A partition leader calls
`alter_partition` to shrink or expand the ISR (KIP-497); the answer is the
partition state the controller committed, or one of the exceptions of
`broker.metadata.errors` (stale leader epoch: FencedLeaderEpochError; stale
partition epoch: InvalidUpdateVersionError; adding a fenced broker:
IneligibleReplicaError; no controller reachable: ControllerUnavailableError).

Thread-safety: called on the broker's event loop only.
"""

from __future__ import annotations

import uuid
from typing import Protocol

from broker.metadata.image import PartitionState


class ControllerChannel(Protocol):
    async def alter_partition(
        self, topic_id: uuid.UUID, partition: int, leader_epoch: int, new_isr: tuple[int, ...], partition_epoch: int
    ) -> PartitionState: ...
