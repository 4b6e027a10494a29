"""Process-level tests of a 3-node combined-mode cluster on 127.0.0.1 (slow).

Each node is a `python -m broker` process with `controller.quorum.voters`
naming all three; the tests talk to them only through the Kafka protocol
(confluent-kafka's AdminClient). Every process is killed in a finally block.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from tests.broker.conftest import ROOT, BrokerProcess
from tests.broker.raw_client import RawClient
from tests.broker.test_internal_apis import controller_request

pytestmark = pytest.mark.slow

FAILOVER_BOUND_S = 10.0


def free_port_block(count: int) -> int:
    """A base port such that base..base+count-1 are free now."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + count > 65535:
            continue
        sockets = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                s.bind(("127.0.0.1", port))
                sockets.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no block of free ports found")


def wait_for(what: str, predicate, timeout_s: float = 30.0, interval_s: float = 0.05):
    """`predicate()`'s first truthy value, polled until `timeout_s`; an exception counts as not yet."""
    deadline = time.monotonic() + timeout_s
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # a node not answering yet: keep polling until the deadline
            last_error = exc
        time.sleep(interval_s)
    raise AssertionError(f"{what}: not within {timeout_s} s (last error: {last_error})")


def node_properties(node_id: int, base: int, directory, nodes: int = 3) -> str:
    voters = ",".join(f"{i}@127.0.0.1:{base + i - 1}" for i in range(1, nodes + 1))
    return (
        f"node.id={node_id}\nlisteners=PLAINTEXT://127.0.0.1:{base + node_id - 1}\nlog.dirs={directory / 'logs'}\n"
        f"controller.quorum.voters={voters}\ndefault.replication.factor=3\n"
        "broker.session.timeout.ms=3000\nbroker.heartbeat.interval.ms=500\n"
    )


class Cluster:
    def __init__(self, tmp_path, nodes: int = 3):
        self.base = free_port_block(nodes)
        self.nodes = {
            i: BrokerProcess(tmp_path / f"node-{i}", properties=node_properties(i, self.base, tmp_path / f"node-{i}", nodes))
            for i in range(1, nodes + 1)
        }

    def address(self, node_id: int) -> str:
        return f"127.0.0.1:{self.base + node_id - 1}"

    def start(self) -> "Cluster":
        for node in self.nodes.values():
            node.start()
        return self

    def admin(self, node_id: int) -> AdminClient:
        return AdminClient({"bootstrap.servers": self.address(node_id), "log_level": 0})

    def metadata(self, node_id: int, timeout_s: float = 5.0):
        return self.admin(node_id).list_topics(timeout=timeout_s)

    def wait_for(self, what: str, predicate, timeout_s: float = 30.0):
        return wait_for(what, predicate, timeout_s)

    def registered(self, node_id: int, expected: set[int]) -> bool:
        return set(self.metadata(node_id).brokers) == expected

    def controller(self, node_id: int) -> int:
        return self.metadata(node_id, 2.0).controller_id

    def kill_all(self) -> None:
        for node in self.nodes.values():
            node.kill()

    def __enter__(self) -> "Cluster":
        """Started; left killed, with each node's log tail printed (shown when a test fails)."""
        try:
            return self.start()
        except BaseException:
            self.__exit__()
            raise

    def __exit__(self, *exc) -> None:
        self.kill_all()
        self.dump()

    def dump(self) -> None:
        for node_id, node in self.nodes.items():
            print(f"---- node {node_id} ----\n{node.stderr_text()[-5000:]}")


@pytest.fixture
def cluster(tmp_path):
    with Cluster(tmp_path) as made:
        yield made


