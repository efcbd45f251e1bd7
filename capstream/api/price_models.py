"""Bodies and views of price tables (issue 24, budgets in money): prices per model in a
currency, and the rate that turns money into credits."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from capstream.api.models import _Body
from capstream.core.pricing import MAX_PRICE_MICRO, MAX_RATE_MICRO
from capstream.streams.price_records import CategoryPriceRecord, ModelPriceRecord, PriceTableRecord
from capstream.streams.records import Category as CategoryName

Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code, e.g. USD")]
PriceMicro = Annotated[int, Field(ge=0, le=MAX_PRICE_MICRO)]
"""Micro-units of the currency per million tokens (3.00 USD per 1M tokens: 3000000)."""
RateMicro = Annotated[int, Field(gt=0, le=MAX_RATE_MICRO)]
ModelName = Annotated[str, Field(min_length=1, max_length=200)]


class CategoryPrice(_Body):
    """A model's price for one category (e.g. vision), in place of the model's own."""

    input_per_mtok_micro: PriceMicro
    output_per_mtok_micro: PriceMicro


class ModelPrice(_Body):
    """A model's price: micro-units of the currency per million input and output tokens."""

    input_per_mtok_micro: PriceMicro
    output_per_mtok_micro: PriceMicro
    categories: dict[CategoryName, CategoryPrice] = Field(default_factory=dict)
    """Other prices for some categories (left out: the model's price for every category)."""

    def record(self) -> ModelPriceRecord:
        return ModelPriceRecord(
            input_per_mtok_micro=self.input_per_mtok_micro,
            output_per_mtok_micro=self.output_per_mtok_micro,
            categories={
                c: CategoryPriceRecord(
                    input_per_mtok_micro=p.input_per_mtok_micro,
                    output_per_mtok_micro=p.output_per_mtok_micro,
                )
                for c, p in self.categories.items()
            },
        )


class PriceTableBody(_Body):
    """A whole price table, for ``PUT`` (every field required: 422 naming what is missing;
    ``PATCH`` changes only some)."""

    currency: Currency
    credits_per_unit_micro: RateMicro
    """Micro-credits one unit of the currency is worth: 1000000 makes one credit one unit
    (credits_micro are then micro-units of the currency); 100000000: one unit is 100 credits."""
    models: dict[ModelName, ModelPrice]
    """Prices keyed by model name, as the SDK reports ``model`` (exact, case-sensitive)."""

    def record(self, account_id: str, version: int, now_ms: int, by: str) -> PriceTableRecord:
        return PriceTableRecord(
            account_id=account_id,
            currency=self.currency,
            credits_per_unit_micro=self.credits_per_unit_micro,
            models={name: m.record() for name, m in self.models.items()},
            version=version,
            updated_at_ms=now_ms,
            updated_by=by,
        )


class PriceTablePatchBody(_Body):
    """Only what to change (``PATCH``): in ``models``, each model named is set whole (its
    price and its category prices) and ``null`` removes it; models not named are kept."""

    currency: Currency | None = None
    credits_per_unit_micro: RateMicro | None = None
    models: dict[ModelName, ModelPrice | None] | None = None


class EffectivePrice(BaseModel):
    """A model's price as it applies to the account, and whose table it comes from."""

    input_per_mtok_micro: int
    output_per_mtok_micro: int
    categories: dict[CategoryName, CategoryPriceRecord]
    source: Literal["account", "platform"]


class EffectivePrices(BaseModel):
    """What prices the account's calls: its currency, rate and every model priced."""

    currency: str
    credits_per_unit_micro: int
    models: dict[str, EffectivePrice]


class PricesOut(BaseModel):
    """An account's price table, the platform's, and the prices that apply (the account's
    models over the platform's; the platform's only in the same currency)."""

    account_id: str
    own: PriceTableRecord | None
    platform: PriceTableRecord | None
    effective: EffectivePrices | None
    """None: no table prices the account's calls (events without credits count 0)."""
