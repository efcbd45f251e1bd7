/** `ControlView`: every bot's latest enforcement state in memory, from the control topic. */
import { Consumer } from '@platformatic/kafka'
import { consoleLogger, resolve, topics, type KafkaConfig, type Logger } from './config.js'
import { DecodeError, GatewayError } from './errors.js'
import { ACCOUNT_WIDE_BOT, type EnforcementState } from './models.js'
import { decodeState } from './wire.js'

export type DisconnectPolicy = 'open' | 'closed'
export const DEFAULT_MAX_DISCONNECTED_S = 300
const METADATA_REFRESH_MS = 30_000

export interface ControlViewOptions extends KafkaConfig {
  /** After `maxDisconnectedS` without news: keep answering (`open`, default) or pause (`closed`). */
  onDisconnect?: DisconnectPolicy
  maxDisconnectedS?: number
  /** The control topic (default `<prefix>.control`). */
  topic?: string
  /** Called after each newer state is stored. */
  onUpdate?: (state: EnforcementState) => void
  logger?: Logger
  /** Long-poll wait of each fetch (ms, default 200): bounds how long a stop takes. */
  maxWaitMs?: number
  /** @internal The Kafka client id's suffix (readers of other topics). */
  clientSuffix?: string
}

export interface ViewStats {
  /** bots (and account-wide states) held */
  states: number
  /** records that replaced a state (a newer version) */
  applied: number
  /** records older than (or equal to) the state held */
  ignored: number
  /** records that could not be decoded; skipped and logged */
  invalid: number
  /** tombstones applied */
  deleted: number
}

/** Anything a `Gateway` can read states from. */
export interface StateSource {
  get(accountId: string, botId: string): EnforcementState | undefined
  readonly closed: boolean
  readonly ready: boolean
  readonly stalenessS: number
  close(): Promise<void>
}

interface PartitionCursor {
  partition: number
  leader: number
  next: bigint
  /** the end offset when we started: ready once every partition reached its own */
  target: bigint
  high: bigint
}

/**
 * The latest `EnforcementState` per (account, bot), kept current by a background loop.
 *
 * It reads every partition of the compacted control topic from the beginning with plain
 * fetches (no consumer group, nothing committed), keeps a state only if its `version` is
 * newer than the one held, and is `ready` once it has read up to the end offsets the topic
 * had when it started. While disconnected or behind it keeps answering from what it holds
 * and `stalenessS` grows; after `maxDisconnectedS` (300 s) `onDisconnect` applies: `"open"`
 * keeps answering from the last known states, `"closed"` sets `closed` (gateways answer
 * `paused`, reason `control_unavailable`) until the view is current again, and also before
 * the first catch-up. Same rules as the Python SDK's ControlView.
 */
export class ControlView implements StateSource {
  readonly topic: string
  readonly onDisconnect: DisconnectPolicy
  readonly maxDisconnectedS: number
  /** account -> bot -> state. Only the view writes it. */
  readonly states = new Map<string, Map<string, EnforcementState>>()
  /** True while gateways must refuse AI calls (fail-closed and stale, or not ready). */
  closed: boolean
  #consumer: Consumer
  #cursors = new Map<number, PartitionCursor>()
  #topicId = ''
  #ready = false
  #readyWaiters: (() => void)[] = []
  #current = false
  #currentAt = performance.now()
  #stopped = false
  #loop: Promise<void>
  #timer: NodeJS.Timeout
  #warned = false
  #metaWarnedAt = -Infinity
  /** What the records read did (a subclass applying other records counts here too). */
  protected readonly counters = { applied: 0, ignored: 0, invalid: 0, deleted: 0 }
  readonly #onUpdate: ((state: EnforcementState) => void) | undefined
  protected readonly log: Logger
  readonly #maxWaitMs: number

