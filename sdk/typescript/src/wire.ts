/**
 * Usage events, batches, cap hits and control states as bytes, identical to the Python
 * side's (`capstream/gateway/wire.py`; `capstream/streams/usage_wire.py`, `control_wire.py`,
 * `caphit_wire.py`) and its fastavro codecs:
 * the shared vectors in testdata/vectors/ prove it.
 */
import { HEADER_BYTES, MAGIC_0, MAGIC_1, Reader, Writer, fromHex } from './avro.js'
import { DecodeError, UsageEventError } from './errors.js'
import {
  CAP_PERIODS,
  CATEGORIES,
  EnforcementState,
  isCategory,
  type CapHit,
  type CapStatus,
  type Category,
  type EnforcementStateFields,
  type ValueBlock
} from './models.js'
import {
  DEFAULT_MAX_FUTURE_SKEW_MS,
  MAX_CREDITS_MICRO,
  MAX_ID,
  MAX_MESSAGES,
  MAX_MODEL,
  MAX_TOKENS,
  attributesProblem,
  timeProblem,
  tooLarge,
  tooLong
} from './limits.js'

export { MAX_ID }

/** CRC-64-AVRO fingerprints of capstream/schemas/*.avsc (checked by the vectors). */
export const FINGERPRINTS = {
  UsageBatch: fromHex('5e9086849169f487'),
  EnforcementState: fromHex('c66475cfff0a7054'),
  CapHit: fromHex('27a692b42f8534ed'),
  ConversationSent: fromHex('7cc362b3b69a0d08'),
  ValueBlock: fromHex('b9697a3265058b26')
} as const

function header(fingerprint: Buffer): Buffer {
  return Buffer.concat([Buffer.from([MAGIC_0, MAGIC_1]), fingerprint])
}
const BATCH_HEADER = header(FINGERPRINTS.UsageBatch)
const CAP_HIT_HEADER = header(FINGERPRINTS.CapHit)

const CACHE_LIMIT = 100_000
const CATEGORY_INDEX = new Map<string, number>(CATEGORIES.map((c, i) => [c, i]))

/** One unit of bot usage, recorded after an AI call (credits in integer micro-credits). */
export interface UsageEvent {
  /** Client-chosen unique id (1-200 characters); resends are dropped downstream. */
  eventId: string
  /** Tenant; the partitioning key. */
  accountId: string
  botId: string
  conversationId: string
  category: Category
  /** The model that served the call (may be empty). */
  model: string
  /** 0 to 1e9 (`MAX_TOKENS`). */
  tokensIn?: number | bigint
  /** 0 to 1e9 (`MAX_TOKENS`). */
  tokensOut?: number | bigint
  /** 0 to 1e6 (`MAX_MESSAGES`). */
  messages?: number
  /** True on the first event of a conversation; left out, the recorder derives it. */
  conversationStarted?: boolean
  /** 0 to 1e15 (`MAX_CREDITS_MICRO`, a billion credits). */
  creditsMicro?: number | bigint
  /** Epoch milliseconds from 2000-01-01 to now + 5 minutes (and before 2200); defaults to now. */
  occurredAtMs?: number | bigint
  /** Free-form string attributes, written in iteration order: at most 32, keys at most 64
   * characters, values at most 256. */
  attributes?: Readonly<Record<string, string>> | ReadonlyMap<string, string>
}

/** A string field: Python's `_text` checks, same words (lengths as `core.limits`). */
function checkText(name: string, value: unknown, required: boolean, limit = MAX_ID): string {
  if ((value === undefined || value === null) && required) {
    throw new UsageEventError(name, 'is required (a non-empty string)')
  }
  if (typeof value !== 'string') {
    throw new UsageEventError(name, `must be a string, not ${value === null ? 'null' : typeof value}`)
  }
  if (required && value.length === 0) throw new UsageEventError(name, 'is required and cannot be empty')
  const long = tooLong(value, limit) // Python counts code points, JavaScript UTF-16 units
  if (long !== undefined) throw new UsageEventError(name, long)
  if (!value.isWellFormed()) throw new UsageEventError(name, 'is not valid text (a lone surrogate)')
  return value
}

