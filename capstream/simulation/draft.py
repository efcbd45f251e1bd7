"""What a simulation runs: a draft (a usage policy, or cap behaviour) and a past time range.

A draft is checked the way the Policy API checks a write: field by field (the API's bodies),
then by the core's own ``Policy`` / ``TenantSettings`` validation. Errors are
:class:`SimulationError` naming the field to fix.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from capstream.api.errors import InvalidError
from capstream.api.models import ID_PATTERN, NewPolicyBody, SettingsPatchBody
from capstream.api.money import priced_policy, priced_settings
from capstream.api.validation import checked_policy, checked_settings
from capstream.core import Policy, PolicySet, TenantSettings
from capstream.core.pricing import PriceTable
from capstream.errors import CapstreamError
from capstream.processors.catalog import core_policy, core_settings
from capstream.streams.records import PolicyRecord, TenantSettingsRecord

DAY_MS = 86_400_000
DEFAULT_RANGE_DAYS = 30
MAX_RANGE_DAYS = 93
DRAFT_POLICY_ID = "draft"
"""The id a drafted policy gets when it names none and replaces none."""


class SimulationError(CapstreamError):
    """A simulation that cannot run as asked; ``field`` names what to fix (``body`` if
    nothing in particular)."""

    def __init__(self, message: str, *, field: str = "body") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class SimulationBody(BaseModel):
    """A draft and a past range to try it on.

    Exactly one of ``policy`` (a usage policy as ``POST .../policies`` takes it; with
    ``replaces`` it stands in for that existing policy, otherwise it is added to the current
    ones) and ``settings`` (cap behaviour as ``PATCH .../settings`` takes it: caps per
    category, auto-downgrade, throttle; it changes only what it names in the current
    settings). ``from`` and
    ``to``: ISO 8601 instants or epoch milliseconds; default the last 30 days, at most 93.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True, strict=True)

    policy: NewPolicyBody | None = None
    replaces: Annotated[str, Field(pattern=ID_PATTERN)] | None = None
    settings: SettingsPatchBody | None = None
    from_: Annotated[str | int | None, Field(alias="from")] = None
    to: str | int | None = None


@dataclass(frozen=True, slots=True)
class Draft:
    """A checked draft: the policy (and the one it replaces) or the settings."""

    policy: Policy | None = None
    replaces: str | None = None
    settings: TenantSettings | None = None
    record: PolicyRecord | TenantSettingsRecord | None = None
    """The checked record ``policy`` or ``settings`` was built from (picklable: the draft
    side's process rebuilds the configuration from records)."""

    def describe(self) -> dict[str, Any]:
        p = self.policy
        return {
            "kind": "policy" if p is not None else "settings",
            "policy_id": p.policy_id if p is not None else None,
            "replaces": self.replaces,
        }


@dataclass(frozen=True, slots=True)
class Config:
    """One side of a simulation: the policies and the settings in force."""

    policies: PolicySet
    settings: TenantSettings
    records: tuple[tuple[PolicyRecord, ...], TenantSettingsRecord] | None = None
    """The records it was built from, if it was (``configs``): what another process needs
    to build the same configuration (the core's objects are not picklable)."""


def parse_instant(value: str | int | None, what: str) -> int | None:
    """Epoch ms of an ISO 8601 instant (naive = UTC) or of epoch milliseconds."""
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip()
    if text.lstrip("-").isdecimal():
        return int(text)
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return int(dt.timestamp() * 1000)
    except (ValueError, OverflowError):
        raise SimulationError(
            f"{what}: {text!r} is not a date or time; use ISO 8601 such as 2026-11-01 or "
            "2026-11-01T00:00:00Z, or epoch milliseconds",
            field=what,
        ) from None


def check_range(from_ms: int | None, to_ms: int | None, now_ms: int) -> tuple[int, int]:
    """The range ``[from, to)`` to replay: default the last 30 days; at most 93 days; not
    in the future (``to`` is clamped to now)."""
    to = now_ms if to_ms is None else min(to_ms, now_ms)
    start = to - DEFAULT_RANGE_DAYS * DAY_MS if from_ms is None else from_ms
    if start >= to:
        raise SimulationError(
            "the range is empty: 'from' must be before 'to' (and before now)", field="from"
        )
    if to - start > MAX_RANGE_DAYS * DAY_MS:
        days = (to - start) / DAY_MS
        raise SimulationError(
            f"the range spans {days:.1f} days; a simulation covers at most {MAX_RANGE_DAYS} "
            "days: move 'from' later or 'to' earlier",
            field="from",
        )
    return start, to


def _pydantic_error(exc: ValidationError, prefix: str = "") -> SimulationError:
    e = exc.errors()[0]
    loc = ".".join(str(p) for p in e.get("loc", ()))
    field = f"{prefix}{loc}" if loc else (prefix.rstrip(".") or "body")
    return SimulationError(f"{field}: {e.get('msg')}", field=field)


