"""Read endpoints the dashboard needs beyond the Policy API: who am I, the fallback preview,
the live view, the usage chart and the demo inbox. Same auth and tenancy rules as the API."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from capstream.api.account_models import BotOut
from capstream.api.context import CallerDep, Ctx, account_scope
from capstream.api.dashboard.live import LiveView, live_view
from capstream.api.dashboard.mailbox import Mail, Mailbox
from capstream.api.dashboard.series import Metric, Range, UsageSeries, usage_series
from capstream.api.errors import error_responses
from capstream.api.models import Language, Text
from capstream.api.routes_accounts import AccountId, tenant_of
from capstream.api.routes_grants import raised_tenant
from capstream.core.messages import fallback_text

router = APIRouter(tags=["dashboard"])
_A = "/v1/accounts/{account_id}"


class MeOut(BaseModel):
    """The caller: the admin, or an account with its plan, settings basics and bots."""

    admin: bool
    account_id: str | None = None
    plan: str | None = None
    owner_email: str | None = None
    timezone: str | None = None
    language: str | None = None
    bots: list[BotOut] = []


class FallbackPreview(BaseModel):
    """The fallback text customers would get, for a daily and for a monthly cap."""

    language: str
    default_used: bool
    daily: str
    monthly: str


class MailboxOut(BaseModel):
    """Mail the demo's SMTP catcher received for this account (empty outside the demo)."""

    enabled: bool
    messages: list[Mail]


@router.get("/v1/me", response_model=MeOut, responses=error_responses(401))
async def me(ctx: Ctx, caller: CallerDep) -> MeOut:
    """Who the key belongs to (the dashboard logs in with it)."""
    if caller.admin or caller.account_id is None:
        return MeOut(admin=True)
    a = caller.account_id
    t = tenant_of(ctx, a)
    bots = [BotOut(bot_id=b.bot_id, name=b.name, created_at_ms=b.created_at_ms)
            for b in ctx.store.bots(a)]  # fmt: skip
    return MeOut(
        admin=False,
        account_id=a,
        plan=t.plan,
        owner_email=t.owner_email,
        timezone=t.timezone,
        language=t.language,
        bots=bots,
    )


@router.get(
    _A + "/fallback-preview",
    response_model=FallbackPreview,
    responses=error_responses(401, 404, 422),
)
async def fallback_preview(
    account_id: AccountId,
    ctx: Ctx,
    caller: CallerDep,
    message: Annotated[Text, Query(max_length=1000)] = "",
    language: Annotated[Language | None, Query(description="Default: the tenant's")] = None,
) -> FallbackPreview:
    """The fallback text with {{TIMEFRAME}} filled in (a blank message uses the built-in
    default of the language), exactly as the gateways will send it."""
    account_scope(ctx, caller, account_id)
    lang = language or tenant_of(ctx, account_id).language
    return FallbackPreview(
        language=lang,
        default_used=not message.strip(),
        daily=fallback_text(message, lang, "daily"),
        monthly=fallback_text(message, lang, "monthly"),
    )


@router.get(_A + "/live", response_model=LiveView, responses=error_responses(401, 404, 422, 503))
async def live(account_id: AccountId, ctx: Ctx, caller: CallerDep) -> LiveView:
    """Usage per bot and category, each policy per bot, bot states and cap projections."""
    account_scope(ctx, caller, account_id)
    query = ctx.clickhouse()
    tenant = raised_tenant(ctx, tenant_of(ctx, account_id))  # caps as grants raise them
    policies = ctx.view.policies(account_id)
    names = {b.bot_id: b.name for b in ctx.store.bots(account_id)}
    now = ctx.clock()
    return await asyncio.to_thread(live_view, query, tenant, policies, names, now)


@router.get(
    _A + "/usage/series", response_model=UsageSeries, responses=error_responses(401, 404, 422, 503)
)
async def series(
    account_id: AccountId,
    ctx: Ctx,
    caller: CallerDep,
    metric: Metric = "credits",
    range_: Annotated[Range, Query(alias="range")] = "hour",
) -> UsageSeries:
    """Usage per bot over the last 15 minutes (per 15 s), hour (per minute), day (per hour)
    or 30 days (per day)."""
    account_scope(ctx, caller, account_id)
    query = ctx.clickhouse()
    now = ctx.clock()
    return await asyncio.to_thread(usage_series, query, account_id, metric, range_, now)


@router.get(
    _A + "/mailbox", response_model=MailboxOut, responses=error_responses(401, 404, 422, 503)
)
async def mailbox(
    account_id: AccountId,
    request: Request,
    ctx: Ctx,
    caller: CallerDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> MailboxOut:
    """The demo inbox: caught emails of this account's notifications, newest first."""
    account_scope(ctx, caller, account_id)
    root: Path | None = getattr(request.app.state, "capstream_mailbox", None)
    if root is None or not await asyncio.to_thread(root.is_dir):
        return MailboxOut(enabled=False, messages=[])
    box = Mailbox(root)
    query = ctx.clickhouse()

    def mine() -> list[Mail]:
        rows = query(
            "SELECT notification_id FROM notifications WHERE account_id = {account_id:String} "
            "ORDER BY created_at DESC LIMIT 2000",
            {"account_id": account_id},
        )
        ids = {r["notification_id"] for r in rows}
        return [m for m in box.messages(limit=2000) if m.notification_id in ids][:limit]

    return MailboxOut(enabled=True, messages=await asyncio.to_thread(mine))
