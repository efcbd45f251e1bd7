"""End to end in a real browser (issue 19): a tenant adds a signed webhook on the
Notifications tab, sends a test, and sees the delivery log fill in as the demo's notifier
delivers it to a local endpoint that answers 503 once, then 200. Screenshots go to
tests/e2e/screenshots/channels/."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from conftest import SHOTS
from test_dashboard_e2e import Shots, login

from capstream.notifier.webhook import SIGNATURE_HEADER, verify

pytestmark = pytest.mark.timeout(420)


class Endpoint:
    """A webhook receiver: answers 503 to the first request, 200 after; keeps them all."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                endpoint.requests.append((dict(self.headers), body))
                self.send_response(503 if len(endpoint.requests) == 1 else 200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/capstream"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    e = Endpoint()
    yield e
    e.close()


def test_add_a_webhook_send_a_test_and_see_its_delivery_log(
    browser: Any, demo: Any, endpoint: Endpoint
) -> None:
    from playwright.sync_api import expect

    errors: list[str] = []
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("pageerror", lambda e: errors.append(str(e)))
    shots = Shots(page, SHOTS / "channels")
    account = demo.info["tenants"][0]["account_id"]
    login(page, demo, account)
    page.click('a[data-tab="channels"]')
    expect(page.locator('[data-testid="channels"]')).to_contain_text("No channel yet")
    shots("channels-empty")

    # Add a signed webhook for every kind; the secret is made in the browser
    page.select_option('[data-testid="channel-type"]', "webhook")
    page.fill('[data-testid="channel-name"]', "Ops endpoint")
    page.fill('[data-testid="channel-url"]', endpoint.url)
    secret = page.input_value('[data-testid="channel-secret"]')
    assert secret.startswith("whsec_") and len(secret) > 20
    page.click('[data-testid="channel-add"]')
    row = page.locator('[data-testid="channel-row"]')
    expect(row).to_have_count(1)
    expect(row).to_contain_text("Ops endpoint")
    expect(row).to_contain_text(f"secret …{secret[-4:]}")
    expect(row).not_to_contain_text(secret)  # never shown again in full
    shots("webhook-added")

    # Send a test: the endpoint answers 503 first, the notifier retries with backoff
    row.locator('[data-testid="channel-test"]').click()
    log = row.locator('[data-testid="delivery-row"]')
    expect(log.and_(page.locator('[data-status="200"]'))).to_have_count(1, timeout=60_000)
    expect(log.and_(page.locator('[data-status="503"]'))).to_have_count(1)
    first = log.first  # newest first
    assert first.get_attribute("data-outcome") == "delivered"
    assert first.get_attribute("data-kind") == "channel_test"
    shots("delivery-log")

    # What the endpoint got: two signed attempts of the same notification
    assert len(endpoint.requests) == 2
    ids = {headers["X-Capstream-Notification-Id"] for headers, _ in endpoint.requests}
    assert len(ids) == 1
    for headers, body in endpoint.requests:
        assert verify(secret.encode(), headers[SIGNATURE_HEADER], body)
    # Switch a kind off: the tenant settings keep it (read back through the API)
    box = page.locator('[data-testid="receive-throttle_engaged"]')
    expect(box).to_be_checked(timeout=30_000)
    box.uncheck()
    key = demo.key(account)
    settings_url = f"{demo.info['url'].split('/dashboard')[0]}/v1/accounts/{account}/settings"
    deadline = time.monotonic() + 60  # a write reaches the API's view through the broker
    muted: list[str] = []
    while time.monotonic() < deadline and muted != ["throttle_engaged"]:
        muted = httpx.get(settings_url, headers={"Authorization": f"Bearer {key}"}).json()[
            "muted_notifications"
        ]
        time.sleep(0.2)
    assert muted == ["throttle_engaged"]
    page.reload()
    page.click('a[data-tab="channels"]')
    expect(page.locator('[data-testid="receive-throttle_engaged"]')).not_to_be_checked(
        timeout=30_000
    )
    expect(page.locator('[data-testid="receive-cap_warning"]')).to_be_checked(timeout=30_000)
    shots("kinds")
    assert not errors, errors
    page.close()
