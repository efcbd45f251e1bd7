"""Routes for usage policies: create, list, get, replace, delete, enable/disable, presets."""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from capstream.api.context import ApiContext, CallerDep, Ctx, account_scope
from capstream.api.errors import (
    ConflictError,
    FieldError,
    InvalidError,
    NotFoundError,
    error_responses,
)
from capstream.api.models import (
    EMAIL_PATTERN,
    ID_PATTERN,
    NewPolicyBody,
    PolicyBody,
    PolicyPatchBody,
    PolicyReplaceBody,
    PolicyResponse,
    Preset,
    Scope,
    WindowSeeding,
)
from capstream.api.money import money_table, priced_policy
from capstream.api.presets import presets
from capstream.api.validation import checked_policy
from capstream.streams.records import PolicyRecord

router = APIRouter(tags=["policies"])
AccountId = Annotated[str, Path(pattern=ID_PATTERN, description="The account")]
PolicyId = Annotated[str, Path(pattern=ID_PATTERN, description="A policy of the account")]
_BASE = "/v1/accounts/{account_id}/policies"


async def _write(ctx: ApiContext, rec: PolicyRecord | None, account_id: str, pid: str) -> None:
    value = None if rec is None else rec.to_bytes()
    w = await ctx.publisher.publish(ctx.topics.policies, f"{account_id}/{pid}", value)
    await asyncio.to_thread(ctx.view.wait_for, w.topic, w.partition, w.offset)


def _record(
    ctx: ApiContext, account_id: str, pid: str, body: PolicyBody, previous: PolicyRecord | None
) -> PolicyRecord:
    if body.scope == "bot" and body.bot_id and not ctx.store.has_bot(account_id, body.bot_id):
        msg = f"bot {body.bot_id!r} is not one of this account's bots; register it first"
        raise InvalidError(msg, fields=[FieldError(field="bot_id", message=msg)])
    version = previous.version + 1 if previous else 1
    rec = body.record(account_id, pid, version, ctx.clock())
    return checked_policy(priced_policy(rec, money_table(ctx, account_id, rec)))


def _answer(ctx: ApiContext, rec: PolicyRecord, before: list[PolicyRecord]) -> PolicyResponse:
    """``rec`` with what its window counts, given the policies in force before the change
    (a changed policy's previous version included: its window is still held then)."""
    from capstream.core.seeding import window_seeding
    from capstream.processors.catalog import core_policy, core_settings

    tenant = ctx.view.tenant(rec.account_id)
    seeding = window_seeding(
        core_policy(rec),
        [core_policy(p) for p in before if p.enabled],
        core_settings(tenant) if tenant is not None else None,
    )
    return PolicyResponse(
        **rec.model_dump(),
        window_seeding=WindowSeeding(
            kind=seeding.kind,
            source_window_seconds=seeding.source_window_seconds,
            message=seeding.message,
        ),
    )


def _existing(ctx: ApiContext, account_id: str, pid: str) -> PolicyRecord:
    rec = ctx.view.policy(account_id, pid)
    if rec is None:
        raise NotFoundError(f"policy {pid!r} not found")
    return rec


@router.get(_BASE, response_model=list[PolicyRecord], responses=error_responses(401, 404, 422))
async def list_policies(
    account_id: AccountId,
    ctx: Ctx,
    caller: CallerDep,
    bot_id: Annotated[
        str | None,
        Query(
            pattern=ID_PATTERN,
            description="Only the policies that watch this bot: its own (scope `bot`) and "
            "the account-wide ones (`account_each_bot`, `account_total`), which cover it too",
        ),
    ] = None,
    scope: Annotated[Scope | None, Query(description="Only the policies of this scope")] = None,
) -> list[PolicyRecord]:
    """The account's policies, optionally only those watching one bot and/or of one scope
    (``?bot_id=b1&scope=bot``: the bot's own policies)."""
    account = account_scope(ctx, caller, account_id)
    if bot_id is not None and not ctx.store.has_bot(account, bot_id):
        msg = f"bot {bot_id!r} is not one of this account's bots"
        raise InvalidError(msg, fields=[FieldError(field="bot_id", message=msg)])
    return [
        p
        for p in ctx.view.policies(account)
        if (scope is None or p.scope == scope)
        and (bot_id is None or p.scope != "bot" or p.bot_id == bot_id)
    ]


@router.post(
    _BASE,
    status_code=201,
    response_model=PolicyResponse,
    responses=error_responses(401, 404, 409, 422, 503),
)
async def create_policy(
    account_id: AccountId, body: NewPolicyBody, ctx: Ctx, caller: CallerDep
) -> PolicyResponse:
    """Create a policy; the processors apply it from the next usage event on.
    ``window_seeding`` says what its window counts at once (usage already recorded in it,
    where the processors keep a window of the same metric, or only what comes next)."""
    account_scope(ctx, caller, account_id)
    pid = body.policy_id or uuid.uuid4().hex[:16]
    if ctx.view.policy(account_id, pid) is not None:
        raise ConflictError(f"policy {pid!r} exists already; PUT it to replace it")
    before = ctx.view.policies(account_id)
    rec = _record(ctx, account_id, pid, body, None)
    await _write(ctx, rec, account_id, pid)
    return _answer(ctx, rec, before)


