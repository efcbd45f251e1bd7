"""End to end in a real browser: a tenant creates a per-hour token policy, watches the
simulator trip it, sees the bot blocked and the amber rows count attempts, and edits the
fallback message. Screenshots of each step go to tests/e2e/screenshots/."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

SHOTS = Path(__file__).parent / "screenshots"
pytestmark = pytest.mark.timeout(420)
POLICY = "Shop per-hour tokens"
FALLBACK = "We're out of AI credits for now — back {{TIMEFRAME}}!"


class Shots:
    """Numbered full-page screenshots of one viewport."""

    def __init__(self, page: Any, folder: Path) -> None:
        self.page = page
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.png"):
            old.unlink()
        self.n = 0

    def __call__(self, name: str) -> None:
        self.n += 1
        self.page.screenshot(path=str(self.folder / f"{self.n:02d}-{name}.png"), full_page=True)


def login(page: Any, demo: Any, account: str) -> None:
    page.goto(demo.info["url"])
    page.fill("#api-key", demo.key(account))
    page.click("#login-form button[type=submit]")
    page.wait_for_selector(f'[data-testid="who-account"]:has-text("{account}")')


def attempts(page: Any) -> dict[str, int]:
    """Attempts per conversation of the amber rows on screen."""
    rows = page.locator('[data-testid="feed-row"]')
    return {
        rows.nth(i).get_attribute("data-conversation"): int(
            rows.nth(i).get_attribute("data-attempts")
        )
        for i in range(rows.count())
    }


def test_a_tenant_trips_a_per_hour_policy_and_edits_its_fallback(browser: Any, demo: Any) -> None:
    from playwright.sync_api import expect

    errors: list[str] = []
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("pageerror", lambda e: errors.append(str(e)))
    shot = Shots(page, SHOTS / "wide")

    # 1. Log in: a wrong key is refused, the tenant's key opens its dashboard.
    page.goto(demo.info["url"])
    page.fill("#api-key", "csk_0123456789ab_wrong")
    page.click("#login-form button[type=submit]")
    expect(page.locator("#login-error")).to_contain_text("unknown or revoked")
    shot("login-refused")
    page.fill("#api-key", demo.key("acme"))
    page.click("#login-form button[type=submit]")
    expect(page.get_by_test_id("who-account")).to_have_text("acme")
    expect(page.get_by_test_id("who-plan")).to_have_text("free")
    expect(page.get_by_test_id("bot-shop-bot")).to_be_visible()
    expect(page.locator('[data-testid="chart"] svg polyline').first).to_be_attached(timeout=30_000)
    shot("live")

    # 2. A per-hour token policy on shop-bot; a bad threshold is flagged next to its field.
    page.click("a[data-tab=policies]")
    page.click("#policy-new")
    expect(page.locator("#presets button")).to_have_count(3)
    page.fill("#p-name", POLICY)
    page.select_option("#p-metric", "tokens")
    page.fill("#p-threshold", "0")
    page.fill("#p-window", "1")
    page.select_option("#p-window-unit", "3600")
    page.select_option("#p-scope", "bot")
    page.select_option("#p-bot", "shop-bot")
    page.check("#p-block")
    page.fill("#p-block-duration", "10")
    page.select_option("#p-block-unit", "60")
    page.click("#policy-save")
    expect(page.locator('[data-error="threshold"]')).to_contain_text("greater than 0")
    expect(page.locator("#p-threshold")).to_have_attribute("aria-invalid", "true")
    shot("policy-validation-error")
    page.fill("#p-threshold", "2000")
    page.click("#policy-save")
    row = page.locator('[data-testid="policy-row"]', has_text=POLICY)
    expect(row).to_be_visible()
    expect(row).to_contain_text(
        "tokens ≥ 2,000 in 1 h · bot shop-bot · email the owner + pause 10 min"
    )
    shot("policy-created")
    row.get_by_test_id("policy-enabled").uncheck()  # disable, then enable again
    expect(row).to_have_class(re.compile(r"\boff\b"))
    expect(row).to_contain_text("disabled")
    row.get_by_test_id("policy-enabled").check()
    expect(row).to_contain_text("enabled")
    row.get_by_role("button", name="Edit").click()
    expect(page.locator("#p-threshold")).to_have_value("2000")
    expect(page.locator("#p-bot")).to_have_value("shop-bot")
    page.fill("#p-threshold", "3000")
    page.click("#policy-save")
    expect(row).to_contain_text("tokens ≥ 3,000 in 1 h")
    expect(row).not_to_have_class(re.compile(r"\boff\b"))
    shot("policy-edited")

    # 3. The simulator's shop-bot trips it: the bot is shown blocked by that policy.
    page.click("a[data-tab=live]")
    blocked = page.locator('[data-testid="bot-shop-bot"] [data-testid="bot-blocked"]')
    expect(blocked).to_contain_text(f"Paused by policy “{POLICY}” until", timeout=90_000)
    expect(page.locator('[data-testid="bot-shop-bot"] [data-testid="bot-status"]')).to_have_text(
        "blocked"
    )
    meter = page.locator('[data-testid^="policy-meter-"]', has_text=POLICY)
    expect(meter).to_contain_text("over the threshold", timeout=30_000)
    shot("bot-blocked")

    # 4. The amber rows: the daily text cap is hit, each row counts its attempts as they come.
    expect(page.get_by_test_id("feed-row").first).to_be_visible(timeout=60_000)
    expect(page.get_by_test_id("feed-row").first).to_contain_text(
        re.compile(r"AI reply paused — daily AI replies credit exhausted \(\d+ attempts?\)")
    )
    expect(page.get_by_test_id("feed-cta").first).to_have_text("Upgrade to Starter →")
    shot("amber-rows")
    previous = attempts(page)
    grown: tuple[str, int] | None = None
    deadline = time.monotonic() + 60
    while grown is None and time.monotonic() < deadline:
        page.wait_for_timeout(1_000)
        current = attempts(page)
        grown = next(((c, n) for c, n in current.items() if n > previous.get(c, n)), None)
        previous = current
    assert grown is not None, "no amber row's attempt count went up within a minute"
    conv, count = grown
    updated = page.locator(f'[data-testid="feed-row"][data-conversation="{conv}"]')
    expect(updated).to_contain_text(f"({count} attempts)")
    shot("amber-row-updated")
    page.get_by_test_id("feed-cta").first.click()
    expect(page.locator("#upgrade-dialog")).to_be_visible()
    shot("upgrade-to-starter")
    page.click("#upgrade-close")

    # 5. The fallback message, previewed in the tenant's language, saved, still there on reload.
    page.click("a[data-tab=settings]")
    expect(page.locator("#s-preview-daily")).to_contain_text("back tomorrow!")
    page.fill("#s-fallback", FALLBACK)
    expect(page.locator("#s-preview-daily")).to_have_text(
        "We're out of AI credits for now — back tomorrow!"
    )
    expect(page.locator("#s-preview-monthly")).to_have_text(
        "We're out of AI credits for now — back next week!"
    )
    shot("fallback-preview")
    page.click("#settings-save")
    expect(page.locator("#settings-saved")).to_contain_text("Saved")
    page.reload()
    page.click("a[data-tab=settings]")
    expect(page.locator("#s-fallback")).to_have_value(FALLBACK)
    shot("fallback-saved")
    stored = httpx.get(
        f"{demo.info['api']}/v1/accounts/acme/settings",
        headers={"Authorization": f"Bearer {demo.key('acme')}"},
        trust_env=False,
    ).json()
    assert stored["fallback_message"] == FALLBACK

    # 6. The same on a narrow screen.
    narrow = browser.new_page(viewport={"width": 390, "height": 844})
    narrow.on("pageerror", lambda e: errors.append(str(e)))
    small = Shots(narrow, SHOTS / "narrow")
    login(narrow, demo, "acme")
    expect(
        narrow.locator('[data-testid="bot-shop-bot"] [data-testid="bot-blocked"]')
    ).to_be_visible()
    expect(narrow.get_by_test_id("feed-row").first).to_be_visible()
    width = narrow.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways on a phone ({width}px)"
    small("live")
    narrow.click("a[data-tab=policies]")
    small("policies")
    narrow.click("a[data-tab=settings]")
    expect(narrow.locator("#s-fallback")).to_have_value(FALLBACK)
    small("cap-behaviour")

    # 7. "Resume now" on the paused bot lifts its block (issue 18 item 5), recorded with who.
    page.click("a[data-tab=live]")
    card = page.locator('[data-testid="bot-shop-bot"]')
    card.get_by_test_id("bot-resume").click()
    expect(card.get_by_test_id("bot-blocked")).to_have_count(0, timeout=60_000)
    expect(card.get_by_test_id("bot-status")).not_to_have_text("blocked")
    shot("bot-resumed")
    deadline = time.monotonic() + 60
    resumed: list[dict[str, Any]] = []
    while not resumed and time.monotonic() < deadline:
        rows = httpx.get(
            f"{demo.info['api']}/v1/accounts/acme/decisions",
            headers={"Authorization": f"Bearer {demo.key('acme')}"},
            trust_env=False,
        ).json()
        resumed = [r for r in rows if r.get("bot_id") == "shop-bot" and r.get("resumed_by")]
        time.sleep(1)
    assert resumed and resumed[0]["resumed_by"].startswith("dashboard (key:"), resumed
    assert errors == [], errors


def test_a_paid_tenant_requests_a_top_up_and_its_admin_gets_the_email(
    browser: Any, demo: Any
) -> None:
    from playwright.sync_api import expect

    errors: list[str] = []
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("pageerror", lambda e: errors.append(str(e)))
    shot = Shots(page, SHOTS / "topup")
    login(page, demo, "globex")  # Pro, auto-downgrade on, Bahasa Malaysia

    # At 80% of the daily text cap the AI moves to the cheaper model, then the cap is hit.
    model = page.locator('[data-testid="bot-concierge"] [data-testid="bot-model"]')
    expect(model).to_contain_text("Model: claude-haiku (downgraded until", timeout=120_000)
    cta = page.get_by_test_id("feed-cta").first
    expect(cta).to_have_text("Top up →", timeout=120_000)  # a paid plan tops up
    shot("downgraded-and-capped")

    cta.click()
    expect(page.locator("#topup-dialog")).to_be_visible()
    expect(page.locator("#t-category")).to_have_value("text")
    page.fill("#t-note", "Launch week: please raise today's text cap.")
    shot("topup-dialog")
    page.click("#topup-send")
    expect(page.locator("#topup-ok")).to_contain_text(
        "the admin (ops@globex.example) has been emailed and decides"
    )
    shot("topup-requested")
    page.click("#topup-close")

    page.click("a[data-tab=inbox]")
    mail = page.locator('[data-testid="mail"][data-kind="topup_request"]')
    expect(mail).to_be_visible(timeout=60_000)  # notifier → SMTP → the demo's mail catcher
    expect(mail).to_contain_text("to ops@globex.example")
    expect(mail).to_contain_text("Launch week: please raise today's text cap.")
    shot("topup-email")

    page.click("a[data-tab=settings]")
    expect(page.locator("#s-language")).to_have_value("ms")
    expect(page.locator("#s-downgrade")).to_be_checked()
    expect(page.locator("#s-preview-daily")).to_contain_text("kembali esok")  # Malay default
    shot("cap-behaviour-malay")
    assert errors == [], errors


def test_ctrl_c_stops_the_demo_and_everything_it_started(demo: Any) -> None:
    pids = [*demo.info["pids"].values(), demo.info["broker_pid"]]
    demo.proc.send_signal(signal.SIGINT)
    assert demo.proc.wait(90) == 0, demo.tail()
    assert "every process it started has exited" in demo.tail()
    left = [p for p in pids if p is not None and _alive(p)]
    assert left == [], f"processes left behind: {left}"
    # Each was waited for, the broker's JVM included: not even a <defunct> entry remains.
    zombies = [p for p in pids if p is not None and Path(f"/proc/{p}").exists()]
    assert zombies == [], f"not reaped: {zombies}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")
