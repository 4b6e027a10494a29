"""`logquake cluster up|status`: run a local combined-mode cluster, or show one's state.

`logquake cluster up --nodes N [--data-dir D] [--base-port P] [--host H] [--override key=value ...]`
starts N broker processes (`python -m broker`, each a combined broker and
controller) in the foreground. Node i (1..N) has two listeners: CLIENT on
H:P+i-1, for clients, and INTERNAL on H:P+N+i-1, for replication and the
controller quorum (its `controller.quorum.voters` address), so a client cannot
reach the broker-internal APIs (Raft, controller RPCs, WriteTxnMarkers). It
keeps its logs and metadata log in D/node-i/logs, and its output in
D/node-i/broker.out; every node gets `controller.quorum.voters` naming all N, and
`default.replication.factor` min(3, N). `--override` applies to every node
(after the generated properties), and is checked by the broker before any
node starts (exit 254 for a misspelt or mistyped property). The first line
printed names the data directory and whether it is kept; then one line per
node once it listens; then `bootstrap: host:port,...`, only once a Metadata
request to each node lists every broker, so a client started after that line
sees the whole cluster whichever node it asks; and a line when a node exits on its own. Ctrl-C or SIGTERM
stops every node (SIGTERM, then SIGKILL after a grace period) and waits for
them: no process is left; on Linux a node also gets SIGTERM if `cluster up`
itself is killed. Without --data-dir a fresh temporary directory is used and
removed at the end (kept with --keep-data); a --data-dir is always kept.

`--security tls|sasl-scram|sasl-scram-tls` secures every node's CLIENT listener
(SSL, SASL_PLAINTEXT or SASL_SSL with SCRAM-SHA-512; INTERNAL stays plaintext)
with secrets made by `harness.security` in a private temporary directory (mode
0700): a throwaway CA and broker certificate, and a user `logquake` with a
random password. After the bootstrap line it prints the client settings, the
password once and labelled; the directory is removed when `up` ends, Ctrl-C
and SIGTERM included (a SIGKILL of `up` leaves it, in the temporary directory,
readable by its owner only). `status` speaks plaintext only.

`logquake cluster status --bootstrap host:port` prints the active controller,
the live brokers and, per partition, leader, leader epoch, replicas and ISR,
read through the Kafka Metadata API: confluent-kafka's AdminClient for the
cluster, plus one Metadata v8 request (kio's codec) for the leader epochs,
which confluent-kafka does not expose.

Like the rest of the harness this module never imports broker internals: the
broker is a separate process and only its Kafka protocol is used.

Bad flags exit 254 naming the flag and its value; `up` exits 0 after a clean
stop, 1 when a node fails to start; `status` exits 1 when the cluster cannot
be reached.

Thread-safety: single-threaded.
"""

from __future__ import annotations

import argparse
import io
import logging
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.cli_args import ArgumentParser, key_value
from harness.quorum import read_exactly

__all__ = ["main", "cluster_properties", "read_status"]

READY_TEXT = "listening on"
START_TIMEOUT_S = 30.0
STOP_GRACE_S = 20.0
ROOT = Path(__file__).resolve().parents[1]


def _node_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number; expected 1 to 15 nodes") from None
    if not 1 <= value <= 15:
        raise argparse.ArgumentTypeError(f"{text!r} is out of range; expected 1 to 15 nodes")
    return value


def _base_port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number; expected a port from 1 to 65520") from None
    if not 1 <= value <= 65520:
        raise argparse.ArgumentTypeError(f"{text!r} is out of range; expected a port from 1 to 65520")
    return value


def _host_port(text: str) -> tuple[str, int]:
    host, colon, port = text.rpartition(":")
    if not colon or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not host:port, e.g. 127.0.0.1:9092")
    return host, int(port)


