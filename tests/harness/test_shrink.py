"""The shrinker's parts: faults from a schedule, and delta debugging (Zeller & Hildebrandt's ddmin)."""

from __future__ import annotations

import itertools
import random

import pytest

from harness.shrink import confirm, ddmin, faults_of


def test_faults_pair_a_start_with_the_next_undo_of_its_package():
    events = [{"at_s": 1, "package": "kill", "f": "kill"}, {"at_s": 2, "package": "partition", "f": "start-partition"},
              {"at_s": 3, "package": "kill", "f": "start"}, {"at_s": 4, "package": "partition", "f": "stop-partition"},
              {"at_s": 5, "package": "pause", "f": "resume"}]
    assert [[e["at_s"] for e in fault] for fault in faults_of(events)] == [[1, 3], [2, 4], [5]]


@pytest.mark.parametrize("culprits", [set(), {3}, {0, 7}, {1, 2, 5}])
def test_ddmin_finds_exactly_the_culprits_of_a_monotone_failure(culprits):
    items = list(range(8))
    calls = []

    def fails(subset):
        calls.append(tuple(subset))
        return culprits <= set(subset)

    assert sorted(ddmin(items, fails)) == sorted(culprits)
    assert len(calls) < 2 ** len(items) // 4  # far fewer tests than subsets


def test_ddmin_result_is_one_minimal_for_random_failure_rules():
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng = random.Random(seed)
    for _ in range(30):
        n = rng.randint(1, 9)
        # fails when the subset holds some whole "pattern" of a few random patterns
        patterns = [set(rng.sample(range(n), rng.randint(1, min(3, n)))) for _ in range(rng.randint(1, 3))]

        def fails(subset, patterns=patterns):
            return any(p <= set(subset) for p in patterns)

        result = ddmin(list(range(n)), fails)
        assert fails(result), seed
        for i in range(len(result)):  # no single element can go
            assert not fails(result[:i] + result[i + 1:]), (seed, patterns, result)


def test_ddmin_stops_at_the_budget_with_what_it_has():
    ticks = itertools.count()
    result = ddmin(list(range(16)), lambda s: 5 in s, out_of_budget=lambda: next(ticks) > 3)
    assert 5 in result and len(result) < 16


def test_confirm_keeps_the_smallest_candidate_that_fails_in_every_run():
    rates = {"original": [True, True, True], "half": [True, False, True], "smallest": [False, False, True]}
    runs = {name: iter(outcomes) for name, outcomes in rates.items()}
    asked = []

    def run_fails(candidate):
        asked.append(candidate)
        return next(runs[candidate])

    outcome = confirm(["original", "half", "smallest"], run_fails, tries=3)
    assert outcome == {"candidate": "original", "steps_back": 2, "failed": 3, "runs": 3, "confirmed": True}
    # each candidate stops at its first run without the failure: a majority (2 of 3) no longer confirms
    assert asked == ["smallest", "half", "half", "original", "original", "original"]


def test_confirm_runs_a_candidate_that_keeps_failing_all_its_tries():
    asked = []
    outcome = confirm(["original", "smallest"], lambda c: asked.append(c) or True, tries=3)
    assert outcome["candidate"] == "smallest" and outcome["confirmed"] and asked == ["smallest"] * 3


def test_with_nothing_confirmed_the_smallest_stays_marked_unconfirmed():
    outcome = confirm(["original", "smallest"], lambda c: False, tries=1)
    assert outcome == {"candidate": "smallest", "steps_back": 0, "failed": 0, "runs": 1, "confirmed": False}
    ticks = itertools.count()
    outcome = confirm(["original", "smallest"], lambda c: False, tries=3, out_of_budget=lambda: next(ticks) >= 2)
    assert outcome["candidate"] == "smallest" and not outcome["confirmed"] and outcome["runs"] == 1


def test_with_nothing_confirmed_the_candidate_that_failed_most_often_stays():
    # as in bench/shrink.py (abort.marker.lost, --budget 12m): the smallest failed in 0 of its runs, a larger one
    # in 1 of 2 when the budget ran out; the larger one replays better
    runs = {"original": iter([True]), "larger": iter([True, False]), "smallest": iter([False])}
    ticks = itertools.count()
    outcome = confirm(["original", "larger", "smallest"], lambda c: next(runs[c]), tries=3,
                      out_of_budget=lambda: next(ticks) >= 5)
    assert outcome == {"candidate": "larger", "steps_back": 1, "failed": 1, "runs": 2, "confirmed": False}
