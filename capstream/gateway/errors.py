"""Errors the gateway SDK raises; each message says what the caller should change."""

from __future__ import annotations

from capstream.errors import CapstreamError


class GatewayError(CapstreamError):
    """Base of the errors raised by ``capstream.gateway``."""


class UsageEventError(GatewayError, ValueError):
    """A usage event was rejected at ``record()`` time; ``field`` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"invalid usage event: {field}: {message}")
        self.field = field


class UnknownCategoryError(GatewayError, ValueError):
    """``gate()`` was asked about a category that is not text, vision, audio or documents.

    One type and one message whether or not the gateway holds a state for the bot.
    """

    def __init__(self, category: object) -> None:
        super().__init__(
            f"unknown category {category!r}: use one of text, vision, audio, documents"
        )
        self.category = category


class QueueFullError(GatewayError):
    """The recorder's in-memory queue is full (``on_overflow="raise"``); the event was not taken.

    The queue only fills when the brokers are unreachable or slower than the callers for
    ``max_queue`` events. Retry later, raise ``max_queue``, or choose ``on_overflow="drop"``.
    """


class RecorderClosedError(GatewayError):
    """``record()`` or ``flush()`` was called after ``close()``."""


class NotDeliveredError(GatewayError):
    """``close()`` gave up before the brokers confirmed every accepted event.

    ``pending`` is how many accepted events were not confirmed; they are not lost while the
    process lives (librdkafka keeps retrying), but they will be if it exits now.
    """

    def __init__(self, pending: int, timeout: float) -> None:
        super().__init__(
            f"{pending} accepted usage events were not confirmed by Kafka within {timeout:g}s: "
            "check that the brokers are reachable, then call close() again with a longer timeout"
        )
        self.pending = pending
