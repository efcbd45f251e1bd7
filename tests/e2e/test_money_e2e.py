"""Browser test of budgets in money (issue 24 item 2) on a running ``capstream demo``: the
price-table editor (a bad price refused next to the models, then saved), a daily cap set
in dollars, shown in credits beside it and stored as both, converted again on a rate change,
and a credits policy whose threshold is given in dollars. Screenshots go to
tests/e2e/screenshots/money/. Skips cleanly without Chromium."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from test_dashboard_e2e import Shots, login

SHOTS = Path(__file__).parent / "screenshots"
pytestmark = pytest.mark.timeout(420)


def test_prices_are_edited_and_a_cap_is_set_in_dollars(browser: Any, demo: Any) -> None:
    from playwright.sync_api import expect

    errors: list[str] = []
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.on("pageerror", lambda e: errors.append(str(e)))
    shot = Shots(page, SHOTS / "money")
    login(page, demo, "umbrella")
    page.click("a[data-tab=settings]")
    card = page.get_by_test_id("prices-card")
    expect(card).to_be_visible()
    # the demo platform's prices (USD) are listed; the tenant has none of its own yet
    expect(page.get_by_test_id("platform-prices")).to_contain_text("claude-haiku 0.8 / 4")
    expect(page.get_by_test_id("price-row")).to_have_count(0)

    # the editor: a model with its output price left blank is refused next to the models
    page.fill("#pr-currency", "usd")
    page.fill("#pr-rate", "100")  # 1 USD = 100 credits
    page.click("#pr-add")
    row = page.get_by_test_id("price-row").last
    row.locator(".p-name").fill("claude-sonnet-4-6")
    row.locator(".p-in").fill("3")
    page.click("#prices-save")
    expect(page.locator('#prices-form [data-error="models"]')).not_to_be_empty()
    row.locator(".p-out").fill("15")
    page.click("#prices-save")
    expect(page.locator("#prices-saved")).to_contain_text("Saved")
    expect(page.locator("#pr-currency")).to_have_value("USD")
    shot("prices-saved")

    # the text daily cap in dollars: 0.50 USD, shown as 50 credits beside it
    page.get_by_test_id("cap-unit").select_option("money")
    page.fill("#cap-text-daily", "0.5")
    expect(page.get_by_test_id("cap-text-daily-other")).to_have_text("= 50 credits")
    page.click("#settings-save")
    expect(page.locator("#settings-saved")).to_contain_text("Saved")
    expect(page.locator("#cap-text-daily")).to_have_value("0.5")
    expect(page.get_by_test_id("cap-unit")).to_have_value("money")
    shot("cap-in-dollars")

    # stored as given and as what the processors decide on
    key = {"Authorization": f"Bearer {demo.key('umbrella')}"}
    s = httpx.get(f"{demo.info['api']}/v1/accounts/umbrella/settings", headers=key).json()
    assert s["caps"]["text"]["daily_amount_micro"] == 500_000
    assert s["caps"]["text"]["daily_micro"] == 50_000_000

    # the same cap in credits, with its dollar amount beside it
    page.get_by_test_id("cap-unit").select_option("credits")
    expect(page.locator("#cap-text-daily")).to_have_value("50")
    expect(page.get_by_test_id("cap-text-daily-other")).to_have_text("≈ 0.5 USD")
    shot("cap-in-credits")

    # a rate change converts the cap again (1 USD = 200 credits: 100 credits)
    page.fill("#pr-rate", "200")
    page.click("#prices-save")
    expect(page.locator("#prices-saved")).to_contain_text("Saved")
    page.get_by_test_id("cap-unit").select_option("credits")
    expect(page.locator("#cap-text-daily")).to_have_value("100")
    shot("rate-changed")

    # a credits policy with its threshold in dollars: 2 USD = 400 credits at this rate
    page.click("a[data-tab=policies]")
    page.click("#policy-new")
    page.fill("#p-name", "Daily spend")
    page.select_option("#p-metric", "credits")
    page.fill("#p-threshold-money", "2")
    expect(page.get_by_test_id("policy-threshold-credits")).to_have_text("= 400 credits")
    page.fill("#p-window", "1")
    page.select_option("#p-window-unit", "86400")
    page.check("#p-alert")
    page.click("#policy-save")
    row = page.locator('[data-testid="policy-row"]', has_text="Daily spend")
    expect(row).to_contain_text("≥ 400")
    expect(row).to_contain_text("(2 USD)")
    shot("policy-in-dollars")
    policies = httpx.get(f"{demo.info['api']}/v1/accounts/umbrella/policies", headers=key).json()
    spend = next(p for p in policies if p["name"] == "Daily spend")
    assert (spend["threshold"], spend["threshold_amount_micro"]) == (400_000_000, 2_000_000)
    assert not errors, errors
