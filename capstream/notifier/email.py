"""Email delivery over SMTP (aiosmtplib), with each failure classified for retry or not."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

from capstream.notifier.outcome import DELIVERED, Kind, Outcome
from capstream.streams.records import NotificationRecord
from capstream.streams.settings import Settings


def build_message(rec: NotificationRecord, sender: str, recipients: list[str]) -> EmailMessage:
    """The email of a notification; its Message-ID is derived from the notification id."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Subject"] = rec.subject
    msg["Message-ID"] = f"<{rec.notification_id}@capstream>"
    msg["X-Capstream-Notification-Id"] = rec.notification_id
    msg["X-Capstream-Kind"] = rec.kind
    if rec.bot_id is not None:
        msg["X-Capstream-Bot-Id"] = rec.bot_id
    if rec.attribute is not None and rec.attribute_value is not None:  # a per-attribute alert
        msg["X-Capstream-Attribute"] = rec.attribute
        # a gateway's caller chose the value: no line breaks or control characters in a header
        value = "".join(c if c.isprintable() else "?" for c in rec.attribute_value)
        msg["X-Capstream-Attribute-Value"] = value
    msg.set_content(rec.body)
    return msg


class SmtpSender:
    """Sends one email per call on a fresh connection (alerts are rare; no pool needed).

    Failures before the message is handed over (connect, TLS, login) and explicit 4xx
    replies are retried; 5xx replies are final; a connection lost while sending is
    ``uncertain`` and not retried, so nobody gets the same alert twice.
    """

    def __init__(self, settings: Settings) -> None:
        self._s = settings

    async def send(self, rec: NotificationRecord, recipients: list[str]) -> Outcome:
        import aiosmtplib

        s = self._s
        smtp = aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            use_tls=s.smtp_tls == "tls",
            start_tls=s.smtp_tls == "starttls",
            timeout=s.smtp_timeout_s,
        )
        try:
            await smtp.connect()
            if s.smtp_username:
                password = s.smtp_password.get_secret_value() if s.smtp_password else ""
                await smtp.login(s.smtp_username, password)
        except aiosmtplib.SMTPAuthenticationError as exc:
            # Wrong or missing credentials: nothing was sent; once the operator fixes them
            # the pending notifications still go out (until they expire).
            await _close(smtp)
            return Outcome("retry", f"SMTP login refused ({exc.code}): {exc.message}")
        except aiosmtplib.SMTPResponseException as exc:
            await _close(smtp)
            if exc.code >= 500:
                return Outcome("refused", f"SMTP {exc.code} before sending: {exc.message}")
            return Outcome("retry", f"SMTP {exc.code} before sending: {exc.message}")
        except (aiosmtplib.SMTPException, OSError) as exc:
            await _close(smtp)
            return Outcome("retry", f"SMTP unreachable: {type(exc).__name__}: {exc}")
        try:
            await smtp.send_message(build_message(rec, s.smtp_sender, recipients))
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            kind: Kind = "retry" if codes and all(400 <= c < 500 for c in codes) else "refused"
            return Outcome(kind, f"recipients refused: {codes}")
        except aiosmtplib.SMTPResponseException as exc:
            kind2: Kind = "refused" if exc.code >= 500 else "retry"
            return Outcome(kind2, f"SMTP {exc.code}: {exc.message}")
        except (aiosmtplib.SMTPException, OSError) as exc:
            return Outcome("uncertain", f"connection lost while sending: {type(exc).__name__}")
        finally:
            await _close(smtp)
        return DELIVERED


async def _close(smtp: Any) -> None:
    try:
        if smtp.is_connected:
            await smtp.quit()
    except Exception:  # closing is best effort; the outcome is already known
        smtp.close()
