"""``usage_batches.json``: events and their ``UsageBatch`` bytes, events ``record()`` refuses,
and what a recorder derives for ``conversation_started``."""

from __future__ import annotations

from typing import Any

from capstream.core.limits import (
    DEFAULT_MAX_FUTURE_SKEW_MS,
    MAX_ATTRIBUTE_KEY,
    MAX_ATTRIBUTE_VALUE,
    MAX_ATTRIBUTES,
    MAX_CREDITS_MICRO,
    MAX_ID,
    MAX_MESSAGES,
    MAX_MODEL,
    MAX_OCCURRED_AT_MS,
    MAX_TOKENS,
    MIN_OCCURRED_AT_MS,
    event_problem,
)
from capstream.core.models import (
    CATEGORY_INDEX,
)
from capstream.gateway.recorder import DEFAULT_CONVERSATIONS_TRACKED
from capstream.gateway.vectors.common import T0, jsonable
from capstream.streams.codecs import codec

# -- usage batches -------------------------------------------------------------------------


def _event(i: int, **changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": f"evt-{i}",
        "account_id": "acct-1",
        "bot_id": "bot-1",
        "conversation_id": "conv-1",
        "category": "text",
        "model": "claude-sonnet-4-6",
        "tokens_in": 420,
        "tokens_out": 180,
        "messages": 1,
        "conversation_started": False,
        "credits_micro": 2300,
        "occurred_at_ms": T0 + i,
        "attributes": [],
    }
    event.update(changes)
    return event


def _batch_cases() -> list[dict[str, Any]]:
    big = [0, 1, 63, 64, 127, 128, 8191, 8192, (1 << 20) - 1, 1 << 20, (1 << 27) - 1, 1 << 27]
    return [
        {"name": "one event", "events": [_event(1)]},
        {"name": "no events", "events": []},
        {
            "name": "four categories, a new conversation, attributes, an empty model",
            "events": [
                _event(2, category="text", conversation_started=True),
                _event(3, category="vision", model="", attributes=[["lang", "en"], ["2", "x"]]),
                _event(4, category="audio", bot_id="bot-2", attributes=[["k", "é"]]),
                _event(5, category="documents", account_id="acct-2", messages=0),
            ],
        },
        {
            "name": "non-ASCII ids and texts",
            "events": [
                _event(
                    6,
                    event_id="évé-6",
                    account_id="账户-1",
                    bot_id="bot/ü",
                    conversation_id="💬-1",
                    model="modèle",
                )
            ],
        },
        {
            "name": "counts across varint sizes",
            "events": [
                _event(10 + j, tokens_in=n, tokens_out=big[-1 - j], credits_micro=n * 3)
                for j, n in enumerate(big)
            ],
        },
        {
            "name": "the largest counts, the earliest time (core.limits)",
            "events": [
                _event(
                    30,
                    tokens_in=MAX_TOKENS,
                    tokens_out=MAX_TOKENS,
                    messages=MAX_MESSAGES,
                    credits_micro=MAX_CREDITS_MICRO,
                    occurred_at_ms=MIN_OCCURRED_AT_MS,
                )
            ],
        },
        {
            "name": "ids and model of the longest length",
            "events": [
                _event(
                    31,
                    event_id="e" * MAX_ID,
                    account_id="a" * MAX_ID,
                    bot_id="b" * MAX_ID,
                    conversation_id="c" * MAX_ID,
                    model="m" * MAX_MODEL,
                )
            ],
        },
        {
            "name": "the most attributes, the longest keys and values (non-ASCII counted in "
            "characters)",
            "events": [
                _event(
                    32,
                    attributes=[
                        [f"{i:02d}" + "k" * (MAX_ATTRIBUTE_KEY - 2), "v" * MAX_ATTRIBUTE_VALUE]
                        for i in range(MAX_ATTRIBUTES - 1)
                    ]
                    + [["ü" * MAX_ATTRIBUTE_KEY, "💬" * MAX_ATTRIBUTE_VALUE]],
                )
            ],
        },
        {
            "name": "many events (multi-byte array count)",
            "events": [_event(100 + i, conversation_id=f"conv-{i % 7}") for i in range(70)],
        },
    ]


