"""The report's "What the brokers logged as errors": each node's ERROR (FATAL, CRITICAL) lines, one entry per
distinct line with its count and first time, in the order first logged, from our broker's broker.log and a
foreign broker's log4j-style logs alike."""

from reports.node_errors import node_errors
from reports.page import render_run_html

from tests.reports.run_dirs import lost_write_run


def _logs(run_dir, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = run_dir / "nodes" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_error_lines_are_counted_once_each_in_the_order_first_logged(tmp_path):
    run_dir = lost_write_run(tmp_path)
    _logs(run_dir, {
        "n1/broker.log": "2026-12-07 13:42:15,067 INFO broker.server: broker 1 listening\n"
                         "2026-12-07 13:42:15,074 ERROR broker.replication: t-0: cannot take its role\n"
                         "Traceback (most recent call last):\n  File \"x.py\", line 1, in f\n"
                         "2026-12-07 13:42:16,000 ERROR broker.replication: t-0: cannot take its role\n"
                         "2026-12-07 13:42:17,000 INFO broker.server: an ERROR mentioned in passing\n",
        "n1/stdout.log": "2026-12-07 13:42:15,074 ERROR broker.replication: t-0: cannot take its role\n",
        "n2/server.log": "[2026-12-07 13:42:04,181] ERROR [ReplicaManager broker=2] Error processing fetch\n"
                         "[2026-12-07 13:42:05,000] FATAL [KafkaServer id=2] Fatal error during startup\n",
    })
    assert node_errors(run_dir) == [
        {"node": "n2", "first": "2026-12-07 13:42:04,181", "count": 1,
         "message": "ERROR [ReplicaManager broker=2] Error processing fetch"},
        {"node": "n2", "first": "2026-12-07 13:42:05,000", "count": 1,
         "message": "FATAL [KafkaServer id=2] Fatal error during startup"},
        # broker.log only (stdout.log repeats it); the same line twice is one entry
        {"node": "n1", "first": "2026-12-07 13:42:15,074", "count": 2,
         "message": "ERROR broker.replication: t-0: cannot take its role"},
    ]
    assert node_errors(run_dir, limit=1)[0]["node"] == "n2"
    page = render_run_html(run_dir)
    assert 'id="node-errors"' in page and "What the brokers logged as errors" in page
    assert "ERROR broker.replication: t-0: cannot take its role" in page and "Fatal error during startup" in page


def test_a_run_whose_nodes_logged_no_error_has_no_such_section(tmp_path):
    run_dir = lost_write_run(tmp_path)
    _logs(run_dir, {"n1/broker.log": "2026-12-07 13:42:15,067 INFO broker.server: broker 1 listening\n"})
    assert node_errors(run_dir) == [] and node_errors(tmp_path / "nowhere") == []
    assert 'id="node-errors"' not in render_run_html(run_dir)
