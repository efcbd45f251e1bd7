"""Driving the core with explicit time (issue 23.5): the core's EventClock decides exactly like a
partition in event-time mode, a partition takes core Policy/TenantSettings objects, and a state
says what is in force at a given instant without changing."""

from __future__ import annotations

from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from capstream.core import (
    AccountState,
    AlertAction,
    BlockAction,
    CategoryCaps,
    Effects,
    EventClock,
    Policy,
    TenantSettings,
    UsageEvent,
)
from capstream.processors.catalog import Catalog
from capstream.processors.partition import PartitionState
from capstream.streams.usage_results import Decoded

T0 = 1_795_000_000_000
MIN = 60_000
ACCOUNTS = ("acme", "zeta")


def _policies(account: str) -> list[Policy]:
    return [
        Policy(
            policy_id="burst", account_id=account, name="burst", metric="messages",
            threshold=4, window_seconds=60, scope="account_each_bot", bot_id=None,
            alert=AlertAction(()), block=BlockAction(90),
        ),
        Policy(
            policy_id="hour", account_id=account, name="hour", metric="tokens",
            threshold=3_000, window_seconds=3600, scope="account_total", bot_id=None,
            alert=AlertAction(()), block=BlockAction(600),
        ),
    ]  # fmt: skip


def _settings(account: str) -> TenantSettings:
    return TenantSettings(
        account, timezone="Asia/Karachi", plan="pro", owner_email="o@x.test",
        caps={"text": CategoryCaps(40_000, None)}, auto_downgrade=True, throttle="smart",
    )  # fmt: skip


def _summary(effects: list[Effects]) -> list[tuple[object, ...]]:
    return [
        (
            tuple(
                (
                    s.account_id,
                    s.bot_id,
                    s.version,
                    s.updated_at_ms,
                    s.blocked_until_ms,
                    s.block_policy_id,
                    s.model,
                    tuple(sorted(s.caps)),
                )
                for s in e.enforcement
            ),
            tuple(n.notification_id for n in e.notifications),
        )
        for e in effects
    ]


@st.composite
def streams(draw: st.DrawFn) -> list[UsageEvent]:
    at, out = T0, []
    for i in range(draw(st.integers(1, 60))):
        at += draw(st.sampled_from([0, 500, 5_000, 30_000, 5 * MIN, 6 * 3_600_000]))
        late = draw(st.sampled_from([0, 0, 0, 20_000]))
        out.append(
            UsageEvent(
                f"e{i}", draw(st.sampled_from(ACCOUNTS)), draw(st.sampled_from(["b1", "b2"])),
                "c", "text", "m", draw(st.integers(0, 900)), 0, 1, False,
                draw(st.integers(0, 4_000)), at - late,
            )
        )  # fmt: skip
    return out


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=streams())
def test_the_core_event_clock_decides_like_a_partition_in_event_time_mode(
    events: list[UsageEvent],
) -> None:
    catalog = Catalog.of(
        [p for a in ACCOUNTS for p in _policies(a)], [_settings(a) for a in ACCOUNTS]
    )
    got: list[Effects] = []
    part = PartitionState(0, catalog, lambda e, origin: got.append(e), event_time=True)
    for offset, event in enumerate(events):
        part.apply(offset, Decoded([event], None, []), 0, lambda *a: None)

    clock = EventClock()
    states = {a: AccountState(a) for a in ACCOUNTS}
    want: list[Effects] = []
    for offset, event in enumerate(events):
        a = event.account_id
        want += clock.evaluate(
            states[a], event, catalog.policies(a), catalog.settings(a), partition=0,
            offset=offset,
        )  # fmt: skip
    assert _summary(got) == _summary(want)
    assert clock.now_ms == part.clock_ms


def test_a_state_says_what_is_in_force_later_without_changing() -> None:
    catalog = Catalog.of(_policies("acme"), [_settings("acme")])
    clock = EventClock()
    state = AccountState("acme")
    for i in range(4):  # four messages in 3 s: burst blocks b1 for 90 s
        clock.evaluate(state, UsageEvent(f"e{i}", "acme", "b1", "c", "text", "m", 10, 0, 1,
                                         False, 0, T0 + i * 1000),
                       catalog.policies("acme"), catalog.settings("acme"))  # fmt: skip
    current = state.enforcement("b1")
    assert current is not None and current.blocked_until_ms == T0 + 3_000 + 90_000
    during = state.in_force("b1", T0 + 60_000)
    after = state.in_force("b1", T0 + 3_000 + 90_000)
    assert during is not None and after is not None
    assert (during.blocked_until_ms, during.block_policy_id) == (T0 + 93_000, "burst")
    assert (after.blocked_until_ms, after.block_policy_id) == (None, None)
    assert after.version == current.version  # nothing was emitted or changed
    assert state.enforcement("b1") is current
    assert state.in_force("nobody", T0) is not None  # the account-wide state
