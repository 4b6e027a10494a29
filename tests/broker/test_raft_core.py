"""Unit tests of the Raft core, one rule at a time, driving single nodes with
hand-written messages (and, for multi-node rules, the simulator without faults)."""

from __future__ import annotations

import random

import pytest

from broker.raft.core import (
    HardState,
    NotLeader,
    PersistentState,
    Proposed,
    RaftConfig,
    RaftNode,
    Ready,
    Role,
)
from broker.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    EntryType,
    LogEntry,
    PreVote,
    PreVoteResponse,
    RaftMessage,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
)
from broker.raft.sim import FaultModel, Simulator

CONFIG = RaftConfig(election_timeout_ticks_min=10, election_timeout_ticks_max=20, heartbeat_ticks=2)


def log_of(*terms: int) -> tuple[LogEntry, ...]:
    return tuple(LogEntry(i + 1, term, EntryType.DATA, b"e%d" % (i + 1)) for i, term in enumerate(terms))


def make_node(
    node_id: int = 1,
    voters: tuple[int, ...] = (1, 2, 3),
    state: PersistentState = PersistentState(),
    config: RaftConfig = CONFIG,
    seed: int = 0,
) -> RaftNode:
    return RaftNode(node_id, list(voters), state, random.Random(seed), config)


def drain(node: RaftNode) -> list[Ready]:
    """Play the caller: take and acknowledge every Ready."""
    readies = []
    while node.has_ready():
        ready = node.ready()
        readies.append(ready)
        node.advance(ready)
    return readies


def sent(node: RaftNode) -> list[RaftMessage]:
    return [message for ready in drain(node) for message in ready.messages]


def committed(readies: list[Ready]) -> list[LogEntry]:
    return [entry for ready in readies for entry in ready.committed_entries]


def elect(node: RaftNode) -> None:
    """Make `node` leader by answering its PreVote and RequestVote with grants."""
    node.campaign()
    for message in sent(node):
        if isinstance(message, PreVote):
            node.step(PreVoteResponse(message.term, message.to_id, node.node_id, True))
    for message in sent(node):
        if isinstance(message, RequestVote):
            node.step(RequestVoteResponse(message.term, message.to_id, node.node_id, True))
    assert node.role is Role.LEADER


def run_until(simulator: Simulator, condition, ticks_max: int) -> int:
    for tick in range(1, ticks_max + 1):
        simulator.tick_all()
        if condition():
            return tick
    raise AssertionError(f"condition not met within {ticks_max} ticks; {simulator.replay_hint()}")


# --------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("overrides", "text"),
    [
        ({"election_timeout_ticks_min": 0}, "election_timeout_ticks_min is 0; accepted: an integer >= 1"),
        ({"election_timeout_ticks_max": 5}, "election_timeout_ticks_max is 5; accepted: an integer >= "),
        ({"heartbeat_ticks": 10}, "heartbeat_ticks is 10; accepted: fewer ticks than election_timeout_ticks_min"),
        ({"max_entries_per_append": 0}, "max_entries_per_append is 0"),
        ({"pre_vote": "yes"}, "pre_vote is 'yes'; accepted: True or False"),
    ],
)
def test_bad_config_is_named(overrides: dict, text: str) -> None:
    with pytest.raises(ValueError, match=text):
        RaftConfig(**overrides)


def test_bad_persistent_state_is_named() -> None:
    with pytest.raises(ValueError, match=r"entries\[1\] has index 3; .* so 2 was expected"):
        PersistentState(term=2, entries=(LogEntry(1, 1, EntryType.DATA, b""), LogEntry(3, 1, EntryType.DATA, b"")))
    with pytest.raises(ValueError, match=r"entries\[0\] has term 5"):
        PersistentState(term=2, entries=log_of(5))
    with pytest.raises(ValueError, match="commit_index is 3; accepted: 0 to the last log index 1"):
        PersistentState(term=2, commit_index=3, entries=log_of(1))


