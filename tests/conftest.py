"""Test selection shared by the whole suite.

The default run (`pytest`) is the fast one. Tests marked `slow`, `e2e` or
`docker` are deselected unless `--all` is given; CI (`.ci/run`) and README's
test command pass `--all`, so every test runs there.
"""

import signal

_LONG_MARKERS = ("slow", "e2e", "docker")


def pytest_addoption(parser):
    parser.addoption(
        "--all",
        action="store_true",
        default=False,
        help="also run the tests marked slow, e2e and docker (CI does)",
    )


def pytest_configure(config):
    # A shell without job control starts background commands with SIGINT ignored, and every process they start
    # inherits that: the harnesses the tests start would then shrug off the Ctrl-C (SIGINT) that the interruption
    # tests send them, and those tests would test nothing. A handler (unlike "ignored") is not inherited across
    # exec, so each harness starts with Python's own KeyboardInterrupt on SIGINT, as under a terminal.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


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
