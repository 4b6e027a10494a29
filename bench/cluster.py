"""Replicated-cluster figures: acks=all throughput at replication factor 3, and failover time.

1. Throughput: N messages of 100 bytes from confluent-kafka (linger.ms=5,
   batch.size=1048576), in the same run:
   - one broker, acks=1 (the foundation benchmark's setting);
   - a 3-node combined-mode cluster (`logquake cluster up`), a topic with
     replication factor 3 and min.insync.replicas=2, acks=all;
   and their ratio (target >= 0.5).
2. Failover: a 3-node cluster behind the harness's fault proxy (the local
   backend), with the test profile broker.session.timeout.ms=2000,
   broker.heartbeat.interval.ms=250, replica.lag.time.max.ms=3000,
   replica.fetch.backoff.ms=100 (a follower that asks the new leader before the
   leader itself has taken over backs off this long; Kafka's default is 1000). A producer
   sends an acks=all message every 5 ms; the benchmark SIGKILLs the partition
   leader and measures the time to the next acknowledged write; then restarts
   the node and waits until it is back in the ISR. Median and max over K kills
   (target: median under 3 s).

    python bench/cluster.py [--messages 1000000] [--kills 10]
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
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from _util import broker_process, free_port, read_bootstrap  # noqa: E402
from broker_throughput import produce  # noqa: E402

PROFILE = {"broker.session.timeout.ms": "2000", "broker.heartbeat.interval.ms": "250", "replica.lag.time.max.ms": "3000",
           "replica.fetch.backoff.ms": "100"}


def create_topic(bootstrap: str, topic: str, partitions: int, replication_factor: int, config: dict | None = None):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + 60
    while True:
        try:
            admin.create_topics([NewTopic(topic, partitions, replication_factor, config=config or {})])[topic].result(30)
            return
        except Exception as e:  # the cluster may still be forming
            if time.monotonic() > deadline:
                raise RuntimeError(f"could not create {topic}: {e}") from e
            time.sleep(0.5)


def wait_brokers(bootstrap: str, count: int, timeout_s: float = 60) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if len(admin.list_topics(timeout=2).brokers) >= count:
                return
        except Exception:  # not up yet
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{count} brokers did not register within {timeout_s} s")


def throughput(messages: int, partitions: int) -> None:
    with broker_process() as broker:
        create_topic(broker.bootstrap, "single", partitions, 1)
        single = messages / produce(broker.bootstrap, "single", messages, partitions)
    base_port = free_port()
    while any(_port_busy(base_port + i) for i in range(3)):
        base_port = free_port()
    data_dir = tempfile.mkdtemp(prefix="logquake-bench-cluster-")
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "cluster", "up", "--nodes", "3", "--base-port", str(base_port),
                             "--data-dir", data_dir], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        bootstrap = read_bootstrap(proc)
        threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
        wait_brokers(bootstrap, 3)
        create_topic(bootstrap, "replicated", partitions, 3, {"min.insync.replicas": "2"})
        replicated = messages / produce(bootstrap, "replicated", messages, partitions, acks="all")
    finally:
        proc.terminate()
        proc.wait(60)
        subprocess.run(["rm", "-rf", data_dir])
    print(f"throughput, {messages:,} messages of 100 bytes, {partitions} partition(s):")
    print(f"  one broker, acks=1:                         {single:>10,.0f} msgs/s  {single * 100 / 1e6:6.1f} MB/s")
    print(f"  3-node cluster, RF 3, acks=all, min ISR 2:  {replicated:>10,.0f} msgs/s  {replicated * 100 / 1e6:6.1f} MB/s")
    print(f"  ratio {replicated / single:.2f} (target >= 0.5)", flush=True)


def _port_busy(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def failover(kills: int) -> None:
    from harness.backends.local import LocalCluster
    from harness.system import logquake_broker

    cluster = LocalCluster(logquake_broker(PROFILE, 3), 3)
    cluster.setup()
    try:
        bootstrap = cluster.bootstrap_servers()
        wait_brokers(bootstrap, 3)
        create_topic(bootstrap, "failover", 1, 3, {"min.insync.replicas": "2"})
        admin = AdminClient({"bootstrap.servers": bootstrap})
        acks: list[float] = []
        stop = threading.Event()

        def producer_loop():
            producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0,
                                 "message.timeout.ms": 30000, "topic.metadata.refresh.interval.ms": 500,
                                 "retry.backoff.ms": 20, "retry.backoff.max.ms": 100})

            def on_delivery(err, msg, produced_at):
                # the ack's own time: when it was produced plus its latency, not when the callback ran
                if err is None:
                    acks.append(produced_at + msg.latency())

            while not stop.is_set():
                produced_at = time.monotonic()
                try:
                    producer.produce("failover", b"x" * 100, partition=0,
                                     on_delivery=lambda err, msg, t=produced_at: on_delivery(err, msg, t))
                except BufferError:
                    pass
                producer.poll(0.005)
            producer.flush(10)

        worker = threading.Thread(target=producer_loop, daemon=True)
        worker.start()
        time.sleep(2)
        times = []
        for k in range(kills):
            leader = _partition(admin)[0]
            node = f"n{leader}"
            killed_at = time.monotonic()
            cluster.kill(node)
            deadline = killed_at + 60
            while not any(t > killed_at for t in acks[-50:]) and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.2)  # callbacks of acks that came just before the kill may still be running
            first = min((t for t in acks[-400:] if t > killed_at), default=None)
            if first is None:
                raise RuntimeError(f"kill {k + 1}: no acknowledged write within 60 s of killing {node}")
            times.append(first - killed_at)
            cluster.start(node)
            rejoin_deadline = time.monotonic() + 60
            while leader not in _partition(admin)[1] and time.monotonic() < rejoin_deadline:
                time.sleep(0.1)
            print(f"  kill {k + 1}: leader {node}, next acknowledged write after {times[-1]:.2f} s", flush=True)
            time.sleep(1)
        stop.set()
        worker.join(20)
        print(f"failover over {kills} leader kills: median {statistics.median(times):.2f} s, max {max(times):.2f} s, "
              f"min {min(times):.2f} s (target: median under 3 s; profile {PROFILE})", flush=True)
    finally:
        cluster.teardown()


def _partition(admin) -> tuple[int, list[int]]:
    while True:
        try:
            p = admin.list_topics("failover", timeout=2).topics["failover"].partitions[0]
            if p.leader >= 0:
                return p.leader, list(p.isrs)
        except Exception:  # metadata may be unavailable right after a kill
            pass
        time.sleep(0.05)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--only", default="throughput,failover")
    args = parser.parse_args()
    only = set(args.only.split(","))
    os.chdir(ROOT)
    if "throughput" in only:
        throughput(args.messages, args.partitions)
    if "failover" in only:
        failover(args.kills)
    return 0


if __name__ == "__main__":
    sys.exit(main())
