"""The Raft core of the controller quorum: a pure, deterministic state machine.

`RaftNode` is Raft with nothing around it: no I/O, no clock, no threads, no
asyncio. Time is `tick()` (a logical unit the caller chooses, e.g. 100 ms);
randomness is the `random.Random` passed in (election timeouts only). Events
go in (`tick`, `step`, `propose`, `campaign`, `transfer_leadership`); what the
caller must do comes out as a `Ready` (the structure of etcd's raft library):

    while node.has_ready():
        ready = node.ready()
        1. persist, and fsync:  delete log entries >= ready.truncate_from (if set),
                                append ready.entries, store ready.hard_state (if set)
        2. send ready.messages  (only after step 1 is durable)
        3. apply ready.committed_entries to the state machine, in order,
           skipping EntryType.NO_OP entries
        node.advance(ready)

THE PERSISTENCE CONTRACT: the entries and hard state of a Ready must be durable
(fsynced) before any message of the same Ready leaves the node, and before its
committed entries are applied. Write them atomically (one WAL batch, as etcd
does), or in this order, which survives a crash at any point: term and vote,
then the truncation and the entries, then the commit index (a torn write then
leaves a state a restart accepts, and nothing was sent that depends on it). A vote or an append acknowledgement that is sent and then
forgotten in a crash breaks election safety and commitment. Committed entries
may refer to entries of the same Ready, which is safe only under this order.
Only one Ready is outstanding at a time: `ready()` again before `advance()` is
an error. Inputs may be given between `ready()` and `advance()`; their effects
come out in the next Ready.

Kafka / KRaft names (KIP-595): term = epoch, commit index = high watermark,
voters = `controller.quorum.voters`.

What it implements (Ongaro & Ousterhout, "In Search of an Understandable
Consensus Algorithm", USENIX ATC 2014, Figure 2 and §5; Ongaro, "Consensus:
Bridging Theory and Practice", PhD thesis, Stanford 2014):
- leader election with randomised timeouts and the log up-to-date check (§5.2, §5.4.1);
- log replication with the consistency check and conflict truncation (§5.3),
  backtracking by the conflict hint (one term per round trip), then optimistic
  pipelining once a follower's log is known to match (etcd's probe/replicate);
- a leader commits only entries of its own term by counting replicas (§5.4.2,
  Figure 8), and appends a NO_OP entry when elected so that it can (§8);
- PreVote (thesis §9.6): a node whose election timer fires first asks whether it
  could win, without incrementing its term, so a node rejoining from a partition
  does not disrupt a working quorum;
- CheckQuorum (thesis §6.2 and §9.6): a leader that has not heard from a majority
  within an election timeout steps down; and while a follower hears from a
  leader (within the minimum election timeout) it ignores vote requests of
  higher terms (leader stickiness, thesis §4.2.3);
- leadership transfer with TimeoutNow (thesis §3.10).
Not implemented: membership changes, snapshots and log compaction (the log
starts at index 1 and is kept whole), leader leases, read-index reads.

Invariants (asserted after every input; a broken one is an AssertionError):
commit index never decreases and never passes the last log index; applied
index <= commit index; entries are contiguous from index 1 with non-decreasing
terms no greater than the current term; an entry at or below the commit index
is never truncated; a leader never truncates its own log; at most one vote per
term; a candidate has voted for itself; a leader knows itself as leader.

Thread-safety: none. A `RaftNode` belongs to one task; calls must not overlap.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field

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

__all__ = [
    "HardState",
    "NotLeader",
    "PersistentState",
    "ProposeResult",
    "Proposed",
    "RaftConfig",
    "RaftNode",
    "Ready",
    "Role",
    "SoftState",
]


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(frozen=True)
class RaftConfig:
    """Timing and flow-control settings, in ticks and entries.

    An election timeout is drawn uniformly from
    [election_timeout_ticks_min, election_timeout_ticks_max] each time a timer is
    reset. The leader sends a heartbeat every `heartbeat_ticks`, which must be
    well below the minimum election timeout. `max_entries_per_append` bounds one
    AppendEntries; `max_inflight_appends` bounds the unacknowledged
    AppendEntries a leader pipelines to one follower.
    """

    election_timeout_ticks_min: int = 10
    election_timeout_ticks_max: int = 20
    heartbeat_ticks: int = 1
    pre_vote: bool = True
    check_quorum: bool = True
    max_entries_per_append: int = 64
    max_inflight_appends: int = 256

    def __post_init__(self) -> None:
        for name in ("election_timeout_ticks_min", "heartbeat_ticks", "max_entries_per_append", "max_inflight_appends"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"RaftConfig.{name} is {value!r}; accepted: an integer >= 1")
        maximum = self.election_timeout_ticks_max
        if not isinstance(maximum, int) or isinstance(maximum, bool) or maximum < self.election_timeout_ticks_min:
            raise ValueError(
                f"RaftConfig.election_timeout_ticks_max is {maximum!r}; accepted: an integer >= "
                f"election_timeout_ticks_min ({self.election_timeout_ticks_min})"
            )
        if self.heartbeat_ticks >= self.election_timeout_ticks_min:
            raise ValueError(
                f"RaftConfig.heartbeat_ticks is {self.heartbeat_ticks}; accepted: fewer ticks than "
                f"election_timeout_ticks_min ({self.election_timeout_ticks_min}), or followers time out "
                "between heartbeats"
            )
        for name in ("pre_vote", "check_quorum"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"RaftConfig.{name} is {getattr(self, name)!r}; accepted: True or False")


@dataclass(frozen=True)
class HardState:
    """The state that must be durable before messages are sent (paper Figure 2:
    currentTerm, votedFor; plus the commit index, so a restart re-applies no
    less than it knew to be committed)."""

    term: int = 0
    voted_for: int | None = None
    commit_index: int = 0


@dataclass(frozen=True)
class PersistentState:
    """What a node finds on its disk when it starts: hard state and log."""

    term: int = 0
    voted_for: int | None = None
    commit_index: int = 0
    entries: tuple[LogEntry, ...] = ()

    def __post_init__(self) -> None:
        if self.term < 0:
            raise ValueError(f"PersistentState.term is {self.term}; accepted: >= 0")
        previous_term = 0
        for position, entry in enumerate(self.entries):
            if entry.index != position + 1:
                raise ValueError(
                    f"PersistentState.entries[{position}] has index {entry.index}; the log must be "
                    f"contiguous from index 1, so {position + 1} was expected"
                )
            if not previous_term <= entry.term <= self.term:
                raise ValueError(
                    f"PersistentState.entries[{position}] has term {entry.term}; accepted: between the "
                    f"previous entry's term {previous_term} and the current term {self.term}"
                )
            previous_term = entry.term
        if not 0 <= self.commit_index <= len(self.entries):
            raise ValueError(
                f"PersistentState.commit_index is {self.commit_index}; accepted: 0 to the last log "
                f"index {len(self.entries)}"
            )


@dataclass(frozen=True)
class SoftState:
    """Volatile state the caller may want to observe (not persisted)."""

    role: Role
    leader_id: int | None


@dataclass(frozen=True)
class Ready:
    """One batch of work for the caller; see the module docstring for the order.

    `truncate_from`: if set, delete persisted entries with index >= it before
    appending `entries` (it is then `entries[0].index`). `entries` always
    continue the persisted log (after the truncation). `hard_state` is None when
    unchanged since the last Ready.
    """

    soft_state: SoftState
    hard_state: HardState | None
    truncate_from: int | None
    entries: tuple[LogEntry, ...]
    messages: tuple[RaftMessage, ...]
    committed_entries: tuple[LogEntry, ...]

    @property
    def must_sync(self) -> bool:
        """Whether this Ready has anything to persist (and so to fsync)."""
        return bool(self.entries) or self.hard_state is not None or self.truncate_from is not None


@dataclass(frozen=True)
class Proposed:
    """The leader appended the proposal at `index` in `term`. It is committed when
    an entry with this index and term comes out in `committed_entries`; if an
    entry of another term comes out at this index instead, the proposal was lost."""

    index: int
    term: int


@dataclass(frozen=True)
class NotLeader:
    """This node is not the leader (or is handing leadership over); `leader_id`
    is the leader it knows of, if any."""

    leader_id: int | None


ProposeResult = Proposed | NotLeader


class _ReplicationState(enum.Enum):
    # PROBE: the follower's match is unknown; one AppendEntries per heartbeat
    # until one succeeds. REPLICATE: the follower's log is known to match up to
    # match_index; appends are pipelined and next_index advances optimistically.
    PROBE = "probe"
    REPLICATE = "replicate"


@dataclass
class _Progress:
    """The leader's view of one follower (paper Figure 2: nextIndex, matchIndex)."""

    next_index: int
    match_index: int = 0
    state: _ReplicationState = _ReplicationState.PROBE
    probe_sent: bool = False
    recent_active: bool = False
    inflight_last_indexes: list[int] = field(default_factory=list)

    def become_probe(self, next_index: int) -> None:
        self.state = _ReplicationState.PROBE
        self.next_index = next_index
        self.probe_sent = False
        self.inflight_last_indexes.clear()

    def become_replicate(self) -> None:
        self.state = _ReplicationState.REPLICATE
        self.next_index = self.match_index + 1
        self.probe_sent = False
        self.inflight_last_indexes.clear()


