"""PartitionLog recovery: torn tails, bad CRCs, corrupt or missing indexes, the recovery point."""

from __future__ import annotations

import logging
import os
import random
import struct

import pytest

from broker.log.config import LogConfig
from broker.log.log import CHECKPOINT_FILE
from broker.protocol.records import CorruptRecordError
from tests.broker.test_log_support import START_WALL_MS, headers_of, make_batch, open_log, segment_files

LOGGER = "broker.log"


def checkpointing(**settings) -> LogConfig:
    """A config whose every flush writes the recovery-point checkpoint, so the tests know where it is."""
    return LogConfig(flush_offset_checkpoint_interval_ms=0, **settings)


def write_log(path, config, batch_counts, flush_after=None):
    """Append batches of the given record counts; flush after batch number `flush_after`; close as a crash would."""
    log = open_log(path, config)
    for number, count in enumerate(batch_counts):
        log.append(make_batch(count, timestamp_ms=START_WALL_MS + number, tag=number), 1)
        if flush_after is not None and number == flush_after:
            log.flush()
    end = log.log_end_offset
    everything = read_all(log)
    log.close(flush=False)
    return end, everything


def read_all(log):
    """Every stored byte from log_start_offset on, one read per segment."""
    parts = []
    offset = log.log_start_offset
    while offset < log.log_end_offset:
        data = log.read(offset, 1 << 30)
        parts.append(data)
        offset = headers_of(data)[-1].next_offset
    return b"".join(parts)


def last_segment(path):
    return path / segment_files(path)[-1]


