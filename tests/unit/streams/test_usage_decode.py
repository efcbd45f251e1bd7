"""The hand-written UsageBatch decoder agrees with the Avro codec, and refuses what it must."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from capstream.core.limits import (
    MAX_CREDITS_MICRO,
    MAX_MESSAGES,
    MAX_TOKENS,
    MIN_OCCURRED_AT_MS,
)
from capstream.errors import DecodeError
from capstream.streams.avro_bytes import long_bytes, string_bytes
from capstream.streams.caphit_wire import decode_cap_hit
from capstream.streams.codecs import codec
from capstream.streams.usage_decode import UsageDecoder
from capstream.streams.usage_wire import encode_batch

NOW = 1_795_000_000_000
LIMIT = NOW + 300_000

ids = st.text(min_size=1, max_size=40)
amounts = st.integers(0, MAX_TOKENS)


@st.composite
def events(draw: st.DrawFn) -> dict[str, object]:
    return {
        "event_id": draw(ids),
        "account_id": draw(st.sampled_from(["acme", "globex", "ünïcode-Ω", "a" * 70])),
        "bot_id": draw(ids),
        "conversation_id": draw(ids),
        "category": draw(st.sampled_from(["text", "vision", "audio", "documents"])),
        "model": draw(st.text(max_size=30)),
        "tokens_in": draw(amounts),
        "tokens_out": draw(st.integers(0, 5_000)),
        "messages": draw(st.integers(0, MAX_MESSAGES)),
        "conversation_started": draw(st.booleans()),
        "credits_micro": draw(st.integers(0, MAX_CREDITS_MICRO)),
        "occurred_at_ms": draw(st.integers(MIN_OCCURRED_AT_MS, LIMIT)),
        "attributes": draw(st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3)),
    }


def batch(evs: list[dict[str, object]]) -> bytes:
    return codec("UsageBatch").encode(
        {"batch_id": "b-1", "producer": "p", "sent_at_ms": NOW, "events": evs}
    )


@hsettings(max_examples=150, deadline=None)
@given(st.lists(events(), max_size=30))
def test_the_fast_decoder_reads_what_the_codec_reads(evs: list[dict[str, object]]) -> None:
    decoded = UsageDecoder(1 << 24).decode(batch(evs), LIMIT)
    assert decoded.bad == [] and decoded.indexes is None
    assert [{k: getattr(e, k) for k in evs[0]} for e in decoded.events] == codec(
        "UsageBatch"
    ).decode(batch(evs))["events"]


@hsettings(max_examples=200, deadline=None)
@given(st.lists(events(), min_size=1, max_size=5), st.data())
def test_garbled_records_raise_decode_error_and_nothing_else(
    evs: list[dict[str, object]], data: st.DataObject
) -> None:
    raw = bytearray(batch(evs))
    cut = data.draw(st.integers(11, len(raw) - 1))
    if data.draw(st.booleans()):
        raw = raw[:cut]
    else:
        raw[cut] ^= data.draw(st.integers(1, 255))
    reason = None
    try:
        UsageDecoder(1 << 24).decode(bytes(raw), LIMIT)  # a flip may still be a valid record
    except DecodeError as exc:
        reason = exc.reason
    assert reason in {None, "corrupt", "not_avro", "unknown_schema"}


def body(eid: str, *, tokens_in: int = 1, t: int = NOW, account: str = "acme") -> bytes:
    return b"".join(
        [*map(string_bytes, (eid, account, "bot", "conv")), b"\x00", string_bytes("m"),
         long_bytes(tokens_in), long_bytes(0), long_bytes(1), b"\x00", long_bytes(0),
         long_bytes(t), b"\x00"]
    )  # fmt: skip


def test_bad_events_are_refused_one_by_one_with_their_own_bytes() -> None:
    record = encode_batch(
        "b-9", "svc", NOW,
        [body("ok-1"), body("neg", tokens_in=-3), body("late", t=LIMIT + 1),
         body("", account="acme"), body("ok-2")],
    )  # fmt: skip
    decoded = UsageDecoder(1 << 20).decode(record, LIMIT)
    assert [e.event_id for e in decoded.events] == ["ok-1", "ok-2"]
    assert decoded.indexes == [0, 4]  # places in the record: the watermark positions
    assert [(b.position, b.reason) for b in decoded.bad] == [
        (1, "negative_amount"), (2, "future_timestamp"), (3, "missing_id")
    ]  # fmt: skip
    alone = codec("UsageBatch").decode(decoded.bad[0].raw)
    assert (alone["batch_id"], [e["event_id"] for e in alone["events"]]) == ("b-9", ["neg"])


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "empty"),
        (b"", "empty"),
        (b'{"json": true}', "not_avro"),
        (b"\xc3\x01" + b"\x00" * 8 + b"\x02", "unknown_schema"),
        (b"\xc3\x01" + b"\x01" * 20_000, "too_large"),
    ],
)
def test_records_that_are_not_usage_batches_say_why(value: bytes | None, reason: str) -> None:
    with pytest.raises(DecodeError) as exc:
        UsageDecoder(10_000).decode(value, LIMIT)
    assert exc.value.reason == reason


def test_cap_hits_decode_and_refuse_missing_ids() -> None:
    fields = {"hit_id": "h", "account_id": "acme", "bot_id": "b", "conversation_id": "c",
              "category": "vision", "period": "monthly", "period_key": "2026-11",
              "occurred_at_ms": NOW}  # fmt: skip
    hit = decode_cap_hit(codec("CapHit").encode(fields), 1 << 20, LIMIT)
    assert (hit.category, hit.period, hit.hit_id) == ("vision", "monthly", "h")
    with pytest.raises(DecodeError) as exc:
        decode_cap_hit(codec("CapHit").encode({**fields, "bot_id": ""}), 1 << 20, LIMIT)
    assert exc.value.reason == "missing_id"


# -- strict decoding and the shared limits (issues 20 and 21) ---------------------------------


def raw_body(
    eid: str = "e",
    *,
    category: bytes = b"\x00",
    flag: bytes = b"\x00",
    tokens_in: bytes | None = None,
    messages: int = 1,
    t: int = NOW,
    account: str = "acme",
    model: str = "m",
) -> bytes:
    """One event's Avro body, with any field given as raw bytes where that matters."""
    return b"".join(
        [*map(string_bytes, (eid, account, "bot", "conv")), category, string_bytes(model),
         tokens_in if tokens_in is not None else long_bytes(1), long_bytes(0),
         long_bytes(messages), flag, long_bytes(0), long_bytes(t), b"\x00"]
    )  # fmt: skip


