"""Fault schedules drawn by Hypothesis for the simulated cluster, and shrunk to a minimal one when they break it.

Each example is a seed and an explicit schedule (broker.sim.workload's
`Fault`s: a crash or a partition of one node at a virtual time, healed some
seconds later, one at a time), run in this process by `simulate` on the real
broker; the property is that every replication invariant holds after every
step (broker/sim/invariants.py) and that the queue checker finds the history
valid. Since the simulation is deterministic, an example that fails fails
again on every run, which is what lets Hypothesis shrink it (as
TigerBeetle's VOPR and FoundationDB's simulator make a failing seed replay;
here the schedule itself is the input, so it also gets smaller). Times are
whole tenths of a second (half seconds in the shrink test) drawn as
integers, so they shrink towards 0 and print readably.

What the tests show: a few drawn schedules on the correct broker keep every
invariant and a valid history; with the planted bug
`logquake.debug.skip.truncation`, Hypothesis finds a schedule that breaks
`committed-records-kept` and shrinks it to one or two partitions (a leader
cut off long enough to be replaced, its divergent tail then kept).
"""

from __future__ import annotations

import os
import random
import sys

import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st

from broker.sim.workload import FAULTS, Fault, SimOptions, simulate

# Long enough for a cut-off leader to be replaced, healed and fetch again within the run: at 6 s no drawn
# schedule of 24 broke the invariant with the planted bug; at 10 s, 3 of 16 random draws did (each about 1 s of
# wall time), so 30 examples miss it with probability about 0.81**30, under 0.2%.
DURATION_S = 10.0
NODES = 3
SMALL = {"consumers": 1}  # three partitions (each node leads one), two producers, one consumer


def schedules(per_s: int, min_size: int = 0):
    """Up to three faults, each at 0 to 6 s and held 0.5 to 6 s, on a grid of `per_s` steps a second (drawn as
    whole steps, so times shrink towards 0 and print readably)."""
    def times(low_s: float):
        return st.integers(min_value=round(low_s * per_s), max_value=6 * per_s).map(lambda steps: steps / per_s)

    faults = st.builds(Fault, at_s=times(0.0), kind=st.sampled_from(FAULTS), node=st.integers(1, NODES),
                       hold_s=times(0.5))
    return st.lists(faults, min_size=min_size, max_size=3).map(tuple)


cases = st.tuples(st.integers(min_value=0, max_value=2**31 - 1), schedules(per_s=10))


def faulty_cases(base_seed: int):
    """Cases for the shrink test: a seed near `base_seed` (drawn at random by the test and printed) and at least one
    fault (Hypothesis tries the empty schedule and other simple ones first, which cannot break anything).

    The seed is an offset of at most 7 from the base: shrinking a seed drawn from the whole 31-bit range took most of
    the shrinker's runs (a failure depends on the seed chaotically, so each smaller seed had to be tried) and once
    hit Hypothesis's five-minute shrink limit in CI (322 s); the schedule is what the test shrinks. Its times are
    whole half seconds, not tenths: the shrinker lowers a time one step at a time near the minimum, and with
    tenths it spent about 20 of its 97 runs (each a simulation of about 1 s) on steps of 0.1 s (base seed
    1782444475: a partition moved from 0.6 s to 0.0 s, held from 4.1 s to 4.7 s, and back down).
    """
    return st.tuples(st.integers(min_value=0, max_value=7).map(lambda offset: base_seed + offset),
                     schedules(per_s=2, min_size=1))


def run(case, **properties) -> tuple[str, dict]:
    seed, schedule = case
    return simulate(SimOptions(seed=seed, nodes=NODES, duration_s=DURATION_S, schedule=schedule,
                               properties=properties, **SMALL))


def queue_verdict(text: str) -> dict:
    import json

    from checkers.history import History
    from checkers.queue import check

    return check(History.from_dicts([json.loads(line) for line in text.splitlines()]), delivery="at-least-once",
                 acks="all")


