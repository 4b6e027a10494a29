"""Raft log entries and the messages Raft nodes exchange, with a binary codec.

Every message is a frozen dataclass carrying the sender's `term`, `from_id` and
`to_id`. The network layer ships `message.encode()` and rebuilds the message with
`RaftMessage.decode(data)`; a decoded message equals the encoded one.

Raft's names are used (term, log index); KRaft (KIP-595) calls the term the
*epoch* and the commit index the *high watermark*.

Wire format, version 1 (all integers big-endian)::

    version u8 (= 1) | kind u8 | term u64 | from_id i32 | to_id i32 | body

    PRE_VOTE, REQUEST_VOTE         last_log_index u64 | last_log_term u64 | flags u8
                                   (flags bit 0: leadership transfer, REQUEST_VOTE only)
    PRE_VOTE_RESPONSE,
    REQUEST_VOTE_RESPONSE          vote_granted u8 (0 or 1)
    APPEND_ENTRIES                 prev_log_index u64 | prev_log_term u64 |
                                   leader_commit u64 | entry_count u32 | entries
        entry                      index u64 | term u64 | entry_type u8 |
                                   data_length u32 | data
    APPEND_ENTRIES_RESPONSE        success u8 | match_index u64 | rejected_index u64 |
                                   conflict_term u64 | conflict_index u64
    TIMEOUT_NOW                    (empty)

Invariants checked by `decode` (bad input raises `RaftMessageDecodeError`, a
`ValueError` naming the field, its value and what is accepted): known version and
kind, no trailing bytes, booleans are 0 or 1, entries of an AppendEntries are
contiguous from `prev_log_index + 1` with non-decreasing terms no greater than
the message term. `encode` rejects out-of-range integers the same way.

Thread-safety: immutable values and pure functions.

Sources: Ongaro & Ousterhout, "In Search of an Understandable Consensus
Algorithm" (USENIX ATC 2014), Figure 2 (RequestVote, AppendEntries) and §5.3 (the
conflict hint for fast backtracking); Ongaro, "Consensus: Bridging Theory and
Practice" (PhD thesis, Stanford, 2014), §9.6 (PreVote) and §3.10 (TimeoutNow).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import ClassVar

__all__ = [
    "AppendEntries",
    "AppendEntriesResponse",
    "EntryType",
    "LogEntry",
    "PreVote",
    "PreVoteResponse",
    "RaftMessage",
    "RaftMessageDecodeError",
    "RequestVote",
    "RequestVoteResponse",
    "TimeoutNow",
    "WIRE_VERSION",
]

WIRE_VERSION = 1

_HEADER = struct.Struct(">BBQii")
_VOTE_BODY = struct.Struct(">QQB")
_FLAG = struct.Struct(">B")
_APPEND_BODY = struct.Struct(">QQQI")
_ENTRY_HEADER = struct.Struct(">QQBI")
_APPEND_RESPONSE_BODY = struct.Struct(">BQQQQ")

_FLAG_LEADERSHIP_TRANSFER = 0x01


class RaftMessageDecodeError(ValueError):
    """Bytes that are not a version-1 Raft message."""


class EntryType(enum.IntEnum):
    """What a log entry carries. NO_OP entries are appended by every new leader
    (Raft §8) and are skipped by the state machine that applies the log."""

    DATA = 0
    NO_OP = 1


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One entry of the replicated log; `index` starts at 1."""

    index: int
    term: int
    entry_type: EntryType
    data: bytes


@dataclass(frozen=True, slots=True)
class RaftMessage:
    """Base of every Raft message: who sends, to whom, in which term."""

    term: int
    from_id: int
    to_id: int

    KIND: ClassVar[int] = -1

    def encode(self) -> bytes:
        """The message as version-1 wire bytes."""
        try:
            return _HEADER.pack(WIRE_VERSION, self.KIND, self.term, self.from_id, self.to_id) + self._encode_body()
        except struct.error as error:
            raise ValueError(
                f"cannot encode {self!r}: {error}; terms and indexes must fit in an unsigned 64-bit integer "
                "and node ids in a signed 32-bit integer"
            ) from None

    def _encode_body(self) -> bytes:
        raise TypeError(f"{type(self).__name__} is an abstract message type and has no wire form")

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview) -> "RaftMessage":
        """Rebuild a message from `encode()`'s bytes.

        Called on `RaftMessage` it returns whichever kind the bytes hold; called on
        a subclass it also checks that the bytes hold that kind.
        """
        buffer = bytes(data)
        if len(buffer) < _HEADER.size:
            raise RaftMessageDecodeError(
                f"Raft message of {len(buffer)} bytes is shorter than its {_HEADER.size}-byte header"
            )
        version, kind, term, from_id, to_id = _HEADER.unpack_from(buffer, 0)
        if version != WIRE_VERSION:
            raise RaftMessageDecodeError(
                f"Raft message version {version} is not supported; accepted: {WIRE_VERSION}"
            )
        message_type = _KINDS.get(kind)
        if message_type is None:
            raise RaftMessageDecodeError(
                f"Raft message kind {kind} is unknown; accepted: "
                + ", ".join(f"{k} ({t.__name__})" for k, t in sorted(_KINDS.items()))
            )
        if cls is not RaftMessage and message_type is not cls:
            raise RaftMessageDecodeError(
                f"bytes hold a {message_type.__name__}, not the {cls.__name__} asked for"
            )
        reader = _Reader(buffer, _HEADER.size)
        message = message_type._decode_body(term, from_id, to_id, reader)
        if reader.offset != len(buffer):
            raise RaftMessageDecodeError(
                f"{len(buffer) - reader.offset} trailing bytes after a {message_type.__name__}"
            )
        return message

    @classmethod
    def _decode_body(cls, term: int, from_id: int, to_id: int, reader: "_Reader") -> "RaftMessage":
        raise TypeError(f"{cls.__name__} is an abstract message type and has no wire form")


