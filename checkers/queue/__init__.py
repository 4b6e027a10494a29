"""The Kafka queue checker (Jepsen's kafka workload anomalies, per delivery mode).

`check(history, delivery=..., ww_deps=False)` is the entry point; see
`checkers.queue.checker` for the analysis and `checkers.queue.explain` for the
sentences. Pure: a history in, a result map out; safe from any thread.
"""

from checkers.queue.checker import ANOMALY_NAMES, DELIVERY_MODES, QueueHistoryError, check
from checkers.queue.explain import explain

__all__ = ["ANOMALY_NAMES", "DELIVERY_MODES", "QueueHistoryError", "check", "explain"]
