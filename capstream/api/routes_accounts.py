"""Routes for accounts, API keys and bots."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from capstream.api.account_models import (
    AccountOut,
    BotBody,
    BotOut,
    KeyOut,
    NewAccountBody,
    NewAccountOut,
    NewKeyOut,
    PlanBody,
    ResumeBody,
    ResumeOut,
)
from capstream.api.context import ApiContext, CallerDep, Ctx, account_scope, require_admin
from capstream.api.errors import ConflictError, NotFoundError, UnavailableError, error_responses
from capstream.api.models import ID_PATTERN
from capstream.streams.records import BotResumeRecord, TenantSettingsRecord

router = APIRouter(prefix="/v1/accounts", tags=["accounts"])
AccountId = Annotated[str, Path(pattern=ID_PATTERN, description="The account")]
BotId = Annotated[str, Path(pattern=ID_PATTERN, description="A bot of the account")]
KeyId = Annotated[str, Path(pattern=r"^[0-9a-f]{1,32}$", description="A key's public id")]


def tenant_of(ctx: ApiContext, account_id: str) -> TenantSettingsRecord:
    """The account's current tenant settings (defaults until some are published)."""
    return ctx.view.tenant(account_id) or TenantSettingsRecord(account_id=account_id)


async def publish_tenant(ctx: ApiContext, record: TenantSettingsRecord) -> None:
    """Write tenant settings to their topic and wait until the view shows them."""
    import asyncio

    w = await ctx.publisher.publish(ctx.topics.tenants, record.account_id, record.to_bytes())
    await asyncio.to_thread(ctx.view.wait_for, w.topic, w.partition, w.offset)


def account_out(ctx: ApiContext, account_id: str) -> AccountOut:
    tenant = tenant_of(ctx, account_id)
    return AccountOut(
        account_id=account_id,
        owner_email=tenant.owner_email,
        plan=tenant.plan,
        bots=[b.bot_id for b in ctx.store.bots(account_id)],
        keys=[KeyOut(key_id=k.key_id, created_at_ms=k.created_at_ms, revoked=k.revoked)
              for k in ctx.store.keys(account_id)],
    )  # fmt: skip


@router.post(
    "", status_code=201, response_model=NewAccountOut, responses=error_responses(401, 403, 409, 422)
)
async def create_account(body: NewAccountBody, ctx: Ctx, caller: CallerDep) -> NewAccountOut:
    """Create an account with its owner, plan and first API key (admin key only)."""
    require_admin(caller)
    from capstream.core.periods import zone

    zone(body.timezone)  # SettingsError (422) before anything is written
    key = ctx.store.create_account(body.account_id)
    if key is None:
        raise ConflictError(f"account {body.account_id!r} exists already")
    tenant = TenantSettingsRecord(
        account_id=body.account_id,
        owner_email=body.owner_email,
        plan=body.plan,
        timezone=body.timezone,
        updated_at_ms=ctx.clock(),
    )
    try:
        await publish_tenant(ctx, tenant)
    except UnavailableError:
        ctx.store.delete_account(body.account_id)  # nothing half-made: the caller may retry
        raise
    out = account_out(ctx, body.account_id)
    return NewAccountOut(**out.model_dump(), api_key=key.plaintext)


@router.get("", response_model=list[str], responses=error_responses(401, 403))
async def list_accounts(ctx: Ctx, caller: CallerDep) -> list[str]:
    """Every account id (admin key only)."""
    require_admin(caller)
    return ctx.store.account_ids()


@router.get("/{account_id}", response_model=AccountOut, responses=error_responses(401, 404, 422))
async def get_account(account_id: AccountId, ctx: Ctx, caller: CallerDep) -> AccountOut:
    """The account: owner, plan, bots and key ids."""
    return account_out(ctx, account_scope(ctx, caller, account_id))


@router.put(
    "/{account_id}/plan", response_model=AccountOut, responses=error_responses(401, 403, 404, 422)
)
async def set_plan(
    account_id: AccountId, body: PlanBody, ctx: Ctx, caller: CallerDep
) -> AccountOut:
    """Change the account's plan (admin key only)."""
    account_scope(ctx, caller, account_id)
    require_admin(caller)
    current = tenant_of(ctx, account_id)
    data = current.model_dump()
    data.update(plan=body.plan, version=current.version + 1, updated_at_ms=ctx.clock())
    from capstream.api.validation import checked_settings

    await publish_tenant(ctx, checked_settings(TenantSettingsRecord.model_validate(data)))
    return account_out(ctx, account_id)


