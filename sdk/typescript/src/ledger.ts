/**
 * What gateways sent each conversation, shared through Kafka so replicas and restarts agree
 * (the Python SDK's `capstream/gateway/ledger.py`, on the same topic and records).
 *
 * `FallbackLedger` remembers, in one process, which (account, bot, conversation, cap period)
 * got the fallback text and when each conversation last got a throttled reply. `KafkaLedger`
 * is that ledger plus the compacted `<prefix>.gateway-sent` topic: each claim and each
 * throttled reply is published as a `ConversationSent` record (key
 * `kind/account/bot/conversation[/period]`, Kafka's murmur2 partition), and every gateway,
 * Python or TypeScript, reads the topic from the beginning (no group, like the control
 * view) into its own ledger. A restarted gateway is `ready` once it has read what was sent
 * before it started; a replica learns of another's sends within one produce and one fetch.
 * Two gateways deciding the same conversation within that delay may both send; after it,
 * neither sends again. Readers ignore a record once it expired (`expiresAtMs`).
 */
import { Producer } from '@platformatic/kafka'
import { randomBytes } from 'node:crypto'
import { consoleLogger, resolve, sleep, topics, type KafkaConfig, type Logger } from './config.js'
import { ControlView, describe } from './controlView.js'
import { DecodeError } from './errors.js'
import { FallbackLedger, REPLY_SPACING_MS } from './gate.js'
import { murmur2 } from './murmur2.js'
import { decodeConversationSent, encodeConversationSent, sentKey, type ConversationSent, type SentKind } from './wire.js'

const DAY_MS = 86_400_000
/** A fallback matters until its cap period ends; a day ends within 2 days, a month within 32. */
const DAILY_KEEP_MS = 2 * DAY_MS
const MONTHLY_KEEP_MS = 32 * DAY_MS

/** When a record of what was sent at `atMs` stops mattering (as the Python `expires_at`). */
export function expiresAt(kind: SentKind, periodKey: string, atMs: number): number {
  if (kind === 'reply') return atMs + REPLY_SPACING_MS
  return atMs + (periodKey.length > 7 ? DAILY_KEEP_MS : MONTHLY_KEEP_MS)
}

export interface KafkaLedgerOptions extends KafkaConfig {
  /** The gateway-sent topic (default `<prefix>.gateway-sent`). */
  topic?: string
  /** Written in each record (tracing; default a random 12 hex digits). */
  gatewayId?: string
  /** Records waiting for Kafka, at most; beyond, new ones are dropped and counted (100,000). */
  maxPending?: number
  logger?: Logger
  /** Long-poll wait of the reader's fetches (ms, default 200). */
  maxWaitMs?: number
}

export interface LedgerStats {
  published: number
  delivered: number
  /** dropped because `maxPending` records were waiting (brokers away for long) */
  dropped: number
  /** records of other gateways (and earlier runs) that changed this ledger */
  applied: number
  /** records that changed nothing (known already, or expired) */
  ignored: number
  /** records that could not be decoded; skipped and logged */
  invalid: number
}

function kafkaPartitioner(_message: unknown, key: Buffer | undefined): number {
  return key === undefined ? 0 : murmur2(key) & 0x7fffffff
}

/**
 * A `FallbackLedger` that publishes what this gateway sends and applies what the others
 * (and its earlier runs) sent, from the gateway-sent topic. Publishing never delays
 * `gate()`: records are queued and produced in the background (idempotent, acks=all); a
 * gateway that cannot publish (brokers away) still holds what it sent itself.
 */
export class KafkaLedger extends FallbackLedger {
  readonly topic: string
  readonly gatewayId: string
  readonly #producer: Producer<Buffer, Buffer, Buffer, Buffer>
  readonly #reader: SentReader
  readonly #maxPending: number
  readonly #log: Logger
  #queue: { key: Buffer; value: Buffer }[] = []
  #inFlight = 0
  #scheduled = false
  #closed = false
  #sending: Promise<void> = Promise.resolve()
  #stats = { published: 0, delivered: 0, dropped: 0 }

