"""The local backend with disk and clock faults: real broker nodes under nodecontrol.launch."""

import datetime
import re
import time
from pathlib import Path

import pytest

from harness.backends.local import LocalCluster
from nodecontrol.control import NodeControl, NodeControlError
from nodecontrol.launch import fuse_mounts
from harness.system import logquake_broker

pytestmark = pytest.mark.slow

_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+ ")


def _wait_until_serving(c, timeout_s=30.0):
    """The client port opens before the broker has installed its SIGTERM handler; wait for its own word."""
    out = Path(c._specs["n1"].data_dir) / "stdout.log"
    deadline = time.monotonic() + timeout_s
    while "is now unfenced" not in out.read_text(errors="replace"):
        assert time.monotonic() < deadline, f"n1 did not finish starting within {timeout_s} s"
        time.sleep(0.05)


@pytest.fixture
def cluster():
    c = LocalCluster(logquake_broker(node_count=1), 1)
    c.enable_faults({"disk", "clock"})
    try:
        c.setup()
        _wait_until_serving(c)
        yield c
    finally:
        run_dir = c.run_dir
        c.teardown()
        assert run_dir is None or [m for m in fuse_mounts() if m.startswith(str(run_dir))] == []


def _log_dir(c):
    return Path(c._specs["n1"].data_dir) / "logs"


def test_a_graceful_stop_closes_the_log_on_the_faulty_disk_then_unmounts(cluster):
    assert str(_log_dir(cluster)) in fuse_mounts()
    assert cluster.disk("n1", "status")["modes"] == []
    cluster.stop("n1")
    assert str(_log_dir(cluster)) not in fuse_mounts()
    assert (_log_dir(cluster) / ".kafka_cleanshutdown").exists()  # written through faultfs, still there
    cluster.start("n1")
    cluster.wait_ready(["n1"])
    assert str(_log_dir(cluster)) in fuse_mounts()


def test_kill_removes_the_dead_mount_and_disk_faults_need_a_running_node(cluster):
    assert cluster.disk("n1", "lazy")["modes"] == ["lazy"]
    cluster.kill("n1")
    assert str(_log_dir(cluster)) not in fuse_mounts()
    with pytest.raises(NodeControlError, match="disk 'pause' on n1: the node is not running"):
        cluster.disk("n1", "pause")
    cluster.start("n1")
    cluster.wait_ready(["n1"])
    assert cluster.disk("n1", "status")["modes"] == []  # a restarted node's disk starts healthy


def test_the_broker_logs_with_its_skewed_wall_clock(cluster):
    cluster.clock("n1", 7200)
    assert Path(cluster._specs["n1"].data_dir, "faketime").read_text() == "+7200.000\n"
    cluster.stop("n1")  # shutdown lines are logged after the skew
    lines = Path(cluster._specs["n1"].data_dir, "stdout.log").read_text().splitlines()
    stamps = [datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S") for m in map(_STAMP.match, lines) if m]
    now = datetime.datetime.now()
    assert stamps and abs((stamps[-1] - now).total_seconds() - 7200) < 120, (stamps[-1], now)
    assert abs((stamps[0] - now).total_seconds()) < 120  # the start was logged with the true time
    cluster.clock("n1", 0)
    assert Path(cluster._specs["n1"].data_dir, "faketime").read_text() == "+0.000\n"


def test_refusals_name_the_input():
    c = LocalCluster(logquake_broker(node_count=1), 1)
    with pytest.raises(NodeControlError, match=r"enable_faults: unknown fault kind\(s\) \['net'\]"):
        c.enable_faults({"net"})
    c._specs["n1"] = None
    with pytest.raises(NodeControlError, match=r"disk faults on n1: this cluster was set up without them; call "
                                               r"enable_faults\(\{'disk'\}\) before setup\(\)"):
        c.disk("n1", "pause")
    with pytest.raises(NodeControlError, match=r"disk fault 'melt' is not known; accepted: pause, resume"):
        c.disk("n1", "melt")
    with pytest.raises(NodeControlError, match=r"clock faults on n1: this cluster was set up without them"):
        c.clock("n1", 5)
    c.enable_faults({"clock"})
    with pytest.raises(NodeControlError, match=r"clock offset_s=nan on n1: expected a number of seconds"):
        c.clock("n1", float("nan"))
    with pytest.raises(NodeControlError, match="TCP proxies cannot duplicate or reorder packets"):
        c.slow_net(10, duplicate=0.1)
    with pytest.raises(NodeControlError, match=r"slow_net reorder=2: must be a fraction between 0 and 1"):
        c.slow_net(10, reorder=2)


def test_the_base_class_names_the_backend_that_cannot_fault_disks_or_clocks():
    class Minimal(NodeControl):
        nodes = ["n1"]
        setup = teardown = bootstrap_servers = collect = start = stop = kill = pause = resume = None
        is_running = exec = partition = heal = slow_net = None

    with pytest.raises(NodeControlError, match=r"the Minimal backend cannot fault disks \(disk 'pause' on n1\)"):
        Minimal().disk("n1", "pause")
    with pytest.raises(NodeControlError, match=r"the Minimal backend cannot skew clocks \(clock \+3 s on n1\)"):
        Minimal().clock("n1", 3)
