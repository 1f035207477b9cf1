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
    lines.append(f"demo login: {DEMO_USERS[1][0]} / {DEMO_PASSWORD}  (admin: {DEMO_USERS[0][0]})")
    return lines
