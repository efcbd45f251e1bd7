"""A per-attribute policy's alert email names the attribute and its value in headers."""

from __future__ import annotations

from capstream.notifier.email import build_message
from capstream.streams.records import NotificationRecord


def _note(**kw: object) -> NotificationRecord:
    return NotificationRecord(
        notification_id="n1", account_id="acme", kind="policy_alert", subject="s", body="b",
        created_at_ms=1, bot_id="bot-1", **kw,
    )  # fmt: skip


def test_the_alert_of_one_end_user_carries_it_in_headers_without_line_breaks() -> None:
    msg = build_message(_note(attribute="end_user", attribute_value="u-1\r\nBcc: x@y"), "f@x",
                        ["o@acme.test"])  # fmt: skip
    assert msg["X-Capstream-Attribute"] == "end_user"
    assert msg["X-Capstream-Attribute-Value"] == "u-1??Bcc: x@y"
    assert msg["Bcc"] is None
    plain = build_message(_note(), "f@x", ["o@acme.test"])
    assert plain["X-Capstream-Attribute"] is None
