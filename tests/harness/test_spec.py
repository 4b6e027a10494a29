"""The test description as data: defaults, checks, and test.json round trips (old format included)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from harness.spec import COMMON_OPTIONS, FORMAT, RunSpec, SpecError
from workloads.core import flag_of, workload_kinds


def test_resolve_fills_every_default_and_is_idempotent():
    spec = RunSpec(nodes=5, seed=7).resolve()
    assert (spec.delivery, spec.idempotent, spec.replication_factor, spec.min_insync_replicas) == (
        "at-least-once", False, 3, 2)
    assert spec.workload_options == {"keys": 4, "acks": None, "op_timeout": 10.0, "subscribe": False}
    assert spec.resolve() == spec
    assert RunSpec(nodes=1).resolve().min_insync_replicas == 1


def test_a_spec_survives_json_field_by_field():
    spec = RunSpec(workload="queue", workload_options={"keys": 6, "subscribe": True}, delivery="at-least-once",
                   idempotent=True, nemesis=("kill", "clock"), seed=99,
                   broker_overrides={"log.flush.interval.messages": "1"},
                   time_limit_s=12.5).resolve()
    again = RunSpec.from_test_json(json.loads(json.dumps({"format": FORMAT, "options": spec.to_json()})))
    for f in dataclasses.fields(RunSpec):
        assert getattr(again, f.name) == getattr(spec, f.name), f.name
    assert again.store_name() == spec.store_name() == "queue-at-least-once-idempotent-kill+clock"


def test_a_format_1_test_json_still_reads():
    old = {"name": "queue-at-least-once-idempotent-kill", "options": {
        "workload": "queue", "delivery": "at-least-once", "nemesis": ["kill"], "nodes": 3, "time_limit_s": 30.0,
        "rate": 200.0, "concurrency": 6, "seed": 5, "backend": "local", "nodes_file": None, "client": "confluent",
        "store": "store", "system": None, "broker_overrides": {}, "nemesis_interval_s": 10.0,
        "recovery_timeout_s": 60.0, "keys": 4, "replication_factor": 3, "min_insync_replicas": None, "acks": None,
        "idempotent": True, "subscribe": False, "name": None}}
    spec = RunSpec.from_test_json(old).resolve()
    assert spec.workload_options == {"keys": 4, "acks": None, "op_timeout": 10.0, "subscribe": False}
    assert spec.delivery_mode().name == "at-least-once-idempotent"
    assert spec.store_name() == old["name"]


def test_an_unknown_format_is_refused_with_its_version():
    with pytest.raises(SpecError, match="test.json has format 9; this logquake reads formats 1 and 2"):
        RunSpec.from_test_json({"format": 9, "options": {}})


@pytest.mark.parametrize("spec, message", [
    (RunSpec(workload="registr"), "--workload 'registr' is not known; expected one of offsets, pipeline, queue, register"),
    (RunSpec(workload="register", delivery="at-most-once"),
     "workload register runs under at-least-once-idempotent, not at-most-once"),
    (RunSpec(workload="register", client="kafka-python"), "workload register runs on --client confluent"),
    (RunSpec(workload_options={"read_fraction": 0.3}), "--read-fraction is not an option of workload queue"),
    (RunSpec(workload_options={"keys": "many"}), "--keys takes a number, got 'many'"),
    (RunSpec(workload_options={"acks": "2"}), "--acks '2' is not one of 0, 1, all"),
    (RunSpec(delivery="exactly-once", idempotent=True), "--idempotent goes with --delivery at-least-once"),
    (RunSpec(min_insync_replicas=3, replication_factor=2), "--min-insync-replicas 3 is larger than the replication"),
    (RunSpec(replication_factor=4), "--replication-factor 4 is larger than the cluster"),
    (RunSpec(nemesis=("kil",)), "unknown fault(s) ['kil']"),
    (RunSpec(time_limit_s=0), "--time-limit must be greater than 0"),
    (RunSpec(system="x.toml", broker_overrides={"a": "b"}), "--broker-override applies to our broker only"),
    (RunSpec(backend="ssh"), "--backend ssh and --nodes-file FILE go together"),
])
def test_impossible_specs_are_refused_in_a_sentence(spec, message):
    with pytest.raises(SpecError, match=__import__("re").escape(message)):
        spec.resolve()


def test_every_option_is_declared_once_and_every_spec_field_has_a_declaration():
    fields = {f.name for f in dataclasses.fields(RunSpec)}
    common = {o.name for o in COMMON_OPTIONS}
    assert common <= fields
    # the fields that are not flags of the common table are set by flags of their own (see the CLI test)
    assert fields - common == {"workload", "workload_options", "nemesis", "seed", "nodes_file", "system",
                               "system_description", "broker_overrides", "store", "name", "schedule", "replay_of"}
    seen = {}
    for kind in workload_kinds().values():
        for option in kind.options:
            assert option.name not in common, f"{kind.name} redeclares the common option {option.name}"
            if option.name in seen:
                assert seen[option.name] == option, f"{option.name} is declared differently by two workloads"
            seen[option.name] = option
    assert flag_of("time_limit_s") == "--time-limit"
