"""One log segment: a `.log` file of record batches with its sparse `.index` and `.timeindex`.

Files (Kafka's layout, named by the segment's 20-digit base offset):

- `<base>.log`: v2 record batches back to back, exactly as stored (offsets and
  leader epoch already patched in).
- `<base>.index`: entries of (int32 last offset of a batch relative to the
  base offset, int32 byte position of that batch), big-endian, one per
  `index_interval_bytes` of batches written. Like Kafka's `OffsetIndex` the
  offset is the batch's *last* offset, so a lookup finds the greatest entry
  whose offset is <= the target and scans forward from its position.
- `<base>.timeindex`: entries of (int64 timestamp, int32 relative offset),
  big-endian. An entry is added at each offset-index point when the largest
  timestamp so far has grown past the last entry, and once more when the
  segment rolls (Kafka's `TimeIndex.maybeAppend` discipline). An entry (T, O)
  means: every batch up to the one holding offset O has max_timestamp <= T.

Invariants:
- `size` is the byte length of the whole batches in the `.log` file; the file
  handle's position is always at `size`, so an append is one `write`.
- Index entries are strictly increasing in offset and position and point at
  batch starts inside the file. The in-memory arrays are the truth; the index
  files trail them (entries are written at flush, roll, truncation and close)
  and are rebuilt from the `.log` whenever they are missing, fail the sanity
  check, or belong to a segment that is being recovered.
- Nothing here holds batch bytes: headers are read with `pread` on demand, in
  chunks, and parsed without touching the records inside.

Thread-safety: none; one segment belongs to one `PartitionLog` on the broker's
event loop.

Sources: Apache Kafka `LogSegment`, `OffsetIndex`, `TimeIndex`,
`LogSegment.recover`; Kafka protocol guide "Record Batch".
"""

from __future__ import annotations

import logging
import struct
import sys
from array import array
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import Iterator

import crc32c as _crc32c

from broker.io import Disk, DiskFile
from broker.log.config import INT32_MAX, LogConfig
from broker.protocol.records import BATCH_HEADER_SIZE, CRC_START, LOG_OVERHEAD, BatchHeader, CorruptRecordError

logger = logging.getLogger("broker.log")

LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".index"
TIME_INDEX_SUFFIX = ".timeindex"
SEGMENT_SUFFIXES = (LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX)

NO_TIMESTAMP = -1  # Kafka's RecordBatch.NO_TIMESTAMP

# Bytes read per pread when walking batch headers: large enough that a run of
# small batches costs one system call, small enough not to matter for memory.
SCAN_CHUNK_BYTES = 64 * 1024
# Bytes read per pread when recovery validates CRCs over whole batches.
RECOVERY_CHUNK_BYTES = 1 << 20

_HEADER = struct.Struct(">qiibIhiqqqhii")
_TIME_ENTRY = struct.Struct(">qi")
_LITTLE_ENDIAN = sys.byteorder == "little"


def segment_file_name(base_offset: int, suffix: str) -> str:
    return f"{base_offset:020d}{suffix}"


def header_problem(header: BatchHeader) -> str | None:
    """Why `header` cannot be a stored v2 batch header, or None if it can."""
    if header.magic != 2:
        return f"magic byte {header.magic} (only magic 2 is stored)"
    if header.batch_length < BATCH_HEADER_SIZE - LOG_OVERHEAD:
        return f"batch length {header.batch_length} is smaller than a batch header ({BATCH_HEADER_SIZE - LOG_OVERHEAD})"
    if header.last_offset_delta < 0 or header.records_count < 0:
        return f"negative last_offset_delta ({header.last_offset_delta}) or records_count ({header.records_count})"
    return None


@dataclass(frozen=True)
class Truncation:
    """What recovery cut off the end of a segment, and why."""

    position: int  # first byte dropped
    bytes_dropped: int
    first_dropped_offset: int  # the offset the next valid batch would have started at
    claimed_offsets: tuple[int, int] | None  # (base, last) of the damaged batch, if its header was readable
    reason: str