/** Validated strings -> their Avro bytes (ids must be non-empty; models may be empty). */
const ids = new Map<string, Buffer>()
const models = new Map<string, Buffer>()

function cached(cache: Map<string, Buffer>, name: string, value: unknown, required: boolean, limit = MAX_ID): Buffer {
  const hit = typeof value === 'string' ? cache.get(value) : undefined
  if (hit !== undefined) return hit
  const text = checkText(name, value, required, limit)
  const bytes = Writer.stringBytes(text)
  if (cache.size >= CACHE_LIMIT) cache.clear()
  cache.set(text, bytes)
  return bytes
}

/** A count of one event: a whole number from 0 to its `core.limits` bound. */
function count(w: Writer, name: string, value: unknown, limit: number): void {
  if (typeof value === 'number') {
    if (Number.isInteger(value)) {
      if (value < 0) throw new UsageEventError(name, `cannot be negative (got ${value})`)
      // beyond 2**53 a number prints as 1e+21; Python prints every digit, and so does a bigint
      if (value > limit) throw new UsageEventError(name, tooLarge(Number.isSafeInteger(value) ? value : BigInt(value), limit))
      w.long(value)
      return
    }
    throw new UsageEventError(name, `must be a whole number, not ${value}`)
  }
  if (typeof value === 'bigint') {
    if (value < 0n) throw new UsageEventError(name, `cannot be negative (got ${value})`)
    if (value > BigInt(limit)) throw new UsageEventError(name, tooLarge(value, limit))
    w.long(Number(value))
    return
  }
  throw new UsageEventError(name, `must be a whole number, not ${JSON.stringify(value) ?? typeof value}`)
}

/** `occurredAtMs`: epoch milliseconds from 2000-01-01 to the clock plus the allowed skew. */
function occurredAt(w: Writer, at: unknown, nowMs: number): void {
  if ((typeof at !== 'number' || !Number.isInteger(at)) && typeof at !== 'bigint') {
    throw new UsageEventError('occurred_at_ms', `must be epoch milliseconds (an integer), not ${JSON.stringify(at) ?? typeof at}`)
  }
  const problem = timeProblem(at, nowMs + DEFAULT_MAX_FUTURE_SKEW_MS)
  if (problem !== undefined) throw new UsageEventError('occurred_at_ms', problem)
  w.long(Number(at))
}

function attributes(w: Writer, attrs: unknown): void {
  if (attrs === undefined || attrs === null) {
    w.byte(0)
    return
  }
  let entries: Iterable<[unknown, unknown]>
  if (attrs instanceof Map) entries = attrs
  else if (typeof attrs === 'object' && !Array.isArray(attrs)) entries = Object.entries(attrs)
  else throw new UsageEventError('attributes', `must be an object or Map of strings, not ${typeof attrs}`)
  const pairs: [string, string][] = []
  for (const [k, v] of entries) {
    if (typeof k !== 'string' || typeof v !== 'string') {
      throw new UsageEventError('attributes', `keys and values must be strings: ${JSON.stringify(k)}`)
    }
    if (!k.isWellFormed() || !v.isWellFormed()) {
      throw new UsageEventError('attributes', `is not valid text: ${JSON.stringify(k)}`)
    }
    pairs.push([k, v])
  }
  const problem = attributesProblem(pairs)
  if (problem !== undefined) throw new UsageEventError('attributes', problem)
  if (pairs.length > 0) {
    w.long(pairs.length)
    for (const [k, v] of pairs) {
      w.string(k)
      w.string(v)
    }
  }
  w.byte(0)
}

function id(w: Writer, name: string, value: unknown): void {
  if (typeof value === 'string' && value.length > 0 && value.length <= MAX_ID && value.isWellFormed()) {
    w.string(value)
  } else {
    w.string(checkText(name, value, true))
  }
}

/**
 * Append the Avro body of one `UsageEvent` to `w`; throws `UsageEventError` naming the bad
 * field (and leaves `w` as it was). `started`: the `conversation_started` to write instead
 * of the event's (the recorder's derived one).
 */
