/** `CapHitReporter`: tell the processors about capped AI attempts, never blocking a reply. */
import { Producer, type ProducerOptions } from '@platformatic/kafka'
import { consoleLogger, resolve, sleep, topics, type KafkaConfig, type Logger } from './config.js'
import type { CapHit } from './models.js'
import { murmur2 } from './murmur2.js'
import { encodeCapHit } from './wire.js'
import { describe } from './controlView.js'

export interface CapHitReporterOptions extends KafkaConfig {
  /** The caphits topic (default `<prefix>.caphits`). */
  topic?: string
  /** How many hits may wait for Kafka; beyond, `report()` drops and counts (default 100,000). */
  maxPending?: number
  /** How long hits gather before one produce request (ms, default 5). */
  lingerMs?: number
  logger?: Logger
}

export interface ReporterStats {
  reported: number
  delivered: number
  /** refused because `maxPending` hits were waiting (brokers away for long) */
  dropped: number
  retried: number
}

/** Kafka's default partitioner; the client reduces it modulo the partition count. */
function kafkaPartitioner(_message: unknown, key: Buffer | undefined): number {
  return key === undefined ? 0 : murmur2(key) & 0x7fffffff
}

/**
 * Produce each `CapHit` to the caphits topic (keyed by account, Avro `CapHit`, idempotent,
 * acks=all). `report()` queues the record and returns at once; records gathered over
 * `lingerMs` go in one request; failed requests are produced again.
 */
export class CapHitReporter {
  readonly topic: string
  #producer: Producer<Buffer, Buffer, Buffer, Buffer>
  #queue: { key: Buffer; value: Buffer }[] = []
  #inFlight = 0
  #scheduled = false
  #closed = false
  #sending: Promise<void> = Promise.resolve()
  #stats: ReporterStats = { reported: 0, delivered: 0, dropped: 0, retried: 0 }
  readonly #maxPending: number
  readonly #lingerMs: number
  readonly #log: Logger

  constructor(options: CapHitReporterOptions = {}) {
    const cfg = resolve(options)
    this.topic = options.topic ?? topics.caphits(cfg.topicPrefix)
    this.#maxPending = options.maxPending ?? 100_000
    this.#lingerMs = options.lingerMs ?? 5
    this.#log = options.logger ?? consoleLogger
    const producerOptions: ProducerOptions<Buffer, Buffer, Buffer, Buffer> = {
      ...cfg.connection,
      clientId: `${cfg.clientId}-caphits`,
      bootstrapBrokers: cfg.brokers,
      idempotent: true,
      acks: -1,
      autocreateTopics: false,
      partitioner: kafkaPartitioner
    }
    this.#producer = new Producer(producerOptions)
  }

  /** Queue one cap hit; false (and counted) if it was dropped. */
  report(hit: CapHit): boolean {
    if (this.#queue.length + this.#inFlight >= this.#maxPending) {
      this.#stats.dropped++
      if (this.#stats.dropped === 1 || this.#stats.dropped % 10_000 === 0) {
        this.#log.warn(`caphits queue full: ${this.#stats.dropped} cap hits dropped so far`)
      }
      return false
    }
    this.#queue.push({ key: Buffer.from(hit.accountId, 'utf8'), value: encodeCapHit(hit) })
    this.#stats.reported++
    if (!this.#scheduled) {
      this.#scheduled = true
      setTimeout(() => this.#send(), this.#lingerMs)
    }
    return true
  }

  #send(): void {
    this.#scheduled = false
    const batch = this.#queue.splice(0)
    if (batch.length === 0) return
    this.#inFlight += batch.length
    const topic = this.topic
    this.#sending = this.#sending.then(async () => {
      for (let attempt = 0; !this.#closed; attempt++) {
        try {
          await this.#producer.send({ messages: batch.map(m => ({ topic, key: m.key, value: m.value })) })
          this.#stats.delivered += batch.length
          break
        } catch (err) {
          this.#stats.retried += batch.length
          if (attempt === 0) this.#log.warn(`cap hits not delivered (${describe(err)}); producing them again`)
          await sleep(Math.min(100 * 2 ** attempt, 2000))
        }
      }
      this.#inFlight -= batch.length
    })
  }

  /** Wait for the hits reported so far; resolves with how many are still unconfirmed. */
  async flush(timeoutMs = 10_000): Promise<number> {
    this.#send()
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<void>(r => (timer = setTimeout(r, timeoutMs)))
    await Promise.race([this.#sending, timeout])
    clearTimeout(timer)
    return this.#queue.length + this.#inFlight
  }

  /** Flush and disconnect; resolves with how many cap hits were not confirmed. */
  async close(timeoutMs = 10_000): Promise<number> {
    const left = await this.flush(timeoutMs)
    this.#closed = true // stop producing again what did not make it
    try {
      await this.#producer.close()
    } catch {
      // already gone
    }
    return left
  }

  get stats(): ReporterStats {
    return { ...this.#stats }
  }
}
