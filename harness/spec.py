"""A fault test described as data: `RunSpec`, written as `test.json` and read back to rebuild the run.

Jepsen's test map in one typed record: which workload (and its own options),
the delivery mode, the fault mix, the backend, the system under test, the
cluster size, the client, the seed and the time limits. `logquake test` builds
a spec from its flags, `RunSpec.resolve` fills every default and checks every
value (a ValueError is a sentence for the user, and nothing has started), and
`harness.run_command.build_run` builds the run from the resolved spec alone;
so `RunSpec.from_test_json(test.json)` of a stored run rebuilds that run
(`resolve` of a resolved spec changes nothing).

Options are declared once: the common ones in `COMMON_OPTIONS` below, each
workload's own in its registration (`workloads.core.WorkloadKind.options`);
the CLI of `logquake test` is generated from both, and a test asserts that
every field of the spec has its flag.

Format: `test.json` holds `{"format": FORMAT, "options": {every field of the
spec}, ...}`. Runs stored before format 2 have no `format` and keep the queue
workload's options (`keys`, `acks`, `subscribe`) among the others, which
`from_test_json` still reads; an unknown format is refused with a sentence
naming it.

Thread-safety: immutable values.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from checkers.queue.delivery import Delivery
from workloads.core import Option, WorkloadKind, WorkloadSettings, flag_of, workload_kinds

__all__ = ["BACKENDS", "COMMON_OPTIONS", "FORMAT", "RunSpec", "SpecError"]

FORMAT = 2
BACKENDS = ("local", "docker", "ssh")
CLIENTS = ("confluent", "kafka-python", "aiokafka")
SECURITY_MODES = ("none", "tls", "sasl-scram", "sasl-scram-tls")  # harness.security.MODES and none
# The workload options that format 1 kept among the test's own options.
_FORMAT1_QUEUE_OPTIONS = ("keys", "acks", "subscribe")


class SpecError(ValueError):
    """A test description that cannot run, in a sentence that names the option and the value."""


# The options every test has, whatever its workload (flags: `workloads.core.flag_of`).
COMMON_OPTIONS: tuple[Option, ...] = (
    Option("delivery", str, None, "delivery mode: client settings and the promise the checker holds the run to "
                                  "(default: the workload's first, at-least-once for the queue)",
           choices=("at-most-once", "at-least-once", "exactly-once")),
    Option("idempotent", bool, False, "at-least-once with the idempotent producer: retries must not duplicate, and "
                                      "the checker says so"),
    Option("client", str, "confluent", "Kafka client library", choices=CLIENTS),
    Option("nodes", int, 3, "cluster size"),
    Option("time_limit_s", float, 30.0, "seconds of workload under faults, before healing and final reads"),
    Option("rate", float, 200.0, "operations per second, all workers together"),
    Option("concurrency", int, 6, "worker threads, one client each"),
    Option("nemesis_interval_s", float, 10.0, "mean seconds from one fault's start to the next's (several kinds take turns, one fault at a time)"),
    Option("recovery_timeout_s", float, 60.0, "how long the cluster may take to recover after healing"),
    Option("replication_factor", int, None, "replication factor of the workload's topics (default: min(3, nodes))"),
    Option("min_insync_replicas", int, None, "min.insync.replicas of the workload's topics (default: 2 when the "
                                             "replication factor is at least 3, else 1)"),
    Option("backend", str, "local", "where nodes run", choices=BACKENDS),
    Option("security", str, "none", "secure the client listener and run every client through it: tls (SSL), "
                                    "sasl-scram (SASL_PLAINTEXT, SCRAM-SHA-512) or sasl-scram-tls (SASL_SSL), "
                                    "with throwaway secrets removed at the end; local backend (a --system broker: "
                                    "as its [security] table says)",
           choices=SECURITY_MODES),
)


@dataclass(frozen=True)
class RunSpec:
    """Every parameter of one run. Build with `RunSpec(...)`, then `resolve()` before use."""

    workload: str = "queue"
    workload_options: dict[str, Any] = field(default_factory=dict)
    delivery: str | None = None  # None: the workload's default delivery
    idempotent: bool = False
    client: str = "confluent"
    nemesis: tuple[str, ...] = ("partition", "kill", "pause")
    nemesis_interval_s: float = 10.0
    nodes: int = 3
    time_limit_s: float = 30.0
    rate: float = 200.0
    concurrency: int = 6
    seed: int = 0
    backend: str = "local"
    # the client listener's security mode (harness.security); the secrets themselves are never part of a spec
    security: str = "none"
    # --backend ssh: the nodes file the hosts came from (its path only; it holds no secrets)
    nodes_file: str | None = None
    system: str | None = None
    # the --system file's contents as read when the run was resolved: test.json keeps them, and a replay
    # rebuilds the system from them even when the file has changed or is gone
    system_description: dict[str, Any] | None = None
    broker_overrides: dict[str, str] = field(default_factory=dict)
    replication_factor: int | None = None
    min_insync_replicas: int | None = None
    recovery_timeout_s: float = 60.0
    store: str = "store"
    name: str | None = None
    # a fault schedule written by hand or taken from a run (schedule.json's events); None: decided by the seed
    schedule: tuple[dict[str, Any], ...] | None = None
    # the run this one replays (its directory), if any
    replay_of: str | None = None

    # ----- derived ---------------------------------------------------------------------------------

    def delivery_mode(self) -> Delivery:
        """The run's delivery and promise: the one decision every output names."""
        if self.delivery is None:
            default = self.workload_kind().deliveries[0]
            return Delivery(default.mode, default.idempotent or self.idempotent)
        try:
            return Delivery(self.delivery, self.idempotent)
        except ValueError as e:
            raise SpecError(str(e)) from None

    def workload_kind(self) -> WorkloadKind:
        kinds = workload_kinds()
        if self.workload not in kinds:
            raise SpecError(f"--workload {self.workload!r} is not known; expected one of {', '.join(kinds)}")
        return kinds[self.workload]

    def store_name(self) -> str:
        """The test name: the folder of its runs in the store (`--name`, or workload-delivery-faults)."""
        if self.name:
            return self.name
        faults = "+".join(self.nemesis) if self.nemesis else "none"
        name = f"{self.workload}-{self.delivery_mode().name}-{faults}"
        system = self.system_name()
        return name if system is None else f"{name}-{re.sub(r'[^A-Za-z0-9._-]+', '_', system)}"

    def system_name(self) -> str | None:
        """The name of the --system broker (None: ours), as its description gives it."""
        if self.system_description is not None:
            return str(self.system_description.get("name", Path(self.system or "system").stem))
        return Path(self.system).stem if self.system else None

    def workload_settings(self) -> WorkloadSettings:
        spec = self if self._is_resolved() else self.resolve()
        return WorkloadSettings(delivery=spec.delivery_mode(), client=spec.client, nodes=spec.nodes,
                                replication_factor=spec.replication_factor,
                                min_insync_replicas=spec.min_insync_replicas,
                                options=dict(spec.workload_options), concurrency=spec.concurrency)

    def _is_resolved(self) -> bool:
        return self.replication_factor is not None and self.min_insync_replicas is not None

    # ----- checking --------------------------------------------------------------------------------

    def resolve(self) -> RunSpec:
        """Every default filled in and every value checked; SpecError says what cannot run and why."""
        import nemeses

        for option in COMMON_OPTIONS:
            try:
                option.check(getattr(self, option.name))
            except ValueError as e:
                raise SpecError(str(e)) from None
        for name in ("nodes", "concurrency"):
            if getattr(self, name) < 1:
                raise SpecError(f"--{name} must be at least 1, got {getattr(self, name)}")
        for name in ("time_limit_s", "rate", "nemesis_interval_s", "recovery_timeout_s"):
            if getattr(self, name) <= 0:
                raise SpecError(f"{flag_of(name)} must be greater than 0, got {getattr(self, name)}")
        delivery = self.delivery_mode()
        kind = self.workload_kind()
        try:
            options = kind.settle(delivery, self.client, self.workload_options)
        except ValueError as e:
            raise SpecError(str(e)) from None
        nemesis = self.nemesis
        if self.schedule is not None:
            from nemeses.core import check_events

            try:
                events = check_events(list(self.schedule), nemeses.PACKAGES, self.nodes, self.time_limit_s)
            except ValueError as e:
                raise SpecError(str(e)) from None
            nemesis = tuple(dict.fromkeys(e.package for e in events))  # the packages the schedule uses
        unknown_faults = [n for n in nemesis if n not in nemeses.PACKAGES]
        if unknown_faults:
            raise SpecError(f"--nemesis: unknown fault(s) {unknown_faults}; accepted: {', '.join(nemeses.PACKAGES)} "
                            "or none")
        replication_factor = self.replication_factor or min(3, self.nodes)
        if replication_factor > self.nodes:
            raise SpecError(f"--replication-factor {replication_factor} is larger than the cluster ({self.nodes} "
                            "node(s)): topics could not be created")
        min_insync = self.min_insync_replicas or (2 if replication_factor >= 3 else 1)
        if min_insync > replication_factor:
            raise SpecError(f"--min-insync-replicas {min_insync} is larger than the replication factor "
                            f"{replication_factor}: every acks=all write would fail")
        if self.system and self.broker_overrides:
            raise SpecError("--broker-override applies to our broker only; put another broker's settings in its "
                            "--system file")
        system_description = self.system_description
        if self.system and system_description is None:
            from harness.system import read_description

            system_description = read_description(self.system)
        system = None
        if system_description is not None:
            from harness.system import check_cluster_shape, system_from_description

            try:  # every template and value of the description, before anything starts
                system = system_from_description(system_description, self.system or "--system")
                check_cluster_shape(system, self.nodes)
                system.check_security(self.security, self.system or "--system")
            except ValueError as e:
                raise SpecError(str(e)) from None
        if self.broker_overrides:
            from harness.system import check_broker_overrides

            try:
                check_broker_overrides(self.broker_overrides)
            except ValueError as e:
                raise SpecError(str(e)) from None
        if self.security != "none" and self.backend != "local":
            raise SpecError(f"--security {self.security} is not supported yet on this backend (--backend "
                            f"{self.backend}): only --backend local (our broker, or a --system broker whose description "
                            "has a [security] table) can run with a secured client listener so far")
        if (self.backend == "ssh") != bool(self.nodes_file):
            raise SpecError("--backend ssh and --nodes-file FILE go together (the nodes file names the SSH hosts); "
                            f"got --backend {self.backend} and --nodes-file {self.nodes_file}")
        resolved = dataclasses.replace(self, workload_options=options, nemesis=tuple(dict.fromkeys(nemesis)),
                                       delivery=delivery.mode, idempotent=delivery.idempotent,
                                       replication_factor=replication_factor, min_insync_replicas=min_insync,
                                       system_description=system_description)
        try:  # the workload's own checks of its settings (building it touches no cluster)
            workload = kind.build(resolved.workload_settings())
        except ValueError as e:
            raise SpecError(str(e)) from None
        from harness.security import uses_sasl

        enforced = system.enforces_acls(self.security) if system is not None else uses_sasl(self.security)
        if enforced and workload.acls() is None:
            raise SpecError(f"workload {kind.name} declares no ACLs (Workload.acls), so it cannot run under --security "
                            f"{self.security}, whose brokers enforce ACLs; it would not be given everything instead")
        return resolved

    # ----- test.json -------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["nemesis"] = list(self.nemesis)
        if self.schedule is not None:
            data["schedule"] = [dict(e) for e in self.schedule]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunSpec:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise SpecError(f"the test description has unknown field(s) {', '.join(unknown)}")
        if data.get("workload_options") is not None and not isinstance(data["workload_options"], dict):
            raise SpecError("the test description's workload_options is not a map")
        values = dict(data)
        if "nemesis" in values:
            values["nemesis"] = tuple(values["nemesis"] or ())
        if values.get("schedule") is not None:
            values["schedule"] = tuple(values["schedule"])
        return cls(**values)

    @classmethod
    def from_test_json(cls, document: dict[str, Any]) -> RunSpec:
        """The spec a stored run's test.json describes (format 2, or format 1 from before specs)."""
        if not isinstance(document, dict):
            raise SpecError("test.json does not hold a JSON object")
        version = document.get("format", 1)
        if version not in (1, FORMAT):
            raise SpecError(f"test.json has format {version!r}; this logquake reads formats 1 and {FORMAT} "
                            "(a newer logquake wrote it?)")
        old = document.get("options")
        if not isinstance(old, dict):
            raise SpecError(f"test.json (format {version}) has no options map")
        if version == FORMAT:
            return cls.from_json(old)
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in old.items() if k in names}
        values["workload_options"] = {k: old[k] for k in _FORMAT1_QUEUE_OPTIONS if k in old}
        return cls.from_json(values)

