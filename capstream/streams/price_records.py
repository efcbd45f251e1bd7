"""The wire records of price tables (budgets in money, issue 24): ``PriceTable`` records on
the compacted prices topic, written by the Policy API, read by the SDK's price books."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from capstream.core.pricing import ModelPrice, PriceTable, TokenPrice
from capstream.streams.records import Category, EpochMs, Id, NonNeg, WireRecord


class CategoryPriceRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    input_per_mtok_micro: NonNeg
    output_per_mtok_micro: NonNeg


class ModelPriceRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    input_per_mtok_micro: NonNeg
    """Micro-units of the currency per million input tokens."""
    output_per_mtok_micro: NonNeg
    categories: dict[Category, CategoryPriceRecord] = Field(default_factory=dict)
    """Other prices of the model for some categories."""


class PriceTableRecord(WireRecord):
    """An account's prices per model (``account_id`` ``*``: the platform's default)."""

    schema_name: ClassVar[str] = "PriceTable"

    account_id: Id
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    credits_per_unit_micro: Annotated[int, Field(gt=0)] = 1_000_000
    """Micro-credits one unit of the currency is worth."""
    models: dict[str, ModelPriceRecord] = Field(default_factory=dict)
    version: NonNeg = 0
    updated_at_ms: EpochMs = 0
    updated_by: str = ""


def core_table(rec: PriceTableRecord) -> PriceTable:
    """The core's price table of a wire record (raises ``PriceError`` if unusable)."""
    return PriceTable(
        account_id=rec.account_id,
        currency=rec.currency,
        credits_per_unit_micro=rec.credits_per_unit_micro,
        models={
            name: ModelPrice(
                m.input_per_mtok_micro,
                m.output_per_mtok_micro,
                {
                    c: TokenPrice(p.input_per_mtok_micro, p.output_per_mtok_micro)
                    for c, p in m.categories.items()
                },
            )
            for name, m in rec.models.items()
        },
        version=rec.version,
    )
