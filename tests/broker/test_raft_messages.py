"""Raft message codec: Hypothesis round trips and malformed input."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.raft.messages import (
    WIRE_VERSION,
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

u64 = st.integers(min_value=0, max_value=2**64 - 1)
small = st.integers(min_value=0, max_value=2**40)
node_ids = st.integers(min_value=-(2**31), max_value=2**31 - 1)


@st.composite
def append_entries(draw) -> AppendEntries:
    term = draw(small)
    prev_log_index = draw(small)
    prev_log_term = draw(st.integers(min_value=0, max_value=term))
    count = draw(st.integers(min_value=0, max_value=5))
    terms = sorted(draw(st.lists(st.integers(min_value=prev_log_term, max_value=term), min_size=count, max_size=count)))
    entries = tuple(
        LogEntry(prev_log_index + 1 + i, entry_term, draw(st.sampled_from(EntryType)), draw(st.binary(max_size=40)))
        for i, entry_term in enumerate(terms)
    )
    return AppendEntries(term, draw(node_ids), draw(node_ids), prev_log_index, prev_log_term, entries, draw(u64))


messages = st.one_of(
    st.builds(PreVote, u64, node_ids, node_ids, u64, u64),
    st.builds(PreVoteResponse, u64, node_ids, node_ids, st.booleans()),
    st.builds(RequestVote, u64, node_ids, node_ids, u64, u64, st.booleans()),
    st.builds(RequestVoteResponse, u64, node_ids, node_ids, st.booleans()),
    append_entries(),
    st.builds(AppendEntriesResponse, u64, node_ids, node_ids, st.booleans(), u64, u64, u64, u64),
    st.builds(TimeoutNow, u64, node_ids, node_ids),
)


@given(messages)
def test_every_message_round_trips_through_its_wire_form(message: RaftMessage) -> None:
    data = message.encode()
    assert data[0] == WIRE_VERSION
    assert RaftMessage.decode(data) == message
    assert type(message).decode(data) == message


@given(messages)
def test_every_strict_prefix_of_a_message_is_rejected(message: RaftMessage) -> None:
    data = message.encode()
    for length in range(len(data)):
        with pytest.raises(RaftMessageDecodeError):
            RaftMessage.decode(data[:length])


def test_known_bytes_of_a_vote_request() -> None:
    message = RequestVote(term=7, from_id=2, to_id=3, last_log_index=10, last_log_term=6, leadership_transfer=True)
    assert message.encode() == struct.pack(">BBQiiQQB", 1, 3, 7, 2, 3, 10, 6, 1)


def test_unknown_version_is_named() -> None:
    data = bytearray(TimeoutNow(1, 1, 2).encode())
    data[0] = 9
    with pytest.raises(RaftMessageDecodeError, match="version 9 is not supported; accepted: 1"):
        RaftMessage.decode(bytes(data))


def test_unknown_kind_is_named() -> None:
    data = bytearray(TimeoutNow(1, 1, 2).encode())
    data[1] = 42
    with pytest.raises(RaftMessageDecodeError, match="kind 42 is unknown"):
        RaftMessage.decode(bytes(data))


def test_trailing_bytes_are_rejected() -> None:
    with pytest.raises(RaftMessageDecodeError, match="3 trailing bytes after a TimeoutNow"):
        RaftMessage.decode(TimeoutNow(1, 1, 2).encode() + b"abc")


def test_decoding_as_the_wrong_type_is_rejected() -> None:
    with pytest.raises(RaftMessageDecodeError, match="hold a TimeoutNow, not the PreVote"):
        PreVote.decode(TimeoutNow(1, 1, 2).encode())


def test_a_boolean_other_than_0_or_1_is_rejected() -> None:
    data = bytearray(RequestVoteResponse(1, 1, 2, True).encode())
    data[-1] = 2
    with pytest.raises(RaftMessageDecodeError, match="vote_granted is 2; accepted: 0 or 1"):
        RaftMessage.decode(bytes(data))


def test_append_entries_with_a_gap_is_rejected() -> None:
    entries = (LogEntry(5, 1, EntryType.DATA, b"a"), LogEntry(7, 1, EntryType.DATA, b"b"))
    data = AppendEntries(1, 1, 2, 4, 1, entries, 0).encode()
    with pytest.raises(RaftMessageDecodeError, match="entry 1 has index 7.*so 6 was expected"):
        RaftMessage.decode(data)


def test_append_entries_with_an_entry_from_a_later_term_is_rejected() -> None:
    data = AppendEntries(3, 1, 2, 0, 0, (LogEntry(1, 4, EntryType.DATA, b""),), 0).encode()
    with pytest.raises(RaftMessageDecodeError, match="entry 0 has term 4"):
        RaftMessage.decode(data)


def test_unknown_entry_type_is_rejected() -> None:
    data = bytearray(AppendEntries(3, 1, 2, 0, 0, (LogEntry(1, 1, EntryType.DATA, b""),), 0).encode())
    entry_type_offset = 18 + 28 + 16  # header, AppendEntries body, entry index and term
    data[entry_type_offset] = 9
    with pytest.raises(RaftMessageDecodeError, match="entry_type 9; accepted: 0 \\(DATA\\), 1 \\(NO_OP\\)"):
        RaftMessage.decode(bytes(data))


def test_out_of_range_fields_are_rejected_when_encoding() -> None:
    with pytest.raises(ValueError, match="cannot encode"):
        TimeoutNow(-1, 1, 2).encode()
    with pytest.raises(ValueError, match="cannot encode"):
        TimeoutNow(1, 2**31, 2).encode()
