"""Per-partition log settings, named after Kafka's broker/topic properties.

Each field maps to one Kafka property (`log.segment.bytes` / `segment.bytes`,
...); the defaults are Kafka's. A `LogConfig` is immutable: to change a topic's
settings the server builds a new one and hands it to `PartitionLog.set_config`.

Invariant: every instance has passed `__post_init__` validation, so the log
code never re-checks ranges.

Thread-safety: immutable, so freely shared.
"""

from __future__ import annotations

from dataclasses import dataclass

INT32_MAX = (1 << 31) - 1
# The smallest segment Kafka accepts (LogConfig's segment.bytes validator): a
# record batch header plus a little.
MIN_SEGMENT_BYTES = 14
# An index needs room for at least one entry (8 bytes offset index, 12 bytes time index).
MIN_SEGMENT_INDEX_BYTES = 12


@dataclass(frozen=True)
class LogConfig:
    segment_bytes: int = 1 << 30  # log.segment.bytes
    roll_ms: int = 7 * 24 * 3600 * 1000  # log.roll.ms
    retention_ms: int = 7 * 24 * 3600 * 1000  # log.retention.ms (-1 = forever)
    retention_bytes: int = -1  # log.retention.bytes (-1 = no size limit)
    flush_interval_messages: int | None = None  # log.flush.interval.messages (None = never by count)
    flush_interval_ms: int | None = None  # log.flush.interval.ms (None = never by time)
    index_interval_bytes: int = 4096  # log.index.interval.bytes
    segment_index_bytes: int = 10 * 1024 * 1024  # log.index.size.max.bytes
    # log.flush.offset.checkpoint.interval.ms: a flush writes the recovery-point
    # checkpoint only if this long has passed since the last write (else
    # maintain() writes it once due), so that a flush per append costs one
    # fsync, not three. Kafka's default is 60 s; ours is shorter so recovery
    # re-reads at most about a second of flushed data. 0 = at every flush.
    flush_offset_checkpoint_interval_ms: int = 1000
    # Planted bugs (the broker's logquake.debug.* properties; off except when the harness measures
    # itself): a flush that skips its fsyncs, an offset index lookup one entry too late, a recovery
    # that leaves a torn tail in the file. Not topic configs: every topic gets the broker's.
    debug_skip_fsync: bool = False
    debug_index_off_by_one: bool = False
    debug_keep_torn_tail: bool = False

    def __post_init__(self) -> None:
        _check_int(
            "flush_offset_checkpoint_interval_ms (log.flush.offset.checkpoint.interval.ms)",
            self.flush_offset_checkpoint_interval_ms,
            0,
            None,
        )
        _check_int("segment_bytes (log.segment.bytes)", self.segment_bytes, MIN_SEGMENT_BYTES, INT32_MAX)
        _check_int("roll_ms (log.roll.ms)", self.roll_ms, 1, None)
        if self.retention_ms != -1:
            _check_int("retention_ms (log.retention.ms)", self.retention_ms, 0, None, also="-1 for no time limit")
        if self.retention_bytes != -1:
            _check_int("retention_bytes (log.retention.bytes)", self.retention_bytes, 0, None, also="-1 for no size limit")
        if self.flush_interval_messages is not None:
            _check_int(
                "flush_interval_messages (log.flush.interval.messages)",
                self.flush_interval_messages,
                1,
                None,
                also="None to never flush by message count",
            )
        if self.flush_interval_ms is not None:
            _check_int(
                "flush_interval_ms (log.flush.interval.ms)",
                self.flush_interval_ms,
                0,
                None,
                also="None to never flush by time",
            )
        _check_int("index_interval_bytes (log.index.interval.bytes)", self.index_interval_bytes, 0, INT32_MAX)
        _check_int(
            "segment_index_bytes (log.index.size.max.bytes)", self.segment_index_bytes, MIN_SEGMENT_INDEX_BYTES, INT32_MAX
        )

    @property
    def max_index_entries(self) -> int:
        """Offset index entries (8 bytes each) a segment may hold before it must roll."""
        return self.segment_index_bytes // 8

    @property
    def max_time_index_entries(self) -> int:
        """Time index entries (12 bytes each) a segment may hold before it must roll."""
        return self.segment_index_bytes // 12


def _check_int(name: str, value: object, low: int, high: int | None, also: str = "") -> None:
    accepted = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
    if also:
        accepted += f", or {also}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be {accepted}, not {value!r} ({type(value).__name__})")
    if value < low or (high is not None and value > high):
        raise ValueError(f"{name} must be {accepted}, not {value}")
