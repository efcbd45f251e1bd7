/** The shared vectors (testdata/vectors/, generated from the Python core and codecs). */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import {
  FINGERPRINTS,
  decodeConversationSent,
  decodeState,
  decodeValueBlock,
  encodeBatch,
  encodeCapHit,
  encodeConversationSent,
  encodeEvent,
  encodeState,
  sentKey,
  valueBlockKey,
  type ConversationSent
} from '../src/wire.js'
import { expiresAt } from '../src/ledger.js'
import { murmur2, partitionFor } from '../src/murmur2.js'
import { DecodeError, UnknownCategoryError, UsageEventError } from '../src/errors.js'
import { Gateway } from '../src/gateway.js'
import { DEFAULT_CONVERSATIONS_TRACKED, UsageRecorder } from '../src/recorder.js'
import { PriceBook, amountToCredits, decodePriceTable, priceTableFromJson } from '../src/prices.js'
import { fromHex } from '../src/avro.js'
import { load, long, stateJson, usageEvent, verdictJson } from './helpers.js'
import {
  DEFAULT_MAX_FUTURE_SKEW_MS,
  MAX_ATTRIBUTES,
  MAX_ATTRIBUTE_KEY,
  MAX_ATTRIBUTE_VALUE,
  MAX_CREDITS_MICRO,
  MAX_ID,
  MAX_MESSAGES,
  MAX_MODEL,
  MAX_OCCURRED_AT_MS,
  MAX_TOKENS,
  MIN_OCCURRED_AT_MS
} from '../src/limits.js'

test('murmur2 and partitions match Kafka for every vector key', () => {
  const { cases } = load('partitions.json')
  assert.ok(cases.length > 150)
  for (const c of cases) {
    const key = Buffer.from(c.key_hex, 'hex')
    assert.equal(murmur2(key), c.murmur2, c.key_hex)
    for (const [n, p] of Object.entries(c.partitions)) assert.equal(partitionFor(key, Number(n)), p)
  }
})

test('UsageBatch records are byte-identical to the Python codec', () => {
  const doc = load('usage_batches.json')
  assert.equal(FINGERPRINTS.UsageBatch.toString('hex'), doc.fingerprint_hex)
  for (const c of doc.cases) {
    const bodies = c.events.map((e: Record<string, unknown>) => encodeEvent(usageEvent(e)))
    const value = encodeBatch(c.batch_id, c.producer, c.sent_at_ms, bodies)
    assert.equal(value.toString('hex'), c.hex, c.name)
  }
})

test('record() refuses the bad events, naming the same field as Python', () => {
  const { bad_events } = load('usage_batches.json')
  assert.ok(bad_events.length >= 30)
  let messages = 0
  for (const c of bad_events) {
    const event = usageEvent(c.event)
    if (c.lone_surrogate) event[usageEventKey(c.field)] = '\ud800'
    if (c.occurred_at_from_now_ms !== undefined) event.occurredAtMs = Date.now() + c.occurred_at_from_now_ms
    assert.throws(
      () => encodeEvent(event),
      (err: unknown) => {
        assert.ok(err instanceof UsageEventError, String(err))
        assert.equal(err.field, c.field)
        if (c.message !== undefined) {
          assert.equal(err.message, c.message) // the core.limits bounds: word for word
          messages++
        }
        return true
      },
      `${c.field}: ${JSON.stringify(c.event[c.field])?.slice(0, 80)}`
    )
  }
  assert.ok(messages >= 15)
})

test('the limits are the Python core\'s, and an event at every limit is accepted', () => {
  const { limits, cases } = load('usage_batches.json')
  assert.deepEqual(
    {
      max_id: MAX_ID,
      max_model: MAX_MODEL,
      max_tokens: MAX_TOKENS,
      max_messages: MAX_MESSAGES,
      max_credits_micro: MAX_CREDITS_MICRO,
      min_occurred_at_ms: MIN_OCCURRED_AT_MS,
      max_occurred_at_ms: MAX_OCCURRED_AT_MS,
      max_future_skew_ms: DEFAULT_MAX_FUTURE_SKEW_MS,
      max_attributes: MAX_ATTRIBUTES,
      max_attribute_key: MAX_ATTRIBUTE_KEY,
      max_attribute_value: MAX_ATTRIBUTE_VALUE
    },
    limits
  )
  const largest = cases.find((c: { name: string }) => c.name.startsWith('the largest counts'))
  assert.equal(largest.events[0].credits_micro, MAX_CREDITS_MICRO)
  // the clock plus the skew is accepted, a millisecond later is not
  const now = Date.now()
  const event = { ...usageEvent(largest.events[0]), occurredAtMs: now + DEFAULT_MAX_FUTURE_SKEW_MS }
  assert.ok(encodeEvent(event, now).length > 0)
  assert.throws(() => encodeEvent({ ...event, occurredAtMs: now + DEFAULT_MAX_FUTURE_SKEW_MS + 1 }, now), /later than/)
})

function usageEventKey(field: string): string {
  return field.replace(/_([a-z])/g, (_, ch: string) => ch.toUpperCase())
}

