/** capstream's gateway SDK for Node: record usage, gate every AI call from local memory. */
export {
  UsageRecorder,
  DEFAULT_CONVERSATIONS_TRACKED,
  type UsageRecorderOptions,
  type RecorderStats,
  type Overflow
} from './recorder.js'
export {
  ControlView,
  DEFAULT_MAX_DISCONNECTED_S,
  type ControlViewOptions,
  type DisconnectPolicy,
  type StateSource,
  type ViewStats
} from './controlView.js'
export { Gateway, CONTROL_UNAVAILABLE, type GatewayOptions } from './gateway.js'
export { CapHitReporter, type CapHitReporterOptions, type ReporterStats } from './capHits.js'
export {
  gate,
  valueBlockVerdict,
  valueBlockMapKey,
  FallbackLedger,
  REPLY_SPACING_MS,
  DEFAULT_LEDGER_ENTRIES,
  type Attributes
} from './gate.js'
export { ValueBlockView, valueBlockMaps, type ValueBlockSource, type ValueBlockViewOptions } from './valueBlocks.js'
export {
  ACCOUNT_WIDE_BOT,
  CATEGORIES,
  CAP_PERIODS,
  DEFAULT_PREMIUM_MODEL,
  EnforcementState,
  type Action,
  type CapHit,
  type CapPeriod,
  type CapStatus,
  type Category,
  type EnforcementStateFields,
  type ValueBlock,
  type Verdict
} from './models.js'
export { KafkaLedger, expiresAt, type KafkaLedgerOptions, type LedgerStats } from './ledger.js'
export { murmur2, partitionFor } from './murmur2.js'
export {
  KafkaPriceBook,
  PLATFORM,
  PriceBook,
  amountToCredits,
  creditsFor,
  decodePriceTable,
  effectiveTable,
  priceTableFromJson,
  type KafkaPriceBookOptions,
  type ModelPrice,
  type PriceStats,
  type PriceTable,
  type TokenPrice
} from './prices.js'
export {
  DEFAULT_MAX_FUTURE_SKEW_MS,
  MAX_ATTRIBUTES,
  MAX_ATTRIBUTE_KEY,
  MAX_ATTRIBUTE_VALUE,
  MAX_CREDITS_MICRO,
  MAX_ID,
  MAX_MESSAGES,
  MAX_MODEL,
  MAX_OCCURRED_AT_MS,
  MAX_TOKENS,
  MIN_OCCURRED_AT_MS
} from './limits.js'
export {
  FINGERPRINTS,
  controlKey,
  decodeConversationSent,
  decodeState,
  decodeValueBlock,
  encodeBatch,
  encodeConversationSent,
  encodeCapHit,
  encodeEvent,
  encodeState,
  sentKey,
  valueBlockKey,
  type ConversationSent,
  type SentKind,
  type UsageEvent
} from './wire.js'
export { type KafkaConfig, type Logger } from './config.js'
export {
  CapstreamError,
  DecodeError,
  GatewayError,
  NotDeliveredError,
  QueueFullError,
  RecorderClosedError,
  UnknownCategoryError,
  UsageEventError
} from './errors.js'
