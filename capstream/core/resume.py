"""Lifting blocks: a person resumed the bot, or the policy that blocked it is gone.

One function, :func:`lift_blocks`, called by ``recompute.decide_all`` (every policy, settings or
resume change, and every load after a restart) after the policies were checked.

Each policy's block of a usage state (a bot's own, or the account-wide one of an
``account_total`` policy; see ``UsageBase.blocks``) is *lifted* when

- that policy is no longer enabled for that usage (disabled, deleted, or re-scoped), or
- a person resumed the bot at an instant T (``PolicySet.resumes``) after the block started
  (start = its end - the policy's block duration). A resume of any bot lifts the
  account-wide blocks too: they pause every bot at once.

A lifted block stays in the usage state until its end, so its policy (quiet while its block
runs) does not block the bot again at the next event, but it no longer pauses:
``enforcement.pause`` skips a block whose end is the one recorded in ``UsageBase.lifted``
for its policy. A block started later has another end, so it is in force. Nothing here is
persisted: it is recomputed from the catalog's policies and resumes on every ``decide_all``, so
a replayed resume changes nothing, and a re-enabled policy's still-running block is in force
again.

A resume that lifts a block not lifted before sends a ``block_lifted`` notification per
resumed bot (id from the account, the bot and the resume's instant, so the re-computation
after a restart repeats the id and the notifier drops it).
"""

from __future__ import annotations

from capstream.core.models import Notification
from capstream.core.notifications import block_lifted
from capstream.core.policies import PolicySet
from capstream.core.series import CompiledPolicy
from capstream.core.state import AccountState
from capstream.core.usage_base import UsageBase


def lift_blocks(
    state: AccountState,
    policies: PolicySet,
    notes: list[Notification] | None = None,
    now: int = 0,
) -> None:
    """Mark the lifted blocks of the account and its bots (see the module docstring);
    ``notes``: where to add the ``block_lifted`` notifications of resumes."""
    resumes = policies.resumes
    latest = max(resumes.items(), key=lambda kv: kv[1], default=None)
    by_resume: dict[str, list[str]] = {}
    account_wide = _lift(state.account, policies.total, latest[1] if latest else None)
    if account_wide and latest is not None:
        by_resume.setdefault(latest[0], []).extend(account_wide)
    for bot_id, bot in state.bots.items():
        lifted = _lift(bot, policies.for_bot(bot_id), resumes.get(bot_id))
        if lifted:
            by_resume.setdefault(bot_id, []).extend(lifted)
    if notes is not None:
        for bot_id, policy_ids in by_resume.items():
            notes.append(
                block_lifted(
                    state.settings, state.account_id, bot_id, resumes[bot_id],
                    sorted(set(policy_ids)), now,
                )
            )  # fmt: skip


def _lift(usage: UsageBase, cps: tuple[CompiledPolicy, ...], resumed_at: int | None) -> list[str]:
    """Set ``usage.lifted``; returns the policies whose block a resume newly lifted."""
    lifted: dict[str, int] = {}
    by_resume: list[str] = []
    if usage.blocks:
        durations = {cp.policy_id: cp.block_ms for cp in cps}
        for policy_id, end in usage.blocks.items():
            block_ms = durations.get(policy_id, 0)
            if not block_ms:
                lifted[policy_id] = end
            elif resumed_at is not None and end - block_ms < resumed_at:
                lifted[policy_id] = end
                if usage.lifted.get(policy_id) != end and end > resumed_at:
                    by_resume.append(policy_id)
    usage.lifted = lifted
    return by_resume
