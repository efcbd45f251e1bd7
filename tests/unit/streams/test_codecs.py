"""Avro single-object codecs: exact round trips, evolution, and clear errors on bad bytes."""

from __future__ import annotations

import io
import json

import fastavro
import pytest
from hypothesis import given
from hypothesis import strategies as st

from capstream.errors import CapstreamError, DecodeError
from capstream.streams.codecs import MAGIC, Codec, codec, fingerprint_of, schema
from capstream.streams.records import (
    AlertActionRecord,
    BlockActionRecord,
    CapHitRecord,
    CapStatusRecord,
    CategoryCapsRecord,
    DeadLetterRecord,
    EnforcementStateRecord,
    FeedRowRecord,
    NotificationRecord,
    PolicyRecord,
    TenantSettingsRecord,
    UsageBatchRecord,
    UsageEventRecord,
)
from capstream.streams.value_blocks import ValueBlockRecord

ids = st.text(min_size=1, max_size=20)
counts = st.integers(min_value=0, max_value=2**40)
events = st.builds(
    UsageEventRecord,
    event_id=ids,
    account_id=ids,
    bot_id=ids,
    conversation_id=ids,
    category=st.sampled_from(["text", "vision", "audio", "documents"]),
    model=st.text(max_size=30),
    tokens_in=counts,
    tokens_out=counts,
    messages=st.integers(0, 2**31 - 1),
    conversation_started=st.booleans(),
    credits_micro=counts,
    occurred_at_ms=counts,
    attributes=st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
)


@given(st.lists(events, max_size=5), ids)
def test_usage_batch_round_trips_exactly(evs: list[UsageEventRecord], batch_id: str) -> None:
    batch = UsageBatchRecord(batch_id=batch_id, sent_at_ms=7, events=evs)
    data = batch.to_bytes()
    assert data[:2] == MAGIC
    assert UsageBatchRecord.from_bytes(data) == batch


SAMPLES = [
    EnforcementStateRecord(
        account_id="a",
        bot_id="b",
        version=3,
        updated_at_ms=5,
        blocked_until_ms=99,
        block_policy_id="p",
        model="claude-haiku",
        downgraded_until_ms=77,
        batching_interval_s=60,
        throttled_until_ms=70,
        throttle_reason="loop",
        caps={
            "vision": CapStatusRecord(period="monthly", period_key="2026-11", resumes_at_ms=1_000)
        },
        plan="pro",
        fallback_text_daily="back tomorrow",
        fallback_text_monthly="back next week",
    ),
    PolicyRecord(
        policy_id="p",
        account_id="a",
        name="hourly",
        metric="tokens",
        threshold=1000,
        window_seconds=3600,
        scope="bot",
        bot_id="b",
        alert=AlertActionRecord(recipients=["ops@example.com"]),
        block=BlockActionRecord(duration_seconds=600),
        version=2,
    ),
    TenantSettingsRecord(
        account_id="a",
        timezone="Asia/Kathmandu",
        language="ur",
        plan="enterprise",
        caps={"text": CategoryCapsRecord(daily_micro=5)},
        fallback_message="Back {{TIMEFRAME}}",
        auto_downgrade=True,
        throttle="strict",
    ),
    NotificationRecord(
        notification_id="n",
        account_id="a",
        kind="policy_alert",
        recipients=["x@example.com"],
        subject="s",
        body="b",
        created_at_ms=1,
    ),
    CapHitRecord(
        hit_id="h",
        account_id="a",
        bot_id="b",
        conversation_id="c",
        category="audio",
        period="daily",
        period_key="2026-11-22",
        occurred_at_ms=3,
    ),
    FeedRowRecord(
        account_id="a",
        bot_id="b",
        conversation_id="c",
        local_day="2026-11-22",
        category="text",
        period="daily",
        attempts=3,
        message="m",
        cta="Top up →",
    ),
    DeadLetterRecord(
        source_topic="t",
        partition=1,
        offset=2,
        reason="corrupt",
        error="e",
        raw_value=b"\x00\xff",
        at_ms=4,
    ),
    ValueBlockRecord(
        account_id="a",
        bot_id="*",
        attribute="end_user",
        value="alice/1",
        blocked_until_ms=1_790_000_600_000,
        policy_id="p",
    ),
]


