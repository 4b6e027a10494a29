"""Run one fault test end to end.

Phases, in order (each shown by the progress display):

1. setup: start the cluster through its backend, create the workload's topics;
2. run: `concurrency` worker threads drive the workload at `rate` ops/s while the
   nemesis thread applies the seeded fault schedule; every operation and every
   fault goes to `history.jsonl` as it happens (invoke first, then completion);
3. heal: undo every fault (also on errors and Ctrl-C), recorded as a nemesis op;
4. recover: wait until every node runs and every partition's leader serves it
   (answers ListOffsets, not only named in Metadata); a cluster that does not
   within the recovery timeout is a fact about the system under test, not a
   crash of the harness: the final reads are skipped, the history is judged
   without them, and results.json says so (`not_recovered`);
5. final reads: one fresh client reads every key back;
6. check and report: checkers judge the history; the store gets results.json,
   history.edn, node logs and report.html;
7. teardown: stop every node and remove every temp dir, always.

Determinism: each worker draws its operations from its own RNG seeded by
(seed, worker); the nemesis schedule is fixed by the seed before the run. Wall
clock timing still varies between runs: a replay repeats the same operations
and faults at the same offsets, not the same interleaving.

Thread-safety: the Recorder is shared by all threads and serialises writes; the
rest of the runner state belongs to the main thread.
"""

from __future__ import annotations

import json
import logging
import platform
import random
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import orjson

from nodecontrol.control import NodeControl
from harness.backends import HEALERS
from harness.ledger import LEDGER_NAME, FaultLedger, heal_store, stale_ledgers
from harness.security import MECHANISM, describe_mode, uses_sasl
from harness.spec import FORMAT, RunSpec
from harness.store import Store, write_json
import nemeses
from nemeses import Nemesis
from nemeses.core import FaultEvent, Schedule, nodes_hit
from checkers.history import Op, OpCounter, completion, op_counts
from workloads.client_security import confluent_settings, use_client_security
from workloads.core import Client, Workload

log = logging.getLogger("harness.runner")

EXIT_VALID, EXIT_INVALID, EXIT_UNKNOWN, EXIT_BAD_ARGUMENTS, EXIT_CRASH = 0, 1, 2, 254, 255


class Recorder:
    """Assigns indexes and times to ops and streams them to history.jsonl.

    `record` only builds the op map and queues it (about a microsecond); a
    flusher thread serialises queued ops with orjson and appends them to the file
    every `flush_interval_s`. A harness crash loses at most that last interval;
    an interrupted or failed run keeps everything (close() drains the queue).
    """

    def __init__(self, path: Path, flush_interval_s: float = 0.1):
        self.path = Path(path)
        self._file = open(self.path, "wb")  # noqa: SIM115 (closed by close())
        self.start_ns = time.monotonic_ns()
        self._lock = threading.Lock()
        self._pending: list[dict] = []
        self.count = 0
        self.counts = OpCounter()  # the same count results.json and the report show
        self._stop = threading.Event()
        self._flush_interval_s = flush_interval_s
        self._flusher = threading.Thread(target=self._flush_loop, name="history-flusher", daemon=True)
        self._flusher.start()

    def record(self, op: Op) -> dict:
        """Give `op` the next index and the time since the start, and queue it for the file; returns its map."""
        with self._lock:
            line = {"index": self.count, "time": time.monotonic_ns() - self.start_ns, "process": op.process,
                    "type": op.type, "f": op.f, "value": op.value}
            if op.extra:
                line.update({k: v for k, v in op.extra.items() if v is not None})
            self._pending.append(line)
            self.count += 1
            self.counts.add(op.process, op.type)
            return line

    def _flush_loop(self) -> None:
        while not self._stop.wait(self._flush_interval_s):
            self.flush()

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        if pending and not self._file.closed:
            self._file.write(b"".join(_dump_line(op) for op in pending))
            self._file.flush()

    def elapsed_s(self) -> float:
        return (time.monotonic_ns() - self.start_ns) / 1e9

    def close(self) -> None:
        self._stop.set()
        if self._flusher.is_alive() and self._flusher is not threading.current_thread():
            self._flusher.join(5)
        self.flush()
        self._file.close()


