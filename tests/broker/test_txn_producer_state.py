"""Transaction markers, the last stable offset, the aborted-transaction index and producer-state snapshots."""

from __future__ import annotations

import pytest

from broker.protocol.txn_markers import build_marker_batch, marker_commit, marker_info
from broker.io import RealDisk
from broker.protocol.records import build_batch, parse_header
from broker.replication.producer_state import DUPLICATE, OK, OUT_OF_ORDER, AbortedTxn, ProducerStateTable


def header(base_offset: int, producer_id: int, epoch: int, sequence: int, count: int = 1, transactional=True):
    raw = build_batch([(None, b"v")] * count, base_offset=base_offset, producer_id=producer_id,
                      producer_epoch=epoch, base_sequence=sequence, attributes=0x10 if transactional else 0)
    return parse_header(raw, 0)


def marker(base_offset: int, producer_id: int, epoch: int, commit: bool):
    raw = bytearray(build_marker_batch(producer_id, epoch, commit, coordinator_epoch=3, timestamp_ms=5))
    raw[0:8] = base_offset.to_bytes(8, "big")
    return bytes(raw)


def test_marker_round_trip():
    assert marker_commit(build_marker_batch(7, 1, True, 0, 0)) is True
    assert marker_commit(build_marker_batch(7, 1, False, 0, 0)) is False
    assert marker_commit(build_batch([(b"k", b"v")])) is None
    parsed = parse_header(build_marker_batch(7, 1, True, 0, 0), 0)
    assert (parsed.is_control, parsed.is_transactional, parsed.producer_id, parsed.producer_epoch) == (True, True, 7, 1)


def test_last_stable_offset_and_aborted_index():
    table = ProducerStateTable()
    assert table.last_stable_offset(high_watermark=0) == 0
    table.record(header(0, 1, 0, 0, count=2), 0)  # producer 1 opens a transaction at 0
    table.record(header(2, 2, 0, 0), 2)  # producer 2 opens one at 2
    table.record(header(3, 1, 0, 2), 3)
    assert table.last_stable_offset(high_watermark=4) == 0
    table.apply_marker(1, 0, 4, commit=False)  # producer 1 aborts: records 0..3 of it
    assert table.last_stable_offset(high_watermark=5) == 2
    table.apply_marker(2, 0, 5, commit=True)
    assert table.last_stable_offset(high_watermark=6) == 6
    assert table.aborted == [AbortedTxn(1, 0, 4)]
    assert table.aborted_overlapping(0, 6) == [AbortedTxn(1, 0, 4)]
    assert table.aborted_overlapping(4, 6) == [AbortedTxn(1, 0, 4)]
    assert table.aborted_overlapping(5, 6) == []
    # The LSO never passes the high watermark.
    table.record(header(6, 3, 0, 0), 6)
    assert table.last_stable_offset(high_watermark=6) == 6
    assert table.last_stable_offset(high_watermark=9) == 6


def test_marker_with_bumped_epoch_resets_sequences():
    table = ProducerStateTable()
    table.record(header(0, 1, 0, 0), 0)
    table.apply_marker(1, 1, 1, commit=False)
    assert table.check(header(2, 1, 0, 1)) [0] == "invalid_producer_epoch"
    assert table.check(header(2, 1, 1, 0))[0] == OK


def test_a_batch_reusing_the_sequences_of_an_ended_transaction_is_out_of_order_not_a_duplicate():
    table = ProducerStateTable()
    table.record(header(0, 1, 0, 0), 0)
    assert table.check(header(9, 1, 0, 0))[0] == DUPLICATE  # a retry within the open transaction
    table.apply_marker(1, 0, 1, commit=False)
    verdict, cached = table.check(header(2, 1, 0, 0))  # the same epoch and sequence in the next transaction
    assert (verdict, cached.base_offset) == (OUT_OF_ORDER, 0)
    assert table.check(header(2, 1, 0, 1))[0] == OK
    # idempotent producers without transactions keep Kafka's answer
    table.record(header(3, 2, 0, 0, transactional=False), 3)
    assert table.check(header(4, 2, 0, 0, transactional=False))[0] == DUPLICATE


def test_rebuild_replays_markers_from_log_bytes():
    batches = {0: build_batch([(None, b"a")], base_offset=0, producer_id=1, producer_epoch=0, base_sequence=0,
                              attributes=0x10),
               1: marker(1, 1, 0, commit=False),
               2: build_batch([(None, b"b")], base_offset=2, producer_id=1, producer_epoch=0, base_sequence=1,
                              attributes=0x10)}
    table = ProducerStateTable()
    count = table.rebuild((parse_header(raw, 0) for raw in batches.values()),
                          control_commit=lambda h: marker_commit(batches[h.base_offset]))
    assert count == 2
    assert table.aborted == [AbortedTxn(1, 0, 1)]
    assert table.ongoing == {1: 2}
    assert table.last_stable_offset(high_watermark=3) == 2


