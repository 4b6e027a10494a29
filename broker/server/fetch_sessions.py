"""Incremental fetch sessions for followers (KIP-227), on the leader's side.

A follower's fetch names every partition it follows from this leader, about
twenty with the internal topics' default partition counts, while an append
usually touches one or two of them. With a session, the leader remembers the
partitions, their fetch offsets and what it last told the follower; a request
then names only the partitions whose fetch state changed (and, in
`forgotten_topics_data`, those to drop), and the response carries only the
partitions with records, an error, or a high watermark or log start offset
that changed since the last response.

Request forms (Kafka's FetchRequest `session_id` / `session_epoch`):
- id 0, epoch -1: a full fetch without a session (our consumers' path);
- id 0, epoch 0: a full fetch that asks for a new session; only followers
  (replica_id >= 0) get one, a consumer gets session id 0 and keeps sending
  full fetches (the leader may always decline, KIP-227);
- id N, epoch E >= 1: an incremental fetch of session N; E must be the epoch
  the last response implied (the previous one + 1), or the answer is
  INVALID_FETCH_SESSION_EPOCH; an unknown N is FETCH_SESSION_ID_NOT_FOUND;
  either way the follower drops its session and starts a new one;
- id N, epoch -1: closes session N; the request itself is served as a full
  fetch without a session.

Invariants: a session belongs to one replica id; a replica holds at most one
session (its one fetcher towards this leader), so a new session replaces the
old; at most `MAX_SESSIONS` exist. Session ids are random positive int32s, so
a follower that kept an id across this broker's restart does not match a new
session by chance.

Thread-safety: none; the broker's event loop only.

Sources: KIP-227 (incremental fetch requests); Apache Kafka's FetchSession.
"""

from __future__ import annotations

from dataclasses import dataclass

from kio.schema.errors import ErrorCode

from broker.protocol.fetch import next_session_epoch

NEW_SESSION_EPOCH = 0
FINAL_EPOCH = -1
MAX_SESSIONS = 1000
UNKNOWN = -2  # "never told": forces the partition into the next response


@dataclass(slots=True)
class SessionPartition:
    """A partition of a session: the fetch state the follower last sent, and what the leader last answered.

    The attribute names match a FetchRequest partition, so the leader reads it like one."""

    topic_key: object  # the topic name (Fetch <= v12) or topic id (v13+)
    partition: int
    fetch_offset: int
    current_leader_epoch: int
    partition_max_bytes: int
    sent_high_watermark: int = UNKNOWN
    sent_log_start_offset: int = UNKNOWN

    def update(self, fetch_partition) -> None:
        self.fetch_offset = fetch_partition.fetch_offset
        self.current_leader_epoch = getattr(fetch_partition, "current_leader_epoch", -1)
        self.partition_max_bytes = fetch_partition.partition_max_bytes

    def must_answer(self, high_watermark: int, log_start_offset: int) -> bool:
        return high_watermark != self.sent_high_watermark or log_start_offset != self.sent_log_start_offset


class FetchSession:
    def __init__(self, session_id: int, replica_id: int) -> None:
        self.session_id = session_id
        self.replica_id = replica_id
        self.epoch = NEW_SESSION_EPOCH + 1  # what the next request must carry
        self.partitions: dict[tuple[object, int], SessionPartition] = {}

    def apply(self, topics, forgotten_topics, topic_key) -> None:
        """Add or update the partitions a request names, then drop the forgotten ones."""
        for fetch_topic in topics:
            key = topic_key(fetch_topic)
            for fetch_partition in fetch_topic.partitions:
                known = self.partitions.get((key, fetch_partition.partition))
                if known is None:
                    self.partitions[(key, fetch_partition.partition)] = SessionPartition(
                        key, fetch_partition.partition, fetch_partition.fetch_offset,
                        getattr(fetch_partition, "current_leader_epoch", -1), fetch_partition.partition_max_bytes)
                else:
                    known.update(fetch_partition)
        for forgotten in forgotten_topics or ():
            key = topic_key(forgotten)
            for partition in forgotten.partitions:
                self.partitions.pop((key, partition), None)


class FetchSessionCache:
    """The sessions this leader holds, by id."""

    def __init__(self, random) -> None:
        self._random = random
        self._sessions: dict[int, FetchSession] = {}
        self._by_replica: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def resolve(self, request, replica_id: int, topic_key) -> tuple[FetchSession | None, bool, int]:
        """(session or None, whether the answer must be full, error code) for a request's session fields.

        None with no error: serve the request as a full fetch without a session."""
        session_id = getattr(request, "session_id", 0)
        epoch = getattr(request, "session_epoch", FINAL_EPOCH)
        if session_id == 0:
            if epoch != NEW_SESSION_EPOCH or replica_id < 0:
                return None, True, ErrorCode.none.value
            session = self._create(replica_id)
            session.apply(request.topics, (), topic_key)
            return session, True, ErrorCode.none.value
        session = self._sessions.get(session_id)
        if session is None or session.replica_id != replica_id:
            return None, True, ErrorCode.fetch_session_id_not_found.value
        if epoch == FINAL_EPOCH:
            self._remove(session)
            return None, True, ErrorCode.none.value
        if epoch != session.epoch:
            return None, True, ErrorCode.invalid_fetch_session_epoch.value
        session.epoch = next_session_epoch(session.epoch)
        session.apply(request.topics, getattr(request, "forgotten_topics_data", ()), topic_key)
        return session, False, ErrorCode.none.value

    def drop_replica(self, replica_id: int) -> None:
        session_id = self._by_replica.get(replica_id)
        if session_id is not None:
            self._remove(self._sessions[session_id])

    def _create(self, replica_id: int) -> FetchSession:
        self.drop_replica(replica_id)
        while len(self._sessions) >= MAX_SESSIONS:
            self._remove(next(iter(self._sessions.values())))  # the oldest
        session_id = 0
        while session_id == 0 or session_id in self._sessions:
            session_id = self._random.randrange(1, 2**31)
        session = FetchSession(session_id, replica_id)
        self._sessions[session_id] = session
        self._by_replica[replica_id] = session_id
        return session

    def _remove(self, session: FetchSession) -> None:
        self._sessions.pop(session.session_id, None)
        if self._by_replica.get(session.replica_id) == session.session_id:
            del self._by_replica[session.replica_id]
