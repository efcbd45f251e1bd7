"""Cap hits are encoded byte for byte as the CapHit codec does (the processors decode them)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from capstream.core.models import CapHit, CapPeriod, Category
from capstream.streams.caphit_wire import encode_cap_hit
from capstream.streams.codecs import DecodeError, codec

text = st.text(max_size=60)
hits = st.builds(
    CapHit,
    account_id=text,
    bot_id=text,
    conversation_id=text,
    category=st.sampled_from([*Category, "text", "documents"]),
    period=st.sampled_from([*CapPeriod, "daily", "monthly"]),
    period_key=text,
    occurred_at_ms=st.integers(0, (1 << 63) - 1),
    hit_id=text,
)


def as_record(hit: CapHit) -> dict[str, object]:
    return {
        "hit_id": hit.hit_id,
        "account_id": hit.account_id,
        "bot_id": hit.bot_id,
        "conversation_id": hit.conversation_id,
        "category": str(hit.category),
        "period": str(hit.period),
        "period_key": hit.period_key,
        "occurred_at_ms": hit.occurred_at_ms,
    }


@settings(max_examples=200, deadline=None)
@given(hits)
def test_cap_hits_are_byte_identical_to_the_codec(hit: CapHit) -> None:
    raw = encode_cap_hit(hit)
    assert raw == codec("CapHit").encode(as_record(hit))
    assert codec("CapHit").decode(raw) == as_record(hit)


def test_a_hit_the_schema_cannot_hold_is_refused_by_the_codec_with_its_reason() -> None:
    hit = CapHit("a", "b", "c", "video", "daily", "2026-09-21", 0, "h")
    with pytest.raises(DecodeError, match="video"):
        encode_cap_hit(hit)
