"""checkers.faults: a run whose faults of a kind were measured and never landed is UNKNOWN, naming them."""

from __future__ import annotations

from checkers.core import run_checkers
from checkers.faults import check_faults_landed, fault_probes
from checkers.history import History, Op


def nemesis(index: int, t_s: float, f: str, probe: dict | None) -> Op:
    value = {"grudge": {"n1": ["n2"]}} if probe is None else {"grudge": {"n1": ["n2"]}, "probe": probe}
    return Op(index, int(t_s * 1e9), "nemesis", "info", f, value)


def probe(package: str, confirmed, checks=("n2->n1 answered",)) -> dict:
    return {"package": package, "confirmed": confirmed, "checks": list(checks), "took_s": 0.41}


def history(*ops: Op) -> History:
    return History(list(ops))


def test_a_kind_that_never_landed_makes_the_verdict_unknown_and_names_the_faults():
    result = check_faults_landed(history(
        nemesis(0, 2.0, "start-partition", probe("partition", False, ["answered across the cut: n2->n1"])),
        nemesis(1, 5.0, "kill", probe("kill", True, ["n3: gone"])),
        nemesis(2, 9.0, "start-partition", probe("partition", False)),
    ))
    assert result["valid"] == "unknown" and result["never_landed"] == ["partition"]
    assert "start-partition at 2.0 s (answered across the cut: n2->n1)" in result["message"]
    assert "kill" not in result["message"]
    assert result["by_kind"]["kill"] == {"confirmed": 1, "unconfirmed": 0, "not_measured": 0}


def test_some_unconfirmed_faults_beside_confirmed_ones_are_listed_without_changing_the_verdict():
    result = check_faults_landed(history(nemesis(0, 2.0, "pause", probe("pause", True)),
                                         nemesis(1, 6.0, "pause", probe("pause", False))))
    assert result["valid"] is True and len(result["unconfirmed"]) == 1 and result["never_landed"] == []


def test_unmeasured_faults_and_histories_without_probes_count_neither_way():
    assert check_faults_landed(history(nemesis(0, 1.0, "start-clock", probe("clock", None))))["valid"] is True
    plain = check_faults_landed(history(nemesis(0, 1.0, "start-partition", None)))
    assert plain["valid"] is True and plain["probed"] == 0


def test_an_invalid_workload_stays_invalid_and_a_valid_one_becomes_unknown():
    h = history(nemesis(0, 2.0, "start-partition", probe("partition", False)))
    assert run_checkers(h, {"w": lambda _: {"valid": False}, "faults": check_faults_landed})["valid"] is False
    assert run_checkers(h, {"w": lambda _: {"valid": True}, "faults": check_faults_landed})["valid"] == "unknown"


def test_probes_read_from_an_edn_style_history_with_keyword_keys():
    op = Op(0, 10**9, "nemesis", "info", "kill", {":killed": ["n1"], ":probe": {":package": "kill",
                                                                                ":confirmed": False}})
    assert fault_probes(history(op))[0]["confirmed"] is False


def _killed(index: int, nodes: list[str]) -> Op:
    return Op(index, int(index * 1e9), "nemesis", "info", "kill", {"killed": nodes})


def test_losses_after_kills_of_a_volatile_system_are_not_blamed_on_it():
    from checkers.faults import excuse_volatile_losses

    lost = {"valid": False, "anomalies": {"lost-write": [{"value": 7}]}, "anomaly_types": ["lost-write"]}
    excused = excuse_volatile_losses(lost, history(_killed(0, ["n2"]), _killed(1, []), _killed(2, ["n2", "n3"])))
    assert excused["valid"] == "unknown" and excused["reason"] == "volatile-storage-losses"
    assert excused["message"] == ("lost-write after 3 kill(s) of n2, n3: the system description declares volatile "
                                  "storage ([storage] volatile = true), so data lost across a kill is not blamed on "
                                  "the broker")
    assert excused["anomalies"] == lost["anomalies"] and lost["valid"] is False  # listed still; the input untouched
    # no kill: nothing excuses the loss; another anomaly beside it: still invalid
    assert excuse_volatile_losses(lost, history(_killed(0, []))) is lost
    both = {"valid": False, "anomalies": {"lost-input": [{}], "duplicate-output": [{}]}}
    assert excuse_volatile_losses(both, history(_killed(0, ["n1"])))["valid"] is False
    valid = {"valid": True, "anomalies": {}}
    assert excuse_volatile_losses(valid, history(_killed(0, ["n1"])))["valid"] is True
