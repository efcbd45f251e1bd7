"""The core's rules applied to API writes, with the field each broken rule is about."""

from __future__ import annotations

import re

from capstream.api.errors import FieldError, InvalidError
from capstream.core.errors import CoreError
from capstream.processors.catalog import core_policy, core_settings
from capstream.streams.records import PolicyRecord, TenantSettingsRecord

_POLICY_FIELDS = (
    "policy_id", "metric", "threshold", "window_seconds", "period", "scope", "bot_id", "category",
    "recipients", "duration_seconds", "action", "per_value", "per",
)  # fmt: skip
_POLICY_PREFIX = re.compile(r"^policy '[^']*': ")
_SETTINGS_FIELDS = (
    "timezone", "language", "plan", "throttle", "auto-downgrade", "caps", "model",
)  # fmt: skip
_FORECAST_LEAD = re.compile(r"^caps: (\w+): .*\b(daily|monthly) forecast lead")
_FIELD_ALIASES = {
    "recipients": "alert.recipients",
    "duration_seconds": "block.duration_seconds",
    "action": "alert",
    "auto-downgrade": "auto_downgrade",
    "model": "premium_model",
}


def field_of(message: str, candidates: tuple[str, ...]) -> str:
    """The body field a core error message is about: the first candidate it names."""
    text = re.sub(r"^policy '[^']*': ", "", message)
    missing = re.search(r"needs the (\w+)", text)  # "scope 'bot' needs the bot_id ..."
    if missing and missing.group(1) in candidates:
        return _FIELD_ALIASES.get(missing.group(1), missing.group(1))
    best: tuple[int, str] | None = None
    for name in candidates:
        m = re.search(rf"\b{re.escape(name)}\b", text)
        if m and (best is None or m.start() < best[0]):
            best = (m.start(), name)
    if best is None:
        return "body"
    return _FIELD_ALIASES.get(best[1], best[1])


def checked_policy(rec: PolicyRecord) -> PolicyRecord:
    """``rec`` if the core accepts it; else a 422 naming the field to fix.

    The message leaves out the core's ``policy '<id>': `` prefix: the request is about one
    policy already, and on a create without ``policy_id`` the id is one the API generated
    and the caller never saw."""
    try:
        core_policy(rec)
    except CoreError as exc:
        msg = _POLICY_PREFIX.sub("", str(exc), count=1)
        field = field_of(msg, _POLICY_FIELDS)
        raise InvalidError(msg, fields=[FieldError(field=field, message=msg)]) from exc
    return rec


def checked_settings(rec: TenantSettingsRecord) -> TenantSettingsRecord:
    """``rec`` if the core accepts it; else a 422 naming the field to fix."""
    try:
        core_settings(rec)
    except CoreError as exc:
        msg = str(exc)
        field = field_of(msg, _SETTINGS_FIELDS)
        lead = _FORECAST_LEAD.match(msg)  # "caps: text: a daily forecast lead needs ..."
        if lead:
            field = f"caps.{lead.group(1)}.{lead.group(2)}_forecast_lead_s"
        raise InvalidError(msg, fields=[FieldError(field=field, message=msg)]) from exc
    return rec


def checked_caps(rec: TenantSettingsRecord) -> TenantSettingsRecord:
    """``rec`` unless a category's daily cap is above its monthly cap (422 naming it).

    The core accepts such caps, but the monthly cap would always stop the category first,
    so the daily figure could never take effect: almost certainly a typo (e.g. a missing
    zero on the monthly figure).
    """
    fields = []
    for category, caps in rec.caps.items():
        daily, monthly = caps.daily_micro, caps.monthly_micro
        if daily is not None and monthly is not None and daily > monthly:
            fields.append(FieldError(
                field=f"caps.{category}.daily_micro",
                message=(
                    f"the daily {category} cap ({daily} micro-credits) is above the monthly "
                    f"one ({monthly}): the monthly cap would always stop it first; lower the "
                    "daily cap or raise the monthly one"
                ),
            ))  # fmt: skip
    if fields:
        raise InvalidError("; ".join(f.message for f in fields), fields=fields)
    return rec
