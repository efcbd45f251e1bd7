"""Entry point of ``capstream api``: load (or generate) the admin key, build the app, serve."""

from __future__ import annotations

from collections.abc import Callable

from capstream.streams.settings import Settings


def serve_api(settings: Settings, say: Callable[[str], None]) -> None:
    """Run the Policy API with uvicorn on ``settings.api_host:api_port`` until interrupted.

    A generated admin key is printed here, once, on the first start; only its hash is kept.
    """
    import uvicorn

    from capstream.api.app import create_app
    from capstream.api.keys import admin_key_file, load_admin_key

    secret = settings.api_admin_key.get_secret_value() if settings.api_admin_key else None
    admin = load_admin_key(secret, settings.data_dir)
    if admin.shown_once:
        say(
            f"Generated the admin key (shown once; its hash is in "
            f"{admin_key_file(settings.data_dir)}):\n  {admin.shown_once}"
        )
    app = create_app(settings, admin=admin)
    say(f"Policy API on http://{settings.api_host}:{settings.api_port} (OpenAPI at /docs)")
    uvicorn.run(app, host=settings.api_host, port=settings.api_port, log_level="info")
