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
