"""Routes for a tenant's cap behaviour settings, top-up requests and ClickHouse read views."""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from capstream.api.account_models import TopupBody, TopupOut
from capstream.api.context import ApiContext, Caller, CallerDep, Ctx, account_scope
from capstream.api.errors import (
    FieldError,
    ForbiddenError,
    InvalidError,
    UpgradeRequiredError,
    error_responses,
)
from capstream.api.models import ID_PATTERN, SettingsBody, SettingsPatchBody
from capstream.api.money import money_table, priced_settings
from capstream.api.reads import UsageReport, cap_usage, feed_rows, policy_usage, recent_decisions
from capstream.api.routes_accounts import publish_tenant, tenant_of
from capstream.api.routes_grants import raised_tenant
from capstream.api.validation import checked_caps, checked_settings
from capstream.core.messages import UPGRADE_CTA
from capstream.core.notifications import topup_request
from capstream.core.periods import day_period
from capstream.processors.catalog import core_settings
from capstream.streams.records import NotificationRecord, TenantSettingsRecord

router = APIRouter(prefix="/v1/accounts/{account_id}", tags=["tenant"])
AccountId = Annotated[str, Path(pattern=ID_PATTERN, description="The account")]


@router.get(
    "/settings", response_model=TenantSettingsRecord, responses=error_responses(401, 404, 422)
)
async def get_settings(account_id: AccountId, ctx: Ctx, caller: CallerDep) -> TenantSettingsRecord:
    """The cap behaviour: timezone, language, plan, caps, fallback message, downgrade, throttle."""
    return tenant_of(ctx, account_scope(ctx, caller, account_id))


async def _save_settings(
    ctx: ApiContext, caller: Caller, current: TenantSettingsRecord, body: SettingsBody
) -> TenantSettingsRecord:
    if body.plan is not None and body.plan != current.plan and not caller.admin:
        raise ForbiddenError(
            f"the plan is {current.plan!r}; plan changes are made by an administrator"
        )
    rec = body.record(current, current.version + 1, ctx.clock())
    rec = checked_settings(priced_settings(rec, money_table(ctx, current.account_id, rec)))
    checked_caps(rec)
    await publish_tenant(ctx, rec)
    return rec


@router.put(
    "/settings",
    response_model=TenantSettingsRecord,
    responses=error_responses(401, 403, 404, 422, 503),
)
async def put_settings(
    account_id: AccountId, body: SettingsBody, ctx: Ctx, caller: CallerDep
) -> TenantSettingsRecord:
    """Replace the whole cap behaviour (every field but ``plan`` and ``owner_email`` is
    required: a partial body is refused, 422 naming what is missing; PATCH changes only
    some); auto-downgrade only on Pro and Enterprise."""
    account_scope(ctx, caller, account_id)
    return await _save_settings(ctx, caller, tenant_of(ctx, account_id), body)


@router.patch(
    "/settings",
    response_model=TenantSettingsRecord,
    responses=error_responses(401, 403, 404, 422, 503),
)
async def patch_settings(
    account_id: AccountId, body: SettingsPatchBody, ctx: Ctx, caller: CallerDep
) -> TenantSettingsRecord:
    """Change only the settings the body names (in ``caps``, only the categories and periods
    it names; ``null`` removes that cap); everything else is kept."""
    account_scope(ctx, caller, account_id)
    current = tenant_of(ctx, account_id)
    return await _save_settings(ctx, caller, current, body.over(current))


@router.post(
    "/topup-requests",
    status_code=202,
    response_model=TopupOut,
    responses=error_responses(401, 402, 404, 422, 503),
)
async def request_topup(
    account_id: AccountId, body: TopupBody, ctx: Ctx, caller: CallerDep
) -> TopupOut:
    """Email the account's admin a top-up request (paid plans; the free plan gets 402 with
    the upgrade path, "Upgrade to Starter")."""
    account_scope(ctx, caller, account_id)
    tenant = tenant_of(ctx, account_id)
    if tenant.plan == "free":
        raise UpgradeRequiredError(
            "top-ups are for paid plans; Upgrade to Starter to raise your AI credit caps",
            cta=UPGRADE_CTA,
        )
    if not tenant.owner_email:
        msg = "the account has no owner email to send the request to; set it in settings"
        raise InvalidError(msg, fields=[FieldError(field="owner_email", message=msg)])
    n = topup_request(
        core_settings(tenant), body.category, body.period, body.requested_by, ctx.clock(), body.note
    )
    rec = NotificationRecord(
        notification_id=n.notification_id,
        account_id=n.account_id,
        kind=n.kind,
        policy_id=n.policy_id,
        recipients=list(n.recipients),
        subject=n.subject,
        body=n.body + _approve_hint(account_id, n.notification_id),
        created_at_ms=n.created_at_ms,
        window_start_ms=n.window_start_ms,
    )
    await ctx.publisher.publish(ctx.topics.notifications, rec.notification_id, rec.to_bytes())
    return TopupOut(
        status="requested",
        notification_id=rec.notification_id,
        recipients=rec.recipients,
        message=f"the admin ({tenant.owner_email}) has been emailed and decides",
    )


def _approve_hint(account_id: str, request_id: str) -> str:
    """How the admin approves the request (a grant naming it; approving twice grants once)."""
    return (
        f"\n\nTo approve it, grant the credit in the dashboard (Cap behaviour -> Credit "
        f"grants, top-up request {request_id}) or with POST /v1/accounts/{account_id}/grants "
        f'and "request_id": "{request_id}". The cap rises at once.'
    )


@router.get("/usage", response_model=UsageReport, responses=error_responses(401, 404, 422, 503))
async def usage(account_id: AccountId, ctx: Ctx, caller: CallerDep) -> UsageReport:
    """Current usage against each policy and each daily/monthly cap (as raised by the credit
    grants that apply now)."""
    account_scope(ctx, caller, account_id)
    query = ctx.clickhouse()
    now = ctx.clock()
    tenant = raised_tenant(ctx, tenant_of(ctx, account_id))  # caps as credit grants raise them
    policies = ctx.view.policies(account_id)

    def run() -> UsageReport:
        return UsageReport(
            account_id=account_id,
            as_of_ms=now,
            policies=[policy_usage(query, p, now, tenant.timezone) for p in policies],
            caps=cap_usage(query, tenant, now),
        )

    return await asyncio.to_thread(run)


@router.get(
    "/feed", response_model=list[dict[str, Any]], responses=error_responses(401, 404, 422, 503)
)
async def feed(
    account_id: AccountId,
    ctx: Ctx,
    caller: CallerDep,
    day: Annotated[date | None, Query(description="Local day (default: today)")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[dict[str, Any]]:
    """The amber rows of one local day in the tenant's timezone."""
    account_scope(ctx, caller, account_id)
    query = ctx.clickhouse()
    key = (
        day.isoformat() if day else day_period(ctx.clock(), tenant_of(ctx, account_id).timezone).key
    )
    return await asyncio.to_thread(feed_rows, query, account_id, key, limit)


@router.get(
    "/decisions", response_model=list[dict[str, Any]], responses=error_responses(401, 404, 422, 503)
)
async def decisions(
    account_id: AccountId,
    ctx: Ctx,
    caller: CallerDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """The account's most recent enforcement decisions, newest first."""
    account_scope(ctx, caller, account_id)
    query = ctx.clickhouse()
    return await asyncio.to_thread(recent_decisions, query, account_id, limit)