def assert_forged_registration_refused(admin: AdminClient, port_of_2: int) -> None:
    """After a forged register_broker for broker 2 at port 1: for a second no listing shows broker 2 at port 1, and
    all three brokers are listed within 30 s. A loaded machine can leave one broker out of a listing for a moment
    (a late heartbeat), so the three are awaited; the forgery alone would have moved broker 2 to port 1."""
    until = time.monotonic() + 1.0
    while time.monotonic() < until:
        listed = admin.list_topics(timeout=10).brokers
        assert 2 not in listed or listed[2].port == port_of_2, f"broker 2 listed at port {listed[2].port}"
        time.sleep(0.1)
    wait_for("all three brokers listed", lambda: sorted(admin.list_topics(timeout=10).brokers) == [1, 2, 3])
    assert admin.list_topics(timeout=10).brokers[2].port == port_of_2


def create(admin: AdminClient, *topics: NewTopic) -> None:
    for future in admin.create_topics(list(topics), request_timeout=15).values():
        future.result(timeout=20)


def test_all_register_and_a_killed_controller_is_replaced(cluster):
    for node_id in (1, 2, 3):
        cluster.wait_for(f"all brokers registered as seen by node {node_id}", lambda n=node_id: cluster.registered(n, {1, 2, 3}))
    create(cluster.admin(1), NewTopic("before", 3, 3), NewTopic("small", 1, 1))
    # node 2 learns of the topics once it has applied the records (metadata propagation is asynchronous, as in Kafka)
    def seen_at_node_2():
        metadata = cluster.metadata(2)
        return metadata if "before" in metadata.topics else None

    before = cluster.wait_for("the topics at node 2", seen_at_node_2, 10)
    assert {p.leader for p in before.topics["before"].partitions.values()} == {1, 2, 3}
    assert all(sorted(p.isrs) == [1, 2, 3] for p in before.topics["before"].partitions.values())
    controller = cluster.wait_for("a controller", lambda: cluster.controller(1) if cluster.controller(1) > 0 else None)
    survivors = [n for n in (1, 2, 3) if n != controller]

    killed_at = time.monotonic()
    cluster.nodes[controller].kill()
    new_controller = cluster.wait_for(
        "a new active controller",
        lambda: next((c for c in [cluster.controller(survivors[0])] if c not in (-1, controller)), None),
        FAILOVER_BOUND_S,
    )
    failover_s = time.monotonic() - killed_at
    print(f"MEASURED: controller {controller} SIGKILLed; node {new_controller} became controller after {failover_s:.2f} s")
    assert new_controller in survivors
    assert failover_s < FAILOVER_BOUND_S

    # metadata committed before the kill is kept; the new controller serves changes
    # (a node applies the records asynchronously: CI once read survivors[1] before it had applied "small")
    after = cluster.wait_for("topics committed before the kill, at a survivor",
                             lambda: (lambda m: m if {"before", "small"} <= set(m.topics) else None)(
                                 cluster.metadata(survivors[1])), 10)
    assert {"before", "small"} <= set(after.topics), "topics committed before the kill are kept"
    create(cluster.admin(survivors[0]), NewTopic("after", 2, 2))
    # the dead broker is fenced: it leaves the broker list and the ISRs, leaders move to survivors
    # One Metadata answer must show both: fencing is one metadata batch, applied atomically by each broker.
    # (Two separate list_topics calls may reach different brokers, which apply it at different moments.)
    def fenced_and_moved():
        metadata = cluster.metadata(survivors[0])
        partitions = metadata.topics["before"].partitions.values()
        return set(metadata.brokers) == set(survivors) and all(
            p.leader in survivors and controller not in p.isrs for p in partitions)

    cluster.wait_for("the killed broker fenced, out of every ISR, and no longer a leader", fenced_and_moved, 15)

    # the restarted node rejoins: registered, and back in the ISR of every replicated partition
    cluster.nodes[controller].restart()
    cluster.wait_for("the restarted broker registered", lambda: cluster.registered(survivors[0], {1, 2, 3}), 30)
    cluster.wait_for(
        "the restarted broker back in every ISR",
        lambda: all(sorted(p.isrs) == [1, 2, 3] for p in cluster.metadata(controller).topics["before"].partitions.values()),
        45,
    )
    assert "after" in cluster.metadata(controller).topics


