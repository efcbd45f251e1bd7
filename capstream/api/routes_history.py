"""The history route: alerts, blocks, cap periods and grants of an account over time."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Path, Query

from capstream.api.context import CallerDep, Ctx, account_scope
from capstream.api.errors import FieldError, InvalidError, error_responses
from capstream.api.history import KINDS, History, Kind, history
from capstream.api.models import ID_PATTERN
from capstream.api.routes_grants import grants_of

router = APIRouter(prefix="/v1/accounts/{account_id}", tags=["history"])
AccountId = Annotated[str, Path(pattern=ID_PATTERN, description="The account")]
DAY_MS = 86_400_000
MAX_RANGE_DAYS = 93


@router.get("/history", response_model=History, responses=error_responses(401, 404, 422, 503))
async def get_history(
    account_id: AccountId,
    ctx: Ctx,
    caller: CallerDep,
    bot_id: Annotated[
        str | None,
        Query(pattern=ID_PATTERN, description="Only this bot (and what was about every bot)"),
    ] = None,
    from_ms: Annotated[
        int | None, Query(ge=0, description="Start, epoch ms (default: 7 days before `to_ms`)")
    ] = None,
    to_ms: Annotated[int | None, Query(ge=0, description="End, epoch ms (default: now)")] = None,
    kind: Annotated[
        list[Kind] | None, Query(description="Only these kinds (repeat it); default: all")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> History:
    """What happened to the account, newest first: policy alerts and warnings sent (with
    the bot each was about), blocks (the policy, the bot, who lifted it and when), cap
    periods (category, daily or monthly, when they started and ended, the grant that ended
    one early) and credit grants. Read from the sink's ClickHouse tables (grants from the
    grants topic); at most 93 days per request."""
    account_scope(ctx, caller, account_id)
    hi = ctx.clock() if to_ms is None else to_ms
    lo = hi - 7 * DAY_MS if from_ms is None else from_ms
    if lo >= hi:
        msg = "from_ms must be before to_ms"
        raise InvalidError(msg, fields=[FieldError(field="from_ms", message=msg)])
    if hi - lo > MAX_RANGE_DAYS * DAY_MS:
        msg = f"the range spans more than {MAX_RANGE_DAYS} days; narrow it"
        raise InvalidError(msg, fields=[FieldError(field="from_ms", message=msg)])
    if bot_id is not None and not ctx.store.has_bot(account_id, bot_id):
        msg = f"bot {bot_id!r} is not one of this account's bots"
        raise InvalidError(msg, fields=[FieldError(field="bot_id", message=msg)])
    query = ctx.clickhouse()
    grants = grants_of(ctx, account_id) if hasattr(ctx.view, "grants") else []
    names = {p.policy_id: p.name for p in ctx.view.policies(account_id) if p.name}
    return await asyncio.to_thread(
        history, query, account_id, lo, hi, bot_id=bot_id, kinds=kind or KINDS,
        grants=grants, policy_names=names, limit=limit,
    )  # fmt: skip
