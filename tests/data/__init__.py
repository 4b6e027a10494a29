"""Test data kept in the repository: `HISTORIES` holds public histories with known verdicts (see its README)."""

from pathlib import Path

HISTORIES = Path(__file__).resolve().parent / "histories"
