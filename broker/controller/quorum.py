"""The controller quorum on the event loop: Raft ticks, messages, persistence, the metadata image.

`MetadataQuorum` drives one `broker.raft.RaftNode` (a pure state machine):

- time: a task ticks the node every `tick_ms` of the runtime's clock (one
  tenth of `controller.quorum.election.timeout.ms`, so an election timeout is
  10-20 ticks and the leader heartbeats every tick);
- network: outgoing messages are queued per peer and sent in batches as
  internal RAFT requests over the `ConnectionPool` (one sender task per peer,
  one batch in flight, so messages to a peer leave in order; a peer that is
  down costs one failed request per batch, and a backlog beyond
  `MAX_QUEUED_MESSAGES` drops the oldest messages, which Raft tolerates);
  incoming batches arrive through `handle_raft_request`;
- persistence: every Ready's hard state and entries are made durable by
  `QuorumStorage.persist` (fsync) before its messages are queued and before
  its committed entries are applied (the core's persistence contract);
- state machine: committed DATA entries are metadata record batches, applied
  in log order to the `MetadataImage`; listeners are told after each entry.
  NO_OP entries only advance the image's offset.

A restart replays the whole log (no snapshots yet) up to the persisted commit
index before anything else, so a node's image is current as of its crash.

The *active controller* is the Raft leader once it has applied its own term's
first entry (the NO_OP every new leader appends): from then on its image holds
every committed record, so its decisions start from the latest state (KIP-631).
`on_activate` / `on_resign` callbacks tell the controller.

Proposals: `propose(records)` appends one batch if this node is the leader and
waits until it is committed and applied (the future resolves with the entry's
index), or fails with NotControllerError when leadership is lost before.

Fault model: a failed write or fsync of the Raft state (OSError: a full disk,
a failing device) ends this Raft member's life in this process: the Ready
cannot be retried half-done, and the node must not send messages that promise
what is not durable. What a process restart would do is done in place
(issue 17: a node that runs out of a resource answers errors and recovers when
it is freed, it never stops): the member goes offline (it resigns if it led,
fails its proposals, drops Raft messages and sends none, so the peers carry on
without it, and the rest of the broker keeps answering), and every
STORAGE_RETRY_S it reloads its state from disk, exactly as a restart would, and
rejoins; a reload whose first write fails again stays offline. The metadata
image never goes back: entries the image already holds are not applied again.
Kafka halts the process on a metadata log I/O error instead; `on_fatal` set to
`halt_on_storage_failure` does that.

Thread-safety: none; everything runs on the broker's event loop.

Sources: KIP-595 (KRaft), Ongaro's thesis (the Raft core's docstring has the rest).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random

from broker.controller import rpc
from broker.controller.storage import QuorumStorage
from broker.metadata.errors import ControllerUnavailableError, NotControllerError
from broker.metadata.image import MetadataImage
from broker.metadata.records import MetadataRecord, decode_batch, encode_batch
from broker.protocol.client import ClientError, ConnectionPool
from broker.raft import EntryType, NotLeader, RaftConfig, RaftNode, Role, TimeoutNow

log = logging.getLogger("broker.controller")

MAX_QUEUED_MESSAGES = 2000
STORAGE_RETRY_S = 1.0
SEND_BACKOFF_S = 0.05
EXIT_STORAGE_FAILURE = 70


def halt_on_storage_failure(error: OSError) -> None:
    log.critical("controller quorum storage failed (%s); halting so that a restart recovers from disk", error)
    logging.shutdown()
    os._exit(EXIT_STORAGE_FAILURE)


class MetadataQuorum:
    def __init__(
        self,
        node_id: int,
        voters: dict[int, tuple[str, int]],
        storage: QuorumStorage,
        runtime,
        pool: ConnectionPool,
        election_timeout_ms: int = 1000,
        request_timeout_ms: int = 2000,
        on_fatal=None,
    ):
        if node_id not in voters:
            raise ValueError(f"node.id {node_id} is not among controller.quorum.voters {sorted(voters)}")
        self.node_id = node_id
        self.voters = dict(voters)
        self.storage = storage
        self.runtime = runtime
        self.pool = pool
        self.tick_s = max(election_timeout_ms // 10, 1) / 1000.0
        self.request_timeout_s = request_timeout_ms / 1000.0
        self.image = MetadataImage()
        self.listeners: list = []
        self.on_activate: list = []
        self.on_resign: list = []
        self.node: RaftNode | None = None
        self.active = False
        self._leader_first_index: int | None = None
        self._proposals: dict[int, tuple[int, asyncio.Future]] = {}
        self._outbox: dict[int, list] = {peer: [] for peer in voters if peer != node_id}
        self._outbox_ready: dict[int, asyncio.Event] = {}
        self._tasks: list[asyncio.Task] = []
        self._stopped = False
        self.leader_changes = 0
        self.on_fatal = on_fatal  # None: go offline and recover in place (see the module docstring)
        self.offline: str | None = None  # why this member is out of the quorum, while it is
        self.storage_failures = 0

    # ---- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        """Recover from disk, replay the committed log into the image, start ticking and sending."""
        self._boot()
        self._process()
        for peer in self._outbox:
            self._outbox_ready[peer] = asyncio.Event()
            self._tasks.append(asyncio.ensure_future(self._send_forever(peer)))
        self._tasks.append(asyncio.ensure_future(self._tick_forever()))

    def _boot(self) -> None:
        """A Raft member from what is on disk (at start, and when it recovers from a storage failure)."""
        state = self.storage.load()
        seed = self.runtime.random.getrandbits(64)
        self.node = RaftNode(
            self.node_id,
            sorted(self.voters),
            state,
            random.Random(seed),
            RaftConfig(election_timeout_ticks_min=10, election_timeout_ticks_max=20, heartbeat_ticks=1),
        )
        log.info(
            "controller quorum: node %d recovered term %d, %d log entries, commit index %d; voters %s",
            self.node_id, state.term, len(state.entries), state.commit_index, self.voters,
        )

    def _storage_failed(self, error: OSError) -> None:
        """The member goes offline; `_recover_forever` brings it back (see the module docstring)."""
        if self.on_fatal is not None:
            self.on_fatal(error)
            raise error
        self.storage_failures += 1
        if self.storage_failures == 1 or self.storage_failures % 60 == 0:  # the first, then one line a minute
            log.error("controller quorum storage failed (%s): node %d leaves the quorum and answers errors until its "
                      "disk takes writes again; it reloads from disk every %.0f s (failure %d)",
                      error, self.node_id, STORAGE_RETRY_S, self.storage_failures)
        self.offline = f"{type(error).__name__}: {error}"
        self._observe_role(Role.FOLLOWER)  # resign, fail the proposals
        self.node = None
        for peer in self._outbox:
            self._outbox[peer] = []
        try:
            self.storage.close()
        except OSError as exc:
            log.info("closing the quorum storage after its failure: %s", exc)
        if not self._stopped and not any(t.get_name() == "quorum-recovery" and not t.done() for t in self._tasks):
            task = asyncio.ensure_future(self._recover_forever())
            task.set_name("quorum-recovery")
            self._tasks.append(task)

    async def _recover_forever(self) -> None:
        while not self._stopped and self.offline is not None:
            await self.runtime.clock.sleep(STORAGE_RETRY_S)
            if self._stopped:
                return
            try:
                self._boot()
            except (OSError, ValueError) as exc:  # ValueError: a damaged state file, which a restart would meet too
                self.storage_failures += 1
                if self.storage_failures % 60 == 0:
                    log.error("controller quorum storage still failing (failure %d): %s", self.storage_failures, exc)
                continue
            self.offline = None
            self._process()  # a first write that fails takes it offline again; one that works says so

    async def stop(self) -> None:
        self._stopped = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._tasks.clear()
        for _, future in self._proposals.values():
            if not future.done():
                future.set_exception(NotControllerError("the controller quorum is stopping"))
                future.exception()
        self._proposals.clear()
        self.storage.close()

    # ---- observers --------------------------------------------------------------

    @property
    def leader_id(self) -> int | None:
        return self.node.leader_id if self.node is not None else None

    @property
    def is_leader(self) -> bool:
        return self.node is not None and self.node.role is Role.LEADER

    @property
    def term(self) -> int:
        return self.node.term if self.node is not None else 0

    # ---- inputs --------------------------------------------------------------------

    async def _tick_forever(self) -> None:
        while not self._stopped:
            await self.runtime.clock.sleep(self.tick_s)
            if self.node is not None:
                self.node.tick()
                self._process()

    def handle_raft_request(self, body) -> bytes:
        """An incoming RAFT request: step every message, persist, answer with an empty body."""
        if self.node is None:
            return b""  # offline after a storage failure: the messages are lost, which Raft tolerates
        for message in rpc.decode_raft_batch(body):
            if message.to_id != self.node_id or message.from_id not in self._outbox:
                log.warning("dropping Raft message %r: not from a peer to node %d", message, self.node_id)
                continue
            self.node.step(message)
        self._process()
        return b""

    async def propose(self, records: list[MetadataRecord], timeout_s: float = 10.0) -> int:
        """Commit one batch of records; return its log index once applied here."""
        if not self.active or self.node is None:
            raise NotControllerError(f"node {self.node_id} is not the active controller")
        result = self.node.propose(encode_batch(records))
        if isinstance(result, NotLeader):
            raise NotControllerError(f"node {self.node_id} is not the active controller (leader: {result.leader_id})")
        future = asyncio.get_running_loop().create_future()
        self._proposals[result.index] = (result.term, future)
        self._process()
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout_s)
        except asyncio.TimeoutError:
            raise ControllerUnavailableError(
                f"metadata change at index {result.index} was not committed within {timeout_s} s"
            ) from None
        finally:
            self._proposals.pop(result.index, None)

    async def wait_caught_up(self, timeout_s: float = 10.0) -> None:
        """Wait until every entry of this leader's log is applied to the image.

        A proposal that timed out may still commit; deciding on an image without
        it could contradict it (a topic created twice). The active controller
        therefore decides only on an image that includes its whole log.
        """
        deadline_ns = self.runtime.clock.monotonic_ns() + int(timeout_s * 1e9)
        while self.active and self.node is not None and self.image.offset < self.node.last_index:
            if self.runtime.clock.monotonic_ns() >= deadline_ns:
                raise ControllerUnavailableError(
                    f"metadata log entries up to {self.node.last_index} not committed within {timeout_s} s "
                    f"(applied: {self.image.offset})"
                )
            await self.runtime.clock.sleep(0.005)
        if not self.active:
            raise NotControllerError(f"node {self.node_id} is not the active controller")

    def transfer_leadership(self) -> int | None:
        """Hand Raft leadership to a live peer (before a controlled shutdown); return it, or None."""
        if not self.is_leader or not self._outbox:
            return None  # (also while offline: no member, no leadership)
        # A peer whose broker is registered and unfenced is alive as far as the metadata knows.
        live = [peer for peer in sorted(self._outbox) if self.image.is_live(peer)]
        target = (live or sorted(self._outbox))[0]
        self.node.transfer_leadership(target)
        self._process()
        return target

    # ---- the Ready loop ---------------------------------------------------------------

    def _process(self) -> None:
        node = self.node
        while node is not None and node.has_ready():
            ready = node.ready()
            if ready.must_sync:
                try:
                    self.storage.persist(ready)
                except OSError as exc:
                    self._storage_failed(exc)
                    return
                if self.storage_failures:
                    log.info("controller quorum: node %d writes its Raft state again, after %d storage failure(s)",
                             self.node_id, self.storage_failures)
                    self.storage_failures = 0
            self._observe_role(ready.soft_state.role)
            for message in ready.messages:
                self._enqueue(message)
            for entry in ready.committed_entries:
                self._apply(entry)
            node.advance(ready)
            self._check_active()

    def _observe_role(self, role: Role) -> None:
        if role is Role.LEADER and self._leader_first_index is None:
            # The new leader's NO_OP is its last entry now: once applied, the image is complete.
            self._leader_first_index = self.node.last_index
            log.info("controller quorum: node %d is the Raft leader of term %d", self.node_id, self.node.term)
        elif role is not Role.LEADER and self._leader_first_index is not None:
            self._leader_first_index = None
            if self.active:
                self.active = False
                log.info("controller quorum: node %d resigns as active controller (term %d)", self.node_id, self.node.term)
                for callback in self.on_resign:
                    callback()
            for index, (_, future) in list(self._proposals.items()):
                if not future.done():
                    future.set_exception(NotControllerError(f"node {self.node_id} lost leadership before index {index} committed"))
                    future.exception()

    def _check_active(self) -> None:
        if self._leader_first_index is not None and not self.active and self.image.offset >= self._leader_first_index:
            self.active = True
            self.leader_changes += 1
            log.info(
                "controller quorum: node %d is the active controller (term %d, metadata offset %d)",
                self.node_id, self.node.term, self.image.offset,
            )
            for callback in self.on_activate:
                callback()

    def _apply(self, entry) -> None:
        if entry.index <= self.image.offset:
            return  # replayed after an in-place recovery: the image already holds it, and never goes back
        old = self.image
        if entry.entry_type is EntryType.DATA:
            new = old.apply_all(decode_batch(entry.data), entry.index)
        else:
            new = old.with_offset(entry.index)
        self.image = new
        pending = self._proposals.get(entry.index)
        if pending is not None:
            term, future = pending
            if not future.done():
                if term == entry.term:
                    future.set_result(entry.index)
                else:
                    future.set_exception(NotControllerError(f"metadata change at index {entry.index} was replaced by a new leader"))
                    future.exception()
        if entry.entry_type is EntryType.DATA:
            for listener in self.listeners:
                try:
                    listener.on_metadata(old, new)
                except Exception:
                    log.exception("metadata listener %r failed on offset %d", listener, entry.index)

    # ---- sending -------------------------------------------------------------------------

    def _enqueue(self, message) -> None:
        queue = self._outbox.get(message.to_id)
        if queue is None:
            return
        queue.append(message)
        if len(queue) > MAX_QUEUED_MESSAGES:
            del queue[: len(queue) - MAX_QUEUED_MESSAGES]
        event = self._outbox_ready.get(message.to_id)
        if event is not None:
            event.set()

    async def _send_forever(self, peer: int) -> None:
        host, port = self.voters[peer]
        event = self._outbox_ready[peer]
        failures = 0
        while not self._stopped:
            await event.wait()
            event.clear()
            batch = self._outbox[peer]
            if not batch:
                continue
            self._outbox[peer] = []
            try:
                await self.pool.request(host, port, rpc.RAFT, 0, rpc.encode_raft_batch(batch), self.request_timeout_s)
                failures = 0
            except ClientError as exc:
                failures += 1
                if failures == 1 or failures % 100 == 0:
                    log.info("Raft messages to node %d (%s:%d) failed (%d in a row): %s", peer, host, port, failures, exc)
                # TimeoutNow must not be lost silently during a leadership transfer; the rest Raft resends.
                kept = [m for m in batch if isinstance(m, TimeoutNow)]
                if kept:
                    self._outbox[peer] = kept + self._outbox[peer]
                    event.set()
                await self.runtime.clock.sleep(SEND_BACKOFF_S)
