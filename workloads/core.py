"""What a workload is: a generator of operations, a client that performs them, and a checker.

The runner owns processes and time; a workload only says what to do next and how
to do it against a bootstrap address. A client maps every outcome to Jepsen's
completion types: `ok` (it happened), `fail` (it certainly did not happen), or
`info` (unknown: a timeout, a lost connection). After `info` the runner retires
the client's process and opens a new client under a new process number.

Thread-safety: one client per worker thread; a generator is called under the
runner's lock.
"""

from __future__ import annotations

import abc
import random
from dataclasses import dataclass, field
from typing import Any

from checkers.queue.delivery import MODES as DELIVERY_MODES  # the one table of delivery modes


@dataclass
class Invocation:
    f: str
    value: Any
    extra: dict = field(default_factory=dict)  # recorded with the invoke, e.g. {"final": True}


@dataclass
class Completion:
    type: str  # ok | fail | info
    value: Any
    error: Any = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        assert self.type in ("ok", "fail", "info"), self.type


class Client(abc.ABC):
    @abc.abstractmethod
    def invoke(self, op: Invocation) -> Completion: ...

    @abc.abstractmethod
    def close(self) -> None: ...


class Workload(abc.ABC):
    name: str
    # True: the harness runs each client in a child process (workloads.isolated), so a client library
    # that blocks while holding the GIL cannot freeze the harness; the workload must then pickle.
    isolated_clients: bool = False

    @abc.abstractmethod
    def setup(self, bootstrap: str) -> None:
        """Create topics and anything else the run needs, before the first operation."""

    @abc.abstractmethod
    def next_op(self, rng: random.Random, process: int) -> Invocation: ...

    @abc.abstractmethod
    def open_client(self, bootstrap: str, process: int) -> Client: ...

    def open_ops(self, rng: random.Random) -> list[Invocation]:
        """Operations a freshly opened client runs first (e.g. an assign)."""
        return []

    @abc.abstractmethod
    def final_ops(self) -> list[Invocation]:
        """Operations one fresh client runs after healing, to read everything back."""

    @abc.abstractmethod
    def check(self, history, final_reads_incomplete: str | None = None) -> dict:
        """Judge the history; `final_reads_incomplete` says why the final reads did not complete, if they did not
        (the checker then decides which verdicts still stand)."""

    def describe(self) -> dict:
        return {"name": self.name}