def _avro_event(event: dict[str, Any]) -> dict[str, Any]:
    return {**event, "attributes": dict(event["attributes"])}


FUTURE_MARGIN_MS = 60_000
"""How far past the allowed skew the "after now" refusal is stamped: a margin, so that the
milliseconds between building the event and validating it cannot make it acceptable."""

BAD_EVENTS: tuple[tuple[str, Any], ...] = (
    ("event_id", ""),
    ("event_id", None),
    ("event_id", "e" * (MAX_ID + 1)),
    ("account_id", ""),
    ("account_id", "a" * (MAX_ID + 1)),
    ("bot_id", 7),
    ("bot_id", "b" * (MAX_ID + 1)),
    ("conversation_id", "\ud800"),
    ("conversation_id", "c" * (MAX_ID + 1)),
    ("conversation_id", "💬" * (MAX_ID + 1)),
    ("category", "video"),
    ("model", "m" * (MAX_MODEL + 1)),
    ("tokens_in", -1),
    ("tokens_in", MAX_TOKENS + 1),
    ("tokens_out", 2.5),
    ("tokens_out", MAX_TOKENS + 1),
    ("messages", -3),
    ("messages", MAX_MESSAGES + 1),
    ("credits_micro", "lots"),
    ("credits_micro", MAX_CREDITS_MICRO + 1),
    ("credits_micro", (1 << 63) - 1),
    ("conversation_started", "yes"),
    ("occurred_at_ms", "now"),
    ("occurred_at_ms", 0),
    ("occurred_at_ms", MIN_OCCURRED_AT_MS - 1),
    ("occurred_at_ms", MAX_OCCURRED_AT_MS),
    ("attributes", [["k", 1]]),
    ("attributes", [[f"k{i}", "v"] for i in range(MAX_ATTRIBUTES + 1)]),
    ("attributes", [["k" * (MAX_ATTRIBUTE_KEY + 1), "v"]]),
    ("attributes", [["lang", "v" * (MAX_ATTRIBUTE_VALUE + 1)]]),
    ("attributes", [["emoji", "💬" * (MAX_ATTRIBUTE_VALUE + 1)]]),
)
"""(field, value): one bad field in an otherwise good event."""


def _limits_message(event: dict[str, Any], field: str) -> str | None:
    """The error text a refusal by ``core.limits`` gives (both SDKs must give it word for
    word), or None when the field fails a type check first, is a missing id (the SDKs say
    "is required"), or the text depends on the clock (a time too far ahead names the limit
    it was compared with)."""
    try:
        problem = event_problem(
            event["event_id"], event["account_id"], event["bot_id"], event["conversation_id"],
            event["model"], event["tokens_in"], event["tokens_out"], event["messages"],
            event["credits_micro"], event["occurred_at_ms"], dict(event["attributes"]),
            MAX_OCCURRED_AT_MS,
        )  # fmt: skip
    except (TypeError, ValueError):
        return None
    if problem is None or problem.field != field:
        return None
    if problem.reason in ("future_timestamp", "missing_id"):  # the SDKs say it their own way
        return None
    return f"invalid usage event: {problem.field}: {problem.message}"


