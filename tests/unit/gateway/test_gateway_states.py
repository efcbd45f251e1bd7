"""Control records become core states; bad records are refused with a reason."""

from __future__ import annotations

import pytest

from capstream.errors import DecodeError
from capstream.gateway import control_key, decode_state, record_from_state, state_from_record
from capstream.streams.codecs import codec
from capstream.streams.records import CapStatusRecord, EnforcementStateRecord


def record(**changes: object) -> EnforcementStateRecord:
    fields: dict[str, object] = {
        "account_id": "acct-1",
        "bot_id": "bot-1",
        "version": 7,
        "updated_at_ms": 1,
        "model": "claude-haiku",
        "downgraded_until_ms": 99,
        "batching_interval_s": 60,
        "throttled_until_ms": 50,
        "throttle_reason": "loop",
        "caps": {
            "vision": CapStatusRecord(period="monthly", period_key="2026-09", resumes_at_ms=5)
        },
        "plan": "pro",
        "fallback_text_daily": "back tomorrow",
    }
    fields.update(changes)
    return EnforcementStateRecord.model_validate(fields)


def test_a_state_survives_the_round_trip_through_the_wire() -> None:
    rec = record()
    state = decode_state(rec.to_bytes())
    assert state.caps["vision"].period == "monthly"
    assert (state.version, state.batching_interval_s, state.throttle_reason) == (7, 60, "loop")
    assert record_from_state(state) == rec
    assert state_from_record(rec) == state


def test_the_key_names_account_and_bot() -> None:
    assert control_key("acct-1", "bot-1") == b"acct-1/bot-1"


def test_records_avro_cannot_check_are_refused() -> None:
    raw = record().model_dump()
    for bad in ({"bot_id": ""}, {"batching_interval_s": 0}):
        value = codec("EnforcementState").encode({**raw, **bad})
        with pytest.raises(DecodeError) as caught:
            decode_state(value)
        assert caught.value.reason == "invalid"
    caps = {"smell": {"period": "daily", "period_key": "d", "resumes_at_ms": 1}}
    with pytest.raises(DecodeError, match="smell"):
        decode_state(codec("EnforcementState").encode({**raw, "caps": caps}))


def test_garbage_is_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        decode_state(b"\x00\x01garbage")
