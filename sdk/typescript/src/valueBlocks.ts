/** `ValueBlockView`: the attribute values blocked by per-attribute policies, per account. */
import { resolve, topics, type KafkaConfig, type Logger } from './config.js'
import { ControlView } from './controlView.js'
import { DecodeError } from './errors.js'
import { valueBlockMapKey } from './gate.js'
import type { ValueBlock } from './models.js'
import { decodeValueBlock } from './wire.js'

export interface ValueBlockViewOptions extends KafkaConfig {
  /** The value-blocks topic (default `<prefix>.value-blocks`). */
  valueBlocksTopic?: string
  logger?: Logger
  maxWaitMs?: number
}

/** Anything a `Gateway` can read value blocks from: account -> `valueBlockMapKey` -> block. */
export interface ValueBlockSource {
  readonly valueBlocks: ReadonlyMap<string, ReadonlyMap<string, ValueBlock>>
  readonly ready: boolean
  close(): Promise<void>
}

/** Value blocks in the order given, the latest of a key winning (tests, offline tools). */
export function valueBlockMaps(blocks: Iterable<ValueBlock>): Map<string, Map<string, ValueBlock>> {
  const out = new Map<string, Map<string, ValueBlock>>()
  for (const b of blocks) {
    let held = out.get(b.accountId)
    if (held === undefined) out.set(b.accountId, (held = new Map()))
    held.set(valueBlockMapKey(b.botId, b.attribute, b.value), b)
  }
  return out
}

/**
 * The value-blocks topic read as the control view reads the control topic (every partition
 * from the beginning, ready at the end offsets, reconnecting by itself): each account's
 * blocked values, the latest record of a (bot, attribute, value) winning. No tombstones are
 * written: a block whose end has passed is ignored by `valueBlockVerdict` and dropped when
 * its account's next record arrives.
 */
export class ValueBlockView extends ControlView implements ValueBlockSource {
  /** account -> `valueBlockMapKey(bot, attribute, value)` -> block (replaced, never changed). */
  readonly valueBlocks = new Map<string, ReadonlyMap<string, ValueBlock>>()

  constructor(options: ValueBlockViewOptions = {}) {
    const cfg = resolve(options)
    super({
      ...options,
      topic: options.valueBlocksTopic ?? topics.valueBlocks(cfg.topicPrefix),
      clientSuffix: 'value-blocks'
    })
  }

  protected override applyRecord(_key: Buffer | null, value: Buffer | null, partition: number, offset: bigint): void {
    if (value === null) return // not written by capstream (an ended block is ignored instead)
    let block: ValueBlock
    try {
      block = decodeValueBlock(value)
    } catch (err) {
      if (!(err instanceof DecodeError)) throw err
      this.counters.invalid++
      this.log.warn(`value-block view: skipped record ${this.topic}[${partition}]@${offset}: ${err.message}`)
      return
    }
    const now = Date.now()
    // A new map (gateways read the old one meanwhile), without the ended blocks.
    const blocks = new Map<string, ValueBlock>()
    for (const [k, b] of this.valueBlocks.get(block.accountId) ?? []) if (b.blockedUntilMs > now) blocks.set(k, b)
    blocks.set(valueBlockMapKey(block.botId, block.attribute, block.value), block)
    this.valueBlocks.set(block.accountId, blocks)
    this.counters.applied++
  }
}
