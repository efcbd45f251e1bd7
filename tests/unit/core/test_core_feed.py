"""Amber feed rows, calls to action by plan, and the top-up request email."""

from __future__ import annotations

import pytest
from core_builders import ACC, T0, ms, settings

from capstream.core import (
    CapHit,
    FeedKey,
    FeedRow,
    PlanError,
    apply_cap_hit,
    feed_message,
    panel_cta,
    topup_request,
)

LDN = "Europe/London"


def hit(
    n: int, at: int, *, conv: str = "c1", category: str = "text", period: str = "daily"
) -> CapHit:
    key = "2026-11" if period == "monthly" else "2026-11-18"
    return CapHit(ACC, "bot-1", conv, category, period, key, at, f"hit-{n}")


def test_attempts_roll_up_into_one_row_per_conversation_per_day() -> None:
    rows: dict[FeedKey, FeedRow] = {}
    st = settings(plan="pro")
    for i in range(3):
        row = apply_cap_hit(rows, hit(i, T0 + i), st)
    assert len(rows) == 1
    assert row.attempts == 3
    assert row.message == "AI reply paused — daily AI replies credit exhausted (3 attempts)"
    assert row.cta == "Top up →"
    assert row.panel_cta is None  # a daily cap restores itself: no top-up on the panel
    apply_cap_hit(rows, hit(9, T0, conv="c2"), st)
    assert len(rows) == 2


def test_the_same_hit_reported_twice_counts_once() -> None:
    rows: dict[FeedKey, FeedRow] = {}
    apply_cap_hit(rows, hit(1, T0), settings())
    row = apply_cap_hit(rows, hit(1, T0), settings())
    assert row.attempts == 1
    assert row.message.endswith("(1 attempt)")


def test_a_new_local_day_starts_a_fresh_row() -> None:
    rows: dict[FeedKey, FeedRow] = {}
    st = settings(timezone=LDN)
    late = ms(LDN, 2026, 11, 18, 23, 59)
    apply_cap_hit(rows, hit(1, late, period="monthly"), st)
    apply_cap_hit(rows, hit(2, late + 60_000, period="monthly"), st)  # 00:00 next day
    days = sorted(r.local_day for r in rows.values())
    assert days == ["2026-11-18", "2026-11-19"]
    assert all(r.attempts == 1 for r in rows.values())


def test_local_day_is_the_tenants_not_utc() -> None:
    rows: dict[FeedKey, FeedRow] = {}
    tz = "America/New_York"
    row = apply_cap_hit(rows, hit(1, ms(tz, 2026, 11, 18, 22, 0)), settings(timezone=tz))
    assert row.local_day == "2026-11-18"  # 03:00 UTC on the 19th


def test_monthly_and_category_wording_and_free_plan_cta() -> None:
    rows: dict[FeedKey, FeedRow] = {}
    row = apply_cap_hit(rows, hit(1, T0, category="vision", period="monthly"), settings())
    assert row.message == "AI reply paused — monthly AI vision credit exhausted (1 attempt)"
    assert row.cta == "Upgrade to Starter →"
    assert row.panel_cta == "Upgrade to Starter →"


def test_a_monthly_hit_later_in_the_day_turns_the_row_monthly() -> None:
    rows: dict[FeedKey, FeedRow] = {}
    apply_cap_hit(rows, hit(1, T0), settings(plan="starter"))
    row = apply_cap_hit(rows, hit(2, T0 + 1, period="monthly"), settings(plan="starter"))
    assert row.period == "monthly" and row.attempts == 2
    assert row.panel_cta == "Top up →"


@pytest.mark.parametrize(
    ("plan", "period", "cta"),
    [
        ("free", "daily", "Upgrade to Starter →"),
        ("free", "monthly", "Upgrade to Starter →"),
        ("starter", "daily", None),
        ("pro", "monthly", "Top up →"),
        ("enterprise", "monthly", "Top up →"),
    ],
)
def test_dashboard_panel_cta_by_plan_and_period(plan: str, period: str, cta: str | None) -> None:
    assert panel_cta(plan, period) == cta


def test_feed_message_for_documents_and_audio() -> None:
    assert "daily AI documents credit" in feed_message("documents", "daily", 2)
    assert "monthly AI audio credit" in feed_message("audio", "monthly", 5)


def test_topup_request_emails_the_admin_with_a_stable_id() -> None:
    st = settings(plan="starter")
    a = topup_request(st, "text", "monthly", "agent@shop.example", T0, note="Black Friday")
    b = topup_request(st, "text", "monthly", "agent@shop.example", T0 + 5_000)
    assert a.kind == "topup_request"
    assert a.recipients == ("owner@example.com",)
    assert "Black Friday" in a.body and "agent@shop.example" in a.body
    assert a.notification_id == b.notification_id  # a double click sends one email


def test_topup_is_not_offered_on_the_free_plan() -> None:
    with pytest.raises(PlanError, match="upgrade to Starter"):
        topup_request(settings(plan="free"), "text", "daily", "x@y.z", T0)