@dataclass(frozen=True, slots=True)
class PreVote(RaftMessage):
    """Would you vote for me in `term`? Sent with the term the sender *would*
    campaign in (its current term + 1) without incrementing its own (thesis §9.6)."""

    last_log_index: int
    last_log_term: int

    KIND: ClassVar[int] = 1

    def _encode_body(self) -> bytes:
        return _VOTE_BODY.pack(self.last_log_index, self.last_log_term, 0)

    @classmethod
    def _decode_body(cls, term: int, from_id: int, to_id: int, reader: "_Reader") -> "PreVote":
        last_log_index, last_log_term, flags = reader.unpack(_VOTE_BODY, "PreVote body")
        if flags != 0:
            raise RaftMessageDecodeError(f"PreVote flags {flags:#x} must be 0")
        return cls(term, from_id, to_id, last_log_index, last_log_term)


@dataclass(frozen=True, slots=True)
class PreVoteResponse(RaftMessage):
    """The answer to a PreVote. A grant carries the term asked about; a refusal
    carries the voter's own current term."""

    vote_granted: bool

    KIND: ClassVar[int] = 2

    def _encode_body(self) -> bytes:
        return _FLAG.pack(int(self.vote_granted))

    @classmethod
    def _decode_body(cls, term: int, from_id: int, to_id: int, reader: "_Reader") -> "PreVoteResponse":
        return cls(term, from_id, to_id, reader.boolean("PreVoteResponse.vote_granted"))


@dataclass(frozen=True, slots=True)
class RequestVote(RaftMessage):
    """A candidate's vote request (paper Figure 2). `leadership_transfer` is set
    when the election was started by TimeoutNow, so voters that still hear from
    the current leader do not ignore it."""

    last_log_index: int
    last_log_term: int
    leadership_transfer: bool = False

    KIND: ClassVar[int] = 3

    def _encode_body(self) -> bytes:
        flags = _FLAG_LEADERSHIP_TRANSFER if self.leadership_transfer else 0
        return _VOTE_BODY.pack(self.last_log_index, self.last_log_term, flags)

    @classmethod
    def _decode_body(cls, term: int, from_id: int, to_id: int, reader: "_Reader") -> "RequestVote":
        last_log_index, last_log_term, flags = reader.unpack(_VOTE_BODY, "RequestVote body")
        if flags & ~_FLAG_LEADERSHIP_TRANSFER:
            raise RaftMessageDecodeError(
                f"RequestVote flags {flags:#x} has unknown bits; accepted: {_FLAG_LEADERSHIP_TRANSFER:#x}"
            )
        return cls(term, from_id, to_id, last_log_index, last_log_term, bool(flags & _FLAG_LEADERSHIP_TRANSFER))


@dataclass(frozen=True, slots=True)
class RequestVoteResponse(RaftMessage):
    """The answer to a RequestVote, in the voter's current term."""

    vote_granted: bool

    KIND: ClassVar[int] = 4

    def _encode_body(self) -> bytes:
        return _FLAG.pack(int(self.vote_granted))

    @classmethod
    def _decode_body(cls, term: int, from_id: int, to_id: int, reader: "_Reader") -> "RequestVoteResponse":
        return cls(term, from_id, to_id, reader.boolean("RequestVoteResponse.vote_granted"))


