"""Fault colours for disk/clock/packet, and the note that explains a loss after a lose-unfsynced crash."""

import json

from reports.faults import explain_disk_loss, fault_notes, fault_notes_data, processor_faults
from reports.page import render_run_html
from reports.plots import fault_class
from reports.run_data import load_run
from tests.reports.run_dirs import write_run

MS = 1_000_000


def _nemesis(i, time_ms, f, value):
    return {"index": i, "time": time_ms * MS, "process": "nemesis", "type": "info", "f": f, "value": value}


def _ops(crash=None):
    crash = crash or {"fault": "lose-unfsynced", "killed": ["n1", "n2", "n3"],
                      "unfsynced_bytes_lost": {"n1": 4000, "n2": 3000, "n3": "unknown: timeout"},
                      "started": ["n1", "n2", "n3"]}
    return [
        _nemesis(0, 100, "start-disk", {"at_s": 0.1, "package": "disk", "f": "start-disk", "target": "all",
                                        "shape": "lose-unfsynced", "pick": 1}),
        _nemesis(1, 110, "start-disk", {"fault": "lose-unfsynced", "nodes": ["n1", "n2", "n3"]}),
        _nemesis(2, 2000, "stop-disk", {"at_s": 2.0, "package": "disk", "f": "stop-disk", "target": "all",
                                        "shape": "lose-unfsynced", "pick": 1}),
        _nemesis(3, 2500, "stop-disk", crash),
        _nemesis(4, 3000, "start-clock", {"at_s": 3.0, "package": "clock", "f": "start-clock", "target": "one",
                                          "shape": "skew", "pick": 2}),
        _nemesis(5, 3010, "start-clock", {"fault": "skew", "nodes": ["n2"], "offset_s": -12.5, "clocks": "wall"}),
        _nemesis(6, 3500, "start-packet", {"at_s": 3.5, "package": "packet", "f": "start-packet", "shape": "latency",
                                           "pick": 3}),
        _nemesis(7, 3510, "start-packet", {"fault": "latency", "latency_ms": 100.0, "jitter_ms": 50.0}),
        _nemesis(8, 4000, "heal", None),
        _nemesis(9, 4100, "heal", {}),
    ]


def _results(anomalies):
    return {"valid": False, "workload": {"valid": False, "anomalies": anomalies}}


def _run(tmp_path, anomalies, flush=None, crash=None):
    run_dir = write_run(tmp_path, "disk", _ops(crash), _results(anomalies), delivery="at-least-once")
    test = json.loads((run_dir / "test.json").read_text())
    test["options"]["broker_overrides"] = {} if flush is None else {"log.flush.interval.messages": flush}
    (run_dir / "test.json").write_text(json.dumps(test))
    return run_dir


INCONSISTENT = {"inconsistent-offsets": [{"explanation": "Offset 75 of key 0 holds 2 different values: 355, 581."}]}


def test_each_new_fault_kind_has_its_own_colour(tmp_path):
    assert {fault_class(k) for k in ("disk", "clock", "packet")} == {"fk-disk", "fk-clock", "fk-packet"}
    page = render_run_html(_run(tmp_path, INCONSISTENT))
    for kind in ("disk", "clock", "packet"):
        assert f'class="lane fk-{kind}"' in page and f'class="swatch fk-{kind}"' in page
        assert f"svg .fk-{kind}{{fill:var(--{kind})}}" in page
    assert sorted(w.kind for w in load_run(_run(tmp_path / "again", INCONSISTENT)).windows) == ["clock", "disk",
                                                                                                  "packet"]


def test_a_loss_after_a_lose_unfsynced_crash_with_no_fsync_is_explained_as_the_fault(tmp_path):
    run = load_run(_run(tmp_path, INCONSISTENT))
    data = fault_notes_data(run)
    # a history of before crashes tore writes: what was held was lost
    assert data[0] == {"type": "disk-loss", "crashes": [{"at_s": 2.0, "nodes": ["n1", "n2", "n3"],
                                                         "unfsynced_bytes": 7000, "lost_bytes": 7000,
                                                         "torn_writes": 0}],
                       "anomalies": ["inconsistent-offsets"], "flush_interval_messages": None}
    assert fault_notes(run)[0] == (
        "The disk nemesis crashed n1, n2, n3 at 2.0 s while their file systems held 7000 un-fsynced bytes in "
        "memory, as a power loss would; inconsistent-offsets is how the lost "
        "data shows (an offset read with one value before the crash and another after it is an acknowledged write "
        "lost, and its offset reused). log.flush.interval.messages was unset (Kafka's default: no fsync, "
        "durability rests on replication), so when every replica of a partition loses its un-fsynced tail at once, "
        "acknowledged writes are gone: this is the fault doing what it models, not a broker bug.")
    page = render_run_html(run.run_dir)
    assert 'id="faults"' in page and "un-fsynced" in page