_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_APPEND_NEWLINE
# test.json's security.acls where a --system broker has no authorizer (the summary says it too)
NO_AUTHORIZER = ("none: the system description says authorizer = false ([security]), so its brokers enforce no ACLs "
                 "and the workload's user may do anything")


def _dump_line(op: dict) -> bytes:
    try:
        return orjson.dumps(op, option=_ORJSON_OPTIONS, default=_json_fallback)
    except TypeError:
        return (json.dumps(op, default=repr) + "\n").encode()


def _json_fallback(x):
    if isinstance(x, (set, frozenset)):
        return sorted(x, key=repr)
    if isinstance(x, bytes):
        return x.decode("utf-8", "replace")
    return repr(x)


class Progress:
    """Shows phase, operations done, active faults and time left; quiet lines when not on a terminal."""

    def __init__(self, enabled: bool = True, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.phase = "setup"
        self.active_faults: dict[str, str] = {}
        self.recorder: Recorder | None = None
        self.run_started: float | None = None
        self.time_limit_s = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._live = None

    def set_phase(self, phase: str) -> None:
        self.phase = phase
        if self.enabled and self._live is None:
            self.stream.write(f"[logquake] {phase}\n")
            self.stream.flush()

    def line(self) -> str:
        parts = [f"phase: {self.phase}"]
        if self.recorder is not None:
            parts.append(str(self.recorder.counts))
        if self.run_started is not None and self.phase == "run":
            left = max(0.0, self.time_limit_s - (time.monotonic() - self.run_started))
            parts.append(f"time left: {left:4.0f} s")
        parts.append("faults: " + (", ".join(self.active_faults.values()) or "none"))
        return " | ".join(parts)

    def start(self) -> None:
        if not self.enabled:
            return
        if self.stream.isatty():
            from rich.console import Console
            from rich.live import Live

            self._live = Live(self.line(), console=Console(file=self.stream), refresh_per_second=4, transient=True)
            self._live.start()
        self._thread = threading.Thread(target=self._loop, name="progress", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(0.5 if self._live else 5.0):
            if self._live is not None:
                self._live.update(self.line())
            else:
                self.stream.write(f"[logquake] {self.line()}\n")
                self.stream.flush()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(2)
        if self._live is not None:
            self._live.stop()
            self._live = None


@dataclass
class RunOutcome:
    exit_code: int
    valid: Any
    run_dir: Path | None
    results: dict | None
    message: str = ""


class NotRecovered(RuntimeError):
    """The cluster did not serve every partition within the recovery timeout after healing."""


class _Interrupted(Exception):
    pass


def versions(client: str) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    def v(name):
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    out = {"logquake": v("logquake"), "python": platform.python_version(), "platform": platform.platform()}
    if client == "confluent":
        import confluent_kafka

        client_version = confluent_kafka.version()
        out["confluent-kafka"] = client_version[0] if isinstance(client_version, tuple) else client_version
        out["librdkafka"] = confluent_kafka.libversion()[0]
    else:
        out["kafka-python"] = v("kafka-python")
    return out


class FaultRun:
    """One fault test: built from a resolved `RunSpec` and its parts (`harness.run_command.build_run`)."""

    def __init__(self, spec: RunSpec, control: NodeControl, workload: Workload, nemesis: Nemesis,
                 targets_factory: Callable[[str], Any], progress: Progress | None = None):
        self.o = spec
        self.control = control
        self.workload = workload
        self.nemesis = nemesis
        self.targets_factory = targets_factory
        self.progress = progress or Progress(enabled=False)
        self.stop_workers = threading.Event()
        self.stop_nemesis = threading.Event()
        self.recorder: Recorder | None = None
        self.ledger: FaultLedger | None = None  # written once the cluster is set up (harness.ledger)
        self.run_dir: Path | None = None
        self.schedule: Schedule | None = None
        self.errors: list[str] = []
        self.final_reads_incomplete: str | None = None
        self.not_recovered: str | None = None  # why the cluster did not recover after healing, when it did not
        self._next_process = spec.concurrency
        self._process_lock = threading.Lock()

    # ----- the whole run ----------------------------------------------------------

    def description(self) -> dict:
        """test.json: the spec the run was built from (`RunSpec.from_test_json` rebuilds it), the delivery it
        decided, the workload as built, and the versions of what ran."""
        described = {"format": FORMAT, "name": self.o.store_name(), "options": self.o.to_json(),
                     "delivery": self.o.delivery_mode().to_dict(), "workload": self.workload.describe(),
                     "versions": versions(self.o.client)}
        system = None
        if self.o.system_description is not None:  # its contents are in options.system_description
            from harness.system import system_from_description

            system = system_from_description(self.o.system_description, self.o.system or "--system")
        enforced = system.enforces_acls(self.o.security) if system is not None else uses_sasl(self.o.security)
        security = describe_mode(self.o.security, system.sasl_mechanism if system is not None else MECHANISM,
                                 acls=enforced)
        if security is not None:  # the mode, protocol, mechanism and user names; never a password or a key
            described["security"] = security
            if enforced:  # what the workload's user may do (harness.acls grants it)
                from harness.acls import ordered

                described["security"]["acls"] = [g.to_dict() for g in ordered(self.workload.acls() or [])]
            elif uses_sasl(self.o.security):
                described["security"].update({"authorizer": False, "acls": NO_AUTHORIZER})
        if system is not None:
            described["system"] = {"name": system.name, "file": self.o.system, "version": system.version_text(),
                                   "volatile_storage": system.volatile_storage}
            described["versions"]["system"] = described["system"]["version"]
        return described

    def run(self) -> RunOutcome:
        store = Store(self.o.store)
        self.run_dir = store.new_run(self.o.store_name())
        if self.o.schedule is not None:  # written by hand, or a replay's
            from nemeses.core import check_events

            self.schedule = Schedule(tuple(check_events(list(self.o.schedule), nemeses.PACKAGES, self.o.nodes,
                                                        self.o.time_limit_s)))
        else:
            self.schedule = self.nemesis.schedule(self.o.seed, self.o.time_limit_s)
        write_json(self.run_dir / "test.json", self.description())
        write_json(self.run_dir / "schedule.json", self.schedule.to_list())
        self.recorder = Recorder(self.run_dir / "history.jsonl")
        log_handler = logging.FileHandler(self.run_dir / "harness.log")
        log_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s"))
        root_logger = logging.getLogger()
        root_logger.addHandler(log_handler)
        previous_level = root_logger.level
        root_logger.setLevel(min(previous_level or logging.INFO, logging.INFO))
        self.progress.recorder = self.recorder
        previous_handler = signal.getsignal(signal.SIGTERM)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _raise_interrupt)
        interrupted = False
        crashed: str | None = None
        self.progress.start()
        try:
            self._heal_dead_runs(store)
            self._setup()
            self.ledger = FaultLedger(self.run_dir / LEDGER_NAME, store.root, self.o.backend, self.control.leftovers())
            self._run_phase()
        except (KeyboardInterrupt, _Interrupted):
            interrupted = True
        except Exception:
            crashed = traceback.format_exc()
            log.error("the test crashed:\n%s", crashed)
        finally:
            self.stop_workers.set()
            self.stop_nemesis.set()
            try:
                self._heal()
                if not interrupted and crashed is None:
                    self._recover_and_final_reads()
            except (KeyboardInterrupt, _Interrupted):
                interrupted = True
            except Exception:
                crashed = crashed or traceback.format_exc()
                log.error("healing or final reads failed:\n%s", crashed)
            finally:
                self.progress.set_phase("teardown")
                self._collect_and_teardown()
                use_client_security(None)
                if self.ledger is not None:
                    self.ledger.close("teardown")
                self.recorder.close()
                self.progress.stop()
                root_logger.removeHandler(log_handler)
                root_logger.setLevel(previous_level)
                log_handler.close()
                if threading.current_thread() is threading.main_thread():
                    signal.signal(signal.SIGTERM, previous_handler)
        if interrupted:
            return self._finish_without_verdict("interrupted", "the test was interrupted; its history is kept")
        if crashed is not None:
            return self._finish_without_verdict("crashed", crashed, exit_code=EXIT_CRASH)
        return self._check()

    # ----- phases ---------------------------------------------------------------------

    def _heal_dead_runs(self, store: Store) -> None:
        """Undo what harnesses that died left in effect, for the backends their open ledgers name (this run's
        own backend also reaps its dead runs in setup). Remote hosts only for an SSH run: a local run must not
        wait on hosts that may be gone (`logquake heal` reaches them)."""
        backends = {state.backend for state in stale_ledgers(store.root)}
        if self.o.backend != "ssh":
            backends.discard("ssh")
        if backends:
            heal_store(store.root, {name: HEALERS[name] for name in backends if name in HEALERS}, say=log.warning)

    def _setup(self) -> None:
        self.progress.set_phase("setup")
        self.control.setup()
        # every client of the run (workloads, admin lookups, isolated client processes) reaches the secured
        # listener with these settings; None for a plaintext one. Where the nodes enforce ACLs, the harness
        # creates the topics and the workload's ACLs as the cluster's super user, then everything else (the
        # workload's clients, the harness's own lookups, the final reads) runs as the workload's user
        workload_security = _settings_of(self.control, "client_security")
        use_client_security(_settings_of(self.control, "admin_client_security") or workload_security)
        wait_for_brokers(self.control, self.o.recovery_timeout_s)
        self.workload.setup(self.control.bootstrap_servers())
        if getattr(self.control, "enforces_acls", False):
            self._grant_workload_acls(workload_security)
        elif uses_sasl(self.o.security):
            log.warning("no ACLs granted: %s", NO_AUTHORIZER)
        use_client_security(workload_security)

    def _grant_workload_acls(self, workload_security) -> None:
        from harness import acls

        grants = self.workload.acls()
        if grants is None:  # spec.resolve refuses it first; a workload built another way fails here, loudly
            raise RuntimeError(f"workload {self.workload.name} declares no ACLs (Workload.acls), so it cannot run "
                               f"where the brokers enforce them (--security {self.o.security})")
        bootstrap, admin = self.control.bootstrap_servers(), _settings_of(self.control, "admin_client_security")
        acls.grant(bootstrap, grants, f"User:{workload_security.username}", admin, self.o.recovery_timeout_s)
        acls.wait_until_served(bootstrap, self.workload.topics(), workload_security, self.o.recovery_timeout_s)
        log.info("granted User:%s %d ACLs: %s", workload_security.username, len(grants),
                 ", ".join(f"{g.operation} on {g.resource} {g.name}{'*' if g.pattern == 'PREFIXED' else ''}"
                           for g in acls.ordered(grants)))

    def _run_phase(self) -> None:
        self.progress.set_phase("run")
        self.progress.time_limit_s = self.o.time_limit_s
        self.progress.run_started = time.monotonic()
        workers = [threading.Thread(target=self._worker, args=(i,), name=f"worker-{i}", daemon=True)
                   for i in range(self.o.concurrency)]
        nemesis_thread = threading.Thread(target=self._nemesis_loop, name="nemesis", daemon=True)
        for t in workers:
            t.start()
        nemesis_thread.start()
        deadline = time.monotonic() + self.o.time_limit_s
        while time.monotonic() < deadline:
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        self.stop_workers.set()
        self.stop_nemesis.set()
        nemesis_thread.join(60)
        for t in workers:
            t.join(self.workload_timeout_s() + 10)

    def workload_timeout_s(self) -> float:
        return float(self.workload.op_timeout_s) + 5.0

    def _open_client(self, bootstrap: str, process: int) -> Client:
        """The workload's client for `process`: in a child process when the workload asks for it."""
        if not getattr(self.workload, "isolated_clients", False):
            return self.workload.open_client(bootstrap, process)
        from workloads.isolated import IsolatedClient

        # an operation's own timeouts end well before this; a final read may read everything back
        answer_timeout_s = 4 * self.workload_timeout_s()
        log_path = str(self.run_dir / "harness.log") if self.run_dir is not None else None
        return IsolatedClient(self.workload, bootstrap, process, answer_timeout_s,
                              final_timeout_s=max(300.0, answer_timeout_s), log_path=log_path)

    def _new_process(self, replacing: int | None = None) -> int:
        """A process number never used before in this run.

        A worker's replacement for a crashed process is `replacing + concurrency`, Jepsen's convention
        (`jepsen.generator`: a process's thread is the process mod the concurrency), so a workload can
        tell which worker slot a process runs in: the pipeline's processors keep their transactional.id
        across restarts by it. Others (the final reads) take the next number above every one used."""
        with self._process_lock:
            p = replacing + self.o.concurrency if replacing is not None else self._next_process
            self._next_process = max(self._next_process, p + 1)
            return p

    def _worker(self, i: int) -> None:
        rng = random.Random(f"{self.o.seed}/worker/{i}")
        interval_s = self.o.concurrency / self.o.rate if self.o.rate > 0 else 0.0
        process = i
        client: Client | None = None
        next_at = time.monotonic() + rng.uniform(0, interval_s)
        bootstrap = self.control.bootstrap_servers()
        try:
            while not self.stop_workers.is_set():
                wait_s = next_at - time.monotonic()
                if wait_s > 0 and self.stop_workers.wait(wait_s):
                    break
                next_at = max(next_at + interval_s * rng.uniform(0.5, 1.5), time.monotonic() - 1.0)
                if client is None:
                    try:
                        client = self._open_client(bootstrap, process)
                    except Exception as e:  # a client that cannot be built now; try again next tick
                        log.warning("process %s could not open a client: %s", process, e)
                        continue
                    for inv in self.workload.open_ops(rng):
                        self._invoke(client, process, inv)
                inv = self.workload.next_op(rng, process)
                done = self._invoke(client, process, inv)
                if done.type == "info":
                    _close_quietly(client)
                    client = None
                    process = self._new_process(replacing=process)
        finally:
            if client is not None:
                _close_quietly(client)

    def _invoke(self, client: Client, process: int, inv: Op) -> Op:
        """Record `inv` for `process`, perform it, record and return its completion (the same Op type throughout)."""
        inv = inv.with_(process=process)
        self.recorder.record(inv)
        try:
            done = client.invoke(inv)
        except Exception as e:  # an unexpected client error: the outcome is unknown
            done = completion("info", inv.value, error=["exception", f"{type(e).__name__}: {e}"])
        done = done.with_(process=process, f=inv.f)  # the harness, not the client, names both
        self.recorder.record(done)
        return done

    def _nemesis_loop(self) -> None:
        targets = self.targets_factory(self.control.bootstrap_servers())
        start = time.monotonic()
        for event in self.schedule.events:
            wait_s = start + event.at_s - time.monotonic()
            if wait_s > 0 and self.stop_nemesis.wait(wait_s):
                return
            if self.stop_nemesis.is_set():
                return
            self._apply_fault(event, targets)

    def _apply_fault(self, event: FaultEvent, targets) -> None:
        self.recorder.record(nemesis_op(event.f, event.to_dict()))
        number = self.ledger.opened(event.to_dict()) if self.ledger is not None and event.opens else None
        try:
            result = self.nemesis.apply(event, self.control, targets)
        except Exception as e:  # a fault that could not be applied is recorded, and the run goes on
            result = {"error": f"{type(e).__name__}: {e}"}
            log.warning("nemesis %s failed: %s", event.f, e)
        if self.ledger is not None:
            if number is not None:
                self.ledger.applied(number, nodes_hit(result) or [])
            else:
                self.ledger.struck(event.package)
        self.recorder.record(nemesis_op(event.f, result))
        if event.opens:
            self.progress.active_faults[event.package] = event.label()
        else:
            self.progress.active_faults.pop(event.package, None)

    def _heal(self) -> None:
        self.progress.set_phase("heal")
        self.recorder.record(nemesis_op("heal", None))
        done = self.nemesis.heal(self.control, on_error=lambda name, e: self.errors.append(f"heal {name}: {e}"))
        if self.ledger is not None and not any(isinstance(v, dict) and "error" in v for v in done.values()):
            self.ledger.struck("all")
        self.recorder.record(nemesis_op("heal", done))
        self.progress.active_faults.clear()

    def _recover_and_final_reads(self) -> None:
        self.progress.set_phase("recover")
        for node in self.control.nodes:
            if not self.control.is_running(node):
                self.control.start(node)
        topics = self.workload.topics() or {None: 0}
        try:
            for topic, partitions in topics.items():
                wait_for_cluster(self.control, topic, partitions, self.o.recovery_timeout_s)
        except NotRecovered as e:
            log.error("%s; the history is judged without final reads", e)
            self.not_recovered = str(e)
            self.final_reads_incomplete = f"no final reads: {e}"
            self.errors.append(self.not_recovered)
            return
        self.progress.set_phase("final reads")
        process = self._new_process()
        client = self._open_client(self.control.bootstrap_servers(), process)
        try:
            for inv in self.workload.final_ops():
                done = self._invoke(client, process, inv)
                # a final op that failed did not happen either: the ops after it read nothing (a final poll
                # after a failed assign reads no partition and answers ok with nothing, which is no read)
                if done.type != "ok":
                    self.final_reads_incomplete = (f"final read {inv.f} {'failed' if done.type == 'fail' else 'did not complete'}: "
                                                   f"{done.error}")
                    self.errors.append(self.final_reads_incomplete)
                    break
        finally:
            _close_quietly(client)

    def _collect_and_teardown(self) -> None:
        try:
            if self.run_dir is not None:
                self.control.collect(str(self.run_dir / "nodes"))
        except Exception as e:  # logs are nice to have; teardown must still happen
            self.errors.append(f"collecting node logs failed: {e}")
        try:
            self.control.teardown()
        except Exception as e:
            self.errors.append(f"teardown failed: {e}")
            log.error("teardown failed: %s", e)

    # ----- verdicts ---------------------------------------------------------------------

    def _check(self) -> RunOutcome:
        from checkers.core import run_checkers, to_jsonable
        from checkers.faults import check_faults_landed, excuse_volatile_losses
        from checkers.history import History

        self.progress.set_phase("check")
        history = History.load(str(self.run_dir / "history.jsonl"), format="jsonl")
        incomplete = self.final_reads_incomplete
        # run_checkers merges the checkers' verdicts (Jepsen's merge-valid: invalid beats unknown beats valid);
        # the runner adds no judgement of its own
        # a run whose faults of a kind were measured and never landed is unknown (checkers.faults)
        def workload(h):
            result = self.workload.check(h, final_reads_incomplete=incomplete)
            return excuse_volatile_losses(dict(result), h) if self._volatile_storage() else result

        results = to_jsonable(run_checkers(history, {"workload": workload, "faults": check_faults_landed}))
        for name, result in list(results.items()):
            if isinstance(result, dict) and result.get("valid") == "unknown" and result.get("message"):
                results.setdefault("reason", result.get("reason", f"{name}-undecided"))
                results.setdefault("message", result["message"])
        self._add_run_facts(results, history)
        self._write_results(results, history)
        valid = results["valid"]
        code = EXIT_VALID if valid is True else EXIT_INVALID if valid is False else EXIT_UNKNOWN
        return RunOutcome(code, valid, self.run_dir, results, results.get("message", ""))

    def _volatile_storage(self) -> bool:
        """Whether the --system description declares volatile storage ([storage] volatile = true)."""
        storage = (self.o.system_description or {}).get("storage")
        return isinstance(storage, dict) and storage.get("volatile") is True

    def _add_run_facts(self, results: dict, history=None) -> None:
        """What every output of a run shows beside the verdict: its delivery mode and its op counts."""
        results["delivery"] = self.o.delivery_mode().to_dict()
        if history is not None:
            results["counts"] = op_counts(history)
        if self.not_recovered is not None:
            results["not_recovered"] = self.not_recovered
        if self.errors:
            results["harness_errors"] = self.errors

    def _write_results(self, results: dict, history=None) -> None:
        write_json(self.run_dir / "results.json", results)
        if history is not None:
            try:
                history.to_edn(str(self.run_dir / "history.edn"))
            except Exception as e:
                self.errors.append(f"writing history.edn failed: {e}")
        try:
            from reports import render_run

            render_run(self.run_dir)
        except Exception as e:  # the verdict stands even if the report cannot be drawn
            log.error("writing report.html failed: %s", e)
            self.errors.append(f"report failed: {e}")

    def _finish_without_verdict(self, why: str, message: str, exit_code: int = EXIT_UNKNOWN) -> RunOutcome:
        results = {"valid": "unknown", "reason": why, "message": message}
        history = None
        try:
            from checkers.history import History

            history = History.load(str(self.run_dir / "history.jsonl"), format="jsonl")
        except Exception as e:
            results["history_error"] = str(e)
        self._add_run_facts(results, history)
        self._write_results(results, history)
        return RunOutcome(exit_code, "unknown", self.run_dir, results, message)


def nemesis_op(f: str, value: Any) -> Op:
    """A nemesis op: the event before a fault is applied, or what it did (Jepsen's `:info` ops of `:nemesis`)."""
    return Op(-1, None, "nemesis", "info", f, value)


def _settings_of(control: NodeControl, method: str):
    """A backend's client security settings (`client_security` or `admin_client_security`), None where it has none."""
    settings = getattr(control, method, None)
    return settings() if settings is not None else None


def _raise_interrupt(signum, frame):
    raise _Interrupted(f"signal {signum}")


def _close_quietly(client: Client) -> None:
    try:
        client.close()
    except Exception as e:  # a client of a broken cluster may not close cleanly
        log.debug("closing a client failed: %s", e)


def wait_for_brokers(control: NodeControl, timeout_s: float) -> None:
    """Poll the Metadata API until every node is listed as a broker (a cluster that has formed)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(confluent_settings({"bootstrap.servers": control.bootstrap_servers(),
                                            "logger": logging.getLogger("librdkafka")}))
    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    while time.monotonic() < deadline:
        try:
            md = admin.list_topics(timeout=2)
            if len(md.brokers) >= len(control.nodes):
                return
            last = f"{len(md.brokers)} of {len(control.nodes)} brokers listed: {sorted(md.brokers)}"
        except Exception as e:  # not answering yet
            last = f"metadata request failed: {e}"
        time.sleep(0.2)
    raise RuntimeError(f"the cluster did not form within {timeout_s} s of starting: {last}")


def wait_for_cluster(control: NodeControl, topic: str | None, partitions: int, timeout_s: float, admin=None) -> None:
    """Poll until every node runs and (when a topic is given) every partition is served.

    Served: Metadata names a leader, and that leader answers ListOffsets for
    the partition. A leader in Metadata alone is not enough: a broker restarted
    just now may answer Metadata from the metadata it recovered from disk,
    naming leaders that do not serve yet (after every node of our broker was
    killed, the final reads then met UNKNOWN_TOPIC_OR_PARTITION). `admin` is an
    AdminClient (one is made for the cluster when None).
    """
    if admin is None:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient(confluent_settings({"bootstrap.servers": control.bootstrap_servers(),
                                                "logger": logging.getLogger("librdkafka")}))
    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    while time.monotonic() < deadline:
        down = [n for n in control.nodes if not control.is_running(n)]
        if down:
            last = f"nodes not running: {down}"
        else:
            try:
                md = admin.list_topics(topic=topic, timeout=2)
                if topic is None:
                    return
                parts = md.topics.get(topic).partitions if topic in md.topics else {}
                leaderless = [p for p in range(partitions) if p not in parts or parts[p].leader < 0]
                if not leaderless:
                    unserved = partitions_not_served(admin, topic, partitions)
                    if not unserved:
                        return
                    last = "partitions whose leader does not answer ListOffsets yet: " + ", ".join(
                        f"{p} ({error})" for p, error in sorted(unserved.items()))
                else:
                    last = f"partitions without a leader: {leaderless}"
            except Exception as e:  # not answering yet
                last = f"metadata request failed: {e}"
        time.sleep(0.25)
    raise NotRecovered(f"the cluster did not recover within {timeout_s} s after healing: {last}")


def partitions_not_served(admin, topic: str, partitions: int, timeout_s: float = 5.0) -> dict[int, str]:
    """partition -> error, for each partition of `topic` whose latest offset cannot be listed now."""
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import OffsetSpec

    futures = admin.list_offsets({TopicPartition(topic, p): OffsetSpec.latest() for p in range(partitions)},
                                 request_timeout=timeout_s)
    unserved = {}
    for tp, future in futures.items():
        try:
            future.result(timeout=timeout_s + 1)
        except Exception as e:  # any failure means: not served yet; the caller asks again
            unserved[tp.partition] = str(e)
    return unserved
