"""Staff book from the calendar in real Chromium; the confirmation arrives on the simulated phone."""

from __future__ import annotations

import re
from datetime import time

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import ARTIFACTS, PASSWORD

pytestmark = pytest.mark.browser


@pytest.fixture
def therapist(clinic, make_user, db):
    from wa_portal.models import AvailabilityKind, AvailabilitySlot

    user = make_user(clinic, "therapist", email="ana@sunrise.test", name="Dr. Ana Ruiz")
    for weekday in range(7):
        db.session.add(
            AvailabilitySlot(
                clinic_id=clinic.id,
                therapist_id=user.id,
                kind=AvailabilityKind.WEEKLY,
                weekday=weekday,
                start_time=time(9),
                end_time=time(13),
            )
        )
    db.session.commit()
    return user


def test_staff_books_from_the_calendar_and_the_phone_gets_the_confirmation(
    live_server, page: Page, staff, therapist, sandbox_conn
):
    base = live_server.url
    page.goto(base + "/login")
    page.get_by_label("Email").fill(staff.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/inbox$"))

    page.get_by_role("link", name="Appointments").first.click()
    expect(page.locator("#calendar")).to_be_visible()
    # HTMX navigation to next week: the grid is swapped in place and the URL follows.
    first_day = page.locator(".cal-day").first.get_attribute("data-day")
    page.get_by_test_id("cal-next").click()
    expect(page.locator(".cal-day").first).not_to_have_attribute("data-day", first_day or "")
    expect(page).to_have_url(re.compile(r"day=\d{4}-\d{2}-\d{2}"))
    page.screenshot(path=str(ARTIFACTS / "appointments-calendar.png"), full_page=True)

    slot = page.get_by_test_id("free-slot").first
    slot_time = slot.inner_text().split()[0]
    slot.click()
    expect(page.get_by_role("heading", name="Book an appointment")).to_be_visible()
    expect(page.get_by_label("Time")).to_have_value(slot_time)
    page.get_by_label("Patient name").fill("Maria Lopez")
    page.get_by_label("Mobile phone").fill("612 345 678")
    page.get_by_label("Place (in person)").fill("Calle Mayor 1, Madrid")
    page.get_by_role("button", name="Book and send confirmation").click()

    expect(page.get_by_test_id("appt-status")).to_have_text("booked")
    expect(page.locator(".flash")).to_contain_text("Booked.")
    page.screenshot(path=str(ARTIFACTS / "appointment-detail.png"), full_page=True)

    page.goto(base + "/sandbox/phone")
    log = page.locator("#phone-log")
    expect(log).to_contain_text("your appointment with Dr. Ana Ruiz is booked for", timeout=20_000)
    expect(log).to_contain_text(re.compile(r"\b0?" + re.escape(slot_time.lstrip("0"))))
    expect(log).to_contain_text("Calle Mayor 1, Madrid")
    expect(log.locator(".pbutton", has_text="Confirm")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "appointment-confirmation-phone.png"), full_page=True)

    # The booked time is no longer offered in the calendar.
    page.go_back()
    page.goto(base + "/appointments/calendar")
    page.get_by_test_id("cal-next").click()
    expect(page.locator(".slot-appt", has_text="Maria Lopez")).to_be_visible()