def test_bad_constructor_arguments_are_named() -> None:
    with pytest.raises(ValueError, match=r"node_id 4 is not among voters \[1, 2, 3\]"):
        make_node(node_id=4)
    with pytest.raises(ValueError, match="accepted: a non-empty list of distinct node ids"):
        make_node(voters=(1, 1, 2))
    with pytest.raises(ValueError, match="accepted: a random.Random"):
        RaftNode(1, [1], PersistentState(), 42, CONFIG)  # type: ignore[arg-type]


def test_a_message_for_another_node_is_rejected() -> None:
    node = make_node()
    with pytest.raises(ValueError, match="addressed to node 3, not to node 1"):
        node.step(TimeoutNow(1, 2, 3))
    with pytest.raises(ValueError, match="comes from node 9"):
        node.step(TimeoutNow(1, 9, 1))


# -------------------------------------------------------------------- election


def test_election_timeout_is_drawn_from_the_configured_range_and_starts_a_pre_vote() -> None:
    timeouts = set()
    for seed in range(40):
        node = make_node(seed=seed)
        ticks = 0
        while node.role is Role.FOLLOWER:
            node.tick()
            ticks += 1
        timeouts.add(ticks)
        assert node.role is Role.PRE_CANDIDATE
        assert node.term == 0, "a PreVote round must not increment the term"
        pre_votes = [m for m in sent(node) if isinstance(m, PreVote)]
        assert sorted(m.to_id for m in pre_votes) == [2, 3]
        assert all(m.term == 1 for m in pre_votes)
    assert min(timeouts) >= 10 and max(timeouts) <= 20
    assert len(timeouts) > 3, "timeouts must be randomised"


def test_single_node_quorum_elects_itself_and_commits_alone() -> None:
    node = make_node(voters=(1,))
    for _ in range(20):
        node.tick()
    assert node.role is Role.LEADER and node.term == 1
    readies = drain(node)
    assert [e.entry_type for e in committed(readies)] == [EntryType.NO_OP]
    result = node.propose(b"hello")
    assert result == Proposed(index=2, term=1)
    readies = drain(node)
    assert [(e.index, e.data) for e in committed(readies)] == [(2, b"hello")]
    assert readies[0].hard_state == HardState(term=1, voted_for=1, commit_index=2)
    for _ in range(100):
        node.tick()  # CheckQuorum: a quorum of one is always active
    assert node.role is Role.LEADER


def test_pre_vote_majority_leads_to_a_real_election_with_a_new_term() -> None:
    node = make_node()
    node.campaign()
    drain(node)
    node.step(PreVoteResponse(1, 2, 1, True))
    assert node.role is Role.CANDIDATE and node.term == 1 and node.voted_for == 1
    readies = drain(node)
    assert readies[0].hard_state == HardState(term=1, voted_for=1, commit_index=0)
    vote_requests = [m for r in readies for m in r.messages]
    assert vote_requests == [RequestVote(1, 1, 2, 0, 0), RequestVote(1, 1, 3, 0, 0)]
    node.step(RequestVoteResponse(1, 3, 1, True))
    assert node.role is Role.LEADER
    appends = [m for m in sent(node) if isinstance(m, AppendEntries)]
    assert [m.entries for m in appends] == [(LogEntry(1, 1, EntryType.NO_OP, b""),)] * 2


def test_pre_vote_refused_by_a_majority_returns_to_follower_without_a_new_term() -> None:
    node = make_node(state=PersistentState(term=3))
    node.campaign()
    drain(node)
    node.step(PreVoteResponse(3, 2, 1, False))
    node.step(PreVoteResponse(3, 3, 1, False))
    assert node.role is Role.FOLLOWER and node.term == 3


def test_candidate_refused_by_a_majority_becomes_follower() -> None:
    node = make_node(config=RaftConfig(pre_vote=False))
    node.campaign()
    assert node.role is Role.CANDIDATE and node.term == 1
    node.step(RequestVoteResponse(1, 2, 1, False))
    node.step(RequestVoteResponse(1, 3, 1, False))
    assert node.role is Role.FOLLOWER and node.term == 1 and node.voted_for == 1