def cluster_properties(node_id: int, nodes: int, host: str, base_port: int, data_dir: Path,
                       overrides: list[tuple[str, str]], security: dict[str, str] | None = None) -> str:
    """The properties file of node `node_id` (1-based) of an `nodes`-node combined cluster; `security`
    (`harness.security.ClusterSecurity.broker_properties`) secures its CLIENT listener."""
    security = dict(security or {})
    protocol_map = security.pop("listener.security.protocol.map", "CLIENT:PLAINTEXT,INTERNAL:PLAINTEXT")
    voters = ",".join(f"{i}@{host}:{base_port + nodes + i - 1}" for i in range(1, nodes + 1))
    lines = [
        f"node.id={node_id}",
        f"listeners=CLIENT://{host}:{base_port + node_id - 1},INTERNAL://{host}:{base_port + nodes + node_id - 1}",
        f"listener.security.protocol.map={protocol_map}",
        "inter.broker.listener.name=INTERNAL",
        "controller.listener.names=INTERNAL",
        f"log.dirs={data_dir / f'node-{node_id}' / 'logs'}",
        f"controller.quorum.voters={voters}",
        f"default.replication.factor={min(3, nodes)}",
    ]
    lines += [f"{key}={value}" for key, value in security.items()]
    lines += [f"{key}={value}" for key, value in overrides]
    return "\n".join(lines) + "\n"


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when `cluster up` dies, even by SIGKILL (Linux prctl)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: Ctrl-C and SIGTERM still stop the nodes; a SIGKILL of `cluster up` may leave them


class _Node:
    def __init__(self, node_id: int, directory: Path, properties: str):
        self.node_id = node_id
        self.directory = directory
        self.properties = properties
        self.output_path = directory / "broker.out"
        self.process: subprocess.Popen | None = None
        self.reported_exit = False

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "server.properties"
        config.write_text(self.properties)
        with open(self.output_path, "ab") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "broker", "--config", str(config)],
                cwd=ROOT, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches us only; we stop the nodes in order
                preexec_fn=_die_with_parent,
            )

    def ready(self) -> bool:
        try:
            return READY_TEXT in self.output_path.read_text(errors="replace")
        except FileNotFoundError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()


def _brokers_seen(addresses: list[str], security: dict | None = None) -> int:
    """The fewest brokers a Metadata request to any one node lists (0 when a node does not answer).

    Each node answers from its own copy of the metadata, which may lag another's by a moment; a client may
    ask any of them, so the cluster is formed once every node lists every broker."""
    from confluent_kafka.admin import AdminClient

    fewest = None
    for address in addresses:
        admin = AdminClient({"bootstrap.servers": address, "socket.timeout.ms": 2000,
                             "logger": logging.getLogger("librdkafka"), **(security or {})})
        try:
            seen = len(admin.list_topics(timeout=2).brokers)
        except Exception:  # not answering yet: the caller asks again
            return 0
        fewest = seen if fewest is None else min(fewest, seen)
    return fewest or 0


def client_settings_lines(bootstrap: str, security) -> list[str]:
    """What `cluster up --security` prints for a client: confluent-kafka / kcat property names, the password
    last and labelled as the secret it is."""
    client = security.client()
    lines = [f"client settings ({security.mode}; confluent-kafka and kcat names, kafka-python and aiokafka take "
             "the same values as security_protocol, ssl_cafile, sasl_mechanism, sasl_plain_username, "
             "sasl_plain_password):",
             f"  bootstrap.servers={bootstrap}"]
    lines += [f"  {key}={value}" for key, value in client.confluent().items() if key != "sasl.password"]
    if client.uses_sasl:
        lines.append("  # the password, a secret printed only here (it works until the cluster stops):")
        lines.append(f"  sasl.password={client.password}")
    return lines


def _up(args) -> int:
    from harness.system import check_broker_overrides

    try:  # a misspelt or mistyped property is refused before any node starts
        check_broker_overrides(dict(args.override))
    except ValueError as e:
        print(f"logquake cluster up: {e}", file=sys.stderr, flush=True)
        return 254
    security = None
    try:
        if args.security != "none":
            from harness.security import ClusterSecurity

            security = ClusterSecurity.create(args.security, Path(tempfile.mkdtemp(prefix="logquake-secrets-")) / "secrets",
                                              hosts=tuple(dict.fromkeys(("localhost", "127.0.0.1", args.host))))
            print(f"secrets directory: {security.directory} (mode 0700; removed when the cluster stops)", flush=True)
        return _run_cluster(args, security)
    finally:
        if security is not None:
            security.remove()
            shutil.rmtree(security.directory.parent, ignore_errors=True)
            print(f"removed the secrets directory {security.directory}", flush=True)


