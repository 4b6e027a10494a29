"""N real broker nodes in one process, over one simulated world: start, crash, restart.

`SimCluster` assembles each node exactly as `broker.server.node` does for
`python -m broker` in cluster mode (a `LogManager` over a `PooledDisk`, the
request handlers of `build_handlers`, a `ClusterNode`, a `BrokerServer` with
`node_router(handlers, cluster)`), except that its `Runtime` comes from a
`broker.io.sim.SimWorld`: the node's clock, disk, network and randomness are
simulated, and everything it runs is tagged with its actor so a crash can stop
it. Nothing of the broker is replaced or patched.

Lifecycle (what a crash and a restart mean here):
- `start(node_id)`: a new incarnation of the node's process on its host, on
  its simulated storage (log directories made durably before the first start,
  as an operator would);
- `crash(node_id)`: the process dies at once, in the middle of whatever it was
  doing: its network view is revoked and its connections reset, its storage
  keeps only what was durable (broker.io.sim_disk; with `power_loss=False`,
  a kill -9 rather than a machine crash, the page cache survives), and every
  task it ran is cancelled (code that still runs while being cancelled finds its disk and
  network gone, so it can change nothing the next incarnation sees);
- `stop(node_id)`: the clean path of `serve` after SIGTERM (controlled
  shutdown, server stop, cluster close, logs closed cleanly);
- `restart(node_id)`: `start` again, recovering from the simulated disk.

`SimClient` speaks the Kafka protocol to the nodes through the broker's own
client (`broker.protocol.client.ConnectionPool`) from a host of its own on the
simulated network.

Thread-safety: none; everything runs on the world's loop.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from broker.io.file_pool import PooledDisk
from broker.io.sim import SimWorld
from broker.log.manager import LogManager
from broker.protocol import apis
from broker.protocol.client import ConnectionPool
from broker.server.cluster import ClusterNode
from broker.server.config import BrokerConfig, load_config
from broker.server.node import build_handlers
from broker.server.router import node_router
from broker.server.server import BrokerServer

log = logging.getLogger("broker.sim")

PORT = 9092
LOG_DIR = "/var/lib/logquake"

# Timeouts a few times shorter than the defaults: a simulated run needs fewer virtual seconds per fault.
DEFAULT_PROPERTIES = {
    "broker.session.timeout.ms": "3000",
    "broker.heartbeat.interval.ms": "500",
    "controller.quorum.election.timeout.ms": "1000",
    "replica.lag.time.max.ms": "10000",
    "replica.fetch.backoff.ms": "200",
    "default.replication.factor": "3",
    "logquake.max.open.files": "256",
}


def host_of(node_id: int) -> str:
    return f"node{node_id}"


@dataclass
class SimNode:
    """One running incarnation of a node."""

    node_id: int
    incarnation: int
    runtime: object
    storage: LogManager
    handlers: object
    cluster: ClusterNode
    server: BrokerServer


class SimCluster:
    """N combined (controller + broker) nodes of the real broker over `world` (see the module docstring)."""

    def __init__(self, world: SimWorld, node_count: int = 3, properties: dict[str, str] | None = None):
        if node_count < 1:
            raise ValueError(f"node_count must be at least 1, got {node_count}")
        self.world = world
        self.node_ids = list(range(1, node_count + 1))
        self.properties = {**DEFAULT_PROPERTIES, **(properties or {})}
        self.nodes: dict[int, SimNode] = {}
        for node_id in self.node_ids:
            world.storage(host_of(node_id)).make_durable_dirs(LOG_DIR)

    def config(self, node_id: int) -> BrokerConfig:
        voters = ",".join(f"{n}@{host_of(n)}:{PORT}" for n in self.node_ids)
        lines = [f"node.id={node_id}", f"listeners=PLAINTEXT://{host_of(node_id)}:{PORT}", f"log.dirs={LOG_DIR}",
                 f"controller.quorum.voters={voters}"]
        lines += [f"{key}={value}" for key, value in self.properties.items()]
        return load_config("\n".join(lines) + "\n", f"simulated node {node_id}", [])

    # ---- lifecycle ---------------------------------------------------------------------

    async def start(self, node_id: int) -> SimNode:
        assert node_id in self.node_ids, f"no node {node_id} in this cluster (nodes {self.node_ids})"
        assert node_id not in self.nodes, f"node {node_id} is already running"
        host = host_of(node_id)
        runtime = self.world.runtime(host)
        actor = self.world.actor(host)
        node = await self.world.loop.run_actor(actor, self._boot(node_id, runtime))
        self.nodes[node_id] = node
        return node

    async def _boot(self, node_id: int, runtime) -> SimNode:
        # what broker.server.node.run_node and serve do, minus signals and the ready line
        config = self.config(node_id)
        runtime.disk = PooledDisk(runtime.disk, config.max_open_files)
        for directory in config.log_dirs:
            runtime.disk.makedirs(directory)
        storage = LogManager(list(config.log_dirs), config.log_config, runtime)
        handlers = build_handlers(config, runtime, storage, config.log_dirs[0])
        handlers.load()
        cluster = ClusterNode(config, runtime, handlers)
        server = BrokerServer(config, runtime, handlers, node_router(handlers, cluster))
        await server.start()
        cluster.start(server)
        return SimNode(node_id, self.world.incarnations[host_of(node_id)], runtime, storage, handlers, cluster, server)

    def crash(self, node_id: int, power_loss: bool = True) -> None:
        assert node_id in self.nodes, f"node {node_id} is not running"
        del self.nodes[node_id]
        cancelled = self.world.crash(host_of(node_id), power_loss)
        log.info("simulated crash of node %d (power loss: %s): %d tasks cancelled", node_id, power_loss, cancelled)

    async def restart(self, node_id: int) -> SimNode:
        return await self.start(node_id)

    async def stop(self, node_id: int) -> None:
        """SIGTERM: the clean shutdown of broker.server.node.serve."""
        node = self.nodes.pop(node_id)

        async def clean_stop() -> None:
            await node.cluster.shutdown()
            await node.server.stop()
            await node.cluster.close()
            node.storage.close(clean=True)

        await self.world.loop.run_actor(self.world.actor(host_of(node_id)), clean_stop())
        self.world.exited(host_of(node_id))

    # ---- observation -------------------------------------------------------------------

    def controller_id(self) -> int | None:
        """The Raft leader, if exactly one running node believes it leads."""
        leaders = [n for n, node in sorted(self.nodes.items()) if node.cluster.quorum.is_leader]
        return leaders[0] if len(leaders) == 1 else None

    def registered_brokers(self, node_id: int) -> list[int]:
        """The brokers registered and unfenced in `node_id`'s metadata image."""
        image = self.nodes[node_id].cluster.quorum.image
        return sorted(b for b, state in image.brokers.items() if not state.fenced)

    async def wait_for(self, condition, what: str, timeout_s: float = 30.0, poll_s: float = 0.05):
        """Poll `condition` on virtual time; its first truthy value, or AssertionError naming `what`."""
        loop = self.world.loop
        deadline = loop.time() + timeout_s
        while True:
            value = condition()
            if value:
                return value
            if loop.time() > deadline:
                raise AssertionError(f"seed {self.world.seed}: {what} did not happen within {timeout_s} virtual s; "
                                     "last events:\n" + "\n".join(self.world.trace.last))
            await self.world.sleep(poll_s)


class SimClient:
    """A Kafka client on its own simulated host, speaking through the broker's own connection pool."""

    def __init__(self, world: SimWorld, host: str = "client1"):
        self.world = world
        self.host = host
        self.runtime = world.runtime(host)
        self.pool = ConnectionPool(self.runtime, f"sim-{host}", None)

    async def request(self, node_id: int, entity, timeout_s: float = 10.0):
        api_key, version = entity.__api_key__, entity.__version__
        raw = await self.pool.request(host_of(node_id), PORT, api_key, version, apis.encode_request(entity), timeout_s)
        return apis.decode_response(api_key, version, raw)

    async def close(self) -> None:
        await self.pool.close_all()
