"""The dashboard: served pages, who-am-I, the fallback preview, burn-rate projections."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from capstream.api.dashboard.burn import HOUR_MS, pace_per_ms, project
from capstream.core.messages import fallback_text


def test_the_dashboard_is_served_with_a_strict_content_security_policy(client: TestClient) -> None:
    r = client.get("/", follow_redirects=False)
    assert r.status_code in (302, 307) and r.headers["location"] == "/dashboard/"
    page = client.get("/dashboard/")
    assert page.status_code == 200
    assert '<script type="module" src="js/app.js"></script>' in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    for asset in ("js/app.js", "js/chart.js", "js/live.js", "js/policies.js", "style.css"):
        r = client.get(f"/dashboard/{asset}")
        assert r.status_code == 200, asset
        assert "content-security-policy" in r.headers
    assert "javascript" in client.get("/dashboard/js/app.js").headers["content-type"]


def test_the_dashboard_pages_reference_no_outside_resources(client: TestClient) -> None:
    for asset in ("", "style.css", "js/app.js", "js/api.js", "js/dom.js", "js/chart.js",
                  "js/live.js", "js/policies.js", "js/settings.js", "js/inbox.js",
                  "js/channels.js"):  # fmt: skip
        text = client.get(f"/dashboard/{asset}").text
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", ""), asset
        assert "https://" not in text, asset


def test_dashboard_routes_are_not_in_the_api_schema_but_its_reads_are(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/v1/me" in paths and "/v1/accounts/{account_id}/live" in paths
    assert not [p for p in paths if p.startswith("/dashboard") or p == "/"]


def test_me_names_the_account_of_the_key(
    client: TestClient, new_account: Any, admin: dict[str, str]
) -> None:
    h = new_account("acme", plan="pro", bots=("bot-1", "bot-2"))
    me = client.get("/v1/me", headers=h).json()
    assert (me["admin"], me["account_id"], me["plan"]) == (False, "acme", "pro")
    assert [b["bot_id"] for b in me["bots"]] == ["bot-1", "bot-2"]
    assert client.get("/v1/me", headers=admin).json() == {
        "admin": True, "account_id": None, "plan": None, "owner_email": None,
        "timezone": None, "language": None, "bots": [],
    }  # fmt: skip
    assert client.get("/v1/me").status_code == 401
    bad = client.get("/v1/me", headers={"Authorization": "Bearer csk_nope_nope"})
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "unauthorized"


def test_fallback_preview_is_the_cores_text_in_the_tenants_language(
    client: TestClient, new_account: Any
) -> None:
    h = new_account("acme")
    url = "/v1/accounts/acme/fallback-preview"
    assert client.patch("/v1/accounts/acme/settings", json={"language": "ms"}, headers=h).is_success
    blank = client.get(url, headers=h).json()
    assert blank["language"] == "ms" and blank["default_used"] is True
    assert blank["daily"] == fallback_text("", "ms", "daily")
    assert "esok" in blank["daily"] and "minggu depan" in blank["monthly"]
    own = client.get(url, params={"message": "Back {{TIMEFRAME}}!", "language": "zh"}, headers=h)
    assert own.json() == {
        "language": "zh", "default_used": False, "daily": "Back 明天!", "monthly": "Back 下周!",
    }  # fmt: skip
    assert client.get(url, params={"language": "xx"}, headers=h).status_code == 422
    assert client.get(url, params={"message": "x" * 1001}, headers=h).status_code == 422


def test_another_tenants_dashboard_reads_are_not_found(
    client: TestClient, new_account: Any
) -> None:
    new_account("acme")
    other = new_account("globex")
    for path in ("fallback-preview", "live", "usage/series", "mailbox"):
        r = client.get(f"/v1/accounts/acme/{path}", headers=other)
        assert r.status_code == 404, path


def test_projection_reaches_the_cap_at_the_current_pace() -> None:
    now, end = 1_000 * HOUR_MS, 1_010 * HOUR_MS  # ten hours left in the period
    rate = pace_per_ms(30_000, first_seen_ms=now - HOUR_MS // 2, since_ms=now - HOUR_MS, now_ms=now)
    assert rate == pytest.approx(30_000 / (HOUR_MS / 2))  # half an hour of usage, not a whole one
    p = project("text", "daily", 40_000, rate, now, end, cap_micro=100_000)
    assert p.rate_micro_per_hour == pytest.approx(60_000)
    assert p.projected_micro == 40_000 + 600_000 and p.projected_over_cap
    assert p.reaches_cap_at_ms == now + HOUR_MS  # 60k more at 60k/h
    assert not p.cap_reached


def test_projection_without_pace_or_after_the_cap() -> None:
    now, end = 10 * HOUR_MS, 12 * HOUR_MS
    idle = project("vision", "monthly", 5, pace_per_ms(0, None, 0, now), now, end, 100)
    assert (idle.projected_micro, idle.reaches_cap_at_ms, idle.projected_over_cap) == (
        5,
        None,
        False,
    )
    late = project("text", "daily", 10, 1.0, now, end, 10_000_000)  # pace would need 2.8 h
    assert late.reaches_cap_at_ms is None and not late.projected_over_cap
    done = project("text", "daily", 200, 1.0, now, end, 100)
    assert done.cap_reached and done.reaches_cap_at_ms is None
    assert pace_per_ms(100, first_seen_ms=now - 1, since_ms=0, now_ms=now) == 100 / 60_000
