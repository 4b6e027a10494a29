"""The Jepsen-style harness: the runner, cluster backends, node control, the store and the CLI.

The harness talks to a broker only over the network (the Kafka protocol) and
through process control, so it can test brokers that are not ours.
"""
