"""Routes for a tenant's notification channels: add, list, change, rotate, delete, send a
test, read the delivery log (issue 19). Channels live on the compacted channels topic; the
notifier reads them to route each notification of the account."""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Protocol

from fastapi import APIRouter, Path, Response

from capstream.api.channel_models import (
    ChannelPatchBody,
    ChannelView,
    DeliveryView,
    NewChannelBody,
    RotateBody,
    SentTest,
)
from capstream.api.context import ApiContext, CallerDep, Ctx, account_scope
from capstream.api.errors import (
    ConflictError,
    FieldError,
    InvalidError,
    NotFoundError,
    UnavailableError,
    error_responses,
)
from capstream.api.models import ID_PATTERN
from capstream.notifier.secretbox import channel_key, seal
from capstream.streams.records import ChannelRecord, DeliveryAttemptRecord, NotificationRecord
from capstream.streams.settings import Settings

AccountId = Annotated[str, Path(pattern=ID_PATTERN, description="The account")]
ChannelId = Annotated[str, Path(pattern=ID_PATTERN, description="A channel of the account")]
_BASE = "/v1/accounts/{account_id}/channels"
MAX_CHANNELS = 20


class ChannelReads(Protocol):
    """What the routes read besides the policies: the channels topic and the delivery log."""

    def channels(self, account_id: str) -> list[ChannelRecord]: ...
    def channel(self, account_id: str, channel_id: str) -> ChannelRecord | None: ...
    def deliveries(self, account_id: str, channel_id: str) -> list[DeliveryAttemptRecord]: ...


def _reads(ctx: ApiContext) -> ChannelReads:
    view = ctx.view
    if not hasattr(view, "channels"):
        raise UnavailableError("this API's view does not read the channels topic")
    return view  # type: ignore[return-value]


def _invalid(field: str, msg: str) -> InvalidError:
    return InvalidError(msg, fields=[FieldError(field=field, message=msg)])


