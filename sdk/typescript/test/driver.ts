/**
 * A capstream TypeScript gateway driven over stdin/stdout (one JSON command per line, one
 * JSON answer per line), for the Python integration tests (tests/integration/
 * test_typescript_sdk.py): the broker and the Python worker run there, the SDK here.
 *
 * Commands: {"op": "record", "events": [...]}, {"op": "flush"}, {"op": "gate", "calls":
 * [[account, bot, conversation, category, now?, attributes?], ...]}, {"op": "ready"}, {"op": "states"},
 * {"op": "stats"}, {"op": "ledger", "fallbacks": [[account, bot, conversation, period], ...],
 * "replies": [[account, bot, conversation], ...]}, {"op": "priced", "events": [...]} (recorded
 * by a second recorder whose KafkaPriceBook reads the prices topic), {"op": "close"}. Configuration from
 * CAPSTREAM_* variables.
 */
import { createInterface } from 'node:readline'
import { Gateway, KafkaLedger, KafkaPriceBook, UsageRecorder, type Verdict } from '../src/index.js'
import { usageEvent, verdictJson } from './helpers.js'

const onDisconnect = (process.env['CAPSTREAM_TS_ON_DISCONNECT'] ?? 'open') as 'open' | 'closed'
const maxDisconnectedS = Number(process.env['CAPSTREAM_TS_MAX_DISCONNECTED_S'] ?? '300')
const recorder = new UsageRecorder({ lingerMs: Number(process.env['CAPSTREAM_TS_LINGER_MS'] ?? '5'), producerName: 'ts-driver' })
const gateway = new Gateway({ onDisconnect, maxDisconnectedS, gatewayId: process.env['CAPSTREAM_TS_GATEWAY_ID'] ?? 'ts-driver' })

let prices: KafkaPriceBook | undefined
let pricedRecorder: UsageRecorder | undefined

function answer(value: unknown): void {
  process.stdout.write(JSON.stringify(value, (_, v) => (typeof v === 'bigint' ? v.toString() : v)) + '\n')
}

async function handle(cmd: Record<string, any>): Promise<unknown> {
  switch (cmd['op']) {
    case 'record':
      return { accepted: cmd['events'].map((e: Record<string, unknown>) => recorder.record(usageEvent(e))) }
    case 'flush':
      return { pending: await recorder.flush(cmd['timeout_ms'] ?? 30_000) }
    case 'priced': {
      if (prices === undefined) {
        prices = new KafkaPriceBook()
        pricedRecorder = new UsageRecorder({ lingerMs: 5, producerName: 'ts-driver-priced', prices })
      }
      const ready = await prices.waitReady(cmd['timeout_ms'] ?? 30_000)
      const accepted = cmd['events'].map((e: Record<string, unknown>) => pricedRecorder!.record(usageEvent(e)))
      return { ready, accepted, pending: await pricedRecorder!.flush(30_000), stats: prices.stats }
    }
    case 'ready':
      return { ready: await gateway.waitReady(cmd['timeout_ms'] ?? 30_000) }
    case 'gate':
      return {
        verdicts: cmd['calls'].map((c: [string, string, string, string, (number | null)?, Record<string, string>?]) => {
          try {
            return verdictJson(gateway.gate(c[0], c[1], c[2], c[3], c[4] ?? undefined, c[5]) as Verdict)
          } catch (err) {
            return { error: (err as Error).name }
          }
        })
      }
    case 'states': {
      const out: Record<string, number> = {}
      const view = gateway.view as unknown as { states: Map<string, Map<string, { version: number }>> }
      for (const [account, bots] of view.states) for (const [bot, s] of bots) out[`${account}/${bot}`] = s.version
      return { states: out, stats: (gateway.view as unknown as { stats: unknown }).stats }
    }
    case 'ledger': {
      const ledger = gateway.ledger
      return {
        sent: (cmd['fallbacks'] ?? []).map((k: [string, string, string, string]) => ledger.fallbackSent(...k)),
        last_reply: (cmd['replies'] ?? []).map((k: [string, string, string]) => ledger.lastReply(...k) ?? null),
        stats: ledger instanceof KafkaLedger ? ledger.stats : null
      }
    }
    case 'stats':
      return { recorder: recorder.stats, staleness_s: gateway.stalenessS, closed: gateway.view.closed }
    case 'close': {
      await recorder.close(cmd['timeout_ms'] ?? 30_000)
      if (pricedRecorder !== undefined) await pricedRecorder.close(cmd['timeout_ms'] ?? 30_000)
      if (prices !== undefined) await prices.close()
      await gateway.close()
      return { closed: true }
    }
    default:
      throw new Error(`unknown op ${JSON.stringify(cmd['op'])}`)
  }
}

const lines = createInterface({ input: process.stdin })
let chain = Promise.resolve()
lines.on('line', line => {
  chain = chain.then(async () => {
    try {
      const cmd = JSON.parse(line)
      answer(await handle(cmd))
      if (cmd.op === 'close') process.exit(0)
    } catch (err) {
      answer({ error: (err as Error).name, message: (err as Error).message })
    }
  })
})
lines.on('close', () => {
  chain.then(() => process.exit(0))
})
