"""Price tables: validation, tenant over platform per model, rounding, money to credits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from capstream.core.pricing import (
    PLATFORM,
    ModelPrice,
    PriceError,
    PriceTable,
    TokenPrice,
    amount_to_credits,
    credits_for,
    effective_table,
)

M = 1_000_000
PLATFORM_TABLE = PriceTable(
    PLATFORM, "USD", models={"a": ModelPrice(3 * M, 15 * M), "b": ModelPrice(M, 2 * M)}
)


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"currency": "usd"}, "currency"),
        ({"currency": "US"}, "currency"),
        ({"credits_per_unit_micro": 0}, "credits_per_unit_micro"),
        ({"models": {"m": ModelPrice(-1, 0)}}, "models.m.input_per_mtok_micro"),
        ({"models": {"m": ModelPrice(0, 10**13)}}, "models.m.output_per_mtok_micro"),
        ({"models": {"m": ModelPrice(0, 0, {"video": TokenPrice(1, 1)})}}, "unknown category"),
        ({"models": {"": ModelPrice(0, 0)}}, "model name"),
    ],
)
def test_a_bad_table_is_refused_naming_what_to_fix(changes: dict[str, object], says: str) -> None:
    fields: dict[str, object] = {"account_id": "t", "currency": "USD", **changes}
    with pytest.raises(PriceError, match=says):
        PriceTable(**fields)  # type: ignore[arg-type]


def test_the_tenant_wins_per_model_and_the_platform_fills_the_rest() -> None:
    tenant = PriceTable("t", "USD", 2 * M, {"a": ModelPrice(M, M)})
    t = effective_table(tenant, PLATFORM_TABLE)
    assert t is not None
    assert credits_for(t, "a", "text", M, 0) == 2 * M  # the tenant's price, at its rate
    assert credits_for(t, "b", "text", M, 0) == 2 * M  # the platform's price, the tenant's rate
    assert credits_for(t, "c", "text", M, 0) is None


def test_the_platform_prices_apply_only_in_the_same_currency() -> None:
    eur = PriceTable("t", "EUR", models={"x": ModelPrice(M, M)})
    t = effective_table(eur, PLATFORM_TABLE)
    assert t is eur and credits_for(t, "a", "text", 1, 1) is None
    assert effective_table(None, PLATFORM_TABLE) is PLATFORM_TABLE
    assert effective_table(None, None) is None


def test_a_category_price_applies_to_its_category_only() -> None:
    t = PriceTable("t", "USD", models={"v": ModelPrice(M, M, {"vision": TokenPrice(5 * M, 0)})})
    assert credits_for(t, "v", "vision", M, M) == 5 * M
    assert credits_for(t, "v", "text", M, M) == 2 * M


@given(
    tin=st.integers(0, 10**9), tout=st.integers(0, 10**9),
    pin=st.integers(0, 10**12), pout=st.integers(0, 10**12), rate=st.integers(1, 10**12),
)  # fmt: skip
def test_credits_are_the_cost_rounded_up_and_bounded(
    tin: int, tout: int, pin: int, pout: int, rate: int
) -> None:
    t = PriceTable("t", "USD", rate, {"m": ModelPrice(pin, pout)})
    got = credits_for(t, "m", "text", tin, tout)
    assert got is not None
    exact = (tin * pin + tout * pout) * rate
    if got < 10**15:
        assert (got - 1) * 10**12 < exact <= got * 10**12
    else:
        assert exact >= 10**15 * 10**12 - 10**12


def test_money_to_credits_rounds_down() -> None:
    assert amount_to_credits(12_500_000, M) == 12_500_000  # 12.50 USD = 12.5 credits
    assert amount_to_credits(12_500_000, 100 * M) == 1_250_000_000
    assert amount_to_credits(3, 333_333) == 0
