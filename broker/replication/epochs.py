"""The leader epoch cache of one partition: (leader epoch, start offset) pairs.

Each entry says "leader epoch E wrote its first record at offset S"; entries
are strictly increasing in both epoch and start offset. The cache answers
OffsetForLeaderEpoch ("where does epoch E end in this log?"), which is what a
follower uses after a leader change to truncate exactly the records the new
leader does not have (KIP-101), with KIP-279's refinement that the answer also
names the epoch it is for, so that two replicas that diverged inside an epoch
both know whose boundary they are comparing.

Persistence: the file `leader-epoch-checkpoint` in the partition directory, in
Kafka's text format:

    0            (format version)
    2            (number of entries)
    0 0          ("epoch start_offset", one line per entry)
    3 1044

It is replaced atomically on every change (write a temporary file, fsync it,
rename it over the old one, fsync the directory), so after a crash it holds
either the old or the new entries. A missing or unreadable file is rebuilt
from the `partition_leader_epoch` field of the log's batch headers, which is
exactly the information the cache summarises (the leader stamps its epoch into
every batch it appends), so the file is an index and never the only copy.

Truncation follows the log: `truncate_from_end(offset)` (the log was cut to
`offset`) drops entries that start at or after it; `truncate_from_start(offset)`
(the log start moved) drops entries that end before it and moves the start of
the surviving first entry up to `offset`.

Thread-safety: none; used from the broker's event loop.

Sources: KIP-101 (leader epoch instead of the high watermark for truncation),
KIP-279 (OffsetForLeaderEpoch returns the epoch; multiple rounds), Apache Kafka
`LeaderEpochFileCache` and `LeaderEpochCheckpointFile` (file format).
"""

from __future__ import annotations

import logging
from bisect import bisect_right
from dataclasses import dataclass
from typing import Iterable

from broker.io import Runtime

logger = logging.getLogger("broker.replication")

CHECKPOINT_FILE = "leader-epoch-checkpoint"
CHECKPOINT_TMP_FILE = CHECKPOINT_FILE + ".tmp"
CHECKPOINT_VERSION = 0
UNDEFINED_EPOCH = -1
UNDEFINED_EPOCH_OFFSET = -1


@dataclass(frozen=True, slots=True)
class EpochEntry:
    epoch: int
    start_offset: int


