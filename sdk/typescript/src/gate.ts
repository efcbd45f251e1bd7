/**
 * The gateway's question before each AI call, as `capstream/core/gate.py` answers it:
 *
 * 1. A running policy block: `paused` (reason `policy_block:<policy_id>`).
 * 2. A capped category (until its `resumesAtMs`): text gets the tenant's fallback text once
 *    per conversation per cap period (`fallback`), then `skip`; vision, audio and documents
 *    are skipped silently. Both carry a `CapHit` for the amber feed row.
 * 3. Otherwise `allow`: the downgrade model until `downgradedUntilMs`, then the premium one;
 *    3-second batching, or 60 s while throttled; throttled, a conversation gets at most one
 *    reply per minute (`replyAtMs` tells when the next one may go).
 *
 * Before these, a gateway asks `valueBlockVerdict` when the call names attributes and its
 * account has value blocks (a per-attribute policy blocked one end user, API key, team or
 * model): a call of a blocked value is `paused` like a bot's block.
 */
import { UnknownCategoryError } from './errors.js'
import {
  ACCOUNT_WIDE_BOT,
  DEFAULT_PREMIUM_MODEL,
  FAST_BATCHING_S,
  THROTTLED_BATCHING_S,
  isCategory,
  verdict,
  type CapHit,
  type EnforcementState,
  type ValueBlock,
  type Verdict
} from './models.js'

export const REPLY_SPACING_MS = 60_000
/** Replies recorded between two passes forgetting those over a minute old. */
const PRUNE_EVERY = 64
export const DEFAULT_LEDGER_ENTRIES = 100_000

function key(...parts: string[]): string {
  // length-prefixed, so no id can make two keys collide
  let out = ''
  for (const p of parts) out += `${p.length}:${p}|`
  return out
}

/**
 * What a gateway remembers between calls, in bounded memory: which (account, bot,
 * conversation, cap period) already got the fallback text, and, while throttled, when each
 * conversation last got a reply. Each map keeps at most `maxEntries` keys and forgets the
 * oldest first (a forgotten conversation may get the fallback text once more).
 */
export class FallbackLedger {
  readonly maxEntries: number
  readonly #sent = new Map<string, true>()
  readonly #replies = new Map<string, number>()
  /** Replies to record before the next pass forgets those over a minute old (the Python
   * ledger's rule: such a reply delays nothing, so the map holds about the last minute). */
  #pruneIn = PRUNE_EVERY

  constructor(maxEntries = DEFAULT_LEDGER_ENTRIES) {
    if (!Number.isInteger(maxEntries) || maxEntries < 1) {
      throw new RangeError('a fallback ledger needs room for at least one entry')
    }
    this.maxEntries = maxEntries
  }

  /** True the first time the conversation claims the fallback of `periodKey`. */
  claimFallback(accountId: string, botId: string, conversationId: string, periodKey: string): boolean {
    const k = key(accountId, botId, conversationId, periodKey)
    const sent = this.#sent
    if (sent.has(k)) return false
    sent.set(k, true)
    if (sent.size > this.maxEntries) sent.delete(sent.keys().next().value as string)
    return true
  }

  /** Did the conversation get its fallback text of `periodKey` (here or, shared, elsewhere)? */
  fallbackSent(accountId: string, botId: string, conversationId: string, periodKey: string): boolean {
    return this.#sent.has(key(accountId, botId, conversationId, periodKey))
  }

  lastReply(accountId: string, botId: string, conversationId: string): number | undefined {
    return this.#replies.get(key(accountId, botId, conversationId))
  }

  recordReply(accountId: string, botId: string, conversationId: string, atMs: number): void {
    const k = key(accountId, botId, conversationId)
    const replies = this.#replies
    if (--this.#pruneIn <= 0) {
      this.#pruneIn = PRUNE_EVERY
      this.#forgetReplies(atMs - REPLY_SPACING_MS)
    }
    replies.delete(k) // re-insert: the most recent stays last
    replies.set(k, atMs)
    if (replies.size > this.maxEntries) replies.delete(replies.keys().next().value as string)
  }

  get size(): number {
    return this.#sent.size + this.#replies.size
  }

  /** Forget the replies sent at or before `beforeMs`, oldest first, up to the first later one. */
  #forgetReplies(beforeMs: number): void {
    for (const [k, at] of this.#replies) {
      if (at > beforeMs) break
      this.#replies.delete(k) // deleting the entry just visited is safe in a Map's iteration
    }
  }
}