export function writeEvent(w: Writer, e: UsageEvent, nowMs: number, started: unknown = e.conversationStarted): void {
  const start = w.pos
  try {
    const category = CATEGORY_INDEX.get(e.category as string)
    if (category === undefined) {
      throw new UsageEventError(
        'category',
        `must be one of ${CATEGORIES.join(', ')}, not ${JSON.stringify(e.category)}`
      )
    }
    started ??= false
    if (started !== true && started !== false) {
      throw new UsageEventError('conversation_started', `must be true or false, not ${JSON.stringify(started)}`)
    }
    id(w, 'event_id', e.eventId)
    w.raw(cached(ids, 'account_id', e.accountId, true))
    w.raw(cached(ids, 'bot_id', e.botId, true))
    id(w, 'conversation_id', e.conversationId)
    w.long(category)
    w.raw(cached(models, 'model', e.model, false, MAX_MODEL))
    count(w, 'tokens_in', e.tokensIn ?? 0, MAX_TOKENS)
    count(w, 'tokens_out', e.tokensOut ?? 0, MAX_TOKENS)
    count(w, 'messages', e.messages ?? 0, MAX_MESSAGES)
    w.byte(started ? 1 : 0)
    count(w, 'credits_micro', e.creditsMicro ?? 0, MAX_CREDITS_MICRO)
    if (e.occurredAtMs === undefined || e.occurredAtMs === null) w.long(nowMs)
    else occurredAt(w, e.occurredAtMs, nowMs)
    attributes(w, e.attributes)
  } catch (err) {
    w.pos = start
    throw err
  }
}

const scratch = new Writer(4096)

/** The Avro body of one `UsageEvent` (a copy). */
export function encodeEvent(e: UsageEvent, nowMs = Date.now()): Buffer {
  scratch.reset()
  writeEvent(scratch, e, nowMs)
  return scratch.bytes()
}

/** A `UsageBatch` record (single-object encoding) of encoded event bodies. */
export function encodeBatch(batchId: string, producer: string, sentAtMs: number, bodies: readonly Uint8Array[]): Buffer {
  let size = 0
  for (const b of bodies) size += b.length
  const w = new Writer(size + batchId.length * 3 + producer.length * 3 + 48)
  w.raw(BATCH_HEADER)
  w.string(batchId)
  w.string(producer)
  w.long(sentAtMs)
  if (bodies.length > 0) {
    w.long(bodies.length)
    for (const b of bodies) w.raw(b)
  }
  w.byte(0)
  return w.buf.subarray(0, w.pos)
}

/** The `CapHit` record of a hit (what the reporter produces to the caphits topic). */
export function encodeCapHit(hit: CapHit): Buffer {
  const w = new Writer(128)
  w.raw(CAP_HIT_HEADER)
  w.string(hit.hitId)
  w.string(hit.accountId)
  w.string(hit.botId)
  w.string(hit.conversationId)
  w.long(CATEGORIES.indexOf(hit.category))
  w.long(CAP_PERIODS.indexOf(hit.period))
  w.string(hit.periodKey)
  w.long(hit.occurredAtMs)
  return w.bytes()
}

const STATE_HEADER = header(FINGERPRINTS.EnforcementState)
const PERIOD_INDEX = new Map<string, number>(CAP_PERIODS.map((p, i) => [p, i]))

function optionalLong(w: Writer, n: number | null): void {
  if (n === null) w.byte(0)
  else {
    w.byte(2)
    w.long(n)
  }
}

function optionalString(w: Writer, s: string | null): void {
  if (s === null) w.byte(0)
  else {
    w.byte(2)
    w.string(s)
  }
}

