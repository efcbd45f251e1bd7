"""Routes for credit grants: approve a top-up or grant credit to a cap now; list grants."""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Protocol

from fastapi import APIRouter, Path, Query, Response

from capstream.api.context import ApiContext, CallerDep, Ctx, account_scope
from capstream.api.errors import (
    ConflictError,
    FieldError,
    InvalidError,
    NotFoundError,
    UnavailableError,
    UpgradeRequiredError,
    error_responses,
)
from capstream.api.grant_models import GrantBody, GrantOut, GrantView
from capstream.api.models import ID_PATTERN
from capstream.api.routes_accounts import tenant_of
from capstream.core.grants import granted_caps, period_key
from capstream.core.messages import UPGRADE_CTA
from capstream.core.periods import day_period, month_period
from capstream.processors.catalog import core_settings
from capstream.processors.grants import core_grant
from capstream.streams.records import CapGrantRecord, Category, TenantSettingsRecord

router = APIRouter(prefix="/v1/accounts/{account_id}/grants", tags=["grants"])
AccountId = Annotated[str, Path(pattern=ID_PATTERN, description="The account")]
GrantId = Annotated[str, Path(pattern=ID_PATTERN, description="A grant of the account")]
_SAME = ("category", "period", "amount_micro", "expires_at_ms", "request_id")


class GrantReads(Protocol):
    """The grants topic as the API's view holds it."""

    def grants(self, account_id: str) -> list[CapGrantRecord]: ...


def grants_of(ctx: ApiContext, account_id: str) -> list[CapGrantRecord]:
    """The account's grants, oldest first (503 if this API's view does not read them)."""
    view = ctx.view
    if not hasattr(view, "grants"):
        raise UnavailableError("this API's view does not read the grants topic")
    reads: GrantReads = view  # type: ignore[assignment]
    return reads.grants(account_id)


def raised_tenant(ctx: ApiContext, tenant: TenantSettingsRecord) -> TenantSettingsRecord:
    """``tenant`` with its caps raised by the grants that apply now (what the processors
    enforce); ``tenant`` itself if none does."""
    if not hasattr(ctx.view, "grants"):
        return tenant
    records = grants_of(ctx, tenant.account_id)
    if not records:
        return tenant
    base = core_settings(tenant)
    raised = granted_caps(base, [core_grant(r) for r in records], ctx.clock())
    if raised is base:
        return tenant
    caps = {
        c: tenant.caps[c].model_copy(
            update={"daily_micro": cc.daily_micro, "monthly_micro": cc.monthly_micro}
        )
        for c, cc in raised.caps.items()
        if c in tenant.caps
    }
    return tenant.model_copy(update={"caps": caps})


def _view(ctx: ApiContext, tenant: TenantSettingsRecord, rec: CapGrantRecord) -> GrantView:
    now = ctx.clock()
    settings = core_settings(tenant)
    grant = core_grant(rec)
    # the end of the local day or month it was granted in (in the tenant's current zone)
    end = (day_period if rec.period == "daily" else month_period)(
        rec.granted_at_ms, tenant.timezone
    ).end_ms
    if rec.expires_at_ms is not None and rec.expires_at_ms < end:
        end = rec.expires_at_ms
    raised = raised_tenant(ctx, tenant).caps.get(rec.category)
    cap = None if raised is None else getattr(raised, f"{rec.period}_micro")
    return GrantView(
        **rec.model_dump(), applies_now=grant.applies(settings, now), cap_micro=cap, ends_at_ms=end
    )


def _invalid(field: str, msg: str) -> InvalidError:
    return InvalidError(msg, fields=[FieldError(field=field, message=msg)])


