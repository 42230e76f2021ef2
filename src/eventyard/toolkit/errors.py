"""The toolkit's typed errors: each says what went wrong in terms of the domain, not of Kafka."""

from __future__ import annotations

from collections.abc import Sequence


class ToolkitError(Exception):
    """Base class of every error the toolkit raises on purpose."""


class UnknownEventType(ToolkitError):
    """A record names an event type (or a schema version) this registry does not know."""

    def __init__(self, name: str | None, version: int | None = None, detail: str = "") -> None:
        self.name = name
        self.version = version
        what = "a record without an event type header" if name is None else f"event type {name!r}"
        if version is not None:
            what += f" version {version}"
        super().__init__(f"unknown {what}" + (f": {detail}" if detail else ""))


class InvalidEventPayload(ToolkitError):
    """A payload that cannot become the event it claims to be; `reason` says why."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"invalid payload for event {name!r}: {reason}")


class PublishError(ToolkitError):
    """The broker did not acknowledge every event of a publish.

    The events may or may not be in the log (a timeout cannot tell): reload and look before retrying.
    `delivered` lists the positions of the events that were acknowledged before the failure."""

    def __init__(self, reason: str, delivered: Sequence[object] = ()) -> None:
        self.reason = reason
        self.delivered = list(delivered)
        super().__init__(f"publish failed: {reason}")


class MissingTopic(ToolkitError):
    """A topic the application needs does not exist (or this credential may not see it), and the
    toolkit may not create it: on a platform add-on, topics are created through the platform."""

    def __init__(self, topic: str, detail: str) -> None:
        self.topic = topic
        super().__init__(f"topic {topic!r} is not available: {detail}")


class CommandRejected(ToolkitError):
    """A command that the aggregate's rules refuse in its current state."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class ConcurrencyConflict(ToolkitError):
    """Another command changed the entity since it was loaded: reload it and decide again."""

    def __init__(self, entity_id: str, expected: int, actual: int) -> None:
        self.entity_id = entity_id
        self.expected = expected
        self.actual = actual
        super().__init__(f"{entity_id!r} is at version {actual}, the command expected version {expected}")


class DatabaseDriverMissing(ToolkitError):
    """The database URL needs a driver that is not installed."""


class DatabaseUnavailable(ToolkitError):
    """The database cannot be reached, or the connection broke: nothing of the transaction was
    applied, unless the connection broke during its commit (then it may have been)."""
