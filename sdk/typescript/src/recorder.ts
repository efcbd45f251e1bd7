/** `UsageRecorder`: record usage without blocking; envelopes per partition, acked by Kafka. */
import { randomBytes } from 'node:crypto'
import { Producer, type ProducerOptions } from '@platformatic/kafka'
import { Writer } from './avro.js'
import { consoleLogger, resolve, sleep, topics, type KafkaConfig, type Logger } from './config.js'
import { describe } from './controlView.js'
import { GatewayError, NotDeliveredError, QueueFullError, RecorderClosedError } from './errors.js'
import { partitionFor } from './murmur2.js'
import type { PriceBook } from './prices.js'
import { encodeBatch, writeEvent, type UsageEvent } from './wire.js'

export type Overflow = 'drop' | 'raise'

export interface UsageRecorderOptions extends KafkaConfig {
  /** How long events gather before envelopes are produced (ms, default 10, as Python). */
  lingerMs?: number
  /** Events accepted but not yet acknowledged, at most (default 200,000). */
  maxQueue?: number
  /** A full queue refuses the new event: return false (`drop`, default) or throw `QueueFullError`. */
  onOverflow?: Overflow
  /** Events per `UsageBatch` record, at most (default 500). */
  maxBatchEvents?: number
  /** Written in each batch's `producer` field (tracing). */
  producerName?: string
  /** The usage topic (default `<prefix>.usage`). */
  topic?: string
  /**
   * Conversations remembered to derive `conversationStarted` when an event leaves it out
   * (default 100,000, oldest forgotten first; 0 turns derivation off: left out is false).
   */
  conversationsTracked?: number
  /**
   * Derives `creditsMicro` from the tokens, model and category of an event that leaves it
   * out (a `KafkaPriceBook` reading the prices topic, or a `PriceBook` of tables you pass);
   * an unpriced model, or no book: 0 credits.
   */
  prices?: PriceBook
  /** `lz4` (default), `none`, `gzip`, `snappy` or `zstd`. */
  compression?: 'none' | 'gzip' | 'snappy' | 'lz4' | 'zstd'
  logger?: Logger
}

export interface RecorderStats {
  /** taken by `record()`: each is delivered or, at `close()`, reported as pending */
  accepted: number
  /** refused because the queue was full (the overflow policy) */
  rejected: number
  /** accepted, waiting to be produced */
  queued: number
  /** produced, not yet acknowledged by every in-sync replica */
  inFlight: number
  /** acknowledged by Kafka (acks=all) */
  delivered: number
  /** `UsageBatch` records produced */
  batches: number
  /** batches produced again after a delivery error */
  retried: number
}

interface Chunk {
  partition: number
  key: Buffer
  value: Buffer
  events: number
  /** accept sequences of its oldest and newest events (flush waits for chunks up to a mark) */
  firstSeq: number
  lastSeq: number
}

/** Conversations a recorder remembers to derive `conversationStarted` (as the Python SDK). */
export const DEFAULT_CONVERSATIONS_TRACKED = 100_000
const METADATA_REFRESH_MS = 60_000
const PARTITION_CACHE = 100_000
const MAX_DRAIN = 50_000
/** One produce request at a time: the client's idempotent sequences need it (two requests in
 * flight for a partition got OUT_OF_ORDER_SEQUENCE_NUMBER on Kafka 4.1). Each request holds
 * every partition's envelopes, so one at a time still moves >100k events/s. */
const MAX_SENDS = 1
/** Errors after which an idempotent producer's sequences are lost: start a new producer. */
const FATAL = new Set(['OUT_OF_ORDER_SEQUENCE_NUMBER', 'UNKNOWN_PRODUCER_ID', 'INVALID_PRODUCER_EPOCH', 'PRODUCER_FENCED'])

