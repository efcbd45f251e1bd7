"""What the outbox puts on the wire: notifications and control states byte for byte as the
schemas' codecs write them, however often a bot's ids and an account's texts repeat."""

from __future__ import annotations

from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from capstream.core import Effects
from capstream.core.models import EnforcementState, Notification
from capstream.processors.outbox import Outbox, encode_notification, notification_to_avro
from capstream.streams.codecs import codec
from capstream.streams.control_wire import control_key, state_to_avro
from capstream.streams.topics import Topics

longs = st.integers(-(1 << 63), (1 << 63) - 1)
texts = st.text(max_size=60)
notifications = st.builds(
    Notification,
    notification_id=texts,
    account_id=texts,
    kind=st.sampled_from(["policy_alert", "cap_reached", "cap_warning", "throttle_engaged"]),
    policy_id=st.none() | texts,
    recipients=st.lists(texts, max_size=4).map(tuple),
    subject=texts,
    body=st.text(max_size=400),
    created_at_ms=longs,
    window_start_ms=st.none() | longs,
    bot_id=st.none() | texts,
    previous_ids=st.lists(texts, max_size=3).map(tuple),
    attribute=st.none() | st.sampled_from(["end_user", "api_key", "team", "model"]),
    attribute_value=st.none() | texts,
)


@hsettings(max_examples=300, deadline=None)
@given(notifications)
def test_notifications_are_encoded_byte_for_byte_as_the_codec_does(note: Notification) -> None:
    raw = encode_notification(note)
    want = notification_to_avro(note)
    assert raw == codec("Notification").encode(want)
    assert codec("Notification").decode(raw) == {**want, "channel_id": None}


def state(bot: str, version: int, *, throttled: int | None, text: str) -> EnforcementState:
    return EnforcementState(
        "acct-1", bot, version, 1_790_000_000_000 + version, None, None, "claude-sonnet",
        None, 60, throttled, "budget_at_risk" if throttled else None, {}, "pro", text,
        "monthly " + text, "",
    )  # fmt: skip


def test_a_bots_states_in_the_outbox_are_keyed_by_bot_and_decode_to_each_state() -> None:
    """The parts of a state its bot's earlier states share are kept between encodes: each
    record must still be exactly its own state (a changed setting included)."""
    outbox = Outbox(Topics("t"))
    states = [
        state("bot-1", 1, throttled=None, text="back tomorrow"),
        state("bot-2", 1, throttled=5, text="back tomorrow"),
        state("bot-1", 2, throttled=7, text="back tomorrow"),
        state("bot-1", 3, throttled=7, text="de retour demain"),  # the tenant changed it
    ]
    for s in states:
        outbox.add(0, Effects(enforcement=(s,)), None)
    assert [o.key for o in outbox.queue] == [control_key(s.account_id, s.bot_id) for s in states]
    decoded = [codec("EnforcementState").decode(o.value or b"") for o in outbox.queue]
    assert decoded == [state_to_avro(s) for s in states]
    assert decoded[3]["fallback_text_daily"] == "de retour demain"


def test_a_bot_that_follows_its_account_again_gets_its_last_state_then_a_tombstone() -> None:
    """Readers drop the bot's state at the tombstone and answer it from ``*``; the state
    before it (its own throttle's end) is what the sink's history keeps."""
    outbox = Outbox(Topics("t"))
    own, back = (
        state("bot-1", 4, throttled=7, text="x"),
        state("bot-1", 5, throttled=None, text="x"),
    )
    back.follows_account = True
    outbox.add(0, Effects(enforcement=(own, back)), 42)
    outbox.add_states(1, [back])  # after a load: said again
    key = control_key("acct-1", "bot-1")
    got = [(o.key, o.value is None, o.origin_ms, o.partition) for o in outbox.queue]
    assert got == [(key, False, 42, 0), (key, False, 42, 0), (key, True, 42, 0),
                   (key, False, None, 1), (key, True, None, 1)]  # fmt: skip
    assert codec("EnforcementState").decode(outbox.queue[1].value or b"") == state_to_avro(back)
