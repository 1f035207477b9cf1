"""The assistant on the real stack: signed sandbox webhook → worker → the assistant's answer on the phone.

FAQ answers, booking a new appointment by message, hand-off to a person, the quiet period after a
staff reply, the clinic's switch and tenant isolation.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import select

from tests.helpers import patient_message, post_signed, sandbox_ids

MADRID = ZoneInfo("Europe/Madrid")
NOW = datetime(2026, 4, 6, 8, 0, tzinfo=MADRID)  # a Monday, before the therapist's first slot
PHONE = "+34612345678"
HOURS_ANSWER = "We are open Monday to Friday, 9:00 to 19:00."


# --- helpers -----------------------------------------------------------------------------------


def say(client, conn, text: str, phone: str = PHONE, name: str = "Maria Lopez") -> None:
    body, _ = patient_message(conn, text, phone=phone, name=name)
    resp = post_signed(client, body, sandbox_ids(conn)[2])
    assert resp.status_code == 200


def phone_texts(conn, phone: str = PHONE) -> list[str]:
    from wa_portal.services import sandbox

    return [e["text"] for e in sandbox.phone_log(conn, phone) if e["direction"] == "to_patient"]


def conversation(db, conn):
    from wa_portal.models import Conversation

    db.session.expire_all()
    return db.session.scalar(select(Conversation).where(Conversation.connection_id == conn.id))


def outbound(db, conn) -> list:
    from wa_portal.models import Message

    db.session.expire_all()
    return list(
        db.session.scalars(
            select(Message)
            .where(Message.connection_id == conn.id, Message.direction == "out")
            .order_by(Message.id)
        )
    )


def appointments_of(db, clinic_id: int) -> list:
    from wa_portal.models import Appointment

    db.session.expire_all()
    return list(
        db.session.scalars(
            select(Appointment).where(Appointment.clinic_id == clinic_id).order_by(Appointment.starts_at)
        )
    )


def madrid_hm(moment: datetime) -> str:
    return moment.astimezone(MADRID).strftime("%a %H:%M")


@pytest.fixture
def faq(clinic, db):
    from wa_portal.services import assistant

    def add(question: str, keywords: str, answer: str, clinic_id: int | None = None):
        result = assistant.validate_entry({"question": question, "keywords": keywords, "answer": answer})
        assert result.ok, result.errors
        return assistant.create_entry(clinic_id=clinic_id or clinic.id, user_id=None, values=result.values)

    return add


@pytest.fixture
def hours(faq):
    return faq(
        "What are your opening hours?",
        "opening hours, open, hours, horario, abren, funcionamento, aberto",
        HOURS_ANSWER,
    )


def _therapist(clinic, make_user, db, email: str, name: str, start: int = 9, end: int = 13):
    from wa_portal.models import AvailabilityKind, AvailabilitySlot

    user = make_user(clinic, "therapist", email=email, name=name)
    for weekday in range(5):
        db.session.add(
            AvailabilitySlot(
                clinic_id=clinic.id,
                therapist_id=user.id,
                kind=AvailabilityKind.WEEKLY,
                weekday=weekday,
                start_time=time(start),
                end_time=time(end),
            )
        )
    db.session.commit()
    return user


@pytest.fixture
def therapist(clinic, make_user, db):
    """Dr. Ana Ruiz, Monday-Friday 09:00-13:00 clinic time, 50-minute slots."""
    return _therapist(clinic, make_user, db, "ana@sunrise.test", "Dr. Ana Ruiz")


@pytest.fixture
def booking_on(clinic, db, therapist):
    from wa_portal.services import assistant

    assistant.save_switches(clinic_id=clinic.id, user_id=0, enabled=True, booking=True)
    return therapist


# --- FAQ answers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "question",
    ["What are your opening hours?", "¿Cuál es el horario?", "Qual o horário de funcionamento?", "HORÁRIO??"],
)
def test_a_faq_question_is_answered_by_the_assistant_through_delivery(
    db, client, sandbox_conn, run_worker, hours, question
):
    from wa_portal.models import DeliveryAttempt

    with time_machine.travel(NOW):
        say(client, sandbox_conn, question)
        run_worker()
    assert phone_texts(sandbox_conn) == [HOURS_ANSWER]
    [msg] = outbound(db, sandbox_conn)
    assert (msg.author_type, msg.purpose, msg.status) == ("assistant", "assistant", "sent")
    assert msg.extra["faq_entry_id"] == hours.id
    # The normal outbound path: a delivery attempt on the clinic's WhatsApp connection.
    attempts = db.session.scalars(select(DeliveryAttempt).where(DeliveryAttempt.message_id == msg.id)).all()
    assert [(a.channel, a.outcome) for a in attempts] == [("whatsapp", "sent")]
    conv = conversation(db, sandbox_conn)
    assert conv.status == "bot" and conv.awaiting_since is None  # handled: nobody needs to pick it up


def test_the_inbox_shows_the_answer_as_the_assistants(
    db, client, sandbox_conn, run_worker, hours, staff, login
):
    with time_machine.travel(NOW):
        say(client, sandbox_conn, "opening hours?")
        run_worker()
    conv = conversation(db, sandbox_conn)
    html = login(staff).get(f"/inbox/c/{conv.id}").get_data(as_text=True)
    answer = html[html.index(f'id="msg-{outbound(db, sandbox_conn)[0].id}"') :]
    assert '<p class="msg-author">Assistant</p>' in answer[:400]
    assert HOURS_ANSWER in answer[:800]


def test_a_message_nothing_matches_waits_for_a_person(db, client, sandbox_conn, run_worker, hours):
    with time_machine.travel(NOW):
        say(client, sandbox_conn, "My back hurts more since the last session, what should I do")
        run_worker()
    assert phone_texts(sandbox_conn) == []
    conv = conversation(db, sandbox_conn)
    assert conv.status == "awaiting_human" and conv.awaiting_since is not None


def test_a_disabled_entry_does_not_answer(db, client, sandbox_conn, run_worker, hours, clinic):
    from wa_portal.services import assistant

    assistant.set_entry_enabled(clinic_id=clinic.id, entry_id=hours.id, user_id=0, enabled=False)
    with time_machine.travel(NOW):
        say(client, sandbox_conn, "What are your opening hours?")
        run_worker()
    assert phone_texts(sandbox_conn) == []


# --- hand-off ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("locale", "text", "answer"),
    [
        ("en", "Can I talk to a person?", "A member of the team will answer you here soon."),
        ("es", "quiero hablar con alguien", "Una persona del equipo le responderá por aquí en breve."),
        ("pt", "atendente", "Alguém da equipe vai responder você por aqui em breve."),
    ],
)
def test_asking_for_a_person_is_acknowledged_and_waits_for_one(
    db, client, sandbox_conn, run_worker, hours, clinic, locale, text, answer
):
    clinic.locale = locale
    db.session.commit()
    with time_machine.travel(NOW):
        say(client, sandbox_conn, "opening hours")  # answered: the conversation is the assistant's
        run_worker()
        assert conversation(db, sandbox_conn).status == "bot"
        say(client, sandbox_conn, text)
        run_worker()
    assert phone_texts(sandbox_conn) == [HOURS_ANSWER, answer]
    assert outbound(db, sandbox_conn)[-1].author_type == "assistant"
    conv = conversation(db, sandbox_conn)
    assert conv.status == "awaiting_human" and conv.awaiting_since is not None


def test_hand_off_is_listed_in_the_awaiting_view(db, client, sandbox_conn, run_worker, clinic, staff, login):
    with time_machine.travel(NOW):
        say(client, sandbox_conn, "I want to speak to a human")
        run_worker()
        html = login(staff).get("/inbox?view=awaiting").get_data(as_text=True)
    assert "Maria Lopez" in html
    assert phone_texts(sandbox_conn) == ["A member of the team will answer you here soon."]


# --- quiet while people talk, and the switch ----------------------------------------------------


def test_the_assistant_stays_quiet_for_12_hours_after_a_staff_reply(
    db, client, sandbox_conn, run_worker, hours, clinic, staff
):
    from wa_portal.models import Contact
    from wa_portal.services import messaging

    with time_machine.travel(NOW):
        say(client, sandbox_conn, "Hello, I have a question about my invoice")
        run_worker()
        conv = conversation(db, sandbox_conn)
        messaging.queue_reply(
            clinic_id=clinic.id, conversation_id=conv.id, body="Hi Maria, sure!", author_id=staff.id
        )
        run_worker()
    with time_machine.travel(NOW + timedelta(hours=11)):
        say(client, sandbox_conn, "And what are your opening hours?")
        run_worker()
        assert phone_texts(sandbox_conn) == ["Hi Maria, sure!"]  # no bot cutting in
        assert conversation(db, sandbox_conn).status == "awaiting_human"
        say(client, sandbox_conn, "talk to a person")
        run_worker()
        assert phone_texts(sandbox_conn) == ["Hi Maria, sure!"]
        say(client, sandbox_conn, "STOP")  # consent keywords still work
        run_worker()
        db.session.expire_all()
        assert db.session.scalar(select(Contact.consent)) == "opted_out"
        assert "no longer receive messages" in phone_texts(sandbox_conn)[-1]
        say(client, sandbox_conn, "START")
        run_worker()
    with time_machine.travel(NOW + timedelta(hours=13)):
        say(client, sandbox_conn, "What are your opening hours?")
        run_worker()
    assert phone_texts(sandbox_conn)[-1] == HOURS_ANSWER


def test_an_internal_note_does_not_silence_the_assistant(
    db, client, sandbox_conn, run_worker, hours, clinic, staff
):
    from wa_portal.services import conversations

    with time_machine.travel(NOW):
        say(client, sandbox_conn, "Hello")
        run_worker()
        conv = conversation(db, sandbox_conn)
        conversations.add_note(clinic_id=clinic.id, conversation_id=conv.id, author_id=staff.id, body="VIP")
        say(client, sandbox_conn, "opening hours?")
        run_worker()
    assert phone_texts(sandbox_conn) == [HOURS_ANSWER]


def test_switched_off_the_assistant_answers_nothing(
    db, client, sandbox_conn, run_worker, hours, booking_on, clinic
):
    from wa_portal.services import assistant

    assistant.save_switches(clinic_id=clinic.id, user_id=0, enabled=False, booking=True)
    with time_machine.travel(NOW):
        for text in ("What are your opening hours?", "talk to a person", "I'd like to book"):
            say(client, sandbox_conn, text)
            run_worker()
    assert phone_texts(sandbox_conn) == []
    assert conversation(db, sandbox_conn).status == "awaiting_human"


def test_one_clinics_answers_never_reach_another_clinics_patient(
    db, client, sandbox_conn, run_worker, hours, make_clinic, faq
):
    from wa_portal.services import connections

    other = make_clinic("moonlight")
    other_conn = connections.create_connection(
        clinic=other, provider="sandbox", settings={"display_phone": "+34910000099"}, label="Moonlight"
    )
    faq("Parking?", "parking", "Moonlight has no parking.", clinic_id=other.id)
    with time_machine.travel(NOW):
        say(client, other_conn, "What are your opening hours?")  # only Sunrise has that answer
        say(client, sandbox_conn, "Is there parking?")  # only Moonlight has that one
        run_worker()
    assert phone_texts(other_conn) == []
    assert phone_texts(sandbox_conn) == []
    with time_machine.travel(NOW):
        say(client, other_conn, "Is there parking?")
        run_worker()
    assert phone_texts(other_conn) == ["Moonlight has no parking."]
    assert phone_texts(sandbox_conn) == []


# --- booking by message ------------------------------------------------------------------------


def test_booking_by_message_offer_then_pick_books_and_confirms(
    db, client, sandbox_conn, run_worker, booking_on, clinic, redis
):
    from wa_portal.models import Patient

    with time_machine.travel(NOW):
        say(client, sandbox_conn, "Hi, I'd like to book an appointment")
        run_worker()
        offer = phone_texts(sandbox_conn)[-1]
        assert offer.startswith("These are the next free times with Dr. Ana Ruiz:")
        assert "1. Monday, 6 April 2026 at 09:00" in offer and "5. Tuesday, 7 April 2026 at 09:00" in offer
        assert offer.endswith("Reply with the number of the time that suits you.")
        assert conversation(db, sandbox_conn).status == "bot"
        say(client, sandbox_conn, "2")
        run_worker()
    [appt] = appointments_of(db, clinic.id)
    assert madrid_hm(appt.starts_at) == "Mon 09:50"
    assert (appt.therapist_id, appt.status, appt.source) == (booking_on.id, "booked", "assistant")
    patient = db.session.get(Patient, appt.patient_id)
    assert patient.contact_id == conversation(db, sandbox_conn).contact_id
    assert patient.first_name == "Maria"
    # appointments.book sent the confirmation, which the worker delivered.
    confirmation = outbound(db, sandbox_conn)[-1]
    assert (confirmation.purpose, confirmation.status) == ("confirmation", "sent")
    assert phone_texts(sandbox_conn)[-1].startswith(
        "Hi Maria, your appointment with Dr. Ana Ruiz is booked for"
    )
    assert redis.keys("wa:appt:offer:*") == []  # the offer is used up
    assert conversation(db, sandbox_conn).status == "bot"


def test_booking_in_spanish_for_a_spanish_clinic(db, client, sandbox_conn, run_worker, booking_on, clinic):
    clinic.locale = "es"
    db.session.commit()
    with time_machine.travel(NOW):
        say(client, sandbox_conn, "quiero una cita")
        run_worker()
        offer = phone_texts(sandbox_conn)[-1]
        assert offer.startswith("Estos son los próximos horarios libres con Dr. Ana Ruiz:")
        assert "1. lunes, 6 de abril de 2026, 9:00" in offer
        say(client, sandbox_conn, "opción 1")
        run_worker()
    [appt] = appointments_of(db, clinic.id)
    assert madrid_hm(appt.starts_at) == "Mon 09:00"


def test_a_time_taken_meanwhile_gets_a_fresh_offer(db, client, sandbox_conn, run_worker, booking_on, clinic):
    from wa_portal.services import appointments

    with time_machine.travel(NOW):
        say(client, sandbox_conn, "I'd like to book")
        run_worker()
        # Reception books 09:50 for someone else by phone before the patient answers.
        taken = appointments.book(
            clinic_id=clinic.id,
            therapist_id=booking_on.id,
            starts_at=datetime(2026, 4, 6, 9, 50, tzinfo=MADRID),
            patient=appointments.PatientInput(name="Pedro Gil", phone="+34699887766"),
        )
        say(client, sandbox_conn, "2")
        run_worker()
        fresh = phone_texts(sandbox_conn)[-1]
        assert fresh.startswith("Sorry, that time has just been taken.\nThese are the next free times")
        assert "Monday, 6 April 2026 at 09:50" not in fresh
        assert "2. Monday, 6 April 2026 at 10:40" in fresh
        assert [a.id for a in appointments_of(db, clinic.id)] == [taken.id]  # nothing booked for Maria
        say(client, sandbox_conn, "2")
        run_worker()
    booked = [a for a in appointments_of(db, clinic.id) if a.id != taken.id]
    assert [madrid_hm(a.starts_at) for a in booked] == ["Mon 10:40"]


def test_a_number_not_on_the_list_is_asked_again(db, client, sandbox_conn, run_worker, booking_on, clinic):
    with time_machine.travel(NOW):
        say(client, sandbox_conn, "I'd like to book")
        run_worker()
        say(client, sandbox_conn, "7")
        run_worker()
        assert phone_texts(sandbox_conn)[-1] == "Please reply with a number from 1 to 5."
        assert appointments_of(db, clinic.id) == []
        say(client, sandbox_conn, "1")
        run_worker()
    assert [madrid_hm(a.starts_at) for a in appointments_of(db, clinic.id)] == ["Mon 09:00"]


def test_the_offer_is_of_the_patients_usual_therapist(
    db, client, sandbox_conn, run_worker, booking_on, clinic, make_user
):
    from wa_portal.services import appointments

    other = _therapist(clinic, make_user, db, "leo@sunrise.test", "Dr. Leo Marin", start=15, end=19)
    with time_machine.travel(NOW - timedelta(days=7)):
        appointments.book(
            clinic_id=clinic.id,
            therapist_id=other.id,
            starts_at=datetime(2026, 3, 30, 15, 0, tzinfo=MADRID),
            patient=appointments.PatientInput(name="Maria Lopez", phone=PHONE),
        )
        run_worker()
    with time_machine.travel(NOW):
        say(client, sandbox_conn, "I need a new appointment")
        run_worker()
    offer = phone_texts(sandbox_conn)[-1]
    assert offer.startswith("These are the next free times with Dr. Leo Marin:")
    assert "1. Monday, 6 April 2026 at 15:00" in offer


def test_a_new_patient_is_offered_every_therapists_times(
    db, client, sandbox_conn, run_worker, booking_on, clinic, make_user
):
    _therapist(clinic, make_user, db, "leo@sunrise.test", "Dr. Leo Marin", start=8, end=9)
    with time_machine.travel(NOW - timedelta(minutes=30)):  # 07:30: Leo's 08:00 slot is still free
        say(client, sandbox_conn, "I'd like to book")
        run_worker()
    offer = phone_texts(sandbox_conn)[-1]
    assert offer.startswith("These are the next free times:")
    assert "1. Monday, 6 April 2026 at 08:00 (Dr. Leo Marin)" in offer
    assert "2. Monday, 6 April 2026 at 09:00 (Dr. Ana Ruiz)" in offer


def test_a_patient_with_an_upcoming_appointment_asking_to_book_waits_for_a_person(
    db, client, sandbox_conn, run_worker, booking_on, clinic
):
    from wa_portal.services import appointments

    with time_machine.travel(NOW):
        appointments.book(
            clinic_id=clinic.id,
            therapist_id=booking_on.id,
            starts_at=datetime(2026, 4, 8, 10, 40, tzinfo=MADRID),
            patient=appointments.PatientInput(name="Maria Lopez", phone=PHONE),
        )
        run_worker()
        say(client, sandbox_conn, "I'd like to book")
        run_worker()
    assert len(phone_texts(sandbox_conn)) == 1  # only the confirmation
    assert conversation(db, sandbox_conn).status == "awaiting_human"


def test_booking_by_message_is_off_by_default(db, client, sandbox_conn, run_worker, therapist, clinic):
    with time_machine.travel(NOW):
        say(client, sandbox_conn, "I'd like to book")
        run_worker()
    assert phone_texts(sandbox_conn) == []
    assert appointments_of(db, clinic.id) == []
    assert conversation(db, sandbox_conn).status == "awaiting_human"


def test_no_free_time_hands_over_to_a_person(db, client, sandbox_conn, run_worker, booking_on, clinic):
    from wa_portal.models import AvailabilitySlot

    db.session.query(AvailabilitySlot).delete()
    db.session.commit()
    with time_machine.travel(NOW):
        say(client, sandbox_conn, "I'd like to book")
        run_worker()
    assert phone_texts(sandbox_conn) == [
        "There are no free times to book by message right now. "
        "A member of the team will answer you here soon."
    ]
    assert conversation(db, sandbox_conn).status == "awaiting_human"


def test_a_contact_without_a_whatsapp_name_can_book_too(
    db, client, sandbox_conn, run_worker, booking_on, clinic
):
    from wa_portal.models import Patient

    with time_machine.travel(NOW):  # WhatsApp sends no profile name
        say(client, sandbox_conn, "I'd like to book", name="")
        run_worker()
        say(client, sandbox_conn, "1", name="")
        run_worker()
    [appt] = appointments_of(db, clinic.id)
    patient = db.session.get(Patient, appt.patient_id)
    assert (patient.first_name, patient.contact_id) == ("", conversation(db, sandbox_conn).contact_id)
    assert phone_texts(sandbox_conn)[-1].startswith(
        "Hi there, your appointment with Dr. Ana Ruiz is booked for"
    )