  constructor(options: ControlViewOptions = {}) {
    const onDisconnect = options.onDisconnect ?? 'open'
    if (onDisconnect !== 'open' && onDisconnect !== 'closed') {
      throw new GatewayError(`onDisconnect must be 'open' or 'closed', not ${JSON.stringify(onDisconnect)}`)
    }
    const max = options.maxDisconnectedS ?? DEFAULT_MAX_DISCONNECTED_S
    if (!(max > 0)) throw new GatewayError('maxDisconnectedS must be positive')
    const cfg = resolve(options)
    this.topic = options.topic ?? topics.control(cfg.topicPrefix)
    this.onDisconnect = onDisconnect
    this.maxDisconnectedS = max
    this.closed = onDisconnect === 'closed'
    this.#onUpdate = options.onUpdate
    this.log = options.logger ?? consoleLogger
    this.#maxWaitMs = options.maxWaitMs ?? 200
    this.#consumer = new Consumer({
      ...cfg.connection,
      clientId: `${cfg.clientId}-${options.clientSuffix ?? 'control-view'}`,
      // Required by the client's type; the view never joins a group nor commits.
      groupId: `capstream-control-view-unused`,
      bootstrapBrokers: cfg.brokers,
      retries: 0,
      metadataMaxAge: 30_000
    })
    this.#timer = setInterval(() => this.#refreshClosed(), 250)
    this.#timer.unref()
    this.#loop = this.#run()
  }

  // -- reading ------------------------------------------------------------------------------

  /** The bot's state, else its account-wide state, else undefined (nothing known yet). */
  get(accountId: string, botId: string): EnforcementState | undefined {
    const bots = this.states.get(accountId)
    if (bots === undefined) return undefined
    return bots.get(botId) ?? bots.get(ACCOUNT_WIDE_BOT)
  }

  /** True once every state that existed at start has been read. */
  get ready(): boolean {
    return this.#ready
  }

  /** Resolves with `ready` once ready, or after `timeoutMs`. */
  waitReady(timeoutMs = 30_000): Promise<boolean> {
    if (this.#ready) return Promise.resolve(true)
    return new Promise(resolvePromise => {
      const t = setTimeout(() => resolvePromise(this.#ready), timeoutMs)
      this.#readyWaiters.push(() => {
        clearTimeout(t)
        resolvePromise(true)
      })
    })
  }

  /** 0 while connected and caught up; else seconds since the view was last current. */
  get stalenessS(): number {
    if (this.#current) return 0
    return (performance.now() - this.#currentAt) / 1000
  }

  get stats(): ViewStats {
    let states = 0
    for (const bots of this.states.values()) states += bots.size
    return { states, ...this.counters }
  }

  /** Stop reading and disconnect. */
  async close(): Promise<void> {
    this.#stopped = true
    clearInterval(this.#timer)
    this.#wakeUp?.()
    await this.#loop
    try {
      await this.#consumer.close()
    } catch {
      // already gone
    }
  }

  // -- the background loop ----------------------------------------------------------------

  async #run(): Promise<void> {
    let delay = 100
    while (!this.#stopped) {
      try {
        // new partitions and moved leaders: metadata again every 30 s (as the Python view)
        if (performance.now() - this.#metadataAt > METADATA_REFRESH_MS) this.#needMetadata = true
        if (this.#cursors.size === 0 || this.#needMetadata) await this.#assignPartitions()
        if (this.#cursors.size === 0) {
          await this.#sleep(500)
          continue
        }
        await this.#fetchOnce()
        delay = 100
      } catch (err) {
        this.#current = false
        this.#needMetadata = true
        if (!this.#stopped) {
          const now = performance.now()
          if (now - this.#metaWarnedAt > 30_000) {
            this.#metaWarnedAt = now
            this.log.warn(`reading ${this.topic}: ${describe(err)}; retrying`)
          }
          await this.#sleep(delay)
          delay = Math.min(delay * 2, 2000)
        }
      }
      this.#refreshClosed()
    }
  }

  #needMetadata = false
  #metadataAt = -Infinity
  #wakeUp: (() => void) | undefined

  /** A pause `close()` cuts short (the timer alone does not keep the process alive). */
  #sleep(ms: number): Promise<void> {
    return new Promise(done => {
      const t = setTimeout(done, ms)
      t.unref()
      this.#wakeUp = () => {
        clearTimeout(t)
        done()
      }
    })
  }

  async #assignPartitions(): Promise<void> {
    const meta = await this.#consumer.metadata({ topics: [this.topic], forceUpdate: true })
    const topic = meta.topics.get(this.topic)
    if (topic === undefined || topic.partitionsCount === 0) {
      throw new GatewayError(`the topic ${this.topic} is missing: run \`capstream topics create\``)
    }
    this.#topicId = topic.id
    const fresh: number[] = []
    topic.partitions.forEach((p, i) => {
      const cursor = this.#cursors.get(i)
      if (cursor === undefined) fresh.push(i)
      else cursor.leader = p.leader
    })
    if (fresh.length > 0) {
      const ends = await this.#consumer.listOffsets({ topics: [this.topic] })
      const high = ends.get(this.topic) ?? []
      for (const i of fresh) {
        const end = high[i] ?? 0n
        this.#cursors.set(i, { partition: i, leader: topic.partitions[i]!.leader, next: 0n, target: end, high: end })
      }
    }
    this.#needMetadata = false
    this.#metadataAt = performance.now()
    this.#checkReady()
  }

  async #fetchOnce(): Promise<void> {
    const byLeader = new Map<number, PartitionCursor[]>()
    for (const c of this.#cursors.values()) {
      const list = byLeader.get(c.leader)
      if (list === undefined) byLeader.set(c.leader, [c])
      else list.push(c)
    }
    // Caught up everywhere: a long poll; else take what is there now.
    const caughtUp = [...this.#cursors.values()].every(c => c.next >= c.high)
    await Promise.all(
      [...byLeader].map(async ([node, cursors]) => {
        const response = await this.#consumer.fetch({
          node,
          maxWaitTime: caughtUp ? this.#maxWaitMs : 0,
          minBytes: 1,
          maxBytes: 16 << 20,
          topics: [
            {
              topicId: this.#topicId,
              partitions: cursors.map(c => ({
                partition: c.partition,
                currentLeaderEpoch: -1,
                fetchOffset: c.next,
                lastFetchedEpoch: -1,
                partitionMaxBytes: 4 << 20
              }))
            }
          ]
        })
        for (const t of response.responses) {
          for (const p of t.partitions) {
            const cursor = this.#cursors.get(p.partitionIndex)
            if (cursor === undefined) continue
            if (p.errorCode !== 0) {
              if (p.errorCode === 1 && p.logStartOffset > cursor.next) cursor.next = p.logStartOffset // out of range
              else this.#needMetadata = true
              continue
            }
            cursor.high = p.highWatermark
            for (const batch of p.records ?? []) {
              for (const record of batch.records) {
                const offset = batch.firstOffset + BigInt(record.offsetDelta)
                if (offset < cursor.next) continue
                this.applyRecord(record.key, record.value, p.partitionIndex, offset)
              }
              const after = batch.firstOffset + BigInt(batch.lastOffsetDelta) + 1n
              if (after > cursor.next) cursor.next = after
            }
          }
        }
      })
    )
    let current = true
    for (const c of this.#cursors.values()) {
      if (c.next >= c.target) c.target = -1n // reached: no longer counts against ready
      if (c.next < c.high) current = false
    }
    this.#checkReady()
    if (this.#ready) this.#markCurrent(current && !this.#needMetadata)
  }

  /** Apply one record read (a subclass reading another topic applies its own records). */
  protected applyRecord(key: Buffer | null, value: Buffer | null, partition: number, offset: bigint): void {
    if (value === null) {
      this.#tombstone(key)
      return
    }
    let state: EnforcementState
    try {
      state = decodeState(value)
    } catch (err) {
      if (!(err instanceof DecodeError)) throw err
      this.counters.invalid++
      this.log.warn(`control view: skipped record ${this.topic}[${partition}]@${offset}: ${err.message}`)
      return
    }
    let bots = this.states.get(state.accountId)
    if (bots === undefined) {
      bots = new Map()
      this.states.set(state.accountId, bots)
    }
    const held = bots.get(state.botId)
    if (held !== undefined && held.version >= state.version) {
      this.counters.ignored++
      return
    }
    bots.set(state.botId, state)
    this.counters.applied++
    if (this.#onUpdate !== undefined) {
      try {
        this.#onUpdate(state)
      } catch (err) {
        this.log.error(`control view: onUpdate threw ${describe(err)}`)
      }
    }
  }

  #tombstone(key: Buffer | null): void {
    const text = key === null ? '' : key.toString('utf8')
    // Ids may contain "/": find the split that names a state we hold.
    for (let i = text.indexOf('/'); i >= 0; i = text.indexOf('/', i + 1)) {
      const bots = this.states.get(text.slice(0, i))
      if (bots?.delete(text.slice(i + 1))) {
        if (bots.size === 0) this.states.delete(text.slice(0, i))
        this.counters.deleted++
        return
      }
    }
  }

  #checkReady(): void {
    if (this.#ready) return
    for (const c of this.#cursors.values()) if (c.target >= 0n && c.next < c.target) return
    if (this.#cursors.size === 0) return
    this.#ready = true
    this.#markCurrent(true)
    this.#refreshClosed()
    for (const w of this.#readyWaiters.splice(0)) w()
  }

  #markCurrent(current: boolean): void {
    if (current) this.#currentAt = performance.now()
    this.#current = current
  }

  #refreshClosed(): void {
    const stale = this.stalenessS > this.maxDisconnectedS
    if (this.onDisconnect === 'closed') this.closed = stale || !this.#ready
    if (stale && !this.#warned) {
      this.#warned = true
      this.log.warn(
        `control view: no news from ${this.topic} for ${this.stalenessS.toFixed(0)}s; failing ${this.onDisconnect}`
      )
    } else if (!stale && this.#warned) {
      this.#warned = false
      this.log.warn('control view: current again')
    }
  }
}

export function describe(err: unknown): string {
  if (err instanceof Error) {
    const cause = (err as Error & { errors?: unknown[] }).errors?.[0]
    return cause instanceof Error ? `${err.message} (${cause.message})` : err.message
  }
  return String(err)
}
