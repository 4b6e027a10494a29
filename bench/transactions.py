"""Transactional throughput against non-transactional acks=all throughput, in the same run.

On a combined-mode cluster started with `logquake cluster up` (3 nodes by
default), a topic with `--partitions` partitions (replication factor
min(3, nodes), min.insync.replicas=2 when there are 3 replicas):

1. a confluent-kafka producer with acks=all (linger.ms=5, batch.size=1048576)
   sends N messages of 100 bytes, timed until flush() returns;
2. `--producers` transactional producers (default 4, each with its own
   transactional.id, so idempotent and acks=all, each on its own thread) run T
   transactions between them, of `--per-txn` messages each (begin, produce
   round-robin over the partitions, commit), timed from the first begin to
   the last commit; init_transactions is outside the timing. One producer
   alone measures the latency of a transaction rather than the broker's
   throughput: it waits for each commit before it begins the next.

Each phase runs `--passes` times (default 3) and the median counts; every
pass's figure is printed so the spread is visible.

It prints transactions per second, messages per second of both, and the ratio
of transactional to non-transactional messages per second (target of issue 5:
>= 0.3 at 100 messages per transaction). Every commit waits for the markers of
the previous one to be acknowledged by the coordinator, so the rate is bounded
by a round trip to the coordinator plus the replicated append of its state
record and of the markers, per transaction. Counted with
`logquake.debug.log.requests` on 3 nodes, one transaction of 100 messages over
6 partitions costs about 34 requests in the cluster: 6 Produce, 1
AddPartitionsToTxn, 1 EndTxn, 2 WriteTxnMarkers (the coordinator's own
partitions are written locally) and 24 follower Fetches (2 followers for each
of about 12 replicated appends). The non-transactional run carries hundreds of
messages per request, so the ratio is set by the broker's CPU per request.

    python bench/transactions.py [--nodes 3] [--messages 1000000] [--transactions 500] [--per-txn 100] [--producers 4] [--passes 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from confluent_kafka import Producer  # noqa: E402

from broker_throughput import produce  # noqa: E402
from cluster import _port_busy, create_topic, wait_brokers  # noqa: E402
from _util import free_port, read_bootstrap  # noqa: E402

MESSAGE_BYTES = 100


def transactional(bootstrap: str, topic: str, partitions: int, transactions: int, per_txn: int, producers: int) -> float:
    """Run `transactions` committed transactions split over `producers` concurrent producers; return the seconds taken."""
    clients = []
    for n in range(producers):
        producer = Producer({
            "bootstrap.servers": bootstrap,
            "transactional.id": f"bench-{os.getpid()}-{n}",
            "linger.ms": 5,
            "batch.size": 1048576,
            "queue.buffering.max.messages": 2_000_000,
        })
        producer.init_transactions(60)
        clients.append(producer)
    payload = b"x" * MESSAGE_BYTES
    errors: list[BaseException] = []

    def run(n: int) -> None:
        producer = clients[n]
        try:
            for t in range(n, transactions, producers):
                producer.begin_transaction()
                for i in range(per_txn):
                    while True:
                        try:
                            producer.produce(topic, payload, partition=(t * per_txn + i) % partitions)
                            break
                        except BufferError:
                            producer.poll(0.01)
                producer.commit_transaction(60)
        except BaseException as e:  # reported after the threads end
            errors.append(e)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(producers)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    for producer in clients:
        producer.flush(30)
    if errors:
        raise RuntimeError(f"{len(errors)} producer(s) failed; the first: {errors[0]!r}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=3, help="cluster size (default 3)")
    parser.add_argument("--partitions", type=int, default=6, help="partitions of the topic (default 6)")
    parser.add_argument("--messages", type=int, default=1_000_000, help="messages of the acks=all run (default 1000000)")
    parser.add_argument("--transactions", type=int, default=500, help="transactions of the transactional run (default 500)")
    parser.add_argument("--per-txn", type=int, default=100, help="messages per transaction (default 100)")
    parser.add_argument("--producers", type=int, default=4,
                        help="concurrent transactional producers, each with its own transactional.id (default 4)")
    parser.add_argument("--passes", type=int, default=3, help="passes of each phase; the median counts (default 3)")
    args = parser.parse_args()
    for name in ("nodes", "partitions", "messages", "transactions", "per_txn", "producers", "passes"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} {getattr(args, name)} is invalid; expected >= 1")

    base_port = free_port()
    while any(_port_busy(base_port + i) for i in range(args.nodes)):
        base_port = free_port()
    data_dir = tempfile.mkdtemp(prefix="logquake-bench-txn-")
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "cluster", "up", "--nodes", str(args.nodes),
                             "--base-port", str(base_port), "--data-dir", data_dir],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        bootstrap = read_bootstrap(proc)
        threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
        wait_brokers(bootstrap, args.nodes)
        replicas = min(3, args.nodes)
        config = {"min.insync.replicas": "2"} if replicas == 3 else {}
        create_topic(bootstrap, "plain", args.partitions, replicas, config)
        create_topic(bootstrap, "txn", args.partitions, replicas, config)
        print(f"{args.nodes}-node cluster, {args.partitions} partitions, replication factor {replicas}", flush=True)
        plain_rates = []
        for _ in range(args.passes):
            plain_rates.append(args.messages / produce(bootstrap, "plain", args.messages, args.partitions, acks="all"))
        plain_rate = statistics.median(plain_rates)
        print(f"  acks=all, not transactional: {plain_rate:>10,.0f} msgs/s (median; {args.messages:,} messages per pass; "
              f"passes: {', '.join(f'{r:,.0f}' for r in plain_rates)})", flush=True)
        txn_rates = []
        for _ in range(args.passes):
            txn_rates.append(args.transactions / transactional(bootstrap, "txn", args.partitions, args.transactions,
                                                               args.per_txn, args.producers))
        tx_per_s = statistics.median(txn_rates)
        txn_rate = tx_per_s * args.per_txn
        print(f"  transactional, {args.producers} producer(s), {args.per_txn} msgs each: {tx_per_s:>8,.1f} tx/s, "
              f"{txn_rate:>10,.0f} msgs/s (median; {args.transactions:,} transactions per pass; passes: "
              f"{', '.join(f'{r:,.1f}' for r in txn_rates)} tx/s)", flush=True)
        print(f"  ratio transactional/acks=all msgs/s {txn_rate / plain_rate:.2f} (target >= 0.3)", flush=True)
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        subprocess.run(["rm", "-rf", data_dir], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
