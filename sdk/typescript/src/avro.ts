/**
 * Avro binary encoding, the parts capstream's records use: zigzag varint longs, UTF-8 strings,
 * enums, ["null", T] unions, arrays and maps. Hand-written so that `record()` writes straight
 * into a reused buffer; the shared test vectors prove every byte equals the Python codecs'.
 */
import { DecodeError } from './errors.js'

/** Single-object encoding: `C3 01`, then the writer schema's CRC-64-AVRO fingerprint. */
export const MAGIC_0 = 0xc3
export const MAGIC_1 = 0x01
export const HEADER_BYTES = 10

export const MAX_LONG = (1n << 63n) - 1n
export const MAX_INT = 2 ** 31 - 1

/** A growable output buffer; `bytes()` copies out what was written. */
export class Writer {
  buf: Buffer
  pos = 0

  constructor(size = 1024) {
    this.buf = Buffer.allocUnsafe(size)
  }

  reset(): void {
    this.pos = 0
  }

  ensure(extra: number): void {
    const need = this.pos + extra
    if (need > this.buf.length) {
      const next = Buffer.allocUnsafe(Math.max(need, this.buf.length * 2))
      this.buf.copy(next, 0, 0, this.pos)
      this.buf = next
    }
  }

  byte(b: number): void {
    this.ensure(1)
    this.buf[this.pos++] = b
  }

  raw(bytes: Uint8Array): void {
    this.ensure(bytes.length)
    this.buf.set(bytes, this.pos)
    this.pos += bytes.length
  }

  /** An Avro long or int of a safe integer (|n| <= 2**53 - 1). */
  long(n: number): void {
    this.ensure(10)
    const buf = this.buf
    let pos = this.pos
    if (n >= 0 && n < 0x40000000) {
      let z = n * 2
      while (z >= 0x80) {
        buf[pos++] = (z & 0x7f) | 0x80
        z >>>= 7
      }
      buf[pos++] = z
    } else {
      let z = n >= 0 ? n * 2 : -n * 2 - 1 // exact below 2**53
      while (z >= 0x80) {
        buf[pos++] = (z % 0x80) | 0x80
        z = Math.floor(z / 0x80)
      }
      buf[pos++] = z
    }
    this.pos = pos
  }

  /** An Avro long of any 64-bit integer. */
  bigLong(n: bigint): void {
    this.ensure(10)
    let z = n >= 0n ? n << 1n : (-n << 1n) - 1n
    while (z >= 0x80n) {
      this.buf[this.pos++] = Number(z & 0x7fn) | 0x80
      z >>= 7n
    }
    this.buf[this.pos++] = Number(z)
  }

  /** An Avro string: the UTF-8 length as a long, then the bytes. */
  string(s: string): void {
    // Optimistic: most strings are shorter than 64 bytes, whose length prefix is one byte.
    this.ensure(s.length * 3 + 10)
    const start = this.pos
    const n = this.buf.write(s, start + 1, 'utf8')
    if (n < 64) {
      this.buf[start] = n * 2
      this.pos = start + 1 + n
      return
    }
    const prefix = Writer.longBytes(n)
    this.buf.copyWithin(start + prefix.length, start + 1, start + 1 + n)
    this.buf.set(prefix, start)
    this.pos = start + prefix.length + n
  }

  bytes(): Buffer {
    const out = Buffer.allocUnsafe(this.pos)
    this.buf.copy(out, 0, 0, this.pos)
    return out
  }

  static longBytes(n: number): Buffer {
    const w = new Writer(10)
    w.long(n)
    return w.bytes()
  }

  static stringBytes(s: string): Buffer {
    const w = new Writer(s.length * 3 + 10)
    w.string(s)
    return w.bytes()
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true })

/** Reads an Avro body; any truncation or bad value throws `DecodeError` (reason `corrupt`). */
export class Reader {
  pos: number
  constructor(
    readonly buf: Uint8Array,
    pos = 0,
    readonly what = 'record'
  ) {
    this.pos = pos
  }

  corrupt(detail: string): DecodeError {
    return new DecodeError(`corrupt ${this.what} body (${detail})`, 'corrupt')
  }

  long(): number {
    let z = 0
    let mul = 1
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.buf.length) throw this.corrupt('truncated')
      const b = this.buf[this.pos++]!
      z += (b & 0x7f) * mul
      if ((b & 0x80) === 0) {
        // zigzag back (exact while z < 2**53, i.e. |n| < 2**52: every time and count we read)
        return z % 2 === 0 ? z / 2 : -(z + 1) / 2
      }
      mul *= 0x80
    }
    throw this.corrupt('a varint longer than 10 bytes')
  }

  string(): string {
    const n = this.long()
    if (n < 0 || this.pos + n > this.buf.length) throw this.corrupt('truncated string')
    const start = this.pos
    this.pos += n
    try {
      return utf8.decode(this.buf.subarray(start, start + n))
    } catch {
      throw this.corrupt('invalid UTF-8')
    }
  }

  /** The branch of a ["null", T] union: false for null, true for the value. */
  present(): boolean {
    const branch = this.long()
    if (branch === 0) return false
    if (branch === 1) return true
    throw this.corrupt(`union branch ${branch}`)
  }

  enumSymbol(symbols: readonly string[]): string {
    const i = this.long()
    const s = symbols[i]
    if (s === undefined) throw this.corrupt(`enum index ${i}`)
    return s
  }

  /** Calls `entry` for each item of an Avro array or map; returns how many there were. */
  blocks(entry: () => void): number {
    let total = 0
    for (;;) {
      let count = this.long()
      if (count === 0) return total
      if (count < 0) {
        count = -count
        this.long() // the block's size in bytes
      }
      for (let i = 0; i < count; i++) entry()
      total += count
    }
  }
}

/** `hex` -> bytes (for the fingerprints and tests). */
export function fromHex(hex: string): Buffer {
  return Buffer.from(hex, 'hex')
}
