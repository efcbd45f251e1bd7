/**
 * The TypeScript SDK's speed: gate() calls/s on one core, record() events/s into Kafka
 * (acked, acks=all), and decision -> verdict latency (a state published to the control topic
 * until a running Gateway answers from it). Prints figures; asserts nothing.
 *
 *   CAPSTREAM_KAFKA_BOOTSTRAP=127.0.0.1:9092 npm run bench      (make bench-ts)
 *
 * Without a broker only the gate() figures are printed. The machine may be shared: the load
 * average is printed before and after.
 */
import { loadavg } from 'node:os'
import { randomBytes } from 'node:crypto'
import { Admin, Producer } from '@platformatic/kafka'
import {
  EnforcementState,
  Gateway,
  UsageRecorder,
  controlKey,
  encodeState,
  type CapStatus,
  type EnforcementStateFields
} from '../src/index.js'

const bootstrap = process.env['CAPSTREAM_KAFKA_BOOTSTRAP']
const seconds = Number(process.env['BENCH_SECONDS'] ?? '2')
const load = (): string => loadavg().map(n => n.toFixed(2)).join(' ')

function fields(account: string, bot: string, version: number, changes: Partial<EnforcementStateFields> = {}): EnforcementStateFields {
  return {
    accountId: account,
    botId: bot,
    version,
    updatedAtMs: Date.now(),
    blockedUntilMs: null,
    blockPolicyId: null,
    model: 'claude-sonnet-4-6',
    downgradedUntilMs: null,
    batchingIntervalS: 3,
    throttledUntilMs: null,
    throttleReason: null,
    caps: new Map<string, CapStatus>(),
    plan: 'pro',
    fallbackTextDaily: 'Back tomorrow!',
    fallbackTextMonthly: 'Back next week!',
    premiumModel: 'claude-sonnet-4-6',
    ...changes
  }
}

function benchGate(): void {
  const states: EnforcementState[] = []
  for (let a = 0; a < 1000; a++) {
    for (let b = 0; b < 10; b++) states.push(new EnforcementState(fields(`acct-${a}`, `bot-${b}`, 1)))
  }
  // bot-0 of 400 accounts has vision capped: 1 % of the mixed calls are refused (and reported)
  const capped = new Map<string, CapStatus>([['vision', { period: 'daily', periodKey: '2026-12-04', resumesAtMs: Date.now() + 86_400_000 }]])
  for (let a = 0; a < 400; a++) states.push(new EnforcementState(fields(`acct-${a}`, 'bot-0', 2, { caps: capped })))
  let hits = 0
  const gateway = Gateway.fromStates(states, { onCapHit: () => hits++ })
  const accounts = Array.from({ length: 1000 }, (_, a) => `acct-${a}`)
  const bots = Array.from({ length: 10 }, (_, b) => `bot-${b}`)
  const conversations = Array.from({ length: 997 }, (_, c) => `conv-${c}`)
  const categories = ['text', 'vision', 'audio', 'documents']
  for (const [name, mixed] of [
    ['text', false],
    ['mixed categories, 1 % capped (cap hits to a callback)', true]
  ] as const) {
    let calls = 0
    let allowed = 0
    const start = performance.now()
    const end = start + seconds * 1000
    let now = start
    while (now < end) {
      for (let i = 0; i < 100_000; i++) {
        const n = calls + i
        const v = gateway.gate(accounts[n % 1000]!, bots[n % 10]!, conversations[n % 997]!, mixed ? categories[Math.floor(n / 7) & 3]! : 'text')
        if (v.action === 'allow') allowed++
      }
      calls += 100_000
      now = performance.now()
    }
    const rate = calls / ((now - start) / 1000)
    console.log(`gate() one thread, ${name}: ${(rate / 1e6).toFixed(2)}M calls/s (${calls} calls, ${calls - allowed} refused, ${hits} cap hits)`)
  }
}

async function createTopics(prefix: string): Promise<void> {
  const admin = new Admin({ clientId: 'bench-admin', bootstrapBrokers: bootstrap!.split(',') })
  await admin.createTopics({ topics: [`${prefix}.usage`, `${prefix}.caphits`], partitions: 4, replicas: 1 })
  await admin.createTopics({
    topics: [`${prefix}.control`, `${prefix}.gateway-sent`],
    partitions: 4,
    replicas: 1,
    configs: [{ name: 'cleanup.policy', value: 'compact' }]
  })
  await admin.close()
}

