"""The `logquake` entry point: --version, usage."""

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_version_names_the_package_version_and_the_commit():
    out = subprocess.run([sys.executable, "-m", "harness.cli", "--version"], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert out.startswith(f"logquake {version('logquake')}")
    if commit:
        assert f"(git {commit[:12]})" in out


def test_usage_lists_every_command():
    from harness.cli import COMMANDS, USAGE

    for name in COMMANDS:
        assert f"\n  {name}" in USAGE, name


def test_a_crash_of_a_command_exits_255_never_1_the_invalid_code(monkeypatch, capsys):
    from harness import cli

    def broken(argv):
        raise RuntimeError("boom")

    monkeypatch.setitem(cli.COMMANDS, "check", broken)
    assert cli.main(["check", "x"]) == 255
    err = capsys.readouterr().err
    assert "logquake check: internal error" in err and "RuntimeError: boom" in err
