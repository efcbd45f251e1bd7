"""Credit grants (issue 24 item 1): a grant raises one cap for one local period; the core
re-decides on the raised settings (a capped category resumes at once); counted once."""

from __future__ import annotations

import pytest
from core_builders import MIN, Harness, caps, ev, ms, settings

from capstream.core import reevaluate
from capstream.core.grants import CapGrant, GrantError, granted_caps, grants_change_at, period_key
from capstream.core.models import ACCOUNT_WIDE_BOT

NY = "America/New_York"


def grant(gid: str = "g1", amount: int = 500, period: str = "daily", key: str = "2026-11-18",
          category: str = "text", expires: int | None = None) -> CapGrant:  # fmt: skip
    return CapGrant(gid, "acc-1", category, period, key, amount, expires)


def test_a_grant_raises_its_cap_only_in_its_period_and_until_it_expires() -> None:
    base = settings(timezone=NY, caps=caps(text=(1_000, 10_000)))
    at = ms(NY, 2026, 11, 18, 15, 0)
    assert period_key(base, "daily", at) == "2026-11-18"
    assert period_key(base, "monthly", at) == "2026-11"
    raised = granted_caps(base, [grant(), grant("g2", 250)], at)
    assert (raised.caps["text"].daily_micro, raised.caps["text"].monthly_micro) == (1_750, 10_000)
    # the next local day (05:00 UTC is still the 18th in New York: it is the zone's day)
    assert granted_caps(base, [grant()], ms(NY, 2026, 11, 19, 0, 0)) is base
    late_utc = granted_caps(base, [grant()], ms("UTC", 2026, 11, 19, 3, 0))
    assert late_utc.caps["text"].daily_micro == 1_500
    # expiry, and when the result changes next
    short = grant(expires=at + 10 * MIN)
    assert granted_caps(base, [short], at + 10 * MIN) is base
    assert grants_change_at(base, [short], at) == at + 10 * MIN
    assert grants_change_at(base, [grant()], at) == ms(NY, 2026, 11, 19, 0, 0)
    monthly = grant("m", 2_000, "monthly", "2026-11")
    assert granted_caps(base, [monthly], at).caps["text"].monthly_micro == 12_000
    assert grants_change_at(base, [monthly], at) == ms(NY, 2026, 12, 1, 0, 0)


def test_the_same_grant_twice_counts_once_and_a_grant_without_its_cap_raises_nothing() -> None:
    base = settings(caps=caps(text=(1_000, None)))
    at = ms("UTC", 2026, 11, 18, 12, 0)
    assert granted_caps(base, [grant(), grant()], at).caps["text"].daily_micro == 1_500
    assert granted_caps(base, [grant("m", period="monthly", key="2026-11")], at) is base
    assert granted_caps(base, [grant(category="vision")], at) is base


@pytest.mark.parametrize(
    "kw",
    [
        {"amount": 0},
        {"amount": -5},
        {"period": "weekly"},
        {"category": "video"},
        {"key": "2026-11"},
    ],
)
def test_a_grant_that_cannot_apply_is_refused(kw: dict[str, object]) -> None:
    with pytest.raises(GrantError):
        grant(**kw)  # type: ignore[arg-type]


def test_a_capped_category_resumes_at_once_on_the_raised_settings() -> None:
    base = settings(timezone=NY, caps=caps(text=(1_000, None)))
    h = Harness(tenant=base)
    at = ms(NY, 2026, 11, 18, 15, 0)
    h.send(ev(0, at, credits=1_000))
    capped = h.enforcement()
    assert "text" in capped.caps
    raised = granted_caps(base, [grant()], at + MIN)
    _, eff = reevaluate(h.state, h.policy_set, raised, at + MIN)
    (resumed,) = [e for e in eff.enforcement if e.bot_id == ACCOUNT_WIDE_BOT]
    assert resumed.caps == {} and resumed.version > capped.version
    # usage up to the raised cap: capped again at 1,500, not before
    h.tenant = raised
    h.send(ev(1, at + 2 * MIN, credits=499))
    assert "text" not in h.enforcement().caps
    h.send(ev(2, at + 3 * MIN, credits=1))
    assert "text" in h.enforcement().caps


def test_a_cap_reached_again_after_a_grant_is_mailed_again_and_a_repeat_is_not() -> None:
    """The notifier sends each notification id once: the second cap of a period after a
    top-up must not carry the first one's id (it was dropped as a duplicate)."""
    base = settings(timezone=NY, caps=caps(text=(1_000, None)))
    h = Harness(tenant=base)
    at = ms(NY, 2026, 11, 18, 15, 0)
    h.send(ev(0, at, credits=1_000))
    raised = granted_caps(base, [grant()], at + MIN)
    _, eff = reevaluate(h.state, h.policy_set, raised, at + MIN)
    assert not [n for n in eff.notifications if n.kind == "cap_reached"]
    h.tenant = raised
    h.send(ev(1, at + 2 * MIN, credits=500))
    first, second = h.notes("cap_reached")
    assert first.notification_id != second.notification_id
    # the same cap reached again in the same period (settings re-read, a resume) is one email
    again = Harness(tenant=base)
    again.send(ev(0, at, credits=1_000))
    assert again.notes("cap_reached")[0].notification_id == first.notification_id
