"""Price tables through the Policy API, and caps and policy thresholds given in money."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from capstream.streams.records import PolicyRecord, TenantSettingsRecord

M = 1_000_000
P = "/v1/accounts/acme/prices"
S = "/v1/accounts/acme/settings"
POL = "/v1/accounts/acme/policies"
TABLE = {
    "currency": "USD",
    "credits_per_unit_micro": 100 * M,  # 1 USD = 100 credits
    "models": {
        "gpt-4o": {"input_per_mtok_micro": 2_500_000, "output_per_mtok_micro": 10 * M},
        "vision-x": {
            "input_per_mtok_micro": M,
            "output_per_mtok_micro": M,
            "categories": {"vision": {"input_per_mtok_micro": 5 * M, "output_per_mtok_micro": 0}},
        },
    },
}
PLATFORM = {
    "currency": "USD",
    "credits_per_unit_micro": M,
    "models": {
        "gpt-4o": {"input_per_mtok_micro": 9, "output_per_mtok_micro": 9},
        "claude-haiku": {"input_per_mtok_micro": 800_000, "output_per_mtok_micro": 4 * M},
    },
}


def test_put_replaces_the_table_whole_and_get_shows_what_applies(
    client: TestClient, new_account: Any, admin: dict[str, str]
) -> None:
    h = new_account("acme")
    assert client.put("/v1/prices", json=PLATFORM, headers=admin).status_code == 200
    r = client.put(P, json=TABLE, headers=h)
    assert r.status_code == 200, r.text
    body = client.get(P, headers=h).json()
    assert body["own"]["version"] == 1 and body["own"]["updated_by"].startswith("key:")
    eff = body["effective"]
    assert (eff["currency"], eff["credits_per_unit_micro"]) == ("USD", 100 * M)
    # the account's gpt-4o price wins; claude-haiku comes from the platform
    assert eff["models"]["gpt-4o"]["source"] == "account"
    assert eff["models"]["gpt-4o"]["input_per_mtok_micro"] == 2_500_000
    assert eff["models"]["claude-haiku"]["source"] == "platform"
    assert eff["models"]["vision-x"]["categories"]["vision"]["input_per_mtok_micro"] == 5 * M
    platform = client.get("/v1/prices", headers=h).json()  # any key reads the platform's
    assert platform["own"]["account_id"] == "*" and platform["platform"] is None
    assert {m["source"] for m in platform["effective"]["models"].values()} == {"platform"}


def test_a_partial_put_is_refused_naming_what_is_missing(
    client: TestClient, new_account: Any, memlog: Any
) -> None:
    h = new_account("acme")
    r = client.put(P, json={"currency": "USD", "models": {}}, headers=h)
    assert r.status_code == 422
    assert "credits_per_unit_micro" in r.text
    bad = {**TABLE, "currency": "usd"}
    assert client.put(P, json=bad, headers=h).status_code == 422
    price = {"input_per_mtok_micro": -1, "output_per_mtok_micro": 0}
    assert client.put(P, json={**TABLE, "models": {"m": price}}, headers=h).status_code == 422
    assert client.get(P, headers=h).json()["own"] is None
    assert not memlog.log.get(memlog.topics.prices)


def test_patch_changes_only_what_it_names(client: TestClient, new_account: Any) -> None:
    h = new_account("acme")
    assert client.put(P, json=TABLE, headers=h).status_code == 200
    new = {"input_per_mtok_micro": 1, "output_per_mtok_micro": 2}
    r = client.patch(P, json={"models": {"new-model": new, "vision-x": None}}, headers=h)
    assert r.status_code == 200, r.text
    own = r.json()["own"]
    assert sorted(own["models"]) == ["gpt-4o", "new-model"]
    assert own["credits_per_unit_micro"] == 100 * M and own["version"] == 2
    r = client.patch(P, json={"credits_per_unit_micro": 2 * M}, headers=h)
    assert r.json()["own"]["models"]["gpt-4o"]["output_per_mtok_micro"] == 10 * M
    assert client.patch(P, json={"currency": None}, headers=h).status_code == 422


def test_a_patch_without_any_table_needs_a_currency(client: TestClient, new_account: Any) -> None:
    h = new_account("acme")
    r = client.patch(P, json={"models": {}}, headers=h)
    assert r.status_code == 422 and r.json()["error"]["fields"][0]["field"] == "currency"


def test_tables_are_the_accounts_own_and_the_platforms_is_the_admins(
    client: TestClient, new_account: Any
) -> None:
    h = new_account("acme")
    other = new_account("other")
    assert client.put(P, json=TABLE, headers=h).status_code == 200
    assert client.get(P, headers=other).status_code == 404
    assert client.put(P, json=TABLE, headers=other).status_code == 404
    assert client.get("/v1/accounts/other/prices", headers=other).json()["own"] is None
    assert client.put("/v1/prices", json=PLATFORM, headers=h).status_code == 403
    assert client.patch("/v1/prices", json={"currency": "EUR"}, headers=h).status_code == 403


def test_a_cap_in_money_is_converted_once_and_shown_both_ways(
    client: TestClient, new_account: Any, memlog: Any
) -> None:
    h = new_account("acme")
    caps = {"text": {"daily_amount_micro": 12_500_000, "monthly_micro": 90 * 10**9}}
    settings = {"timezone": "UTC", "language": "en", "caps": caps, "fallback_message": "",
                "auto_downgrade": False, "premium_model": "m", "downgrade_model": "n",
                "throttle": "off"}  # fmt: skip
    r = client.put(S, json=settings, headers=h)
    assert r.status_code == 422
    assert r.json()["error"]["fields"][0]["field"] == "caps.text.daily_amount_micro"
    assert client.put(P, json=TABLE, headers=h).status_code == 200
    r = client.put(S, json=settings, headers=h)
    assert r.status_code == 200, r.text
    text = r.json()["caps"]["text"]
    # 12.50 USD at 100 credits per USD: 1,250 credits
    assert (text["daily_amount_micro"], text["daily_micro"]) == (12_500_000, 1_250 * M)
    # what the processors read: the credits
    rec = TenantSettingsRecord.from_bytes(memlog.log[memlog.topics.tenants][-1][1])
    assert rec.caps["text"].daily_micro == 1_250 * M
    # naming the cap in credits again drops its amount in money
    r = client.patch(S, json={"caps": {"text": {"daily_micro": 7}}}, headers=h)
    assert r.json()["caps"]["text"]["daily_amount_micro"] is None
    assert r.json()["caps"]["text"]["daily_micro"] == 7


def test_a_rate_change_converts_caps_and_thresholds_in_money_again(
    client: TestClient, new_account: Any, memlog: Any
) -> None:
    h = new_account("acme")
    assert client.put(P, json=TABLE, headers=h).status_code == 200
    caps = {"text": {"daily_amount_micro": 12_500_000}}
    assert client.patch(S, json={"caps": caps}, headers=h).status_code == 200
    policy = {"policy_id": "p1", "metric": "credits", "threshold_amount_micro": 2 * M,
              "window_seconds": 3600, "block": {"duration_seconds": 60}}  # fmt: skip
    r = client.post(POL, json=policy, headers=h)
    assert r.status_code == 201, r.text
    assert (r.json()["threshold"], r.json()["threshold_amount_micro"]) == (200 * M, 2 * M)
    assert client.patch(P, json={"credits_per_unit_micro": 10 * M}, headers=h).status_code == 200
    assert client.get(S, headers=h).json()["caps"]["text"]["daily_micro"] == 125 * M
    p1 = client.get(POL + "/p1", headers=h).json()
    assert (p1["threshold"], p1["version"]) == (20 * M, 2)
    last = PolicyRecord.from_bytes(memlog.log[memlog.topics.policies][-1][1])
    assert last.threshold == 20 * M  # published for the processors
    # a threshold named in credits again leaves money
    r = client.patch(POL + "/p1", json={"threshold": 5}, headers=h)
    assert (r.json()["threshold"], r.json()["threshold_amount_micro"]) == (5, None)


def test_a_currency_change_is_refused_while_amounts_are_in_money(
    client: TestClient, new_account: Any
) -> None:
    h = new_account("acme")
    assert client.put(P, json=TABLE, headers=h).status_code == 200
    assert client.patch(S, json={"caps": {"text": {"monthly_amount_micro": M}}}, headers=h)
    r = client.patch(P, json={"currency": "EUR"}, headers=h)
    assert r.status_code == 422 and "caps.text.monthly" in r.json()["error"]["message"]
    assert client.delete(P, headers=h).status_code == 422  # no currency left: refused too
    assert client.get(P, headers=h).json()["own"]["currency"] == "USD"


def test_a_threshold_in_money_is_for_credits_policies(client: TestClient, new_account: Any) -> None:
    h = new_account("acme")
    assert client.put(P, json=TABLE, headers=h).status_code == 200
    policy = {"metric": "tokens", "threshold_amount_micro": M, "window_seconds": 3600,
              "block": {"duration_seconds": 60}}  # fmt: skip
    r = client.post(POL, json=policy, headers=h)
    assert r.status_code == 422
    assert r.json()["error"]["fields"][0]["field"] == "threshold_amount_micro"
    r = client.post(POL, json={**policy, "metric": "credits", "threshold_amount_micro": None},
                    headers=h)  # fmt: skip
    assert r.status_code == 422 and r.json()["error"]["fields"][0]["field"] == "threshold"


def test_a_platform_rate_change_converts_the_accounts_that_use_it(
    client: TestClient, new_account: Any, admin: dict[str, str]
) -> None:
    h = new_account("acme")
    own = new_account("own")
    assert client.put("/v1/prices", json=PLATFORM, headers=admin).status_code == 200
    assert client.put("/v1/accounts/own/prices", json=TABLE, headers=own).status_code == 200
    caps = {"caps": {"text": {"daily_amount_micro": 3 * M}}}
    assert client.patch(S, json=caps, headers=h).json()["caps"]["text"]["daily_micro"] == 3 * M
    own_s = client.patch("/v1/accounts/own/settings", json=caps, headers=own).json()
    assert own_s["caps"]["text"]["daily_micro"] == 300 * M
    r = client.patch("/v1/prices", json={"credits_per_unit_micro": 2 * M}, headers=admin)
    assert r.status_code == 200, r.text
    assert client.get(S, headers=h).json()["caps"]["text"]["daily_micro"] == 6 * M
    own_caps = client.get("/v1/accounts/own/settings", headers=own).json()["caps"]
    assert own_caps["text"]["daily_micro"] == 300 * M  # its own rate: unchanged


def test_delete_falls_back_to_the_platforms_prices(
    client: TestClient, new_account: Any, admin: dict[str, str]
) -> None:
    h = new_account("acme")
    assert client.put("/v1/prices", json=PLATFORM, headers=admin).status_code == 200
    assert client.put(P, json=TABLE, headers=h).status_code == 200
    assert client.delete(P, headers=h).status_code == 204
    body = client.get(P, headers=h).json()
    assert body["own"] is None
    assert body["effective"]["credits_per_unit_micro"] == M
    assert body["effective"]["models"]["gpt-4o"] == {
        "input_per_mtok_micro": 9, "output_per_mtok_micro": 9, "categories": {},
        "source": "platform",
    }  # fmt: skip
    assert client.delete(P, headers=h).status_code == 404
