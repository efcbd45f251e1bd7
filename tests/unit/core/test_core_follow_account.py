"""A bot follows its account's ``*`` state unless it has a block or throttle of its own: an
account-wide decision is one state, a bot's own one is the bot's, and the moment it ends the
bot says it follows the account again (versions keep counting, across a restore too)."""

from __future__ import annotations

from dataclasses import replace

from core_builders import MIN, T0, Harness, caps, ev, settings

from capstream.core import AccountState, BotUsage, FallbackLedger, gate
from capstream.core.models import ACCOUNT_WIDE_BOT, EnforcementState


def chatty(h: Harness, n: int, start: int, bot: str = "bot-1") -> None:
    for i in range(n):
        h.send(ev(20_000 + start // 1000 + i, start + i * 1_000, bot=bot, conv="loop"))


def states_of(h: Harness, bot: str) -> list[EnforcementState]:
    return [s for eff in h.log for s in eff.enforcement if s.bot_id == bot]


def test_a_bots_own_throttle_is_its_own_state_and_its_end_returns_it_to_the_account() -> None:
    h = Harness(tenant=settings(throttle="smart", caps=caps(text=(10_000_000, None))))
    h.send(ev(0, T0, bot="bot-2"))
    chatty(h, 21, T0 + 1)  # bot-1 loops: throttled for 10 minutes, bot-2 is not
    (first, own) = states_of(h, "bot-1")
    assert first.follows_account and own.version == first.version + 1
    assert not own.follows_account and own.throttle_reason == "loop_suspected"
    assert h.enforcement("bot-2").throttle_reason is None
    assert h.enforcement("bot-1") is own

    ended = h.tick(own.throttled_until_ms)  # type: ignore[arg-type]
    (back,) = [s for s in ended.enforcement if s.bot_id == "bot-1"]
    assert back.follows_account and back.version == own.version + 1
    assert back.throttled_until_ms is None and back.batching_interval_s == 3
    assert h.enforcement("bot-1") is h.state.account.enforcement

    # What the account decides from now on is one state; bot-1 is not republished.
    h.tenant = settings(throttle="smart", plan="pro", caps=caps(text=(10_000_000, None)))
    eff = h.send(ev(100, own.throttled_until_ms + MIN, bot="bot-2"))  # type: ignore[operator]
    assert [s.bot_id for s in eff.enforcement] == [ACCOUNT_WIDE_BOT]
    assert h.enforcement("bot-1").plan == "pro"


def test_a_bot_with_its_own_state_gets_the_accounts_changes_in_it() -> None:
    h = Harness(tenant=settings(throttle="smart"))
    chatty(h, 21, T0)
    h.tenant = settings(throttle="smart", plan="pro")
    eff = h.send(ev(200, T0 + 30_000, bot="bot-2"))
    got = {s.bot_id: s for s in eff.enforcement}
    assert got["bot-1"].plan == "pro" and got["bot-1"].throttle_reason == "loop_suspected"
    assert got[ACCOUNT_WIDE_BOT].plan == "pro" and got[ACCOUNT_WIDE_BOT].throttle_reason is None


def test_following_survives_a_restore_and_a_fresh_process_says_it_once() -> None:
    h = Harness(tenant=settings(throttle="smart"))
    h.send(ev(0, T0))
    bot = h.state.bots["bot-1"]
    assert bot.enforcement is not None and bot.enforcement.follows_account
    restored = BotUsage.from_bytes(bot.to_bytes())
    assert restored.enforcement is not None and restored.enforcement.follows_account
    assert restored.enforcement.version == bot.enforcement.version

    # A state written before bots followed the account (a full copy of the account's) is
    # replaced by a following one at the bot's next derivation, at the next version.
    old = h.state.bots["bot-1"]
    assert old.enforcement is not None
    old.enforcement = replace(old.enforcement)  # a new state: not flagged
    assert not old.enforcement.follows_account
    copy = BotUsage.from_bytes(old.to_bytes())
    h.state = AccountState(h.state.account_id, account=h.state.account, bots=[copy])
    eff = h.send(ev(1, T0 + 1))
    (again,) = [s for s in eff.enforcement if s.bot_id == "bot-1"]
    assert again.follows_account and again.version == old.enforcement.version + 1
    assert not [s for s in h.send(ev(2, T0 + 2)).enforcement if s.bot_id == "bot-1"]


def test_a_bot_answered_from_the_account_state_keeps_its_own_fallback_and_cap_hits() -> None:
    h = Harness(tenant=settings(caps=caps(text=(1_000, None))))
    h.send(ev(0, T0, credits=1_000))
    star = h.enforcement("bot-2")
    assert star.bot_id == ACCOUNT_WIDE_BOT and "text" in star.caps
    ledger = FallbackLedger()
    one = gate(star, "text", "conv-1", T0 + 1, ledger, "bot-1")
    two = gate(star, "text", "conv-1", T0 + 2, ledger, "bot-2")
    again = gate(star, "text", "conv-1", T0 + 3, ledger, "bot-1")
    assert (one.action, two.action, again.action) == ("fallback", "fallback", "skip")
    assert one.cap_hit is not None and one.cap_hit.bot_id == "bot-1"
    assert two.cap_hit is not None and two.cap_hit.hit_id.startswith("bot-2/")


def test_own_shows_is_exactly_a_content_that_differs_from_the_accounts() -> None:
    """Every combination of a bot's block (lifted or not), the account's block, a loop
    throttle and a budget-risk hold, in each throttle mode: ``own_shows`` says the bot has a
    state of its own exactly when its derived content differs from the account's."""
    from itertools import product

    from capstream.core.enforcement import _compute, own_shows
    from capstream.core.settings_view import view_of
    from capstream.core.usage import AccountUsage

    now = T0
    ends = (None, now - 1, now, now + 10, now + 20)
    checked = 0
    for mode, bot_end, lifted, acct_end, loop, risk in product(
        ("off", "smart", "strict"), ends, (False, True), ends, ends, ends
    ):
        view = view_of(settings(throttle=mode))
        account = AccountUsage("acct-1")
        bot = BotUsage("acct-1", bot_id="bot-1")
        if bot_end is not None:
            bot.blocked_until_ms, bot.block_policy_id = bot_end, "p-bot"
            bot.blocks["p-bot"] = bot_end
            if lifted:
                bot.lifted["p-bot"] = bot_end
        if acct_end is not None:
            account.blocked_until_ms, account.block_policy_id = acct_end, "p-acct"
            account.blocks["p-acct"] = acct_end
        bot.loop_until_ms, account.risk_until_ms = loop, risk
        differs = _compute(account, bot, view, {}, now) != _compute(account, None, view, {}, now)
        assert own_shows(account, bot, view, now) == differs, (
            mode,
            bot_end,
            lifted,
            acct_end,
            loop,
            risk,
        )
        checked += 1
    assert checked == 3 * 5 * 2 * 5 * 5 * 5
