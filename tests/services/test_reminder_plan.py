"""When appointment reminders go out: local calendar days, DST, quiet hours, skipping and merging."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from wa_portal.services.reminder_plan import (
    MERGE_WINDOW,
    Offset,
    PlannedReminder,
    offset_kind,
    parse_offset,
    plan_reminders,
)

MADRID = "Europe/Madrid"
SAO_PAULO = "America/Sao_Paulo"
KOLKATA = "Asia/Kolkata"
LONDON = "Europe/London"


def at(tz: str, y: int, mo: int, d: int, h: int = 0, mi: int = 0, *, fold: int = 0) -> datetime:
    """An instant given as clinic wall-clock time, returned in UTC like the database stores it."""
    return datetime(y, mo, d, h, mi, tzinfo=ZoneInfo(tz), fold=fold).astimezone(UTC)


def wall(reminder: PlannedReminder, tz: str) -> str:
    """What the patient's phone shows when the reminder arrives, with the UTC offset in force."""
    return reminder.due_at.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M %z")


@dataclass(frozen=True)
class Case:
    id: str
    tz: str
    starts_at: datetime
    now: datetime
    expected: list[tuple[str, str]]  # (kind, local wall time with offset)
    offsets: tuple[str, ...] = ("7d", "1d", "2h")
    quiet: tuple[time | None, time | None] = (time(21, 0), time(8, 0))


