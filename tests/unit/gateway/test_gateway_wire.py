"""Events are validated at record() time and encoded exactly as the UsageBatch codec does."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from capstream.core.limits import (
    MAX_CREDITS_MICRO,
    MAX_MESSAGES,
    MAX_TOKENS,
    MIN_OCCURRED_AT_MS,
)
from capstream.gateway import UsageEventError
from capstream.gateway.wire import encode_batch_texts, encode_event, event_text
from capstream.streams.codecs import codec
from capstream.streams.records import UsageBatchRecord
from capstream.streams.usage_wire import CATEGORIES, encode_batch

FIELDS = (
    "event_id",
    "account_id",
    "bot_id",
    "conversation_id",
    "category",
    "model",
    "tokens_in",
    "tokens_out",
    "messages",
    "conversation_started",
    "credits_micro",
    "occurred_at_ms",
    "attributes",
)


def event(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": "e1",
        "account_id": "acct-1",
        "bot_id": "bot-1",
        "conversation_id": "conv-1",
        "category": "text",
        "model": "claude-haiku",
        "tokens_in": 120,
        "tokens_out": 300,
        "messages": 1,
        "conversation_started": False,
        "credits_micro": 1500,
        "occurred_at_ms": 1_790_000_000_000,
        "attributes": {},
    }
    base.update(changes)
    return base


def encode(ev: dict[str, Any]) -> bytes:
    return encode_event(*(ev[f] for f in FIELDS))


ids = st.text(min_size=1, max_size=200)
events = st.builds(
    event,
    event_id=ids,
    account_id=ids,
    bot_id=ids,
    conversation_id=ids,
    category=st.sampled_from(CATEGORIES),
    model=st.text(max_size=200),
    tokens_in=st.integers(0, MAX_TOKENS),
    tokens_out=st.integers(0, 20_000),
    messages=st.integers(0, MAX_MESSAGES),
    conversation_started=st.booleans(),
    credits_micro=st.integers(0, MAX_CREDITS_MICRO),
    occurred_at_ms=st.integers(MIN_OCCURRED_AT_MS, 1_790_000_000_000),
    attributes=st.dictionaries(st.text(max_size=20), st.text(max_size=20), max_size=3),
)

# The fast path's inputs: ASCII ids, a few accounts and bots seen again, small counts.
ascii_ids = st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=200)
small = st.integers(0, 9_000)
usual_events = st.builds(
    event,
    event_id=ascii_ids,
    account_id=st.sampled_from(["acct-1", "acct-2", "é-acct"]),
    bot_id=st.sampled_from(["bot-1", "bot-2"]),
    conversation_id=ascii_ids,
    category=st.sampled_from(CATEGORIES),
    model=st.sampled_from(["claude-haiku", ""]),
    tokens_in=small,
    tokens_out=small,
    messages=small,
    conversation_started=st.booleans(),
    credits_micro=small,
    occurred_at_ms=st.sampled_from([1_790_000_000_000, 1_790_000_000_001, MIN_OCCURRED_AT_MS]),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(events | usual_events, min_size=1, max_size=20))
def test_batches_are_byte_identical_to_the_codec(evs: list[dict[str, Any]]) -> None:
    ours = encode_batch("b-1", "svc", 1_790_000_000_123, [encode(e) for e in evs])
    reference = codec("UsageBatch").encode(
        {"batch_id": "b-1", "producer": "svc", "sent_at_ms": 1_790_000_000_123, "events": evs}
    )
    assert ours == reference
    # What the recorder queues and its sender joins: the same bytes.
    texts = [event_text(*(e[f] for f in FIELDS)) for e in evs]
    assert encode_batch_texts("b-1", "svc", 1_790_000_000_123, texts) == reference
    decoded = UsageBatchRecord.from_bytes(ours)
    assert [e.model_dump() for e in decoded.events] == evs


def test_an_empty_batch_decodes() -> None:
    assert UsageBatchRecord.from_bytes(encode_batch("b", "", 0, [])).events == []


def test_the_time_defaults_to_now() -> None:
    import time

    before = time.time_ns() // 1_000_000
    raw = encode_batch("b", "", 0, [encode(event(occurred_at_ms=None))])
    at = UsageBatchRecord.from_bytes(raw).events[0].occurred_at_ms
    assert before <= at <= time.time_ns() // 1_000_000


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"category": "video"}, "category", "text, vision, audio, documents"),
        ({"category": ["text"]}, "category", "text, vision, audio, documents"),
        ({"tokens_in": -5}, "tokens_in", "negative"),
        ({"tokens_out": -1}, "tokens_out", "negative"),
        ({"credits_micro": -100_000}, "credits_micro", "negative"),
        ({"messages": 1 << 31}, "messages", "limit"),
        ({"messages": MAX_MESSAGES + 1}, "messages", "limit"),
        ({"tokens_in": MAX_TOKENS + 1}, "tokens_in", "limit"),
        ({"tokens_out": (1 << 63) - 1}, "tokens_out", "limit"),
        ({"credits_micro": MAX_CREDITS_MICRO + 1}, "credits_micro", "limit"),
        ({"tokens_in": 1 << 70}, "tokens_in", "limit"),
        ({"model": "m" * 201}, "model", "201 characters"),
        ({"occurred_at_ms": 1_000}, "occurred_at_ms", "before 2000"),
        ({"occurred_at_ms": 4_102_444_800_000}, "occurred_at_ms", "later than"),
        ({"attributes": {f"k{i}": "v" for i in range(33)}}, "attributes", "33 entries"),
        ({"attributes": {"k": "v" * 257}}, "attributes", "257 characters"),
        ({"attributes": {"k" * 65: "v"}}, "attributes", "65 characters"),
        ({"tokens_in": 2.5}, "tokens_in", "whole number"),
        ({"tokens_in": "12"}, "tokens_in", "whole number"),
        ({"event_id": None}, "event_id", "required"),
        ({"event_id": ""}, "event_id", "empty"),
        ({"account_id": None}, "account_id", "required"),
        ({"account_id": ""}, "account_id", "empty"),
        ({"bot_id": 42}, "bot_id", "string"),
        ({"conversation_id": "c" * 201}, "conversation_id", "201 characters"),
        ({"model": None}, "model", "string"),
        ({"conversation_started": "yes"}, "conversation_started", "True or False"),
        ({"occurred_at_ms": -1}, "occurred_at_ms", "before 2000"),
        ({"occurred_at_ms": 1.7e12}, "occurred_at_ms", "epoch milliseconds"),
        ({"attributes": {"k": 1}}, "attributes", "strings"),
        ({"attributes": ["k"]}, "attributes", "dict"),
        ({"event_id": "\ud800"}, "event_id", "not valid text"),
    ],
)
def test_bad_events_name_the_field(changes: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(UsageEventError, match=words) as caught:
        encode(event(**changes))
    assert caught.value.field == field
    assert field in str(caught.value)


def test_ids_seen_before_are_still_checked_per_field() -> None:
    encode(event(account_id="acct-9", model=""))  # "" is a valid model...
    with pytest.raises(UsageEventError) as caught:
        encode(event(account_id=""))  # ...but never a valid id, cached or not
    assert caught.value.field == "account_id"


@pytest.mark.parametrize("tokens", [1.0, 10_000.0, True])
def test_whole_floats_and_bools_count_like_the_wire_model_does(tokens: Any) -> None:
    raw = encode_batch("b", "", 0, [encode(event(tokens_in=tokens))])
    assert UsageBatchRecord.from_bytes(raw).events[0].tokens_in == int(tokens)


@pytest.mark.parametrize("shift", [6, 7, 13, 14, 20, 21, 27, 28, 34, 35, 41, 42, 48])
def test_counts_around_each_varint_length_match_the_codec(shift: int) -> None:
    for n in (1 << shift) - 1, 1 << shift, (1 << shift) + 1:
        t = min(n, MAX_TOKENS)
        evs = [event(tokens_in=t, tokens_out=t // 3, credits_micro=n, messages=n & 0xFFFF)]
        texts = [event_text(*(e[f] for f in FIELDS)) for e in evs]
        assert encode_batch_texts("b", "", 0, texts) == codec("UsageBatch").encode(
            {"batch_id": "b", "producer": "", "sent_at_ms": 0, "events": evs}
        )
