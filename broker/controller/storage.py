"""Crash-safe storage of one controller's Raft state: hard state and log.

Layout, in `<first log dir>/__cluster_metadata/` (Kafka says `__cluster_metadata-0`;
without the partition suffix the log manager does not take it for a partition log):

- `quorum-state`: JSON `{"version": 1, "term", "voted_for", "commit_index"}`,
  replaced atomically (write a temp file, fsync, rename, fsync the directory);
- `metadata.log`: the Raft log, append-only; each entry is
  `length u32 | crc32c u32 | index u64 | term u64 | entry_type u8 | data`,
  where `length` counts the bytes after the CRC and the CRC (Castagnoli) covers
  them. An append is fsynced before `append` returns.

Recovery (`load`) reads the log entry by entry and stops at the first entry
that is short, fails its CRC, or does not continue the log (index not
previous + 1, or a term going back): everything from there on is a torn tail
of a write the crash interrupted, and is cut off (the file is truncated and
fsynced). A commit index beyond the surviving log can only follow a lost
fsync (entries are durable before the commit index that covers them is
written); it is clamped to the log, with an error in the log.

Write order per Raft Ready (the core's persistence contract, broker.raft.core):
term and vote first, then the truncation and the entries, then the commit
index; see `QuorumStorage.persist`.

Thread-safety: none; one event loop owns it. All I/O goes through the
runtime's `Disk`.
"""

from __future__ import annotations

import json
import logging
import os
import struct

import crc32c

from broker.io import Disk
from broker.raft import EntryType, HardState, LogEntry, PersistentState, Ready

log = logging.getLogger("broker.controller")

DIRECTORY_NAME = "__cluster_metadata"
STATE_FILE = "quorum-state"
LOG_FILE = "metadata.log"
_PREFIX = struct.Struct(">II")  # length, crc
_ENTRY_HEADER = struct.Struct(">QQB")  # index, term, entry_type


def encode_entry(entry: LogEntry) -> bytes:
    body = _ENTRY_HEADER.pack(entry.index, entry.term, int(entry.entry_type)) + entry.data
    return _PREFIX.pack(len(body), crc32c.crc32c(body)) + body


