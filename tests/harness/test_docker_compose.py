"""docker/compose.yml describes a working three-node cluster.

This machine has no `docker compose`, so the test does what compose would do
with the file, through the docker SDK: one network, and per service a container
with the service's image (LOGQUAKE_IMAGE, as the file allows), entrypoint,
command, hostname, network alias and published port. Then a client on this host
lists three brokers at the published addresses and round-trips a message
written with acks=all.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
import yaml

from harness.backends.docker import LABEL_OWNER, LABEL_RUN, owner_label
from harness.docker_command import docker_client, ensure_node_image

COMPOSE = Path(__file__).resolve().parents[2] / "docker" / "compose.yml"


def _services():
    return yaml.safe_load(COMPOSE.read_text())["services"]


def test_the_file_names_three_nodes_with_loopback_ports():
    services = _services()
    assert sorted(services) == ["n1", "n2", "n3"]
    for name, service in services.items():
        (port,) = service["ports"]
        assert port.startswith("127.0.0.1:") and port.endswith(":9093")
        argv = service["entrypoint"] + service["command"]
        assert f"node.id={name[1:]}" in argv
        assert f"advertised.listeners=INTERNAL://{name}:9092,EXTERNAL://127.0.0.1:{port.split(':')[1]}" in argv


@pytest.mark.docker
@pytest.mark.slow
def test_compose_file_runs_a_cluster():
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient

    client = docker_client()
    image = ensure_node_image(client)
    run_id = f"compose-{uuid.uuid4().hex[:8]}"
    labels = {LABEL_RUN: run_id, LABEL_OWNER: owner_label()}
    network = client.networks.create(f"logquake-{run_id}", driver="bridge", labels=labels)
    containers = []
    try:
        bootstrap = []
        for name, service in _services().items():
            host_ip, host_port, container_port = service["ports"][0].split(":")
            bootstrap.append(f"{host_ip}:{host_port}")
            container = client.containers.create(
                image, entrypoint=service["entrypoint"], command=service["command"], hostname=service["hostname"],
                name=f"logquake-{run_id}-{name}", labels=labels, ports={f"{container_port}/tcp": (host_ip, int(host_port))},
                cap_add=service["cap_add"], init=service["init"],
            )
            containers.append(container)
            network.connect(container, aliases=[name])
            client.networks.get("bridge").disconnect(container)
            container.start()
        admin = AdminClient({"bootstrap.servers": ",".join(bootstrap)})
        deadline = time.monotonic() + 90
        while True:
            try:
                brokers = admin.list_topics(timeout=5).brokers
                if len(brokers) == 3:
                    break
            except Exception as e:  # not up yet
                last = e
            assert time.monotonic() < deadline, f"no 3-node cluster within 90 s: {locals().get('last')}"
            time.sleep(0.5)
        assert sorted(f"{b.host}:{b.port}" for b in brokers.values()) == sorted(bootstrap)
        topic = f"compose-{uuid.uuid4().hex[:6]}"
        producer = Producer({"bootstrap.servers": ",".join(bootstrap), "acks": "all"})
        errors = []
        producer.produce(topic, b"hello", on_delivery=lambda err, msg: errors.append(err))
        producer.flush(60)
        assert errors == [None]
        consumer = Consumer({"bootstrap.servers": ",".join(bootstrap), "group.id": "compose",
                             "auto.offset.reset": "earliest"})
        try:
            consumer.subscribe([topic])
            deadline = time.monotonic() + 60
            message = None
            while message is None or message.error() is not None:
                assert time.monotonic() < deadline, "the message did not come back within 60 s"
                message = consumer.poll(0.5)
            assert message.value() == b"hello"
        finally:
            consumer.close()
    finally:
        for container in containers:
            container.remove(force=True)
        network.remove()