def test_metadata_survives_a_restart_of_every_node(cluster):
    for node_id in (1, 2, 3):
        cluster.wait_for(f"brokers registered at node {node_id}", lambda n=node_id: cluster.registered(n, {1, 2, 3}))
    create(cluster.admin(3), NewTopic("kept", 2, 3, config={"min.insync.replicas": "2", "retention.ms": "60000"}))
    # CreateTopics answers once the controller has committed; other nodes apply the record just after
    first = cluster.wait_for("the topic at node 1", lambda: cluster.metadata(1).topics.get("kept"), 10)
    for node in cluster.nodes.values():
        assert node.stop() == 0
    for node in cluster.nodes.values():
        node.restart()
    cluster.wait_for("brokers registered after the restart", lambda: cluster.registered(1, {1, 2, 3}), 30)
    again = cluster.wait_for("the topic at node 2", lambda: cluster.metadata(2).topics.get("kept"), 10)
    assert sorted(again.partitions) == sorted(first.partitions)
    assert [p.replicas for _, p in sorted(again.partitions.items())] == [p.replicas for _, p in sorted(first.partitions.items())]
    admin = cluster.admin(1)  # kept referenced: the futures die with their client
    entries = list(admin.describe_configs([ConfigResource("topic", "kept")]).values())[0].result(timeout=10)
    assert entries["min.insync.replicas"].value == "2" and entries["retention.ms"].value == "60000"


