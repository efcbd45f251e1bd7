"""Per-tenant channels in the notifier: routing by account and kind, signed webhooks with
retries and a delivery log, Slack, email lists, sealed secrets never logged."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

import httpx
import pytest

from capstream.notifier.channels import ChannelSender, route
from capstream.notifier.dispatcher import Dispatcher
from capstream.notifier.outcome import DELIVERED, Outcome
from capstream.notifier.secretbox import SecretBoxError, channel_key, open_box, seal
from capstream.notifier.sentlog import SentLog
from capstream.notifier.webhook import SIGNATURE_HEADER, verify
from capstream.streams.records import ChannelRecord, DeliveryAttemptRecord, NotificationRecord
from capstream.streams.settings import Settings

T0 = 1_780_000_000_000
KEY = b"k" * 32
SECRET_A = "whsec_tenant_a_0123456789abcdef"
SECRET_B = "whsec_tenant_b_fedcba9876543210"
SLACK_URL = "https://hooks.slack.com/services/T000/B000/SLACKSECRETXYZ"


class Clock:
    def __init__(self) -> None:
        self.ms = T0

    def __call__(self) -> int:
        return self.ms


class Directory:
    def __init__(self, *channels: ChannelRecord) -> None:
        self.by: dict[tuple[str, str], ChannelRecord] = {
            (c.account_id, c.channel_id): c for c in channels
        }

    def channels(self, account_id: str) -> list[ChannelRecord]:
        return [c for (a, _), c in self.by.items() if a == account_id]

    def channel(self, account_id: str, channel_id: str) -> ChannelRecord | None:
        return self.by.get((account_id, channel_id))


class Mailer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, list[str]]] = []

    async def send(self, rec: NotificationRecord, recipients: list[str]) -> Outcome:
        self.sent.append((rec.notification_id, recipients))
        return DELIVERED


def webhook(account: str, cid: str, url: str, secret: str, kinds: list[str] | None = None,
            **kw: object) -> ChannelRecord:  # fmt: skip
    return ChannelRecord(
        account_id=account, channel_id=cid, type="webhook", url=url,
        secret_box=seal(KEY, secret), secret_hint=secret[-4:], kinds=kinds or [], **kw,
    )  # fmt: skip


def note(nid: str, account: str, kind: str = "cap_warning", **kw: object) -> NotificationRecord:
    return NotificationRecord(
        notification_id=nid, account_id=account, kind=kind, recipients=[],
        subject=f"{kind} of {account}", body="text AI credits at 80%", created_at_ms=T0, **kw,
    )  # fmt: skip


class Harness:
    def __init__(self, tmp: Path, directory: Directory, answer: httpx.MockTransport) -> None:
        self.clock = Clock()
        self.log = SentLog(tmp / "sent.sqlite3")
        self.mailer = Mailer()
        self.directory = directory
        self.published: list[DeliveryAttemptRecord] = []
        self.http = httpx.AsyncClient(transport=answer)
        self.dispatcher = Dispatcher(
            self.log, self.mailer, clock=self.clock, base_backoff_s=1.0,
            owner_email=lambda account: f"owner@{account}.test",
            channels=ChannelSender(directory, KEY, self.http, self.mailer),
            on_attempt=self.published.append,
        )  # fmt: skip

    def accept(self, rec: NotificationRecord) -> tuple[str, ...]:
        channels = route(rec, self.directory, ("email",))
        if channels:
            self.log.enqueue(rec.notification_id, rec.account_id, channels, rec.to_bytes(),
                             T0 + 3_600_000, (0, 1), self.clock())  # fmt: skip
        return channels

    async def drain(self, rounds: int = 10) -> None:
        """Deliver what is due, moving the clock to each next attempt."""
        for _ in range(rounds):
            await self.dispatcher.run_once()
            nxt = self.log.next_due_ms()
            if nxt is None:
                return
            self.clock.ms = max(self.clock.ms, nxt)


async def test_a_webhook_failing_twice_then_answering_is_delivered_once_with_three_attempts(
    tmp_path: Path,
) -> None:
    received: list[httpx.Request] = []
    answers = iter([503, 503, 200])

    def endpoint(request: httpx.Request) -> httpx.Response:
        received.append(request)
        return httpx.Response(next(answers))

    h = Harness(tmp_path, Directory(webhook("acme", "w1", "https://a.example/hook", SECRET_A)),
                httpx.MockTransport(endpoint))  # fmt: skip
    assert h.accept(note("n1", "acme")) == ("ch:w1",)
    await h.drain()
    assert h.log.status("n1", "ch:w1") == "sent"
    attempts = h.log.attempts("n1", "ch:w1")
    assert [(a.attempt, a.outcome, a.status_code) for a in attempts] == [
        (1, "retry", 503), (2, "retry", 503), (3, "delivered", 200),
    ]  # fmt: skip
    assert attempts[1].at_ms > attempts[0].at_ms  # backed off between attempts
    assert [(p.attempt, p.status_code, p.channel_id) for p in h.published] == [
        (1, 503, "w1"), (2, 503, "w1"), (3, 200, "w1"),
    ]  # fmt: skip
    assert h.published[0].next_attempt_ms is not None and h.published[2].next_attempt_ms is None
    # every attempt signed with the endpoint's own secret, the same notification id
    assert len(received) == 3
    assert {r.headers["X-Capstream-Notification-Id"] for r in received} == {"n1"}
    for r in received:
        assert verify(SECRET_A.encode(), r.headers[SIGNATURE_HEADER], r.content)
        assert not verify(SECRET_B.encode(), r.headers[SIGNATURE_HEADER], r.content)
    await h.drain()
    assert len(received) == 3  # delivered once: never again
    await h.http.aclose()


async def test_each_tenant_routes_its_kinds_and_never_gets_another_tenants_events(
    tmp_path: Path,
) -> None:
    got: dict[str, list[str]] = {}

    def endpoint(request: httpx.Request) -> httpx.Response:
        got.setdefault(request.url.host, []).append(json.loads(request.content)["account_id"])
        return httpx.Response(200)

    directory = Directory(
        webhook("acme", "wa", "https://acme.example/hook", SECRET_A),
        webhook("zeta", "wb", "https://zeta.example/hook", SECRET_B, kinds=["policy_alert"]),
    )
    h = Harness(tmp_path, directory, httpx.MockTransport(endpoint))
    assert h.accept(note("a1", "acme")) == ("ch:wa",)
    assert h.accept(note("a2", "acme", "policy_alert")) == ("ch:wa",)
    assert h.accept(note("b1", "zeta")) == ("email",)  # zeta routed only policy alerts
    assert h.accept(note("b2", "zeta", "policy_alert")) == ("ch:wb",)
    # a test naming another tenant's channel goes nowhere
    assert h.accept(note("t1", "acme", "channel_test", channel_id="wb")) == ()
    await h.drain()
    assert got == {"acme.example": ["acme", "acme"], "zeta.example": ["zeta"]}
    assert h.mailer.sent == [("b1", ["owner@zeta.test"])]
    # a disabled channel takes nothing: back to the defaults
    directory.by[("acme", "wa")] = webhook("acme", "wa", "https://acme.example/hook", SECRET_A,
                                           enabled=False)  # fmt: skip
    assert h.accept(note("a3", "acme")) == ("email",)
    await h.drain()
    assert h.mailer.sent[-1] == ("a3", ["owner@acme.test"])
    assert got["acme.example"] == ["acme", "acme"]
    await h.http.aclose()


async def test_slack_and_email_lists_and_no_secret_in_any_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    posted: list[httpx.Request] = []

    def endpoint(request: httpx.Request) -> httpx.Response:
        posted.append(request)
        return httpx.Response(503 if len(posted) == 1 else 200, text="ok")

    slack = ChannelRecord(account_id="acme", channel_id="s1", type="slack",
                          secret_box=seal(KEY, SLACK_URL), secret_hint="TXYZ",
                          kinds=["throttle_engaged"])  # fmt: skip
    team = ChannelRecord(account_id="acme", channel_id="e1", type="email",
                         emails=["a@acme.test", "b@acme.test"], kinds=["cap_warning"])  # fmt: skip
    hook = webhook("acme", "w1", "https://a.example/hook", SECRET_A, kinds=["throttle_engaged"])
    h = Harness(tmp_path, Directory(slack, team, hook), httpx.MockTransport(endpoint))
    assert h.accept(note("n1", "acme", "throttle_engaged")) == ("ch:s1", "ch:w1")
    assert h.accept(note("n2", "acme", "cap_warning")) == ("ch:e1",)
    posted_before = len(posted)
    await h.drain()
    assert posted_before == 0 and len(posted) == 3  # Slack 503 then 200, the webhook 200
    slack_posts = [r for r in posted if r.url.host == "hooks.slack.com"]
    assert json.loads(slack_posts[-1].content) == {
        "text": "*throttle_engaged of acme*\ntext AI credits at 80%"
    }
    assert h.mailer.sent == [("n2", ["a@acme.test", "b@acme.test"])]
    assert [a.status_code for a in h.log.attempts("n1", "ch:s1")] == [503, 200]
    logged = caplog.text + "".join(a.error for a in h.published)
    assert "SLACKSECRETXYZ" not in logged and SECRET_A not in logged
    assert "hooks.slack.com/services" not in logged
    await h.http.aclose()


async def test_a_rotated_secret_signs_with_both_until_the_old_one_expires(tmp_path: Path) -> None:
    received: list[httpx.Request] = []

    def endpoint(request: httpx.Request) -> httpx.Response:
        received.append(request)
        return httpx.Response(204)

    rotated = webhook("acme", "w1", "https://a.example/hook", SECRET_B,
                      previous_secret_box=seal(KEY, SECRET_A),
                      previous_until_ms=T0 + 60_000)  # fmt: skip
    h = Harness(tmp_path, Directory(rotated), httpx.MockTransport(endpoint))
    h.accept(note("n1", "acme"))
    await h.drain()
    h.clock.ms = T0 + 60_000
    h.accept(note("n2", "acme"))
    await h.drain()
    first, second = (r.headers[SIGNATURE_HEADER] for r in received)
    assert verify(SECRET_A.encode(), first, received[0].content)
    assert verify(SECRET_B.encode(), first, received[0].content)
    assert not verify(SECRET_A.encode(), second, received[1].content)
    assert verify(SECRET_B.encode(), second, received[1].content)
    assert h.log.attempts("n1", "ch:w1")[0].status_code == 204
    await h.http.aclose()


def test_sealed_secrets_open_only_with_their_key_and_unaltered(tmp_path: Path) -> None:
    box = seal(KEY, SLACK_URL)
    assert SLACK_URL not in box and "SLACKSECRET" not in box
    assert open_box(KEY, box) == SLACK_URL
    assert seal(KEY, SLACK_URL) != box  # a fresh nonce each time
    with pytest.raises(SecretBoxError, match="does not open"):
        open_box(b"x" * 32, box)
    tampered = box[:-6] + ("A" if box[-6] != "A" else "B") + box[-5:]
    with pytest.raises(SecretBoxError) as err:
        open_box(KEY, tampered)
    assert SLACK_URL not in str(err.value)
    s = Settings(data_dir=tmp_path)
    key = channel_key(s)
    assert key == channel_key(s)  # created once, then read
    assert stat.S_IMODE(os.stat(tmp_path / "channel.key").st_mode) == 0o600
    assert channel_key(Settings(data_dir=tmp_path, channel_key="deployment-key")) != key


def test_notifications_written_before_channel_ids_decode_as_routed_by_kind() -> None:
    from capstream.streams.codecs import SCHEMA_DIR, Codec, _named_schemas

    old_schema = json.loads((SCHEMA_DIR / "history" / "Notification.2.avsc").read_text())
    fp = Codec("Notification").register_writer(old_schema)
    import io

    import fastavro

    buf = io.BytesIO()
    buf.write(b"\xc3\x01" + fp)
    _, named = _named_schemas()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(old_schema, named_schemas=dict(named)), {
        "notification_id": "n1", "account_id": "acme", "kind": "cap_warning", "policy_id": None,
        "recipients": [], "subject": "s", "body": "b", "created_at_ms": T0,
        "window_start_ms": None, "bot_id": None, "previous_ids": [],
    })  # fmt: skip
    rec = NotificationRecord.from_bytes(buf.getvalue())
    assert rec.channel_id is None
    hook = webhook("acme", "w1", "https://a.example/hook", SECRET_A)
    assert route(rec, Directory(hook), ("email",)) == ("ch:w1",)
