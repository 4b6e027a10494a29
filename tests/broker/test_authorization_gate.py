"""The request gate's own rules that real processes show only in a narrow window (unit tests around the gate)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from broker.protocol import apis
from broker.server.authorization import RequestGate, TopicCatalog
from broker.server.config import build_config
from broker.server.handlers import CloseConnection



class _Manager:
    caught_up = False


def test_a_node_whose_metadata_has_not_caught_up_closes_checked_requests_instead_of_refusing_them():
    """A restarted node replaying its metadata log holds stale ACLs: an authorization error would be final for the
    client, a closed connection is retried (Kafka opens client listeners only once its authorizer loaded)."""
    manager = _Manager()
    cluster = SimpleNamespace(replica_manager=manager, quorum=SimpleNamespace(image=SimpleNamespace(topics={})))
    config = build_config({"node.id": "1", "authorizer.class.name":
                           "org.apache.kafka.metadata.authorizer.StandardAuthorizer", "super.users": "User:ANONYMOUS"})
    gate = RequestGate(config, lambda: {}, TopicCatalog(None, cluster), SimpleNamespace(monotonic_ns=lambda: 0))
    answered = []
    end_txn = gate.wrap(apis.END_TXN, lambda header, request: answered.append(request) or "answer")
    header = SimpleNamespace(api_key=apis.END_TXN, api_version=3)
    request = SimpleNamespace(transactional_id="tx-1")
    with pytest.raises(CloseConnection, match="EndTxn from User:ANONYMOUS before this node's metadata, and so its "
                                              "ACLs, caught up"):
        end_txn(header, request)
    assert answered == []
    manager.caught_up = True  # caught up: checked as usual (a super user here)
    assert end_txn(header, request) == "answer" and answered == [request]
    assert TopicCatalog(None, SimpleNamespace(replica_manager=None)).ready()  # a node without replicas yet
