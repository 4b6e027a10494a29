"""The broker side of the controller: requests to the active controller, registration, heartbeats.

`QuorumControllerChannel` sends a controller request to whichever node is the
active controller: this node's own `QuorumController` directly when it is the
active one, otherwise the Raft leader this node knows of, over the internal
CONTROLLER RPC. NOT_CONTROLLER answers, unknown leaders and lost connections are
retried (with a short backoff) until the request's deadline; then it raises
ControllerUnavailableError. Clients of the broker never see NOT_CONTROLLER.
It implements `broker.metadata.channel.ControllerChannel` (alter_partition).

`BrokerLifecycle` registers this broker (a fresh incarnation id per process),
heartbeats every `broker.heartbeat.interval.ms` with the metadata offset it has
applied, re-registers when the controller no longer knows its incarnation, and
asks for a controlled shutdown before the process exits (KIP-631's broker
lifecycle, without the separate broker epoch).

`ClusterProducerIds` hands out producer ids from blocks the controller
allocates (unique cluster-wide, KIP-730's scheme).

Thread-safety: none; everything runs on the broker's event loop.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from broker.controller import rpc
from broker.controller.controller import partition_from_json
from broker.metadata.errors import ControllerUnavailableError, NotControllerError, StaleBrokerEpochError, error_for_code
from broker.metadata.image import PartitionState
from broker.protocol.client import ClientError

log = logging.getLogger("broker.controller")

RETRY_BACKOFF_S = 0.05
DEFAULT_TIMEOUT_S = 10.0


class QuorumControllerChannel:
    def __init__(self, node_id: int, quorum, controller, pool, voters: dict[int, tuple[str, int]], runtime):
        self.node_id = node_id
        self.quorum = quorum
        self.controller = controller
        self.pool = pool
        self.voters = voters
        self.runtime = runtime

    async def call(self, request: dict, timeout_s: float = DEFAULT_TIMEOUT_S) -> dict:
        """Run `request` on the active controller; return its answer (error_code may be non-zero)."""
        deadline_ns = self.runtime.clock.monotonic_ns() + int(timeout_s * 1e9)
        last_problem = "no controller known yet"
        while True:
            remaining_s = (deadline_ns - self.runtime.clock.monotonic_ns()) / 1e9
            if remaining_s <= 0:
                raise ControllerUnavailableError(
                    f"controller request {request.get('op')} got no answer within {timeout_s} s: {last_problem}"
                )
            leader = self.quorum.leader_id
            answer = None
            if leader == self.node_id and self.quorum.active:
                answer = await self.controller.handle(request)
            elif leader is not None and leader != self.node_id:
                host, port = self.voters[leader]
                try:
                    raw = await self.pool.request(host, port, rpc.CONTROLLER, 0, rpc.encode_json(request), min(remaining_s, 5.0))
                    answer = rpc.decode_json(raw)
                except ClientError as exc:
                    last_problem = f"node {leader}: {exc}"
            else:
                last_problem = "no active controller elected yet" if leader is None else "the controller is starting"
            if answer is not None:
                if answer.get("error_code") != NotControllerError.error_code:
                    return answer
                last_problem = f"node {leader} is not the active controller"
            await self.runtime.clock.sleep(RETRY_BACKOFF_S)

    async def call_checked(self, request: dict, timeout_s: float = DEFAULT_TIMEOUT_S) -> dict:
        answer = await self.call(request, timeout_s)
        code = answer.get("error_code", 0)
        if code:
            raise error_for_code(code, answer.get("error_message") or f"controller answered error {code}")
        return answer

    async def alter_partition(self, topic_id: uuid.UUID, partition: int, leader_epoch: int,
                              new_isr: tuple[int, ...], partition_epoch: int) -> PartitionState:
        answer = await self.call_checked({
            "op": "alter_partition", "broker_id": self.node_id, "topic_id": str(topic_id), "partition": partition,
            "leader_epoch": leader_epoch, "new_isr": list(new_isr), "partition_epoch": partition_epoch,
        })
        return partition_from_json(answer["partition"])

    async def handle_request(self, body) -> bytes:
        """An incoming CONTROLLER request from another node."""
        request = rpc.decode_json(body)
        if not self.quorum.active:
            answer = {"error_code": NotControllerError.error_code,
                      "error_message": f"node {self.node_id} is not the active controller", "leader_id": self.quorum.leader_id}
        else:
            answer = await self.controller.handle(request)
        return rpc.encode_json(answer)


class ClusterProducerIds:
    """Producer ids from controller-allocated blocks (never reused across the cluster)."""

    def __init__(self, channel: QuorumControllerChannel):
        self.channel = channel
        self._next_id = 0
        self._block_end = 0
        self._lock = asyncio.Lock()

    def load(self) -> None:
        """Nothing on disk: blocks live in the metadata log."""

    async def allocate(self) -> int:
        async with self._lock:
            if self._next_id >= self._block_end:
                answer = await self.channel.call_checked({"op": "allocate_producer_ids", "broker_id": self.channel.node_id})
                self._next_id, self._block_end = int(answer["start"]), int(answer["start"]) + int(answer["length"])
            producer_id = self._next_id
            self._next_id += 1
            return producer_id


class BrokerLifecycle:
    def __init__(self, channel: QuorumControllerChannel, quorum, runtime, host: str, port: int,
                 heartbeat_interval_ms: int, rack: str | None = None):
        self.channel = channel
        self.quorum = quorum
        self.runtime = runtime
        self.host = host
        self.port = port
        self.heartbeat_interval_s = heartbeat_interval_ms / 1000.0
        self.rack = rack
        self.incarnation_id = uuid.UUID(int=runtime.random.getrandbits(128), version=4)
        self.registered = False
        self.fenced = True
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def _register(self) -> None:
        await self.channel.call_checked({
            "op": "register_broker", "broker_id": self.channel.node_id, "incarnation_id": str(self.incarnation_id),
            "host": self.host, "port": self.port, "rack": self.rack,
        })
        self.registered = True
        log.info("broker %d registered with the controller (incarnation %s)", self.channel.node_id, self.incarnation_id)

    async def _run(self) -> None:
        while True:
            try:
                if not self.registered:
                    await self._register()
                answer = await self.channel.call_checked({
                    "op": "broker_heartbeat", "broker_id": self.channel.node_id,
                    "incarnation_id": str(self.incarnation_id), "metadata_offset": self.quorum.image.offset,
                }, timeout_s=max(self.heartbeat_interval_s, 1.0))
                if self.fenced != answer["fenced"]:
                    log.info("broker %d is now %s", self.channel.node_id, "fenced" if answer["fenced"] else "unfenced")
                self.fenced = answer["fenced"]
                wait_s = self.heartbeat_interval_s if not self.fenced else min(self.heartbeat_interval_s, 0.1)
            except StaleBrokerEpochError:
                self.registered = False
                wait_s = 0.0
            except ControllerUnavailableError as exc:
                log.info("broker %d heartbeat: %s", self.channel.node_id, exc)
                wait_s = RETRY_BACKOFF_S
            except Exception as exc:  # any controller error: keep heartbeating, the broker must not die of it
                log.warning("broker %d heartbeat failed: %s: %s", self.channel.node_id, type(exc).__name__, exc)
                wait_s = self.heartbeat_interval_s
            await self.runtime.clock.sleep(wait_s)

    async def controlled_shutdown(self, timeout_s: float = 5.0) -> None:
        """Stop heartbeating and ask the controller to move this broker's leaderships away."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if not self.registered:
            return
        try:
            await self.channel.call_checked({"op": "controlled_shutdown", "broker_id": self.channel.node_id}, timeout_s)
            log.info("broker %d: controlled shutdown acknowledged by the controller", self.channel.node_id)
        except Exception as exc:  # shutting down regardless; the session timeout fences us eventually
            log.warning("broker %d: controlled shutdown failed (%s: %s); exiting anyway", self.channel.node_id, type(exc).__name__, exc)
