"""How often the suite scrapes the worker's metrics during its max-rate run."""

from __future__ import annotations

from capstream.bench.worker import poll_interval


def test_far_from_the_end_the_worker_is_scraped_at_most_twice_a_second() -> None:
    # 20k events/s, 300k events to go: 15 s left, a quarter of it is capped at 0.5 s.
    assert poll_interval(100_000, 400_000, 5.0, 100.0) == 0.5


def test_near_the_end_scrapes_close_in_on_the_last_event() -> None:
    # 20k events/s, 2k to go: 0.1 s left, polled after a quarter of it.
    assert poll_interval(398_000, 400_000, 19.9, 100.0) == 0.025
    assert poll_interval(399_990, 400_000, 20.0, 100.0) == 0.02  # never busier than 50/s


def test_a_scrape_never_sleeps_past_the_phases_limit() -> None:
    assert poll_interval(100_000, 400_000, 119.8, 0.2) == 0.2


def test_before_a_rate_is_known_it_assumes_a_slow_worker() -> None:
    # No events yet (or a tiny first sample): 1,000 events/s, not a division by zero.
    assert poll_interval(0, 1_000, 0.0, 10.0) == 0.25
    assert poll_interval(10, 400_000, 0.0, 10.0) == 0.5