@pytest.mark.parametrize("planted", [False, True])
def test_debug_abort_marker_lost_a_rebuilt_leader_treats_an_aborted_transaction_as_open(planted):
    # producer 1 aborts its transaction at 0..1 (marker at 2), then commits one at 3 (marker at 4)
    batches = {0: build_batch([(None, b"aborted")] * 2, base_offset=0, producer_id=1, producer_epoch=0,
                              base_sequence=0, attributes=0x10),
               2: marker(2, 1, 0, commit=False),
               3: build_batch([(None, b"committed")], base_offset=3, producer_id=1, producer_epoch=0,
                              base_sequence=2, attributes=0x10),
               4: marker(4, 1, 0, commit=True)}
    table = ProducerStateTable()
    table.rebuild((parse_header(raw, 0) for raw in batches.values()),
                  control_commit=lambda h: marker_info(batches[h.base_offset]), skip_aborts=planted)
    assert not table.ongoing and table.last_stable_offset(high_watermark=5) == 5
    if planted:
        # the abort is lost: the commit marker ends a transaction that starts at 0, so read_committed
        # consumers get no aborted range and deliver the aborted records
        assert table.aborted == [] and table.aborted_overlapping(0, 5) == []
    else:
        assert table.aborted_overlapping(0, 5) == [AbortedTxn(1, 0, 2)]


def test_snapshot_round_trip_and_latest_choice(tmp_path):
    disk = RealDisk()
    directory = str(tmp_path)
    table = ProducerStateTable()
    table.record(header(0, 1, 0, 0), 0)
    table.apply_marker(1, 0, 1, commit=False)
    table.record(header(2, 2, 4, 0, count=3), 2)
    table.write_snapshot(disk, directory, 5)
    table.record(header(5, 2, 4, 3), 5)
    table.write_snapshot(disk, directory, 6)
    loaded, next_offset = ProducerStateTable.load_latest_snapshot(disk, directory, log_end_offset=6)
    assert next_offset == 6
    assert loaded.snapshot_bytes(6) == table.snapshot_bytes(6)
    assert loaded.check(header(5, 2, 4, 3))[0] == DUPLICATE
    assert loaded.check(header(6, 2, 4, 4))[0] == OK
    # After truncation below 6, the newer snapshot describes records that are gone.
    older, next_offset = ProducerStateTable.load_latest_snapshot(disk, directory, log_end_offset=5)
    assert next_offset == 5 and older.ongoing == {2: 2} and older.aborted == [AbortedTxn(1, 0, 1)]
    # A damaged snapshot is passed over.
    (tmp_path / f"{6:020d}.snapshot").write_bytes(b"{not json")
    fallback, next_offset = ProducerStateTable.load_latest_snapshot(disk, directory, log_end_offset=6)
    assert next_offset == 5
    empty, next_offset = ProducerStateTable.load_latest_snapshot(disk, directory, log_end_offset=4)
    assert next_offset == 0 and empty.producers == {}


def test_snapshot_rejects_unknown_version():
    with pytest.raises(ValueError, match="version 99"):
        ProducerStateTable.from_snapshot_bytes(b'{"version": 99}')


def test_a_decided_transaction_stays_unstable_until_the_high_watermark_passes_its_marker():
    table = ProducerStateTable()
    table.record(header(0, 7, 0, 0, count=2), 0)
    table.apply_marker(7, 0, 2, commit=True, replicated=False)
    assert not table.ongoing
    assert table.last_stable_offset(2) == 0  # the marker at 2 is not below the HW yet
    assert table.last_stable_offset(3) == 3
    assert table.unreplicated == []  # forgotten once replicated


def test_unsequenced_transactional_batches_open_a_transaction_and_are_fenced_by_epoch():
    table = ProducerStateTable()
    table.begin_unsequenced(9, 2, 10)
    assert table.ongoing == {9: 10} and table.last_stable_offset(20) == 10
    assert table.epoch_error(9, 1) and not table.epoch_error(9, 2) and not table.epoch_error(8, 0)
    table.apply_marker(9, 3, 12, commit=False)
    assert table.epoch_error(9, 2)  # the abort marker's bumped epoch fences the old producer
    assert table.aborted == [AbortedTxn(9, 10, 12)]
    # a rebuild from headers gives the same state
    unsequenced = parse_header(build_batch([(None, b"o")], base_offset=10, producer_id=9, producer_epoch=2,
                                           attributes=0x10), 0)
    rebuilt = ProducerStateTable()
    rebuilt.rebuild([unsequenced, parse_header(marker(12, 9, 3, False), 0)], lambda h: False)
    assert rebuilt.aborted == table.aborted and rebuilt.epoch_error(9, 2)


def test_markers_carry_the_coordinator_epoch_and_older_epochs_are_fenced():
    assert marker_info(build_marker_batch(7, 2, True, 13, 1000)) == (True, 13)
    assert marker_info(build_marker_batch(7, 2, False, 0, 1000)) == (False, 0)
    table = ProducerStateTable()
    assert not table.marker_fenced(7, 0)
    table.apply_marker(7, 2, 10, commit=False, coordinator_epoch=4)
    assert table.marker_fenced(7, 3) and not table.marker_fenced(7, 4) and not table.marker_fenced(7, 5)
    assert not table.marker_fenced(8, 0)  # another producer
    restored, _ = ProducerStateTable.from_snapshot_bytes(table.snapshot_bytes(11))
    assert restored.coordinator_epochs == {7: 4}

