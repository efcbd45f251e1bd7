"""SMTP with TLS (STARTTLS and implicit) and a login, from settings, against a real aiosmtpd
server with a certificate made for the test (trusted through SSL_CERT_FILE)."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any, Literal

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from pydantic import SecretStr

from capstream.notifier.email import SmtpSender
from capstream.streams.local_kafka import free_port
from capstream.streams.records import NotificationRecord
from capstream.streams.settings import Settings

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

USER, PASSWORD = "capstream", "s3cret-for-the-test"
REC = NotificationRecord(
    notification_id="n-tls", account_id="acme", kind="policy_alert", policy_id="p1",
    recipients=["ops@acme.test"], subject="Policy crossed", body="tokens: 1200 > 1000",
    created_at_ms=1_780_000_000_000,
)  # fmt: skip


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


@dataclass(frozen=True)
class Certificate:
    context: ssl.SSLContext  # the server's
    file: Path  # what a client trusts


class Logins:
    """aiosmtpd authenticator: accepts USER/PASSWORD, remembers every attempt."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, bool]] = []

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            USER.encode(), PASSWORD.encode()
        )  # fmt: skip
        self.seen.append((data.login.decode() if isinstance(data, LoginPassword) else "?", ok))
        return AuthResult(success=ok, handled=False)  # a refusal answers 535


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A server context with a self-signed certificate for 127.0.0.1, trusted by clients."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make the test certificate")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem"), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(d / "cert.pem", d / "key.pem")
    return Certificate(ctx, d / "cert.pem")


@pytest.fixture
def trust(certificate: Certificate, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate.file))


def serve(
    mode: Literal["starttls", "tls"], ctx: ssl.SSLContext
) -> tuple[Controller, Inbox, Logins]:
    inbox, logins = Inbox(), Logins()
    # Implicit TLS: aiosmtpd does not see that the session is encrypted, so it is told not to
    # wait for STARTTLS before offering AUTH (the warning that causes is ignored below).
    tls: dict[str, Any] = (
        {"tls_context": ctx, "require_starttls": True, "auth_require_tls": True}
        if mode == "starttls" else {"ssl_context": ctx, "auth_require_tls": False}
    )  # fmt: skip
    c = Controller(inbox, hostname="127.0.0.1", port=free_port(), authenticator=logins,
                   auth_required=True, **tls)  # fmt: skip
    c.start()
    return c, inbox, logins


@pytest.fixture(params=["starttls", "tls"])
def server(
    request: pytest.FixtureRequest, certificate: Certificate
) -> Iterator[tuple[str, Controller, Inbox, Logins]]:
    c, inbox, logins = serve(request.param, certificate.context)
    try:
        yield request.param, c, inbox, logins
    finally:
        c.stop()


def sender(mode: str, port: int, password: str) -> SmtpSender:
    return SmtpSender(Settings(smtp_port=port, smtp_tls=mode, smtp_username=USER,
                               smtp_password=SecretStr(password), smtp_timeout_s=5.0))  # fmt: skip


async def test_tls_and_login_from_settings_deliver(server: Any, trust: None) -> None:
    mode, c, inbox, logins = server
    out = await sender(mode, c.port, PASSWORD).send(REC, ["ops@acme.test"])
    assert out.kind == "delivered", out
    assert logins.seen == [(USER, True)]
    (msg,) = inbox.messages
    assert msg["X-Capstream-Notification-Id"] == "n-tls"


async def test_a_refused_login_is_retried_not_dropped(server: Any, trust: None) -> None:
    mode, c, inbox, logins = server
    out = await sender(mode, c.port, "wrong").send(REC, ["ops@acme.test"])
    assert out.kind == "retry" and "login refused" in out.error, out
    assert logins.seen and all(ok is False for _, ok in logins.seen)  # each mechanism tried
    assert inbox.messages == []


async def test_an_untrusted_certificate_is_not_sent_to(server: Any) -> None:
    mode, c, inbox, logins = server
    out = await sender(mode, c.port, PASSWORD).send(REC, ["ops@acme.test"])
    assert out.kind == "retry", out  # nothing went out; it is tried again later
    assert logins.seen == [] and inbox.messages == []