def test_cluster_up_and_status_commands(tmp_path):
    base = free_port_block(6)  # three client ports, then three internal ones
    up = subprocess.Popen(
        [sys.executable, "-m", "harness.cluster_command", "up", "--nodes", "3", "--data-dir", str(tmp_path),
         "--base-port", str(base), "--override", "broker.session.timeout.ms=3000",
         "--override", "broker.heartbeat.interval.ms=500"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    pids = []
    lines = []
    try:
        first = up.stdout.readline()
        assert first == f"data directory: {tmp_path} (kept when the cluster stops)\n"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = up.stdout.readline()
            lines.append(line)
            match = re.search(r"\(pid (\d+),", line)
            if match:
                pids.append(int(match.group(1)))
            if line.startswith("bootstrap:"):
                break
        assert len(pids) == 3, lines
        assert lines[-1] == f"bootstrap: 127.0.0.1:{base},127.0.0.1:{base + 1},127.0.0.1:{base + 2}\n"
        # once the bootstrap line is out, one Metadata request to any node sees the whole cluster (no waiting)
        for port in (base, base + 1, base + 2):
            one = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}", "log_level": 0})
            assert len(one.list_topics(timeout=5).brokers) == 3, port
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{base + 2}", "log_level": 0})
        assert up.stdout.readline().startswith("cluster up: every node's Metadata lists all 3 broker(s)")
        # issue 17: a plain TCP client on a client port forged register_broker for broker 2 and fenced it;
        # now the client listener closes the connection and broker 2 stays registered
        with RawClient(base) as forger:
            forger.send_bytes(controller_request({"op": "register_broker", "broker_id": 2, "incarnation_id":
                                                  str(uuid.uuid4()), "host": "127.0.0.1", "port": 1, "rack": None}))
            assert forger.is_closed_by_peer()
        assert_forged_registration_refused(admin, base + 1)
        create(admin, NewTopic("status-topic", 2, 3))
        # status asks node 2, which learns of the topic once it has applied the records (asynchronous, as in
        # Kafka): the CI caught node 2 a moment behind, so the partitions are awaited for a few seconds
        deadline = time.monotonic() + 10
        while True:
            status = subprocess.run(
                [sys.executable, "-m", "harness.cluster_command", "status", "--bootstrap", f"127.0.0.1:{base + 1}"],
                cwd=ROOT, capture_output=True, text=True, timeout=60,
            )
            assert status.returncode == 0, status.stderr
            out = status.stdout.splitlines()
            if "status-topic-" in status.stdout or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert re.fullmatch(r"active controller: [123]", out[0])
        assert out[1] == f"brokers: 1 (127.0.0.1:{base}), 2 (127.0.0.1:{base + 1}), 3 (127.0.0.1:{base + 2})"
        partition_lines = [line for line in out if line.startswith("status-topic-")]
        assert len(partition_lines) == 2
        for line in partition_lines:
            assert re.fullmatch(r"status-topic-\d: leader [123] epoch 0 replicas \[\d, \d, \d\] isr \[\d, \d, \d\]", line), line
    finally:
        up.send_signal(signal.SIGINT)
        try:
            code = up.wait(60)
        except subprocess.TimeoutExpired:
            up.kill()
            code = None
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                leftover = True
            except ProcessLookupError:
                leftover = False
            assert not leftover, f"node process {pid} outlived `cluster up`"
    assert code == 0
    assert tmp_path.is_dir() and list(tmp_path.glob("node-*"))  # a --data-dir is kept


def test_cluster_up_removes_its_temporary_data_unless_kept(tmp_path):
    for keep in (False, True):
        base = free_port_block(2)  # one node: a client port and a broker port
        up = subprocess.Popen(
            [sys.executable, "-m", "harness.cluster_command", "up", "--nodes", "1", "--base-port", str(base),
             *(["--keep-data"] if keep else [])],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        try:
            first = up.stdout.readline()
            match = re.fullmatch(r"data directory: (\S+) \((.*)\)\n", first)
            assert match, first
            data_dir = Path(match.group(1))
            assert match.group(2) == ("kept when the cluster stops" if keep else
                                      "removed when the cluster stops; --keep-data keeps it")
            seen = [first]
            while not seen[-1].startswith("cluster up"):
                seen.append(up.stdout.readline())
                assert seen[-1] or up.poll() is None, "".join(seen)
        finally:
            up.send_signal(signal.SIGINT)
            rest = up.communicate(timeout=60)[0]
        assert up.returncode == 0, rest
        assert data_dir.is_dir() is keep, (keep, rest)
        if keep:
            assert f"cluster stopped; its data is in {data_dir}" in rest
            shutil.rmtree(data_dir)
        else:
            assert f"cluster stopped; removed {data_dir}" in rest


def test_cluster_up_refuses_a_misspelt_override_before_starting(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "harness.cluster_command", "up", "--data-dir", str(tmp_path / "d"),
                           "--override", "min.insync.replica=2"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 254 and "did you mean min.insync.replicas?" in proc.stderr, proc.stdout + proc.stderr
    assert not (tmp_path / "d").exists()


def test_sigterm_is_a_controlled_shutdown(cluster):
    for node_id in (1, 2, 3):
        cluster.wait_for(f"brokers registered at node {node_id}", lambda n=node_id: cluster.registered(n, {1, 2, 3}))
    create(cluster.admin(1), NewTopic("led", 3, 3))
    cluster.wait_for("every partition led", lambda: len({p.leader for p in cluster.metadata(3).topics["led"].partitions.values()}) == 3)
    controller = cluster.controller(1)
    leaving = controller  # the hardest case: the active controller leaves
    stay = [n for n in (1, 2, 3) if n != leaving]
    started = time.monotonic()
    assert cluster.nodes[leaving].stop() == 0
    stopped_s = time.monotonic() - started
    print(f"MEASURED: controlled shutdown of node {leaving} (the active controller) took {stopped_s:.2f} s")
    # no session timeout needed: right after the exit its leaderships have moved and it is fenced
    metadata = cluster.wait_for("metadata from a survivor", lambda: cluster.metadata(stay[0]), 5)
    assert set(metadata.brokers) == set(stay)
    assert all(p.leader in stay and leaving not in p.isrs for p in metadata.topics["led"].partitions.values())
    assert cluster.wait_for("a new controller", lambda: cluster.controller(stay[0]) in stay, 5)
