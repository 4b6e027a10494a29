"""Test selection shared by the whole suite.

The default run (`pytest`) is the fast one. Tests marked `slow`, `e2e` or
`docker` are deselected unless `--all` is given; CI (`.ci/run`) and README's
test command pass `--all`, so every test runs there.
"""

import pytest

_LONG_MARKERS = ("slow", "e2e", "docker")


def pytest_addoption(parser):
    parser.addoption(
        "--all",
        action="store_true",
        default=False,
        help="also run the tests marked slow, e2e and docker (CI does)",
    )


def pytest_collection_modifyitems(config, items):
    if config.getoption("--all"):
        return
    keep, drop = [], []
    for item in items:
        if any(item.get_closest_marker(m) for m in _LONG_MARKERS):
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