def test_vote_is_granted_once_per_term_and_persisted_before_the_answer() -> None:
    node = make_node(node_id=2)
    node.step(RequestVote(1, 1, 2, 0, 0))
    readies = drain(node)
    assert readies[0].hard_state == HardState(term=1, voted_for=1, commit_index=0)
    assert readies[0].messages == (RequestVoteResponse(1, 2, 1, True),)
    node.step(RequestVote(1, 3, 2, 5, 1))
    assert sent(node) == [RequestVoteResponse(1, 2, 3, False)]
    node.step(RequestVote(1, 1, 2, 0, 0))  # a retransmission from the same candidate
    assert sent(node) == [RequestVoteResponse(1, 2, 1, True)]


@pytest.mark.parametrize(
    ("last_log_index", "last_log_term", "granted"),
    [
        (3, 2, True),  # same last term, same length
        (4, 2, True),  # same last term, longer
        (2, 2, False),  # same last term, shorter
        (1, 3, True),  # higher last term wins even when shorter
        (9, 1, False),  # lower last term loses even when longer
    ],
)
def test_vote_requires_an_up_to_date_log(last_log_index: int, last_log_term: int, granted: bool) -> None:
    node = make_node(node_id=2, state=PersistentState(term=2, entries=log_of(1, 2, 2)))
    node.step(RequestVote(3, 1, 2, last_log_index, last_log_term))
    assert sent(node) == [RequestVoteResponse(3, 2, 1, granted)]
    assert node.term == 3
    assert node.voted_for == (1 if granted else None)


def test_pre_vote_uses_the_same_up_to_date_check_but_changes_nothing() -> None:
    node = make_node(node_id=2, state=PersistentState(term=2, entries=log_of(1, 2, 2)))
    node.step(PreVote(3, 1, 2, 3, 2))
    node.step(PreVote(3, 3, 2, 2, 2))
    assert sent(node) == [PreVoteResponse(3, 2, 1, True), PreVoteResponse(2, 2, 3, False)]
    assert (node.term, node.voted_for) == (2, None)


# ------------------------------------------------------------------ term rules


def test_leader_steps_down_on_a_higher_term() -> None:
    node = make_node()
    elect(node)
    drain(node)
    node.step(AppendEntriesResponse(5, 2, 1, False, rejected_index=1, conflict_term=0, conflict_index=1))
    assert node.role is Role.FOLLOWER and node.term == 5 and node.voted_for is None and node.leader_id is None
    assert drain(node)[0].hard_state == HardState(term=5, voted_for=None, commit_index=0)


def test_candidate_steps_down_when_a_leader_of_its_term_appears() -> None:
    node = make_node(config=RaftConfig(pre_vote=False))
    node.campaign()
    drain(node)
    node.step(AppendEntries(1, 2, 1, 0, 0, (), 0))
    assert node.role is Role.FOLLOWER and node.leader_id == 2 and node.voted_for == 1
    assert sent(node) == [AppendEntriesResponse(1, 1, 2, True, match_index=0)]


def test_a_stale_leader_is_told_the_current_term() -> None:
    node = make_node(state=PersistentState(term=4))
    node.step(AppendEntries(2, 2, 1, 0, 0, (), 0))
    assert node.term == 4
    [response] = sent(node)
    assert isinstance(response, AppendEntriesResponse) and response.term == 4 and not response.success


def test_messages_of_an_older_term_are_ignored() -> None:
    node = make_node(state=PersistentState(term=4))
    drain(node)
    node.step(RequestVote(3, 2, 1, 10, 3))
    node.step(RequestVoteResponse(3, 2, 1, True))
    assert sent(node) == [] and node.voted_for is None


# --------------------------------------------------------------- replication


def test_follower_truncates_a_conflicting_suffix_and_reports_it_to_persist() -> None:
    node = make_node(node_id=2, state=PersistentState(term=3, commit_index=1, entries=log_of(1, 2, 2, 2)))
    drain(node)
    new = (LogEntry(3, 3, EntryType.DATA, b"x"), LogEntry(4, 3, EntryType.DATA, b"y"), LogEntry(5, 3, EntryType.DATA, b"z"))
    node.step(AppendEntries(3, 1, 2, 2, 2, new, 4))
    [ready] = drain(node)
    assert ready.truncate_from == 3
    assert ready.entries == new
    assert ready.hard_state == HardState(term=3, voted_for=None, commit_index=4)
    assert ready.messages == (AppendEntriesResponse(3, 2, 1, True, match_index=5),)
    assert [e.index for e in ready.committed_entries] == [2, 3, 4]  # entry 1 came out at start
    assert [e.term for e in node.entries()] == [1, 2, 3, 3, 3]


