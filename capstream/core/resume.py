"""Lifting blocks: a person resumed the bot, or the policy that blocked it is gone.

One function, :func:`lift_blocks`, called by ``evaluate._full`` (every policy, settings or
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
persisted: it is recomputed from the catalog's policies and resumes on every ``_full``, so
a replayed resume changes nothing, and a re-enabled policy's still-running block is in force
again.
"""

from __future__ import annotations

from capstream.core.policies import CompiledPolicy, PolicySet
from capstream.core.state import AccountState
from capstream.core.usage import UsageBase


def lift_blocks(state: AccountState, policies: PolicySet) -> None:
    """Mark the lifted blocks of the account and its bots (see the module docstring)."""
    resumes = policies.resumes
    _lift(state.account, policies.total, max(resumes.values(), default=None))
    for bot_id, bot in state.bots.items():
        _lift(bot, policies.for_bot(bot_id), resumes.get(bot_id))


def _lift(usage: UsageBase, cps: tuple[CompiledPolicy, ...], resumed_at: int | None) -> None:
    lifted: dict[str, int] = {}
    if usage.blocks:
        durations = {cp.policy_id: cp.block_ms for cp in cps}
        for policy_id, end in usage.blocks.items():
            block_ms = durations.get(policy_id, 0)
            if not block_ms or (resumed_at is not None and end - block_ms < resumed_at):
                lifted[policy_id] = end
    usage.lifted = lifted
