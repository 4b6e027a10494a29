"""Assembling and running one broker node: storage, handlers, listener, signals.

`run_node` is what `python -m broker` runs after parsing its arguments. It
prints `broker <node.id> listening on host:port` to stderr once the listener
is bound (tests and the harness wait for that line), and on SIGTERM or SIGINT
stops accepting, answers requests in flight, closes the logs cleanly (writing
the clean-shutdown marker) and returns 0, also on a full disk (what cannot be
written is logged on one line and the next start recovers). In cluster mode (`controller.quorum.voters`
set) `broker.server.cluster.ClusterNode` joins the controller quorum once the
listener is bound, and SIGTERM first runs a controlled shutdown (leaderships
move away, controller leadership is handed over) before the listener stops.

Thread-safety: runs one asyncio event loop in the calling thread.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from broker.io import Runtime
from broker.server.config import BrokerConfig, Listener
from broker.server.handlers import RequestHandlers
from broker.server.producer_ids import ProducerIdAllocator
from broker.server.router import node_router
from broker.server.server import BrokerServer
from broker.server.topics import TopicStore

log = logging.getLogger("broker.server")


def build_handlers(config: BrokerConfig, runtime: Runtime, storage, state_dir: str | None) -> RequestHandlers:
    # In cluster mode the topic table is a view of the metadata log (broker.server.cluster), never a file.
    topics_dir = None if config.cluster_mode else state_dir
    return RequestHandlers(config, runtime, storage, TopicStore(runtime, topics_dir), ProducerIdAllocator(runtime, topics_dir))


async def serve(config: BrokerConfig, runtime: Runtime, handlers: RequestHandlers, ready_line: bool = True) -> None:
    # Signal handlers go in before the port opens, so a SIGTERM that arrives as soon as clients can
    # connect still takes the clean path instead of Python's default (die without the marker).
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop_requested.set)
    cluster = None
    if config.cluster_mode:
        from broker.server.cluster import ClusterNode

        cluster = ClusterNode(config, runtime, handlers)
    server = BrokerServer(config, runtime, handlers, node_router(handlers, cluster))
    await server.start()
    if handlers.advertised.port == 0:
        # Listening on port 0 picks a free port; advertise the one actually bound.
        handlers.advertised = Listener(handlers.advertised.name, handlers.advertised.host, server.port)
    if cluster is not None:
        cluster.start(server)
    if not any(config.is_client_listener(l.name) for l in config.listeners):
        log.warning("listener %s is the inter-broker listener and also serves clients: any client that reaches it can "
                    "send broker-internal requests (%s); give clients a listener of their own (broker.server.listeners)",
                    config.inter_broker_listener_name,
                    "Raft, controller RPCs, WriteTxnMarkers" if config.cluster_mode else "WriteTxnMarkers")
    listener = config.listeners[0]
    log.info("broker %d listening on %s:%d", config.node_id, listener.host or "0.0.0.0", server.port)
    if ready_line:
        sys.stderr.write(f"broker {config.node_id} listening on {listener.host or '0.0.0.0'}:{server.port}\n")
        sys.stderr.flush()
    await stop_requested.wait()
    clock = runtime.clock
    phases: list[str] = []
    started_ns = phase_ns = clock.monotonic_ns()

    def phase_done(name: str) -> None:
        nonlocal phase_ns
        now_ns = clock.monotonic_ns()
        phases.append(f"{name} {(now_ns - phase_ns) / 1e9:.1f} s")
        phase_ns = now_ns

    if cluster is not None:
        log.info("broker %d: controlled shutdown", config.node_id)
        await cluster.shutdown()
        phase_done("controlled shutdown")
    log.info("broker %d stopping: no new connections, finishing requests in flight", config.node_id)
    await server.stop()
    phase_done("requests in flight")
    if cluster is not None:
        await cluster.close()
        phase_done("replication and quorum")
    # a supervisor kills a broker that takes too long (the harness after stop_timeout_s): say where the time went
    log.info("broker %d: shutdown took %.1f s (%s)", config.node_id, (clock.monotonic_ns() - started_ns) / 1e9, ", ".join(phases))


def max_open_files(config: BrokerConfig) -> int:
    """logquake.max.open.files, or half the process's descriptor limit (the rest is for sockets), at least 16."""
    if config.max_open_files > 0:
        return config.max_open_files
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 1 << 20 if soft == resource.RLIM_INFINITY else max(16, soft // 2)


def run_node(config: BrokerConfig, runtime: Runtime | None = None) -> int:
    from broker.io.file_pool import PooledDisk
    from broker.log.manager import LogManager

    runtime = runtime or Runtime.real()
    runtime.disk = PooledDisk(runtime.disk, max_open_files(config))
    for directory in config.log_dirs:
        runtime.disk.makedirs(directory)
    storage = LogManager(list(config.log_dirs), config.log_config, runtime)
    handlers = build_handlers(config, runtime, storage, config.log_dirs[0])
    handlers.load()
    try:
        asyncio.run(serve(config, runtime, handlers))
    finally:
        if storage.close(clean=True):
            log.info("broker %d stopped; logs closed cleanly", config.node_id)
        else:
            # a full disk: what could not be written was logged above; what was acknowledged is in the logs
            log.warning("broker %d stopped; some logs could not be closed cleanly and are recovered at the next start",
                        config.node_id)
    return 0