/** The control topic value of a state (what the processors publish; for tests and tools). */
export function encodeState(s: EnforcementStateFields): Buffer {
  const w = new Writer(256)
  w.raw(STATE_HEADER)
  w.string(s.accountId)
  w.string(s.botId)
  w.long(s.version)
  w.long(s.updatedAtMs)
  optionalLong(w, s.blockedUntilMs)
  optionalString(w, s.blockPolicyId)
  w.string(s.model)
  optionalLong(w, s.downgradedUntilMs)
  w.long(s.batchingIntervalS)
  optionalLong(w, s.throttledUntilMs)
  optionalString(w, s.throttleReason)
  if (s.caps.size > 0) {
    w.long(s.caps.size)
    for (const [category, cap] of s.caps) {
      const period = PERIOD_INDEX.get(cap.period)
      if (period === undefined) throw new RangeError(`unknown cap period ${JSON.stringify(cap.period)}`)
      w.string(category)
      w.long(period)
      w.string(cap.periodKey)
      w.long(cap.resumesAtMs)
    }
  }
  w.byte(0)
  w.string(s.plan)
  w.string(s.fallbackTextDaily)
  w.string(s.fallbackTextMonthly)
  w.string(s.premiumModel)
  return w.bytes()
}

/** The control topic key of a bot's state: `account_id/bot_id`. */
export function controlKey(accountId: string, botId: string): Buffer {
  return Buffer.from(`${accountId}/${botId}`, 'utf8')
}

function invalid(message: string): DecodeError {
  return new DecodeError(message, 'invalid')
}

/** The single-object header of `value` checked against `name`'s fingerprint (Python's reasons). */
function checkHeader(value: Uint8Array | null | undefined, name: keyof typeof FINGERPRINTS): Uint8Array {
  if (!value || value.length === 0) {
    throw new DecodeError(`empty bytes where a ${name} record was expected`, 'empty')
  }
  if (value[0] !== MAGIC_0 || value[1] !== MAGIC_1 || value.length < HEADER_BYTES) {
    throw new DecodeError(`not an Avro single-object ${name}: expected C3 01 and a schema fingerprint`, 'not_avro')
  }
  const fp = FINGERPRINTS[name]
  for (let i = 0; i < 8; i++) {
    if (value[2 + i] !== fp[i]) {
      throw new DecodeError(
        `unknown schema fingerprint ${Buffer.from(value.subarray(2, 10)).toString('hex')} for a ${name}`,
        'unknown_schema'
      )
    }
  }
  return value
}

/** Decode a control topic value into a state; throws `DecodeError` with the Python reason. */
export function decodeState(bytes: Uint8Array | null | undefined): EnforcementState {
  const value = checkHeader(bytes, 'EnforcementState')
  const r = new Reader(value, HEADER_BYTES, 'EnforcementState')
  const accountId = r.string()
  const botId = r.string()
  const version = r.long()
  const updatedAtMs = r.long()
  const blockedUntilMs = r.present() ? r.long() : null
  const blockPolicyId = r.present() ? r.string() : null
  const model = r.string()
  const downgradedUntilMs = r.present() ? r.long() : null
  const batchingIntervalS = r.long()
  const throttledUntilMs = r.present() ? r.long() : null
  const throttleReason = r.present() ? r.string() : null
  const raw: [string, CapStatus][] = []
  r.blocks(() => {
    const category = r.string()
    const period = r.enumSymbol(CAP_PERIODS) as CapStatus['period']
    const periodKey = r.string()
    const resumesAtMs = r.long()
    raw.push([category, { period, periodKey, resumesAtMs }])
  })
  const plan = r.string()
  const fallbackTextDaily = r.string()
  const fallbackTextMonthly = r.string()
  const premiumModel = r.string()
  // The checks Avro cannot make (as the Python SDK's state_from_avro).
  if (!accountId || !botId) throw invalid('an EnforcementState needs an account_id and a bot_id')
  if (version < 0 || batchingIntervalS < 1) {
    throw invalid(`EnforcementState ${accountId}/${botId}: negative version or batching < 1 s`)
  }
  const caps = new Map<string, CapStatus>()
  for (const [category, cap] of raw) {
    if (!isCategory(category)) {
      throw invalid(`EnforcementState ${accountId}/${botId}: unknown cap category ${JSON.stringify(category)}`)
    }
    caps.set(category, Object.freeze(cap))
  }
  return new EnforcementState({
    accountId,
    botId,
    version,
    updatedAtMs,
    blockedUntilMs,
    blockPolicyId,
    model,
    downgradedUntilMs,
    batchingIntervalS,
    throttledUntilMs,
    throttleReason,
    caps,
    plan,
    fallbackTextDaily,
    fallbackTextMonthly,
    premiumModel
  })
}

