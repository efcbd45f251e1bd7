import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'
import type { EnforcementState, Verdict } from '../src/models.js'

/** testdata/vectors at the repository root (or CAPSTREAM_VECTORS). */
export const VECTORS =
  process.env['CAPSTREAM_VECTORS'] ?? fileURLToPath(new URL('../../../../testdata/vectors/', import.meta.url))

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function load(name: string): any {
  return JSON.parse(readFileSync(join(VECTORS, name), 'utf8'))
}

/** Longs beyond 2**53 - 1 are decimal strings in the files. */
export function long(value: unknown): unknown {
  return typeof value === 'string' && /^-?\d+$/.test(value) ? BigInt(value) : value
}

const CAMEL: Record<string, string> = {
  event_id: 'eventId',
  account_id: 'accountId',
  bot_id: 'botId',
  conversation_id: 'conversationId',
  category: 'category',
  model: 'model',
  tokens_in: 'tokensIn',
  tokens_out: 'tokensOut',
  messages: 'messages',
  conversation_started: 'conversationStarted',
  credits_micro: 'creditsMicro',
  occurred_at_ms: 'occurredAtMs',
  attributes: 'attributes'
}

/** A vector event (snake_case, attributes as pairs) as the TypeScript `UsageEvent`. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function usageEvent(e: Record<string, unknown>): any {
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(e)) {
    const name = CAMEL[k]
    if (name === undefined) throw new Error(`unknown vector field ${k}`)
    if (k === 'attributes' && Array.isArray(v)) {
      const pairs = v as unknown[][]
      out[name] = pairs.every(p => typeof p[0] === 'string' && typeof p[1] === 'string')
        ? new Map(pairs as [string, string][])
        : Object.fromEntries(pairs as [string, unknown][])
    } else if (k === 'event_id' || k === 'account_id' || k === 'bot_id' || k === 'conversation_id' || k === 'model') {
      out[name] = v
    } else {
      out[name] = long(v)
    }
  }
  return out
}

/** A state as the vectors write it (snake_case). */
export function stateJson(s: EnforcementState): Record<string, unknown> {
  const caps: Record<string, unknown> = {}
  for (const [c, cap] of s.caps) {
    caps[c] = { period: cap.period, period_key: cap.periodKey, resumes_at_ms: cap.resumesAtMs }
  }
  return {
    account_id: s.accountId,
    bot_id: s.botId,
    version: s.version,
    updated_at_ms: s.updatedAtMs,
    blocked_until_ms: s.blockedUntilMs,
    block_policy_id: s.blockPolicyId,
    model: s.model,
    downgraded_until_ms: s.downgradedUntilMs,
    batching_interval_s: s.batchingIntervalS,
    throttled_until_ms: s.throttledUntilMs,
    throttle_reason: s.throttleReason,
    caps,
    plan: s.plan,
    fallback_text_daily: s.fallbackTextDaily,
    fallback_text_monthly: s.fallbackTextMonthly,
    premium_model: s.premiumModel
  }
}

/** A verdict as the vectors write it (snake_case). */
export function verdictJson(v: Verdict): Record<string, unknown> {
  const h = v.capHit
  return {
    action: v.action,
    model: v.model,
    batching_interval_s: v.batchingIntervalS,
    text: v.text,
    reason: v.reason,
    reply_at_ms: v.replyAtMs,
    resumes_at_ms: v.resumesAtMs,
    cap_hit:
      h === null
        ? null
        : {
            hit_id: h.hitId,
            account_id: h.accountId,
            bot_id: h.botId,
            conversation_id: h.conversationId,
            category: h.category,
            period: h.period,
            period_key: h.periodKey,
            occurred_at_ms: h.occurredAtMs
          }
  }
}

