/** Errors the capstream gateway SDK throws; each message says what the caller should change. */
import { pyRepr } from './limits.js'

/** Base of every error this SDK throws on purpose. */
export class CapstreamError extends Error {
  constructor(message: string) {
    super(message)
    this.name = new.target.name
  }
}

/** Base of the gateway's errors (recorder, control view, gate). */
export class GatewayError extends CapstreamError {}

/** A usage event was refused by `record()`; `field` names the culprit (as in the Python SDK). */
export class UsageEventError extends GatewayError {
  readonly field: string
  constructor(field: string, message: string) {
    super(`invalid usage event: ${field}: ${message}`)
    this.field = field
  }
}

/** The recorder's queue is full (`onOverflow: "raise"`); the event was not taken. */
export class QueueFullError extends GatewayError {}

/** `record()` or `flush()` after `close()`. */
export class RecorderClosedError extends GatewayError {}

/** `close()` gave up before Kafka confirmed every accepted event; `pending` says how many. */
export class NotDeliveredError extends GatewayError {
  readonly pending: number
  constructor(pending: number, timeoutMs: number) {
    super(
      `${pending} accepted usage events were not confirmed by Kafka within ${timeoutMs / 1000}s: ` +
        'check that the brokers are reachable, then call close() again with a longer timeout'
    )
    this.pending = pending
  }
}

/**
 * `gate()` was asked about a category that is not text, vision, audio or documents. One
 * type and one message (the Python SDK's, word for word) whether or not the gateway holds a
 * state for the bot; `category` is what was asked.
 */
export class UnknownCategoryError extends GatewayError {
  readonly category: unknown
  constructor(category: unknown) {
    const shown = typeof category === 'string' ? pyRepr(category) : String(category)
    super(`unknown category ${shown}: use one of text, vision, audio, documents`)
    this.category = category
  }
}

/** Bytes from a topic could not be decoded; `reason` is the Python SDK's label. */
export class DecodeError extends CapstreamError {
  readonly reason: string
  constructor(message: string, reason = 'undecodable') {
    super(message)
    this.reason = reason
  }
}
