"""Avro's binary primitives by hand: what the hand-written codecs of the wire records share.

The hot path (a worker's decoding, the SDK's encoding, the control states) writes and reads
a few record types often enough that fastavro's generic machinery costs more than the work;
those codecs are built from these functions and are tested byte for byte against
``codec(name)``. Readers raise ``IndexError`` when a value overruns the record and
``OverflowError`` for a number of more than 64 bits; the caller turns both into a
``DecodeError``.
"""

from __future__ import annotations

from typing import Final

INT64 = 1 << 64
"""A zigzag varint of 64 bits or fewer is below this before it is unzigzagged."""


_SMALL: Final = [bytes((i,)) for i in range(128)]
"""The one-byte varints (lengths, versions, small numbers): shared objects, no allocation."""


def _varint(n: int) -> bytes:
    if n < 128:
        if n < 0:
            raise ValueError(f"a varint cannot hold {n} (zigzag first)")
        return _SMALL[n]
    # The bytes gathered little-endian in one int, then one to_bytes: compiled, the loop is
    # native integer arithmetic (a bytearray appended to byte by byte was ~3x slower).
    acc = 0
    shift = 0
    while n > 127:
        acc |= ((n & 0x7F) | 0x80) << shift
        shift += 8
        n >>= 7
    acc |= n << shift
    return acc.to_bytes((shift >> 3) + 1, "little")


def long_bytes(n: int) -> bytes:
    """Avro ``long``/``int``: zigzag, then a base-128 varint."""
    return _varint((n << 1) ^ (n >> 63))


def string_bytes(s: str) -> bytes:
    """Avro ``string``: the UTF-8 length as a long, then the bytes."""
    raw = s.encode()
    return long_bytes(len(raw)) + raw


NULL: Final = b"\x00"
"""A ``["null", T]`` union's null branch; also the end of a map or an array."""
SOME: Final = b"\x02"
"""A ``["null", T]`` union's second branch, before the value."""


def optional_long(n: int | None) -> bytes:
    """Avro ``["null", "long"]``."""
    return NULL if n is None else SOME + long_bytes(n)


def optional_string(s: str | None) -> bytes:
    """Avro ``["null", "string"]``."""
    return NULL if s is None else SOME + string_bytes(s)


def string_array(items: tuple[str, ...]) -> bytes:
    """Avro ``{"type": "array", "items": "string"}``: one block, then the end."""
    if not items:
        return NULL
    return b"".join([long_bytes(len(items)), *[string_bytes(i) for i in items], NULL])


def read_long(data: bytes, pos: int) -> tuple[int, int]:
    """Avro zigzag varint at ``pos``: (value, next position); unbounded (see ``INT64``)."""
    b = data[pos]
    pos += 1
    r = b & 0x7F
    shift = 7
    while b & 0x80:
        b = data[pos]
        pos += 1
        r |= (b & 0x7F) << shift
        shift += 7
    if r >= INT64:
        raise OverflowError
    return (r >> 1) ^ -(r & 1), pos


def read_string(data: bytes, pos: int) -> tuple[str, int]:
    """Avro string at ``pos``: (text, next position); IndexError if it overruns the record."""
    ln, pos = read_long(data, pos)
    end = pos + ln
    if ln < 0 or end > len(data):
        raise IndexError
    return data[pos:end].decode(), end


def skip_string(data: bytes, pos: int) -> int:
    """The position after the Avro string at ``pos`` (IndexError if it overruns)."""
    ln, pos = read_long(data, pos)
    end = pos + ln
    if ln < 0 or end > len(data):
        raise IndexError
    return end


def skip_long(data: bytes, pos: int) -> int:
    """The position after the Avro long at ``pos``."""
    while data[pos] & 0x80:
        pos += 1
    return pos + 1
