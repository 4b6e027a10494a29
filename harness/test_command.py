"""Moved: `logquake test` lives in harness/run_command.py (a product module named test_* collided with pytest's
naming). This alias goes away once nothing imports it."""

from harness.run_command import build_parser, build_run, main, print_summary  # noqa: F401