def _run_cluster(args, security) -> int:
    temporary = args.data_dir is None
    if temporary:
        data_dir = Path(tempfile.mkdtemp(prefix="logquake-cluster-"))
    else:
        data_dir = Path(args.data_dir).resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
    keep = args.keep_data or not temporary
    addresses = [f"{args.host}:{args.base_port + i}" for i in range(args.nodes)]
    print(f"data directory: {data_dir} ("
          + ("kept when the cluster stops" if keep else "removed when the cluster stops; --keep-data keeps it") + ")",
          flush=True)
    nodes = [
        _Node(i, data_dir / f"node-{i}", cluster_properties(i, args.nodes, args.host, args.base_port, data_dir, args.override,
                                                           security.broker_properties() if security else None))
        for i in range(1, args.nodes + 1)
    ]
    stop = {"requested": False}

    def request_stop(signum, frame):
        stop["requested"] = True

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    status = 0
    try:
        for node in nodes:
            node.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        waiting = list(nodes)
        while waiting and not stop["requested"]:
            for node in list(waiting):
                if node.ready():
                    print(f"node {node.node_id}: listening on {addresses[node.node_id - 1]} (pid {node.process.pid}, "
                          f"output {node.output_path})", flush=True)
                    waiting.remove(node)
                elif node.process.poll() is not None:
                    print(f"node {node.node_id} exited with status {node.process.returncode} before listening; "
                          f"see {node.output_path}", file=sys.stderr, flush=True)
                    return 1
            if waiting and time.monotonic() > deadline:
                print(f"nodes {[n.node_id for n in waiting]} not listening within {START_TIMEOUT_S:.0f} s", file=sys.stderr, flush=True)
                return 1
            time.sleep(0.05)
        # listening is not formed: the bootstrap line comes once a Metadata request lists every broker
        bootstrap = ",".join(addresses)
        seen = 0
        while not stop["requested"]:
            seen = _brokers_seen(addresses, security.client().confluent() if security else None)
            if seen >= args.nodes:
                break
            if time.monotonic() > deadline:
                print(f"the cluster did not form within {START_TIMEOUT_S:.0f} s: Metadata lists {seen} of "
                      f"{args.nodes} brokers", file=sys.stderr, flush=True)
                return 1
            time.sleep(0.2)
        if not stop["requested"]:
            print(f"bootstrap: {bootstrap}", flush=True)
            if security is not None:
                print("\n".join(client_settings_lines(bootstrap, security)), flush=True)
            print(f"cluster up: every node's Metadata lists all {args.nodes} broker(s); Ctrl-C stops every node", flush=True)
        while not stop["requested"]:
            for node in nodes:
                if not node.reported_exit and node.process.poll() is not None:
                    node.reported_exit = True
                    print(f"node {node.node_id} exited with status {node.process.returncode}", flush=True)
            time.sleep(0.1)
        return status
    finally:
        for node in nodes:
            node.stop()
        deadline = time.monotonic() + STOP_GRACE_S
        for node in nodes:
            if node.process is None:
                continue
            try:
                node.process.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                print(f"node {node.node_id} did not stop within {STOP_GRACE_S:.0f} s; killing it", file=sys.stderr, flush=True)
                node.kill()
                node.process.wait()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if keep:
            print(f"cluster stopped; its data is in {data_dir}", flush=True)
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
            print(f"cluster stopped; removed {data_dir}", flush=True)


# ---- status ------------------------------------------------------------------------------

_METADATA = 3
_METADATA_VERSION = 8  # the newest non-flexible version (request header v1), and it has leader epochs


def _leader_epochs(host: str, port: int, timeout_s: float) -> dict[tuple[str, int], int]:
    """(topic, partition) -> leader epoch, from one Metadata v8 request."""
    from kio.index import load_request_schema, load_response_schema
    from kio.serial import entity_reader, entity_writer

    request_cls = load_request_schema(_METADATA, _METADATA_VERSION)
    body = io.BytesIO()
    entity_writer(request_cls)(body, request_cls(topics=None, allow_auto_topic_creation=False,
                                                 include_cluster_authorized_operations=False,
                                                 include_topic_authorized_operations=False))
    client_id = b"logquake-cluster-status"
    header = struct.pack(">hhih", _METADATA, _METADATA_VERSION, 1, len(client_id)) + client_id
    message = header + body.getvalue()
    with socket.create_connection((host, port), timeout=timeout_s) as connection:
        connection.sendall(struct.pack(">i", len(message)) + message)
        size = struct.unpack(">i", read_exactly(connection, 4))[0]
        response = read_exactly(connection, size)
    entity, _ = entity_reader(load_response_schema(_METADATA, _METADATA_VERSION))(response, 4)
    return {(t.name, p.partition_index): p.leader_epoch for t in entity.topics for p in t.partitions}