class QuorumStorage:
    def __init__(self, disk: Disk, directory: str):
        self.disk = disk
        self.directory = directory
        self.log_path = f"{directory}/{LOG_FILE}"
        self._log_file = None
        self._entry_positions: list[int] = []  # file position of entry index i+1
        self._log_size = 0
        self.hard_state = HardState()

    # ---- recovery --------------------------------------------------------------

    def load(self) -> PersistentState:
        """Read the persisted state, cutting off a torn log tail; open the log for appends."""
        self.disk.makedirs(self.directory)
        # The directory's own entry must be durable too: without this a crash may lose the whole
        # directory, the node's Raft log and vote with it (the simulator's POSIX disk found it).
        self.disk.fsync_dir(os.path.dirname(self.directory.rstrip("/")) or "/")
        term, voted_for, commit_index = 0, None, 0
        state_path = f"{self.directory}/{STATE_FILE}"
        if self.disk.exists(state_path):
            handle = self.disk.open(state_path, "rb")
            try:
                raw = handle.read()
            finally:
                handle.close()
            try:
                state = json.loads(raw.decode("utf-8"))
                term, voted_for, commit_index = int(state["term"]), state["voted_for"], int(state["commit_index"])
            except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
                raise ValueError(
                    f"quorum state file {state_path} is damaged ({exc}); it is replaced atomically, so this is disk damage"
                ) from None
        entries = self._load_log(term)
        if commit_index > len(entries):
            log.error(
                "quorum state says commit index %d but only %d log entries survived; the disk lost fsynced data. "
                "Clamping the commit index to %d", commit_index, len(entries), len(entries),
            )
            commit_index = len(entries)
        self.hard_state = HardState(term, voted_for, commit_index)
        return PersistentState(term, voted_for, commit_index, tuple(entries))

    def _load_log(self, term: int) -> list[LogEntry]:
        entries: list[LogEntry] = []
        if not self.disk.exists(self.log_path):
            handle = self.disk.open(self.log_path, "xb")
            handle.fsync()
            handle.close()
            self.disk.fsync_dir(self.directory)
        handle = self.disk.open(self.log_path, "r+b")
        data = handle.pread(handle.size(), 0)
        position = 0
        positions = []
        reason = None
        while position < len(data):
            if position + _PREFIX.size > len(data):
                reason = "a short entry prefix"
                break
            length, crc = _PREFIX.unpack_from(data, position)
            body_start = position + _PREFIX.size
            if length < _ENTRY_HEADER.size or body_start + length > len(data):
                reason = f"an entry of {length} bytes past the end of the file"
                break
            body = data[body_start : body_start + length]
            if crc32c.crc32c(body) != crc:
                reason = "a CRC mismatch"
                break
            index, entry_term, entry_type = _ENTRY_HEADER.unpack_from(body, 0)
            previous_term = entries[-1].term if entries else 0
            if index != len(entries) + 1 or not previous_term <= entry_term <= term or entry_type not in (0, 1):
                reason = f"entry index {index} term {entry_term} type {entry_type} not continuing the log"
                break
            entries.append(LogEntry(index, entry_term, EntryType(entry_type), bytes(body[_ENTRY_HEADER.size :])))
            positions.append(position)
            position = body_start + length
        if reason is not None:
            log.warning(
                "metadata log %s: cutting a torn tail of %d bytes at byte %d (%s) after %d entries",
                self.log_path, len(data) - position, position, reason, len(entries),
            )
            handle.truncate(position)
            handle.fsync()
        handle.seek(position)
        self._log_file = handle
        self._entry_positions = positions
        self._log_size = position
        return entries

    # ---- writes ------------------------------------------------------------------

    def persist(self, ready: Ready) -> None:
        """Make a Ready's hard state and entries durable, in the crash-safe order."""
        hard = ready.hard_state
        if hard is not None and (hard.term, hard.voted_for) != (self.hard_state.term, self.hard_state.voted_for):
            # term and vote first, with the commit index already durable
            self._write_hard_state(HardState(hard.term, hard.voted_for, self.hard_state.commit_index))
        if ready.truncate_from is not None:
            self.truncate_from(ready.truncate_from)
        if ready.entries:
            self.append(ready.entries)
        if hard is not None and hard != self.hard_state:
            self._write_hard_state(hard)

    def truncate_from(self, index: int) -> None:
        assert 1 <= index <= len(self._entry_positions) + 1, f"truncation at {index} outside the log"
        if index > len(self._entry_positions):
            return
        position = self._entry_positions[index - 1]
        self._log_file.truncate(position)
        self._log_file.fsync()
        self._log_file.seek(position)
        del self._entry_positions[index - 1 :]
        self._log_size = position

    def append(self, entries) -> None:
        chunks = bytearray()
        for entry in entries:
            assert entry.index == len(self._entry_positions) + 1, (
                f"entry {entry.index} does not continue the persisted log of {len(self._entry_positions)} entries"
            )
            self._entry_positions.append(self._log_size + len(chunks))
            chunks += encode_entry(entry)
        self._log_file.write(chunks)
        self._log_file.fsync()
        self._log_size += len(chunks)

    def _write_hard_state(self, hard: HardState) -> None:
        path = f"{self.directory}/{STATE_FILE}"
        temp_path = path + ".tmp"
        handle = self.disk.open(temp_path, "wb")
        try:
            payload = {"version": 1, "term": hard.term, "voted_for": hard.voted_for, "commit_index": hard.commit_index}
            handle.write(json.dumps(payload, sort_keys=True).encode("utf-8"))
            handle.fsync()
        finally:
            handle.close()
        self.disk.rename(temp_path, path)
        self.disk.fsync_dir(self.directory)
        self.hard_state = hard

    def close(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
