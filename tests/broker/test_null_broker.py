"""The null broker: the real protocol path over storage that keeps nothing (a benchmark baseline)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import pytest

from broker.protocol.records import iter_batches

from . import kafka_requests as req
from .conftest import ROOT
from .raw_client import RawClient


@pytest.fixture
def null_broker(tmp_path):
    stderr_path = tmp_path / "stderr.txt"
    with open(stderr_path, "wb") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "broker.server.null_broker", "--port", "0", "--partitions", "2"],
                                   cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            match = re.search(r"listening on [^:]+:(\d+)", stderr_path.read_text())
            if match:
                break
            assert process.poll() is None, stderr_path.read_text()
            time.sleep(0.05)
        else:
            raise AssertionError(f"null broker not ready: {stderr_path.read_text()}")
        yield process, int(match.group(1))
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def test_null_broker_acknowledges_and_serves_the_cached_batch(null_broker):
    process, port = null_broker
    with RawClient(port) as client:
        assert len(client.call(req.metadata(["nb"])).topics[0].partitions) == 2
        offsets = [client.call(req.produce("nb", 0, req.batch([(b"k", b"x")] * n))).responses[0].partition_responses[0].base_offset
                   for n in (2, 3, 1)]
        assert offsets == [0, 2, 5]
        part = client.call(req.fetch("nb", 0, 4)).responses[0].partitions[0]
        headers = [h for _, h in iter_batches(part.records, validate_crc=True)]
        assert [(h.base_offset, h.records_count) for h in headers] == [(4, 2)]  # the first batch produced, re-based
        assert part.high_watermark >= 6
    process.send_signal(signal.SIGTERM)
    assert process.wait(10) == 0
