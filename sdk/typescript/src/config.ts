/** Where Kafka is and what the topics are called, as the Python SDK's `Settings`. */
import type { ConnectionOptions } from '@platformatic/kafka'

export interface KafkaConfig {
  /** `host:port[,host:port]` or a list. Default: `CAPSTREAM_KAFKA_BOOTSTRAP`, else 127.0.0.1:9092. */
  bootstrap?: string | string[]
  /** Topic name prefix (`<prefix>.usage`, `.control`, `.caphits`). Default: `CAPSTREAM_TOPIC_PREFIX`, else `capstream`. */
  topicPrefix?: string
  /** Passed to every Kafka client (tls, sasl, timeouts). */
  connection?: ConnectionOptions
  /** Prefix of the Kafka client ids. */
  clientId?: string
}

export interface Resolved {
  brokers: string[]
  topicPrefix: string
  connection: ConnectionOptions
  clientId: string
}

export function resolve(config: KafkaConfig = {}): Resolved {
  const raw = config.bootstrap ?? process.env['CAPSTREAM_KAFKA_BOOTSTRAP'] ?? '127.0.0.1:9092'
  const brokers = (Array.isArray(raw) ? raw : raw.split(',')).map(s => s.trim()).filter(Boolean)
  for (const b of brokers) {
    const i = b.lastIndexOf(':')
    if (i <= 0 || !/^\d+$/.test(b.slice(i + 1))) {
      throw new RangeError(`expected host:port[,host:port] for the Kafka bootstrap, got ${JSON.stringify(raw)}`)
    }
  }
  if (brokers.length === 0) throw new RangeError('no Kafka bootstrap server given')
  const topicPrefix = config.topicPrefix ?? process.env['CAPSTREAM_TOPIC_PREFIX'] ?? 'capstream'
  if (!/^[A-Za-z0-9._-]+$/.test(topicPrefix)) {
    throw new RangeError(`topicPrefix may hold letters, digits, '.', '_' and '-', not ${JSON.stringify(topicPrefix)}`)
  }
  return { brokers, topicPrefix, connection: config.connection ?? {}, clientId: config.clientId ?? 'capstream-ts' }
}

export const topics = {
  usage: (prefix: string): string => `${prefix}.usage`,
  control: (prefix: string): string => `${prefix}.control`,
  caphits: (prefix: string): string => `${prefix}.caphits`,
  gatewaySent: (prefix: string): string => `${prefix}.gateway-sent`,
  valueBlocks: (prefix: string): string => `${prefix}.value-blocks`,
  prices: (prefix: string): string => `${prefix}.prices`
}

export function sleep(ms: number): Promise<void> {
  return new Promise(resolve => setTimeout(resolve, ms).unref())
}

/** Our logger: warnings and errors to `console` unless the caller gives its own. */
export interface Logger {
  warn(message: string): void
  error(message: string): void
  info?(message: string): void
}
export const consoleLogger: Logger = {
  warn: m => console.warn(`capstream: ${m}`),
  error: m => console.error(`capstream: ${m}`)
}
