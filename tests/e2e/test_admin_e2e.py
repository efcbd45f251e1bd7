"""Browser tests of issue 24 on a running ``capstream demo``: strict policy input (a repeated
recipient is refused next to its field) and the policy list filtered by bot. Screenshots go
to tests/e2e/screenshots/admin/. Skips cleanly without Chromium."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_dashboard_e2e import Shots, login

SHOTS = Path(__file__).parent / "screenshots"
pytestmark = pytest.mark.timeout(420)


def _new_policy(page: Any, name: str, scope: str, bot: str | None, recipients: str) -> None:
    page.click("#policy-new")
    page.fill("#p-name", name)
    page.select_option("#p-metric", "messages")
    page.fill("#p-threshold", "5000")
    page.fill("#p-window", "1")
    page.select_option("#p-window-unit", "3600")
    page.select_option("#p-scope", scope)
    if bot is not None:
        page.select_option("#p-bot", bot)
    page.check("#p-alert")
    page.fill("#p-recipients", recipients)
    page.click("#policy-save")


def test_repeated_recipients_are_refused_and_policies_filter_by_bot(
    browser: Any, demo: Any
) -> None:
    from playwright.sync_api import expect

    errors: list[str] = []
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("pageerror", lambda e: errors.append(str(e)))
    shot = Shots(page, SHOTS / "admin-strict")
    login(page, demo, "umbrella")  # no policies of its own; no other browser test edits it
    page.click("a[data-tab=policies]")

    # 1. The same address twice: the API's 422 is shown next to the recipients, nothing saved.
    twice = "it@umbrella.example, IT@umbrella.example"
    _new_policy(page, "Agent messages", "bot", "agent-bot", twice)
    expect(page.locator('#policy-form [data-error="alert"]')).to_contain_text(
        "IT@umbrella.example is listed twice"
    )
    expect(page.get_by_test_id("policy-row")).to_have_count(0)
    shot("duplicate-recipient-refused")
    page.fill("#p-recipients", "it@umbrella.example")
    page.click("#policy-save")
    expect(page.locator('[data-testid="policy-row"]', has_text="Agent messages")).to_be_visible()

    # 2. One policy per scope; the filter asks the API for what watches one bot.
    _new_policy(page, "Front desk messages", "bot", "frontdesk", "")
    _new_policy(page, "Every bot", "account_each_bot", None, "")
    expect(page.get_by_test_id("policy-row")).to_have_count(3)
    page.get_by_test_id("policy-filter-bot").select_option("frontdesk")
    rows = page.get_by_test_id("policy-row")
    expect(rows).to_have_count(2)
    expect(rows.filter(has_text="Front desk messages")).to_have_count(1)
    expect(rows.filter(has_text="Every bot")).to_have_count(1)
    expect(rows.filter(has_text="Agent messages")).to_have_count(0)
    shot("filtered-by-bot")
    page.get_by_test_id("policy-filter-bot").select_option("")
    expect(page.get_by_test_id("policy-row")).to_have_count(3)
    assert not errors, errors


def test_a_credit_grant_resumes_a_capped_category_at_once(browser: Any, demo: Any) -> None:
    from playwright.sync_api import expect

    errors: list[str] = []
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("pageerror", lambda e: errors.append(str(e)))
    shot = Shots(page, SHOTS / "admin-grants")
    # globex (pro): the demo's concierge traffic reaches its daily text cap within a minute
    login(page, demo, "globex")
    concierge = page.get_by_test_id("bot-concierge")
    expect(concierge.get_by_test_id("bot-capped")).to_contain_text(
        "capped (daily)", timeout=150_000
    )
    shot("text-capped")

    # a grant with a bad amount is refused next to the field; then 1 credit for today
    page.click("a[data-tab=settings]")
    expect(page.get_by_test_id("grant-list")).to_contain_text("No grants yet")
    page.select_option("#g-category", "text")
    page.select_option("#g-period", "daily")
    page.fill("#g-amount", "0")
    page.click("#grant-save")
    expect(page.locator('#grant-form [data-error="amount_micro"]')).to_contain_text(
        "greater than 0"
    )
    page.fill("#g-amount", "1")
    page.fill("#g-note", "launch day")
    page.click("#grant-save")
    row = page.get_by_test_id("grant-row")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("text daily")
    expect(row).to_contain_text("+1")
    expect(row).to_contain_text("launch day")
    expect(row.get_by_test_id("grant-status")).to_contain_text("in force until")
    shot("grant-recorded")

    # the worker re-decides at once: the live view shows the category allowed again
    page.click("a[data-tab=live]")
    expect(concierge.get_by_test_id("bot-capped")).to_have_count(0, timeout=30_000)
    shot("resumed")

    # the history: the cap period, ended by the grant, and the grant itself
    page.click("a[data-tab=history]")
    page.get_by_test_id("history-kind").select_option("cap")
    cap = page.locator('[data-testid="history-row"][data-kind="cap"]').first
    expect(cap).to_contain_text("text daily cap", timeout=60_000)
    expect(cap.get_by_test_id("history-outcome")).to_contain_text("by grant", timeout=60_000)
    page.get_by_test_id("history-kind").select_option("")
    grant = page.locator('[data-testid="history-row"][data-kind="grant"]')
    expect(grant).to_contain_text("launch day")
    shot("history-cap-and-grant")
    assert not errors, errors


def test_the_history_shows_a_block_and_who_lifted_it(browser: Any, demo: Any) -> None:
    from playwright.sync_api import expect

    errors: list[str] = []
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("pageerror", lambda e: errors.append(str(e)))
    shot = Shots(page, SHOTS / "admin-history")
    # initech: its per-hour token policy pauses the busy sales-bot and emails the owner
    login(page, demo, "initech")
    sales = page.get_by_test_id("bot-sales-bot")
    expect(sales.get_by_test_id("bot-blocked")).to_be_visible(timeout=150_000)
    sales.get_by_test_id("bot-resume").click()
    expect(sales.get_by_test_id("bot-blocked")).to_have_count(0, timeout=30_000)

    page.click("a[data-tab=history]")
    page.get_by_test_id("history-bot").select_option("sales-bot")
    block = page.locator('[data-testid="history-row"][data-kind="block"]').first
    expect(block).to_contain_text("sales-bot paused by policy “Per-hour token cap”",
                                  timeout=60_000)  # fmt: skip
    expect(block.get_by_test_id("history-outcome")).to_contain_text("by dashboard (key:",
                                                                    timeout=60_000)  # fmt: skip
    alert = page.locator('[data-testid="history-row"][data-kind="alert"]').first
    expect(alert).to_contain_text("sales-bot", timeout=60_000)
    # support-bot's filter shows none of sales-bot's rows
    page.get_by_test_id("history-bot").select_option("support-bot")
    expect(page.locator('[data-testid="history-row"][data-bot="sales-bot"]')).to_have_count(0)
    page.get_by_test_id("history-bot").select_option("sales-bot")
    expect(block).to_be_visible()
    shot("history-block-lifted")
    assert not errors, errors
