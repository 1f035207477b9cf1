"""Demo data for `make run`: a clinic, its team and a sandbox number (safe to run again)."""

from __future__ import annotations

from sqlalchemy import select

from ..extensions import db
from ..models import Clinic, Role, User
from . import connections

DEMO_SLUG = "demo"
DEMO_PASSWORD = "demo-password"  # noqa: S105 - printed for the local demo on purpose
DEMO_USERS = (
    ("admin@demo.clinic", "Alex Admin", Role.ADMIN),
    ("reception@demo.clinic", "Rita Reception", Role.STAFF),
    ("therapist@demo.clinic", "Dr. Tomás Rivera", Role.THERAPIST),
)


def seed() -> list[str]:
    clinic = db.session.scalar(select(Clinic).where(Clinic.slug == DEMO_SLUG))
    lines: list[str] = []
    if clinic is None:
        clinic = Clinic(
            name="Sunrise Therapy Clinic", slug=DEMO_SLUG, timezone="Europe/Madrid", locale="en", country="ES"
        )
        db.session.add(clinic)
        db.session.commit()
        lines.append(f"created clinic {clinic.name}")
    for email, name, role in DEMO_USERS:
        if db.session.scalar(select(User).where(User.email == email)) is None:
            user = User(clinic_id=clinic.id, email=email, name=name, role=role)
            user.set_password(DEMO_PASSWORD)
            db.session.add(user)
            lines.append(f"created user {email} ({role})")
    db.session.commit()
    if not connections.list_for_clinic(clinic.id, provider="sandbox"):
        connections.create_connection(
            clinic=clinic,
            provider="sandbox",
            settings={"display_phone": "+34910000001"},
            label="Clinic WhatsApp (sandbox)",
        )
        lines.append("created sandbox WhatsApp connection")
    lines.extend(seed_appointments(clinic))  # appointments (issue 6)
    lines.extend(seed_delivery_templates(clinic))  # delivery (issue 4)
    lines.extend(seed_sample_activity(clinic))
    lines.extend(seed_assistant(clinic))  # the assistant's FAQ answers and booking by message
    lines.append(f"demo login: {DEMO_USERS[1][0]} / {DEMO_PASSWORD}  (admin: {DEMO_USERS[0][0]})")
    return lines


# --- appointments (issue 6) --------------------------------------------------------------------


def seed_appointments(clinic: Clinic) -> list[str]:
    """The demo therapist's weekly hours and the approved appointment templates (idempotent)."""
    from datetime import time

    from ..models import AvailabilityKind, AvailabilitySlot, MessageTemplate, TemplateCategory, TemplateStatus
    from .appointment_texts import ACTION_BUTTONS, TEMPLATE_BODIES, TEMPLATE_LANGUAGE_CODES

    lines: list[str] = []
    therapist = db.session.scalar(select(User).where(User.email == DEMO_USERS[2][0]))
    if therapist is not None and not db.session.scalar(
        select(AvailabilitySlot.id).where(AvailabilitySlot.therapist_id == therapist.id)
    ):
        for weekday in range(5):  # Monday to Friday, 09:00-13:00 and 15:00-19:00 clinic time
            for start, end in ((time(9), time(13)), (time(15), time(19))):
                db.session.add(
                    AvailabilitySlot(
                        clinic_id=clinic.id,
                        therapist_id=therapist.id,
                        kind=AvailabilityKind.WEEKLY,
                        weekday=weekday,
                        start_time=start,
                        end_time=end,
                    )
                )
        lines.append(f"added weekly hours for {therapist.email}")
    existing = {
        (t.name, t.language)
        for t in db.session.scalars(select(MessageTemplate).where(MessageTemplate.clinic_id == clinic.id))
    }
    added = 0
    for (name, lang), body in TEMPLATE_BODIES.items():
        code = TEMPLATE_LANGUAGE_CODES[lang]
        if (name, code) in existing:
            continue
        db.session.add(
            MessageTemplate(
                clinic_id=clinic.id,
                name=name,
                language=code,
                category=TemplateCategory.UTILITY,
                purpose=name.removeprefix("appointment_"),
                body=body,
                buttons=None
                if name == "appointment_cancellation"
                else [title for _, title in ACTION_BUTTONS[lang]],
                status=TemplateStatus.APPROVED,
            )
        )
        added += 1
    db.session.commit()
    if added:
        lines.append(f"added {added} approved appointment template(s)")
    return lines


# --- delivery (issue 4) ------------------------------------------------------------------------

