/** The decision vocabulary, as in the Python core (`capstream/core/models.py`). */

export const CATEGORIES = ['text', 'vision', 'audio', 'documents'] as const
export type Category = (typeof CATEGORIES)[number]
export const CAP_PERIODS = ['daily', 'monthly'] as const
export type CapPeriod = (typeof CAP_PERIODS)[number]
export type Action = 'allow' | 'fallback' | 'skip' | 'paused'

export const FAST_BATCHING_S = 3
export const THROTTLED_BATCHING_S = 60
export const DEFAULT_PREMIUM_MODEL = 'claude-sonnet-4-6'
/** `botId` of the account-level state: what applies to a bot with no state of its own yet. */
export const ACCOUNT_WIDE_BOT = '*'

const CATEGORY_SET: ReadonlySet<string> = new Set(CATEGORIES)
export function isCategory(value: unknown): value is Category {
  return typeof value === 'string' && CATEGORY_SET.has(value)
}

/** An AI attempt refused by a cap; the gateway reports it so the feed row counts it. */
export interface CapHit {
  readonly accountId: string
  readonly botId: string
  readonly conversationId: string
  readonly category: Category
  readonly period: CapPeriod
  readonly periodKey: string
  readonly occurredAtMs: number
  /** `bot/conversation/category/ms`: a retried attempt has the same id. */
  readonly hitId: string
}

/**
 * What the gateway does with one AI call: `allow` (use `model` with `batchingIntervalS`),
 * `fallback` (send `text` instead), `skip` (do nothing, silently) or `paused` (a policy
 * block). `replyAtMs` (throttled only): the conversation already got its reply this minute;
 * hold the batch and reply at that instant. `resumesAtMs` (refusals only): when the refusal
 * ends (the block's end for `paused`, the cap period's end for `fallback` and `skip`), to
 * tell users "back at 00:00"; null for a fail-closed `control_unavailable`. Shared
 * instances: treat as read-only.
 */
export interface Verdict {
  readonly action: Action
  readonly model: string | null
  readonly batchingIntervalS: number
  readonly text: string | null
  readonly reason: string | null
  readonly capHit: CapHit | null
  readonly replyAtMs: number | null
  readonly resumesAtMs: number | null
}

export function verdict(
  action: Action,
  model: string | null,
  batchingIntervalS: number,
  text: string | null,
  reason: string | null,
  capHit: CapHit | null,
  replyAtMs: number | null = null,
  resumesAtMs: number | null = null
): Verdict {
  return { action, model, batchingIntervalS, text, reason, capHit, replyAtMs, resumesAtMs }
}

/** A capped category: which cap, for which local period, and when it resumes. */
export interface CapStatus {
  readonly period: CapPeriod
  readonly periodKey: string
  readonly resumesAtMs: number
}

/**
 * One attribute value blocked by a per-attribute policy (the value-blocks topic's value):
 * gateways refuse calls of `botId` (`*`: every bot of the account) whose `attribute`
 * (`end_user`, `api_key`, `team` or `model`) is `value` until `blockedUntilMs`.
 */
export interface ValueBlock {
  readonly accountId: string
  readonly botId: string
  readonly attribute: string
  readonly value: string
  readonly blockedUntilMs: number
  readonly policyId: string
}

/** The fields of a bot's enforcement state (the control topic's value). */
export interface EnforcementStateFields {
  accountId: string
  botId: string
  version: number
  updatedAtMs: number
  blockedUntilMs: number | null
  blockPolicyId: string | null
  model: string
  downgradedUntilMs: number | null
  batchingIntervalS: number
  throttledUntilMs: number | null
  throttleReason: string | null
  caps: ReadonlyMap<string, CapStatus>
  plan: string
  fallbackTextDaily: string
  fallbackTextMonthly: string
  /** The model a downgraded bot returns to; empty means the built-in premium model. */
  premiumModel: string
}

/**
 * A bot's whole enforcement state; `version` increments on change. Like the Python core, it
 * precomputes the verdicts that need neither the ledger nor the clock beyond one deadline
 * (`fastUntilMs`, `fast`), so `gate()` is a comparison and a map lookup on the common path.
 */
export class EnforcementState implements EnforcementStateFields {
  readonly accountId: string
  readonly botId: string
  readonly version: number
  readonly updatedAtMs: number
  readonly blockedUntilMs: number | null
  readonly blockPolicyId: string | null
  readonly model: string
  readonly downgradedUntilMs: number | null
  readonly batchingIntervalS: number
  readonly throttledUntilMs: number | null
  readonly throttleReason: string | null
  readonly caps: ReadonlyMap<string, CapStatus>
  readonly plan: string
  readonly fallbackTextDaily: string
  readonly fallbackTextMonthly: string
  readonly premiumModel: string
  /** Until when `fast` holds (Infinity: no deadline). */
  readonly fastUntilMs: number
  readonly fast: ReadonlyMap<string, Verdict>
  readonly paused: Verdict

  constructor(f: EnforcementStateFields) {
    this.accountId = f.accountId
    this.botId = f.botId
    this.version = f.version
    this.updatedAtMs = f.updatedAtMs
    this.blockedUntilMs = f.blockedUntilMs
    this.blockPolicyId = f.blockPolicyId
    this.model = f.model
    this.downgradedUntilMs = f.downgradedUntilMs
    this.batchingIntervalS = f.batchingIntervalS
    this.throttledUntilMs = f.throttledUntilMs
    this.throttleReason = f.throttleReason
    this.caps = f.caps
    this.plan = f.plan
    this.fallbackTextDaily = f.fallbackTextDaily
    this.fallbackTextMonthly = f.fallbackTextMonthly
    this.premiumModel = f.premiumModel
    // Python formats a missing policy id as "None"; so do we, to give the same reason.
    const paused = Object.freeze(
      verdict('paused', null, 0, null, `policy_block:${f.blockPolicyId ?? 'None'}`, null, null, f.blockedUntilMs)
    )
    const fast = new Map<string, Verdict>()
    let until = Infinity
    if (f.blockedUntilMs !== null) {
      for (const c of CATEGORIES) fast.set(c, paused)
      until = f.blockedUntilMs
    } else if (f.batchingIntervalS < THROTTLED_BATCHING_S) {
      let reason: string | null = null
      if (f.downgradedUntilMs !== null) {
        until = f.downgradedUntilMs
        reason = 'downgraded'
      }
      const allow = Object.freeze(verdict('allow', f.model, f.batchingIntervalS, null, reason, null))
      for (const c of CATEGORIES) if (!f.caps.has(c)) fast.set(c, allow)
    }
    this.fastUntilMs = until
    this.fast = fast
    this.paused = paused
  }
}
