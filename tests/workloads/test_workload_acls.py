"""What each workload's clients may do where the brokers enforce ACLs (`Workload.acls`, issue 20 point 4): exactly
the topics, groups and transactional ids its clients name, the operations they use on them, and nothing that
creates, deletes or alters. Pure: no cluster (tests/e2e/test_security_run.py runs the queue under its ACLs)."""

from __future__ import annotations

import pytest

from workloads.core import Grant, Workload, grants, workload_kinds
from workloads.pipeline import GROUP, INPUT_TOPIC, OUTPUT_TOPIC, PipelineWorkload
from workloads.queue import QueueWorkload
from workloads.register import RegisterWorkload



def as_set(workload: Workload) -> set[tuple[str, str, str, str]]:
    declared = workload.acls()
    assert declared is not None and len(declared) == len(set(declared)), declared
    return {(g.resource, g.pattern, g.name, g.operation) for g in declared}


def topic(name):
    return {("TOPIC", "LITERAL", name, "READ"), ("TOPIC", "LITERAL", name, "WRITE")}


def test_queue_at_least_once_reads_and_writes_its_topic_and_only_finds_its_groups_coordinator():
    assert as_set(QueueWorkload()) == topic("logquake-queue") | {("GROUP", "LITERAL", "logquake-logquake-queue", "DESCRIBE")}
    assert as_set(QueueWorkload(delivery="at-most-once")) == as_set(QueueWorkload())


def test_queue_subscribe_joins_its_group():
    assert as_set(QueueWorkload(subscribe=True)) == topic("logquake-queue") | {
        ("GROUP", "LITERAL", "logquake-logquake-queue", "READ")}


def test_queue_idempotent_gets_idempotent_write_on_the_cluster_and_nothing_else_of_it():
    assert as_set(QueueWorkload(idempotent=True)) == as_set(QueueWorkload()) | {
        ("CLUSTER", "LITERAL", "kafka-cluster", "IDEMPOTENT_WRITE")}


def test_queue_exactly_once_writes_its_transactional_ids_by_prefix():
    workload = QueueWorkload(delivery="exactly-once", topic="t")
    assert as_set(workload) == topic("t") | {
        ("GROUP", "LITERAL", "logquake-t", "DESCRIBE"), ("GROUP", "LITERAL", "logquake-t-watermarks", "DESCRIBE"),
        ("TRANSACTIONAL_ID", "PREFIXED", "logquake-t-", "WRITE")}
    # the clients' transactional.id, one per process (ConfluentQueueClient, PythonQueueClient)
    assert all(f"logquake-t-{process}".startswith("logquake-t-") for process in (0, 7, 1234))


@pytest.mark.parametrize("client", ["kafka-python", "aiokafka"])
def test_queue_on_python_clients_names_no_group(client):
    assert as_set(QueueWorkload(client=client)) == topic("logquake-queue")
    assert as_set(QueueWorkload(client=client, delivery="exactly-once")) == topic("logquake-queue") | {
        ("TRANSACTIONAL_ID", "PREFIXED", "logquake-logquake-queue-", "WRITE")}


def test_pipeline_gets_both_topics_its_group_and_one_literal_transactional_id_per_worker_slot():
    workload = PipelineWorkload(slots=4)
    ids = {workload.transactional_id(process) for process in range(40)}  # replacements keep their slot's id
    assert ids == {f"logquake-pipeline-{slot}" for slot in range(4)}
    assert as_set(workload) == topic(INPUT_TOPIC) | topic(OUTPUT_TOPIC) | {
        ("GROUP", "LITERAL", GROUP, "READ"), ("GROUP", "LITERAL", f"{GROUP}-reader", "DESCRIBE"),
        ("CLUSTER", "LITERAL", "kafka-cluster", "IDEMPOTENT_WRITE")} | {
        ("TRANSACTIONAL_ID", "LITERAL", name, "WRITE") for name in ids}
    # the Python clients' output readers name no group
    assert ("GROUP", "LITERAL", f"{GROUP}-reader", "DESCRIBE") not in as_set(PipelineWorkload(client="kafka-python"))


def test_register_appends_and_reads_its_topic_with_an_idempotent_producer():
    assert as_set(RegisterWorkload(topic="r")) == topic("r") | {
        ("GROUP", "LITERAL", "logquake-r", "DESCRIBE"), ("CLUSTER", "LITERAL", "kafka-cluster", "IDEMPOTENT_WRITE")}


def test_offsets_commits_for_its_groups_by_prefix_and_only_reads_its_topic():
    from workloads.offsets import GROUP_PREFIX, OffsetsWorkload

    workload = OffsetsWorkload()
    assert workload.group_prefix.startswith(GROUP_PREFIX)  # every group it commits for is under the prefix
    assert as_set(workload) == {("GROUP", "PREFIXED", GROUP_PREFIX, "READ"),
                                ("TOPIC", "LITERAL", "logquake-offsets", "READ")}


def test_every_registered_workload_declares_its_acls_and_they_name_only_its_topics():
    for name, kind in workload_kinds().items():
        from harness.spec import RunSpec

        workload = kind.build(RunSpec(workload=name).resolve().workload_settings())
        declared = workload.acls()
        assert declared, f"workload {name} declares no ACLs"
        assert {g.name for g in declared if g.resource == "TOPIC"} == set(workload.topics()), name


def test_the_base_workload_declares_nothing_so_a_secured_run_refuses_it():
    assert Workload.acls(QueueWorkload()) is None


@pytest.mark.parametrize("resource, name, operation, pattern", [
    ("TOPIC", "t", "CREATE", "LITERAL"), ("TOPIC", "t", "DELETE", "LITERAL"), ("TOPIC", "t", "ALTER", "LITERAL"),
    ("TOPIC", "t", "ALL", "LITERAL"), ("GROUP", "g", "DELETE", "LITERAL"), ("CLUSTER", "kafka-cluster", "ALTER", "LITERAL"),
    ("CLUSTER", "kafka-cluster", "CREATE", "LITERAL"), ("CLUSTER", "other", "IDEMPOTENT_WRITE", "LITERAL"),
    ("CLUSTER", "kafka-cluster", "IDEMPOTENT_WRITE", "PREFIXED"), ("TOPIC", "", "READ", "LITERAL"),
    ("TOPIC", "t", "READ", "MATCH"), ("TOPIC", "kafka-cluster", "IDEMPOTENT_WRITE", "LITERAL"),
])
def test_a_grant_that_creates_deletes_alters_or_is_malformed_is_refused(resource, name, operation, pattern):
    with pytest.raises(ValueError):
        Grant(resource, name, operation, pattern)


def test_grants_builds_every_operation_on_every_name():
    assert grants("TOPIC", ("a", "b"), "READ", "WRITE") == [
        Grant("TOPIC", "a", "READ"), Grant("TOPIC", "a", "WRITE"), Grant("TOPIC", "b", "READ"), Grant("TOPIC", "b", "WRITE")]
    assert Grant("GROUP", "g", "READ").to_dict() == {"resource": "GROUP", "pattern": "LITERAL", "name": "g",
                                                     "operation": "READ"}