SEVENTY_BITS = b"\xff" * 9 + b"\x7f"  # a varint of 70 bits: no int64


@pytest.mark.parametrize(
    ("bad", "reason", "words"),
    [
        (raw_body("neg-enum", category=long_bytes(-1)), "invalid", "enum index -1"),
        (raw_body("enum-4", category=long_bytes(4)), "invalid", "enum index 4"),
        (raw_body("bool-2", flag=b"\x02"), "invalid", "boolean byte 2"),
        (raw_body("y1970", t=1_000), "invalid", "before 2000"),
        (raw_body("msgs", messages=1 << 31), "amount_too_large", "messages"),
        (raw_body("huge", tokens_in=long_bytes((1 << 63) - 1)), "amount_too_large", "tokens_in"),
        (raw_body("wide", tokens_in=SEVENTY_BITS), "invalid", "longer than 64 bits"),
        (raw_body("model", model="m" * 1_000_000), "invalid", "model"),
        (raw_body("y2200", t=7_258_118_400_000), "future_timestamp", "later than"),
    ],
)
def test_a_malformed_or_unbounded_event_is_refused_alone_with_its_reason(
    bad: bytes, reason: str, words: str
) -> None:
    record = encode_batch("b", "p", NOW, [raw_body("ok-1"), bad, raw_body("ok-2")])
    decoded = UsageDecoder(1 << 24).decode(record, LIMIT)
    assert [e.event_id for e in decoded.events] == ["ok-1", "ok-2"]
    assert decoded.indexes == [0, 2]
    [refused] = decoded.bad
    assert (refused.position, refused.reason) == (1, reason)
    assert words in refused.error
    # the dead letter holds the event's own bytes, as a one-event batch
    assert refused.raw == encode_batch("b", "p", NOW, [bad])


def test_invalid_utf8_in_an_event_refuses_that_event_only() -> None:
    bad = raw_body("x").replace(string_bytes("conv"), long_bytes(2) + b"\xff\xfe")
    record = encode_batch("b", "p", NOW, [raw_body("ok-1"), bad])
    decoded = UsageDecoder(1 << 20).decode(record, LIMIT)
    assert [e.event_id for e in decoded.events] == ["ok-1"]
    assert [(b.position, b.reason) for b in decoded.bad] == [(1, "invalid")]
    assert "UTF-8" in decoded.bad[0].error


