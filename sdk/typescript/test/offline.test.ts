/** Behaviour without a reachable broker: overflow, flush/close reports, fail-open/closed. */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import {
  CONTROL_UNAVAILABLE,
  FallbackLedger,
  Gateway,
  KafkaLedger,
  NotDeliveredError,
  QueueFullError,
  RecorderClosedError,
  UnknownCategoryError,
  UsageEventError,
  UsageRecorder,
  EnforcementState,
  gate,
  type UsageEvent
} from '../src/index.js'

const NOWHERE = '127.0.0.1:1' // nothing listens: every connection is refused
const quiet = { warn: () => undefined, error: () => undefined }

function event(i: number): UsageEvent {
  return { eventId: `e-${i}`, accountId: 'acct-1', botId: 'bot-1', conversationId: 'c-1', category: 'text', model: 'm' }
}

test('with Kafka away, a full queue refuses the new event and keeps the accepted ones', async () => {
  const recorder = new UsageRecorder({ bootstrap: NOWHERE, maxQueue: 5, logger: quiet })
  for (let i = 0; i < 5; i++) assert.equal(recorder.record(event(i)), true)
  assert.equal(recorder.record(event(5)), false)
  assert.equal(recorder.record(event(6)), false)
  const stats = recorder.stats
  assert.equal(stats.accepted, 5)
  assert.equal(stats.rejected, 2)
  assert.equal(await recorder.flush(300), 5) // nothing acknowledged: all five still pending
  await assert.rejects(recorder.close(300), (err: unknown) => err instanceof NotDeliveredError && err.pending === 5)
  assert.throws(() => recorder.record(event(7)), RecorderClosedError)
  assert.equal(await recorder.destroy(), 5)
})

test('onOverflow "raise" throws QueueFullError for the event that did not fit', async () => {
  const recorder = new UsageRecorder({ bootstrap: NOWHERE, maxQueue: 2, onOverflow: 'raise', logger: quiet })
  recorder.record(event(1))
  recorder.record(event(2))
  assert.throws(() => recorder.record(event(3)), QueueFullError)
  assert.equal(recorder.stats.rejected, 1)
  assert.equal(await recorder.destroy(), 2)
})

test('a bad event is refused at record() time, naming the field, and takes no room', async () => {
  const recorder = new UsageRecorder({ bootstrap: NOWHERE, maxQueue: 1, logger: quiet })
  assert.throws(
    () => recorder.record({ ...event(1), tokensIn: -5 }),
    (err: unknown) => err instanceof UsageEventError && err.field === 'tokens_in' && /negative/.test(err.message)
  )
  assert.throws(
    () => recorder.record({ ...event(1), category: 'video' as 'text' }),
    (err: unknown) => err instanceof UsageEventError && err.field === 'category'
  )
  assert.throws(
    () => recorder.record({ ...event(1), tokensIn: 1e21 }),
    (err: unknown) => err instanceof UsageEventError && err.message.includes('1000000000000000000000 is larger than the per-event limit 1,000,000,000')
  )
  assert.equal(recorder.record(event(2)), true)
  assert.equal(recorder.stats.accepted, 1)
  await recorder.destroy()
})

test('bad options are refused with a clear message', () => {
  assert.throws(() => new UsageRecorder({ bootstrap: NOWHERE, maxQueue: 0 }), /maxQueue/)
  assert.throws(() => new UsageRecorder({ bootstrap: 'no-port' }), /host:port/)
  assert.throws(() => new Gateway({ bootstrap: NOWHERE, onDisconnect: 'maybe' as 'open' }), /onDisconnect/)
  assert.throws(() => new FallbackLedger(0), /at least one entry/)
})

test('a fail-closed gateway pauses every call until its view has caught up', async () => {
  const gateway = new Gateway({ bootstrap: NOWHERE, onDisconnect: 'closed', logger: quiet })
  assert.equal(gateway.ready, false)
  assert.equal(gateway.gate('acct-1', 'bot-1', 'c-1', 'text'), CONTROL_UNAVAILABLE)
  assert.equal(gateway.gate('acct-1', 'bot-1', 'c-1', 'vision').reason, 'control_unavailable')
  assert.equal(await gateway.waitReady(200), false)
  await gateway.close()
})

test('a fail-open gateway allows with the default model while it knows nothing', async () => {
  const gateway = new Gateway({ bootstrap: NOWHERE, defaultModel: 'claude-haiku', logger: quiet })
  const v = gateway.gate('acct-1', 'bot-1', 'c-1', 'text')
  assert.deepEqual([v.action, v.model, v.batchingIntervalS, v.reason], ['allow', 'claude-haiku', 3, 'no_state_yet'])
  assert.throws(() => gateway.gate('acct-1', 'bot-1', 'c-1', 'video'), UnknownCategoryError)
  await gateway.close()
})

