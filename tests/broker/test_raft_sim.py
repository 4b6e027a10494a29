"""Seeded simulations of Raft clusters under faults (broker/raft/sim.py).

Every step of every simulation checks election safety, log matching, leader
completeness, state machine safety and that committed entries are never lost;
each run ends with a liveness check. A failure names its seed; replay it with
`python -m broker.raft.sim --seed N --nodes M`.
"""

from __future__ import annotations

import pytest

from broker.raft import core
from broker.raft.core import PersistentState, RaftConfig
from broker.raft.messages import EntryType, LogEntry
from broker.raft.sim import (
    FaultModel,
    SimulationError,
    Simulator,
    config_for_seed,
    main,
    run_simulation,
)

FAST_SEEDS = 100
SLOW_SEEDS = 2000


@pytest.mark.parametrize("node_count", [3, 5])
def test_safety_and_liveness_under_faults(node_count: int) -> None:
    liveness = []
    for seed in range(FAST_SEEDS):
        report = run_simulation(seed, node_count, fault_ticks=150)
        liveness.append(report.liveness_ticks)
        assert report.committed_entries > 0, f"seed {seed}: nothing was ever committed"
    assert all(ticks is not None for ticks in liveness)


@pytest.mark.slow
@pytest.mark.parametrize("node_count", [3, 5])
def test_safety_and_liveness_under_faults_many_seeds(node_count: int) -> None:
    for seed in range(FAST_SEEDS, FAST_SEEDS + SLOW_SEEDS):
        run_simulation(seed, node_count, fault_ticks=250)


@pytest.mark.slow
def test_safety_under_heavy_faults_many_seeds() -> None:
    heavy = FaultModel(
        drop_probability=0.2,
        duplicate_probability=0.1,
        delay_ticks_max=6,
        crash_probability=0.05,
        leader_crash_probability=0.05,
        restart_probability=0.2,
        partition_probability=0.1,
        leader_isolation_probability=0.05,
        heal_probability=0.1,
        tick_skip_probability=0.1,
        torn_write_probability=0.02,
    )
    for seed in range(3000):
        run_simulation(seed, 3 + 2 * (seed % 2), fault_ticks=300, faults=heavy)


def test_crashes_while_persisting_a_ready_are_survived() -> None:
    torn = FaultModel(torn_write_probability=0.05)
    crashes = 0
    for seed in range(30):
        report = run_simulation(seed, 3, fault_ticks=100, faults=torn)
        crashes += report.crashes
    assert crashes > 30


def test_single_node_cluster_under_crashes() -> None:
    for seed in range(20):
        report = run_simulation(seed, 1, fault_ticks=100)
        assert report.committed_entries > 10


def test_same_seed_same_run() -> None:
    assert run_simulation(7, 5) == run_simulation(7, 5)
    assert run_simulation(7, 5) != run_simulation(8, 5)


def test_config_for_seed_covers_the_options() -> None:
    configs = [config_for_seed(seed) for seed in range(200)]
    assert {c.pre_vote for c in configs} == {True, False}
    assert {c.check_quorum for c in configs} == {True, False}
    assert {c.max_entries_per_append for c in configs} == {1, 2, 4, 64}
    assert {c.max_inflight_appends for c in configs} == {1, 4, 256}


def test_a_quiet_cluster_elects_within_a_few_election_timeouts() -> None:
    for seed in range(50):
        simulator = Simulator(5, seed, faults=FaultModel.none(delay_ticks_max=2))
        for tick in range(1, 101):
            simulator.tick_all()
            if simulator.leader() is not None:
                break
        assert simulator.leader() is not None, simulator.replay_hint()
        assert tick <= 3 * simulator.config.election_timeout_ticks_max


# The checker must not be vacuous: a node with a known safety bug is caught.


def _first_failure(node_count: int, seeds: range) -> SimulationError:
    for seed in seeds:
        try:
            run_simulation(seed, node_count, fault_ticks=150)
        except SimulationError as error:
            return error
    raise AssertionError(f"no seed in {seeds} exposed the injected bug")


def test_simulator_catches_votes_granted_without_the_up_to_date_check(monkeypatch) -> None:
    monkeypatch.setattr(core.RaftNode, "_log_up_to_date", lambda self, index, term: True)
    error = _first_failure(3, range(50))
    text = str(error)
    assert "leader completeness" in text or "state machine safety" in text or "committed entry" in text
    assert "replay with: python -m broker.raft.sim --seed" in text


def test_simulator_catches_a_follower_committing_beyond_its_verified_prefix(monkeypatch) -> None:
    original = core.RaftNode._handle_append_entries

    def commit_too_far(self, message):
        original(self, message)
        if self._role is core.Role.FOLLOWER:
            self._commit_index = max(self._commit_index, min(message.leader_commit, self.last_index))

    monkeypatch.setattr(core.RaftNode, "_handle_append_entries", commit_too_far)
    error = _first_failure(3, range(300))
    assert "seed" in str(error)


