"""The named series indexes agree with the category table and the metrics."""

from __future__ import annotations

from capstream.core.models import CATEGORIES, CATEGORY_INDEX, Category, Metric
from capstream.core.series import (
    N_CATEGORIES,
    N_SERIES,
    SERIES_BY_CATEGORY,
    SERIES_CONVERSATIONS,
    SERIES_CREDITS,
    SERIES_MESSAGES,
    SERIES_TEXT_CREDITS,
    SERIES_TOKENS,
    TEXT,
    series_of,
)


def test_every_series_has_its_own_index() -> None:
    per_category = [series_of(Metric.CREDITS, c) for c in CATEGORIES]
    named = [SERIES_TOKENS, SERIES_MESSAGES, SERIES_CONVERSATIONS, SERIES_CREDITS, *per_category]
    assert sorted(named) == list(range(N_SERIES))
    assert per_category == [SERIES_BY_CATEGORY + i for i in range(N_CATEGORIES)]


def test_the_named_text_indexes_are_the_text_category() -> None:
    assert len(CATEGORIES) == N_CATEGORIES
    assert CATEGORY_INDEX[Category.TEXT] == TEXT
    assert series_of(Metric.CREDITS, Category.TEXT) == SERIES_TEXT_CREDITS


def test_each_metric_maps_to_its_series() -> None:
    assert series_of(Metric.TOKENS, None) == SERIES_TOKENS
    assert series_of(Metric.MESSAGES, None) == SERIES_MESSAGES
    assert series_of(Metric.CONVERSATIONS, None) == SERIES_CONVERSATIONS
    assert series_of(Metric.CREDITS, None) == SERIES_CREDITS
