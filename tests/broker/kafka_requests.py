"""Builders of kio request entities for the raw-socket tests (one place that knows field names)."""

from __future__ import annotations

import datetime
import importlib


def module(api: str, version: int, kind: str = "request"):
    return importlib.import_module(f"kio.schema.{api}.v{version}.{kind}")


def metadata(topics: list[str] | None, version: int = 12, allow_auto_topic_creation: bool = True):
    m = module("metadata", version)
    if topics is None:
        wanted = None
    elif version >= 10:
        wanted = tuple(m.MetadataRequestTopic(topic_id=None, name=t) for t in topics)
    else:
        wanted = tuple(m.MetadataRequestTopic(name=t) for t in topics)
    fields = {"topics": wanted}
    if version >= 4:
        fields["allow_auto_topic_creation"] = allow_auto_topic_creation
    if version >= 8:
        fields["include_topic_authorized_operations"] = False
    if 8 <= version <= 10:
        fields["include_cluster_authorized_operations"] = False
    return m.MetadataRequest(**fields)


def create_topic(name: str, partitions: int, configs: dict[str, str] | None = None, version: int = 7, replication_factor: int = 1):
    m = module("create_topics", version)
    topic = m.CreatableTopic(
        name=name, num_partitions=partitions, replication_factor=replication_factor, assignments=(),
        configs=tuple(m.CreatableTopicConfig(name=k, value=v) for k, v in (configs or {}).items()),
    )
    return m.CreateTopicsRequest(topics=(topic,), timeout=datetime.timedelta(seconds=10), validate_only=False)


def produce(topic: str, partition: int, records: bytes, acks: int = -1, version: int = 9, transactional_id=None):
    m = module("produce", version)
    return m.ProduceRequest(
        transactional_id=transactional_id, acks=acks, timeout=datetime.timedelta(seconds=10),
        topic_data=(m.TopicProduceData(name=topic, partition_data=(m.PartitionProduceData(index=partition, records=records),)),),
    )


def fetch(topic: str, partition: int, offset: int, version: int = 11, max_wait_ms: int = 0, min_bytes: int = 1,
          max_bytes: int = 10 << 20, topic_id=None):
    m = module("fetch", version)
    part_fields = dict(partition=partition, fetch_offset=offset, partition_max_bytes=max_bytes)
    if version >= 5:
        part_fields["log_start_offset"] = -1
    if version >= 9:
        part_fields["current_leader_epoch"] = -1
    if version >= 12:
        part_fields["last_fetched_epoch"] = -1
    if version >= 13:
        topic_entry = m.FetchTopic(topic_id=topic_id, partitions=(m.FetchPartition(**part_fields),))
    else:
        topic_entry = m.FetchTopic(topic=topic, partitions=(m.FetchPartition(**part_fields),))
    fields = dict(replica_id=-1, max_wait=datetime.timedelta(milliseconds=max_wait_ms), min_bytes=min_bytes,
                  max_bytes=max_bytes, isolation_level=0, topics=(topic_entry,))
    if version >= 7:
        fields.update(session_id=0, session_epoch=-1, forgotten_topics_data=())
    if version >= 11:
        fields["rack_id"] = ""
    cls = m.FetchRequest
    return cls(**{k: v for k, v in fields.items() if k in cls.__dataclass_fields__})


def list_offsets(topic: str, partition: int, timestamp: int, version: int = 6):
    m = module("list_offsets", version)
    part_fields = dict(partition_index=partition, timestamp=timestamp)
    if version >= 4:
        part_fields["current_leader_epoch"] = -1
    fields = dict(replica_id=-1, topics=(m.ListOffsetsTopic(name=topic, partitions=(m.ListOffsetsPartition(**part_fields),)),))
    if version >= 2:
        fields["isolation_level"] = 0
    return m.ListOffsetsRequest(**fields)


def init_producer_id(transactional_id=None, version: int = 4):
    m = module("init_producer_id", version)
    fields = dict(transactional_id=transactional_id, transaction_timeout=datetime.timedelta(seconds=60))
    if version >= 3:
        fields.update(producer_id=-1, producer_epoch=-1)
    return m.InitProducerIdRequest(**fields)


def api_versions(version: int = 3):
    m = module("api_versions", version)
    if version >= 3:
        return m.ApiVersionsRequest(client_software_name="raw-client", client_software_version="1")
    return m.ApiVersionsRequest()


def describe_configs(resource_type: int, name: str, version: int = 4):
    m = module("describe_configs", version)
    fields = dict(resources=(m.DescribeConfigsResource(resource_type=resource_type, resource_name=name, configuration_keys=None),),
                  include_synonyms=False)
    if version >= 3:
        fields["include_documentation"] = False
    return m.DescribeConfigsRequest(**fields)


def delete_topic(name: str, version: int = 6):
    m = module("delete_topics", version)
    if version >= 6:
        return m.DeleteTopicsRequest(topics=(m.DeleteTopicState(name=name, topic_id=None),), timeout=datetime.timedelta(seconds=10))
    return m.DeleteTopicsRequest(topic_names=(name,), timeout=datetime.timedelta(seconds=10))


def batch(records, **fields) -> bytes:
    """A v2 batch stamped with the current time (an old timestamp would be expired by time retention)."""
    import time

    from broker.protocol.records import build_batch

    fields.setdefault("base_timestamp", time.time_ns() // 1_000_000)
    return build_batch(records, **fields)
