"""Booking: patients and contacts, free slots, the double-booking constraint, status changes."""

from __future__ import annotations

import threading
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import func, select

MADRID = ZoneInfo("Europe/Madrid")


def madrid(*args: int) -> datetime:
    return datetime(*args, tzinfo=MADRID)


def test_patient_phone_is_normalized_and_linked_to_one_contact(db, book):
    from wa_portal.models import Contact, Patient

    with time_machine.travel(madrid(2026, 4, 6, 9, 0), tick=False):
        first = book(madrid(2026, 4, 20, 10, 0), phone="612 34 56 78")
        second = book(madrid(2026, 4, 21, 10, 0), phone="+34 612-345-678")
    assert first.patient_id == second.patient_id
    assert db.session.scalar(select(func.count(Contact.id))) == 1
    patient = db.session.get(Patient, first.patient_id)
    assert patient.contact.phone == "+34612345678"
    assert (patient.first_name, patient.last_name) == ("Maria", "Lopez")


def test_free_slots_follow_weekly_hours_one_offs_blocks_and_bookings(db, clinic, therapist, book):
    from wa_portal.services import appointments

    with time_machine.travel(madrid(2026, 4, 6, 8, 0), tick=False):  # Monday
        appointments.add_availability(
            clinic_id=clinic.id,
            therapist_id=therapist.id,
            kind="blocked",
            day=date(2026, 4, 7),
            start_time=time(9, 0),
            end_time=time(10, 0),
        )
        appointments.add_availability(
            clinic_id=clinic.id,
            therapist_id=therapist.id,
            kind="one_off",
            day=date(2026, 4, 11),  # Saturday
            start_time=time(10, 0),
            end_time=time(11, 0),
        )
        book(madrid(2026, 4, 8, 10, 40))
        slots = appointments.free_slots(
            clinic_id=clinic.id,
            therapist_id=therapist.id,
            start_date=date(2026, 4, 6),
            end_date=date(2026, 4, 12),
        )
    by_day: dict[str, list[str]] = {}
    for s in slots:
        local = s.astimezone(MADRID)
        by_day.setdefault(local.strftime("%a"), []).append(local.strftime("%H:%M"))
    assert by_day == {
        "Mon": ["09:00", "09:50", "10:40", "11:30"],
        "Tue": ["10:40", "11:30"],  # 09:00-10:00 blocked takes the first two
        "Wed": ["09:00", "09:50", "11:30"],  # 10:40 is booked
        "Thu": ["09:00", "09:50", "10:40", "11:30"],
        "Fri": ["09:00", "09:50", "10:40", "11:30"],
        "Sat": ["10:00"],  # one-off hours
    }


def test_slot_length_is_a_clinic_setting(db, clinic, therapist):
    from wa_portal.services import appointments

    clinic.settings = {"slot_minutes": 60}
    db.session.commit()
    with time_machine.travel(madrid(2026, 4, 6, 8, 0), tick=False):
        slots = appointments.free_slots(
            clinic_id=clinic.id,
            therapist_id=therapist.id,
            start_date=date(2026, 4, 6),
            end_date=date(2026, 4, 6),
        )
    assert [s.astimezone(MADRID).strftime("%H:%M") for s in slots] == ["09:00", "10:00", "11:00", "12:00"]


def test_overlapping_booking_is_refused(db, book):
    from wa_portal.services.appointments import SlotTaken

    with time_machine.travel(madrid(2026, 4, 6, 9, 0), tick=False):
        book(madrid(2026, 4, 20, 10, 0))
        with pytest.raises(SlotTaken):
            book(madrid(2026, 4, 20, 10, 30), phone="+34600000001")


def test_concurrent_double_booking_exactly_one_succeeds(app, db, clinic, therapist):
    """Eight requests for the same slot at the same moment, each with its own session: one wins."""
    from wa_portal.models import Appointment
    from wa_portal.services import appointments

    starts = madrid(2030, 4, 22, 10, 0)
    barrier = threading.Barrier(8)
    outcomes: list[str] = []
    lock = threading.Lock()
    clinic_id, therapist_id = clinic.id, therapist.id

    def attempt(n: int) -> None:
        with app.app_context():
            barrier.wait()
            try:
                appointments.book(
                    clinic_id=clinic_id,
                    therapist_id=therapist_id,
                    starts_at=starts,
                    patient=appointments.PatientInput(name=f"Patient {n}", phone=f"+3461234560{n}"),
                )
                result = "booked"
            except appointments.SlotTaken:
                result = "taken"
            finally:
                db.session.remove()
            with lock:
                outcomes.append(result)

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes) == ["booked"] + ["taken"] * 7
    db.session.expire_all()
    assert db.session.scalar(select(func.count(Appointment.id))) == 1


