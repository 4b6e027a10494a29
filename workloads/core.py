"""What a workload is: a generator of operations, a client that performs them, and a checker.

The runner owns processes and time; a workload only says what to do next and how
to do it against a bootstrap address. Operations are `checkers.history.Op`s
throughout (`invocation(...)` and `completion(...)` build them). A client maps
every outcome to Jepsen's completion types: `ok` (it happened), `fail` (it certainly did not happen), or
`info` (unknown: a timeout, a lost connection). After `info` the runner retires
the client's process and opens a new client under a new process number.

Thread-safety: one client per worker thread; a generator is called under the
runner's lock.
"""

from __future__ import annotations

import abc
import importlib
import itertools
import pkgutil
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from checkers.queue.delivery import MODES as DELIVERY_MODES  # the one table of delivery modes
from checkers.history import Op, completion, invocation
from checkers.queue.delivery import Delivery


class Client(abc.ABC):
    """Performs operations: `invoke(op)` takes an invocation (`checkers.history.invocation`, with its process)
    and answers its completion (`checkers.history.completion`): one operation type, `checkers.history.Op`,
    from the generator through the client, the recorder and the history file to the checkers and the report."""

    @abc.abstractmethod
    def invoke(self, op: Op) -> Op: ...

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
    def next_op(self, rng: random.Random, process: int) -> Op: ...

    @abc.abstractmethod
    def open_client(self, bootstrap: str, process: int) -> Client: ...

    def open_ops(self, rng: random.Random) -> list[Op]:
        """Operations a freshly opened client runs first (e.g. an assign)."""
        return []

    @abc.abstractmethod
    def final_ops(self) -> list[Op]:
        """Operations one fresh client runs after healing, to read everything back."""

    @abc.abstractmethod
    def check(self, history, final_reads_incomplete: str | None = None) -> dict:
        """Judge the history; `final_reads_incomplete` says why the final reads did not complete, if they did not
        (the checker then decides which verdicts still stand)."""

    def describe(self) -> dict:
        return {"name": self.name}

    # How long one operation may take before the client gives up; the runner waits a little longer.
    op_timeout_s: float = 10.0

    def topics(self) -> dict[str, int]:
        """topic -> partitions the workload uses: the runner waits for them to be served after healing,
        and role targets (`leader-of`) resolve against the first one."""
        return {}

    def acls(self) -> list[Grant] | None:
        """What the workload's clients may do on a cluster that enforces ACLs (`--security sasl-scram...`): the
        ALLOW grants its user gets, no more than its clients use (`grants` builds them). None: not declared, and
        a run that enforces ACLs refuses the workload rather than let it do everything."""
        return None


# Kafka's names (AclBinding's resource type, pattern type and operation) of what a workload may be granted:
# nothing that creates, deletes or alters, and of the cluster only IDEMPOTENT_WRITE
RESOURCE_OPERATIONS = {
    "TOPIC": ("READ", "WRITE", "DESCRIBE"),
    "GROUP": ("READ", "DESCRIBE"),
    "TRANSACTIONAL_ID": ("WRITE", "DESCRIBE"),
    "CLUSTER": ("IDEMPOTENT_WRITE",),
}
PATTERNS = ("LITERAL", "PREFIXED")
CLUSTER_NAME = "kafka-cluster"  # the one name of the CLUSTER resource


@dataclass(frozen=True, order=True)
class Grant:
    """One ALLOW ACL a workload's clients need, in Kafka's names: `operation` on the `resource` named `name`
    (a prefix of names when `pattern` is PREFIXED), from any host. The harness gives it to the workload's user.
    READ and WRITE imply DESCRIBE, as in Kafka (Metadata, ListOffsets and FindCoordinator need DESCRIBE)."""

    resource: str
    name: str
    operation: str
    pattern: str = "LITERAL"

    def __post_init__(self):
        if self.operation not in RESOURCE_OPERATIONS.get(self.resource, ()):
            raise ValueError(f"a workload may not be granted {self.operation} on {self.resource} (allowed: "
                             f"{', '.join(f'{r} {o}' for r, ops in RESOURCE_OPERATIONS.items() for o in ops)})")
        if self.pattern not in PATTERNS or not self.name:
            raise ValueError(f"grant {self}: the pattern is LITERAL or PREFIXED, and the name is not empty")
        if (self.resource == "CLUSTER") != (self.name == CLUSTER_NAME and self.pattern == "LITERAL"):
            raise ValueError(f"grant {self}: the CLUSTER resource is the literal {CLUSTER_NAME!r}, and only it")

    def to_dict(self) -> dict[str, str]:
        return {"resource": self.resource, "pattern": self.pattern, "name": self.name, "operation": self.operation}


def grants(resource: str, names, *operations: str, pattern: str = "LITERAL") -> list[Grant]:
    """Every operation on every name (a str is one name): `grants("TOPIC", "t", "READ", "WRITE")`."""
    names = [names] if isinstance(names, str) else list(names)
    return [Grant(resource, name, operation, pattern) for name in names for operation in operations]


