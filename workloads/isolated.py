"""Workload clients in child processes, so that a client stuck inside its library cannot freeze the harness.

Why: confluent-kafka calls some librdkafka functions without releasing the
GIL; `Consumer.assign` is one of them, and it waits for librdkafka's main
thread. When that thread deadlocks, the whole harness process stops: every
other worker, the nemesis, the history flusher and Ctrl-C handling included.
The deadlock is librdkafka's, not ours: an OffsetForLeaderEpoch answer handled
while a broker connection is torn down takes the handle lock and a partition
lock in opposite orders (confluentinc/librdkafka#5476; seen here as `rdk:main`
waiting in `rd_kafka_metadata_refresh_topics` under
`rd_kafka_toppar_handle_OffsetForLeaderEpoch` while a broker thread waits in
`rd_kafka_toppar_undelegate`). It comes with leader kills, so a fault test
meets it now and then.

`IsolatedClient` runs the workload's own client (`workload.open_client`) in a
child process and forwards each invocation over a pipe. An answer that does
not come within `answer_timeout_s` makes the operation `info` (its outcome is
unknown), kills the child, and the runner opens a new client as after any
`info`. Children come from a forkserver (forking the multi-threaded harness
itself is unsafe), preloaded with confluent_kafka, so a new client costs a
fork, not an interpreter start. A child's log lines go to the run's
harness.log, as the in-process clients' did. The run's client security
(`workloads.client_security`) is handed to the child with its arguments.

Invariants: the child answers every message with exactly one reply, in order;
a child that fails to answer is killed and never reused. Thread-safety: one
`IsolatedClient` belongs to one worker thread.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading

from workloads.client_security import client_security, use_client_security
from workloads.core import Client, Op, completion

log = logging.getLogger("workloads.isolated")

START_TIMEOUT_S = 60.0
CLOSE_TIMEOUT_S = 15.0
_context_lock = threading.Lock()
_context = None


def _mp_context():
    global _context
    with _context_lock:
        if _context is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["confluent_kafka", "workloads.queue", "workloads.pipeline",
                                            "workloads.offsets"])
            _context = context
        return _context


class ClientProcessError(RuntimeError):
    """The client's process did not start, died, or did not answer in time."""