DELIVERY_TEMPLATES = (
    ("hello_followup", "en", "Hello {{1}}, the clinic has a message for you. Reply to read it."),
    ("hello_followup", "es", "Hola {{1}}, la clínica tiene un mensaje para ti. Responde para leerlo."),
    ("hello_followup", "pt_BR", "Olá {{1}}, a clínica tem uma mensagem para você. Responda para lê-la."),
)


def seed_delivery_templates(clinic: Clinic) -> list[str]:
    """Approved generic utility templates the composer offers outside the 24-hour window (idempotent)."""
    from ..models import MessageTemplate, TemplateCategory, TemplateStatus

    existing = {
        (t.name, t.language)
        for t in db.session.scalars(select(MessageTemplate).where(MessageTemplate.clinic_id == clinic.id))
    }
    added = 0
    for name, lang, body in DELIVERY_TEMPLATES:
        if (name, lang) not in existing:
            db.session.add(
                MessageTemplate(
                    clinic_id=clinic.id,
                    name=name,
                    language=lang,
                    category=TemplateCategory.UTILITY,
                    purpose="generic",
                    body=body,
                    status=TemplateStatus.APPROVED,
                )
            )
            added += 1
    db.session.commit()
    return [f"added {added} approved follow-up template(s)"] if added else []


# --- a lived-in inbox -----------------------------------------------------------------------------

# (name, phone, language, status, minutes since the patient wrote, the thread: (who, text, status))
SAMPLE_CONVERSATIONS = (
    (
        "Lucía Fernández",
        "+34611223344",
        "es",
        "awaiting_human",
        12,
        (("patient", "Hola, ¿puedo cambiar mi cita del jueves a la tarde?", "received"),),
    ),
    (
        "James Whitaker",
        "+447700900123",
        "en",
        "assigned",
        95,
        (
            ("patient", "Hi, is there parking near the clinic?", "received"),
            ("staff", "Hi James, yes: the public car park on Calle Mayor is 2 minutes away.", "read"),
            ("patient", "Great, thanks! See you on Monday.", "received"),
        ),
    ),
    (
        "Ana Souza",
        "+351912345678",
        "pt",
        "awaiting_human",
        26 * 60,
        (
            ("patient", "Bom dia, preciso de uma fatura da última sessão.", "received"),
            ("staff", "Good morning Ana, here is the invoice you asked for.", "failed"),
        ),
    ),
    (
        "Priya Sharma",
        "+34622334455",
        "hi",
        "closed",
        3 * 24 * 60,
        (
            ("patient", "Thank you for the session today!", "received"),
            ("staff", "You're welcome, Priya. Take care!", "delivered"),
        ),
    ),
)


