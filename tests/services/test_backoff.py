"""Retry timing: full-jitter backoff, the retry budget and the provider's Retry-After."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from wa_portal.services.backoff import RetryBudget, delay, parse_retry_after, retry_after_or_delay


def top() -> float:
    return 0.999999


def bottom() -> float:
    return 0.0


def half() -> float:
    return 0.5


@pytest.mark.parametrize(
    ("attempt", "ceiling"),
    [(0, 2.0), (1, 4.0), (2, 8.0), (3, 16.0), (5, 64.0), (7, 256.0), (8, 300.0), (20, 300.0)],
)
def test_delay_ceiling_doubles_until_the_cap(attempt: int, ceiling: float) -> None:
    assert delay(attempt, rng=half) == pytest.approx(ceiling / 2)
    assert delay(attempt, rng=top) == pytest.approx(ceiling, rel=1e-5)
    assert delay(attempt, rng=top) < ceiling


def test_full_jitter_can_retry_at_once() -> None:
    # Full jitter spans [0, ceiling): the low end is what spreads a thundering herd.
    assert delay(6, rng=bottom) == 0.0


def test_delay_honours_base_and_cap() -> None:
    assert delay(3, base=0.5, cap=10.0, rng=half) == pytest.approx(2.0)  # 0.5 * 8 = 4, half of it
    assert delay(10, base=0.5, cap=10.0, rng=half) == pytest.approx(5.0)


def test_delay_spreads_over_the_range_with_the_real_rng() -> None:
    samples = [delay(4) for _ in range(500)]
    assert all(0.0 <= s < 32.0 for s in samples)
    assert min(samples) < 8.0 < 24.0 < max(samples)


def test_huge_and_negative_attempts_do_not_break() -> None:
    assert delay(10_000, rng=half) == pytest.approx(150.0)
    assert delay(-3, rng=half) == pytest.approx(1.0)


def test_negative_base_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        delay(1, base=-1.0)


def test_retry_after_is_honoured_never_shortened() -> None:
    assert retry_after_or_delay(30.0, attempt=0, rng=bottom) == 30.0
    # A little spread on top so workers told the same thing don't return together …
    assert retry_after_or_delay(30.0, attempt=0, rng=half) == pytest.approx(31.5)
    # … bounded to 5 s, and not capped by the backoff cap: coming back early is pointless.
    assert retry_after_or_delay(3600.0, attempt=0, cap=300.0, rng=top) == pytest.approx(3605.0, abs=1e-3)


def test_without_retry_after_it_backs_off() -> None:
    assert retry_after_or_delay(None, attempt=3, rng=half) == pytest.approx(8.0)
    assert retry_after_or_delay(-1.0, attempt=3, rng=half) == pytest.approx(8.0)
    assert retry_after_or_delay(float("nan"), attempt=3, rng=half) == pytest.approx(8.0)


def test_retry_after_zero_means_now() -> None:
    assert retry_after_or_delay(0.0, attempt=4, rng=top) == 0.0


NOW = datetime(2027, 3, 12, 10, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("120", 120.0),
        (" 2.5 ", 2.5),
        (7, 7.0),
        ("Fri, 12 Mar 2027 10:01:30 GMT", 90.0),
        ("Fri, 12 Mar 2027 09:59:00 GMT", 0.0),  # already past: go now
        ("-5", 0.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("nan", None),
    ],
)
def test_parse_retry_after(header: str | float | None, expected: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == expected
    assert parse_retry_after(header, now=NOW.timestamp()) == expected


def test_budget_counts_the_first_send() -> None:
    budget = RetryBudget(max_attempts=3, max_age_seconds=3600)
    start = NOW
    assert [budget.allows(n, start, start + timedelta(seconds=1)) for n in range(5)] == [
        True,
        True,
        True,
        False,
        False,
    ]


def test_budget_stops_at_max_age() -> None:
    budget = RetryBudget()
    assert budget.max_attempts == 6
    assert budget.allows(1, NOW, NOW + timedelta(minutes=59, seconds=59))
    assert not budget.allows(1, NOW, NOW + timedelta(hours=1))
    assert budget.allows(2, 1000.0, 4599.0)
    assert not budget.allows(2, 1000.0, 4600.0)


def test_budget_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        RetryBudget().allows(1, datetime(2027, 3, 12, 10, 0), NOW)


def test_budget_validates() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryBudget(max_attempts=0)
    with pytest.raises(ValueError, match="max_age"):
        RetryBudget(max_age_seconds=0)


def test_delay_and_budget_together_give_a_bounded_schedule() -> None:
    """A message retried with the defaults is dead-lettered after 6 attempts, well inside an hour."""
    budget = RetryBudget()
    t = 0.0
    attempt = 0
    waits = []
    while True:
        wait = delay(attempt, rng=top)
        attempt += 1
        if not budget.allows(attempt, 0.0, t + wait):
            break
        t += wait
        waits.append(round(wait))
    assert waits == [2, 4, 8, 16, 32]
    assert attempt == 6
