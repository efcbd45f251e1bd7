"""Browser test of calendar policies (issue 24.4) on a running ``capstream demo``: a policy
counting the calendar week is created from the form (the rolling window's inputs go away),
listed and shown on the live panel as "this week", then turned back into a rolling window.
Screenshots go to tests/e2e/screenshots/calendar-policy/. Skips cleanly without Chromium."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from test_dashboard_e2e import Shots, login

SHOTS = Path(__file__).parent / "screenshots"
pytestmark = pytest.mark.timeout(420)
NAME = "Weekly messages"


def test_a_calendar_week_policy_from_the_form_and_back_to_a_rolling_window(
    browser: Any, demo: Any
) -> None:
    from playwright.sync_api import expect

    errors: list[str] = []
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("pageerror", lambda e: errors.append(str(e)))
    shot = Shots(page, SHOTS / "calendar-policy")
    login(page, demo, "umbrella")
    page.click("a[data-tab=policies]")
    page.click("#policy-new")
    page.fill("#p-name", NAME)
    page.select_option("#p-metric", "messages")
    page.fill("#p-threshold", "100000")
    expect(page.locator("#p-window")).to_be_visible()
    page.get_by_test_id("policy-period").select_option("week")
    expect(page.locator("#p-window")).to_be_hidden()  # a calendar week has no rolling window
    page.select_option("#p-scope", "account_total")
    page.check("#p-alert")
    shot("calendar-week-form")
    page.click("#policy-save")
    row = page.locator('[data-testid="policy-row"]', has_text=NAME)
    expect(row).to_contain_text(
        "messages ≥ 100,000 this week · all bots together · email the owner"
    )
    shot("calendar-week-listed")

    # The API holds it as a calendar policy (window_seconds 0, period week).
    policies = httpx.get(
        f"{demo.info['api']}/v1/accounts/umbrella/policies",
        headers={"Authorization": f"Bearer {demo.key('umbrella')}"},
        trust_env=False,
    ).json()
    (weekly,) = [p for p in policies if p["name"] == NAME]
    assert (weekly["period"], weekly["window_seconds"]) == ("week", 0)

    # The live panel meters it over the local week.
    page.click("a[data-tab=live]")
    meter = page.locator(f'[data-testid="policy-meter-{weekly["policy_id"]}"]')
    expect(meter).to_contain_text("messages this week", timeout=30_000)
    shot("calendar-week-meter")

    # Edit: the form shows the period; back to a two-hour rolling window.
    page.click("a[data-tab=policies]")
    row.get_by_role("button", name="Edit").click()
    expect(page.get_by_test_id("policy-period")).to_have_value("week")
    page.get_by_test_id("policy-period").select_option("")
    expect(page.locator("#p-window")).to_be_visible()
    page.fill("#p-window", "2")
    page.select_option("#p-window-unit", "3600")
    page.click("#policy-save")
    expect(row).to_contain_text("messages ≥ 100,000 in 2 h")
    shot("back-to-rolling")
    assert not errors, errors
