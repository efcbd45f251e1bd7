"""The seeded workload: accounts x bots with Zipf-skewed activity, their catalog and events.

Everything derives from ``WorkloadSpec`` (seed included), so two runs with the same spec
produce the same tenants, policies and event stream, byte for byte. Event times advance at
``sim_rate`` events per simulated second from ``start_ms`` (monotonic), so rolling windows
roll and thresholds are crossed many times in a stream of a few hundred thousand events.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from capstream.core import UsageEvent
from capstream.errors import CapstreamError
from capstream.streams.partitioner import partition_for
from capstream.streams.records import PolicyRecord, TenantSettingsRecord

START_MS = 1_767_225_600_000  # 2026-01-01 00:00 UTC: in the past, so live events come later
ZONES = ("UTC", "America/New_York", "Europe/Berlin", "Asia/Kolkata", "Australia/Sydney")
PLANS = ("pro", "enterprise", "starter", "free")
CATEGORIES = ("text", "vision", "audio", "documents")
CATEGORY_CUM = (0.7, 0.8, 0.9, 1.0)
CREDIT_SCALE = {"text": 1, "vision": 4, "audio": 3, "documents": 2}
MEAN_TOKENS = 650 + 250  # tokens_in 200..1100, tokens_out 100..400
MEAN_TEXT_CREDITS = 5_500  # micro-credits per text event (1,000..10,000)
PROBE_ACCOUNT = "probe"
PROBE_THRESHOLD = 10
"""Messages per 60 s that block a probe bot (latency and overshoot probes)."""


class WorkloadError(CapstreamError):
    """The workload cannot be generated as specified."""


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    """What to generate; the seed fixes everything else."""

    seed: int = 7
    events: int = 400_000
    accounts: int = 1_000
    bots: int = 10
    zipf_accounts: float = 1.1
    zipf_bots: float = 1.0
    sim_rate: int = 30
    """Events per simulated second (event time), i.e. the stream spans events / sim_rate s."""
    start_ms: int = START_MS
    partitions: int = 4
    window_ms: int = 3_600_000
    """The peers' hopping window (and capstream's rolling window of the same policy)."""
    step_ms: int = 1_800_000
    cross_rank: int = 8
    """The busiest bot of the account at this Zipf rank sits right at the tokens threshold."""

    def __post_init__(self) -> None:
        if self.events < 1 or self.accounts < 1 or self.bots < 1 or self.sim_rate < 1:
            raise WorkloadError("events, accounts, bots and sim_rate must be at least 1")
        if self.window_ms % self.step_ms or self.window_ms < 60_000:
            raise WorkloadError("window_ms must be a multiple of step_ms and at least a minute")
        if not 0 <= self.cross_rank < self.accounts:
            raise WorkloadError(f"cross_rank must be below accounts ({self.accounts})")


def _zipf(n: int, s: float) -> list[float]:
    weights = [1 / (i + 1) ** s for i in range(n)]
    total = sum(weights)
    return [w / total for w in weights]


class Workload:
    """The tenants, policies and usage events of one :class:`WorkloadSpec`."""

    def __init__(self, spec: WorkloadSpec) -> None:
        self.spec = spec
        self.account_ids = [f"acct-{i:04d}" for i in range(spec.accounts)]
        self.bot_ids = [f"bot-{j}" for j in range(spec.bots)]
        self.account_share = _zipf(spec.accounts, spec.zipf_accounts)
        self.bot_share = _zipf(spec.bots, spec.zipf_bots)
        self._account_cum = list(itertools.accumulate(self.account_share))
        self._bot_cum = list(itertools.accumulate(self.bot_share))
        self.partition_of = {
            a: partition_for(a.encode(), spec.partitions) for a in self.account_ids
        }
        self.threshold_tokens = max(1, round(self.per_hour(spec.cross_rank, 0) * MEAN_TOKENS))
        """The peers' threshold: tokens of one bot in one window (capstream's tok-h policy)."""

    def per_hour(self, rank: int, bot: int | None = None) -> float:
        """Expected events per simulated hour of an account (or of one of its bots)."""
        events = self.spec.sim_rate * 3600 * self.account_share[rank]
        return events if bot is None else events * self.bot_share[bot]

    # -- catalog ------------------------------------------------------------------------

    def tenants(self) -> list[TenantSettingsRecord]:
        """Tenant settings of every account: caps in every category that busy accounts hit."""
        rnd = random.Random(self.spec.seed * 1_000_003 + 1)
        out: list[TenantSettingsRecord] = []
        for rank, account in enumerate(self.account_ids):
            plan = PLANS[rnd.randrange(len(PLANS))]
            hourly_text = self.per_hour(min(rank + 12, self.spec.accounts - 1)) * 0.7
            text_day = round(hourly_text * 3 * MEAN_TEXT_CREDITS)  # a busy account's 3 hours
            vision_day = round(hourly_text / 7 * 2 * MEAN_TEXT_CREDITS * CREDIT_SCALE["vision"])
            caps = {
                "text": {"daily_micro": text_day, "monthly_micro": text_day * 20},
                "vision": {"daily_micro": vision_day},
                "audio": {"monthly_micro": vision_day * 10},
                "documents": {"daily_micro": vision_day, "monthly_micro": vision_day * 15},
            }
            out.append(
                TenantSettingsRecord(
                    account_id=account,
                    timezone=ZONES[rank % len(ZONES)],
                    plan=plan,
                    caps=caps,
                    auto_downgrade=plan in ("pro", "enterprise"),
                    throttle=("smart", "smart", "off", "strict")[rnd.randrange(4)],
                )
            )
        return out

    def policies(self) -> list[PolicyRecord]:
        """Five policies per account: every scope and metric, alerts and blocks."""
        hour = self.per_hour
        last = self.spec.accounts - 1
        owner: dict[str, Any] = {"recipients": []}
        out: list[PolicyRecord] = []
        for account in self.account_ids:
            specs: list[dict[str, Any]] = [
                {
                    "policy_id": "tok-h",
                    "metric": "tokens",
                    "threshold": self.threshold_tokens,
                    "window_seconds": self.spec.window_ms // 1000,
                    "scope": "account_each_bot",
                    "alert": owner,
                    "block": {"duration_seconds": 900},
                },
                {
                    "policy_id": "msg-10m",
                    "metric": "messages",
                    "scope": "bot",
                    "bot_id": self.bot_ids[0],
                    "threshold": max(1, round(hour(min(4, last), 0) / 6)),
                    "window_seconds": 600,
                    "alert": owner,
                },
                {
                    "policy_id": "conv-d",
                    "metric": "conversations",
                    "scope": "account_total",
                    "threshold": max(1, round(hour(min(30, last)) * 24 * 0.05)),
                    "window_seconds": 86_400,
                    "alert": owner,
                },
                {
                    "policy_id": "cr-w",
                    "metric": "credits",
                    "category": "text",
                    "scope": "account_each_bot",
                    "window_seconds": 7 * 86_400,
                    "threshold": max(1, round(hour(min(3, last), 0) * 4 * MEAN_TEXT_CREDITS)),
                    "alert": owner,
                },
                {
                    "policy_id": "msg-h",
                    "metric": "messages",
                    "scope": "account_total",
                    "threshold": max(1, round(hour(min(2, last)))),
                    "window_seconds": 3600,
                    "block": {"duration_seconds": 300},
                },
            ]
            out.extend(PolicyRecord(account_id=account, **s) for s in specs)
        return out

    @staticmethod
    def probe_policy() -> PolicyRecord:
        """Blocks any bot of the probe account at its PROBE_THRESHOLD-th message in 60 s."""
        return PolicyRecord(
            account_id=PROBE_ACCOUNT, policy_id="probe", metric="messages",
            threshold=PROBE_THRESHOLD, window_seconds=60, scope="account_each_bot",
            block={"duration_seconds": 3600},
        )  # fmt: skip

    # -- events -------------------------------------------------------------------------

    def events(self) -> Iterator[UsageEvent]:
        """The backlog stream, in production order (per partition: the order Kafka keeps)."""
        spec = self.spec
        rnd = random.Random(spec.seed * 1_000_003 + 2)
        conv: dict[tuple[int, int], int] = {}
        chunk = 10_000
        i = 0
        while i < spec.events:
            k = min(chunk, spec.events - i)
            accounts = rnd.choices(range(spec.accounts), cum_weights=self._account_cum, k=k)
            bots = rnd.choices(range(spec.bots), cum_weights=self._bot_cum, k=k)
            for a, b in zip(accounts, bots, strict=True):
                yield self._event(rnd, conv, i, a, b, spec.start_ms + i * 1000 // spec.sim_rate)
                i += 1

    def live(self, seed_offset: int = 3) -> Iterator[dict[str, Any]]:
        """An endless stream of ``UsageRecorder.record`` arguments stamped now (no time)."""
        spec = self.spec
        rnd = random.Random(spec.seed * 1_000_003 + seed_offset)
        conv: dict[tuple[int, int], int] = {}
        for i in itertools.count():
            a = rnd.choices(range(spec.accounts), cum_weights=self._account_cum)[0]
            b = rnd.choices(range(spec.bots), cum_weights=self._bot_cum)[0]
            e = self._event(rnd, conv, i, a, b, 0)
            yield {
                "event_id": f"live{seed_offset}-{i}", "account_id": e.account_id,
                "bot_id": e.bot_id, "conversation_id": e.conversation_id,
                "category": e.category, "model": e.model, "tokens_in": e.tokens_in,
                "tokens_out": e.tokens_out, "messages": 1,
                "conversation_started": e.conversation_started,
                "credits_micro": e.credits_micro,
            }  # fmt: skip

    def _event(
        self,
        rnd: random.Random,
        conv: dict[tuple[int, int], int],
        i: int,
        a: int,
        b: int,
        at_ms: int,
    ) -> UsageEvent:
        n = conv.get((a, b), 0)
        started = n == 0 or rnd.random() < 0.05
        if started:
            n += 1
            conv[(a, b)] = n
            c = n
        else:
            c = n - rnd.randrange(min(3, n))
        x = rnd.random()
        category = next(cat for cat, cum in zip(CATEGORIES, CATEGORY_CUM, strict=True) if x < cum)
        account = self.account_ids[a]
        return UsageEvent(
            event_id=f"e{self.spec.seed}-{i}",
            account_id=account,
            bot_id=self.bot_ids[b],
            conversation_id=f"{b}.{c}",
            category=category,
            model="claude-sonnet-4-6",
            tokens_in=rnd.randrange(200, 1_100),
            tokens_out=rnd.randrange(100, 400),
            messages=1,
            conversation_started=started,
            credits_micro=rnd.randrange(1_000, 10_000) * CREDIT_SCALE[category],
            occurred_at_ms=at_ms,
        )