// -- what gateways sent (the gateway-sent topic) ---------------------------------------------

export const SENT_KINDS = ['fallback', 'reply'] as const
export type SentKind = (typeof SENT_KINDS)[number]

/**
 * A `ConversationSent` record: what a gateway sent a conversation (the fallback text of a
 * cap period, or a throttled reply), shared by gateway replicas through the compacted
 * gateway-sent topic (as the Python SDK's `ledger.KafkaLedger`).
 */
export interface ConversationSent {
  kind: SentKind
  accountId: string
  botId: string
  conversationId: string
  /** fallback: the cap period (`2026-11-22` or `2026-11`); reply: empty */
  periodKey: string
  /** when it was sent (epoch ms) */
  atMs: number
  /** readers ignore it from then on */
  expiresAtMs: number
  gatewayId: string
}

const SENT_HEADER = header(FINGERPRINTS.ConversationSent)

export function encodeConversationSent(sent: ConversationSent): Buffer {
  const w = new Writer(96 + sent.accountId.length + sent.botId.length + sent.conversationId.length)
  w.raw(SENT_HEADER)
  w.long(SENT_KINDS.indexOf(sent.kind))
  w.string(sent.accountId)
  w.string(sent.botId)
  w.string(sent.conversationId)
  w.string(sent.periodKey)
  w.long(sent.atMs)
  w.long(sent.expiresAtMs)
  w.string(sent.gatewayId)
  return w.bytes()
}

export function decodeConversationSent(raw: Uint8Array | null | undefined): ConversationSent {
  const value = checkHeader(raw, 'ConversationSent')
  const r = new Reader(value, HEADER_BYTES, 'ConversationSent')
  const sent: ConversationSent = {
    kind: r.enumSymbol(SENT_KINDS) as SentKind,
    accountId: r.string(),
    botId: r.string(),
    conversationId: r.string(),
    periodKey: r.string(),
    atMs: r.long(),
    expiresAtMs: r.long(),
    gatewayId: r.string()
  }
  return sent
}

/** The gateway-sent topic key: `kind/account/bot/conversation[/period]`. */
export function sentKey(sent: Pick<ConversationSent, 'kind' | 'accountId' | 'botId' | 'conversationId' | 'periodKey'>): Buffer {
  const parts = [sent.kind, sent.accountId, sent.botId, sent.conversationId]
  if (sent.periodKey) parts.push(sent.periodKey)
  return Buffer.from(parts.join('/'), 'utf8')
}

/** Decode a value-blocks topic value (Python's `decode_value_block`, the same reasons). */
export function decodeValueBlock(raw: Uint8Array | null | undefined): ValueBlock {
  const value = checkHeader(raw, 'ValueBlock')
  const r = new Reader(value, HEADER_BYTES, 'ValueBlock')
  const block: ValueBlock = Object.freeze({
    accountId: r.string(),
    botId: r.string(),
    attribute: r.string(),
    value: r.string(),
    blockedUntilMs: r.long(),
    policyId: r.string()
  })
  if (!block.accountId || !block.botId || !block.attribute || !block.value) {
    throw invalid('a ValueBlock needs an account_id, a bot_id, an attribute and a value')
  }
  if (block.blockedUntilMs < 0) throw invalid("a ValueBlock's blocked_until_ms is negative")
  return block
}

/** The value-blocks topic key: `account_id/bot_id/attribute/value`. */
export function valueBlockKey(b: Pick<ValueBlock, 'accountId' | 'botId' | 'attribute' | 'value'>): Buffer {
  return Buffer.from(`${b.accountId}/${b.botId}/${b.attribute}/${b.value}`, 'utf8')
}
