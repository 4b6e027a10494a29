"""What the group and the transaction coordinators share about their internal topics.

Both keep their state in an internal topic (`__consumer_offsets`,
`__transaction_state`) created on first use, and both answer FindCoordinator
with the leader of the topic's partition that a key hashes to. The owner
object passed in has `handlers`, `create_topic` (the controller's create, or
None on a one-node broker), `replication_factor`, `num_partitions`,
`loaded_locally()` and a `_creating` future slot.

Thread-safety: none; the event loop is the only caller.
"""

from __future__ import annotations

import asyncio

from kio.schema.errors import ErrorCode



async def ensure_internal_topic(owner, topic: str) -> None:
    """Create `topic` once (replication capped at the live brokers); concurrent callers wait for the one creation."""
    handlers = owner.handlers
    if topic in handlers.topics.by_name:
        return
    if owner._creating is not None:
        await asyncio.shield(owner._creating)
        return
    owner._creating = asyncio.get_running_loop().create_future()
    try:
        if owner.create_topic is not None:
            live = len(handlers.replica_manager.image.unfenced_broker_ids()) if handlers.replica_manager else 1
            factor = max(1, min(owner.replication_factor, live))
            await owner.create_topic(topic, owner.num_partitions, factor)
        elif handlers.replica_manager is None:
            handlers.topic_admin.create_topic(topic, owner.num_partitions, {})
            owner.loaded_locally()
    finally:
        owner._creating.set_result(None)
        owner._creating = None


def locate_coordinator(handlers, topic: str, partition: int, what: str):
    """(error, message, node id, host, port) of the leader of `topic`-`partition`, the coordinator of `what`."""
    manager = handlers.replica_manager
    if manager is None:
        if topic not in handlers.topics.by_name:
            return ErrorCode.coordinator_not_available, f"{topic} is being created", -1, "", -1
        return (ErrorCode.none, None, handlers.config.node_id, handlers.advertised.host or "localhost",
                handlers.advertised.port)
    image = manager.image
    topic_state = image.topics.get(topic)
    state = topic_state.partitions.get(partition) if topic_state is not None else None
    if state is None or state.leader < 0 or state.leader not in image.brokers:
        return (ErrorCode.coordinator_not_available,
                f"{topic}-{partition} (the partition of {what}) has no leader yet", -1, "", -1)
    broker = image.brokers[state.leader]
    return ErrorCode.none, None, broker.broker_id, broker.host, broker.port


def find_coordinator_response(build, module, version: int, request, locate, empty_key_message: str, zero_ms):
    """The FindCoordinator response for every key of `request` (the v4+ array form or the single key)."""
    keys = list(request.coordinator_keys) if version >= 4 else [request.key]
    located = {key: locate(key) if key else (ErrorCode.invalid_request, empty_key_message, -1, "", -1) for key in keys}
    if version >= 4:
        return build(module, "FindCoordinatorResponse", throttle_time=zero_ms, coordinators=tuple(
            build(module, "Coordinator", key=key, node_id=n, host=h, port=p, error_code=e, error_message=m)
            for key, (e, m, n, h, p) in located.items()))
    e, m, n, h, p = located[keys[0]]
    return build(module, "FindCoordinatorResponse", throttle_time=zero_ms, error_code=e, error_message=m,
                 node_id=n, host=h, port=p)
