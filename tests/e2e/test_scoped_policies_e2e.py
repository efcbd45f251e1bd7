"""Browser test of per-attribute policies (issue 24.3) on a running ``capstream demo``: a policy
counting each end user on its own is created from the form (refused first without an alert,
the error next to the field), listed, shown on the live panel as "per end user", then edited
into a filter on one model. Screenshots go to tests/e2e/screenshots/scoped-policy/. Skips
cleanly without Chromium."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from test_dashboard_e2e import Shots, login

SHOTS = Path(__file__).parent / "screenshots"
pytestmark = pytest.mark.timeout(420)
NAME = "Heavy end users"


def test_a_per_end_user_policy_from_the_form_then_one_model_only(browser: Any, demo: Any) -> None:
    from playwright.sync_api import expect

    errors: list[str] = []
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("pageerror", lambda e: errors.append(str(e)))
    shot = Shots(page, SHOTS / "scoped-policy")
    login(page, demo, "umbrella")
    page.click("a[data-tab=policies]")
    page.click("#policy-new")
    page.fill("#p-name", NAME)
    page.select_option("#p-metric", "tokens")
    page.fill("#p-threshold", "20000")
    page.fill("#p-window", "1")
    page.select_option("#p-window-unit", "3600")
    page.select_option("#p-scope", "account_each_bot")
    expect(page.get_by_test_id("policy-per-value")).to_be_disabled()
    page.get_by_test_id("policy-per").select_option("end_user")
    expect(page.get_by_test_id("policy-per-value")).to_be_enabled()
    expect(page.locator("#p-block-label")).to_have_text("Block that end user for")
    page.uncheck("#p-alert")
    page.check("#p-block")
    page.fill("#p-block-duration", "10")
    page.select_option("#p-block-unit", "60")
    page.click("#policy-save")
    # Without an alert the API refuses it; the message is shown next to the alert
    alert_error = page.locator('[data-error="alert"]')
    expect(alert_error).to_contain_text("add an alert action")
    shot("per-user-needs-an-alert")
    page.check("#p-alert")
    shot("per-user-form")
    page.click("#policy-save")
    row = page.locator('[data-testid="policy-row"]', has_text=NAME)
    expect(row).to_contain_text(
        "tokens ≥ 20,000 in 1 h · every bot, each on its own · each end user on its own · "
        "email the owner + block that end user 10 min"
    )
    shot("per-user-listed")

    # The API holds it with its attribute.
    policies = httpx.get(
        f"{demo.info['api']}/v1/accounts/umbrella/policies",
        headers={"Authorization": f"Bearer {demo.key('umbrella')}"},
        trust_env=False,
    ).json()
    (scoped,) = [p for p in policies if p["name"] == NAME]
    assert (scoped["per"], scoped["per_value"]) == ("end_user", None)

    # The live panel meters its busiest end user, not the bot.
    page.click("a[data-tab=live]")
    meter = page.locator(f'[data-testid="policy-meter-{scoped["policy_id"]}"]')
    expect(meter).to_contain_text("per end user", timeout=30_000)
    shot("per-user-meter")

    # Edit: the form shows the attribute; narrowed to one model.
    page.click("a[data-tab=policies]")
    row.get_by_role("button", name="Edit").click()
    expect(page.get_by_test_id("policy-per")).to_have_value("end_user")
    page.get_by_test_id("policy-per").select_option("model")
    page.get_by_test_id("policy-per-value").fill("gpt-4o")
    page.click("#policy-save")
    expect(row).to_contain_text("model gpt-4o only")
    shot("one-model-only")
    assert not errors, errors