@router.get(
    _BASE + "/{policy_id}", response_model=PolicyRecord, responses=error_responses(401, 404, 422)
)
async def get_policy(
    account_id: AccountId, policy_id: PolicyId, ctx: Ctx, caller: CallerDep
) -> PolicyRecord:
    """One policy."""
    return _existing(ctx, account_scope(ctx, caller, account_id), policy_id)


@router.put(
    _BASE + "/{policy_id}",
    response_model=PolicyResponse,
    responses={201: {"model": PolicyResponse, "description": "Created"},
               **error_responses(401, 404, 422, 503)},
)  # fmt: skip
async def put_policy(
    account_id: AccountId, policy_id: PolicyId, body: PolicyReplaceBody, ctx: Ctx,
    caller: CallerDep, response: Response,
) -> PolicyResponse:  # fmt: skip
    """Replace a policy (200), or create it under this id (201). The body is the whole
    policy (every field, ``null`` where optional): a partial one is refused, 422 naming what
    is missing; PATCH changes only some fields."""
    account_scope(ctx, caller, account_id)
    previous = ctx.view.policy(account_id, policy_id)
    before = ctx.view.policies(account_id)
    rec = _record(ctx, account_id, policy_id, body, previous)
    await _write(ctx, rec, account_id, policy_id)
    response.status_code = 200 if previous else 201
    return _answer(ctx, rec, before)


@router.patch(
    _BASE + "/{policy_id}",
    response_model=PolicyResponse,
    responses=error_responses(401, 404, 422, 503),
)
async def patch_policy(
    account_id: AccountId, policy_id: PolicyId, body: PolicyPatchBody, ctx: Ctx,
    caller: CallerDep,
) -> PolicyResponse:  # fmt: skip
    """Change only the fields the body names (``null`` removes the alert, the block, the
    category or the bot); everything else is kept."""
    account_scope(ctx, caller, account_id)
    current = _existing(ctx, account_id, policy_id)
    before = ctx.view.policies(account_id)
    rec = _record(ctx, account_id, policy_id, body.over(current), current)
    await _write(ctx, rec, account_id, policy_id)
    return _answer(ctx, rec, before)


@router.delete(_BASE + "/{policy_id}", status_code=204, responses=error_responses(401, 404, 422))
async def delete_policy(
    account_id: AccountId, policy_id: PolicyId, ctx: Ctx, caller: CallerDep
) -> Response:
    """Delete a policy (a tombstone on the policies topic)."""
    account_scope(ctx, caller, account_id)
    _existing(ctx, account_id, policy_id)
    await _write(ctx, None, account_id, policy_id)
    return Response(status_code=204)


async def _set_enabled(
    ctx: ApiContext, caller: CallerDep, account_id: str, policy_id: str, enabled: bool
) -> PolicyRecord:
    account_scope(ctx, caller, account_id)
    current = _existing(ctx, account_id, policy_id)
    if current.enabled == enabled:
        return current
    rec = current.model_copy(
        update={"enabled": enabled, "version": current.version + 1, "updated_at_ms": ctx.clock()}
    )
    await _write(ctx, rec, account_id, policy_id)
    return rec


@router.post(
    _BASE + "/{policy_id}/enable",
    response_model=PolicyRecord,
    responses=error_responses(401, 404, 422, 503),
)
async def enable_policy(
    account_id: AccountId, policy_id: PolicyId, ctx: Ctx, caller: CallerDep
) -> PolicyRecord:
    """Turn a policy on."""
    return await _set_enabled(ctx, caller, account_id, policy_id, True)


@router.post(
    _BASE + "/{policy_id}/disable",
    response_model=PolicyRecord,
    responses=error_responses(401, 404, 422, 503),
)
async def disable_policy(
    account_id: AccountId, policy_id: PolicyId, ctx: Ctx, caller: CallerDep
) -> PolicyRecord:
    """Turn a policy off (kept, not evaluated)."""
    return await _set_enabled(ctx, caller, account_id, policy_id, False)


@router.get("/v1/presets", response_model=list[Preset], responses=error_responses(401, 422))
async def list_presets(
    caller: CallerDep,
    bot_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    recipient: Annotated[list[str] | None, Query(max_length=20)] = None,
) -> list[Preset]:
    """Ready bodies for POST .../policies: monthly ceiling, per-hour cap, notify-only."""
    import re

    seen: set[str] = set()
    for r in recipient or []:
        if not re.match(EMAIL_PATTERN, r):
            msg = f"{r!r} is not an email address"
            raise InvalidError(msg, fields=[FieldError(field="recipient", message=msg)])
        if r.casefold() in seen:
            msg = f"{r} is listed twice (addresses are compared ignoring case); list it once"
            raise InvalidError(msg, fields=[FieldError(field="recipient", message=msg)])
        seen.add(r.casefold())
    return presets(bot_id, recipient)