class LogSegment:
    """A `.log` file plus its in-memory sparse offset and time indexes."""

    def __init__(self, directory: str, base_offset: int, config: LogConfig, disk: Disk, created_ms: int):
        if base_offset < 0:
            raise ValueError(f"segment base_offset must be >= 0, not {base_offset}")
        self.directory = directory
        self.base_offset = base_offset
        self.config = config
        self.disk = disk
        self.log_path = f"{directory}/{segment_file_name(base_offset, LOG_SUFFIX)}"
        self.index_path = f"{directory}/{segment_file_name(base_offset, INDEX_SUFFIX)}"
        self.time_index_path = f"{directory}/{segment_file_name(base_offset, TIME_INDEX_SUFFIX)}"
        # Wall-clock time of the first append (or of opening, for a segment
        # loaded from disk): what time-based rolling by the clock measures.
        self.created_ms = created_ms
        self.size = 0
        self.next_offset = base_offset  # one past the last offset stored here
        self.max_timestamp = NO_TIMESTAMP
        self.offset_of_max_timestamp = -1
        self.first_batch_timestamp: int | None = None  # max_timestamp of the first batch (Kafka's rolling base)
        self.dirty = False  # bytes written since the last fsync
        self._bytes_since_last_index = 0
        self._index_offsets = array("i")  # relative last offsets
        self._index_positions = array("i")
        self._index_written = 0  # entries already in the .index file
        self._index_rewrite = True  # the .index file must be cut to _index_written before appending
        self._time_timestamps = array("q")
        self._time_offsets = array("i")  # relative offsets
        self._time_written = 0
        self._time_rewrite = True
        self._index_failing = False  # the last persist_indexes failed (logged once until one succeeds)
        self._file: DiskFile | None = None

    # ------------------------------------------------------------------ life cycle

    @classmethod
    def create(cls, directory: str, base_offset: int, config: LogConfig, disk: Disk, created_ms: int) -> "LogSegment":
        """A new empty segment; any old files of that name are truncated."""
        segment = cls(directory, base_offset, config, disk, created_ms)
        for path in (segment.log_path, segment.index_path, segment.time_index_path):
            disk.open(path, "wb").close()
        segment._index_rewrite = segment._time_rewrite = False
        segment._file = disk.open(segment.log_path, "r+b")
        return segment

    @classmethod
    def open_existing(cls, directory: str, base_offset: int, config: LogConfig, disk: Disk, created_ms: int) -> "LogSegment":
        """Open the files of an existing segment; call `load` or `recover` next."""
        segment = cls(directory, base_offset, config, disk, created_ms)
        segment._file = disk.open(segment.log_path, "r+b")
        segment.size = segment._file.size()
        segment._file.seek(segment.size)
        return segment

    def load(self) -> str | None:
        """Load the indexes and the tail state of a segment trusted to be intact.

        Returns None on success, or why the segment must be rebuilt by
        `recover` instead (a missing or insane index, or an unreadable batch).
        """
        assert self._file is not None
        self.size = self._file.size()
        self._file.seek(self.size)
        problem = self._load_offset_index()
        if problem is None:
            problem = self._load_time_index()
        if problem is not None:
            return problem
        if self._index_positions:
            position = self._index_positions[-1]
            expected_last_offset = self.base_offset + self._index_offsets[-1]
            try:
                header = self.read_header(position)
            except CorruptRecordError as exc:
                return f"the last offset index entry points at byte {position}, where no batch can be read: {exc}"
            if header.last_offset != expected_last_offset:
                return (
                    f"the last offset index entry says the batch at byte {position} ends at offset "
                    f"{expected_last_offset}, but it ends at {header.last_offset}"
                )
        try:
            self._scan_tail()
        except CorruptRecordError as exc:
            return str(exc)
        if self._time_offsets and self.base_offset + self._time_offsets[-1] >= self.next_offset:
            return (
                f"the time index names offset {self.base_offset + self._time_offsets[-1]}, "
                f"beyond the segment's last offset {self.next_offset - 1}"
            )
        return None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def delete_files(self) -> None:
        self.close()
        for path in (self.log_path, self.index_path, self.time_index_path):
            if self.disk.exists(path):
                self.disk.remove(path)

    # ------------------------------------------------------------------ writing

    def index_would_overflow(self, batch_count: int) -> bool:
        """Whether appending `batch_count` more batches could overrun an index's size limit."""
        return (
            len(self._index_offsets) + batch_count > self.config.max_index_entries
            or len(self._time_timestamps) + batch_count + 1 > self.config.max_time_index_entries
        )

    def append(self, buf, batches: list[tuple[int, BatchHeader]]) -> None:
        """Write `buf` (whole batches, offsets assigned) at the end in one write and index them."""
        assert self._file is not None
        start = self.size
        try:
            self._file.write(buf)
        except OSError:
            # A short write (disk full, I/O error) must not leave a partial
            # batch where the next append would land after it.
            self._file.truncate(start)
            self._file.seek(start)
            raise
        for position, header in batches:
            self._index_batch(start + position, header)
        self.size = start + len(buf)
        self.next_offset = batches[-1][1].next_offset
        self.dirty = True

    def _index_batch(self, position: int, header: BatchHeader) -> None:
        """Account for the batch stored at `position` (Kafka's LogSegment.append bookkeeping)."""
        if position == 0:
            self.first_batch_timestamp = header.max_timestamp
        if header.max_timestamp > self.max_timestamp:
            self.max_timestamp = header.max_timestamp
            self.offset_of_max_timestamp = header.last_offset
        if self._bytes_since_last_index > self.config.index_interval_bytes:
            self._index_offsets.append(header.last_offset - self.base_offset)
            self._index_positions.append(position)
            self._maybe_append_time_entry()
            self._bytes_since_last_index = 0
        self._bytes_since_last_index += header.size

    def _maybe_append_time_entry(self) -> None:
        last_timestamp = self._time_timestamps[-1] if self._time_timestamps else NO_TIMESTAMP
        if self.max_timestamp > last_timestamp:
            self._time_timestamps.append(self.max_timestamp)
            self._time_offsets.append(self.offset_of_max_timestamp - self.base_offset)

    def on_roll(self) -> None:
        """The segment stops being the active one: record its final largest timestamp, write its indexes."""
        if self.size > 0:
            self._maybe_append_time_entry()
        self.persist_indexes()

    def persist_indexes(self) -> bool:
        """Write index entries the files do not have yet (they are not fsync'd: they can be rebuilt).

        Returns False if the disk refused (a full disk): the in-memory indexes stay the truth, the entries are
        written at the next call, and the failure is logged once until a write succeeds again.
        """
        try:
            self._index_written = self._persist(
                self.index_path, 8, self._index_written, len(self._index_offsets), self._index_rewrite,
                self._encode_offset_entries,
            )
            self._index_rewrite = False
            self._time_written = self._persist(
                self.time_index_path, _TIME_ENTRY.size, self._time_written, len(self._time_timestamps), self._time_rewrite,
                self._encode_time_entries,
            )
            self._time_rewrite = False
        except OSError as exc:
            if not self._index_failing:
                logger.warning("%s: index files not written (%s); they are written later or rebuilt", self.log_path, exc)
                self._index_failing = True
            return False
        self._index_failing = False
        return True

    def _persist(self, path: str, entry_size: int, written: int, total: int, rewrite: bool, encode) -> int:
        if written == total and not rewrite:
            return written
        exists = self.disk.exists(path)
        if not exists:
            written = 0
        index_file = self.disk.open(path, "r+b" if exists else "wb")
        try:
            if rewrite and exists:
                index_file.truncate(written * entry_size)
            index_file.seek(written * entry_size)
            if total > written:
                index_file.write(encode(written, total))
        finally:
            index_file.close()
        return total

    def _encode_offset_entries(self, start: int, end: int) -> bytes:
        entries = array("i", bytes(8 * (end - start)))
        entries[0::2] = self._index_offsets[start:end]
        entries[1::2] = self._index_positions[start:end]
        if _LITTLE_ENDIAN:
            entries.byteswap()
        return entries.tobytes()

    def _encode_time_entries(self, start: int, end: int) -> bytes:
        return b"".join(
            _TIME_ENTRY.pack(self._time_timestamps[i], self._time_offsets[i]) for i in range(start, end)
        )

    def fsync(self) -> None:
        assert self._file is not None
        self._file.fsync()
        self.dirty = False

    def truncate_at(self, position: int, first_dropped_offset: int) -> None:
        """Drop every byte from `position` (a batch start) on; `first_dropped_offset` is that batch's base offset."""
        assert self._file is not None
        assert 0 <= position <= self.size, (position, self.size)
        self._file.truncate(position)
        self._file.seek(position)
        self.size = position
        keep = bisect_left(self._index_positions, position)
        del self._index_offsets[keep:]
        del self._index_positions[keep:]
        if keep < self._index_written:
            self._index_written = keep
            self._index_rewrite = True
        keep = bisect_left(self._time_offsets, first_dropped_offset - self.base_offset)
        del self._time_timestamps[keep:]
        del self._time_offsets[keep:]
        if keep < self._time_written:
            self._time_written = keep
            self._time_rewrite = True
        self._scan_tail()
        self.persist_indexes()
        self.dirty = True

    # ------------------------------------------------------------------ reading

    def read_header(self, position: int) -> BatchHeader:
        """The header of the batch at `position`; CorruptRecordError if there is none."""
        assert self._file is not None
        data = self._file.pread(BATCH_HEADER_SIZE, position)
        if len(data) < BATCH_HEADER_SIZE:
            raise CorruptRecordError(
                f"{self.log_path}: truncated batch header at byte {position}: {len(data)} bytes left, {BATCH_HEADER_SIZE} needed"
            )
        header = BatchHeader(*_HEADER.unpack_from(data))
        problem = header_problem(header)
        if problem is not None:
            raise CorruptRecordError(f"{self.log_path}: bad batch header at byte {position}: {problem}")
        return header

    def pread(self, size: int, position: int) -> bytes:
        assert self._file is not None
        data = self._file.pread(size, position)
        if len(data) < size:
            # A regular file returns short reads only at end of file; loop in case
            # the Disk implementation splits large reads.
            parts = [data]
            got = len(data)
            while got < size:
                more = self._file.pread(size - got, position + got)
                if not more:
                    raise CorruptRecordError(f"{self.log_path}: read of {size} bytes at byte {position} hit end of file")
                parts.append(more)
                got += len(more)
            data = b"".join(parts)
        return data

    def scan(self, start_position: int = 0) -> Iterator[tuple[int, BatchHeader]]:
        """Yield (position, header) of each batch from `start_position` to the end.

        Reads headers in chunks of SCAN_CHUNK_BYTES, skipping record bodies.
        Raises CorruptRecordError (naming the file and byte) at an unreadable batch.
        """
        assert self._file is not None
        end = self.size
        position = start_position
        chunk = b""
        chunk_start = 0
        read_bytes = SCAN_CHUNK_BYTES
        while position < end:
            offset_in_chunk = position - chunk_start
            if offset_in_chunk < 0 or offset_in_chunk + BATCH_HEADER_SIZE > len(chunk):
                chunk = self._file.pread(min(read_bytes, end - position), position)
                chunk_start = position
                offset_in_chunk = 0
                if len(chunk) < BATCH_HEADER_SIZE:
                    raise CorruptRecordError(
                        f"{self.log_path}: truncated batch header at byte {position}: "
                        f"{len(chunk)} bytes left, {BATCH_HEADER_SIZE} needed"
                    )
            header = BatchHeader(*_HEADER.unpack_from(chunk, offset_in_chunk))
            problem = header_problem(header)
            if problem is not None:
                raise CorruptRecordError(f"{self.log_path}: bad batch header at byte {position}: {problem}")
            if position + header.size > end:
                raise CorruptRecordError(
                    f"{self.log_path}: truncated batch at byte {position}: it claims {header.size} bytes, {end - position} remain"
                )
            yield position, header
            position += header.size
            # Behind a big batch the next header is far away: read just the
            # header rather than a chunk of records nobody looks at.
            read_bytes = BATCH_HEADER_SIZE if header.size >= SCAN_CHUNK_BYTES else SCAN_CHUNK_BYTES

    def position_for(self, offset: int) -> int:
        """A batch start at or before the batch holding `offset` (from the sparse index)."""
        entry = bisect_right(self._index_offsets, offset - self.base_offset) - 1
        return self._index_positions[entry] if entry >= 0 else 0

    def find_batch(self, offset: int) -> tuple[int, BatchHeader] | None:
        """The first batch whose last offset is >= `offset`, or None if the segment ends before it."""
        start = self.position_for(offset)
        if self.config.debug_index_off_by_one:
            # logquake.debug.index.off.by.one (a planted bug): the first entry at or above the offset instead
            # of the last one at or below it, so the scan starts past the batches in between.
            entry = min(bisect_left(self._index_offsets, offset - self.base_offset), len(self._index_offsets) - 1)
            start = self._index_positions[entry] if entry >= 0 else 0
        for position, header in self.scan(start):
            if header.last_offset >= offset:
                return position, header
        return None

    def read_end(self, start: int, first: BatchHeader, max_bytes: int, max_offset: int | None) -> int:
        """Where a read that starts with batch `first` at `start` ends (exclusive, a batch boundary).

        Whole batches only; the first one always (if below `max_offset`), then
        more while they fit in `max_bytes` and end below `max_offset`. Uses the
        offset index to skip over batches whose headers need not be read.
        """
        if max_offset is not None and first.last_offset >= max_offset:
            return start
        limit = start + max_bytes
        if (max_offset is None or max_offset >= self.next_offset) and self.size <= limit:
            return self.size
        end = start + first.size
        if end >= limit:
            return end
        # Index entries mark batch starts; every batch before entry i ends at or
        # before its position, and has a last offset below the entry's.
        candidates = bisect_right(self._index_positions, limit)
        if max_offset is not None:
            candidates = min(candidates, bisect_left(self._index_offsets, max_offset - self.base_offset))
        if candidates > 0 and self._index_positions[candidates - 1] > end:
            end = self._index_positions[candidates - 1]
        for position, header in self.scan(end):
            if max_offset is not None and header.last_offset >= max_offset:
                break
            if position + header.size > limit:
                break
            end = position + header.size
        return end

    def find_timestamp(self, timestamp_ms: int, min_offset: int) -> BatchHeader | None:
        """The first batch with max_timestamp >= `timestamp_ms` and last offset >= `min_offset`."""
        if self.max_timestamp < timestamp_ms:
            return None
        # Every batch up to the one holding the offset of the last entry below
        # the target has a smaller timestamp, so the search starts after it.
        entry = bisect_left(self._time_timestamps, timestamp_ms) - 1
        start_offset = self.base_offset + self._time_offsets[entry] + 1 if entry >= 0 else self.base_offset
        start_offset = max(start_offset, min_offset)
        for _, header in self.scan(self.position_for(start_offset)):
            if header.last_offset >= start_offset and header.max_timestamp >= timestamp_ms:
                return header
        return None

    # ------------------------------------------------------------------ loading and recovery

    def _load_offset_index(self) -> str | None:
        if not self.disk.exists(self.index_path):
            return f"offset index {self.index_path} is missing"
        data = self._read_whole(self.index_path)
        if len(data) % 8:
            return f"offset index {self.index_path} has {len(data)} bytes, not a multiple of the 8-byte entry size"
        entries = array("i")
        entries.frombytes(data)
        if _LITTLE_ENDIAN:
            entries.byteswap()
        offsets = entries[0::2]
        positions = entries[1::2]
        if not _strictly_increasing(offsets) or not _strictly_increasing(positions):
            return f"offset index {self.index_path} is not strictly increasing"
        if offsets and (offsets[0] < 0 or positions[0] <= 0 or positions[-1] >= self.size):
            return (
                f"offset index {self.index_path} points outside the segment "
                f"(first entry {offsets[0]}@{positions[0]}, last position {positions[-1]}, segment size {self.size})"
            )
        self._index_offsets = offsets
        self._index_positions = positions
        self._index_written = len(offsets)
        self._index_rewrite = False
        return None

    def _load_time_index(self) -> str | None:
        if not self.disk.exists(self.time_index_path):
            return f"time index {self.time_index_path} is missing"
        data = self._read_whole(self.time_index_path)
        if len(data) % _TIME_ENTRY.size:
            return f"time index {self.time_index_path} has {len(data)} bytes, not a multiple of the 12-byte entry size"
        timestamps = array("q")
        offsets = array("i")
        for timestamp, offset in _TIME_ENTRY.iter_unpack(data):
            timestamps.append(timestamp)
            offsets.append(offset)
        if not _strictly_increasing(timestamps) or not _non_decreasing(offsets) or (offsets and offsets[0] < 0):
            return f"time index {self.time_index_path} is not increasing"
        self._time_timestamps = timestamps
        self._time_offsets = offsets
        self._time_written = len(offsets)
        self._time_rewrite = False
        return None

    def _read_whole(self, path: str) -> bytes:
        index_file = self.disk.open(path, "rb")
        try:
            return index_file.read()
        finally:
            index_file.close()

    def _scan_tail(self) -> None:
        """Recompute next_offset, max timestamp and index spacing from the last index entry on."""
        start = self._index_positions[-1] if self._index_positions else 0
        if self._time_timestamps:
            self.max_timestamp = self._time_timestamps[-1]
            self.offset_of_max_timestamp = self.base_offset + self._time_offsets[-1]
        else:
            self.max_timestamp = NO_TIMESTAMP
            self.offset_of_max_timestamp = -1
        self.next_offset = self.base_offset
        for _, header in self.scan(start):
            self.next_offset = header.next_offset
            if header.max_timestamp > self.max_timestamp:
                self.max_timestamp = header.max_timestamp
                self.offset_of_max_timestamp = header.last_offset
        if start > 0 and self.next_offset == self.base_offset:
            raise CorruptRecordError(f"{self.log_path}: no batch at indexed byte {start}")
        self._bytes_since_last_index = self.size - start
        self.first_batch_timestamp = self.read_header(0).max_timestamp if self.size > 0 else None

    def recover(self) -> Truncation | None:
        """Re-read every batch, validating headers, offsets and CRCs; rebuild both indexes.

        Stops at the first batch that is torn (runs past the end of the file),
        has an impossible header, goes back in offsets, or fails its CRC-32C, and
        truncates the file there. Returns what was cut, or None if nothing was.
        Reads in chunks of RECOVERY_CHUNK_BYTES, so memory stays bounded however
        large the segment or a (claimed) batch is.
        """
        assert self._file is not None
        self._index_offsets = array("i")
        self._index_positions = array("i")
        self._time_timestamps = array("q")
        self._time_offsets = array("i")
        self._index_written = self._time_written = 0
        self._index_rewrite = self._time_rewrite = True
        self._bytes_since_last_index = 0
        self.max_timestamp = NO_TIMESTAMP
        self.offset_of_max_timestamp = -1
        self.first_batch_timestamp = None
        file_size = self._file.size()
        position = 0
        expected_offset = self.base_offset
        chunk = b""
        chunk_start = 0
        reason = None
        claimed = None
        while position < file_size:
            remaining = file_size - position
            if remaining < BATCH_HEADER_SIZE:
                reason = f"only {remaining} bytes remain, fewer than a batch header ({BATCH_HEADER_SIZE}): a torn write"
                break
            offset_in_chunk = position - chunk_start
            if offset_in_chunk < 0 or offset_in_chunk + BATCH_HEADER_SIZE > len(chunk):
                chunk = self._file.pread(min(RECOVERY_CHUNK_BYTES, remaining), position)
                chunk_start = position
                offset_in_chunk = 0
            header = BatchHeader(*_HEADER.unpack_from(chunk, offset_in_chunk))
            reason = header_problem(header)
            if reason is not None:
                reason = f"bad batch header: {reason}"
                break
            claimed = (header.base_offset, header.last_offset)
            if header.size > remaining:
                reason = f"the batch claims {header.size} bytes but only {remaining} remain: a torn write"
                break
            if header.base_offset < expected_offset:
                reason = f"the batch's base offset {header.base_offset} is below the previous batch's next offset {expected_offset}"
                break
            if header.last_offset - self.base_offset > INT32_MAX:
                reason = f"the batch's last offset {header.last_offset} is too far above the segment's base offset"
                break
            crc = self._batch_crc(chunk, chunk_start, offset_in_chunk, position, header)
            if crc != header.crc:
                reason = f"CRC-32C mismatch: stored {header.crc:#010x}, computed {crc:#010x}"
                break
            self._index_batch(position, header)
            expected_offset = header.next_offset
            position += header.size
            reason = None
            claimed = None
        self.size = position
        self.next_offset = expected_offset
        truncation = None
        if position < file_size:
            truncation = Truncation(position, file_size - position, expected_offset, claimed, reason or "unreadable bytes")
            if self.config.debug_keep_torn_tail:
                # logquake.debug.keep.torn.tail (a planted bug): the cut is reported, but the torn bytes stay in the
                # segment, whose end stays the file's end: the next batches are appended after them.
                self.size = file_size
            else:
                self._file.truncate(position)
            self.dirty = True
        self._file.seek(self.size)
        self.persist_indexes()
        return truncation

    def _batch_crc(self, chunk: bytes, chunk_start: int, offset_in_chunk: int, position: int, header: BatchHeader) -> int:
        batch_end = position + header.size
        available_end = min(len(chunk), offset_in_chunk + header.size)
        crc = _crc32c.crc32c(memoryview(chunk)[offset_in_chunk + CRC_START : available_end])
        done = chunk_start + available_end
        while done < batch_end:
            piece = self._file.pread(min(RECOVERY_CHUNK_BYTES, batch_end - done), done)
            if not piece:
                break
            crc = _crc32c.crc32c(piece, crc)
            done += len(piece)
        return crc


def _strictly_increasing(values) -> bool:
    return all(a < b for a, b in zip(values, values[1:]))


def _non_decreasing(values) -> bool:
    return all(a <= b for a, b in zip(values, values[1:]))
