"""logquake's Kafka-compatible broker.

A partitioned, append-only commit log that speaks the Kafka wire protocol, so
that unmodified clients (librdkafka, kafka-python, aiokafka, kcat) work against it.

Layers, lowest first: `broker.io` (the only way to the network, the disk, the
clock and randomness), `broker.protocol` (framing, message schemas, record
batches), `broker.log` (segmented partition logs), then `broker.server` (request
handling, configuration, the process). A layer never imports a higher one, and
the broker imports nothing else of the repository.
"""

import sys


def keep_hypothesis_out() -> None:
    """Make `import hypothesis` fail in this process, unless it is already imported; the broker's entry points
    call it before anything imports kio.

    kio, the library of Kafka's message schemas, registers a Hypothesis strategy for each of its field types when
    it finds Hypothesis installed (a development dependency of this project, so in every CI and test machine).
    That import cost a broker 0.26 s at every start, and 1.9 s and a 200 MiB peak of memory in a directory without
    a `.hypothesis` cache (Hypothesis builds one there), which is where the harness starts its nodes. A broker
    never uses the strategies. A None entry in sys.modules is Python's way to make an import raise ImportError."""
    sys.modules.setdefault("hypothesis", None)  # type: ignore[arg-type]
