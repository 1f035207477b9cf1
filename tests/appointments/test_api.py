"""The JSON API for other clinic systems: happy paths and every error shape."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from click.testing import CliRunner
from sqlalchemy import select

MADRID = ZoneInfo("Europe/Madrid")
NOW = datetime(2026, 4, 6, 9, 0, tzinfo=MADRID)


@pytest.fixture(autouse=True)
def _frozen():
    with time_machine.travel(NOW):
        yield


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def payload(**over):
    body = {
        "patient": {
            "name": "Maria Lopez",
            "phone": "612 345 678",
            "email": "maria@example.org",
            "language": "es",
        },
        "therapist_email": "ana@sunrise.test",
        "starts_at": "2026-04-20T10:00:00+02:00",
        "duration_minutes": 50,
        "mode": "video",
        "video_url": "https://meet.example.org/abc",
    }
    body.update(over)
    return body


def test_create_get_patch_and_notifications(client, db, api_key, therapist, sandbox_conn, run_worker):
    resp = client.post("/api/v1/appointments", json=payload(), headers=auth(api_key))
    assert resp.status_code == 201, resp.json
    data = resp.json
    assert data["status"] == "booked"
    assert data["starts_at"] == "2026-04-20T10:00:00+02:00"
    assert data["ends_at"] == "2026-04-20T10:50:00+02:00"
    assert data["patient"]["phone"] == "+34612345678"
    assert data["therapist"]["id"] == therapist.id
    assert [r["kind"] for r in data["reminders"]] == ["reminder_7d", "reminder_1d", "reminder_2h"]
    assert resp.headers["Location"] == f"/api/v1/appointments/{data['id']}"
    appt_id = data["id"]

    got = client.get(f"/api/v1/appointments/{appt_id}", headers=auth(api_key))
    assert got.status_code == 200 and got.json["id"] == appt_id and got.json["mode"] == "video"

    moved = client.patch(
        f"/api/v1/appointments/{appt_id}",
        json={"starts_at": "2026-04-21T11:00:00+02:00"},
        headers=auth(api_key),
    )
    assert moved.status_code == 200, moved.json
    assert moved.json["starts_at"] == "2026-04-21T11:00:00+02:00"
    assert [r["state"] for r in moved.json["reminders"]].count("pending") == 3

    cancelled = client.patch(
        f"/api/v1/appointments/{appt_id}", json={"status": "cancelled"}, headers=auth(api_key)
    )
    assert cancelled.status_code == 200 and cancelled.json["status"] == "cancelled"
    assert {r["state"] for r in cancelled.json["reminders"]} == {"cancelled"}

    run_worker()
    notes = client.get(f"/api/v1/notifications?appointment_id={appt_id}", headers=auth(api_key))
    assert notes.status_code == 200
    items = notes.json["notifications"]
    assert [n["type"] for n in items] == ["confirmation", "reschedule", "cancellation"]
    assert all(n["channel"] == "whatsapp" and n["status"] in ("sent", "delivered") for n in items)


def test_create_with_patient_id_and_therapist_id(client, db, api_key, therapist, book):
    first = book(datetime(2026, 4, 20, 10, 0, tzinfo=MADRID))
    resp = client.post(
        "/api/v1/appointments",
        json={
            "patient_id": first.patient_id,
            "therapist_id": therapist.id,
            "starts_at": "2026-04-27T08:00:00Z",
            "mode": "in_person",
            "location": "Room 2",
        },
        headers=auth(api_key),
    )
    assert resp.status_code == 201, resp.json
    assert resp.json["patient"]["id"] == first.patient_id
    assert resp.json["duration_minutes"] == 50  # the clinic's slot length
    assert resp.json["location"] == "Room 2"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer wak_forged"},
    ],
)
def test_401_without_a_valid_key(client, db, headers):
    resp = client.get("/api/v1/appointments/1", headers=headers)
    assert resp.status_code == 401
    assert resp.json == {
        "error": {
            "code": "unauthorized",
            "message": "A valid API key is required: Authorization: Bearer <key>.",
        }
    }


def test_revoked_key_is_refused(client, db, clinic, api_key):
    from wa_portal.models import ApiKey
    from wa_portal.services import api_keys

    key = db.session.scalar(select(ApiKey))
    assert api_keys.revoke(clinic_id=clinic.id, key_id=key.id)
    assert client.get("/api/v1/appointments/1", headers=auth(api_key)).status_code == 401


def test_keys_are_stored_hashed(db, api_key):
    from wa_portal.models import ApiKey

    key = db.session.scalar(select(ApiKey))
    assert api_key not in (key.key_hash, key.prefix) and len(key.key_hash) == 64
    assert api_key.startswith(key.prefix)


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"starts_at": "tomorrow at ten"}, {"starts_at"}),
        ({"starts_at": "2026-04-20T10:00:00"}, {"starts_at"}),
        ({"duration_minutes": "fifty"}, {"duration_minutes"}),
        ({"patient": {"name": "", "phone": "12"}}, {"patient.name", "patient.phone"}),
        ({"patient": None}, {"patient"}),
        ({"therapist_email": None}, {"therapist_id"}),
        ({"therapist_email": "nobody@sunrise.test"}, {"therapist_email"}),
        ({"mode": "telepathy"}, {"mode"}),
        ({"starts_at": "2020-01-01T10:00:00Z"}, {"starts_at"}),
        ({"patient": {"name": "Maria", "phone": "+34612345678", "language": "fr"}}, {"patient.language"}),
    ],
)
def test_400_with_field_errors(client, db, api_key, therapist, body, fields):
    resp = client.post("/api/v1/appointments", json=payload(**body), headers=auth(api_key))
    assert resp.status_code == 400, resp.json
    error = resp.json["error"]
    assert error["code"] == "invalid" and error["message"]
    assert set(error["fields"]) == fields


def test_400_for_a_body_that_is_not_json(client, db, api_key):
    resp = client.post("/api/v1/appointments", data="nope", headers=auth(api_key))
    assert resp.status_code == 400
    assert resp.json["error"]["fields"] == {"body": "Send a JSON object."}


def test_404_for_unknown_and_other_clinics_appointments(client, db, api_key, make_clinic, make_user):
    from wa_portal.services import api_keys, appointments

    other = make_clinic("moon")
    other_ther = make_user(other, "therapist", email="zed@moon.test")
    appt = appointments.book(
        clinic_id=other.id,
        therapist_id=other_ther.id,
        starts_at=datetime(2026, 4, 20, 10, 0, tzinfo=MADRID),
        patient=appointments.PatientInput(name="X", phone="+34699999999"),
    )
    for path in (
        f"/api/v1/appointments/{appt.id}",
        "/api/v1/appointments/999",
        f"/api/v1/notifications?appointment_id={appt.id}",
    ):
        resp = client.get(path, headers=auth(api_key))
        assert resp.status_code == 404
        assert resp.json["error"]["code"] == "not_found"
    resp = client.patch(
        f"/api/v1/appointments/{appt.id}", json={"status": "cancelled"}, headers=auth(api_key)
    )
    assert resp.status_code == 404
    # ... while the other clinic's own key sees it.
    _, other_key = api_keys.create(clinic_id=other.id)
    assert client.get(f"/api/v1/appointments/{appt.id}", headers=auth(other_key)).status_code == 200


def test_409_when_the_slot_is_taken(client, db, api_key, therapist):
    assert client.post("/api/v1/appointments", json=payload(), headers=auth(api_key)).status_code == 201
    resp = client.post(
        "/api/v1/appointments",
        json=payload(
            patient={"name": "Other", "phone": "+34600000009"}, starts_at="2026-04-20T10:20:00+02:00"
        ),
        headers=auth(api_key),
    )
    assert resp.status_code == 409
    assert resp.json["error"]["code"] == "slot_taken"


def test_patch_errors(client, db, api_key, therapist):
    appt_id = client.post("/api/v1/appointments", json=payload(), headers=auth(api_key)).json["id"]
    bad = client.patch(
        f"/api/v1/appointments/{appt_id}", json={"status": "lost", "mode": "x"}, headers=auth(api_key)
    )
    assert bad.status_code == 400
    assert set(bad.json["error"]["fields"]) == {"status", "mode"}
    assert client.patch(f"/api/v1/appointments/{appt_id}", json={}, headers=auth(api_key)).status_code == 400
    client.patch(f"/api/v1/appointments/{appt_id}", json={"status": "cancelled"}, headers=auth(api_key))
    late = client.patch(
        f"/api/v1/appointments/{appt_id}",
        json={"starts_at": "2026-04-22T10:00:00+02:00"},
        headers=auth(api_key),
    )
    assert late.status_code == 409 and late.json["error"]["code"] == "conflict"
    missing = client.get("/api/v1/notifications", headers=auth(api_key))
    assert missing.status_code == 400 and "appointment_id" in missing.json["error"]["fields"]


def test_api_needs_no_csrf_token(app, db, api_key, therapist):
    assert app.config.get("WTF_CSRF_ENABLED", True)  # the rest of the app does check tokens
    resp = app.test_client().post("/api/v1/appointments", json=payload(), headers=auth(api_key))
    assert resp.status_code == 201


def test_cli_creates_a_key_and_prints_it_once(app, db, clinic):
    from wa_portal.models import ApiKey

    result = CliRunner().invoke(
        app.cli, ["wa", "create-api-key", "--clinic", clinic.slug, "--name", "Website"]
    )
    assert result.exit_code == 0, result.output
    token = result.output.strip().splitlines()[-1]
    assert token.startswith("wak_")
    key = db.session.scalar(select(ApiKey))
    assert key.name == "Website" and token not in key.key_hash
    bad = CliRunner().invoke(app.cli, ["wa", "create-api-key", "--clinic", "nope"])
    assert bad.exit_code != 0


def test_api_is_rate_limited_per_key(app, db, database_url, redis_url, api_key):
    from tests.conftest import app_config
    from wa_portal import create_app
    from wa_portal.extensions import db as _db

    limited = create_app(app_config(database_url, redis_url, RATELIMIT_ENABLED=True))
    with limited.app_context():
        c = limited.test_client()
        codes = [c.get("/api/v1/appointments/1", headers=auth(api_key)).status_code for _ in range(301)]
        _db.session.remove()
        _db.engine.dispose()
    assert codes[:300].count(404) == 300
    assert codes[300] == 429