def _core_error(exc: InvalidError, prefix: str) -> SimulationError:
    """The core's refusal with the field it is about (as the API names it on a write)."""
    field = exc.fields[0].field if exc.fields else "body"
    return SimulationError(
        f"{prefix}: {exc.message}", field=prefix if field == "body" else f"{prefix}.{field}"
    )


def check_draft(
    account_id: str,
    body: SimulationBody,
    current_policies: list[PolicyRecord],
    current_settings: TenantSettingsRecord,
    now_ms: int,
    prices: PriceTable | None = None,
) -> Draft:
    """The draft of ``body`` checked against the account's current configuration (caps and
    thresholds given in money converted at ``prices``' rate, as the API saves them)."""
    if (body.policy is None) == (body.settings is None):
        raise SimulationError(
            "a simulation needs a draft: exactly one of 'policy' (a usage policy) or "
            "'settings' (cap behaviour)",
            field="policy" if body.policy is None else "settings",
        )
    if body.settings is not None:
        if body.replaces is not None:
            raise SimulationError(
                "'replaces' names a policy; it goes with a 'policy' draft", field="replaces"
            )
        if body.settings.plan is not None and body.settings.plan != current_settings.plan:
            raise SimulationError(
                f"the plan is {current_settings.plan!r}; a simulation keeps the plan (leave "
                "'plan' out)",
                field="settings.plan",
            )
        try:
            whole = body.settings.over(current_settings)
            srec = whole.record(current_settings, current_settings.version + 1, now_ms)
            srec = checked_settings(priced_settings(srec, prices))
        except InvalidError as exc:
            raise _core_error(exc, "settings") from exc
        return Draft(settings=core_settings(srec), record=srec)
    assert body.policy is not None
    held = {p.policy_id for p in current_policies}
    if body.replaces is not None and body.replaces not in held:
        raise SimulationError(
            f"'replaces': the account has no policy {body.replaces!r} (it has "
            f"{sorted(held) or 'none'})",
            field="replaces",
        )
    pid = body.replaces or body.policy.policy_id or DRAFT_POLICY_ID
    if body.replaces is None and pid in held:
        named = (
            f"policy {pid!r} exists"
            if body.policy.policy_id
            else f"the account has a policy with the draft's default id {pid!r}"
        )
        raise SimulationError(
            f"{named}: set 'replaces' to try the draft in its place, or give the draft "
            "another policy_id",
            field="policy.policy_id",
        )
    if body.policy.alert is None and body.policy.block is None:
        raise SimulationError(
            "the draft policy has no action: add an alert, a block, or both",
            field="policy.alert",
        )
    try:
        rec = checked_policy(priced_policy(body.policy.record(account_id, pid, 0, now_ms), prices))
        policy = core_policy(rec)
    except InvalidError as exc:
        raise _core_error(exc, "policy") from exc
    if not policy.enabled:
        raise SimulationError(
            "the draft policy is disabled: a disabled policy does nothing to simulate",
            field="policy.enabled",
        )
    return Draft(policy=policy, replaces=body.replaces, record=rec)


def configs(
    current_policies: list[PolicyRecord], current_settings: TenantSettingsRecord, draft: Draft
) -> tuple[Config, Config]:
    """(current, draft) configurations: the draft added, replacing a policy, or replacing the
    settings."""
    current = config_of(tuple(current_policies), current_settings)
    if draft.settings is not None:
        srec = draft.record if isinstance(draft.record, TenantSettingsRecord) else None
        records = (tuple(current_policies), srec) if srec is not None else None
        return current, Config(current.policies, draft.settings, records)
    assert draft.policy is not None
    drafted = [p for p in current.policies.policies if p.policy_id != draft.replaces]
    prec = draft.record if isinstance(draft.record, PolicyRecord) else None
    kept = tuple(r for r in current_policies if r.policy_id != draft.replaces)
    return current, Config(
        PolicySet(sorted([*drafted, draft.policy], key=lambda p: p.policy_id)),
        current.settings,
        ((*kept, prec), current_settings) if prec is not None else None,
    )


def config_of(policies: tuple[PolicyRecord, ...], settings: TenantSettingsRecord) -> Config:
    """The configuration of these records (``Config.records``: also in another process)."""
    cores = sorted((core_policy(p) for p in policies), key=lambda p: p.policy_id)
    return Config(PolicySet(cores), core_settings(settings), (policies, settings))


def body_from_file(path: Path, kind: str) -> dict[str, Any]:
    """A policy or settings draft from a JSON file (CLI); ``SimulationError`` if malformed."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SimulationError(f"cannot read {path}: {exc.strerror}", field=kind) from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise SimulationError(f"{path} is not valid JSON: {exc}", field=kind) from exc
    if not isinstance(data, dict):
        raise SimulationError(f"{path} must hold one JSON object (the {kind})", field=kind)
    return data


def parse_body(data: dict[str, Any]) -> SimulationBody:
    """``SimulationBody`` of a JSON object, or ``SimulationError`` naming the bad field."""
    try:
        return SimulationBody.model_validate(data)
    except ValidationError as exc:
        raise _pydantic_error(exc) from exc


def now_ms() -> int:
    return time.time_ns() // 1_000_000