def test_a_reordered_shorter_append_does_not_truncate() -> None:
    node = make_node(node_id=2, state=PersistentState(term=3, entries=log_of(1, 3, 3, 3)))
    drain(node)
    node.step(AppendEntries(3, 1, 2, 1, 1, log_of(1, 3)[1:], 0))
    [ready] = drain(node)
    assert ready.truncate_from is None and ready.entries == ()
    assert node.last_index == 4
    assert ready.messages == (AppendEntriesResponse(3, 2, 1, True, match_index=2),)


def test_follower_commits_only_what_it_has_verified_against_the_leader() -> None:
    # The follower's entries 3 and 4 are leftovers of a deposed leader; the
    # leader's commit index 4 refers to the *leader's* entries 3 and 4.
    node = make_node(node_id=2, state=PersistentState(term=3, entries=log_of(1, 1, 2, 2)))
    node.step(AppendEntries(3, 1, 2, 2, 1, (), 4))
    assert node.commit_index == 2


def test_refusal_carries_the_conflict_hint() -> None:
    node = make_node(node_id=2, state=PersistentState(term=5, entries=log_of(1, 2, 2, 2, 4)))
    node.step(AppendEntries(5, 1, 2, 4, 3, (), 0))
    assert sent(node) == [
        AppendEntriesResponse(5, 2, 1, False, rejected_index=4, conflict_term=2, conflict_index=2)
    ]
    node.step(AppendEntries(5, 1, 2, 9, 5, (), 0))
    assert sent(node) == [
        AppendEntriesResponse(5, 2, 1, False, rejected_index=9, conflict_term=0, conflict_index=6)
    ]


def test_leader_backtracks_a_whole_term_per_refusal() -> None:
    # Leader log terms: 1 1 1 4 4 5 5 6 6 6, then its NO_OP of term 8.
    node = make_node(state=PersistentState(term=7, entries=log_of(1, 1, 1, 4, 4, 5, 5, 6, 6, 6)))
    elect(node)
    drain(node)
    # Follower 2 has 1 1 1 2 2 2 3 3 3 3 3: index 10 is in term 3, which starts at 7.
    node.step(AppendEntriesResponse(8, 2, 1, False, rejected_index=10, conflict_term=3, conflict_index=7))
    [probe] = [m for m in sent(node) if m.to_id == 2]
    assert isinstance(probe, AppendEntries) and probe.prev_log_index == 6  # the leader has no term 3
    node.step(AppendEntriesResponse(8, 2, 1, False, rejected_index=6, conflict_term=2, conflict_index=4))
    [probe] = [m for m in sent(node) if m.to_id == 2]
    assert probe.prev_log_index == 3 and probe.prev_log_term == 1
    assert [e.term for e in probe.entries] == [4, 4, 5, 5, 6, 6, 6, 8]
    node.step(AppendEntriesResponse(8, 2, 1, True, match_index=11))
    assert node.commit_index == 11  # leader and follower 2 are a majority of three


def test_stale_refusal_is_ignored() -> None:
    node = make_node(state=PersistentState(term=1, entries=log_of(1, 1, 1)))
    elect(node)
    drain(node)
    node.step(AppendEntriesResponse(2, 2, 1, True, match_index=4))
    drain(node)
    # A refusal of an old probe at index 1 arrives late: the follower matches up to 4.
    node.step(AppendEntriesResponse(2, 2, 1, False, rejected_index=1, conflict_term=0, conflict_index=1))
    assert sent(node) == []