@pytest.mark.parametrize("record", SAMPLES, ids=lambda r: type(r).__name__)
def test_every_wire_record_round_trips(record: object) -> None:
    cls = type(record)
    assert cls.from_bytes(record.to_bytes()) == record  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (None, "empty"),
        (b'{"json": true}', "not_avro"),
        (MAGIC + b"\x00" * 8 + b"\x02", "unknown_schema"),
    ],
)
def test_bad_bytes_raise_one_clear_error(data: bytes | None, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        UsageBatchRecord.from_bytes(data)
    assert info.value.reason == reason
    assert isinstance(info.value, CapstreamError)
    assert "UsageBatch" in str(info.value)


def test_truncated_body_is_reported_as_corrupt() -> None:
    good = UsageBatchRecord(batch_id="b", sent_at_ms=1, events=[]).to_bytes()
    with pytest.raises(DecodeError, match="corrupt UsageBatch") as info:
        UsageBatchRecord.from_bytes(good[:11])
    assert info.value.reason == "corrupt"


def test_a_policy_of_another_type_is_not_read_as_a_batch() -> None:
    with pytest.raises(DecodeError, match="unknown schema fingerprint"):
        UsageBatchRecord.from_bytes(SAMPLES[1].to_bytes())  # type: ignore[attr-defined]


def test_semantically_invalid_record_is_rejected_with_the_field_name() -> None:
    raw = codec("UsageEvent").encode(
        {
            "event_id": "e",
            "account_id": "a",
            "bot_id": "b",
            "conversation_id": "c",
            "category": "text",
            "model": "m",
            "tokens_in": -5,
            "occurred_at_ms": 1,
        }
    )
    with pytest.raises(DecodeError, match="tokens_in") as info:
        UsageEventRecord.from_bytes(raw)
    assert info.value.reason == "invalid"


def test_reader_with_newer_schema_reads_records_written_with_the_old_one() -> None:
    """Schema evolution: the old writer lacked ``attributes`` and ``conversation_started``."""
    current = json.loads(json.dumps(schema("UsageEvent")))
    old = {
        **current,
        "fields": [
            f for f in current["fields"] if f["name"] not in ("attributes", "conversation_started")
        ],
    }
    old["name"] = "io.capstream.UsageEvent"
    parsed_old = fastavro.parse_schema(
        old, named_schemas={"io.capstream.Category": schema("Category")}
    )
    buf = io.BytesIO()
    buf.write(MAGIC + fingerprint_of(parsed_old))
    fastavro.schemaless_writer(
        buf,
        parsed_old,
        {
            "event_id": "e",
            "account_id": "a",
            "bot_id": "b",
            "conversation_id": "c",
            "category": "vision",
            "model": "m",
            "tokens_in": 1,
            "tokens_out": 2,
            "messages": 1,
            "credits_micro": 5,
            "occurred_at_ms": 9,
        },
    )
    reader = Codec("UsageEvent")
    with pytest.raises(DecodeError, match="unknown schema fingerprint"):
        reader.decode(buf.getvalue())
    reader.register_writer(old)
    record = reader.decode(buf.getvalue())
    assert record["attributes"] == {}
    assert record["conversation_started"] is False
    assert record["category"] == "vision"
    assert record["credits_micro"] == 5


def test_a_dead_letter_of_a_record_near_the_broker_limit_is_cut_to_fit_and_says_so() -> None:
    import hashlib

    from capstream.streams.records import MAX_DEAD_LETTER_BYTES

    key, value = b"k" * 5_000, bytes(range(256)) * 4_000  # ~1 MB: with metadata, over 1 MiB
    fitted = DeadLetterRecord.fitted(
        source_topic="p.usage", partition=3, offset=9, reason="not_avro", error="e" * 10_000,
        raw_key=key, raw_value=value, at_ms=1,
    )  # fmt: skip
    encoded = fitted.to_bytes()
    assert len(encoded) + len(fitted.raw_key or b"") <= MAX_DEAD_LETTER_BYTES
    back = DeadLetterRecord.from_bytes(encoded)
    assert back.original_size == len(key) + len(value)
    assert back.original_sha256 == hashlib.sha256(key + value).hexdigest()
    assert value.startswith(back.raw_value or b"x") and key.startswith(back.raw_key or b"x")
    assert (back.partition, back.offset, back.reason) == (3, 9, "not_avro")
    small = DeadLetterRecord.fitted(
        source_topic="p.usage", partition=0, offset=1, reason="corrupt", error="x",
        raw_key=b"a", raw_value=b"v", at_ms=1,
    )  # fmt: skip
    assert (small.raw_value, small.original_size, small.original_sha256) == (b"v", None, None)


def test_dead_letters_written_before_the_size_fields_still_decode() -> None:
    import json

    from capstream.streams.codecs import SCHEMA_DIR, Codec

    old = Codec("DeadLetter")
    old_schema = json.loads((SCHEMA_DIR / "history" / "DeadLetter.1.avsc").read_text())
    fp = old.register_writer(old_schema)
    import io

    import fastavro

    buf = io.BytesIO()
    buf.write(b"\xc3\x01" + fp)
    fastavro.schemaless_writer(
        buf, fastavro.parse_schema(old_schema),
        {"source_topic": "t", "partition": 0, "offset": 5, "reason": "r", "error": "e",
         "raw_key": None, "raw_value": b"x", "at_ms": 7},
    )  # fmt: skip
    back = DeadLetterRecord.from_bytes(buf.getvalue())
    assert (back.offset, back.raw_value, back.original_size) == (5, b"x", None)
