"""Rolling-window totals in O(1) amortised work per event: bucket rings sized to the window.

A window of ``W`` ms is cut into ``n`` buckets of width ``g = W / n`` ms, with ``n`` the
smallest divisor of ``W`` from 60 upwards (at most 100, since ``W`` is whole seconds:
60 buckets when ``W`` is a multiple of 3 s; one-minute buckets for an hour). The ring keeps
``n + 1`` buckets: the ``n`` whole buckets before the current one and the current one.

Error bound: at instant ``now`` the ring's total counts every amount added at a time in
``(now - W, now]`` plus what was added in ``[now - W - g, now - W]`` that shares a bucket
with the window's oldest edge. So ``exact <= total <= exact + usage(now - W - g, now - W]``:
never under, over by at most one bucket (``W/60``) of the oldest edge. Guardrails may fire
up to ``g`` early; they never miss usage inside the window.
"""

from __future__ import annotations

from array import array
from typing import Final

MIN_BUCKETS: Final = 60
_FEW: Final = 4
"""An advance by at most this many buckets zeroes them one by one (else by slices)."""


def bucket_width_ms(window_ms: int) -> int:
    """Bucket width for a window: ``window_ms / n`` with ``n`` the smallest divisor >= 60."""
    n = MIN_BUCKETS
    while window_ms % n:
        n += 1
    return window_ms // n


