"""Fields that stand for one of a fixed set are enums, with the same strings on the wire."""

from __future__ import annotations

import json

import pytest

from capstream.core import (
    AlertAction,
    Category,
    Language,
    Metric,
    Plan,
    Policy,
    PolicyError,
    PolicyScope,
    SettingsError,
    TenantSettings,
    Throttle,
)


def _policy(**kw: object) -> Policy:
    fields: dict[str, object] = {
        "policy_id": "p1", "account_id": "acme", "name": "n", "metric": "credits",
        "threshold": 10, "window_seconds": 60, "scope": "bot", "bot_id": "b1",
        "alert": AlertAction(), "block": None, "category": "vision",
    }  # fmt: skip
    fields.update(kw)
    return Policy(**fields)  # type: ignore[arg-type]


def test_a_policy_given_strings_holds_enums_with_the_same_values() -> None:
    p = _policy()
    assert type(p.metric) is Metric and p.metric is Metric.CREDITS
    assert type(p.scope) is PolicyScope and p.scope is PolicyScope.BOT
    assert type(p.category) is Category and p.category is Category.VISION
    assert json.dumps([p.metric, p.scope, p.category]) == '["credits", "bot", "vision"]'
    assert p == _policy(metric=Metric.CREDITS, scope=PolicyScope.BOT, category=Category.VISION)
    assert hash(p) == hash(_policy(metric=Metric.CREDITS))


def test_a_policy_with_an_unknown_metric_scope_or_category_says_which() -> None:
    with pytest.raises(PolicyError, match="metric must be one of"):
        _policy(metric="bananas")
    with pytest.raises(PolicyError, match="scope must be one of"):
        _policy(scope="galaxy")
    with pytest.raises(PolicyError, match="category must be one of"):
        _policy(category="smell")
    with pytest.raises(PolicyError, match="only allowed with the credits metric"):
        _policy(metric="tokens", category="smell")  # the first problem, as before


def test_tenant_settings_given_strings_hold_enums_with_the_same_values() -> None:
    s = TenantSettings("acme", language="ur", plan="pro", throttle="strict")
    assert (s.language, s.plan, s.throttle) == (Language.UR, Plan.PRO, Throttle.STRICT)
    assert type(s.plan) is Plan
    assert json.dumps([s.language, s.plan, s.throttle]) == '["ur", "pro", "strict"]'
    assert TenantSettings("acme").plan is Plan.FREE
    assert s == TenantSettings("acme", language=Language.UR, plan=Plan.PRO, throttle="strict")
    with pytest.raises(SettingsError, match="plan must be one of"):
        TenantSettings("acme", plan="platinum")


def test_verdicts_carry_an_action_enum_with_the_same_strings() -> None:
    from capstream.core import Action, CapStatus, EnforcementState, FallbackLedger, Verdict, gate

    state = EnforcementState(
        "acme", "b1", 1, 0, None, None, "m", None, 3, None, None,
        {"vision": CapStatus("daily", "2026-11-18", 10**13)}, "free", "fb", "fbm",
    )  # fmt: skip
    allowed = gate(state, "text", "c1", 0, FallbackLedger())
    skipped = gate(state, "vision", "c1", 0, FallbackLedger())
    assert (allowed.action, skipped.action) == (Action.ALLOW, Action.SKIP)
    assert type(skipped.action) is Action
    assert json.dumps([allowed.action, skipped.action]) == '["allow", "skip"]'
    given = Verdict("paused", None, 0, None, "control_unavailable", None)
    assert given.action is Action.PAUSED and given.action == "paused"
    with pytest.raises(ValueError, match="maybe"):
        Verdict("maybe", None, 0, None, None, None)
