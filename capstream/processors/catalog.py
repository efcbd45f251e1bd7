"""Every tenant's policies and cap settings in memory, from the compacted topics' records.

The core compares ``PolicySet`` and ``TenantSettings`` by identity, so the catalog hands out
the same objects until a record changes them; a change builds new ones, which makes the next
``evaluate`` re-decide the account. Invalid records (the core refuses them) are reported to
the caller for the DLQ and leave the previous value in force.
"""

from __future__ import annotations

from collections.abc import Iterable

from capstream.core import (
    AlertAction,
    BlockAction,
    CategoryCaps,
    CoreError,
    Policy,
    PolicySet,
    TenantSettings,
)
from capstream.errors import DecodeError
from capstream.processors.grants import Grants
from capstream.streams.records import BotResumeRecord, PolicyRecord, TenantSettingsRecord


class Catalog:
    """Policies per account (by policy id) and tenant settings per account."""

    def __init__(self) -> None:
        self._policies: dict[str, dict[str, Policy]] = {}
        self._sets: dict[str, PolicySet] = {}
        self._settings: dict[str, TenantSettings] = {}
        self._defaults: dict[str, TenantSettings] = {}
        self._empty: dict[str, PolicySet] = {}
        self._resumes: dict[str, dict[str, int]] = {}
        self.grants = Grants()
        """Credit grants (issue 24): ``settings()`` hands out the caps they raise."""
        self._raised = self.grants.raised_settings  # per event: one dict lookup, no call

    def policies(self, account_id: str) -> PolicySet:
        """The account's enabled and disabled policies (the same object until one changes)."""
        ps = self._sets.get(account_id)
        if ps is None:
            ps = self._empty.get(account_id)
            if ps is None:
                ps = self._empty[account_id] = PolicySet(())
        return ps

    def settings(self, account_id: str) -> TenantSettings:
        """The tenant's settings, or the defaults (free plan, UTC, no caps) if it has none;
        with the caps raised by the credit grants that apply now."""
        s = self._raised.get(account_id)
        if s is not None:
            return s
        s = self._settings.get(account_id)
        if s is None:
            s = self._defaults.get(account_id)
            if s is None:
                s = self._defaults[account_id] = TenantSettings(account_id)
        return s

    def apply_policy(self, key: bytes | None, value: bytes | None) -> str:
        """Apply one policies-topic record; returns the account it changed.

        A null value deletes the policy named by the key ``account_id/policy_id``. Raises
        ``DecodeError`` (reason ``undecodable``/``invalid``/...) for a record to dead-letter.
        """
        if value is None:
            if not key or b"/" not in key:
                raise DecodeError(
                    f"policy tombstone needs the key account_id/policy_id, got {key!r}",
                    reason="invalid_key",
                )
            account_id, _, policy_id = key.decode(errors="replace").partition("/")
            held = self._policies.get(account_id, {})
            if held.pop(policy_id, None) is not None:
                self._rebuild(account_id)
            return account_id
        record = PolicyRecord.from_bytes(value)
        try:
            policy = core_policy(record)
        except CoreError as exc:
            raise DecodeError(f"policy refused by the core: {exc}", reason="invalid") from exc
        return self.put_policy(policy)

    def apply_settings(self, key: bytes | None, value: bytes | None) -> str:
        """Apply one tenants-topic record (null value: back to the defaults)."""
        if value is None:
            if not key:
                raise DecodeError("tenant settings tombstone without a key", reason="invalid_key")
            account_id = key.decode(errors="replace")
            self._settings.pop(account_id, None)
            if self.grants.holds(account_id):
                self.grants.update(account_id, self.settings_of(account_id))
            return account_id
        record = TenantSettingsRecord.from_bytes(value)
        try:
            settings = core_settings(record)
        except CoreError as exc:
            raise DecodeError(f"settings refused by the core: {exc}", reason="invalid") from exc
        return self.put_settings(settings)

    # -- core objects directly (backtests, simulations, tests: no wire records) --------------

    @classmethod
    def of(
        cls, policies: Iterable[Policy] = (), settings: Iterable[TenantSettings] = ()
    ) -> Catalog:
        """A catalog holding these core ``Policy`` and ``TenantSettings`` objects."""
        catalog = cls()
        for p in policies:
            catalog.put_policy(p)
        for s in settings:
            catalog.put_settings(s)
        return catalog

    def put_policy(self, policy: Policy) -> str:
        """Add or replace a core ``Policy`` (what a policies-topic record does); returns its
        account. The account's next evaluation re-decides it if the set changed."""
        held = self._policies.setdefault(policy.account_id, {})
        if held.get(policy.policy_id) != policy:
            held[policy.policy_id] = policy
            self._rebuild(policy.account_id)
        return policy.account_id

    def remove_policy(self, account_id: str, policy_id: str) -> bool:
        """Delete a policy (a tombstone); True if it was held."""
        held = self._policies.get(account_id, {})
        if held.pop(policy_id, None) is None:
            return False
        self._rebuild(account_id)
        return True

    def put_settings(self, settings: TenantSettings) -> str:
        """Set a tenant's core ``TenantSettings``; returns its account."""
        if self._settings.get(settings.account_id) != settings:
            self._settings[settings.account_id] = settings
            if self.grants.holds(settings.account_id):
                self.grants.update(settings.account_id, settings)
        return settings.account_id

    def apply_grant(self, key: bytes | None, value: bytes | None) -> str | None:
        """Apply one grants-topic record; returns the account if the caps it hands out
        changed (None: nothing to re-decide, e.g. a grant read again). Raises
        ``DecodeError`` for a record to dead-letter."""
        account_id = self.grants.apply(key, value)
        return account_id if self.grants.update(account_id, self.settings_of(account_id)) else None

    def refresh(self, now: int) -> set[str]:
        """Accounts whose raised caps changed by the clock (a grant's period ended or it
        expired) at ``now``: re-decide them."""
        if self.grants.next_due > now:
            return set()
        return {a for a in self.grants.due(now) if self.grants.update(a, self.settings_of(a), now)}

    def settings_of(self, account_id: str) -> TenantSettings:
        """The tenant's own settings (or the defaults), without grants."""
        s = self._settings.get(account_id)
        if s is None:
            s = self._defaults.get(account_id)
            if s is None:
                s = self._defaults[account_id] = TenantSettings(account_id)
        return s

    def apply_resume(self, key: bytes | None, value: bytes | None) -> str | None:
        """Apply one resumes-topic record: the latest instant each bot was resumed at.

        A tombstone forgets nothing (a resume already applied stays applied); an older
        resume than the one held changes nothing (returns None: nothing to re-decide).
        """
        if value is None:
            return None
        record = BotResumeRecord.from_bytes(value)
        held = self._resumes.setdefault(record.account_id, {})
        if held.get(record.bot_id, -1) >= record.resumed_at_ms:
            return None
        held[record.bot_id] = record.resumed_at_ms
        self._rebuild(record.account_id)
        return record.account_id

    def _rebuild(self, account_id: str) -> None:
        held = self._policies.get(account_id)
        if not held:
            self._policies.pop(account_id, None)
            self._sets.pop(account_id, None)
            return
        self._sets[account_id] = PolicySet(
            sorted(held.values(), key=lambda p: p.policy_id), self._resumes.get(account_id)
        )

    @property
    def accounts(self) -> int:
        return len(self._policies.keys() | self._settings.keys())


