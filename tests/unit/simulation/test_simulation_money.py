"""A simulation draft given in money is converted at the account's rate, as the API saves it."""

from __future__ import annotations

import pytest

from capstream.core.pricing import PriceTable
from capstream.simulation import SimulationError, check_draft, parse_body
from capstream.streams.records import TenantSettingsRecord

M = 1_000_000
NOW = 1_795_000_000_000
TENANT = TenantSettingsRecord(account_id="acme")
PRICES = PriceTable("acme", "USD", 100 * M)  # 1 USD = 100 credits


def test_a_cap_draft_in_money_is_tried_in_credits_at_the_accounts_rate() -> None:
    body = parse_body({"settings": {"caps": {"text": {"daily_amount_micro": 2 * M}}}})
    draft = check_draft("acme", body, [], TENANT, NOW, PRICES)
    assert draft.settings is not None
    assert draft.settings.caps["text"].daily_micro == 200 * M


def test_a_threshold_draft_in_money_is_tried_in_credits() -> None:
    policy = {"metric": "credits", "threshold_amount_micro": M // 2, "window_seconds": 3600,
              "block": {"duration_seconds": 60}}  # fmt: skip
    draft = check_draft("acme", parse_body({"policy": policy}), [], TENANT, NOW, PRICES)
    assert draft.policy is not None and draft.policy.threshold == 50 * M


def test_a_draft_in_money_without_prices_names_the_field() -> None:
    body = parse_body({"settings": {"caps": {"text": {"daily_amount_micro": 2 * M}}}})
    with pytest.raises(SimulationError) as err:
        check_draft("acme", body, [], TENANT, NOW)
    assert err.value.field == "settings.caps.text.daily_amount_micro"
