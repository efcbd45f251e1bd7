"""The Policy API's FastAPI application factory (the dashboard is mounted here too)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from capstream.api.accounts import AccountStore
from capstream.api.context import ApiContext, RecordPublisher, RecordView
from capstream.api.errors import ApiError, ErrorBody, ErrorResponse, FieldError
from capstream.api.keys import AdminKey, load_admin_key
from capstream.api.querystring import refuse_unknown_query
from capstream.api.reads import Query
from capstream.core.errors import CoreError
from capstream.streams.settings import Settings
from capstream.streams.topics import Topics

log = logging.getLogger(__name__)


def accounts_path(data_dir: Path) -> Path:
    """The SQLite file of accounts, hashed keys and bots."""
    return data_dir / "api" / "accounts.sqlite3"


def create_app(
    settings: Settings,
    *,
    store: AccountStore | None = None,
    view: RecordView | None = None,
    publisher: RecordPublisher | None = None,
    query: Query | None = None,
    admin: AdminKey | None = None,
    clock: Callable[[], int] | None = None,
) -> FastAPI:
    """The Policy API. Parts not given are built from ``settings`` when the app starts:
    the account store under the data dir, a Kafka publisher, the topic view (caught up
    before the first request) and clickhouse-connect on ``settings.clickhouse_dsn``.
    """
    owned: list[Callable[[], None]] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from capstream.api.clickhouse import clickhouse_query
        from capstream.api.publisher import Publisher
        from capstream.api.view import TopicView

        st = store or AccountStore(accounts_path(settings.data_dir))
        if store is None:
            owned.append(st.close)
        pub = publisher
        if pub is None:
            real_pub = Publisher(settings)
            owned.append(real_pub.close)
            pub = real_pub
        vw = view
        if vw is None:
            topic_view = TopicView(settings)
            await asyncio.to_thread(topic_view.start)
            owned.append(topic_view.stop)
            vw = topic_view
        ch = query
        if ch is None:
            real_ch = clickhouse_query(settings)
            owned.append(real_ch.close)
            ch = real_ch
        ctx = ApiContext(
            topics=Topics(settings.topic_prefix),
            store=st,
            view=vw,
            publisher=pub,
            admin=admin or load_admin_key(_secret(settings), settings.data_dir),
            query=ch,
        )
        if clock is not None:
            ctx.clock = clock
        app.state.capstream = ctx
        try:
            yield
        finally:
            for close in reversed(owned):
                close()
            owned.clear()

    app = FastAPI(
        title="capstream Policy API",
        version="1",
        description="Usage policies, cap behaviour, usage and top-ups for capstream tenants. "
        "Every request carries `Authorization: Bearer <key>`: an account key sees and changes "
        "only its own account, the admin key manages accounts.",
        lifespan=lifespan,
        dependencies=[Depends(refuse_unknown_query)],
    )
    _install_error_handlers(app)
    from capstream.api import (
        routes_accounts,
        routes_channels,
        routes_grants,
        routes_history,
        routes_policies,
        routes_prices,
        routes_simulations,
        routes_tenant,
    )

    app.include_router(routes_accounts.router)
    app.include_router(routes_policies.router)
    app.include_router(routes_tenant.router)
    app.include_router(routes_grants.router)
    app.include_router(routes_prices.router)
    app.include_router(routes_history.router)
    app.include_router(routes_simulations.router)
    app.include_router(routes_channels.router_for(settings))
    from capstream.api.dashboard import mount_dashboard

    mount_dashboard(app, settings.data_dir)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """Liveness: the view has caught up (the app only starts serving once it has)."""
        return {"status": "ok"}

    return app


def _secret(settings: Settings) -> str | None:
    return settings.api_admin_key.get_secret_value() if settings.api_admin_key else None


def _error(status: int, body: ErrorBody) -> JSONResponse:
    return JSONResponse(ErrorResponse(error=body).model_dump(exclude_none=True), status_code=status)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields, missing = [], []
        for e in exc.errors():
            loc = [str(p) for p in e.get("loc", ())]
            if loc and loc[0] in ("body", "query", "path", "header"):
                loc = loc[1:] or loc
            name = ".".join(loc) or "body"
            if e.get("type") == "missing" and request.method == "PUT":
                missing.append(name)
                message = "required: PUT replaces the whole resource (PATCH changes only some)"
            else:
                message = str(e.get("msg"))
            fields.append(FieldError(field=name, message=message))
        msg = "; ".join(f"{f.field}: {f.message}" for f in fields[:5] if f.field not in missing)
        if missing:
            whole = (
                f"PUT replaces the whole resource and the body lacks {', '.join(missing)}: "
                "send every field, or PATCH only the fields to change"
            )
            msg = f"{whole}; {msg}" if msg else whole
        return _error(422, ErrorBody(code="invalid", message=msg, fields=fields))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}
        body = ErrorBody(code=codes.get(exc.status_code, "http_error"), message=str(exc.detail))
        return _error(exc.status_code, body)

    @app.exception_handler(CoreError)
    async def core_error(_: Request, exc: CoreError) -> JSONResponse:
        return _error(422, ErrorBody(code="invalid", message=str(exc)))

    @app.exception_handler(ValidationError)
    async def record_error(_: Request, exc: ValidationError) -> JSONResponse:
        fields = [
            FieldError(field=".".join(str(p) for p in e["loc"]) or "body", message=e["msg"])
            for e in exc.errors()
        ]
        return _error(422, ErrorBody(code="invalid", message=str(fields[0].message), fields=fields))