@router.post(
    "/{account_id}/keys",
    status_code=201,
    response_model=NewKeyOut,
    responses=error_responses(401, 404, 422),
)
async def create_key(account_id: AccountId, ctx: Ctx, caller: CallerDep) -> NewKeyOut:
    """Mint another key for the account (for rotation); the key is shown this once."""
    account_scope(ctx, caller, account_id)
    key = ctx.store.add_key(account_id)
    return NewKeyOut(account_id=account_id, key_id=key.key_id, api_key=key.plaintext)


@router.delete(
    "/{account_id}/keys/{key_id}", status_code=204, responses=error_responses(401, 404, 422)
)
async def revoke_key(account_id: AccountId, key_id: KeyId, ctx: Ctx, caller: CallerDep) -> Response:
    """Revoke one of the account's keys (it stops working at once)."""
    account_scope(ctx, caller, account_id)
    if not ctx.store.revoke_key(account_id, key_id):
        raise NotFoundError(f"key {key_id!r} not found")
    return Response(status_code=204)


@router.get(
    "/{account_id}/bots", response_model=list[BotOut], responses=error_responses(401, 404, 422)
)
async def list_bots(account_id: AccountId, ctx: Ctx, caller: CallerDep) -> list[BotOut]:
    """The account's registered bots."""
    account_scope(ctx, caller, account_id)
    return [BotOut(bot_id=b.bot_id, name=b.name, created_at_ms=b.created_at_ms)
            for b in ctx.store.bots(account_id)]  # fmt: skip


@router.put(
    "/{account_id}/bots/{bot_id}", response_model=BotOut, responses=error_responses(401, 404, 422)
)
async def put_bot(
    account_id: AccountId, bot_id: BotId, body: BotBody, ctx: Ctx, caller: CallerDep,
    response: Response,
) -> BotOut:  # fmt: skip
    """Register a bot (201) or rename it (200); policies with scope 'bot' name one of these."""
    account_scope(ctx, caller, account_id)
    bot, created = ctx.store.put_bot(account_id, bot_id, body.name)
    response.status_code = 201 if created else 200
    return BotOut(bot_id=bot.bot_id, name=bot.name, created_at_ms=bot.created_at_ms)


@router.post(
    "/{account_id}/bots/{bot_id}/resume",
    status_code=202,
    response_model=ResumeOut,
    responses=error_responses(401, 404, 422, 503),
)
async def resume_bot(
    account_id: AccountId, bot_id: BotId, ctx: Ctx, caller: CallerDep,
    body: ResumeBody | None = None,
) -> ResumeOut:  # fmt: skip
    """Lift the bot's running block now (and the account-wide one, which pauses it too).

    Published to the resumes topic (key ``account/bot``); the processors lift every block of
    the bot that started before this instant, and the sink records who and when in the
    decisions table. The lifted policy stays quiet until the block would have ended; after
    that, usage still above its threshold blocks the bot again (raise the threshold or
    disable the policy to prevent it). Resuming a bot that is not paused changes nothing.
    """
    account_scope(ctx, caller, account_id)
    body = body or ResumeBody()
    who = caller.who if not body.requested_by else f"{body.requested_by} ({caller.who})"
    if body.note:
        who = f"{who}: {body.note}"
    rec = BotResumeRecord(
        account_id=account_id, bot_id=bot_id, resumed_at_ms=ctx.clock(), resumed_by=who
    )
    await ctx.publisher.publish(ctx.topics.resumes, f"{account_id}/{bot_id}", rec.to_bytes())
    return ResumeOut(
        status="resuming",
        account_id=account_id,
        bot_id=bot_id,
        resumed_at_ms=rec.resumed_at_ms,
        resumed_by=who,
        message=(
            "the processors lift the bot's block within moments; its policy stays quiet "
            "until the block would have ended, then blocks again if usage is still above it"
        ),
    )


@router.delete(
    "/{account_id}/bots/{bot_id}", status_code=204, responses=error_responses(401, 404, 409, 422)
)
async def delete_bot(account_id: AccountId, bot_id: BotId, ctx: Ctx, caller: CallerDep) -> Response:
    """Unregister a bot; refused (409) while a policy is scoped to it."""
    account_scope(ctx, caller, account_id)
    users = [p.policy_id for p in ctx.view.policies(account_id) if p.bot_id == bot_id]
    if users:
        raise ConflictError(
            f"bot {bot_id!r} is used by policies {users}; delete or re-scope them first"
        )
    if not ctx.store.delete_bot(account_id, bot_id):
        raise NotFoundError(f"bot {bot_id!r} not found")
    return Response(status_code=204)
