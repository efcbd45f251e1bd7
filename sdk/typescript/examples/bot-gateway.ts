/**
 * An example Node bot gateway: gate every AI call from memory, batch replies per
 * conversation, record usage without waiting, and follow the processors' decisions live.
 *
 *   capstream kafka up && capstream topics create          # a local broker and the topics
 *   cd sdk/typescript && npm run build:test
 *   CAPSTREAM_KAFKA_BOOTSTRAP=127.0.0.1:9092 node build/examples/bot-gateway.js [seconds]
 *
 * In your service import from '@capstream/gateway' instead of '../src/index.js'.
 * Three simulated customers chat with `support-bot` of `acct-demo`. Half-way through, a
 * stand-in for the processors publishes the state "daily text cap reached": the running
 * gateway answers with the fallback text once per conversation, then skips.
 */
import { randomUUID } from 'node:crypto'
import { Producer } from '@platformatic/kafka'
import { EnforcementState, Gateway, UsageRecorder, controlKey, encodeState, type Category, type Verdict } from '../src/index.js'

const ACCOUNT = 'acct-demo'
const BOT = 'support-bot'
const seconds = Number(process.argv[2] ?? '20')

interface Pending {
  messages: { category: Category; text: string }[]
  verdict: Verdict
}

async function main(): Promise<void> {
  const gateway = new Gateway({ onDisconnect: 'open' })
  const recorder = new UsageRecorder({ producerName: 'example-node-gateway' })
  if (!(await gateway.waitReady(30_000))) throw new Error('cannot read the control topic: is Kafka up, are the topics created?')
  const batches = new Map<string, Pending>()
  const timers = new Map<string, NodeJS.Timeout>()
  const counts = { aiCalls: 0, fallbacks: 0, skipped: 0, paused: 0 }

  /** One AI call per conversation per batching interval (3 s, or 60 s while throttled). */
  function callAi(conversation: string): void {
    const batch = batches.get(conversation)
    batches.delete(conversation)
    timers.delete(conversation)
    if (batch === undefined) return
    for (const m of batch.messages) {
      recorder.record({
        eventId: `ex-${randomUUID()}`,
        accountId: ACCOUNT,
        botId: BOT,
        conversationId: conversation,
        category: m.category,
        model: batch.verdict.model ?? '',
        tokensIn: 200 + Math.floor(Math.random() * 700),
        tokensOut: 50 + Math.floor(Math.random() * 350),
        messages: 1,
        creditsMicro: 1_000 + Math.floor(Math.random() * 8_000)
      })
    }
    counts.aiCalls++
    console.log(`  AI reply to ${conversation} with ${batch.verdict.model} (${batch.messages.length} messages in one call)`)
  }

  function onMessage(conversation: string, category: Category, text: string): void {
    const verdict = gateway.gate(ACCOUNT, BOT, conversation, category)
    switch (verdict.action) {
      case 'allow': {
        const pending = batches.get(conversation)
        if (pending !== undefined) {
          pending.messages.push({ category, text })
          return
        }
        batches.set(conversation, { messages: [{ category, text }], verdict })
        const at = Math.max(Date.now() + verdict.batchingIntervalS * 1000, verdict.replyAtMs ?? 0)
        timers.set(conversation, setTimeout(() => callAi(conversation), at - Date.now()))
        return
      }
      case 'fallback':
        counts.fallbacks++
        console.log(`  fallback to ${conversation}: ${verdict.text}`)
        return
      case 'skip':
        counts.skipped++ // capped: nothing is sent (the attempt is reported for the feed)
        return
      case 'paused':
        counts.paused++ // a policy block (or a fail-closed gateway without news)
    }
  }

  const started = Date.now()
  let published = false
  while (Date.now() - started < seconds * 1000) {
    if (!published && Date.now() - started > (seconds * 1000) / 2) {
      console.log('-- the processors publish: daily text cap reached --')
      await publishCapReached()
      published = true
    }
    const conversation = `conv-${1 + Math.floor(Math.random() * 3)}`
    const category: Category = Math.random() < 0.8 ? 'text' : 'vision'
    onMessage(conversation, category, 'hello')
    await new Promise(r => setTimeout(r, 300))
  }
  for (const [conversation, timer] of timers) {
    clearTimeout(timer) // shutting down: answer what is batched now
    callAi(conversation)
  }
  const pending = await recorder.flush(10_000)
  console.log(`done: ${JSON.stringify(counts)}, usage events not yet acknowledged: ${pending}`)
  await recorder.close()
  await gateway.close()
}

/** What the processors publish when the account's daily text credits run out. */
async function publishCapReached(): Promise<void> {
  const now = Date.now()
  const state = new EnforcementState({
    accountId: ACCOUNT,
    botId: BOT,
    version: now, // newer than anything published before
    updatedAtMs: now,
    blockedUntilMs: null,
    blockPolicyId: null,
    model: 'claude-haiku',
    downgradedUntilMs: now + 3_600_000,
    batchingIntervalS: 3,
    throttledUntilMs: null,
    throttleReason: null,
    caps: new Map([['text', { period: 'daily', periodKey: new Date(now).toISOString().slice(0, 10), resumesAtMs: now + 3_600_000 }]]),
    plan: 'pro',
    fallbackTextDaily: "Thanks! 👋 We're on a quick break — back tomorrow!",
    fallbackTextMonthly: "Thanks! 👋 We're on a quick break — back next week!",
    premiumModel: 'claude-sonnet-4-6'
  })
  const prefix = process.env['CAPSTREAM_TOPIC_PREFIX'] ?? 'capstream'
  const producer = new Producer({
    clientId: 'example-processors',
    bootstrapBrokers: (process.env['CAPSTREAM_KAFKA_BOOTSTRAP'] ?? '127.0.0.1:9092').split(',')
  })
  await producer.send({ messages: [{ topic: `${prefix}.control`, key: controlKey(ACCOUNT, BOT), value: encodeState(state) }] })
  await producer.close()
}

main().catch(err => {
  console.error(err)
  process.exit(1)
})
