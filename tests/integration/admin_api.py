"""The admin key of the ``api`` fixture (``conftest.py``): a fresh deployment (its own topic
prefix, 2 usage partitions, topics created) and the API on it, the setup of the integration
tests that configure a tenant over HTTP and check what a real worker decides; and
:func:`tenant`, the account and bots such a test starts from."""

from __future__ import annotations

from fastapi.testclient import TestClient

ADMIN = "csa_" + "integration-admin-key-of-the-tests-" * 2
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN}"}


def tenant(api: TestClient, name: str, *bots: str) -> dict[str, str]:
    """Create account ``name`` (starter plan) and its ``bots`` with the admin key; the
    account's own key as request headers."""
    r = api.post("/v1/accounts", json={"account_id": name, "plan": "starter",
                                       "owner_email": f"o@{name}.test"},
                 headers=ADMIN_HEADERS)  # fmt: skip
    auth = {"Authorization": f"Bearer {r.json()['api_key']}"}
    for bot in bots:
        assert api.put(f"/v1/accounts/{name}/bots/{bot}", json={}, headers=auth).is_success
    return auth