test('an unknown category is one error with one message, with or without a state', () => {
  const state = new EnforcementState({
    accountId: 'acct-1', botId: 'bot-1', version: 1, updatedAtMs: 0, blockedUntilMs: null, blockPolicyId: null,
    model: 'm', downgradedUntilMs: null, batchingIntervalS: 60, throttledUntilMs: null, throttleReason: 'strict',
    caps: new Map(), plan: 'pro', fallbackTextDaily: '', fallbackTextMonthly: '', premiumModel: ''
  })
  const gateway = Gateway.fromStates([state])
  const messages = [
    () => gateway.gate('acct-1', 'bot-1', 'c', "it's"), // a state (the core's gate)
    () => gateway.gate('acct-2', 'bot-1', 'c', "it's"), // none
    () => gate(state, "it's", 'c', 0, new FallbackLedger())
  ].map(call => {
    try {
      call()
    } catch (err) {
      assert.ok(err instanceof UnknownCategoryError)
      return err.message
    }
    return 'no error'
  })
  assert.deepEqual(new Set(messages), new Set([`unknown category "it's": use one of text, vision, audio, documents`]))
})

test('the shared ledger applies what other gateways sent until it expires, and publishes what it sends', async () => {
  const ledger = new KafkaLedger(100, { bootstrap: NOWHERE, logger: quiet, gatewayId: 'gw-1' })
  const now = Date.now()
  const fallback = {
    kind: 'fallback' as const, accountId: 'a', botId: 'b', conversationId: 'c', periodKey: '2026-11-18',
    atMs: now, expiresAtMs: now + 1000, gatewayId: 'other'
  }
  assert.equal(ledger.apply({ ...fallback, expiresAtMs: now }, now), false) // expired: ignored
  assert.equal(ledger.fallbackSent('a', 'b', 'c', '2026-11-18'), false)
  assert.equal(ledger.apply(fallback, now), true)
  assert.equal(ledger.apply(fallback, now), false) // known already
  assert.equal(ledger.claimFallback('a', 'b', 'c', '2026-11-18'), false) // another gateway sent it
  const reply = { ...fallback, kind: 'reply' as const, periodKey: '', atMs: now - 10, expiresAtMs: now + 59_990 }
  assert.equal(ledger.apply(reply, now), true)
  assert.equal(ledger.apply({ ...reply, atMs: now - 20 }, now), false) // older than the one held
  assert.equal(ledger.lastReply('a', 'b', 'c'), now - 10)
  assert.equal(ledger.claimFallback('a', 'b', 'c2', '2026-11-18'), true) // ours: published
  ledger.recordReply('a', 'b', 'c2', now)
  assert.equal(ledger.stats.published, 2)
  assert.equal(ledger.ready, false) // nothing read yet: Kafka is away
  assert.equal(await ledger.close(100), 2) // not delivered, reported
})

test('a long throttle keeps only the last minutes of replies, and spaces them as before', () => {
  const ledger = new FallbackLedger()
  const t0 = 1_763_467_200_000
  for (let i = 0; i < 50_000; i++) {
    const at = t0 + i * 1_728 // one call every 1.7 s, each in a new conversation
    assert.equal(ledger.lastReply('a', 'b', `c${i}`), undefined)
    ledger.recordReply('a', 'b', `c${i}`, at)
  }
  assert.ok(ledger.size <= Math.floor(60_000 / 1_728) + 64 + 1, `kept ${ledger.size}`) // + a pass's worth
  assert.equal(ledger.lastReply('a', 'b', 'c49999'), t0 + 49_999 * 1_728) // the last minute's stay
})

test('the fallback ledger forgets the oldest conversation first when full', () => {
  const ledger = new FallbackLedger(2)
  assert.equal(ledger.claimFallback('a', 'b', 'c1', 'd'), true)
  assert.equal(ledger.claimFallback('a', 'b', 'c1', 'd'), false)
  assert.equal(ledger.claimFallback('a', 'b', 'c2', 'd'), true)
  assert.equal(ledger.claimFallback('a', 'b', 'c3', 'd'), true) // c1 forgotten
  assert.equal(ledger.claimFallback('a', 'b', 'c1', 'd'), true)
  assert.equal(ledger.claimFallback('a', 'b/c', 'x', 'd'), true)
  assert.equal(ledger.claimFallback('a/b', 'c', 'x', 'd'), true) // ids with "/" never collide
})