async function benchRecord(prefix: string, realistic: boolean): Promise<void> {
  const total = Number(process.env['BENCH_EVENTS'] ?? '1000000')
  const recorder = new UsageRecorder({ bootstrap, topicPrefix: prefix, maxQueue: 2_000_000, producerName: 'bench' })
  const events = Array.from({ length: 10_000 }, (_, i) => ({
    eventId: '',
    accountId: `acct-${i % 1000}`,
    botId: `bot-${i % 10}`,
    conversationId: `conv-${i % 997}`,
    category: 'text' as const,
    model: 'claude-sonnet-4-6',
    tokensIn: realistic ? (i * 7919) % 40_000 : 420,
    tokensOut: realistic ? (i * 104_729) % 8_000 : 180,
    messages: 1,
    creditsMicro: realistic ? (i * 15_485_863) % 600_000 : 2300
  }))
  await recorder.flush(10_000) // metadata and connection, outside the timing
  const cpu0 = process.cpuUsage()
  const start = performance.now()
  let recordMs = 0
  for (let n = 0; n < total; n += 10_000) {
    const t = performance.now()
    for (let i = 0; i < 10_000; i++) {
      const e = events[i]!
      e.eventId = `e-${n + i}`
      recorder.record(e)
    }
    recordMs += performance.now() - t
    await new Promise(r => setImmediate(r)) // let the sender run, as a server's event loop would
  }
  const pending = await recorder.flush(120_000)
  const elapsed = (performance.now() - start) / 1000
  const cpu = process.cpuUsage(cpu0)
  const stats = recorder.stats
  console.log(
    `record() into Kafka, acked (acks=all), ${realistic ? 'realistic counts' : 'small counts'}: ` +
      `${Math.round(total / elapsed / 1000)}k events/s (${total} events in ${elapsed.toFixed(2)} s, ` +
      `${((recordMs * 1000) / total).toFixed(2)} µs per record() call, ` +
      `${(((cpu.user + cpu.system) / total)).toFixed(2)} µs CPU per event, ${stats.batches} batches, ` +
      `${stats.rejected} rejected, ${pending} pending)`
  )
  await recorder.close()
}

async function benchLatency(prefix: string): Promise<void> {
  const gateway = new Gateway({ bootstrap, topicPrefix: prefix })
  const producer = new Producer({ clientId: 'bench-control', bootstrapBrokers: bootstrap!.split(','), acks: -1 })
  if (!(await gateway.waitReady(30_000))) throw new Error('the control view did not become ready')
  const samples: number[] = []
  const acks: number[] = []
  const rounds = Number(process.env['BENCH_ROUNDS'] ?? '200')
  for (let v = 1; v <= rounds; v++) {
    const blocked = v % 2 === 1
    const state = fields('acct-lat', 'bot-1', v, blocked ? { blockedUntilMs: Date.now() + 3_600_000, blockPolicyId: 'p' } : {})
    const want = blocked ? 'paused' : 'allow'
    const sent = performance.now()
    await producer.send({
      messages: [{ topic: `${prefix}.control`, key: controlKey('acct-lat', 'bot-1'), value: encodeState(state) }]
    })
    acks.push(performance.now() - sent)
    while (gateway.gate('acct-lat', 'bot-1', 'c', 'text').action !== want) {
      await new Promise(r => setImmediate(r))
      if (performance.now() - sent > 30_000) throw new Error('the verdict did not follow')
    }
    samples.push(performance.now() - sent)
    await new Promise(r => setTimeout(r, 5))
  }
  samples.sort((a, b) => a - b)
  acks.sort((a, b) => a - b)
  const q = (xs: number[], p: number): string => xs[Math.min(xs.length - 1, Math.floor(p * xs.length))]!.toFixed(1)
  console.log(
    `decision -> verdict (from the produce call until gate() answers from the state), ${rounds} decisions: ` +
      `p50 ${q(samples, 0.5)} ms, p99 ${q(samples, 0.99)} ms, max ${q(samples, 1)} ms ` +
      `(of which the produce acknowledgement: p50 ${q(acks, 0.5)} ms, p99 ${q(acks, 0.99)} ms)`
  )
  await producer.close()
  await gateway.close()
}

async function main(): Promise<void> {
  console.log(`node ${process.version}, load average before: ${load()}`)
  benchGate()
  if (bootstrap === undefined) {
    console.log('CAPSTREAM_KAFKA_BOOTSTRAP is not set: record() and latency skipped')
  } else {
    const prefix = `bench${randomBytes(4).toString('hex')}`
    await createTopics(prefix)
    await benchRecord(prefix, false)
    await benchRecord(prefix, true)
    await benchLatency(prefix)
  }
  console.log(`load average after: ${load()}`)
}

main().catch(err => {
  console.error(err)
  process.exit(1)
})
