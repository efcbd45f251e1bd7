"""Signed webhooks: POST the notification as JSON with an HMAC-SHA256 signature header."""

from __future__ import annotations

import hashlib
import hmac
import json

import httpx

from capstream.notifier.outcome import Outcome
from capstream.streams.records import NotificationRecord

SIGNATURE_HEADER = "X-Capstream-Signature"
ID_HEADER = "X-Capstream-Notification-Id"
_RETRY_STATUSES = {408, 425, 429, 502, 503, 504}


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body>`` (receivers recompute it)."""
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def signatures(keys: list[bytes], timestamp: int, body: bytes) -> str:
    """``t=<unix seconds>,v1=<hex>[,v1=<hex>...]``: one ``v1`` per key (during a secret's
    rotation the new and the previous one, so receivers holding either verify)."""
    macs = [
        hmac.new(k, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest() for k in keys
    ]
    return ",".join([f"t={timestamp}", *(f"v1={m}" for m in macs)])


def verify(secret: bytes, header: str, body: bytes) -> bool:
    """Receiver side: True if ``header`` signs ``body`` with ``secret`` (any of its ``v1``)."""
    try:
        parts = [p.split("=", 1) for p in header.split(",")]
        ts = int(next(v for k, v in parts if k == "t"))
    except (StopIteration, ValueError):
        return False
    expected = signature(secret, ts, body).split(",v1=", 1)[1]
    return any(k == "v1" and hmac.compare_digest(expected, v) for k, v in parts)


class WebhookSender:
    """Posts to one URL. Connection failures, timeouts and 408/425/429/502/503/504 are
    retried; the notification id header lets the receiver drop a repeat."""

    def __init__(
        self,
        url: str,
        secret: bytes | None,
        client: httpx.AsyncClient,
        previous: bytes | None = None,
    ) -> None:
        self._url = url
        self._keys = [k for k in (secret, previous) if k]
        self._client = client

    async def send(self, rec: NotificationRecord, recipients: list[str], now_s: int) -> Outcome:
        payload = {**rec.model_dump(exclude={"channel_id"}), "recipients": recipients}
        body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", ID_HEADER: rec.notification_id}
        if self._keys:
            headers[SIGNATURE_HEADER] = signatures(self._keys, now_s, body)
        return await post(self._client, self._url, body, headers, "webhook")


async def post(
    client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str], what: str
) -> Outcome:
    """POST ``body``; the outcome with the status answered. Errors name ``what``, never the
    URL (a Slack URL is a secret)."""
    try:
        r = await client.post(url, content=body, headers=headers)
    except httpx.TransportError as exc:
        return Outcome("retry", f"{what} unreachable: {type(exc).__name__}")
    code = r.status_code
    if r.is_success:
        return Outcome("delivered", "", code) if code != 200 else _DELIVERED_200
    if code in _RETRY_STATUSES:
        return Outcome("retry", f"{what} answered {code}", code)
    return Outcome("refused", f"{what} answered {code}", code)


_DELIVERED_200 = Outcome("delivered", "", 200)
