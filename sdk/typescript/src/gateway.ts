/** `Gateway`: ask before each AI call; the decision comes from the local control view. */
import { CapHitReporter } from './capHits.js'
import { ControlView, type ControlViewOptions, type StateSource } from './controlView.js'
import { UnknownCategoryError } from './errors.js'
import { DEFAULT_LEDGER_ENTRIES, FallbackLedger, gate, valueBlockVerdict, type Attributes } from './gate.js'
import { KafkaLedger } from './ledger.js'
import {
  ACCOUNT_WIDE_BOT,
  DEFAULT_PREMIUM_MODEL,
  FAST_BATCHING_S,
  isCategory,
  verdict,
  type CapHit,
  type EnforcementState,
  type ValueBlock,
  type Verdict
} from './models.js'
import { ValueBlockView, valueBlockMaps, type ValueBlockSource } from './valueBlocks.js'

/** The verdict of a fail-closed gateway whose control view is stale (or not ready yet). */
export const CONTROL_UNAVAILABLE: Verdict = Object.freeze(
  verdict('paused', null, 0, null, 'control_unavailable', null)
)

export interface GatewayOptions extends ControlViewOptions {
  /** Model for a bot the control topic never mentioned (default claude-sonnet-4-6). */
  defaultModel?: string
  /** Fallback ledger size (default 100,000 keys per map). */
  ledgerEntries?: number
  /** Read states from here instead of a new ControlView. */
  view?: StateSource
  /**
   * Read value blocks from here instead of a new ValueBlockView (the value-blocks topic);
   * given `view` and not this, the gateway holds no value blocks.
   */
  valueBlocks?: ValueBlockSource
  /** The value-blocks topic (default `<prefix>.value-blocks`). */
  valueBlocksTopic?: string
  /** Report capped attempts here instead of a new CapHitReporter. */
  reporter?: Pick<CapHitReporter, 'report' | 'close'>
  /**
   * Share the fallback-once ledger and reply spacing with the other gateways (Python or
   * TypeScript) through the gateway-sent topic (default true); false keeps it in the process.
   */
  shareLedger?: boolean
  /** Use this ledger instead (tests, tools). */
  ledger?: FallbackLedger
  /** Written in what this gateway publishes to the gateway-sent topic (tracing). */
  gatewayId?: string
}

/** A fixed set of states (tests, benchmarks, offline tools). */
class FixedStates implements StateSource {
  readonly closed = false
  readonly ready = true
  readonly stalenessS = 0
  /** account -> bot -> state, as a ControlView holds them. */
  readonly states = new Map<string, Map<string, EnforcementState>>()
  constructor(states: Iterable<EnforcementState>) {
    for (const s of states) {
      let bots = this.states.get(s.accountId)
      if (bots === undefined) this.states.set(s.accountId, (bots = new Map()))
      bots.set(s.botId, s)
    }
  }
  get(accountId: string, botId: string): EnforcementState | undefined {
    const bots = this.states.get(accountId)
    return bots === undefined ? undefined : (bots.get(botId) ?? bots.get(ACCOUNT_WIDE_BOT))
  }
  async close(): Promise<void> {}
}

/**
 * Answer `gate()` from memory, report capped attempts, follow the control topic.
 *
 * `gate(account, bot, conversation, category)` returns the core's verdict: `allow` (`model`,
 * `batchingIntervalS` of 3 or 60, maybe `replyAtMs`), `fallback` (send `text`: once per
 * conversation per cap period), `skip` (capped media, or text after its fallback) or `paused`
 * (a policy block; or `control_unavailable` when failing closed). A bot the control topic
 * has not mentioned gets its account-wide state, else `allow` with `defaultModel` and
 * 3-second batching. Every capped attempt goes to the caphits topic without waiting.
 *
 * `attributes` (name -> value: `end_user`, `api_key`, `team`, and `model` for a policy
 * counted per model) are checked first against the account's value blocks (per-attribute
 * policies): a blocked value is `paused` (reason `policy_block:<policy_id>`, `resumesAtMs` the
 * block's end), for its bot or, for an `account_total` policy, every bot. An account without
 * value blocks costs one map lookup.
 */
export class Gateway {
  readonly view: StateSource
  readonly ledger: FallbackLedger
  readonly unknownVerdict: Verdict
  readonly #report: (hit: CapHit) => unknown
  readonly #reporter: Pick<CapHitReporter, 'report' | 'close'> | undefined
  readonly #states: Map<string, Map<string, EnforcementState>> | undefined
  readonly valueBlocks: ValueBlockSource | undefined
  readonly #valueBlocks: ReadonlyMap<string, ReadonlyMap<string, ValueBlock>>

