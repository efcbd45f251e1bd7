/** Kafka's default partitioner for keyed records: `toPositive(murmur2(key)) % partitions`. */

const SEED = 0x9747b28c
const M = 0x5bd1e995

/** Kafka's `Utils.murmur2` as a signed 32-bit integer (the Java client's exact result). */
export function murmur2(data: Uint8Array): number {
  const length = data.length
  let h = (SEED ^ length) | 0
  const end = length & ~3
  for (let i = 0; i < end; i += 4) {
    let k = data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24)
    k = Math.imul(k, M)
    k ^= k >>> 24
    k = Math.imul(k, M)
    h = Math.imul(h, M) ^ k
  }
  const rest = length & 3
  if (rest === 3) h ^= data[end + 2]! << 16
  if (rest >= 2) h ^= data[end + 1]! << 8
  if (rest >= 1) {
    h ^= data[end]!
    h = Math.imul(h, M)
  }
  h ^= h >>> 13
  h = Math.imul(h, M)
  h ^= h >>> 15
  return h | 0
}

/** The partition Kafka's default partitioner (librdkafka `murmur2_random`, Java) picks. */
export function partitionFor(key: Uint8Array | string, partitions: number): number {
  if (!Number.isInteger(partitions) || partitions < 1) {
    throw new RangeError(`a topic has at least one partition, not ${partitions}`)
  }
  const bytes = typeof key === 'string' ? Buffer.from(key, 'utf8') : key
  return (murmur2(bytes) & 0x7fffffff) % partitions
}
