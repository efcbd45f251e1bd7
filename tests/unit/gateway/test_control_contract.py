"""What the processors publish on the control topic is exactly what gateways read back."""

from __future__ import annotations

from test_gateway_gate import NOW, state

from capstream.core import CapStatus
from capstream.streams.control_wire import decode_state, encode_state, record_from_state


def test_a_published_state_reads_back_whole_including_the_premium_model() -> None:
    published = state(
        model="claude-haiku",
        downgraded_until_ms=NOW + 3_600_000,
        premium_model="claude-opus-4",
        caps={"vision": CapStatus("monthly", "2026-11", NOW + 86_400_000)},
        blocked_until_ms=NOW + 60_000,
        block_policy_id="p1",
    )
    read = decode_state(encode_state(published))
    assert read == published
    assert read.premium_model == "claude-opus-4"  # what the bot resumes after the downgrade
    assert record_from_state(published).to_bytes() == encode_state(published)
