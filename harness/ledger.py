"""The fault ledger: every fault is written down before it is applied and struck off when it is healed.

A harness that dies (SIGKILL, a crash of the machine's OOM killer, a power cut of
the laptop) cannot heal what it did: partitions stay cut, paused brokers stay
stopped, FUSE mounts stay mounted, and the next run on the same machine or
hosts starts in that state. Each run keeps `faults.ledger.jsonl` in its store
directory, one JSON object a line, each written and fsynced before what it
announces happens:

    {"ledger": 1, "owner": {"host": ..., "pid": ..., "tempdir": ...}, "backend": "local", "leftovers": {...}}
    {"open": 3, "event": {"at_s": 5.1, "package": "pause", "f": "pause", ...}}
    {"applied": 3, "nodes": ["n2"]}
    {"struck": "pause"}              # its undo event ran; "all" after the final heal
    {"closed": "teardown"}           # the cluster is gone: nothing of this run is in effect

`leftovers` is what the backend knows of the run's cluster (the local run
directory, the Docker run id). The owner's `tempdir` is the harness process's
multiprocessing directory (`pymp-*`, where the client processes' forkserver
keeps its socket), which Python removes at exit but not after a SIGKILL. While a ledger is open, `STORE/.open-ledgers/`
holds a pointer to it, so finding the open ones never walks the whole store.
`heal_store(STORE)` (the `logquake heal` command, also called before every
`logquake test`) finds the open ledgers whose harness is gone and says which
faults each left in effect; then every backend's healer removes the clusters of
dead harnesses (which undoes every fault with them: processes are continued and
killed, mounts unmounted, containers and their iptables rules removed), also of
runs that died before their ledger was written; the dead harnesses'
multiprocessing directories are removed; and the ledgers are closed.

Thread-safety: a ledger is written by the runner's and the nemesis's threads;
one lock orders its lines.
"""

from __future__ import annotations

import json
import logging
import multiprocessing.util
import os
import shutil
import socket
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from nodecontrol.probe import pid_alive

log = logging.getLogger("harness.ledger")

LEDGER_NAME = "faults.ledger.jsonl"
INDEX_DIR = ".open-ledgers"
FORMAT = 1

__all__ = ["FaultLedger", "LedgerState", "read_ledger", "stale_ledgers", "heal_store", "LEDGER_NAME"]


class FaultLedger:
    """The ledger of one run, open for appending."""

    def __init__(self, path: Path, store: Path, backend: str, leftovers: dict[str, Any]):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._next = 0
        index = Path(store) / INDEX_DIR
        index.mkdir(parents=True, exist_ok=True)
        self._pointer = index / f"{os.getpid()}-{abs(hash(str(self.path))):x}"
        self._pointer.write_text(str(self.path.resolve()))
        # get_temp_dir makes the process's pymp-* directory now if the forkserver has not yet
        self._write({"ledger": FORMAT, "owner": {"host": socket.gethostname(), "pid": os.getpid(),
                                                 "tempdir": multiprocessing.util.get_temp_dir()},
                     "backend": backend, "leftovers": leftovers})

    def _write(self, entry: dict) -> None:
        with self._lock, open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def opened(self, event: dict) -> int:
        """Write a fault down before it is applied; returns its number."""
        with self._lock:
            self._next += 1
            number = self._next
        self._write({"open": number, "event": event})
        return number

    def applied(self, number: int, nodes: list[str]) -> None:
        self._write({"applied": number, "nodes": nodes})

    def struck(self, package: str) -> None:
        """Strike off every open fault of `package` (or "all")."""
        self._write({"struck": package})

    def close(self, why: str) -> None:
        self._write({"closed": why})
        self._pointer.unlink(missing_ok=True)


@dataclass
class LedgerState:
    path: Path
    owner: dict = field(default_factory=dict)
    backend: str | None = None
    leftovers: dict = field(default_factory=dict)
    in_effect: list[dict] = field(default_factory=list)  # {"event": ..., "nodes": ...} not struck off
    closed: str | None = None
    pointer: Path | None = None


