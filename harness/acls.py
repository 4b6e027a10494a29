"""A workload's ACLs on a cluster that enforces them (`--security sasl-scram|sasl-scram-tls`, issue 20 point 4).

The workload declares what its clients need (`workloads.core.Workload.acls`, `Grant`s in Kafka's names); the
harness, as its super user, creates them for the workload's user with confluent-kafka's `AdminClient.create_acls`
(`grant`), then waits until every node serves them (`wait_until_served`): a Metadata asked as the workload's user
of each node alone names every topic of the workload. The topic grants are created last in the one CreateAcls
request, and a node applies the controller's ACL records in order, so a node that shows the topics holds the
workload's other grants too.

Thread-safety: called from the runner's main thread, before the workers start.
"""

from __future__ import annotations

import logging
import time
from typing import Iterable

from workloads.client_security import ClientSecurity
from workloads.core import Grant

__all__ = ["bindings", "grant", "ordered", "wait_until_served"]

log = logging.getLogger("harness.acls")
LIBRDKAFKA_LOGGER = logging.getLogger("librdkafka")


def ordered(grants: Iterable[Grant]) -> list[Grant]:
    """Each grant once, the topic grants last (see the module docstring), otherwise sorted."""
    return sorted(set(grants), key=lambda g: (g.resource == "TOPIC", g))


def bindings(grants: Iterable[Grant], principal: str) -> list:
    """confluent-kafka AclBindings: ALLOW `principal` each grant from any host, in `ordered` order."""
    from confluent_kafka.admin import AclBinding, AclOperation, AclPermissionType, ResourcePatternType, ResourceType

    # librdkafka names Kafka's CLUSTER resource type (4) BROKER
    types = {name: ResourceType[name] for name in ("TOPIC", "GROUP", "TRANSACTIONAL_ID")} | {"CLUSTER": ResourceType.BROKER}
    return [AclBinding(types[g.resource], g.name, ResourcePatternType[g.pattern], principal, "*",
                       AclOperation[g.operation], AclPermissionType.ALLOW) for g in ordered(grants)]


def _settings(bootstrap: str, security: ClientSecurity) -> dict:
    return {"bootstrap.servers": bootstrap, "logger": LIBRDKAFKA_LOGGER, **security.confluent()}


def grant(bootstrap: str, grants: Iterable[Grant], principal: str, admin: ClientSecurity, timeout_s: float) -> None:
    """Create the ACLs as `admin` (a super user), asking again while the controller is busy or moving;
    RuntimeError naming the binding and the error when one is refused."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    client = AdminClient(_settings(bootstrap, admin))
    wanted = bindings(grants, principal)
    deadline = time.monotonic() + timeout_s
    while True:
        retry = False
        for binding, future in client.create_acls(wanted, request_timeout=min(30.0, timeout_s)).items():
            try:
                future.result(timeout_s + 5)
            except KafkaException as e:
                error = e.args[0]
                if not (error.retriable() and time.monotonic() < deadline):
                    raise RuntimeError(f"could not grant {binding} to {principal}: {error}") from e
                retry = True
        if not retry:
            return
        # all of them again, in order, so the topic grants stay last (creating a binding again changes nothing)
        time.sleep(0.5)


def wait_until_served(bootstrap: str, topics: Iterable[str], user: ClientSecurity, timeout_s: float) -> None:
    """Poll until every node (each address of `bootstrap` asked alone) answers a Metadata asked as `user` with
    every topic of `topics`; RuntimeError naming the nodes that do not after `timeout_s`."""
    from confluent_kafka.admin import AdminClient

    wanted = set(topics)
    missing = {address: "not asked yet" for address in bootstrap.split(",")}
    deadline = time.monotonic() + timeout_s
    while missing:
        for address in list(missing):
            try:  # a fresh client each time: its one connection is to `address` (a used one may ask another node)
                metadata = AdminClient(_settings(address, user)).list_topics(timeout=2)
            except Exception as e:  # not answering now; asked again
                missing[address] = f"metadata request failed: {e}"
                continue
            # librdkafka names the broker that answered "sasl_ssl://host:port/id" (or ".../bootstrap")
            answered_by = (metadata.orig_broker_name or "").rpartition("://")[2].split("/")[0]
            hidden = sorted(t for t in wanted if t not in metadata.topics or metadata.topics[t].error is not None)
            if answered_by != address:  # another node of the cluster answered; ask again
                missing[address] = f"answered by {metadata.orig_broker_name}, not {address}"
            elif hidden:
                missing[address] = f"does not show {', '.join(hidden)} to User:{user.username}"
            else:
                del missing[address]
        if missing and time.monotonic() > deadline:
            raise RuntimeError(f"the workload's ACLs did not reach every node within {timeout_s:g} s: "
                               + "; ".join(f"{a}: {why}" for a, why in sorted(missing.items())))
        if missing:
            time.sleep(0.25)