function fatal(err: unknown, depth = 0): boolean {
  if (typeof err !== 'object' || err === null || depth > 5) return false
  const e = err as { apiId?: unknown; errors?: unknown[] }
  if (typeof e.apiId === 'string' && FATAL.has(e.apiId)) return true
  return Array.isArray(e.errors) && e.errors.some(inner => fatal(inner, depth + 1))
}

/**
 * The (account, bot, conversation)s a recorder has seen, at most `limit`, oldest first seen
 * forgotten first. Nested maps, so that an event of a known conversation costs three lookups
 * of strings the caller already holds (no key built per event); only a new conversation
 * allocates its entry in the order of first sight.
 */
class Conversations {
  readonly #accounts = new Map<string, Map<string, Map<string, number>>>()
  /** [account, bot, conversation, sequence], oldest first from #head (stale ones skipped) */
  #order: [string, string, string, number][] = []
  #head = 0
  #size = 0
  #seq = 0

  constructor(readonly limit: number) {}

  /** Mark the conversation seen; true if it was not (its event is its first). */
  claim(accountId: string, botId: string, conversationId: string): boolean {
    let bots = this.#accounts.get(accountId)
    let conversations = bots?.get(botId)
    if (conversations?.has(conversationId)) return false
    if (bots === undefined) this.#accounts.set(accountId, (bots = new Map()))
    if (conversations === undefined) bots.set(botId, (conversations = new Map()))
    const seq = ++this.#seq
    conversations.set(conversationId, seq)
    this.#order.push([accountId, botId, conversationId, seq])
    if (++this.#size > this.limit) this.#evictOldest()
    return true
  }

  /** Unmark a conversation this recorder just claimed but did not record. */
  forget(accountId: string, botId: string, conversationId: string): void {
    if (this.#remove(accountId, botId, conversationId, undefined)) this.#size--
  }

  #evictOldest(): void {
    const order = this.#order
    while (this.#head < order.length) {
      const [a, b, c, seq] = order[this.#head++]!
      if (this.#remove(a, b, c, seq)) {
        this.#size--
        break
      }
    }
    if (this.#head > 65_536 && this.#head * 2 > order.length) {
      this.#order = order.slice(this.#head)
      this.#head = 0
    }
  }

  /** Remove the entry (only if it is the one of `seq`, when given); true if removed. */
  #remove(accountId: string, botId: string, conversationId: string, seq: number | undefined): boolean {
    const bots = this.#accounts.get(accountId)
    const conversations = bots?.get(botId)
    const held = conversations?.get(conversationId)
    if (held === undefined || (seq !== undefined && held !== seq)) return false
    conversations!.delete(conversationId)
    if (conversations!.size === 0) {
      bots!.delete(botId)
      if (bots!.size === 0) this.#accounts.delete(accountId)
    }
    return true
  }
}

/**
 * Publish usage events to the usage topic without ever blocking the caller.
 *
 * `record()` validates the event, encodes it to Avro and appends it to a bounded queue, all
 * synchronously, and returns. After `lingerMs` the queued events are grouped by the
 * partition Kafka's default partitioner gives their `accountId` (murmur2) and produced as one
 * `UsageBatch` record per partition (at most `maxBatchEvents` events each), keyed by the
 * first event's account, with an idempotent producer and acks=all.
 *
 * Overflow: when `maxQueue` accepted events are not yet acknowledged (brokers away or slower
 * than the callers), `record()` refuses the *new* event: it returns false and counts it in
 * `stats.rejected` (`onOverflow: "drop"`, the default), or throws `QueueFullError`
 * (`"raise"`). Accepted events are never dropped: a failed request is produced again;
 * `flush()` resolves 0 once Kafka acknowledged every event accepted before it; `close()`
 * rejects with `NotDeliveredError` (`pending`) rather than return while some are not.
 */
export class UsageRecorder {
  readonly topic: string
  readonly maxQueue: number
  readonly onOverflow: Overflow
  readonly maxBatchEvents: number
  readonly producerName: string
  readonly conversationsTracked: number
  /** Derives `creditsMicro` when an event leaves it out. */
  readonly prices: PriceBook | undefined
  /** (account, bot, conversation) of the latest conversations recorded, oldest first. */
  #seen: Conversations | undefined
  #producer: Producer<Buffer, Buffer, Buffer, Buffer>
  #lingerMs: number
  #log: Logger
  #compression: NonNullable<UsageRecorderOptions['compression']>
  // queued events: parallel arrays (account, body, accept sequence)
  #accounts: string[] = []
  #bodies: Buffer[] = []
  #seqs: number[] = []
  #head = 0
  #seq = 0
  #writer = new Writer(1 << 16)
  #retry: Chunk[] = []
  #inFlightChunks = new Set<Chunk[]>()
  #inFlight = 0
  #sends = 0
  #timer: NodeJS.Timeout | undefined
  #partitions = 0
  #partitionOf = new Map<string, number>()
  #checkedAt = -Infinity
  #warnedAt = -Infinity
  #closed = false
  #draining = false
  #destroyed = false
  #waiters: (() => void)[] = []
  #batchPrefix = randomBytes(8).toString('hex')
  #batchSeq = 0
  #stats = { rejected: 0, delivered: 0, batches: 0, retried: 0, drained: 0 }

