"""Set up the demo's tenants through the Policy API, as an operator and tenant admins would:
the platform's price table and accounts (admin key), bots, cap behaviour and policies (each
tenant's own key)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from capstream.errors import CapstreamError
from capstream.simulator import TenantScenario


class ProvisionError(CapstreamError):
    """The Policy API refused a step of the demo's setup."""


@dataclass(frozen=True, slots=True)
class TenantLogin:
    """A provisioned tenant and the API key to log in to the dashboard with."""

    account_id: str
    plan: str
    api_key: str
    story: str


# A policy's optional fields at their "off" values: PUT needs the whole body.
_WHOLE_POLICY: dict[str, object] = {
    "name": "", "scope": "account_each_bot", "bot_id": None, "category": None,
    "alert": None, "block": None, "enabled": True,
}  # fmt: skip


PLATFORM_PRICES: dict[str, object] = {
    "currency": "USD",
    "credits_per_unit_micro": 1_000_000,  # one credit per US dollar
    "models": {
        "claude-sonnet-4-6": {"input_per_mtok_micro": 3_000_000,
                              "output_per_mtok_micro": 15_000_000},
        "claude-haiku": {"input_per_mtok_micro": 800_000, "output_per_mtok_micro": 4_000_000},
    },
}  # fmt: skip
"""The demo platform's default prices (per 1M input / output tokens): what the dashboard's
Prices card shows every tenant, and what lets caps be set in dollars (docs/administration.md)."""


def _check(r: httpx.Response, what: str) -> dict[str, Any]:
    if r.is_success:
        return r.json() if r.content else {}
    try:
        message = r.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = r.text[:300]
    raise ProvisionError(f"{what}: HTTP {r.status_code}: {message}")


def provision(
    base_url: str, admin_key: str, tenants: tuple[TenantScenario, ...]
) -> list[TenantLogin]:
    """Create (or reuse) every tenant; returns one fresh key per tenant."""
    admin = {"Authorization": f"Bearer {admin_key}"}
    logins: list[TenantLogin] = []
    with httpx.Client(base_url=base_url, timeout=30.0, trust_env=False) as http:
        _check(http.put("/v1/prices", json=PLATFORM_PRICES, headers=admin), "platform prices")
        for t in tenants:
            a = t.account_id
            r = http.post(
                "/v1/accounts",
                json={"account_id": a, "owner_email": t.owner_email, "plan": t.plan,
                      "timezone": t.timezone},
                headers=admin,
            )  # fmt: skip
            if r.status_code == 409:  # kept from an earlier run: mint a key to log in with
                key = _check(http.post(f"/v1/accounts/{a}/keys", headers=admin), f"key of {a}")
            else:
                key = _check(r, f"account {a}")
            auth = {"Authorization": f"Bearer {key['api_key']}"}
            for bot in t.bots:
                r = http.put(f"/v1/accounts/{a}/bots/{bot.bot_id}", json={"name": bot.name},
                             headers=auth)  # fmt: skip
                _check(r, f"bot {a}/{bot.bot_id}")
            body = {"timezone": t.timezone, **t.settings}
            _check(  # PATCH: the scenario names only the settings it changes
                http.patch(f"/v1/accounts/{a}/settings", json=body, headers=auth),
                f"settings of {a}",
            )
            for policy in t.policies:
                p = {**_WHOLE_POLICY, **policy}  # PUT replaces: every field
                pid = p.pop("policy_id")
                r = http.put(f"/v1/accounts/{a}/policies/{pid}", json=p, headers=auth)
                _check(r, f"policy {a}/{pid}")
            logins.append(TenantLogin(a, t.plan, key["api_key"], t.story))
    return logins
