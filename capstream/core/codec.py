"""Compact binary writer and reader for usage state (little-endian, length-prefixed)."""

from __future__ import annotations

import struct
import sys
from array import array

from capstream.core.errors import StateFormatError

_Q = struct.Struct("<q")
_I = struct.Struct("<I")
_B = struct.Struct("<B")
_NONE = -(1 << 63)  # int64 min marks "None" in optional ints
_BIG_ENDIAN = sys.byteorder == "big"


class Writer:
    """Appends fields to a bytearray."""

    __slots__ = ("buf",)

    def __init__(self, header: bytes) -> None:
        self.buf = bytearray(header)

    def i64(self, v: int) -> None:
        self.buf += _Q.pack(v)

    def opt_i64(self, v: int | None) -> None:
        self.buf += _Q.pack(_NONE if v is None else v)

    def u32(self, n: int) -> None:
        self.buf += _I.pack(n)

    def u8(self, v: int) -> None:
        self.buf += _B.pack(v)

    def text(self, s: str) -> None:
        b = s.encode()
        self.buf += _I.pack(len(b))
        self.buf += b

    def opt_text(self, s: str | None) -> None:
        if s is None:
            self.buf += b"\x00"
        else:
            self.buf += b"\x01"
            self.text(s)

    def texts(self, values: list[str]) -> None:
        """Many strings in one piece: the count, every UTF-8 length, then the bytes."""
        raw = [s.encode() for s in values]
        self.u32(len(raw))
        lengths = array("I", map(len, raw))
        if _BIG_ENDIAN:  # pragma: no cover
            lengths.byteswap()
        self.buf += lengths.tobytes()
        self.buf += b"".join(raw)

    def raw(self, data: bytes) -> None:
        """Bytes already in this format (a cached piece of a value)."""
        self.buf += data

    def i64s(self, values: array[int]) -> None:
        self.u32(len(values))
        if _BIG_ENDIAN:  # pragma: no cover - the format is little-endian everywhere
            values = array("q", values)
            values.byteswap()
        self.buf += values.tobytes()

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

    def texts(self) -> list[str]:
        """Strings written by :meth:`Writer.texts`."""
        n = self.u32()
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
        n = self.u32()
        values = array("q")
        values.frombytes(self._take(8 * n))
        if _BIG_ENDIAN:  # pragma: no cover
            values.byteswap()
        return values

    def done(self) -> None:
        if self.pos != len(self.data):
            raise StateFormatError("usage state has trailing bytes; it is corrupt")
