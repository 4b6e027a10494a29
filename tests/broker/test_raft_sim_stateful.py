"""Hypothesis drives the Raft simulator with fault schedules it chooses, and
shrinks any failing schedule to a short one (the fault schedule as data, as
the design's replay-and-shrink direction asks). Every step checks the safety
invariants; the end of every schedule checks liveness and convergence."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule, run_state_machine_as_test

from broker.raft.sim import FaultModel, Simulator, config_for_seed


class RaftSchedule(RuleBasedStateMachine):
    """One simulated cluster; each rule is one nemesis or client action."""

    @initialize(
        seed=st.integers(min_value=0, max_value=2**32),
        node_count=st.sampled_from([3, 5]),
        loss=st.sampled_from([0.0, 0.05, 0.3]),
    )
    def start(self, seed: int, node_count: int, loss: float) -> None:
        faults = dataclasses.replace(
            FaultModel.none(delay_ticks_max=3, propose_probability=0.5),
            drop_probability=loss,
            duplicate_probability=0.05,
            tick_skip_probability=0.05,
            torn_write_probability=0.01,
        )
        self.simulator = Simulator(node_count, seed, config_for_seed(seed), faults)
        self.proposals = 0

    def _running(self) -> list[int]:
        return [n for n, node in self.simulator.nodes.items() if node is not None]

    def _crashed(self) -> list[int]:
        return [n for n, node in self.simulator.nodes.items() if node is None]

    @rule(ticks=st.integers(min_value=1, max_value=40))
    def tick(self, ticks: int) -> None:
        # Rounds with client load; the faults themselves are the other rules.
        for _ in range(ticks):
            self.simulator.run_round()

    @rule(data=st.data())
    def crash(self, data) -> None:
        running = self._running()
        if running:
            self.simulator.crash(data.draw(st.sampled_from(running), label="crash"))

    @rule()
    def crash_leader(self) -> None:
        leader_id = self.simulator.leader()
        if leader_id is not None:
            self.simulator.crash(leader_id)

    @rule(data=st.data())
    def restart(self, data) -> None:
        crashed = self._crashed()
        if crashed:
            self.simulator.restart(data.draw(st.sampled_from(crashed), label="restart"))

    @rule(data=st.data())
    def partition(self, data) -> None:
        nodes = list(self.simulator.voters)
        side = data.draw(st.sets(st.sampled_from(nodes), min_size=1, max_size=len(nodes) - 1), label="side")
        self.simulator.partition(sorted(side), [n for n in nodes if n not in side])

    @rule(data=st.data())
    def block(self, data) -> None:
        nodes = list(self.simulator.voters)
        from_id = data.draw(st.sampled_from(nodes), label="from")
        to_id = data.draw(st.sampled_from([n for n in nodes if n != from_id]), label="to")
        self.simulator.block(from_id, to_id)

    @rule()
    def heal(self) -> None:
        self.simulator.heal()

    @rule(data=st.data(), count=st.integers(min_value=1, max_value=5))
    def propose(self, data, count: int) -> None:
        running = self._running()
        if not running:
            return
        leaders = [n for n in running if self.simulator.nodes[n].leader_id == n]
        target = data.draw(st.sampled_from(leaders or running), label="propose to")
        for _ in range(count):
            if self.simulator.nodes[target] is None:
                break
            self.proposals += 1
            self.simulator.propose(target, b"p%d" % self.proposals)

    def teardown(self) -> None:
        simulator = getattr(self, "simulator", None)
        if simulator is None:
            return  # the schedule failed before the cluster started
        simulator.check_liveness(simulator.liveness_bound_ticks())
        simulator.check_converged()


fast = settings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
RaftScheduleFast = RaftSchedule.TestCase
RaftScheduleFast.settings = fast


@pytest.mark.slow
def test_many_hypothesis_schedules() -> None:
    run_state_machine_as_test(
        RaftSchedule,
        settings=settings(
            max_examples=1500,
            stateful_step_count=60,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        ),
    )
