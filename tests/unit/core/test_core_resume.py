"""Lifting blocks (issue 18 item 5): a resume lifts the blocks that started before it, a
disabled or deleted policy lifts its block; replays change nothing; later blocks hold."""

from __future__ import annotations

from core_builders import ACC, MIN, T0, Harness, ev, policy

from capstream.core import AccountState, PolicySet, reevaluate

BLOCK_S = 600


def blocked_harness(**kw: object) -> Harness:
    h = Harness(policies=[policy(threshold=2, block_s=BLOCK_S, alert=False, **kw)])  # type: ignore[arg-type]
    h.send(ev(0, T0))
    h.send(ev(1, T0 + MIN))
    assert h.enforcement().blocked_until_ms == T0 + MIN + BLOCK_S * 1000
    return h


def change(h: Harness, policies: PolicySet, now: int) -> None:
    h.policy_set = policies
    _, eff = reevaluate(h.state, policies, h.tenant, now)
    h.log.append(eff)


def test_a_resume_lifts_a_running_block_at_once_and_the_next_event_does_not_reblock() -> None:
    h = blocked_harness()
    resumed_at = T0 + 2 * MIN
    change(h, PolicySet(h.policies, {"bot-1": resumed_at}), resumed_at)
    (state,) = h.log[-1].enforcement
    assert state.blocked_until_ms is None  # gateways allow from this version on
    # usage is still above the threshold: the lifted block keeps its policy from blocking
    # again until the block would have ended
    h.send(ev(2, T0 + 3 * MIN))
    assert h.enforcement().blocked_until_ms is None
    # after that, a new block (started after the resume) is in force
    end = T0 + MIN + BLOCK_S * 1000
    h.tick(end)
    h.send(ev(3, end + MIN))
    assert h.enforcement().blocked_until_ms == end + MIN + BLOCK_S * 1000


def snapshot(state: AccountState) -> AccountState:
    """The state as a restarted worker loads it from its tables."""
    return AccountState.load(state.account.to_bytes(), [b.to_bytes() for b in state.bots.values()])


def test_a_resume_survives_restarts_a_replay_is_a_no_op_a_later_block_is_not_lifted() -> None:
    h = blocked_harness()
    before_resume = snapshot(h.state)  # flushed before the resume; then the worker crashed
    resumes = {"bot-1": T0 + 2 * MIN}
    change(h, PolicySet(h.policies, resumes), T0 + 2 * MIN)
    version = h.enforcement().version
    change(h, PolicySet(h.policies, dict(resumes)), T0 + 3 * MIN)  # the resume replayed
    assert not h.log[-1].enforcement
    assert h.enforcement().version == version
    # the restarted worker loads the pre-resume state and re-reads the resume: lifted
    reevaluate(before_resume, PolicySet(h.policies, resumes), h.tenant, T0 + 4 * MIN)
    assert before_resume.enforcement("bot-1").blocked_until_ms is None  # type: ignore[union-attr]
    # a block that starts after the resume is not lifted, live or after a restart
    end = T0 + MIN + BLOCK_S * 1000
    h.tick(end)
    h.send(ev(3, end + MIN))
    reblocked = h.enforcement().blocked_until_ms
    assert reblocked == end + MIN + BLOCK_S * 1000
    restarted = snapshot(h.state)
    reevaluate(restarted, PolicySet(h.policies, resumes), h.tenant, end + 2 * MIN)
    assert restarted.enforcement("bot-1").blocked_until_ms == reblocked  # type: ignore[union-attr]


def test_disabling_or_deleting_the_blocking_policy_lifts_its_block() -> None:
    for remaining in ([policy(threshold=2, block_s=BLOCK_S, alert=False, enabled=False)], []):
        h = blocked_harness()
        change(h, PolicySet(remaining), T0 + 2 * MIN)
        assert h.enforcement().blocked_until_ms is None, remaining
    # re-enabled while its block would still run: the block is in force again
    h = blocked_harness()
    change(h, PolicySet([policy(threshold=2, block_s=BLOCK_S, alert=False, enabled=False)]),
           T0 + 2 * MIN)  # fmt: skip
    change(h, PolicySet(h.policies), T0 + 3 * MIN)
    assert h.enforcement().blocked_until_ms == T0 + MIN + BLOCK_S * 1000


def test_a_resume_of_any_bot_lifts_the_account_wide_block() -> None:
    h = blocked_harness(scope="account_total")
    assert h.state.enforcement("*").blocked_until_ms is not None  # type: ignore[union-attr]
    change(h, PolicySet(h.policies, {"bot-1": T0 + 2 * MIN}), T0 + 2 * MIN)
    assert h.enforcement().blocked_until_ms is None
    assert h.state.enforcement("*").blocked_until_ms is None  # type: ignore[union-attr]
    assert h.state.account_id == ACC


def test_deleting_the_policy_with_the_longest_block_leaves_the_other_policys_block() -> None:
    """Blocks are per policy (issue 23.1): lifting one leaves the pause of the other."""
    short = policy("short", threshold=2, block_s=60, alert=False)
    long = policy("long", threshold=3, block_s=3_600, alert=False)
    h = Harness(policies=[short, long])
    for i in range(3):
        h.send(ev(i, T0 + i * 1_000))
    assert h.enforcement().blocked_until_ms == T0 + 2_000 + 3_600_000
    assert h.enforcement().block_policy_id == "long"
    change(h, PolicySet([short]), T0 + 5_000)  # "long" deleted: its block is lifted
    held = h.enforcement()
    assert (held.blocked_until_ms, held.block_policy_id) == (T0 + 1_000 + 60_000, "short")
    # a resume after both started lifts the rest
    change(h, PolicySet([short], {"bot-1": T0 + 6_000}), T0 + 6_000)
    assert h.enforcement().blocked_until_ms is None