def usage_batch_vectors() -> dict[str, Any]:
    batch_codec = codec("UsageBatch")
    cases = []
    for i, case in enumerate(_batch_cases()):
        batch = {
            "batch_id": f"batch-{i}",
            "producer": "vectors" if i % 2 == 0 else "",
            "sent_at_ms": T0 + 1000 + i,
            "events": case["events"],
        }
        value = batch_codec.encode({**batch, "events": [_avro_event(e) for e in case["events"]]})
        cases.append({"name": case["name"], **jsonable(batch), "hex": value.hex()})
    bad: list[dict[str, Any]] = []
    for field, value in BAD_EVENTS:
        event = _event(0)
        event[field] = value
        if isinstance(value, str) and value.startswith("\ud800"):
            event[field] = None  # JSON cannot hold a lone surrogate: the test builds it
            bad.append({"field": field, "event": jsonable(event), "lone_surrogate": True})
            continue
        case = {"field": field, "event": jsonable(event)}
        message = _limits_message(event, field)
        if message is not None:
            case["message"] = message
        bad.append(case)
    # Later than the clock plus the allowed skew: the test stamps it from its own clock.
    bad.append(
        {
            "field": "occurred_at_ms",
            "event": jsonable(_event(0)),
            "occurred_at_from_now_ms": DEFAULT_MAX_FUTURE_SKEW_MS + FUTURE_MARGIN_MS,
        }
    )
    return {
        "about": "UsageBatch single-object records (C3 01, CRC-64-AVRO fingerprint, body) "
        "and events record() must refuse, naming the field (and, for the bounds of "
        "core.limits, with the error's whole text); occurred_at_from_now_ms: set "
        "occurred_at_ms to the test's clock plus that",
        "limits": {
            "max_id": MAX_ID,
            "max_model": MAX_MODEL,
            "max_tokens": MAX_TOKENS,
            "max_messages": MAX_MESSAGES,
            "max_credits_micro": MAX_CREDITS_MICRO,
            "min_occurred_at_ms": MIN_OCCURRED_AT_MS,
            "max_occurred_at_ms": MAX_OCCURRED_AT_MS,
            "max_future_skew_ms": DEFAULT_MAX_FUTURE_SKEW_MS,
            "max_attributes": MAX_ATTRIBUTES,
            "max_attribute_key": MAX_ATTRIBUTE_KEY,
            "max_attribute_value": MAX_ATTRIBUTE_VALUE,
        },
        "fingerprint_hex": batch_codec.fingerprint.hex(),
        "cases": cases,
        "bad_events": bad,
        "default_conversations_tracked": DEFAULT_CONVERSATIONS_TRACKED,
        "conversation_started": [
            {**seq, "events": jsonable(seq["events"])} for seq in _started_sequences()
        ],
    }


def derived_started(tracked: int, events: list[dict[str, Any]]) -> list[bool | None]:
    """What a recorder sends as ``conversation_started`` for each event recorded in order
    (None: the event is refused). Left out (None), it is True for the first event of an
    (account, bot, conversation) not among the last ``tracked`` seen (0: never); a refused
    event does not count as seen; an explicit value is sent as given and marks nothing."""
    seen: dict[tuple[str, str, str], None] = {}
    out: list[bool | None] = []
    for e in events:
        if e["category"] not in CATEGORY_INDEX:
            out.append(None)
            continue
        started = e["conversation_started"]
        if started is None:
            key = (e["account_id"], e["bot_id"], e["conversation_id"])
            started = bool(tracked) and key not in seen
            if started:
                seen[key] = None
                if len(seen) > tracked:
                    del seen[next(iter(seen))]
        out.append(started)
    return out


def _started_sequences() -> list[dict[str, Any]]:
    def ev(i: int, conv: str, started: bool | None = None, **changes: Any) -> dict[str, Any]:
        return _event(i, conversation_id=conv, conversation_started=started, **changes)

    bounded = [ev(0, "c1"), ev(1, "c1"), ev(2, "c2"), ev(3, "c1"), ev(4, "c2", True),
               ev(5, "c3", category="video"), ev(6, "c3"), ev(7, "c4"), ev(8, "c1"),
               ev(9, "c4", False), ev(10, "c4")]  # fmt: skip
    ids = [ev(20, "x", account_id="a/b", bot_id="c"), ev(21, "x", account_id="a", bot_id="b/c"),
           ev(22, "x", account_id="a", bot_id="b", ), ev(23, "b/x", account_id="a"),
           ev(24, "x", account_id="a/b", bot_id="c"), ev(25, "x", bot_id="bot-2"),
           ev(26, "x")]  # fmt: skip
    seqs = [
        ("2 conversations tracked: the oldest is forgotten; a refused event is not seen; "
         "an explicit value is sent as given", 2, bounded),
        ("0: derivation off, left out is false", 0, [ev(30, "c1"), ev(31, "c1"), ev(32, "c2")]),
        ("the default: per (account, bot, conversation), ids with '/' never collide",
         DEFAULT_CONVERSATIONS_TRACKED, ids),
    ]  # fmt: skip
    return [
        {"name": name, "conversations_tracked": n, "events": events,
         "started": derived_started(n, events)}
        for name, n, events in seqs
    ]  # fmt: skip
