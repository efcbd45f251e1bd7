"""Signed webhooks: receivers can verify the HMAC; 5xx/429 and network errors are retried."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from capstream.notifier.dispatcher import Dispatcher
from capstream.notifier.outcome import DELIVERED, Outcome
from capstream.notifier.sentlog import SentLog
from capstream.notifier.webhook import ID_HEADER, SIGNATURE_HEADER, WebhookSender, verify
from capstream.streams.records import NotificationRecord

T0 = 1_780_000_000_000
SECRET = b"whsec-unit"


def note() -> NotificationRecord:
    return NotificationRecord(
        notification_id="n9", account_id="acme", kind="cap_reached", subject="Cap reached",
        body="daily text cap", created_at_ms=T0,
    )  # fmt: skip


async def test_signature_verifies_and_tampering_does_not() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        out = await WebhookSender("https://hooks.test/x", SECRET, client).send(
            note(), ["o@acme.test"], T0 // 1000
        )
    assert (out.kind, out.status_code) == (DELIVERED.kind, 204)
    (req,) = seen
    header = req.headers[SIGNATURE_HEADER]
    assert verify(SECRET, header, req.content)
    assert not verify(b"other", header, req.content)
    assert not verify(SECRET, header, req.content.replace(b"daily", b"DAILY"))
    assert req.headers[ID_HEADER] == "n9"
    assert json.loads(req.content)["recipients"] == ["o@acme.test"]


async def test_statuses_map_to_retry_or_refusal() -> None:
    codes = iter([503, 429, 400])

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(next(codes))

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        sender = WebhookSender("https://hooks.test/x", None, client)
        kinds = [(await sender.send(note(), [], 0)).kind for _ in range(3)]
    assert kinds == ["retry", "retry", "refused"]
    async with httpx.AsyncClient(transport=httpx.MockTransport(down)) as client:
        assert (await WebhookSender("https://h.test", None, client).send(note(), [], 0)).kind == (
            "retry"
        )


async def test_email_and_webhook_are_tracked_separately(tmp_path: Path) -> None:
    class Email:
        async def send(self, rec: NotificationRecord, recipients: list[str]) -> Outcome:
            return DELIVERED

    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(503 if len(calls) == 1 else 200)

    log = SentLog(tmp_path / "s.sqlite3")
    clock = [T0]
    log.enqueue("n9", "acme", ("email", "webhook"), note().to_bytes(), T0 + 3_600_000, (0, 1), T0)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        d = Dispatcher(
            log, Email(), webhook=WebhookSender("https://h.test", SECRET, client),
            owner_email=lambda a: "o@acme.test", clock=lambda: clock[0],
        )  # fmt: skip
        await d.run_once()
        assert (log.status("n9", "email"), log.status("n9", "webhook")) == ("sent", "pending")
        clock[0] += 10_000
        await d.run_once()
    assert log.counts() == {"sent": 2}
    assert len(calls) == 2
