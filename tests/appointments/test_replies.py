"""Patients answer by WhatsApp: signed sandbox webhook → worker → appointment changed → answer on phone."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import time_machine
from sqlalchemy import select

from tests.appointments.conftest import sandbox_log
from tests.helpers import patient_message, post_signed, sandbox_ids

MADRID = ZoneInfo("Europe/Madrid")
NOW = datetime(2026, 4, 6, 9, 0, tzinfo=MADRID)  # a Monday


def madrid(*args: int) -> datetime:
    return datetime(*args, tzinfo=MADRID)


def say(client, conn, text: str, button_payload: str | None = None) -> None:
    body, _ = patient_message(conn, text)
    if button_payload:
        data = json.loads(body)
        msg = data["entry"][0]["changes"][0]["value"]["messages"][0]
        msg.pop("text", None)
        msg["type"] = "interactive"
        msg["interactive"] = {"type": "button_reply", "button_reply": {"id": button_payload, "title": text}}
        body = json.dumps(data).encode()
    resp = post_signed(client, body, sandbox_ids(conn)[2])
    assert resp.status_code == 200


def phone_texts(conn) -> list[str]:
    return [e["text"] for e in sandbox_log(conn) if e["direction"] == "to_patient"]


def appointment(db, appt_id: int):
    from wa_portal.models import Appointment

    db.session.expire_all()
    return db.session.get(Appointment, appt_id)


def conversation(db):
    from wa_portal.models import Conversation

    db.session.expire_all()
    return db.session.scalar(select(Conversation))


def test_patient_answering_2_cancels_frees_the_slot_and_gets_an_ack(
    db, client, sandbox_conn, book, run_worker, clinic, therapist
):
    from wa_portal.services import appointments

    with time_machine.travel(NOW):
        appt = book(madrid(2026, 4, 8, 10, 40))
        run_worker()
        free_before = appointments.free_slots(
            clinic_id=clinic.id,
            therapist_id=therapist.id,
            start_date=appt.starts_at.date(),
            end_date=appt.starts_at.date(),
        )
        assert appt.starts_at not in free_before
        say(client, sandbox_conn, "2")
        run_worker()
        assert appointment(db, appt.id).status == "cancelled"
        free_after = appointments.free_slots(
            clinic_id=clinic.id,
            therapist_id=therapist.id,
            start_date=appt.starts_at.date(),
            end_date=appt.starts_at.date(),
        )
    assert appt.starts_at in free_after
    texts = phone_texts(sandbox_conn)
    assert texts[-1].startswith("Thank you for letting us know. Your appointment with Dr. Ana Ruiz")
    assert "cancelled" in texts[-1]
    assert {r.state for r in _reminders(db, appt.id)} == {"cancelled"}
    assert conversation(db).status == "bot"  # answered: nobody needs to pick it up


def _reminders(db, appt_id):
    from wa_portal.models import Reminder

    return list(db.session.scalars(select(Reminder).where(Reminder.appointment_id == appt_id)))


def test_confirm_by_keyword_in_spanish(db, client, sandbox_conn, book, run_worker):
    with time_machine.travel(NOW):
        appt = book(madrid(2026, 4, 8, 10, 40), language="es")
        run_worker()
        say(client, sandbox_conn, "Sí, gracias")
        run_worker()
    assert appointment(db, appt.id).status == "confirmed"
    assert phone_texts(sandbox_conn)[-1].startswith("Gracias. Su cita con Dr. Ana Ruiz")


def test_confirm_by_button(db, client, sandbox_conn, book, run_worker):
    with time_machine.travel(NOW):
        appt = book(madrid(2026, 4, 8, 10, 40))
        run_worker()
        say(client, sandbox_conn, "Confirm", button_payload="appt:confirm")
        run_worker()
    assert appointment(db, appt.id).status == "confirmed"
    assert "is confirmed" in phone_texts(sandbox_conn)[-1]


def test_reschedule_offers_numbered_slots_and_books_the_chosen_one(
    db, client, sandbox_conn, book, run_worker
):
    from wa_portal.models import Message

    with time_machine.travel(madrid(2026, 4, 6, 8, 0)):
        appt = book(madrid(2026, 4, 8, 10, 40))
        run_worker()
        old_reminders = {r.id for r in _reminders(db, appt.id)}
        say(client, sandbox_conn, "3")
        run_worker()
        offer = phone_texts(sandbox_conn)[-1]
        assert "1. " in offer and "2. " in offer and "Reply with the number" in offer
        # The next free slots after "now" (Monday 08:00): Monday 09:50 is the second one.
        say(client, sandbox_conn, "2")
        run_worker()
    moved = appointment(db, appt.id)
    assert moved.starts_at.astimezone(MADRID).strftime("%a %H:%M") == "Mon 09:50"
    assert moved.status == "booked"
    assert phone_texts(sandbox_conn)[-1].startswith("Thank you. Your appointment with Dr. Ana Ruiz is now on")
    states = {r.id: r.state for r in _reminders(db, appt.id)}
    assert all(states[i] == "cancelled" for i in old_reminders)
    purposes = [m.purpose for m in db.session.scalars(select(Message).where(Message.direction == "out"))]
    assert purposes.count("appointment_reply") == 2


def test_reschedule_without_free_time_hands_over_to_staff(
    db, client, sandbox_conn, book, run_worker, therapist
):
    from wa_portal.models import AvailabilitySlot

    db.session.query(AvailabilitySlot).delete()
    db.session.commit()
    with time_machine.travel(NOW):
        appt = book(madrid(2026, 4, 8, 10, 40))
        run_worker()
        say(client, sandbox_conn, "reschedule")
        run_worker()
    assert appointment(db, appt.id).status == "booked"
    assert conversation(db).status == "awaiting_human"
    assert len(phone_texts(sandbox_conn)) == 1  # only the confirmation: a person answers


def test_any_other_reply_waits_for_a_person(db, client, sandbox_conn, book, run_worker):
    with time_machine.travel(NOW):
        appt = book(madrid(2026, 4, 8, 10, 40))
        run_worker()
        say(client, sandbox_conn, "Can I bring my daughter along?")
        run_worker()
    assert appointment(db, appt.id).status == "booked"
    conv = conversation(db)
    assert conv.status == "awaiting_human" and conv.awaiting_since is not None
    assert len(phone_texts(sandbox_conn)) == 1


def test_a_reply_from_someone_without_appointments_is_left_alone(db, client, sandbox_conn, run_worker):
    with time_machine.travel(NOW + timedelta(minutes=1)):
        say(client, sandbox_conn, "2")
        run_worker()
    assert conversation(db).status == "awaiting_human"
    assert phone_texts(sandbox_conn) == []
