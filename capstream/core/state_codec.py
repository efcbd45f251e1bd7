"""Compact binary writer and reader for usage state (little-endian, length-prefixed).

Fixed fields go through one ``struct`` each (:meth:`Writer.pack`), lists of strings and ints
through one piece each (:meth:`Writer.texts`, :meth:`Writer.i64_list`): a value costs a few calls,
not one per field.
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Collection

from capstream.core.errors import StateFormatError

_Q = struct.Struct("<q")
_I = struct.Struct("<I")
_B = struct.Struct("<B")
_TEXTS = struct.Struct("<IBI")  # count, layout, length of the joined bytes
_NONE = -(1 << 63)  # int64 min marks "None" in optional ints
_BIG_ENDIAN = sys.byteorder == "big"
_SEP = "\x00"
_JOINED, _LENGTHS = 0, 1  # texts(): NUL-separated (no text holds a NUL) / lengths, then bytes


_LIMITS = {
    "q": (_NONE + 1, (1 << 63) - 1),
    "Q": (0, (1 << 64) - 1),
    "i": (-(1 << 31), (1 << 31) - 1),
    "I": (0, (1 << 32) - 1),
    "b": (-128, 127),
    "B": (0, 255),
    "?": (0, 1),
}


def saturated(fmt: str, values: Collection[int]) -> list[int]:
    """``values`` clamped to the ranges of the ``struct`` format ``fmt`` (one letter for all,
    or one per value): the state codec is never handed a value it cannot write. Totals are
    bounded per event at the edge (``core.limits``), so only ~9 million maximal events of one
    account in one period get here; the total then stays at the largest value (int64 min is
    kept for "None")."""
    codes: list[str] = []
    count = ""
    for c in fmt:
        if c.isdigit():
            count += c
        elif c.isalpha() or c == "?":
            codes += [c] * int(count or "1")
            count = ""
    if len(codes) == 1:
        codes = codes * len(values)
    out = []
    for code, v in zip(codes, values, strict=True):
        if v == _NONE and code == "q":
            out.append(v)
            continue
        lo, hi = _LIMITS.get(code, (_NONE + 1, (1 << 63) - 1))
        out.append(lo if v < lo else hi if v > hi else v)
    return out


def opt(v: int | None) -> int:
    """An optional int as stored (``None`` as int64 min), for :meth:`Writer.pack`."""
    return _NONE if v is None else v


def unopt(v: int) -> int | None:
    """The inverse of :func:`opt`."""
    return None if v == _NONE else v


class Writer:
    """Appends fields to a bytearray."""

    __slots__ = ("buf",)

    def __init__(self, header: bytes) -> None:
        self.buf = bytearray(header)

    def pack(self, fields: struct.Struct, *values: int) -> None:
        """Fixed fields in one piece (read back with :meth:`Reader.unpack`)."""
        try:
            self.buf += fields.pack(*values)
        except struct.error:  # a total past its field's range: saturate (see saturated)
            self.buf += fields.pack(*saturated(fields.format, values))

    def texts(self, values: Collection[str]) -> None:
        """Many strings in one piece: the count, then (when no string holds a NUL, the common
        case) the strings joined by NULs, else every UTF-8 length followed by the bytes."""
        n = len(values)
        joined = _SEP.join(values)
        if joined.count(_SEP) == n - 1 or n == 0:
            blob = joined.encode()
            self.buf += _TEXTS.pack(n, _JOINED, len(blob))
            self.buf += blob
            return
        raw = [s.encode() for s in values]
        self.buf += _TEXTS.pack(n, _LENGTHS, 0)
        lengths = array("I", map(len, raw))
        if _BIG_ENDIAN:  # pragma: no cover
            lengths.byteswap()
        self.buf += lengths.tobytes()
        self.buf += b"".join(raw)

    def raw(self, data: bytes) -> None:
        """Bytes already in this format (a cached piece of a value)."""
        self.buf += data

    def i64_list(self, values: list[int]) -> None:
        """int64 values without a count (read back with :meth:`Reader.i64_array`)."""
        try:
            self.buf += struct.pack(f"<{len(values)}q", *values)
        except struct.error:  # a total past int64: saturate (see saturated)
            self.buf += struct.pack(f"<{len(values)}q", *saturated("q", values))

    def bytes(self) -> bytes:
        return bytes(self.buf)


class Reader:
    """Reads fields written by :class:`Writer`; raises :class:`StateFormatError` on bad data."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, header: bytes) -> None:
        if not data.startswith(header):
            raise StateFormatError(
                f"not a capstream usage state of this kind and version (expected {header!r} "
                f"header, got {bytes(data[: len(header)])!r}); was it written by a newer release?"
            )
        self.data = memoryview(data)
        self.pos = len(header)

    def _take(self, n: int) -> memoryview:
        end = self.pos + n
        if end > len(self.data):
            raise StateFormatError("usage state is truncated")
        view = self.data[self.pos : end]
        self.pos = end
        return view

    def i64(self) -> int:
        return int(_Q.unpack(self._take(8))[0])

    def opt_i64(self) -> int | None:
        v = self.i64()
        return None if v == _NONE else v

    def u32(self) -> int:
        return int(_I.unpack(self._take(4))[0])

    def u8(self) -> int:
        return int(_B.unpack(self._take(1))[0])

    def text(self) -> str:
        n = self.u32()
        try:
            return str(self._take(n), "utf-8")
        except UnicodeDecodeError as exc:
            raise StateFormatError("usage state holds invalid text") from exc

    def opt_text(self) -> str | None:
        return self.text() if self.u8() else None

    def unpack(self, fields: struct.Struct) -> tuple[int, ...]:
        """Fixed fields written by :meth:`Writer.pack`."""
        return tuple(fields.unpack(self._take(fields.size)))

    def texts(self) -> list[str]:
        """Strings written by :meth:`Writer.texts`."""
        n, layout, size = _TEXTS.unpack(self._take(_TEXTS.size))
        if layout == _JOINED:
            try:
                joined = str(self._take(size), "utf-8")
            except UnicodeDecodeError as exc:
                raise StateFormatError("usage state holds invalid text") from exc
            values = joined.split(_SEP) if n else []
            if len(values) != n:
                raise StateFormatError("usage state holds a corrupt list of texts")
            return values
        if layout != _LENGTHS:
            raise StateFormatError("usage state holds a list of texts of an unknown layout")
        return self._texts_by_length(n)

    def _texts_by_length(self, n: int) -> list[str]:
        lengths = array("I")
        lengths.frombytes(self._take(4 * n))
        if _BIG_ENDIAN:  # pragma: no cover
            lengths.byteswap()
        blob = bytes(self._take(sum(lengths)))
        out: list[str] = []
        pos = 0
        try:
            for ln in lengths:
                out.append(blob[pos : pos + ln].decode())
                pos += ln
        except UnicodeDecodeError as exc:
            raise StateFormatError("usage state holds invalid text") from exc
        return out

    def i64s(self) -> array[int]:
        return self.i64_array(self.u32())

    def i64_array(self, n: int) -> array[int]:
        """``n`` int64 values written by :meth:`Writer.i64_list`."""
        values = array("q")
        values.frombytes(self._take(8 * n))
        if _BIG_ENDIAN:  # pragma: no cover
            values.byteswap()
        return values

    def done(self) -> None:
        if self.pos != len(self.data):
            raise StateFormatError("usage state has trailing bytes; it is corrupt")
