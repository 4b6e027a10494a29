"""A full disk (issue 17, point 4), on a real broker process whose log dir is a small tmpfs that a filler
file fills to ENOSPC: no mock anywhere between the broker and the kernel.

- a Produce is answered KAFKA_STORAGE_ERROR (56) for the partition and the connection stays open (it used
  to be closed); a real producer (confluent-kafka) gets the error in its delivery report; once space is
  freed the same partition takes records again, at the offset the failed append would have had, without
  a restart; broker.log (on the same disk) says once that it cannot be written, instead of a traceback on
  stderr per line;
- a CreateTopics leaves no topic behind (neither metadata nor logs) and the name can be created later; a
  DeleteTopics is refused whole (it used to close the connection with the topic gone from the metadata but
  its partitions still served) and works once space is freed;
- SIGTERM exits 0 with one line per thing it could not write (it used to exit 1 with a traceback), a
  restart on the still-full disk starts (it used to fail writing a checkpoint) and serves every
  acknowledged record, an InitProducerId that needs a new producer id block answers
  COORDINATOR_NOT_AVAILABLE (retriable; the connection used to close), and a stop once space is back is
  clean again;
- a partition leader of a one-voter cluster answers the same, and the cluster's metadata log on a full disk takes
  the controller out of the quorum until space is freed (it used to halt the node, as Kafka does).

The tests need root to mount tmpfs (as CI runs them); without it they fail, saying so, rather than skip.
"""

from __future__ import annotations

import errno
import os
import subprocess
import time
from pathlib import Path

import pytest

from . import kafka_requests as req
from .conftest import BrokerProcess
from .raw_client import RawClient
from .test_replication_process import free_ports

KAFKA_STORAGE_ERROR = 56
UNKNOWN_SERVER_ERROR = -1
UNKNOWN_TOPIC_OR_PARTITION = 3
COORDINATOR_NOT_AVAILABLE = 15
DISK_SIZE = "4m"
# tmpfs hands out whole pages, so a write into the last page of a file may still fit on a "full" disk:
# records larger than a few pages always need new ones
BIG_VALUE = b"v" * (64 * 1024)


class FullDisk:
    """A tmpfs mounted at `path` and a filler file that takes all of its space."""

    def __init__(self, path: Path):
        self.path = path
        self.filler = path / "filler"

    def fill(self) -> None:
        descriptor = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            while True:
                os.write(descriptor, b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
        finally:
            os.close(descriptor)

    def free(self) -> None:
        self.filler.unlink()


@pytest.fixture
def full_disk_broker(tmp_path):
    """A broker (not started) whose log dir is a fresh tmpfs; unmounted at teardown, also on failure."""
    if os.geteuid() != 0:
        pytest.fail("mounting a tmpfs as the broker's log dir needs root (.ci/run runs as root, as the harness's "
                    "iptables and FUSE tests need too)")
    broker = BrokerProcess(tmp_path / "broker")
    broker.log_dir.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE}", "tmpfs", str(broker.log_dir)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.fail(f"mount -t tmpfs failed: {mounted.stderr.strip()}")
    try:
        yield broker, FullDisk(broker.log_dir)
    finally:
        broker.kill()
        print(f"---- stderr of the broker ----\n{broker.stderr_text()[-6000:]}")
        subprocess.run(["umount", str(broker.log_dir)], check=True)


def produce(client: RawClient, topic: str, value: bytes):
    return client.call(req.produce(topic, 0, req.batch([(None, value)]))).responses[0].partition_responses[0]


def values_from(client: RawClient, topic: str) -> list[bytes]:
    """The value of each one-record batch of the partition, in order (the batches are uncompressed)."""
    from broker.protocol.records import iter_batches

    answer = client.call(req.fetch(topic, 0, 0)).responses[0].partitions[0]
    assert answer.error_code == 0, answer
    records = bytes(answer.records)
    values = []
    for position, header in iter_batches(records):
        assert header.records_count == 1, header
        batch = records[position:position + header.size]
        values.append(next(value for value in (b"first", b"third", b"after", b"acknowledged", b"kept", BIG_VALUE)
                           if batch.endswith(value + b"\x00")))  # a record ends with its value, then no headers
    return values


