"""Per-attribute counters: the state a per-attribute policy keeps for each value it has seen
(an end user, an API key, a team, a model), and their bytes.

An account keeps every counter of its per-attribute policies in one dict
(``AccountUsage.scoped``), keyed by :func:`scoped_key` (policy, attribute, bot or ``*``,
value) and
ordered by last use (a counter used again moves to the end), so the least recently used is
first: it is the one dropped when the account holds ``scoped_capacity`` counters and a new
value arrives, and counters whose window has passed (and block ended) are dropped from the
front when a new one is made (:func:`make_room`). Written after the recent event ids since
``CSUA`` v5.
"""

from __future__ import annotations

from array import array

from capstream.core.errors import StateFormatError
from capstream.core.state_codec import Reader, Writer
from capstream.core.windows import Ring

SEP = "\x1f"


def scoped_key(policy_id: str, attribute: str, bot_id: str, value: str) -> str:
    """The key of one counter: the policy, the attribute it counts by (a policy switched to
    another attribute counts afresh), the bot (``*``: counted over the account) and the
    attribute's value."""
    return f"{policy_id}{SEP}{attribute}{SEP}{bot_id}{SEP}{value}"


def key_parts(key: str) -> tuple[str, str, str, str]:
    """(policy id, attribute, bot id or ``*``, value) of a :func:`scoped_key`."""
    pid, attribute, bot, value = key.split(SEP, 3)
    return pid, attribute, bot, value


class ScopedCount:
    """One value's rolling window of one per-attribute policy, with its alert and block.

    ``last_ms``: the newest event time counted; ``alerted_ms``: when its last alert went
    out (-1: never); ``blocked_until_ms``: when its block ends (0: none)."""

    __slots__ = ("alerted_ms", "blocked_until_ms", "last_ms", "ring")

    def __init__(self, ring: Ring, last_ms: int, alerted_ms: int, blocked_until_ms: int) -> None:
        self.ring = ring
        self.last_ms = last_ms
        self.alerted_ms = alerted_ms
        self.blocked_until_ms = blocked_until_ms

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ScopedCount):
            return NotImplemented
        return (
            self.last_ms == other.last_ms
            and self.alerted_ms == other.alerted_ms
            and self.blocked_until_ms == other.blocked_until_ms
            and self.ring == other.ring
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"ScopedCount(last={self.last_ms}, alerted={self.alerted_ms}, "
            f"blocked_until={self.blocked_until_ms}, {self.ring!r})"
        )

    def idle(self, now: int) -> bool:
        """Nothing of it matters any more at ``now``: its window holds no event of the
        last full window, its block has ended (and so its alert may go out again)."""
        return self.last_ms + self.ring.window_ms <= now and self.blocked_until_ms <= now


def make_room(scoped: dict[str, ScopedCount], capacity: int, now: int) -> int:
    """Before a new counter is added: drop idle counters from the least recently used end,
    then, if ``capacity`` are still held, the least recently used one. Returns how many
    counters still in use (not idle) were dropped: 0 or 1."""
    while scoped:
        first = next(iter(scoped))
        if not scoped[first].idle(now):
            break
        del scoped[first]
    evicted = 0
    while len(scoped) >= capacity > 0:
        first = next(iter(scoped))
        if not scoped[first].idle(now):
            evicted += 1
        del scoped[first]
    return evicted


def write_scoped(w: Writer, capacity: int, scoped: dict[str, ScopedCount]) -> None:
    """The counters, least recently used first: the capacity and the keys, then per counter
    its window, head, last event, alert and block times, then its ring's buckets: -1 and
    every bucket, or (when fewer than half are not zero: most values have few events, and a
    one-hour ring is 61 numbers) how many are not zero and those as (slot, amount) pairs."""
    w.texts([str(capacity), *scoped])
    ints: list[int] = []
    for c in scoped.values():
        ring = c.ring
        buckets = ring.settle()
        pairs: list[int] = []
        for i, amount in enumerate(buckets):
            if amount:
                pairs += (i, amount)
        ints += (ring.window_ms, ring.head, c.last_ms, c.alerted_ms, c.blocked_until_ms)
        if len(pairs) < len(buckets):
            ints.append(len(pairs) // 2)
            ints += pairs
        else:
            ints.append(-1)
            ints += buckets
    w.i64_list(ints)


def read_scoped(r: Reader) -> tuple[int, dict[str, ScopedCount]]:
    """Read :func:`write_scoped`; raises ``StateFormatError`` on corrupt data."""
    texts = r.texts()
    if not texts or not texts[0].isdigit():
        raise StateFormatError("usage state holds a corrupt per-attribute capacity")
    scoped: dict[str, ScopedCount] = {}
    for key in texts[1:]:
        if key.count(SEP) < 3:
            raise StateFormatError("usage state holds a corrupt per-attribute key")
        window_ms, head, last, alerted, blocked, n = r.i64_array(6)
        try:
            size = Ring(window_ms).size
            if n == -1:
                stored = r.i64_array(size)
                n = 0
            else:
                stored = array("q", bytes(8 * size))
            if not 0 <= n <= size:
                raise ValueError("more buckets than the window has")
            pairs = r.i64_array(2 * n)
            for i in range(0, 2 * n, 2):
                stored[pairs[i]] = pairs[i + 1]
            ring = Ring.restore(window_ms, head, stored)
        except (ValueError, IndexError) as exc:
            raise StateFormatError(f"a per-attribute window is corrupt: {exc}") from exc
        scoped[key] = ScopedCount(ring, last, alerted, blocked)
    return int(texts[0]), scoped