def test_long_strings_are_not_kept_in_the_decoders_cache() -> None:
    decoder = UsageDecoder(1 << 24)
    for i in range(20):
        decoder.decode(encode_batch("b", "p", NOW, [raw_body(f"e{i}", model=f"{i}" * 100_000)]),
                       LIMIT)  # fmt: skip
    assert sum(len(k) for k in decoder._strings) < 10_000


def test_events_of_accounts_homed_elsewhere_are_set_apart_with_their_home() -> None:
    from capstream.streams.partitioner import partition_for

    accounts = [f"acct-{i}" for i in range(12)]
    homes = {a: partition_for(a.encode(), 4) for a in accounts}
    record = encode_batch("b", "p", NOW, [raw_body(f"e-{a}", account=a) for a in accounts])
    decoded = UsageDecoder(1 << 20, partitions=4).decode(record, LIMIT, 1)
    assert {e.account_id for e in decoded.events} == {a for a in accounts if homes[a] == 1}
    assert decoded.indexes == [i for i, a in enumerate(accounts) if homes[a] == 1]
    assert {(m.account_id, m.home) for m in decoded.misplaced} == {
        (a, h) for a, h in homes.items() if h != 1
    }
    for m in decoded.misplaced:  # each goes home as a one-event batch of its own bytes
        alone = codec("UsageBatch").decode(m.raw)
        assert [e["event_id"] for e in alone["events"]] == [f"e-{m.account_id}"]
    # unchecked without a partition
    assert UsageDecoder(1 << 20, partitions=4).decode(record, LIMIT).misplaced == ()


def test_keep_events_rebuilds_a_record_without_the_refused() -> None:
    from capstream.streams.usage_wire import keep_events

    record = encode_batch("b-7", "p", NOW, [raw_body("a"), raw_body("b", t=1), raw_body("c")])
    kept = keep_events(record, [0, 2])
    again = codec("UsageBatch").decode(kept)
    assert (again["batch_id"], [e["event_id"] for e in again["events"]]) == ("b-7", ["a", "c"])


@hsettings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {
            "event_id": st.text(max_size=210),
            "account_id": st.text(max_size=205),
            "bot_id": st.sampled_from(["b", "", "x" * 201]),
            "conversation_id": st.sampled_from(["c", ""]),
            "category": st.sampled_from(["text", "vision", "audio", "documents"]),
            "model": st.sampled_from(["m", "", "m" * 201]),
            "tokens_in": st.integers(-2, MAX_TOKENS + 2),
            "tokens_out": st.integers(0, (1 << 63) - 1),
            "messages": st.integers(-1, (1 << 31) - 1),
            "conversation_started": st.booleans(),
            "credits_micro": st.integers(0, MAX_CREDITS_MICRO + 2),
            "occurred_at_ms": st.integers(MIN_OCCURRED_AT_MS - 2, LIMIT + 2),
            "attributes": st.dictionaries(st.text(max_size=66), st.text(max_size=3), max_size=2),
        }
    )
)
def test_the_sdk_and_the_decoder_refuse_exactly_the_same_events(ev: dict[str, object]) -> None:
    """One validation (core.limits.event_problem): what the SDK refuses, the worker and the
    sink refuse; what it accepts, they count and store."""
    from capstream.gateway.errors import UsageEventError
    from capstream.gateway.wire import encode_event

    fields = [ev[k] for k in (
        "event_id", "account_id", "bot_id", "conversation_id", "category", "model", "tokens_in",
        "tokens_out", "messages", "conversation_started", "credits_micro", "occurred_at_ms",
        "attributes",
    )]  # fmt: skip
    try:
        encode_event(*fields)
        sdk_ok = True
    except UsageEventError:
        sdk_ok = False
    # the same event as another producer would write it (no SDK checks): fastavro's bytes
    try:
        record = batch([ev])
    except DecodeError:
        return  # not even encodable as Avro (e.g. a negative messages int is fine; others not)
    decoded = UsageDecoder(1 << 24).decode(record, LIMIT)
    worker_ok = len(decoded.events) == 1
    # the SDK's clock bound is now + skew; LIMIT is a fixed instant in the past, so the
    # decoder may refuse a future time the SDK allows today, never the other way round
    if ev["occurred_at_ms"] <= LIMIT:  # type: ignore[operator]
        assert sdk_ok == worker_ok, decoded.bad
