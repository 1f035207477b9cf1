"""Retry timing for failed sends: exponential backoff with full jitter, a retry budget, Retry-After.

API
---
``delay(attempt, *, base=2.0, cap=300.0, rng=random.random) -> float``
    Seconds to wait after attempt number ``attempt`` failed (0 = the first send).
    Full jitter: uniform in ``[0, min(cap, base * 2**attempt))``.

``parse_retry_after(value, *, now) -> float | None``
    A ``Retry-After`` header (delay-seconds or an HTTP date) as seconds from ``now``;
    ``None`` when absent or unreadable.

``retry_after_or_delay(retry_after, attempt, *, base=2.0, cap=300.0, rng=random.random) -> float``
    The provider's Retry-After when it gave one (never shortened, with a little spread
    on top), else ``delay(attempt)``.

``RetryBudget(max_attempts=6, max_age_seconds=3600)``
    ``.allows(attempt, first_attempt_at, now) -> bool``: may attempt number ``attempt``
    (0-based, so ``max_attempts`` counts the first send too) still run? Times are epoch
    seconds or timezone-aware datetimes.

Numbering: attempt 0 is the first send. When it fails, wait ``delay(0)`` and ask
``budget.allows(1, …)`` before attempt 1. Everything here is pure; callers pass the clock.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime

__all__ = ["RetryBudget", "delay", "parse_retry_after", "retry_after_or_delay"]

# 2**62 * base is already far beyond any cap; clamping keeps huge attempt numbers from
# raising OverflowError when the int is converted to float.
_MAX_EXPONENT = 62

# Workers that were all told "Retry-After: 30" must not come back in the same
# millisecond, so a little spread goes on top (never below what the provider asked).
_RETRY_AFTER_SPREAD = 0.1  # fraction of the Retry-After
_RETRY_AFTER_SPREAD_MAX = 5.0  # seconds


def delay(
    attempt: int,
    *,
    base: float = 2.0,
    cap: float = 300.0,
    rng: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait after attempt ``attempt`` failed: full jitter over ``min(cap, base * 2**attempt)``."""
    # Full jitter rather than "exponential plus a little noise": with many workers
    # retrying against one throttled provider it spreads load best.
    # Docs: https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/
    if base < 0 or cap < 0:
        raise ValueError("base and cap must not be negative")
    exponent = min(max(attempt, 0), _MAX_EXPONENT)
    ceiling = min(cap, base * 2.0**exponent)
    return rng() * ceiling


def parse_retry_after(value: str | float | None, *, now: datetime | float) -> float | None:
    """Seconds to wait according to a ``Retry-After`` value, or ``None`` if there is none to honour."""
    # Docs: https://www.rfc-editor.org/rfc/rfc9110#field.retry-after (delay-seconds | HTTP-date)
    if value is None:
        return None
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip()
        if not text:
            return None
        try:
            seconds = float(text)
        except ValueError:
            try:
                when = parsedate_to_datetime(text)
            except (TypeError, ValueError, IndexError):
                return None
            if when.tzinfo is None:  # RFC 9110 dates are GMT; the parser drops the zone for "-0000"
                return None
            seconds = when.timestamp() - _epoch(now)
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(seconds, 0.0)


def retry_after_or_delay(
    retry_after: float | None,
    attempt: int,
    *,
    base: float = 2.0,
    cap: float = 300.0,
    rng: Callable[[], float] = random.random,
) -> float:
    """Honour the provider's Retry-After (seconds) when it gave one, else back off exponentially."""
    if retry_after is None or math.isnan(retry_after) or math.isinf(retry_after) or retry_after < 0:
        return delay(attempt, base=base, cap=cap, rng=rng)
    # Not capped: coming back before the provider said so only earns another 429.
    spread = min(retry_after * _RETRY_AFTER_SPREAD, _RETRY_AFTER_SPREAD_MAX)
    return retry_after + rng() * spread


@dataclass(frozen=True, slots=True)
class RetryBudget:
    """How many attempts, and for how long, one message may be tried before it is dead-lettered."""

    max_attempts: int = 6
    max_age_seconds: float = 3600.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.max_age_seconds <= 0:
            raise ValueError("max_age_seconds must be positive")

    def allows(self, attempt: int, first_attempt_at: datetime | float, now: datetime | float) -> bool:
        """May attempt number ``attempt`` (0-based) run at ``now``? ``first_attempt_at`` starts the clock."""
        if attempt >= self.max_attempts:
            return False
        return _epoch(now) - _epoch(first_attempt_at) < self.max_age_seconds


def _epoch(moment: datetime | float) -> float:
    if isinstance(moment, datetime):
        if moment.tzinfo is None:
            # A naive datetime could be local time or UTC; guessing would shift the budget by hours.
            raise ValueError("use timezone-aware datetimes (UTC) or epoch seconds")
        return moment.timestamp()
    return float(moment)
