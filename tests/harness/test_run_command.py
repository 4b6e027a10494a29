"""`logquake test`'s flags come from the declarations, and a stored test.json rebuilds the same run."""

from __future__ import annotations

import dataclasses
import json

import pytest

from harness.run_command import build_parser, build_run, spec_from_args
from harness.spec import COMMON_OPTIONS, RunSpec
from workloads.core import workload_kinds


def test_every_declared_option_has_its_flag():
    text = build_parser().format_help()
    for option in COMMON_OPTIONS:
        assert option.flag in text, option.flag
    for kind in workload_kinds().values():
        for option in kind.options:
            assert option.flag in text, f"{kind.name}: {option.flag}"
        assert f"{kind.name}: {kind.summary}" in " ".join(text.split())


def test_flags_become_a_spec_with_the_workload_options_given_only():
    args = build_parser().parse_args(["--keys", "3", "--subscribe", "--op-timeout", "2.5", "--nemesis", "kill,pause",
                                      "--time-limit", "12"])
    spec = spec_from_args(args, seed=5)
    assert spec.workload_options == {"keys": 3, "subscribe": True, "op_timeout": 2.5}
    assert (spec.nemesis, spec.time_limit_s, spec.seed, spec.delivery) == (("kill", "pause"), 12.0, 5, None)
    assert spec.resolve().workload_options == {"keys": 3, "acks": None, "op_timeout": 2.5, "subscribe": True}


@pytest.mark.parametrize("spec", [
    RunSpec(seed=11, nemesis=("partition", "clock"), workload_options={"keys": 6}, idempotent=True),
    RunSpec(workload="register", seed=12, nodes=5, nemesis=("kill",), workload_options={"read_fraction": 0.2}),
    RunSpec(seed=13, delivery="exactly-once", broker_overrides={"logquake.debug.read.uncommitted": "true"}),
], ids=["queue", "register", "exactly-once"])
def test_a_stored_test_json_rebuilds_the_same_run(spec):
    run = build_run(spec)
    stored = json.loads(json.dumps(run.description()))  # as test.json holds it
    again = build_run(RunSpec.from_test_json(stored))
    for field in dataclasses.fields(RunSpec):
        assert getattr(again.o, field.name) == getattr(run.o, field.name), field.name
    assert again.workload.describe() == run.workload.describe() == stored["workload"]
    assert again.o.store_name() == stored["name"]
    assert again.nemesis.schedule(again.o.seed, again.o.time_limit_s) == run.nemesis.schedule(spec.seed,
                                                                                             spec.time_limit_s)
    assert type(again.control) is type(run.control) and again.control.nodes == run.control.nodes


@pytest.mark.parametrize("spec", [
    RunSpec(seed=3, nemesis=("kill",), workload_options={"keys": 6, "subscribe": True}, idempotent=True,
            broker_overrides={"logquake.debug.skip.dedup": "true"}, time_limit_s=12.5, rate=90.0),
    RunSpec(workload="register", seed=4, nodes=5, workload_options={"read_fraction": 0.25}, nemesis=()),
    RunSpec(seed=5, delivery="exactly-once", concurrency=3, name="mine", store="elsewhere"),
], ids=["queue", "register", "exactly-once"])
def test_flags_of_a_spec_give_the_spec_back(spec):
    from harness.run_command import spec_to_argv

    spec = spec.resolve()
    argv = spec_to_argv(spec)
    again = spec_from_args(build_parser().parse_args(argv), seed=spec.seed).resolve()
    assert again == spec, argv


@pytest.mark.parametrize("override, message", [
    ("logquake.debug.ack.before.replicaton=true", "did you mean logquake.debug.ack.before.replication"),
    ("log.flush.interval.mesages=1", "did you mean log.flush.interval.messages"),
    ("log.flush.interval.messages=abc", "log.flush.interval.messages='abc' is not an integer"),
    ("logquake.debug.skip.dedup=maybe", "is not a boolean; expected true or false"),
])
def test_a_wrong_broker_property_exits_254_before_anything_starts(tmp_path, override, message):
    import subprocess
    import sys

    store = tmp_path / "store"
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "test", "--broker-override", override, "--store",
                           str(store)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 254, proc.stdout + proc.stderr
    assert message in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert not store.exists()  # no run saved


@pytest.mark.parametrize("flags, message", [
    (["--delivery", "at-most-once", "--client", "aiokafka"],
     "--delivery at-most-once cannot run on --client aiokafka: aiokafka's AIOKafkaProducer has no retries setting"),
    (["--workload", "pipeline", "--client", "aiokafka"],
     "--processor-faults pause cannot run on --client aiokafka: aiokafka's AIOKafkaProducer.send_offsets_to_transaction"
     "(offsets, group_id) takes a group id only"),
    (["--subscribe", "--client", "kafka-python"], "--subscribe runs on --client confluent only"),
    (["--idempotent", "--delivery", "at-most-once"], "--idempotent goes with --delivery at-least-once"),
    (["--min-insync-replicas", "3", "--replication-factor", "2"], "larger than the replication factor"),
    (["--workload", "register", "--keys", "3"], "--keys is not an option of workload register"),
    (["--op-timeout", "-1"], "--op-timeout must be a positive number of seconds"),
    (["--op-timeout", "inf"], "--op-timeout must be a positive number of seconds below a day"),
])
def test_impossible_combinations_exit_254_before_anything_starts(tmp_path, flags, message):
    import subprocess
    import sys

    store = tmp_path / "store"
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "test", *flags, "--store", str(store)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 254 and message in proc.stderr, proc.stdout + proc.stderr
    assert not store.exists()


def test_the_summary_of_a_run_that_is_not_valid_names_the_brokers_first_error_line(tmp_path, capsys):
    from harness.run_command import print_summary
    from harness.runner import RunOutcome

    node = tmp_path / "nodes" / "n2"
    node.mkdir(parents=True)
    (node / "broker.log").write_text("2026-12-07 13:42:04,181 INFO broker.server: listening\n"
                                     "2026-12-07 13:42:05,000 ERROR broker.replication: t-0: cannot take its role\n"
                                     "2026-12-07 13:42:06,000 ERROR broker.server: something else\n")
    print_summary(RunOutcome(exit_code=2, valid="unknown", run_dir=tmp_path, results={}))
    assert ("  the brokers logged errors (and 1 more distinct line(s)); the first: n2: ERROR broker.replication: "
            "t-0: cannot take its role\n") in capsys.readouterr().out
    print_summary(RunOutcome(exit_code=0, valid=True, run_dir=tmp_path, results={}))
    assert "the brokers logged errors" not in capsys.readouterr().out  # a valid run's report has them all the same
