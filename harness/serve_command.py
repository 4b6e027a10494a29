"""`logquake serve [STORE] [--port 8080] [--host 127.0.0.1]`: browse a store over HTTP.

Serves the store directory read-only: `/` is the run list (newest first,
grouped by test name, coloured by verdict; rendered by `reports.index`) with
links to each campaign's trends, `/campaigns/NAME/trends.html` is drawn on
request from every campaign of that name (`harness.campaign`), every
run's report and raw files are served as they are, a directory gets a plain
listing, and a run without `report.html` (it crashed before reporting, or was
stopped) gets its report drawn on request, in memory. Text files (history,
EDN, logs) are served as `text/plain` so a browser shows them.

Invariants
- Nothing outside the store is ever served: a path with a `..` segment, a
  backslash or a NUL is refused (403) before touching the file system, and the
  resolved path (symlinks followed) must lie inside the resolved store root.
- Read-only: the server never writes into the store.
- Bad flags exit 254 with a message naming the flag and its value (argparse
  errors included, via `harness.cli_args.ArgumentParser`); Ctrl-C (SIGINT) and
  SIGTERM stop the server cleanly with exit code 0.

Thread-safety: `ThreadingHTTPServer` handles each request on its own thread;
handlers share only the immutable store root and the run-summary cache, which
is guarded by a lock.

Sources: Python's `http.server`; Jepsen's `jepsen.web` store browser.
"""

from __future__ import annotations

import argparse
import html
import mimetypes
import os
import shutil
import signal
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from harness.cli_args import EXIT_BAD_ARGUMENTS, ArgumentParser

__all__ = ["StoreServer", "main", "make_server"]

_TEXT_SUFFIXES = frozenset({".jsonl", ".edn", ".log", ".txt", ".properties", ".toml", ".out", ".err", ".conf",
                            ".cfg", ".ini", ".csv", ".md", ""})
_RUN_MARKERS = ("test.json", "history.jsonl", "results.json")
_CHUNK_BYTES = 1 << 16


def port_number(text: str) -> int:
    """Parse a TCP port (0 asks the system for a free one)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number; expected a port from 0 to 65535") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is out of range; expected a port from 0 to 65535")
    return value


class StoreServer(ThreadingHTTPServer):
    """An HTTP server bound to one store directory."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], store_root: Path, quiet: bool = False):
        self.store_root = store_root.resolve()
        self.quiet = quiet
        self._summaries: dict[tuple[str, Any], Any] = {}
        self._summaries_lock = threading.Lock()
        super().__init__(address, _Handler)

    def run_summary(self, run_dir: Path) -> Any:
        """`reports.summarize_run`, cached per run until its results.json or report.html changes."""
        from reports import summarize_run

        stamps = []
        for name in ("results.json", "report.html", "test.json"):
            try:
                st = (run_dir / name).stat()
                stamps.append((st.st_mtime_ns, st.st_size))
            except OSError:
                stamps.append(None)
        key = (str(run_dir), tuple(stamps))
        with self._summaries_lock:
            cached = self._summaries.get(key)
        if cached is None:
            cached = summarize_run(run_dir)
            with self._summaries_lock:
                if len(self._summaries) > 10_000:
                    self._summaries.clear()
                self._summaries[key] = cached
        return cached


