"""`python -m broker --config server.properties [--override key=value ...]`: run one node.

`python -m broker --check --override key=value ...` only checks the names and
values of the given properties (with a "did you mean" for a misspelt name)
and exits 0, or 2 with the sentence; the harness runs it before it starts a
cluster, so a typo never gets as far as a node.

Exit status: 0 after a clean stop (SIGTERM/SIGINT), 2 for bad arguments or
configuration (the message names the property, its value and what is accepted).
Logs go to stderr and to `<first log dir>/broker.log`; the process entry point
is the one place allowed to open that file directly.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

EXIT_BAD_CONFIG = 2


def _setup_logging(log_dir: str) -> None:
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    to_stderr = logging.StreamHandler(sys.stderr)
    to_stderr.setFormatter(formatter)
    root.addHandler(to_stderr)
    os.makedirs(log_dir, exist_ok=True)
    to_file = _LogFileHandler(os.path.join(log_dir, "broker.log"))
    to_file.setFormatter(formatter)
    root.addHandler(to_file)


class _LogFileHandler(logging.FileHandler):
    """broker.log, which a full disk must not turn into a traceback on stderr per line logged (logging's default):
    the first failure is said on one line of stderr, and the lines that follow go to stderr only."""

    _failed = False

    def handleError(self, record: logging.LogRecord) -> None:
        if not self._failed:
            self._failed = True
            error = sys.exc_info()[1]
            sys.stderr.write(f"broker.log: a line could not be written ({error}); lines that fail go to stderr only\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m broker", description="Run one logquake broker node.")
    parser.add_argument("--config", help="a Java-properties file with Kafka broker properties (required to run)")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="set a property, overriding the file (repeatable)")
    parser.add_argument("--check", action="store_true",
                        help="only check the names and values of the --override properties, then exit (0 or 2)")
    args = parser.parse_args(argv)

    from broker.io.disk import read_text_file
    from broker.server.config import ConfigError, check_properties, load_config, parse_override

    if args.check:
        try:
            check_properties(dict(parse_override(text) for text in args.override))
        except ConfigError as exc:
            sys.stderr.write(f"configuration error: {exc}\n")
            return EXIT_BAD_CONFIG
        return 0
    if not args.config:
        parser.error("--config is required (a properties file), unless --check")

    try:
        text = read_text_file(args.config)
    except OSError as exc:
        sys.stderr.write(f"--config {args.config!r} cannot be read: {exc.strerror}; expected a readable properties file\n")
        return EXIT_BAD_CONFIG
    try:
        config = load_config(text, args.config, args.override)
    except ConfigError as exc:
        sys.stderr.write(f"configuration error: {exc}\n")
        return EXIT_BAD_CONFIG
    protocols = {config.security_protocol(l.name) for l in config.listeners}
    try:
        # the files are checked before anything starts; the listeners load them again
        if protocols & {"SSL", "SASL_SSL"}:
            from broker.server.listeners import inter_broker_tls_context, tls_context

            tls_context(config)
            inter_broker_tls_context(config)  # a cluster node's own connections to its peers
        if protocols & {"SASL_PLAINTEXT", "SASL_SSL"}:
            from broker.io import Runtime
            from broker.server.sasl import load_credentials

            load_credentials(config, Runtime.real())
    except ValueError as exc:  # TlsConfigError, SaslConfigError: the message names the property and the reason
        sys.stderr.write(f"configuration error: {exc}\n")
        return EXIT_BAD_CONFIG
    _setup_logging(config.log_dirs[0])
    if config.debug_log_requests:
        logging.getLogger("broker.server").setLevel(logging.DEBUG)

    from broker.server.node import run_node

    return run_node(config)


if __name__ == "__main__":
    from broker import keep_hypothesis_out

    keep_hypothesis_out()  # a process of its own: nothing here needs Hypothesis, and kio is imported in main()
    sys.exit(main())