def _serve(conn, workload, bootstrap: str, process: int, log_path: str | None, security=None) -> None:
    """The child: open the client, then answer ("invoke", op) and ("close", None) until told to close.

    Whatever goes wrong in here is logged to the run's harness.log and ends the child quietly: an
    exception let out would make multiprocessing print "Process logquake-client-N:" and a traceback on
    the terminal, cut short when the harness kills the child a moment later."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the harness's to handle; it closes us
    use_client_security(security)  # the run's TLS/SASL settings come through the pipe, never a file
    if log_path:
        handler = logging.FileHandler(log_path)
        handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s client-{process} %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
    try:
        _answer(conn, workload, bootstrap, process)
    except BaseException as e:  # noqa: BLE001 (the child's last words belong in the log, not on the terminal)
        log.warning("client process %s stopped on %s: %s", process, type(e).__name__, e, exc_info=True)


def _answer(conn, workload, bootstrap: str, process: int) -> None:
    try:
        client = workload.open_client(bootstrap, process)
    except Exception as e:  # reported to the parent, which retries later
        conn.send(("error", f"{type(e).__name__}: {e}"))
        return
    conn.send(("ready", None))
    while True:
        try:
            kind, payload = conn.recv()
        except EOFError:  # the harness is gone
            kind, payload = "close", None
        if kind == "close":
            try:
                client.close()
            except Exception as e:  # a client of a broken cluster may not close cleanly; the harness goes on
                log.info("client %s did not close cleanly: %s: %s", process, type(e).__name__, e)
            finally:
                with contextlib.suppress(OSError):  # nobody left to tell
                    conn.send(("closed", None))
            return
        try:
            done = client.invoke(payload)
        except Exception as e:  # an unexpected client error: the outcome is unknown
            done = completion("info", payload.value, error=["exception", f"{type(e).__name__}: {e}"])
        conn.send(("completion", done))


class IsolatedClient(Client):
    """A workload client in its own process; see the module docstring."""

    def __init__(self, workload, bootstrap: str, process: int, answer_timeout_s: float, final_timeout_s: float,
                 log_path: str | None = None):
        context = _mp_context()
        self.process_id = process
        self.answer_timeout_s = answer_timeout_s
        self.final_timeout_s = final_timeout_s
        self._conn, child = context.Pipe()
        self._proc = context.Process(target=_serve, args=(child, workload, bootstrap, process, log_path, client_security()),
                                     name=f"logquake-client-{process}", daemon=True)
        self._proc.start()
        child.close()
        try:
            kind, payload = self._receive(START_TIMEOUT_S, "opening the client")
        except ClientProcessError:
            self._kill()
            raise
        if kind != "ready":
            self._kill()
            raise ClientProcessError(f"client process {process} could not open its client: {payload}")

    def _receive(self, timeout_s: float, what: str):
        try:
            ready = self._conn.poll(timeout_s)
            if ready:
                return self._conn.recv()
        except (EOFError, OSError) as e:
            raise ClientProcessError(f"client process {self.process_id} died while {what} "
                                     f"(exit status {self._proc.exitcode}): {e}") from None
        raise ClientProcessError(f"client process {self.process_id} did not answer within {timeout_s:.0f} s while "
                                 f"{what}; it was killed (a client library stuck inside a call, e.g. librdkafka#5476)")

    def invoke(self, op: Op) -> Op:
        timeout_s = self.final_timeout_s if op.extra.get("final") else self.answer_timeout_s
        resumer = None
        if op.extra.get("pause_s"):
            # the client stops its own process (SIGSTOP) where the op wants a pause; we resume it
            resumer = _Resumer(self._proc.pid, float(op.extra["pause_s"]))
        try:
            self._conn.send(("invoke", op))
            kind, payload = self._receive(timeout_s, f"running {op.f}")
        except (ClientProcessError, OSError) as e:
            if op.extra.get("crash"):
                self._proc.join(5)
            if op.extra.get("crash") and self._proc.exitcode == -signal.SIGKILL:
                log.info("client process %s killed itself on purpose (crash %s)", self.process_id, op.extra["crash"])
                self._kill()
                return completion("info", op.value, error=["crashed", f"the op killed its client's process "
                                                                      f"({op.extra['crash']})"])
            log.warning("%s", e)
            self._kill()
            return completion("info", op.value, error=["client-process", str(e)])
        finally:
            if resumer is not None:
                resumer.finish()
        return payload

    def close(self) -> None:
        if self._proc.is_alive():
            try:
                self._conn.send(("close", None))
                self._receive(CLOSE_TIMEOUT_S, "closing")
            except (ClientProcessError, OSError) as e:
                log.warning("client process %s did not close cleanly: %s", self.process_id, e)
        self._kill()

    def _kill(self) -> None:
        if self._proc.is_alive():
            self._proc.kill()
        self._proc.join(5)
        self._conn.close()


def _process_state(pid: int) -> str | None:
    """The state letter of `pid` in /proc (T: stopped), or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0].decode()
    except (OSError, IndexError):
        return None


class _Resumer:
    """Resumes a client process that stopped itself (SIGSTOP) during an op, `pause_s` after it stopped.

    A paused processor stops every thread, its client library's heartbeats too, as a process stopped by
    an operator or a long GC pause would; the op asked for the pause, so the harness knows to end it.
    `finish` (the op answered, or its process died) ends the watch and resumes a process still stopped."""

    def __init__(self, pid: int, pause_s: float):
        self.pid = pid
        self.pause_s = pause_s
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._watch, name=f"resume-{pid}", daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        while not self.done.is_set():
            state = _process_state(self.pid)
            if state is None:
                return
            if state == "T":
                log.info("client process %s paused itself; resuming it in %.0f s", self.pid, self.pause_s)
                self.done.wait(self.pause_s)
                self._resume()
                return
            self.done.wait(0.02)

    def _resume(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGCONT)

    def finish(self) -> None:
        self.done.set()
        self.thread.join(5)
        if _process_state(self.pid) == "T":
            self._resume()
