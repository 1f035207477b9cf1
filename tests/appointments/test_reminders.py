"""Reminders with time travel: planned at the right local times (across DST), moved, stopped, swept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import select

from tests.appointments.conftest import sandbox_log

MADRID = ZoneInfo("Europe/Madrid")


def madrid(*args: int) -> datetime:
    return datetime(*args, tzinfo=MADRID)


def reminders_of(db, appt_id: int):
    from wa_portal.models import Reminder

    db.session.expire_all()
    return list(
        db.session.scalars(
            select(Reminder).where(Reminder.appointment_id == appt_id).order_by(Reminder.due_at)
        )
    )


def messages(db, purpose: str | None = None):
    from wa_portal.models import Message

    db.session.expire_all()
    query = select(Message).where(Message.direction == "out").order_by(Message.id)
    if purpose:
        query = query.where(Message.purpose == purpose)
    return list(db.session.scalars(query))


def test_booking_8_days_ahead_gets_7d_1d_2h_reminders_at_local_times_across_dst(
    db, sandbox_conn, book, run_due_jobs
):
    # Clocks in Madrid go back on Sunday 25 October 2026 (CEST +02:00 → CET +01:00).
    with time_machine.travel(madrid(2026, 10, 20, 9, 0), tick=False):
        appt = book(madrid(2026, 10, 28, 10, 0))
        run_due_jobs()  # the confirmation is delivered; no reminder is due yet
    rows = reminders_of(db, appt.id)
    assert [(r.kind, r.due_at.astimezone(MADRID).strftime("%d %H:%M %z")) for r in rows] == [
        ("reminder_7d", "21 10:00 +0200"),  # same wall-clock time, summer offset
        ("reminder_1d", "27 10:00 +0100"),  # same wall-clock time, winter offset
        ("reminder_2h", "28 08:00 +0100"),  # exactly two hours, at the end of quiet hours
    ]
    assert [m.purpose for m in messages(db)] == ["confirmation"]
    confirmation = messages(db, "confirmation")[0]
    assert confirmation.extra["appointment_id"] == appt.id
    assert confirmation.template_name == "appointment_confirmation"

    for row in rows:
        # One minute before its time nothing goes; at its time the scheduled job sends it.
        with time_machine.travel(row.due_at - timedelta(minutes=1), tick=False):
            run_due_jobs()
            assert not messages(db, row.kind)
        with time_machine.travel(row.due_at + timedelta(seconds=1), tick=False):
            run_due_jobs()
            sent = messages(db, row.kind)
            assert len(sent) == 1, row.kind
            assert sent[0].status in ("sent", "delivered")
            assert sent[0].extra["reminder_id"] == row.id
    assert {r.state for r in reminders_of(db, appt.id)} == {"sent"}
    phone = [e for e in sandbox_log(sandbox_conn) if e["direction"] == "to_patient"]
    assert len(phone) == 4
    assert "Dr. Ana Ruiz" in phone[-1]["text"] and "10:00" in phone[-1]["text"]
    assert "Wednesday, October 28, 2026" in phone[-1]["text"] or "28" in phone[-1]["text"]


def test_reschedule_replans_and_the_old_jobs_send_nothing(db, sandbox_conn, book, run_due_jobs):
    from wa_portal.jobs import tasks
    from wa_portal.services import appointments

    with time_machine.travel(madrid(2026, 3, 2, 9, 0), tick=False):
        appt = book(madrid(2026, 3, 12, 11, 0))
        old = reminders_of(db, appt.id)
        appointments.reschedule(
            clinic_id=appt.clinic_id, appointment_id=appt.id, starts_at=madrid(2026, 3, 13, 12, 0)
        )
        run_due_jobs()
    rows = reminders_of(db, appt.id)
    assert {r.state for r in rows if r.id in {o.id for o in old}} == {"cancelled"}
    new = [r for r in rows if r.state == "pending"]
    assert [(r.kind, r.due_at.astimezone(MADRID).strftime("%d %H:%M")) for r in new] == [
        ("reminder_7d", "06 12:00"),
        ("reminder_1d", "12 12:00"),
        ("reminder_2h", "13 10:00"),
    ]
    assert [m.purpose for m in messages(db)] == ["confirmation", "reschedule"]
    assert "12:00" in messages(db, "reschedule")[0].body

    old_1d = next(r for r in old if r.kind == "reminder_1d")
    with time_machine.travel(old_1d.due_at + timedelta(seconds=1), tick=False):
        assert tasks.send_reminder(old_1d.id) is False  # a job of the old plan fires: nothing
        run_due_jobs()
    assert not messages(db, "reminder_1d")
    new_1d = next(r for r in new if r.kind == "reminder_1d")
    with time_machine.travel(new_1d.due_at + timedelta(seconds=1), tick=False):
        run_due_jobs()
    assert len(messages(db, "reminder_1d")) == 1


def test_cancellation_stops_reminders_even_when_a_job_still_fires(db, sandbox_conn, book, run_due_jobs):
    from wa_portal.jobs import tasks
    from wa_portal.services import appointments

    with time_machine.travel(madrid(2026, 5, 4, 9, 0), tick=False):
        appt = book(madrid(2026, 5, 12, 10, 0))
        appointments.cancel(clinic_id=appt.clinic_id, appointment_id=appt.id)
        run_due_jobs()
    rows = reminders_of(db, appt.id)
    assert {r.state for r in rows} == {"cancelled"}
    assert [m.purpose for m in messages(db)] == ["confirmation", "cancellation"]
    for row in rows:
        with time_machine.travel(row.due_at + timedelta(minutes=5), tick=False):
            assert tasks.send_reminder(row.id) is False
            run_due_jobs()
            from wa_portal.services import sweeper

            sweeper.sweep(older_than=timedelta(0))
    assert [m.purpose for m in messages(db)] == ["confirmation", "cancellation"]


def test_quiet_hours_move_a_reminder_to_their_end(db, sandbox_conn, book, run_due_jobs, clinic):
    # 2 hours before a 09:30 appointment is 07:30, inside the default quiet hours (21:00-08:00).
    with time_machine.travel(madrid(2026, 6, 1, 12, 0), tick=False):
        appt = book(madrid(2026, 6, 4, 9, 30))
    two_h = next(r for r in reminders_of(db, appt.id) if r.kind == "reminder_2h")
    assert two_h.due_at.astimezone(MADRID).strftime("%d %H:%M") == "04 08:00"
    with time_machine.travel(madrid(2026, 6, 4, 7, 30), tick=False):
        run_due_jobs()
        from wa_portal.services import sweeper

        sweeper.sweep(older_than=timedelta(0))
        assert not messages(db, "reminder_2h")
    with time_machine.travel(madrid(2026, 6, 4, 8, 0, 1), tick=False):
        run_due_jobs()
        assert len(messages(db, "reminder_2h")) == 1


def test_clinic_offsets_and_quiet_hours_come_from_settings(db, sandbox_conn, book, clinic):
    clinic.settings = {"reminder_offsets": ["3d", "90m"], "quiet_hours": {"start": "22:00", "end": "07:00"}}
    db.session.commit()
    with time_machine.travel(madrid(2026, 6, 1, 12, 0), tick=False):
        appt = book(madrid(2026, 6, 8, 8, 0))
    assert [
        (r.kind, r.due_at.astimezone(MADRID).strftime("%d %H:%M")) for r in reminders_of(db, appt.id)
    ] == [
        ("reminder_3d", "05 08:00"),
        ("reminder_90m", "08 07:00"),  # 06:30 is quiet until 07:00
    ]


def test_sweeper_sends_a_due_reminder_whose_job_redis_lost_once(db, sandbox_conn, book, redis, run_worker):
    from wa_portal.jobs import tasks
    from wa_portal.services import sweeper

    with time_machine.travel(madrid(2026, 4, 6, 9, 0), tick=False):
        appt = book(madrid(2026, 4, 9, 10, 0))
    redis.flushdb()  # Redis lost every scheduled job
    one_d = next(r for r in reminders_of(db, appt.id) if r.kind == "reminder_1d")
    with time_machine.travel(one_d.due_at + timedelta(minutes=2), tick=False):
        result = sweeper.sweep()
        assert result.reminders == 1
        assert sweeper.sweep().reminders == 0
        assert tasks.send_reminder(one_d.id) is False  # the job turning up late changes nothing
        run_worker(include_scheduled=False)
    sent = messages(db, "reminder_1d")
    assert len(sent) == 1 and sent[0].status in ("sent", "delivered")
    row = next(r for r in reminders_of(db, appt.id) if r.id == one_d.id)
    assert row.state == "sent" and row.message_id == sent[0].id


def test_booking_commits_without_any_connection_and_reminders_are_planned(db, book):
    from wa_portal.models import Appointment

    with time_machine.travel(madrid(2026, 4, 6, 9, 0), tick=False):
        appt = book(madrid(2026, 4, 20, 10, 0))
    db.session.expire_all()
    assert db.session.get(Appointment, appt.id).status == "booked"
    assert len(reminders_of(db, appt.id)) == 3
    assert messages(db) == []


@pytest.mark.parametrize(
    ("language", "words"),
    [("es", "Su cita con Dr. Ana Ruiz"), ("pt", "Sua consulta com Dr. Ana Ruiz"), ("hi", "अपॉइंटमेंट")],
)
def test_confirmation_in_the_patients_language(db, sandbox_conn, book, language, words):
    with time_machine.travel(madrid(2026, 4, 6, 9, 0), tick=False):
        book(madrid(2026, 4, 20, 10, 0), language=language)
    msg = messages(db, "confirmation")[0]
    assert words in msg.body
    assert msg.template_language in ("es", "pt_BR", "hi")
    assert [b["id"] for b in msg.extra["buttons"]] == ["appt:confirm", "appt:cancel", "appt:reschedule"]


def test_reminder_for_an_appointment_that_already_started_is_skipped(db, sandbox_conn, book):
    from wa_portal.services import reminders

    with time_machine.travel(madrid(2026, 4, 6, 9, 0), tick=False):
        appt = book(madrid(2026, 4, 9, 10, 0))
    row = next(r for r in reminders_of(db, appt.id) if r.kind == "reminder_2h")
    with time_machine.travel(datetime(2026, 4, 9, 9, 0, tzinfo=UTC), tick=False):
        assert reminders.send_reminder(row.id) is False
    assert reminders_of(db, appt.id)[-1].state == "skipped"


def test_bulk_planning_writes_the_same_rows_as_single_planning(db, clinic, book):
    """plan_many (COPY on PostgreSQL) plans exactly what plan() plans for one appointment."""
    from wa_portal.models import Reminder
    from wa_portal.services import reminders

    now = madrid(2026, 10, 20, 9, 0)
    with time_machine.travel(now, tick=False):
        appt = book(madrid(2026, 10, 28, 10, 0))
    single = [(r.kind, r.due_at) for r in reminders_of(db, appt.id)]
    db.session.query(Reminder).delete()
    db.session.commit()
    assert reminders.plan_many([appt], clinic=clinic, now=now) == 3
    db.session.commit()
    bulk = reminders_of(db, appt.id)
    assert [(r.kind, r.due_at) for r in bulk] == single
    assert {(r.state, r.planned_starts_at, r.clinic_id) for r in bulk} == {
        ("pending", appt.starts_at, clinic.id)
    }


def test_demo_seed_adds_hours_and_approved_templates_once(db):
    from wa_portal.models import AvailabilitySlot, MessageTemplate
    from wa_portal.services import demo

    demo.seed()
    demo.seed()
    assert db.session.query(AvailabilitySlot).count() == 10
    templates = db.session.scalars(
        select(MessageTemplate).where(MessageTemplate.name.like("appointment_%"))
    ).all()
    assert len(templates) == 12  # confirmation, reminder, cancellation x en/es/pt_BR/hi
    assert {(t.name, t.language) for t in templates} >= {
        ("appointment_reminder", "pt_BR"),
        ("appointment_confirmation", "hi"),
        ("appointment_cancellation", "es"),
    }
    assert {t.status for t in templates} == {"approved"}