def printable(text: str) -> str:
    """`text` with control characters escaped (a request line may carry terminal escape sequences)."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


class _Handler(BaseHTTPRequestHandler):
    server: StoreServer
    server_version = "logquake-serve"

    def log_message(self, format: str, *args: Any) -> None:  # http.server's hook; keep its signature
        if not self.server.quiet:
            sys.stderr.write(f"[logquake serve] {self.address_string()} {printable(format % args)}\n")

    def do_HEAD(self) -> None:
        self._respond(head=True)

    def do_GET(self) -> None:
        self._respond(head=False)

    # ----- routing -------------------------------------------------------------------------------

    def _respond(self, head: bool) -> None:
        raw_path = urlsplit(self.path).path
        path = unquote(raw_path)
        segments = [s for s in path.split("/") if s not in ("", ".")]
        if any(s == ".." for s in segments) or "\\" in path or "\x00" in path:
            self._error(HTTPStatus.FORBIDDEN, f"the path {path!r} leaves the store; refused", head)
            return
        root = self.server.store_root
        if not segments or segments == ["index.html"]:
            self._send_index(head)
            return
        target = root.joinpath(*segments)
        try:
            resolved = target.resolve()
        except (OSError, RuntimeError) as e:
            self._error(HTTPStatus.NOT_FOUND, f"{path!r} cannot be opened: {e}", head)
            return
        if resolved != root and not resolved.is_relative_to(root):
            self._error(HTTPStatus.FORBIDDEN, f"the path {path!r} points outside the store; refused", head)
            return
        if resolved.is_dir():
            if not raw_path.endswith("/"):
                self._redirect(path + "/", head)
                return
            self._send_listing(resolved, path, head)
        elif resolved.is_file():
            self._send_file(resolved, head)
        elif segments[-1] == "report.html" and _is_run_dir(resolved.parent):
            self._send_live_report(resolved.parent, head)
        elif len(segments) == 3 and segments[0] == "campaigns" and segments[2] == "trends.html" \
                and resolved.parent.is_dir():
            self._send_trends(segments[1], head)
        else:
            self._error(HTTPStatus.NOT_FOUND, f"{path!r} is not in the store", head)

    # ----- responses ----------------------------------------------------------------------------

    def _send_bytes(self, body: bytes, content_type: str, head: bool, status: HTTPStatus = HTTPStatus.OK) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _error(self, status: HTTPStatus, message: str, head: bool) -> None:
        page = (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{status.value} {status.phrase}</title>"
                f"</head><body><h1>{status.value} {status.phrase}</h1><p>{html.escape(message)}</p>"
                f"<p><a href=\"/\">run list</a></p></body></html>\n")
        self._send_bytes(page.encode("utf-8"), "text/html; charset=utf-8", head, status)

    def _redirect(self, location: str, head: bool) -> None:
        self.send_response(HTTPStatus.MOVED_PERMANENTLY)
        self.send_header("Location", quote(location, safe="/"))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _send_index(self, head: bool) -> None:
        from reports import find_runs, render_index

        root = self.server.store_root
        runs = [(run_dir, self.server.run_summary(run_dir)) for run_dir in find_runs(root)]
        campaigns = sorted(p.name for p in (root / "campaigns").glob("*") if p.is_dir()) \
            if (root / "campaigns").is_dir() else []
        self._send_bytes(render_index(root, runs, campaigns).encode("utf-8"), "text/html; charset=utf-8", head)

    def _send_live_report(self, run_dir: Path, head: bool) -> None:
        from reports import render_run_html

        try:
            page = render_run_html(run_dir)
        except Exception as e:  # a report that cannot be drawn must not take the server down
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"drawing the report of {run_dir.name} failed: {e}", head)
            return
        self._send_bytes(page.encode("utf-8"), "text/html; charset=utf-8", head)

    def _send_trends(self, name: str, head: bool) -> None:
        from harness.campaign import analyze_trends, load_summaries
        from reports.campaign import trends_html

        try:
            summaries = load_summaries(self.server.store_root, name)
            page = trends_html(analyze_trends(summaries, name)) if summaries else None
        except Exception as e:  # a campaign that cannot be read must not take the server down
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"reading the campaigns named {name} failed: {e}", head)
            return
        if page is None:
            self._error(HTTPStatus.NOT_FOUND, f"no campaign named {name!r} in the store", head)
            return
        self._send_bytes(page.encode("utf-8"), "text/html; charset=utf-8", head)

    def _send_listing(self, directory: Path, url_path: str, head: bool) -> None:
        try:
            entries = sorted(directory.iterdir(), key=lambda p: (not p.is_dir(), p.name))
        except OSError as e:
            self._error(HTTPStatus.FORBIDDEN, f"cannot list {url_path!r}: {e}", head)
            return
        items = ['<li><a href="../">../</a></li>'] if directory != self.server.store_root else []
        if _is_run_dir(directory) and not (directory / "report.html").exists():
            items.append('<li><a href="report.html">report.html</a> (drawn on request)</li>')
        for entry in entries:
            name = entry.name + ("/" if entry.is_dir() else "")
            items.append(f'<li><a href="{html.escape(quote(name), quote=True)}">{html.escape(name)}</a></li>')
        shown = html.escape(url_path if url_path.endswith("/") else url_path + "/")
        page = (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{shown}</title></head><body>"
                f"<p><a href=\"/\">run list</a></p><h1>{shown}</h1><ul>{''.join(items)}</ul></body></html>\n")
        self._send_bytes(page.encode("utf-8"), "text/html; charset=utf-8", head)

    def _send_file(self, path: Path, head: bool) -> None:
        try:
            f = open(path, "rb")
        except OSError as e:
            self._error(HTTPStatus.FORBIDDEN, f"cannot read {path.name!r}: {e}", head)
            return
        with f:
            size = os.fstat(f.fileno()).st_size
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", _content_type(path))
            self.send_header("Content-Length", str(size))
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            if not head:
                shutil.copyfileobj(f, self.wfile, _CHUNK_BYTES)


def _is_run_dir(path: Path) -> bool:
    return path.is_dir() and any((path / m).is_file() for m in _RUN_MARKERS)


def _content_type(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".html", ".htm"):
        return "text/html; charset=utf-8"
    if suffix == ".json":
        return "application/json; charset=utf-8"
    if suffix in _TEXT_SUFFIXES:
        return "text/plain; charset=utf-8"
    guessed, _ = mimetypes.guess_type(path.name)
    return guessed or "application/octet-stream"


def make_server(store_root: str | os.PathLike[str], host: str = "127.0.0.1", port: int = 8080,
                quiet: bool = False) -> StoreServer:
    """A server for the store, bound but not yet serving (`serve_forever` starts it)."""
    return StoreServer((host, port), Path(store_root), quiet=quiet)


def _parser() -> ArgumentParser:
    parser = ArgumentParser(prog="logquake serve",
                            description="Browse a store of test runs over HTTP: the run list, reports and raw files.")
    parser.add_argument("store", nargs="?", default="store", metavar="STORE",
                        help="the store directory (default: ./store)")
    parser.add_argument("--port", type=port_number, default=8080,
                        help="TCP port to listen on, 0 for any free port (default: 8080)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: 127.0.0.1; the store is then visible only locally)")
    parser.add_argument("--quiet", action="store_true", help="do not log each request to stderr")
    return parser


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: Any) -> None:
    raise _Stop(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    """Run `logquake serve`; returns the exit code (0 after Ctrl-C, 254 on bad flags)."""
    parser = _parser()
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as e:  # argparse: --help (0) or a bad flag (254, message already printed)
        return e.code if isinstance(e.code, int) else EXIT_BAD_ARGUMENTS
    store = Path(args.store)
    if not store.is_dir():
        sys.stderr.write(f"logquake serve: error: STORE {args.store!r} is not a directory; give the store directory "
                         "that `logquake test --store` wrote (default: ./store)\n")
        return EXIT_BAD_ARGUMENTS
    try:
        server = make_server(store, args.host, args.port, quiet=args.quiet)
    except OSError as e:
        sys.stderr.write(f"logquake serve: error: cannot listen on --host {args.host!r} --port {args.port}: {e}; "
                         "choose another port (0 picks a free one) or host\n")
        return EXIT_BAD_ARGUMENTS
    previous_term = previous_int = None
    in_main_thread = threading.current_thread() is threading.main_thread()
    if in_main_thread:
        previous_term = signal.signal(signal.SIGTERM, _raise_stop)
        # A shell starts background jobs with SIGINT ignored; Ctrl-C must still stop the server.
        previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        # The address is printed only once the signal handlers are in place: whoever reads it may stop us at once.
        host, port = server.server_address[:2]
        shown_host = f"[{host}]" if ":" in str(host) else host
        sys.stdout.write(f"logquake serve: serving {server.store_root} at http://{shown_host}:{port}/ "
                         "(Ctrl-C stops)\n")
        sys.stdout.flush()
        server.serve_forever(poll_interval=0.25)
    except (KeyboardInterrupt, _Stop):
        sys.stdout.write("logquake serve: stopped\n")
        sys.stdout.flush()
    finally:
        server.server_close()
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous_term)
            signal.signal(signal.SIGINT, previous_int)
    return 0


if __name__ == "__main__":
    sys.exit(main())
