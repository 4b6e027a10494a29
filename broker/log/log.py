"""A partition's log: an ordered list of segments in one directory.

`PartitionLog` assigns offsets, appends client batches with one disk write per
append, serves reads of whole batches, rolls segments, applies the flush and
retention policies, and recovers after an unclean stop.

Offsets (Kafka's names): `log_start_offset` is the first offset a reader may
ask for; `log_end_offset` (LEO) is the offset the next appended record gets;
`recovery_point` is the offset below which everything has been fsync'd.
Invariants: `log_start_offset <= recovery_point <= log_end_offset` once
opened; segment base offsets strictly increase; only the last (active) segment
is appended to; the active segment is never deleted unless every segment
expired by time, in which case a fresh empty one is rolled first.

Durability and recovery (fault model: a process crash keeps what was handed to
the OS with `write`; a power loss keeps only what was fsync'd, and may leave a
torn or zero-filled tail):
- `flush` fsyncs every segment with unflushed bytes and moves the recovery
  point to the LEO. The per-partition checkpoint file `partition-checkpoint`
  (recovery point and log start offset) is written atomically: write a
  temporary file, fsync it, rename it over the old one, fsync the directory.
  A flush writes it when `flush_offset_checkpoint_interval_ms` has passed since
  the last write (otherwise `maintain` does once it is due), so a flush per
  append costs one fsync instead of three; a stale checkpoint only makes
  recovery re-read more. Moves of the log start offset, truncation and close
  write it at once.
- `open(..., recover=True)` (no clean-shutdown marker) re-reads every segment
  from the one holding the recovery point on, checking each batch's header,
  offsets and CRC-32C, truncates at the first bad batch, deletes any later
  segments, and logs one line naming the file, the byte position, the offsets
  dropped and why: a WARNING for data after the recovery point (expected after
  a crash), an ERROR for data before it (it was fsync'd, so the disk lost or
  corrupted acknowledged data; it cannot be trusted, so it is cut as well).
  A segment that is merely shorter than it was (a power loss took its
  unflushed tail, leaving no damaged bytes) does not cut the segments after
  it, as in Kafka: the lost offsets become a hole and are never reused.
  Segments wholly below the recovery point are not re-read (that is the point of
  the checkpoint): corruption inside them is only found if their indexes fail
  the sanity check, and read() never validates CRCs (clients do).
- A missing or insane `.index`/`.timeindex` is rebuilt from its segment (with
  the same validation) on any open, logged as a WARNING.
- Index files are written at roll, truncation and close but not fsync'd:
  recovery rebuilds the indexes of every segment from the one holding the
  recovery point on, and every older segment wrote its indexes when it rolled;
  one that a power loss damaged fails the sanity check and is rebuilt (a
  shortened one is still a correct sparse index).

Storage errors (a full disk, ENOSPC, or any OSError of the log dir): an
append that fails leaves the log as it was before it: a short write is cut
off, and an append whose flush (`flush_interval_messages`) fails is cut off as
well, so the caller may answer KAFKA_STORAGE_ERROR and a retry lands at the
same offset; the error propagates. The checkpoint and the index files only
save work (a stale checkpoint makes recovery re-read more; indexes are rebuilt
from their segments), so a failure to write them at open, at maintenance or
after a flush is logged once, on one line, and the log carries on (unlike
Kafka, which takes the whole log dir offline on any IOException: with one log
dir that would stop the node, and a full disk usually frees up). `close`
reports whether everything was written, so the caller writes the
clean-shutdown marker only then.

Time: record timestamps are compared with `runtime.clock.wall_ms()` for
retention; the flush interval is measured on `monotonic_ms`.

Thread-safety: none. A `PartitionLog` is used from the broker's single event
loop; iterators it returns must be consumed before the log is changed.

Sources: Apache Kafka `UnifiedLog`, `LocalLog`, `LogLoader` (recovery),
`LogSegment`; KIP-107 (DeleteRecords, log start offset); KIP-33 (time index);
KIP-101 (truncation for replication).
"""

from __future__ import annotations

import logging
import re
from bisect import bisect_right
from dataclasses import dataclass
from typing import Iterator

from broker.io import Runtime
from broker.log.config import INT32_MAX, LogConfig
from broker.log.segment import LOG_SUFFIX, NO_TIMESTAMP, LogSegment, Truncation, segment_file_name
from broker.protocol.records import BatchHeader, iter_batches, patch_base_offset, patch_partition_leader_epoch

