"""Credit grants from the grants topic, and the raised settings the catalog hands out.

Each worker reads the whole compacted grants topic (as it does policies and settings), so
every worker, and a restarted one, holds the same grants; they are keyed by ``grant_id``,
so a record read again (a replay, a retried write) is the same grant, counted once. The
raised settings of an account are rebuilt only when its grants or base settings change, or
when a grant stops applying (its period ends or it expires: :meth:`Grants.due`), so the core
keeps getting the same object in between (it compares settings by identity).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from capstream.core import CoreError, TenantSettings
from capstream.core.grants import CapGrant, granted_caps, grants_change_at
from capstream.core.models import NEVER
from capstream.errors import DecodeError
from capstream.streams.records import CapGrantRecord


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def core_grant(rec: CapGrantRecord) -> CapGrant:
    """The core's grant for a wire record (raises ``GrantError`` if invalid)."""
    return CapGrant(
        grant_id=rec.grant_id,
        account_id=rec.account_id,
        category=rec.category,
        period=rec.period,
        period_key=rec.period_key,
        amount_micro=rec.amount_micro,
        expires_at_ms=rec.expires_at_ms,
        granted_at_ms=rec.granted_at_ms,
    )


class Grants:
    """Grants per account (by grant id) and each account's settings raised by them."""

    def __init__(self, clock: Callable[[], int] = wall_ms) -> None:
        self.clock = clock
        self._held: dict[str, dict[str, CapGrant]] = {}
        self.raised_settings: dict[str, TenantSettings] = {}
        """Per account with a grant raising a cap now: its raised settings (the catalog reads
        it per event; changed in place only)."""
        self._due: dict[str, int] = {}

    def raised(self, account_id: str) -> TenantSettings | None:
        """The account's settings with its grants applied, if a grant raises a cap now."""
        return self.raised_settings.get(account_id)

    def holds(self, account_id: str) -> bool:
        return account_id in self._held

    def of(self, account_id: str) -> list[CapGrant]:
        """The account's grants, oldest first."""
        held = self._held.get(account_id, {})
        return sorted(held.values(), key=lambda g: (g.granted_at_ms, g.grant_id))

    def apply(self, key: bytes | None, value: bytes | None) -> str:
        """Apply one grants-topic record; returns its account (the caller then calls
        :meth:`update`). A null value withdraws the grant named by ``account_id/grant_id``.
        Raises ``DecodeError`` for a record to dead-letter."""
        if value is None:
            if not key or b"/" not in key:
                raise DecodeError(
                    f"grant tombstone needs the key account_id/grant_id, got {key!r}",
                    reason="invalid_key",
                )
            account_id, _, grant_id = key.decode(errors="replace").partition("/")
            held = self._held.get(account_id)
            if held is not None:
                held.pop(grant_id, None)
                if not held:
                    del self._held[account_id]
            return account_id
        record = CapGrantRecord.from_bytes(value)
        try:
            grant = core_grant(record)
        except CoreError as exc:
            raise DecodeError(f"grant refused by the core: {exc}", reason="invalid") from exc
        self._held.setdefault(grant.account_id, {})[grant.grant_id] = grant
        return grant.account_id

    def update(self, account_id: str, base: TenantSettings, now: int | None = None) -> bool:
        """Rebuild the account's raised settings over ``base``; True if what the catalog
        hands out for it changed (its next evaluation must re-decide)."""
        now = self.clock() if now is None else now
        before = self.raised_settings.get(account_id)
        grants = self.of(account_id)
        raised = granted_caps(base, grants, now) if grants else base
        due = grants_change_at(base, grants, now) if grants else None
        if due is None:
            self._due.pop(account_id, None)
        else:
            self._due[account_id] = due
        if raised is base:
            self.raised_settings.pop(account_id, None)
            changed = before is not None
        elif before is not None and before == raised:
            changed = False  # same caps: keep handing out the same object
        else:
            self.raised_settings[account_id] = raised
            changed = True
        return changed

    def due(self, now: int) -> list[str]:
        """Accounts where a grant stopped applying at or before ``now`` (period ended,
        expired): :meth:`update` them."""
        return [a for a, t in self._due.items() if t <= now]

    @property
    def next_due(self) -> int:
        return min(self._due.values(), default=NEVER)
