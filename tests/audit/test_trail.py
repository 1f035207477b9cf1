"""What the trail records as people and systems use the portal, and what it must never hold."""

from __future__ import annotations

import logging
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import select

from tests.audit.conftest import post
from tests.conftest import csrf_token

MADRID = ZoneInfo("Europe/Madrid")
NOW = datetime(2026, 4, 6, 8, 0, tzinfo=MADRID)  # a Monday: Dr. Ruiz works 09:00-13:00
PHONE = "+34612345678"


def _booking_form(client, therapist, phone="612345678") -> dict:
    return {
        "csrf_token": csrf_token(client, "/appointments/new"),
        "therapist_id": therapist.id,
        "date": "2026-04-08",
        "time": "09:50",
        "duration": "50",
        "patient_name": "Maria Lopez",
        "patient_phone": phone,
        "language": "es",
        "mode": "in_person",
        "location": "Calle Mayor 1",
    }


def _api_booking(phone="612 345 678") -> dict:
    return {
        "patient": {"name": "Maria Lopez", "phone": phone, "email": "maria@example.org"},
        "therapist_email": "ana@sunrise.test",
        "starts_at": "2026-04-20T10:00:00+02:00",
        "duration_minutes": 50,
    }


# --- inbox -----------------------------------------------------------------------------------------


def test_opening_a_conversation_records_who_viewed_it(client, login, staff, conv, events):
    login(staff)
    before = len(events())
    assert client.get(f"/inbox/c/{conv.id}").status_code == 200
    rows = events(action="view", object_type="conversation")
    assert len(events()) == before + 1 and len(rows) == 1
    row = rows[0]
    assert row.object_id == str(conv.id)
    assert row.user_id == staff.id and row.actor == "Rita (staff)"
    assert row.clinic_id == staff.clinic_id and row.ip == "127.0.0.1"
    # Partial refreshes of the open conversation (live updates) are not new reads.
    assert client.get(f"/inbox/c/{conv.id}?fragment=thread").status_code == 200
    assert len(events(action="view", object_type="conversation")) == 1


def test_another_clinics_conversation_is_a_404_and_not_recorded(
    client, login, make_clinic, make_user, conv, events
):
    login(make_user(make_clinic("moonlight"), "staff"))
    assert client.get(f"/inbox/c/{conv.id}").status_code == 404
    assert events(object_type="conversation") == []


def test_sending_a_reply_records_send_and_a_refused_one_records_nothing(client, login, staff, conv, events):
    login(staff)
    assert post(client, f"/inbox/c/{conv.id}/messages", {"body": "See you Tuesday"}).status_code == 200
    assert post(client, f"/inbox/c/{conv.id}/messages", {"body": ""}).status_code == 422
    resp = post(client, f"/inbox/c/{conv.id}/messages", {"body": "Prefers mornings", "mode": "note"})
    assert resp.status_code == 200
    rows = events(object_type="conversation", object_id=str(conv.id))
    assert [(r.action, r.summary) for r in rows] == [("send", "reply"), ("create", "internal note")]
    assert all(r.user_id == staff.id for r in rows)


def test_assigning_and_closing_are_recorded(client, login, staff, colleague, conv, events):
    login(staff)
    post(client, f"/inbox/c/{conv.id}/actions", {"action": "assign", "assignee_id": colleague.id})
    post(client, f"/inbox/c/{conv.id}/actions", {"action": "close"})
    rows = events(object_type="conversation", object_id=str(conv.id))
    assert [(r.action, r.summary) for r in rows] == [
        ("assign", f"assignee user {colleague.id}"),
        ("update", "status: close"),
    ]


@pytest.fixture
def colleague(clinic, make_user):
    return make_user(clinic, "therapist", email="ana@sunrise.test", name="Ana")


# --- appointments ------------------------------------------------------------------------------------


def test_booking_from_the_page_records_create_with_the_staff_member(
    client, db, login, staff, therapist, sandbox_conn, events
):
    from wa_portal.models import Appointment

    with time_machine.travel(NOW):
        login(staff)
        resp = client.post("/appointments/new", data=_booking_form(client, therapist))
        assert resp.status_code == 302, resp.get_data(as_text=True)[:500]
    appt = db.session.scalar(select(Appointment))
    [row] = events(action="create", object_type="appointment")
    assert row.object_id == str(appt.id)
    assert row.user_id == staff.id and row.actor == "Rita (staff)"
    assert row.summary == "booked from the page"


def test_a_refused_booking_records_nothing(client, login, staff, therapist, sandbox_conn, events):
    with time_machine.travel(NOW):
        login(staff)
        resp = client.post(
            "/appointments/new", data={**_booking_form(client, therapist), "patient_phone": ""}
        )
        assert resp.status_code == 422
    assert events(object_type="appointment") == []


