"""Topic metadata of a single node: names, topic ids, partition counts, configs.

The whole table is one JSON file, `__logquake_topics.json` in the first log
directory, replaced atomically on every change (see `persist`), and reloaded at
start. A topic id is a random UUID (from the runtime's seeded random source) that
never changes for the life of the topic, as KIP-516 requires; a topic deleted and
re-created gets a new id.

Topic names follow Kafka's rule: 1-249 characters of [a-zA-Z0-9._-], not "."
or "..".

Thread-safety: none; the event loop is the only caller.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field

from broker.io import Runtime
from broker.io.persist import read_json, write_json

STATE_FILE = "__logquake_topics.json"
_LEGAL_NAME = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")


def topic_name_problem(name: str | None) -> str | None:
    """Why `name` is not a legal topic name, or None if it is."""
    if name is None or name == "":
        return "a topic name must not be empty"
    if name in (".", ".."):
        return f"topic name {name!r} is not allowed"
    if not _LEGAL_NAME.match(name):
        return f"topic name {name!r} is illegal; it must be 1-249 characters of a-z, A-Z, 0-9, '.', '_' and '-'"
    return None


@dataclass
class TopicInfo:
    name: str
    topic_id: uuid.UUID
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)


class TopicStore:
    """The topic table; `directory` None keeps it in memory only (the null broker)."""

    def __init__(self, runtime: Runtime, directory: str | None):
        self.runtime = runtime
        self.directory = directory
        self.by_name: dict[str, TopicInfo] = {}
        self.by_id: dict[uuid.UUID, TopicInfo] = {}

    def load(self) -> None:
        if self.directory is None:
            return
        state = read_json(self.runtime.disk, self.directory, STATE_FILE)
        for entry in (state or {}).get("topics", []):
            info = TopicInfo(entry["name"], uuid.UUID(entry["topic_id"]), int(entry["partitions"]), dict(entry["configs"]))
            self._index(info)

    def _index(self, info: TopicInfo) -> None:
        self.by_name[info.name] = info
        self.by_id[info.topic_id] = info

    def _save(self, leaving_out: str | None = None) -> None:
        if self.directory is None:
            return
        topics = [
            {"name": t.name, "topic_id": str(t.topic_id), "partitions": t.partitions, "configs": t.configs}
            for t in sorted(self.by_name.values(), key=lambda t: t.name) if t.name != leaving_out
        ]
        write_json(self.runtime.disk, self.directory, STATE_FILE, {"version": 1, "topics": topics})

    def new_topic_id(self) -> uuid.UUID:
        while True:
            candidate = uuid.UUID(int=self.runtime.random.getrandbits(128), version=4)
            if candidate not in self.by_id:
                return candidate

    def create(self, name: str, partitions: int, configs: dict[str, str]) -> TopicInfo:
        assert name not in self.by_name, f"topic {name!r} exists"
        info = TopicInfo(name, self.new_topic_id(), partitions, dict(configs))
        self._index(info)
        try:
            self._save()
        except OSError:
            # not saved, so not created: the table never holds a topic the file lacks
            del self.by_name[name], self.by_id[info.topic_id]
            raise
        return info

    def delete(self, name: str) -> TopicInfo:
        self._save(leaving_out=name)  # an OSError (a full disk) leaves the topic in the table and the file
        info = self.by_name.pop(name)
        del self.by_id[info.topic_id]
        return info