test('control values decode to the vector states and encode back to the same bytes', () => {
  const doc = load('control_states.json')
  assert.equal(FINGERPRINTS.EnforcementState.toString('hex'), doc.fingerprint_hex)
  for (const c of doc.cases) {
    const state = decodeState(Buffer.from(c.hex, 'hex'))
    assert.deepEqual(stateJson(state), c.state, c.name)
    assert.equal(encodeState(state).toString('hex'), c.hex, c.name)
  }
})

test('bad control values are refused with the Python reason', () => {
  const { bad } = load('control_states.json')
  for (const c of bad) {
    assert.throws(
      () => decodeState(Buffer.from(c.hex, 'hex')),
      (err: unknown) => err instanceof DecodeError && err.reason === c.reason,
      c.name
    )
  }
})

test('cap hits are byte-identical to the Python codec', () => {
  const doc = load('cap_hits.json')
  assert.equal(FINGERPRINTS.CapHit.toString('hex'), doc.fingerprint_hex)
  for (const c of doc.cases) {
    const h = c.hit
    const value = encodeCapHit({
      hitId: h.hit_id,
      accountId: h.account_id,
      botId: h.bot_id,
      conversationId: h.conversation_id,
      category: h.category,
      period: h.period,
      periodKey: h.period_key,
      occurredAtMs: Number(long(h.occurred_at_ms))
    })
    assert.equal(value.toString('hex'), c.hex)
  }
})

test('the gateway answers every gate sequence like the Python core', () => {
  const doc = load('gate_sequences.json')
  const actions = new Set<string>()
  for (const seq of doc.sequences) {
    const states = seq.states.map((s: { hex: string; state: unknown }) => {
      const state = decodeState(Buffer.from(s.hex, 'hex'))
      assert.deepEqual(stateJson(state), s.state)
      return state
    })
    const reported: unknown[] = []
    const gateway = Gateway.fromStates(states, {
      ledgerEntries: seq.ledger_entries,
      defaultModel: doc.default_model,
      onCapHit: hit => reported.push(hit)
    })
    let hits = 0
    seq.steps.forEach((step: Record<string, any>, i: number) => {
      const call = [step.account_id, step.bot_id, step.conversation_id, step.category] as const
      if ('error' in step.verdict) {
        // one type and one text, whether or not the gateway holds a state for the bot
        assert.throws(
          () => gateway.gate(...call, step.now),
          (err: unknown) => err instanceof UnknownCategoryError && err.message === step.verdict.message
        )
        return
      }
      const got = verdictJson(gateway.gate(...call, step.now))
      assert.deepEqual(got, step.verdict, `${seq.name}: step ${i} ${call.join(' ')} at ${step.now}`)
      actions.add(got.action as string)
      if (got.cap_hit !== null) hits++
    })
    assert.equal(reported.length, hits, seq.name)
  }
  assert.deepEqual([...actions].sort(), ['allow', 'fallback', 'paused', 'skip'])
})

test('value blocks decode to the vector blocks with the same key; bad ones are refused with the Python reason', () => {
  const doc = load('value_blocks.json')
  assert.equal(FINGERPRINTS.ValueBlock.toString('hex'), doc.fingerprint_hex)
  for (const c of doc.records) {
    const b = decodeValueBlock(Buffer.from(c.hex, 'hex'))
    assert.deepEqual(
      {
        account_id: b.accountId,
        bot_id: b.botId,
        attribute: b.attribute,
        value: b.value,
        blocked_until_ms: b.blockedUntilMs,
        policy_id: b.policyId
      },
      c.block
    )
    assert.equal(valueBlockKey(b).toString('utf8'), c.key)
  }
  assert.ok(doc.bad.length >= 8)
  for (const c of doc.bad) {
    assert.throws(
      () => decodeValueBlock(Buffer.from(c.hex, 'hex')),
      (err: unknown) => err instanceof DecodeError && err.reason === c.reason,
      c.name
    )
  }
})

test('the gateway refuses blocked attribute values like the Python gateway', () => {
  const doc = load('value_blocks.json')
  let paused = 0
  for (const seq of doc.sequences) {
    const states = seq.states.map((s: { hex: string }) => decodeState(Buffer.from(s.hex, 'hex')))
    const valueBlocks = seq.blocks.map((hex: string) => decodeValueBlock(Buffer.from(hex, 'hex')))
    const gateway = Gateway.fromStates(states, { valueBlocks })
    seq.steps.forEach((step: Record<string, any>, i: number) => {
      const call = [step.account_id, step.bot_id, step.conversation_id, step.category] as const
      const attributes = Object.fromEntries(step.attributes as [string, string][])
      if ('error' in step.verdict) {
        assert.throws(
          () => gateway.gate(...call, step.now, attributes),
          (err: unknown) => err instanceof UnknownCategoryError && err.message === step.verdict.message
        )
        return
      }
      const got = verdictJson(gateway.gate(...call, step.now, attributes))
      assert.deepEqual(got, step.verdict, `${seq.name}: step ${i} ${call.join(' ')} at ${step.now}`)
      if (typeof got.reason === 'string' && got.reason.startsWith('policy_block:')) paused++
    })
  }
  assert.ok(paused >= 5)
})

