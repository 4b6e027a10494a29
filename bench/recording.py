"""What recording costs a client process, and what the fault proxy costs the traffic.

1. Recording: one confluent-kafka producer process sends N messages pipelined,
   recording an invoke and a completion per message through the harness's
   `Recorder` (JSON lines streamed to a file, as in a real run); printed as
   operations per second, with and without `gc.freeze()`, and against the same
   loop recording nothing.
2. Proxy: the same producer throughput straight to the broker and through the
   fault proxy (`harness.proxy.FaultProxy`), and their ratio (target: the
   proxy costs under 20%). Measured twice: with the producer in its own process
   (the proxy alone in this one), and with the producer in the proxy's process,
   where a producer loop that calls produce() 700,000 times a second holds
   Python's GIL against the proxy thread (the worst case; a harness worker sends
   a few hundred operations a second).

    python bench/recording.py [--messages 200000]
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from _util import broker_process, free_port  # noqa: E402
from harness.proxy import FaultProxy  # noqa: E402
from checkers.history import Op  # noqa: E402
from harness.runner import Recorder  # noqa: E402


def create_topic(bootstrap: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})  # must outlive the future
    admin.create_topics([NewTopic("rec", 1, 1)])["rec"].result(30)


def produce(bootstrap: str, topic: str, messages: int, recorder: Recorder | None) -> float:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "batch.size": 1048576, "acks": 1,
                         "queue.buffering.max.messages": 2_000_000})
    payload = b"x" * 100
    done = [0]

    def on_delivery(err, msg, i=None):
        done[0] += 1

    start = time.perf_counter()
    for i in range(messages):
        if recorder is not None:
            recorder.record(Op(-1, None, 0, "invoke", "send", [["send", 0, i]]))

            def cb(err, msg, i=i):
                recorder.record(Op(-1, None, 0, "ok" if err is None else "info", "send", [["send", 0, [msg.offset(), i]]]))
        else:
            cb = on_delivery
        while True:
            try:
                producer.produce(topic, payload, partition=0, on_delivery=cb)
                break
            except BufferError:
                producer.poll(0.001)
        if i % 1000 == 0:
            producer.poll(0)
    producer.flush(120)
    return messages / (time.perf_counter() - start)


def produce_in_child(bootstrap: str, topic: str, messages: int, recorder=None) -> float:
    """The same producer loop in a child process; returns its messages per second."""
    code = (f"import sys; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r}); import recording; "
            f"print(recording.produce({bootstrap!r}, {topic!r}, {messages}, None))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"the producer process failed: {out.stderr[-2000:]}")
    return float(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200_000)
    args = parser.parse_args()
    n = args.messages
    with broker_process() as broker, tempfile.TemporaryDirectory() as tmp:
        create_topic(broker.bootstrap)
        bare = produce(broker.bootstrap, "rec", n, None)
        recorded = produce(broker.bootstrap, "rec", n, Recorder(Path(tmp) / "h1.jsonl"))
        gc.freeze()
        frozen = produce(broker.bootstrap, "rec", n, Recorder(Path(tmp) / "h2.jsonl"))
        gc.unfreeze()
        print(f"{n:,} messages of 100 bytes, one producer process, pipelined")
        print(f"  no recording:                 {bare:>10,.0f} msgs/s")
        print(f"  recording invoke+completion:  {recorded:>10,.0f} msgs/s, {2 * recorded:,.0f} ops/s recorded  ({recorded / bare:.2f} of bare)")
        print(f"  recording, gc.freeze():       {frozen:>10,.0f} msgs/s, {2 * frozen:,.0f} ops/s recorded  ({frozen / bare:.2f} of bare)")
    # the proxy in the path: the broker advertises the proxy's port, so every connection goes through it
    for where, producer in (("producer in its own process", produce_in_child), ("producer in the proxy's process", produce)):
        broker_port, proxy_port = free_port(), free_port()
        proxy = FaultProxy({"n1": ("127.0.0.1", broker_port)})
        proxy.start({"n1": proxy_port})
        try:
            with broker_process(port=broker_port, advertised_port=proxy_port):
                bootstrap = f"127.0.0.1:{proxy_port}"
                create_topic(bootstrap)
                through = producer(bootstrap, "rec", n, None)
            with broker_process() as broker:
                create_topic(broker.bootstrap)
                direct = producer(broker.bootstrap, "rec", n, None)
        finally:
            proxy.stop()
        print(f"  {where}:")
        print(f"    straight to the broker:  {direct:>10,.0f} msgs/s")
        print(f"    through the fault proxy: {through:>10,.0f} msgs/s  (ratio {through / direct:.2f}; "
              f"proxy cost {100 * (1 - through / direct):.0f}%, target under 20%)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
