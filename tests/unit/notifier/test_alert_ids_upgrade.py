"""Alert ids now include the account (issue 21): the sent-log keeps working across the change,
records of the previous Notification schema still decode, and an alert names its bot."""

from __future__ import annotations

import io
import json
from pathlib import Path

import fastavro

from capstream.core import AlertAction, Policy, TenantSettings
from capstream.core.notifications import notification_id, policy_alert
from capstream.notifier.email import build_message
from capstream.notifier.sentlog import SentLog
from capstream.processors.outbox import encode_notification
from capstream.streams.codecs import MAGIC, SCHEMA_DIR, codec, fingerprint_of
from capstream.streams.records import NotificationRecord

T0 = 1_780_000_000_000
HOUR = 3_600_000


def _alert(account: str, at: int) -> NotificationRecord:
    policy = Policy(
        policy_id="p-hour", account_id=account, name="hour", metric="messages", threshold=5,
        window_seconds=3600, scope="account_each_bot", bot_id=None, alert=AlertAction(()),
        block=None,
    )  # fmt: skip
    note = policy_alert(policy, "bot-1", 5, at, at, TenantSettings(account), None)
    return NotificationRecord.from_bytes(encode_notification(note))


def _enqueue(log: SentLog, rec: NotificationRecord) -> bool:
    return log.enqueue(
        rec.notification_id, rec.account_id, ("email",), rec.to_bytes(), T0 + HOUR, (0, 1), T0,
        rec.previous_ids,
    )  # fmt: skip


def test_an_alert_sent_under_its_old_id_is_not_sent_again_after_the_upgrade(
    tmp_path: Path,
) -> None:
    log = SentLog(tmp_path / "sent.sqlite3")
    crossed = T0 + 17 * 60_000
    # The release before logged this tenant's alert under (policy, bot, fixed hour).
    old_id = notification_id("policy", "p-hour", "bot-1", crossed // HOUR * HOUR)
    assert log.enqueue(old_id, "acme", ("email",), b"old", T0 + HOUR, (0, 1), T0)
    # Replayed after the upgrade: a new id, which names the old one.
    replayed = _alert("acme", crossed)
    assert replayed.notification_id != old_id
    assert not _enqueue(log, replayed)
    # Another tenant with the same policy id and bot: its own alert, sent.
    other = _alert("globex", crossed)
    assert other.notification_id != replayed.notification_id
    assert _enqueue(log, other)
    assert log.status(other.notification_id, "email") == "pending"


def test_notifications_written_with_the_previous_schema_still_decode() -> None:
    old = json.loads((SCHEMA_DIR / "history" / "Notification.1.avsc").read_text())
    parsed = fastavro.parse_schema(old)
    buf = io.BytesIO()
    buf.write(MAGIC + fingerprint_of(parsed))
    fastavro.schemaless_writer(
        buf, parsed,
        {"notification_id": "n", "account_id": "a", "kind": "cap_reached", "policy_id": None,
         "recipients": [], "subject": "s", "body": "b", "created_at_ms": T0,
         "window_start_ms": None},
    )  # fmt: skip
    assert fingerprint_of(parsed) != codec("Notification").fingerprint
    rec = NotificationRecord.from_bytes(buf.getvalue())
    assert (rec.notification_id, rec.bot_id, rec.previous_ids) == ("n", None, [])


def test_the_email_of_a_policy_alert_names_its_bot() -> None:
    rec = _alert("acme", T0)
    assert rec.bot_id == "bot-1"
    msg = build_message(rec, "capstream@acme.test", ["ops@acme.test"])
    assert msg["X-Capstream-Bot-Id"] == "bot-1"
    assert "Bot: bot-1" in msg.get_content()
