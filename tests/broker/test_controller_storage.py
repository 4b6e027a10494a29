"""Quorum storage: persistence order, restart, torn tails cut off, damaged state refused."""

from __future__ import annotations

import json

import pytest

from broker.controller.storage import LOG_FILE, STATE_FILE, QuorumStorage, encode_entry
from broker.io import RealDisk
from broker.raft import EntryType, HardState, LogEntry, Ready, Role, SoftState


def _ready(entries=(), hard_state=None, truncate_from=None):
    return Ready(SoftState(Role.FOLLOWER, None), hard_state, truncate_from, tuple(entries), (), ())


def _entry(index, term, data=b""):
    return LogEntry(index, term, EntryType.DATA if data else EntryType.NO_OP, data)


def test_round_trip_and_truncation(tmp_path):
    storage = QuorumStorage(RealDisk(), str(tmp_path))
    assert storage.load().entries == ()
    storage.persist(_ready([_entry(1, 1), _entry(2, 1, b"a"), _entry(3, 2, b"b")], HardState(2, 1, 2)))
    storage.persist(_ready([_entry(3, 3, b"c"), _entry(4, 3, b"d")], HardState(3, 2, 3), truncate_from=3))
    storage.close()
    state = QuorumStorage(RealDisk(), str(tmp_path)).load()
    assert (state.term, state.voted_for, state.commit_index) == (3, 2, 3)
    assert [(e.index, e.term, e.data) for e in state.entries] == [(1, 1, b""), (2, 1, b"a"), (3, 3, b"c"), (4, 3, b"d")]


@pytest.mark.parametrize("cut_bytes", [1, 5, 12, 20])
def test_torn_tail_is_cut_off(tmp_path, cut_bytes):
    storage = QuorumStorage(RealDisk(), str(tmp_path))
    storage.load()
    storage.persist(_ready([_entry(1, 1), _entry(2, 1, b"payload-2"), _entry(3, 1, b"payload-3")], HardState(1, 1, 2)))
    storage.close()
    path = tmp_path / LOG_FILE
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.truncate(size - cut_bytes)
    recovered = QuorumStorage(RealDisk(), str(tmp_path))
    state = recovered.load()
    assert [e.index for e in state.entries] == [1, 2]
    assert path.stat().st_size == len(encode_entry(_entry(1, 1))) + len(encode_entry(_entry(2, 1, b"payload-2")))
    # the log continues where the torn entry was
    recovered.persist(_ready([_entry(3, 1, b"again")]))
    recovered.close()
    assert [e.data for e in QuorumStorage(RealDisk(), str(tmp_path)).load().entries] == [b"", b"payload-2", b"again"]


def test_corrupt_entry_and_everything_after_it_is_cut(tmp_path):
    storage = QuorumStorage(RealDisk(), str(tmp_path))
    storage.load()
    storage.persist(_ready([_entry(1, 1, b"one"), _entry(2, 1, b"two"), _entry(3, 1, b"three")], HardState(1, None, 1)))
    storage.close()
    path = tmp_path / LOG_FILE
    data = bytearray(path.read_bytes())
    second = len(encode_entry(_entry(1, 1, b"one")))
    data[second + 8 + 17 + 1] ^= 0xFF  # prefix, header, then inside entry 2's data
    path.write_bytes(bytes(data))
    state = QuorumStorage(RealDisk(), str(tmp_path)).load()
    assert [e.data for e in state.entries] == [b"one"]
    assert state.commit_index == 1


def test_commit_index_beyond_the_surviving_log_is_clamped(tmp_path):
    storage = QuorumStorage(RealDisk(), str(tmp_path))
    storage.load()
    storage.persist(_ready([_entry(1, 1), _entry(2, 1, b"x")], HardState(1, 1, 2)))
    storage.close()
    (tmp_path / LOG_FILE).write_bytes(encode_entry(_entry(1, 1)))
    state = QuorumStorage(RealDisk(), str(tmp_path)).load()
    assert state.commit_index == 1 and len(state.entries) == 1


def test_term_and_vote_are_durable_before_entries_of_the_new_term(tmp_path):
    """Crash between the two writes of one Ready: the term is stored, the entries may be missing."""
    storage = QuorumStorage(RealDisk(), str(tmp_path))
    storage.load()
    written = []
    original_write = storage._write_hard_state
    original_append = storage.append

    def record_state(hard):
        written.append(("state", hard.term, hard.commit_index))
        original_write(hard)

    def record_append(entries):
        written.append(("entries", entries[0].index))
        original_append(entries)

    storage._write_hard_state = record_state
    storage.append = record_append
    storage.persist(_ready([_entry(1, 5)], HardState(5, 1, 1)))
    assert written == [("state", 5, 0), ("entries", 1), ("state", 5, 1)]


def test_damaged_state_file_is_refused_with_its_name(tmp_path):
    (tmp_path / STATE_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="quorum-state is damaged"):
        QuorumStorage(RealDisk(), str(tmp_path)).load()
    (tmp_path / STATE_FILE).write_text(json.dumps({"term": 1}))
    with pytest.raises(ValueError, match="damaged"):
        QuorumStorage(RealDisk(), str(tmp_path)).load()
