"""Routes for price tables: an account's own (tenant) and the platform's default."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Path, Response

from capstream.api.context import ApiContext, CallerDep, Ctx, account_scope, require_admin
from capstream.api.errors import FieldError, InvalidError, NotFoundError, error_responses
from capstream.api.models import ID_PATTERN
from capstream.api.money import (
    account_prices,
    inheriting_accounts,
    money_fields,
    own_table,
    priced_policy,
    priced_settings,
    reconvert,
)
from capstream.api.price_models import (
    EffectivePrice,
    EffectivePrices,
    PricesOut,
    PriceTableBody,
    PriceTablePatchBody,
)
from capstream.core.pricing import PLATFORM, PriceError
from capstream.streams.price_records import PriceTableRecord, core_table

router = APIRouter(tags=["prices"])
AccountId = Annotated[str, Path(pattern=ID_PATTERN, description="The account")]
_ACCOUNT = "/v1/accounts/{account_id}/prices"
_PLATFORM = "/v1/prices"


def _out(ctx: ApiContext, account_id: str) -> PricesOut:
    own = own_table(ctx, account_id)
    platform = own_table(ctx, PLATFORM)
    table = account_prices(ctx, account_id, own=own, platform=platform)
    effective = None
    if table is not None:
        mine = own.models if own is not None else {}
        models = {}
        for name in sorted(table.models):
            rec = mine.get(name) or (platform.models[name] if platform is not None else None)
            if rec is None:
                continue
            models[name] = EffectivePrice(
                input_per_mtok_micro=rec.input_per_mtok_micro,
                output_per_mtok_micro=rec.output_per_mtok_micro,
                categories=dict(rec.categories),
                source="account" if name in mine and account_id != PLATFORM else "platform",
            )
        effective = EffectivePrices(
            currency=table.currency,
            credits_per_unit_micro=table.credits_per_unit_micro,
            models=models,
        )
    return PricesOut(
        account_id=account_id, own=own, platform=platform if account_id != PLATFORM else None,
        effective=effective,
    )  # fmt: skip


def _checked(rec: PriceTableRecord) -> PriceTableRecord:
    try:
        core_table(rec)
    except PriceError as exc:
        msg = str(exc)
        field = msg.split(" ", 1)[0] if msg.startswith(("models.", "currency")) else "body"
        raise InvalidError(msg, fields=[FieldError(field=field, message=msg)]) from exc
    return rec


def _check_accounts(
    ctx: ApiContext, accounts: list[str], rec: PriceTableRecord | None, account_id: str
) -> None:
    """Refuse (422) a write that would change the currency of an account that gives caps or
    thresholds in money (they would be read in another currency), or whose amounts would
    not convert at the new rate; nothing is written then."""
    for a in accounts:
        used = money_fields(ctx, a)
        if not used:
            continue
        before = account_prices(ctx, a)
        after = account_prices(
            ctx,
            a,
            own=rec if a == account_id else True,
            platform=rec if account_id == PLATFORM else True,
        )
        was = None if before is None else before.currency
        will = None if after is None else after.currency
        if was != will:
            where = f"account {a}: " if a != account_id else ""
            msg = (
                f"{where}{', '.join(used)} are given in {was}; the currency would become "
                f"{will or 'none'}: give them in credits first, or keep the currency"
            )
            raise InvalidError(msg, fields=[FieldError(field="currency", message=msg)])
        tenant = ctx.view.tenant(a)
        if tenant is not None:
            priced_settings(tenant, after)
        for p in ctx.view.policies(a):
            priced_policy(p, after)


async def _write(ctx: ApiContext, account_id: str, rec: PriceTableRecord | None) -> None:
    accounts = [account_id] if account_id != PLATFORM else inheriting_accounts(ctx)
    _check_accounts(ctx, accounts, rec, account_id)
    value = None if rec is None else rec.to_bytes()
    w = await ctx.publisher.publish(ctx.topics.prices, account_id, value)
    await asyncio.to_thread(ctx.view.wait_for, w.topic, w.partition, w.offset)
    await reconvert(ctx, accounts)


def _patched(
    current: PriceTableRecord | None, body: PriceTablePatchBody, fallback: PriceTableRecord | None
) -> PriceTableBody:
    base = current or fallback
    currency = body.currency or (base.currency if base is not None else None)
    if currency is None:
        msg = "currency is required: there is no price table to take it from yet"
        raise InvalidError(msg, fields=[FieldError(field="currency", message=msg)])
    if "currency" in body.model_fields_set and body.currency is None:
        msg = "currency cannot be null; leave it out to keep it"
        raise InvalidError(msg, fields=[FieldError(field="currency", message=msg)])
    rate = body.credits_per_unit_micro or (
        base.credits_per_unit_micro if base is not None else 1_000_000
    )
    models = {name: m.model_dump() for name, m in (current.models.items() if current else ())}
    for name, change in (body.models or {}).items():
        if change is None:
            models.pop(name, None)
        else:
            models[name] = change.model_dump()
    return PriceTableBody.model_validate(
        {"currency": currency, "credits_per_unit_micro": rate, "models": models}, strict=False
    )


# -- an account's own table ------------------------------------------------------------------


@router.get(_ACCOUNT, response_model=PricesOut, responses=error_responses(401, 404, 422, 503))
async def get_prices(account_id: AccountId, ctx: Ctx, caller: CallerDep) -> PricesOut:
    """The account's price table, the platform's, and the prices that apply to its calls
    (its own per model over the platform's, in its currency and at its rate)."""
    return _out(ctx, account_scope(ctx, caller, account_id))


@router.put(_ACCOUNT, response_model=PricesOut, responses=error_responses(401, 404, 422, 503))
async def put_prices(
    account_id: AccountId, body: PriceTableBody, ctx: Ctx, caller: CallerDep
) -> PricesOut:
    """Replace the account's table (every field required: 422 naming what is missing).
    Caps and policy thresholds given in money are converted again at the new rate; a
    currency change while some are given in money is refused (422 naming them)."""
    account_scope(ctx, caller, account_id)
    current = own_table(ctx, account_id)
    version = current.version + 1 if current else 1
    rec = _checked(body.record(account_id, version, ctx.clock(), caller.who))
    await _write(ctx, account_id, rec)
    return _out(ctx, account_id)


@router.patch(_ACCOUNT, response_model=PricesOut, responses=error_responses(401, 404, 422, 503))
async def patch_prices(
    account_id: AccountId, body: PriceTablePatchBody, ctx: Ctx, caller: CallerDep
) -> PricesOut:
    """Change only what the body names: ``currency``, ``credits_per_unit_micro``, and in
    ``models`` each model named (set whole; ``null`` removes it). An account without a table
    of its own starts from the platform's currency and rate, with no models of its own."""
    account_scope(ctx, caller, account_id)
    current = own_table(ctx, account_id)
    whole = _patched(current, body, own_table(ctx, PLATFORM))
    version = current.version + 1 if current else 1
    rec = _checked(whole.record(account_id, version, ctx.clock(), caller.who))
    await _write(ctx, account_id, rec)
    return _out(ctx, account_id)


@router.delete(_ACCOUNT, status_code=204, responses=error_responses(401, 404, 422, 503))
async def delete_prices(account_id: AccountId, ctx: Ctx, caller: CallerDep) -> Response:
    """Delete the account's own table: the platform's prices, currency and rate apply."""
    account_scope(ctx, caller, account_id)
    if own_table(ctx, account_id) is None:
        raise NotFoundError("the account has no price table of its own")
    await _write(ctx, account_id, None)
    return Response(status_code=204)


# -- the platform's default table ------------------------------------------------------------


@router.get(_PLATFORM, response_model=PricesOut, responses=error_responses(401, 503))
async def get_platform_prices(ctx: Ctx, caller: CallerDep) -> PricesOut:
    """The platform's default table (what prices every account without its own price for
    a model, in the same currency)."""
    return _out(ctx, PLATFORM)


@router.put(_PLATFORM, response_model=PricesOut, responses=error_responses(401, 403, 422, 503))
async def put_platform_prices(body: PriceTableBody, ctx: Ctx, caller: CallerDep) -> PricesOut:
    """Replace the platform's table (admin key only; whole, as for an account)."""
    require_admin(caller)
    current = own_table(ctx, PLATFORM)
    version = current.version + 1 if current else 1
    rec = _checked(body.record(PLATFORM, version, ctx.clock(), caller.who))
    await _write(ctx, PLATFORM, rec)
    return _out(ctx, PLATFORM)


@router.patch(_PLATFORM, response_model=PricesOut, responses=error_responses(401, 403, 422, 503))
async def patch_platform_prices(
    body: PriceTablePatchBody, ctx: Ctx, caller: CallerDep
) -> PricesOut:
    """Change only what the body names in the platform's table (admin key only)."""
    require_admin(caller)
    current = own_table(ctx, PLATFORM)
    whole = _patched(current, body, None)
    version = current.version + 1 if current else 1
    rec = _checked(whole.record(PLATFORM, version, ctx.clock(), caller.who))
    await _write(ctx, PLATFORM, rec)
    return _out(ctx, PLATFORM)