  constructor(options: GatewayOptions = {}) {
    this.view = options.view ?? new ControlView(options)
    this.valueBlocks = options.valueBlocks ?? (options.view === undefined ? new ValueBlockView(options) : undefined)
    this.#valueBlocks = this.valueBlocks?.valueBlocks ?? new Map()
    this.#reporter = options.reporter ?? new CapHitReporter(options)
    const reporter = this.#reporter
    this.#report = hit => reporter.report(hit)
    const entries = options.ledgerEntries ?? DEFAULT_LEDGER_ENTRIES
    this.ledger =
      options.ledger ??
      ((options.shareLedger ?? true)
        ? new KafkaLedger(entries, {
            ...options,
            topic: undefined, // the control topic's name is not the ledger's
            ...(options.gatewayId === undefined ? {} : { gatewayId: options.gatewayId })
          })
        : new FallbackLedger(entries))
    this.unknownVerdict = Object.freeze(
      verdict('allow', options.defaultModel ?? DEFAULT_PREMIUM_MODEL, FAST_BATCHING_S, null, 'no_state_yet', null)
    )
    this.#states = this.view instanceof ControlView || this.view instanceof FixedStates ? this.view.states : undefined
  }

  /** A gateway over fixed states, without Kafka: cap hits go to `onCapHit`. */
  static fromStates(
    states: Iterable<EnforcementState>,
    options: {
      defaultModel?: string
      ledgerEntries?: number
      onCapHit?: (hit: CapHit) => void
      /** Value blocks in order (the latest record of a key wins). */
      valueBlocks?: Iterable<ValueBlock>
    } = {}
  ): Gateway {
    const onCapHit = options.onCapHit ?? (() => undefined)
    const valueBlocks = valueBlockMaps(options.valueBlocks ?? [])
    return new Gateway({
      ...options,
      shareLedger: false,
      view: new FixedStates(states),
      valueBlocks: { valueBlocks, ready: true, close: async () => undefined },
      reporter: { report: (hit: CapHit) => (onCapHit(hit), true), close: async () => 0 }
    })
  }

  /**
   * Decide one AI call of `category`; `now` is epoch milliseconds (default: now);
   * `attributes`: the call's end user, API key, team, model (see the class doc).
   */
  gate(
    accountId: string,
    botId: string,
    conversationId: string,
    category: string,
    now?: number,
    attributes?: Attributes
  ): Verdict {
    const view = this.view
    if (view.closed) return CONTROL_UNAVAILABLE
    if (attributes !== undefined) {
      const blocks = this.#valueBlocks.get(accountId)
      if (blocks !== undefined && blocks.size > 0) {
        if (!isCategory(category)) throw new UnknownCategoryError(category)
        const blocked = valueBlockVerdict(blocks, botId, attributes, now ?? Date.now())
        if (blocked !== null) return blocked
      }
    }
    let state: EnforcementState | undefined
    const states = this.#states
    if (states !== undefined) {
      const bots = states.get(accountId)
      state = bots === undefined ? undefined : (bots.get(botId) ?? bots.get(ACCOUNT_WIDE_BOT))
    } else {
      state = view.get(accountId, botId)
    }
    if (state === undefined) {
      if (!isCategory(category)) throw new UnknownCategoryError(category)
      return this.unknownVerdict
    }
    // The core's own first step, inlined: the state's precomputed verdicts, and the clock
    // read only when they expire.
    const until = state.fastUntilMs
    if (until === Infinity || (now ?? Date.now()) < until) {
      const v = state.fast.get(category)
      if (v !== undefined) return v
    }
    const v = gate(state, category, conversationId, now ?? Date.now(), this.ledger, botId)
    if (v.capHit !== null) this.#report(v.capHit)
    return v
  }

  get ready(): boolean {
    const ledger = this.ledger
    return (
      this.view.ready && (this.valueBlocks?.ready ?? true) && (!(ledger instanceof KafkaLedger) || ledger.ready)
    )
  }

  /**
   * Resolves once the control view has read every state and the shared ledger what the
   * gateways sent before (or with false after `timeoutMs`).
   */
  async waitReady(timeoutMs = 30_000): Promise<boolean> {
    const view = this.view
    const deadline = performance.now() + timeoutMs
    const ready = view instanceof ControlView ? await view.waitReady(timeoutMs) : view.ready
    if (!ready) return false
    const blocks = this.valueBlocks
    if (blocks instanceof ValueBlockView && !(await blocks.waitReady(Math.max(0, deadline - performance.now())))) {
      return false
    }
    const ledger = this.ledger
    if (!(ledger instanceof KafkaLedger)) return true
    return ledger.waitReady(Math.max(0, deadline - performance.now()))
  }

  get stalenessS(): number {
    return this.view.stalenessS
  }

  /** Stop following the control topic, deliver the pending cap hits and what it sent. */
  async close(): Promise<void> {
    await this.view.close()
    await this.valueBlocks?.close()
    await this.#reporter?.close()
    if (this.ledger instanceof KafkaLedger) await this.ledger.close()
  }
}
