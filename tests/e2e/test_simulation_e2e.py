"""Browser test of "Try on past traffic" (issue 15) on a running ``capstream demo``: a draft
policy and a draft cap are simulated on the tenant's past events from the policy and cap
forms, before saving; the timeline, the side-by-side table and bad input are checked.
Screenshots go to tests/e2e/screenshots/simulation/. Skips cleanly without Chromium."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from test_dashboard_e2e import Shots, login

SHOTS = Path(__file__).parent / "screenshots"
pytestmark = pytest.mark.timeout(420)


def test_a_tenant_tries_a_policy_and_a_cap_on_past_traffic(browser: Any, demo: Any) -> None:
    from playwright.sync_api import expect

    errors: list[str] = []
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("pageerror", lambda e: errors.append(str(e)))
    shot = Shots(page, SHOTS / "simulation")
    login(page, demo, "initech")  # no other browser test changes its policies or caps
    # some traffic first: the demo's simulator writes usage, the sink stores it
    expect(page.locator('[data-testid="chart"] svg polyline').first).to_be_attached(timeout=60_000)

    # 1. A draft policy that the demo's traffic crosses: try it before saving.
    page.click("a[data-tab=policies]")
    page.click("#policy-new")
    page.fill("#p-name", "Tight tokens")
    page.select_option("#p-metric", "tokens")
    page.fill("#p-threshold", "")
    page.fill("#p-window", "1")
    page.select_option("#p-window-unit", "60")
    page.select_option("#p-scope", "account_each_bot")
    page.check("#p-block")
    page.fill("#p-block-duration", "5")
    page.select_option("#p-block-unit", "60")
    # bad input: no threshold -> the API's 422 lands next to the field, nothing runs
    page.get_by_test_id("simulate").first.click()
    expect(page.locator('#policy-form [data-error="threshold"]')).not_to_be_empty()
    expect(page.locator("#policy-form").get_by_test_id("simulation")).to_be_hidden()
    shot("policy-draft-refused")
    page.fill("#p-threshold", "50")
    page.get_by_test_id("simulate-range").first.select_option("7")
    page.get_by_test_id("simulate").first.click()
    panel = page.locator("#policy-form").get_by_test_id("simulation")
    expect(panel.get_by_test_id("simulation-table")).to_be_visible(timeout=60_000)
    expect(panel.get_by_test_id("simulation-timeline").locator("polyline")).to_be_attached()
    expect(
        panel.get_by_test_id("simulation-timeline").locator("rect.sim-block").first
    ).to_be_attached()
    expect(panel.get_by_test_id("simulation-events")).to_contain_text("pause")
    expect(panel.get_by_test_id("simulation-table")).to_contain_text("blocks")
    shot("policy-draft-timeline")
    # nothing was saved
    expect(page.locator('[data-testid="policy-row"]', has_text="Tight tokens")).to_have_count(0)

    # 2. A draft text cap from the cap behaviour form.
    page.click("a[data-tab=settings]")
    expect(page.locator("#s-timezone")).to_have_value("America/New_York")  # loaded
    page.fill("#cap-text-daily", "0.001")
    page.locator("#settings-form").get_by_test_id("simulate").click()
    panel = page.locator("#settings-form").get_by_test_id("simulation")
    expect(panel.get_by_test_id("simulation-table")).to_contain_text(
        "fallback texts", timeout=60_000
    )
    expect(panel.get_by_test_id("simulation-events")).to_contain_text("daily text cap reached")
    shot("cap-draft-timeline")

    # 3. A forecast alert: a daily text cap at three times today's text credits (not reached
    # in the range) with a notice 24 hours ahead. The draft's timezone is one where it is
    # about 07:00 now, so 17 hours are left in the day: the last hour's pace (all of the
    # demo's traffic) reaches the cap before midnight, and the simulation shows when the
    # forecast would have been sent (▲ on the timeline). In New York late in the evening
    # the pace would not get there before midnight, and rightly no forecast is sent.
    used = _text_today(page, demo)
    assert used > 0
    page.fill("#s-timezone", _zone_at_seven())
    page.fill("#cap-text-daily", str(used * 3 / 1e6))
    page.fill("#cap-text-daily-lead", "24")
    page.locator("#settings-form").get_by_test_id("simulate").click()
    expect(panel.get_by_test_id("simulation-events")).to_contain_text(
        "forecast: daily text cap in reach", timeout=60_000
    )
    expect(panel.get_by_test_id("simulation-table")).to_contain_text("cap forecasts")
    expect(panel.get_by_test_id("simulation-forecast").first).to_be_attached()
    shot("cap-forecast-timeline")
    # a lead without its cap is refused next to the cap's fields, before anything runs
    page.fill("#cap-text-daily", "")
    page.locator("#settings-form").get_by_test_id("simulate").click()
    expect(page.locator('#settings-form [data-error="caps.text"]')).to_contain_text(
        "forecast lead needs a daily cap"
    )
    shot("cap-forecast-refused")
    page.fill("#cap-text-daily-lead", "")
    # a malformed cap is refused next to its field
    page.fill("#s-timezone", "Mars/Base")
    page.locator("#settings-form").get_by_test_id("simulate").click()
    expect(page.locator('#settings-form [data-error="timezone"]')).to_contain_text("Mars/Base")
    shot("cap-draft-refused")
    assert errors == []


def _zone_at_seven() -> str:
    """A fixed-offset IANA zone where the local hour is 7 now (``Etc/GMT-N`` is UTC+N)."""
    offset = 7 - datetime.now(UTC).hour  # -16..7
    if offset < -12:
        offset += 24  # 8..11: UTC+8..+11, the local hour is still 7
    return f"Etc/GMT{-offset:+d}" if offset else "Etc/GMT"


def _text_today(page: Any, demo: Any) -> int:
    """Today's text credits of the tenant (micro), from the dashboard's live view."""
    live = page.evaluate(
        """async (key) => (await fetch("/v1/accounts/initech/live",
             { headers: { Authorization: `Bearer ${key}` } })).json()""",
        demo.key("initech"),
    )
    assert "projections" in live, live
    return sum(
        p["used_micro"]
        for p in live["projections"]
        if p["category"] == "text" and p["period"] == "daily"
    )