def test_figure_8_leader_does_not_commit_an_older_term_entry_by_counting_replicas() -> None:
    # Ongaro & Ousterhout 2014, Figure 8: S1 becomes leader of term 4 with
    # entry 2 of term 2 in its log. Entry 2 reaches S2 and S3, a majority of
    # five, yet must not be committed: S5, holding entry 2 of term 3, could
    # still be elected by S2, S3 and S4 and overwrite it.
    s1 = make_node(node_id=1, voters=(1, 2, 3, 4, 5), state=PersistentState(term=3, commit_index=1, entries=log_of(1, 2)))
    elect(s1)
    assert s1.term == 4
    assert [e.term for e in s1.entries()] == [1, 2, 4]  # the NO_OP of term 4
    drain(s1)
    s1.step(AppendEntriesResponse(4, 2, 1, True, match_index=2))
    s1.step(AppendEntriesResponse(4, 3, 1, True, match_index=2))
    readies = drain(s1)
    assert s1.commit_index == 1 and committed(readies) == []
    s1.step(AppendEntriesResponse(4, 2, 1, True, match_index=3))
    assert s1.commit_index == 1  # S1 and S2 only
    s1.step(AppendEntriesResponse(4, 3, 1, True, match_index=3))
    assert s1.commit_index == 3  # the term-4 entry is on a majority: it commits, and entry 2 with it
    assert [(e.index, e.term) for e in committed(drain(s1))] == [(2, 2), (3, 4)]


def test_figure_8_why_entry_2_was_not_safe_s5_can_still_win_and_overwrite_it() -> None:
    s2 = make_node(node_id=2, voters=(1, 2, 3, 4, 5), state=PersistentState(term=4, commit_index=1, entries=log_of(1, 2)))
    s2.step(RequestVote(5, 5, 2, 2, 3))
    assert sent(s2) == [RequestVoteResponse(5, 2, 5, True)]
    s2.step(AppendEntries(5, 5, 2, 1, 1, (LogEntry(2, 3, EntryType.DATA, b"s5"),), 1))
    [ready] = drain(s2)
    assert ready.truncate_from == 2
    assert [(e.index, e.term) for e in s2.entries()] == [(1, 1), (2, 3)]


def test_a_committed_entry_is_never_truncated() -> None:
    node = make_node(node_id=2, state=PersistentState(term=3, commit_index=2, entries=log_of(1, 2)))
    with pytest.raises(AssertionError, match="committed entry 2 has term 2"):
        node.step(AppendEntries(4, 1, 2, 2, 3, (), 2))


# ------------------------------------------------------------ Ready contract


def test_ready_twice_without_advance_is_refused() -> None:
    node = make_node()
    node.ready()
    with pytest.raises(ValueError, match="before advance"):
        node.ready()


def test_truncation_between_ready_and_advance_is_persisted_next() -> None:
    node = make_node(node_id=2, state=PersistentState(term=2, entries=log_of(1)))
    drain(node)
    node.step(AppendEntries(2, 1, 2, 1, 1, (LogEntry(2, 2, EntryType.DATA, b"a"), LogEntry(3, 2, EntryType.DATA, b"b")), 0))
    first = node.ready()
    assert [e.index for e in first.entries] == [2, 3] and first.truncate_from is None
    # Before the caller acknowledges, a new leader of term 3 replaces entry 3.
    node.step(AppendEntries(3, 3, 2, 2, 2, (LogEntry(3, 3, EntryType.DATA, b"c"),), 0))
    node.advance(first)
    second = node.ready()
    assert second.truncate_from == 3 and [(e.index, e.term) for e in second.entries] == [(3, 3)]
    node.advance(second)
    assert not node.has_ready()


def test_committed_entries_come_out_once_and_hard_state_only_when_changed() -> None:
    node = make_node(voters=(1,))
    node.campaign()
    first = drain(node)
    assert first[0].hard_state is not None
    node.tick()
    assert drain(node) == []  # nothing changed: no Ready at all
    node.propose(b"a")
    node.propose(b"b")
    assert [e.data for e in committed(drain(node))] == [b"a", b"b"]


def test_restart_reapplies_the_committed_log_and_keeps_term_and_vote() -> None:
    state = PersistentState(term=6, voted_for=3, commit_index=2, entries=log_of(1, 5, 6))
    node = make_node(state=state)
    [ready] = drain(node)
    assert ready.hard_state is None and ready.entries == ()
    assert [e.index for e in ready.committed_entries] == [1, 2]
    assert (node.term, node.voted_for, node.role) == (6, 3, Role.FOLLOWER)
    node.step(RequestVote(6, 2, 1, 3, 6))
    assert sent(node) == [RequestVoteResponse(6, 1, 2, False)]  # already voted for 3 in term 6


