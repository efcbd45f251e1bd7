"""Per-tenant channels: where each notification goes, and sending to a tenant's channel.

A tenant's channels (``ChannelRecord``: email lists, signed webhooks, Slack incoming
webhooks) come from the compacted channels topic. :func:`route` picks a notification's
deliveries: the account's enabled channels that take its kind; when none does, the
deployment's defaults (email to the recipients or owner, and the deployment-wide webhook
when ``CAPSTREAM_WEBHOOK_URL`` is set). A "send test" names one channel (``channel_id``).
Only the notification's own account's channels are looked at: tenant A's webhook never
receives tenant B's events.
"""

from __future__ import annotations

import json
import logging
from typing import Protocol

import httpx

from capstream.notifier.outcome import Outcome
from capstream.notifier.secretbox import SecretBoxError, open_box
from capstream.notifier.webhook import WebhookSender, post
from capstream.streams.records import ChannelRecord, NotificationRecord

CHANNEL_PREFIX = "ch:"


class ChannelDirectory(Protocol):
    """The latest channels per account (the channels topic's view)."""

    def channels(self, account_id: str) -> list[ChannelRecord]: ...
    def channel(self, account_id: str, channel_id: str) -> ChannelRecord | None: ...


class EmailTo(Protocol):
    async def send(self, rec: NotificationRecord, recipients: list[str]) -> Outcome: ...


def route(
    rec: NotificationRecord, directory: ChannelDirectory | None, defaults: tuple[str, ...]
) -> tuple[str, ...]:
    """The sent-log channels of ``rec``: ``ch:<id>`` per routed channel of its account, else
    ``defaults``; a test goes to its one channel (nothing if it is not the account's)."""
    if rec.channel_id is not None:
        if directory is None or directory.channel(rec.account_id, rec.channel_id) is None:
            return ()
        return (CHANNEL_PREFIX + rec.channel_id,)
    if directory is None:
        return defaults
    routed = tuple(
        CHANNEL_PREFIX + c.channel_id
        for c in directory.channels(rec.account_id)
        if c.account_id == rec.account_id and c.routes(rec.kind)
    )
    return routed or defaults


class ChannelSender:
    """Sends a notification to one of its account's channels."""

    def __init__(
        self, directory: ChannelDirectory, key: bytes, http: httpx.AsyncClient, email: EmailTo
    ) -> None:
        # httpx logs every request's URL at INFO: a Slack URL is a secret, never logged
        logging.getLogger("httpx").setLevel(logging.WARNING)
        logging.getLogger("httpcore").setLevel(logging.WARNING)
        self.directory = directory
        self._key = key
        self._http = http
        self._email = email

    async def send(self, rec: NotificationRecord, channel_id: str, now_ms: int) -> Outcome:
        ch = self.directory.channel(rec.account_id, channel_id)
        if ch is None or ch.account_id != rec.account_id:
            return Outcome("refused", f"channel {channel_id!r} was deleted")
        if not ch.enabled and rec.channel_id is None:
            return Outcome("refused", f"channel {channel_id!r} is disabled")
        try:
            if ch.type == "email":
                if not ch.emails:
                    return Outcome("refused", "the email channel has no address")
                return await self._email.send(rec, list(ch.emails))
            secret = open_box(self._key, ch.secret_box) if ch.secret_box else ""
            if ch.type == "webhook":
                previous = None
                if ch.previous_secret_box and now_ms < ch.previous_until_ms:
                    previous = open_box(self._key, ch.previous_secret_box).encode()
                sender = WebhookSender(ch.url, secret.encode() or None, self._http, previous)
                return await sender.send(rec, list(rec.recipients), now_ms // 1000)
            body = json.dumps({"text": f"*{rec.subject}*\n{rec.body}"}).encode()
            headers = {"Content-Type": "application/json"}
            return await post(self._http, secret, body, headers, "Slack")
        except SecretBoxError as exc:
            return Outcome("refused", f"the channel's secret cannot be opened: {exc}")