logger = logging.getLogger("broker.log")

CHECKPOINT_FILE = "partition-checkpoint"
CHECKPOINT_TMP_FILE = CHECKPOINT_FILE + ".tmp"
CHECKPOINT_VERSION = 0
DELETE_DIR_SUFFIX = "-delete"  # a partition directory being deleted (Kafka's suffix)
_SEGMENT_FILE = re.compile(r"^(\d{20})(\.log|\.index|\.timeindex)$")


class OffsetOutOfRangeError(Exception):
    """A read or a log start offset move outside [log_start_offset, log_end_offset] (Kafka's OFFSET_OUT_OF_RANGE)."""


@dataclass(frozen=True, slots=True)
class AppendResult:
    base_offset: int
    last_offset: int
    max_timestamp: int
    record_count: int
    log_append_time_ms: int = -1


@dataclass(frozen=True)
class _Checkpoint:
    recovery_point: int
    log_start_offset: int


class PartitionLog:
    """The segmented on-disk log of one topic partition. Create with `open`."""

    def __init__(self, directory: str, config: LogConfig, runtime: Runtime):
        self.directory = directory
        self.config = config
        self.runtime = runtime
        self.log_start_offset = 0
        self.log_end_offset = 0
        self.recovery_point = 0
        self._segments: list[LogSegment] = []
        self._base_offsets: list[int] = []
        self._directory_dirty = False  # segment files created since the directory was last fsync'd
        self._parent_dirty = False  # the directory itself was created and its name not yet fsync'd
        self._checkpoint_written: _Checkpoint | None = None
        self._last_flush_ms = runtime.clock.monotonic_ms()
        self._last_checkpoint_ms = self._last_flush_ms
        self._checkpoint_failing = False  # a checkpoint write failed and has not succeeded since (logged once)
        self._closed = False

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, directory: str, config: LogConfig, runtime: Runtime, recover: bool) -> "PartitionLog":
        """Open (creating if needed) the log in `directory`.

        `recover=True` after an unclean stop: re-validate everything after the
        recovery point (see the module docstring).
        """
        if not isinstance(config, LogConfig):
            raise TypeError(f"config must be a LogConfig, not {type(config).__name__}")
        log = cls(directory, config, runtime)
        log._load(recover)
        return log

    def _load(self, recover: bool) -> None:
        disk = self.runtime.disk
        if not disk.exists(self.directory):
            disk.makedirs(self.directory)
            self._parent_dirty = True
        names = disk.listdir(self.directory)
        if CHECKPOINT_TMP_FILE in names:
            disk.remove(f"{self.directory}/{CHECKPOINT_TMP_FILE}")
        files: dict[int, set[str]] = {}
        for name in names:
            match = _SEGMENT_FILE.match(name)
            if match:
                files.setdefault(int(match.group(1)), set()).add(match.group(2))
        for base_offset, suffixes in files.items():
            if LOG_SUFFIX not in suffixes:
                # An index whose segment is gone (a crash between deleting the files of a segment).
                for suffix in suffixes:
                    disk.remove(f"{self.directory}/{segment_file_name(base_offset, suffix)}")
        bases = sorted(base for base, suffixes in files.items() if LOG_SUFFIX in suffixes)
        checkpoint = self._read_checkpoint()
        self._checkpoint_written = checkpoint  # rewritten only when it changes
        now_ms = self.runtime.clock.wall_ms()
        segments = [LogSegment.open_existing(self.directory, base, self.config, disk, now_ms) for base in bases]

        if checkpoint is not None:
            recovery_point = checkpoint.recovery_point
        elif recover:
            recovery_point = bases[0] if bases else 0
        else:
            recovery_point = None  # a clean stop flushed everything
        recover_from = len(segments)
        if recover:
            recover_from = max(bisect_right(bases, recovery_point) - 1, 0) if recovery_point is not None else 0

        kept: list[LogSegment] = []
        truncated = False
        for number, segment in enumerate(segments):
            if kept and segment.base_offset < kept[-1].next_offset:
                # Offsets must grow from segment to segment; an overlap means the
                # later files are not what this log wrote.
                logger.error(
                    "%s: segment %s starts at offset %d, below the end %d of the segment before it; "
                    "deleting it and every later segment (%s)",
                    self.directory,
                    segment_file_name(segment.base_offset, LOG_SUFFIX),
                    segment.base_offset,
                    kept[-1].next_offset,
                    ", ".join(segment_file_name(s.base_offset, LOG_SUFFIX) for s in segments[number:]),
                )
                for dropped in segments[number:]:
                    dropped.delete_files()
                truncated = True
                break
            if number >= recover_from:
                truncation = segment.recover()
                segment.dirty = True  # re-read from the page cache, not known to be on disk
            else:
                problem = segment.load()
                truncation = None
                if problem is not None:
                    logger.warning("%s; rebuilding the indexes of %s from the segment", problem, segment.log_path)
                    truncation = segment.recover()
                    segment.dirty = True
            if truncation is None and number < len(segments) - 1:
                segment.on_roll()  # a rebuilt inactive segment gets its final time index entry back
            kept.append(segment)
            if truncation is not None:
                truncated = True
                later = segments[number + 1 :]
                self._log_truncation(segment, truncation, recovery_point, recover, later)
                for dropped in later:
                    dropped.delete_files()
                break
        self._segments = kept
        self._base_offsets = [segment.base_offset for segment in kept]
        if not self._segments:
            base = checkpoint.log_start_offset if checkpoint is not None else 0
            self._add_segment(base)
        self.log_end_offset = self._segments[-1].next_offset
        start = self._segments[0].base_offset
        if checkpoint is not None:
            start = max(start, checkpoint.log_start_offset)
        if start > self.log_end_offset:
            # The log ends below its start: what a crash lost had been deleted
            # already (DeleteRecords or retention moved the start past unflushed
            # data). Restart empty at the start, as Kafka's LogLoader does.
            logger.warning(
                "%s: the log ends at offset %d, below its log start offset %d (only deleted records were lost); "
                "restarting it empty at %d",
                self.directory,
                self.log_end_offset,
                start,
                start,
            )
            for segment in self._segments:
                segment.delete_files()
            self._segments = []
            self._base_offsets = []
            self._add_segment(start)
            self.log_end_offset = start
        self.log_start_offset = start
        self._delete_segments_below_log_start()
        if not truncated and recovery_point is not None and recovery_point > self.log_end_offset:
            logger.error(
                "%s: the recovery point checkpoint says offsets below %d were fsync'd, but the log ends at %d",
                self.directory,
                recovery_point,
                self.log_end_offset,
            )
        if recover or any(segment.dirty for segment in self._segments):
            self.recovery_point = min(recovery_point if recovery_point is not None else 0, self.log_end_offset)
            self.recovery_point = max(self.recovery_point, self.log_start_offset)
            self.flush()
            self._write_checkpoint_if_possible()
        else:
            self.recovery_point = self.log_end_offset if recovery_point is None else min(recovery_point, self.log_end_offset)
            self.recovery_point = max(self.recovery_point, self.log_start_offset)
            if checkpoint is not None or bases:
                # A brand-new empty log needs none: without a checkpoint it
                # opens the same way. Skipping it keeps topic creation fsync-free.
                self._write_checkpoint_if_possible()

    def _log_truncation(
        self,
        segment: LogSegment,
        truncation: Truncation,
        recovery_point: int | None,
        recover: bool,
        later: list[LogSegment],
    ) -> None:
        # After a clean shutdown nothing may be damaged; after a crash only
        # what lies past the recovery point may be.
        durable = not recover or recovery_point is None or truncation.first_dropped_offset < recovery_point
        claimed = ""
        if truncation.claimed_offsets is not None:
            claimed = f" (the damaged batch claims offsets {truncation.claimed_offsets[0]}..{truncation.claimed_offsets[1]})"
        deleted = ""
        if later:
            deleted = "; also deleting the later segments " + ", ".join(
                segment_file_name(dropped.base_offset, LOG_SUFFIX) for dropped in later
            )
        if durable:
            if recover and recovery_point is not None:
                why = f"below the recovery point {recovery_point}: fsync'd data was lost or corrupted"
            else:
                why = "in a log that was shut down cleanly: it was damaged after the shutdown"
            logger.error(
                "%s: truncating at byte %d, dropping %d bytes with offsets %d and above%s%s, because: %s. "
                "This data is %s; it cannot be trusted and is dropped",
                segment.log_path,
                truncation.position,
                truncation.bytes_dropped,
                truncation.first_dropped_offset,
                claimed,
                deleted,
                truncation.reason,
                why,
            )
        else:
            logger.warning(
                "%s: truncating at byte %d, dropping %d bytes with offsets %d and above%s%s, because: %s "
                "(unflushed data after the recovery point %d, torn by an unclean stop)",
                segment.log_path,
                truncation.position,
                truncation.bytes_dropped,
                truncation.first_dropped_offset,
                claimed,
                deleted,
                truncation.reason,
                recovery_point,
            )

    # ------------------------------------------------------------------ checkpoint

    def _read_checkpoint(self) -> _Checkpoint | None:
        disk = self.runtime.disk
        path = f"{self.directory}/{CHECKPOINT_FILE}"
        if not disk.exists(path):
            return None
        checkpoint_file = disk.open(path, "rb")
        try:
            text = checkpoint_file.read()
        finally:
            checkpoint_file.close()
        try:
            lines = text.decode("ascii").split("\n")
            version = int(lines[0])
            if version != CHECKPOINT_VERSION:
                raise ValueError(f"version {version}, expected {CHECKPOINT_VERSION}")
            values = dict(line.split(" ", 1) for line in lines[1:] if line)
            checkpoint = _Checkpoint(int(values["recovery-point"]), int(values["log-start-offset"]))
            if checkpoint.recovery_point < 0 or checkpoint.log_start_offset < 0:
                raise ValueError("negative offset")
        except (ValueError, KeyError, IndexError, UnicodeDecodeError) as exc:
            logger.warning("%s: unreadable checkpoint (%s: %s); recovering the whole log", path, type(exc).__name__, exc)
            return None
        return checkpoint

    def _write_checkpoint(self) -> None:
        checkpoint = _Checkpoint(self.recovery_point, self.log_start_offset)
        if checkpoint == self._checkpoint_written:
            return
        disk = self.runtime.disk
        tmp_path = f"{self.directory}/{CHECKPOINT_TMP_FILE}"
        text = f"{CHECKPOINT_VERSION}\nrecovery-point {checkpoint.recovery_point}\nlog-start-offset {checkpoint.log_start_offset}\n"
        tmp_file = disk.open(tmp_path, "wb")
        try:
            try:
                tmp_file.write(text.encode("ascii"))
                tmp_file.fsync()
            finally:
                tmp_file.close()
        except OSError:
            disk.remove(tmp_path)  # a full disk must not keep a torn temporary file (open removes one anyway)
            raise
        disk.rename(tmp_path, f"{self.directory}/{CHECKPOINT_FILE}")
        disk.fsync_dir(self.directory)
        self._sync_parent()
        self._directory_dirty = False
        self._checkpoint_written = checkpoint
        self._last_checkpoint_ms = self.runtime.clock.monotonic_ms()
        if self._checkpoint_failing:
            logger.info("%s: the checkpoint is written again", self.directory)
            self._checkpoint_failing = False

    def _write_checkpoint_if_possible(self) -> bool:
        """Write the checkpoint, or log once (until it works again) why it could not be: it only saves recovery work."""
        try:
            self._write_checkpoint()
            return True
        except OSError as exc:
            self._last_checkpoint_ms = self.runtime.clock.monotonic_ms()  # retried at the next interval, not every call
            if not self._checkpoint_failing:
                logger.warning("%s: checkpoint not written (%s); the next start recovers from the last one written",
                               self.directory, exc)
                self._checkpoint_failing = True
            return False

    # ------------------------------------------------------------------ appending

    def append(
        self,
        records: bytes | bytearray | memoryview,
        leader_epoch: int,
        headers: list[tuple[int, BatchHeader]] | None = None,
    ) -> AppendResult:
        """Append client batches as the leader: assign offsets from the LEO, stamp the leader epoch.

        `records` holds whole v2 batches the caller validated. A writable
        buffer (bytearray, writable memoryview) is patched in place; bytes are
        copied once. `headers` (from `iter_batches`) saves a second parse; their
        `base_offset` and `partition_leader_epoch` are updated to what was stored.
        """
        self._check_open()
        if isinstance(records, bytearray) or (isinstance(records, memoryview) and not records.readonly):
            buf = records
        else:
            buf = bytearray(records)
        if headers is None:
            headers = list(iter_batches(buf))
        self._check_batches(buf, headers)
        next_offset = self.log_end_offset
        record_count = 0
        max_timestamp = NO_TIMESTAMP
        for position, header in headers:
            patch_base_offset(buf, position, next_offset)
            patch_partition_leader_epoch(buf, position, leader_epoch)
            header.base_offset = next_offset
            header.partition_leader_epoch = leader_epoch
            next_offset += header.last_offset_delta + 1
            record_count += header.records_count
            if header.max_timestamp > max_timestamp:
                max_timestamp = header.max_timestamp
        return self._append_batches(buf, headers, record_count, max_timestamp)

    def append_as_follower(
        self, records: bytes | bytearray | memoryview, headers: list[tuple[int, BatchHeader]] | None = None
    ) -> AppendResult:
        """Append batches that already carry their offsets and epochs (replication); nothing is patched.

        The first batch's base offset must be >= log_end_offset and offsets
        must increase from batch to batch.
        """
        self._check_open()
        if headers is None:
            headers = list(iter_batches(records))
        self._check_batches(records, headers)
        next_offset = self.log_end_offset
        record_count = 0
        max_timestamp = NO_TIMESTAMP
        for position, header in headers:
            if header.base_offset < next_offset:
                raise ValueError(
                    f"follower batch at byte {position} has base offset {header.base_offset}, "
                    f"but offsets below {next_offset} are already in the log or earlier in the request"
                )
            next_offset = header.next_offset
            record_count += header.records_count
            if header.max_timestamp > max_timestamp:
                max_timestamp = header.max_timestamp
        return self._append_batches(records, headers, record_count, max_timestamp)

    def _check_batches(self, buf, headers: list[tuple[int, BatchHeader]]) -> None:
        if not headers:
            raise ValueError(f"records must hold at least one record batch, got {len(buf)} bytes and no batch")
        last_position, last_header = headers[-1]
        if headers[0][0] != 0 or last_position + last_header.size != len(buf):
            raise ValueError(
                f"records must be whole batches back to back: batches span bytes {headers[0][0]}.."
                f"{last_position + last_header.size} of a {len(buf)}-byte buffer"
            )

    def _append_batches(self, buf, headers: list[tuple[int, BatchHeader]], record_count: int, max_timestamp: int) -> AppendResult:
        first = headers[0][1]
        last = headers[-1][1]
        segment = self._segments[-1]
        if self._should_roll(segment, len(buf), len(headers), last.last_offset, max_timestamp):
            self.roll(first.base_offset)
            segment = self._segments[-1]
        elif segment.size == 0 and first.base_offset != segment.base_offset:
            # An empty active segment takes the base offset of its first batch
            # (a follower append after a gap, or a log truncated fully).
            self._replace_empty_active(first.base_offset)
            segment = self._segments[-1]
        assert last.last_offset - segment.base_offset <= INT32_MAX, "an append's offsets must fit one segment"
        if segment.size == 0:
            # A segment ages from its first batch, not from its (possibly much
            # earlier) creation by a roll.
            segment.created_ms = self.runtime.clock.wall_ms()
        start = segment.size
        segment.append(buf, headers)
        self.log_end_offset = last.next_offset
        flush_messages = self.config.flush_interval_messages
        if flush_messages is not None and self.log_end_offset - self.recovery_point >= flush_messages:
            try:
                self.flush()
            except OSError:
                # Not durable as the policy promises: the append did not happen, and a retry takes the same offsets.
                self.log_end_offset = first.base_offset
                segment.truncate_at(start, first.base_offset)
                raise
        return AppendResult(first.base_offset, last.last_offset, max_timestamp, record_count)

    def _should_roll(self, segment: LogSegment, size_bytes: int, batch_count: int, last_offset: int, max_timestamp: int) -> bool:
        """Kafka's LogSegment.shouldRoll: size, index capacity, offset range, or age."""
        if segment.size == 0:
            return False
        if segment.size + size_bytes > self.config.segment_bytes:
            return True
        if segment.index_would_overflow(batch_count):
            return True
        if last_offset - segment.base_offset > INT32_MAX:
            return True
        # Age by record timestamps when the segment's first batch has one (so a
        # producer's clock, not ours, decides), else by creation time.
        if segment.first_batch_timestamp is not None and segment.first_batch_timestamp >= 0:
            waited_ms = max_timestamp - segment.first_batch_timestamp
        else:
            waited_ms = self.runtime.clock.wall_ms() - segment.created_ms
        return waited_ms > self.config.roll_ms

    def roll(self, base_offset: int | None = None) -> None:
        """Start a new active segment at `base_offset` (default: the LEO) unless the active one is empty."""
        self._check_open()
        base = self.log_end_offset if base_offset is None else base_offset
        if base < self.log_end_offset:
            raise ValueError(f"roll base_offset {base} is below log_end_offset {self.log_end_offset}")
        active = self._segments[-1]
        if active.size == 0:
            if base != active.base_offset:
                self._replace_empty_active(base)
            return
        active.on_roll()
        self._add_segment(base)

    def _replace_empty_active(self, base_offset: int) -> None:
        active = self._segments.pop()
        self._base_offsets.pop()
        assert active.size == 0
        active.delete_files()
        self._add_segment(base_offset)

    def _add_segment(self, base_offset: int) -> None:
        segment = LogSegment.create(
            self.directory, base_offset, self.config, self.runtime.disk, self.runtime.clock.wall_ms()
        )
        self._segments.append(segment)
        self._base_offsets.append(base_offset)
        self._directory_dirty = True

    # ------------------------------------------------------------------ reading

    def read(self, offset: int, max_bytes: int, max_offset: int | None = None) -> bytes:
        """Whole batches from the one holding `offset`, up to `max_bytes` (but at least one), below `max_offset`.

        Returns b"" at the log end or when the first batch reaches `max_offset`.
        Reads from one segment per call, as Kafka does; the caller fetches again.
        """
        self._check_open()
        if offset < self.log_start_offset or offset > self.log_end_offset:
            raise OffsetOutOfRangeError(
                f"offset {offset} is out of range: the log holds [{self.log_start_offset}, {self.log_end_offset})"
            )
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, not {max_bytes}")
        if offset == self.log_end_offset or (max_offset is not None and offset >= max_offset):
            return b""
        first = bisect_right(self._base_offsets, offset) - 1
        for segment in self._segments[max(first, 0) :]:
            found = segment.find_batch(offset)
            if found is None:
                continue
            start, header = found
            end = segment.read_end(start, header, max_bytes, max_offset)
            if end == start:
                return b""
            return segment.pread(end - start, start)
        return b""

    def offset_for_timestamp(self, timestamp_ms: int) -> tuple[int, int] | None:
        """(offset, timestamp) of the first batch whose max_timestamp >= `timestamp_ms`, for ListOffsets.

        The offset is the batch's base offset (raised to log_start_offset):
        records inside a batch are never parsed, so it may name a few records
        older than asked, never a newer one. The timestamp is the batch's
        max_timestamp. None if no batch is that recent. The special ListOffsets
        timestamps (-1 latest, -2 earliest) are the caller's: use
        log_end_offset and log_start_offset.
        """
        self._check_open()
        for segment in self._segments:
            if segment.next_offset <= self.log_start_offset or segment.max_timestamp < timestamp_ms:
                continue
            header = segment.find_timestamp(timestamp_ms, self.log_start_offset)
            if header is not None:
                return max(header.base_offset, self.log_start_offset), header.max_timestamp
        return None

    def iter_batch_headers(self, from_offset: int = 0) -> Iterator[BatchHeader]:
        """Headers of the batches whose last offset is >= `from_offset`, in order (e.g. to rebuild producer state)."""
        self._check_open()
        first = max(bisect_right(self._base_offsets, from_offset) - 1, 0)
        for segment in list(self._segments[first:]):
            for _, header in segment.scan(segment.position_for(from_offset)):
                if header.last_offset >= from_offset:
                    yield header

    @property
    def size_bytes(self) -> int:
        return sum(segment.size for segment in self._segments)

    @property
    def segment_count(self) -> int:
        return len(self._segments)

    @property
    def segment_base_offsets(self) -> list[int]:
        return list(self._base_offsets)

    # ------------------------------------------------------------------ truncation and deletion

    def truncate_to(self, offset: int) -> None:
        """Drop every batch holding an offset >= `offset` (replication); no-op if `offset` >= LEO.

        A batch that straddles `offset` is dropped whole. Below log_start_offset
        the log is emptied and restarts at `offset` (Kafka's truncateFullyAndStartAt).
        """
        self._check_open()
        if offset < 0:
            raise ValueError(f"truncate_to offset must be >= 0, not {offset}")
        if offset >= self.log_end_offset:
            return
        if offset < self.log_start_offset:
            for segment in self._segments:
                segment.delete_files()
            self._segments = []
            self._base_offsets = []
            self._add_segment(offset)
            self.log_start_offset = self.log_end_offset = self.recovery_point = offset
            self.flush()
            self._write_checkpoint()
            return
        keep = bisect_right(self._base_offsets, offset) - 1
        for segment in self._segments[keep + 1 :]:
            segment.delete_files()
        del self._segments[keep + 1 :]
        del self._base_offsets[keep + 1 :]
        segment = self._segments[-1]
        found = segment.find_batch(offset)
        if found is not None:
            position, header = found
            segment.truncate_at(position, header.base_offset)
            segment.fsync()
        self.log_end_offset = segment.next_offset
        # Dropping the batch that straddles log_start_offset leaves nothing at or
        # above it; the start follows the end down so that start <= end holds.
        self.log_start_offset = min(self.log_start_offset, self.log_end_offset)
        self.recovery_point = min(self.recovery_point, self.log_end_offset)
        self._write_checkpoint()

    def truncate_fully_and_start_at(self, offset: int) -> None:
        """Empty the log and restart it at `offset` (a follower whose LEO fell below the leader's log start offset)."""
        self._check_open()
        if offset < 0:
            raise ValueError(f"truncate_fully_and_start_at offset must be >= 0, not {offset}")
        for segment in self._segments:
            segment.delete_files()
        self._segments = []
        self._base_offsets = []
        self._add_segment(offset)
        self.log_start_offset = self.log_end_offset = self.recovery_point = offset
        self.flush()
        self._write_checkpoint()

    def delete_records_before(self, offset: int) -> None:
        """Move log_start_offset up to `offset` (DeleteRecords, KIP-107); whole segments below it go."""
        self._check_open()
        if offset > self.log_end_offset or offset < 0:
            raise OffsetOutOfRangeError(
                f"cannot move the log start offset to {offset}: the log holds [{self.log_start_offset}, {self.log_end_offset}]"
            )
        if offset <= self.log_start_offset:
            return
        self.log_start_offset = offset
        self.recovery_point = max(self.recovery_point, offset)
        self._delete_segments_below_log_start()
        self._write_checkpoint()

    def _delete_segments_below_log_start(self) -> None:
        count = 0
        while count < len(self._segments) - 1 and self._segments[count + 1].base_offset <= self.log_start_offset:
            count += 1
        self._delete_oldest(count)

    def _delete_oldest(self, count: int) -> None:
        if count <= 0:
            return
        assert count < len(self._segments), "the active segment is never deleted"
        for segment in self._segments[:count]:
            segment.delete_files()
        del self._segments[:count]
        del self._base_offsets[:count]
        self.log_start_offset = max(self.log_start_offset, self._segments[0].base_offset)
        self.recovery_point = max(self.recovery_point, self.log_start_offset)

    # ------------------------------------------------------------------ flush, maintenance, close

    def flush(self) -> None:
        """fsync everything up to the LEO and move the recovery point there."""
        self._check_open()
        for segment in self._segments:
            if segment.dirty and self.config.debug_skip_fsync:
                segment.dirty = False  # logquake.debug.skip.fsync (a planted bug): counted as flushed, never fsync'd
            elif segment.dirty:
                segment.fsync()
        if self._directory_dirty:
            self.runtime.disk.fsync_dir(self.directory)
            self._directory_dirty = False
        self._sync_parent()
        self.recovery_point = self.log_end_offset
        self._last_flush_ms = self.runtime.clock.monotonic_ms()
        self._maybe_write_checkpoint()

    def _sync_parent(self) -> None:
        """Make the partition directory's own name durable (once, after it was created)."""
        if self._parent_dirty:
            parent = self.directory.rstrip("/").rpartition("/")[0] or "/"
            self.runtime.disk.fsync_dir(parent)
            self._parent_dirty = False

    def _maybe_write_checkpoint(self) -> None:
        if self._last_flush_ms - self._last_checkpoint_ms >= self.config.flush_offset_checkpoint_interval_ms:
            self._write_checkpoint_if_possible()

    def maintain(self) -> None:
        """Time-based roll, retention by time and size, time-based flush. Call every few hundred ms."""
        self._check_open()
        now_ms = self.runtime.clock.wall_ms()
        active = self._segments[-1]
        if active.size > 0 and now_ms - active.created_ms > self.config.roll_ms:
            self.roll()
        self._apply_retention(now_ms)
        interval_ms = self.config.flush_interval_ms
        if (
            interval_ms is not None
            and self.recovery_point < self.log_end_offset
            and self.runtime.clock.monotonic_ms() - self._last_flush_ms >= interval_ms
        ):
            self.flush()
        if self.runtime.clock.monotonic_ms() - self._last_checkpoint_ms >= self.config.flush_offset_checkpoint_interval_ms:
            self._write_checkpoint_if_possible()

    def _apply_retention(self, now_ms: int) -> None:
        """Delete the oldest whole segments past retention.ms or beyond retention.bytes (Kafka's deleteOldSegments)."""
        count = 0
        retention_ms = self.config.retention_ms
        if retention_ms >= 0:
            while count < len(self._segments):
                segment = self._segments[count]
                if segment.size == 0:
                    break
                # A segment without timestamps ages from its creation (or, after a restart, its opening).
                largest_ms = segment.max_timestamp if segment.max_timestamp >= 0 else segment.created_ms
                if now_ms - largest_ms <= retention_ms:
                    break
                count += 1
        retention_bytes = self.config.retention_bytes
        if retention_bytes >= 0:
            excess = sum(segment.size for segment in self._segments[count:]) - retention_bytes
            while count < len(self._segments) - 1 and self._segments[count].size <= excess:
                excess -= self._segments[count].size
                count += 1
        if count == 0:
            return
        if count == len(self._segments):
            # Everything expired, the active segment included: roll first so an
            # empty active segment remains at the LEO (as Kafka does).
            self.roll()
        self._delete_oldest(count)
        self._write_checkpoint()

    def set_config(self, config: LogConfig) -> None:
        """Use `config` from now on (a topic's configuration changed)."""
        if not isinstance(config, LogConfig):
            raise TypeError(f"config must be a LogConfig, not {type(config).__name__}")
        self.config = config
        for segment in self._segments:
            segment.config = config

    def close(self, flush: bool = True) -> bool:
        """Flush (unless `flush=False`, which leaves the log as a crash would) and close the files.

        Returns whether the flush, the checkpoint and the indexes were all written; if not (a full disk), the
        reason is logged on one line, the files are closed all the same, and the next open must recover.
        """
        if self._closed:
            return True
        complete = True
        if flush:
            try:
                self.flush()
                self._write_checkpoint()
            except OSError as exc:
                logger.warning("%s: not closed cleanly, %s; the next start recovers it", self.directory, exc)
                complete = False
            if not all([segment.persist_indexes() for segment in self._segments]):
                complete = False  # each segment logged why
        for segment in self._segments:
            segment.close()
        self._closed = True
        return complete

    def delete(self) -> None:
        """Close the log and remove its directory.

        The directory is first renamed to `<name>.<random hex>-delete` (and the
        rename fsync'd), as Kafka does, so a crash during the removal leaves a
        directory that `LogManager.load` finishes deleting instead of a
        half-deleted partition that would load again.
        """
        self.close(flush=False)
        disk = self.runtime.disk
        parent, _, name = self.directory.rstrip("/").rpartition("/")
        doomed = f"{parent}/{name}.{self.runtime.random.getrandbits(64):016x}{DELETE_DIR_SUFFIX}"
        disk.rename(self.directory, doomed)
        disk.fsync_dir(parent or "/")
        disk.rmtree(doomed)

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"the log in {self.directory} is closed")

    def __repr__(self) -> str:
        return (
            f"PartitionLog({self.directory!r}, log_start_offset={self.log_start_offset}, "
            f"log_end_offset={self.log_end_offset}, recovery_point={self.recovery_point}, segments={len(self._segments)})"
        )


__all__ = ["AppendResult", "CHECKPOINT_FILE", "DELETE_DIR_SUFFIX", "OffsetOutOfRangeError", "PartitionLog"]