/** A call's attributes (end_user, api_key, team, model), as `record()` takes them. */
export type Attributes = Readonly<Record<string, string>> | ReadonlyMap<string, string>

/** The key of a value block in its account's map: (bot or `*`, attribute, value). */
export function valueBlockMapKey(botId: string, attribute: string, value: string): string {
  return key(botId, attribute, value)
}

/**
 * `paused` if one of the call's `attributes` (name -> value; `model` for a policy counted per
 * model) is blocked at `now` for `botId` or for every bot of its account (`blocks`: the
 * account's, keyed by `valueBlockMapKey`), else null. Of several blocks the one ending last
 * answers; the reason names its policy as a bot's block does (`policy_block:<policy_id>`).
 */
export function valueBlockVerdict(
  blocks: ReadonlyMap<string, ValueBlock>,
  botId: string,
  attributes: Attributes,
  now: number
): Verdict | null {
  let found: ValueBlock | undefined
  const pairs = attributes instanceof Map ? attributes : Object.entries(attributes)
  for (const [attribute, value] of pairs) {
    for (const bot of [botId, ACCOUNT_WIDE_BOT]) {
      const b = blocks.get(key(bot, attribute, value))
      if (b !== undefined && now < b.blockedUntilMs && (found === undefined || b.blockedUntilMs > found.blockedUntilMs)) {
        found = b
      }
    }
  }
  if (found === undefined) return null
  return verdict('paused', null, 0, null, `policy_block:${found.policyId}`, null, null, found.blockedUntilMs)
}

/**
 * Decide one AI call of `category` in `conversationId` at `now` (epoch ms) by bot `botId`
 * (default: the state's bot; a bot that follows its account is answered from the `*` state,
 * and its fallback ledger entries and cap hits are still its own).
 */
export function gate(
  state: EnforcementState,
  category: string,
  conversationId: string,
  now: number,
  ledger: FallbackLedger,
  botId?: string
): Verdict {
  if (now < state.fastUntilMs) {
    const v = state.fast.get(category)
    if (v !== undefined) return v
  }
  return gateSlow(state, category, conversationId, now, ledger, botId ?? state.botId)
}


function gateSlow(
  s: EnforcementState,
  category: string,
  conversationId: string,
  now: number,
  ledger: FallbackLedger,
  botId: string
): Verdict {
  if (!isCategory(category)) throw new UnknownCategoryError(category)
  const blocked = s.blockedUntilMs
  if (blocked !== null && now < blocked) return s.paused
  const cap = s.caps.get(category)
  if (cap !== undefined && now < cap.resumesAtMs) {
    const hit: CapHit = {
      accountId: s.accountId,
      botId,
      conversationId,
      category,
      period: cap.period,
      periodKey: cap.periodKey,
      occurredAtMs: now,
      hitId: `${botId}/${conversationId}/${category}/${now}`
    }
    const reason = `cap:${cap.period}:${category}`
    if (category === 'text' && ledger.claimFallback(s.accountId, botId, conversationId, cap.periodKey)) {
      const text = cap.period === 'monthly' ? s.fallbackTextMonthly : s.fallbackTextDaily
      return verdict('fallback', null, 0, text, reason, hit, null, cap.resumesAtMs)
    }
    return verdict('skip', null, 0, null, reason, hit, null, cap.resumesAtMs)
  }
  const downgraded = s.downgradedUntilMs
  let model: string
  const reasons: string[] = []
  if (downgraded === null) {
    model = s.model
  } else if (now < downgraded) {
    model = s.model
    reasons.push('downgraded')
  } else {
    model = s.premiumModel || DEFAULT_PREMIUM_MODEL // local midnight passed: premium again
  }
  const until = s.throttledUntilMs
  const throttled = s.batchingIntervalS >= THROTTLED_BATCHING_S && (until === null || now < until)
  if (!throttled) {
    return verdict('allow', model, FAST_BATCHING_S, null, reasons.length ? reasons.join(';') : null, null)
  }
  reasons.push(`throttled:${s.throttleReason ?? 'None'}`)
  const reason = reasons.join(';')
  const last = ledger.lastReply(s.accountId, botId, conversationId)
  if (last !== undefined && now - last < REPLY_SPACING_MS) {
    return verdict('allow', model, THROTTLED_BATCHING_S, null, reason, null, last + REPLY_SPACING_MS)
  }
  ledger.recordReply(s.accountId, botId, conversationId, now)
  return verdict('allow', model, THROTTLED_BATCHING_S, null, reason, null)
}
