"""Test selection shared by the whole suite.

The default run (`pytest`) is the fast one. Tests marked `slow`, `e2e` or
`docker` are deselected unless `--all` is given; CI (`.ci/run`) and README's
test command pass `--all`, so every test runs there.

In parallel (`-n 2 --dist loadgroup`, pytest-xdist, as README's test command
runs): most long tests wait (on fault schedules, brokers, containers), so two
of them share two cores well; the tests below keep a core busy for their whole
length (simulations, property-based searches, checkers), so they form one
group that a single worker runs one after another, beside the waiting ones. A
test that starts a cluster waits for what it checks (every broker listed, a
leader elected) rather than reading it once: load can delay a broker's
heartbeat.
"""

import signal

import pytest

_LONG_MARKERS = ("slow", "e2e", "docker")
CPU_BOUND = (
    "tests/broker/test_raft_sim.py", "tests/broker/test_raft_sim_stateful.py", "tests/broker/test_sim_",
    "tests/broker/test_fuzz", "tests/broker/test_controller_model.py", "tests/broker/test_log_model.py",
    "tests/harness/test_sim_command.py", "tests/harness/test_sim_shrink.py", "tests/checkers/", "tests/bench/",
)

# Tests that SIGKILL a harness and then heal: `logquake heal` (and the start of every run) removes what any dead
# harness on this machine left, so two of them at once heal each other's leftovers and find something the other
# expected to find (the CI once saw a second heal remove a parallel test's containers). One worker runs them in turn.
HARNESS_KILLERS = ("tests/e2e/test_heal.py", "tests/e2e/test_disk_clock_leftovers.py", "tests/e2e/test_ssh_fault_test.py")


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


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.nodeid.startswith(CPU_BOUND):
            item.add_marker(pytest.mark.xdist_group("cpu-bound"))
        elif item.nodeid.startswith(HARNESS_KILLERS):
            item.add_marker(pytest.mark.xdist_group("harness-killers"))
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