def read_status(bootstrap: str, timeout_s: float = 10.0) -> dict:
    """The cluster's state as plain data: controller, brokers, partitions."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})
    metadata = admin.list_topics(timeout=timeout_s)
    broker = metadata.orig_broker_name.split("/")[0] if metadata.orig_broker_name else ""
    first = bootstrap.split(",")[0]
    host, port = _host_port(broker if ":" in broker else first)
    epochs = _leader_epochs(host, port, timeout_s)
    partitions = []
    for topic in sorted(metadata.topics):
        for index, partition in sorted(metadata.topics[topic].partitions.items()):
            partitions.append({
                "topic": topic, "partition": index, "leader": partition.leader,
                "leader_epoch": epochs.get((topic, index), -1),
                "replicas": list(partition.replicas), "isr": list(partition.isrs),
                "error": str(partition.error.name()) if partition.error is not None else None,
            })
    return {
        "controller": metadata.controller_id,
        "brokers": [(b.id, b.host, b.port) for b in sorted(metadata.brokers.values(), key=lambda b: b.id)],
        "partitions": partitions,
    }


def _status(args) -> int:
    try:
        status = read_status(args.bootstrap, args.timeout)
    except Exception as exc:  # confluent-kafka raises KafkaException; sockets raise OSError
        print(f"cannot read the cluster state from --bootstrap {args.bootstrap!r}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"active controller: {status['controller']}")
    print("brokers: " + ", ".join(f"{broker_id} ({host}:{port})" for broker_id, host, port in status["brokers"]))
    for p in status["partitions"]:
        line = (f"{p['topic']}-{p['partition']}: leader {p['leader']} epoch {p['leader_epoch']} "
                f"replicas {p['replicas']} isr {p['isr']}")
        if p["error"]:
            line += f" ({p['error']})"
        print(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="logquake cluster", description="Run a local cluster, or show a cluster's state.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    up = commands.add_parser("up", help="run a local combined-mode cluster in the foreground")
    up.add_argument("--nodes", type=_node_count, default=3, help="number of nodes (1-15, default 3)")
    up.add_argument("--data-dir", default=None, help="directory for the nodes' data, kept at the end (default: a new "
                                                     "temporary one, removed when the cluster stops)")
    up.add_argument("--keep-data", action="store_true", help="keep the temporary data directory when the cluster stops")
    up.add_argument("--base-port", type=_base_port, default=9092, help="client port of node 1; node i gets base+i-1 for clients and base+N+i-1 for the brokers (default 9092)")
    up.add_argument("--host", default="127.0.0.1", help="address every node listens on (default 127.0.0.1)")
    up.add_argument("--security", choices=("none", "tls", "sasl-scram", "sasl-scram-tls"), default="none",
                    help="secure the client listener: tls (SSL), sasl-scram (SASL_PLAINTEXT, SCRAM-SHA-512) or "
                         "sasl-scram-tls (SASL_SSL), with a throwaway CA and a user with a random password made in "
                         "a private temporary directory, printed once and removed when the cluster stops "
                         "(default none: plaintext)")
    up.add_argument("--override", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                    help="a broker property for every node (repeatable)")
    status = commands.add_parser("status", help="print the controller, brokers, leaders, epochs and ISRs")
    status.add_argument("--bootstrap", required=True, help="host:port of any node")
    status.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the cluster (default 10)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "up":
        last_port = args.base_port + 2 * args.nodes - 1
        if last_port > 65535:
            up.error(f"--base-port {args.base_port} with --nodes {args.nodes} needs ports up to {last_port} (a client "
                     f"and an internal port per node); expected a base port <= {65536 - 2 * args.nodes}")
        return _up(args)
    return _status(args)


if __name__ == "__main__":
    sys.exit(main())