def topic_names(client: RawClient) -> set[str]:
    return {topic.name for topic in client.call(req.metadata(None)).topics}


def test_produce_and_create_topics_on_a_full_disk_answer_errors_and_work_once_space_is_freed(full_disk_broker):
    broker, disk = full_disk_broker
    broker.start()
    with RawClient(broker.port) as client:
        assert client.call(req.create_topic("t", 1)).topics[0].error_code == 0
        assert client.call(req.create_topic("doomed", 1)).topics[0].error_code == 0
        assert produce(client, "t", b"acknowledged").error_code == 0
        assert produce(client, "doomed", b"kept").error_code == 0
        disk.fill()

        refused = produce(client, "t", BIG_VALUE)
        assert refused.error_code == KAFKA_STORAGE_ERROR and "No space left on device" in refused.error_message
        for _ in range(40):  # the same connection still answers; their log lines outgrow broker.log's last page
            assert produce(client, "t", BIG_VALUE).error_code == KAFKA_STORAGE_ERROR
        assert _confluent_delivery_error(broker.bootstrap, "t") == "KAFKA_STORAGE_ERROR"

        created = client.call(req.create_topic("ghost", 3)).topics[0]
        assert created.error_code == UNKNOWN_SERVER_ERROR and "No space left on device" in created.error_message
        assert "ghost" not in topic_names(client)
        assert produce(client, "ghost", b"x").error_code == UNKNOWN_TOPIC_OR_PARTITION
        assert not [name for name in os.listdir(disk.path) if name.startswith("ghost")]

        deleted = client.call(req.delete_topic("doomed")).responses[0]
        assert deleted.error_code == UNKNOWN_SERVER_ERROR and "No space left on device" in deleted.error_message
        assert "doomed" in topic_names(client) and values_from(client, "doomed") == [b"kept"]  # still whole

        disk.free()
        assert client.call(req.delete_topic("doomed")).responses[0].error_code == 0
        assert "doomed" not in topic_names(client)
        again = produce(client, "t", BIG_VALUE)
        assert again.error_code == 0 and again.base_offset == 1  # the failed appends left nothing behind
        assert client.call(req.create_topic("ghost", 3)).topics[0].error_code == 0
        assert produce(client, "ghost", b"x").error_code == 0
        assert values_from(client, "t") == [b"acknowledged", BIG_VALUE]
    assert broker.stop() == 0
    assert "Traceback" not in broker.stderr_text()
    # logging's default prints a traceback per line that broker.log cannot take
    assert broker.stderr_text().count("broker.log: a line could not be written ([Errno 28] No space left on device)") == 1


def test_sigterm_and_restart_on_a_full_disk_keep_acknowledged_records(full_disk_broker):
    broker, disk = full_disk_broker
    broker.start()
    acknowledged = [b"first", BIG_VALUE, b"third"]
    with RawClient(broker.port) as client:
        assert client.call(req.create_topic("t", 1)).topics[0].error_code == 0
        for value in acknowledged:
            assert produce(client, "t", value).error_code == 0
    disk.fill()
    assert broker.stop() == 0
    stopped = broker.stderr_text()
    assert "Traceback" not in stopped
    assert "not closed cleanly, [Errno 28] No space left on device; the next start recovers it" in stopped

    offset = len(stopped)
    broker.restart()  # the disk is still full
    with RawClient(broker.port) as client:
        assert values_from(client, "t") == acknowledged
        assert produce(client, "t", BIG_VALUE).error_code == KAFKA_STORAGE_ERROR
        # a restarted node persists a new producer id block before its first id: retriable until there is room
        assert client.call(req.init_producer_id()).error_code == COORDINATOR_NOT_AVAILABLE
        disk.free()
        assert produce(client, "t", b"after").error_code == 0
        assert client.call(req.init_producer_id()).error_code == 0
    assert broker.stop() == 0
    assert "logs closed cleanly" in broker.stderr_text()[offset:]
    assert "Traceback" not in broker.stderr_text()

    offset = len(broker.stderr_text())
    broker.restart()
    assert "no clean-shutdown marker" not in broker.stderr_text()[offset:]
    with RawClient(broker.port) as client:
        assert values_from(client, "t") == [*acknowledged, b"after"]
    assert broker.stop() == 0