def idempotent_write() -> list[Grant]:
    """What an idempotent producer that is not transactional asks for its producer id with (InitProducerId)."""
    return grants("CLUSTER", CLUSTER_NAME, "IDEMPOTENT_WRITE")


def flag_of(name: str) -> str:
    """The command-line flag of an option name: `time_limit_s` -> `--time-limit` (a `_s` suffix says seconds)."""
    return "--" + name.removesuffix("_s").replace("_", "-")


class UniqueValues:
    """A workload mixin: `unique_value()` hands out 1, 2, 3, ... to the generator, under a lock.

    The counter belongs to the harness's generator: a copy of the workload sent to a client process
    (pickled, see workloads.isolated) gets a fresh counter and lock, which it never uses."""

    def _init_values(self) -> None:
        self._values = itertools.count(1)
        self._lock = threading.Lock()

    def unique_value(self) -> int:
        with self._lock:
            return next(self._values)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_lock", None)
        state.pop("_values", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._init_values()


@dataclass(frozen=True)
class Option:
    """One option a part declares: the CLI flag, test.json field and validation all come from it."""

    name: str  # a Python identifier; the flag is `flag_of(name)`
    kind: type  # int, float, str or bool (bool options are flags)
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None

    @property
    def flag(self) -> str:
        return flag_of(self.name)

    def check(self, value: Any) -> Any:
        """`value` as the option's kind; ValueError in a sentence that names the flag."""
        if value is None and self.default is None:
            return None  # an optional setting left unset
        if self.kind is bool:
            if isinstance(value, bool):
                return value
            raise ValueError(f"{self.flag} is a flag (true or false), got {value!r}")
        try:
            converted = self.kind(value)
        except (TypeError, ValueError):
            raise ValueError(f"{self.flag} takes {'a number' if self.kind in (int, float) else 'a ' + self.kind.__name__}"
                             f", got {value!r}") from None
        if self.choices is not None and converted not in self.choices:
            raise ValueError(f"{self.flag} {converted!r} is not one of {', '.join(map(str, self.choices))}")
        return converted


@dataclass(frozen=True)
class WorkloadSettings:
    """What the test decided for a workload: the delivery, client, cluster size, topic settings, its own options,
    and the concurrency (worker slots: a process's slot is its number mod it, `harness.runner`)."""

    delivery: Delivery
    client: str
    nodes: int
    replication_factor: int
    min_insync_replicas: int
    options: dict[str, Any] = field(default_factory=dict)
    concurrency: int = 6


@dataclass(frozen=True)
class WorkloadKind:
    """A registered workload: how to build it, the options it declares, and what it can run under.

    `deliveries` and `clients` list what the workload supports, the first delivery being its default; a
    test that asks for anything else is refused before it starts, with a sentence naming what is missing."""

    name: str
    summary: str
    build: Callable[[WorkloadSettings], Workload]
    options: tuple[Option, ...] = ()
    deliveries: tuple[Delivery, ...] = (Delivery("at-least-once"),)
    clients: tuple[str, ...] = ("confluent", "kafka-python")

    def defaults(self) -> dict[str, Any]:
        return {o.name: o.default for o in self.options}

    def settle(self, delivery: Delivery, client: str, given: dict[str, Any]) -> dict[str, Any]:
        """The workload's options: defaults overlaid with `given`, checked; ValueError names the problem."""
        if delivery not in self.deliveries:
            raise ValueError(f"workload {self.name} runs under {', '.join(d.name for d in self.deliveries)}, "
                             f"not {delivery.name}")
        if client not in self.clients:
            raise ValueError(f"workload {self.name} runs on --client {' or '.join(self.clients)}, not {client}")
        declared = {o.name: o for o in self.options}
        unknown = sorted(set(given) - set(declared))
        if unknown:
            flags = ", ".join(flag_of(n) for n in unknown)
            raise ValueError(f"{flags} {'is not an option' if len(unknown) == 1 else 'are not options'} of "
                             f"workload {self.name} (its options: "
                             f"{', '.join(o.flag for o in self.options) or 'none'})")
        return {name: option.check(given.get(name, option.default)) for name, option in declared.items()}


_REGISTRY: dict[str, WorkloadKind] = {}
# modules of this package that hold no workload
_NOT_WORKLOADS = frozenset({"core", "isolated", "kafka_admin", "python_clients"})


def register_workload(kind: WorkloadKind) -> WorkloadKind:
    """Add a workload to the registry (a workload module calls this when imported)."""
    existing = _REGISTRY.get(kind.name)
    if existing is not None and existing.build is not kind.build:
        raise ValueError(f"two workloads are named {kind.name!r}")
    _REGISTRY[kind.name] = kind
    return kind


def workload_kinds() -> dict[str, WorkloadKind]:
    """Every registered workload by name: each module of the `workloads` package is imported, and registers itself.

    Adding a workload is adding a module that calls `register_workload`; nothing else names it."""
    import workloads

    for module in pkgutil.iter_modules(workloads.__path__):
        if module.name not in _NOT_WORKLOADS and not module.name.startswith("_"):
            importlib.import_module(f"workloads.{module.name}")
    return dict(sorted(_REGISTRY.items()))
