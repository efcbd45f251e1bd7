"""Request and response bodies of the Policy API (the OpenAPI schema is built from these)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from capstream.api.errors import FieldError, InvalidError
from capstream.core.models import MAX_WINDOW_SECONDS, MIN_WINDOW_SECONDS
from capstream.streams.records import (
    AlertActionRecord,
    BlockActionRecord,
    Category,
    CategoryCapsRecord,
    PolicyRecord,
    TenantSettingsRecord,
)

INT64_MAX = (1 << 63) - 1
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$"
EMAIL_PATTERN = r"^[^@\s/]+@[^@\s/]+\.[^@\s/]+$"


def _utf8(value: str) -> str:
    # JSON may carry lone surrogates that no UTF-8 record (Avro, Kafka, SMTP) can hold.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("text must be valid Unicode (no lone surrogates)") from exc
    return value


def _distinct(values: list[str]) -> list[str]:
    # The same address twice would be mailed twice (or is a typo for another one).
    seen: set[str] = set()
    for v in values:
        if v.casefold() in seen:
            msg = f"{v} is listed twice (addresses are compared ignoring case); list it once"
            raise PydanticCustomError("duplicate", msg)
        seen.add(v.casefold())
    return values


Text = Annotated[str, AfterValidator(_utf8)]
Ident = Annotated[str, Field(pattern=ID_PATTERN)]
Email = Annotated[str, Field(pattern=EMAIL_PATTERN, max_length=254)]
EmailList = Annotated[list[Email], Field(max_length=50), AfterValidator(_distinct)]
"""Email addresses, each once (compared without regard to case), at most 50."""
Int64 = Annotated[int, Field(ge=0, le=INT64_MAX)]
MutableKind = Literal[
    "policy_warning", "cap_warning", "downgrade_started", "downgrade_ended", "throttle_engaged",
    "block_lifted",
]  # fmt: skip
"""Notification kinds a tenant may switch off (``core.models.OPTIONAL_KINDS``)."""
WarnPercents = Annotated[list[Annotated[int, Field(ge=1, le=99)]], Field(max_length=10)]
"""Warning levels in percent (soft thresholds); null or left out: 50, 80, 90; []: none."""
Metric = Literal["tokens", "messages", "conversations", "credits"]
Scope = Literal["bot", "account_each_bot", "account_total"]
Plan = Literal["free", "starter", "pro", "enterprise"]
Language = Literal["en", "ur", "ms", "ar", "bn", "id", "zh"]
Throttle = Literal["off", "smart", "strict"]
Period = Literal["day", "week", "month"]
"""A calendar policy's period: the tenant's local day, week (from Monday 00:00) or month."""
WindowSeconds = Annotated[int, Field(ge=MIN_WINDOW_SECONDS, le=MAX_WINDOW_SECONDS)]
PerAttribute = Literal["end_user", "api_key", "team", "model"]
"""The event attribute a per-attribute policy counts separately for each value of."""
PerValue = Annotated[Text, Field(min_length=1, max_length=256)]
_PER_DOC = (
    "Count separately for each end user, API key, team or model (the event's attributes "
    "end_user, api_key or team, or its model) within the scope; alert and block that value "
    "only. Events without the attribute are not counted. Needs an alert and window_seconds."
)


def _not_null(name: str) -> InvalidError:
    msg = f"{name} cannot be null; leave it out to keep its current value"
    return InvalidError(msg, fields=[FieldError(field=name, message=msg)])


class _Body(BaseModel):
    # strict: JSON types as declared ("100", true or 100.0 for an integer, "yes" for a
    # boolean are refused, not coerced); extra="forbid": a misspelt field is an error.
    model_config = ConfigDict(extra="forbid", strict=True)


class AlertAction(_Body):
    """Email the recipients (empty = the account owner), once per window."""

    recipients: EmailList = Field(default_factory=list)


class BlockAction(_Body):
    """Pause the bot for ``duration_seconds``."""

    duration_seconds: Annotated[int, Field(gt=0, le=366 * 86_400)]


class PolicyBody(_Body):
    """A usage policy: one metric against a threshold over a rolling window
    (``window_seconds``) or the tenant's calendar day, week or month (``period``: resets at
    local midnight, Monday 00:00, the 1st), with actions. Give exactly one of the two.

    ``scope``: ``bot`` (one of the account's bots, named by ``bot_id``), ``account_each_bot``
    (every bot, each on its own) or ``account_total`` (the sum over the account's bots).
    """

    name: Annotated[Text, Field(max_length=200)] = ""
    metric: Metric
    threshold: Annotated[int, Field(gt=0, le=INT64_MAX)] | None = None
    """Required, unless a credits policy gives ``threshold_amount_micro``."""
    window_seconds: WindowSeconds | None = None
    """The rolling window (60 s to 31 days); null or left out for a calendar policy."""
    period: Period | None = None
    """A calendar policy: counts the tenant's current local day, week or month and alerts
    at most once per period (per bot); null or left out for a rolling window."""
    scope: Scope = "account_each_bot"
    bot_id: Ident | None = None
    category: Category | None = None
    alert: AlertAction | None = None
    block: BlockAction | None = None
    enabled: bool = True
    warn_percents: WarnPercents | None = None
    """Soft thresholds in percent of ``threshold``, one warning per level per window
    (null or left out: 50, 80, 90; []: none)."""
    threshold_amount_micro: Int64 | None = None
    """A credits policy's threshold in money: micro-units of the account's currency. Given,
    ``threshold`` is derived from it at the account's rate (rounded down; any value given is
    replaced); the API converts again when the rate changes."""
    per: PerAttribute | None = Field(default=None, description=_PER_DOC)
    """Count separately for each end user, API key, team or model (the event's
    ``attributes[per]``, or its ``model``) within the scope, and alert and block that value
    only; events without it are not counted. Needs an alert and a rolling window; no warning
    levels per value. Null or left out: the whole bot or account."""
    per_value: PerValue | None = None
    """With ``per``: count only events whose attribute has this value (e.g. ``gpt-4o``);
    null or left out: every value separately."""

    def record(self, account_id: str, policy_id: str, version: int, now_ms: int) -> PolicyRecord:
        """The wire record of this policy (422 unless exactly one of ``window_seconds`` and
        ``period`` is given)."""
        if (self.window_seconds is None) == (self.period is None):
            msg = (
                "give either window_seconds (a rolling window) or period (day, week or month "
                "of the tenant's calendar)"
                if self.period is None
                else "a calendar policy (period) has no rolling window: leave window_seconds "
                "out or null"
            )
            field = "period" if self.period is not None else "window_seconds"
            raise InvalidError(msg, fields=[FieldError(field=field, message=msg)])
        if self.threshold is None and self.threshold_amount_micro is None:
            msg = "give threshold (or, for a credits policy, threshold_amount_micro in money)"
            raise InvalidError(msg, fields=[FieldError(field="threshold", message=msg)])
        return PolicyRecord(
            policy_id=policy_id,
            account_id=account_id,
            name=self.name,
            metric=self.metric,
            # given in money: replaced by its conversion (api.money.priced_policy)
            threshold=self.threshold or 1,
            window_seconds=self.window_seconds or 0,
            period=self.period,
            scope=self.scope,
            bot_id=self.bot_id,
            category=self.category,
            alert=AlertActionRecord(recipients=self.alert.recipients) if self.alert else None,
            block=BlockActionRecord(duration_seconds=self.block.duration_seconds)
            if self.block
            else None,
            enabled=self.enabled,
            version=version,
            updated_at_ms=now_ms,
            warn_percents=self.warn_percents,
            threshold_amount_micro=self.threshold_amount_micro,
            per=self.per,
            per_value=self.per_value,
        )


class NewPolicyBody(PolicyBody):
    """A policy to create; ``policy_id`` is generated when omitted."""

    policy_id: Ident | None = None


class PolicyReplaceBody(PolicyBody):
    """A whole policy for ``PUT``: every field, ``null`` where it is optional (no alert, no
    block, no category, no bot; ``window_seconds`` null for a calendar policy). A body that
    leaves a field out is refused (422 naming it): use ``PATCH`` to change only some fields.
    ``period`` and ``warn_percents`` left out mean a rolling window and the default levels;
    ``per`` and ``per_value`` left out: the whole bot or account."""

    name: Annotated[Text, Field(max_length=200)]
    window_seconds: WindowSeconds | None
    scope: Scope
    bot_id: Ident | None
    category: Category | None
    alert: AlertAction | None
    block: BlockAction | None
    enabled: bool


class PolicyPatchBody(_Body):
    """Only the fields to change (``PATCH``); ``null`` removes an optional one (the alert,
    the block, the category or the bot)."""

    name: Annotated[Text, Field(max_length=200)] | None = None
    metric: Metric | None = None
    threshold: Annotated[int, Field(gt=0, le=INT64_MAX)] | None = None
    window_seconds: WindowSeconds | None = None
    period: Period | None = None
    """Naming a period (not null) turns the policy into a calendar one (its window_seconds
    goes); naming window_seconds (not null) turns it back into a rolling one."""
    scope: Scope | None = None
    bot_id: Ident | None = None
    category: Category | None = None
    alert: AlertAction | None = None
    block: BlockAction | None = None
    enabled: bool | None = None
    warn_percents: WarnPercents | None = None
    threshold_amount_micro: Int64 | None = None
    """The threshold in money (naming ``threshold`` alone puts it back in credits)."""
    per: PerAttribute | None = Field(default=None, description=_PER_DOC)
    """Null: the policy counts the whole bot or account again (its ``per_value`` goes)."""
    per_value: PerValue | None = None

    def over(self, current: PolicyRecord) -> PolicyBody:
        """``current`` with the fields this body names changed."""
        dump = current.model_dump(include=set(PolicyBody.model_fields))
        if dump.get("period") is not None:
            dump["window_seconds"] = None  # a calendar policy's record carries 0
        data = PolicyBody.model_validate(dump)
        changes = {name: getattr(self, name) for name in self.model_fields_set}
        for required in ("name", "metric", "threshold", "scope", "enabled"):
            if required in changes and changes[required] is None:
                raise _not_null(required)
        if changes.get("period") is not None and "window_seconds" not in changes:
            changes["window_seconds"] = None  # rolling -> calendar
        if changes.get("window_seconds") is not None and "period" not in changes:
            changes["period"] = None  # calendar -> rolling
        if "threshold" in changes and "threshold_amount_micro" not in changes:
            changes["threshold_amount_micro"] = None  # in credits again
        if "per" in changes and changes["per"] is None and "per_value" not in changes:
            changes["per_value"] = None  # per-attribute -> whole bot or account
        return data.model_copy(update=changes)


class CategoryCaps(_Body):
    """Daily and monthly AI credit caps of one category, in micro-credits (null = no cap)."""

    daily_micro: Int64 | None = None
    monthly_micro: Int64 | None = None
    daily_warn_percents: WarnPercents | None = None
    """Warning levels in percent of the daily cap, one warning per level per local day
    (null or left out: 50, 80, 90; []: none)."""
    monthly_warn_percents: WarnPercents | None = None
    daily_forecast_lead_s: Annotated[int, Field(ge=60, le=86_400)] | None = None
    """Opt in to a ``cap_forecast`` notification, once per local day, when the last hour's
    pace reaches the daily cap within this many seconds (e.g. 7200: two hours ahead); needs
    a daily cap. Null or left out: none."""
    monthly_forecast_lead_s: Annotated[int, Field(ge=60, le=31 * 86_400)] | None = None
    """The same for the monthly cap at the month-to-date pace, once per local month."""
    daily_amount_micro: Int64 | None = None
    """The daily cap in money: micro-units of the account's currency (its price table's;
    12.50 USD: 12500000). Given, ``daily_micro`` is derived from it at the account's rate
    (rounded down) and any value given for it is replaced; the API converts again when the
    rate changes."""
    monthly_amount_micro: Int64 | None = None
    """The monthly cap in money (as ``daily_amount_micro``)."""


class SettingsBody(_Body):
    """Cap behaviour (Settings → AI Configuration → Cap behavior), whole, for ``PUT``.

    Every field is required (a body that leaves one out is refused, 422 naming it; use
    ``PATCH`` to change only some) except ``plan`` and ``owner_email``, which keep their
    current values when omitted; only an admin key may change the plan.
    """

    timezone: Annotated[Text, Field(min_length=1, max_length=64)]
    language: Language
    plan: Plan | None = None
    owner_email: Email | None = None
    caps: dict[Category, CategoryCaps]
    fallback_message: Annotated[Text, Field(max_length=1000)]
    auto_downgrade: bool
    premium_model: Annotated[Text, Field(min_length=1, max_length=200)]
    downgrade_model: Annotated[Text, Field(min_length=1, max_length=200)]
    throttle: Throttle
    muted_notifications: list[MutableKind] | None = None
    """Notification kinds switched off; left out: kept as they are."""

    def record(
        self, current: TenantSettingsRecord, version: int, now_ms: int
    ) -> TenantSettingsRecord:
        """The wire record: this body over ``current`` (plan and owner kept if omitted)."""
        return TenantSettingsRecord(
            account_id=current.account_id,
            timezone=self.timezone,
            language=self.language,
            plan=self.plan or current.plan,
            owner_email=self.owner_email or current.owner_email,
            caps={
                c: CategoryCapsRecord(
                    daily_micro=v.daily_micro,
                    monthly_micro=v.monthly_micro,
                    daily_warn_percents=v.daily_warn_percents,
                    monthly_warn_percents=v.monthly_warn_percents,
                    daily_forecast_lead_s=v.daily_forecast_lead_s,
                    monthly_forecast_lead_s=v.monthly_forecast_lead_s,
                    daily_amount_micro=v.daily_amount_micro,
                    monthly_amount_micro=v.monthly_amount_micro,
                )
                for c, v in self.caps.items()
            },
            fallback_message=self.fallback_message,
            auto_downgrade=self.auto_downgrade,
            premium_model=self.premium_model,
            downgrade_model=self.downgrade_model,
            throttle=self.throttle,
            muted_notifications=current.muted_notifications
            if self.muted_notifications is None
            else sorted(set(self.muted_notifications)),
            version=version,
            updated_at_ms=now_ms,
        )


class SettingsPatchBody(_Body):
    """Only the settings to change (``PATCH``). ``caps`` names only the categories (and in
    each, only the periods) to change; ``null`` for a period removes that cap."""

    timezone: Annotated[Text, Field(min_length=1, max_length=64)] | None = None
    language: Language | None = None
    plan: Plan | None = None
    owner_email: Email | None = None
    caps: dict[Category, CategoryCaps] | None = None
    fallback_message: Annotated[Text, Field(max_length=1000)] | None = None
    auto_downgrade: bool | None = None
    premium_model: Annotated[Text, Field(min_length=1, max_length=200)] | None = None
    downgrade_model: Annotated[Text, Field(min_length=1, max_length=200)] | None = None
    throttle: Throttle | None = None
    muted_notifications: list[MutableKind] | None = None

    def over(self, current: TenantSettingsRecord) -> SettingsBody:
        """``current`` with the fields this body names changed (as a whole body)."""
        data = current.model_dump(include=set(SettingsBody.model_fields) - {"plan", "owner_email"})
        for name in self.model_fields_set:
            value = getattr(self, name)
            if name == "caps":
                caps = data["caps"]
                for cat, change in (value or {}).items():
                    merged = dict(caps.get(cat) or {})
                    named = change.model_fields_set
                    for period in ("daily", "monthly"):
                        # a cap named in credits is no longer one in money
                        if f"{period}_micro" in named and f"{period}_amount_micro" not in named:
                            merged[f"{period}_amount_micro"] = None
                    merged.update({k: getattr(change, k) for k in named})
                    caps[cat] = merged
            elif value is None and name not in ("plan", "owner_email"):
                raise _not_null(name)
            elif value is not None:
                data[name] = value
        return SettingsBody.model_validate(data)


class WindowSeeding(BaseModel):
    """What a created or changed policy's window counts when it takes effect (the processors
    seed it from a window of the same metric they already keep, where one covers it)."""

    kind: Literal["shared", "exact", "wider_buckets", "partial", "none", "calendar"]
    source_window_seconds: int | None = Field(
        description="The window it is seeded from (None: it counts from when it takes effect)"
    )
    message: str


class PolicyResponse(PolicyRecord):
    """A policy as written, and (on create, replace and change) what its window counts."""

    window_seeding: WindowSeeding | None = None


class Preset(BaseModel):
    """A ready policy body for one of the practical uses."""

    preset: str
    description: str
    policy: NewPolicyBody