def core_policy(rec: PolicyRecord) -> Policy:
    """The core's policy for a wire record (raises the core's ``PolicyError`` if invalid)."""
    return Policy(
        policy_id=rec.policy_id,
        account_id=rec.account_id,
        name=rec.name,
        metric=rec.metric,
        threshold=rec.threshold,
        window_seconds=rec.window_seconds,
        scope=rec.scope,
        bot_id=rec.bot_id,
        alert=AlertAction(tuple(rec.alert.recipients)) if rec.alert else None,
        block=BlockAction(rec.block.duration_seconds) if rec.block else None,
        enabled=rec.enabled,
        category=rec.category,
        version=rec.version,
        updated_at_ms=rec.updated_at_ms,
        warn_percents=None if rec.warn_percents is None else tuple(rec.warn_percents),
        period=rec.period,
        per=rec.per,
        per_value=rec.per_value,
    )


def core_settings(rec: TenantSettingsRecord) -> TenantSettings:
    """The core's tenant settings for a wire record (raises ``SettingsError`` if invalid)."""
    return TenantSettings(
        account_id=rec.account_id,
        timezone=rec.timezone,
        language=rec.language,
        plan=rec.plan,
        owner_email=rec.owner_email,
        caps={
            c: CategoryCaps(
                v.daily_micro,
                v.monthly_micro,
                None if v.daily_warn_percents is None else tuple(v.daily_warn_percents),
                None if v.monthly_warn_percents is None else tuple(v.monthly_warn_percents),
                v.daily_forecast_lead_s,
                v.monthly_forecast_lead_s,
            )
            for c, v in rec.caps.items()
        },
        fallback_message=rec.fallback_message,
        auto_downgrade=rec.auto_downgrade,
        premium_model=rec.premium_model,
        downgrade_model=rec.downgrade_model,
        throttle=rec.throttle,
        muted_notifications=tuple(rec.muted_notifications),
        version=rec.version,
        updated_at_ms=rec.updated_at_ms,
    )
