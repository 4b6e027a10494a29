"""The "null broker": the real protocol layer and request handlers over storage that keeps nothing.

`python -m broker.server.null_broker --port P [--host H] [--partitions N]` serves
Produce (acknowledged, not stored) and Fetch (answered from one cached batch per
partition) with exactly the code path of the real broker minus the log, so a
benchmark can tell protocol/event-loop cost from log cost. Topics are created
on first Metadata request, kept in memory only. It prints the same
`broker <id> listening on host:port` line and stops on SIGTERM/SIGINT.

Thread-safety: one asyncio event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from broker.io import Runtime
from broker.server.config import build_config
from broker.server.node import build_handlers, serve
from broker.server.null_storage import NullLogManager


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m broker.server.null_broker", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="TCP port to listen on (0 picks a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on and advertise")
    parser.add_argument("--partitions", type=int, default=1, help="partitions of auto-created topics")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port {args.port} is out of range; expected 0..65535")
    if args.partitions < 1:
        parser.error(f"--partitions {args.partitions} is invalid; expected >= 1")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = build_config(
        {
            "node.id": "0",
            "listeners": f"PLAINTEXT://{args.host}:{args.port}",
            "num.partitions": str(args.partitions),
            "log.dirs": "/nonexistent-null-broker-stores-nothing",
        }
    )
    runtime = Runtime.real()
    handlers = build_handlers(config, runtime, NullLogManager(), None)
    handlers.load()
    asyncio.run(serve(config, runtime, handlers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
