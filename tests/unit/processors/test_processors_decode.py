"""The hand-written UsageBatch decoder agrees with the Avro codec, and refuses what it must."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from capstream.errors import DecodeError
from capstream.gateway.wire import encode_batch, long_bytes, string_bytes
from capstream.processors.decode import UsageDecoder, decode_cap_hit
from capstream.streams.codecs import codec

NOW = 1_795_000_000_000
LIMIT = NOW + 300_000

ids = st.text(min_size=1, max_size=40)
amounts = st.integers(0, 2**62)


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
        "messages": draw(st.integers(0, 2**31 - 1)),
        "conversation_started": draw(st.booleans()),
        "credits_micro": draw(amounts),
        "occurred_at_ms": draw(st.integers(0, LIMIT)),
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
