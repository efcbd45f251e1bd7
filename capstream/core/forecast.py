"""Forecast alerts: tell the owner when, at the current pace, a credit cap will be reached
within a lead time they chose (opt-in per cap: ``CategoryCaps.daily_forecast_lead_s`` /
``monthly_forecast_lead_s``).

Rules (amounts in micro-credits, periods in the tenant's timezone), decided on each event
that spends the category's credits, in event time, while the cap is not reached yet:

* **Daily cap**: the pace is the last hour's credits of the category (the 1 h credit ring
  the smart throttle also reads; it starts counting when the tenant sets the cap or the
  lead) over the time they were spent in: an hour, or less since local midnight (at least
  15 minutes).
* **Monthly cap**: the pace is the month-to-date credits over the time since the local 1st
  (at least a day: the first hours of a month are no pace for a month).
* Leads: 60 s to a day (daily), to 31 days (monthly); a lead needs its cap
  (``models.forecast_problem``).
* It fires when that pace reaches the cap within the lead time and before the period ends:
  ``pace × min(lead, period end − t) ≥ cap − total``, in integers.
* **Once per period**: the sent forecast is kept in ``AccountUsage.alerted`` under
  :func:`forecast_key` with the period's start (as the cap warnings), so a restart or a
  replay sends none again; the notification id is one per (account, category, period,
  period key) too, so the notifier's sent-log drops a resend.

A cap reached, or a period whose cap cannot be reached at the pace, sends nothing.
"""

from __future__ import annotations

import re

from capstream.core.models import CATEGORIES, Notification, TenantSettings
from capstream.core.notifications import _iso, notification_id, owner_recipients
from capstream.core.usage import AccountUsage
from capstream.core.usage_base import CAP_WARN

FORECAST_KIND = "cap_forecast"
PACE_WINDOW_MS = 3_600_000
"""The daily pace's window (the smart throttle's 1 h credit ring: ``caps.RATE_SHORT_MS``)."""
MIN_PACE_SPAN_MS = 15 * 60_000
"""A daily pace is never taken over less than 15 minutes: the first calls of a day are no
pace to send an email on (the dashboard's display takes a minute)."""
MIN_MONTH_SPAN_MS = 86_400_000
"""A monthly pace is never taken over less than a day."""
_SUBJECT = re.compile(r"^(Daily|Monthly) (\w+) AI credit cap ")


def forecast_leads(settings: TenantSettings) -> tuple[int, ...]:
    """Per category and period (index ``2 * category + (0 daily, 1 monthly)``) the forecast
    lead in ms; 0: no forecast (none asked, or no cap to reach)."""
    out = []
    for cat in CATEGORIES:
        caps = settings.caps.get(cat)
        if caps is None:
            out += [0, 0]
            continue
        daily, monthly = caps.daily_forecast_lead_s, caps.monthly_forecast_lead_s
        out.append(daily * 1000 if daily and caps.daily_micro else 0)
        out.append(monthly * 1000 if monthly and caps.monthly_micro else 0)
    return tuple(out)


def forecast_key(category: str, period: str) -> str:
    """The key of a sent forecast in ``AccountUsage.alerted`` (value: the period's start).

    Under the cap warnings' prefix, with the period between separators, so the warnings'
    clean-up forgets it with the period (``caps.arm_warnings``)."""
    return f"{CAP_WARN}{category}\x1f{period}\x1fforecast"


_KEYS: tuple[str, ...] = tuple(
    forecast_key(c, p) for c in CATEGORIES for p in ("daily", "monthly")
)  # by slot, built once (the check runs on every credits event of an opted-in tenant)


def check_forecast(
    acct: AccountUsage,
    leads: tuple[int, ...],
    settings: TenantSettings,
    daily_cap: int | None,
    monthly_cap: int | None,
    ci: int,
    t: int,
    now: int,
    notes: list[Notification],
) -> None:
    """After an event at ``t`` spent credits of category ``ci``: send the forecast of each
    of its caps whose lead ``leads`` asks for, if the pace reaches it in time (see the
    module docstring)."""
    series = 4 + ci
    cat = CATEGORIES[ci]
    alerted = acct.alerted
    for slot in (2 * ci, 2 * ci + 1):
        lead = leads[slot]
        if not lead:
            continue
        if slot & 1:
            period, key, start, end = (
                "monthly",
                acct.month_key,
                acct.month_start_ms,
                acct.month_end_ms,
            )
            total = acct.month_base[series] + acct.day[series]
            cap = monthly_cap
            burned = total
            span = max(t - start, MIN_MONTH_SPAN_MS)
        else:
            period, key, start, end = "daily", acct.day_key, acct.day_start_ms, acct.day_end_ms
            total = acct.day[series]
            cap = daily_cap
            ring = acct.rings.get((series, PACE_WINDOW_MS))
            burned = ring.total if ring is not None else 0
            span = min(PACE_WINDOW_MS, max(t - start, MIN_PACE_SPAN_MS))
        if cap is None or total >= cap or burned <= 0:
            continue
        k = _KEYS[slot]
        if alerted.get(k) == start:
            continue
        horizon = min(lead, end - t)
        if horizon <= 0 or burned * horizon < (cap - total) * span:
            continue
        alerted[k] = start
        at = t + -(-(cap - total) * span // burned)  # when the pace reaches the cap
        notes.append(cap_forecast(settings, cat, period, key, total, cap, at, lead, t, now))


def cap_forecast(
    settings: TenantSettings, category: str, period: str, period_key: str, total: int,
    cap: int, reaches_at_ms: int, lead_ms: int, at: int, now: int,
) -> Notification:  # fmt: skip
    """The owner's heads-up that a cap is in reach; one id per (account, category, period,
    period key). ``window_start_ms`` is the forecast's own time ``at`` (the event's)."""
    span = "today" if period == "daily" else "this month"
    minutes = max(1, (reaches_at_ms - at + 59_999) // 60_000)
    body = (
        f"{category.title()} AI credits {span} ({period_key}) are at {total / 1e6:g} of the "
        f"{period} cap of {cap / 1e6:g} credits. At the current pace the cap is reached in "
        f"about {_minutes(minutes)}, around {_iso(reaches_at_ms)} (you asked to hear "
        f"{_minutes(lead_ms // 60_000)} ahead). At the cap, {category} AI pauses until the "
        "period resets; raise the cap or slow the bots down to avoid it."
    )
    return Notification(
        notification_id=notification_id(
            FORECAST_KIND, settings.account_id, category, period, period_key
        ),
        account_id=settings.account_id,
        kind=FORECAST_KIND,
        policy_id=None,
        recipients=owner_recipients(settings),
        subject=f"{period.title()} {category} AI credit cap in reach in about {_minutes(minutes)}",
        body=body,
        created_at_ms=now,
        window_start_ms=at,
        bot_id="*",
    )


def forecast_subject(subject: str) -> tuple[str, str] | None:
    """(category, period) of a forecast's subject, None if it is not one."""
    m = _SUBJECT.match(subject)
    if m is None or m.group(2) not in CATEGORIES:
        return None
    return m.group(2), m.group(1).lower()


def _minutes(n: int) -> str:
    if n >= 120 and n % 60 == 0:
        return f"{n // 60} hours"
    if n >= 60:
        return f"{n // 60} h {n % 60} min" if n % 60 else "1 hour"
    return f"{n} minute" + ("s" if n != 1 else "")