def test_propose_on_a_follower_names_the_leader() -> None:
    node = make_node(node_id=2)
    assert node.propose(b"x") == NotLeader(None)
    node.step(AppendEntries(1, 3, 2, 0, 0, (), 0))
    assert node.propose(b"x") == NotLeader(3)
    with pytest.raises(ValueError, match="data is str; accepted: bytes"):
        node.propose("x")  # type: ignore[arg-type]


# ------------------------------------------- PreVote, CheckQuorum, transfer


def quiet_simulator(node_count: int, config: RaftConfig, seed: int = 1) -> Simulator:
    return Simulator(node_count, seed, config, FaultModel.none(delay_ticks_max=1))


@pytest.mark.parametrize("check_quorum", [True, False])
def test_pre_vote_keeps_a_partitioned_node_from_disrupting_the_quorum(check_quorum: bool) -> None:
    config = RaftConfig(pre_vote=True, check_quorum=check_quorum)
    simulator = quiet_simulator(3, config)
    run_until(simulator, lambda: simulator.leader() is not None, 100)
    leader_id = simulator.leader()
    leader_term = simulator.nodes[leader_id].term
    outsider = next(n for n in simulator.voters if n != leader_id)
    simulator.partition([outsider], [n for n in simulator.voters if n != outsider])
    for _ in range(200):
        simulator.tick_all()
    assert simulator.nodes[outsider].term == leader_term, "PreVote must not let a cut-off node raise its term"
    simulator.heal()
    for _ in range(100):
        simulator.tick_all()
    assert simulator.leader() == leader_id and simulator.nodes[leader_id].term == leader_term
    assert simulator.nodes[outsider].leader_id == leader_id


def test_without_pre_vote_a_rejoining_node_disrupts_the_quorum() -> None:
    config = RaftConfig(pre_vote=False, check_quorum=False)
    simulator = quiet_simulator(3, config)
    run_until(simulator, lambda: simulator.leader() is not None, 100)
    leader_id = simulator.leader()
    leader_term = simulator.nodes[leader_id].term
    outsider = next(n for n in simulator.voters if n != leader_id)
    simulator.partition([outsider], [n for n in simulator.voters if n != outsider])
    for _ in range(200):
        simulator.tick_all()
    assert simulator.nodes[outsider].term > leader_term + 5
    simulator.heal()
    run_until(simulator, lambda: simulator.leader() is not None and simulator.nodes[simulator.leader()].term > leader_term, 100)


def test_check_quorum_makes_a_cut_off_leader_step_down() -> None:
    simulator = quiet_simulator(3, RaftConfig(check_quorum=True))
    run_until(simulator, lambda: simulator.leader() is not None, 100)
    leader_id = simulator.leader()
    term = simulator.nodes[leader_id].term
    simulator.partition([leader_id], [n for n in simulator.voters if n != leader_id])
    ticks = run_until(simulator, lambda: simulator.nodes[leader_id].role is not Role.LEADER, 100)
    assert ticks <= 2 * CONFIG.election_timeout_ticks_min
    assert simulator.nodes[leader_id].term == term  # it steps down without a new term


def test_without_check_quorum_a_cut_off_leader_stays_leader() -> None:
    simulator = quiet_simulator(3, RaftConfig(check_quorum=False))
    run_until(simulator, lambda: simulator.leader() is not None, 100)
    leader_id = simulator.leader()
    simulator.partition([leader_id], [n for n in simulator.voters if n != leader_id])
    for _ in range(100):
        simulator.tick_all()
    assert simulator.nodes[leader_id].role is Role.LEADER


def test_check_quorum_leader_stays_while_a_majority_answers() -> None:
    simulator = quiet_simulator(5, RaftConfig(check_quorum=True))
    run_until(simulator, lambda: simulator.leader() is not None, 100)
    leader_id = simulator.leader()
    others = [n for n in simulator.voters if n != leader_id]
    simulator.partition([leader_id, others[0], others[1]], others[2:])
    for _ in range(200):
        simulator.tick_all()
    assert simulator.leader() == leader_id