class Ring:
    """Bucketed running total over a rolling window of ``window_ms`` milliseconds.

    The newest bucket's amount is not stored as it grows: it is ``total - base`` (``base``:
    the other buckets' sum), so adding at the newest bucket, the common case, only moves
    ``total``. :meth:`settle` writes it into ``buckets`` when the list is read.
    """

    __slots__ = ("base", "buckets", "head", "size", "slot", "total", "width", "window_ms")

    def __init__(self, window_ms: int) -> None:
        if window_ms < MIN_BUCKETS:
            raise ValueError("a rolling window must be at least 60 ms")
        self.window_ms = window_ms
        self.width = bucket_width_ms(window_ms)
        self.size = window_ms // self.width + 1
        self.buckets = [0] * self.size
        self.head = -1  # index (time // width) of the newest bucket; -1: nothing yet
        self.slot = self.size - 1  # head % size: where the newest bucket lives
        self.total = 0
        self.base = 0  # total less the newest bucket

    def _advance(self, b: int) -> None:
        # Move the head to bucket b, zeroing the buckets that fall out of the window.
        size = self.size
        step = b - self.head
        if step >= size:
            self.buckets = [0] * size
            self.total = 0
        elif step <= _FEW:
            # A bucket or a few on (nearly every advance): zero them one by one, no slices.
            buckets = self.buckets
            slot = self.slot
            buckets[slot] = self.total - self.base
            total = self.total
            for _ in range(step):
                slot += 1
                if slot == size:
                    slot = 0
                total -= buckets[slot]
                buckets[slot] = 0
            self.total = total
        else:
            # Zero the slots after the old head up to the new one, in at most two slices.
            buckets = self.buckets
            slot = self.slot
            buckets[slot] = self.total - self.base
            start, end = slot + 1, slot + 1 + b - self.head
            if end <= size:
                self.total -= sum(buckets[start:end])
                buckets[start:end] = [0] * (end - start)
            else:
                end -= size
                self.total -= sum(buckets[start:]) + sum(buckets[:end])
                buckets[start:] = [0] * (size - start)
                buckets[:end] = [0] * end
        self.base = self.total  # the new newest bucket is empty
        self.head = b
        self.slot = b % size

    def add(self, at_ms: int, amount: int) -> int:
        """Add ``amount`` at instant ``at_ms``; returns the window total as of ``at_ms``.

        An amount at or after the newest bucket moves the ring forward and returns its total.
        A late amount (an older bucket still in the ring) returns the total of the window
        ending at its own bucket, as far as the ring still holds it: its bucket and the older
        ones down to the ring's oldest (buckets of that window older than the ring's oldest
        are no longer known, so a late event is judged on a lower bound, never on usage
        after its time). Amounts older than the ring's span are ignored (they cannot be in
        the window) and return -1: nothing was added, so there is nothing to decide.
        """
        b = at_ms // self.width
        if b != self.head:
            if b > self.head:
                self._advance(b)
            elif b > self.head - self.size:
                self.buckets[b % self.size] += amount
                self.base += amount
                self.total += amount
                return self.total - self._after(b)
            else:
                return -1
        self.total += amount
        return self.total

    def _after(self, b: int) -> int:
        """The sum of the buckets newer than ``b`` (``b`` older than the newest bucket)."""
        buckets = self.buckets
        size = self.size
        s = self.total - self.base  # the newest bucket
        start = (b + 1) % size
        end = self.slot  # exclusive: the newest bucket is counted above
        if start <= end:
            s += sum(buckets[start:end])
        else:
            s += sum(buckets[start:]) + sum(buckets[:end])
        return s

    def seed_from(self, src: Ring, now_ms: int) -> bool:
        """Fill this empty ring, at ``now_ms``, with what ``src`` (a ring of the same series)
        holds of its span; True if ``src`` spans all of it. ``src`` is not changed.

        Each of ``src``'s buckets goes into this ring's bucket holding its last instant (the
        newest at most): nothing moves earlier, so usage inside the window is never missed;
        when ``src``'s buckets are wider, up to one of them (``src.width``) from before the
        window's start may be counted, until it slides out (at most ``window + src.width``
        after seeding). With a width that divides this ring's, the copy is exact. The part
        of the span older than ``src``'s oldest bucket stays uncounted (False)."""
        if src.head < 0:
            return False
        head = now_ms // self.width
        if head < self.head:
            head = self.head
        self.head = head
        self.slot = head % self.size
        oldest = head - self.size + 1
        values = src.settle()
        buckets = self.buckets
        total = 0
        sw, w = src.width, self.width
        for k in range(src.head - src.size + 1, src.head + 1):
            v = values[k % src.size]
            if v:
                j = ((k + 1) * sw - 1) // w
                if j > head:
                    j = head
                if j >= oldest:
                    buckets[j % self.size] += v
                    total += v
        self.total = total
        self.base = total - buckets[self.slot]
        return (src.head - src.size + 1) * sw <= oldest * w

    def total_at(self, now_ms: int) -> int:
        """The window total at ``now_ms`` (slides the ring forward; never moves it back)."""
        b = now_ms // self.width
        if b > self.head:
            self._advance(b)
        return self.total

    def settle(self) -> list[int]:
        """Write the newest bucket's amount into ``buckets``; returns ``buckets``."""
        buckets = self.buckets
        buckets[self.slot] = self.total - self.base
        return buckets

    def to_array(self) -> array[int]:
        """Bucket values as stored (slot ``head % size`` holds the newest), to serialise."""
        return array("q", self.settle())

    @classmethod
    def restore(cls, window_ms: int, head: int, stored: array[int]) -> Ring:
        """Rebuild a ring from :meth:`to_array` output and its ``head``."""
        ring = cls(window_ms)
        if len(stored) != ring.size:
            raise ValueError("bucket count does not match the window")
        ring.head = head
        ring.slot = head % ring.size
        ring.buckets = stored.tolist()
        ring.total = sum(ring.buckets)
        ring.base = ring.total - ring.buckets[ring.slot]
        return ring

    @classmethod
    def restore_oldest_first(cls, window_ms: int, head: int, oldest_first: array[int]) -> Ring:
        """Rebuild a ring from buckets listed oldest first (the v1 state format)."""
        size = len(oldest_first)
        start = head + 1
        stored = array("q", bytes(8 * size))
        for i, v in enumerate(oldest_first):
            stored[(start + i) % size] = v
        return cls.restore(window_ms, head, stored)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Ring):
            return NotImplemented
        return (
            self.window_ms == other.window_ms
            and self.head == other.head
            and self.settle() == other.settle()
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Ring(window_ms={self.window_ms}, head={self.head}, total={self.total})"