  constructor(options: UsageRecorderOptions = {}) {
    const lingerMs = options.lingerMs ?? 10
    const maxQueue = options.maxQueue ?? 200_000
    const maxBatchEvents = options.maxBatchEvents ?? 500
    if (!(lingerMs >= 0) || !(maxQueue >= 1) || !(maxBatchEvents >= 1)) {
      throw new GatewayError('lingerMs must be >= 0, maxQueue and maxBatchEvents >= 1')
    }
    const tracked = options.conversationsTracked ?? DEFAULT_CONVERSATIONS_TRACKED
    if (!Number.isInteger(tracked) || tracked < 0) {
      throw new GatewayError('conversationsTracked must be a whole number >= 0 (0: do not derive)')
    }
    this.conversationsTracked = tracked
    this.prices = options.prices
    this.#seen = tracked > 0 ? new Conversations(tracked) : undefined
    const onOverflow = options.onOverflow ?? 'drop'
    if (onOverflow !== 'drop' && onOverflow !== 'raise') {
      throw new GatewayError(`onOverflow must be 'drop' or 'raise', not ${JSON.stringify(onOverflow)}`)
    }
    const cfg = resolve(options)
    this.topic = options.topic ?? topics.usage(cfg.topicPrefix)
    this.maxQueue = maxQueue
    this.onOverflow = onOverflow
    this.maxBatchEvents = maxBatchEvents
    this.producerName = options.producerName ?? ''
    this.#lingerMs = lingerMs
    this.#log = options.logger ?? consoleLogger
    this.#compression = options.compression ?? 'lz4'
    const producerOptions: ProducerOptions<Buffer, Buffer, Buffer, Buffer> = {
      ...cfg.connection,
      clientId: `${cfg.clientId}-usage`,
      bootstrapBrokers: cfg.brokers,
      idempotent: true,
      acks: -1,
      autocreateTopics: false,
      compression: this.#compression
    }
    this.#producerOptions = producerOptions
    this.#producer = new Producer(producerOptions)
  }

  #producerOptions: ProducerOptions<Buffer, Buffer, Buffer, Buffer>

  /** An idempotent producer's fatal error ends it: start anew (a new producer id). */
  #replaceProducer(): void {
    const old = this.#producer
    this.#producer = new Producer({ ...this.#producerOptions })
    this.#checkedAt = -Infinity
    old.close().catch(() => undefined)
  }

  // -- the caller's side -----------------------------------------------------------------

