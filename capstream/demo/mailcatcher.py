"""A local SMTP server for the demo: accepts every message and keeps it in the mailbox the
dashboard's inbox reads (nothing leaves the machine)."""

from __future__ import annotations

import logging
from typing import Any

from capstream.api.dashboard.mailbox import Mailbox
from capstream.errors import CapstreamError

log = logging.getLogger(__name__)


class MailCatcherError(CapstreamError):
    """The local SMTP catcher could not start."""


class _Handler:
    def __init__(self, box: Mailbox) -> None:
        self.box = box
        self.received = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8")
        self.box.store(raw, str(envelope.mail_from), [str(r) for r in envelope.rcpt_tos])
        self.received += 1
        return "250 Message accepted for delivery"


class MailCatcher:
    """aiosmtpd on ``127.0.0.1:port`` in a background thread; ``received`` counts messages."""

    def __init__(self, box: Mailbox, port: int) -> None:
        try:
            from aiosmtpd.controller import Controller
        except ImportError as exc:  # pragma: no cover - a dependency of capstream
            raise MailCatcherError(
                "the demo's mail catcher needs aiosmtpd: pip install aiosmtpd"
            ) from exc
        self.port = port
        self._handler = _Handler(box)
        self._controller = Controller(self._handler, hostname="127.0.0.1", port=port)

    @property
    def received(self) -> int:
        return self._handler.received

    def start(self) -> MailCatcher:
        try:
            self._controller.start()
        except (OSError, RuntimeError) as exc:
            raise MailCatcherError(
                f"cannot listen for mail on 127.0.0.1:{self.port}: {exc}"
            ) from exc
        return self

    def stop(self) -> None:
        try:
            self._controller.stop()
        except (AssertionError, RuntimeError):  # never started, or stopped already
            log.debug("mail catcher was not running")
