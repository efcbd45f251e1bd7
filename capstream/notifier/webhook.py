"""Signed webhooks: POST the notification as JSON with an HMAC-SHA256 signature header."""

from __future__ import annotations

import hashlib
import hmac
import json

import httpx

from capstream.notifier.outcome import DELIVERED, Outcome
from capstream.streams.records import NotificationRecord

SIGNATURE_HEADER = "X-Capstream-Signature"
ID_HEADER = "X-Capstream-Notification-Id"
_RETRY_STATUSES = {408, 425, 429, 502, 503, 504}


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body>`` (receivers recompute it)."""
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: bytes, header: str, body: bytes) -> bool:
    """Receiver side: True if ``header`` signs ``body`` with ``secret``."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        expected = signature(secret, int(parts["t"]), body)
    except (KeyError, ValueError):
        return False
    return hmac.compare_digest(expected, header)


class WebhookSender:
    """Posts to one URL. Connection failures, timeouts and 408/425/429/502/503/504 are
    retried; the notification id header lets the receiver drop a repeat."""

    def __init__(self, url: str, secret: bytes | None, client: httpx.AsyncClient) -> None:
        self._url = url
        self._secret = secret
        self._client = client

    async def send(self, rec: NotificationRecord, recipients: list[str], now_s: int) -> Outcome:
        payload = {**rec.model_dump(), "recipients": recipients}
        body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", ID_HEADER: rec.notification_id}
        if self._secret:
            headers[SIGNATURE_HEADER] = signature(self._secret, now_s, body)
        try:
            r = await self._client.post(self._url, content=body, headers=headers)
        except httpx.TransportError as exc:
            return Outcome("retry", f"webhook unreachable: {type(exc).__name__}")
        if r.is_success:
            return DELIVERED
        if r.status_code in _RETRY_STATUSES:
            return Outcome("retry", f"webhook answered {r.status_code}")
        return Outcome("refused", f"webhook answered {r.status_code}")