  /**
   * Queue one usage event; true if accepted. Never blocks, never waits on Kafka.
   * Throws `UsageEventError` naming a bad field, `RecorderClosedError` after `close()`.
   *
   * `conversationStarted` (what conversations policies count): true on a conversation's
   * first event; left out, the recorder derives it: true for the first event of an
   * (account, bot, conversation) it has not seen among the last `conversationsTracked`.
   * A refused event (invalid, or the queue full) does not count as seen.
   * `creditsMicro` left out: derived from the tokens with `prices` (0 if unpriced).
   */
  record(event: UsageEvent): boolean {
    if (this.#closed) throw new RecorderClosedError('this UsageRecorder is closed; create a new one to record')
    if ((event.creditsMicro === undefined || event.creditsMicro === null) && this.prices !== undefined) {
      event = { ...event, creditsMicro: this.#derivedCredits(event) }
    }
    let started = event.conversationStarted
    let claimed = false
    const seen = this.#seen
    if (started === undefined || started === null) {
      const { accountId, botId, conversationId } = event
      claimed =
        seen !== undefined &&
        typeof accountId === 'string' &&
        typeof botId === 'string' &&
        typeof conversationId === 'string' &&
        seen.claim(accountId, botId, conversationId)
      started = claimed
    }
    const w = this.#writer
    w.reset()
    try {
      writeEvent(w, event, Date.now(), started)
    } catch (err) {
      if (claimed) seen!.forget(event.accountId, event.botId, event.conversationId) // not recorded: its next event is the first
      throw err
    }
    if (this.pending >= this.maxQueue) {
      if (claimed) seen!.forget(event.accountId, event.botId, event.conversationId)
      return this.#refuse()
    }
    this.#accounts.push(event.accountId)
    this.#bodies.push(w.bytes())
    this.#seqs.push(++this.#seq)
    if (this.#timer === undefined) this.#timer = setTimeout(() => this.#drain(), this.#lingerMs)
    return true
  }

  #derivedCredits(e: UsageEvent): number {
    const tin = e.tokensIn ?? 0
    const tout = e.tokensOut ?? 0
    const whole = (n: unknown): boolean =>
      (typeof n === 'number' && Number.isSafeInteger(n) && n >= 0) || (typeof n === 'bigint' && n >= 0n)
    if (typeof e.accountId !== 'string' || typeof e.model !== 'string' || typeof e.category !== 'string' || !whole(tin) || !whole(tout)) {
      return 0 // writeEvent names the bad field
    }
    return this.prices!.credits(e.accountId, e.model, e.category, tin, tout) ?? 0
  }

  #refuse(): boolean {
    const rejected = ++this.#stats.rejected
    if (rejected === 1 || rejected % 10_000 === 0) {
      this.#log.warn(`usage queue full (${this.pending} events not yet acknowledged): ${rejected} events refused so far`)
    }
    if (this.onOverflow === 'raise') {
      throw new QueueFullError(
        `${this.pending} usage events are waiting for Kafka (maxQueue=${this.maxQueue}); this event was not ` +
          'recorded. Check the brokers, retry later, or raise maxQueue.'
      )
    }
    return false
  }

  /** Accepted events not yet acknowledged by Kafka. */
  get pending(): number {
    let retry = 0
    for (const c of this.#retry) retry += c.events
    return this.#queued + this.#inFlight + retry
  }

  /** @internal The encoded event bodies not yet produced, oldest first (for tests). */
  get queuedBodies(): readonly Buffer[] {
    return this.#bodies.slice(this.#head)
  }

  get #queued(): number {
    return this.#accounts.length - this.#head
  }

