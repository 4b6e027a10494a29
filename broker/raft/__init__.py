"""The Raft consensus core of the KRaft-style controller quorum (issue 3).

`broker.raft.core` is a pure state machine (events in; messages, persistence
and committed entries out), `broker.raft.messages` its messages and their wire
codec, and `broker.raft.sim` a deterministic in-memory cluster simulator that
ships with the library as test support. Nothing here does I/O; the network,
disk and metadata state machine are wired in by the controller layer.

Thread-safety: none; a node belongs to one task.

Sources: Ongaro & Ousterhout, "In Search of an Understandable Consensus
Algorithm" (USENIX ATC 2014); Ongaro, "Consensus: Bridging Theory and
Practice" (PhD thesis, Stanford, 2014); KIP-595 (KRaft's Raft).
"""

from broker.raft.core import (
    HardState,
    NotLeader,
    PersistentState,
    Proposed,
    ProposeResult,
    RaftConfig,
    RaftNode,
    Ready,
    Role,
    SoftState,
)
from broker.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    EntryType,
    LogEntry,
    PreVote,
    PreVoteResponse,
    RaftMessage,
    RaftMessageDecodeError,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
)

__all__ = [
    "AppendEntries",
    "AppendEntriesResponse",
    "EntryType",
    "HardState",
    "LogEntry",
    "NotLeader",
    "PersistentState",
    "PreVote",
    "PreVoteResponse",
    "ProposeResult",
    "Proposed",
    "RaftConfig",
    "RaftMessage",
    "RaftMessageDecodeError",
    "RaftNode",
    "Ready",
    "RequestVote",
    "RequestVoteResponse",
    "Role",
    "SoftState",
    "TimeoutNow",
]
