"""Transactional throughput against non-transactional acks=all throughput, in the same run.

On a combined-mode cluster started with `logquake cluster up` (3 nodes by
default), a topic with `--partitions` partitions (replication factor
min(3, nodes), min.insync.replicas=2 when there are 3 replicas):

1. a confluent-kafka producer with acks=all (linger.ms=5, batch.size=1048576)
   sends N messages of 100 bytes, timed until flush() returns;
2. `--producers` transactional producers (default 4, each with its own
   transactional.id, so idempotent and acks=all, each on its own thread; the
   same batching settings) run in one of two exclusive modes, timed from the
   first begin to the last commit (init_transactions is outside the timing):
   - per count (`--per-txn`, the default mode): T transactions between them, of
     `--per-txn` messages each (begin, produce round-robin over the
     partitions, commit). One producer alone measures the latency of a
     transaction rather than the broker's throughput: it waits for each commit
     before it begins the next. Target (issue 19): >= 300 transactions/s at
     100 messages per transaction;
   - per time (`--txn-ms MS`), KIP-98's benchmark shape (it committed every
     100 ms and reported a few percent of overhead): each producer produces
     as fast as it can and commits once MS ms have passed since its begin,
     beginning transactions for `--seconds` (default 10). commit_transaction
     first flushes what is still queued, so the time of a transaction is MS
     plus its flush plus the EndTxn round trip. Messages counted are those of
     committed transactions. Target (issue 19): transactional messages/s >=
     0.7 x the acks=all messages/s at --txn-ms 100.

Each phase runs `--passes` times (default 3) and the median counts; every
pass's figure is printed so the spread is visible.

It prints transactions per second, messages per second of both, and the ratio
of transactional to non-transactional messages per second (target of issue 5
for the per-count mode: >= 0.3 at 100 messages per transaction). With more
than one producer, the transactional phase has several producers' requests in
flight at once against the acks=all phase's one, which the ratio does not
correct for (`--producers 1` compares one producer with one).

Every commit waits for the markers of the previous one to be acknowledged by the
coordinator, so the rate is bounded by a round trip to the coordinator plus the
replicated append of its state record and of the markers, per transaction.
Counted with `logquake.debug.log.requests` on 3 nodes, one transaction of 100
messages over 6 partitions costs about 34 requests in the cluster: 6 Produce, 1
AddPartitionsToTxn, 1 EndTxn, 2 WriteTxnMarkers (the coordinator's own
partitions are written locally; markers of concurrent transactions bound for
the same broker share a request) and 24 follower Fetches (2 followers for each
of about 12 replicated appends). The non-transactional run carries hundreds of
messages per request, so the ratio is set by the broker's CPU per request.

    python bench/transactions.py [--nodes 3] [--messages 1000000] [--transactions 500] [--per-txn 100] [--producers 4] [--passes 3]
    python bench/transactions.py --txn-ms 100 [--seconds 10] [--nodes 3] [--messages 1000000] [--producers 4] [--passes 3]
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


def transactional_producers(bootstrap: str, producers: int) -> list[Producer]:
    """`producers` transactional producers, each with its own transactional.id, initialised (outside any timing)."""
    clients = []
    for n in range(producers):
        producer = Producer({
            "bootstrap.servers": bootstrap,
            "transactional.id": f"bench-{os.getpid()}-{n}",
            "linger.ms": 5,
            "batch.size": 1048576,
            "queue.buffering.max.messages": 2_000_000,
            "queue.buffering.max.kbytes": 2_097_151,
        })
        producer.init_transactions(60)
        clients.append(producer)
    return clients


def run_producers(clients: list[Producer], run, errors: list[BaseException]) -> float:
    """Run `run(n)` for each producer on a thread of its own; the seconds until the last one ended. Raises the
    first of `errors` (which `run` fills) after flushing every producer."""
    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(clients))]
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


def transactional(bootstrap: str, topic: str, partitions: int, transactions: int, per_txn: int, producers: int) -> float:
    """Run `transactions` committed transactions split over `producers` concurrent producers; return the seconds taken."""
    clients = transactional_producers(bootstrap, producers)
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

    return run_producers(clients, run, errors)


def timed_transactional(bootstrap: str, topic: str, partitions: int, txn_ms: int, seconds: float,
                        producers: int) -> tuple[int, int, float]:
    """Run `producers` concurrent producers that each produce as fast as they can and commit every `txn_ms` ms,
    beginning transactions for `seconds`; return (transactions, messages committed, seconds taken).

    A transaction ends at the first message produced `txn_ms` after its begin; its commit (which flushes what is
    still queued) is counted in the time, so the figure is what a producer that commits every `txn_ms` gets."""
    clients = transactional_producers(bootstrap, producers)
    payload = b"x" * MESSAGE_BYTES
    errors: list[BaseException] = []
    counts = [(0, 0)] * producers  # per producer: (transactions, messages) committed
    interval_s = txn_ms / 1000

    def run(n: int) -> None:
        producer = clients[n]
        transactions = messages = 0
        i = n  # the producers start on different partitions
        try:
            while time.perf_counter() < deadline:
                producer.begin_transaction()
                end = time.perf_counter() + interval_s
                sent = 0
                while True:
                    try:
                        producer.produce(topic, payload, partition=i % partitions)
                    except BufferError:
                        producer.poll(0.001)
                        continue
                    i += 1
                    sent += 1
                    if sent % 64 == 0 and time.perf_counter() >= end:
                        break
                producer.commit_transaction(60)
                transactions += 1
                messages += sent
        except BaseException as e:  # reported after the threads end
            errors.append(e)
        counts[n] = (transactions, messages)

    deadline = time.perf_counter() + seconds
    elapsed = run_producers(clients, run, errors)
    return sum(c[0] for c in counts), sum(c[1] for c in counts), elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=3, help="cluster size (default 3)")
    parser.add_argument("--partitions", type=int, default=6, help="partitions of the topic (default 6)")
    parser.add_argument("--messages", type=int, default=1_000_000, help="messages of the acks=all run (default 1000000)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--per-txn", type=int, default=None,
                      help="per-count mode: messages per transaction (default 100; the default mode)")
    mode.add_argument("--txn-ms", type=int, default=None,
                      help="time-based mode: each producer commits every TXN_MS ms, producing as fast as it can "
                           "in between (KIP-98's benchmark committed every 100)")
    parser.add_argument("--transactions", type=int, default=None,
                        help="per-count mode: transactions of each pass (default 500)")
    parser.add_argument("--seconds", type=float, default=None,
                        help="time-based mode: seconds each pass begins transactions for (default 10)")
    parser.add_argument("--producers", type=int, default=4,
                        help="concurrent transactional producers, each with its own transactional.id (default 4)")
    parser.add_argument("--passes", type=int, default=3, help="passes of each phase; the median counts (default 3)")
    args = parser.parse_args()
    if args.txn_ms is not None:
        if args.transactions is not None:
            parser.error("--transactions belongs to the per-count mode (--per-txn); with --txn-ms a pass lasts --seconds")
        args.seconds = 10.0 if args.seconds is None else args.seconds
        if args.seconds <= 0:
            parser.error(f"--seconds {args.seconds:g} is invalid; expected > 0")
    else:
        if args.seconds is not None:
            parser.error("--seconds belongs to the time-based mode (--txn-ms); with --per-txn a pass runs --transactions")
        args.per_txn = 100 if args.per_txn is None else args.per_txn
        args.transactions = 500 if args.transactions is None else args.transactions
    for name in ("nodes", "partitions", "messages", "transactions", "per_txn", "txn_ms", "producers", "passes"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
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
        if args.txn_ms is not None:
            passes = [timed_transactional(bootstrap, "txn", args.partitions, args.txn_ms, args.seconds, args.producers)
                      for _ in range(args.passes)]
            txn_rates = [messages / elapsed for _, messages, elapsed in passes]
            tx_rates = [transactions / elapsed for transactions, _, elapsed in passes]
            txn_rate = statistics.median(txn_rates)
            tx_per_s = statistics.median(tx_rates)
            print(f"  transactional, {args.producers} producer(s), commit every {args.txn_ms} ms: {txn_rate:>10,.0f} msgs/s, "
                  f"{tx_per_s:,.1f} tx/s (medians; {args.seconds:g} s per pass; passes: "
                  f"{', '.join(f'{r:,.0f} msgs/s {t:,.1f} tx/s' for r, t in zip(txn_rates, tx_rates))})", flush=True)
            print(f"  ratio transactional/acks=all msgs/s {txn_rate / plain_rate:.2f} (target >= 0.7 at --txn-ms 100)",
                  flush=True)
        else:
            txn_rates = []
            for _ in range(args.passes):
                txn_rates.append(args.transactions / transactional(bootstrap, "txn", args.partitions, args.transactions,
                                                                   args.per_txn, args.producers))
            tx_per_s = statistics.median(txn_rates)
            txn_rate = tx_per_s * args.per_txn
            print(f"  transactional, {args.producers} producer(s), {args.per_txn} msgs each: {tx_per_s:>8,.1f} tx/s, "
                  f"{txn_rate:>10,.0f} msgs/s (median; {args.transactions:,} transactions per pass; passes: "
                  f"{', '.join(f'{r:,.1f}' for r in txn_rates)} tx/s)", flush=True)
            print(f"  ratio transactional/acks=all msgs/s {txn_rate / plain_rate:.2f} (target >= 0.3); "
                  f"{tx_per_s:,.1f} tx/s (target >= 300 at 100 messages per transaction)", flush=True)
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
