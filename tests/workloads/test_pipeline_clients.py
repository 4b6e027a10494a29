"""The pipeline workload on every client: what it refuses on a client that lacks a call it needs."""

from __future__ import annotations

import pytest

from workloads.pipeline import PipelineWorkload


def test_the_pipeline_refuses_what_a_client_cannot_do_and_names_the_call():
    with pytest.raises(ValueError, match=r"--processor-faults pause cannot run on --client aiokafka: aiokafka's "
                                         r"AIOKafkaProducer.send_offsets_to_transaction\(offsets, group_id\) takes a "
                                         r"group id only, not the consumer group metadata \(generation, member id\)"):
        PipelineWorkload(client="aiokafka")
    assert PipelineWorkload(client="aiokafka", processor_faults=("crash", "abort", "leave")).client == "aiokafka"
    assert PipelineWorkload(client="aiokafka", processor_fault_interval_s=0).client == "aiokafka"
    assert PipelineWorkload(client="kafka-python").processor_faults == ("crash", "pause", "abort", "leave")
    with pytest.raises(ValueError, match="--client 'java' is not supported"):
        PipelineWorkload(client="java")


def test_a_run_on_aiokafka_says_in_its_description_what_is_not_fenced():
    notes = PipelineWorkload(client="aiokafka", processor_faults=("crash",)).describe()["notes"]
    assert notes[0].startswith("aiokafka's AIOKafkaProducer.send_offsets_to_transaction(offsets, group_id) takes a "
                               "group id only") and "The pause processor fault is not run" in notes[0]
    assert "notes" not in PipelineWorkload(client="kafka-python").describe()


def test_a_restarted_processor_takes_over_the_transactional_id_of_its_worker_slot():
    from workloads.pipeline import PipelineWorkload

    workload = PipelineWorkload(slots=3)
    # the runner replaces process p by p + concurrency in the same worker (harness.runner.FaultRun._new_process)
    assert [workload.transactional_id(p) for p in (1, 4, 7)] == ["logquake-pipeline-1"] * 3
    assert len({workload.transactional_id(p) for p in range(3)}) == 3
    with pytest.raises(ValueError, match="slots"):
        PipelineWorkload(slots=0)


def test_the_run_gives_the_pipeline_its_concurrency_as_slots():
    from harness.spec import RunSpec
    from workloads.core import workload_kinds

    spec = RunSpec(workload="pipeline", concurrency=4).resolve()
    built = workload_kinds()["pipeline"].build(spec.workload_settings())
    assert built.slots == 4 and built.describe()["transactional_ids"] == "logquake-pipeline-<slot>, 4 slots"


class _LostMembership:
    """The calls of a processor whose consumer lost its group membership but still returned a batch; any
    transaction call fails the test."""

    def _group_metadata(self):
        return "no generation"

    def _is_member(self, group_metadata):
        assert group_metadata == "no generation"
        return False

    def _close_consumer(self):
        self.closed += 1

    def _begin(self):
        raise AssertionError("a transaction began on a batch of a processor that is not a member")

    _produce = _send_offsets = _commit = _begin


def test_a_batch_consumed_without_group_membership_is_dropped_and_the_group_rejoined():
    from workloads.core import Op
    from workloads.pipeline import PythonPipelineClient

    client = PythonPipelineClient.__new__(PythonPipelineClient)
    for name in ("_group_metadata", "_is_member", "_close_consumer", "_begin", "_produce", "_send_offsets", "_commit"):
        setattr(client, name, getattr(_LostMembership, name).__get__(client))
    client.closed, client.consumer = 0, object()
    done = client._transaction(Op(0, 0, 1, "invoke", "process", None), [(0, 138, 915), (0, 139, 916)])
    assert done.type == "fail" and done.error[0] == "not-a-member"
    assert done.value["consumed"] == {0: [[138, 915], [139, 916]]} and done.value["produced"] == []
    assert client.closed == 1 and client.consumer is None  # the next batch comes from a fresh member


def test_kafka_python_metadata_without_a_generation_is_not_a_member():
    from kafka.structs import ConsumerGroupMetadata

    from workloads.pipeline import PythonPipelineClient

    client = PythonPipelineClient.__new__(PythonPipelineClient)
    client.lib = type("Lib", (), {"name": "kafka-python"})()
    assert not client._is_member(ConsumerGroupMetadata("g", -1, "", None))
    assert client._is_member(ConsumerGroupMetadata("g", 6, "kafka-python-3.0.12-0bf7", None))
    client.lib.name = "aiokafka"  # its metadata is the group id alone: nothing to tell
    assert client._is_member("g")
