/**
 * Price books: the tables `UsageRecorder` derives `creditsMicro` from tokens with, equal to
 * the Python SDK's `capstream.gateway.pricebook` on the shared vectors (`prices.json`).
 *
 * Prices are micro-units of a currency per million input / output tokens; a table's
 * `creditsPerUnitMicro` is what one unit of its currency is worth in micro-credits. The
 * credits of a call: ceil((tokensIn * input + tokensOut * output) * rate / 1e12), at most
 * `MAX_CREDITS_MICRO`. The platform's table (account `*`) is the default; a tenant's own
 * table wins per model and sets its currency and rate; the platform's models apply to a
 * tenant only in the same currency. A model in no table is unpriced: the recorder records
 * the event with 0 credits and counts it (`stats.unpriced`).
 */
import { HEADER_BYTES, MAGIC_0, MAGIC_1, Reader, fromHex } from './avro.js'
import { consoleLogger, resolve, topics, type KafkaConfig, type Logger } from './config.js'
import { ControlView } from './controlView.js'
import { DecodeError } from './errors.js'
import { MAX_CREDITS_MICRO } from './limits.js'

/** The account id of the platform-wide default table. */
export const PLATFORM = '*'
export const PRICE_TABLE_FINGERPRINT = fromHex('77b912c83831df1d')

export interface TokenPrice {
  inputPerMtokMicro: number
  outputPerMtokMicro: number
}

export interface ModelPrice extends TokenPrice {
  /** Other prices of the model for some categories. */
  categories: ReadonlyMap<string, TokenPrice>
}

export interface PriceTable {
  accountId: string
  /** ISO 4217 code, e.g. `USD`. */
  currency: string
  /** Micro-credits one unit of the currency is worth (1,000,000: one credit per unit). */
  creditsPerUnitMicro: number
  models: ReadonlyMap<string, ModelPrice>
  version: number
}

/* eslint-disable @typescript-eslint/no-explicit-any */
/** A table from its JSON form (the `PriceTable` record, snake_case: the Policy API's GET). */
export function priceTableFromJson(rec: any): PriceTable {
  const models = new Map<string, ModelPrice>()
  for (const [name, m] of Object.entries<any>(rec.models ?? {})) {
    const categories = new Map<string, TokenPrice>()
    for (const [c, p] of Object.entries<any>(m.categories ?? {})) {
      categories.set(c, { inputPerMtokMicro: Number(p.input_per_mtok_micro), outputPerMtokMicro: Number(p.output_per_mtok_micro) })
    }
    models.set(name, {
      inputPerMtokMicro: Number(m.input_per_mtok_micro),
      outputPerMtokMicro: Number(m.output_per_mtok_micro),
      categories
    })
  }
  return {
    accountId: String(rec.account_id),
    currency: String(rec.currency),
    creditsPerUnitMicro: Number(rec.credits_per_unit_micro ?? 1_000_000),
    models,
    version: Number(rec.version ?? 0)
  }
}
/* eslint-enable @typescript-eslint/no-explicit-any */

/** Decode a prices topic value (Avro single-object `PriceTable`); throws `DecodeError`. */
export function decodePriceTable(value: Uint8Array): PriceTable {
  if (value.length < HEADER_BYTES || value[0] !== MAGIC_0 || value[1] !== MAGIC_1) {
    throw new DecodeError('not an Avro single-object PriceTable: expected C3 01 and a schema fingerprint', 'not_avro')
  }
  for (let i = 0; i < 8; i++) {
    if (value[2 + i] !== PRICE_TABLE_FINGERPRINT[i]) {
      throw new DecodeError(
        `unknown schema fingerprint ${Buffer.from(value.subarray(2, 10)).toString('hex')} for a PriceTable`,
        'unknown_schema'
      )
    }
  }
  const r = new Reader(value, HEADER_BYTES, 'PriceTable')
  const accountId = r.string()
  const currency = r.string()
  const creditsPerUnitMicro = r.long()
  const models = new Map<string, ModelPrice>()
  r.blocks(() => {
    const name = r.string()
    const inputPerMtokMicro = r.long()
    const outputPerMtokMicro = r.long()
    const categories = new Map<string, TokenPrice>()
    r.blocks(() => {
      const c = r.string()
      categories.set(c, { inputPerMtokMicro: r.long(), outputPerMtokMicro: r.long() })
    })
    models.set(name, { inputPerMtokMicro, outputPerMtokMicro, categories })
  })
  const version = r.long()
  r.long() // updated_at_ms
  r.string() // updated_by
  return { accountId, currency, creditsPerUnitMicro, models, version }
}

/** The table that prices a tenant's calls: its models over the platform's (same currency). */
export function effectiveTable(tenant: PriceTable | undefined, platform: PriceTable | undefined): PriceTable | undefined {
  if (tenant === undefined) return platform
  if (platform === undefined || platform.currency !== tenant.currency || platform.models.size === 0) return tenant
  return { ...tenant, models: new Map([...platform.models, ...tenant.models]) }
}

const SCALE = 1_000_000_000_000n
const MAX_CREDITS = BigInt(MAX_CREDITS_MICRO)

