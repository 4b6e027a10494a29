"""The broker's logs across its log directories (`log.dirs`).

`LogManager` finds every partition directory `<topic>-<partition>` at start,
opens each `PartitionLog` (with recovery unless the log directory holds the
clean-shutdown marker `.kafka_cleanshutdown`, Kafka's name), places new
partitions in the log directory with the fewest, runs periodic maintenance, and
writes the marker again on a clean close, unless something of that directory
could not be written (a full disk: see `broker.log.log`), in which case the
next start recovers it.

Invariants: at most one open `PartitionLog` per (topic, partition); the marker
exists only while no log in that directory is open for writing (it is removed,
and the removal fsync'd, right after loading, so a crash afterwards is seen as
unclean).

Thread-safety: none; used from the broker's event loop.

Sources: Apache Kafka `LogManager` (loadLogs, cleanShutdownFile, nextLogDirs).
"""

from __future__ import annotations

import logging
import re
from typing import Callable

from broker.io import Runtime
from broker.log.config import LogConfig
from broker.log.log import DELETE_DIR_SUFFIX, PartitionLog

logger = logging.getLogger("broker.log")

CLEAN_SHUTDOWN_FILE = ".kafka_cleanshutdown"
# Kafka's topic names are [a-zA-Z0-9._-]{1,249}; the partition is after the last dash.
_PARTITION_DIR = re.compile(r"^([a-zA-Z0-9._-]+)-(\d+)$")
_TOPIC_NAME = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")


class LogManager:
    def __init__(self, log_dirs: list[str], default_config: LogConfig, runtime: Runtime):
        if not log_dirs or not all(isinstance(path, str) and path for path in log_dirs):
            raise ValueError(f"log_dirs must be a non-empty list of directory paths, not {log_dirs!r}")
        if not isinstance(default_config, LogConfig):
            raise TypeError(f"default_config must be a LogConfig, not {type(default_config).__name__}")
        self.log_dirs = [path.rstrip("/") or "/" for path in log_dirs]
        self.default_config = default_config
        self.runtime = runtime
        self._logs: dict[tuple[str, int], PartitionLog] = {}
        self._log_dir_of: dict[tuple[str, int], str] = {}
        self._closed = False

    def load(
        self, config_for: Callable[[str, int], LogConfig | None] | None = None
    ) -> dict[tuple[str, int], PartitionLog]:
        """Open every partition directory; recover those in a directory without the clean-shutdown marker.

        `config_for(topic, partition)` may supply a topic's own config (None
        means the default). Returns the loaded logs by (topic, partition).
        """
        disk = self.runtime.disk
        for log_dir in self.log_dirs:
            disk.makedirs(log_dir)
            marker = f"{log_dir}/{CLEAN_SHUTDOWN_FILE}"
            clean = disk.exists(marker)
            if not clean:
                logger.info("%s: no clean-shutdown marker; logs there will be recovered", log_dir)
            for name in disk.listdir(log_dir):
                if name.endswith(DELETE_DIR_SUFFIX) and _PARTITION_DIR.match(name[: -len(DELETE_DIR_SUFFIX)].rpartition(".")[0]):
                    # A partition whose deletion a crash interrupted: finish it.
                    logger.info("%s/%s: finishing an interrupted partition deletion", log_dir, name)
                    disk.rmtree(f"{log_dir}/{name}")
                    continue
                match = _PARTITION_DIR.match(name)
                if not match:
                    continue
                path = f"{log_dir}/{name}"
                try:
                    disk.listdir(path)
                except NotADirectoryError:
                    continue
                key = (match.group(1), int(match.group(2)))
                if key in self._logs:
                    raise ValueError(
                        f"partition {key[0]}-{key[1]} is in two log directories: {self._log_dir_of[key]} and {log_dir}"
                    )
                config = (config_for(*key) if config_for is not None else None) or self.default_config
                self._logs[key] = PartitionLog.open(path, config, self.runtime, recover=not clean)
                self._log_dir_of[key] = log_dir
            if clean:
                disk.remove(marker)
                disk.fsync_dir(log_dir)
        return dict(self._logs)

    def get(self, topic: str, partition: int) -> PartitionLog | None:
        return self._logs.get((topic, partition))

    def create(self, topic: str, partition: int, config: LogConfig | None = None) -> PartitionLog:
        """Create the log of a new partition, or return the one that exists already."""
        if not isinstance(topic, str) or not _TOPIC_NAME.match(topic) or topic in (".", ".."):
            raise ValueError(f"topic must match [a-zA-Z0-9._-]{{1,249}} and not be '.' or '..', not {topic!r}")
        if isinstance(partition, bool) or not isinstance(partition, int) or partition < 0:
            raise ValueError(f"partition must be an integer >= 0, not {partition!r}")
        key = (topic, partition)
        existing = self._logs.get(key)
        if existing is not None:
            return existing
        counts = {log_dir: 0 for log_dir in self.log_dirs}
        for log_dir in self._log_dir_of.values():
            counts[log_dir] += 1
        log_dir = min(self.log_dirs, key=lambda d: counts[d])
        # No fsync here: the log makes its directory's name durable at its first flush.
        log = PartitionLog.open(f"{log_dir}/{topic}-{partition}", config or self.default_config, self.runtime, recover=False)
        self._logs[key] = log
        self._log_dir_of[key] = log_dir
        return log

    def delete_topic(self, topic: str) -> None:
        """Close and remove the logs of every partition of `topic`."""
        for key in [key for key in self._logs if key[0] == topic]:
            log = self._logs.pop(key)
            log_dir = self._log_dir_of.pop(key)
            log.delete()
            self.runtime.disk.fsync_dir(log_dir)

    def delete_partition(self, topic: str, partition: int) -> None:
        """Close and remove the log of one partition (no-op if this node has none)."""
        log = self._logs.pop((topic, partition), None)
        if log is None:
            return
        log_dir = self._log_dir_of.pop((topic, partition))
        log.delete()
        self.runtime.disk.fsync_dir(log_dir)

    def logs(self) -> dict[tuple[str, int], PartitionLog]:
        return dict(self._logs)

    def maintain(self) -> None:
        """Retention, time-based flush and time-based roll on every log (nothing once closed)."""
        if self._closed:
            return
        for log in list(self._logs.values()):
            log.maintain()

    def close(self, clean: bool = True) -> bool:
        """Close every log. `clean`: flush first and write the clean-shutdown marker (fsync'd).

        `clean=False` closes the files without flushing or marking, leaving the
        directories as a crash would (the next load recovers them). A log dir
        where anything could not be written (a full disk: each log logged why)
        gets no marker, so the next load recovers it; returns whether every
        log dir got its marker.
        """
        if self._closed:
            return True
        unclean_dirs = {self._log_dir_of[key] for key, log in self._logs.items() if not log.close(flush=clean)}
        if clean:
            disk = self.runtime.disk
            for log_dir in self.log_dirs:
                if log_dir in unclean_dirs:
                    continue
                try:
                    marker = disk.open(f"{log_dir}/{CLEAN_SHUTDOWN_FILE}", "wb")
                    try:
                        marker.fsync()
                    finally:
                        marker.close()
                    disk.fsync_dir(log_dir)
                except OSError as exc:
                    logger.warning("%s: clean-shutdown marker not written (%s); the next start recovers its logs", log_dir, exc)
                    unclean_dirs.add(log_dir)
        self._closed = True
        return not unclean_dirs