@dataclass(frozen=True, slots=True)
class AppendEntries(RaftMessage):
    """Entries to append after (`prev_log_index`, `prev_log_term`) (paper Figure 2).
    With no entries it is a heartbeat that still checks log consistency and
    carries the leader's commit index."""

    prev_log_index: int
    prev_log_term: int
    entries: tuple[LogEntry, ...]
    leader_commit: int

    KIND: ClassVar[int] = 5

    def _encode_body(self) -> bytes:
        parts = [_APPEND_BODY.pack(self.prev_log_index, self.prev_log_term, self.leader_commit, len(self.entries))]
        for entry in self.entries:
            parts.append(_ENTRY_HEADER.pack(entry.index, entry.term, int(entry.entry_type), len(entry.data)))
            parts.append(entry.data)
        return b"".join(parts)

    @classmethod
    def _decode_body(cls, term: int, from_id: int, to_id: int, reader: "_Reader") -> "AppendEntries":
        prev_log_index, prev_log_term, leader_commit, entry_count = reader.unpack(_APPEND_BODY, "AppendEntries body")
        entries = []
        expected_index = prev_log_index + 1
        previous_term = prev_log_term
        for position in range(entry_count):
            index, entry_term, type_code, data_length = reader.unpack(
                _ENTRY_HEADER, f"AppendEntries entry {position} header"
            )
            try:
                entry_type = EntryType(type_code)
            except ValueError:
                raise RaftMessageDecodeError(
                    f"AppendEntries entry {position} has entry_type {type_code}; accepted: "
                    + ", ".join(f"{t.value} ({t.name})" for t in EntryType)
                ) from None
            if index != expected_index:
                raise RaftMessageDecodeError(
                    f"AppendEntries entry {position} has index {index}; entries must be contiguous "
                    f"from prev_log_index + 1, so {expected_index} was expected"
                )
            if not previous_term <= entry_term <= term:
                raise RaftMessageDecodeError(
                    f"AppendEntries entry {position} has term {entry_term}; it must lie between the "
                    f"previous entry's term {previous_term} and the message term {term}"
                )
            data = reader.take(data_length, f"AppendEntries entry {position} data")
            entries.append(LogEntry(index, entry_term, entry_type, data))
            expected_index += 1
            previous_term = entry_term
        return cls(term, from_id, to_id, prev_log_index, prev_log_term, tuple(entries), leader_commit)


@dataclass(frozen=True, slots=True)
class AppendEntriesResponse(RaftMessage):
    """The answer to an AppendEntries.

    On success `match_index` is the last index known to match the leader's log.
    On refusal `rejected_index` echoes the request's `prev_log_index`, and the
    conflict hint (paper §5.3) lets the leader skip a whole term per round trip:
    `conflict_term` is the term of the follower's entry at `rejected_index` and
    `conflict_index` the first index of that term in the follower's log; when
    the follower's log is too short, `conflict_term` is 0 and `conflict_index`
    is the follower's last index + 1.
    """

    success: bool
    match_index: int = 0
    rejected_index: int = 0
    conflict_term: int = 0
    conflict_index: int = 0

    KIND: ClassVar[int] = 6

    def _encode_body(self) -> bytes:
        return _APPEND_RESPONSE_BODY.pack(
            int(self.success), self.match_index, self.rejected_index, self.conflict_term, self.conflict_index
        )

    @classmethod
    def _decode_body(cls, term: int, from_id: int, to_id: int, reader: "_Reader") -> "AppendEntriesResponse":
        success, match_index, rejected_index, conflict_term, conflict_index = reader.unpack(
            _APPEND_RESPONSE_BODY, "AppendEntriesResponse body"
        )
        if success not in (0, 1):
            raise RaftMessageDecodeError(f"AppendEntriesResponse.success is {success}; accepted: 0 or 1")
        return cls(term, from_id, to_id, bool(success), match_index, rejected_index, conflict_term, conflict_index)


@dataclass(frozen=True, slots=True)
class TimeoutNow(RaftMessage):
    """The leader asks a caught-up follower to start an election at once
    (leadership transfer, thesis §3.10)."""

    KIND: ClassVar[int] = 7

    def _encode_body(self) -> bytes:
        return b""

    @classmethod
    def _decode_body(cls, term: int, from_id: int, to_id: int, reader: "_Reader") -> "TimeoutNow":
        return cls(term, from_id, to_id)


_KINDS: dict[int, type[RaftMessage]] = {
    t.KIND: t
    for t in (PreVote, PreVoteResponse, RequestVote, RequestVoteResponse, AppendEntries, AppendEntriesResponse, TimeoutNow)
}


class _Reader:
    """A cursor over a buffer that turns short reads into decode errors."""

    __slots__ = ("buffer", "offset")

    def __init__(self, buffer: bytes, offset: int) -> None:
        self.buffer = buffer
        self.offset = offset

    def unpack(self, layout: struct.Struct, what: str) -> tuple:
        if self.offset + layout.size > len(self.buffer):
            raise RaftMessageDecodeError(
                f"{what} needs {layout.size} bytes at offset {self.offset}, "
                f"but only {len(self.buffer) - self.offset} remain"
            )
        values = layout.unpack_from(self.buffer, self.offset)
        self.offset += layout.size
        return values

    def take(self, length: int, what: str) -> bytes:
        if self.offset + length > len(self.buffer):
            raise RaftMessageDecodeError(
                f"{what} needs {length} bytes at offset {self.offset}, "
                f"but only {len(self.buffer) - self.offset} remain"
            )
        data = self.buffer[self.offset : self.offset + length]
        self.offset += length
        return data

    def boolean(self, what: str) -> bool:
        (value,) = self.unpack(_FLAG, what)
        if value not in (0, 1):
            raise RaftMessageDecodeError(f"{what} is {value}; accepted: 0 or 1")
        return bool(value)