/** The micro-credits of one call (rounded up), or undefined when `model` is unpriced. */
export function creditsFor(
  table: PriceTable,
  model: string,
  category: string,
  tokensIn: number | bigint,
  tokensOut: number | bigint
): number | undefined {
  const m = table.models.get(model)
  if (m === undefined) return undefined
  const p = m.categories.get(category) ?? m
  const cost = BigInt(tokensIn) * BigInt(p.inputPerMtokMicro) + BigInt(tokensOut) * BigInt(p.outputPerMtokMicro)
  const scaled = cost * BigInt(table.creditsPerUnitMicro)
  const credits = (scaled + SCALE - 1n) / SCALE
  return Number(credits > MAX_CREDITS ? MAX_CREDITS : credits)
}

/** Micro-credits of a budget of `amountMicro` micro-units of currency (rounded down). */
export function amountToCredits(amountMicro: number | bigint, creditsPerUnitMicro: number | bigint): bigint {
  return (BigInt(amountMicro) * BigInt(creditsPerUnitMicro)) / 1_000_000n
}

export interface PriceStats {
  /** events whose credits were derived from their tokens */
  priced: number
  /** events without credits whose model no table prices: recorded with 0 credits */
  unpriced: number
}

/** Price tables by account (`*`: the platform's); derives credits from tokens. */
export class PriceBook {
  readonly #tables = new Map<string, PriceTable>()
  #effective = new Map<string, PriceTable | undefined>()
  readonly #warned = new Set<string>()
  #stats: PriceStats = { priced: 0, unpriced: 0 }
  protected log: Logger

  constructor(tables: Iterable<PriceTable> = [], logger: Logger = consoleLogger) {
    this.log = logger
    for (const t of tables) this.put(t)
  }

  /** Hold `table` (replacing that account's previous one). */
  put(table: PriceTable): void {
    this.#tables.set(table.accountId, table)
    this.#effective = new Map()
  }

  /** Forget an account's table (it falls back to the platform's). */
  remove(accountId: string): void {
    this.#tables.delete(accountId)
    this.#effective = new Map()
  }

  /** The table that prices `accountId`'s calls (its own over the platform's). */
  table(accountId: string): PriceTable | undefined {
    if (this.#effective.has(accountId)) return this.#effective.get(accountId)
    const t = effectiveTable(this.#tables.get(accountId), this.#tables.get(PLATFORM))
    this.#effective.set(accountId, t)
    return t
  }

  /** The micro-credits of one call, or undefined when its model is unpriced (counted). */
  credits(accountId: string, model: string, category: string, tokensIn: number | bigint, tokensOut: number | bigint): number | undefined {
    const table = this.table(accountId)
    const credits = table === undefined ? undefined : creditsFor(table, model, category, tokensIn, tokensOut)
    if (credits === undefined) {
      this.#stats.unpriced++
      if (!this.#warned.has(model) && this.#warned.size < 1000) {
        this.#warned.add(model)
        this.log.warn(
          `no price for model ${JSON.stringify(model)} (account ${JSON.stringify(accountId)}): its events are recorded ` +
            "with 0 credits; add it to the account's or the platform's price table"
        )
      }
      return undefined
    }
    this.#stats.priced++
    return credits
  }

  get stats(): PriceStats {
    return { ...this.#stats }
  }
}

export interface KafkaPriceBookOptions extends KafkaConfig {
  /** The prices topic (default `<prefix>.prices`). */
  topic?: string
  logger?: Logger
  maxWaitMs?: number
}

/** A `PriceBook` kept current from the compacted prices topic the Policy API writes (read
 * from the beginning, no group, like the control view): every replica and every restart
 * reads the same tables. `await waitReady()` at start. */
export class KafkaPriceBook extends PriceBook {
  readonly topic: string
  readonly #reader: PriceReader

  constructor(options: KafkaPriceBookOptions = {}) {
    super([], options.logger ?? consoleLogger)
    const cfg = resolve(options)
    this.topic = options.topic ?? topics.prices(cfg.topicPrefix)
    this.#reader = new PriceReader(this, {
      bootstrap: cfg.brokers,
      topicPrefix: cfg.topicPrefix,
      connection: cfg.connection,
      clientId: cfg.clientId,
      topic: this.topic,
      logger: this.log,
      ...(options.maxWaitMs === undefined ? {} : { maxWaitMs: options.maxWaitMs })
    })
  }

  get ready(): boolean {
    return this.#reader.ready
  }

  waitReady(timeoutMs = 30_000): Promise<boolean> {
    return this.#reader.waitReady(timeoutMs)
  }

  close(): Promise<void> {
    return this.#reader.close()
  }
}

/** The control view's reader applying `PriceTable` records to a price book. */
class PriceReader extends ControlView {
  readonly #book: PriceBook

  constructor(book: PriceBook, options: KafkaConfig & { topic: string; logger: Logger; maxWaitMs?: number }) {
    super({ ...options, clientSuffix: 'price-book' })
    this.#book = book
  }

  protected override applyRecord(key: Buffer | null, value: Buffer | null, partition: number, offset: bigint): void {
    if (value === null) {
      if (key !== null) this.#book.remove(key.toString('utf8'))
      return
    }
    let table: PriceTable
    try {
      table = decodePriceTable(value)
    } catch (err) {
      if (!(err instanceof DecodeError)) throw err
      this.counters.invalid++
      this.log.warn(`price book: skipped record ${this.topic}[${partition}]@${offset}: ${err.message}`)
      return
    }
    this.#book.put(table)
    this.counters.applied++
  }
}
