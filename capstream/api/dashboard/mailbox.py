"""The demo's caught mail: the local SMTP catcher stores each message here, the dashboard
shows a tenant the ones sent for its account.

One JSON file per message under ``<data dir>/mailbox`` (written to a temporary name, then
renamed, so a reader never sees half a message). Nothing else writes there; outside the demo
the directory does not exist and the inbox is empty.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from pydantic import BaseModel, ValidationError

MAX_MESSAGES = 500
"""The inbox keeps the newest messages; older files are removed as new ones arrive."""


class Mail(BaseModel):
    """One caught email."""

    received_at_ms: int
    mail_from: str
    rcpt_to: list[str]
    subject: str
    body: str
    notification_id: str | None
    kind: str | None


def mailbox_dir(data_dir: Path) -> Path:
    """Where the demo's SMTP catcher keeps mail (under the deployment's data dir)."""
    return data_dir / "mailbox"


class Mailbox:
    """Stores and lists caught mail in a directory."""

    def __init__(self, root: Path, max_messages: int = MAX_MESSAGES) -> None:
        self.root = root
        self.max_messages = max_messages

    def store(self, raw: bytes, mail_from: str, rcpt_to: list[str]) -> Mail:
        """Parse ``raw`` (RFC 5322 bytes) and keep it; returns what was stored."""
        msg = message_from_bytes(raw, policy=policy.default)
        body = ""
        if isinstance(msg, EmailMessage):
            part = msg.get_body(preferencelist=("plain",))
            body = part.get_content() if part is not None else ""
        mail = Mail(
            received_at_ms=time.time_ns() // 1_000_000,
            mail_from=mail_from,
            rcpt_to=list(rcpt_to),
            subject=str(msg.get("Subject", "")),
            body=body,
            notification_id=msg.get("X-Capstream-Notification-Id"),
            kind=msg.get("X-Capstream-Kind"),
        )
        self.root.mkdir(parents=True, exist_ok=True)
        name = f"{mail.received_at_ms:015d}-{uuid.uuid4().hex[:8]}.json"
        tmp = self.root / f".{name}.tmp"
        tmp.write_text(mail.model_dump_json(), encoding="utf-8")
        os.replace(tmp, self.root / name)
        self._trim()
        return mail

    def _files(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.glob("*.json") if not p.name.startswith("."))

    def _trim(self) -> None:
        files = self._files()
        for old in files[: max(0, len(files) - self.max_messages)]:
            old.unlink(missing_ok=True)

    def messages(self, limit: int = 100) -> list[Mail]:
        """The newest messages first (files that do not parse are skipped)."""
        out: list[Mail] = []
        for path in reversed(self._files()):
            try:
                out.append(Mail.model_validate(json.loads(path.read_text(encoding="utf-8"))))
            except (OSError, ValueError, ValidationError):
                continue
            if len(out) >= limit:
                break
        return out
