"""Probes: small measurements that tell whether a fault really is in effect.

A fault that was asked for is not a fault that landed: a proxy can ignore a cut, a
node can be restarted by a supervisor right after a kill, a container runtime can
fail a freeze. The nemeses check each fault right after applying it
(`nemeses.probe`); these are the measurements they use, through the backends:

- `kafka_round_trip(host, port, timeout_s, source)`: how long a Kafka ApiVersions
  v0 request, sent from `source` (an address to bind, or any) over a new
  connection, takes to get its response (connect included), or None when no
  response came within the timeout; `kafka_answers` is whether one came. A TCP
  connect alone proves nothing: the local fault proxy and Docker's port proxy
  accept connections that go nowhere.
- `clock_offset(pid)`: the wall clock process `pid` reads, against this
  machine's: whether libfaketime is mapped into the process (its
  /proc/PID/maps), and the offset a process started with the same faketime
  variables (from /proc/PID/environ) reads now.
- `group_state(pgid)`: what the operating system says of a process group:
  `gone` (no process left), `paused` (every process stopped) or `running`;
  `pid_alive(pid)`: whether a process exists (the owners of crashed runs).

`python3 -m nodecontrol.probe [--timeout S] HOST:PORT ...` runs `kafka_round_trip`
on every address at once and prints a JSON list in the same order: seconds, or
null for no answer; the Docker and SSH backends run it on a node to probe that
node's links. `python3 -m nodecontrol.probe --clock-of PID_FILE` prints
`clock_offset` of the process whose pid the file holds, as JSON.

Thread-safety: every function is pure apart from its own sockets, /proc reads and (clock_offset) the short
process it starts.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import socket
import ssl
import struct
import subprocess
import sys
import time

__all__ = ["kafka_answers", "kafka_round_trip", "group_state", "round_trips_all", "pid_alive", "clock_offset",
           "clock_offset_of_pid_file"]

CLIENT_ID = b"logquake-probe"


def kafka_round_trip(host: str, port: int, timeout_s: float = 1.0, source: str | None = None,
                     ca_location: str | None = None) -> float | None:
    """Seconds from connecting to host:port (bound to `source`) to the response of an ApiVersions v0 request
    sent at once, or None when no response came within timeout_s. With `ca_location` the connection speaks TLS
    first, verified against that CA (an SSL or SASL_SSL listener; ApiVersions is answered before SASL)."""
    body = struct.pack(">hhih", 18, 0, 1, len(CLIENT_ID)) + CLIENT_ID
    started = time.monotonic()
    try:
        s = socket.create_connection((host, port), timeout=timeout_s, source_address=(source, 0) if source else None)
        if ca_location is not None:
            try:
                s = ssl.create_default_context(cafile=ca_location).wrap_socket(s, server_hostname=host)
            except OSError:
                s.close()
                raise
        with s:
            s.settimeout(max(timeout_s - (time.monotonic() - started), 0.01))
            s.sendall(struct.pack(">i", len(body)) + body)
            head = b""
            while len(head) < 8:
                chunk = s.recv(8 - len(head))
                if not chunk:
                    return None
                head += chunk
            return time.monotonic() - started if struct.unpack(">i", head[4:8])[0] == 1 else None
    except OSError:
        return None


def kafka_answers(host: str, port: int, timeout_s: float = 1.0, source: str | None = None) -> bool:
    """True when an ApiVersions v0 request to host:port gets a response within timeout_s (bound to `source`)."""
    return kafka_round_trip(host, port, timeout_s, source) is not None


def round_trips_all(addresses: list[tuple[str, int]], timeout_s: float, source: str | None = None) -> list[float | None]:
    """kafka_round_trip on every address at once (so the probe takes one timeout, not one per address)."""
    if not addresses:
        return []
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(addresses), thread_name_prefix="probe") as pool:
        return list(pool.map(lambda a: kafka_round_trip(a[0], a[1], timeout_s, source), addresses))


def group_state(pgid: int, proc: str = "/proc") -> str:
    """`gone`, `paused` or `running`: the state of the processes of group `pgid`, read from /proc."""
    states = []
    try:
        entries = os.listdir(proc)
    except OSError:
        return "running"  # no /proc to read: say nothing that would confirm a fault
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(os.path.join(proc, entry, "stat"), encoding="ascii", errors="replace") as f:
                stat = f.read()
        except OSError:
            continue  # the process ended while we looked
        # the command name is in parentheses and may hold spaces: fields follow the last ')'
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            states.append(fields[0])
    if not states:
        return "gone"
    return "paused" if all(s in ("T", "t") for s in states) else "running"


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this machine (one of another user's counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clock_offset(pid: int, proc: str = "/proc") -> dict:
    """`{"pid", "preloaded", "offset_s", "uncertainty_s"}`: whether libfaketime is mapped into process `pid`,
    and the offset from this machine's wall clock that a process started with `pid`'s faketime variables reads
    (None without them), give or take `uncertainty_s` (half the time the reading process took); or
    `{"pid", "error"}` when the process cannot be read."""
    try:
        with open(os.path.join(proc, str(pid), "maps"), encoding="ascii", errors="replace") as f:
            preloaded = "libfaketime" in f.read()
        with open(os.path.join(proc, str(pid), "environ"), "rb") as f:
            environ = f.read().decode(errors="replace")
    except OSError as e:
        return {"pid": pid, "error": f"cannot read process {pid}: {e.strerror or e}"}
    env = dict(item.split("=", 1) for item in environ.split("\0") if "=" in item)
    fake = {k: v for k, v in env.items() if k == "LD_PRELOAD" or k.startswith("FAKETIME")}
    if not preloaded or "LD_PRELOAD" not in fake:
        return {"pid": pid, "preloaded": preloaded, "offset_s": None, "uncertainty_s": None}
    before = time.time()
    read = subprocess.run([sys.executable, "-c", "import time; print(repr(time.time()))"], capture_output=True,
                          text=True, timeout=30, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **fake})
    after = time.time()
    try:
        seen = float(read.stdout.strip())
    except ValueError:
        return {"pid": pid, "error": f"reading the clock under process {pid}'s faketime variables failed "
                                     f"(exit status {read.returncode}): {read.stderr.strip()[:200]}"}
    return {"pid": pid, "preloaded": True, "offset_s": round(seen - (before + after) / 2, 3),
            "uncertainty_s": round((after - before) / 2, 3)}


def clock_offset_of_pid_file(path: str) -> dict:
    """`clock_offset` of the process whose pid file `path` holds (`{"error"}` when there is none)."""
    try:
        with open(path, encoding="ascii") as f:
            pid = int(f.read().strip())
    except (OSError, ValueError) as e:
        return {"error": f"no process id in {path}: {getattr(e, 'strerror', None) or e}"}
    return clock_offset(pid)


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m nodecontrol.probe",
                                     description="How long each HOST:PORT takes to answer a Kafka ApiVersions request "
                                                 "over a new connection; prints a JSON list of seconds (null: no "
                                                 "answer in time).")
    parser.add_argument("--timeout", type=float, default=0.5, help="seconds to wait for each answer (default 0.5)")
    parser.add_argument("--clock-of", metavar="PID_FILE",
                        help="instead: the wall clock offset the process of this pid file reads, as JSON")
    parser.add_argument("addresses", nargs="*", type=_address, metavar="HOST:PORT")
    args = parser.parse_args(argv)
    if args.clock_of:
        print(json.dumps(clock_offset_of_pid_file(args.clock_of)))
        return 0
    if not args.addresses:
        parser.error("name at least one HOST:PORT, or --clock-of PID_FILE")
    print(json.dumps(round_trips_all(args.addresses, args.timeout)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
