"""Words people see: localized fallback texts, amber feed-row wording, calls to action."""

from __future__ import annotations

from capstream.core.models import CapPeriod, Category, Plan

TIMEFRAME_TOKEN = "{{TIMEFRAME}}"

DEFAULT_FALLBACK: dict[str, str] = {
    "en": "Thanks! 👋 We're on a quick break — back {{TIMEFRAME}}!",
    "ur": "شکریہ! 👋 ہم ایک مختصر وقفے پر ہیں — {{TIMEFRAME}} واپس آئیں گے!",
    "ms": "Terima kasih! 👋 Kami berehat sebentar — kembali {{TIMEFRAME}}!",
    "ar": "شكرًا! 👋 نحن في استراحة قصيرة — سنعود {{TIMEFRAME}}!",
    "bn": "ধন্যবাদ! 👋 আমরা একটু বিরতিতে আছি — {{TIMEFRAME}} ফিরে আসব!",
    "id": "Terima kasih! 👋 Kami sedang istirahat sebentar — kembali {{TIMEFRAME}}!",
    "zh": "谢谢！👋 我们正在短暂休息——{{TIMEFRAME}}回来！",
}
"""Built-in fallback text per tenant language, used when the tenant's own text is blank."""

TIMEFRAME: dict[str, dict[str, str]] = {
    "en": {"daily": "tomorrow", "monthly": "next week"},
    "ur": {"daily": "کل", "monthly": "اگلے ہفتے"},
    "ms": {"daily": "esok", "monthly": "minggu depan"},
    "ar": {"daily": "غدًا", "monthly": "الأسبوع القادم"},
    "bn": {"daily": "আগামীকাল", "monthly": "আগামী সপ্তাহে"},
    "id": {"daily": "besok", "monthly": "minggu depan"},
    "zh": {"daily": "明天", "monthly": "下周"},
}
"""{{TIMEFRAME}} words per language and cap period ("next week" for monthly, as documented)."""

_CATEGORY_WORDS = {
    Category.TEXT: "AI replies",
    Category.VISION: "AI vision",
    Category.AUDIO: "AI audio",
    Category.DOCUMENTS: "AI documents",
}
UPGRADE_CTA = "Upgrade to Starter →"
TOPUP_CTA = "Top up →"


def fallback_text(template: str, language: str, period: str) -> str:
    """The text sent instead of an AI reply when the text cap of ``period`` is hit.

    A blank ``template`` uses the built-in default of ``language``; {{TIMEFRAME}} becomes
    "tomorrow" (daily) or "next week" (monthly) in that language.
    """
    text = template if template.strip() else DEFAULT_FALLBACK[language]
    return text.replace(TIMEFRAME_TOKEN, TIMEFRAME[language][period])


def feed_message(category: str, period: str, attempts: int) -> str:
    """Amber row text, e.g. 'AI reply paused — daily AI replies credit exhausted (3 attempts)'."""
    noun = "attempt" if attempts == 1 else "attempts"
    return (
        f"AI reply paused — {period} {_CATEGORY_WORDS[Category(category)]} credit exhausted "
        f"({attempts} {noun})"
    )


def feed_cta(plan: str) -> str:
    """Call to action under an amber row: free plans upgrade, paid plans top up."""
    return UPGRADE_CTA if plan == Plan.FREE else TOPUP_CTA


def panel_cta(plan: str, period: str) -> str | None:
    """Call to action of the dashboard cap panel.

    Free plans always see the upgrade call. Paid plans see "Top up →" for a monthly cap and
    nothing for a daily cap, which restores itself at local midnight.
    """
    if plan == Plan.FREE:
        return UPGRADE_CTA
    return TOPUP_CTA if period == CapPeriod.MONTHLY else None


def cap_reason(period: str, category: str) -> str:
    """Machine-friendly verdict reason for a cap, e.g. ``cap:daily:text``."""
    return f"cap:{period}:{category}"
