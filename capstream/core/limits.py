"""What a usage event may hold: the one validation the SDK, the worker and the sink share.

Every amount and every string of an event is bounded here, at the edge, so that nothing an
event carries can overflow a total, a state value or a ClickHouse column, or grow a
worker's memory with its size. The SDK refuses an event that breaks a rule when it is
recorded (naming the field); the worker and the sink refuse the same event, and only that
event, with the same reason: a dead letter, never a count or a row. So worker totals and
ClickHouse rows agree event for event.

The rules, per event:

============================  ===============================================================
``event_id``, ``account_id``, non-empty, at most :data:`MAX_ID` characters
``bot_id``, ``conversation_id``
``model``                     at most :data:`MAX_MODEL` characters (may be empty)
``tokens_in``, ``tokens_out`` 0 to :data:`MAX_TOKENS` each
``messages``                  0 to :data:`MAX_MESSAGES`
``credits_micro``             0 to :data:`MAX_CREDITS_MICRO`
``occurred_at_ms``            from :data:`MIN_OCCURRED_AT_MS` (2000-01-01) to the record's
                              time plus the allowed clock skew (and before 2200-01-01)
``attributes``                at most :data:`MAX_ATTRIBUTES` entries; keys at most
                              :data:`MAX_ATTRIBUTE_KEY`, values at most
                              :data:`MAX_ATTRIBUTE_VALUE` characters
============================  ===============================================================

With these bounds a day's or a month's total would need ~9 million maximal events of one
account in one period to pass 2**63; the state codec saturates rather than fail if it ever
happens (``core.state_codec``).
"""

from __future__ import annotations

from typing import Final

MAX_ID: Final = 200
"""Characters of an id (event, account, bot, conversation)."""
MAX_MODEL: Final = 200
"""Characters of a model name."""
MAX_TOKENS: Final = 1_000_000_000
"""Tokens in (and out) of one event."""
MAX_MESSAGES: Final = 1_000_000
"""Messages of one event."""
MAX_CREDITS_MICRO: Final = 1_000_000_000_000_000
"""Micro-credits of one event (a billion credits)."""
MIN_OCCURRED_AT_MS: Final = 946_684_800_000
"""2000-01-01T00:00:00Z: an earlier time is a producer's clock or encoding error."""
MAX_OCCURRED_AT_MS: Final = 7_258_118_400_000
"""2200-01-01T00:00:00Z, whatever the record's time (ClickHouse's DateTime64 range)."""
MAX_ATTRIBUTES: Final = 32
MAX_ATTRIBUTE_KEY: Final = 64
MAX_ATTRIBUTE_VALUE: Final = 256
DEFAULT_MAX_FUTURE_SKEW_MS: Final = 300_000
"""How far past its record's time (or, in the SDK, the clock) an event may be stamped."""

MISSING_ID: Final = "missing_id"
NEGATIVE_AMOUNT: Final = "negative_amount"
AMOUNT_TOO_LARGE: Final = "amount_too_large"
FUTURE_TIMESTAMP: Final = "future_timestamp"
INVALID: Final = "invalid"
"""Dead-letter reasons of :func:`event_problem` (``invalid``: a time before 2000, an id, a
model or attributes too long)."""


class Problem:
    """Why an event is refused: the dead-letter ``reason``, the ``field`` and a message."""

    __slots__ = ("field", "message", "reason")

    def __init__(self, reason: str, field: str, message: str) -> None:
        self.reason = reason
        self.field = field
        self.message = message

    def __repr__(self) -> str:
        return f"Problem({self.reason!r}, {self.field!r}, {self.message!r})"