test('the recorder derives conversationStarted like the Python recorder', async () => {
  const doc = load('usage_batches.json')
  assert.equal(DEFAULT_CONVERSATIONS_TRACKED, doc.default_conversations_tracked)
  for (const seq of doc.conversation_started) {
    const options = { bootstrap: '127.0.0.1:1', logger: { warn: () => undefined, error: () => undefined } }
    const recorder = new UsageRecorder(
      seq.conversations_tracked === DEFAULT_CONVERSATIONS_TRACKED
        ? options // the default, left out
        : { ...options, conversationsTracked: seq.conversations_tracked }
    )
    const expected: Buffer[] = []
    seq.events.forEach((e: Record<string, unknown>, i: number) => {
      const event = usageEvent(e)
      const started = seq.started[i]
      if (started === null) {
        assert.throws(() => recorder.record(event), UsageEventError)
        return
      }
      assert.equal(recorder.record(event), true)
      expected.push(encodeEvent({ ...event, conversationStarted: started }))
    })
    assert.deepEqual(
      recorder.queuedBodies.map(b => b.toString('hex')),
      expected.map(b => b.toString('hex')),
      seq.name
    )
    await recorder.destroy()
  }
})

test('what gateways sent is byte-identical to the Python ConversationSent, with the same key and expiry', () => {
  const doc = load('conversation_sent.json')
  assert.equal(FINGERPRINTS.ConversationSent.toString('hex'), doc.fingerprint_hex)
  for (const c of doc.cases) {
    const s = c.sent
    const sent: ConversationSent = {
      kind: s.kind,
      accountId: s.account_id,
      botId: s.bot_id,
      conversationId: s.conversation_id,
      periodKey: s.period_key,
      atMs: s.at_ms,
      expiresAtMs: s.expires_at_ms,
      gatewayId: s.gateway_id
    }
    assert.equal(encodeConversationSent(sent).toString('hex'), c.hex)
    assert.deepEqual(decodeConversationSent(Buffer.from(c.hex, 'hex')), sent)
    assert.equal(sentKey(sent).toString('utf8'), c.key)
    assert.equal(expiresAt(sent.kind, sent.periodKey, sent.atMs), sent.expiresAtMs)
  }
})

test('price tables decode and derive the same credits as Python (prices.json)', () => {
  const doc = load('prices.json')
  const book = new PriceBook([], { warn: () => undefined, error: () => undefined })
  for (const t of doc.tables) {
    const decoded = decodePriceTable(fromHex(t.hex))
    assert.deepEqual(decoded, priceTableFromJson(t.record), t.record.account_id)
    book.put(decoded)
  }
  assert.ok(doc.cases.length >= 20)
  let unpriced = 0
  for (const c of doc.cases) {
    const got = book.credits(c.account_id, c.model, c.category, c.tokens_in, c.tokens_out)
    const want = c.credits_micro === null ? undefined : Number(long(c.credits_micro))
    if (want === undefined) unpriced++
    assert.equal(got, want, JSON.stringify(c))
  }
  assert.equal(book.stats.unpriced, unpriced)
  for (const a of doc.amounts) {
    assert.equal(amountToCredits(BigInt(a.amount_micro), BigInt(a.credits_per_unit_micro)), BigInt(a.credits_micro))
  }
})

test('record() derives creditsMicro from tokens when left out, keeps it when given', async () => {
  const doc = load('prices.json')
  const quiet = { warn: () => undefined, error: () => undefined }
  const book = new PriceBook(doc.tables.map((t: { hex: string }) => decodePriceTable(fromHex(t.hex))), quiet)
  const recorder = new UsageRecorder({ bootstrap: '127.0.0.1:1', prices: book, logger: quiet })
  const expected: Buffer[] = []
  doc.cases.forEach((c: Record<string, unknown>, i: number) => {
    const event = {
      eventId: `e-${i}`, accountId: c['account_id'] as string, botId: 'b', conversationId: 'c',
      category: c['category'] as 'text', model: c['model'] as string, tokensIn: c['tokens_in'] as number,
      tokensOut: c['tokens_out'] as number, messages: 1, conversationStarted: true, occurredAtMs: 1_795_000_000_000
    }
    assert.equal(recorder.record(event), true)
    const credits = c['credits_micro'] === null ? 0 : (long(c['credits_micro']) as number)
    expected.push(encodeEvent({ ...event, creditsMicro: credits }))
    assert.equal(recorder.record({ ...event, creditsMicro: 7 }), true) // given: kept
    expected.push(encodeEvent({ ...event, creditsMicro: 7 }))
  })
  assert.deepEqual(recorder.queuedBodies.map(b => b.toString('hex')), expected.map(b => b.toString('hex')))
  assert.equal(book.stats.unpriced, doc.cases.filter((c: { credits_micro: unknown }) => c.credits_micro === null).length)
  await recorder.destroy()
})
