"""Hand-written fault schedules: what they may say, and how they are checked before a run starts."""

from __future__ import annotations

import json

import pytest

import nemeses
from harness.run_command import load_schedule
from harness.spec import RunSpec, SpecError
from nemeses.core import check_events, node_target
from nemeses.partition import grudge_for

ISOLATE_KILL_HEAL = [
    {"at_s": 5, "package": "partition", "f": "start-partition", "shape": "isolate-one", "target": "leader-of:2"},
    {"at_s": 12, "package": "kill", "f": "kill", "target": "n2"},
    {"at_s": 20, "package": "partition", "f": "stop-partition"},
    {"at_s": 20, "package": "kill", "f": "start"},
]


def test_node_targets():
    assert node_target("n2") == ["n2"] and node_target("nodes:n1, n3") == ["n1", "n3"]
    assert node_target("leader") is None and node_target("leader-of:2") is None and node_target(None) is None


def test_a_schedule_is_checked_event_by_event():
    events = check_events(ISOLATE_KILL_HEAL, nemeses.PACKAGES, 3, 30)
    # at the same instant an undo goes before a new fault
    assert [(e.at_s, e.f) for e in events] == [(5, "start-partition"), (12, "kill"), (20, "stop-partition"),
                                               (20, "start")]
    for bad, message in [
        ([{"at_s": 1, "package": "kill", "f": "kill", "target": "n4"}], "event 1: target 'n4' names nodes outside n1..n3"),
        ([{"at_s": 1, "package": "kill", "f": "kill", "target": "boss"}], "event 1: target 'boss' is not one of"),
        ([{"at_s": 1, "package": "kill", "f": "kill", "when": 3}], "event 1: unknown field(s) when"),
        ([{"at_s": -1, "package": "kill", "f": "kill"}], "event 1: at_s -1 must be a number of seconds"),
        ([], "a schedule is a non-empty list of events"),
    ]:
        with pytest.raises(ValueError, match=__import__("re").escape(message)):
            check_events(bad, nemeses.PACKAGES, 3, 30)


def test_a_one_node_shape_cuts_off_the_node_it_is_given():
    assert grudge_for("isolate-one", ["n1", "n2", "n3"], 7, victim="n3") == {"n3": {"n1", "n2"}, "n1": {"n3"},
                                                                             "n2": {"n3"}}
    assert grudge_for("one-way", ["n1", "n2", "n3"], 7, victim="n2") == {"n2": {"n1", "n3"}}


def test_schedule_files_in_json_and_toml(tmp_path):
    as_json = tmp_path / "s.json"
    as_json.write_text(json.dumps(ISOLATE_KILL_HEAL))
    as_toml = tmp_path / "s.toml"
    as_toml.write_text("".join("[[event]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in e.items())
                               for e in ISOLATE_KILL_HEAL))
    assert load_schedule(str(as_json)) == load_schedule(str(as_toml)) == tuple(ISOLATE_KILL_HEAL)
    broken = tmp_path / "b.json"
    broken.write_text("{")
    with pytest.raises(SpecError, match="is not valid JSON"):
        load_schedule(str(broken))


def test_a_spec_with_a_schedule_takes_its_fault_kinds_from_it_and_keeps_it_in_test_json():
    spec = RunSpec(schedule=tuple(ISOLATE_KILL_HEAL), nemesis=("pause",)).resolve()
    assert spec.nemesis == ("partition", "kill")
    assert RunSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec
    with pytest.raises(SpecError, match="at_s 50 must be"):
        RunSpec(schedule=({"at_s": 50, "package": "kill", "f": "kill"},), time_limit_s=30).resolve()
