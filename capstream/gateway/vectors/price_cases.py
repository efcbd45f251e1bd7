"""``prices.json``: price tables, the credits each SDK derives from tokens, money to credits."""

from __future__ import annotations

from typing import Any

from capstream.core.pricing import PLATFORM, amount_to_credits, credits_for, effective_table
from capstream.gateway.pricebook import core_table
from capstream.gateway.vectors.common import jsonable
from capstream.streams.price_records import (
    CategoryPriceRecord,
    ModelPriceRecord,
    PriceTableRecord,
)

M = 1_000_000


def _m(i: int, o: int, **cats: tuple[int, int]) -> ModelPriceRecord:
    return ModelPriceRecord(
        input_per_mtok_micro=i,
        output_per_mtok_micro=o,
        categories={
            c: CategoryPriceRecord(input_per_mtok_micro=a, output_per_mtok_micro=b)
            for c, (a, b) in cats.items()
        },
    )


def _tables() -> list[PriceTableRecord]:
    return [
        PriceTableRecord(
            account_id=PLATFORM,
            currency="USD",
            models={
                "claude-sonnet-4-6": _m(3 * M, 15 * M, vision=(4 * M, 15 * M)),
                "claude-haiku": _m(800_000, 4 * M),
                "gpt-4o": _m(2_500_000, 10 * M),
                "free-model": _m(0, 0),
                "max-price": _m(10**12, 10**12),
            },
            version=3,
        ),
        # acct-own: its own gpt-4o price wins, 1 USD = 100 credits, the rest from the platform
        PriceTableRecord(
            account_id="acct-own",
            currency="USD",
            credits_per_unit_micro=100 * M,
            models={"gpt-4o": _m(2 * M, 8 * M, audio=(40 * M, 80 * M)), "own-model": _m(1, 1)},
            version=1,
        ),
        # acct-eur: another currency: the platform's (USD) prices do not apply to it
        PriceTableRecord(
            account_id="acct-eur",
            currency="EUR",
            models={"mistral-large": _m(2 * M, 6 * M)},
        ),
        # acct-rate: only a rate of its own (1 USD = 0.5 credits), every price the platform's
        PriceTableRecord(account_id="acct-rate", currency="USD", credits_per_unit_micro=M // 2),
    ]


_CALLS = (
    # account, model, category, tokens_in, tokens_out
    ("acct-none", "claude-sonnet-4-6", "text", 420, 180),
    ("acct-none", "claude-sonnet-4-6", "vision", 420, 180),
    ("acct-none", "claude-sonnet-4-6", "audio", 420, 180),
    ("acct-none", "claude-haiku", "text", 1, 0),
    ("acct-none", "claude-haiku", "text", 0, 0),
    ("acct-none", "claude-haiku", "text", 1_000_000_000, 1_000_000_000),
    ("acct-none", "free-model", "text", 5_000, 5_000),
    ("acct-none", "max-price", "text", 1_000_000_000, 1_000_000_000),
    ("acct-none", "max-price", "documents", 1, 0),
    ("acct-none", "unknown-model", "text", 100, 100),
    ("acct-none", "", "text", 100, 100),
    ("acct-none", "GPT-4O", "text", 100, 100),
    ("acct-own", "gpt-4o", "text", 1_000, 500),
    ("acct-own", "gpt-4o", "audio", 1_000, 500),
    ("acct-own", "claude-sonnet-4-6", "text", 420, 180),
    ("acct-own", "own-model", "text", 3, 0),
    ("acct-own", "unknown-model", "text", 3, 0),
    ("acct-eur", "mistral-large", "text", 12_345, 678),
    ("acct-eur", "claude-sonnet-4-6", "text", 420, 180),
    ("acct-rate", "gpt-4o", "text", 1_000, 1_000),
    ("acct-rate", "claude-haiku", "documents", 7, 3),
    ("acct-none", "gpt-4o", "text", 999_999, 1),
)

_AMOUNTS = (
    (0, M),
    (1, M),
    (12_500_000, M),
    (12_500_000, 100 * M),
    (12_500_000, M // 2),
    (3, 333_333),
    (999_999_999_999, 10**12),
)


def price_vectors() -> dict[str, Any]:
    records = _tables()
    tables = {r.account_id: core_table(r) for r in records}
    cases = []
    for account, model, category, tin, tout in _CALLS:
        t = effective_table(tables.get(account), tables[PLATFORM])
        credits = None if t is None else credits_for(t, model, category, tin, tout)
        cases.append(
            {
                "account_id": account,
                "model": model,
                "category": category,
                "tokens_in": tin,
                "tokens_out": tout,
                "credits_micro": credits,
            }
        )
    return {
        "about": (
            "Price tables (PriceTable records as JSON and as Avro single-object hex); the "
            "credits_micro an SDK derives for an event given no credits (null: the model is "
            "unpriced, the event is recorded with 0); money amounts to credits (caps and "
            "thresholds in money). Rules: capstream/core/pricing.py"
        ),
        "tables": [
            {"record": jsonable(r.model_dump()), "hex": r.to_bytes().hex()} for r in records
        ],
        "cases": jsonable(cases),
        "amounts": jsonable(
            [
                {
                    "amount_micro": a,
                    "credits_per_unit_micro": rate,
                    "credits_micro": amount_to_credits(a, rate),
                }
                for a, rate in _AMOUNTS
            ]
        ),
    }
