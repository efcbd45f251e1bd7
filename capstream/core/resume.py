"""Lifting blocks: a person resumed the bot, or the policy that blocked it is gone.

One function, :func:`lift_blocks`, called by ``evaluate._full`` (every policy, settings or
resume change, and every load after a restart) after the policies were checked.

A block of a usage state (a bot's own, or the account-wide one of an ``account_total``
policy) is *lifted* when

- the policy that started it is no longer enabled for that usage (disabled, deleted, or
  re-scoped), or
- a person resumed the bot at an instant T (``PolicySet.resumes``) after the block started
  (start = its end - the policy's block duration). A resume of any bot lifts the
  account-wide block too: it pauses every bot at once.

A lifted block stays in the usage state until its end, so its policy (quiet while its block
runs) does not block the bot again at the next event, but it no longer pauses:
``enforcement.derive`` skips a block whose end equals ``lifted_until_ms``. A block started
later has another end, so it is in force. Nothing here is persisted: it is recomputed from
the catalog's policies and resumes on every ``_full``, so a replayed resume changes
nothing, and a re-enabled policy's still-running block is in force again.
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
    usage.lifted_until_ms = None
    until = usage.blocked_until_ms
    if until is None:
        return
    block_ms = 0
    for cp in cps:
        if cp.policy_id == usage.block_policy_id:
            block_ms = cp.block_ms
            break
    if not block_ms or (resumed_at is not None and until - block_ms < resumed_at):
        usage.lifted_until_ms = until
