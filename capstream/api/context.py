"""What the routes share: the account store, the topic view, the publisher, ClickHouse, auth."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from capstream.api.accounts import AccountStore
from capstream.api.errors import ForbiddenError, NotFoundError, UnauthorizedError, UnavailableError
from capstream.api.keys import AdminKey, split_account_key
from capstream.api.publisher import Written
from capstream.api.reads import Columns, Query
from capstream.errors import CapstreamError
from capstream.streams.records import PolicyRecord, TenantSettingsRecord
from capstream.streams.topics import Topics


class RecordPublisher(Protocol):
    """Writes one record to a topic and says where it landed (``value=None`` deletes)."""

    async def publish(self, topic: str, key: str, value: bytes | None) -> Written: ...


class RecordView(Protocol):
    """The latest policies and tenant settings, as consumed from their compacted topics."""

    def policies(self, account_id: str) -> list[PolicyRecord]: ...
    def policy(self, account_id: str, policy_id: str) -> PolicyRecord | None: ...
    def tenant(self, account_id: str) -> TenantSettingsRecord | None: ...
    def wait_for(
        self, topic: str, partition: int, offset: int, timeout_s: float = 10.0
    ) -> None: ...


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class ApiContext:
    """Everything a request handler needs; built once by ``create_app``."""

    topics: Topics
    store: AccountStore
    view: RecordView
    publisher: RecordPublisher
    admin: AdminKey
    query: Query | None = None
    clock: Callable[[], int] = field(default=_now_ms)

    def clickhouse(self) -> Query:
        """The ClickHouse port; any failure of it answers 503, never 500."""
        query = self.query
        if query is None:
            raise UnavailableError("no ClickHouse is configured for the read endpoints")

        def guarded(sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
            try:
                return query(sql, params)
            except CapstreamError as exc:
                raise UnavailableError(f"ClickHouse query failed: {exc}") from exc
            except Exception as exc:  # the port's boundary: any driver error is "unavailable"
                raise UnavailableError(f"ClickHouse query failed ({type(exc).__name__})") from exc

        return guarded

    def clickhouse_columns(self) -> Columns | None:
        """The column port of the ClickHouse port, if it has one (same 503s); None if not."""
        columns: Columns | None = getattr(self.query, "columns", None)
        if columns is None:
            return None
        port = columns

        def guarded(sql: str, params: dict[str, Any]) -> tuple[list[str], list[Sequence[Any]]]:
            try:
                return port(sql, params)
            except CapstreamError as exc:
                raise UnavailableError(f"ClickHouse query failed: {exc}") from exc
            except Exception as exc:  # the port's boundary: any driver error is "unavailable"
                raise UnavailableError(f"ClickHouse query failed ({type(exc).__name__})") from exc

        return guarded


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: the admin, or one account."""

    admin: bool
    account_id: str | None
    key_id: str | None = None
    """The account key's public id (None for the admin key)."""

    @property
    def who(self) -> str:
        """How records name this caller: ``admin`` or ``key:<key id>`` (never the secret)."""
        return "admin" if self.admin else f"key:{self.key_id}"


_bearer = HTTPBearer(auto_error=False, description="An account key (csk_...) or the admin key.")


def context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.capstream
    return ctx


def authenticate(ctx: ApiContext, creds: HTTPAuthorizationCredentials | None) -> Caller:
    """The caller of a request, from ``Authorization: Bearer <key>``; 401 if none matches."""
    if creds is None or not creds.credentials:
        raise UnauthorizedError("send your API key as 'Authorization: Bearer <key>'")
    key = creds.credentials
    if ctx.admin.matches(key):
        return Caller(admin=True, account_id=None)
    account_id = ctx.store.authenticate(key)
    if account_id is None:
        raise UnauthorizedError("unknown or revoked API key")
    parts = split_account_key(key)
    return Caller(admin=False, account_id=account_id, key_id=parts[0] if parts else None)


def account_scope(ctx: ApiContext, caller: Caller, account_id: str) -> str:
    """``account_id`` if the caller may act on it; 404 otherwise (never reveals existence)."""
    if caller.admin:
        if not ctx.store.exists(account_id):
            raise NotFoundError(f"account {account_id!r} not found")
        return account_id
    if caller.account_id != account_id:
        raise NotFoundError(f"account {account_id!r} not found")
    return account_id


def require_admin(caller: Caller) -> None:
    if not caller.admin:
        raise ForbiddenError(
            "this needs the admin key; an account key manages only its own account"
        )


def _caller(
    request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Caller:
    return authenticate(context(request), creds)


Ctx = Annotated[ApiContext, Depends(context)]
CallerDep = Annotated[Caller, Depends(_caller)]
