"""The strict checks of usage events, and the generic path for older writer schemas.

Every event, whichever path decoded it, is checked by
:func:`capstream.core.limits.event_problem` (the rules the SDK and the sink apply too); a
record written with another registered ``UsageBatch`` version is decoded by fastavro
(:func:`decode_generic`), which raises a precise ``DecodeError`` for a bad record.
"""

from __future__ import annotations

from typing import Any

from capstream.core.limits import Problem, event_problem
from capstream.core.models import UsageEvent
from capstream.streams.codecs import Codec
from capstream.streams.usage_results import BadEvent, Decoded


def event_from_avro(e: dict[str, Any]) -> UsageEvent:
    """The core event of a fastavro-decoded ``UsageEvent`` (KeyError/TypeError if malformed)."""
    return UsageEvent(
        e["event_id"], e["account_id"], e["bot_id"], e["conversation_id"], e["category"],
        e["model"], e["tokens_in"], e["tokens_out"], e["messages"], e["conversation_started"],
        e["credits_micro"], e["occurred_at_ms"], dict(e.get("attributes") or {}),
    )  # fmt: skip


def problem_of(e: UsageEvent, max_t: int) -> Problem | None:
    """What is wrong with ``e`` (ids, counts, time up to ``max_t``, attributes), if anything."""
    return event_problem(
        e.event_id, e.account_id, e.bot_id, e.conversation_id, e.model, e.tokens_in,
        e.tokens_out, e.messages, e.credits_micro, e.occurred_at_ms, e.attributes, max_t,
    )  # fmt: skip


def decode_generic(batches: Codec, value: bytes, max_t: int) -> Decoded:
    """Any registered writer schema, through fastavro (raises a precise ``DecodeError``)."""
    record = batches.decode(value)
    events: list[UsageEvent] = []
    indexes: list[int] = []
    bad: list[BadEvent] = []
    for index, e in enumerate(record.get("events") or []):
        problem: Problem | None
        try:
            event = event_from_avro(e)
            problem = problem_of(event, max_t)
        except (KeyError, TypeError) as exc:
            problem = Problem("invalid", "event", f"is malformed: {exc}")
        if problem is None:
            events.append(event)
            indexes.append(index)
        else:
            bad.append(
                BadEvent(index, problem.reason,
                         f"event {index}: {problem.field} {problem.message}", value)
            )  # fmt: skip
    return Decoded(events, indexes, bad)