def _confluent_delivery_error(bootstrap: str, topic: str) -> str:
    """The error a real producer reports for one record it could not deliver (no retries, so it says why)."""
    from confluent_kafka import Producer

    reports = []
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "retries": 0, "message.timeout.ms": 10000})
    producer.produce(topic, value=BIG_VALUE, partition=0, on_delivery=lambda err, msg: reports.append(err))
    assert producer.flush(30) == 0
    [error] = reports
    assert error is not None, "the record was acknowledged on a full disk"
    return error.name()


def test_a_cluster_leader_on_a_full_disk_answers_kafka_storage_error(full_disk_broker):
    """The same answer from a partition leader of a (one-voter) cluster, whose produce path waits for the high
    watermark; the controller's metadata log is not written meanwhile (see the next test for what a write of it
    does)."""
    broker, disk = full_disk_broker
    port = free_ports(1)[0]
    broker.overrides = {"listeners": f"PLAINTEXT://127.0.0.1:{port}", "controller.quorum.voters": f"1@127.0.0.1:{port}"}
    broker.start()
    with RawClient(broker.port) as client:
        wait_until(lambda: client.call(req.create_topic("t", 1)).topics[0].error_code == 0)  # registered, unfenced
        wait_until(lambda: produce(client, "t", b"acknowledged").error_code == 0)  # the leader is elected
        disk.fill()
        refused = produce(client, "t", BIG_VALUE)
        assert refused.error_code == KAFKA_STORAGE_ERROR and "No space left on device" in refused.error_message
        disk.free()
        again = produce(client, "t", BIG_VALUE)
        assert again.error_code == 0 and again.base_offset == 1
        assert values_from(client, "t") == [b"acknowledged", BIG_VALUE]
    assert broker.stop() == 0


def wait_until(condition, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not true within {timeout_s} s"
        time.sleep(0.1)


def test_a_cluster_node_on_a_full_disk_stops_cleanly_restarts_and_recovers_once_space_is_freed(full_disk_broker):
    """The controller's metadata log on a full disk: its Raft member leaves the quorum and answers errors instead
    of halting the process (it used to exit 70 at the write, at SIGTERM's controlled shutdown and again at the
    first election after a restart); SIGTERM exits 0, a restart on the still-full disk starts, and once space is
    freed the member reloads from disk, the node registers again and serves what it acknowledged."""
    broker, disk = full_disk_broker
    port = free_ports(1)[0]
    broker.overrides = {"listeners": f"PLAINTEXT://127.0.0.1:{port}", "controller.quorum.voters": f"1@127.0.0.1:{port}"}
    broker.start()
    with RawClient(broker.port) as client:
        wait_until(lambda: client.call(req.create_topic("t", 1)).topics[0].error_code == 0)
        wait_until(lambda: produce(client, "t", b"acknowledged").error_code == 0)
        disk.fill()
    with RawClient(broker.port, timeout_s=60) as client:  # the controller call waits out its own 10 s timeout
        refused = client.call(req.create_topic("later", 1)).topics[0]  # a metadata write the disk cannot take
        assert refused.error_code != 0, refused
    assert broker.stop() == 0, broker.stderr_text()[-3000:]
    log = broker.stderr_text()
    assert "leaves the quorum and answers errors" in log and "halting" not in log and "Traceback" not in log, log[-3000:]
    offset = len(log)
    broker.restart()  # on the still-full disk
    with RawClient(broker.port) as client:
        wait_until(lambda: "controller quorum storage failed" in broker.stderr_text()[offset:])
        topic = client.call(req.metadata(["t"], allow_auto_topic_creation=False)).topics[0]
        assert topic.error_code != 0, topic  # it answers, with an error, while its metadata cannot advance
        disk.free()
        wait_until(lambda: client.call(req.metadata(["t"], allow_auto_topic_creation=False)).topics[0].error_code == 0)
        wait_until(lambda: produce(client, "t", b"kept").error_code == 0)
        assert values_from(client, "t") == [b"acknowledged", b"kept"]
    assert broker.alive() and broker.stop() == 0