  /**
   * Wait until Kafka acknowledged every event accepted so far (or `timeoutMs`); resolves
   * with how many of them are not. 0 means all of them are durably in the usage topic.
   */
  flush(timeoutMs = 30_000): Promise<number> {
    if (this.#closed) return Promise.reject(new RecorderClosedError('this UsageRecorder is closed'))
    return this.#wait(timeoutMs)
  }

  /**
   * Flush, then disconnect. Rejects with `NotDeliveredError` (with `pending`) if Kafka did
   * not acknowledge every accepted event within `timeoutMs`; the recorder keeps trying, so
   * calling `close()` again may succeed.
   */
  async close(timeoutMs = 30_000): Promise<void> {
    this.#closed = true
    const pending = await this.#wait(timeoutMs)
    if (pending > 0) throw new NotDeliveredError(pending, timeoutMs)
    try {
      await this.#producer.close()
    } catch {
      // already gone
    }
  }

  /**
   * Stop at once: drop what is not acknowledged and disconnect; resolves with how many
   * accepted events were dropped. For shutdown paths that cannot wait for Kafka.
   */
  async destroy(): Promise<number> {
    this.#closed = true
    this.#destroyed = true
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timer = undefined
    const dropped = this.pending
    this.#head = this.#accounts.length
    this.#retry = []
    this.#wake()
    try {
      await this.#producer.close()
    } catch {
      // already gone
    }
    return dropped
  }

  async #wait(timeoutMs: number): Promise<number> {
    const mark = this.#seq
    const deadline = performance.now() + timeoutMs
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer)
      this.#timer = undefined
    }
    this.#drain()
    for (;;) {
      const left = this.#pendingUpTo(mark)
      const remaining = deadline - performance.now()
      if (left === 0 || remaining <= 0) return left
      await new Promise<void>(r => {
        const t = setTimeout(r, Math.min(remaining, 50))
        this.#waiters.push(() => {
          clearTimeout(t)
          r()
        })
      })
      this.#drain()
    }
  }

  /** How many events accepted at or before `mark` are not acknowledged yet. */
  #pendingUpTo(mark: number): number {
    let n = 0
    for (let i = this.#head; i < this.#seqs.length && this.#seqs[i]! <= mark; i++) n++
    // a chunk holding any event accepted by the mark counts whole (conservative)
    for (const chunks of this.#inFlightChunks) for (const c of chunks) if (c.firstSeq <= mark) n += c.events
    for (const c of this.#retry) if (c.firstSeq <= mark) n += c.events
    return n
  }

  get stats(): RecorderStats {
    const queued = this.#queued
    let retry = 0
    for (const c of this.#retry) retry += c.events
    return {
      accepted: this.#stats.drained + queued,
      rejected: this.#stats.rejected,
      queued,
      inFlight: this.#inFlight + retry,
      delivered: this.#stats.delivered,
      batches: this.#stats.batches,
      retried: this.#stats.retried
    }
  }

  // -- the background side ---------------------------------------------------------------

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w()
  }

  #drain(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timer = undefined
    if (this.#draining || this.#destroyed) return
    this.#draining = true
    this.#drainAsync()
      .catch(err => this.#log.error(`usage recorder: unexpected error ${describe(err)}`))
      .finally(() => {
        this.#draining = false
        // a request in flight drains again when it ends
        if ((this.#queued > 0 || this.#retry.length > 0) && this.#sends < MAX_SENDS && this.#timer === undefined) {
          this.#timer = setTimeout(() => this.#drain(), this.#lingerMs)
        }
      })
  }

  async #drainAsync(): Promise<void> {
    if (!(await this.#ensurePartitions())) {
      await sleep(1000)
      return
    }
    if (this.#sends >= MAX_SENDS) return // a send finishing drains again
    const chunks: Chunk[] = this.#retry.splice(0)
    for (const c of chunks) {
      this.#stats.retried++
      this.#stats.batches--
    }
    const queued = this.#queued
    if (queued > 0) chunks.push(...this.#group(Math.min(queued, MAX_DRAIN)))
    if (chunks.length === 0) return
    this.#send(chunks)
  }

  #group(n: number): Chunk[] {
    const groups: number[][] = Array.from({ length: this.#partitions }, () => [])
    const accounts = this.#accounts
    const partitionOf = this.#partitionOf
    const start = this.#head
    for (let i = start; i < start + n; i++) {
      const account = accounts[i]!
      let p = partitionOf.get(account)
      if (p === undefined) {
        if (partitionOf.size >= PARTITION_CACHE) partitionOf.clear()
        p = partitionFor(account, this.#partitions)
        partitionOf.set(account, p)
      }
      groups[p]!.push(i)
    }
    const sentAt = Date.now()
    const out: Chunk[] = []
    const size = this.maxBatchEvents
    groups.forEach((indexes, partition) => {
      for (let s = 0; s < indexes.length; s += size) {
        const part = indexes.slice(s, s + size)
        const value = encodeBatch(
          `${this.#batchPrefix}-${++this.#batchSeq}`,
          this.producerName,
          sentAt,
          part.map(i => this.#bodies[i]!)
        )
        out.push({
          partition,
          key: Buffer.from(accounts[part[0]!]!, 'utf8'),
          value,
          events: part.length,
          firstSeq: this.#seqs[part[0]!]!,
          lastSeq: this.#seqs[part[part.length - 1]!]!
        })
      }
    })
    this.#head += n
    this.#stats.drained += n
    if (this.#head === accounts.length) {
      // all drained: let the bodies go
      this.#accounts = []
      this.#bodies = []
      this.#seqs = []
      this.#head = 0
    } else if (this.#head > 65_536 && this.#head * 2 > accounts.length) {
      this.#accounts = accounts.slice(this.#head)
      this.#bodies = this.#bodies.slice(this.#head)
      this.#seqs = this.#seqs.slice(this.#head)
      this.#head = 0
    }
    return out
  }

  #send(chunks: Chunk[]): void {
    let events = 0
    for (const c of chunks) events += c.events
    this.#inFlight += events
    this.#stats.batches += chunks.length
    this.#inFlightChunks.add(chunks)
    this.#sends++
    const topic = this.topic
    this.#producer
      .send({ messages: chunks.map(c => ({ topic, partition: c.partition, key: c.key, value: c.value })) })
      .then(
        () => {
          this.#stats.delivered += events
        },
        err => {
          const now = performance.now()
          if (now - this.#warnedAt > 10_000) {
            this.#warnedAt = now
            this.#log.warn(`usage batches not delivered (${describe(err)}); producing them again`)
          }
          if (fatal(err)) {
            this.#log.warn('usage producer hit a fatal error; starting a new producer')
            this.#replaceProducer()
          }
          if (!this.#destroyed) this.#retry.push(...chunks)
        }
      )
      .finally(() => {
        this.#inFlight -= events
        this.#inFlightChunks.delete(chunks)
        this.#sends--
        this.#wake()
        if ((this.#queued > 0 || this.#retry.length > 0) && this.#timer === undefined) {
          this.#timer = setTimeout(() => this.#drain(), this.#retry.length > 0 ? 200 : 0)
        }
      })
  }

  /** Know the usage topic's partition count (refreshed every minute). */
  async #ensurePartitions(): Promise<boolean> {
    const now = performance.now()
    if (this.#partitions > 0 && now - this.#checkedAt < METADATA_REFRESH_MS) return true
    let problem: string | undefined
    try {
      const meta = await this.#producer.metadata({ topics: [this.topic], forceUpdate: true })
      const t = meta.topics.get(this.topic)
      if (t === undefined || t.partitionsCount === 0) {
        problem = `topic ${this.topic} is missing: run \`capstream topics create\``
      } else {
        if (t.partitionsCount !== this.#partitions) {
          this.#partitions = t.partitionsCount
          this.#partitionOf.clear()
        }
        this.#checkedAt = now
        return true
      }
    } catch (err) {
      problem = `cannot reach Kafka (${describe(err)})`
    }
    if (this.#partitions > 0) this.#checkedAt = now // keep the count we know; look again later
    if (now - this.#warnedAt > 30_000) {
      this.#warnedAt = now
      this.#log.error(`usage recorder: ${problem}; ${this.#queued} events wait`)
    }
    return this.#partitions > 0
  }
}
