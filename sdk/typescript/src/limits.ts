/**
 * What a usage event may hold: the bounds of the Python core's `capstream/core/limits.py`,
 * the one validation the Python SDK, the worker and the sink share. An event `record()`
 * accepts here is counted and stored there; one it refuses would be dead-lettered there.
 * Same field names and same texts as the Python SDK (the shared vectors compare them).
 */

/** Characters (code points) of an id: event, account, bot, conversation. */
export const MAX_ID = 200
/** Characters of a model name (may be empty). */
export const MAX_MODEL = 200
/** Tokens in (and out) of one event. */
export const MAX_TOKENS = 1_000_000_000
/** Messages of one event. */
export const MAX_MESSAGES = 1_000_000
/** Micro-credits of one event (a billion credits). */
export const MAX_CREDITS_MICRO = 1_000_000_000_000_000
/** 2000-01-01T00:00:00Z: an earlier time is a producer's clock or encoding error. */
export const MIN_OCCURRED_AT_MS = 946_684_800_000
/** 2200-01-01T00:00:00Z, whatever the clock (ClickHouse's DateTime64 range). */
export const MAX_OCCURRED_AT_MS = 7_258_118_400_000
export const MAX_ATTRIBUTES = 32
export const MAX_ATTRIBUTE_KEY = 64
export const MAX_ATTRIBUTE_VALUE = 256
/** How far past the clock an event may be stamped. */
export const DEFAULT_MAX_FUTURE_SKEW_MS = 300_000

/** Code points of `s` (Python's `len`); JavaScript's `length` counts UTF-16 units. */
export function codePoints(s: string): number {
  let n = 0
  for (const _ of s) n++
  return n
}

/** `s` as Python's `repr()` writes a string (the Python SDK's messages quote with it). */
export function pyRepr(s: string): string {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'"
  let out = quote
  for (const ch of s) {
    const c = ch.codePointAt(0)!
    if (ch === '\\') out += '\\\\'
    else if (ch === quote) out += '\\' + quote
    else if (ch === '\n') out += '\\n'
    else if (ch === '\r') out += '\\r'
    else if (ch === '\t') out += '\\t'
    else if (c < 0x20 || c === 0x7f) out += `\\x${c.toString(16).padStart(2, '0')}`
    else out += ch
  }
  return out + quote
}

/** Python's `f"{n:,}"`. */
function grouped(n: number | bigint): string {
  return n.toString().replace(/\B(?=(\d{3})+(?!\d))/g, ',')
}

/** The message of an amount above its per-event limit (`limits._too_large`). */
export function tooLarge(value: number | bigint, limit: number): string {
  return `${value} is larger than the per-event limit ${grouped(limit)}`
}

/** The message of a string longer than its limit, or undefined (counts code points). */
export function tooLong(value: string, limit: number): string | undefined {
  if (value.length <= limit) return undefined // at most as many code points as units
  const n = codePoints(value)
  return n > limit ? `is ${n} characters; the limit is ${limit}` : undefined
}

/** The message of a time outside [2000-01-01, min(clock + skew, 2200-01-01)), or undefined. */
export function timeProblem(at: number | bigint, maxOccurredAtMs: number): string | undefined {
  if (at < MIN_OCCURRED_AT_MS) {
    return `${at} is before 2000-01-01 (${MIN_OCCURRED_AT_MS}); send epoch milliseconds`
  }
  if (at > maxOccurredAtMs || at >= MAX_OCCURRED_AT_MS) {
    const limit = Math.min(maxOccurredAtMs, MAX_OCCURRED_AT_MS - 1)
    return (
      `${at} is later than ${limit} (the record's time plus the allowed skew); ` +
      "check the producer's clock"
    )
  }
  return undefined
}

/** The first attribute rule `pairs` break (`limits.attributes_problem`), or undefined. */
export function attributesProblem(pairs: readonly (readonly [string, string])[]): string | undefined {
  if (pairs.length > MAX_ATTRIBUTES) return `has ${pairs.length} entries; the limit is ${MAX_ATTRIBUTES}`
  for (const [key, value] of pairs) {
    const keyLength = key.length > MAX_ATTRIBUTE_KEY ? codePoints(key) : 0
    if (keyLength > MAX_ATTRIBUTE_KEY) {
      const head = Array.from(key).slice(0, 20).join('')
      return `key ${pyRepr(head)}... is ${keyLength} characters; the limit is ${MAX_ATTRIBUTE_KEY}`
    }
    const valueLength = value.length > MAX_ATTRIBUTE_VALUE ? codePoints(value) : 0
    if (valueLength > MAX_ATTRIBUTE_VALUE) {
      return `value of ${pyRepr(key)} is ${valueLength} characters; the limit is ${MAX_ATTRIBUTE_VALUE}`
    }
  }
  return undefined
}
