"""Budgets in money: price tables per model, tokens to credits, and money to credits.

Units (integers only, never floats for money):

* A price is in **micro-units of the table's currency per million tokens**, input and
  output apart (``input_per_mtok_micro=3_000_000`` is 3.00 USD per 1M input tokens).
* ``credits_per_unit_micro`` converts money to credits: the micro-credits one whole unit of
  the currency is worth (default 1,000,000: one credit is one unit of the currency, so
  ``credits_micro`` are micro-units of it).
* The credits of one call: ``ceil((tokens_in * input + tokens_out * output) * rate / 10^12)``
  (rounded up to a whole micro-credit: a call is never counted as free because it is small).
* A cap or a policy threshold given in money: ``floor(amount_micro * rate / 10^6)``
  micro-credits (rounded down: the budget is never above the amount the admin wrote).
  Converted once, when it is configured; the core decides on credits as before.

The platform's table (account ``*``) is the default; a tenant's own table wins per model
and sets the tenant's currency and rate. The platform's models apply to a tenant only when
both tables have the same currency. A model in no table is *unpriced*: its credits cannot
be derived (the SDK records 0 and counts it; see ``gateway/pricebook.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from capstream.core.errors import SettingsError
from capstream.core.limits import MAX_CREDITS_MICRO
from capstream.core.models.vocabulary import CATEGORY_INDEX

PLATFORM = "*"
"""The account id of the platform-wide default table."""
DEFAULT_CREDITS_PER_UNIT_MICRO = 1_000_000
"""One credit per unit of the currency."""
MAX_PRICE_MICRO = 10**12
"""At most 1,000,000 units of currency per million tokens."""
MAX_RATE_MICRO = 10**12
"""At most 1,000,000 credits per unit of currency."""
_SCALE = 10**12


class PriceError(SettingsError):
    """A price table that cannot be used as written."""


@dataclass(frozen=True, slots=True)
class TokenPrice:
    """Micro-units of currency per million input and per million output tokens."""

    input_per_mtok_micro: int
    output_per_mtok_micro: int


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """A model's price, and other prices for some categories (e.g. vision)."""

    input_per_mtok_micro: int
    output_per_mtok_micro: int
    categories: Mapping[str, TokenPrice] = field(default_factory=dict)

    def for_category(self, category: str) -> TokenPrice | ModelPrice:
        """The price of a call of ``category``: its own if the model has one, else the model's."""
        return self.categories.get(category, self)


@dataclass(frozen=True, slots=True)
class PriceTable:
    """One account's price table (``account_id == "*"``: the platform's), validated."""

    account_id: str
    currency: str
    credits_per_unit_micro: int = DEFAULT_CREDITS_PER_UNIT_MICRO
    models: Mapping[str, ModelPrice] = field(default_factory=dict)
    version: int = 0

    def __post_init__(self) -> None:
        problem = table_problem(self)
        if problem is not None:
            raise PriceError(problem)

    def price(self, model: str, category: str) -> TokenPrice | ModelPrice | None:
        """The price of a call of ``model`` in ``category``; None if the model is unpriced."""
        mp = self.models.get(model)
        return None if mp is None else mp.for_category(category)


def _price_problem(where: str, p: TokenPrice | ModelPrice) -> str | None:
    for name in ("input_per_mtok_micro", "output_per_mtok_micro"):
        v = getattr(p, name)
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_PRICE_MICRO:
            return (
                f"{where}.{name} must be a whole number of micro-units from 0 to {MAX_PRICE_MICRO}"
            )
    return None


def table_problem(t: PriceTable) -> str | None:
    """What is wrong with a price table (the first thing), or None."""
    if not t.account_id:
        return "a price table needs an account_id"
    if len(t.currency) != 3 or not t.currency.isascii() or not t.currency.isupper():
        return f"currency must be a 3-letter ISO 4217 code such as 'USD', not {t.currency!r}"
    rate = t.credits_per_unit_micro
    if isinstance(rate, bool) or not isinstance(rate, int) or not 0 < rate <= MAX_RATE_MICRO:
        return f"credits_per_unit_micro must be a whole number from 1 to {MAX_RATE_MICRO}"
    for model, mp in t.models.items():
        if not model or len(model) > 200:
            return "a model name must be 1-200 characters"
        problem = _price_problem(f"models.{model}", mp)
        if problem is not None:
            return problem
        for cat, cp in mp.categories.items():
            if cat not in CATEGORY_INDEX:
                return f"models.{model}.categories: unknown category {cat!r}"
            problem = _price_problem(f"models.{model}.categories.{cat}", cp)
            if problem is not None:
                return problem
    return None


def effective_table(tenant: PriceTable | None, platform: PriceTable | None) -> PriceTable | None:
    """The table that prices a tenant's calls: the tenant's models over the platform's
    (tenant wins per model), in the tenant's currency and rate; the platform's models only
    when their currency is the tenant's. None when there is neither table."""
    if tenant is None:
        return platform
    if platform is None or platform.currency != tenant.currency or not platform.models:
        return tenant
    return PriceTable(
        account_id=tenant.account_id,
        currency=tenant.currency,
        credits_per_unit_micro=tenant.credits_per_unit_micro,
        models={**platform.models, **tenant.models},
        version=tenant.version,
    )


def credits_for(
    table: PriceTable, model: str, category: str, tokens_in: int, tokens_out: int
) -> int | None:
    """The micro-credits of one call (rounded up, at most ``MAX_CREDITS_MICRO``); None if
    ``model`` is unpriced in ``table``."""
    p = table.price(model, category)
    if p is None:
        return None
    cost = tokens_in * p.input_per_mtok_micro + tokens_out * p.output_per_mtok_micro
    credits = -(-cost * table.credits_per_unit_micro // _SCALE)
    return min(credits, MAX_CREDITS_MICRO)


def amount_to_credits(amount_micro: int, credits_per_unit_micro: int) -> int:
    """Micro-credits of a budget of ``amount_micro`` micro-units of currency (rounded down)."""
    return amount_micro * credits_per_unit_micro // 1_000_000


def credits_to_amount(credits_micro: int, credits_per_unit_micro: int) -> int:
    """Micro-units of currency a number of micro-credits is worth (rounded down): to show."""
    return credits_micro * 1_000_000 // credits_per_unit_micro


__all__ = [
    "DEFAULT_CREDITS_PER_UNIT_MICRO",
    "PLATFORM",
    "ModelPrice",
    "PriceError",
    "PriceTable",
    "TokenPrice",
    "amount_to_credits",
    "credits_for",
    "credits_to_amount",
    "effective_table",
    "table_problem",
]