def event_problem(
    event_id: str,
    account_id: str,
    bot_id: str,
    conversation_id: str,
    model: str,
    tokens_in: int,
    tokens_out: int,
    messages: int,
    credits_micro: int,
    occurred_at_ms: int,
    attributes: dict[str, str] | None,
    max_occurred_at_ms: int,
) -> Problem | None:
    """The first rule the event breaks, or None when it may be counted and stored.

    ``max_occurred_at_ms``: the latest time accepted (the record's time plus the skew); an
    event after 2200-01-01 is refused whatever it is.
    """
    if not (event_id and account_id and bot_id and conversation_id):
        for name, value in (
            ("event_id", event_id), ("account_id", account_id), ("bot_id", bot_id),
            ("conversation_id", conversation_id),
        ):  # fmt: skip
            if not value:
                return Problem(
                    MISSING_ID, name,
                    "event_id, account_id, bot_id and conversation_id must be non-empty",
                )  # fmt: skip
    if (
        len(event_id) > MAX_ID
        or len(account_id) > MAX_ID
        or len(bot_id) > MAX_ID
        or len(conversation_id) > MAX_ID
    ):
        for name, value in (
            ("event_id", event_id), ("account_id", account_id), ("bot_id", bot_id),
            ("conversation_id", conversation_id),
        ):  # fmt: skip
            if len(value) > MAX_ID:
                return Problem(INVALID, name, f"is {len(value)} characters; the limit is {MAX_ID}")
    if len(model) > MAX_MODEL:
        return Problem(INVALID, "model", f"is {len(model)} characters; the limit is {MAX_MODEL}")
    if (tokens_in | tokens_out | messages | credits_micro) < 0:
        for name, amount in (
            ("tokens_in", tokens_in), ("tokens_out", tokens_out), ("messages", messages),
            ("credits_micro", credits_micro),
        ):  # fmt: skip
            if amount < 0:
                return Problem(NEGATIVE_AMOUNT, name, f"cannot be negative (got {amount})")
    if tokens_in > MAX_TOKENS:
        return _too_large("tokens_in", tokens_in, MAX_TOKENS)
    if tokens_out > MAX_TOKENS:
        return _too_large("tokens_out", tokens_out, MAX_TOKENS)
    if messages > MAX_MESSAGES:
        return _too_large("messages", messages, MAX_MESSAGES)
    if credits_micro > MAX_CREDITS_MICRO:
        return _too_large("credits_micro", credits_micro, MAX_CREDITS_MICRO)
    if occurred_at_ms < MIN_OCCURRED_AT_MS:
        return Problem(
            INVALID, "occurred_at_ms",
            f"{occurred_at_ms} is before 2000-01-01 ({MIN_OCCURRED_AT_MS}); "
            "send epoch milliseconds",
        )  # fmt: skip
    if occurred_at_ms > max_occurred_at_ms or occurred_at_ms >= MAX_OCCURRED_AT_MS:
        limit = min(max_occurred_at_ms, MAX_OCCURRED_AT_MS - 1)
        return Problem(
            FUTURE_TIMESTAMP, "occurred_at_ms",
            f"{occurred_at_ms} is later than {limit} (the record's time plus the allowed "
            "skew); check the producer's clock",
        )  # fmt: skip
    if attributes:
        return attributes_problem(attributes)
    return None


def attributes_problem(attributes: dict[str, str]) -> Problem | None:
    """The first attribute rule ``attributes`` breaks, or None."""
    if len(attributes) > MAX_ATTRIBUTES:
        return Problem(
            INVALID, "attributes",
            f"has {len(attributes)} entries; the limit is {MAX_ATTRIBUTES}",
        )  # fmt: skip
    for key, value in attributes.items():
        if len(key) > MAX_ATTRIBUTE_KEY:
            return Problem(
                INVALID, "attributes",
                f"key {key[:20]!r}... is {len(key)} characters; the limit is "
                f"{MAX_ATTRIBUTE_KEY}",
            )  # fmt: skip
        if len(value) > MAX_ATTRIBUTE_VALUE:
            return Problem(
                INVALID, "attributes",
                f"value of {key!r} is {len(value)} characters; the limit is "
                f"{MAX_ATTRIBUTE_VALUE}",
            )  # fmt: skip
    return None


def _too_large(name: str, value: int, limit: int) -> Problem:
    return Problem(AMOUNT_TOO_LARGE, name, f"{value} is larger than the per-event limit {limit:,}")
