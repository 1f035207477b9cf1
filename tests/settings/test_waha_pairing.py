"""Linking a WAHA session by QR code, against the WAHA emulator over HTTP: the session's webhooks point
at us with the key we keep, the QR code is proxied (never the API key), the link is recorded, and
a failing WAHA leaves nothing behind. Admins only; another clinic's connection is 404."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from tests.conftest import csrf_token
from tests.emulators.waha import API_KEY, PNG_1X1, message_payload, signed_webhook
from wa_portal.models import AuditEvent, Connection, WebhookEvent
from wa_portal.services import connections

SESSION = "sunrise_main"
PHONE = "+34600111222"


def _start(client, url: str, **overrides: str):
    form = {
        "csrf_token": csrf_token(client, "/settings/connections/new/waha"),
        "label": "Front desk phone",
        "base_url": url,
        "api_key": API_KEY,
        "session": SESSION,
        **overrides,
    }
    return client.post("/settings/connections/new/waha", data=form)


def _count(db) -> int:
    return db.session.scalar(
        select(func.count()).select_from(Connection).where(Connection.provider == "waha")
    )


def test_admin_links_a_phone_by_qr_code(admin_client, db, waha, clinic, app):
    emu, url = waha
    page = admin_client.get("/settings/connections/new/waha").get_data(as_text=True)
    assert f'value="{clinic.slug}"' in page  # the session name defaults to the clinic's slug

    resp = _start(admin_client, url)
    assert resp.status_code == 302
    [conn] = db.session.scalars(select(Connection).where(Connection.provider == "waha"))
    assert resp.headers["Location"].endswith(f"/settings/connections/{conn.id}/waha")
    assert (conn.status, conn.label, conn.clinic_id) == ("pending", "Front desk phone", clinic.id)

    # WAHA got a session whose webhooks come to us, signed with a key only the connection knows.
    session = emu.sessions[SESSION]
    [hook] = session["config"]["webhooks"]
    assert hook["url"] == "http://localhost/webhooks/waha"  # the address the page was opened on
    secrets = connections.get_secrets(conn)
    assert hook["hmac"] == {"key": secrets["webhook_hmac_key"]} and len(secrets["webhook_hmac_key"]) == 64
    assert {"message", "message.ack", "session.status"} <= set(hook["events"])
    assert secrets["api_key"] == API_KEY and API_KEY not in str(conn.config)

    # Starting: no code yet; the section polls itself.
    page = admin_client.get(f"/settings/connections/{conn.id}/waha").get_data(as_text=True)
    assert 'data-status="STARTING"' in page and 'hx-trigger="every 3s"' in page and "waha-qr" not in page

    emu.step(SESSION)  # → SCAN_QR_CODE
    frag = admin_client.get(f"/settings/connections/{conn.id}/waha", headers={"HX-Request": "true"})
    text = frag.get_data(as_text=True)
    assert text.lstrip().startswith('<section class="panel waha-pairing"') and "<html" not in text
    assert 'data-status="SCAN_QR_CODE"' in text and "Linked devices" in text
    qr = admin_client.get(f"/settings/connections/{conn.id}/waha/qr.png")
    assert (qr.status_code, qr.mimetype, qr.data) == (200, "image/png", PNG_1X1)
    assert qr.headers["Cache-Control"] == "no-store"
    assert API_KEY not in text
    [qr_call] = emu.log.find(method="GET", path=f"/api/{SESSION}/auth/qr")
    assert qr_call["headers"].get("X-Api-Key") == API_KEY  # our server asked, with the key

    emu.scan(SESSION, PHONE)  # the clinic scans the code
    text = admin_client.get(f"/settings/connections/{conn.id}/waha", headers={"HX-Request": "true"}).get_data(
        as_text=True
    )
    assert 'data-status="WORKING"' in text and "every 3s" not in text  # polling stops
    assert "Linked to" in text and "+34 600 11 12 22" in text
    db.session.expire_all()
    conn = db.session.get(Connection, conn.id)
    assert (conn.status, conn.display_phone) == ("connected", PHONE)

    # The key round-trips: a message WAHA signs with it is accepted and stored.
    signed = signed_webhook(
        "message", message_payload(), session=SESSION, hmac_key=secrets["webhook_hmac_key"]
    )
    assert (
        app.test_client().post("/webhooks/waha", data=signed.body, headers=signed.headers).status_code == 200
    )
    assert db.session.scalar(select(func.count()).select_from(WebhookEvent)) == 1

    audit = db.session.scalars(select(AuditEvent).where(AuditEvent.object_type == "connection")).all()
    assert [(a.action, a.object_id) for a in audit] == [("create", str(conn.id))]


def test_an_existing_session_gets_our_webhook_config(admin_client, db, waha):
    emu, url = waha
    emu.add_session(SESSION, status="WORKING")  # already linked, with someone else's webhook config
    emu.sessions[SESSION]["config"] = {"webhooks": [{"url": "http://old.example/hook"}]}
    assert _start(admin_client, url).status_code == 302
    [hook] = emu.sessions[SESSION]["config"]["webhooks"]
    assert hook["url"].endswith("/webhooks/waha") and hook["hmac"]["key"]
    [put] = emu.log.find(method="PUT", path=f"/api/sessions/{SESSION}")
    assert put["status"] == 200


@pytest.mark.parametrize(
    ("case", "overrides", "expected"),
    [
        ("wrong API key", {"api_key": "not-the-key"}, "WAHA refused the API key"),
        ("nothing listening", {"base_url": "http://127.0.0.1:9"}, "The WAHA server did not answer"),
    ],
)
def test_a_waha_that_refuses_or_is_down_leaves_nothing(admin_client, db, waha, case, overrides, expected):
    _, url = waha
    resp = _start(admin_client, url, **overrides)
    page = resp.get_data(as_text=True)
    assert resp.status_code == 422 and expected in page
    assert _count(db) == 0
    assert "not-the-key" not in page  # the key typed is not rendered back
    created = select(func.count()).select_from(AuditEvent).where(AuditEvent.object_type == "connection")
    assert db.session.scalar(created) == 0


def test_the_form_explains_bad_input(admin_client, db, waha):
    resp = _start(admin_client, "ftp://waha", api_key="", session="has space", display_phone="12")
    page = resp.get_data(as_text=True)
    assert resp.status_code == 422
    assert "Enter a web address that starts with https://" in page
    assert "Enter the API key" in page
    assert "Use 1 to 54 letters" in page
    assert "This is not a phone number" in page
    assert _count(db) == 0


def test_failed_session_restart_and_unlink(admin_client, db, waha):
    emu, url = waha
    _start(admin_client, url)
    conn = db.session.scalar(select(Connection).where(Connection.provider == "waha"))
    emu.fail(SESSION)
    page = admin_client.get(f"/settings/connections/{conn.id}/waha").get_data(as_text=True)
    assert 'data-status="FAILED"' in page and "Restart the session" in page
    token = csrf_token(admin_client, f"/settings/connections/{conn.id}/waha")
    assert admin_client.post(f"/settings/connections/{conn.id}/waha/restart").status_code == 400  # no CSRF
    resp = admin_client.post(f"/settings/connections/{conn.id}/waha/restart", data={"csrf_token": token})
    assert resp.status_code == 200 and 'data-status="STARTING"' in resp.get_data(as_text=True)

    emu.step(SESSION)
    emu.scan(SESSION, PHONE)
    assert 'data-status="WORKING"' in admin_client.get(f"/settings/connections/{conn.id}/waha").get_data(
        as_text=True
    )
    resp = admin_client.post(f"/settings/connections/{conn.id}/waha/unlink", data={"csrf_token": token})
    assert resp.status_code == 200
    assert emu.sessions[SESSION]["me"] is None  # WAHA logged the phone out
    db.session.expire_all()
    assert db.session.get(Connection, conn.id).status == "pending"
    actions = db.session.scalars(
        select(AuditEvent.summary).where(AuditEvent.object_type == "connection").order_by(AuditEvent.id)
    ).all()
    assert actions == ["provider: waha (QR code)", "WAHA session restarted", "phone unlinked"]


def test_admins_only_and_clinic_scoped(client, login, db, waha, staff, admin, make_clinic, make_user):
    emu, url = waha
    login(admin)
    _start(client, url)
    conn = db.session.scalar(select(Connection).where(Connection.provider == "waha"))
    emu.step(SESSION)
    paths = [f"/settings/connections/{conn.id}/waha", f"/settings/connections/{conn.id}/waha/qr.png"]
    client.post("/logout", data={"csrf_token": csrf_token(client, "/inbox")})

    login(staff)
    assert client.get("/settings/connections/new/waha").status_code == 403
    for path in paths:
        assert client.get(path).status_code == 403
    client.post("/logout", data={"csrf_token": csrf_token(client, "/inbox")})

    login(make_user(make_clinic("moonlight"), "admin"))
    for path in paths:
        assert client.get(path).status_code == 404
    token = csrf_token(client, "/settings/connections/new/waha")
    assert (
        client.post(f"/settings/connections/{conn.id}/waha/unlink", data={"csrf_token": token}).status_code
        == 404
    )
    assert emu.log.find(method="POST", path=f"/api/sessions/{SESSION}/logout") == []


def test_a_non_waha_connection_has_no_pairing_page(admin_client, sandbox_conn):
    assert admin_client.get(f"/settings/connections/{sandbox_conn.id}/waha").status_code == 404


def test_starting_again_carries_on_with_the_unfinished_pairing(admin_client, db, waha):
    emu, url = waha
    _start(admin_client, url)
    first = db.session.scalar(select(Connection).where(Connection.provider == "waha"))
    # The admin left before scanning and fills the form again: same session, no second connection.
    resp = _start(admin_client, url, label="Reception")
    assert resp.status_code == 302 and resp.headers["Location"].endswith(
        f"/settings/connections/{first.id}/waha"
    )
    db.session.expire_all()
    [conn] = db.session.scalars(select(Connection).where(Connection.provider == "waha"))
    assert (conn.id, conn.label, conn.status) == (first.id, "Reception", "pending")
    [hook] = emu.sessions[SESSION]["config"]["webhooks"]
    assert hook["hmac"]["key"] == connections.get_secrets(conn)["webhook_hmac_key"]  # WAHA has the new key

    # Once linked, the same session is taken: the form says where to find it.
    emu.step(SESSION)
    emu.scan(SESSION, PHONE)
    admin_client.get(f"/settings/connections/{conn.id}/waha")
    resp = _start(admin_client, url)
    page = resp.get_data(as_text=True)
    assert resp.status_code == 422 and "already connected in the portal: open it from the connections" in page
    assert _count(db) == 1
