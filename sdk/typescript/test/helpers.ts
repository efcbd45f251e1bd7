import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'

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