  constructor(maxEntries: number, options: KafkaLedgerOptions = {}) {
    super(maxEntries)
    const cfg = resolve(options)
    this.topic = options.topic ?? topics.gatewaySent(cfg.topicPrefix)
    this.gatewayId = options.gatewayId ?? randomBytes(6).toString('hex')
    this.#maxPending = options.maxPending ?? 100_000
    this.#log = options.logger ?? consoleLogger
    this.#producer = new Producer({
      ...cfg.connection,
      clientId: `${cfg.clientId}-gateway-sent`,
      bootstrapBrokers: cfg.brokers,
      idempotent: true,
      acks: -1,
      autocreateTopics: false,
      partitioner: kafkaPartitioner
    })
    this.#reader = new SentReader(this, {
      bootstrap: cfg.brokers,
      topicPrefix: cfg.topicPrefix,
      connection: cfg.connection,
      clientId: cfg.clientId,
      topic: this.topic,
      logger: this.#log,
      ...(options.maxWaitMs === undefined ? {} : { maxWaitMs: options.maxWaitMs })
    })
  }

  // -- the gateway's side (gate() calls these) --------------------------------------------

  override claimFallback(accountId: string, botId: string, conversationId: string, periodKey: string): boolean {
    if (!super.claimFallback(accountId, botId, conversationId, periodKey)) return false
    const now = Date.now()
    this.#publish('fallback', accountId, botId, conversationId, periodKey, now)
    return true
  }

  override recordReply(accountId: string, botId: string, conversationId: string, atMs: number): void {
    super.recordReply(accountId, botId, conversationId, atMs)
    this.#publish('reply', accountId, botId, conversationId, '', atMs)
  }

  #publish(kind: SentKind, accountId: string, botId: string, conversationId: string, periodKey: string, atMs: number): void {
    if (this.#closed) return
    if (this.#queue.length + this.#inFlight >= this.#maxPending) {
      if (++this.#stats.dropped % 10_000 === 1) {
        this.#log.warn(`gateway ledger: ${this.#stats.dropped} records not published (Kafka away?)`)
      }
      return
    }
    const sent: ConversationSent = {
      kind,
      accountId,
      botId,
      conversationId,
      periodKey,
      atMs,
      expiresAtMs: expiresAt(kind, periodKey, atMs),
      gatewayId: this.gatewayId
    }
    this.#queue.push({ key: sentKey(sent), value: encodeConversationSent(sent) })
    this.#stats.published++
    if (!this.#scheduled) {
      this.#scheduled = true
      setTimeout(() => this.#send(), 1) // a claim is rare and should reach the replicas at once
    }
  }

  #send(): void {
    this.#scheduled = false
    const batch = this.#queue.splice(0)
    if (batch.length === 0) return
    this.#inFlight += batch.length
    const topic = this.topic
    // one request at a time: the client's idempotent sequences need it
    this.#sending = this.#sending.then(async () => {
      for (let attempt = 0; !this.#closed; attempt++) {
        try {
          await this.#producer.send({ messages: batch.map(m => ({ topic, key: m.key, value: m.value })) })
          this.#stats.delivered += batch.length
          break
        } catch (err) {
          if (attempt === 0) this.#log.warn(`gateway ledger: not published (${describe(err)}); producing again`)
          await sleep(Math.min(100 * 2 ** attempt, 2000))
        }
      }
      this.#inFlight -= batch.length
    })
  }

  // -- what the others sent (the reader calls this) ----------------------------------------

  /** Apply one record of what a gateway sent; true if it changed the ledger. */
  apply(sent: ConversationSent, nowMs = Date.now()): boolean {
    if (sent.expiresAtMs <= nowMs) return false
    if (sent.kind === 'fallback') {
      return super.claimFallback(sent.accountId, sent.botId, sent.conversationId, sent.periodKey)
    }
    const last = this.lastReply(sent.accountId, sent.botId, sent.conversationId)
    if (last !== undefined && last >= sent.atMs) return false
    super.recordReply(sent.accountId, sent.botId, sent.conversationId, sent.atMs)
    return true
  }

  // -- lifecycle ------------------------------------------------------------------------------

  /** True once what was sent before this gateway started has been read. */
  get ready(): boolean {
    return this.#reader.ready
  }

  waitReady(timeoutMs = 30_000): Promise<boolean> {
    return this.#reader.waitReady(timeoutMs)
  }

  get stats(): LedgerStats {
    const { applied, ignored, invalid } = this.#reader.stats
    return { ...this.#stats, applied, ignored, invalid }
  }

  /** Stop reading; deliver what is still to publish. Resolves with the records not delivered. */
  async close(timeoutMs = 5_000): Promise<number> {
    await this.#reader.close()
    this.#send()
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<void>(r => (timer = setTimeout(r, timeoutMs)))
    await Promise.race([this.#sending, timeout])
    clearTimeout(timer)
    const left = this.#queue.length + this.#inFlight
    this.#closed = true
    try {
      await this.#producer.close()
    } catch {
      // already gone
    }
    return left
  }
}

/** The control view's reader (every partition from the beginning, ready at the end offsets,
 * reconnects by itself) applying `ConversationSent` records to a ledger. */
class SentReader extends ControlView {
  readonly #ledger: KafkaLedger

  constructor(ledger: KafkaLedger, options: KafkaConfig & { topic: string; logger: Logger; maxWaitMs?: number }) {
    super({ ...options, clientSuffix: 'gateway-sent-reader' })
    this.#ledger = ledger
  }

  protected override applyRecord(_key: Buffer | null, value: Buffer | null, partition: number, offset: bigint): void {
    if (value === null) return
    let sent: ConversationSent
    try {
      sent = decodeConversationSent(value)
    } catch (err) {
      if (!(err instanceof DecodeError)) throw err
      this.counters.invalid++
      this.log.warn(`gateway ledger: skipped record ${this.topic}[${partition}]@${offset}: ${err.message}`)
      return
    }
    if (this.#ledger.apply(sent)) this.counters.applied++
    else this.counters.ignored++
  }
}