def test_a_torn_half_batch_after_the_recovery_point_is_truncated_and_logged(tmp_path, caplog):
    path = tmp_path / "t-0"
    end, before = write_log(path, checkpointing(), [2, 2, 2], flush_after=0)
    segment = last_segment(path)
    size = os.path.getsize(segment)
    garbage = make_batch(4, tag=99)
    with open(segment, "ab") as f:
        f.write(garbage[: len(garbage) // 2])
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        log = open_log(path, checkpointing(), recover=True)
    assert log.log_end_offset == end == 6
    assert read_all(log) == before
    assert os.path.getsize(segment) == size
    warnings = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert str(segment) in message
    assert f"truncating at byte {size}" in message
    assert f"dropping {len(garbage) // 2} bytes with offsets 6 and above" in message
    assert "torn write" in message
    assert "recovery point 2" in message
    result = log.append(make_batch(3), 2)
    assert (result.base_offset, log.log_end_offset) == (6, 9)
    assert [h.base_offset for h in headers_of(log.read(0, 1 << 30))] == [0, 2, 4, 6]
    log.close()
    again = open_log(path, checkpointing(), recover=True)
    assert again.log_end_offset == 9
    again.close()


def test_a_garbage_length_is_truncated(tmp_path, caplog):
    path = tmp_path / "t-0"
    end, before = write_log(path, checkpointing(), [1, 1])
    header = bytearray(make_batch(1)[:61])
    struct.pack_into(">i", header, 8, 0x7FFFFFF0)  # batch_length far past the end of the file
    with open(last_segment(path), "ab") as f:
        f.write(header)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        log = open_log(path, checkpointing(), recover=True)
    assert read_all(log) == before
    assert "claims 2147483644 bytes but only 61 remain" in caplog.text
    log.close()


def test_a_bad_crc_in_the_last_unflushed_batch_is_truncated(tmp_path, caplog):
    path = tmp_path / "t-0"
    end, before = write_log(path, checkpointing(), [3, 3, 3])
    segment = last_segment(path)
    size = os.path.getsize(segment)
    last_batch_size = len(make_batch(3))
    with open(segment, "r+b") as f:
        f.seek(size - 3)
        f.write(b"XYZ")  # inside the last record of the last batch
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        log = open_log(path, checkpointing(), recover=True)
    assert log.log_end_offset == 6
    assert read_all(log) == before[: size - last_batch_size]
    assert "CRC-32C mismatch" in caplog.text
    assert "the damaged batch claims offsets 6..8" in caplog.text
    log.close()


def test_a_zero_filled_tail_is_truncated(tmp_path, caplog):
    path = tmp_path / "t-0"
    end, before = write_log(path, checkpointing(), [2, 2])
    with open(last_segment(path), "ab") as f:
        f.write(b"\x00" * 4096)  # what a power loss can leave after a size update without data
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        log = open_log(path, checkpointing(), recover=True)
    assert log.log_end_offset == end
    assert read_all(log) == before
    assert "dropping 4096 bytes with offsets 4 and above" in caplog.text
    log.close()


def test_corruption_below_the_recovery_point_is_cut_with_an_error(tmp_path, caplog):
    path = tmp_path / "t-0"
    log = open_log(path, checkpointing())
    positions = []
    for number in range(4):
        positions.append(log.size_bytes)
        log.append(make_batch(2, tag=number), 0)
    log.flush()
    log.close(flush=False)
    segment = last_segment(path)
    with open(segment, "r+b") as f:
        f.seek(positions[2] + 70)  # inside batch 2 (offsets 4-5), which was fsync'd
        f.write(b"!")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        reopened = open_log(path, checkpointing(), recover=True)
    assert reopened.log_end_offset == 4
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    message = errors[0].getMessage()
    assert f"{segment}: truncating at byte {positions[2]}" in message
    assert "offsets 4 and above" in message
    assert "below the recovery point 8" in message
    assert "cannot be trusted" in message
    assert reopened.recovery_point == 4
    reopened.close()


def test_a_bad_batch_in_a_middle_segment_drops_the_later_segments(tmp_path, caplog):
    path = tmp_path / "t-0"
    batch_size = len(make_batch(1))
    config = checkpointing(segment_bytes=batch_size * 3)
    log = open_log(path, config)
    for number in range(9):
        log.append(make_batch(1, tag=number), 0)
    assert log.segment_base_offsets == [0, 3, 6]
    log.close(flush=False)
    middle = path / f"{3:020d}.log"
    with open(middle, "r+b") as f:
        f.seek(batch_size + 65)  # second batch of the middle segment (offset 4)
        f.write(b"?")
    (path / CHECKPOINT_FILE).unlink(missing_ok=True)  # no checkpoint: everything is re-read
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        reopened = open_log(path, config, recover=True)
    assert reopened.log_end_offset == 4
    assert reopened.segment_base_offsets == [0, 3]
    assert segment_files(path) == [f"{0:020d}.log", f"{3:020d}.log"]
    assert f"also deleting the later segments {6:020d}.log" in caplog.text
    assert reopened.append(make_batch(1), 0).base_offset == 4
    reopened.close()


def test_segments_below_the_recovery_point_are_not_reread(tmp_path, caplog):
    # Documented limit: fsync'd segments before the one holding the recovery
    # point are trusted; a CRC error inside one goes unnoticed by recovery.
    path = tmp_path / "t-0"
    batch_size = len(make_batch(1))
    config = checkpointing(segment_bytes=batch_size * 2)
    log = open_log(path, config)
    for number in range(6):
        log.append(make_batch(1, tag=number), 0)
    log.flush()
    log.close(flush=False)
    with open(path / f"{0:020d}.log", "r+b") as f:
        f.seek(70)
        f.write(b"#")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        reopened = open_log(path, config, recover=True)
    assert reopened.log_end_offset == 6
    assert caplog.records == []
    reopened.close()


def test_an_unclean_stop_without_damage_loses_nothing(tmp_path, caplog):
    path = tmp_path / "t-0"
    config = checkpointing(segment_bytes=1000, index_interval_bytes=64)
    end, before = write_log(path, config, [(n % 7) + 1 for n in range(60)], flush_after=20)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        log = open_log(path, config, recover=True)
    assert caplog.records == []
    assert (log.log_end_offset, log.recovery_point) == (end, end)
    assert read_all(log) == before
    log.close()


@pytest.mark.parametrize("suffix", [".index", ".timeindex"])
def test_a_corrupt_index_is_rebuilt_and_reads_stay_correct(tmp_path, caplog, suffix):
    path = tmp_path / "t-0"
    config = checkpointing(segment_bytes=4000, index_interval_bytes=100)
    log = open_log(path, config)
    bases = []
    for number in range(100):
        bases.append(log.append(make_batch((number % 3) + 1, timestamp_ms=START_WALL_MS + number, tag=number), 0).base_offset)
    expected = {base: log.read(base, 1) for base in bases}
    log.close()
    index = path / segment_files(path, suffix)[0]
    size = os.path.getsize(index)
    assert size > 0
    index.write_bytes(random.Random(7).randbytes(size))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        reopened = open_log(path, config)
    assert f"rebuilding the indexes of {str(index)[: -len(suffix)]}.log" in caplog.text
    assert {base: reopened.read(base, 1) for base in bases} == expected
    assert reopened.offset_for_timestamp(START_WALL_MS + 50) == (bases[50], START_WALL_MS + 50)
    reopened.close()
    assert os.path.getsize(index) == size  # rewritten with the same entries
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        open_log(path, config).close()
    assert caplog.records == []


def test_a_missing_index_is_rebuilt(tmp_path, caplog):
    path = tmp_path / "t-0"
    config = checkpointing(index_interval_bytes=50)
    log = open_log(path, config)
    for number in range(30):
        log.append(make_batch(2, tag=number), 0)
    expected = log.read(17, 1)
    log.close()
    index = path / segment_files(path, ".index")[0]
    content = index.read_bytes()
    os.remove(index)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        reopened = open_log(path, config)
    assert "is missing" in caplog.text
    assert reopened.read(17, 1) == expected
    reopened.close()
    assert index.read_bytes() == content


def test_a_damaged_tail_found_on_a_clean_open_is_cut_with_an_error(tmp_path, caplog):
    path = tmp_path / "t-0"
    log = open_log(path, checkpointing())
    log.append(make_batch(2), 0)
    log.close()
    with open(last_segment(path), "ab") as f:
        f.write(b"\x01\x02\x03")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        reopened = open_log(path, checkpointing())
    assert reopened.log_end_offset == 2
    assert any(r.levelno == logging.ERROR and "truncating at byte" in r.getMessage() for r in caplog.records)
    reopened.close()


def test_a_leftover_temporary_checkpoint_is_ignored(tmp_path):
    path = tmp_path / "t-0"
    log = open_log(path, checkpointing())
    log.append(make_batch(2), 0)
    log.close()
    (path / (CHECKPOINT_FILE + ".tmp")).write_bytes(b"0\nrecovery-point 99\n")
    reopened = open_log(path, checkpointing(), recover=True)
    assert (reopened.log_end_offset, reopened.recovery_point) == (2, 2)
    assert not (path / (CHECKPOINT_FILE + ".tmp")).exists()
    reopened.close()


def test_an_unreadable_checkpoint_means_recovering_everything(tmp_path, caplog):
    path = tmp_path / "t-0"
    log = open_log(path, checkpointing())
    log.append(make_batch(2), 0)
    log.close()
    (path / CHECKPOINT_FILE).write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        reopened = open_log(path, checkpointing(), recover=True)
    assert "unreadable checkpoint" in caplog.text
    assert reopened.log_end_offset == 2
    reopened.close()


def test_a_segment_overlapping_the_one_before_is_dropped(tmp_path, caplog):
    path = tmp_path / "t-0"
    log = open_log(path, checkpointing())
    for number in range(3):
        log.append(make_batch(2, tag=number), 0)
    log.close()
    # A stray segment claiming offsets the first one already holds.
    stray = bytearray(make_batch(1))
    stray[0:8] = (3).to_bytes(8, "big")
    (path / f"{3:020d}.log").write_bytes(bytes(stray))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        reopened = open_log(path, checkpointing(), recover=True)
    assert reopened.log_end_offset == 6
    assert reopened.segment_base_offsets == [0]
    assert f"segment {3:020d}.log starts at offset 3, below the end 6" in caplog.text
    assert not (path / f"{3:020d}.log").exists()
    reopened.close()


def test_losing_only_deleted_records_restarts_the_log_empty_at_its_start(tmp_path, caplog):
    path = tmp_path / "t-0"
    log = open_log(path, checkpointing())
    log.append(make_batch(4), 0)
    log.delete_records_before(4)  # the checkpoint says: start at 4; the batch was never fsync'd
    log.close(flush=False)
    with open(last_segment(path), "r+b") as f:
        f.truncate(0)  # a power loss took the unflushed batch
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        reopened = open_log(path, checkpointing(), recover=True)
    assert (reopened.log_start_offset, reopened.log_end_offset) == (4, 4)
    assert reopened.segment_base_offsets == [4]
    assert "below its log start offset 4 (only deleted records were lost); restarting it empty at 4" in caplog.text
    assert reopened.append(make_batch(1), 0).base_offset == 4
    reopened.close()


def test_a_segment_that_lost_its_tail_leaves_a_hole_and_offsets_are_not_reused(tmp_path):
    path = tmp_path / "t-0"
    batch_size = len(make_batch(1))
    config = checkpointing(segment_bytes=batch_size * 2)
    log = open_log(path, config)
    for number in range(4):
        log.append(make_batch(1, tag=number), 0)
    assert log.segment_base_offsets == [0, 2]
    log.close(flush=False)
    with open(path / f"{0:020d}.log", "r+b") as f:
        f.truncate(batch_size)  # offset 1 vanished with the unflushed tail
    reopened = open_log(path, config, recover=True)
    assert reopened.log_end_offset == 4
    assert [h.base_offset for h in reopened.iter_batch_headers()] == [0, 2, 3]
    assert headers_of(reopened.read(1, 1))[0].base_offset == 2  # the hole reads as the next batch
    assert reopened.append(make_batch(1), 0).base_offset == 4
    reopened.close()


@pytest.mark.parametrize("planted", [False, True])
def test_debug_keep_torn_tail_keeps_the_torn_bytes_in_the_log(tmp_path, planted):
    from broker.server.config import build_config

    properties = {"node.id": "1"}
    if planted:
        properties["logquake.debug.keep.torn.tail"] = "true"
    config = build_config(properties).log_config
    path = tmp_path / "t-0"
    end, before = write_log(path, config, [2, 2, 2], flush_after=0)
    segment = last_segment(path)
    size = os.path.getsize(segment)
    torn = make_batch(20, tag=99)[:300]
    with open(segment, "ab") as f:
        f.write(torn)
    log = open_log(path, config, recover=True)
    assert log.log_end_offset == end  # both take the next offset from the last whole batch ...
    assert os.path.getsize(segment) == size + (len(torn) if planted else 0)  # ... only one cuts the file
    appended = make_batch(1, tag=7)
    log.append(appended, 2)
    # the planted log appended the new batch after the torn bytes: its batches no longer read back
    assert os.path.getsize(segment) == size + len(appended) + (len(torn) if planted else 0)
    if planted:
        with pytest.raises(CorruptRecordError, match="bad batch header|torn|claims"):
            [h.base_offset for h in log.iter_batch_headers(0)]
    else:
        assert [h.base_offset for h in log.iter_batch_headers(0)] == [0, 2, 4, 6]
        assert read_all(log) == before + log.read(6, 1 << 20)
    log.close()
