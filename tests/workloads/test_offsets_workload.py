"""The offsets workload's generator: one committer per group, counting up, a new group after
`commits_per_group` commits or for a new process; the final read names every group handed out."""

from __future__ import annotations

import pickle
import random

import pytest

from workloads.core import workload_kinds
from workloads.offsets import GROUP_PREFIX, OffsetsWorkload


def test_each_process_counts_up_in_its_own_group_and_moves_on_after_the_last_commit():
    w = OffsetsWorkload(commits_per_group=3, run_token="t")
    rng = random.Random(1)
    ops = [(p, w.next_op(rng, p).value) for p in (0, 1, 0, 0, 1, 0)]
    assert ops == [(0, ["logquake-offsets-t-0", 1]), (1, ["logquake-offsets-t-1", 1]),
                   (0, ["logquake-offsets-t-0", 2]), (0, ["logquake-offsets-t-0", 3]),
                   (1, ["logquake-offsets-t-1", 2]), (0, ["logquake-offsets-t-2", 1])]
    # a replaced process (a new number) starts a group of its own: no two committers share one
    assert w.next_op(rng, 7).value == ["logquake-offsets-t-3", 1]
    [final] = w.final_ops()
    assert final.f == "offset-fetch" and final.extra["final"] is True
    assert final.value == [f"logquake-offsets-t-{g}" for g in range(4)]


def test_two_runs_never_share_a_group_name():
    a, b = OffsetsWorkload(), OffsetsWorkload()
    assert a.group_prefix != b.group_prefix and a.group_prefix.startswith(GROUP_PREFIX)


def test_a_client_process_copy_keeps_the_settings_but_not_the_generator():
    w = OffsetsWorkload(commits_per_group=5, run_token="t")
    w.next_op(random.Random(1), 0)
    copy = pickle.loads(pickle.dumps(w))
    assert (copy.commits_per_group, copy.group_prefix) == (5, w.group_prefix)
    assert copy.final_ops()[0].value == []


def test_the_option_is_declared_and_checked():
    kind = workload_kinds()["offsets"]
    assert kind.settle(kind.deliveries[0], "confluent", {})["commits_per_group"] == 20
    with pytest.raises(ValueError, match="--commits-per-group must be at least 1"):
        OffsetsWorkload(commits_per_group=0)
    with pytest.raises(ValueError, match="runs on --client confluent"):
        kind.settle(kind.deliveries[0], "kafka-python", {})