@router.post(
    "",
    status_code=201,
    response_model=GrantOut,
    responses={200: {"model": GrantOut, "description": "Granted already under this grant_id"},
               **error_responses(401, 402, 404, 409, 422, 503)},
)  # fmt: skip
async def create_grant(
    account_id: AccountId, body: GrantBody, ctx: Ctx, caller: CallerDep, response: Response
) -> GrantOut:
    """Grant credit to one category's daily or monthly cap for the current local day or
    month: the cap rises at once (a capped category resumes within moments: the processors
    publish the new enforcement state on the control topic). Approve a top-up request by
    naming it in ``request_id``. The same ``grant_id`` again is answered 200 with the grant
    already made (nothing is added twice); with other content, 409. An account key on the
    free plan gets 402 (the platform's admin key may grant on any plan)."""
    account_scope(ctx, caller, account_id)
    tenant = tenant_of(ctx, account_id)
    if tenant.plan == "free" and not caller.admin:
        raise UpgradeRequiredError(
            "top-ups are for paid plans; Upgrade to Starter to raise your AI credit caps",
            cta=UPGRADE_CTA,
        )
    gid = body.grant_id or (
        f"topup-{body.request_id}" if body.request_id else f"g-{uuid.uuid4().hex[:16]}"
    )
    existing = next((g for g in grants_of(ctx, account_id) if g.grant_id == gid), None)
    if existing is not None:
        if any(getattr(existing, f) != getattr(body, f) for f in _SAME):
            raise ConflictError(
                f"grant {gid!r} exists with other terms; give this grant another grant_id"
            )
        response.status_code = 200
        view = _view(ctx, tenant, existing)
        return GrantOut(**view.model_dump(), message="granted already; nothing was added")
    caps = tenant.caps.get(body.category)
    if caps is None or getattr(caps, f"{body.period}_micro") is None:
        raise _invalid(
            "period",
            f"{body.category} has no {body.period} cap to raise: a grant adds credit to a cap "
            "(set one in settings first)",
        )
    now = ctx.clock()
    if body.expires_at_ms is not None and body.expires_at_ms <= now:
        raise _invalid("expires_at_ms", "expires_at_ms is in the past: a grant must apply a while")
    settings = core_settings(tenant)
    rec = CapGrantRecord(
        grant_id=gid,
        account_id=account_id,
        category=body.category,
        period=body.period,
        period_key=period_key(settings, body.period, now),
        amount_micro=body.amount_micro,
        expires_at_ms=body.expires_at_ms,
        granted_at_ms=now,
        granted_by=f"{body.granted_by} ({caller.who})" if body.granted_by else caller.who,
        request_id=body.request_id,
        note=body.note,
    )
    core_grant(rec)  # the core's own check (a refusal is a 422) before it is written
    w = await ctx.publisher.publish(ctx.topics.grants, f"{account_id}/{gid}", rec.to_bytes())
    await asyncio.to_thread(ctx.view.wait_for, w.topic, w.partition, w.offset)
    view = _view(ctx, tenant, rec)
    when = "today" if body.period == "daily" else "this month"
    return GrantOut(
        **view.model_dump(),
        message=f"the {body.period} {body.category} cap is raised {when} to "
        f"{(view.cap_micro or 0) / 1e6:g} credits ({view.cap_micro:,} micro-credits); a capped "
        "category resumes within moments",
    )


@router.get("", response_model=list[GrantView], responses=error_responses(401, 404, 422, 503))
async def list_grants(
    account_id: AccountId,
    ctx: Ctx,
    caller: CallerDep,
    category: Annotated[Category | None, Query(description="Only this category")] = None,
    current: Annotated[bool, Query(description="Only the grants that raise a cap now")] = False,
) -> list[GrantView]:
    """The account's grants, newest first, each with whether it applies now and the cap
    it raises."""
    account_scope(ctx, caller, account_id)
    tenant = tenant_of(ctx, account_id)
    views = [
        _view(ctx, tenant, g)
        for g in grants_of(ctx, account_id)
        if category is None or g.category == category
    ]
    return [v for v in reversed(views) if v.applies_now or not current]


@router.get("/{grant_id}", response_model=GrantView, responses=error_responses(401, 404, 422, 503))
async def get_grant(
    account_id: AccountId, grant_id: GrantId, ctx: Ctx, caller: CallerDep
) -> GrantView:
    """One grant."""
    account_scope(ctx, caller, account_id)
    rec = next((g for g in grants_of(ctx, account_id) if g.grant_id == grant_id), None)
    if rec is None:
        raise NotFoundError(f"grant {grant_id!r} not found")
    return _view(ctx, tenant_of(ctx, account_id), rec)