@pytest.mark.slow
@settings(max_examples=4, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases)
def test_drawn_fault_schedules_keep_every_invariant_and_a_valid_history_on_the_correct_broker(case):
    text, summary = run(case)
    invariants = summary["invariants"]
    assert invariants["violation_counts"] == {}, (case, invariants["violations"])
    verdict = queue_verdict(text)
    assert verdict["valid"] is True, (case, verdict["anomaly_types"])


@pytest.mark.slow
def test_hypothesis_shrinks_a_schedule_that_breaks_an_invariant_to_one_or_two_faults_with_a_partition():
    """Hypothesis finds a schedule that breaks `committed-records-kept` under the planted bug and shrinks it.

    One seed decides the run: the base of the simulation seeds (each case's seed is the base plus at most 7) and
    Hypothesis's own draws (`find(random=...)`). It is drawn at random and printed; `LOGQUAKE_SHRINK_SEED=<seed>`
    replays that run exactly. A single partition breaks it on most seeds but not on all, so the minimum is one or two
    faults, one of them a partition (a leader cut off while it appends is what makes a divergent tail); on base seed
    1478384266 it was a partition of node 1 and then a crash of it (CI, 2026-12-07: neither alone broke the invariant
    on that seed, both together did, and the correct broker held it under both).

    Cost and trade-off: a simulation of this shape takes about 1 s of wall time (0.4 to 2.5 s); the test ran 21, 32
    and 53 of them (34 to 62 s). Two things keep it there. `find` runs only Hypothesis's generate and shrink phases:
    with its default phases, every example after the first that broke the invariant ran under the explain phase's
    line tracer (`sys.settrace` on Python 3.11, hypothesis.internal.scrutineer), 6 to 8 times slower (7 to 15 s a
    simulation), and the test ran into Hypothesis's five-minute shrink limit (312 to 327 s in CI); that phase
    reports which lines only failing examples ran, which `find` (whose "failure" is the condition holding) never
    shows. And the shrink test's times are whole half seconds (`faulty_cases`): with tenths base seed 1782444475
    took 97 runs (124 s), with halves 53 (62 s). What is given up: the minimal schedule's times are minimal only to
    half a second (a hold of 3.0 s may also break it at 2.6 s), which no assertion looks at; the shrink budget
    (Hypothesis's own) and the assertions are unchanged, so the test still fails when no failing schedule is found
    or when it does not shrink to one or two partitions.
    """
    base_seed = int(os.environ.get("LOGQUAKE_SHRINK_SEED") or random.SystemRandom().randrange(2**31 - 8))
    print(f"base seed {base_seed} (replay: LOGQUAKE_SHRINK_SEED={base_seed})", file=sys.stderr)
    tried, failing = [], []

    def breaks(case) -> bool:
        _, summary = run(case, **{"logquake.debug.skip.truncation": "true"})
        tried.append(case)
        broken = bool(summary["invariants"]["violation_counts"].get("committed-records-kept"))
        if broken:
            failing.append(case)
        return broken

    minimal = find(faulty_cases(base_seed), breaks, random=random.Random(base_seed),
                   settings=settings(max_examples=60, deadline=None, database=None,
                                     phases=[Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck)))
    seed, schedule = minimal
    first_seed, first_schedule = failing[0]
    print(f"base seed {base_seed}; first failing case: seed {first_seed}, schedule {first_schedule}; "
          f"minimal after {len(tried)} runs: seed {seed}, schedule {schedule}", file=sys.stderr)
    assert 1 <= len(schedule) <= 2 and any(fault.kind == "partition" for fault in schedule), minimal
    assert len(schedule) <= len(first_schedule) and seed <= first_seed
    assert sum(f.at_s + f.hold_s for f in schedule) <= sum(f.at_s + f.hold_s for f in first_schedule)
    assert breaks(minimal), "the minimal case breaks the invariant again when replayed"
    _, summary = run(minimal)
    assert summary["invariants"]["violation_counts"] == {}, "the correct broker holds under the same schedule"
