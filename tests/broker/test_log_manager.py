"""LogManager: loading partition directories, the clean-shutdown marker, placement, deletion."""

from __future__ import annotations

import logging
import os

import pytest

from broker.log.config import LogConfig
from broker.log.manager import CLEAN_SHUTDOWN_FILE, LogManager
from tests.broker.test_log_support import CountingDisk, make_batch, runtime, segment_files


def test_create_append_close_and_load_again(tmp_path):
    manager = LogManager([str(tmp_path / "a")], LogConfig(), runtime())
    assert manager.load() == {}
    log = manager.create("orders", 0)
    assert manager.create("orders", 0) is log
    log.append(make_batch(3), 0)
    manager.create("orders", 1).append(make_batch(1), 0)
    manager.close()
    assert (tmp_path / "a" / CLEAN_SHUTDOWN_FILE).exists()

    again = LogManager([str(tmp_path / "a")], LogConfig(), runtime())
    logs = again.load()
    assert sorted(logs) == [("orders", 0), ("orders", 1)]
    assert logs[("orders", 0)].log_end_offset == 3
    assert again.get("orders", 1).log_end_offset == 1
    assert again.get("orders", 2) is None
    assert not (tmp_path / "a" / CLEAN_SHUTDOWN_FILE).exists()  # removed once loaded
    again.close()


def test_without_the_marker_logs_are_recovered(tmp_path, caplog):
    manager = LogManager([str(tmp_path)], LogConfig(), runtime())
    manager.load()
    manager.create("t", 0).append(make_batch(2), 0)
    manager.close(clean=False)
    assert not (tmp_path / CLEAN_SHUTDOWN_FILE).exists()
    segment = tmp_path / "t-0" / segment_files(tmp_path / "t-0")[0]
    with open(segment, "ab") as f:
        f.write(b"torn")
    with caplog.at_level(logging.WARNING, logger="broker.log"):
        logs = LogManager([str(tmp_path)], LogConfig(), runtime()).load()
    assert logs[("t", 0)].log_end_offset == 2
    assert "truncating at byte" in caplog.text
    assert "(unflushed data after the recovery point 0" in caplog.text
    logs[("t", 0)].close()


def test_new_partitions_go_to_the_log_dir_with_the_fewest(tmp_path):
    dirs = [str(tmp_path / "d1"), str(tmp_path / "d2")]
    manager = LogManager(dirs, LogConfig(), runtime())
    manager.load()
    for partition in range(4):
        manager.create("t", partition)
    assert sorted(os.listdir(tmp_path / "d1")) == ["t-0", "t-2"]
    assert sorted(os.listdir(tmp_path / "d2")) == ["t-1", "t-3"]
    manager.close()
    assert (tmp_path / "d1" / CLEAN_SHUTDOWN_FILE).exists() and (tmp_path / "d2" / CLEAN_SHUTDOWN_FILE).exists()
    again = LogManager(dirs, LogConfig(), runtime())
    assert len(again.load()) == 4
    again.close()


def test_load_ignores_files_and_foreign_directories(tmp_path):
    (tmp_path / "broker.log").write_text("log lines")
    (tmp_path / "topics.json").write_text("{}")
    (tmp_path / "not-a-partition-x").mkdir()
    (tmp_path / "looks-like-1").write_text("a file, not a directory")
    manager = LogManager([str(tmp_path)], LogConfig(), runtime())
    assert manager.load() == {}
    manager.close()


def test_topic_names_with_dashes_and_dots_round_trip(tmp_path):
    manager = LogManager([str(tmp_path)], LogConfig(), runtime())
    manager.load()
    manager.create("my-topic.v2", 12).append(make_batch(1), 0)
    manager.close()
    again = LogManager([str(tmp_path)], LogConfig(), runtime())
    assert list(again.load()) == [("my-topic.v2", 12)]
    again.close()


def test_delete_topic_removes_its_partitions_only(tmp_path):
    manager = LogManager([str(tmp_path)], LogConfig(), runtime())
    manager.load()
    manager.create("a", 0)
    manager.create("a", 1)
    manager.create("ab", 0)
    manager.delete_topic("a")
    assert sorted(os.listdir(tmp_path)) == ["ab-0"]
    assert manager.get("a", 0) is None and manager.get("ab", 0) is not None
    manager.close()


def test_load_uses_per_topic_configs(tmp_path):
    manager = LogManager([str(tmp_path)], LogConfig(), runtime())
    manager.load()
    manager.create("small", 0, LogConfig(segment_bytes=200))
    manager.close()
    again = LogManager([str(tmp_path)], LogConfig(), runtime())
    logs = again.load(lambda topic, partition: LogConfig(segment_bytes=300) if topic == "small" else None)
    assert logs[("small", 0)].config.segment_bytes == 300
    again.close()


def test_maintain_applies_retention_to_every_log(tmp_path):
    batch = make_batch(1)
    config = LogConfig(segment_bytes=len(batch), retention_bytes=len(batch))
    manager = LogManager([str(tmp_path)], config, runtime())
    manager.load()
    for partition in range(2):
        log = manager.create("t", partition)
        for _ in range(3):
            log.append(batch, 0)
    manager.maintain()
    assert [manager.get("t", p).log_start_offset for p in range(2)] == [2, 2]
    manager.close()


def test_clean_close_fsyncs_logs_and_the_marker(tmp_path):
    disk = CountingDisk()
    manager = LogManager([str(tmp_path)], LogConfig(), runtime(disk=disk))
    manager.load()
    manager.create("t", 0).append(make_batch(2), 0)
    manager.close()
    assert disk.log_fsyncs() == 1
    assert str(tmp_path / CLEAN_SHUTDOWN_FILE) in disk.file_fsyncs
    assert str(tmp_path) in disk.dir_fsyncs


@pytest.mark.parametrize(
    ("topic", "partition", "message"),
    [("", 0, "topic must match"), ("a/b", 0, "topic must match"), ("..", 0, "not be '.' or '..'"), ("t", -1, "partition must be")],
)
def test_create_rejects_bad_names(tmp_path, topic, partition, message):
    manager = LogManager([str(tmp_path)], LogConfig(), runtime())
    manager.load()
    with pytest.raises(ValueError, match=message):
        manager.create(topic, partition)
    manager.close()


def test_log_dirs_must_be_given():
    with pytest.raises(ValueError, match="log_dirs must be a non-empty list"):
        LogManager([], LogConfig(), runtime())


def test_load_finishes_an_interrupted_partition_deletion(tmp_path):
    doomed = tmp_path / "t-0.0123456789abcdef-delete"
    doomed.mkdir()
    (doomed / f"{0:020d}.log").write_bytes(make_batch(1))
    manager = LogManager([str(tmp_path)], LogConfig(), runtime())
    assert manager.load() == {}
    assert not doomed.exists()
    manager.close()


def test_creating_partitions_costs_no_fsync_until_the_first_flush(tmp_path):
    disk = CountingDisk()
    manager = LogManager([str(tmp_path)], LogConfig(), runtime(disk=disk))
    manager.load()
    before = (len(disk.file_fsyncs), len(disk.dir_fsyncs))
    for partition in range(10):
        manager.create("t", partition)
    assert (len(disk.file_fsyncs), len(disk.dir_fsyncs)) == before
    log = manager.get("t", 3)
    log.append(make_batch(1), 0)
    log.flush()
    assert str(tmp_path / "t-3") in disk.dir_fsyncs  # its new segment files
    assert str(tmp_path) in disk.dir_fsyncs  # its own name in the log dir
    manager.close()
