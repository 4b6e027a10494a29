"""Property test of the controller's partition decisions under random fencing, unfencing and ISR changes.

Hypothesis drives a random sequence of events on a small cluster (brokers
fenced and unfenced, leaders shrinking or expanding the ISR through
AlterPartition) through the pure decision functions, applying the records to
an image, and checks Kafka's invariants after every step:

- the ISR is never empty and lies within the replicas;
- a leader is an unfenced member of the ISR; with unclean election off, a new
  leader was in the previous ISR (no out-of-sync replica ever leads);
- the leader epoch grows by exactly one on each leader change and never
  otherwise; the partition epoch grows on every change;
- a partition is offline only when no member of its ISR is live.
"""

from __future__ import annotations

import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from broker.controller.controller import ControllerSettings, alter_partition_decision, fence_records, unfence_records
from broker.metadata.errors import ControllerError
from broker.metadata.image import NO_LEADER, MetadataImage
from broker.metadata.records import PartitionRecord, RegisterBrokerRecord, TopicRecord, UnfenceBrokerRecord

BROKERS = (1, 2, 3, 4)
TOPIC_ID = uuid.UUID(int=5)

events = st.lists(
    st.one_of(
        st.tuples(st.just("fence"), st.sampled_from(BROKERS)),
        st.tuples(st.just("unfence"), st.sampled_from(BROKERS)),
        st.tuples(st.just("alter"), st.integers(0, 1), st.sets(st.sampled_from(BROKERS), min_size=1)),
    ),
    max_size=40,
)


def initial_image() -> MetadataImage:
    records = []
    for broker_id in BROKERS:
        records += [RegisterBrokerRecord(broker_id, uuid.UUID(int=broker_id), "h", 1), UnfenceBrokerRecord(broker_id)]
    records.append(TopicRecord("t", TOPIC_ID))
    records.append(PartitionRecord(TOPIC_ID, 0, (1, 2, 3), (1, 2, 3), 1, 0, 0))
    records.append(PartitionRecord(TOPIC_ID, 1, (3, 4), (3, 4), 3, 0, 0))
    return MetadataImage().apply_all(records, len(records))


def check(old: MetadataImage, new: MetadataImage, unclean: bool) -> None:
    for partition in (0, 1):
        before, after = old.partition("t", partition), new.partition("t", partition)
        assert after.isr and set(after.isr) <= set(after.replicas), after
        if after.leader != NO_LEADER:
            assert after.leader in after.isr and new.is_live(after.leader), after
        else:
            assert not any(new.is_live(r) for r in after.isr), f"offline although an ISR member is live: {after}"
        if after.leader != before.leader:
            assert after.leader_epoch == before.leader_epoch + 1, (before, after)
            if after.leader != NO_LEADER and not unclean:
                assert after.leader in before.isr, f"out-of-sync replica elected: {before} -> {after}"
        else:
            assert after.leader_epoch == before.leader_epoch
        if after != before:
            assert after.partition_epoch > before.partition_epoch


@settings(max_examples=300, deadline=None)
@given(events, st.booleans())
def test_partition_invariants_hold_under_any_event_sequence(sequence, unclean):
    controller_settings = ControllerSettings(unclean_leader_election_enable=unclean)
    image = initial_image()
    for event in sequence:
        old = image
        if event[0] == "fence":
            if not image.is_live(event[1]):
                continue
            records = fence_records(image, event[1], controller_settings)
        elif event[0] == "unfence":
            if image.is_live(event[1]):
                continue
            records = unfence_records(image, event[1], controller_settings)
        else:
            _, partition, members = event
            state = image.partition("t", partition)
            if state.leader == NO_LEADER:
                continue
            new_isr = tuple(r for r in state.replicas if r in members or r == state.leader)
            try:
                records, _ = alter_partition_decision(
                    image, state.leader, TOPIC_ID, partition, state.leader_epoch, new_isr, state.partition_epoch
                )
            except ControllerError:
                continue  # refused (a fenced broker may not join): nothing changes
        image = image.apply_all(records, image.offset + 1)
        check(old, image, unclean)