def test_a_crash_that_tore_writes_says_what_was_held_lost_and_torn(tmp_path):
    crash = {"fault": "lose-unfsynced", "killed": ["n1", "n2"], "started": ["n1", "n2"],
             "unfsynced_bytes_held": {"n1": 3000, "n2": 2000}, "unfsynced_bytes_lost": {"n1": 1000, "n2": 200},
             "torn_writes": {"n1": 1, "n2": 1}}
    note = fault_notes(load_run(_run(tmp_path, INCONSISTENT, crash=crash)))[0]
    assert note.startswith("The disk nemesis crashed n1, n2 at 2.0 s while their file systems held 5000 un-fsynced "
                           "bytes (1200 of them lost, 2 write(s) torn) in memory, as a power loss would;"), note


def test_a_watermark_that_went_back_after_the_crash_is_explained_as_the_loss_too(tmp_path):
    run = load_run(_run(tmp_path, {"watermark-regression": [{"key": 0}]}))
    assert fault_notes_data(run)[0]["anomalies"] == ["watermark-regression"]
    assert ("; watermark-regression is how the lost data shows (a high watermark a client saw went back: records "
            "below it, committed, are gone). log.flush.interval.messages was unset") in fault_notes(run)[0]


def test_with_a_flush_on_every_message_the_loss_is_laid_at_the_broker(tmp_path):
    note = fault_notes_data(load_run(_run(tmp_path, {"lost-write": [{"key": 0}]}, flush="1")))[0]
    assert note["anomalies"] == ["lost-write"]
    assert explain_disk_loss(note).endswith(
        "log.flush.interval.messages was 1, so the broker should have fsynced what it acknowledged: a loss here "
        "points at the broker (or at fsyncs the disk did not honour).")


def test_no_loss_note_without_a_loss_and_the_clock_note_names_the_wall_clock(tmp_path):
    run = load_run(_run(tmp_path, {"duplicate": [{"key": 0}]}))
    assert [n["type"] for n in fault_notes_data(run)] == ["clock"]
    assert fault_notes(run) == ["Clock faults moved each target's wall clock only (CLOCK_REALTIME: record "
                                "timestamps, time indexes, time-based retention); the monotonic clock, which "
                                "timeouts should use, was left true."]


def _client(i, time_ms, process, type_, f, value, **extra):
    return {"index": i, "time": time_ms * MS, "process": process, "type": type_, "f": f, "value": value, **extra}


def test_processor_faults_get_their_own_section_with_the_checkers_counts(tmp_path):
    batch = {"consumed": {"0": [[0, 1]]}, "produced": [[1, 1]], "offsets": {"0": 1}}
    ops = [
        _client(0, 100, 1, "invoke", "process", None, crash="after-produce"),
        _client(1, 200, 1, "info", "process", batch, error=["crashed", "the op killed its client's process"]),
        _client(2, 300, 2, "invoke", "process", None, pause_s=16.0),
        _client(3, 16500, 2, "fail", "process", batch, error=["transaction", "PRODUCER_FENCED"]),
        _client(4, 400, 3, "invoke", "process", None, abort=True),
        _client(5, 500, 3, "ok", "process", {"consumed": {}, "produced": [], "offsets": {}}),
        _client(6, 600, 3, "invoke", "leave", None),
        _client(7, 700, 3, "ok", "leave", None),
        _client(8, 800, 3, "invoke", "process", None),
        _client(9, 900, 3, "ok", "process", batch),
    ]
    counts = {"kills": 1, "pauses": 1, "zombies fenced": 1, "aborts on purpose": 1, "leaves": 1}
    results = {"valid": True, "workload": {"valid": True, "anomalies": {}, "stats": {"processor_faults": counts}}}
    run_dir = write_run(tmp_path, "pipeline", ops, results, delivery="exactly-once")
    rows = processor_faults(load_run(run_dir))
    assert [(r["at_s"], r["process"], r["outcome"]) for r in rows] == [
        (0.1, 1, "info"), (0.3, 2, "fail"), (0.4, 3, "ok"), (0.6, 3, "ok")]
    assert rows[0]["fault"] == "SIGKILL after its writes, before its offsets (killed mid-transaction)"
    assert rows[2]["fault"].endswith("(it had no batch: idle, the fault hit no transaction)")
    assert rows[3]["fault"] == "leaves the group (membership churn)"
    page = render_run_html(run_dir)
    assert '<section id="processor-faults">' in page
    assert "Counted by the checker: kills 1, pauses 1, zombies fenced 1, aborts on purpose 1, leaves 1." in page
    # other workloads have no processor faults and no such section
    assert 'id="processor-faults"' not in render_run_html(_run(tmp_path / "disk", INCONSISTENT))
