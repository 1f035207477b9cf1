"""Plan when an appointment's reminders go out: clinic-local calendar days, quiet hours, merging.

Pure domain logic: plain values in, plain values out (no Flask, no models, no babel).

Public API
----------
``plan_reminders(*, starts_at, tz, now, offsets=("7d", "1d", "2h"),
quiet_start=time(21, 0), quiet_end=time(8, 0)) -> list[PlannedReminder]``
    The reminders still worth sending for one appointment, sorted by ``due_at``.
``PlannedReminder(kind: str, due_at: datetime, shifted: bool, original_due_at: datetime)``
    ``kind`` is ``"reminder_<n><unit>"`` (``"reminder_7d"``, ``"reminder_2h"``, ``"reminder_90m"``);
    ``due_at`` is an aware UTC datetime; ``shifted`` says quiet hours moved it away from
    ``original_due_at`` (the UTC time the offset alone gives).
``parse_offset(value: str | timedelta | Offset) -> Offset``
    Validate one clinic setting (``"7d"``, ``"2h"``, ``"90m"``, ``"3 days"``); raises ``ValueError``
    with a message fit to show next to a form field.
``offset_kind(value: str | timedelta | Offset) -> str``
    ``"reminder_7d"`` etc.: the ``kind`` a reminder planned from that offset carries.
``Offset(amount: int, unit: "d" | "h" | "m")`` with ``.kind``, ``.nominal`` (a timedelta) and
``.calendar`` (True for day offsets).
``DEFAULT_OFFSETS``, ``MERGE_WINDOW`` (30 minutes).

Rules
-----
1. **Day offsets are calendar days in the clinic's timezone** at the same wall-clock time: a
   10:00 appointment gets its 7-day reminder at 10:00 local seven days earlier, even across a
   daylight-saving change (the elapsed time is then 7 days ± 1 hour). Hour and minute offsets are
   absolute durations ("2h" is 120 minutes before, whatever the clocks do). Offsets are
   canonicalised, so "120m" is "2h" (same meaning, same kind) but "24h" stays distinct from "1d".
   A ``timedelta`` of whole days counts as calendar days.
2. **Local times that do not exist or exist twice** resolve with ``fold=0``: a time skipped when
   clocks go forward (02:30 on the last Sunday of March in Europe) lands as many minutes after the
   gap (03:30); a time that happens twice when clocks go back takes its first occurrence, the earlier
   instant, so a reminder is never late.
3. **Passed offsets are skipped**: a reminder with ``original_due_at <= now`` is not planned. There
   is no catch-up — a booking made 1 day ahead gets no 7-day reminder, and if the 1-day reminder's
   time has passed while the appointment is still more than 2 hours away we still just skip it; the
   booking confirmation and the remaining reminders cover it. The check uses the original due time
   so a reminder that would have gone out last night is not resent this morning. An appointment
   that has already started gets nothing.
4. **Quiet hours** (default 21:00-08:00 clinic time; the window is half-open ``[start, end)`` and
   may wrap midnight) move a reminder that falls inside them:
   a. to the end of that quiet period, if that is strictly before the appointment; otherwise
   b. to the last minute before that quiet period began (20:59 for the default), if that is still
      after ``now``; otherwise
   c. it is dropped.
   Pass ``quiet_start=None`` and ``quiet_end=None`` to disable quiet hours; giving only one of them,
   or two equal times, is a ``ValueError`` (a half-filled settings form, not a wish).
5. **Merging**: reminders whose final ``due_at`` are within ``MERGE_WINDOW`` (30 minutes, inclusive)
   of each other are merged into one — the patient would get two near-identical messages. The one
   with the smaller offset wins (the reminder "closer to the appointment", e.g. the 2h over a 3h one
   that quiet hours pushed to the same 08:00), and it keeps its own ``due_at``.
6. The result is sorted by ``due_at``.

Performance: ``ZoneInfo`` objects and parsed offset tuples are cached, so planning costs a handful
of datetime operations per offset (see ``benchmarks/bench_reminder_plan.py``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Literal, TypeAlias
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "DEFAULT_OFFSETS",
    "MERGE_WINDOW",
    "Offset",
    "OffsetLike",
    "PlannedReminder",
    "offset_kind",
    "parse_offset",
    "plan_reminders",
]

Unit = Literal["d", "h", "m"]

DEFAULT_OFFSETS: tuple[str, ...] = ("7d", "1d", "2h")
MERGE_WINDOW = timedelta(minutes=30)
# A reminder more than a year ahead is a typo in the settings form ("700d"), not a plan.
MAX_OFFSET = timedelta(days=365)
_BEFORE_QUIET = timedelta(minutes=1)

_UNIT_WORDS: dict[str, Unit] = {
    "d": "d",
    "day": "d",
    "days": "d",
    "h": "h",
    "hr": "h",
    "hrs": "h",
    "hour": "h",
    "hours": "h",
    "m": "m",
    "min": "m",
    "mins": "m",
    "minute": "m",
    "minutes": "m",
}
_OFFSET_RE = re.compile(r"(?P<amount>[+-]?\d+)\s*(?P<unit>[a-z]+)")
_EXAMPLES = "e.g. '7d', '1d', '2h' or '90m'"


@dataclass(frozen=True, slots=True)
class Offset:
    """How long before the appointment a reminder goes out, in canonical form."""

    amount: int
    unit: Unit

    @property
    def kind(self) -> str:
        return f"reminder_{self.amount}{self.unit}"

    @property
    def calendar(self) -> bool:
        """Day offsets keep the local wall-clock time; hour/minute offsets are exact durations."""
        return self.unit == "d"

    @property
    def nominal(self) -> timedelta:
        if self.unit == "d":
            return timedelta(days=self.amount)
        if self.unit == "h":
            return timedelta(hours=self.amount)
        return timedelta(minutes=self.amount)

    def __str__(self) -> str:
        return f"{self.amount}{self.unit}"


# What clinic settings may hold: a form string ("7d"), a timedelta, or an already parsed Offset.
OffsetLike: TypeAlias = str | timedelta | Offset


@dataclass(frozen=True, slots=True)
class PlannedReminder:
    """One reminder to send: ``due_at`` is when (aware, UTC); ``kind`` picks the text."""

    kind: str
    due_at: datetime
    shifted: bool
    original_due_at: datetime


def parse_offset(value: OffsetLike) -> Offset:
    """Validate a reminder offset from clinic settings and return it in canonical form."""
    if isinstance(value, Offset):
        return _checked(value.amount, value.unit, str(value))
    if isinstance(value, timedelta):
        return _from_timedelta(value)
    if not isinstance(value, str):
        raise TypeError(f"reminder offset must be a string or a timedelta, got {type(value).__name__}")
    text = value.strip().lower()
    if not text:
        raise ValueError(f"reminder offset is empty; expected a number and a unit, {_EXAMPLES}")
    match = _OFFSET_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"invalid reminder offset {value!r}: expected a number and a unit, {_EXAMPLES}")
    unit = _UNIT_WORDS.get(match["unit"])
    if unit is None:
        raise ValueError(
            f"invalid reminder offset {value!r}: unknown unit {match['unit']!r}, "
            "use d (days), h (hours) or m (minutes)"
        )
    return _checked(int(match["amount"]), unit, value)


def offset_kind(value: OffsetLike) -> str:
    """The ``kind`` of a reminder planned from ``value`` (``"2h"`` -> ``"reminder_2h"``)."""
    return parse_offset(value).kind


def _from_timedelta(value: timedelta) -> Offset:
    if value % timedelta(minutes=1):
        raise ValueError(f"reminder offset {value} must be a whole number of minutes")
    if value % timedelta(days=1) == timedelta(0):
        return _checked(value.days, "d", str(value))
    minutes = value // timedelta(minutes=1)
    return _checked(minutes, "m", str(value))


def _checked(amount: int, unit: Unit, shown: str) -> Offset:
    if amount <= 0:
        raise ValueError(f"reminder offset must be greater than zero, got {shown!r}")
    # Minutes and hours are both exact durations, so "120m" and "2h" are the same reminder and
    # must share a kind. Days are not folded into hours: "1d" follows the wall clock, "24h" does not.
    if unit == "m" and amount % 60 == 0:
        amount, unit = amount // 60, "h"
    offset = Offset(amount, unit)
    if offset.nominal > MAX_OFFSET:
        raise ValueError(f"reminder offset {shown!r} is too far ahead; the maximum is 365 days")
    return offset


@lru_cache(maxsize=256)
def _parse_offsets(values: tuple[OffsetLike, ...]) -> tuple[Offset, ...]:
    # Cached: every appointment of a clinic shares the same settings tuple, and parsing with a
    # regex per appointment would dominate the planning cost.
    return tuple(dict.fromkeys(parse_offset(v) for v in values))  # dedupe, keep order


@lru_cache(maxsize=128)
def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown timezone {tz!r}: expected an IANA name such as 'Europe/Madrid'") from exc


def _quiet_window(quiet_start: time | None, quiet_end: time | None) -> tuple[time, time] | None:
    if quiet_start is None and quiet_end is None:
        return None
    if quiet_start is None or quiet_end is None:
        raise ValueError("quiet hours need both a start and an end time, or neither to disable them")
    if quiet_start.tzinfo is not None or quiet_end.tzinfo is not None:
        raise ValueError("quiet hours are clinic wall-clock times; pass naive times")
    if quiet_start == quiet_end:
        raise ValueError("quiet hours start and end must differ")
    return quiet_start, quiet_end


def _require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")


def _resolve(day: date, wall: time, zone: ZoneInfo) -> datetime:
    """The UTC instant of a clinic wall-clock time; ``fold=0`` handles DST gaps and repeats (rule 2)."""
    return datetime.combine(day, wall, tzinfo=zone).replace(fold=0).astimezone(UTC)


def _avoid_quiet(
    due: datetime, zone: ZoneInfo, quiet: tuple[time, time], starts_at: datetime, now: datetime
) -> datetime | None:
    """Rule 4: ``due`` itself, moved out of quiet hours, or None when no acceptable time is left."""
    quiet_start, quiet_end = quiet
    local = due.astimezone(zone)
    wall, day = local.time(), local.date()
    if quiet_start < quiet_end:  # same-day window, e.g. a 12:00-14:00 lunch break
        if not quiet_start <= wall < quiet_end:
            return due
        start_day = end_day = day
    elif wall >= quiet_start:  # wraps midnight; we are in its evening part
        start_day, end_day = day, day + timedelta(days=1)
    elif wall < quiet_end:  # wraps midnight; we are in its morning part
        start_day, end_day = day - timedelta(days=1), day
    else:
        return due

    after = _resolve(end_day, quiet_end, zone)
    if after < starts_at:
        return after
    before = _resolve(start_day, quiet_start, zone) - _BEFORE_QUIET
    if before > now:
        return before
    return None


def plan_reminders(
    *,
    starts_at: datetime,
    tz: str,
    now: datetime,
    offsets: Sequence[OffsetLike] = DEFAULT_OFFSETS,
    quiet_start: time | None = time(21, 0),
    quiet_end: time | None = time(8, 0),
) -> list[PlannedReminder]:
    """The reminders to schedule for an appointment at ``starts_at`` in clinic timezone ``tz``."""
    _require_aware(starts_at, "starts_at")
    _require_aware(now, "now")
    zone = _zone(tz)
    if isinstance(offsets, str):  # tuple("7d") would quietly become ("7", "d")
        raise TypeError("offsets must be a sequence of offsets such as ['7d', '2h'], not a single string")
    parsed = _parse_offsets(tuple(offsets))
    quiet = _quiet_window(quiet_start, quiet_end)

    start_utc = starts_at.astimezone(UTC)
    now_utc = now.astimezone(UTC)
    if start_utc <= now_utc:
        return []

    local_start: datetime | None = None
    planned: list[tuple[datetime, timedelta, PlannedReminder]] = []
    for offset in parsed:
        if offset.calendar:
            if local_start is None:
                local_start = start_utc.astimezone(zone)
            day = local_start.date() - timedelta(days=offset.amount)
            due = _resolve(day, local_start.time(), zone)
        else:
            due = start_utc - offset.nominal
        if due <= now_utc:
            continue  # rule 3: no catch-up for a time that has passed
        final = due if quiet is None else _avoid_quiet(due, zone, quiet, start_utc, now_utc)
        if final is None:
            continue
        planned.append((final, offset.nominal, PlannedReminder(offset.kind, final, final != due, due)))

    # Sorting by (due_at, offset) means that within a cluster of near-simultaneous reminders the
    # one we keep only ever gets replaced by a later one, so a single pass merges correctly.
    planned.sort(key=lambda item: (item[0], item[1]))
    kept: list[tuple[datetime, timedelta, PlannedReminder]] = []
    for item in planned:
        if kept and item[0] - kept[-1][0] <= MERGE_WINDOW:
            if item[1] < kept[-1][1]:
                kept[-1] = item
            continue
        kept.append(item)
    return [reminder for _, _, reminder in kept]
