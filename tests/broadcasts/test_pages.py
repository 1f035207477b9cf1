"""Broadcast pages: roles, tenant isolation, the live preview, the confirmation sentence, double submits."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from tests.conftest import csrf_token

BODY = "The clinic is closed tomorrow because of a flood; your appointment will be moved."


def _form(day, token="tok-1", **extra):
    return {
        "kind": "emergency",
        "audience_type": "appointments_on",
        "date": day.isoformat(),
        "therapist_id": "",
        "days": "30",
        "template": "",
        "body": BODY,
        "token": token,
        **extra,
    }


@pytest.fixture
def staff_client(client, login, staff):
    return login(staff)


def test_new_form_preview_and_confirmation_state_the_counts(staff_client, day_of_appointments):
    html = staff_client.get("/broadcasts/new").get_data(as_text=True)
    assert 'name="token"' in html and 'hx-get="/broadcasts/preview"' in html
    day = day_of_appointments.day.isoformat()
    frag = staff_client.get(
        f"/broadcasts/preview?kind=emergency&audience_type=appointments_on&date={day}",
        headers={"HX-Request": "true"},
    ).get_data(as_text=True)
    assert re.search(r'data-testid="bc-preview-total"><strong>5</strong>', frag)
    assert 'data-testid="bc-preview-whatsapp">3<' in frag
    assert 'data-testid="bc-preview-no-route">1 ' in frag
    # An announcement leaves the opted-out patient out.
    frag = staff_client.get(
        f"/broadcasts/preview?kind=announcement&audience_type=appointments_on&date={day}"
    ).get_data(as_text=True)
    assert re.search(r"<strong>4</strong>", frag) and 'data-testid="bc-preview-opted-out">1 opted out' in frag

    token = csrf_token(staff_client, "/broadcasts/new")
    resp = staff_client.post("/broadcasts/new", data={**_form(day_of_appointments.day), "csrf_token": token})
    assert resp.status_code == 200
    page = resp.get_data(as_text=True)
    assert "Send to 5 patients: 3 by WhatsApp, 1 by SMS, 1 by email" in page
    assert 'action="/broadcasts/send"' in page


def test_send_twice_with_the_same_form_token_sends_once(staff_client, db, day_of_appointments, run_worker):
    from wa_portal.models import Broadcast, Message

    token = csrf_token(staff_client, "/broadcasts/new")
    data = {**_form(day_of_appointments.day, token="double-click"), "csrf_token": token}
    first = staff_client.post("/broadcasts/send", data=data)
    second = staff_client.post("/broadcasts/send", data=data)
    assert first.status_code == second.status_code == 303
    assert first.headers["Location"] == second.headers["Location"]
    assert db.session.scalar(select(func.count()).select_from(Broadcast)) == 1
    assert db.session.scalar(select(func.count()).select_from(Message)) == 5
    detail = staff_client.get(second.headers["Location"]).get_data(as_text=True)
    assert "already sent" in detail

    run_worker(include_scheduled=False)
    detail = staff_client.get(first.headers["Location"]).get_data(as_text=True)
    assert detail.count('data-testid="bc-recipient-status">sent<') == 5
    assert 'data-status="done"' in detail and "every 2s" not in detail
    # Phones are masked to the last four digits.
    assert "600000101" not in detail and "0101" in detail
    listing = staff_client.get("/broadcasts/").get_data(as_text=True)
    assert "5 sent" in listing
    # Each copy lives in the patient's conversation, where the team sees it in the inbox.
    msg = db.session.scalars(select(Message).order_by(Message.id)).first()
    thread = staff_client.get(f"/inbox/c/{msg.conversation_id}")
    assert thread.status_code == 200 and "because of a flood" in thread.get_data(as_text=True)


def test_phi_block_policy_refuses_the_body_on_the_page(staff_client, db, clinic, day_of_appointments):
    from wa_portal.models import Broadcast

    clinic.settings = {**(clinic.settings or {}), "phi_policy": "block"}
    db.session.commit()
    token = csrf_token(staff_client, "/broadcasts/new")
    data = {
        **_form(day_of_appointments.day, body="Ana Test, DOB 12/03/1980: we are closed."),
        "csrf_token": token,
    }
    for url in ("/broadcasts/new", "/broadcasts/send"):
        resp = staff_client.post(url, data=data)
        assert resp.status_code == 422
        assert "Blocked" in resp.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(Broadcast)) == 0


def test_phi_warn_policy_asks_for_confirmation_first(staff_client, db, clinic, day_of_appointments):
    from wa_portal.models import Broadcast

    clinic.settings = {**(clinic.settings or {}), "phi_policy": "warn"}
    db.session.commit()
    token = csrf_token(staff_client, "/broadcasts/new")
    data = {
        **_form(day_of_appointments.day, body="Patient DOB 12/03/1980: we are closed."),
        "csrf_token": token,
    }
    resp = staff_client.post("/broadcasts/send", data=data)
    assert resp.status_code == 422 and 'name="confirm_phi"' in resp.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(Broadcast)) == 0
    resp = staff_client.post("/broadcasts/send", data={**data, "confirm_phi": "1"})
    assert resp.status_code == 303
    assert db.session.scalar(select(func.count()).select_from(Broadcast)) == 1


def test_staff_of_another_clinic_never_see_a_broadcast(
    app, db, client, login, staff, make_clinic, make_user, day_of_appointments
):
    from wa_portal.services import broadcasts

    clinic_a = staff.clinic
    b = broadcasts.send(
        clinic_id=clinic_a.id, user_id=staff.id, kind="emergency",
        audience={"type": "appointments_on", "date": day_of_appointments.day.isoformat()}, body=BODY,
    ).broadcast  # fmt: skip
    other = make_clinic("harbour")
    intruder = make_user(other, "admin", email="boss@harbour.test")
    c = login(intruder)
    assert c.get(f"/broadcasts/{b.id}").status_code == 404
    assert c.get(f"/broadcasts/{b.id}", headers={"HX-Request": "true"}).status_code == 404
    listing = c.get("/broadcasts/").get_data(as_text=True)
    assert "No broadcasts yet." in listing and "flood" not in listing
    # Clinic B's preview counts only clinic B's patients (none).
    frag = c.get(
        f"/broadcasts/preview?kind=emergency&audience_type=appointments_on&date={day_of_appointments.day}"
    ).get_data(as_text=True)
    assert "<strong>0</strong>" in frag


def test_therapists_get_403_everywhere(client, login, clinic, make_user, staff, day_of_appointments):
    from wa_portal.services import broadcasts

    b = broadcasts.send(
        clinic_id=clinic.id, user_id=staff.id, kind="emergency",
        audience={"type": "appointments_on", "date": day_of_appointments.day.isoformat()}, body=BODY,
    ).broadcast  # fmt: skip
    therapist = make_user(clinic, "therapist", email="t2@sunrise.test")
    c = login(therapist)
    token = csrf_token(c, "/inbox/")
    for method, url in (
        ("get", "/broadcasts/"),
        ("get", "/broadcasts/new"),
        ("get", "/broadcasts/preview?audience_type=all_opted_in"),
        ("post", "/broadcasts/new"),
        ("post", "/broadcasts/send"),
        ("get", f"/broadcasts/{b.id}"),
    ):
        resp = getattr(c, method)(url, data={"csrf_token": token} if method == "post" else None)
        assert resp.status_code == 403, url
    nav = c.get("/inbox/").get_data(as_text=True)
    assert "/broadcasts/" not in nav
