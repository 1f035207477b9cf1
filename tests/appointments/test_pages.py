"""Staff and therapist pages: calendar, booking form, list, detail actions, availability, roles, sidebar."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from flask import render_template
from sqlalchemy import select

from tests.conftest import csrf_token

MADRID = ZoneInfo("Europe/Madrid")
NOW = datetime(2026, 4, 6, 8, 0, tzinfo=MADRID)  # a Monday


@pytest.fixture(autouse=True)
def _frozen():
    with time_machine.travel(NOW):
        yield


def test_staff_calendar_shows_free_slots_and_appointments(client, login, staff, therapist, book):
    book(datetime(2026, 4, 7, 9, 50, tzinfo=MADRID))
    login(staff)
    html = client.get(f"/appointments/calendar?therapist={therapist.id}").get_data(as_text=True)
    assert 'data-day="2026-04-06"' in html and 'data-day="2026-04-12"' in html
    assert "Maria Lopez" in html
    assert html.count('data-testid="free-slot"') == 5 * 4 - 1
    # HTMX navigation: next week comes back as the calendar fragment only.
    frag = client.get(
        f"/appointments/calendar?therapist={therapist.id}&day=2026-04-13", headers={"HX-Request": "true"}
    )
    text = frag.get_data(as_text=True)
    assert "HX-Request" in frag.headers["Vary"]
    assert text.lstrip().startswith('<section id="calendar"') and "<html" not in text
    assert 'data-day="2026-04-13"' in text
    day = client.get(f"/appointments/calendar?therapist={therapist.id}&view=day&day=2026-04-07").get_data(
        as_text=True
    )
    assert day.count('data-testid="free-slot"') == 3


def test_calendar_marks_past_days_apart_from_days_without_hours(client, login, staff, therapist):
    import re

    login(staff)
    url = f"/appointments/calendar?therapist={therapist.id}"
    html = client.get(url + "&day=2026-04-09").get_data(as_text=True)

    def day(iso: str) -> str:
        match = re.search(rf'data-day="{iso}">(.*?)</div>', html, re.S)
        assert match, iso
        return match.group(1)

    # Frozen on Monday 6 April: Monday still has hours, the weekend has none, and nothing is past.
    assert "Past" not in html and "No hours" in day("2026-04-11")
    with time_machine.travel(datetime(2026, 4, 9, 8, 0, tzinfo=MADRID)):  # Thursday
        html = client.get(url).get_data(as_text=True)
    assert "Past" in day("2026-04-06") and "Past" in day("2026-04-08")
    assert "Past" not in day("2026-04-09") and "No hours" in day("2026-04-12")


def test_staff_books_from_the_form(client, db, login, staff, therapist, sandbox_conn):
    from wa_portal.models import Appointment, Message

    login(staff)
    page = client.get(f"/appointments/new?therapist={therapist.id}&starts_at=2026-04-08T07:40:00%2B00:00")
    html = page.get_data(as_text=True)
    assert 'value="2026-04-08"' in html and 'value="09:40"' in html
    resp = client.post(
        "/appointments/new",
        data={
            "csrf_token": csrf_token(client, "/appointments/new"),
            "therapist_id": therapist.id,
            "date": "2026-04-08",
            "time": "09:50",
            "duration": "50",
            "patient_name": "Maria Lopez",
            "patient_phone": "612345678",
            "language": "es",
            "mode": "in_person",
            "location": "Calle Mayor 1",
        },
    )
    assert resp.status_code == 302, resp.get_data(as_text=True)[:2000]
    appt = db.session.scalar(select(Appointment))
    assert appt.starts_at.astimezone(MADRID).strftime("%d %H:%M") == "08 09:50"
    assert appt.created_by_id == staff.id
    msg = db.session.scalar(select(Message).where(Message.purpose == "confirmation"))
    assert "Calle Mayor 1" in msg.body and msg.body.startswith("Hola, Maria.")
    detail = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert "confirmation" in detail and "1d before" in detail and "Calle Mayor 1" in detail


def test_booking_form_errors_are_sentences(client, db, login, staff, therapist, book):
    book(datetime(2026, 4, 8, 9, 50, tzinfo=MADRID))
    login(staff)
    resp = client.post(
        "/appointments/new",
        data={
            "csrf_token": csrf_token(client, "/appointments/new"),
            "therapist_id": therapist.id,
            "date": "2026-04-08",
            "time": "10:00",
            "patient_name": "Jo",
            "patient_phone": "+34600000001",
            "mode": "in_person",
        },
    )
    assert resp.status_code == 422
    assert "This time is already booked for this therapist." in resp.get_data(as_text=True)


def test_list_filters(client, login, staff, therapist, book):
    from wa_portal.services import appointments

    a = book(datetime(2026, 4, 8, 9, 50, tzinfo=MADRID), name="Ann One")
    b = book(datetime(2026, 4, 9, 9, 50, tzinfo=MADRID), name="Ben Two", phone="+34600000002")
    appointments.cancel(clinic_id=b.clinic_id, appointment_id=b.id)
    login(staff)
    active = client.get("/appointments").get_data(as_text=True)
    assert "Ann One" in active and "Ben Two" not in active
    cancelled = client.get("/appointments?status=cancelled", headers={"HX-Request": "true"}).get_data(
        as_text=True
    )
    assert "Ben Two" in cancelled and "Ann One" not in cancelled and "<html" not in cancelled
    assert a.id


def test_detail_actions_confirm_reschedule_cancel(client, db, login, staff, therapist, book, sandbox_conn):
    from wa_portal.models import Appointment

    appt = book(datetime(2026, 4, 8, 9, 50, tzinfo=MADRID))
    login(staff)
    token = csrf_token(client, f"/appointments/{appt.id}")
    assert client.post(f"/appointments/{appt.id}/confirm", data={"csrf_token": token}).status_code == 302
    db.session.expire_all()
    assert db.session.get(Appointment, appt.id).status == "confirmed"
    resp = client.post(
        f"/appointments/{appt.id}/reschedule",
        data={"csrf_token": token, "date": "2026-04-09", "time": "11:30"},
    )
    assert resp.status_code == 302
    db.session.expire_all()
    moved = db.session.get(Appointment, appt.id)
    assert moved.starts_at.astimezone(MADRID).strftime("%d %H:%M") == "09 11:30" and moved.status == "booked"
    client.post(f"/appointments/{appt.id}/cancel", data={"csrf_token": token})
    db.session.expire_all()
    assert db.session.get(Appointment, appt.id).status == "cancelled"
    # Without a CSRF token nothing changes.
    assert client.post(f"/appointments/{appt.id}/confirm").status_code == 400


def test_therapist_pages_and_role_checks(client, db, login, therapist, book, make_user, clinic):
    from wa_portal.models import Appointment

    appt = book(datetime(2026, 4, 6, 9, 0, tzinfo=MADRID))
    login(therapist)
    assert client.get("/appointments/calendar").status_code == 403
    assert client.get("/appointments").status_code == 403
    assert client.get("/settings/appointments").status_code == 403
    week = client.get("/me/week").get_data(as_text=True)
    assert "Maria Lopez" in week and "My week" in week
    assert "Maria Lopez" in client.get("/me/upcoming").get_data(as_text=True)
    assert client.get(f"/appointments/{appt.id}").status_code == 200
    token = csrf_token(client, "/me/availability")
    resp = client.post(
        "/me/availability",
        data={
            "csrf_token": token,
            "kind": "weekly",
            "weekday": "5",
            "start_time": "10:00",
            "end_time": "12:00",
        },
    )
    assert resp.status_code == 302
    assert "Every Saturday, 10:00\u201312:00" in client.get("/me/availability").get_data(as_text=True)
    bad = client.post(
        "/me/availability",
        data={"csrf_token": token, "kind": "blocked", "start_time": "12:00", "end_time": "10:00"},
    )
    assert bad.status_code == 422 and "The end time must be after the start time." in bad.get_data(
        as_text=True
    )
    # Another therapist's appointment does not exist for this one.
    other = make_user(clinic, "therapist", email="zoe@sunrise.test")
    from wa_portal.services import appointments

    theirs = appointments.book(
        clinic_id=clinic.id,
        therapist_id=other.id,
        starts_at=datetime(2026, 4, 7, 9, 0, tzinfo=MADRID),
        patient=appointments.PatientInput(name="Pat", phone="+34600000005"),
    )
    assert client.get(f"/appointments/{theirs.id}").status_code == 404
    assert client.post(f"/appointments/{theirs.id}/cancel", data={"csrf_token": token}).status_code == 403
    # After the session: mark it completed (only the clock moves forward, so the session stays valid).
    with time_machine.travel(datetime(2026, 4, 6, 10, 0, tzinfo=MADRID)):
        resp = client.post(
            f"/appointments/{appt.id}/outcome", data={"csrf_token": token, "status": "completed"}
        )
    assert resp.status_code == 302
    db.session.expire_all()
    assert db.session.get(Appointment, appt.id).status == "completed"


def test_other_clinic_staff_get_404(client, login, book, make_clinic, make_user):
    appt = book(datetime(2026, 4, 8, 9, 50, tzinfo=MADRID))
    outsider = make_user(make_clinic("moon"), "staff")
    login(outsider)
    assert client.get(f"/appointments/{appt.id}").status_code == 404
    token = csrf_token(client, "/appointments")
    assert client.post(f"/appointments/{appt.id}/cancel", data={"csrf_token": token}).status_code == 404


def test_admin_settings_and_api_keys(client, db, login, clinic, make_user):
    from wa_portal.models import ApiKey

    admin = make_user(clinic, "admin")
    login(admin)
    token = csrf_token(client, "/settings/appointments")
    resp = client.post(
        "/settings/appointments",
        data={
            "csrf_token": token,
            "offsets": "3d, 90m",
            "quiet_start": "22:00",
            "quiet_end": "07:30",
            "slot_minutes": "45",
        },
    )
    assert resp.status_code == 302
    db.session.refresh(clinic)
    assert clinic.settings["reminder_offsets"] == ["3d", "90m"]
    assert clinic.settings["quiet_hours"] == {"start": "22:00", "end": "07:30"}
    assert clinic.settings["slot_minutes"] == 45
    bad = client.post(
        "/settings/appointments", data={"csrf_token": token, "offsets": "soon", "slot_minutes": "45"}
    )
    assert bad.status_code == 422 and "invalid reminder offset" in bad.get_data(as_text=True)
    page = client.post("/settings/api-keys", data={"csrf_token": token, "name": "Website"})
    html = page.get_data(as_text=True)
    key = db.session.scalar(select(ApiKey))
    shown = html.split('data-testid="new-api-key">')[1].split("<")[0]
    assert shown.startswith(key.prefix) and key.key_hash not in html
    assert shown not in client.get("/settings/appointments").get_data(as_text=True)  # shown once
    client.post(f"/settings/api-keys/{key.id}/revoke", data={"csrf_token": token})
    db.session.refresh(key)
    assert key.revoked


def test_sidebar_partial_lists_upcoming_with_quick_actions(app, client, db, login, staff, book, sandbox_conn):
    from wa_portal.models import Appointment

    appt = book(datetime(2026, 4, 8, 9, 50, tzinfo=MADRID))
    login(staff)
    with app.test_request_context():
        from flask_login import login_user

        login_user(staff)
        html = render_template("appointments/_sidebar.html", contact=appt.patient.contact)
    assert f'id="appt-sidebar-{appt.patient.contact_id}"' in html
    assert "Confirm" in html and "Cancel" in html and "#reschedule" in html
    resp = client.post(
        f"/appointments/{appt.id}/confirm?from=sidebar",
        headers={"HX-Request": "true", "X-CSRFToken": csrf_token(client, "/appointments")},
    )
    assert resp.status_code == 200
    assert resp.get_data(as_text=True).lstrip().startswith("{#") is False
    assert "confirmed" in resp.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Appointment, appt.id).status == "confirmed"


def test_nav_links_by_role(client, login, staff, therapist):
    login(staff)
    html = client.get("/appointments/calendar").get_data(as_text=True)
    assert 'href="/appointments/calendar" aria-current="page">Appointments' in html
    client.post("/logout", data={"csrf_token": csrf_token(client, "/appointments")})
    login(therapist)
    assert ">My week</a>" in client.get("/me/week").get_data(as_text=True)


def test_inbox_patient_sidebar_shows_the_upcoming_appointment(client, db, login, staff, book, sandbox_conn):
    from wa_portal.models import Conversation

    appt = book(datetime(2026, 4, 8, 9, 50, tzinfo=MADRID))  # the confirmation opens a conversation
    conv = db.session.scalar(select(Conversation))
    login(staff)
    html = client.get(f"/inbox/c/{conv.id}").get_data(as_text=True)
    assert f'id="appt-sidebar-{appt.patient.contact_id}"' in html
    assert "Wed 8 Apr 09:50" in html and f"/appointments/{appt.id}/confirm" in html
