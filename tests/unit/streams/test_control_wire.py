"""Control records become core states; bad records are refused with a reason."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from capstream.core.models import CapStatus, EnforcementState
from capstream.errors import DecodeError
from capstream.streams.codecs import codec
from capstream.streams.control_wire import (
    control_key,
    decode_state,
    encode_state,
    record_from_state,
    state_from_record,
    state_to_avro,
)
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


caps = st.dictionaries(
    st.sampled_from(["text", "vision", "audio", "documents"]),
    st.builds(
        CapStatus,
        st.sampled_from(["daily", "monthly"]),
        st.text(max_size=12),
        st.integers(0, (1 << 63) - 1),
    ),
)
longs = st.integers(-(1 << 63), (1 << 63) - 1)
maybe = st.none() | longs
states = st.builds(
    EnforcementState,
    account_id=st.text(max_size=40),
    bot_id=st.text(max_size=40),
    version=longs,
    updated_at_ms=longs,
    blocked_until_ms=maybe,
    block_policy_id=st.none() | st.text(max_size=20),
    model=st.text(max_size=20),
    downgraded_until_ms=maybe,
    batching_interval_s=st.integers(-(1 << 31), (1 << 31) - 1),
    throttled_until_ms=maybe,
    throttle_reason=st.none() | st.text(max_size=20),
    caps=caps,
    plan=st.text(max_size=12),
    fallback_text_daily=st.text(max_size=300),
    fallback_text_monthly=st.text(max_size=300),
    premium_model=st.text(max_size=20),
)


@hsettings(max_examples=300, deadline=None)
@given(states)
def test_states_are_encoded_byte_for_byte_as_the_codec_does(state: EnforcementState) -> None:
    raw = encode_state(state)
    assert raw == codec("EnforcementState").encode(state_to_avro(state))
    assert codec("EnforcementState").decode(raw) == state_to_avro(state)


def test_a_state_the_schema_cannot_hold_is_refused_with_the_codecs_reason() -> None:
    weekly = {"text": CapStatus("weekly", "2026-W47", 0)}
    bad = EnforcementState("a", "b", 1, 0, None, None, "m", None, 3, None, None, weekly,
                           "free", "", "")  # fmt: skip
    with pytest.raises(DecodeError, match="weekly"):
        encode_state(bad)