CASES = [
    Case(
        "madrid-8-days-ahead-three-reminders",
        MADRID,
        at(MADRID, 2026, 6, 16, 10, 0),
        now=at(MADRID, 2026, 6, 8, 9, 0),
        expected=[
            ("reminder_7d", "2026-06-09 10:00 +0200"),
            ("reminder_1d", "2026-06-15 10:00 +0200"),
            ("reminder_2h", "2026-06-16 08:00 +0200"),
        ],
    ),
    Case(
        # Clocks go back on Sunday 25 October 2026: the 7d reminder is in summer time, the
        # appointment in winter time, and both still read 10:00 on the wall.
        "madrid-across-end-of-dst",
        MADRID,
        at(MADRID, 2026, 10, 27, 10, 0),
        now=at(MADRID, 2026, 10, 1, 12, 0),
        expected=[
            ("reminder_7d", "2026-10-20 10:00 +0200"),
            ("reminder_1d", "2026-10-26 10:00 +0100"),
            ("reminder_2h", "2026-10-27 08:00 +0100"),
        ],
    ),
    Case(
        # Clocks go forward on Sunday 29 March 2026.
        "madrid-across-start-of-dst",
        MADRID,
        at(MADRID, 2026, 4, 2, 10, 0),
        now=at(MADRID, 2026, 3, 1, 12, 0),
        expected=[
            ("reminder_7d", "2026-03-26 10:00 +0100"),
            ("reminder_1d", "2026-04-01 10:00 +0200"),
            ("reminder_2h", "2026-04-02 08:00 +0200"),
        ],
    ),
    Case(
        # The 1d reminder falls on the day the clocks go forward (29 March 2026); the 2h one at
        # 07:30 is in quiet hours and moves to 08:00.
        "london-1d-on-the-day-clocks-go-forward",
        LONDON,
        at(LONDON, 2026, 3, 30, 9, 30),
        now=at(LONDON, 2026, 3, 1, 12, 0),
        expected=[
            ("reminder_7d", "2026-03-23 09:30 +0000"),
            ("reminder_1d", "2026-03-29 09:30 +0100"),
            ("reminder_2h", "2026-03-30 08:00 +0100"),
        ],
    ),
    Case(
        # 2h is a real duration: on the night clocks go forward, 03:30 CEST is 2h after 00:30 CET.
        "2h-is-absolute-across-the-clock-change",
        MADRID,
        at(MADRID, 2026, 3, 29, 3, 30),
        now=at(MADRID, 2026, 3, 28, 12, 0),
        offsets=("2h",),
        quiet=(None, None),
        expected=[("reminder_2h", "2026-03-29 00:30 +0100")],
    ),
    Case(
        "sao-paulo-no-dst",
        SAO_PAULO,
        at(SAO_PAULO, 2026, 11, 10, 15, 0),
        now=at(SAO_PAULO, 2026, 10, 20, 12, 0),
        expected=[
            ("reminder_7d", "2026-11-03 15:00 -0300"),
            ("reminder_1d", "2026-11-09 15:00 -0300"),
            ("reminder_2h", "2026-11-10 13:00 -0300"),
        ],
    ),
    Case(
        "kolkata-half-hour-offset",
        KOLKATA,
        at(KOLKATA, 2026, 11, 10, 11, 30),
        now=at(KOLKATA, 2026, 10, 20, 12, 0),
        expected=[
            ("reminder_7d", "2026-11-03 11:30 +0530"),
            ("reminder_1d", "2026-11-09 11:30 +0530"),
            ("reminder_2h", "2026-11-10 09:30 +0530"),
        ],
    ),
    Case(
        "booked-1-day-ahead-gets-no-7d",
        MADRID,
        at(MADRID, 2026, 6, 16, 12, 0),
        now=at(MADRID, 2026, 6, 15, 11, 0),
        expected=[
            ("reminder_1d", "2026-06-15 12:00 +0200"),
            ("reminder_2h", "2026-06-16 10:00 +0200"),
        ],
    ),
    Case(
        # The 1d time passed an hour ago and the appointment is still a day away: no catch-up.
        "1d-passed-is-skipped-not-sent-late",
        MADRID,
        at(MADRID, 2026, 6, 16, 12, 0),
        now=at(MADRID, 2026, 6, 15, 13, 0),
        expected=[("reminder_2h", "2026-06-16 10:00 +0200")],
    ),
    Case(
        "booked-3-hours-ahead-gets-only-2h",
        MADRID,
        at(MADRID, 2026, 6, 16, 15, 0),
        now=at(MADRID, 2026, 6, 16, 12, 0),
        expected=[("reminder_2h", "2026-06-16 13:00 +0200")],
    ),
    Case(
        "booked-90-minutes-ahead-gets-none",
        MADRID,
        at(MADRID, 2026, 6, 16, 15, 0),
        now=at(MADRID, 2026, 6, 16, 13, 30),
        expected=[],
    ),
    Case(
        "due-exactly-now-is-skipped",
        MADRID,
        at(MADRID, 2026, 6, 16, 15, 0),
        now=at(MADRID, 2026, 6, 16, 13, 0),
        expected=[],
    ),
    Case(
        "0830-appointment-2h-moves-to-quiet-end",
        MADRID,
        at(MADRID, 2026, 6, 16, 8, 30),
        now=at(MADRID, 2026, 6, 1, 12, 0),
        expected=[
            ("reminder_7d", "2026-06-09 08:30 +0200"),
            ("reminder_1d", "2026-06-15 08:30 +0200"),
            ("reminder_2h", "2026-06-16 08:00 +0200"),
        ],
    ),
    Case(
        # 2h -> 05:00 is quiet and 08:00 is after the appointment: the evening before at 20:59.
        # 1d and 7d (07:00) are quiet too, and their 08:00 is well before the appointment.
        "0700-appointment-2h-moves-to-evening-before",
        MADRID,
        at(MADRID, 2026, 6, 16, 7, 0),
        now=at(MADRID, 2026, 6, 1, 12, 0),
        expected=[
            ("reminder_7d", "2026-06-09 08:00 +0200"),
            ("reminder_1d", "2026-06-15 08:00 +0200"),
            ("reminder_2h", "2026-06-15 20:59 +0200"),
        ],
    ),
    Case(
        "0700-appointment-evening-slot-passed-2h-dropped",
        MADRID,
        at(MADRID, 2026, 6, 16, 7, 0),
        now=at(MADRID, 2026, 6, 15, 21, 30),
        expected=[],
    ),
    Case(
        "0700-appointment-booked-that-evening-still-gets-2059",
        MADRID,
        at(MADRID, 2026, 6, 16, 7, 0),
        now=at(MADRID, 2026, 6, 15, 20, 0),
        expected=[("reminder_2h", "2026-06-15 20:59 +0200")],
    ),
    Case(
        "quiet-hours-disabled",
        MADRID,
        at(MADRID, 2026, 6, 16, 7, 0),
        now=at(MADRID, 2026, 6, 1, 12, 0),
        quiet=(None, None),
        expected=[
            ("reminder_7d", "2026-06-09 07:00 +0200"),
            ("reminder_1d", "2026-06-15 07:00 +0200"),
            ("reminder_2h", "2026-06-16 05:00 +0200"),
        ],
    ),
    Case(
        "quiet-start-is-inclusive",
        MADRID,
        at(MADRID, 2026, 6, 16, 23, 0),
        now=at(MADRID, 2026, 6, 16, 12, 0),
        offsets=("2h",),
        # 21:00 is quiet; the quiet period ends 08:00 next day, after the appointment -> 20:59.
        expected=[("reminder_2h", "2026-06-16 20:59 +0200")],
    ),
    Case(
        "quiet-end-is-exclusive",
        MADRID,
        at(MADRID, 2026, 6, 16, 10, 0),
        now=at(MADRID, 2026, 6, 16, 7, 0),
        offsets=("2h",),
        expected=[("reminder_2h", "2026-06-16 08:00 +0200")],
    ),
    Case(
        "same-day-quiet-window-lunch-break",
        MADRID,
        at(MADRID, 2026, 6, 16, 15, 0),
        now=at(MADRID, 2026, 6, 16, 9, 0),
        offsets=("2h",),
        quiet=(time(12, 0), time(14, 0)),
        expected=[("reminder_2h", "2026-06-16 14:00 +0200")],
    ),
    Case(
        # 3h lands at 07:00 (quiet) and moves to 08:00, where the 2h already is: one message, the 2h.
        "shifted-reminder-merges-with-2h",
        MADRID,
        at(MADRID, 2026, 6, 16, 10, 0),
        now=at(MADRID, 2026, 6, 1, 12, 0),
        offsets=("3h", "2h"),
        expected=[("reminder_2h", "2026-06-16 08:00 +0200")],
    ),
    Case(
        "reminders-20-minutes-apart-merge-keeping-the-closer",
        MADRID,
        at(MADRID, 2026, 6, 16, 13, 0),
        now=at(MADRID, 2026, 6, 1, 12, 0),
        offsets=("2h", "100m"),
        expected=[("reminder_100m", "2026-06-16 11:20 +0200")],
    ),
    Case(
        "reminders-30-minutes-apart-merge",
        MADRID,
        at(MADRID, 2026, 6, 16, 13, 0),
        now=at(MADRID, 2026, 6, 1, 12, 0),
        offsets=("2h", "90m"),
        expected=[("reminder_90m", "2026-06-16 11:30 +0200")],
    ),
    Case(
        "reminders-31-minutes-apart-both-kept",
        MADRID,
        at(MADRID, 2026, 6, 16, 13, 0),
        now=at(MADRID, 2026, 6, 1, 12, 0),
        offsets=("2h", "89m"),
        expected=[("reminder_2h", "2026-06-16 11:00 +0200"), ("reminder_89m", "2026-06-16 11:31 +0200")],
    ),
    Case(
        # Clocks go back in the night before this Sunday appointment: 24h earlier is 13:00 CEST on
        # Saturday while 1d is 12:00 CEST. Sixty minutes apart, so both are kept.
        "1d-and-24h-differ-by-an-hour-across-dst",
        MADRID,
        at(MADRID, 2026, 10, 25, 12, 0),
        now=at(MADRID, 2026, 10, 1, 12, 0),
        offsets=("1d", "24h"),
        expected=[("reminder_1d", "2026-10-24 12:00 +0200"), ("reminder_24h", "2026-10-24 13:00 +0200")],
    ),
    Case(
        "appointment-already-started",
        MADRID,
        at(MADRID, 2026, 6, 16, 10, 0),
        now=at(MADRID, 2026, 6, 16, 10, 5),
        expected=[],
    ),
    Case(
        "offsets-given-in-any-order-come-back-sorted",
        SAO_PAULO,
        at(SAO_PAULO, 2026, 11, 10, 15, 0),
        now=at(SAO_PAULO, 2026, 10, 20, 12, 0),
        offsets=("2h", "7d", "1d"),
        expected=[
            ("reminder_7d", "2026-11-03 15:00 -0300"),
            ("reminder_1d", "2026-11-09 15:00 -0300"),
            ("reminder_2h", "2026-11-10 13:00 -0300"),
        ],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_plan_reminders(case: Case) -> None:
    plan = plan_reminders(
        starts_at=case.starts_at,
        tz=case.tz,
        now=case.now,
        offsets=case.offsets,
        quiet_start=case.quiet[0],
        quiet_end=case.quiet[1],
    )
    assert [(r.kind, wall(r, case.tz)) for r in plan] == case.expected
    for r in plan:
        assert r.due_at.tzinfo is UTC
        assert case.now < r.due_at < case.starts_at


def test_day_offset_keeps_wall_time_so_elapsed_time_changes_across_dst() -> None:
    starts_at = at(MADRID, 2026, 10, 27, 10, 0)
    (seven_days, *_) = plan_reminders(starts_at=starts_at, tz=MADRID, now=at(MADRID, 2026, 10, 1))
    assert starts_at - seven_days.due_at == timedelta(days=7, hours=1)


def test_shift_is_reported_with_the_original_time() -> None:
    starts_at = at(MADRID, 2026, 6, 16, 8, 30)
    plan = plan_reminders(starts_at=starts_at, tz=MADRID, now=at(MADRID, 2026, 6, 1), offsets=["2h", "1d"])
    by_kind = {r.kind: r for r in plan}
    assert by_kind["reminder_2h"].shifted
    assert by_kind["reminder_2h"].original_due_at == at(MADRID, 2026, 6, 16, 6, 30)
    assert not by_kind["reminder_1d"].shifted
    assert by_kind["reminder_1d"].original_due_at == by_kind["reminder_1d"].due_at


def test_quiet_end_equal_to_start_time_goes_to_the_evening_before() -> None:
    # 08:00 is not *strictly* before an 08:00 appointment, so a 06:00 reminder goes back to 20:59.
    plan = plan_reminders(
        starts_at=at(MADRID, 2026, 6, 16, 8, 0), tz=MADRID, now=at(MADRID, 2026, 6, 1), offsets=["2h"]
    )
    assert [wall(r, MADRID) for r in plan] == ["2026-06-15 20:59 +0200"]


def test_local_time_skipped_by_spring_forward_moves_past_the_gap() -> None:
    # 02:30 on Sunday 29 March 2026 does not exist in Madrid; the reminder goes at 03:30 CEST,
    # which is the same instant 02:30 would have been without the jump.
    plan = plan_reminders(
        starts_at=at(MADRID, 2026, 4, 5, 2, 30),
        tz=MADRID,
        now=at(MADRID, 2026, 3, 1),
        offsets=["7d"],
        quiet_start=None,
        quiet_end=None,
    )
    assert [wall(r, MADRID) for r in plan] == ["2026-03-29 03:30 +0200"]


def test_local_time_repeated_by_fall_back_takes_the_first_occurrence() -> None:
    plan = plan_reminders(
        starts_at=at(MADRID, 2026, 11, 1, 2, 30),
        tz=MADRID,
        now=at(MADRID, 2026, 10, 1),
        offsets=["7d"],
        quiet_start=None,
        quiet_end=None,
    )
    assert [wall(r, MADRID) for r in plan] == ["2026-10-25 02:30 +0200"]
    assert plan[0].due_at == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)


def test_appointment_in_the_repeated_hour_still_gets_reminders_at_its_wall_time() -> None:
    # 02:30 CET (fold=1, the second 02:30) on Sunday 25 October: its 1d reminder is 02:30 CEST on Saturday.
    starts_at = at(MADRID, 2026, 10, 25, 2, 30, fold=1)
    assert starts_at == datetime(2026, 10, 25, 1, 30, tzinfo=UTC)
    plan = plan_reminders(
        starts_at=starts_at,
        tz=MADRID,
        now=at(MADRID, 2026, 10, 1),
        offsets=["1d"],
        quiet_start=None,
        quiet_end=None,
    )
    assert [wall(r, MADRID) for r in plan] == ["2026-10-24 02:30 +0200"]


def test_accepts_non_utc_aware_inputs() -> None:
    tz = ZoneInfo(MADRID)
    plan = plan_reminders(
        starts_at=datetime(2026, 6, 16, 10, 0, tzinfo=tz),
        tz=MADRID,
        now=datetime(2026, 6, 16, 7, 0, tzinfo=tz),
        offsets=["2h"],
    )
    assert [r.due_at for r in plan] == [datetime(2026, 6, 16, 6, 0, tzinfo=UTC)]


def test_timedelta_offsets_match_their_string_forms() -> None:
    starts_at, now = at(KOLKATA, 2026, 11, 10, 11, 30), at(KOLKATA, 2026, 10, 1)
    from_timedeltas = plan_reminders(
        starts_at=starts_at, tz=KOLKATA, now=now, offsets=[timedelta(days=7), timedelta(hours=2)]
    )
    assert from_timedeltas == plan_reminders(starts_at=starts_at, tz=KOLKATA, now=now, offsets=["7d", "2h"])
    assert [r.kind for r in from_timedeltas] == ["reminder_7d", "reminder_2h"]


def test_duplicate_offsets_give_one_reminder() -> None:
    plan = plan_reminders(
        starts_at=at(MADRID, 2026, 6, 16, 12, 0),
        tz=MADRID,
        now=at(MADRID, 2026, 6, 1),
        offsets=["2h", "120m", "2H"],
    )
    assert [r.kind for r in plan] == ["reminder_2h"]


def test_merge_window_is_thirty_minutes() -> None:
    assert timedelta(minutes=30) == MERGE_WINDOW


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"starts_at": datetime(2026, 6, 16, 10, 0)}, "starts_at must be a timezone-aware datetime"),
        ({"now": datetime(2026, 6, 1, 10, 0)}, "now must be a timezone-aware datetime"),
        ({"tz": "Europe/Atlantis"}, "unknown timezone 'Europe/Atlantis'"),
        ({"tz": "../etc/passwd"}, "unknown timezone"),
        ({"quiet_start": None}, "quiet hours need both a start and an end"),
        ({"quiet_end": None}, "quiet hours need both a start and an end"),
        ({"quiet_start": time(8, 0), "quiet_end": time(8, 0)}, "quiet hours start and end must differ"),
        ({"offsets": ["7d", "soon"]}, "invalid reminder offset 'soon'"),
    ],
)
def test_plan_reminders_rejects_bad_input(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "starts_at": at(MADRID, 2026, 6, 16, 10, 0),
        "tz": MADRID,
        "now": at(MADRID, 2026, 6, 1, 10, 0),
    }
    with pytest.raises(ValueError, match=message):
        plan_reminders(**(args | kwargs))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("7d", Offset(7, "d")),
        ("1d", Offset(1, "d")),
        ("2h", Offset(2, "h")),
        ("90m", Offset(90, "m")),
        (" 2H ", Offset(2, "h")),
        ("3 days", Offset(3, "d")),
        ("1 day", Offset(1, "d")),
        ("4 hours", Offset(4, "h")),
        ("45 min", Offset(45, "m")),
        ("120m", Offset(2, "h")),  # the same duration as 2h, so the same reminder
        ("24h", Offset(24, "h")),  # not folded into 1d: hours ignore the wall clock
        ("365d", Offset(365, "d")),
        (timedelta(days=7), Offset(7, "d")),
        (timedelta(hours=2), Offset(2, "h")),
        (timedelta(minutes=90), Offset(90, "m")),
        (timedelta(hours=48), Offset(2, "d")),
        (Offset(180, "m"), Offset(3, "h")),
    ],
)
def test_parse_offset(value: str | timedelta | Offset, expected: Offset) -> None:
    assert parse_offset(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "reminder offset is empty"),
        ("   ", "reminder offset is empty"),
        ("7", "invalid reminder offset '7': expected a number and a unit, e.g. '7d'"),
        ("d", "invalid reminder offset 'd'"),
        ("1.5h", "invalid reminder offset '1.5h'"),
        ("2w", "unknown unit 'w', use d \\(days\\), h \\(hours\\) or m \\(minutes\\)"),
        ("2 weeks", "unknown unit 'weeks'"),
        ("0h", "must be greater than zero, got '0h'"),
        ("-2h", "must be greater than zero, got '-2h'"),
        ("366d", "'366d' is too far ahead; the maximum is 365 days"),
        ("600000m", "too far ahead"),
        ("7d2h", "invalid reminder offset"),
        (timedelta(0), "must be greater than zero"),
        (timedelta(hours=-2), "must be greater than zero"),
        (timedelta(seconds=90), "must be a whole number of minutes"),
    ],
)
def test_parse_offset_rejects_bad_input_with_a_clear_message(value: str | timedelta, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_offset(value)


def test_a_single_string_is_not_a_list_of_offsets() -> None:
    with pytest.raises(TypeError, match="not a single string"):
        plan_reminders(
            starts_at=at(MADRID, 2026, 6, 16, 10), tz=MADRID, now=at(MADRID, 2026, 6, 1), offsets="7d"
        )


def test_parse_offset_rejects_wrong_types() -> None:
    with pytest.raises(TypeError, match="must be a string or a timedelta, got int"):
        parse_offset(7)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("7d", "reminder_7d"),
        ("1d", "reminder_1d"),
        ("2h", "reminder_2h"),
        ("90m", "reminder_90m"),
        ("60m", "reminder_1h"),
    ],
)
def test_offset_kind(value: str, kind: str) -> None:
    assert offset_kind(value) == kind
    assert parse_offset(value).kind == kind