def test_database_constraint_alone_refuses_a_second_active_booking(db, clinic, therapist, book):
    """Even a writer that skips the service's overlap check cannot store a second active booking."""
    from sqlalchemy.exc import IntegrityError

    from wa_portal.models import Appointment

    with time_machine.travel(madrid(2026, 4, 6, 9, 0), tick=False):
        first = book(madrid(2026, 4, 20, 10, 0))
    db.session.add(
        Appointment(
            clinic_id=clinic.id,
            patient_id=first.patient_id,
            therapist_id=therapist.id,
            starts_at=first.starts_at,
            ends_at=first.ends_at,
        )
    )
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()


def test_cancelled_slot_can_be_booked_again(db, book):
    from wa_portal.services import appointments

    with time_machine.travel(madrid(2026, 4, 6, 9, 0), tick=False):
        first = book(madrid(2026, 4, 20, 10, 0))
        appointments.cancel(clinic_id=first.clinic_id, appointment_id=first.id)
        second = book(madrid(2026, 4, 20, 10, 0), phone="+34600000002")
    assert second.status == "booked"


def test_outcomes_only_after_the_start_and_only_by_the_therapist(db, book, clinic, make_user):
    from wa_portal.services import appointments

    other = make_user(clinic, "therapist", email="bob@sunrise.test")
    with time_machine.travel(madrid(2026, 4, 6, 9, 0), tick=False):
        appt = book(madrid(2026, 4, 8, 10, 0))
        with pytest.raises(appointments.AppointmentError):
            appointments.set_outcome(clinic_id=clinic.id, appointment_id=appt.id, status="completed")
    with time_machine.travel(madrid(2026, 4, 8, 11, 0), tick=False):
        with pytest.raises(appointments.NotFound):
            appointments.set_outcome(
                clinic_id=clinic.id, appointment_id=appt.id, status="no_show", therapist_id=other.id
            )
        done = appointments.set_outcome(
            clinic_id=clinic.id, appointment_id=appt.id, status="no_show", therapist_id=appt.therapist_id
        )
    assert done.status == "no_show"


def test_another_clinics_appointment_does_not_exist(db, book, make_clinic):
    from wa_portal.services import appointments

    other = make_clinic("moon")
    with time_machine.travel(madrid(2026, 4, 6, 9, 0), tick=False):
        appt = book(madrid(2026, 4, 20, 10, 0))
    with pytest.raises(appointments.NotFound):
        appointments.get(clinic_id=other.id, appointment_id=appt.id)
    with pytest.raises(appointments.NotFound):
        appointments.cancel(clinic_id=other.id, appointment_id=appt.id)


def test_booking_commits_when_redis_and_providers_are_down(app, db, book, sandbox_conn, private_redis, redis):
    """No Redis (no jobs, no realtime) and no provider reached: the booking and its rows still commit."""
    from wa_portal.models import Appointment, Message, Reminder
    from wa_portal.services import sweeper

    private_redis()
    private_redis.stop()  # a Redis that was there and is gone
    saved = app.config["REDIS_URL"]
    app.config["REDIS_URL"] = private_redis.url
    try:
        with time_machine.travel(madrid(2026, 4, 6, 9, 0), tick=False):
            appt = book(madrid(2026, 4, 20, 10, 0))
    finally:
        app.config["REDIS_URL"] = saved
    db.session.expire_all()
    assert db.session.get(Appointment, appt.id).status == "booked"
    assert db.session.scalar(select(func.count(Reminder.id))) == 3
    msg = db.session.scalar(select(Message).where(Message.purpose == "confirmation"))
    assert msg.status == "queued"  # the intent is durable; the sweeper re-enqueues it
    with time_machine.travel(madrid(2026, 4, 6, 9, 5), tick=False):
        assert sweeper.sweep().messages == 1