def router_for(settings: Settings) -> APIRouter:
    """The channel routes; secrets are sealed with the deployment's channel key."""
    router = APIRouter(tags=["channels"])
    key: list[bytes] = []

    def sealed(text: str) -> str:
        if not key:
            key.append(channel_key(settings))
        return seal(key[0], text)

    async def write(ctx: ApiContext, account_id: str, cid: str, rec: ChannelRecord | None) -> None:
        value = None if rec is None else rec.to_bytes()
        w = await ctx.publisher.publish(ctx.topics.channels, f"{account_id}/{cid}", value)
        await asyncio.to_thread(ctx.view.wait_for, w.topic, w.partition, w.offset)

    def existing(ctx: ApiContext, account_id: str, cid: str) -> ChannelRecord:
        rec = _reads(ctx).channel(account_id, cid)
        if rec is None:
            raise NotFoundError(f"channel {cid!r} not found")
        return rec

    def check(rec: ChannelRecord) -> ChannelRecord:
        if rec.type == "email" and not rec.emails:
            raise _invalid("emails", "an email channel needs at least one address in emails")
        if rec.type == "webhook" and not rec.url:
            raise _invalid("url", "a webhook channel needs the url to POST to")
        if rec.type == "webhook" and not rec.secret_box:
            raise _invalid("secret", "a webhook channel needs a signing secret (16+ characters)")
        if rec.type == "slack" and not rec.secret_box:
            raise _invalid("slack_url", "a Slack channel needs its incoming-webhook slack_url")
        return rec

    @router.get(_BASE, response_model=list[ChannelView], responses=error_responses(401, 404))
    async def list_channels(
        account_id: AccountId, ctx: Ctx, caller: CallerDep
    ) -> list[ChannelView]:
        """The account's channels (secrets by their last 4 characters only)."""
        account = account_scope(ctx, caller, account_id)
        return [ChannelView.of(c, ctx.clock()) for c in _reads(ctx).channels(account)]

    @router.post(_BASE, status_code=201, response_model=ChannelView,
                 responses=error_responses(401, 404, 409, 422, 503))  # fmt: skip
    async def create_channel(
        account_id: AccountId, body: NewChannelBody, ctx: Ctx, caller: CallerDep
    ) -> ChannelView:
        """Add a channel; notifications of the kinds it names go there from now on (instead
        of the deployment's defaults)."""
        account_scope(ctx, caller, account_id)
        cid = body.channel_id or uuid.uuid4().hex[:12]
        reads = _reads(ctx)
        if reads.channel(account_id, cid) is not None:
            raise ConflictError(f"channel {cid!r} exists already")
        if len(reads.channels(account_id)) >= MAX_CHANNELS:
            raise _invalid("channel_id", f"an account has at most {MAX_CHANNELS} channels")
        secret = body.secret if body.type == "webhook" else body.slack_url
        text = secret.get_secret_value() if secret is not None else ""
        rec = check(ChannelRecord(
            account_id=account_id, channel_id=cid, type=body.type, name=body.name,
            emails=body.emails if body.type == "email" else [],
            url=(body.url or "") if body.type == "webhook" else "",
            secret_box=sealed(text) if text else "", secret_hint=text[-4:] if text else "",
            kinds=sorted(set(body.kinds)), enabled=body.enabled, version=1,
            updated_at_ms=ctx.clock(),
        ))  # fmt: skip
        await write(ctx, account_id, cid, rec)
        return ChannelView.of(rec, ctx.clock())

    @router.get(_BASE + "/{channel_id}", response_model=ChannelView,
                responses=error_responses(401, 404))  # fmt: skip
    async def get_channel(
        account_id: AccountId, channel_id: ChannelId, ctx: Ctx, caller: CallerDep
    ) -> ChannelView:
        account_scope(ctx, caller, account_id)
        return ChannelView.of(existing(ctx, account_id, channel_id), ctx.clock())

    @router.patch(_BASE + "/{channel_id}", response_model=ChannelView,
                  responses=error_responses(401, 404, 422, 503))  # fmt: skip
    async def patch_channel(
        account_id: AccountId, channel_id: ChannelId, body: ChannelPatchBody, ctx: Ctx,
        caller: CallerDep,
    ) -> ChannelView:  # fmt: skip
        """Change only the fields named (``null`` is refused: leave a field out to keep it)."""
        account_scope(ctx, caller, account_id)
        cur = existing(ctx, account_id, channel_id)
        changes: dict[str, object] = {}
        for name in body.model_fields_set:
            value = getattr(body, name)
            if value is None:
                raise _invalid(name, f"{name} cannot be null; leave it out to keep it")
            if name == "slack_url":
                if cur.type != "slack":
                    raise _invalid(name, "slack_url is for Slack channels")
                text = value.get_secret_value()
                changes.update(secret_box=sealed(text), secret_hint=text[-4:])
            elif name in ("emails", "url") and cur.type != (
                "email" if name == "emails" else "webhook"
            ):
                raise _invalid(name, f"{name} does not apply to a {cur.type} channel")
            else:
                changes[name] = sorted(set(value)) if name == "kinds" else value
        rec = check(cur.model_copy(
            update={**changes, "version": cur.version + 1, "updated_at_ms": ctx.clock()}
        ))  # fmt: skip
        await write(ctx, account_id, channel_id, ChannelRecord.model_validate(rec.model_dump()))
        return ChannelView.of(rec, ctx.clock())

    @router.post(_BASE + "/{channel_id}/rotate", response_model=ChannelView,
                 responses=error_responses(401, 404, 422, 503))  # fmt: skip
    async def rotate_secret(
        account_id: AccountId, channel_id: ChannelId, body: RotateBody, ctx: Ctx,
        caller: CallerDep,
    ) -> ChannelView:  # fmt: skip
        """A new signing secret; the previous one also signs for ``grace_seconds``."""
        account_scope(ctx, caller, account_id)
        cur = existing(ctx, account_id, channel_id)
        if cur.type != "webhook":
            raise _invalid("secret", "only a webhook channel has a signing secret")
        text = body.secret.get_secret_value()
        now = ctx.clock()
        rec = cur.model_copy(update={
            "secret_box": sealed(text), "secret_hint": text[-4:],
            "previous_secret_box": cur.secret_box if body.grace_seconds else "",
            "previous_until_ms": now + body.grace_seconds * 1000 if body.grace_seconds else 0,
            "version": cur.version + 1, "updated_at_ms": now,
        })  # fmt: skip
        await write(ctx, account_id, channel_id, rec)
        return ChannelView.of(rec, now)

    @router.delete(_BASE + "/{channel_id}", status_code=204,
                   responses=error_responses(401, 404, 503))  # fmt: skip
    async def delete_channel(
        account_id: AccountId, channel_id: ChannelId, ctx: Ctx, caller: CallerDep
    ) -> Response:
        """Delete a channel (its kinds go to the defaults again)."""
        account_scope(ctx, caller, account_id)
        existing(ctx, account_id, channel_id)
        await write(ctx, account_id, channel_id, None)
        return Response(status_code=204)

    @router.post(_BASE + "/{channel_id}/test", status_code=202, response_model=SentTest,
                 responses=error_responses(401, 404, 503))  # fmt: skip
    async def send_test(
        account_id: AccountId, channel_id: ChannelId, ctx: Ctx, caller: CallerDep
    ) -> SentTest:
        """Send a test notification to this channel only (kind ``channel_test``)."""
        account_scope(ctx, caller, account_id)
        ch = existing(ctx, account_id, channel_id)
        now = ctx.clock()
        nid = f"test-{uuid.uuid4().hex}"
        rec = NotificationRecord(
            notification_id=nid, account_id=account_id, kind="channel_test",
            subject=f"capstream test of channel {ch.name or ch.channel_id}",
            body="A test notification: this channel receives capstream's notifications.",
            created_at_ms=now, channel_id=channel_id,
        )  # fmt: skip
        await ctx.publisher.publish(ctx.topics.notifications, nid, rec.to_bytes())
        return SentTest(notification_id=nid)

    @router.get(_BASE + "/{channel_id}/deliveries", response_model=list[DeliveryView],
                responses=error_responses(401, 404))  # fmt: skip
    async def deliveries(
        account_id: AccountId, channel_id: ChannelId, ctx: Ctx, caller: CallerDep
    ) -> list[DeliveryView]:
        """The delivery log: the latest attempts to this channel, newest first, each with
        its outcome and the HTTP status the endpoint answered."""
        account_scope(ctx, caller, account_id)
        existing(ctx, account_id, channel_id)
        return [DeliveryView.of(a) for a in _reads(ctx).deliveries(account_id, channel_id)]

    return router
