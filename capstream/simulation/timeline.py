"""Folds the core's decisions into what a simulation reports: alerts, blocks, cap periods,
downgrade and throttle periods.

The input is exactly what a worker publishes: enforcement states (the control topic) and
notifications (the notifications topic), in order. So the same fold applied to a running
worker's topics gives the same lists as the simulation (the equivalence test does that).

A period starts at the ``updated_at_ms`` of the state that shows it and ends at its
scheduled end (``blocked_until_ms``, ``resumes_at_ms``, ...) or at the state that lifted it
earlier, whichever comes first; one still running at the end of the range keeps its
scheduled end and ``open: true``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from capstream.core import EnforcementState
from capstream.core.forecast import FORECAST_KIND, forecast_subject
from capstream.core.models import ACCOUNT_WIDE_BOT, THROTTLED_BATCHING_S
from capstream.core.periods import zone

MAX_ITEMS = 5_000
"""At most this many entries per list (a 93-day run of a one-minute policy could alert
133,920 times); ``truncated`` counts what was left out."""


class NoteLike(Protocol):
    """A ``Notification`` or a ``NotificationRecord`` read back from the topic."""

    notification_id: str
    kind: str
    policy_id: str | None
    created_at_ms: int
    window_start_ms: int | None
    bot_id: str | None
    subject: str
    attribute_value: str | None


def local(ms: int, tz: str) -> str:
    """``ms`` as ISO 8601 local time in ``tz`` (with its offset)."""
    return datetime.fromtimestamp(ms / 1000, zone(tz)).isoformat(timespec="seconds")


@dataclass(slots=True)
class _Open:
    start: int
    until: int
    label: str


@dataclass(slots=True)
class Timeline:
    """Decisions of one configuration, folded."""

    timezone: str
    alerts: list[dict[str, Any]] = field(default_factory=list)
    caps: list[dict[str, Any]] = field(default_factory=list)
    forecasts: list[dict[str, Any]] = field(default_factory=list)
    """``cap_forecast`` notifications: a cap in reach within its lead time."""
    cap_notifications: int = 0
    truncated: int = 0
    decisions: int = 0
    _blocks: dict[tuple[int, int, str], list[str]] = field(default_factory=dict)
    _throttles: dict[tuple[int, int, str], list[str]] = field(default_factory=dict)
    downgrades: list[dict[str, Any]] = field(default_factory=list)
    _open_block: dict[str, _Open] = field(default_factory=dict)
    _open_throttle: dict[str, _Open] = field(default_factory=dict)
    _open_caps: dict[str, tuple[_Open, str]] = field(default_factory=dict)
    _open_down: _Open | None = None

    # -- input -------------------------------------------------------------------------------

    def note(self, n: NoteLike, recipients: tuple[str, ...] | list[str] = ()) -> None:
        """One notification (``policy_alert``, ``cap_reached`` and ``cap_forecast`` are
        reported)."""
        if n.kind == "policy_alert":
            if len(self.alerts) >= MAX_ITEMS:
                self.truncated += 1
                return
            at = n.created_at_ms
            self.alerts.append(
                {
                    "at_ms": at,
                    "at": local(at, self.timezone),
                    "policy_id": n.policy_id,
                    "bot_id": n.bot_id,
                    "window_start_ms": n.window_start_ms,
                    "recipients": list(recipients),
                    "notification_id": n.notification_id,
                    "attribute_value": n.attribute_value,
                }
            )
        elif n.kind == "cap_reached":
            self.cap_notifications += 1
        elif n.kind == FORECAST_KIND:
            if len(self.forecasts) >= MAX_ITEMS:
                self.truncated += 1
                return
            what = forecast_subject(n.subject)
            at = n.window_start_ms if n.window_start_ms is not None else n.created_at_ms
            self.forecasts.append(
                {
                    "at_ms": at,
                    "at": local(at, self.timezone),
                    "category": what[0] if what else None,
                    "period": what[1] if what else None,
                    "subject": n.subject,
                    "recipients": list(recipients),
                    "notification_id": n.notification_id,
                }
            )

    def state(self, e: EnforcementState) -> None:
        """One enforcement state, in publication order."""
        self.decisions += 1
        t, bot = e.updated_at_ms, e.bot_id
        if e.follows_account:  # its own block or throttle ended: "*" holds it now
            self._period(self._open_block, self._blocks, bot, t, None, "")
            self._period(self._open_throttle, self._throttles, bot, t, None, "")
            return
        blocked = e.blocked_until_ms
        self._period(self._open_block, self._blocks, bot, t, blocked, e.block_policy_id or "")
        throttled = e.batching_interval_s >= THROTTLED_BATCHING_S
        until = (e.throttled_until_ms or 0) if throttled else None
        self._period(self._open_throttle, self._throttles, bot, t, until, e.throttle_reason or "")
        if bot != ACCOUNT_WIDE_BOT:
            return
        down = e.downgraded_until_ms
        held = self._open_down
        if held is not None and (down is None or down != held.until):
            self._close_down(held, t)
            held = self._open_down = None
        if down is not None and held is None:
            self._open_down = _Open(t, down, "")
        caps = e.caps
        for cat in list(self._open_caps):
            opened, key = self._open_caps[cat]
            now = caps.get(cat)
            if now is None or now.period != opened.label or now.period_key != key:
                self._close_cap(cat, opened, key, t)
        for cat, cap in caps.items():
            if cat not in self._open_caps:
                self._open_caps[cat] = (_Open(t, cap.resumes_at_ms, cap.period), cap.period_key)

    def _period(
        self,
        opened: dict[str, _Open],
        done: dict[tuple[int, int, str], list[str]],
        bot: str,
        t: int,
        until: int | None,
        label: str,
    ) -> None:
        held = opened.get(bot)
        if held is not None:
            if until is not None and label == held.label:
                held.until = until  # extended (or shortened) while it runs
                return
            self._close(done, bot, held, t)
            del opened[bot]
        if until is not None:
            opened[bot] = _Open(t, until, label)

    def _close(
        self, done: dict[tuple[int, int, str], list[str]], bot: str, p: _Open, t: int
    ) -> None:
        end = p.until if p.until and p.until <= t else t
        bots = done.get((p.start, end, p.label))
        if bots is None:
            if len(done) >= MAX_ITEMS:
                self.truncated += 1
                return
            bots = done[(p.start, end, p.label)] = []
        bots.append(bot)

    def _close_down(self, p: _Open, t: int, *, open_: bool = False) -> None:
        if len(self.downgrades) >= MAX_ITEMS:
            self.truncated += 1
            return
        end = p.until if open_ or p.until <= t else t
        self.downgrades.append(self._span(p.start, end, open_))

    def _close_cap(self, cat: str, p: _Open, key: str, t: int, *, open_: bool = False) -> None:
        del self._open_caps[cat]
        if len(self.caps) >= MAX_ITEMS:
            self.truncated += 1
            return
        end = p.until if open_ or p.until <= t else t
        self.caps.append(
            {
                "category": cat,
                "period": p.label,
                "period_key": key,
                **self._span(p.start, end, open_),
            }
        )

    def _span(self, start: int, end: int, open_: bool) -> dict[str, Any]:
        tz = self.timezone
        return {
            "from_ms": start, "until_ms": end, "from": local(start, tz), "until": local(end, tz),
            "open": open_,
        }  # fmt: skip

    # -- output ------------------------------------------------------------------------------

    def finish(self, end_ms: int) -> dict[str, Any]:
        """Close what still runs at ``end_ms`` (``open: true``, its scheduled end, or
        ``end_ms`` if it has none, e.g. strict throttling) and report."""
        for bot, p in list(self._open_block.items()):
            self._close_open(self._blocks, bot, p, end_ms)
        for bot, p in list(self._open_throttle.items()):
            self._close_open(self._throttles, bot, p, end_ms)
        self._open_block.clear()
        self._open_throttle.clear()
        if self._open_down is not None:
            self._close_down(self._open_down, 0, open_=True)
            self._open_down = None
        for cat, (p, key) in list(self._open_caps.items()):
            self._close_cap(cat, p, key, 0, open_=True)
        self.caps.sort(key=lambda c: (c["from_ms"], c["category"]))
        return {
            "alerts": self.alerts,
            "blocks": self._grouped(self._blocks, "policy_id"),
            "caps": self.caps,
            "cap_notifications": self.cap_notifications,
            "forecasts": self.forecasts,
            "downgrades": self.downgrades,
            "throttles": self._grouped(self._throttles, "reason"),
            "decisions": self.decisions,
            "truncated": self.truncated,
        }

    def _close_open(
        self, done: dict[tuple[int, int, str], list[str]], bot: str, p: _Open, end_ms: int
    ) -> None:
        key = (p.start, -(p.until or end_ms) - 1, p.label)  # open: marked by a negative end
        done.setdefault(key, []).append(bot)

    def _grouped(
        self, done: dict[tuple[int, int, str], list[str]], label: str
    ) -> list[dict[str, Any]]:
        out = []
        for (start, end, lab), bots in sorted(done.items()):
            open_ = end < 0
            until = -end - 1 if open_ else end
            out.append({**self._span(start, until, open_), label: lab, "bots": sorted(bots)})
        return out
