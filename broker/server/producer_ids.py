"""Producer id allocation for idempotent producers (KIP-98).

Ids are handed out from blocks: before the first id of a block is given away,
the end of the block is persisted (atomically, see `persist`), so after any
crash the next block starts past every id ever handed out, and an id is never
reused. The file is `__logquake_producer_ids.json` in the first log directory.
A block that cannot be persisted (a full disk) is not handed out:
`allocate` raises ProducerIdsUnavailableError, a ControllerUnavailableError as
a cluster's controller raises when it cannot give a block, so callers answer
COORDINATOR_NOT_AVAILABLE (retriable) and the producer retries.

Thread-safety: none; the event loop is the only caller.
"""

from __future__ import annotations

from broker.io import Runtime
from broker.metadata.errors import ControllerUnavailableError
from broker.io.persist import read_json, write_json

STATE_FILE = "__logquake_producer_ids.json"
BLOCK_SIZE = 1000


class ProducerIdsUnavailableError(ControllerUnavailableError):
    """No producer id block could be persisted (a full disk)."""


class ProducerIdAllocator:
    """`directory` None keeps the counter in memory (the null broker)."""

    def __init__(self, runtime: Runtime, directory: str | None, block_size: int = BLOCK_SIZE):
        self.runtime = runtime
        self.directory = directory
        self.block_size = block_size
        self._next_id = 0
        self._block_end = 0  # exclusive; ids below it may have been handed out

    def load(self) -> None:
        if self.directory is None:
            return
        state = read_json(self.runtime.disk, self.directory, STATE_FILE)
        if state is not None:
            self._next_id = self._block_end = int(state["next_block_start"])

    def allocate(self) -> int:
        if self._next_id >= self._block_end:
            new_end = self._next_id + self.block_size
            if self.directory is not None:
                try:
                    write_json(self.runtime.disk, self.directory, STATE_FILE, {"version": 1, "next_block_start": new_end})
                except OSError as exc:
                    raise ProducerIdsUnavailableError(f"producer id block up to {new_end} not persisted: {exc}") from exc
            self._block_end = new_end
        producer_id = self._next_id
        self._next_id += 1
        return producer_id
