"""Broadcast fixtures: a clinic with WhatsApp (sandbox), SMS (Twilio emulator) and email (moto SES),
a therapist, and patients with appointments on one day in every situation a broadcast meets."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

import pytest

from tests.delivery.conftest import _twilio, fast_delivery, sms_conn, twilio  # noqa: F401 - fixtures
from tests.emulators.moto import credentials, moto_server, reset, sent_emails, verify_email

FROM_EMAIL = "clinic@sunrise.test"


@pytest.fixture(scope="module")
def _moto() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture
def moto(_moto: str) -> str:
    reset(_moto)
    verify_email(_moto, FROM_EMAIL)
    return _moto


@pytest.fixture
def ses_conn(clinic, moto, db):
    from wa_portal.services import connections

    return connections.create_connection(
        clinic=clinic,
        provider="ses",
        settings={"from_email": FROM_EMAIL, "endpoint_url": moto, **credentials()},
        label="Clinic email",
    )


@pytest.fixture
def generic_template(clinic, db):
    """An approved generic template: WhatsApp to patients whose 24-hour window is closed."""
    from wa_portal.models import MessageTemplate

    tpl = MessageTemplate(
        clinic_id=clinic.id,
        name="hello_followup",
        language="en",
        purpose="generic",
        body="Hello {{1}}, the clinic has a message for you. Reply to this message to read it.",
    )
    db.session.add(tpl)
    db.session.commit()
    return tpl


@pytest.fixture
def therapist(clinic, make_user):
    return make_user(clinic, "therapist", email="ana@sunrise.test", name="Dr. Ana Ruiz")


@pytest.fixture
def channels(sandbox_conn, sms_conn, ses_conn, generic_template, fast_delivery):  # noqa: F811
    """WhatsApp first (the sandbox is the clinic's first connection), then SMS, then email."""
    return {"whatsapp": sandbox_conn, "sms": sms_conn, "email": ses_conn}


def tomorrow(clinic) -> date:
    from wa_portal.models import utcnow
    from wa_portal.services import appointments

    return utcnow().astimezone(appointments.zone(clinic)).date() + timedelta(days=1)


@dataclass
class Day:
    day: date
    patients: dict[str, Any]  # short name → Patient
    expected: dict[str, str | None]  # short name → first channel (None: not sent)


@pytest.fixture
def make_patient(clinic, db):
    from wa_portal.models import Consent, Contact, Patient

    def make(first: str, phone: str, **contact_kw: Any) -> Any:
        contact = Contact(clinic_id=clinic.id, phone=phone, name=f"{first} Test", language="en", **contact_kw)
        db.session.add(contact)
        db.session.flush()
        patient = Patient(clinic_id=clinic.id, contact_id=contact.id, first_name=first, last_name="Test")
        db.session.add(patient)
        db.session.commit()
        return patient

    make.Consent = Consent  # type: ignore[attr-defined]
    return make


@pytest.fixture
def book(clinic, db):
    from wa_portal.models import Appointment, AppointmentStatus
    from wa_portal.services import appointments

    def book(patient, therapist, day: date, hour: int, status: str = "booked") -> Any:
        start = datetime.combine(day, time(hour), appointments.zone(clinic))
        appt = Appointment(
            clinic_id=clinic.id,
            patient_id=patient.id,
            therapist_id=therapist.id,
            starts_at=start,
            ends_at=start + timedelta(minutes=50),
            status=AppointmentStatus(status),
        )
        db.session.add(appt)
        db.session.commit()
        return appt

    return book


@pytest.fixture
def day_of_appointments(clinic, therapist, make_user, make_patient, book, channels) -> Day:
    """Tomorrow's appointments: WhatsApp, SMS-only, email-only, opted out, twice booked, unreachable;
    plus appointments that must not count (cancelled tomorrow, another day)."""
    from wa_portal.models import Consent

    other = make_user(clinic, "therapist", email="luis@sunrise.test", name="Dr. Luis Gil")
    day = tomorrow(clinic)
    p = {
        "ana": make_patient("Ana", "+34600000101"),
        "ben": make_patient("Ben", "+34600000102", preferred_channels=["sms"]),
        "cara": make_patient("Cara", "+34600000103", preferred_channels=["email"], email="cara@example.com"),
        "dan": make_patient("Dan", "+34600000104", consent=Consent.OPTED_OUT),
        "eva": make_patient("Eva", "+34600000105"),
        "hugo": make_patient("Hugo", "+34600000106", preferred_channels=["email"]),  # no email
        "finn": make_patient("Finn", "+34600000107"),
        "gil": make_patient("Gil", "+34600000108"),
    }
    book(p["ana"], therapist, day, 9)
    book(p["ben"], therapist, day, 10)
    book(p["cara"], therapist, day, 11)
    book(p["dan"], therapist, day, 12)
    book(p["eva"], therapist, day, 13, status="confirmed")
    book(p["eva"], other, day, 16)  # twice that day: one message
    book(p["hugo"], other, day, 9)
    book(p["finn"], therapist, day + timedelta(days=1), 9)  # the day after: not in the audience
    book(p["gil"], other, day, 10, status="cancelled")  # cancelled already: not in the audience
    expected = {
        "ana": "whatsapp",
        "ben": "sms",
        "cara": "email",
        "dan": "whatsapp",  # opted out: only emergencies, only when the clinic allows it
        "eva": "whatsapp",
        "hugo": None,
        "finn": None,
        "gil": None,
    }
    return Day(day, p, expected)


def received(channels: dict[str, Any], twilio, moto: str) -> dict[str, list[str]]:  # noqa: F811
    """What each patient phone received, per channel, read at the providers themselves."""
    from sqlalchemy import select

    from wa_portal.extensions import db
    from wa_portal.models import Contact
    from wa_portal.services import sandbox

    contacts = list(db.session.scalars(select(Contact)))
    out: dict[str, list[str]] = {}
    for contact in contacts:
        for _entry in sandbox.phone_log(channels["whatsapp"], contact.phone):
            out.setdefault(contact.phone, []).append("whatsapp")
    emu, _ = twilio
    for rec in emu.sent:
        out.setdefault(rec["to"], []).append("sms")
    by_email = {c.email: c.phone for c in contacts if c.email}
    for mail in sent_emails(moto):
        for to in mail["destinations"]["ToAddresses"]:
            out.setdefault(by_email.get(to, to), []).append("email")
    return out