class LeaderEpochCache:
    """Epoch boundaries of one partition's log; `directory` None keeps them in memory only."""

    def __init__(self, runtime: Runtime, directory: str | None, entries: Iterable[EpochEntry] = ()):
        self.runtime = runtime
        self.directory = directory
        self._entries: list[EpochEntry] = []
        for entry in entries:
            self._check_next(entry)
            self._entries.append(entry)

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(cls, runtime: Runtime, directory: str, batch_headers=None) -> "LeaderEpochCache":
        """Read the checkpoint in `directory`; rebuild from `batch_headers` (an iterable) if it is missing or torn."""
        entries = read_checkpoint(runtime, directory)
        if entries is not None:
            return cls(runtime, directory, entries)
        cache = cls(runtime, directory)
        if batch_headers is not None:
            cache.rebuild(batch_headers)
        cache._write()
        return cache

    def rebuild(self, batch_headers) -> None:
        """Replace the entries with those implied by the stored batches' `partition_leader_epoch`."""
        self._entries = []
        for header in batch_headers:
            epoch = header.partition_leader_epoch
            if epoch < 0:
                continue  # written before any leader epoch existed (or by a test); it starts no epoch
            if not self._entries or epoch > self._entries[-1].epoch:
                self._entries.append(EpochEntry(epoch, header.base_offset))
        if self._entries:
            logger.info("%s: leader epoch cache rebuilt from the log: %s", self.directory, self._entries)

    # ------------------------------------------------------------------ queries

    @property
    def entries(self) -> list[EpochEntry]:
        return list(self._entries)

    @property
    def latest_epoch(self) -> int:
        return self._entries[-1].epoch if self._entries else UNDEFINED_EPOCH

    def end_offset_for(self, requested_epoch: int, log_end_offset: int) -> tuple[int, int]:
        """(epoch, end offset) answering OffsetForLeaderEpoch for `requested_epoch` (KIP-279).

        - the latest epoch ends at the log end offset;
        - an older epoch ends where the next larger known epoch starts, and the
          answer names the largest known epoch <= the requested one (or the
          requested one itself if none is known that small);
        - an epoch above every known one, or UNDEFINED_EPOCH, is unknown:
          (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET).
        """
        if requested_epoch == UNDEFINED_EPOCH or not self._entries:
            return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
        if requested_epoch == self.latest_epoch:
            return requested_epoch, log_end_offset
        epochs = [entry.epoch for entry in self._entries]
        higher = bisect_right(epochs, requested_epoch)
        if higher == len(epochs):
            return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
        end_offset = self._entries[higher].start_offset
        if higher == 0:
            return requested_epoch, end_offset
        return self._entries[higher - 1].epoch, end_offset

    # ------------------------------------------------------------------ changes

    def assign(self, epoch: int, start_offset: int) -> None:
        """Record that `epoch` starts at `start_offset` (a new leader, or a follower appending a new epoch's batch).

        A repeat of the latest epoch is ignored. Entries that conflict (same or
        larger epoch, or a start offset at or past `start_offset`) are dropped
        first, as Kafka does; that only happens when the log was truncated
        without the cache being told, and is logged.
        """
        if epoch < 0 or start_offset < 0:
            raise ValueError(f"leader epoch {epoch} and start offset {start_offset} must both be >= 0")
        if self._entries and self._entries[-1].epoch == epoch:
            return
        kept = [e for e in self._entries if e.epoch < epoch and e.start_offset < start_offset]
        if len(kept) != len(self._entries):
            logger.warning(
                "%s: leader epoch %d at offset %d conflicts with cached entries %s; dropping them",
                self.directory, epoch, start_offset, self._entries[len(kept):],
            )
        kept.append(EpochEntry(epoch, start_offset))
        self._entries = kept
        self._write()

    def truncate_from_end(self, end_offset: int) -> None:
        """The log was truncated to `end_offset`: forget epochs that start at or after it."""
        kept = [e for e in self._entries if e.start_offset < end_offset]
        if len(kept) != len(self._entries):
            self._entries = kept
            self._write()

    def truncate_from_start(self, start_offset: int) -> None:
        """The log now starts at `start_offset`: the epoch covering it starts there, older ones go."""
        covering = bisect_right([e.start_offset for e in self._entries], start_offset) - 1
        if covering < 0:
            return
        kept = [EpochEntry(self._entries[covering].epoch, start_offset), *self._entries[covering + 1:]]
        if kept != self._entries:
            self._entries = kept
            self._write()

    def clear(self) -> None:
        if self._entries:
            self._entries = []
            self._write()

    def _check_next(self, entry: EpochEntry) -> None:
        if entry.epoch < 0 or entry.start_offset < 0:
            raise ValueError(f"leader epoch entry {entry} has a negative epoch or offset")
        if self._entries and (entry.epoch <= self._entries[-1].epoch or entry.start_offset < self._entries[-1].start_offset):
            raise ValueError(f"leader epoch entry {entry} does not follow {self._entries[-1]}; both must increase")

    # ------------------------------------------------------------------ checkpoint

    def _write(self) -> None:
        if self.directory is None:
            return
        lines = [str(CHECKPOINT_VERSION), str(len(self._entries))]
        lines += [f"{e.epoch} {e.start_offset}" for e in self._entries]
        data = ("\n".join(lines) + "\n").encode("ascii")
        disk = self.runtime.disk
        tmp_path = f"{self.directory}/{CHECKPOINT_TMP_FILE}"
        handle = disk.open(tmp_path, "wb")
        try:
            handle.write(data)
            handle.fsync()
        finally:
            handle.close()
        disk.rename(tmp_path, f"{self.directory}/{CHECKPOINT_FILE}")
        disk.fsync_dir(self.directory)

    def __repr__(self) -> str:
        return f"LeaderEpochCache({self.directory!r}, {[(e.epoch, e.start_offset) for e in self._entries]})"


def read_checkpoint(runtime: Runtime, directory: str) -> list[EpochEntry] | None:
    """The entries of `directory`'s checkpoint, or None if it is missing or unreadable (logged)."""
    disk = runtime.disk
    path = f"{directory}/{CHECKPOINT_FILE}"
    if disk.exists(f"{directory}/{CHECKPOINT_TMP_FILE}"):
        disk.remove(f"{directory}/{CHECKPOINT_TMP_FILE}")  # a write a crash interrupted; the old file stands
    if not disk.exists(path):
        return None
    handle = disk.open(path, "rb")
    try:
        raw = handle.read()
    finally:
        handle.close()
    try:
        if not raw.endswith(b"\n"):
            # Every write ends with a newline, so a file without one lost its tail.
            raise ValueError("it does not end with a newline (a torn write)")
        lines = raw.decode("ascii").split("\n")
        lines.pop()
        version = int(lines[0])
        if version != CHECKPOINT_VERSION:
            raise ValueError(f"version {version}, expected {CHECKPOINT_VERSION}")
        count = int(lines[1])
        if count != len(lines) - 2:
            raise ValueError(f"it announces {count} entries but holds {len(lines) - 2}")
        entries = []
        for line in lines[2:]:
            epoch_text, offset_text = line.split(" ")
            entries.append(EpochEntry(int(epoch_text), int(offset_text)))
        LeaderEpochCache(runtime, None, entries)  # validates ordering
    except (ValueError, IndexError, UnicodeDecodeError) as exc:
        logger.warning("%s: unreadable leader epoch checkpoint (%s); rebuilding it from the log", path, exc)
        return None
    return entries


__all__ = ["CHECKPOINT_FILE", "EpochEntry", "LeaderEpochCache", "UNDEFINED_EPOCH", "UNDEFINED_EPOCH_OFFSET", "read_checkpoint"]
