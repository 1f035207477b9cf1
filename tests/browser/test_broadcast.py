"""Staff send an emergency to tomorrow's patients in real Chromium and watch it reach "sent"."""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import ARTIFACTS, PASSWORD

pytestmark = pytest.mark.browser

PATIENTS = (("Maria", "+34612000001"), ("Pablo", "+34612000002"), ("Lucia", "+34612000003"))


@pytest.fixture
def tomorrows_patients(clinic, make_user, sandbox_conn, db):
    from wa_portal.models import Appointment, Contact, MessageTemplate, Patient, utcnow
    from wa_portal.services import appointments

    therapist = make_user(clinic, "therapist", email="ana@sunrise.test", name="Dr. Ana Ruiz")
    # Nobody wrote in the last 24 hours: WhatsApp needs an approved template.
    db.session.add(
        MessageTemplate(
            clinic_id=clinic.id, name="hello_followup", language="en", purpose="generic",
            body="Hello {{1}}, the clinic has a message for you. Reply to read it.",
        )
    )  # fmt: skip
    tz = appointments.zone(clinic)
    day = utcnow().astimezone(tz).date() + timedelta(days=1)
    for hour, (first, phone) in enumerate(PATIENTS, start=9):
        contact = Contact(clinic_id=clinic.id, phone=phone, name=f"{first} Lopez", language="en")
        db.session.add(contact)
        db.session.flush()
        patient = Patient(clinic_id=clinic.id, contact_id=contact.id, first_name=first, last_name="Lopez")
        db.session.add(patient)
        db.session.flush()
        start = datetime.combine(day, time(hour), tz)
        db.session.add(
            Appointment(
                clinic_id=clinic.id, patient_id=patient.id, therapist_id=therapist.id,
                starts_at=start, ends_at=start + timedelta(minutes=50),
            )
        )  # fmt: skip
    db.session.commit()
    return day


def test_staff_send_an_emergency_to_tomorrows_patients_and_see_it_sent(
    live_server, page: Page, staff, tomorrows_patients
):
    base = live_server.url
    page.goto(base + "/login")
    page.get_by_label("Email").fill(staff.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/inbox$"))

    page.get_by_role("link", name="Broadcasts").first.click()
    expect(page.get_by_role("heading", name="Broadcasts")).to_be_visible()
    page.get_by_role("link", name="New broadcast").first.click()
    expect(page.get_by_label("Day", exact=True)).to_have_value(tomorrows_patients.isoformat())
    # The live preview counts tomorrow's patients; switching audience recounts them.
    expect(page.get_by_test_id("bc-preview-total")).to_contain_text("3 patients")
    page.get_by_label("All contacts who opted in").check()
    expect(page.get_by_test_id("bc-preview-total")).to_contain_text("0 patients")
    page.get_by_label("Patients with an appointment on a day").check()
    expect(page.get_by_test_id("bc-preview-total")).to_contain_text("3 patients")
    expect(page.get_by_test_id("bc-preview-whatsapp")).to_have_text("3")
    page.get_by_label("Message", exact=True).fill(
        "The clinic is closed tomorrow because of a flood; we will call you to move your appointment."
    )
    page.screenshot(path=str(ARTIFACTS / "broadcast-new.png"), full_page=True)
    page.get_by_role("button", name="Review").click()

    expect(page.get_by_test_id("bc-sentence")).to_have_text("Send to 3 patients: 3 by WhatsApp")
    page.get_by_role("button", name="Send to 3 patients: 3 by WhatsApp").click()

    expect(page).to_have_url(re.compile(r"/broadcasts/\d+$"))
    expect(page.locator(".flash")).to_contain_text("Sending to 3 patients.")
    # htmx polls the progress until every message left; the real worker sends to the sandbox phone.
    expect(page.get_by_test_id("bc-status")).to_have_text("done", timeout=30_000)
    statuses = page.get_by_test_id("bc-recipient-status")
    expect(statuses).to_have_count(3)
    expect(statuses).to_have_text(["sent", "sent", "sent"])
    expect(page.locator(".bc-recipients")).to_contain_text("0001")
    expect(page.locator(".bc-recipients")).not_to_contain_text("612000001")
    page.screenshot(path=str(ARTIFACTS / "broadcast-sent.png"), full_page=True)

    page.get_by_role("link", name="Past broadcasts").click()
    expect(page.locator("#broadcast-list")).to_contain_text("3 sent")
