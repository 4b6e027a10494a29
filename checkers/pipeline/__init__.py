"""The read-process-write pipeline checker (exactly-once copying from an input topic to an output topic)."""

from checkers.pipeline.checker import ANOMALY_NAMES, check

__all__ = ["ANOMALY_NAMES", "check"]
