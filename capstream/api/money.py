"""Caps and policy thresholds given in money: converted to credits once, when configured.

A cap's ``daily_amount_micro`` / ``monthly_amount_micro`` and a credits policy's
``threshold_amount_micro`` are kept as the admin gave them; ``daily_micro`` /
``monthly_micro`` / ``threshold`` (what the processors decide on) are their conversion at the
account's rate (``core.pricing.amount_to_credits``). When the rate changes (the account's
table, or the platform's for an account without one), :func:`reconvert` publishes the
settings and policies whose conversion changed; the core never converts per event.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from capstream.api.context import ApiContext
from capstream.api.errors import FieldError, InvalidError, UnavailableError
from capstream.core.pricing import PLATFORM, PriceTable, amount_to_credits, effective_table
from capstream.streams.price_records import PriceTableRecord, core_table
from capstream.streams.records import PolicyRecord, TenantSettingsRecord


class PriceReads(Protocol):
    """The prices topic as the API's view holds it."""

    def prices(self, account_id: str) -> PriceTableRecord | None: ...
    def tenant_ids(self) -> list[str]: ...


def _reads(ctx: ApiContext) -> PriceReads:
    if not hasattr(ctx.view, "prices"):
        raise UnavailableError("this API's view does not read the prices topic")
    return ctx.view  # type: ignore[return-value]


def own_table(ctx: ApiContext, account_id: str) -> PriceTableRecord | None:
    """The account's own price table (``*``: the platform's), if any."""
    return _reads(ctx).prices(account_id)


def account_prices(
    ctx: ApiContext,
    account_id: str,
    *,
    own: PriceTableRecord | bool | None = True,
    platform: PriceTableRecord | bool | None = True,
) -> PriceTable | None:
    """The prices of the account's calls (its table over the platform's). ``own`` /
    ``platform``: a table to use instead of the held one (a write being checked)."""
    o = own_table(ctx, account_id) if own is True else own
    p = own_table(ctx, PLATFORM) if platform is True else platform
    return effective_table(
        None if o is None or o is False else core_table(o),
        None if p is None or p is False else core_table(p),
    )


def money_table(
    ctx: ApiContext, account_id: str, rec: TenantSettingsRecord | PolicyRecord
) -> PriceTable | None:
    """The account's prices when ``rec`` gives an amount in money (else None: not needed,
    and an API whose view reads no prices still takes amounts in credits)."""
    if isinstance(rec, PolicyRecord):
        needed = rec.threshold_amount_micro is not None
    else:
        needed = any(
            c.daily_amount_micro is not None or c.monthly_amount_micro is not None
            for c in rec.caps.values()
        )
    return account_prices(ctx, account_id) if needed else None


def _invalid(field: str, msg: str) -> InvalidError:
    return InvalidError(msg, fields=[FieldError(field=field, message=msg)])


def _no_table(field: str) -> InvalidError:
    return _invalid(
        field,
        f"{field} is an amount of money, but the account has no currency: set its price "
        "table first (PUT /v1/accounts/{account_id}/prices) or give the amount in credits",
    )


def priced_settings(rec: TenantSettingsRecord, table: PriceTable | None) -> TenantSettingsRecord:
    """``rec`` with each cap given in money converted to micro-credits at ``table``'s rate."""
    caps = dict(rec.caps)
    changed = False
    for cat, cc in rec.caps.items():
        update: dict[str, int] = {}
        for period in ("daily", "monthly"):
            amount = getattr(cc, f"{period}_amount_micro")
            if amount is None:
                continue
            if table is None:
                raise _no_table(f"caps.{cat}.{period}_amount_micro")
            credits = amount_to_credits(amount, table.credits_per_unit_micro)
            if credits >= 1 << 63:
                raise _invalid(
                    f"caps.{cat}.{period}_amount_micro", "the amount is too large at this rate"
                )
            if getattr(cc, f"{period}_micro") != credits:
                update[f"{period}_micro"] = credits
        if update:
            caps[cat] = cc.model_copy(update=update)
            changed = True
    return rec.model_copy(update={"caps": caps}) if changed else rec


def priced_policy(rec: PolicyRecord, table: PriceTable | None) -> PolicyRecord:
    """``rec`` with a threshold given in money converted to micro-credits."""
    amount = rec.threshold_amount_micro
    if amount is None:
        return rec
    field = "threshold_amount_micro"
    if rec.metric != "credits":
        raise _invalid(field, f"a threshold in money is for the credits metric, not {rec.metric}")
    if table is None:
        raise _no_table(field)
    credits = amount_to_credits(amount, table.credits_per_unit_micro)
    if credits <= 0:
        raise _invalid(field, "the amount is less than one micro-credit at the account's rate")
    if credits >= 1 << 63:
        raise _invalid(field, "the amount is too large at the account's rate")
    return rec if rec.threshold == credits else rec.model_copy(update={"threshold": credits})


def money_fields(ctx: ApiContext, account_id: str) -> list[str]:
    """What the account gives in money: ``caps.<cat>.<period>`` and ``policy <id>``."""
    out = []
    tenant = ctx.view.tenant(account_id)
    if tenant is not None:
        for cat, cc in tenant.caps.items():
            for period in ("daily", "monthly"):
                if getattr(cc, f"{period}_amount_micro") is not None:
                    out.append(f"caps.{cat}.{period}")
    out += [
        f"policy {p.policy_id}"
        for p in ctx.view.policies(account_id)
        if p.threshold_amount_micro is not None
    ]
    return out


def inheriting_accounts(ctx: ApiContext) -> list[str]:
    """Accounts whose prices and rate are the platform's (no table of their own)."""
    reads = _reads(ctx)
    return [a for a in reads.tenant_ids() if reads.prices(a) is None]


async def reconvert(ctx: ApiContext, account_ids: list[str]) -> int:
    """Publish the settings and policies of ``account_ids`` whose money amounts convert to
    other credits now (after a price table write); returns how many records were written."""
    from capstream.api.routes_accounts import publish_tenant

    written = 0
    now = ctx.clock()
    for account_id in account_ids:
        table = account_prices(ctx, account_id)
        tenant = ctx.view.tenant(account_id)
        if tenant is not None:
            priced = priced_settings(tenant, table)
            if priced is not tenant:
                await publish_tenant(
                    ctx,
                    priced.model_copy(update={"version": tenant.version + 1, "updated_at_ms": now}),
                )
                written += 1
        for p in ctx.view.policies(account_id):
            priced_p = priced_policy(p, table)
            if priced_p is p:
                continue
            rec = priced_p.model_copy(update={"version": p.version + 1, "updated_at_ms": now})
            w = await ctx.publisher.publish(
                ctx.topics.policies, f"{account_id}/{p.policy_id}", rec.to_bytes()
            )
            await asyncio.to_thread(ctx.view.wait_for, w.topic, w.partition, w.offset)
            written += 1
    return written
