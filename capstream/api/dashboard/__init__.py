"""The tenant dashboard: static HTML/CSS/JS (no build step) and the read endpoints it uses."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from capstream.api.dashboard.mailbox import mailbox_dir
from capstream.api.dashboard.routes import router

STATIC = Path(__file__).parent / "static"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


class _Hardened:
    """Serves the static files with a strict Content-Security-Policy and no caching, so a
    new version is picked up on reload and nothing but our own files can run."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"cache-control", b"no-cache"),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def mount_dashboard(app: FastAPI, data_dir: Path) -> None:
    """Add the dashboard's endpoints, serve it at ``/dashboard/`` and redirect ``/`` there."""
    app.include_router(router)
    app.state.capstream_mailbox = mailbox_dir(data_dir)
    app.mount("/dashboard", _Hardened(StaticFiles(directory=STATIC, html=True)), name="dashboard")

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/dashboard/")


__all__ = ["STATIC", "mount_dashboard"]