def seed_sample_activity(clinic: Clinic) -> list[str]:
    """A few conversations in every state and this week's appointments, once, so the demo is not empty.

    Appointments go through the booking service, so their confirmations are real queued messages
    the demo worker delivers to the sandbox phone (and the notification log shows them).
    """
    from datetime import datetime, timedelta

    from ..models import (
        AuthorType,
        Contact,
        Conversation,
        Direction,
        Message,
        MessageStatus,
        utcnow,
    )
    from . import appointments

    if db.session.scalar(select(Conversation.id).where(Conversation.clinic_id == clinic.id).limit(1)):
        return []
    conn = connections.list_for_clinic(clinic.id, provider="sandbox")[0]
    reception = db.session.scalar(select(User).where(User.email == DEMO_USERS[1][0]))
    now = utcnow()
    for name, phone, language, status, minutes, thread in SAMPLE_CONVERSATIONS:
        contact = Contact(clinic_id=clinic.id, phone=phone, name=name, language=language, consent="opted_in")
        db.session.add(contact)
        db.session.flush()
        last_in = now - timedelta(minutes=minutes)
        conv = Conversation(
            clinic_id=clinic.id,
            connection_id=conn.id,
            contact_id=contact.id,
            status=status,
            assignee_id=reception.id if status == "assigned" and reception else None,
            last_inbound_at=last_in,
            awaiting_since=last_in if status == "awaiting_human" else None,
            unread_count=1 if status == "awaiting_human" else 0,
        )
        db.session.add(conv)
        db.session.flush()
        at = last_in - timedelta(minutes=len(thread))
        for n, (who, text, state) in enumerate(thread):
            at = at + timedelta(minutes=1)
            outbound = who == "staff"
            db.session.add(
                Message(
                    clinic_id=clinic.id,
                    conversation_id=conv.id,
                    connection_id=conn.id,
                    direction=Direction.OUT if outbound else Direction.IN,
                    author_type=AuthorType.STAFF if outbound else AuthorType.PATIENT,
                    author_id=reception.id if outbound and reception else None,
                    kind="text",
                    body=text,
                    status=state,
                    provider_message_id=f"sandbox-demo-{contact.id}-{n}",
                    error_code="131026" if state == MessageStatus.FAILED else None,
                    error_detail=(
                        "This number is not on WhatsApp and the clinic has no SMS sender set up."
                        if state == MessageStatus.FAILED
                        else None
                    ),
                    failed_at=at if state == MessageStatus.FAILED else None,
                    created_at=at,
                )
            )
        conv.last_message_at = at
        conv.last_message_preview = thread[-1][1][:200]
    db.session.commit()

    therapist = db.session.scalar(select(User).where(User.email == DEMO_USERS[2][0]))
    booked = 0
    if therapist is not None:
        zone = appointments.zone(clinic)
        today = datetime.now(zone).date()
        wanted = [
            ("James Whitaker", "+447700900123", "en", 1, 10),
            ("Lucía Fernández", "+34611223344", "es", 3, 12),
            ("Marta Gil", "+34633445566", "es", 9, 17),
        ]
        for name, phone, language, days, hour in wanted:
            day = today + timedelta(days=days)
            while day.weekday() >= 5:  # the demo therapist works Monday to Friday
                day += timedelta(days=1)
            start = datetime(day.year, day.month, day.day, hour, 0, tzinfo=zone)
            try:
                appointments.book(
                    clinic_id=clinic.id,
                    therapist_id=therapist.id,
                    starts_at=start,
                    patient=appointments.PatientInput(name=name, phone=phone, language=language),
                    location="Sunrise Therapy Clinic, room 2",
                    source="demo",
                )
                booked += 1
            except appointments.AppointmentError:
                db.session.rollback()
    return [f"added {len(SAMPLE_CONVERSATIONS)} sample conversations and {booked} appointments"]


# --- the assistant ---------------------------------------------------------------------------------

# (question, trigger keywords in en/es/pt, answer)
DEMO_FAQ = (
    (
        "What are your opening hours?",
        "opening hours, opening times, open, hours, horario, horarios, abren, abierto, abre, aberto, "
        "funcionamento, que horas",
        "We are open Monday to Friday, 9:00 to 13:00 and 15:00 to 19:00. Closed on weekends and holidays.",
    ),
    (
        "Where are you?",
        "address, where are you, location, find you, directions, dirección, donde estan, ubicación, "
        "endereço, onde fica, onde ficam, localização",
        "Sunrise Therapy Clinic, Calle Mayor 12, 2nd floor, 28013 Madrid. Metro: Sol (lines 1, 2, 3).",
    ),
    (
        "Is there parking?",
        "parking, park, car park, car, aparcar, aparcamiento, parking cerca, estacionamiento, coche, "
        "estacionamento, estacionar, carro",
        "There is no parking at the clinic. The public car park on Calle Mayor is 2 minutes away on foot.",
    ),
    (
        "How much does a session cost?",
        "price, prices, cost, how much, fee, fees, precio, cuánto cuesta, cuanto vale, tarifa, "
        "preço, quanto custa, valor",
        "A first session (60 min) is 70 €, follow-up sessions (50 min) are 60 €. "
        "We accept card, cash and Bizum.",
    ),
    (
        "What should I bring?",
        "what to bring, bring, documents, traer, llevar, documentos, levar, trazer",
        "Please bring your ID, any previous reports and a list of the medication you take. "
        "Comfortable clothes help for physiotherapy sessions.",
    ),
)


def seed_assistant(clinic: Clinic) -> list[str]:
    """The demo clinic's FAQ answers, and booking by message on, so `make run` shows both (once)."""
    from . import assistant

    if assistant.list_entries(clinic_id=clinic.id):
        return []
    for question, keywords, answer in DEMO_FAQ:
        result = assistant.validate_entry({"question": question, "keywords": keywords, "answer": answer})
        assert result.ok, result.errors  # the demo's own data: a typo here fails `make run` loudly
        assistant.create_entry(clinic_id=clinic.id, user_id=None, values=result.values)
    if assistant.BOOKING_KEY not in (clinic.settings or {}):
        clinic.settings = {**(clinic.settings or {}), assistant.BOOKING_KEY: True}
        db.session.commit()
    return [f"added {len(DEMO_FAQ)} assistant answers (FAQ) and turned on booking by message"]
