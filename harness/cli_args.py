"""argparse that exits with Jepsen's bad-arguments code (254) and names the flag and value."""

from __future__ import annotations

import argparse
import sys

EXIT_BAD_ARGUMENTS = 254


class BadArguments(Exception):
    pass


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's hook for every parse error
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(EXIT_BAD_ARGUMENTS)


def key_value(text: str) -> tuple[str, str]:
    """Parse `key=value`; refuse anything else with a message naming the text."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not of the form key=value")
    return key.strip(), value.strip()


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value
