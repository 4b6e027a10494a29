"""`logquake serve` over real HTTP: run list, reports, raw files, traversal refused, bad flags, clean stop.

The server runs in a subprocess (`python -m harness.serve_command`) on a port
the system picks (`--port 0`); the test reads the address from its first
line, and every test stops it (SIGINT, as Ctrl-C does) in a finally block.
"""

from __future__ import annotations

import http.client
import re
import selectors
import signal
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

from harness.serve_command import main
from tests.reports.run_dirs import interrupted_run, lost_write_run, valid_run

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 20.0


@contextmanager
def serving(store: Path, quiet: bool = True):
    proc = subprocess.Popen([sys.executable, "-m", "harness.serve_command", str(store), "--port", "0",
                             *(["--quiet"] if quiet else [])],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        selector = selectors.DefaultSelector()
        selector.register(proc.stdout, selectors.EVENT_READ)
        if not selector.select(timeout=START_TIMEOUT_S):
            raise AssertionError(f"logquake serve printed nothing within {START_TIMEOUT_S} s")
        line = proc.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert m, f"unexpected first line from logquake serve: {line!r}; stderr: {proc.stderr.read()}"
        yield proc, int(m.group(1))
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        proc.stdout.close()
        proc.stderr.close()


def fetch(port: int, path: str, method: str = "GET") -> tuple[int, dict, bytes]:
    # http.client sends the path exactly as given (no /../ normalisation), as an attacker would.
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def test_serves_run_list_reports_and_raw_files(tmp_path):
    store = tmp_path / "store"
    lost = lost_write_run(store)
    valid = valid_run(store)
    interrupted = interrupted_run(store)
    from reports import render_run

    render_run(lost)
    (valid / "nodes" / "n1").mkdir(parents=True)
    (valid / "nodes" / "n1" / "server.log").write_text("broker started\n")
    with serving(store) as (proc, port):
        status, headers, body = fetch(port, "/")
        page = body.decode()
        assert status == 200 and headers["content-type"].startswith("text/html")
        assert re.findall(r'<tr class="run (\w+)"', page) == ["unknown", "invalid", "valid"]
        assert 'href="queue-lost/20261127T050000.000/report.html"' in page

        status, _, body = fetch(port, "/queue-lost/20261127T050000.000/report.html")
        assert status == 200
        assert body == (lost / "report.html").read_bytes()

        # No report.html on disk: drawn on request, and nothing is written into the store.
        status, _, body = fetch(port, f"/queue-interrupted/{interrupted.name}/report.html")
        assert status == 200 and b"No verdict: the test was <b>interrupted</b>." in body
        assert not (interrupted / "report.html").exists()

        status, headers, body = fetch(port, f"/queue-lost/{lost.name}/history.jsonl")
        assert status == 200 and headers["content-type"] == "text/plain; charset=utf-8"
        assert body == (lost / "history.jsonl").read_bytes()
        status, headers, _ = fetch(port, f"/queue-lost/{lost.name}/results.json", method="HEAD")
        assert status == 200 and headers["content-type"].startswith("application/json")
        assert int(headers["content-length"]) == (lost / "results.json").stat().st_size
        status, _, body = fetch(port, f"/queue-valid/{valid.name}/nodes/n1/server.log")
        assert status == 200 and body == b"broker started\n"

        status, headers, _ = fetch(port, f"/queue-valid/{valid.name}")
        assert status == 301 and headers["location"] == f"/queue-valid/{valid.name}/"
        status, _, body = fetch(port, f"/queue-valid/{valid.name}/")
        assert status == 200 and b'href="history.jsonl"' in body and b'href="nodes/"' in body

        status, _, _ = fetch(port, "/queue-valid/nope.json")
        assert status == 404
        assert proc.poll() is None


def test_paths_outside_the_store_are_refused(tmp_path):
    store = tmp_path / "store"
    valid_run(store)
    secret = tmp_path / "secret.txt"
    secret.write_text("do not serve")
    (store / "escape").symlink_to(tmp_path)
    (store / "queue-valid" / "secret-link").symlink_to(secret)
    with serving(store) as (_, port):
        for path in ("/../secret.txt", "/%2e%2e/secret.txt", "/queue-valid/../../secret.txt",
                     "/queue-valid/%2E%2E/%2E%2E/secret.txt", "/..%2fsecret.txt", "/queue-valid/..%5c..%5csecret.txt",
                     "/escape/secret.txt", "/queue-valid/secret-link", "/%00"):
            status, _, body = fetch(port, path)
            assert status == 403, (path, status)
            assert b"do not serve" not in body


def test_ctrl_c_stops_the_server_cleanly(tmp_path):
    with serving(tmp_path) as (proc, port):
        assert fetch(port, "/")[0] == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
        assert "logquake serve: stopped" in proc.stdout.read()


def test_sigterm_stops_the_server_cleanly(tmp_path):
    with serving(tmp_path) as (proc, _):
        proc.terminate()
        assert proc.wait(10) == 0


def test_bad_flags_exit_254_naming_flag_and_value(tmp_path, capsys):
    assert main([str(tmp_path), "--port", "http"]) == 254
    err = capsys.readouterr().err
    assert "--port" in err and "'http'" in err
    assert main([str(tmp_path), "--port", "70000"]) == 254
    assert "'70000' is out of range" in capsys.readouterr().err
    assert main([str(tmp_path), "--colour"]) == 254
    assert "--colour" in capsys.readouterr().err
    assert main([str(tmp_path / "missing")]) == 254
    err = capsys.readouterr().err
    assert "STORE" in err and "missing" in err
    assert main([str(tmp_path), "--host", "256.1.2.3", "--port", "0"]) == 254
    err = capsys.readouterr().err
    assert "--host '256.1.2.3'" in err


def test_port_in_use_exits_254(tmp_path, capsys):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main([str(tmp_path), "--port", str(port)]) == 254
    assert f"--port {port}" in capsys.readouterr().err


def test_help_exits_0(capsys):
    assert main(["--help"]) == 0
    assert "logquake serve" in capsys.readouterr().out



def test_request_lines_reach_the_terminal_with_control_characters_escaped():
    from harness.serve_command import printable

    assert printable('"GET /\x1b[2J\x07x HTTP/1.1" 404 -') == '"GET /\\x1b[2J\\x07x HTTP/1.1" 404 -'
    assert printable("ok é") == "ok é"


def test_a_request_line_with_terminal_escapes_is_logged_escaped(tmp_path):
    """The request log is written to a terminal: raw request bytes (an ANSI sequence that clears the screen,
    an OSC that sets the window title, a carriage return that overwrites the line) arrive escaped."""
    hostile = [b"GET /\x1b[2J\x1b]0;owned\x07x HTTP/1.1\r\nHost: x\r\n\r\n",  # one line: answered 404
               b"GET /a\rb\x1b[31m HTTP/1.1\r\nHost: x\r\n\r\n"]  # \r splits the words: answered 400
    with serving(tmp_path, quiet=False) as (proc, port):
        for request in hostile:
            with socket.create_connection(("127.0.0.1", port), timeout=20) as conn:
                conn.sendall(request)
                assert conn.recv(64).startswith(b"HTTP/1.")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
        log = proc.stderr.read()
    assert "\x1b" not in log and "\x07" not in log and "\r" not in log, repr(log)
    assert "GET /\\x1b[2J\\x1b]0;owned\\x07x HTTP/1.1\" 404" in log, log
    assert "\" 400" in log and "\\r" in log and "\\x1b[31m" in log, log