def test_booking_through_the_api_records_create_with_the_key_as_actor(
    client, api_key, therapist, sandbox_conn, events
):
    with time_machine.travel(NOW):
        resp = client.post("/api/v1/appointments", json=_api_booking(), headers=auth(api_key))
        assert resp.status_code == 201, resp.get_data(as_text=True)
        appt_id = resp.json["id"]
        client.get(f"/api/v1/appointments/{appt_id}", headers=auth(api_key))
        client.patch(f"/api/v1/appointments/{appt_id}", json={"status": "cancelled"}, headers=auth(api_key))
        client.get(f"/api/v1/notifications?appointment_id={appt_id}", headers=auth(api_key))
    rows = events(object_type="appointment", object_id=str(appt_id))
    assert [(r.action, r.summary) for r in rows] == [
        ("create", "booked through the API"),
        ("view", ""),
        ("update", "status: cancelled"),
        ("view", "notifications"),
    ]
    assert {(r.actor, r.user_id, r.clinic_id) for r in rows} == {
        ("api key 'Booking site'", None, therapist.clinic_id)
    }


def test_an_api_call_without_a_valid_key_records_nothing(client, db, events):
    assert client.get("/api/v1/appointments/1", headers=auth("wak_nope")).status_code == 401
    assert events() == []


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# --- sign in -------------------------------------------------------------------------------------------


def test_a_failed_login_records_the_attempt_with_the_email_domain_only(client, staff, events):
    token = csrf_token(client, "/login")
    resp = client.post(
        "/login", data={"email": "Rita@Sunrise.test", "password": "wrong", "csrf_token": token}
    )
    assert resp.status_code == 200
    [row] = events()
    assert (row.action, row.object_type, row.object_id) == ("login_failed", "user", str(staff.id))
    assert row.clinic_id == staff.clinic_id and row.user_id is None and row.actor == "anonymous"
    assert row.summary == "email domain: sunrise.test"
    assert "rita" not in " ".join(str(v).lower() for v in _values(row))


def test_a_failed_login_for_an_unknown_address_only_logs_the_domain(client, db, events, caplog):
    caplog.set_level(logging.WARNING, logger="wa_portal.web.audit_hooks")
    token = csrf_token(client, "/login")
    client.post("/login", data={"email": "mallory@evil.test", "password": "x", "csrf_token": token})
    assert events() == []  # no account, no clinic to file it under
    assert "evil.test" in caplog.text and "mallory" not in caplog.text


def test_login_and_logout_are_recorded(client, login, staff, events):
    login(staff)
    token = csrf_token(client, "/inbox")
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    rows = events()
    assert [(r.action, r.object_type, r.user_id) for r in rows] == [
        ("login", "user", staff.id),
        ("logout", "user", staff.id),
    ]


# --- deliveries --------------------------------------------------------------------------------------


def test_csv_export_of_the_delivery_log_is_recorded(client, login, staff, events):
    login(staff)
    resp = client.get("/deliveries/log.csv?status=failed&channel=sms")
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    resp.get_data()  # stream it out, as a browser would
    [row] = events(action="export")
    assert row.object_type == "delivery_log" and row.user_id == staff.id
    assert row.summary == "CSV; filters: channel, status"


# --- what the trail must never hold ------------------------------------------------------------------


def _values(row) -> list:
    return [getattr(row, c.key) for c in row.__table__.columns]


def test_no_row_holds_a_phone_number_or_a_message_body(
    client, db, login, staff, admin, therapist, api_key, sandbox_conn, inbound, events, run_worker
):
    body_in = "Tengo ansiedad y necesito cambiar la cita"
    reply = "Claro Maria, le llamamos al 612 345 678 mañana"
    notes = "Alergia a la penicilina"
    with time_machine.travel(NOW):
        conv = inbound(body_in, phone=PHONE)
        login(staff)
        client.get(f"/inbox/c/{conv.id}")
        post(client, f"/inbox/c/{conv.id}/messages", {"body": reply})
        post(client, f"/inbox/contacts/{conv.contact_id}/notes", {"notes": notes})
        client.post("/appointments/new", data=_booking_form(client, therapist, phone="612345678"))
        client.get("/deliveries/log.csv")
        client.post(
            "/api/v1/appointments",
            json={**_api_booking(phone=PHONE), "starts_at": "2026-04-21T10:00:00+02:00"},
            headers=auth(api_key),
        )
        run_worker()
        # An admin signing in with a wrong password first.
        client.post("/logout", data={"csrf_token": csrf_token(client, "/inbox")})
        client.post(
            "/login",
            data={"email": admin.email, "password": "nope", "csrf_token": csrf_token(client, "/login")},
        )
    rows = events()
    assert {r.action for r in rows} >= {"view", "send", "update", "export", "login_failed"}
    assert len(events(action="create", object_type="appointment")) == 2  # page and API bookings
    text = " ".join(str(v) for r in rows for v in _values(r))
    for secret in ("612345678", "612 345 678", "ansiedad", "Claro Maria", "penicilina", admin.email, api_key):
        assert secret not in text, secret


def test_summaries_are_scrubbed_of_numbers_and_addresses():
    from wa_portal.services.audit import scrub

    assert scrub("called +34 612 345 678 about 7") == "called [number] about 7"
    assert scrub("sent to maria.lopez@example.org") == "sent to …@example.org"
    assert len(scrub("x" * 1000)) == 300