class RaftNode:
    """One member of a Raft quorum. See the module docstring for the protocol."""

    def __init__(
        self,
        node_id: int,
        voters: list[int],
        storage_state: PersistentState,
        rng: random.Random,
        config: RaftConfig,
        applied_index: int = 0,
    ) -> None:
        voter_list = list(voters)
        if not voter_list or len(set(voter_list)) != len(voter_list):
            raise ValueError(f"voters is {voters!r}; accepted: a non-empty list of distinct node ids")
        if node_id not in voter_list:
            raise ValueError(
                f"node_id {node_id} is not among voters {voter_list}; accepted: one of the voters "
                "(observers are not supported by this core)"
            )
        if not isinstance(storage_state, PersistentState):
            raise ValueError(f"storage_state is {storage_state!r}; accepted: a PersistentState")
        if storage_state.voted_for is not None and storage_state.voted_for not in voter_list:
            raise ValueError(
                f"storage_state.voted_for is {storage_state.voted_for}; accepted: None or one of voters {voter_list}"
            )
        if not isinstance(rng, random.Random):
            raise ValueError(f"rng is {rng!r}; accepted: a random.Random (seeded, for determinism)")
        if not isinstance(config, RaftConfig):
            raise ValueError(f"config is {config!r}; accepted: a RaftConfig")
        if not 0 <= applied_index <= storage_state.commit_index:
            raise ValueError(
                f"applied_index is {applied_index}; accepted: 0 to the persisted commit index "
                f"{storage_state.commit_index}"
            )
        self._id = node_id
        self._voters = tuple(sorted(voter_list))
        self._peers = tuple(v for v in self._voters if v != node_id)
        self._quorum = len(self._voters) // 2 + 1
        self._rng = rng
        self._config = config

        self._term = storage_state.term
        self._voted_for = storage_state.voted_for
        self._commit_index = storage_state.commit_index
        self._entries: list[LogEntry] = list(storage_state.entries)
        self._applied_index = applied_index

        # What the caller has made durable, so that the next Ready carries exactly
        # the difference.
        self._persisted_hard_state = HardState(self._term, self._voted_for, self._commit_index)
        self._stable_last_index = len(self._entries)
        self._unstable_from = len(self._entries) + 1
        self._outstanding_ready: Ready | None = None
        self._last_soft_state: SoftState | None = None

        self._messages: list[RaftMessage] = []
        self._role = Role.FOLLOWER
        self._leader_id: int | None = None
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._randomized_election_timeout = 0
        self._votes: dict[int, bool] = {}
        self._progress: dict[int, _Progress] = {}
        self._transfer_target: int | None = None
        self._transfer_elapsed = 0
        self._reset_timers()
        self._assert_invariants()

    # ---------------------------------------------------------------- observers

    @property
    def node_id(self) -> int:
        return self._id

    @property
    def voters(self) -> tuple[int, ...]:
        return self._voters

    @property
    def term(self) -> int:
        return self._term

    @property
    def voted_for(self) -> int | None:
        return self._voted_for

    @property
    def role(self) -> Role:
        return self._role

    @property
    def leader_id(self) -> int | None:
        return self._leader_id

    @property
    def commit_index(self) -> int:
        return self._commit_index

    @property
    def applied_index(self) -> int:
        return self._applied_index

    @property
    def last_index(self) -> int:
        return len(self._entries)

    @property
    def last_term(self) -> int:
        return self._entries[-1].term if self._entries else 0

    @property
    def soft_state(self) -> SoftState:
        return SoftState(self._role, self._leader_id)

    @property
    def hard_state(self) -> HardState:
        return HardState(self._term, self._voted_for, self._commit_index)

    def term_at(self, index: int) -> int:
        """The term of the entry at `index`; 0 for index 0 (before the log)."""
        if index == 0:
            return 0
        if not 1 <= index <= len(self._entries):
            raise ValueError(f"index {index} is outside the log; accepted: 0 to {len(self._entries)}")
        return self._entries[index - 1].term

    def entries(self, first_index: int = 1, last_index: int | None = None) -> tuple[LogEntry, ...]:
        """Log entries from `first_index` to `last_index` inclusive (default: the end)."""
        end = len(self._entries) if last_index is None else last_index
        if not 1 <= first_index <= end + 1 or end > len(self._entries):
            raise ValueError(
                f"entry range [{first_index}, {end}] is outside the log; accepted: 1 <= first <= last + 1, "
                f"last <= {len(self._entries)}"
            )
        return tuple(self._entries[first_index - 1 : end])

    # ------------------------------------------------------------------- inputs

    def tick(self) -> None:
        """Advance logical time by one tick."""
        if self._role is Role.LEADER:
            self._tick_leader()
        else:
            self._tick_election()
        self._assert_invariants()

    def step(self, message: RaftMessage) -> None:
        """Handle one message received from a peer."""
        if not isinstance(message, RaftMessage) or type(message) is RaftMessage:
            raise ValueError(f"message is {message!r}; accepted: a RaftMessage subclass instance")
        if message.to_id != self._id:
            raise ValueError(f"message {message!r} is addressed to node {message.to_id}, not to node {self._id}")
        if message.from_id not in self._peers:
            raise ValueError(
                f"message {message!r} comes from node {message.from_id}; accepted: one of the peers {self._peers}"
            )
        self._step(message)
        self._assert_invariants()

    def propose(self, data: bytes) -> ProposeResult:
        """Append `data` to the log if this node is the leader."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ValueError(f"data is {type(data).__name__}; accepted: bytes")
        if self._role is not Role.LEADER or self._transfer_target is not None:
            return NotLeader(self._leader_id if self._role is not Role.LEADER else None)
        entry = self._append_as_leader(EntryType.DATA, bytes(data))
        self._assert_invariants()
        return Proposed(entry.index, entry.term)

    def campaign(self) -> None:
        """Start an election now (with PreVote first if configured), as if the
        election timer had fired. A leader ignores it."""
        if self._role is not Role.LEADER:
            self._start_election()
        self._assert_invariants()

    def transfer_leadership(self, target_id: int) -> None:
        """Hand leadership to `target_id` (thesis §3.10): stop accepting
        proposals, bring the target's log up to date, then send it TimeoutNow.
        The transfer is abandoned after an election timeout."""
        if target_id not in self._peers:
            raise ValueError(f"target_id {target_id} is not a peer; accepted: one of {self._peers}")
        if self._role is not Role.LEADER:
            raise ValueError(f"node {self._id} is {self._role.value}, not leader; only a leader transfers leadership")
        self._transfer_target = target_id
        self._transfer_elapsed = 0
        progress = self._progress[target_id]
        if progress.match_index == self.last_index:
            self._send(TimeoutNow(self._term, self._id, target_id))
        else:
            self._send_append(target_id)
        self._assert_invariants()

    # ------------------------------------------------------------------ outputs

    def has_ready(self) -> bool:
        if self._outstanding_ready is not None:
            return False
        if self._messages or self._unstable_from <= len(self._entries) or self._applied_index < self._commit_index:
            return True
        persisted = self._persisted_hard_state
        if (
            self._term != persisted.term
            or self._voted_for != persisted.voted_for
            or self._commit_index != persisted.commit_index
        ):
            return True
        soft = self._last_soft_state
        return soft is None or self._role is not soft.role or self._leader_id != soft.leader_id

    def ready(self) -> Ready:
        """Take the pending work; the caller must `advance(ready)` when done."""
        if self._outstanding_ready is not None:
            raise ValueError("ready() called again before advance() of the previous Ready; accepted: one at a time")
        entries = tuple(self._entries[self._unstable_from - 1 :])
        truncate_from = self._unstable_from if self._unstable_from <= self._stable_last_index else None
        assert truncate_from is None or entries, "a truncation always comes with the entries that replace it"
        hard_state = self.hard_state
        ready = Ready(
            soft_state=self.soft_state,
            hard_state=hard_state if hard_state != self._persisted_hard_state else None,
            truncate_from=truncate_from,
            entries=entries,
            messages=tuple(self._messages),
            committed_entries=tuple(self._entries[self._applied_index : self._commit_index]),
        )
        self._messages = []
        self._last_soft_state = ready.soft_state
        self._outstanding_ready = ready
        return ready

    def advance(self, ready: Ready) -> None:
        """Acknowledge that `ready` was persisted, sent and applied."""
        if ready is not self._outstanding_ready:
            raise ValueError("advance() got a Ready that is not the one last returned by ready()")
        self._outstanding_ready = None
        if ready.entries:
            self._stable_last_index = ready.entries[-1].index
            # Inputs given since ready() may have truncated part of what was just
            # made durable. By log matching, an entry with the same index and term
            # is untouched, and so is everything before it: find the last one.
            for entry in reversed(ready.entries):
                if entry.index <= len(self._entries) and self._entries[entry.index - 1].term == entry.term:
                    if entry.index >= self._unstable_from:
                        self._unstable_from = entry.index + 1
                    break
        if ready.hard_state is not None:
            self._persisted_hard_state = ready.hard_state
        if ready.committed_entries:
            self._applied_index = ready.committed_entries[-1].index
        self._assert_invariants()

    # ------------------------------------------------------------- transitions

    def _reset_timers(self) -> None:
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._randomized_election_timeout = self._rng.randint(
            self._config.election_timeout_ticks_min, self._config.election_timeout_ticks_max
        )

    def _reset(self, term: int) -> None:
        assert term >= self._term, f"node {self._id}: term would go back from {self._term} to {term}"
        if term > self._term:
            self._term = term
            self._voted_for = None
        self._leader_id = None
        self._votes = {}
        self._progress = {}
        self._transfer_target = None
        self._reset_timers()

    def _become_follower(self, term: int, leader_id: int | None) -> None:
        self._reset(term)
        self._role = Role.FOLLOWER
        self._leader_id = leader_id

    def _become_pre_candidate(self) -> None:
        assert self._role is not Role.LEADER
        # PreVote changes neither term nor vote: that is its point (thesis §9.6).
        self._votes = {}
        self._progress = {}
        self._leader_id = None
        self._reset_timers()
        self._role = Role.PRE_CANDIDATE

    def _become_candidate(self) -> None:
        assert self._role is not Role.LEADER
        self._reset(self._term + 1)
        self._voted_for = self._id
        self._role = Role.CANDIDATE

    def _become_leader(self) -> None:
        assert self._role is Role.CANDIDATE and self._voted_for == self._id
        self._reset(self._term)
        self._role = Role.LEADER
        self._leader_id = self._id
        next_index = self.last_index + 1
        self._progress = {peer: _Progress(next_index=next_index) for peer in self._peers}
        # A new leader cannot count replicas of earlier terms' entries (§5.4.2);
        # an entry of its own term lets it commit them (§8).
        self._append_as_leader(EntryType.NO_OP, b"")

    def _start_election(self) -> None:
        if self._config.pre_vote:
            self._become_pre_candidate()
            self._votes[self._id] = True
            if self._poll() is True:
                self._start_vote(leadership_transfer=False)
                return
            for peer in self._peers:
                self._send(PreVote(self._term + 1, self._id, peer, self.last_index, self.last_term))
        else:
            self._start_vote(leadership_transfer=False)

    def _start_vote(self, leadership_transfer: bool) -> None:
        self._become_candidate()
        self._votes[self._id] = True
        if self._poll() is True:
            self._become_leader()
            return
        for peer in self._peers:
            self._send(RequestVote(self._term, self._id, peer, self.last_index, self.last_term, leadership_transfer))

    def _poll(self) -> bool | None:
        """True if a majority granted, False if a majority refused, else None."""
        granted = sum(1 for vote in self._votes.values() if vote)
        if granted >= self._quorum:
            return True
        if len(self._votes) - granted >= self._quorum:
            return False
        return None

    # -------------------------------------------------------------------- ticks

    def _tick_election(self) -> None:
        self._election_elapsed += 1
        if self._election_elapsed >= self._randomized_election_timeout:
            self._start_election()

    def _tick_leader(self) -> None:
        self._heartbeat_elapsed += 1
        self._election_elapsed += 1
        if self._transfer_target is not None:
            self._transfer_elapsed += 1
            if self._transfer_elapsed >= self._config.election_timeout_ticks_min:
                self._transfer_target = None
        if self._election_elapsed >= self._config.election_timeout_ticks_min:
            self._election_elapsed = 0
            if self._config.check_quorum:
                active = 1 + sum(1 for progress in self._progress.values() if progress.recent_active)
                if active < self._quorum:
                    # CheckQuorum: cut off from a majority, this leader could not
                    # commit anyway; stepping down lets clients find the real one.
                    self._become_follower(self._term, None)
                    return
                for progress in self._progress.values():
                    progress.recent_active = False
        if self._heartbeat_elapsed >= self._config.heartbeat_ticks:
            self._heartbeat_elapsed = 0
            for peer in self._peers:
                self._send_append(peer, heartbeat=True)

    # ----------------------------------------------------------------- messages

    def _send(self, message: RaftMessage) -> None:
        self._messages.append(message)

    def _in_lease(self) -> bool:
        # Leader stickiness (thesis §4.2.3, §9.6): a node that heard from a leader
        # less than a minimum election timeout ago does not help depose it. Only
        # with CheckQuorum, which guarantees a leader cut off from a majority
        # steps down, so the lease cannot outlive a dead quorum.
        if not self._config.check_quorum or self._leader_id is None:
            return False
        return self._role is Role.LEADER or self._election_elapsed < self._config.election_timeout_ticks_min

    def _step(self, message: RaftMessage) -> None:
        if message.term > self._term:
            if isinstance(message, (PreVote, RequestVote)):
                transfer = isinstance(message, RequestVote) and message.leadership_transfer
                if not transfer and self._in_lease():
                    return
            if isinstance(message, PreVote):
                pass  # a PreVote's term is the one the sender would campaign in
            elif isinstance(message, PreVoteResponse) and message.vote_granted:
                pass  # a grant carries the term we asked about; we are not in it yet
            elif isinstance(message, (AppendEntries, TimeoutNow)):
                self._become_follower(message.term, message.from_id)
            else:
                self._become_follower(message.term, None)
        elif message.term < self._term:
            if isinstance(message, AppendEntries):
                # A stale leader (e.g. back from a partition) learns our term and
                # steps down; with PreVote, nothing else would ever tell it.
                self._send(AppendEntriesResponse(self._term, self._id, message.from_id, False, 0, 0, 0, 0))
            elif isinstance(message, PreVote):
                self._send(PreVoteResponse(self._term, self._id, message.from_id, False))
            return

        if isinstance(message, AppendEntries):
            self._handle_append_entries(message)
        elif isinstance(message, AppendEntriesResponse):
            self._handle_append_entries_response(message)
        elif isinstance(message, RequestVote):
            self._handle_vote_request(message)
        elif isinstance(message, PreVote):
            self._handle_vote_request(message)
        elif isinstance(message, RequestVoteResponse):
            if self._role is Role.CANDIDATE:
                self._handle_vote_response(message.from_id, message.vote_granted)
        elif isinstance(message, PreVoteResponse):
            if self._role is Role.PRE_CANDIDATE:
                expected_term = self._term + 1 if message.vote_granted else self._term
                if message.term == expected_term:
                    self._handle_vote_response(message.from_id, message.vote_granted)
        elif isinstance(message, TimeoutNow):
            if self._role is not Role.LEADER:
                self._start_vote(leadership_transfer=True)
        else:
            raise ValueError(f"message type {type(message).__name__} is not handled by RaftNode")

    def _log_up_to_date(self, last_log_index: int, last_log_term: int) -> bool:
        # §5.4.1: compare the terms of the last entries, then the lengths.
        return last_log_term > self.last_term or (last_log_term == self.last_term and last_log_index >= self.last_index)

    def _handle_vote_request(self, message: PreVote | RequestVote) -> None:
        pre_vote = isinstance(message, PreVote)
        can_vote = (
            self._voted_for == message.from_id
            or (self._voted_for is None and self._leader_id is None)
            or (pre_vote and message.term > self._term)
        )
        granted = can_vote and self._log_up_to_date(message.last_log_index, message.last_log_term)
        if pre_vote:
            self._send(PreVoteResponse(message.term if granted else self._term, self._id, message.from_id, granted))
            return
        if granted:
            assert self._role in (Role.FOLLOWER, Role.PRE_CANDIDATE), (
                f"node {self._id} would grant a vote as {self._role.value}"
            )
            if self._role is Role.PRE_CANDIDATE:
                # Having voted in this term, its own PreVote round is moot.
                self._become_follower(self._term, None)
            self._voted_for = message.from_id
            self._election_elapsed = 0
        self._send(RequestVoteResponse(self._term, self._id, message.from_id, granted))

    def _handle_vote_response(self, voter_id: int, granted: bool) -> None:
        self._votes.setdefault(voter_id, granted)
        outcome = self._poll()
        if outcome is True:
            if self._role is Role.PRE_CANDIDATE:
                self._start_vote(leadership_transfer=False)
            else:
                self._become_leader()
        elif outcome is False:
            self._become_follower(self._term, None)

    def _handle_append_entries(self, message: AppendEntries) -> None:
        assert self._role is not Role.LEADER, (
            f"node {self._id} is leader of term {self._term} and got AppendEntries of the same term "
            f"from node {message.from_id}: two leaders in one term"
        )
        if self._role is not Role.FOLLOWER:
            self._become_follower(message.term, message.from_id)
        assert self._leader_id in (None, message.from_id), (
            f"node {self._id} knows node {self._leader_id} as leader of term {self._term}, "
            f"but node {message.from_id} sends AppendEntries in that term: two leaders in one term"
        )
        self._leader_id = message.from_id
        self._election_elapsed = 0

        prev_index = message.prev_log_index
        if prev_index > self.last_index:
            self._send(
                AppendEntriesResponse(
                    self._term, self._id, message.from_id, False,
                    rejected_index=prev_index, conflict_term=0, conflict_index=self.last_index + 1,
                )
            )
            return
        local_prev_term = self.term_at(prev_index)
        if local_prev_term != message.prev_log_term:
            assert prev_index > self._commit_index, (
                f"node {self._id}: committed entry {prev_index} has term {local_prev_term}, "
                f"but leader {message.from_id} of term {message.term} has term {message.prev_log_term} there"
            )
            first_index = prev_index
            while first_index > 1 and self._entries[first_index - 2].term == local_prev_term:
                first_index -= 1
            self._send(
                AppendEntriesResponse(
                    self._term, self._id, message.from_id, False,
                    rejected_index=prev_index, conflict_term=local_prev_term, conflict_index=first_index,
                )
            )
            return

        for entry in message.entries:
            if entry.index <= self.last_index:
                if self._entries[entry.index - 1].term == entry.term:
                    continue
                self._truncate_from(entry.index)
            self._append(entry)
        match_index = prev_index + len(message.entries)
        # Only the prefix verified against the leader may be committed here: what
        # lies beyond match_index may still be a deposed leader's leftovers.
        new_commit = min(message.leader_commit, match_index)
        if new_commit > self._commit_index:
            self._commit_index = new_commit
        self._send(AppendEntriesResponse(self._term, self._id, message.from_id, True, match_index=match_index))

    def _handle_append_entries_response(self, message: AppendEntriesResponse) -> None:
        if self._role is not Role.LEADER:
            return
        progress = self._progress[message.from_id]
        progress.recent_active = True
        if message.success:
            assert message.match_index <= self.last_index, (
                f"node {message.from_id} claims to match leader {self._id} up to {message.match_index}, "
                f"beyond its last index {self.last_index}"
            )
            if message.match_index > progress.match_index:
                progress.match_index = message.match_index
            if progress.next_index <= progress.match_index:
                progress.next_index = progress.match_index + 1
            inflight = progress.inflight_last_indexes
            while inflight and inflight[0] <= progress.match_index:
                inflight.pop(0)
            if progress.state is _ReplicationState.PROBE:
                progress.become_replicate()
            self._maybe_commit()
            if self._transfer_target == message.from_id and progress.match_index == self.last_index:
                self._send(TimeoutNow(self._term, self._id, message.from_id))
            while self._send_append(message.from_id):
                pass
            return

        rejected = message.rejected_index
        if progress.state is _ReplicationState.REPLICATE:
            if rejected <= progress.match_index:
                return  # answers an append older than what we already know matches
        elif rejected != progress.next_index - 1:
            return  # answers a probe we have since replaced
        if message.conflict_term > 0:
            # Skip the follower's whole conflicting term: if we have entries of
            # that term, resume after our last one; otherwise at its first index.
            next_index = message.conflict_index
            index = min(rejected, self.last_index)
            while index > 0 and self._entries[index - 1].term > message.conflict_term:
                index -= 1
            if index > 0 and self._entries[index - 1].term == message.conflict_term:
                next_index = index + 1
        else:
            next_index = message.conflict_index
        next_index = max(progress.match_index + 1, min(next_index, rejected))
        progress.become_probe(next_index)
        self._send_append(message.from_id)

    def _send_append(self, peer: int, heartbeat: bool = False) -> bool:
        """Send `peer` the entries it lacks, or an empty append as a heartbeat.
        Returns whether entries were sent that may be followed by more."""
        progress = self._progress[peer]
        if progress.state is _ReplicationState.PROBE:
            if progress.probe_sent and not heartbeat:
                return False
            next_index = progress.next_index
            last_index = min(self.last_index, next_index + self._config.max_entries_per_append - 1)
            progress.probe_sent = True
            self._send(
                AppendEntries(
                    self._term, self._id, peer, next_index - 1, self.term_at(next_index - 1),
                    tuple(self._entries[next_index - 1 : last_index]), self._commit_index,
                )
            )
            return False
        next_index = progress.next_index
        if next_index > self.last_index or len(progress.inflight_last_indexes) >= self._config.max_inflight_appends:
            if heartbeat:
                # An empty append at the optimistic next_index: it confirms the
                # pipeline, or its refusal reveals a lost append.
                self._send(
                    AppendEntries(
                        self._term, self._id, peer, next_index - 1, self.term_at(next_index - 1), (),
                        self._commit_index,
                    )
                )
            return False
        last_index = min(self.last_index, next_index + self._config.max_entries_per_append - 1)
        self._send(
            AppendEntries(
                self._term, self._id, peer, next_index - 1, self.term_at(next_index - 1),
                tuple(self._entries[next_index - 1 : last_index]), self._commit_index,
            )
        )
        progress.next_index = last_index + 1
        progress.inflight_last_indexes.append(last_index)
        return True

    def _maybe_commit(self) -> None:
        matches = [self.last_index]
        matches.extend(progress.match_index for progress in self._progress.values())
        matches.sort(reverse=True)
        candidate = matches[self._quorum - 1]
        # §5.4.2: replicas are counted only for entries of the leader's own term.
        if candidate > self._commit_index and self.term_at(candidate) == self._term:
            self._commit_index = candidate

    # ---------------------------------------------------------------------- log

    def _append(self, entry: LogEntry) -> None:
        assert entry.index == len(self._entries) + 1, (
            f"node {self._id}: entry index {entry.index} does not follow last index {len(self._entries)}"
        )
        assert self.last_term <= entry.term <= self._term, (
            f"node {self._id}: entry term {entry.term} is not between last term {self.last_term} "
            f"and current term {self._term}"
        )
        self._entries.append(entry)

    def _append_as_leader(self, entry_type: EntryType, data: bytes) -> LogEntry:
        entry = LogEntry(self.last_index + 1, self._term, entry_type, data)
        self._append(entry)
        self._maybe_commit()
        for peer in self._peers:
            self._send_append(peer)
        return entry

    def _truncate_from(self, index: int) -> None:
        assert self._role is not Role.LEADER, f"leader {self._id} would truncate its own log at {index}"
        assert index > self._commit_index, (
            f"node {self._id} would truncate committed entry {index} (commit index {self._commit_index})"
        )
        del self._entries[index - 1 :]
        if index < self._unstable_from:
            self._unstable_from = index

    # --------------------------------------------------------------- invariants

    def _assert_invariants(self) -> None:
        last_index = len(self._entries)
        assert 0 <= self._applied_index <= self._commit_index <= last_index, (
            f"node {self._id}: applied {self._applied_index}, commit {self._commit_index}, last {last_index}"
        )
        assert self._commit_index >= self._persisted_hard_state.commit_index, (
            f"node {self._id}: commit index {self._commit_index} went below the persisted "
            f"{self._persisted_hard_state.commit_index}"
        )
        assert self._term >= self._persisted_hard_state.term
        assert self.last_term <= self._term, f"node {self._id}: last entry term {self.last_term} > term {self._term}"
        assert 1 <= self._unstable_from <= last_index + 1
        assert self._voted_for is None or self._voted_for in self._voters
        if self._term == self._persisted_hard_state.term and self._persisted_hard_state.voted_for is not None:
            assert self._voted_for == self._persisted_hard_state.voted_for, (
                f"node {self._id} changed its vote in term {self._term} from "
                f"{self._persisted_hard_state.voted_for} to {self._voted_for}"
            )
        if self._role is Role.LEADER:
            assert self._leader_id == self._id and self._voted_for == self._id
            assert set(self._progress) == set(self._peers)
            for peer, progress in self._progress.items():
                assert progress.match_index < progress.next_index <= last_index + 1, (
                    f"leader {self._id}: progress of {peer} is {progress}, last index {last_index}"
                )
        else:
            assert not self._progress and self._transfer_target is None
            assert self._leader_id != self._id
        if self._role is Role.CANDIDATE:
            assert self._voted_for == self._id