def read_ledger(path: Path) -> LedgerState:
    """The ledger's state; a torn last line (the harness died while writing it) is ignored."""
    state = LedgerState(Path(path))
    faults: dict[int, dict] = {}
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict):
            continue
        if "ledger" in entry:
            state.owner, state.backend = entry.get("owner") or {}, entry.get("backend")
            state.leftovers = entry.get("leftovers") or {}
        elif "open" in entry:
            faults[entry["open"]] = {"event": entry.get("event") or {}, "nodes": None}
        elif "applied" in entry and entry["applied"] in faults:
            faults[entry["applied"]]["nodes"] = entry.get("nodes")
        elif "struck" in entry:
            for number in [n for n, f in faults.items()
                           if entry["struck"] == "all" or f["event"].get("package") == entry["struck"]]:
                del faults[number]
        elif "closed" in entry:
            state.closed = str(entry["closed"])
    state.in_effect = [faults[n] for n in sorted(faults)]
    return state


def _owner_alive(owner: dict) -> bool:
    """Whether the harness that owns a ledger may still be running (always True for another host's)."""
    if owner.get("host") != socket.gethostname():
        return True
    pid = owner.get("pid")
    return isinstance(pid, int) and (pid == os.getpid() or pid_alive(pid))


def stale_ledgers(store: Path) -> list[LedgerState]:
    """Open ledgers of `store` whose harness (on this host) is gone, each with `pointer` set."""
    index = Path(store) / INDEX_DIR
    if not index.is_dir():
        return []
    found = []
    for pointer in sorted(index.iterdir()):
        try:
            state = read_ledger(Path(pointer.read_text().strip()))
        except (OSError, ValueError):
            pointer.unlink(missing_ok=True)  # its run was removed from the store
            continue
        state.pointer = pointer
        if state.closed is not None:
            pointer.unlink(missing_ok=True)
        elif not _owner_alive(state.owner):
            found.append(state)
    return found


def _remove_tempdir(state: LedgerState) -> str | None:
    """Remove the dead harness's multiprocessing directory; its path, or None if there was none to remove.

    Only a `pymp-*` directory right under this machine's temp directory is removed, whatever the ledger says."""
    tempdir = state.owner.get("tempdir")
    if not isinstance(tempdir, str):
        return None
    path = Path(tempdir)
    if not path.name.startswith("pymp-") or path.parent != Path(tempfile.gettempdir()) or not path.is_dir():
        return None
    shutil.rmtree(path, ignore_errors=True)
    return str(path)


def describe_fault(fault: dict) -> str:
    event = fault["event"]
    nodes = fault.get("nodes")
    hit = f" on {', '.join(nodes)}" if nodes else " (not yet applied)" if nodes is None else ""
    return f"{event.get('f', '?')} ({event.get('package', '?')}) at {event.get('at_s', '?')} s{hit}"


def heal_store(store: Path, healers: dict[str, Callable[[list["LedgerState"]], list[str]]],
               say: Callable[[str], None] = print) -> dict[str, Any]:
    """Undo what dead harnesses left in effect (see the module doc): {"runs": [...], "removed": [...]}."""
    stale = stale_ledgers(Path(store))
    runs = []
    for state in stale:
        faults = [describe_fault(f) for f in state.in_effect]
        say(f"{state.path.parent}: its harness (pid {state.owner.get('pid')}) is gone; faults it left in effect: "
            f"{'; '.join(faults) or 'none'}")
        runs.append({"run": str(state.path.parent), "backend": state.backend, "faults": faults})
    removed, errors = [], []
    for name, healer in healers.items():
        try:
            removed += healer([state for state in stale if state.backend == name])
        except Exception as e:  # one backend's failure must not stop the others' healing
            errors.append(f"{name}: {e}")
    removed += [f"the multiprocessing directory {d}" for d in map(_remove_tempdir, stale) if d]
    for item in removed:
        say(f"removed {item}")
    for error in errors:
        say(f"could not heal through the {error}")
    for state in stale:
        if not any(error.startswith(f"{state.backend}:") for error in errors):
            with open(state.path, "rb+") as f:
                end = f.seek(0, os.SEEK_END)
                torn = end > 0 and f.seek(end - 1) >= 0 and f.read(1) != b"\n"  # the harness died mid-line
                f.write((b"\n" if torn else b"") + json.dumps({"closed": "logquake heal"}).encode() + b"\n")
            if state.pointer is not None:
                state.pointer.unlink(missing_ok=True)
    return {"runs": runs, "removed": removed, "errors": errors}