def test_simulator_catches_a_forgotten_vote(monkeypatch) -> None:
    original = core.RaftNode._handle_vote_request

    def forget_vote(self, message):
        if isinstance(message, core.RequestVote) and self._role is core.Role.FOLLOWER:
            self._voted_for = None
        original(self, message)

    monkeypatch.setattr(core.RaftNode, "_handle_vote_request", forget_vote)
    error = _first_failure(3, range(50))
    assert "changed its vote" in str(error) or "election safety" in str(error)


def test_replay_command_prints_the_report(capsys) -> None:
    assert main(["--seed", "3", "--nodes", "3", "--fault-ticks", "50"]) == 0
    assert "SimulationReport(seed=3, node_count=3" in capsys.readouterr().out


def test_bad_simulator_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="node_count is 0; accepted: an integer >= 1"):
        Simulator(0, 1)
    with pytest.raises(ValueError, match="FaultModel.drop_probability is 2; accepted: a probability"):
        FaultModel(drop_probability=2)
    simulator = Simulator(3, 1)
    simulator.crash(2)
    with pytest.raises(ValueError, match="node 2 is already down"):
        simulator.crash(2)
    with pytest.raises(ValueError, match="node 1 is running; accepted: a crashed node"):
        simulator.restart(1)


# Figure 8 of the Raft paper, scripted message by message on the simulator.

FIGURE_8_CONFIG = RaftConfig(pre_vote=False, check_quorum=False, max_entries_per_append=1, max_inflight_appends=1)


def _entries(*terms: int) -> tuple[LogEntry, ...]:
    return tuple(LogEntry(i + 1, term, EntryType.DATA, b"t%d" % term) for i, term in enumerate(terms))


def _figure_8() -> Simulator:
    """S1 (log 1 2) becomes leader of term 4, gets entry 2 of term 2 onto S2 and
    S3 but not its own term-4 entry, and crashes; S5 (log 1 3) is then elected
    by S2, S3, S4 and overwrites entry 2 everywhere. Safe only because S1 did
    not count replicas of entry 2 to commit it."""
    states = {
        1: PersistentState(term=3, commit_index=1, entries=_entries(1, 2)),
        2: PersistentState(term=3, commit_index=1, entries=_entries(1)),
        3: PersistentState(term=3, commit_index=1, entries=_entries(1)),
        4: PersistentState(term=3, commit_index=1, entries=_entries(1)),
        5: PersistentState(term=3, voted_for=5, commit_index=1, entries=_entries(1, 3)),
    }
    simulator = Simulator(5, 8, FIGURE_8_CONFIG, FaultModel.none(), initial_states=states, hold_messages=True)
    simulator.campaign(1)
    assert simulator.nodes[1].term == 4
    simulator.deliver_held(lambda m: m.to_id in (2, 3))  # the vote requests S2 and S3 grant
    simulator.drop_held(lambda m: m.to_id in (4, 5))
    simulator.deliver_held()  # the grants: S1 leads term 4 and appends its NO_OP at index 3
    assert simulator.leader() == 1
    simulator.drop_held(lambda m: m.to_id in (4, 5))
    simulator.deliver_held()  # S2, S3 refuse (they lack entry 2)
    simulator.deliver_held()  # S1 probes at index 2
    simulator.deliver_held()  # S2, S3 append entry 2 of term 2
    simulator.deliver_held()  # S1 learns that S1, S2, S3 hold entry 2: a majority of five
    assert [simulator.disks[n].entries[-1].term for n in (1, 2, 3)] == [4, 2, 2]
    simulator.drop_held()  # the NO_OP of term 4 never reaches S2 or S3
    simulator.crash(1)
    simulator.campaign(5)  # term 4: refused, S2 and S3 voted for S1 in term 4
    simulator.deliver_held()
    simulator.deliver_held()
    simulator.campaign(5)  # term 5: S2, S3, S4 grant, as S5's last term 3 beats their 2 and 1
    simulator.deliver_held()
    simulator.deliver_held()
    assert simulator.leader() == 5 and simulator.nodes[5].term == 5
    for _ in range(6):
        simulator.deliver_held()
    return simulator


def test_figure_8_history_is_safe() -> None:
    simulator = _figure_8()
    assert simulator.disks[1].commit_index == 1  # S1 never committed entry 2
    assert [e.term for e in simulator.disks[2].entries] == [1, 3, 5]  # entry 2 of term 2 was overwritten
    assert simulator.nodes[5].commit_index == 3
    simulator.hold_messages = False
    simulator.restart(1)
    simulator.check_liveness(200)
    simulator.check_converged()


def test_figure_8_history_is_caught_when_the_leader_commits_by_counting_old_replicas(monkeypatch) -> None:
    def commit_by_counting(self):
        matches = sorted([self.last_index] + [p.match_index for p in self._progress.values()], reverse=True)
        self._commit_index = max(self._commit_index, matches[self._quorum - 1])

    monkeypatch.setattr(core.RaftNode, "_maybe_commit", commit_by_counting)
    with pytest.raises(SimulationError, match="leader completeness: leader 5 of term 5 lacks entry 2"):
        _figure_8()
