"""Errors of requests to the active controller, each mapped to a Kafka error code.

A broker that asks the controller for a change (AlterPartition, CreateTopics
forwarded, a producer id block, ...) gets one of these raised when the
controller refuses or cannot be reached. `error_code` is the Kafka error code
(kio's `ErrorCode` value) the controller answered with, so that a broker can
pass it on to a client unchanged.

Sources: KIP-497 (AlterPartition / AlterIsr errors), KIP-631 (the quorum
controller), Kafka's `Errors` table.

Thread-safety: plain exception classes.
"""

from __future__ import annotations


class ControllerError(Exception):
    """The controller refused a request, or could not be asked; `error_code` says which (Kafka's codes)."""

    error_code: int = -1  # UNKNOWN_SERVER_ERROR

    def __init__(self, message: str, error_code: int | None = None):
        super().__init__(message)
        if error_code is not None:
            self.error_code = error_code


class NotControllerError(ControllerError):
    """The node asked is not the active controller (NOT_CONTROLLER, 41); the caller retries elsewhere."""

    error_code = 41


class ControllerUnavailableError(ControllerError):
    """No active controller answered within the timeout (REQUEST_TIMED_OUT, 7)."""

    error_code = 7


class FencedLeaderEpochError(ControllerError):
    """AlterPartition from a leader epoch older than the partition's (FENCED_LEADER_EPOCH, 74)."""

    error_code = 74


class InvalidUpdateVersionError(ControllerError):
    """AlterPartition with a stale partition epoch (INVALID_UPDATE_VERSION, 108)."""

    error_code = 108


class NotLeaderOrFollowerError(ControllerError):
    """AlterPartition from a broker that is not the partition's leader (NOT_LEADER_OR_FOLLOWER, 6)."""

    error_code = 6


class UnknownTopicOrPartitionError(ControllerError):
    """The topic or partition does not exist (UNKNOWN_TOPIC_OR_PARTITION, 3)."""

    error_code = 3


class IneligibleReplicaError(ControllerError):
    """AlterPartition would add a fenced or unregistered broker to the ISR (INELIGIBLE_REPLICA, 107)."""

    error_code = 107


class InvalidRequestError(ControllerError):
    """A request the controller cannot accept as formed (INVALID_REQUEST, 42)."""

    error_code = 42


class StaleBrokerEpochError(ControllerError):
    """A heartbeat from a broker incarnation the controller does not know (STALE_BROKER_EPOCH, 77)."""

    error_code = 77


ERRORS_BY_CODE: dict[int, type[ControllerError]] = {
    cls.error_code: cls
    for cls in (
        NotControllerError,
        ControllerUnavailableError,
        FencedLeaderEpochError,
        InvalidUpdateVersionError,
        NotLeaderOrFollowerError,
        UnknownTopicOrPartitionError,
        IneligibleReplicaError,
        InvalidRequestError,
        StaleBrokerEpochError,
    )
}


def error_for_code(error_code: int, message: str) -> ControllerError:
    """The exception for a Kafka error code answered by the controller."""
    cls = ERRORS_BY_CODE.get(error_code, ControllerError)
    return cls(message, error_code)