def test_leadership_transfer_hands_over_to_the_target() -> None:
    simulator = quiet_simulator(3, CONFIG)
    run_until(simulator, lambda: simulator.leader() is not None, 100)
    leader_id = simulator.leader()
    term = simulator.nodes[leader_id].term
    target = next(n for n in simulator.voters if n != leader_id)
    simulator.nodes[leader_id].transfer_leadership(target)
    assert simulator.propose(leader_id, b"during transfer") == NotLeader(None)
    simulator.deliver_due()
    run_until(simulator, lambda: simulator.leader() == target, 20)
    assert simulator.nodes[target].term == term + 1


def test_transfer_leadership_validates_its_target() -> None:
    node = make_node()
    with pytest.raises(ValueError, match="not leader; only a leader transfers leadership"):
        node.transfer_leadership(2)
    with pytest.raises(ValueError, match="target_id 7 is not a peer"):
        node.transfer_leadership(7)


def test_advance_refuses_a_ready_it_did_not_hand_out() -> None:
    node = make_node()
    node.ready()
    other = make_node().ready()
    with pytest.raises(ValueError, match="not the one last returned by ready"):
        node.advance(other)


def test_a_follower_that_hears_its_leader_ignores_higher_term_votes() -> None:
    node = make_node(node_id=2)
    node.step(AppendEntries(1, 1, 2, 0, 0, (), 0))
    drain(node)
    node.step(RequestVote(2, 3, 2, 5, 1))
    node.step(PreVote(2, 3, 2, 5, 1))
    assert sent(node) == [] and node.term == 1  # leader stickiness: not even the term moves
    for _ in range(CONFIG.election_timeout_ticks_min):
        node.tick()  # no word from the leader for a minimum election timeout
    drain(node)
    node.step(PreVote(2, 3, 2, 5, 1))
    assert sent(node) == [PreVoteResponse(2, 2, 3, True)]


def test_a_leadership_transfer_vote_is_not_ignored() -> None:
    node = make_node(node_id=2)
    node.step(AppendEntries(1, 1, 2, 0, 0, (), 0))
    drain(node)
    node.step(RequestVote(2, 3, 2, 0, 0, leadership_transfer=True))
    assert sent(node) == [RequestVoteResponse(2, 2, 3, True)]


def test_without_check_quorum_there_is_no_leader_stickiness() -> None:
    node = make_node(node_id=2, config=RaftConfig(check_quorum=False))
    node.step(AppendEntries(1, 1, 2, 0, 0, (), 0))
    drain(node)
    node.step(RequestVote(2, 3, 2, 0, 0))
    assert sent(node) == [RequestVoteResponse(2, 2, 3, True)]


def test_heartbeats_are_empty_appends_carrying_the_commit_index() -> None:
    node = make_node(voters=(1, 2))
    elect(node)
    drain(node)
    node.step(AppendEntriesResponse(1, 2, 1, True, match_index=1))
    assert node.commit_index == 1
    drain(node)
    for _ in range(CONFIG.heartbeat_ticks):
        node.tick()
    assert sent(node) == [AppendEntries(1, 1, 2, 1, 1, (), 1)]


def test_pipelining_stops_at_max_inflight_appends() -> None:
    config = RaftConfig(max_entries_per_append=1, max_inflight_appends=2)
    node = make_node(voters=(1, 2), config=config)
    elect(node)
    drain(node)
    node.step(AppendEntriesResponse(1, 2, 1, True, match_index=1))  # follower 2 replicates from now on
    drain(node)
    for i in range(5):
        node.propose(b"p%d" % i)
    appends = [m for m in sent(node) if isinstance(m, AppendEntries)]
    assert [[e.index for e in m.entries] for m in appends] == [[2], [3]]
    node.step(AppendEntriesResponse(1, 2, 1, True, match_index=2))
    appends = [m for m in sent(node) if isinstance(m, AppendEntries)]
    assert [[e.index for e in m.entries] for m in appends] == [[4]]
